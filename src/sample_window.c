/*
 * sample_window.c: per-metric windows of the newest processed samples (see
 * an_sample_window.h for what a window asserts and who checks it).
 *
 * A window is keyed by uid (chained hash table) and sits on an LRU list.
 * Its samples are a ring: ring[(head + i) % cap] is the i-th oldest of len
 * samples. The ring grows by doubling up to the store's capacity, so a
 * young metric's window costs what it holds; once full, an append
 * overwrites the oldest samples. Bytes are charged per window (ring plus
 * AN_SAMPLE_WINDOW_OVERHEAD plus the uid) and evicted LRU-first past the
 * budget.
 */
#include "an_sample_window.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "an_error.h"

typedef struct win {
    struct win *next_in_bucket;
    struct win *lru_prev, *lru_next; /* lru_prev: more recently used */
    uint64_t uid_hash;
    char *uid;
    int64_t wm;      /* the watermark the window describes */
    int64_t count;   /* processed rows in all; -1: unknown */
    an_sample *ring;
    size_t cap, head, len;
    size_t bytes;    /* charged */
} win;

struct an_sample_window {
    size_t max_bytes, capacity;
    win **buckets;
    size_t nbuckets; /* power of two, or 0 */
    size_t n, bytes;
    win *lru_head, *lru_tail;
    int64_t hits, misses;
};

/* FNV-1a over the uid. */
static uint64_t hash_uid(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

size_t an_sample_window_entry_bytes(const char *uid, size_t cap)
{
    return cap * sizeof(an_sample) + AN_SAMPLE_WINDOW_OVERHEAD + strlen(uid) + 1;
}

an_sample_window *an_sample_window_new(size_t max_bytes, size_t capacity)
{
    if (capacity == 0)
        return NULL;
    an_sample_window *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->max_bytes = max_bytes;
    w->capacity = capacity;
    return w;
}

static void win_free(win *e)
{
    if (!e)
        return;
    free(e->uid);
    free(e->ring);
    free(e);
}

void an_sample_window_free(an_sample_window *w)
{
    if (!w)
        return;
    for (win *e = w->lru_head, *next; e; e = next) {
        next = e->lru_next;
        win_free(e);
    }
    free(w->buckets);
    free(w);
}

/* The slot holding uid's window (or the NULL slot where it would go);
 * NULL when the table has no buckets yet. */
static win **slot_of(an_sample_window *w, const char *uid, uint64_t h)
{
    if (!w->nbuckets)
        return NULL;
    win **p = &w->buckets[h & (w->nbuckets - 1)];
    while (*p && ((*p)->uid_hash != h || strcmp((*p)->uid, uid)))
        p = &(*p)->next_in_bucket;
    return p;
}

static void lru_unlink(an_sample_window *w, win *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        w->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        w->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(an_sample_window *w, win *e)
{
    e->lru_prev = NULL;
    e->lru_next = w->lru_head;
    if (w->lru_head)
        w->lru_head->lru_prev = e;
    w->lru_head = e;
    if (!w->lru_tail)
        w->lru_tail = e;
}

/* Unhooks e from the table and the list, uncharges and frees it. */
static void drop(an_sample_window *w, win *e)
{
    win **p = slot_of(w, e->uid, e->uid_hash);
    assert(p && *p == e);
    *p = e->next_in_bucket;
    lru_unlink(w, e);
    w->n--;
    w->bytes -= e->bytes;
    win_free(e);
}

/* uid's window whose watermark is wm (most recently used now), or NULL. */
static win *find(an_sample_window *w, const char *uid, int64_t wm)
{
    if (!w)
        return NULL;
    win **p = slot_of(w, uid, hash_uid(uid));
    if (!p || !*p || (*p)->wm != wm)
        return NULL;
    lru_unlink(w, *p);
    lru_push_front(w, *p);
    return *p;
}

/* Evicts least recently used windows other than keep until the budget
 * holds. */
static void evict(an_sample_window *w, const win *keep)
{
    win *e = w->lru_tail;
    while (w->bytes > w->max_bytes && e) {
        win *prev = e->lru_prev;
        if (e != keep)
            drop(w, e);
        e = prev;
    }
}

/* Doubles the buckets when the load passes 1. 0 or AN_ENOMEM (table
 * unchanged). */
static int rehash(an_sample_window *w)
{
    if (w->nbuckets && w->n < w->nbuckets)
        return 0;
    size_t nb = w->nbuckets ? w->nbuckets * 2 : 64;
    win **b = calloc(nb, sizeof *b);
    if (!b)
        return AN_ENOMEM;
    for (size_t i = 0; i < w->nbuckets; i++) {
        for (win *e = w->buckets[i], *next; e; e = next) {
            next = e->next_in_bucket;
            win **s = &b[e->uid_hash & (nb - 1)];
            e->next_in_bucket = *s;
            *s = e;
        }
    }
    free(w->buckets);
    w->buckets = b;
    w->nbuckets = nb;
    return 0;
}

/* Makes room in e's ring for `need` samples (<= the store's capacity),
 * linearizing it. 0 or AN_ENOMEM (ring unchanged). */
static int ring_reserve(an_sample_window *w, win *e, size_t need)
{
    if (need <= e->cap)
        return 0;
    size_t c = e->cap ? e->cap : 16;
    while (c < need)
        c *= 2;
    if (c > w->capacity)
        c = w->capacity;
    an_sample *r = malloc(c * sizeof *r);
    if (!r)
        return AN_ENOMEM;
    for (size_t i = 0; i < e->len; i++)
        r[i] = e->ring[(e->head + i) % e->cap];
    free(e->ring);
    e->ring = r;
    e->head = 0;
    w->bytes -= e->bytes;
    e->cap = c;
    e->bytes = an_sample_window_entry_bytes(e->uid, c);
    w->bytes += e->bytes;
    return 0;
}

/* Appends rows to e's ring, dropping the oldest samples once it holds the
 * store's capacity. 0 or AN_ENOMEM. */
static int ring_append(an_sample_window *w, win *e, const an_sample *rows, size_t n)
{
    if (n >= w->capacity) {
        rows += n - w->capacity;
        n = w->capacity;
    }
    size_t want = e->len + n < w->capacity ? e->len + n : w->capacity;
    int rc = ring_reserve(w, e, want);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (e->len < e->cap) {
            e->ring[(e->head + e->len) % e->cap] = rows[i];
            e->len++;
        } else {
            e->ring[e->head] = rows[i];
            e->head = (e->head + 1) % e->cap;
        }
    }
    return 0;
}

static const an_sample *newest(const win *e)
{
    return &e->ring[(e->head + e->len - 1) % e->cap];
}

bool an_sample_window_has(an_sample_window *w, const char *uid, int64_t wm)
{
    return find(w, uid, wm) != NULL;
}

bool an_sample_window_tail(an_sample_window *w, const char *uid, int64_t wm, size_t n,
                           an_sample *out, size_t *got)
{
    win *e = find(w, uid, wm);
    if (!e || (n > e->len && e->count != (int64_t)e->len))
        return false;
    size_t k = n < e->len ? n : e->len;
    size_t from = e->head + (e->len - k);
    for (size_t i = 0; i < k; i++)
        out[i] = e->ring[(from + i) % e->cap];
    *got = k;
    w->hits++;
    return true;
}

bool an_sample_window_count(an_sample_window *w, const char *uid, int64_t wm,
                            int64_t *count)
{
    win *e = find(w, uid, wm);
    if (!e || e->count < 0)
        return false;
    *count = e->count;
    w->hits++;
    return true;
}

void an_sample_window_miss(an_sample_window *w)
{
    if (w)
        w->misses++;
}

void an_sample_window_set_count(an_sample_window *w, const char *uid, int64_t wm,
                                int64_t count)
{
    win *e = find(w, uid, wm);
    if (e && count >= (int64_t)e->len)
        e->count = count;
}

int an_sample_window_put(an_sample_window *w, const char *uid, const an_sample *rows,
                         size_t n, int64_t count, int64_t wm)
{
    if (!w)
        return 0;
    an_sample_window_forget(w, uid);
    if (count >= 0 && count < (int64_t)n)
        return AN_EINVAL;
    size_t keep = n < w->capacity ? n : w->capacity;
    if (an_sample_window_entry_bytes(uid, keep) > w->max_bytes)
        return 0; /* would never fit (also: the store is off) */
    if (rehash(w))
        return AN_ENOMEM;
    win *e = calloc(1, sizeof *e);
    if (!e || !(e->uid = strdup(uid))) {
        win_free(e);
        return AN_ENOMEM;
    }
    e->uid_hash = hash_uid(uid);
    e->wm = wm;
    e->count = count;
    e->bytes = an_sample_window_entry_bytes(uid, 0);
    win **s = slot_of(w, uid, e->uid_hash);
    assert(s && !*s);
    *s = e;
    lru_push_front(w, e);
    w->n++;
    w->bytes += e->bytes;
    if (ring_append(w, e, rows, n)) {
        drop(w, e);
        return AN_ENOMEM;
    }
    evict(w, e);
    if (w->bytes > w->max_bytes)
        drop(w, e); /* its ring's rounding put it alone over the budget */
    return 0;
}

int an_sample_window_append(an_sample_window *w, const char *uid, int64_t old_wm,
                            const an_sample *rows, size_t n, int64_t new_wm)
{
    if (!w)
        return 0;
    win *e = find(w, uid, old_wm);
    int rc = 0;
    if (!e || new_wm < old_wm || (n && e->len && rows[0].rowid <= newest(e)->rowid))
        rc = AN_ESTATE;
    for (size_t i = 1; i < n && !rc; i++)
        if (rows[i].rowid <= rows[i - 1].rowid)
            rc = AN_ESTATE;
    if (!rc)
        rc = ring_append(w, e, rows, n);
    if (rc) {
        an_sample_window_forget(w, uid);
        return rc;
    }
    if (e->count >= 0)
        e->count += (int64_t)n;
    e->wm = new_wm;
    evict(w, e);
    if (w->bytes > w->max_bytes)
        drop(w, e); /* alone over the budget */
    return 0;
}

void an_sample_window_forget(an_sample_window *w, const char *uid)
{
    if (!w)
        return;
    win **p = slot_of(w, uid, hash_uid(uid));
    if (p && *p)
        drop(w, *p);
}

size_t an_sample_window_size(const an_sample_window *w)
{
    return w ? w->n : 0;
}

size_t an_sample_window_bytes(const an_sample_window *w)
{
    return w ? w->bytes : 0;
}

void an_sample_window_stats(const an_sample_window *w, int64_t *hits, int64_t *misses)
{
    *hits = w ? w->hits : 0;
    *misses = w ? w->misses : 0;
}
