/*
 * fuzz_batch_decode: the input entry decoder (an_batch_decode).
 *
 * Input: byte 0 picks the shape, the rest is the entry.
 *   bit 0 set: "raw fields": the rest is name 0xff value 0xff name 0xff ...
 *              (duplicates, missing and extra fields reach the decoder);
 *   bit 0 clear: model = up to the first '\n', batch = the rest, and
 *              bits 1-2 pick the encoding field: none, "json", "zlib" with
 *              the batch compressed here (the JSON grammar behind zlib),
 *              "zlib" with the batch as given (raw zlib streams).
 * Contracts:
 *   - failure: *out NULL, AN_EINVAL or AN_ERANGE (never ENOMEM here), a
 *     non-empty reason without control characters (it goes to the
 *     dead-letter stream and to the log);
 *   - success: the an_batch invariants of an_codec.h (uid syntax, n >= 1,
 *     counts, per-kind status rules, finite scores);
 *   - round trip: an_batch_encode of the results (json, and zlib for small
 *     batches) decodes again to the same results, doubles bit for bit.
 * Memory: ops/fuzz.sh runs it under -rss_limit_mb/-malloc_limit_mb, so an
 * entry that amplifies past the limit is a finding.
 */
#include <ctype.h>
#include <math.h>

#include "an_codec.h"
#include "fuzz_common.h"

/* The one call into the decoder: adapt here when its API changes. The
 * entry decoded first gets the default limits; the round trip's re-encoded
 * text may be larger than the entry it came from (a zlib entry
 * re-encoded as JSON), so it gets no entry-size limit. */
static int decode(const an_field *f, size_t n, bool first, an_batch **out,
                  char *reason, size_t len)
{
    an_codec_limits lim = an_codec_limits_default();
    if (!first) {
        lim.max_entry_bytes = 0;
        lim.max_inflated_bytes = SIZE_MAX / 2;
    }
    return an_batch_decode(f, n, &lim, out, reason, len);
}

static bool str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool json_eq(const json_t *a, const json_t *b)
{
    return (!a && !b) || (a && b && json_equal((json_t *)a, (json_t *)b));
}

static void check_invariants(const an_batch *b, const char *model, size_t mlen)
{
    size_t ml = strlen(b->model);
    FZ_CHECK(ml >= 1 && ml <= AN_UID_MAX, "uid length %zu", ml);
    FZ_CHECK(ml == mlen && memcmp(b->model, model, ml) == 0,
             "model '%s' differs from the field", b->model);
    for (size_t i = 0; i < ml; i++)
        FZ_CHECK(b->model[i] >= 0x21 && b->model[i] <= 0x7e,
                 "uid byte %zu is 0x%02x", i, (unsigned char)b->model[i]);
    FZ_CHECK(b->n >= 1 && b->results, "empty batch accepted");
    FZ_CHECK(b->n_inference + b->n_command == b->n, "counts %zu + %zu != %zu",
             b->n_inference, b->n_command, b->n);
    size_t ni = 0;
    for (size_t i = 0; i < b->n; i++) {
        const an_result *r = &b->results[i];
        if (r->kind == AN_RES_INFERENCE) {
            const an_inference_result *x = &r->u.inf;
            ni++;
            if (x->status == 0) {
                FZ_CHECK(x->has_score && isfinite(x->score) && !x->error,
                         "result %zu: status 0 without a finite score", i);
                FZ_CHECK(!x->predictions || json_is_object(x->predictions),
                         "result %zu: predictions not an object", i);
            } else {
                FZ_CHECK(x->error && !x->has_score && !x->predictions,
                         "result %zu: status %lld breaks the error rule", i,
                         (long long)x->status);
            }
            FZ_CHECK(!x->legacy || !x->predictions,
                     "result %zu: legacy with predictions", i);
        } else {
            FZ_CHECK(r->kind == AN_RES_COMMAND, "result %zu: kind %d", i, r->kind);
            const an_command_result *c = &r->u.cmd;
            FZ_CHECK(c->command_id && c->method, "result %zu: NULL strings", i);
            if (c->status == 0)
                FZ_CHECK(!c->error && (!c->args || json_is_object(c->args)),
                         "result %zu: status 0 command rule", i);
            else
                FZ_CHECK(c->error && !c->args, "result %zu: error command rule", i);
        }
    }
    FZ_CHECK(ni == b->n_inference, "n_inference %zu, counted %zu",
             b->n_inference, ni);
}

static void check_same(const an_batch *a, const an_batch *b)
{
    FZ_CHECK(a->n == b->n && strcmp(a->model, b->model) == 0,
             "round trip: %zu results became %zu", a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const an_result *x = &a->results[i], *y = &b->results[i];
        FZ_CHECK(x->kind == y->kind, "round trip: result %zu kind", i);
        if (x->kind == AN_RES_INFERENCE) {
            const an_inference_result *p = &x->u.inf, *q = &y->u.inf;
            FZ_CHECK(p->rowid == q->rowid && p->status == q->status &&
                         p->has_score == q->has_score &&
                         fz_same_double(p->score, q->score) &&
                         p->legacy == q->legacy && str_eq(p->error, q->error) &&
                         json_eq(p->predictions, q->predictions),
                     "round trip: inference result %zu differs (score %.17g vs %.17g)",
                     i, p->score, q->score);
        } else {
            const an_command_result *p = &x->u.cmd, *q = &y->u.cmd;
            FZ_CHECK(p->status == q->status && str_eq(p->command_id, q->command_id) &&
                         str_eq(p->method, q->method) && str_eq(p->error, q->error) &&
                         json_eq(p->args, q->args),
                     "round trip: command result %zu differs", i);
        }
    }
}

static void round_trip(const an_batch *b, an_encoding enc)
{
    char *text = NULL, err[256] = "";
    size_t len = 0;
    int rc = an_batch_encode(b->results, b->n, enc, &text, &len, err, sizeof err);
    FZ_CHECK(rc == 0, "encoding a decoded batch failed: %d %s", rc, err);
    an_field f[3] = {
        {"model", 5, b->model, strlen(b->model)},
        {"batch", 5, text, len},
        {"encoding", 8, an_encoding_name(enc), strlen(an_encoding_name(enc))},
    };
    an_batch *again = NULL;
    char reason[512] = "";
    rc = decode(f, 3, false, &again, reason, sizeof reason);
    FZ_CHECK(rc == 0 && again, "re-decoding the encoded batch failed: %d %s", rc,
             reason);
    check_same(b, again);
    an_batch_free(again);
    free(text);
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    an_field f[16];
    size_t nf = 0;
    char *zbuf = NULL;
    if (mode & 1) {
        nf = fz_split_fields(data, size, f, 16);
    } else {
        const uint8_t *nl = memchr(data, '\n', size);
        size_t mlen = nl ? (size_t)(nl - data) : size;
        const char *batch = nl ? (const char *)nl + 1 : "";
        size_t blen = nl ? size - mlen - 1 : 0;
        f[nf++] = (an_field){"model", 5, (const char *)data, mlen};
        int enc = (mode >> 1) & 3;
        if (enc == 2) {
            size_t zlen;
            char err[128];
            FZ_CHECK(an_zlib_compress(batch, blen, &zbuf, &zlen, err, sizeof err) == 0,
                     "compress: %s", err);
            batch = zbuf;
            blen = zlen;
        }
        f[nf++] = (an_field){"batch", 5, batch, blen};
        if (enc == 1)
            f[nf++] = (an_field){"encoding", 8, "json", 4};
        else if (enc >= 2)
            f[nf++] = (an_field){"encoding", 8, "zlib", 4};
    }

    an_batch *b = (an_batch *)&b; /* must be reset to NULL */
    char reason[512];
    memset(reason, 'X', sizeof reason);
    int rc = decode(f, nf, true, &b, reason, sizeof reason);
    if (rc != 0) {
        FZ_CHECK(memchr(reason, '\0', sizeof reason) != NULL, "reason not terminated");
        FZ_CHECK(b == NULL, "failure left *out set");
        FZ_CHECK(rc == AN_EINVAL || rc == AN_ERANGE, "rc %d (%s)", rc, reason);
        FZ_CHECK(reason[0] != '\0', "failure without a reason");
        FZ_CHECK(fz_reason_clean(reason),
                 "reason carries a control character: '%s'", reason);
    } else {
        FZ_CHECK(b != NULL, "success without a batch");
        const an_field *m = an_field_find(f, nf, "model");
        check_invariants(b, m->value, m->value_len);
        round_trip(b, AN_ENC_JSON);
        if (b->n <= 64)
            round_trip(b, AN_ENC_ZLIB);
        an_batch_free(b);
    }
    free(zbuf);
    return 0;
}
