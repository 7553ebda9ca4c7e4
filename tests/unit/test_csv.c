/*
 * test_csv.c: the NAB CSV reader (an_csv.h).
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "an_csv.h"
#include "an_error.h"
#include "check_main.h"

static char tmpdir[256];
static int nfile;

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_csv.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Writes len bytes to a new file in tmpdir; returns its path (static). */
static const char *write_file(const char *data, size_t len)
{
    static char path[400];
    snprintf(path, sizeof path, "%s/f%d.csv", tmpdir, nfile++);
    FILE *fp = fopen(path, "wb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(data, 1, len, fp), len);
    ck_assert_int_eq(fclose(fp), 0);
    return path;
}

static const char *write_str(const char *s)
{
    return write_file(s, strlen(s));
}

/* Loads text; expects success. */
static an_csv *load_ok(const char *text)
{
    an_csv *c = NULL;
    char err[256] = "";
    int rc = an_csv_load(write_str(text), &c, err, sizeof err);
    ck_assert_msg(rc == 0, "load failed: %s", err);
    ck_assert_ptr_nonnull(c);
    return c;
}

/* Loads text; expects rc and a message containing want. */
static void load_bad(const char *text, int want_rc, const char *want)
{
    an_csv *c = (an_csv *)1;
    char err[256] = "";
    int rc = an_csv_load(write_str(text), &c, err, sizeof err);
    ck_assert_msg(rc == want_rc, "rc %d (want %d) for %s: %s", rc, want_rc, text, err);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, want) != NULL, "message '%s' lacks '%s'", err, want);
}

static void ck_ts(const an_csv *c, size_t i, const char *want)
{
    size_t len;
    const char *ts = an_csv_timestamp(c, i, &len);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert(memcmp(ts, want, len) == 0);
}

START_TEST(test_basic)
{
    an_csv *c = load_ok("timestamp,value,raw_score\n"
                        "2014-07-01 00:00:00,10844,1.0\n"
                        "2014-07-01 00:30:00,8127.5,0.0250000003725\n");
    ck_assert_uint_eq(an_csv_rows(c), 2);
    ck_ts(c, 0, "2014-07-01 00:00:00");
    ck_ts(c, 1, "2014-07-01 00:30:00");
    ck_assert(an_csv_values(c)[0] == 10844.0);
    ck_assert(an_csv_values(c)[1] == 8127.5);
    ck_assert(an_csv_raws(c)[0] == 1.0);
    ck_assert(an_csv_raws(c)[1] == 0.0250000003725);
    ck_assert_uint_gt(an_csv_memory(c), 0);
    an_csv_free(c);
    an_csv_free(NULL);
}
END_TEST

START_TEST(test_columns_by_name_extra_and_order)
{
    an_csv *c = load_ok("raw_score,label,value,anomaly_score,timestamp\n"
                        "0.5,0,1.25,0.9,2015-01-01 00:00:00\n"
                        "0.75,1,-2e3,0.1,2015-01-01 00:05:00\n");
    ck_assert_uint_eq(an_csv_rows(c), 2);
    ck_ts(c, 1, "2015-01-01 00:05:00");
    ck_assert(an_csv_values(c)[1] == -2000.0);
    ck_assert(an_csv_raws(c)[0] == 0.5);
    an_csv_free(c);
    /* blanks around header names and numbers */
    c = load_ok(" timestamp , value ,raw_score\nT, 1.5 ,\t2\n");
    ck_assert(an_csv_values(c)[0] == 1.5);
    ck_assert(an_csv_raws(c)[0] == 2.0);
    ck_ts(c, 0, "T");
    an_csv_free(c);
}
END_TEST

START_TEST(test_crlf_bom_no_trailing_newline_blank_lines)
{
    an_csv *c = load_ok("\xEF\xBB\xBFtimestamp,value,raw_score\r\n"
                        "a,1,0.1\r\n"
                        "\r\n"
                        "b,2,0.2\r\n"
                        "\n"
                        "c,3,0.3");
    ck_assert_uint_eq(an_csv_rows(c), 3);
    ck_ts(c, 0, "a");
    ck_ts(c, 2, "c");
    ck_assert(an_csv_raws(c)[2] == 0.3);
    ck_assert(an_csv_values(c)[2] == 3.0);
    an_csv_free(c);
    c = load_ok("timestamp,value,raw_score\r\nx,1,0.5");
    ck_assert_uint_eq(an_csv_rows(c), 1);
    ck_ts(c, 0, "x");
    an_csv_free(c);
}
END_TEST

START_TEST(test_header_only_and_empty)
{
    an_csv *c = load_ok("timestamp,value,raw_score\n");
    ck_assert_uint_eq(an_csv_rows(c), 0);
    an_csv_free(c);
    c = load_ok("timestamp,value,raw_score");
    ck_assert_uint_eq(an_csv_rows(c), 0);
    an_csv_free(c);
    load_bad("", AN_EINVAL, "empty file");
    load_bad("\n\r\n\n", AN_EINVAL, "empty file");
}
END_TEST

START_TEST(test_missing_and_duplicate_columns)
{
    load_bad("timestamp,value\n1,2\n", AN_EINVAL, "missing column 'raw_score' in header");
    load_bad("value,raw_score\n1,2\n", AN_EINVAL, "missing column 'timestamp' in header");
    load_bad("timestamp,Value,raw_score\n1,2,3\n", AN_EINVAL, "missing column 'value'");
    load_bad("timestamp,value,raw_score,value\n1,2,3,4\n", AN_EINVAL,
             "line 1: duplicate column 'value'");
}
END_TEST

START_TEST(test_non_numeric)
{
    load_bad("timestamp,value,raw_score\n"
             "a,1,0\n"
             "b,abc,0\n",
             AN_EINVAL, "line 3: column 'value': 'abc' is not a number");
    load_bad("timestamp,value,raw_score\na,1,\n", AN_EINVAL,
             "line 2: column 'raw_score': '' is not a number");
    load_bad("timestamp,value,raw_score\na,1.5x,0\n", AN_EINVAL, "'1.5x' is not a number");
    load_bad("timestamp,value,raw_score\na,1 2,0\n", AN_EINVAL, "'1 2' is not a number");
    load_bad("timestamp,value,raw_score\na,0x10,0\n", AN_EINVAL, "'0x10' is not a number");
    load_bad("timestamp,value,raw_score\na,1,0.5\r\n\r\nb,2,0.5e\n", AN_EINVAL,
             "line 4: column 'raw_score': '0.5e' is not a number");
}
END_TEST

START_TEST(test_nan_inf_rejected)
{
    const char *bad[] = {"nan", "NaN", "-nan", "inf", "-Infinity", "1e999", "-1e400"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "timestamp,value,raw_score\nt,1,0\nt,%s,0\n", bad[i]);
        char want[64];
        snprintf(want, sizeof want, "line 3: column 'value': '%s' is not a finite number",
                 bad[i]);
        load_bad(text, AN_EINVAL, want);
    }
    /* underflow is a correctly rounded (tiny or zero) number, not an error */
    an_csv *c = load_ok("timestamp,value,raw_score\nt,1e-400,4.9e-324\n");
    ck_assert(an_csv_values(c)[0] == 0.0);
    ck_assert(an_csv_raws(c)[0] == 4.9e-324);
    an_csv_free(c);
}
END_TEST

START_TEST(test_field_count)
{
    load_bad("timestamp,value,raw_score\na,1,0\nb,2\n", AN_EINVAL,
             "line 3: expected 3 fields as in the header, got 2");
    load_bad("timestamp,value,raw_score\na,1,0,9\n", AN_EINVAL,
             "line 2: expected 3 fields as in the header, got 4");
    load_bad("timestamp,value,raw_score\n,1,0\n", AN_EINVAL,
             "line 2: column 'timestamp' is empty");
}
END_TEST

START_TEST(test_quotes_rejected)
{
    load_bad("timestamp,value,raw_score\n\"2014-01-01\",1,0\n", AN_EINVAL,
             "line 2: quoted fields are not supported");
    load_bad("\"timestamp\",value,raw_score\n", AN_EINVAL,
             "line 1: quoted fields are not supported");
}
END_TEST

START_TEST(test_correct_rounding)
{
    an_csv *c = load_ok("timestamp,value,raw_score\n"
                        "t,0.1,0.30000000000000004\n"
                        "t,2.2250738585072011e-308,9007199254740993\n"
                        "t,1.7976931348623157e308,0.1000000000000000055511151231257827\n");
    ck_assert(an_csv_values(c)[0] == 0.1);
    ck_assert(an_csv_raws(c)[0] == 0.30000000000000004);
    ck_assert(an_csv_values(c)[1] == 2.2250738585072011e-308);
    ck_assert(an_csv_raws(c)[1] == 9007199254740992.0); /* tie to even */
    ck_assert(an_csv_values(c)[2] == 1.7976931348623157e308);
    ck_assert(an_csv_raws(c)[2] == 0.1);
    an_csv_free(c);
}
END_TEST

START_TEST(test_numbers_match_strtod)
{
    /* Random decimal texts in every shape the fast path handles (and some
     * it hands to strtod): the loaded doubles must equal strtod's bit for
     * bit. */
    size_t n = 40000;
    char (*txt)[64] = malloc(n * sizeof *txt);
    size_t cap = 64 + n * 80;
    char *text = malloc(cap);
    size_t len = (size_t)sprintf(text, "timestamp,value,raw_score\n");
    uint64_t x = 88172645463325252ULL;
    for (size_t i = 0; i < n; i++) {
        char *p = txt[i];
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int nd = 1 + (int)(x % 22);
        int point = (int)((x >> 8) % (uint64_t)(nd + 2)) - 1;
        int lead = (int)((x >> 16) % 4);
        if ((x >> 20) % 3 == 0)
            *p++ = '-';
        else if ((x >> 20) % 7 == 1)
            *p++ = '+';
        for (int k = 0; k < lead; k++)
            *p++ = '0';
        for (int k = 0; k < nd; k++) {
            if (k == point)
                *p++ = '.';
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            *p++ = (char)('0' + x % 10);
        }
        if (point == nd)
            *p++ = '.';
        if ((x >> 24) % 2)
            p += sprintf(p, "%c%d", (x >> 25) % 2 ? 'e' : 'E', (int)((x >> 28) % 61) - 30);
        *p = '\0';
        len += (size_t)sprintf(text + len, "t,%s,%s\n", txt[i], txt[i]);
    }
    an_csv *c = NULL;
    char err[256] = "";
    ck_assert_msg(an_csv_load(write_file(text, len), &c, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(an_csv_rows(c), n);
    for (size_t i = 0; i < n; i++) {
        double want = strtod(txt[i], NULL);
        double got = an_csv_values(c)[i];
        ck_assert_msg(memcmp(&got, &want, sizeof got) == 0, "'%s': got %.17g want %.17g", txt[i],
                      got, want);
    }
    an_csv_free(c);
    free(text);
    free(txt);

    /* edges of the fast path */
    static const char *const edge[] = {
        "-0", "0", "+0.0", "1.", ".5", "+.5e+3", "-.5E-3", "9007199254740992",
        "9007199254740993", "9007199254740995", "1e22", "1e23", "1e-22", "1e-23",
        "123456789012345678e-22", "1234567890123456789", "12345678901234567890",
        "0.00000000000000000000000000000000000000001", "000000000000000000000000001",
        "4.9406564584124654e-324", "1.7976931348623157e308", "0e999999999",
        "1.0000000000000000000000000000000000001", "3.14159265358979323846264338327950288"};
    char big[4096];
    size_t bl = (size_t)sprintf(big, "timestamp,value,raw_score\n");
    size_t ne = sizeof edge / sizeof edge[0];
    for (size_t i = 0; i < ne; i++)
        bl += (size_t)sprintf(big + bl, "t,%s,0\n", edge[i]);
    c = NULL;
    ck_assert_msg(an_csv_load(write_file(big, bl), &c, err, sizeof err) == 0, "%s", err);
    for (size_t i = 0; i < ne; i++) {
        double want = strtod(edge[i], NULL);
        double got = an_csv_values(c)[i];
        ck_assert_msg(memcmp(&got, &want, sizeof got) == 0, "'%s': got %.17g want %.17g",
                      edge[i], got, want);
    }
    an_csv_free(c);
}
END_TEST

START_TEST(test_varying_timestamp_lengths)
{
    /* Uniform lengths first, then different ones, across the row-array
     * growth (4096 rows), so the offset table is built and grown. */
    size_t n = 10000;
    size_t cap = 64 + n * 40;
    char *text = malloc(cap);
    size_t len = (size_t)sprintf(text, "timestamp,value,raw_score\n");
    for (size_t i = 0; i < n; i++) {
        if (i < 3000)
            len += (size_t)sprintf(text + len, "ts%05zu,%zu,0.5\n", i, i);
        else
            len += (size_t)sprintf(text + len, "t%zu,%zu,0.25\n", i, i);
    }
    an_csv *c = NULL;
    char err[256] = "";
    ck_assert_int_eq(an_csv_load(write_file(text, len), &c, err, sizeof err), 0);
    ck_assert_uint_eq(an_csv_rows(c), n);
    char want[32];
    for (size_t i = 0; i < n; i += 7) {
        if (i < 3000)
            snprintf(want, sizeof want, "ts%05zu", i);
        else
            snprintf(want, sizeof want, "t%zu", i);
        ck_ts(c, i, want);
        ck_assert(an_csv_values(c)[i] == (double)i);
    }
    ck_ts(c, n - 1, "t9999");
    an_csv_free(c);
    free(text);
}
END_TEST

START_TEST(test_large_and_long_lines)
{
    /* More than one read chunk (1 MiB), and one line longer than a chunk. */
    size_t n = 60000;
    size_t big = 3u << 20;
    size_t cap = 64 + n * 40 + big + 64;
    char *text = malloc(cap);
    size_t len = (size_t)sprintf(text, "timestamp,value,raw_score\n");
    for (size_t i = 0; i < n; i++) {
        if (i == 40000) {
            memset(text + len, 'T', big);
            len += big;
            len += (size_t)sprintf(text + len, ",1,0\n");
        } else {
            len += (size_t)sprintf(text + len, "2015-01-01 %08zu,%zu.5,0.%zu\n", i, i, i % 10);
        }
    }
    an_csv *c = NULL;
    char err[256] = "";
    ck_assert_int_eq(an_csv_load(write_file(text, len), &c, err, sizeof err), 0);
    ck_assert_uint_eq(an_csv_rows(c), n);
    size_t tl;
    an_csv_timestamp(c, 40000, &tl);
    ck_assert_uint_eq(tl, big);
    ck_ts(c, 59999, "2015-01-01 00059999");
    ck_assert(an_csv_values(c)[59999] == 59999.5);
    ck_assert(an_csv_raws(c)[59999] == 0.9);
    an_csv_free(c);
    free(text);
}
END_TEST

START_TEST(test_missing_file_and_stdin)
{
    an_csv *c = (an_csv *)1;
    char err[256] = "";
    ck_assert_int_eq(an_csv_load("/nonexistent/dir/x.csv", &c, err, sizeof err), AN_EIO);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/dir/x.csv"));

    /* "-" reads stdin */
    const char *path = write_str("timestamp,value,raw_score\nq,7,0.5\n");
    ck_assert_ptr_nonnull(freopen(path, "rb", stdin));
    ck_assert_int_eq(an_csv_load("-", &c, err, sizeof err), 0);
    ck_assert_uint_eq(an_csv_rows(c), 1);
    ck_ts(c, 0, "q");
    an_csv_free(c);

    /* a stream; messages carry its name */
    FILE *fp = fopen(write_str("timestamp,value,raw_score\nq,z,0.5\n"), "rb");
    ck_assert_int_eq(an_csv_load_stream(fp, "mystream", &c, err, sizeof err), AN_EINVAL);
    fclose(fp);
    ck_assert_str_eq(err, "mystream: line 2: column 'value': 'z' is not a number");
}
END_TEST

START_TEST(test_nab_inputs)
{
    const char *dir = getenv("AN_TEST_DATA");
    char path[1024];
    snprintf(path, sizeof path, "%s/likelihood/htmengine/numenta_nyc_taxi.inputs.csv",
             dir ? dir : AN_SOURCE_DIR "/tests/data");
    an_csv *c = NULL;
    char err[512] = "";
    ck_assert_msg(an_csv_load(path, &c, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(an_csv_rows(c), 10320);
    ck_ts(c, 0, "2014-07-01 00:00:00");
    ck_assert(an_csv_values(c)[0] == 10844.0);
    ck_assert(an_csv_raws(c)[0] == 1.0);
    /* uniform 19-character timestamps: no offset table */
    ck_assert_uint_lt(an_csv_memory(c), 10320 * 36 + 256);
    an_csv_free(c);
}
END_TEST

static Suite *csv_suite(void)
{
    Suite *s = suite_create("csv");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_basic);
    tcase_add_test(tc, test_columns_by_name_extra_and_order);
    tcase_add_test(tc, test_crlf_bom_no_trailing_newline_blank_lines);
    tcase_add_test(tc, test_header_only_and_empty);
    tcase_add_test(tc, test_missing_and_duplicate_columns);
    tcase_add_test(tc, test_non_numeric);
    tcase_add_test(tc, test_nan_inf_rejected);
    tcase_add_test(tc, test_field_count);
    tcase_add_test(tc, test_quotes_rejected);
    tcase_add_test(tc, test_correct_rounding);
    tcase_add_test(tc, test_numbers_match_strtod);
    tcase_add_test(tc, test_varying_timestamp_lengths);
    tcase_add_test(tc, test_large_and_long_lines);
    tcase_add_test(tc, test_missing_file_and_stdin);
    tcase_add_test(tc, test_nab_inputs);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(csv_suite(), CK_NORMAL);
}
