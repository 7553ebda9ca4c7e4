/*
 * fuzz_csv: the NAB CSV loader (an_csv_load_stream), read by anomalyctl
 * likelihood and replay.
 *
 * Input: the file's bytes.
 * Contracts:
 *   - failure: *out NULL, AN_EINVAL or AN_ERANGE (never AN_EIO on a
 *     readable stream), a message that starts with the name and has no
 *     control character;
 *   - success: every value and raw score finite; every timestamp non-empty
 *     and free of ',', '"' and LF (other bytes are kept verbatim); no more rows than lines;
 *     an_csv_memory within 64 bytes per input byte + 64 KiB (no
 *     amplification);
 *   - round trip: the rows written back as a CSV (values with %.17g) load
 *     again to the same rows, bit for bit.
 */
#include <math.h>

#include "an_csv.h"
#include "an_error.h"
#include "fuzz_common.h"

/* The one call into the loader: adapt here when its API changes. */
static int load(FILE *fp, an_csv **out, char *err, size_t len)
{
    return an_csv_load_stream(fp, "fuzz.csv", out, err, len);
}

static FILE *open_bytes(const void *d, size_t n)
{
    /* fmemopen refuses size 0 on older glibc: an empty tmpfile then */
    FILE *f = n ? fmemopen((void *)d, n, "r") : tmpfile();
    FZ_CHECK(f != NULL, "cannot open the input as a stream");
    return f;
}

static void check_same(const an_csv *a, const an_csv *b)
{
    size_t n = an_csv_rows(a);
    FZ_CHECK(an_csv_rows(b) == n, "round trip: %zu rows became %zu", n, an_csv_rows(b));
    for (size_t i = 0; i < n; i++) {
        size_t la, lb;
        const char *ta = an_csv_timestamp(a, i, &la), *tb = an_csv_timestamp(b, i, &lb);
        FZ_CHECK(la == lb && memcmp(ta, tb, la) == 0, "round trip: timestamp %zu", i);
        FZ_CHECK(fz_same_double(an_csv_values(a)[i], an_csv_values(b)[i]) &&
                     fz_same_double(an_csv_raws(a)[i], an_csv_raws(b)[i]),
                 "round trip: row %zu values differ", i);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = open_bytes(data, size);
    an_csv *c = (an_csv *)&c;
    char err[512] = "";
    int rc = load(f, &c, err, sizeof err);
    fclose(f);
    if (rc != 0) {
        FZ_CHECK(c == NULL, "failure left *out set");
        FZ_CHECK(rc == AN_EINVAL || rc == AN_ERANGE, "rc %d: %s", rc, err);
        FZ_CHECK(strncmp(err, "fuzz.csv", 8) == 0, "message without the name: '%s'", err);
        FZ_CHECK(fz_reason_clean(err), "control character in '%s'", err);
        return 0;
    }
    size_t n = an_csv_rows(c), lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    FZ_CHECK(n < lines, "%zu rows from %zu lines", n, lines);
    FZ_CHECK(an_csv_memory(c) <= 64 * size + 65536, "%zu bytes held for a %zu-byte file",
             an_csv_memory(c), size);

    char *out = NULL;
    size_t olen = 0;
    FILE *w = open_memstream(&out, &olen);
    FZ_CHECK(w != NULL, "open_memstream");
    fprintf(w, "timestamp,value,raw_score\n");
    for (size_t i = 0; i < n; i++) {
        size_t tl;
        const char *t = an_csv_timestamp(c, i, &tl);
        double v = an_csv_values(c)[i], r = an_csv_raws(c)[i];
        FZ_CHECK(tl > 0 && !memchr(t, ',', tl) && !memchr(t, '"', tl) &&
                     !memchr(t, '\n', tl),
                 "row %zu: bad timestamp '%.*s'", i, (int)tl, t);
        FZ_CHECK(isfinite(v) && isfinite(r), "row %zu: non-finite value", i);
        fwrite(t, 1, tl, w); /* verbatim, NUL bytes included */
        fprintf(w, ",%.17g,%.17g\n", v, r);
    }
    fclose(w);
    f = open_bytes(out, olen);
    an_csv *c2 = NULL;
    rc = load(f, &c2, err, sizeof err);
    fclose(f);
    FZ_CHECK(rc == 0, "the rows written back do not load: %s", err);
    check_same(c, c2);
    an_csv_free(c2);
    free(out);
    an_csv_free(c);
    return 0;
}
