/*
 * fuzz_json_dump: the compact JSON writer (an_json_dumps), the text every
 * published body and stored prediction goes through.
 *
 * Input: byte 0 picks the mode, the rest is
 *   even: JSON text, parsed by jansson (any value);
 *   odd:  raw material for a value built here: an array of reals from
 *         8-byte chunks (every finite bit pattern: subnormals, -0.0,
 *         extremes) and, when valid UTF-8, the bytes as a string and as an
 *         object key (control characters, quotes, backslashes, U+2028).
 * Contracts:
 *   - an_json_dumps succeeds on every value jansson can hold with finite
 *     reals (depth within jansson's own parse limit);
 *   - round trip: jansson parses the text back to the same value, with the
 *     same types (a real stays a real) and reals bit for bit (-0.0 too);
 *   - the text is a fixed point: dump(parse(dump(v))) == dump(v);
 *   - compact: no raw control character and no blank outside strings.
 */
#include <math.h>

#include "an_codec.h"
#include "fuzz_common.h"

/* The one call into the writer: adapt here when its API changes. */
static char *dump(const json_t *v, size_t *len) { return an_json_dumps(v, len); }

/* Structural equality with types kept apart and reals compared bitwise. */
static bool same(const json_t *a, const json_t *b)
{
    if (json_typeof(a) != json_typeof(b))
        return false;
    switch (json_typeof(a)) {
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return false;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v) {
            const json_t *w = json_object_get(b, k);
            if (!w || !same(v, w))
                return false;
        }
        return true;
    }
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!same(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b),
                      json_string_length(a)) == 0;
    case JSON_INTEGER:
        return json_integer_value(a) == json_integer_value(b);
    case JSON_REAL:
        return fz_same_double(json_real_value(a), json_real_value(b));
    default:
        return true;
    }
}

/* No control byte anywhere, no blank outside strings. */
static void check_compact(const char *t, size_t n)
{
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        FZ_CHECK(c >= 0x20, "raw control byte 0x%02x at %zu", c, i);
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else {
            FZ_CHECK(c != ' ', "blank outside a string at %zu", i);
            if (c == '"')
                in_str = true;
        }
    }
}

static void check_value(const json_t *v)
{
    size_t len = 0;
    char *t = dump(v, &len);
    FZ_CHECK(t != NULL, "an_json_dumps failed on a valid value");
    FZ_CHECK(strlen(t) == len, "length %zu, text has %zu", len, strlen(t));
    check_compact(t, len);
    json_error_t je;
    json_t *back = json_loadb(t, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    FZ_CHECK(back != NULL, "jansson cannot read the dump: %s", je.text);
    FZ_CHECK(same(v, back), "round trip changed the value: %.200s", t);
    size_t len2 = 0;
    char *t2 = dump(back, &len2);
    FZ_CHECK(t2 && len2 == len && memcmp(t, t2, len) == 0,
             "dump is not a fixed point: %.200s", t);
    free(t2);
    json_decref(back);
    free(t);
}

static json_t *build(const uint8_t *d, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i + 8 <= n; i += 8) {
        double x;
        memcpy(&x, d + i, 8);
        if (isfinite(x))
            json_array_append_new(arr, json_real(x));
    }
    json_t *s = json_stringn((const char *)d, n); /* NULL unless valid UTF-8 */
    if (s) {
        json_array_append(arr, s);
        char *key = fz_strndup(d, n);
        if (strlen(key) == n) { /* keys are NUL-terminated */
            json_t *o = json_object();
            json_object_set(o, key, s);
            json_array_append_new(arr, o);
        }
        free(key);
        json_decref(s);
    }
    return arr;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    json_t *v;
    if (mode & 1)
        v = build(data, size);
    else
        v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (v)
        check_value(v);
    json_decref(v);
    return 0;
}
