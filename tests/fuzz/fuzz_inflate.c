/*
 * fuzz_inflate: the bounded zlib inflater (an_zlib_inflate).
 *
 * Input: any bytes, taken as a zlib stream; max_out is 64 KiB so the
 * limit is reached by small inputs.
 * Contracts:
 *   - the verdict matches zlib's own one-shot uncompress2() (the
 *     reference) given max_out + 1 bytes of room: same bytes when it
 *     succeeds; AN_ERANGE exactly when the stream has more than max_out
 *     bytes; AN_EINVAL for corrupt/truncated streams and trailing bytes;
 *   - success: *outlen <= max_out, NUL after the data; failure: *out NULL,
 *     a reason without control characters;
 *   - round trip: an_zlib_compress(input) inflates back to the input.
 */
#include <zlib.h>

#include "an_codec.h"
#include "fuzz_common.h"

#define MAX_OUT ((size_t)64 << 10)

/* The one call into the inflater: adapt here when its API changes. */
static int inflate_call(const void *in, size_t n, size_t max_out, char **out,
                        size_t *outlen, char *err, size_t errlen)
{
    return an_zlib_inflate(in, n, max_out, out, outlen, err, errlen);
}

static void check_against_reference(const uint8_t *data, size_t size)
{
    char *out = (char *)&out;
    size_t outlen = 12345;
    char err[256] = "";
    int rc = inflate_call(data, size, MAX_OUT, &out, &outlen, err, sizeof err);

    static unsigned char ref[MAX_OUT + 1];
    uLongf rlen = sizeof ref;
    uLong consumed = size;
    int zr = uncompress2(ref, &rlen, data, &consumed);
    int want;
    if ((zr == Z_OK && rlen > MAX_OUT) || zr == Z_BUF_ERROR)
        want = AN_ERANGE;
    else if (zr == Z_OK && consumed == size)
        want = 0;
    else
        want = AN_EINVAL; /* corrupt, truncated, trailing bytes */
    FZ_CHECK(rc == want, "rc %d, reference says %d (zlib %d, %lu bytes, "
             "%lu of %zu consumed): %s", rc, want, zr, (unsigned long)rlen,
             (unsigned long)consumed, size, err);
    if (rc == 0) {
        FZ_CHECK(out && outlen == rlen && memcmp(out, ref, rlen) == 0,
                 "inflated bytes differ from the reference");
        FZ_CHECK(out[outlen] == '\0', "no NUL after the data");
        free(out);
    } else {
        FZ_CHECK(out == NULL && outlen == 0, "failure left output set");
        FZ_CHECK(err[0] && fz_reason_clean(err), "bad reason '%s'", err);
    }
}

static void check_round_trip(const uint8_t *data, size_t size)
{
    char *z = NULL, *back = NULL, err[256] = "";
    size_t zlen = 0, blen = 0;
    FZ_CHECK(an_zlib_compress(data, size, &z, &zlen, err, sizeof err) == 0,
             "compress: %s", err);
    int rc = inflate_call(z, zlen, size ? size : 1, &back, &blen, err, sizeof err);
    FZ_CHECK(rc == 0 && blen == size && (size == 0 || memcmp(back, data, size) == 0),
             "round trip of %zu bytes failed: %d %s", size, rc, err);
    free(back);
    /* one byte less room than the data: must be refused as over the limit */
    if (size > 1) {
        rc = inflate_call(z, zlen, size - 1, &back, &blen, err, sizeof err);
        FZ_CHECK(rc == AN_ERANGE && back == NULL,
                 "%zu bytes inflated under a limit of %zu: rc %d", size, size - 1, rc);
    }
    free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_against_reference(data, size);
    check_round_trip(data, size);
    return 0;
}
