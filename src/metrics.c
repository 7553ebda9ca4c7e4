/*
 * metrics.c: the registry of anomalyd's metrics and its text exposition
 * (see include/an_metrics.h). The exposition format is written directly:
 * "# HELP", "# TYPE", then one "name{label="value"} number" line per
 * series; histograms as cumulative _bucket{le=...}, _sum and _count.
 */
#include "an_metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_version.h"

/* ------------------------------------------------------------ the catalog */

typedef struct {
    const char *name;
    const char *help;
} family;

static const char *const outcome_names[AN_OUTCOME_N] = {
    "scored", "rejected", "duplicate", "command", "dead_lettered", "trimmed"};
static const char *const state_names[AN_STATE_N] = {"starting", "running", "paused",
                                                    "stopping"};
static const char *const server_names[AN_SERVER_N] = {"redis", "postgres"};

static const family counter_fam[AN_C_N] = {
    {"anomalyd_rows_scored_total", "metric_data rows scored and committed."},
    {"anomalyd_command_results_total", "Model command results processed."},
    {"anomalyd_claimed_entries_total",
     "Entries taken over from consumers idle for claim_idle_ms (XAUTOCLAIM)."},
    {"anomalyd_transient_errors_total",
     "Transient Redis or PostgreSQL errors (connection lost, deadlock, timeout...)."},
    {"anomalyd_retries_total", "Operations retried after a back-off because of a transient error."},
    {"anomalyd_deferrals_total",
     "Times an entry was kept waiting for its model's previous batch."},
    {"anomalyd_republished_total",
     "Already-scored batches whose output was published on redelivery."},
    {"anomalyd_params_db_reads_total",
     "Likelihood params read from PostgreSQL because neither cache had them."},
    {"anomalyd_input_trimmed_entries_total",
     "Entries this process removed from the input stream with XTRIM."},
    {"anomalyd_sample_window_hits_total",
     "Likelihood sample reads answered from the in-memory sample windows (polled)."},
    {"anomalyd_sample_window_misses_total",
     "Likelihood sample reads that went to PostgreSQL (polled)."},
};

static const family gauge_fam[AN_G_N] = {
    {"anomalyd_last_success_timestamp_seconds",
     "Unix time of the last entry completed (published, acked or dead-lettered); 0: none yet."},
    {"anomalyd_group_pending_entries",
     "Entries delivered to the consumer group and not acked yet (all consumers; polled)."},
    {"anomalyd_group_lag_entries",
     "Entries of the input stream not yet delivered to the group (polled; NaN when Redis "
     "cannot tell)."},
    {"anomalyd_input_stream_entries", "Length of the input stream (polled)."},
    {"anomalyd_dead_letter_stream_entries", "Length of the dead-letter stream (polled)."},
    {"anomalyd_state_cache_metrics", "Metrics whose likelihood state is held in memory."},
    {"anomalyd_deferred_entries", "Entries this process keeps waiting for their predecessor."},
    {"anomalyd_sample_window_metrics", "Metrics whose newest processed samples are held in memory."},
    {"anomalyd_sample_window_bytes",
     "Bytes of the sample windows, bounded by sample_window_bytes."},
};

static const family hist_fam[AN_H_N] = {
    {"anomalyd_entry_latency_seconds",
     "From the input entry's Redis id time to the publish of its result."},
    {"anomalyd_group_write_seconds",
     "Duration of a group's write and COMMIT in PostgreSQL."},
    {"anomalyd_publish_seconds",
     "Duration of the publish script (output messages, params cache, XACK) of a group."},
    {"anomalyd_group_entries", "Input entries per group transaction."},
    {"anomalyd_group_rows", "metric_data rows scored per group transaction."},
};

static const double b_latency[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                   2.5,   5,    10,    30,   60,  300,  900, 3600};
static const double b_duration[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,    0.25,  0.5,    1,     2.5,  5,     10};
static const double b_entries[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
static const double b_rows[] = {1, 4, 16, 64, 256, 1024, 4096, 16384};

#define NB(a) (sizeof a / sizeof a[0])
#define MAX_BOUNDS 16

static const struct {
    const double *b;
    size_t n;
} hist_bounds[AN_H_N] = {
    {b_latency, NB(b_latency)}, {b_duration, NB(b_duration)}, {b_duration, NB(b_duration)},
    {b_entries, NB(b_entries)}, {b_rows, NB(b_rows)},
};

/* ------------------------------------------------------------ registry */

typedef struct {
    uint64_t buckets[MAX_BOUNDS + 1]; /* per bucket (not cumulative); last = +Inf */
    double sum;
    uint64_t count;
} hist;

/* A label whose values are interned as they come (bounded). */
typedef struct {
    char names[AN_METRICS_MAX_DYNAMIC][32];
    int64_t counts[AN_METRICS_MAX_DYNAMIC];
    size_t n;
} dyn_label;

struct an_metrics {
    pthread_mutex_t mu;
    an_clock clock;
    bool has_clock;
    int64_t outcomes[AN_OUTCOME_N];
    int64_t counters[AN_C_N];
    double gauges[AN_G_N];
    hist hists[AN_H_N];
    dyn_label dead;   /* dead-letter reason classes: counts */
    dyn_label causes; /* pause causes seen; counts unused */
    size_t cause;     /* index into causes of the current pause cause */
    an_run_state state;
    bool up[AN_SERVER_N];
    int schema;       /* -1 unknown, 0 missing, 1 present */
    int64_t heartbeat_ms;
};

static int64_t clock_now(const an_metrics *m)
{
    return an_clock_now_ms(m->has_clock ? &m->clock : NULL);
}

an_metrics *an_metrics_new(const an_clock *clock)
{
    an_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    if (pthread_mutex_init(&m->mu, NULL)) {
        free(m);
        return NULL;
    }
    if (clock) {
        m->clock = *clock;
        m->has_clock = true;
    }
    m->gauges[AN_G_GROUP_LAG] = NAN;
    m->schema = -1;
    m->state = AN_STATE_STARTING;
    m->heartbeat_ms = clock_now(m);
    return m;
}

void an_metrics_free(an_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

#define LOCKED(m, body)                                                                  \
    do {                                                                                 \
        if (!(m))                                                                        \
            break;                                                                       \
        pthread_mutex_lock(&(m)->mu);                                                    \
        body;                                                                            \
        pthread_mutex_unlock(&(m)->mu);                                                  \
    } while (0)

/* A label value must be a short lower-case word: anything else (a free-form
 * message would make a new series per message) becomes "other". */
static const char *label_word(const char *v)
{
    size_t n = v ? strlen(v) : 0;
    if (n == 0 || n > 31)
        return "other";
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return "other";
    }
    return v;
}

/* Index of value in d, interning it; past the bound, the "other" slot
 * (interned too: the last free slot is kept for it). */
static size_t dyn_index(dyn_label *d, const char *value)
{
    value = label_word(value);
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->names[i], value))
            return i;
    if (d->n + 1 >= AN_METRICS_MAX_DYNAMIC && strcmp(value, "other"))
        return dyn_index(d, "other");
    snprintf(d->names[d->n], sizeof d->names[0], "%s", value);
    d->counts[d->n] = 0;
    return d->n++;
}

void an_metrics_entries(an_metrics *m, an_outcome o, int64_t n)
{
    if (o < 0 || o >= AN_OUTCOME_N)
        return;
    LOCKED(m, m->outcomes[o] += n);
}

void an_metrics_dead_letter(an_metrics *m, const char *reason_class)
{
    LOCKED(m, {
        m->dead.counts[dyn_index(&m->dead, reason_class)]++;
        m->outcomes[AN_OUTCOME_DEAD_LETTERED]++;
    });
}

void an_metrics_add(an_metrics *m, an_counter c, int64_t n)
{
    if (c < 0 || c >= AN_C_N)
        return;
    LOCKED(m, m->counters[c] += n);
}

void an_metrics_set(an_metrics *m, an_gauge g, double v)
{
    if (g < 0 || g >= AN_G_N)
        return;
    LOCKED(m, m->gauges[g] = v);
}

size_t an_metrics_bucket_index(const double *bounds, size_t nbounds, double v)
{
    /* NaN compares false with everything: it lands in +Inf */
    size_t lo = 0, hi = nbounds;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v <= bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    if (lo < nbounds && !(v <= bounds[lo]))
        return nbounds;
    return lo;
}

void an_metrics_observe(an_metrics *m, an_hist h, double v)
{
    if (h < 0 || h >= AN_H_N)
        return;
    size_t k = an_metrics_bucket_index(hist_bounds[h].b, hist_bounds[h].n, v);
    LOCKED(m, {
        hist *x = &m->hists[h];
        x->buckets[k]++;
        x->count++;
        if (!isnan(v))
            x->sum += v;
    });
}

void an_metrics_set_up(an_metrics *m, an_server s, bool up)
{
    if (s < 0 || s >= AN_SERVER_N)
        return;
    LOCKED(m, m->up[s] = up);
}

void an_metrics_set_schema(an_metrics *m, bool present)
{
    LOCKED(m, m->schema = present ? 1 : 0);
}

void an_metrics_set_running(an_metrics *m)
{
    LOCKED(m, {
        if (m->state != AN_STATE_STOPPING)
            m->state = AN_STATE_RUNNING;
    });
}

void an_metrics_set_paused(an_metrics *m, const char *cause_class)
{
    LOCKED(m, {
        if (m->state != AN_STATE_STOPPING) {
            m->state = AN_STATE_PAUSED;
            m->cause = dyn_index(&m->causes, cause_class);
        }
    });
}

void an_metrics_set_stopping(an_metrics *m)
{
    LOCKED(m, m->state = AN_STATE_STOPPING);
}

an_run_state an_metrics_state(const an_metrics *m)
{
    an_run_state s = AN_STATE_STARTING;
    an_metrics *w = (an_metrics *)m; /* the mutex is not part of the value */
    LOCKED(w, s = w->state);
    return s;
}

const char *an_metrics_state_name(an_run_state s)
{
    return s >= 0 && s < AN_STATE_N ? state_names[s] : "unknown";
}

void an_metrics_heartbeat(an_metrics *m)
{
    if (!m)
        return;
    int64_t t = clock_now(m);
    LOCKED(m, m->heartbeat_ms = t);
}

bool an_metrics_live(an_metrics *m, int64_t max_age_ms, char *why, size_t len)
{
    if (!m)
        return false;
    int64_t t = clock_now(m), hb = 0;
    LOCKED(m, hb = m->heartbeat_ms);
    int64_t age = t - hb;
    if (age <= max_age_ms)
        return true;
    if (why && len)
        snprintf(why, len, "main loop silent for %lld ms (limit %lld ms)", (long long)age,
                 (long long)max_age_ms);
    return false;
}

bool an_metrics_ready(an_metrics *m, char *why, size_t len)
{
    if (!m)
        return false;
    char buf[160] = "", cond[96] = "";
    LOCKED(m, {
        if (!m->up[AN_SERVER_REDIS])
            snprintf(cond, sizeof cond, "redis not connected");
        else if (!m->up[AN_SERVER_POSTGRES])
            snprintf(cond, sizeof cond, "postgres not connected");
        else if (m->schema != 1)
            snprintf(cond, sizeof cond, "database schema %s",
                     m->schema == 0 ? "missing or out of date" : "not checked yet");
        if (m->state == AN_STATE_PAUSED)
            snprintf(buf, sizeof buf, "paused: %s", m->causes.names[m->cause]);
        else if (m->state == AN_STATE_STARTING)   /* say what it waits for */
            snprintf(buf, sizeof buf, "starting%s%s", cond[0] ? ": " : "", cond);
        else if (m->state != AN_STATE_RUNNING)
            snprintf(buf, sizeof buf, "%s", state_names[m->state]);
        else
            snprintf(buf, sizeof buf, "%s", cond);
    });
    if (why && len)
        snprintf(why, len, "%s", buf);
    return buf[0] == '\0';
}

int64_t an_metrics_counter(an_metrics *m, an_counter c)
{
    int64_t v = 0;
    if (c >= 0 && c < AN_C_N)
        LOCKED(m, v = m->counters[c]);
    return v;
}

int64_t an_metrics_outcome(an_metrics *m, an_outcome o)
{
    int64_t v = 0;
    if (o >= 0 && o < AN_OUTCOME_N)
        LOCKED(m, v = m->outcomes[o]);
    return v;
}

/* ------------------------------------------------------------ exposition */

void an_metrics_format_value(double v, char *buf, size_t len)
{
    if (isnan(v)) {
        snprintf(buf, len, "NaN");
    } else if (isinf(v)) {
        snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(buf, len, "%.0f", v);
        if (!strcmp(buf, "-0"))
            snprintf(buf, len, "0");
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, len, "%.*g", prec, v);
            if (strtod(buf, NULL) == v)
                break;
        }
    }
}

/* A growing text; on ENOMEM it stops growing and remembers the failure. */
typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    if (t->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = true;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n;
        char *q = realloc(t->p, cap);
        if (!q) {
            t->oom = true;
            return;
        }
        t->p = q;
        t->cap = cap;
    }
}

/* HELP text escaping: backslash and newline. */
static void put_help(text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s ", name);
    for (const char *c = help; *c; c++) {
        if (*c == '\\')
            put(t, "\\\\");
        else if (*c == '\n')
            put(t, "\\n");
        else
            put(t, "%c", *c);
    }
    put(t, "\n# TYPE %s %s\n", name, type);
}

/* One sample line; label may be NULL. Label values are escaped (backslash,
 * double quote, newline) although the catalog's are plain words. */
static void put_sample(text *t, const char *name, const char *suffix, const char *label,
                       const char *value, double v)
{
    char num[64];
    an_metrics_format_value(v, num, sizeof num);
    put(t, "%s%s", name, suffix);
    if (label) {
        put(t, "{%s=\"", label);
        for (const char *c = value; *c; c++) {
            if (*c == '\\' || *c == '"')
                put(t, "\\%c", *c);
            else if (*c == '\n')
                put(t, "\\n");
            else
                put(t, "%c", *c);
        }
        put(t, "\"}");
    }
    put(t, " %s\n", num);
}

static void put_hist(text *t, const char *name, const hist *h, const double *b, size_t nb)
{
    char le[64];
    uint64_t cum = 0;
    for (size_t i = 0; i <= nb; i++) {
        cum += h->buckets[i];
        if (i < nb)
            an_metrics_format_value(b[i], le, sizeof le);
        else
            snprintf(le, sizeof le, "+Inf");
        put_sample(t, name, "_bucket", "le", le, (double)cum);
    }
    put_sample(t, name, "_sum", NULL, NULL, h->sum);
    put_sample(t, name, "_count", NULL, NULL, (double)h->count);
}

/* Writes everything; the caller holds the mutex. */
static void render_locked(const an_metrics *m, text *t)
{
    put_help(t, "anomalyd_entries_total", "counter", "Input entries completed, by outcome.");
    for (int o = 0; o < AN_OUTCOME_N; o++)
        put_sample(t, "anomalyd_entries_total", "", "outcome", outcome_names[o],
                   (double)m->outcomes[o]);
    put_help(t, "anomalyd_dead_letters_total", "counter",
             "Entries sent to the dead-letter stream, by reason class.");
    for (size_t i = 0; i < m->dead.n; i++)
        put_sample(t, "anomalyd_dead_letters_total", "", "reason", m->dead.names[i],
                   (double)m->dead.counts[i]);
    for (int c = 0; c < AN_C_N; c++) {
        put_help(t, counter_fam[c].name, "counter", counter_fam[c].help);
        put_sample(t, counter_fam[c].name, "", NULL, NULL, (double)m->counters[c]);
    }
    for (int g = 0; g < AN_G_N; g++) {
        put_help(t, gauge_fam[g].name, "gauge", gauge_fam[g].help);
        put_sample(t, gauge_fam[g].name, "", NULL, NULL, m->gauges[g]);
    }
    put_help(t, "anomalyd_state", "gauge",
             "1 for the current state (starting, running, paused, stopping), 0 for the others.");
    for (int s = 0; s < AN_STATE_N; s++)
        put_sample(t, "anomalyd_state", "", "state", state_names[s], m->state == (an_run_state)s);
    put_help(t, "anomalyd_pause_cause", "gauge",
             "1 for the fault class that paused the service, 0 for causes seen before.");
    for (size_t i = 0; i < m->causes.n; i++)
        put_sample(t, "anomalyd_pause_cause", "", "cause", m->causes.names[i],
                   m->state == AN_STATE_PAUSED && m->cause == i);
    put_help(t, "anomalyd_connection_up", "gauge",
             "1 while the connection to the server works, by server (redis, postgres).");
    for (int s = 0; s < AN_SERVER_N; s++)
        put_sample(t, "anomalyd_connection_up", "", "server", server_names[s], m->up[s]);
    put_help(t, "anomalyd_schema_present", "gauge",
             "1 when the database schema this build needs is present, 0 when not (or not "
             "checked yet).");
    put_sample(t, "anomalyd_schema_present", "", NULL, NULL, m->schema == 1);
    for (int h = 0; h < AN_H_N; h++) {
        put_help(t, hist_fam[h].name, "histogram", hist_fam[h].help);
        put_hist(t, hist_fam[h].name, &m->hists[h], hist_bounds[h].b, hist_bounds[h].n);
    }
    put_help(t, "anomalyd_build_info", "gauge", "Always 1; the version is a label.");
    put_sample(t, "anomalyd_build_info", "", "version", an_version(), 1);
}

char *an_metrics_render(an_metrics *m, size_t *len)
{
    if (!m)
        return NULL;
    text t = {.cap = 16384};
    t.p = malloc(t.cap);
    if (!t.p)
        return NULL;
    t.p[0] = '\0';
    LOCKED(m, render_locked(m, &t));
    if (t.oom) {
        free(t.p);
        return NULL;
    }
    if (len)
        *len = t.len;
    return t.p;
}
