/* test_svg_plot.c: the SVG writer (XML escaping of metric names, one path
 * point per series element, threshold and alerts) and the downsampling
 * rule of an_downsample.h. */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_downsample.h"
#include "an_error.h"
#include "an_svg_plot.h"
#include "check_main.h"

static char *escaped(const char *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    an_xml_escape(f, s);
    fclose(f);
    return buf;
}

START_TEST(xml_escape)
{
    struct { const char *in, *out; } cases[] = {
        {"plain name", "plain name"},
        {"a&b<c>\"d'", "a&amp;b&lt;c&gt;&quot;d&#39;"},
        {"</text><script>x</script>", "&lt;/text&gt;&lt;script&gt;x&lt;/script&gt;"},
        {"tab\there\nnl\rcr", "tab\there\nnl\rcr"},
        {"bell\x07" "esc\x1b" "del\x7f", "bell\xef\xbf\xbd" "esc\xef\xbf\xbd" "del\xef\xbf\xbd"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\x88", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\x88"},
        {"bad\xff" "byte", "bad\xef\xbf\xbd" "byte"},
        {"overlong\xc0\xaf", "overlong\xef\xbf\xbd\xef\xbf\xbd"},
        {"surrogate\xed\xa0\x80", "surrogate\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"cut\xe2\x82", "cut\xef\xbf\xbd\xef\xbf\xbd"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = escaped(cases[i].in);
        ck_assert_msg(!strcmp(got, cases[i].out), "case %zu: got '%s'", i, got);
        free(got);
    }
    char *none = escaped(NULL);
    ck_assert_str_eq(none, "");
    free(none);
}
END_TEST

/* The d attribute of the path with class cls (malloc'd), NULL if none. */
static char *path_d(const char *svg, const char *cls)
{
    char needle[64];
    snprintf(needle, sizeof needle, "class=\"%s\"", cls);
    const char *p = strstr(svg, needle);
    if (!p)
        return NULL;
    p = strstr(p, " d=\"");
    ck_assert_ptr_nonnull(p);
    p += 4;
    const char *e = strchr(p, '"');
    return strndup(p, (size_t)(e - p));
}

/* "x,y" pairs in a d attribute. */
static size_t points(const char *d)
{
    size_t n = 0;
    for (const char *p = d; *p; p++)
        n += *p == ',';
    return n;
}

static char *render(const an_svg_plot *p, int is_inline)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_int_eq(an_svg_plot_write(f, p, is_inline), 0);
    fclose(f);
    return buf;
}

START_TEST(plot_points_title_marks)
{
    enum { N = 777 };
    static double t[N], v[N], a[N];
    for (int i = 0; i < N; i++) {
        t[i] = 1396310400.0 + 300.0 * i;
        v[i] = 20 + 60 * (i % 288 > 100 && i % 288 < 200) + (i % 7);
        a[i] = i == 500 ? 1.0 : 0.3;
    }
    an_svg_mark mark = {501, t[500], v[500], 1.0};
    an_svg_plot p = {.title = "cpu <load> & \"x\"\x01", .subtitle = "uid-1", .unit = "%",
                     .t0 = t[0], .t1 = t[N - 1], .value = {t, v, N}, .anomaly = {t, a, N - 7},
                     .threshold = 0.99999, .alerts = &mark, .nalerts = 1};
    char *svg = render(&p, 0);
    ck_assert(!strncmp(svg, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg ", 44));
    ck_assert_ptr_nonnull(strstr(svg, ">cpu &lt;load&gt; &amp; &quot;x&quot;\xef\xbf\xbd</text>"));
    ck_assert_ptr_null(strstr(svg, "<load>"));
    char *dv = path_d(svg, "value-series"), *da = path_d(svg, "anomaly-series");
    ck_assert_uint_eq(points(dv), N);
    ck_assert_uint_eq(points(da), N - 7);
    ck_assert_ptr_nonnull(strstr(svg, "class=\"threshold\""));
    ck_assert_ptr_nonnull(strstr(svg, "<g class=\"alert\"><title>alert: row 501"));
    ck_assert_ptr_nonnull(strstr(svg, ">04-02 00:00</text>")); /* a 12 h tick */
    ck_assert_ptr_nonnull(strstr(svg, ">time (UTC)</text>"));
    ck_assert(!strcmp(svg + strlen(svg) - 7, "</svg>\n"));
    free(dv);
    free(da);
    free(svg);
    /* inline (HTML): no XML declaration, ids from the prefix */
    p.id_prefix = "m7";
    svg = render(&p, 1);
    ck_assert(!strncmp(svg, "<svg ", 5));
    ck_assert_ptr_nonnull(strstr(svg, "id=\"m7-clip\""));
    free(svg);
}
END_TEST

START_TEST(plot_empty_and_flat)
{
    an_svg_plot p = {.title = "empty", .t0 = 0, .t1 = 0, .threshold = 0.99999};
    char *svg = render(&p, 0);
    ck_assert_ptr_nonnull(strstr(svg, "no rows in this range"));
    ck_assert_ptr_null(strstr(svg, "value-series"));
    ck_assert_ptr_null(strstr(svg, "nan"));
    free(svg);
    double t[1] = {1e9}, v[1] = {5};
    an_svg_plot one = {.title = "one", .t0 = 1e9, .t1 = 1e9, .value = {t, v, 1},
                       .threshold = 0.5};
    svg = render(&one, 0);
    char *d = path_d(svg, "value-series");
    ck_assert_uint_eq(points(d), 1);
    ck_assert_ptr_null(strstr(svg, "nan"));
    ck_assert_ptr_null(strstr(svg, "inf"));
    free(d);
    free(svg);
}
END_TEST

START_TEST(time_labels)
{
    char b[32];
    an_svg_time_label(1397207100.0, 86400, b, sizeof b);
    ck_assert_str_eq(b, "2014-04-11");
    an_svg_time_label(1397207100.0, 3600, b, sizeof b);
    ck_assert_str_eq(b, "04-11 09:05");
}
END_TEST

static void feed(an_downsample *d, const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        an_downsample_add(d, (double)i, v[i]);
    an_downsample_finish(d);
}

START_TEST(downsample_rule)
{
    an_downsample d;
    double v[10] = {5, 1, 9, 3, 3, 2, 8, 8, 0, 4};
    /* at the bound: every row */
    ck_assert_int_eq(an_downsample_init(&d, 10, 10), 0);
    feed(&d, v, 10);
    ck_assert_uint_eq(d.np, 10);
    for (size_t i = 0; i < 10; i++)
        ck_assert(d.v[i] == v[i] && d.t[i] == (double)i);
    an_downsample_free(&d);
    /* past it: 2 buckets of 5 rows, min and max in row order */
    ck_assert_int_eq(an_downsample_init(&d, 10, 4), 0);
    feed(&d, v, 10);
    ck_assert_uint_eq(d.np, 4);
    double want_t[4] = {1, 2, 6, 8}, want_v[4] = {1, 9, 8, 0};
    for (size_t i = 0; i < 4; i++)
        ck_assert_msg(d.t[i] == want_t[i] && d.v[i] == want_v[i], "point %zu: %g,%g", i,
                      d.t[i], d.v[i]);
    an_downsample_free(&d);
    /* odd bound: floor(5/2) = 2 buckets; a flat bucket gives one point */
    double flat[6] = {7, 7, 7, 1, 2, 3};
    ck_assert_int_eq(an_downsample_init(&d, 6, 5), 0);
    feed(&d, flat, 6);
    ck_assert_uint_eq(d.np, 3);
    ck_assert(d.t[0] == 0 && d.t[1] == 3 && d.t[2] == 5);
    an_downsample_free(&d);
    ck_assert_int_eq(an_downsample_init(&d, 6, 1), AN_EINVAL);
}
END_TEST

START_TEST(downsample_long_series)
{
    enum { N = 100003 };
    an_downsample d;
    ck_assert_int_eq(an_downsample_init(&d, N, 1000), 0);
    for (size_t i = 0; i < N; i++)
        an_downsample_add(&d, (double)i, sin((double)i / 50.0) + (i == 77777 ? 10 : 0));
    /* rows beyond the announced count join the last bucket */
    an_downsample_add(&d, (double)N, -100.0);
    an_downsample_finish(&d);
    ck_assert_uint_eq(d.np, 1000);
    bool spike = false;
    for (size_t i = 0; i < d.np; i++) {
        spike |= d.t[i] == 77777.0;
        if (i)
            ck_assert(d.t[i] > d.t[i - 1]);
    }
    ck_assert(spike);
    ck_assert(d.t[d.np - 1] == (double)N && d.v[d.np - 1] == -100.0);
    an_downsample_free(&d);
}
END_TEST

static Suite *svg_suite(void)
{
    Suite *s = suite_create("svg_plot");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, xml_escape);
    tcase_add_test(tc, plot_points_title_marks);
    tcase_add_test(tc, plot_empty_and_flat);
    tcase_add_test(tc, time_labels);
    tcase_add_test(tc, downsample_rule);
    tcase_add_test(tc, downsample_long_series);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(svg_suite(), CK_NORMAL);
}
