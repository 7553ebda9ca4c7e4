/*
 * state_cache.c: the per-metric cache of parsed anomalyLikelihoodParams and
 * the model_params splicing (see an_state_cache.h for the why).
 *
 * An entry is keyed by uid (chained hash table) and sits on an LRU list.
 * It holds what identifies the model_params text it was made from (length,
 * a 64-bit hash of the whole text, and the state text at its offset, kept
 * verbatim and compared byte for byte) and the state itself, packed: only
 * the used part of the moving-average and likelihood windows (the struct
 * has room for 256 of each, the htmengine window is 10).
 */
#include "an_state_cache.h"
#include "an_json_mem.h"

#include <assert.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "an_codec.h"
#include "an_error.h"

#define STATE_KEY "anomalyLikelihoodParams"
/* A string no params text holds (control characters); an_json_dumps
 * escapes them, so the serialized form below is what merge looks for. */
#define SENTINEL "\x01" "anomalyd:state" "\x02"
#define SENTINEL_DUMPED "\"\\u0001anomalyd:state\\u0002\""

typedef struct entry {
    struct entry *next_in_bucket;
    struct entry *lru_prev, *lru_next; /* lru_prev: more recently used */
    uint64_t uid_hash;
    char *uid;
    /* the model_params text this entry describes */
    size_t mp_len;
    uint64_t mp_hash;
    size_t off, len;
    char *state_text;                  /* mp[off, off+len) */
    /* the metric's inference message head, and the inputs it was built
     * from (key_of): NULL until an_state_cache_msg_head builds it */
    char *head, *head_key;
    size_t head_len, head_key_len;
    /* the state, packed */
    bool present;
    int64_t last_rowid_for_stats;
    an_dist dist;
    int ma_len, ma_window, hist_len;
    double ma_total;
    double vals[];                     /* ma values, then hist */
} entry;

struct an_state_cache {
    size_t max;
    entry **buckets;
    size_t nbuckets;                   /* power of two, or 0 */
    size_t n;
    entry *lru_head, *lru_tail;        /* head: most recently used */
    int64_t hits, misses;
    char *scratch;                     /* a head built for a metric without entry */
};

/* FNV-1a: uids are short. */
static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* Word-at-a-time mix for texts of several KiB (model_params can hold the
 * whole swarm description); not cryptographic: the state part is compared
 * verbatim, this only guards the rest of the text. */
static uint64_t hash_text(const char *p, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
    }
    uint64_t w = 0;
    memcpy(&w, p + i, n - i);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ULL;
    h ^= h >> 29;
    return h;
}

an_state_cache *an_state_cache_new(size_t max_entries)
{
    an_state_cache *c = calloc(1, sizeof *c);
    if (c)
        c->max = max_entries;
    return c;
}

static void entry_free(entry *e)
{
    if (!e)
        return;
    free(e->uid);
    free(e->state_text);
    free(e->head);
    free(e->head_key);
    free(e);
}

void an_state_cache_free(an_state_cache *c)
{
    if (!c)
        return;
    for (entry *e = c->lru_head, *next; e; e = next) {
        next = e->lru_next;
        entry_free(e);
    }
    free(c->buckets);
    free(c->scratch);
    free(c);
}

static entry **slot_of(an_state_cache *c, const char *uid, uint64_t h)
{
    if (!c->nbuckets)
        return NULL;
    entry **p = &c->buckets[h & (c->nbuckets - 1)];
    while (*p && ((*p)->uid_hash != h || strcmp((*p)->uid, uid)))
        p = &(*p)->next_in_bucket;
    return p;
}

static void lru_unlink(an_state_cache *c, entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(an_state_cache *c, entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = e;
    c->lru_head = e;
    if (!c->lru_tail)
        c->lru_tail = e;
}

/* Unlinks e from its bucket and the LRU list and frees it. */
static void remove_entry(an_state_cache *c, entry *e)
{
    entry **p = slot_of(c, e->uid, e->uid_hash);
    assert(p && *p == e);
    *p = e->next_in_bucket;
    lru_unlink(c, e);
    entry_free(e);
    c->n--;
}

/* Doubles the table (keeps it at most 1 entry per bucket on average).
 * Failure is harmless: chains just get longer. */
static void maybe_grow(an_state_cache *c)
{
    if (c->n < c->nbuckets)
        return;
    size_t nb = c->nbuckets ? c->nbuckets * 2 : 64;
    entry **b = calloc(nb, sizeof *b);
    if (!b)
        return;
    for (entry *e = c->lru_head; e; e = e->lru_next) {
        entry **s = &b[e->uid_hash & (nb - 1)];
        e->next_in_bucket = *s;
        *s = e;
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = nb;
}

static bool describes(const entry *e, const char *mp, size_t mp_len)
{
    return e->mp_len == mp_len && e->off + e->len <= mp_len &&
           memcmp(mp + e->off, e->state_text, e->len) == 0 &&
           hash_text(mp, mp_len) == e->mp_hash;
}

bool an_state_cache_get(an_state_cache *c, const char *uid,
                        const char *model_params, an_helper_state *state,
                        an_state_span *span)
{
    assert(c && uid && state && span);
    entry **p = slot_of(c, uid, hash_str(uid));
    entry *e = p ? *p : NULL;
    if (!e || !model_params || !describes(e, model_params, strlen(model_params))) {
        c->misses++;
        return false;
    }
    memset(state, 0, sizeof *state);
    state->present = e->present;
    state->last_rowid_for_stats = e->last_rowid_for_stats;
    if (e->present) {
        an_lk_params *lp = &state->params;
        lp->dist = e->dist;
        lp->ma.len = e->ma_len;
        lp->ma.window_size = e->ma_window;
        lp->ma.total = e->ma_total;
        memcpy(lp->ma.values, e->vals, (size_t)e->ma_len * sizeof *e->vals);
        lp->hist_len = e->hist_len;
        memcpy(lp->hist, e->vals + e->ma_len, (size_t)e->hist_len * sizeof *e->vals);
    }
    *span = (an_state_span){e->off, e->len};
    lru_unlink(c, e);
    lru_push_front(c, e);
    c->hits++;
    return true;
}

int an_state_cache_put(an_state_cache *c, const char *uid, const char *mp,
                       size_t mp_len, an_state_span span,
                       const an_helper_state *state)
{
    assert(c && uid && mp && state);
    assert(span.off + span.len <= mp_len);
    /* the message head does not depend on the state: it moves to the new
     * entry */
    char *head = NULL, *head_key = NULL;
    size_t head_len = 0, head_key_len = 0;
    entry **old = slot_of(c, uid, hash_str(uid));
    if (old && *old) {
        head = (*old)->head;
        head_key = (*old)->head_key;
        head_len = (*old)->head_len;
        head_key_len = (*old)->head_key_len;
        (*old)->head = (*old)->head_key = NULL;
    }
    an_state_cache_forget(c, uid);
    if (c->max == 0 || span.len == 0) {
        free(head);
        free(head_key);
        return 0;   /* disabled, or a text whose state place is unknown */
    }
    const an_lk_params *lp = &state->params;
    int ma_len = state->present ? lp->ma.len : 0;
    int hist_len = state->present ? lp->hist_len : 0;
    assert(ma_len >= 0 && ma_len <= AN_LK_MAX_WINDOW);
    assert(hist_len >= 0 && hist_len <= AN_LK_MAX_WINDOW);
    entry *e = calloc(1, sizeof *e + (size_t)(ma_len + hist_len) * sizeof(double));
    if (!e) {
        free(head);
        free(head_key);
        return AN_ENOMEM;
    }
    e->head = head;
    e->head_key = head_key;
    e->head_len = head_len;
    e->head_key_len = head_key_len;
    e->uid = strdup(uid);
    e->state_text = malloc(span.len + 1);
    if (!e->uid || !e->state_text) {
        entry_free(e);
        return AN_ENOMEM;
    }
    memcpy(e->state_text, mp + span.off, span.len);
    e->state_text[span.len] = '\0';
    e->uid_hash = hash_str(uid);
    e->mp_len = mp_len;
    e->mp_hash = hash_text(mp, mp_len);
    e->off = span.off;
    e->len = span.len;
    e->present = state->present;
    if (state->present) {
        e->last_rowid_for_stats = state->last_rowid_for_stats;
        e->dist = lp->dist;
        e->ma_len = ma_len;
        e->ma_window = lp->ma.window_size;
        e->ma_total = lp->ma.total;
        e->hist_len = hist_len;
        memcpy(e->vals, lp->ma.values, (size_t)ma_len * sizeof *e->vals);
        memcpy(e->vals + ma_len, lp->hist, (size_t)hist_len * sizeof *e->vals);
    }
    while (c->n >= c->max && c->lru_tail)
        remove_entry(c, c->lru_tail);
    maybe_grow(c);
    if (!c->nbuckets) {
        entry_free(e);
        return AN_ENOMEM;
    }
    entry **s = &c->buckets[e->uid_hash & (c->nbuckets - 1)];
    e->next_in_bucket = *s;
    *s = e;
    lru_push_front(c, e);
    c->n++;
    return 0;
}

void an_state_cache_forget(an_state_cache *c, const char *uid)
{
    entry **p = slot_of(c, uid, hash_str(uid));
    if (p && *p)
        remove_entry(c, *p);
}

/* The inputs of a message head, in key order (uid included: the entry's
 * key and the row's uid are the same text, but the head holds the row's). */
#define HEAD_INPUTS 7
static void head_inputs(const an_metric_info *mi, const char *parameters,
                        const char *in[HEAD_INPUTS])
{
    in[0] = mi->uid;
    in[1] = mi->name;
    in[2] = mi->description;
    in[3] = mi->resource;
    in[4] = mi->location;
    in[5] = mi->datasource;
    in[6] = parameters;
}

/* The key: per input a 0 byte (NULL) or a 1 byte, the text and its NUL. */
static char *key_of(const char *in[HEAD_INPUTS], size_t *len)
{
    size_t n = 0;
    for (int i = 0; i < HEAD_INPUTS; i++)
        n += in[i] ? strlen(in[i]) + 2 : 1;
    char *k = malloc(n), *o = k;
    if (!k)
        return NULL;
    for (int i = 0; i < HEAD_INPUTS; i++) {
        *o++ = in[i] ? 1 : 0;
        if (in[i]) {
            size_t l = strlen(in[i]) + 1;
            memcpy(o, in[i], l);
            o += l;
        }
    }
    *len = n;
    return k;
}

/* Whether key (len bytes) is key_of(in), without building it. */
static bool key_is(const char *key, size_t len, const char *in[HEAD_INPUTS])
{
    const char *k = key, *end = key + len;
    for (int i = 0; i < HEAD_INPUTS; i++) {
        if (k >= end || *k++ != (in[i] ? 1 : 0))
            return false;
        if (!in[i])
            continue;
        size_t l = strlen(in[i]) + 1;
        if ((size_t)(end - k) < l || memcmp(k, in[i], l))
            return false;
        k += l;
    }
    return k == end;
}

int an_state_cache_msg_head(an_state_cache *c, const char *uid, const an_metric_info *mi,
                            const char *parameters, const char **head, size_t *len, char *err,
                            size_t errlen)
{
    assert(c && uid && mi && head && len);
    *head = NULL;
    const char *in[HEAD_INPUTS];
    head_inputs(mi, parameters, in);
    entry **p = slot_of(c, uid, hash_str(uid));
    entry *e = p ? *p : NULL;
    if (e && e->head && key_is(e->head_key, e->head_key_len, in)) {
        *head = e->head;
        *len = e->head_len;
        return 0;
    }
    json_t *spec = NULL;
    int rc = an_metric_spec_from_parameters(parameters, &spec, err, errlen);
    if (rc)
        return rc;
    an_metric_info m = *mi;
    m.spec = spec;
    m.spec_json = NULL;
    size_t hlen = 0;
    char *text;
    rc = an_msg_inference_head(&m, &text, &hlen, err, errlen);
    json_decref(spec);
    if (rc)
        return rc;
    size_t klen = 0;
    char *key = e ? key_of(in, &klen) : NULL;
    if (!key) {
        /* no entry to keep it with (or no memory for the key): the
         * caller's use of it ends before the next call */
        free(c->scratch);
        c->scratch = text;
    } else {
        free(e->head);
        free(e->head_key);
        e->head = text;
        e->head_len = hlen;
        e->head_key = key;
        e->head_key_len = klen;
    }
    *head = text;
    *len = hlen;
    return 0;
}

bool an_state_cache_has(an_state_cache *c, const char *uid)
{
    entry **p = slot_of(c, uid, hash_str(uid));
    return p && *p;
}

size_t an_state_cache_size(const an_state_cache *c) { return c->n; }

void an_state_cache_stats(const an_state_cache *c, int64_t *hits, int64_t *misses)
{
    if (hits)
        *hits = c->hits;
    if (misses)
        *misses = c->misses;
}

/* ------------------------------------------------------------ text */

/* head + mid + tail into one malloc'd text. */
static char *join3(const char *head, size_t hlen, const char *mid, size_t mlen,
                   const char *tail, size_t tlen, size_t *len)
{
    char *t = malloc(hlen + mlen + tlen + 1);
    if (!t)
        return NULL;
    memcpy(t, head, hlen);
    memcpy(t + hlen, mid, mlen);
    memcpy(t + hlen + mlen, tail, tlen);
    t[hlen + mlen + tlen] = '\0';
    if (len)
        *len = hlen + mlen + tlen;
    return t;
}

/* model_params as an object ({} when NULL, not JSON or not an object).
 * NULL only when out of memory: the text's other keys must never be lost
 * to a failed allocation taken for text that does not parse. */
static json_t *params_object(const char *model_params)
{
    json_t *mp = NULL;
    if (model_params &&
        an_json_parse(model_params, strlen(model_params), 0, &mp, NULL) == AN_ENOMEM)
        return NULL;
    if (!mp || !json_is_object(mp)) {
        json_decref(mp);
        mp = json_object();
    }
    return mp;
}

char *an_model_params_merge(const char *model_params, const char *state_text,
                            an_state_span *span, size_t *len)
{
    assert(state_text && span);
    json_t *mp = params_object(model_params);
    size_t dlen = 0;
    char *d = NULL;
    if (mp && json_object_set_new(mp, STATE_KEY, json_string(SENTINEL)) == 0)
        d = an_json_dumps(mp, &dlen);
    json_decref(mp);
    if (!d)
        return NULL;
    /* The sentinel must appear exactly once: a params text that happens to
     * hold the same string cannot be spliced. */
    const size_t slen = sizeof SENTINEL_DUMPED - 1;
    char *at = strstr(d, SENTINEL_DUMPED);
    if (at && !strstr(at + slen, SENTINEL_DUMPED)) {
        size_t off = (size_t)(at - d);
        size_t stl = strlen(state_text);
        char *t = join3(d, off, state_text, stl, at + slen, dlen - off - slen, len);
        if (t)
            *span = (an_state_span){off, stl};
        free(d);
        return t;
    }
    free(d);
    /* Not spliceable: set the parsed state as a value and serialize. */
    json_t *sj = json_loads(state_text, JSON_DECODE_ANY, NULL);
    mp = params_object(model_params);
    char *t = NULL;
    if (sj && mp && json_object_set(mp, STATE_KEY, sj) == 0)
        t = an_json_dumps(mp, len);
    json_decref(sj);
    json_decref(mp);
    if (t)
        *span = (an_state_span){0, 0};
    return t;
}

char *an_model_params_splice(const char *model_params, an_state_span old,
                             const char *state_text, an_state_span *span,
                             size_t *len)
{
    assert(model_params && state_text && span);
    size_t mlen = strlen(model_params);
    assert(old.off + old.len <= mlen);
    size_t stl = strlen(state_text);
    char *t = join3(model_params, old.off, state_text, stl, model_params + old.off + old.len,
                    mlen - old.off - old.len, len);
    if (t)
        *span = (an_state_span){old.off, stl};
    return t;
}
