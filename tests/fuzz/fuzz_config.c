/*
 * fuzz_config: configuration loading and secret redaction.
 *
 * Input: byte 0 picks the mode, the rest is
 *   even: an INI file for an_config_load;
 *   odd:  one Redis URL or PostgreSQL DSN (conninfo or URI), up to the
 *         first NUL.
 * Oracles for "the password": the Redis URL parser anomalyd connects with
 * (an_redis_url_parse) and libpq's own PQconninfoParse for DSNs.
 * Contracts:
 *   - INI: an_config_load returns 0 or AN_ECONFIG with a message that
 *     does not quote the password of a URL written in the file
 *     ("config-error"); never crashes; on success an_config_print works and its url/dsn lines pass
 *     the redaction contract below;
 *   - redaction, for every text whose parsed password P is non-empty, of
 *     both the Redis client's redacted URL (used in every Redis error) and
 *     an_config_mask_secret (an_config_print, logs):
 *       . P does not occur in the redacted text more often than outside the
 *         password in the original (strictly fewer times than in the
 *         original when the password is written literally);
 *       . the redacted text, parsed again, has the password "***" (or is
 *         no longer a URL/DSN at all): a partial mask is a leak;
 *   - a Redis URL the parser refuses gets an error that quotes the
 *     redacted URL, never the URL itself.
 * FUZZ_SKIP names: "config-error", "streams-redact" (the Redis client's redacted URL),
 * "config-mask" (an_config_mask_secret of Redis URLs), "config-mask-dsn"
 * (an_config_mask_secret of DSNs).
 */
#define _GNU_SOURCE
#include <libpq-fe.h>
#include <sys/mman.h>
#include <unistd.h>

#include "an_config.h"
#include "fuzz_common.h"

#include "an_redis_url.h"

typedef struct {
    char *password; /* malloc'd, NULL when none */
    char *redacted; /* the redacted URL (what the Redis client logs), malloc'd */
    int rc;
    char err[512];
} redis_parsed;

/* The thin calls into the Redis URL parser and redactor (an_redis_url.h):
 * adapt here when their API changes. */
static void redis_parse(const char *url, redis_parsed *out)
{
    memset(out, 0, sizeof *out);
    an_redis_url u;
    out->rc = an_redis_url_parse(url, &u, out->err, sizeof out->err);
    out->password = u.password ? strdup(u.password) : NULL;
    an_redis_url_free(&u);
    size_t len = 2 * strlen(url) + 64;
    out->redacted = malloc(len);
    FZ_CHECK(out->redacted != NULL, "out of memory");
    an_redis_url_redact(url, out->redacted, len);
}

static void redis_parsed_free(redis_parsed *p)
{
    free(p->password);
    free(p->redacted);
}

/* libpq's password of a conninfo/URI; NULL when it does not parse or has
 * none. malloc'd. */
static char *pg_password(const char *dsn, bool *parsed)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &errmsg);
    PQfreemem(errmsg);
    *parsed = opts != NULL;
    if (!opts)
        return NULL;
    char *pw = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val)
            pw = strdup(o->val);
    PQconninfoFree(opts);
    return pw;
}

/* Redaction contract of P in red (redacted from orig); literal: orig has
 * no escapes (%, quotes, backslash), so P is written as is. */
static void check_no_leak(const char *what, const char *orig, const char *pw,
                          const char *red)
{
    /* "***" itself may contain P; a password under 4 characters can occur
     * in words the masking writes ("host=", "port="): for those the
     * reparse check below is the contract */
    if (!pw || strlen(pw) < 4 || strchr(pw, '*'))
        return;
    bool literal = !strpbrk(orig, "%'\\");
    size_t in_orig = fz_count(orig, pw), in_red = fz_count(red, pw);
    if (literal && in_orig > 0)
        FZ_CHECK(in_red < in_orig, "%s leaks the password '%s': '%s' -> '%s'", what,
                 pw, orig, red);
    else
        FZ_CHECK(in_red <= in_orig, "%s leaks the password '%s': '%s' -> '%s'", what,
                 pw, orig, red);
}

/* The mask as an_config_print applies it (same buffer size). */
static void mask(const char *text, char *buf, size_t len)
{
    an_config_mask_secret(text, buf, len);
}

static void check_text(const char *text)
{
    char masked[1024];
    mask(text, masked, sizeof masked);

    redis_parsed rp;
    redis_parse(text, &rp);
    if (rp.rc != 0) {
        FZ_CHECK(rp.rc == AN_ECONFIG || rp.rc == AN_ENOMEM, "parse_url rc %d", rp.rc);
        /* the error never quotes a URL that holds a password */
        if (rp.password && *rp.password && strlen(text) >= 8)
            FZ_CHECK(strstr(rp.redacted, text) || !strstr(rp.err, text),
                     "the Redis URL error quotes the unredacted URL: %s", rp.err);
    }
    if (rp.password && *rp.password) {
        /* contract names for FUZZ_SKIP: "streams-redact", "config-mask" */
        const char *names[2] = {"streams-redact", "config-mask"};
        const char *reds[2] = {rp.redacted, masked};
        for (int i = 0; i < 2; i++) {
            if (fz_skip(names[i]))
                continue;
            check_no_leak(names[i], text, rp.password, reds[i]);
            redis_parsed again;
            redis_parse(reds[i], &again);
            if (again.rc == 0)
                FZ_CHECK(again.password && strcmp(again.password, "***") == 0,
                         "%s: '%s' redacted as '%s' still has the password '%s'",
                         names[i], text, reds[i],
                         again.password ? again.password : "(none)");
            redis_parsed_free(&again);
        }
    }
    redis_parsed_free(&rp);

    bool parsed;
    char *pw = pg_password(text, &parsed);
    if (pw && *pw && !fz_skip("config-mask-dsn")) {
        check_no_leak("an_config_mask_secret (DSN)", text, pw, masked);
        char *again = pg_password(masked, &parsed);
        FZ_CHECK(!parsed || (again && strcmp(again, "***") == 0),
                 "DSN '%s' masked as '%s' still has the password '%s'", text, masked,
                 again ? again : "(none)");
        free(again);
    }
    free(pw);
}

/* A config error must not quote the secret of any URL in the file: for
 * every "scheme://user:P@" in a value (after the first '=' of a line that
 * is not a [section] header) (P up to the authority's last '@'), the
 * error may not contain ":P@" (conservative: the raw userinfo with its
 * delimiters cannot come from the message's own words). */
static void check_error_secrets(const char *data, size_t size, const char *err)
{
    char *text = fz_strndup((const uint8_t *)data, size);
    /* values only: the text after the first '=' of each line */
    for (char *line = text; line && *line;) {
        char *eol = strchr(line, '\n');
        if (eol)
            *eol = '\0';
        char *eq = strchr(line, '=');
        bool header = line[strspn(line, " \t")] == '['; /* a [section] name */
        line = eol ? eol + 1 : NULL;
        if (!eq || header)
            continue;
    for (char *s = strstr(eq, "://"); s; s = strstr(s + 3, "://")) {
        char *auth = s + 3;
        size_t alen = strcspn(auth, "/\n\r");
        char *at = NULL;
        for (char *p = auth; p < auth + alen; p++)
            if (*p == '@')
                at = p;
        char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (!colon || colon + 1 == at)
            continue;
        size_t nlen = (size_t)(at - colon) + 1; /* ":P@" */
        char *needle = fz_strndup((const uint8_t *)colon, nlen);
        FZ_CHECK(!strstr(err, needle),
                 "config error quotes the secret '%s' of the file: %s", needle, err);
        free(needle);
    }
    }
    free(text);
}

static void check_ini(const uint8_t *data, size_t size)
{
    static int fd = -1;
    if (fd < 0) {
        fd = memfd_create("fuzz.conf", 0);
        FZ_CHECK(fd >= 0, "memfd_create");
    }
    FZ_CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, data, size, 0) == (ssize_t)size,
             "writing the config");
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    an_config cfg;
    char err[1024] = "";
    int rc = an_config_load(&cfg, path, err, sizeof err);
    if (rc != 0) {
        FZ_CHECK(rc == AN_ECONFIG, "an_config_load rc %d: %s", rc, err);
        FZ_CHECK(err[0] != '\0', "an_config_load failed without a message");
        if (!fz_skip("config-error"))
            check_error_secrets((const char *)data, size, err);
        an_config_free(&cfg);
        return;
    }
    char *out = NULL;
    size_t olen = 0;
    FILE *f = open_memstream(&out, &olen);
    FZ_CHECK(f != NULL, "open_memstream");
    an_config_print(&cfg, f);
    fclose(f);
    FZ_CHECK(olen > 0, "an_config_print printed nothing");
    check_text(cfg.redis.url);
    check_text(cfg.postgres.dsn);
    free(out);
    an_config_free(&cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool env_cleared;
    if (!env_cleared) { /* the file alone decides (no ANOMALYD_* overrides) */
        for (char **e = environ; *e;) {
            if (strncmp(*e, "ANOMALYD_", 9) == 0) {
                char name[256];
                size_t n = strcspn(*e, "=");
                snprintf(name, sizeof name, "%.*s", (int)n, *e);
                unsetenv(name);
            } else {
                e++;
            }
        }
        env_cleared = true;
    }
    if (size < 1)
        return 0;
    if (data[0] & 1) {
        char *t = fz_strndup(data + 1, size - 1);
        check_text(t);
        free(t);
    } else {
        check_ini(data + 1, size - 1);
    }
    return 0;
}
