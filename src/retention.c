/*
 * retention.c: the input stream's retention policy (see an_retention.h).
 * Trimming itself is one atomic script (lua/trim_input.lua): this module
 * only runs it, cleans the attempts hash page by page, and names the groups
 * that keep the stream from being trimmed.
 */
#include "an_retention.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_log.h"

int64_t an_id_ms(const char *id)
{
    if (!id || *id < '0' || *id > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(id, &end, 10);
    if (errno || (*end != '\0' && *end != '-') || v > INT64_MAX)
        return -1;
    return (int64_t)v;
}

bool an_retention_pins(const an_trim_result *t, const an_trim_group *g, int64_t retention_ms,
                       int64_t pin_warn_ms, int64_t *age_ms)
{
    int64_t ms = g->holds ? an_id_ms(g->held) : -1;
    int64_t age = ms < 0 ? -1 : t->now_ms - ms;
    if (age_ms)
        *age_ms = age;
    return g->holds && age >= 0 && age > retention_ms + pin_warn_ms;
}

/* Copies s into dst (dstlen > 0) with bytes outside printable ASCII, and
 * the backslash, written as \xNN; truncated to fit. */
static void escape(const char *s, char *dst, size_t dstlen)
{
    size_t o = 0;
    for (; *s && o + 1 < dstlen; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            dst[o++] = (char)c;
        } else if (o + 5 < dstlen) {
            o += (size_t)snprintf(dst + o, dstlen - o, "\\x%02x", c);
        } else {
            break;
        }
    }
    dst[o] = '\0';
}

/* Warns about each group that pins the stream, at most every pin_warn_ms
 * for the same group (the group name goes through %s: names come from
 * whoever created the group, so control characters are escaped). */
static void warn_pins(an_retention *rt, const an_trim_result *t, const an_config *cfg)
{
    for (size_t i = 0; i < t->ngroups; i++) {
        const an_trim_group *g = &t->groups[i];
        int64_t age;
        if (!an_retention_pins(t, g, cfg->streams.input_retention_ms, cfg->streams.pin_warn_ms,
                               &age))
            continue;
        char name[sizeof rt->warned_group];
        escape(g->name, name, sizeof name);
        if (!strcmp(name, rt->warned_group) && t->now_ms - rt->warned_ms < cfg->streams.pin_warn_ms)
            continue;
        snprintf(rt->warned_group, sizeof rt->warned_group, "%s", name);
        rt->warned_ms = t->now_ms;
        an_warn("consumer group '%s' pins stream %s: it still needs entry %s, %" PRId64
                " s old, so nothing after it can be trimmed (a group nobody reads any more? "
                "XGROUP DESTROY %s <group> removes it)",
                name, cfg->streams.input, g->held, age / 1000, cfg->streams.input);
    }
}

int an_retention_tick(an_retention *rt, an_redis *r, const an_config *cfg)
{
    an_trim_result t;
    int rc = 0;
    for (int call = 0; call < AN_RETENTION_TRIM_CALLS; call++) {
        rc = an_trim_input(r, cfg->streams.input, cfg->streams.input_retention_ms, true,
                           AN_RETENTION_TRIM_LIMIT, &t);
        if (rc)
            return rc;
        rt->trimmed += t.trimmed;
        if (t.trimmed)
            an_debug("trimmed %" PRId64 " entries of %s before %s", t.trimmed,
                     cfg->streams.input, t.cutoff);
        bool again = t.trimmed > 0;
        if (!again)
            warn_pins(rt, &t, cfg);
        an_trim_result_free(&t);
        if (!again)
            break;
    }

    int64_t removed = 0;
    rc = an_attempts_gc(r, cfg->streams.input, cfg->streams.group, rt->gc_cursor,
                        AN_RETENTION_GC_PAGE, &removed);
    if (rc == AN_ENOGROUP)
        return 0;
    if (rc)
        return rc;
    rt->attempts_removed += removed;
    return 0;
}
