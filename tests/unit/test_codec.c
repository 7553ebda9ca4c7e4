/* test_codec.c: an_codec (input decoding, producer encoding, output
 * messages, bodies, zlib limits, JSON text). */
#include <check.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlib.h>

#include "an_codec.h"
#include "an_json_mem.h"
#include "an_log.h"
#include "check_main.h"

static char reason[512];

static an_field F(const char *name, const char *value)
{
    an_field f = {name, strlen(name), value, strlen(value)};
    return f;
}

/* Decode {model, batch[, encoding]} from JSON text; returns rc. */
static int dec(const char *model, const char *batch, an_batch **b)
{
    an_field f[2] = {F("model", model), F("batch", batch)};
    reason[0] = '\0';
    return an_batch_decode(f, 2, NULL, b, reason, sizeof reason);
}

/* Expect failure with rc and a reason containing `needle`. */
#define FAILS(batch, rc_expected, needle)                                    \
    do {                                                                     \
        an_batch *b_ = NULL;                                                 \
        int rc_ = dec("m1", batch, &b_);                                     \
        ck_assert_msg(rc_ == (rc_expected), "rc %d for %s (reason %s)", rc_, \
                      batch, reason);                                        \
        ck_assert_ptr_null(b_);                                              \
        ck_assert_msg(strstr(reason, needle) != NULL,                        \
                      "reason '%s' lacks '%s'", reason, needle);             \
    } while (0)

/* ------------------------------------------------------------ decode ok */

START_TEST(iRv2_ok)
{
    an_batch *b = NULL;
    int rc = dec("0123456789abcdef0123456789abcdef",
                 "[[\"iRv2\",1234,0,0.25,null,{\"1\":10.5}],"
                 "[\"iRv2\",1235,0,1,null,null],"
                 "[\"iRv2\",1236,1,null,\"boom\",null]]",
                 &b);
    ck_assert_msg(rc == 0, "%s", reason);
    ck_assert_str_eq(b->model, "0123456789abcdef0123456789abcdef");
    ck_assert_int_eq(b->encoding, AN_ENC_JSON);
    ck_assert_uint_eq(b->n, 3);
    ck_assert_uint_eq(b->n_inference, 3);
    ck_assert_uint_eq(b->n_command, 0);
    an_inference_result *r = &b->results[0].u.inf;
    ck_assert_int_eq(b->results[0].kind, AN_RES_INFERENCE);
    ck_assert_int_eq(r->rowid, 1234);
    ck_assert_int_eq(r->status, 0);
    ck_assert(r->has_score);
    ck_assert(r->score == 0.25);
    ck_assert_ptr_null(r->error);
    ck_assert(!r->legacy);
    /* predictions are kept as their canonical text, no tree */
    ck_assert_ptr_null(r->predictions);
    ck_assert_str_eq(r->predictions_text, "{\"1\":10.5}");
    /* integer score cast to double */
    r = &b->results[1].u.inf;
    ck_assert(r->has_score);
    ck_assert(r->score == 1.0);
    ck_assert_ptr_null(r->predictions);
    ck_assert_ptr_null(r->predictions_text);
    r = &b->results[2].u.inf;
    ck_assert_int_eq(r->status, 1);
    ck_assert(!r->has_score);
    ck_assert_str_eq(r->error, "boom");
    an_batch_free(b);
}
END_TEST

START_TEST(iR_legacy_ok)
{
    an_batch *b = NULL;
    int rc = dec("m1", "[[\"iR\",7,0,0.5,null],[\"iR\",8,3,null,\"err\"]]", &b);
    ck_assert_msg(rc == 0, "%s", reason);
    ck_assert_uint_eq(b->n, 2);
    ck_assert(b->results[0].u.inf.legacy);
    ck_assert_ptr_null(b->results[0].u.inf.predictions);
    ck_assert_ptr_null(b->results[0].u.inf.predictions_text);
    ck_assert(b->results[0].u.inf.score == 0.5);
    ck_assert_int_eq(b->results[1].u.inf.status, 3);
    ck_assert_str_eq(b->results[1].u.inf.error, "err");
    an_batch_free(b);
}
END_TEST

START_TEST(mcR_ok)
{
    an_batch *b = NULL;
    int rc = dec("m1",
                 "[[\"mcR\",\"cmd-1\",\"defineModel\",0,{\"a\":1},null],"
                 "[\"mcR\",\"cmd-2\",\"deleteModel\",0,null,null],"
                 "[\"mcR\",\"cmd-3\",\"defineModel\",2,null,\"exists\"],"
                 "[\"iRv2\",1,0,0.0,null,null]]",
                 &b);
    ck_assert_msg(rc == 0, "%s", reason);
    ck_assert_uint_eq(b->n, 4);
    ck_assert_uint_eq(b->n_command, 3);
    ck_assert_uint_eq(b->n_inference, 1);
    an_command_result *c = &b->results[0].u.cmd;
    ck_assert_int_eq(b->results[0].kind, AN_RES_COMMAND);
    ck_assert_str_eq(c->command_id, "cmd-1");
    ck_assert_str_eq(c->method, "defineModel");
    ck_assert_int_eq(c->status, 0);
    ck_assert(json_is_object(c->args));
    ck_assert_ptr_null(c->error);
    c = &b->results[1].u.cmd;
    ck_assert_ptr_null(c->args);
    c = &b->results[2].u.cmd;
    ck_assert_int_eq(c->status, 2);
    ck_assert_str_eq(c->error, "exists");
    ck_assert_int_eq(b->results[3].kind, AN_RES_INFERENCE);
    an_batch_free(b);
}
END_TEST

START_TEST(unicode_and_escapes)
{
    an_batch *b = NULL;
    const char *batch =
        "[[\"iRv2\",1,1,null,\"caf\\u00e9 \\u2603 \\ud83d\\ude00 tab\\t "
        "nl\\n q\\\" bs\\\\ sl\\/ raw\xc3\xa9\",null]]";
    int rc = dec("m1", batch, &b);
    ck_assert_msg(rc == 0, "%s", reason);
    const char *e = b->results[0].u.inf.error;
    ck_assert_str_eq(e, "caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80 tab\t nl\n "
                        "q\" bs\\ sl/ raw\xc3\xa9");
    /* encode back: control characters escaped, UTF-8 raw, round trip */
    char *out = NULL;
    size_t len = 0;
    rc = an_batch_encode(b->results, b->n, AN_ENC_JSON, &out, &len, reason,
                         sizeof reason);
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_nonnull(strstr(out, "tab\\t nl\\n q\\\" bs\\\\ sl/"));
    ck_assert_ptr_nonnull(strstr(out, "caf\xc3\xa9"));
    an_batch *b2 = NULL;
    rc = dec("m1", out, &b2);
    ck_assert_msg(rc == 0, "%s", reason);
    ck_assert_str_eq(b2->results[0].u.inf.error, e);
    free(out);
    an_batch_free(b2);
    an_batch_free(b);

    /* a control character in a string is escaped as \u00XX */
    json_t *s = json_string("a\x01z\x7f");
    char *t = an_json_dumps(s, NULL);
    ck_assert_str_eq(t, "\"a\\u0001z\\u007f\"");
    free(t);
    json_decref(s);
}
END_TEST

/* ------------------------------------------------------------ decode errors */

START_TEST(errors_signature_arity_types)
{
    FAILS("[[\"iRv2\",1,0,0.1,null,null],[\"iRv2\",2,0,0.1,null,null],"
          "[\"iRv2\",3,0,0.1,null,null],[\"xR\",4]]",
          AN_EINVAL, "batch[3]: unknown result signature 'xR'");
    FAILS("[[\"iRv2\",1,0,0.1,null]]", AN_EINVAL,
          "batch[0]: iRv2 needs 6 elements, got 5");
    FAILS("[[\"iRv2\",1,0,0.1,null,null,7]]", AN_EINVAL, "needs 6 elements");
    FAILS("[[\"iR\",1,0,0.1,null,null]]", AN_EINVAL,
          "iR needs 5 elements, got 6");
    FAILS("[[\"mcR\",\"c\",\"defineModel\",0,null]]", AN_EINVAL,
          "mcR needs 6 elements, got 5");
    FAILS("[[]]", AN_EINVAL, "batch[0]: result signature must be a string");
    FAILS("[[5,1,0,0.1,null,null]]", AN_EINVAL, "signature must be a string");
    FAILS("[{\"a\":1}]", AN_EINVAL, "batch[0]: result must be an array");
    FAILS("[[\"iRv2\",\"1\",0,0.1,null,null]]", AN_EINVAL,
          "rowID must be an integer, got string");
    FAILS("[[\"iRv2\",1.0,0,0.1,null,null]]", AN_EINVAL,
          "rowID must be an integer, got real");
    FAILS("[[\"iRv2\",1,true,0.1,null,null]]", AN_EINVAL,
          "status must be an integer, got boolean");
    FAILS("[[\"iRv2\",1,0,\"0.1\",null,null]]", AN_EINVAL,
          "anomalyScore must be a number or null, got string");
    FAILS("[[\"iRv2\",1,1,null,5,null]]", AN_EINVAL,
          "errorMessage must be a string or null, got integer");
    FAILS("[[\"iRv2\",1,0,0.1,null,[1]]]", AN_EINVAL,
          "multiStepBestPredictions must be an object or null, got array");
    FAILS("[[\"mcR\",7,\"defineModel\",0,null,null]]", AN_EINVAL,
          "commandID must be a string, got integer");
    FAILS("[[\"mcR\",\"c\",null,0,null,null]]", AN_EINVAL,
          "method must be a string, got null");
    FAILS("[[\"mcR\",\"c\",\"defineModel\",\"0\",null,null]]", AN_EINVAL,
          "mcR status must be an integer");
    FAILS("[[\"mcR\",\"c\",\"defineModel\",0,[],null]]", AN_EINVAL,
          "args must be an object or null, got array");
}
END_TEST

START_TEST(errors_invariants)
{
    FAILS("[[\"iRv2\",9,0,null,null,null]]", AN_EINVAL,
          "rowID=9: status 0 needs a numeric anomalyScore");
    FAILS("[[\"iRv2\",9,0,0.5,\"x\",null]]", AN_EINVAL,
          "status 0 with an errorMessage");
    FAILS("[[\"iRv2\",9,1,null,null,null]]", AN_EINVAL,
          "status 1 needs an errorMessage string");
    FAILS("[[\"iRv2\",9,1,0.5,\"x\",null]]", AN_EINVAL,
          "status 1 with an anomalyScore or predictions");
    FAILS("[[\"iRv2\",9,1,null,\"x\",{}]]", AN_EINVAL,
          "with an anomalyScore or predictions");
    FAILS("[[\"iR\",9,0,null,null]]", AN_EINVAL, "iR rowID=9: status 0");
    FAILS("[[\"mcR\",\"c1\",\"defineModel\",0,null,\"x\"]]", AN_EINVAL,
          "commandID=c1: status 0 with an errorMessage");
    FAILS("[[\"mcR\",\"c1\",\"defineModel\",4,null,null]]", AN_EINVAL,
          "status 4 needs an errorMessage string");
    FAILS("[[\"mcR\",\"c1\",\"defineModel\",4,{},\"x\"]]", AN_EINVAL,
          "status 4 with args");
}
END_TEST

START_TEST(errors_json_and_numbers)
{
    FAILS("[]", AN_EINVAL, "batch: empty array");
    FAILS("{\"a\":1}", AN_EINVAL, "batch: must be a JSON array, got object");
    FAILS("[[\"iRv2\",1,0,0.1,null,null]", AN_EINVAL, "batch: invalid JSON");
    FAILS("", AN_EINVAL, "batch: invalid JSON");
    FAILS("[[\"iRv2\",1,0,NaN,null,null]]", AN_EINVAL, "batch: invalid JSON");
    FAILS("[[\"iRv2\",1,0,Infinity,null,null]]", AN_EINVAL,
          "batch: invalid JSON");
    FAILS("[[\"iRv2\",1,0,1e400,null,null]]", AN_EINVAL, "batch: invalid JSON");
    FAILS("[[\"iRv2\",99999999999999999999,0,0.1,null,null]]", AN_EINVAL,
          "batch: invalid JSON");
    FAILS("[[\"iRv2\",1,1,null,\"a\\u0000b\",null]]", AN_EINVAL,
          "batch: invalid JSON");
    FAILS("[[\"iRv2\",1,1,null,\"bad \xff utf8\",null]]", AN_EINVAL,
          "batch: invalid JSON");
    FAILS("[[\"iRv2\",1,0,0.1,null,null]] trailing", AN_EINVAL,
          "batch: invalid JSON");
}
END_TEST

START_TEST(errors_fields)
{
    an_batch *b = NULL;
    const char *ok = "[[\"iRv2\",1,0,0.1,null,null]]";
    an_field f1[1] = {F("batch", ok)};
    ck_assert_int_eq(an_batch_decode(f1, 1, NULL, &b, reason, sizeof reason),
                     AN_EINVAL);
    ck_assert_str_eq(reason, "missing field 'model'");
    an_field f2[1] = {F("model", "m")};
    ck_assert_int_eq(an_batch_decode(f2, 1, NULL, &b, reason, sizeof reason),
                     AN_EINVAL);
    ck_assert_str_eq(reason, "missing field 'batch'");
    an_field f3[3] = {F("model", "m"), F("batch", ok), F("encoding", "gzip")};
    ck_assert_int_eq(an_batch_decode(f3, 3, NULL, &b, reason, sizeof reason),
                     AN_EINVAL);
    ck_assert_str_eq(reason, "unknown encoding 'gzip' (expected json or zlib)");
    an_field f4[4] = {F("model", "m"), F("batch", ok), F("encoding", "json"),
                      F("encoding", "json")};
    ck_assert_int_eq(an_batch_decode(f4, 4, NULL, &b, reason, sizeof reason),
                     AN_EINVAL);
    ck_assert_str_eq(reason, "duplicate field 'encoding'");
    an_field f5[3] = {F("model", "m"), F("batch", ok), F("model", "m2")};
    ck_assert_int_eq(an_batch_decode(f5, 3, NULL, &b, reason, sizeof reason),
                     AN_EINVAL);
    ck_assert_str_eq(reason, "duplicate field 'model'");
    ck_assert_ptr_null(b);
}
END_TEST

START_TEST(errors_model)
{
    an_batch *b = NULL;
    const char *ok = "[[\"iRv2\",1,0,0.1,null,null]]";
    ck_assert_int_eq(dec("", ok, &b), AN_EINVAL);
    ck_assert_str_eq(reason, "model: empty");
    ck_assert_int_eq(dec("0123456789012345678901234567890123456789x", ok, &b),
                     AN_EINVAL);
    ck_assert_ptr_nonnull(strstr(reason, "model: 41 bytes, longer than 40"));
    ck_assert_int_eq(dec("0123456789012345678901234567890123456789", ok, &b),
                     0);
    an_batch_free(b);
    b = NULL;
    ck_assert_int_eq(dec("a b", ok, &b), AN_EINVAL);
    ck_assert_ptr_nonnull(strstr(reason, "model: byte 1 is not printable"));
    ck_assert_int_eq(dec("a\nb", ok, &b), AN_EINVAL);
    ck_assert_ptr_nonnull(strstr(reason, "'a\\x0ab'"));
    /* a model with a NUL byte inside (binary-safe field) */
    an_field f[2] = {{"model", 5, "ab\0c", 4}, F("batch", ok)};
    ck_assert_int_eq(an_batch_decode(f, 2, NULL, &b, reason, sizeof reason),
                     AN_EINVAL);
    ck_assert_ptr_nonnull(strstr(reason, "byte 2 is not printable"));
    ck_assert_ptr_null(b);
}
END_TEST

START_TEST(entry_too_big)
{
    /* a 10 MB entry against the default 4 MiB limit: fails before parsing */
    size_t n = 10u << 20;
    char *big = malloc(n + 1);
    ck_assert_ptr_nonnull(big);
    memset(big, ' ', n);
    big[0] = '[';
    big[n - 1] = ']';
    big[n] = '\0';
    an_batch *b = NULL;
    an_field f[2] = {F("model", "m1"), {"batch", 5, big, n}};
    int rc = an_batch_decode(f, 2, NULL, &b, reason, sizeof reason);
    ck_assert_int_eq(rc, AN_ERANGE);
    ck_assert_ptr_null(b);
    ck_assert_str_eq(reason, "entry is 10485772 bytes, over max_entry_bytes "
                             "(4194304)");
    /* with the limit off it is just an empty batch */
    an_codec_limits lim = {.max_entry_bytes = 0};
    rc = an_batch_decode(f, 2, &lim, &b, reason, sizeof reason);
    ck_assert_int_eq(rc, AN_EINVAL);
    ck_assert_str_eq(reason, "batch: empty array");
    free(big);
}
END_TEST

/* ------------------------------------------------------------ zlib */

START_TEST(zlib_round_trip)
{
    an_result res[3];
    memset(res, 0, sizeof res);
    res[0].kind = AN_RES_COMMAND;
    res[0].u.cmd.command_id = "c-1";
    res[0].u.cmd.method = "defineModel";
    res[1].kind = AN_RES_INFERENCE;
    res[1].u.inf.rowid = 1;
    res[1].u.inf.has_score = true;
    res[1].u.inf.score = 0.1;
    res[1].u.inf.predictions = json_pack("{s:f}", "1", 42.0);
    res[2].kind = AN_RES_INFERENCE;
    res[2].u.inf.rowid = 2;
    res[2].u.inf.status = 1;
    res[2].u.inf.error = "bad";
    res[2].u.inf.legacy = true;

    char *z = NULL;
    size_t zlen = 0;
    int rc = an_batch_encode(res, 3, AN_ENC_ZLIB, &z, &zlen, reason,
                             sizeof reason);
    ck_assert_int_eq(rc, 0);
    ck_assert((unsigned char)z[0] == 0x78); /* zlib header, level 6 */
    ck_assert((unsigned char)z[1] == 0x9c);
    /* an independent inflate gives the JSON text */
    char plain[512];
    uLongf plen = sizeof plain - 1;
    ck_assert_int_eq(uncompress((Bytef *)plain, &plen, (Bytef *)z, zlen),
                     Z_OK);
    plain[plen] = '\0';
    ck_assert_str_eq(plain,
                     "[[\"mcR\",\"c-1\",\"defineModel\",0,null,null],"
                     "[\"iRv2\",1,0,0.1,null,{\"1\":42.0}],"
                     "[\"iR\",2,1,null,\"bad\"]]");

    an_field f[3] = {F("model", "m1"), {"batch", 5, z, zlen},
                     F("encoding", "zlib")};
    an_batch *b = NULL;
    rc = an_batch_decode(f, 3, NULL, &b, reason, sizeof reason);
    ck_assert_msg(rc == 0, "%s", reason);
    ck_assert_int_eq(b->encoding, AN_ENC_ZLIB);
    ck_assert_uint_eq(b->n, 3);
    ck_assert_str_eq(b->results[0].u.cmd.method, "defineModel");
    ck_assert(b->results[1].u.inf.score == 0.1);
    ck_assert_str_eq(b->results[1].u.inf.predictions_text, "{\"1\":42.0}");
    ck_assert(b->results[2].u.inf.legacy);
    an_batch_free(b);
    json_decref(res[1].u.inf.predictions);

    /* truncated */
    f[1].value_len = zlen / 2;
    rc = an_batch_decode(f, 3, NULL, &b, reason, sizeof reason);
    ck_assert_int_eq(rc, AN_EINVAL);
    ck_assert_str_eq(reason, "batch: truncated zlib stream");
    /* trailing bytes */
    char *z2 = malloc(zlen + 3);
    memcpy(z2, z, zlen);
    memcpy(z2 + zlen, "xyz", 3);
    f[1].value = z2;
    f[1].value_len = zlen + 3;
    rc = an_batch_decode(f, 3, NULL, &b, reason, sizeof reason);
    ck_assert_int_eq(rc, AN_EINVAL);
    ck_assert_str_eq(reason, "batch: 3 trailing bytes after the zlib stream");
    /* corrupt: flip a byte in the middle of the deflate data */
    memcpy(z2, z, zlen);
    z2[zlen / 2] ^= 0x55;
    z2[zlen / 2 + 1] ^= 0xaa;
    f[1].value_len = zlen;
    rc = an_batch_decode(f, 3, NULL, &b, reason, sizeof reason);
    ck_assert_int_eq(rc, AN_EINVAL);
    ck_assert_msg(strstr(reason, "batch: corrupt zlib stream") ||
                      strstr(reason, "batch: invalid JSON"),
                  "%s", reason);
    /* not zlib at all */
    an_field f2[3] = {F("model", "m1"), F("batch", "[[\"iRv2\"]]"),
                      F("encoding", "zlib")};
    rc = an_batch_decode(f2, 3, NULL, &b, reason, sizeof reason);
    ck_assert_int_eq(rc, AN_EINVAL);
    ck_assert_str_eq(reason,
                     "batch: corrupt zlib stream (incorrect header check)");
    /* empty */
    an_field f3[3] = {F("model", "m1"), F("batch", ""), F("encoding", "zlib")};
    rc = an_batch_decode(f3, 3, NULL, &b, reason, sizeof reason);
    ck_assert_int_eq(rc, AN_EINVAL);
    ck_assert_str_eq(reason, "batch: truncated zlib stream");
    ck_assert_ptr_null(b);
    free(z2);
    free(z);
}
END_TEST

/* Compress `total` zero bytes with streaming deflate (no big buffer). */
static char *zeros_bomb(size_t total, size_t *outlen)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    ck_assert_int_eq(deflateInit(&zs, 9), Z_OK);
    static char zeros[1 << 16];
    size_t cap = total / 500 + 4096, used = 0;
    char *out = malloc(cap);
    size_t left = total;
    int flush;
    do {
        size_t chunk = left < sizeof zeros ? left : sizeof zeros;
        left -= chunk;
        flush = left ? Z_NO_FLUSH : Z_FINISH;
        zs.next_in = (Bytef *)zeros;
        zs.avail_in = (uInt)chunk;
        do {
            if (cap - used < 65536) {
                cap *= 2;
                char *nout = realloc(out, cap);
                ck_assert_ptr_nonnull(nout);
                out = nout;
            }
            zs.next_out = (Bytef *)out + used;
            zs.avail_out = (uInt)(cap - used);
            int zr = deflate(&zs, flush);
            ck_assert(zr != Z_STREAM_ERROR);
            used = cap - zs.avail_out;
        } while (zs.avail_out == 0 || (flush == Z_FINISH && zs.avail_in));
    } while (flush != Z_FINISH);
    deflateEnd(&zs);
    *outlen = used;
    return out;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* an_zlib_compress at and past the size where it switches deflate states
 * (16 KiB), on text that does not compress (the small state's shorter
 * blocks need more than compressBound's room) and on text that does: every
 * output inflates back to the input, with zlib's own one-shot uncompress. */
START_TEST(zlib_state_sizes)
{
    const size_t sizes[] = {0, 1, 400, (16 << 10) - 1, 16 << 10, (16 << 10) + 1, 200 << 10};
    char reason[256];
    for (int compressible = 0; compressible < 2; compressible++) {
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            size_t n = sizes[k];
            char *in = malloc(n + 1);
            uint32_t x = 2463534242u;
            for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                in[i] = compressible ? "{\"rowid\":12,\"ts\":1.5}"[i % 22] : (char)(x >> 24);
            }
            char *z = NULL;
            size_t zlen = 0;
            ck_assert_int_eq(an_zlib_compress(in, n, &z, &zlen, reason, sizeof reason), 0);
            ck_assert((unsigned char)z[0] == 0x78 && (unsigned char)z[1] == 0x9c);
            if (compressible && n > 1000)
                ck_assert_msg(zlen < n / 20, "%zu bytes deflated to %zu", n, zlen);
            char *back = malloc(n + 1);
            uLongf blen = n + 1;
            ck_assert_int_eq(uncompress((Bytef *)back, &blen, (Bytef *)z, zlen), Z_OK);
            ck_assert_uint_eq(blen, n);
            ck_assert(memcmp(back, in, n) == 0);
            free(back);
            free(z);
            free(in);
        }
    }
}
END_TEST

START_TEST(zlib_bomb)
{
    size_t zlen = 0;
    char *z = zeros_bomb((size_t)200 << 20, &zlen);
    ck_assert_msg(zlen < (size_t)1 << 20, "bomb is %zu bytes", zlen);
    an_field f[3] = {F("model", "m1"), {"batch", 5, z, zlen},
                     F("encoding", "zlib")};
    an_codec_limits lim = {.max_entry_bytes = AN_CODEC_DEFAULT_MAX_ENTRY_BYTES,
                           .max_inflated_bytes = 1u << 20};
    an_batch *b = NULL;
    double t0 = now_s();
    int rc = an_batch_decode(f, 3, &lim, &b, reason, sizeof reason);
    double dt = now_s() - t0;
    ck_assert_int_eq(rc, AN_ERANGE);
    ck_assert_ptr_null(b);
    ck_assert_str_eq(reason, "batch: zlib stream inflates beyond "
                             "max_inflated_bytes (1048576)");
    ck_assert_msg(dt < 0.5, "took %.3f s", dt); /* stops at the limit */

    /* default limit (32 MiB) also stops it */
    rc = an_batch_decode(f, 3, NULL, &b, reason, sizeof reason);
    ck_assert_int_eq(rc, AN_ERANGE);
    ck_assert_ptr_nonnull(strstr(reason, "max_inflated_bytes (33554432)"));

    /* raw helper: exactly at the limit is fine, one over is not */
    char *o = NULL;
    size_t olen = 0;
    char *z2;
    size_t z2len;
    z2 = zeros_bomb(1000, &z2len);
    ck_assert_int_eq(an_zlib_inflate(z2, z2len, 1000, &o, &olen, reason,
                                     sizeof reason),
                     0);
    ck_assert_uint_eq(olen, 1000);
    ck_assert_int_eq(o[1000], 0);
    free(o);
    ck_assert_int_eq(an_zlib_inflate(z2, z2len, 999, &o, &olen, reason,
                                     sizeof reason),
                     AN_ERANGE);
    ck_assert_ptr_null(o);
    free(z2);
    free(z);
}
END_TEST

/* ------------------------------------------------------------ doubles */

START_TEST(doubles_round_trip)
{
    const double v[] = {0.1, 1.0 / 3, 2.0 / 3, 5e-324, 2.2250738585072014e-308,
                        1.7976931348623157e308, -0.0, 0.0, 1.0, -1.5,
                        123456789.123456789, 1e21, 1e22, 9007199254740993.0,
                        0.30000000000000004, 1e-7, 100.0, 1431648000.123456,
                        0.99999, 1.0 - 0.99999, 4.35, 2.675};
    char buf[40];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        an_codec_fmt_double(buf, sizeof buf, v[i]);
        double back = strtod(buf, NULL);
        ck_assert_msg(memcmp(&back, &v[i], sizeof back) == 0,
                      "%.17g -> %s -> %.17g", v[i], buf, back);
        ck_assert_msg(strpbrk(buf, ".e"), "%s is not a real", buf);
        /* and through an_json_dumps + jansson */
        json_t *j = json_real(v[i]);
        char *t = an_json_dumps(j, NULL);
        json_t *j2 = json_loads(t, JSON_DECODE_ANY, NULL);
        ck_assert_ptr_nonnull(j2);
        ck_assert(json_is_real(j2));
        double b2 = json_real_value(j2);
        ck_assert_msg(memcmp(&b2, &v[i], sizeof b2) == 0, "%s", t);
        free(t);
        json_decref(j);
        json_decref(j2);
    }
    ck_assert_str_eq(an_codec_fmt_double(buf, sizeof buf, 0.1), "0.1");
    ck_assert_str_eq(an_codec_fmt_double(buf, sizeof buf, 1.0), "1.0");
    ck_assert_str_eq(an_codec_fmt_double(buf, sizeof buf, 1e22), "1e+22");
    ck_assert_str_eq(an_codec_fmt_double(buf, sizeof buf, 1.0 - 0.99999),
                     "9.99999999995449e-06");
    ck_assert_str_eq(an_codec_fmt_double(buf, sizeof buf, -0.0), "-0.0");
    /* non-finite numbers cannot be serialized */
    json_t *a = json_array();
    json_array_append_new(a, json_integer(1));
    ck_assert_ptr_null(json_real(NAN)); /* jansson refuses them up front */
    char *t = an_json_dumps(a, NULL);
    ck_assert_str_eq(t, "[1]");
    free(t);
    json_decref(a);
}
END_TEST

/* ------------------------------------------------------------ messages */

static void assert_keys(const json_t *o, const char *const *keys, size_t n)
{
    ck_assert(json_is_object(o));
    ck_assert_uint_eq(json_object_size(o), n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(json_object_get(o, keys[i]) != NULL, "missing %s",
                      keys[i]);
}

/* The inference message msg of the three rows of inference_message:
 * its keys, its metric (spec) and each row's values and predictions
 * (pred). */
static void check_inference_shape(const json_t *msg, const json_t *spec, const json_t *pred)
{
    static const char *top[] = {"metric", "results"};
    static const char *mk[] = {"uid",      "name",       "description",
                               "resource", "location",   "datasource",
                               "spec"};
    static const char *rk[] = {"rowid",      "ts",      "value",
                               "rawAnomaly", "anomaly", "multiStepBestPredictions"};
    assert_keys(msg, top, 2);
    const json_t *metric = json_object_get(msg, "metric");
    assert_keys(metric, mk, 7);
    ck_assert_str_eq(json_string_value(json_object_get(metric, "resource")),
                     "server1");
    ck_assert(json_is_null(json_object_get(metric, "description")));
    ck_assert(json_equal(json_object_get(metric, "spec"), spec));
    const json_t *results = json_object_get(msg, "results");
    ck_assert_uint_eq(json_array_size(results), 3);
    for (size_t i = 0; i < 3; i++)
        assert_keys(json_array_get(results, i), rk, 6);
    const json_t *r0 = json_array_get(results, 0);
    ck_assert_int_eq(json_integer_value(json_object_get(r0, "rowid")), 101);
    ck_assert(json_real_value(json_object_get(r0, "ts")) == 1431648000.123456);
    ck_assert(json_equal(json_object_get(r0, "multiStepBestPredictions"),
                         pred));
    const json_t *r1 = json_array_get(results, 1);
    ck_assert(json_real_value(json_object_get(
                  json_object_get(r1, "multiStepBestPredictions"), "1")) ==
              3.5);
    ck_assert(json_is_null(json_object_get(json_array_get(results, 2),
                                           "multiStepBestPredictions")));
}

/* msg as a json body: the exact text. */
static void check_body_json(const json_t *msg)
{
    char *body = NULL;
    size_t blen = 0;
    ck_assert_int_eq(an_body_encode(msg, AN_ENC_JSON, &body, &blen, reason,
                                    sizeof reason),
                     0);
    ck_assert_str_eq(body,
                     "{\"metric\":{\"uid\":\"u1\",\"name\":\"cpu\","
                     "\"description\":null,\"resource\":\"server1\","
                     "\"location\":\"loc\",\"datasource\":\"custom\","
                     "\"spec\":{\"uid\":\"u1\",\"userInfo\":{\"symbol\":\"X\"}}},"
                     "\"results\":[{\"rowid\":101,\"ts\":1431648000.123456,"
                     "\"value\":12.0,\"rawAnomaly\":0.5,\"anomaly\":0.25,"
                     "\"multiStepBestPredictions\":{\"1\":12.5}},"
                     "{\"rowid\":102,\"ts\":1431648300.0,\"value\":13.0,"
                     "\"rawAnomaly\":1.0,\"anomaly\":0.99999,"
                     "\"multiStepBestPredictions\":{\"1\":3.5}},"
                     "{\"rowid\":103,\"ts\":1431648600.0,\"value\":14.0,"
                     "\"rawAnomaly\":0.0,\"anomaly\":0.0,"
                     "\"multiStepBestPredictions\":null}]}");
    free(body);
}

/* msg as a zlib body, decoded back through an output entry; a truncated or
 * missing body is refused. */
static void check_body_zlib(json_t *msg)
{
    char *body = NULL;
    size_t blen = 0;
    ck_assert_int_eq(an_body_encode(msg, AN_ENC_ZLIB, &body, &blen, reason,
                                    sizeof reason),
                     0);
    an_field of[6] = {F("dataType", AN_DATATYPE_INFERENCE),
                      F("model", "u1"),
                      F("rows", "101-103"),
                      F("source", "1-0"),
                      F("encoding", "zlib"),
                      {"body", 4, body, blen}};
    json_t *dec = NULL;
    ck_assert_int_eq(an_output_entry_decode("5-1", of, 6, 0, &dec, reason,
                                            sizeof reason),
                     0);
    static const char *ok[] = {"id",     "dataType", "model", "rows",
                               "source", "encoding", "body"};
    assert_keys(dec, ok, 7);
    ck_assert_str_eq(json_string_value(json_object_get(dec, "id")), "5-1");
    ck_assert_str_eq(json_string_value(json_object_get(dec, "rows")),
                     "101-103");
    ck_assert(json_equal(json_object_get(dec, "body"), msg));
    json_decref(dec);
    /* bad body */
    of[5].value_len = blen - 4;
    ck_assert_int_eq(an_output_entry_decode("5-1", of, 6, 0, &dec, reason,
                                            sizeof reason),
                     AN_EINVAL);
    ck_assert_str_eq(reason, "body: truncated zlib stream");
    ck_assert_int_eq(an_output_entry_decode("5-1", of, 5, 0, &dec, reason,
                                            sizeof reason),
                     AN_EINVAL);
    ck_assert_str_eq(reason, "missing field 'body'");
    free(body);
}

/* an_msg_inference refuses non-finite values, predictions text that is not
 * an object and a metric without spec; the spec may come from the
 * parameters column or from its text. m and rows are the ones of
 * inference_message (changed here). */
static void check_inference_errors(an_metric_info *m, an_out_row *rows)
{
    json_t *msg;
    /* errors: non-finite, bad predictions text, no spec */
    rows[0].value = NAN;
    ck_assert_int_eq(an_msg_inference(m, rows, 1, &msg, reason, sizeof reason), AN_EINVAL);
    ck_assert_ptr_nonnull(strstr(reason, "non-finite"));
    rows[0].value = 1;
    rows[1].predictions_json = "[1]";
    ck_assert_int_eq(an_msg_inference(m, rows, 2, &msg, reason, sizeof reason), AN_EINVAL);
    ck_assert_ptr_nonnull(strstr(reason, "must be a JSON object"));
    m->spec = NULL;
    ck_assert_int_eq(an_msg_inference(m, rows, 1, &msg, reason, sizeof reason), AN_EINVAL);
    ck_assert_str_eq(reason, "metric.spec: required");
    /* spec from the parameters column */
    json_t *sp = NULL;
    ck_assert_int_eq(an_metric_spec_from_parameters(
                         "{\"metricSpec\":{\"uid\":\"u1\"},\"modelParams\":{}}",
                         &sp, reason, sizeof reason),
                     0);
    m->spec = sp;
    ck_assert_int_eq(an_msg_inference(m, rows, 0, &msg, reason, sizeof reason), 0);
    ck_assert_ptr_nonnull(msg);
    ck_assert_uint_eq(json_array_size(json_object_get(msg, "results")), 0);
    json_decref(msg);
    json_decref(sp);
    m->spec = NULL;
    m->spec_json = "{\"uid\":\"u1\"}";
    ck_assert_int_eq(an_msg_inference(m, rows, 0, &msg, reason, sizeof reason), 0);
    ck_assert_ptr_nonnull(msg);
    json_decref(msg);
    ck_assert_int_eq(an_metric_spec_from_parameters("{}", &sp, reason,
                                                    sizeof reason),
                     AN_EINVAL);
}

START_TEST(inference_message)
{
    json_t *spec = json_pack("{s:s,s:{s:s}}", "uid", "u1", "userInfo",
                             "symbol", "X");
    an_metric_info m = {"u1", "cpu", NULL, "server1", "loc", "custom", spec,
                        NULL};
    json_t *pred = json_pack("{s:f}", "1", 12.5);
    an_out_row rows[3] = {
        {101, 1431648000.123456, 12.0, 0.5, 0.25, pred, NULL, false},
        {102, 1431648300.0, 13.0, 1.0, 0.99999, NULL, "{\"1\": 3.5}", false},
        {103, 1431648600.0, 14.0, 0.0, 0.0, NULL, "null", false},
    };
    json_t *msg;
    ck_assert_int_eq(an_msg_inference(&m, rows, 3, &msg, reason, sizeof reason), 0);
    ck_assert_msg(msg != NULL, "%s", reason);
    check_inference_shape(msg, spec, pred);
    /* body encodings: json text and zlib, decoded back via an output entry */
    check_body_json(msg);
    check_body_zlib(msg);
    json_decref(msg);
    check_inference_errors(&m, rows);
    json_decref(pred);
    json_decref(spec);
}
END_TEST

START_TEST(command_message)
{
    an_cmd_msg c = {0};
    c.method = "deleteModel";
    c.model_id = "u1";
    c.command_id = "cmd-9";
    json_t *msg;
    ck_assert_int_eq(an_msg_command(&c, &msg, reason, sizeof reason), 0);
    ck_assert_ptr_nonnull(msg);
    static const char *k5[] = {"method", "modelId", "commandId", "status",
                               "errorMessage"};
    assert_keys(msg, k5, 5);
    ck_assert(json_is_null(json_object_get(msg, "errorMessage")));
    char *t = an_json_dumps(msg, NULL);
    ck_assert_str_eq(t, "{\"method\":\"deleteModel\",\"modelId\":\"u1\","
                        "\"commandId\":\"cmd-9\",\"status\":0,"
                        "\"errorMessage\":null}");
    free(t);
    json_decref(msg);

    c.method = "defineModel";
    c.status = 2;
    c.error_message = "already exists";
    ck_assert_int_eq(an_msg_command(&c, &msg, reason, sizeof reason), 0);
    assert_keys(msg, k5, 5);
    ck_assert_int_eq(json_integer_value(json_object_get(msg, "status")), 2);
    json_decref(msg);

    c.status = 0;
    c.error_message = NULL;
    c.has_model_info = true;
    c.metric_name = "cpu";
    c.resource = "server1";
    c.model_spec_json = "{\"metricSpec\":{\"uid\":\"u1\"},\"modelParams\":{}}";
    ck_assert_int_eq(an_msg_command(&c, &msg, reason, sizeof reason), 0);
    ck_assert_msg(msg != NULL, "%s", reason);
    static const char *k6[] = {"method", "modelId",      "commandId",
                               "status", "errorMessage", "modelInfo"};
    static const char *mi[] = {"metricName", "resource", "modelSpec"};
    assert_keys(msg, k6, 6);
    assert_keys(json_object_get(msg, "modelInfo"), mi, 3);
    ck_assert_ptr_nonnull(json_object_get(
        json_object_get(json_object_get(msg, "modelInfo"), "modelSpec"),
        "metricSpec"));
    json_decref(msg);

    c.model_spec_json = "not json";
    ck_assert_int_eq(an_msg_command(&c, &msg, reason, sizeof reason), AN_EINVAL);
    c.model_spec_json = NULL;
    ck_assert_int_eq(an_msg_command(&c, &msg, reason, sizeof reason), AN_EINVAL);
    c.command_id = NULL;
    ck_assert_int_eq(an_msg_command(&c, &msg, reason, sizeof reason), AN_EINVAL);
}
END_TEST

START_TEST(output_entry_json_encoding)
{
    an_field of[4] = {F("dataType", AN_DATATYPE_COMMAND), F("model", "u1"),
                      F("source", "1-1"), F("body", "{\"status\":0}")};
    json_t *dec = NULL;
    ck_assert_int_eq(
        an_output_entry_decode(NULL, of, 4, 0, &dec, reason, sizeof reason),
        0);
    ck_assert(json_is_null(json_object_get(dec, "id")));
    ck_assert(json_is_null(json_object_get(dec, "rows")));
    ck_assert_str_eq(json_string_value(json_object_get(dec, "encoding")),
                     "json");
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(dec, "body"),
                                           "status")),
        0);
    json_decref(dec);
}
END_TEST

START_TEST(encoding_names)
{
    an_encoding e;
    ck_assert_int_eq(an_encoding_parse("zlib", 4, &e), 0);
    ck_assert_int_eq(e, AN_ENC_ZLIB);
    ck_assert_int_eq(an_encoding_parse("json", 4, &e), 0);
    ck_assert_int_eq(e, AN_ENC_JSON);
    ck_assert_int_eq(an_encoding_parse("JSON", 4, &e), AN_EINVAL);
    ck_assert_int_eq(an_encoding_parse("jso", 3, &e), AN_EINVAL);
    ck_assert_str_eq(an_encoding_name(AN_ENC_ZLIB), "zlib");
    ck_assert_str_eq(an_encoding_name(AN_ENC_JSON), "json");
}
END_TEST

/* ------------------------------------------------ hostile input (issue 9) */

/* Decode with limits; returns rc. */
static int dec_lim(const char *batch, size_t len, an_encoding enc,
                   const an_codec_limits *lim, an_batch **b)
{
    an_field f[3] = {F("model", "m1"), {"batch", 5, batch, len},
                     F("encoding", enc == AN_ENC_ZLIB ? "zlib" : "json")};
    reason[0] = '\0';
    *b = NULL;
    return an_batch_decode(f, 3, lim, b, reason, sizeof reason);
}

/* Case 8: rowIDs are metric_data rowids (a PostgreSQL integer from 1). */
START_TEST(rowid_range)
{
    FAILS("[[\"iRv2\",-9223372036854775808,0,0.5,null,null]]", AN_EINVAL,
          "batch[0]: iRv2 rowID -9223372036854775808 is outside 1..2147483647");
    FAILS("[[\"iRv2\",0,0,0.5,null,null]]", AN_EINVAL, "rowID 0 is outside 1..2147483647");
    FAILS("[[\"iRv2\",-1,0,0.5,null,null]]", AN_EINVAL, "rowID -1 is outside");
    FAILS("[[\"iR\",2147483648,0,0.5,null]]", AN_EINVAL,
          "iR rowID 2147483648 is outside 1..2147483647");
    FAILS("[[\"iRv2\",9223372036854775807,0,0.5,null,null]]", AN_EINVAL,
          "rowID 9223372036854775807 is outside");
    an_batch *b = NULL;
    ck_assert_msg(dec("m1", "[[\"iRv2\",1,0,0.5,null,null],"
                            "[\"iRv2\",2147483647,0,0.5,null,null]]", &b) == 0, "%s", reason);
    ck_assert_int_eq(b->results[0].u.inf.rowid, 1);
    ck_assert_int_eq(b->results[1].u.inf.rowid, 2147483647);
    an_batch_free(b);
}
END_TEST

/* Case 4: a raw anomaly score is in [0, 1]; finite is not enough. */
START_TEST(score_range)
{
    FAILS("[[\"iRv2\",3,0,1e200,null,null]]", AN_EINVAL,
          "batch[0]: iRv2 rowID=3: anomalyScore 1e+200 is outside [0, 1]");
    FAILS("[[\"iRv2\",3,0,-0.1,null,null]]", AN_EINVAL, "anomalyScore -0.1 is outside [0, 1]");
    FAILS("[[\"iRv2\",3,0,1.0000000000000002,null,null]]", AN_EINVAL,
          "anomalyScore 1.0000000000000002 is outside [0, 1]");
    FAILS("[[\"iRv2\",3,0,2,null,null]]", AN_EINVAL, "anomalyScore 2.0 is outside [0, 1]");
    FAILS("[[\"iRv2\",1,0,0.5,null,null],[\"iR\",2,0,-1e-300,null]]", AN_EINVAL,
          "batch[1]: iR rowID=2: anomalyScore -1e-300 is outside [0, 1]");
    an_batch *b = NULL;
    ck_assert_msg(dec("m1", "[[\"iRv2\",1,0,0,null,null],[\"iRv2\",2,0,1,null,null],"
                            "[\"iRv2\",3,0,1.0,null,null],[\"iRv2\",4,0,0.0,null,null]]",
                      &b) == 0, "%s", reason);
    ck_assert(b->results[0].u.inf.score == 0.0 && b->results[1].u.inf.score == 1.0);
    an_batch_free(b);
}
END_TEST

/* Case 2: results per entry, at and past the limit. */
START_TEST(max_results_limit)
{
    const char *three = "[[\"iRv2\",1,0,0.5,null,null],[\"iRv2\",2,0,0.5,null,null],"
                        "[\"mcR\",\"c\",\"m\",0,null,null]]";
    an_codec_limits lim = an_codec_limits_default();
    ck_assert_uint_eq(lim.max_results, AN_CODEC_DEFAULT_MAX_RESULTS);
    lim.max_results = 3;
    an_batch *b = NULL;
    ck_assert_msg(dec_lim(three, strlen(three), AN_ENC_JSON, &lim, &b) == 0, "%s", reason);
    an_batch_free(b);
    lim.max_results = 2;
    ck_assert_int_eq(dec_lim(three, strlen(three), AN_ENC_JSON, &lim, &b), AN_ERANGE);
    ck_assert_ptr_null(b);
    ck_assert_str_eq(reason, "batch: 3 results, over max_results (2)");
}
END_TEST

/* Case 2: JSON nodes counted on the text (values and keys; brackets,
 * quotes and escapes inside strings do not count), at and past the
 * limit, before any parsing. */
START_TEST(max_json_nodes_limit)
{
    /* 2 arrays, "iRv2" 1 0 0.5, "x[{\"", object, key, array, 1.5e-3, "a\"[{,:" = 12:
     * the entry is invalid (status 0 with an errorMessage), which only the
     * parser finds, so at the limit the reason is the parser's. */
    const char *t = "[[\"iRv2\",1,0,0.5,\"x[{\\\"\",{\"k]}\":[1.5e-3,\"a\\\"[{,:\"]}]]";
    an_codec_limits lim = an_codec_limits_default();
    ck_assert_uint_eq(lim.max_json_nodes, AN_CODEC_DEFAULT_MAX_JSON_NODES);
    lim.max_json_nodes = 12;
    an_batch *b = NULL;
    ck_assert_int_eq(dec_lim(t, strlen(t), AN_ENC_JSON, &lim, &b), AN_EINVAL);
    ck_assert_msg(strstr(reason, "status 0 with an errorMessage"), "%s", reason);
    lim.max_json_nodes = 11;
    ck_assert_int_eq(dec_lim(t, strlen(t), AN_ENC_JSON, &lim, &b), AN_ERANGE);
    ck_assert_str_eq(reason, "batch: more than 11 JSON nodes, over max_json_nodes (11)");
    /* a valid one: 2 arrays, "iRv2" 1 0 0.5 null, {"1":10.5} (3) = 10 */
    const char *v = "[[\"iRv2\",1,0,0.5,null,{\"1\":10.5}]]";
    lim.max_json_nodes = 10;
    ck_assert_msg(dec_lim(v, strlen(v), AN_ENC_JSON, &lim, &b) == 0, "%s", reason);
    ck_assert_str_eq(b->results[0].u.inf.predictions_text, "{\"1\":10.5}");
    an_batch_free(b);
    lim.max_json_nodes = 9;
    ck_assert_int_eq(dec_lim(v, strlen(v), AN_ENC_JSON, &lim, &b), AN_ERANGE);
}
END_TEST

/* Case 2 as reported: a small zlib entry whose predictions inflate to
 * millions of tiny arrays is refused on its node count, with the default
 * limits, before a tree is built. */
START_TEST(amplification_predictions)
{
    size_t n = 4u << 20; /* 4M "[]," = 12 MiB of text, under max_inflated_bytes */
    const char *head = "[[\"iRv2\",1,0,0.5,null,{\"1\":[";
    const char *tail = "[]]}]]";
    size_t len = strlen(head) + 3 * n + strlen(tail);
    char *text = malloc(len + 1);
    ck_assert_ptr_nonnull(text);
    char *p = text + strlen(head);
    memcpy(text, head, strlen(head));
    for (size_t i = 0; i < n; i++, p += 3)
        memcpy(p, "[],", 3);
    memcpy(p, tail, strlen(tail) + 1);
    char *z = NULL;
    size_t zlen = 0;
    ck_assert_int_eq(an_zlib_compress(text, len, &z, &zlen, reason, sizeof reason), 0);
    free(text);
    ck_assert_msg(zlen < 64u << 10, "%zu", zlen);
    an_batch *b = NULL;
    ck_assert_int_eq(dec_lim(z, zlen, AN_ENC_ZLIB, NULL, &b), AN_ERANGE);
    ck_assert_ptr_null(b);
    ck_assert_str_eq(reason, "batch: more than 250000 JSON nodes, over max_json_nodes (250000)");
    free(z);
}
END_TEST

/* What the service's group budget adds up. */
START_TEST(decoded_bytes)
{
    an_batch *b = NULL;
    ck_assert_msg(dec("m1", "[[\"iRv2\",1,0,0.5,null,{\"1\":1}],[\"iRv2\",2,1,null,\"boom\",null],"
                            "[\"mcR\",\"c-1\",\"defineModel\",0,null,null]]", &b) == 0,
                  "%s", reason);
    size_t want = sizeof *b + 3 * sizeof *b->results + sizeof "{\"1\":1}" + sizeof "boom" +
                  sizeof "c-1" + sizeof "defineModel";
    ck_assert_uint_eq(b->decoded_bytes, want);
    an_batch_free(b);
}
END_TEST

/* Case 7: reasons quote input text escaped. */
START_TEST(reasons_escaped)
{
    FAILS("[[\"x\\nINFO forged\\u001b[31m\",1]]", AN_EINVAL,
          "unknown result signature 'x\\x0aINFO forged\\x1b[31m'");
    FAILS("[[\"mcR\",\"c\\r\\n\\u0007\",\"m\",0,null,\"e\"]]", AN_EINVAL,
          "mcR commandID=c\\x0d\\x0a\\x07: status 0 with an errorMessage");
    an_field f[3] = {F("model", "m1"), F("batch", "[]"), F("encoding", "zl\nib")};
    ck_assert_int_eq(an_batch_decode(f, 3, NULL, &(an_batch *){NULL}, reason, sizeof reason),
                     AN_EINVAL);
    ck_assert_str_eq(reason, "unknown encoding 'zl\\x0aib' (expected json or zlib)");
    for (const char *c = reason; *c; c++)
        ck_assert((unsigned char)*c >= 0x20);
}
END_TEST

/* Case 7: the one escaping function for input text in logs and reasons. */
START_TEST(escape_text)
{
    char o[64];
    const char *in = "a\nb\rc\x1b[2Jd\\e\x7f";
    ck_assert_str_eq(an_escape(o, sizeof o, in, strlen(in), 0),
                     "a\\x0ab\\x0dc\\x1b[2Jd\\x5ce\\x7f");
    /* UTF-8 kept; C1 controls (CSI U+009B), malformed and overlong bytes,
     * surrogates escaped */
    const char *u = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\xc2\x9b|\xff|\xc0\xaf|\xed\xa0\x80|\xc3";
    ck_assert_str_eq(an_escape(o, sizeof o, u, strlen(u), 0),
                     "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\\xc2\\x9b|\\xff|\\xc0\\xaf|"
                     "\\xed\\xa0\\x80|\\xc3");
    /* binary safe: a NUL byte is escaped, not an end */
    ck_assert_str_eq(an_escape(o, sizeof o, "a\0b", 3, 0), "a\\x00b");
    /* cut at max_in, or when dst is full: "..." and never half an escape */
    ck_assert_str_eq(an_escape(o, sizeof o, "abcdef", 6, 3), "abc...");
    ck_assert_str_eq(an_escape(o, 10, "\n\n\n\n", 4, 0), "\\x0a...");
    ck_assert_str_eq(an_escape(o, 8, "abcdefgh", 8, 0), "abcd...");
    ck_assert_str_eq(an_escape(o, 9, "abcdefgh", 8, 0), "abcdefgh");
    ck_assert_str_eq(an_escape(o, 2, "abc", 3, 0), ".");
    ck_assert_str_eq(an_escape(o, 1, "abc", 3, 0), "");
    ck_assert_str_eq(an_escape(o, sizeof o, "", 0, 0), "");
    /* every byte value: no control byte survives */
    char all[256], big[4 * 256 + 4];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    an_escape(big, sizeof big, all, sizeof all, 0);
    for (const unsigned char *c = (const unsigned char *)big; *c; c++)
        ck_assert_msg(*c >= 0x20 && *c != 0x7f, "byte %02x", *c);
}
END_TEST

/* The text builder the service publishes with: byte for byte the tree's
 * dump; canonical predictions texts are spliced verbatim, others parsed. */
START_TEST(inference_message_text)
{
    json_t *spec = json_pack("{s:s,s:{s:s}}", "uid", "u1", "userInfo", "symbol", "X\n\"y");
    an_metric_info m = {"u1", "cpu", NULL, "server1", NULL, "custom", spec, NULL};
    json_t *pred = json_pack("{s:f,s:[i,s]}", "1", 12.5, "2", 3, "\x1b");
    an_out_row rows[5] = {
        {101, 1431648000.123456, 12.0, 0.5, 0.25, pred, NULL, false},
        {102, 1431648300.0, 13.0, 1.0, 0.99999, NULL, "{\"1\": 3.50, \"k\":\"\\u00e9\"}", false},
        {103, 1431648600.0, 14.0, 0.0, 0.0, NULL, "null", false},
        {104, 1e300, -0.0, 1e-300, 0.5, NULL, NULL, false},
        {2147483647, 1431649200.5, 1.0, 0.1, 0.2, NULL, "{\"1\":1.5}", true},
    };
    json_t *msg;
    ck_assert_int_eq(an_msg_inference(&m, rows, 5, &msg, reason, sizeof reason), 0);
    ck_assert_msg(msg != NULL, "%s", reason);
    size_t tlen = 0, len = 0;
    char *tree = an_json_dumps(msg, &tlen);
    char *text;
    ck_assert_int_eq(an_msg_inference_text(&m, rows, 5, &text, &len, reason, sizeof reason), 0);
    ck_assert_msg(text != NULL, "%s", reason);
    ck_assert_str_eq(text, tree);
    ck_assert_uint_eq(len, tlen);
    free(text);
    free(tree);
    json_decref(msg);
    /* a canonical text is not parsed: what it holds goes out as is */
    rows[4].predictions_json = "{\"1\": 1.50}";
    ck_assert_int_eq(an_msg_inference_text(&m, rows + 4, 1, &text, &len, reason, sizeof reason), 0);
    ck_assert_ptr_nonnull(strstr(text, "\"multiStepBestPredictions\":{\"1\": 1.50}}]}"));
    free(text);
    /* zero rows, and the errors of the tree builder */
    ck_assert_int_eq(an_msg_inference(&m, rows, 0, &msg, reason, sizeof reason), 0);
    tree = an_json_dumps(msg, NULL);
    ck_assert_int_eq(an_msg_inference_text(&m, rows, 0, &text, &len, reason, sizeof reason), 0);
    ck_assert_str_eq(text, tree);
    free(text);
    free(tree);
    json_decref(msg);
    rows[3].raw = NAN;
    ck_assert_int_eq(an_msg_inference_text(&m, rows, 4, &text, &len, reason, sizeof reason), AN_EINVAL);
    ck_assert_str_eq(reason, "results[3] (rowid 104): non-finite number");
    rows[3].raw = 0.5;
    rows[1].predictions_json = "[1]";
    ck_assert_int_eq(an_msg_inference_text(&m, rows, 2, &text, &len, reason, sizeof reason), AN_EINVAL);
    ck_assert_ptr_nonnull(strstr(reason, "must be a JSON object"));
    json_decref(pred);
    json_decref(spec);
}
END_TEST

/* Out of memory is never the content's fault: with jansson's allocations
 * failing from the k-th on, or only the k-th (memory comes back at once),
 * for every k until the build succeeds, each
 * builder and decoder returns AN_ENOMEM (never AN_EINVAL, which the service
 * would treat as a message to skip or an entry to dead-letter) and leaks
 * nothing. A string that is not UTF-8 is AN_EINVAL and says so. */
static long alloc_left; /* < 0: no failure */
static bool fail_once;  /* only the k-th fails (memory comes back) */

static void *failing_malloc(size_t n)
{
    if (alloc_left == 0) {
        if (fail_once)
            alloc_left = -1;
        return NULL;
    }
    if (alloc_left > 0)
        alloc_left--;
    return malloc(n);
}

/* One of the builders, by number; 0 or its code. */
static int build(int which, an_metric_info *m, an_out_row *rows, an_cmd_msg *c,
                 an_result *res, an_field *of)
{
    json_t *j = NULL;
    char *t = NULL;
    size_t len = 0;
    int rc;
    switch (which) {
    case 0: rc = an_msg_inference(m, rows, 2, &j, reason, sizeof reason); break;
    case 1: rc = an_msg_inference_text(m, rows, 2, &t, &len, reason, sizeof reason); break;
    case 2: rc = an_msg_command(c, &j, reason, sizeof reason); break;
    case 3: rc = an_batch_encode(res, 2, AN_ENC_JSON, &t, &len, reason, sizeof reason); break;
    case 4: rc = an_output_entry_decode("1-1", of, 4, 0, &j, reason, sizeof reason); break;
    default: {
        /* the input decoder: what the service dead-letters on AN_EINVAL */
        an_batch *ab = NULL;
        rc = dec("u1", "[[\"iRv2\",1,0,0.5,null,{\"1\":[2.5,\"x\"]}],"
                       "[\"mcR\",\"c1\",\"defineModel\",0,{\"a\":{}},null]]", &ab);
        if (rc == 0)
            ck_assert(ab != NULL && ab->n == 2);
        else
            ck_assert(ab == NULL);
        an_batch_free(ab);
        return rc;
    }
    }
    if (rc == 0)
        ck_assert(j != NULL || t != NULL);
    else
        ck_assert(j == NULL && t == NULL);
    json_decref(j);
    free(t);
    return rc;
}

START_TEST(builders_out_of_memory)
{
    an_metric_info m = {"u1", "cpu", "d", "server1", NULL, "custom", NULL,
                        "{\"uid\":\"u1\",\"k\":[1,2,{\"a\":null}]}"};
    an_out_row rows[2] = {
        {101, 1431648000.5, 12.0, 0.5, 0.25, NULL, "{\"1\": 3.5}", false},
        {102, 1431648300.0, 13.0, 1.0, 0.9, NULL, NULL, false},
    };
    an_cmd_msg c = {.method = "defineModel", .model_id = "u1", .command_id = "c1",
                    .has_model_info = true, .metric_name = "cpu", .resource = "s",
                    .model_spec_json = "{\"metricSpec\":{\"uid\":\"u1\"}}"};
    an_result res[2] = {0};
    res[0].kind = AN_RES_INFERENCE;
    res[0].u.inf = (an_inference_result){.rowid = 1, .has_score = true, .score = 0.5,
                                         .predictions_text = "{\"1\":2}"};
    res[1].kind = AN_RES_COMMAND;
    res[1].u.cmd = (an_command_result){.command_id = "c1", .method = "deleteModel",
                                       .error = "e"};
    an_field of[4] = {F("dataType", AN_DATATYPE_COMMAND), F("model", "u1"),
                      F("source", "1-1"), F("body", "{\"status\":0,\"x\":[1]}")};
    for (int which = 0; which < 6; which++) {
        /* a clean run counts the builder's jansson allocations */
        alloc_left = LONG_MAX;
        an_json_mem_set_malloc(failing_malloc);
        ck_assert_int_eq(build(which, &m, rows, &c, res, of), 0);
        an_json_mem_set_malloc(NULL);
        long n = LONG_MAX - alloc_left;
        ck_assert_msg(n > 0, "builder %d allocated nothing through jansson", which);
        for (int once = 0; once < 2; once++) {
            fail_once = once;
            for (long k = 0; k < n; k++) {
                alloc_left = k;
                an_json_mem_set_malloc(failing_malloc);
                int rc = build(which, &m, rows, &c, res, of);
                an_json_mem_set_malloc(NULL);
                /* jansson may survive one failure (rc 0); never as content */
                ck_assert_msg(rc == AN_ENOMEM || (rc == 0 && once), "builder %d, %s %ld of "
                              "%ld: %d (%s)", which, once ? "one failure at" : "failures from",
                              k, n, rc, reason);
            }
        }
    }
    alloc_left = -1;
    /* invalid UTF-8 is the content's */
    m.name = "bad \xff";
    ck_assert_int_eq(build(0, &m, rows, &c, res, of), AN_EINVAL);
    ck_assert_str_eq(reason, "metric: a string is not valid UTF-8");
    m.name = "cpu";
    c.metric_name = "\xc3";
    ck_assert_int_eq(build(2, &m, rows, &c, res, of), AN_EINVAL);
    ck_assert_str_eq(reason, "command result: a string is not valid UTF-8");
    res[1].u.cmd.error = "\xed\xa0\x80"; /* a UTF-16 surrogate */
    ck_assert_int_eq(build(3, &m, rows, &c, res, of), AN_EINVAL);
    ck_assert_str_eq(reason, "results[1]: a string is not valid UTF-8");
    res[1].u.cmd.error = "e";
    res[0].u.inf.predictions_text = "{";
    ck_assert_int_eq(build(3, &m, rows, &c, res, of), AN_EINVAL);
    ck_assert_ptr_nonnull(strstr(reason, "results[0]: invalid JSON"));
    of[1] = F("model", "u\x80");
    ck_assert_int_eq(build(4, &m, rows, &c, res, of), AN_EINVAL);
    ck_assert_str_eq(reason, "output entry: a string is not valid UTF-8");
}
END_TEST


static Suite *suite(void)
{
    Suite *s = suite_create("codec");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, iRv2_ok);
    tcase_add_test(tc, iR_legacy_ok);
    tcase_add_test(tc, mcR_ok);
    tcase_add_test(tc, unicode_and_escapes);
    tcase_add_test(tc, errors_signature_arity_types);
    tcase_add_test(tc, errors_invariants);
    tcase_add_test(tc, errors_json_and_numbers);
    tcase_add_test(tc, errors_fields);
    tcase_add_test(tc, errors_model);
    tcase_add_test(tc, entry_too_big);
    tcase_add_test(tc, zlib_round_trip);
    tcase_add_test(tc, zlib_state_sizes);
    tcase_add_test(tc, zlib_bomb);
    tcase_add_test(tc, doubles_round_trip);
    tcase_add_test(tc, inference_message);
    tcase_add_test(tc, command_message);
    tcase_add_test(tc, output_entry_json_encoding);
    tcase_add_test(tc, encoding_names);
    tcase_add_test(tc, rowid_range);
    tcase_add_test(tc, score_range);
    tcase_add_test(tc, max_results_limit);
    tcase_add_test(tc, max_json_nodes_limit);
    tcase_add_test(tc, amplification_predictions);
    tcase_add_test(tc, decoded_bytes);
    tcase_add_test(tc, reasons_escaped);
    tcase_add_test(tc, escape_text);
    tcase_add_test(tc, inference_message_text);
    tcase_add_test(tc, builders_out_of_memory);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(suite(), CK_NORMAL);
}
