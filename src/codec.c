/*
 * codec.c: input entry decoding, output message encoding (an_codec.h).
 */
#include "an_util.h"
#include "an_codec.h"
#include "an_json_mem.h"
#include "an_json_out.h"
#include "an_log.h"        /* an_escape */

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

/* ------------------------------------------------------------ helpers */

/* Quote a short piece of untrusted text for a reason string: an_escape of
 * its first 32 bytes. */
static void quote_short(char *dst, size_t dstlen, const char *s, size_t n)
{
    an_escape(dst, dstlen, s, n, 32);
}

const an_field *an_field_find(const an_field *fields, size_t n, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (fields[i].name_len == len && memcmp(fields[i].name, name, len) == 0)
            return &fields[i];
    return NULL;
}

int an_encoding_parse(const char *s, size_t len, an_encoding *out)
{
    if (!s)
        return AN_EINVAL;
    if (len == 4 && memcmp(s, "json", 4) == 0) {
        *out = AN_ENC_JSON;
        return 0;
    }
    if (len == 4 && memcmp(s, "zlib", 4) == 0) {
        *out = AN_ENC_ZLIB;
        return 0;
    }
    return AN_EINVAL;
}

const char *an_encoding_name(an_encoding e)
{
    return e == AN_ENC_ZLIB ? "zlib" : "json";
}

an_codec_limits an_codec_limits_default(void)
{
    an_codec_limits l = {AN_CODEC_DEFAULT_MAX_ENTRY_BYTES,
                         AN_CODEC_DEFAULT_MAX_INFLATED_BYTES, AN_CODEC_DEFAULT_MAX_RESULTS,
                         AN_CODEC_DEFAULT_MAX_JSON_NODES};
    return l;
}

/* ------------------------------------------------------------ zlib */

/* Inputs up to this size are deflated with the small-hash state (an
 * output message of up to ~100 one-row results; a catch-up message of
 * 1,440 rows is ~190 KB). */
#define SMALL_DEFLATE_MAX ((size_t)16 << 10)

int an_zlib_compress(const void *in, size_t inlen, char **out, size_t *outlen,
                     char *err, size_t errlen)
{
    *out = NULL;
    *outlen = 0;
    if (inlen > (size_t)UINT32_MAX) {
        an_seterr(err, errlen, "zlib input too large (%zu bytes)", inlen);
        return AN_ERANGE;
    }
    /* Two deflate states per thread, reset between messages: compress2
     * would allocate and clear ~270 KB of state for every small message.
     * Both are level 6 with a 32 KiB window; messages up to
     * SMALL_DEFLATE_MAX take one with a 2,048-entry hash (memLevel 4)
     * instead of 32,768: resetting a state clears its hash heads, 64 KiB at
     * memLevel 8, and that was 40 % of the compression CPU of a one-row
     * message (docs/performance.md). Any zlib reader inflates either; the
     * compressed bytes are not an interface (readers inflate and parse), so
     * they may differ from compress2's by a few bytes. */
    static __thread z_stream zss[2];
    static __thread bool zs_ready[2];
    int k = inlen <= SMALL_DEFLATE_MAX ? 0 : 1;
    z_stream *zs = &zss[k];
    int zr;
    if (!zs_ready[k]) {
        memset(zs, 0, sizeof *zs);
        zr = deflateInit2(zs, 6, Z_DEFLATED, 15, k == 0 ? 4 : 8, Z_DEFAULT_STRATEGY);
        if (zr != Z_OK) {
            an_seterr(err, errlen, "zlib deflateInit failed (%d)", zr);
            return zr == Z_MEM_ERROR ? AN_ENOMEM : AN_EIO;
        }
        zs_ready[k] = true;
    } else {
        deflateReset(zs);
    }
    /* deflateBound, not compressBound: the latter assumes compress2's
     * parameters, and the small state's shorter blocks may need more room
     * for input that does not compress. */
    uLong bound = deflateBound(zs, (uLong)inlen);
    char *buf = malloc(bound ? bound : 1);
    if (!buf) {
        an_seterr(err, errlen, "out of memory");
        return AN_ENOMEM;
    }
    zs->next_in = (Bytef *)(uintptr_t)in;
    zs->avail_in = (uInt)inlen;
    zs->next_out = (Bytef *)buf;
    zs->avail_out = (uInt)bound;
    zr = deflate(zs, Z_FINISH);
    if (zr != Z_STREAM_END) {
        free(buf);
        deflateEnd(zs);
        zs_ready[k] = false;
        an_seterr(err, errlen, "zlib compress failed (%d)", zr);
        return zr == Z_MEM_ERROR ? AN_ENOMEM : AN_EIO;
    }
    *out = buf;
    *outlen = (size_t)zs->total_out;
    return 0;
}

/* an_zlib_inflate's output buffer is full: doubles it, never past
 * max_out + 1 (the +1 detects "more than max_out" and holds the NUL).
 * 0, AN_ERANGE (already at the limit) or AN_ENOMEM (buffer unchanged). */
static int inflate_grow(char **buf, size_t *cap, size_t max_out, char *err, size_t errlen)
{
    if (*cap >= max_out + 1) {
        an_seterr(err, errlen, "zlib stream inflates beyond max_inflated_bytes (%zu)",
                  max_out);
        return AN_ERANGE;
    }
    size_t ncap = *cap * 2 > max_out + 1 ? max_out + 1 : *cap * 2;
    char *nb = realloc(*buf, ncap);
    if (!nb) {
        an_seterr(err, errlen, "out of memory");
        return AN_ENOMEM;
    }
    *buf = nb;
    *cap = ncap;
    return 0;
}

/* What inflate's result zr means for an_zlib_inflate after `used` bytes of
 * output: 0 and *done = false to go on (more input or more room needed),
 * 0 and *done = true at a clean end, or the error (AN_ERANGE past max_out,
 * AN_EINVAL for a truncated, trailing or corrupt stream, AN_ENOMEM). */
static int inflate_status(int zr, const z_stream *zs, size_t used, size_t max_out,
                          bool *done, char *err, size_t errlen)
{
    *done = false;
    switch (zr) {
    case Z_STREAM_END:
        *done = true;
        if (used > max_out) {
            an_seterr(err, errlen, "zlib stream inflates beyond max_inflated_bytes (%zu)",
                      max_out);
            return AN_ERANGE;
        }
        if (zs->avail_in != 0) {
            an_seterr(err, errlen, "%u trailing bytes after the zlib stream", zs->avail_in);
            return AN_EINVAL;
        }
        return 0;
    case Z_OK:
        return 0;
    case Z_BUF_ERROR:
        if (zs->avail_out == 0)
            return 0; /* needs more room */
        an_seterr(err, errlen, "truncated zlib stream");
        return AN_EINVAL;
    case Z_MEM_ERROR:
        an_seterr(err, errlen, "out of memory (inflate)");
        return AN_ENOMEM;
    default: /* Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR */
        an_seterr(err, errlen, "corrupt zlib stream (%s)",
                  zs->msg ? zs->msg
                          : (zr == Z_NEED_DICT ? "needs a dictionary" : "bad data"));
        return AN_EINVAL;
    }
}

int an_zlib_inflate(const void *in, size_t inlen, size_t max_out, char **out,
                    size_t *outlen, char *err, size_t errlen)
{
    *out = NULL;
    *outlen = 0;
    if (max_out == 0)
        max_out = AN_CODEC_DEFAULT_MAX_INFLATED_BYTES;
    if (inlen > (size_t)UINT32_MAX) {
        an_seterr(err, errlen, "zlib input too large (%zu bytes)", inlen);
        return AN_ERANGE;
    }
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK) {
        an_seterr(err, errlen, "out of memory (inflateInit)");
        return AN_ENOMEM;
    }
    /* Start small relative to the input, grow by doubling, never past
     * max_out + 1 (the +1 detects "more than max_out" and holds the NUL). */
    size_t cap = inlen < 4096 ? 16384 : inlen * 4;
    if (cap > max_out + 1)
        cap = max_out + 1;
    char *buf = malloc(cap);
    if (!buf) {
        inflateEnd(&zs);
        an_seterr(err, errlen, "out of memory");
        return AN_ENOMEM;
    }
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)inlen;
    size_t used = 0;
    int rc = 0;
    bool done = false;
    while (!done) {
        if (used == cap && (rc = inflate_grow(&buf, &cap, max_out, err, errlen)) != 0)
            break;
        size_t room = cap - used;
        if (room > (size_t)UINT32_MAX)
            room = UINT32_MAX;
        zs.next_out = (Bytef *)buf + used;
        zs.avail_out = (uInt)room;
        int zr = inflate(&zs, Z_NO_FLUSH);
        used += room - zs.avail_out;
        rc = inflate_status(zr, &zs, used, max_out, &done, err, errlen);
        if (rc)
            break;
    }
    inflateEnd(&zs);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    if (used == cap) { /* room for the NUL (used <= max_out < cap here
                          unless cap was exactly filled below the limit) */
        char *nb = realloc(buf, cap + 1);
        if (!nb) {
            free(buf);
            an_seterr(err, errlen, "out of memory");
            return AN_ENOMEM;
        }
        buf = nb;
    }
    buf[used] = '\0';
    *out = buf;
    *outlen = used;
    return 0;
}

/* ------------------------------------------------------------ JSON */

/* The values and object keys of JSON text (each costs the parser one
 * allocation or more), counted without building anything: '[', '{' and '"'
 * each start one, and so does every run of scalar characters (digits,
 * letters, '.', '+', '-') outside strings. Exact for valid JSON; invalid
 * text gets some count and the parser rejects it anyway. Stops counting
 * once past max. */
static size_t count_nodes(const char *s, size_t n, size_t max)
{
    size_t count = 0;
    bool in_str = false, in_scalar = false;
    for (size_t i = 0; i < n && count <= max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
            continue;
        }
        bool scalar = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                      (c >= 'A' && c <= 'Z') || c == '.' || c == '+' || c == '-';
        if (scalar) {
            count += !in_scalar;
            in_scalar = true;
            continue;
        }
        in_scalar = false;
        if (c == '"') {
            in_str = true;
            count++;
        } else if (c == '[' || c == '{') {
            count++;
        }
    }
    return count;
}

/* an_json_field_decode with a node cap (0 = none) checked on the text
 * before the parser runs. */
static int json_field_decode_capped(const char *data, size_t len, an_encoding enc,
                                    size_t max_inflated, size_t max_nodes, json_t **out,
                                    char *err, size_t errlen)
{
    *out = NULL;
    char *inflated = NULL;
    size_t tlen = len;
    const char *text = data;
    if (enc == AN_ENC_ZLIB) {
        int rc = an_zlib_inflate(data, len, max_inflated, &inflated, &tlen,
                                 err, errlen);
        if (rc)
            return rc;
        text = inflated;
    }
    if (max_nodes && count_nodes(text, tlen, max_nodes) > max_nodes) {
        free(inflated);
        an_seterr(err, errlen, "more than %zu JSON nodes, over max_json_nodes (%zu)", max_nodes,
               max_nodes);
        return AN_ERANGE;
    }
    json_error_t je;
    /* No JSON_ALLOW_NUL: "\u0000" inside strings is rejected. jansson
     * rejects NaN/Infinity tokens and overflowing reals/integers. */
    json_t *v;
    int rc = an_json_parse(text, tlen, 0, &v, &je);
    free(inflated);
    if (rc == AN_ENOMEM) {
        an_seterr(err, errlen, "out of memory while parsing JSON");
        return rc;
    }
    if (rc) {
        char q[4 * JSON_ERROR_TEXT_LENGTH + 4];
        an_escape(q, sizeof q, je.text, strlen(je.text), 0);
        an_seterr(err, errlen, "invalid JSON at line %d column %d: %s", je.line,
               je.column, q);
        return AN_EINVAL;
    }
    *out = v;
    return 0;
}

int an_json_field_decode(const char *data, size_t len, an_encoding enc,
                         size_t max_inflated, json_t **out, char *err,
                         size_t errlen)
{
    return json_field_decode_capped(data, len, enc, max_inflated, 0, out, err, errlen);
}

/* ------------------------------------------------------------ decoding */

static void free_result(an_result *r)
{
    if (r->kind == AN_RES_INFERENCE) {
        free(r->u.inf.error);
        free(r->u.inf.predictions_text);
        json_decref(r->u.inf.predictions);
    } else if (r->kind == AN_RES_COMMAND) {
        free(r->u.cmd.command_id);
        free(r->u.cmd.method);
        free(r->u.cmd.error);
        json_decref(r->u.cmd.args);
    }
}

/* The heap bytes a decoded result holds (strings + NULs). */
static size_t result_bytes(const an_result *r)
{
    size_t k = 0;
    if (r->kind == AN_RES_INFERENCE) {
        k += r->u.inf.error ? strlen(r->u.inf.error) + 1 : 0;
        k += r->u.inf.predictions_text ? strlen(r->u.inf.predictions_text) + 1 : 0;
    } else if (r->kind == AN_RES_COMMAND) {
        k += r->u.cmd.command_id ? strlen(r->u.cmd.command_id) + 1 : 0;
        k += r->u.cmd.method ? strlen(r->u.cmd.method) + 1 : 0;
        k += r->u.cmd.error ? strlen(r->u.cmd.error) + 1 : 0;
    }
    return k;
}

void an_batch_free(an_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        free_result(&b->results[i]);
    free(b->results);
    free(b);
}

static const char *jtype(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "real";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* Error reasons are prefixed "batch[i]: ". */
#define RFAIL(...)                                                            \
    do {                                                                      \
        an_seterr(reason, reasonlen, __VA_ARGS__);                               \
        return AN_EINVAL;                                                     \
    } while (0)

static int get_int(const json_t *a, size_t idx, size_t i, const char *sig,
                   const char *what, int64_t *out, char *reason,
                   size_t reasonlen)
{
    const json_t *v = json_array_get(a, idx);
    if (!json_is_integer(v))
        RFAIL("batch[%zu]: %s %s must be an integer, got %s", i, sig, what,
              jtype(v));
    *out = json_integer_value(v);
    return 0;
}

/* string or null -> *out (malloc'd or NULL). */
static int get_str_or_null(const json_t *a, size_t idx, size_t i,
                           const char *sig, const char *what, char **out,
                           char *reason, size_t reasonlen, int *enomem)
{
    const json_t *v = json_array_get(a, idx);
    *out = NULL;
    if (json_is_null(v))
        return 0;
    if (!json_is_string(v))
        RFAIL("batch[%zu]: %s %s must be a string or null, got %s", i, sig,
              what, jtype(v));
    *out = an_strndup(json_string_value(v), json_string_length(v));
    if (!*out) {
        *enomem = 1;
        an_seterr(reason, reasonlen, "out of memory");
        return AN_ENOMEM;
    }
    return 0;
}

static int decode_inference(const json_t *a, size_t i, const char *sig,
                            bool legacy, an_inference_result *r, char *reason,
                            size_t reasonlen)
{
    size_t need = legacy ? 5 : 6;
    int enomem = 0;
    if (json_array_size(a) != need)
        RFAIL("batch[%zu]: %s needs %zu elements, got %zu", i, sig, need,
              json_array_size(a));
    r->legacy = legacy;
    if (get_int(a, 1, i, sig, "rowID", &r->rowid, reason, reasonlen) ||
        get_int(a, 2, i, sig, "status", &r->status, reason, reasonlen))
        return AN_EINVAL;
    if (r->rowid < AN_ROWID_MIN || r->rowid > AN_ROWID_MAX)
        RFAIL("batch[%zu]: %s rowID %" PRId64 " is outside %d..%d (metric_data rowids)", i,
              sig, r->rowid, AN_ROWID_MIN, AN_ROWID_MAX);
    const json_t *score = json_array_get(a, 3);
    if (json_is_number(score)) {
        r->has_score = true;
        r->score = json_number_value(score);
        /* A raw anomaly score is a fraction of active columns: anything else
         * would poison the metric's likelihood statistics for good. The
         * negation also catches NaN. */
        if (!(r->score >= 0.0 && r->score <= 1.0)) {
            char num[40];
            RFAIL("batch[%zu]: %s rowID=%" PRId64 ": anomalyScore %s is outside [0, 1]", i,
                  sig, r->rowid, an_codec_fmt_double(num, sizeof num, r->score));
        }
    } else if (!json_is_null(score)) {
        RFAIL("batch[%zu]: %s anomalyScore must be a number or null, got %s",
              i, sig, jtype(score));
    }
    int rc = get_str_or_null(a, 4, i, sig, "errorMessage", &r->error, reason,
                             reasonlen, &enomem);
    if (rc)
        return rc;
    if (!legacy) {
        json_t *p = json_array_get(a, 5);
        if (json_is_object(p)) {
            r->predictions_text = an_json_dumps(p, NULL);
            if (!r->predictions_text) {
                an_seterr(reason, reasonlen, "out of memory");
                return AN_ENOMEM;
            }
        } else if (!json_is_null(p))
            RFAIL("batch[%zu]: %s multiStepBestPredictions must be an object "
                  "or null, got %s",
                  i, sig, jtype(p));
    }
    if (r->status == 0) {
        if (!r->has_score)
            RFAIL("batch[%zu]: %s rowID=%" PRId64
                  ": status 0 needs a numeric anomalyScore",
                  i, sig, r->rowid);
        if (r->error)
            RFAIL("batch[%zu]: %s rowID=%" PRId64
                  ": status 0 with an errorMessage",
                  i, sig, r->rowid);
    } else {
        if (!r->error)
            RFAIL("batch[%zu]: %s rowID=%" PRId64 ": status %" PRId64
                  " needs an errorMessage string",
                  i, sig, r->rowid, r->status);
        if (r->has_score || r->predictions_text)
            RFAIL("batch[%zu]: %s rowID=%" PRId64 ": status %" PRId64
                  " with an anomalyScore or predictions",
                  i, sig, r->rowid, r->status);
    }
    return 0;
}

static int decode_command(const json_t *a, size_t i, an_command_result *r,
                          char *reason, size_t reasonlen)
{
    int enomem = 0;
    if (json_array_size(a) != 6)
        RFAIL("batch[%zu]: mcR needs 6 elements, got %zu", i,
              json_array_size(a));
    const json_t *cid = json_array_get(a, 1);
    const json_t *meth = json_array_get(a, 2);
    if (!json_is_string(cid))
        RFAIL("batch[%zu]: mcR commandID must be a string, got %s", i,
              jtype(cid));
    if (!json_is_string(meth))
        RFAIL("batch[%zu]: mcR method must be a string, got %s", i,
              jtype(meth));
    r->command_id = an_strndup(json_string_value(cid), json_string_length(cid));
    r->method = an_strndup(json_string_value(meth), json_string_length(meth));
    if (!r->command_id || !r->method) {
        an_seterr(reason, reasonlen, "out of memory");
        return AN_ENOMEM;
    }
    if (get_int(a, 3, i, "mcR", "status", &r->status, reason, reasonlen))
        return AN_EINVAL;
    json_t *args = json_array_get(a, 4);
    if (json_is_object(args))
        r->args = json_incref(args);
    else if (!json_is_null(args))
        RFAIL("batch[%zu]: mcR args must be an object or null, got %s", i,
              jtype(args));
    int rc = get_str_or_null(a, 5, i, "mcR", "errorMessage", &r->error, reason,
                             reasonlen, &enomem);
    if (rc)
        return rc;
    char q[160];
    quote_short(q, sizeof q, r->command_id, strlen(r->command_id));
    if (r->status == 0) {
        if (r->error)
            RFAIL("batch[%zu]: mcR commandID=%s: status 0 with an "
                  "errorMessage",
                  i, q);
    } else {
        if (!r->error)
            RFAIL("batch[%zu]: mcR commandID=%s: status %" PRId64
                  " needs an errorMessage string",
                  i, q, r->status);
        if (r->args)
            RFAIL("batch[%zu]: mcR commandID=%s: status %" PRId64
                  " with args",
                  i, q, r->status);
    }
    return 0;
}

static int check_model(const char *m, size_t n, char *reason, size_t reasonlen)
{
    char q[160];
    if (n == 0)
        RFAIL("model: empty");
    if (n > AN_UID_MAX) {
        quote_short(q, sizeof q, m, n);
        RFAIL("model: %zu bytes, longer than %d ('%s')", n, AN_UID_MAX, q);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)m[i];
        if (c < 0x21 || c > 0x7e) {
            quote_short(q, sizeof q, m, n);
            RFAIL("model: byte %zu is not printable ASCII ('%s')", i, q);
        }
    }
    return 0;
}

/* Decodes result i of a batch (the JSON array a) into b->results[i] by its
 * signature (iRv2, legacy iR, mcR), counting it and its decoded bytes in b.
 * 0 or AN_EINVAL / AN_ERANGE / AN_ENOMEM with the reason set. */
static int decode_result(const json_t *a, size_t i, an_batch *b, char *reason,
                         size_t reasonlen)
{
    an_result *r = &b->results[i];
    if (!json_is_array(a)) {
        an_seterr(reason, reasonlen, "batch[%zu]: result must be an array, got %s", i,
                  jtype(a));
        return AN_EINVAL;
    }
    const json_t *sig = json_array_get(a, 0);
    if (!json_is_string(sig)) {
        an_seterr(reason, reasonlen, "batch[%zu]: result signature must be a string, got %s",
                  i, sig ? jtype(sig) : "nothing");
        return AN_EINVAL;
    }
    const char *s = json_string_value(sig);
    size_t slen = json_string_length(sig);
    int rc;
    if (slen == 4 && memcmp(s, "iRv2", 4) == 0) {
        r->kind = AN_RES_INFERENCE;
        rc = decode_inference(a, i, "iRv2", false, &r->u.inf, reason, reasonlen);
        b->n_inference++;
    } else if (slen == 2 && memcmp(s, "iR", 2) == 0) {
        r->kind = AN_RES_INFERENCE;
        rc = decode_inference(a, i, "iR", true, &r->u.inf, reason, reasonlen);
        b->n_inference++;
    } else if (slen == 3 && memcmp(s, "mcR", 3) == 0) {
        r->kind = AN_RES_COMMAND;
        rc = decode_command(a, i, &r->u.cmd, reason, reasonlen);
        b->n_command++;
    } else {
        char q[160];
        quote_short(q, sizeof q, s, slen);
        an_seterr(reason, reasonlen, "batch[%zu]: unknown result signature '%s'", i, q);
        return AN_EINVAL;
    }
    if (rc == 0)
        b->decoded_bytes += result_bytes(r);
    return rc;
}

int an_batch_decode_parts(const char *model, size_t model_len,
                          const char *batch, size_t batch_len,
                          an_encoding enc, const an_codec_limits *limits,
                          an_batch **out, char *reason, size_t reasonlen)
{
    an_codec_limits lim = limits ? *limits : an_codec_limits_default();
    *out = NULL;
    if (!model || !batch)
        RFAIL("missing field '%s'", model ? "batch" : "model");
    int rc = check_model(model, model_len, reason, reasonlen);
    if (rc)
        return rc;

    char sub[256];
    json_t *root = NULL;
    size_t max_results = lim.max_results ? lim.max_results : AN_CODEC_DEFAULT_MAX_RESULTS;
    size_t max_nodes = lim.max_json_nodes ? lim.max_json_nodes : AN_CODEC_DEFAULT_MAX_JSON_NODES;
    rc = json_field_decode_capped(batch, batch_len, enc, lim.max_inflated_bytes, max_nodes,
                                  &root, sub, sizeof sub);
    if (rc) {
        an_seterr(reason, reasonlen, "batch: %s", sub);
        return rc;
    }
    if (!json_is_array(root)) {
        an_seterr(reason, reasonlen, "batch: must be a JSON array, got %s",
               jtype(root));
        json_decref(root);
        return AN_EINVAL;
    }
    size_t n = json_array_size(root);
    if (n == 0) {
        json_decref(root);
        RFAIL("batch: empty array");
    }
    if (n > max_results) {
        json_decref(root);
        an_seterr(reason, reasonlen, "batch: %zu results, over max_results (%zu)", n,
               max_results);
        return AN_ERANGE;
    }
    an_batch *b = calloc(1, sizeof *b);
    if (b)
        b->results = calloc(n, sizeof *b->results);
    if (!b || !b->results) {
        free(b);
        json_decref(root);
        an_seterr(reason, reasonlen, "out of memory");
        return AN_ENOMEM;
    }
    memcpy(b->model, model, model_len);
    b->model[model_len] = '\0';
    b->encoding = enc;
    b->decoded_bytes = sizeof *b + n * sizeof *b->results;

    for (size_t i = 0; i < n && rc == 0; i++) {
        b->n = i + 1; /* so an_batch_free frees what was filled */
        rc = decode_result(json_array_get(root, i), i, b, reason, reasonlen);
    }
    json_decref(root);
    if (rc) {
        an_batch_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

int an_batch_decode(const an_field *fields, size_t nfields,
                    const an_codec_limits *limits, an_batch **out,
                    char *reason, size_t reasonlen)
{
    an_codec_limits lim = limits ? *limits : an_codec_limits_default();
    const an_field *model = NULL, *batch = NULL, *enc = NULL;
    size_t total = 0;
    *out = NULL;
    for (size_t i = 0; i < nfields; i++) {
        const an_field *f = &fields[i];
        total += f->name_len + f->value_len;
        const an_field **slot = NULL;
        const char *nm = NULL;
        if (f->name_len == 5 && memcmp(f->name, "model", 5) == 0)
            slot = &model, nm = "model";
        else if (f->name_len == 5 && memcmp(f->name, "batch", 5) == 0)
            slot = &batch, nm = "batch";
        else if (f->name_len == 8 && memcmp(f->name, "encoding", 8) == 0)
            slot = &enc, nm = "encoding";
        if (slot) {
            if (*slot)
                RFAIL("duplicate field '%s'", nm);
            *slot = f;
        }
    }
    if (lim.max_entry_bytes && total > lim.max_entry_bytes) {
        an_seterr(reason, reasonlen, "entry is %zu bytes, over max_entry_bytes (%zu)",
               total, lim.max_entry_bytes);
        return AN_ERANGE;
    }
    if (!model)
        RFAIL("missing field 'model'");
    if (!batch)
        RFAIL("missing field 'batch'");
    an_encoding e = AN_ENC_JSON;
    if (enc && an_encoding_parse(enc->value, enc->value_len, &e) != 0) {
        char q[160];
        quote_short(q, sizeof q, enc->value, enc->value_len);
        RFAIL("unknown encoding '%s' (expected json or zlib)", q);
    }
    return an_batch_decode_parts(model->value, model->value_len, batch->value,
                                 batch->value_len, e, &lim, out, reason,
                                 reasonlen);
}

/* ------------------------------------------------------------ encoding */

/* A tree under construction. jansson's constructors return NULL both when
 * out of memory and for content they refuse (json_string on text that is
 * not UTF-8), and its setters take that NULL; jb records why a part is
 * missing so that the builder returns one code (jb_rc): AN_EINVAL for the
 * content, AN_ENOMEM for memory. Setters steal the reference. */
typedef struct jb {
    bool fail;         /* a part is missing */
    const char *why;   /* ...because of its content (static text), or NULL */
} jb;

static void jb_set(jb *b, json_t *o, const char *k, json_t *v)
{
    if (!v || json_object_set_new(o, k, v) != 0)
        b->fail = true;
}

static void jb_app(jb *b, json_t *a, json_t *v)
{
    if (!v || json_array_append_new(a, v) != 0)
        b->fail = true;
}

/* s (n bytes) as a JSON string; jb_str: a C string, JSON null when NULL.
 * A NULL result is either memory or text that is not UTF-8: the allocation
 * mark (an_json_mem.h) tells which. */
static json_t *jb_strn(jb *b, const char *s, size_t n)
{
    an_json_mem_mark();
    json_t *v = json_stringn(s, n);
    if (!v && !an_json_mem_failed())
        b->why = "a string is not valid UTF-8";
    return v;
}

static json_t *jb_str(jb *b, const char *s)
{
    return s ? jb_strn(b, s, strlen(s)) : json_null();
}

static json_t *jb_real(jb *b, double d)
{
    if (!isfinite(d)) {
        b->why = "non-finite number";
        return NULL;
    }
    return json_real(d);
}

/* 0 when nothing failed; else err set (prefixed by what) and AN_EINVAL or
 * AN_ENOMEM. */
static int jb_rc(const jb *b, const char *what, char *err, size_t errlen)
{
    if (!b->fail)
        return 0;
    an_seterr(err, errlen, "%s: %s", what, b->why ? b->why : "out of memory");
    return b->why ? AN_EINVAL : AN_ENOMEM;
}

/* The JSON value in text (an object when object_only), a new reference in
 * *out. AN_EINVAL (err: what and why) when the text is not JSON or not an
 * object; AN_ENOMEM when jansson ran out of memory (an_json_mem.h). */
static int parse_json(const char *text, const char *what, bool object_only, json_t **out,
                      char *err, size_t errlen)
{
    json_error_t je;
    *out = NULL;
    json_t *v;
    int rc = an_json_parse(text, strlen(text), 0, &v, &je);
    if (rc) {
        if (rc == AN_ENOMEM)
            an_seterr(err, errlen, "%s: out of memory", what);
        else
            an_seterr(err, errlen, "%s: invalid JSON: %s", what, je.text);
        return rc;
    }
    if (object_only && !json_is_object(v)) {
        an_seterr(err, errlen, "%s: must be a JSON object, got %s", what, jtype(v));
        json_decref(v);
        return AN_EINVAL;
    }
    *out = v;
    return 0;
}

static int parse_object(const char *text, const char *what, json_t **out,
                        char *err, size_t errlen)
{
    return parse_json(text, what, true, out, err, errlen);
}

/* Result i as the producer writes it (an array), in *out. */
static int batch_item(const an_result *r, size_t i, json_t **out, char *err, size_t errlen)
{
    char what[48];
    snprintf(what, sizeof what, "results[%zu]", i);
    *out = NULL;
    jb b = {0};
    json_t *a = json_array();
    if (!a) {
        an_seterr(err, errlen, "%s: out of memory", what);
        return AN_ENOMEM;
    }
    if (r->kind == AN_RES_INFERENCE) {
        const an_inference_result *x = &r->u.inf;
        jb_app(&b, a, json_string(x->legacy ? "iR" : "iRv2"));
        jb_app(&b, a, json_integer(x->rowid));
        jb_app(&b, a, json_integer(x->status));
        jb_app(&b, a, x->has_score ? jb_real(&b, x->score) : json_null());
        jb_app(&b, a, jb_str(&b, x->error));
        if (!x->legacy) {
            json_t *p = NULL;
            if (x->predictions) {
                p = json_incref(x->predictions);
            } else if (x->predictions_text) {
                int rc = parse_json(x->predictions_text, what, false, &p, err, errlen);
                if (rc) {
                    json_decref(a);
                    return rc;
                }
            } else {
                p = json_null();
            }
            jb_app(&b, a, p);
        }
    } else if (r->kind == AN_RES_COMMAND) {
        const an_command_result *c = &r->u.cmd;
        if (!c->command_id || !c->method) {
            json_decref(a);
            an_seterr(err, errlen, "%s: mcR needs commandID and method", what);
            return AN_EINVAL;
        }
        jb_app(&b, a, json_string("mcR"));
        jb_app(&b, a, jb_str(&b, c->command_id));
        jb_app(&b, a, jb_str(&b, c->method));
        jb_app(&b, a, json_integer(c->status));
        jb_app(&b, a, c->args ? json_incref(c->args) : json_null());
        jb_app(&b, a, jb_str(&b, c->error));
    } else {
        json_decref(a);
        an_seterr(err, errlen, "%s: unknown kind %d", what, (int)r->kind);
        return AN_EINVAL;
    }
    int rc = jb_rc(&b, what, err, errlen);
    if (rc) {
        json_decref(a);
        return rc;
    }
    *out = a;
    return 0;
}

int an_batch_encode(const an_result *results, size_t n, an_encoding enc,
                    char **out, size_t *outlen, char *err, size_t errlen)
{
    *out = NULL;
    *outlen = 0;
    json_t *root = json_array();
    if (!root) {
        an_seterr(err, errlen, "out of memory");
        return AN_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *a;
        int rc = batch_item(&results[i], i, &a, err, errlen);
        if (rc == 0 && json_array_append_new(root, a) != 0) {
            an_seterr(err, errlen, "results[%zu]: out of memory", i);
            rc = AN_ENOMEM;
        }
        if (rc) {
            json_decref(root);
            return rc;
        }
    }
    int rc = an_body_encode(root, enc, out, outlen, err, errlen);
    json_decref(root);
    return rc;
}

int an_metric_spec_from_parameters(const char *parameters_json, json_t **spec,
                                   char *err, size_t errlen)
{
    *spec = NULL;
    if (!parameters_json) {
        an_seterr(err, errlen, "parameters: NULL");
        return AN_EINVAL;
    }
    json_t *p;
    int rc = parse_object(parameters_json, "parameters", &p, err, errlen);
    if (rc)
        return rc;
    json_t *ms = json_object_get(p, "metricSpec");
    if (!json_is_object(ms)) {
        an_seterr(err, errlen, "parameters: no metricSpec object");
        json_decref(p);
        return AN_EINVAL;
    }
    *spec = json_incref(ms);
    json_decref(p);
    return 0;
}

/* A deep copy of a borrowed object (or an object parsed from its text), in
 * *out, so the message never shares (and so never modifies) caller values.
 * what names it in err. */
static int spec_copy(const json_t *spec, const char *spec_json, const char *what,
                     json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (spec) {
        if (!json_is_object(spec)) {
            an_seterr(err, errlen, "%s: must be an object", what);
            return AN_EINVAL;
        }
        *out = json_deep_copy(spec);
        if (!*out) {
            an_seterr(err, errlen, "%s: out of memory", what);
            return AN_ENOMEM;
        }
        return 0;
    }
    if (spec_json)
        return parse_object(spec_json, what, out, err, errlen);
    an_seterr(err, errlen, "%s: required", what);
    return AN_EINVAL;
}

/* The message's "metric" object in *out: uid, name, description, resource,
 * location, datasource and spec (a copy of m->spec, or m->spec_json
 * parsed). */
static int msg_metric(const an_metric_info *m, json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!m || !m->uid || !m->datasource) {
        an_seterr(err, errlen, "metric: uid and datasource are required");
        return AN_EINVAL;
    }
    json_t *spec;
    int rc = spec_copy(m->spec, m->spec_json, "metric.spec", &spec, err, errlen);
    if (rc)
        return rc;
    json_t *metric = json_object();
    if (!metric) {
        json_decref(spec);
        an_seterr(err, errlen, "metric: out of memory");
        return AN_ENOMEM;
    }
    jb b = {0};
    jb_set(&b, metric, "uid", jb_str(&b, m->uid));
    jb_set(&b, metric, "name", jb_str(&b, m->name));
    jb_set(&b, metric, "description", jb_str(&b, m->description));
    jb_set(&b, metric, "resource", jb_str(&b, m->resource));
    jb_set(&b, metric, "location", jb_str(&b, m->location));
    jb_set(&b, metric, "datasource", jb_str(&b, m->datasource));
    jb_set(&b, metric, "spec", spec);
    rc = jb_rc(&b, "metric", err, errlen);
    if (rc) {
        json_decref(metric);
        return rc;
    }
    *out = metric;
    return 0;
}

/* Result i of the message in *out: rowid, ts, value, rawAnomaly, anomaly
 * and the predictions (a copy of r->predictions, or r->predictions_json
 * parsed, or null). */
static int msg_row(const an_out_row *r, size_t i, json_t **out, char *err, size_t errlen)
{
    char what[64];
    json_t *pred = NULL;
    *out = NULL;
    snprintf(what, sizeof what, "results[%zu].multiStepBestPredictions", i);
    if (r->predictions) {
        if (!json_is_object(r->predictions) && !json_is_null(r->predictions)) {
            an_seterr(err, errlen, "%s: must be an object or null", what);
            return AN_EINVAL;
        }
        pred = json_deep_copy(r->predictions);
    } else if (!r->predictions_json || strcmp(r->predictions_json, "null") == 0) {
        pred = json_null();
    } else {
        int rc = parse_object(r->predictions_json, what, &pred, err, errlen);
        if (rc)
            return rc;
    }
    snprintf(what, sizeof what, "results[%zu] (rowid %" PRId64 ")", i, r->rowid);
    json_t *o = json_object();
    jb b = {0};
    if (!o) {
        json_decref(pred);
        b.fail = true;
        return jb_rc(&b, what, err, errlen);
    }
    jb_set(&b, o, "rowid", json_integer(r->rowid));
    jb_set(&b, o, "ts", jb_real(&b, r->ts));
    jb_set(&b, o, "value", jb_real(&b, r->value));
    jb_set(&b, o, "rawAnomaly", jb_real(&b, r->raw));
    jb_set(&b, o, "anomaly", jb_real(&b, r->anomaly));
    jb_set(&b, o, "multiStepBestPredictions", pred);
    int rc = jb_rc(&b, what, err, errlen);
    if (rc) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return 0;
}

int an_msg_inference(const an_metric_info *m, const an_out_row *rows, size_t n, json_t **out,
                     char *err, size_t errlen)
{
    *out = NULL;
    json_t *metric;
    int rc = msg_metric(m, &metric, err, errlen);
    if (rc)
        return rc;
    jb b = {0};
    json_t *msg = json_object();
    json_t *results = json_array();
    if (!msg) {
        json_decref(metric);
        json_decref(results);
        b.fail = true;
        return jb_rc(&b, "message", err, errlen);
    }
    jb_set(&b, msg, "metric", metric);
    jb_set(&b, msg, "results", results);
    for (size_t i = 0; i < n && !b.fail; i++) {
        json_t *o;
        rc = msg_row(&rows[i], i, &o, err, errlen);
        if (rc) {
            json_decref(msg);
            return rc;
        }
        jb_app(&b, results, o);
    }
    rc = jb_rc(&b, "message", err, errlen);
    if (rc) {
        json_decref(msg);
        return rc;
    }
    *out = msg;
    return 0;
}

/* One row's predictions into b: a canonical text verbatim, else parsed and
 * re-dumped (an object or null, as an_msg_inference accepts). */
static int sb_predictions(an_jbuf *b, const an_out_row *r, size_t i, char *err, size_t errlen)
{
    char what[64];
    snprintf(what, sizeof what, "results[%zu].multiStepBestPredictions", i);
    if (r->predictions) {
        if (!json_is_object(r->predictions) && !json_is_null(r->predictions)) {
            an_seterr(err, errlen, "%s: must be an object or null", what);
            return AN_EINVAL;
        }
        an_jbuf_json(b, r->predictions, 3);
        return 0;
    }
    if (!r->predictions_json || strcmp(r->predictions_json, "null") == 0) {
        an_jbuf_puts(b, "null");
        return 0;
    }
    if (r->predictions_canonical) {
        an_jbuf_puts(b, r->predictions_json);
        return 0;
    }
    json_t *p;
    int rc = parse_object(r->predictions_json, what, &p, err, errlen);
    if (rc)
        return rc;
    an_jbuf_json(b, p, 3);   /* its depth in the message, as the tree dumps it */
    json_decref(p);
    return 0;
}

/* The text of b in *out (owned by the caller) when nothing failed; else b
 * freed and err set. */
static int jbuf_finish(an_jbuf *b, const char *what, char **out, size_t *len, char *err,
                       size_t errlen)
{
    int rc = an_jbuf_rc(b);
    if (rc) {
        free(b->p);
        an_seterr(err, errlen, "%s: %s", what,
                  rc == AN_ENOMEM ? "out of memory" : "non-finite number or too deep");
        return rc;
    }
    *out = b->p;
    if (len)
        *len = b->len;
    return 0;
}

int an_msg_inference_head(const an_metric_info *m, char **out, size_t *len, char *err,
                          size_t errlen)
{
    *out = NULL;
    /* through the tree builder: the metric part is small */
    json_t *head;
    int rc = an_msg_inference(m, NULL, 0, &head, err, errlen);
    if (rc)
        return rc;
    an_jbuf b = {0};
    an_jbuf_put(&b, "{\"metric\":", 10);
    an_jbuf_json(&b, json_object_get(head, "metric"), 1);
    json_decref(head);
    an_jbuf_puts(&b, ",\"results\":[");
    return jbuf_finish(&b, "metric", out, len, err, errlen);
}

int an_msg_inference_text_head(const char *head, size_t head_len, const an_out_row *rows,
                               size_t n, char **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    an_jbuf b = {0};
    an_jbuf_put(&b, head, head_len);
    for (size_t i = 0; i < n && !b.fail; i++) {
        const an_out_row *r = &rows[i];
        char num[40];
        if (!isfinite(r->ts) || !isfinite(r->value) || !isfinite(r->raw) ||
            !isfinite(r->anomaly)) {
            free(b.p);
            an_seterr(err, errlen, "results[%zu] (rowid %" PRId64 "): non-finite number", i,
                   r->rowid);
            return AN_EINVAL;
        }
        if (i)
            an_jbuf_put(&b, ",", 1);
        snprintf(num, sizeof num, "{\"rowid\":%" PRId64 ",\"ts\":", r->rowid);
        an_jbuf_puts(&b, num);
        an_jbuf_puts(&b, an_codec_fmt_double(num, sizeof num, r->ts));
        an_jbuf_puts(&b, ",\"value\":");
        an_jbuf_puts(&b, an_codec_fmt_double(num, sizeof num, r->value));
        an_jbuf_puts(&b, ",\"rawAnomaly\":");
        an_jbuf_puts(&b, an_codec_fmt_double(num, sizeof num, r->raw));
        an_jbuf_puts(&b, ",\"anomaly\":");
        an_jbuf_puts(&b, an_codec_fmt_double(num, sizeof num, r->anomaly));
        an_jbuf_puts(&b, ",\"multiStepBestPredictions\":");
        int rc = sb_predictions(&b, r, i, err, errlen);
        if (rc) {
            free(b.p);
            return rc;
        }
        an_jbuf_put(&b, "}", 1);
    }
    an_jbuf_put(&b, "]}", 2);
    return jbuf_finish(&b, "results", out, len, err, errlen);
}

int an_msg_inference_text(const an_metric_info *m, const an_out_row *rows, size_t n,
                          char **out, size_t *len, char *err, size_t errlen)
{
    size_t hlen = 0;
    char *head;
    *out = NULL;
    int rc = an_msg_inference_head(m, &head, &hlen, err, errlen);
    if (rc)
        return rc;
    rc = an_msg_inference_text_head(head, hlen, rows, n, out, len, err, errlen);
    free(head);
    return rc;
}

int an_msg_command(const an_cmd_msg *c, json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!c || !c->method || !c->model_id || !c->command_id) {
        an_seterr(err, errlen, "method, modelId and commandId are required");
        return AN_EINVAL;
    }
    json_t *spec = NULL;
    if (c->has_model_info) {
        if (!c->metric_name || !c->resource) {
            an_seterr(err, errlen, "modelInfo: metricName and resource are required");
            return AN_EINVAL;
        }
        int rc = spec_copy(c->model_spec, c->model_spec_json, "modelInfo.modelSpec", &spec,
                           err, errlen);
        if (rc)
            return rc;
    }
    jb b = {0};
    json_t *msg = json_object();
    if (!msg) {
        json_decref(spec);
        b.fail = true;
        return jb_rc(&b, "command result", err, errlen);
    }
    jb_set(&b, msg, "method", jb_str(&b, c->method));
    jb_set(&b, msg, "modelId", jb_str(&b, c->model_id));
    jb_set(&b, msg, "commandId", jb_str(&b, c->command_id));
    jb_set(&b, msg, "status", json_integer(c->status));
    jb_set(&b, msg, "errorMessage", jb_str(&b, c->error_message));
    if (c->has_model_info) {
        json_t *mi = json_object();
        if (mi) {
            jb_set(&b, mi, "metricName", jb_str(&b, c->metric_name));
            jb_set(&b, mi, "resource", jb_str(&b, c->resource));
            jb_set(&b, mi, "modelSpec", spec);
        } else {
            json_decref(spec);
        }
        jb_set(&b, msg, "modelInfo", mi);
    }
    int rc = jb_rc(&b, "command result", err, errlen);
    if (rc) {
        json_decref(msg);
        return rc;
    }
    *out = msg;
    return 0;
}

int an_body_encode(const json_t *msg, an_encoding enc, char **body,
                   size_t *len, char *err, size_t errlen)
{
    *body = NULL;
    *len = 0;
    an_jbuf b = {0};
    an_jbuf_json(&b, msg, 0);
    char *text;
    size_t tlen = 0;
    int rc = jbuf_finish(&b, "cannot serialize JSON", &text, &tlen, err, errlen);
    if (rc)
        return rc;
    return an_body_encode_text(text, tlen, enc, body, len, err, errlen);
}

int an_body_encode_text(char *text, size_t tlen, an_encoding enc, char **body, size_t *len,
                        char *err, size_t errlen)
{
    *body = NULL;
    *len = 0;
    if (enc == AN_ENC_JSON) {
        *body = text;
        *len = tlen;
        return 0;
    }
    int rc = an_zlib_compress(text, tlen, body, len, err, errlen);
    free(text);
    return rc;
}

/* ------------------------------------------------------------ output entry */

int an_output_entry_decode(const char *id, const an_field *fields,
                           size_t nfields, size_t max_inflated, json_t **out,
                           char *err, size_t errlen)
{
    *out = NULL;
    const an_field *dt = an_field_find(fields, nfields, "dataType");
    const an_field *model = an_field_find(fields, nfields, "model");
    const an_field *rows = an_field_find(fields, nfields, "rows");
    const an_field *source = an_field_find(fields, nfields, "source");
    const an_field *encf = an_field_find(fields, nfields, "encoding");
    const an_field *body = an_field_find(fields, nfields, "body");
    if (!dt || !model || !body) {
        an_seterr(err, errlen, "missing field '%s'",
               !dt ? "dataType" : !model ? "model" : "body");
        return AN_EINVAL;
    }
    an_encoding e = AN_ENC_JSON;
    if (encf && an_encoding_parse(encf->value, encf->value_len, &e) != 0) {
        char q[160];
        quote_short(q, sizeof q, encf->value, encf->value_len);
        an_seterr(err, errlen, "unknown encoding '%s'", q);
        return AN_EINVAL;
    }
    json_t *b = NULL;
    char sub[256];
    int rc = an_json_field_decode(body->value, body->value_len, e,
                                  max_inflated, &b, sub, sizeof sub);
    if (rc) {
        an_seterr(err, errlen, "body: %s", sub);
        return rc;
    }
    jb jf = {0};
    json_t *o = json_object();
    if (!o) {
        json_decref(b);
        jf.fail = true;
        return jb_rc(&jf, "output entry", err, errlen);
    }
    jb_set(&jf, o, "id", jb_str(&jf, id));
    jb_set(&jf, o, "dataType", jb_strn(&jf, dt->value, dt->value_len));
    jb_set(&jf, o, "model", jb_strn(&jf, model->value, model->value_len));
    jb_set(&jf, o, "rows", rows ? jb_strn(&jf, rows->value, rows->value_len) : json_null());
    jb_set(&jf, o, "source",
           source ? jb_strn(&jf, source->value, source->value_len) : json_null());
    jb_set(&jf, o, "encoding", json_string(an_encoding_name(e)));
    jb_set(&jf, o, "body", b);
    rc = jb_rc(&jf, "output entry", err, errlen);
    if (rc) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return 0;
}
