/*
 * fuzz_output_decode: the output entry decoder (an_output_entry_decode),
 * used by anomalyctl tail and the tests to read what anomalyd published.
 *
 * Input: byte 0 picks the shape, the rest is the entry.
 *   bit 0 set: "raw fields": name 0xff value 0xff ... pairs;
 *   bit 0 clear: the body is the rest, with dataType/model fixed and
 *              bits 1-2 picking the encoding field: none, "json", "zlib"
 *              with the body compressed here, "zlib" with the body as is.
 * Contracts:
 *   - failure: *out NULL, AN_EINVAL or AN_ERANGE, a reason without control
 *     characters;
 *   - success: an object with exactly id, dataType, model, rows, source,
 *     encoding, body; dataType/model equal to the fields; the body is
 *     what jansson itself parses from the (inflated) body text;
 *   - round trip: an_body_encode of the decoded body (json and zlib)
 *     decodes again to an equal body.
 */
#include "an_codec.h"
#include "fuzz_common.h"

#define MAX_INFLATED ((size_t)1 << 20)

/* The one call into the decoder: adapt here when its API changes. */
static int decode(const an_field *f, size_t n, json_t **out, char *err, size_t len)
{
    return an_output_entry_decode("1-1", f, n, MAX_INFLATED, out, err, len);
}


static void check_field(const json_t *o, const char *key, const an_field *f)
{
    const json_t *v = json_object_get(o, key);
    if (!f) {
        FZ_CHECK(json_is_null(v), "'%s' should be null", key);
        return;
    }
    FZ_CHECK(json_is_string(v) && json_string_length(v) == f->value_len &&
                 memcmp(json_string_value(v), f->value, f->value_len) == 0,
             "'%s' differs from its field", key);
}

/* What the body must be: jansson's own parse of the body text. */
static json_t *reference_body(const an_field *body, const char *enc)
{
    char *text = NULL, err[256];
    size_t tlen = body->value_len;
    const char *t = body->value;
    if (strcmp(enc, "zlib") == 0) {
        if (an_zlib_inflate(body->value, body->value_len, MAX_INFLATED, &text,
                            &tlen, err, sizeof err) != 0)
            return NULL;
        t = text;
    }
    json_t *v = json_loadb(t, tlen, JSON_DECODE_ANY, NULL);
    free(text);
    return v;
}

static void round_trip(const json_t *body, an_encoding enc)
{
    char *text = NULL, err[256] = "";
    size_t len = 0;
    int rc = an_body_encode(body, enc, &text, &len, err, sizeof err);
    FZ_CHECK(rc == 0, "an_body_encode of a decoded body failed: %s", err);
    const char *en = an_encoding_name(enc);
    an_field f[4] = {{"dataType", 8, AN_DATATYPE_INFERENCE, strlen(AN_DATATYPE_INFERENCE)},
                     {"model", 5, "m", 1},
                     {"encoding", 8, en, strlen(en)},
                     {"body", 4, text, len}};
    json_t *o = NULL;
    rc = decode(f, 4, &o, err, sizeof err);
    FZ_CHECK(rc == 0, "re-decoding an encoded body failed: %s", err);
    FZ_CHECK(json_equal(json_object_get(o, "body"), (json_t *)body),
             "round trip (%s) changed the body", en);
    json_decref(o);
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
        const char *body = (const char *)data;
        size_t blen = size;
        int enc = (mode >> 1) & 3;
        if (enc == 2) {
            char err[128];
            FZ_CHECK(an_zlib_compress(data, size, &zbuf, &blen, err, sizeof err) == 0,
                     "compress: %s", err);
            body = zbuf;
        }
        f[nf++] = (an_field){"dataType", 8, AN_DATATYPE_COMMAND, strlen(AN_DATATYPE_COMMAND)};
        f[nf++] = (an_field){"model", 5, "uid", 3};
        if (enc == 1)
            f[nf++] = (an_field){"encoding", 8, "json", 4};
        else if (enc >= 2)
            f[nf++] = (an_field){"encoding", 8, "zlib", 4};
        f[nf++] = (an_field){"body", 4, body, blen};
    }

    json_t *o = (json_t *)&o;
    char err[512] = "";
    int rc = decode(f, nf, &o, err, sizeof err);
    if (rc != 0) {
        FZ_CHECK(o == NULL, "failure left *out set");
        FZ_CHECK(rc == AN_EINVAL || rc == AN_ERANGE, "rc %d (%s)", rc, err);
        FZ_CHECK(err[0] && fz_reason_clean(err),
                 "reason empty or with a control character: '%s'", err);
    } else {
        FZ_CHECK(json_is_object(o) && json_object_size(o) == 7,
                 "decoded entry is not a 7-key object");
        const char *keys[] = {"id", "dataType", "model", "rows", "source", "encoding", "body"};
        for (size_t i = 0; i < 7; i++)
            FZ_CHECK(json_object_get(o, keys[i]), "key '%s' missing", keys[i]);
        check_field(o, "dataType", an_field_find(f, nf, "dataType"));
        check_field(o, "model", an_field_find(f, nf, "model"));
        check_field(o, "rows", an_field_find(f, nf, "rows"));
        check_field(o, "source", an_field_find(f, nf, "source"));
        const char *enc = json_string_value(json_object_get(o, "encoding"));
        FZ_CHECK(enc && (!strcmp(enc, "json") || !strcmp(enc, "zlib")), "encoding");
        const json_t *body = json_object_get(o, "body");
        json_t *ref = reference_body(an_field_find(f, nf, "body"), enc);
        FZ_CHECK(ref && json_equal(ref, (json_t *)body),
                 "body differs from jansson's parse of the body text");
        json_decref(ref);
        round_trip(body, AN_ENC_JSON);
        round_trip(body, AN_ENC_ZLIB);
        json_decref(o);
    }
    free(zbuf);
    return 0;
}
