/*
 * service_defer.c: the deferral list. An inference batch whose model's
 * predecessor is not applied yet (with several consumers it may be in
 * another's hands) is kept pending in this consumer's hands: a copy of its
 * entry waits here (bounded by [streams] defer_max_entries and
 * defer_max_bytes), is retried with backoff through service_take.c, its
 * idle time kept fresh so nobody takes it over, and is forced through once
 * its model's watermark has not moved for defer_max_ms. The page
 * (service_take.c) reaches the list only through the svc_holder callbacks
 * it is given, so it never calls up here.
 */
#include "service_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_clock.h"
#include "an_log.h"
#include "an_util.h"

/* An entry kept pending because its predecessor was not applied yet. */
typedef struct deferred {
    an_entry e;          /* deep copy */
    char model[AN_UID_MAX + 1];
    int64_t first_rowid; /* of its inference results */
    int64_t seen_wm;     /* the model's watermark when last checked */
    int64_t since_ms;    /* last progress: first deferral, or the watermark moved */
    int64_t next_ms;     /* next retry */
    int64_t touched_ms;  /* last XCLAIM that reset its idle time */
    int delay_ms;
    size_t bytes;        /* entry_bytes of e (s->def_bytes) */
} deferred;

/* Deferred retries back off from 20 ms to 1 s (an_backoff_next). */
#define DEFER_MIN_MS 20
#define DEFER_MAX_MS 1000

/* A deferred entry's idle time is reset (XCLAIM to ourselves) every
 * claim_idle_ms / DEFER_TOUCHES_PER_IDLE: twice at least before any
 * consumer could take it over, even when a retry pass runs late. */
#define DEFER_TOUCHES_PER_IDLE 3

/* Whether the entry id is in the deferral list (the page's holder). */
bool svc_is_deferred(const an_service *s, const char *id)
{
    for (size_t i = 0; i < s->ndef; i++)
        if (!strcmp(s->def[i].e.id, id))
            return true;
    return false;
}

/* Bytes of an entry's field names and values: what defer_max_bytes
 * bounds (the copy adds a fixed ~200 bytes per entry, bounded by
 * defer_max_entries). */
static size_t entry_bytes(const an_entry *e)
{
    size_t b = 0;
    for (size_t i = 0; i < e->nfields; i++)
        b += e->fields[i].name_len + e->fields[i].value_len;
    return b;
}

/* Keeps the item's entry pending in our hands and retries it later. Past
 * [streams] defer_max_entries / defer_max_bytes, or on ENOMEM, it is not
 * copied: it stays pending, and is read again when a consumer (this one
 * too) takes it back after claim_idle_ms. */
static void defer_add(an_service *s, const item *it)
{
    if (svc_is_deferred(s, it->e->id))
        return;
    size_t bytes = entry_bytes(it->e);
    if (s->ndef >= (size_t)s->cfg->streams.defer_max_entries ||
        bytes > s->cfg->streams.defer_max_bytes - s->def_bytes) {
        an_warn("deferral list is full (%zu entries, %zu bytes; defer_max_entries %d, "
                "defer_max_bytes %zu): entry %s (%zu bytes) stays pending and is read again "
                "after claim_idle_ms", s->ndef, s->def_bytes, s->cfg->streams.defer_max_entries,
                s->cfg->streams.defer_max_bytes, it->e->id, bytes);
        return;
    }
    if (!an_grow((void **)&s->def, &s->capdef, s->ndef + 1, sizeof *s->def)) {
        an_error("out of memory deferring entry %s; it stays pending", it->e->id);
        return;
    }
    deferred *d = &s->def[s->ndef];
    if (an_entry_dup(&d->e, it->e)) {
        an_error("out of memory deferring entry %s; it stays pending", it->e->id);
        return;
    }
    int64_t t = an_monotonic_ms();
    snprintf(d->model, sizeof d->model, "%s", it->b->model);
    d->first_rowid = it->first;
    d->seen_wm = it->seen_wm;
    d->since_ms = d->touched_ms = t;
    d->delay_ms = DEFER_MIN_MS;
    d->next_ms = t + d->delay_ms;
    d->bytes = bytes;
    s->def_bytes += bytes;
    s->ndef++;
    svc_count(s, &s->st.deferred, AN_C_DEFERRALS, 1);
    an_debug("entry %s deferred: its model's previous batch is not applied yet", it->e->id);
}

/* The deferral list as take_entries' holder: entries in it are skipped,
 * entries that must wait are added to it. */
const svc_holder svc_deferral = {.holds = svc_is_deferred, .hold = defer_add};

static int cmp_deferred(const void *a, const void *b)
{
    const deferred *x = a, *y = b;
    int c = strcmp(x->model, y->model);
    if (c)
        return c;
    return x->first_rowid < y->first_rowid ? -1 : x->first_rowid > y->first_rowid;
}

/* Retries d, the head of its model's deferred entries (t: the pass's
 * start). When its model's watermark moved it waits on with its clock
 * restarted; when it has not moved for defer_max_ms it is forced through
 * (the predecessor is lost: a dead-lettered or never-sent batch). *done:
 * it finished. 0 or svc_take_one's error (d stays). */
static int retry_head(an_service *s, deferred *d, int64_t t, bool *done)
{
    int64_t wm = d->seen_wm;
    svc_one_result res = SVC_ONE_FINISHED;
    int rc = svc_take_one(s, &d->e, false, &res, &wm);
    if (!rc && res == SVC_ONE_WAITING && wm != d->seen_wm) {
        d->seen_wm = wm;   /* progress: restart the clock */
        d->since_ms = t;
        d->delay_ms = DEFER_MIN_MS;
    } else if (!rc && res == SVC_ONE_WAITING && t - d->since_ms >= s->cfg->streams.defer_max_ms) {
        rc = svc_take_one(s, &d->e, true, &res, &wm);
    }
    if (rc)
        return rc;
    *done = res == SVC_ONE_FINISHED;
    if (!*done) {
        d->delay_ms = an_backoff_next(d->delay_ms, DEFER_MAX_MS);
        d->next_ms = an_monotonic_ms() + d->delay_ms;
    }
    return 0;
}

/* Resets the idle time of d (not finished) when it is due, so other
 * consumers do not take it over while it waits. *done: it was acked or
 * trimmed meanwhile (nothing left to do). A failure is retried next pass. */
static void touch_deferred(an_service *s, deferred *d, bool *done)
{
    int64_t t = an_monotonic_ms();   /* a pass can be long: not the pass's start time */
    if (t - d->touched_ms < s->cfg->streams.claim_idle_ms / DEFER_TOUCHES_PER_IDLE)
        return;
    const char *ids[] = {d->e.id};
    size_t claimed = 0;
    if (an_claim_ids(s->redis, s->cfg->streams.input, s->cfg->streams.group, s->consumer, ids,
                     1, -1, &claimed) == 0) {
        d->touched_ms = t;
        *done = claimed == 0;
    }
}

/* Retries deferred entries. Per model only the one with the lowest rows is
 * tried (the others wait behind it), and when it completes the next one of
 * the same model is tried at once, so a run of our own deferred batches
 * drains in one pass. Entries we keep get their idle time reset. Returns 0
 * or the first retry's error (the pass then only keeps the rest). */
int svc_retry_deferred(an_service *s)
{
    qsort(s->def, s->ndef, sizeof *s->def, cmp_deferred);
    int64_t t = an_monotonic_ms();
    size_t k = 0;
    int rc = 0;
    char blocked[AN_UID_MAX + 1] = "";   /* the model whose head is still waiting */
    for (size_t i = 0; i < s->ndef; i++) {
        deferred *d = &s->def[i];
        bool done = false;
        if (!rc && !svc_stopping(s) && strcmp(d->model, blocked) && t >= d->next_ms) {
            rc = retry_head(s, d, t, &done);
            /* Its successor (if ours) may go now: try it in this pass. */
            if (done && i + 1 < s->ndef && !strcmp(s->def[i + 1].model, d->model))
                s->def[i + 1].next_ms = 0;
        }
        if (!done)
            memcpy(blocked, d->model, sizeof blocked);
        if (!done)
            touch_deferred(s, d, &done);
        if (done) {
            s->def_bytes -= d->bytes;
            an_entry_free(&d->e);
        } else {
            s->def[k++] = *d;
        }
    }
    s->ndef = k;
    return rc;
}

void svc_defer_free(an_service *s)
{
    for (size_t i = 0; i < s->ndef; i++)
        an_entry_free(&s->def[i].e);
    free(s->def);
    s->def = NULL;
    s->ndef = s->capdef = 0;
    s->def_bytes = 0;
}
