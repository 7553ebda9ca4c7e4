/*
 * test_plot_e2e.c: anomalyctl plot and anomalyctl report against the real
 * PostgreSQL, checked with real tools: xmllint parses the SVG, and Debian's
 * chromium (headless) loads the HTML report, runs its script (which marks
 * <body data-selfcheck="ok N">) with no console error, and screenshots it;
 * the PNG is decoded here and must not be blank.
 *
 * 1. plot_points: one path point per row in range (whole metric, a
 *    --from/--to range, by name), the documented downsampling at and past
 *    --max-points (recomputed here from the rows), errors for unknown and
 *    ambiguous names, a metric name full of XML syntax and control bytes.
 * 2. report_in_browser: the report's page, self-contained, in chromium; a
 *    page with a script error is caught by the same check (the check can
 *    fail).
 * 3. report_bounds: [plot] report_metrics and report_points at and past.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "support_e2e.h"
#include "check_main.h"

static e2e T;
static const char *UID;
#define NAME "e2e.plot.jumpsup"

static void fixture_up(void)
{
    e2e_init(&T, "plot");
    UID = e2e_uid(&T, "jumpsup");
    e2e_replay(&T, e2e_data("likelihood/htmengine/numenta_art_daily_jumpsup.inputs.csv"), NAME,
               UID, 1440, 2880, 4032, 1155);
    e2e_proc p;
    e2e_run_anomalyd(&T, &p, "p1", 1500, 300000);
}

static void fixture_down(void) { e2e_fini(&T); }

/* Rows of uid in [from, to] ("" = open; SQL timestamp literals), values in
 * rowid order into *v (malloc'd). */
static size_t db_rows(const char *uid, const char *from, const char *to, double **v)
{
    char q[512];
    snprintf(q, sizeof q,
             "SELECT metric_value FROM metric_data WHERE uid = '%s' %s%s%s %s%s%s ORDER BY rowid",
             uid, *from ? "AND timestamp >= '" : "", from, *from ? "'" : "",
             *to ? "AND timestamp <= '" : "", to, *to ? "'" : "");
    PGresult *res = PQexec(an_repo_conn(T.repo), q);
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    size_t n = (size_t)PQntuples(res);
    *v = malloc((n ? n : 1) * sizeof **v);
    for (size_t i = 0; i < n; i++)
        (*v)[i] = strtod(PQgetvalue(res, (int)i, 0), NULL);
    PQclear(res);
    return n;
}

/* The documented rule (docs/alerts.md): B = max/2 buckets of rows
 * [floor(b n / B), floor((b+1) n / B)), one point if the lowest and the
 * highest value are the same row, else two. */
static size_t downsampled_points(const double *v, size_t n, size_t max)
{
    if (n <= max)
        return n;
    size_t B = max / 2, pts = 0;
    for (size_t b = 0; b < B; b++) {
        size_t lo = b * n / B, hi = (b + 1) * n / B, imin = lo, imax = lo;
        for (size_t i = lo; i < hi; i++) {
            if (v[i] < v[imin])
                imin = i;
            if (v[i] > v[imax])
                imax = i;
        }
        pts += imin == imax ? 1 : 2;
    }
    return pts;
}

/* xmllint --noout, then the value path's "x,y" pairs via xmllint --xpath. */
static size_t svg_points(const char *svg)
{
    e2e_proc p;
    e2e_run(&T, &p, "xmllint --noout", 60000, "/usr/bin/xmllint", "--noout", svg, NULL);
    E2E_EXPECT_EXIT0(&p);
    e2e_run(&T, &p, "xmllint --xpath", 60000, "/usr/bin/xmllint", "--xpath",
            "string(//*[local-name()='path'][@class='value-series']/@d)", svg, NULL);
    E2E_EXPECT_EXIT0(&p);
    char *d = e2e_slurp(p.out_path, NULL);
    size_t n = 0;
    for (const char *c = d; *c; c++)
        n += *c == ',';
    ck_assert_msg(n == 0 || d[0] == 'M', "path d does not start with M: %.40s", d);
    free(d);
    return n;
}

static void plot(e2e_proc *p, const char *out, const char *metric, const char *a1,
                 const char *a2, const char *a3, const char *a4)
{
    const char *argv[16] = {e2e_bin("anomalyctl"), "plot", "--metric", metric, "--out", out};
    int n = 6;
    const char *extra[] = {a1, a2, a3, a4};
    for (int i = 0; i < 4 && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    e2e_spawn(&T, p, "anomalyctl plot", argv);
    e2e_wait(&T, p, 120000);
}

START_TEST(plot_points)
{
    char svg[PATH_MAX + 32];
    snprintf(svg, sizeof svg, "%s/p.svg", T.tmpdir);
    double *v;
    e2e_proc p;
    /* whole metric, by uid */
    size_t n = db_rows(UID, "", "", &v);
    ck_assert_uint_eq(n, 4032);
    plot(&p, svg, UID, NULL, NULL, NULL, NULL);
    E2E_EXPECT_EXIT0(&p);
    ck_assert_uint_eq(svg_points(svg), n);
    char *text = e2e_slurp(svg, NULL);
    ck_assert_ptr_nonnull(strstr(text, ">" NAME "</text>"));            /* title */
    ck_assert_ptr_nonnull(strstr(text, ">time (UTC)</text>"));          /* date axis */
    ck_assert_ptr_nonnull(strstr(text, ">2014-04-02</text>"));          /* a date tick */
    ck_assert_ptr_nonnull(strstr(text, "class=\"threshold\""));
    ck_assert_ptr_nonnull(strstr(text, "class=\"anomaly-series\""));
    ck_assert_ptr_nonnull(strstr(text, "<title>alert: row 2990,"));     /* an alert marked */
    ck_assert_ptr_null(strstr(text, "href="));                          /* self-contained */
    free(text);
    free(v);

    /* a range, by name */
    n = db_rows(UID, "2014-04-05 00:00:00", "2014-04-07 12:00:00", &v);
    ck_assert_uint_gt(n, 100);
    plot(&p, svg, NAME, "--from", "2014-04-05", "--to", "2014-04-07T12:00");
    E2E_EXPECT_EXIT0(&p);
    ck_assert_uint_eq(svg_points(svg), n);
    free(v);

    /* downsampling at and past the bound */
    n = db_rows(UID, "", "", &v);
    plot(&p, svg, UID, "--max-points", "4032", NULL, NULL);
    E2E_EXPECT_EXIT0(&p);
    ck_assert_uint_eq(svg_points(svg), 4032);
    size_t want = downsampled_points(v, n, 4031);
    ck_assert_uint_le(want, 4031);
    plot(&p, svg, UID, "--max-points", "4031", NULL, NULL);
    E2E_EXPECT_EXIT0(&p);
    ck_assert_uint_eq(svg_points(svg), want);
    want = downsampled_points(v, n, 600);
    ck_assert_uint_le(want, 600);
    ck_assert_uint_gt(want, 500);
    plot(&p, svg, UID, "--max-points", "600", NULL, NULL);
    E2E_EXPECT_EXIT0(&p);
    ck_assert_uint_eq(svg_points(svg), want);
    free(v);

    /* errors: unknown metric, ambiguous name, bad time */
    plot(&p, svg, "no-such-metric-xyz", NULL, NULL, NULL, NULL);
    ck_assert_int_eq(p.code, 1);
    ck_assert_uint_eq(e2e_count_lines(p.err_path, "no metric has this uid or name"), 1);
    const char *u2 = e2e_uid(&T, "dup1"), *u3 = e2e_uid(&T, "dup2");
    e2e_create_metric(&T, u2, "e2e.plot.twice", AN_METRIC_ACTIVE);
    e2e_create_metric(&T, u3, "e2e.plot.twice", AN_METRIC_ACTIVE);
    plot(&p, svg, "e2e.plot.twice", NULL, NULL, NULL, NULL);
    ck_assert_int_eq(p.code, 1);
    ck_assert_uint_eq(e2e_count_lines(p.err_path, "2 metrics have this name; use a uid"), 1);
    plot(&p, svg, UID, "--from", "2014-13-01", NULL, NULL);
    ck_assert_int_eq(p.code, 2);

    /* a hostile name: XML syntax, quotes, a control byte (PostgreSQL
     * itself refuses invalid UTF-8; the unit test covers that) */
    const char *u4 = e2e_uid(&T, "hostile");
    e2e_create_metric(&T, u4, "<cpu & \"load\" 'x'>\x01</title>", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&T, u4, 50);
    plot(&p, svg, u4, NULL, NULL, NULL, NULL);
    E2E_EXPECT_EXIT0(&p);
    ck_assert_uint_eq(svg_points(svg), 50);
    text = e2e_slurp(svg, NULL);
    ck_assert_ptr_nonnull(strstr(text, "&lt;cpu &amp; &quot;load&quot; &#39;x&#39;&gt;"
                                       "\xef\xbf\xbd&lt;/title&gt;"));
    free(text);
}
END_TEST

/* ---- PNG: decode (8-bit RGB/RGBA, non-interlaced) and measure ---- */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* Distinct colours and the share of pixels unlike the top-left one. */
static void png_stats(const char *path, size_t *colors, double *ink, uint32_t *w, uint32_t *h)
{
    size_t len;
    unsigned char *f = (unsigned char *)e2e_slurp(path, &len);
    ck_assert_msg(f && len > 33 && !memcmp(f, "\x89PNG\r\n\x1a\n", 8), "%s is not a PNG", path);
    *w = be32(f + 16);
    *h = be32(f + 20);
    int type = f[25], bpp = type == 6 ? 4 : 3;
    ck_assert_msg(f[24] == 8 && (type == 2 || type == 6) && f[28] == 0, "unsupported PNG");
    unsigned char *z = malloc(len);
    size_t zn = 0;
    for (size_t off = 8; off + 12 <= len;) {
        uint32_t n = be32(f + off);
        if (!memcmp(f + off + 4, "IDAT", 4)) {
            memcpy(z + zn, f + off + 8, n);
            zn += n;
        }
        off += 12 + n;
    }
    size_t stride = (size_t)*w * bpp, raw_len = (stride + 1) * *h;
    unsigned char *raw = malloc(raw_len), *px = calloc(stride * *h, 1);
    uLongf got = raw_len;
    ck_assert_int_eq(uncompress(raw, &got, z, zn), Z_OK);
    ck_assert_uint_eq(got, raw_len);
    for (uint32_t y = 0; y < *h; y++) {
        const unsigned char *in = raw + y * (stride + 1) + 1;
        unsigned char *out = px + y * stride, *up = y ? out - stride : NULL;
        int ft = raw[y * (stride + 1)];
        for (size_t x = 0; x < stride; x++) {
            int a = x >= (size_t)bpp ? out[x - bpp] : 0, b = up ? up[x] : 0,
                c = (up && x >= (size_t)bpp) ? up[x - bpp] : 0;
            int pred = ft == 1 ? a : ft == 2 ? b : ft == 3 ? (a + b) / 2 : ft == 4 ? paeth(a, b, c) : 0;
            out[x] = (unsigned char)(in[x] + pred);
        }
    }
    /* colours: a bitmap over 24-bit RGB */
    unsigned char *seen = calloc(1 << 21, 1);
    size_t distinct = 0, differ = 0, npx = (size_t)*w * *h;
    for (size_t i = 0; i < npx; i++) {
        const unsigned char *q = px + i * bpp;
        uint32_t rgb = (uint32_t)q[0] << 16 | (uint32_t)q[1] << 8 | q[2];
        if (!(seen[rgb >> 3] & (1 << (rgb & 7)))) {
            seen[rgb >> 3] |= (unsigned char)(1 << (rgb & 7));
            distinct++;
        }
        differ += memcmp(q, px, 3) != 0;
    }
    *colors = distinct;
    *ink = (double)differ / (double)npx;
    free(seen);
    free(px);
    free(raw);
    free(z);
    free((char *)f);
}

/* chromium headless with a private profile; mode "--dump-dom" or
 * "--screenshot=PATH". */
static void chromium(e2e_proc *p, const char *mode, const char *url)
{
    char profile[PATH_MAX + 32];
    snprintf(profile, sizeof profile, "--user-data-dir=%s/chromium", T.tmpdir);
    e2e_run(&T, p, "chromium", 180000, "/usr/bin/chromium", "--headless", "--no-sandbox",
            "--disable-gpu", "--no-first-run", "--disable-extensions", profile,
            "--enable-logging=stderr", "--v=0", "--window-size=1280,1000",
            "--virtual-time-budget=5000", mode, url, NULL);
    E2E_EXPECT_EXIT0(p);
}

/* Console problems chromium logs on stderr for the page. */
static size_t console_errors(const e2e_proc *p)
{
    return e2e_count_lines(p->err_path, "Uncaught") + e2e_count_lines(p->err_path, ":CONSOLE(");
}

START_TEST(report_in_browser)
{
    char dir[PATH_MAX + 32], url[PATH_MAX + 64], png[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/report", T.tmpdir);
    e2e_proc p;
    e2e_run(&T, &p, "anomalyctl report", 120000, e2e_bin("anomalyctl"), "report", "--out", dir,
            NULL);
    E2E_EXPECT_EXIT0(&p);
    snprintf(url, sizeof url, "%s/index.html", dir);
    char *html = e2e_slurp(url, NULL);
    ck_assert_ptr_nonnull(html);
    /* self-contained: no external reference of any kind */
    ck_assert_ptr_null(strstr(html, " src="));
    ck_assert_ptr_null(strstr(html, " href="));
    ck_assert_ptr_null(strstr(html, "url(http"));
    ck_assert_ptr_null(strstr(html, "@import"));
    ck_assert_ptr_nonnull(strstr(html, "Content-Security-Policy"));
    ck_assert_ptr_nonnull(strstr(html, NAME));
    free(html);
    PGresult *res = PQexec(an_repo_conn(T.repo), "SELECT least(count(*), 200) FROM metric");
    long metrics = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    ck_assert_int_gt(metrics, 0);

    snprintf(url, sizeof url, "file://%s/index.html", dir);
    chromium(&p, "--dump-dom", url);
    char want[64];
    snprintf(want, sizeof want, "data-selfcheck=\"ok %ld\"", metrics);
    ck_assert_msg(e2e_count_lines(p.out_path, want) == 1, "no '%s' in the DOM; stderr:\n%s", want,
                  e2e_tail(p.err_path, 2000));
    ck_assert_msg(e2e_count_lines(p.out_path, "data-sorted=\"score desc\"") == 1,
                  "the table was not sorted by its script");
    ck_assert_msg(console_errors(&p) == 0, "console errors:\n%s", e2e_tail(p.err_path, 3000));

    snprintf(png, sizeof png, "%s/report.png", T.tmpdir);
    char shot[PATH_MAX + 64];
    snprintf(shot, sizeof shot, "--screenshot=%s", png);
    chromium(&p, shot, url);
    size_t colors;
    double ink;
    uint32_t w, h;
    png_stats(png, &colors, &ink, &w, &h);
    fprintf(stderr, "[report] screenshot %ux%u, %zu colours, %.1f%% non-background\n", w, h,
            colors, 100 * ink);
    ck_assert_uint_eq(w, 1280);
    ck_assert_uint_ge(colors, 64);  /* text, lines, two series, red marks */
    ck_assert(ink > 0.03);

    /* the same check catches a page whose script fails */
    char bad[PATH_MAX + 32];
    snprintf(bad, sizeof bad, "%s/bad.html", T.tmpdir);
    FILE *f = fopen(bad, "w");
    fputs("<!DOCTYPE html><html><body data-selfcheck=\"pending\"><script>"
          "undefinedFunction();document.body.setAttribute('data-selfcheck','ok 1');"
          "</script></body></html>\n", f);
    fclose(f);
    snprintf(url, sizeof url, "file://%s", bad);
    chromium(&p, "--dump-dom", url);
    ck_assert_uint_eq(e2e_count_lines(p.out_path, "data-selfcheck=\"ok"), 0);
    ck_assert_msg(console_errors(&p) > 0, "a script error was not seen on stderr:\n%s",
                  e2e_tail(p.err_path, 3000));
}
END_TEST

/* The first metric's uid and value-path points in a report page. */
static size_t first_metric_points(const char *html, char *uid, size_t len)
{
    static const char open[] = "<tbody data-uid=\"";
    const char *b = strstr(html, open);
    ck_assert_ptr_nonnull(b);
    b += strlen(open);
    snprintf(uid, len, "%.*s", (int)(strchr(b, '"') - b), b);
    const char *d = strstr(b, "class=\"value-series\"");
    ck_assert_ptr_nonnull(d);
    d = strstr(d, " d=\"") + 4;
    size_t n = 0;
    for (; *d != '"'; d++)
        n += *d == ',';
    return n;
}

START_TEST(report_bounds)
{
    char dir[PATH_MAX + 32], path[PATH_MAX + 64], uid[64];
    snprintf(dir, sizeof dir, "%s/report1", T.tmpdir);
    snprintf(path, sizeof path, "%s/index.html", dir);
    e2e_proc p;
    PGresult *res = PQexec(an_repo_conn(T.repo), "SELECT count(*) FROM metric");
    long metrics = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    ck_assert_int_ge(metrics, 2);
    e2e_setenv(&T, "ANOMALYD_PLOT_REPORT_METRICS", "1");
    /* report_points at the first metric's row count, then one below */
    for (int past = 0; past < 2; past++) {
        char pts[32];
        snprintf(pts, sizeof pts, "%d", past ? 4031 : 4032);
        e2e_setenv(&T, "ANOMALYD_PLOT_REPORT_POINTS", pts);
        e2e_run(&T, &p, "anomalyctl report", 120000, e2e_bin("anomalyctl"), "report", "--out",
                dir, NULL);
        E2E_EXPECT_EXIT0(&p);
        char *html = e2e_slurp(path, NULL);
        char head[64];
        snprintf(head, sizeof head, " 1 of %ld metrics ", metrics);
        ck_assert_msg(strstr(html, head), "no '%s' in the page", head);
        ck_assert_ptr_null(strstr(strstr(html, "<tbody") + 1, "<tbody"));
        size_t got = first_metric_points(html, uid, sizeof uid);
        free(html);
        double *v;
        size_t n = db_rows(uid, "", "", &v);
        size_t cap = past ? 4031 : 4032;
        ck_assert_uint_eq(got, downsampled_points(v, n, cap));
        free(v);
    }
    e2e_setenv(&T, "ANOMALYD_PLOT_REPORT_METRICS", "200");
    e2e_setenv(&T, "ANOMALYD_PLOT_REPORT_POINTS", "1000");
}
END_TEST

static Suite *plot_suite(void)
{
    Suite *s = suite_create("plot");
    TCase *tc = tcase_create("e2e");
    tcase_add_unchecked_fixture(tc, fixture_up, fixture_down);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, plot_points);
    tcase_add_test(tc, report_in_browser);
    tcase_add_test(tc, report_bounds);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(plot_suite(), CK_NORMAL);
}
