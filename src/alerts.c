/* alerts.c: the notification rules (an_alerts.h). Pure. */
#include "an_alerts.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "an_codec.h" /* an_codec_fmt_double */

an_alert_rules an_alert_rules_default(void)
{
    an_alert_rules r = {AN_ALERTS_DEFAULT_THRESHOLD, AN_ALERTS_DEFAULT_MIN_ROWID,
                        AN_ALERTS_DEFAULT_MAX_AGE_MS, AN_ALERTS_DEFAULT_THROTTLE_MS};
    return r;
}

const char *an_alert_verdict_name(an_alert_verdict v)
{
    switch (v) {
    case AN_ALERT_FIRE: return "fire";
    case AN_ALERT_REDELIVER: return "redeliver";
    case AN_ALERT_BELOW: return "below-threshold";
    case AN_ALERT_WARMUP: return "warm-up";
    case AN_ALERT_TOO_OLD: return "too-old";
    case AN_ALERT_DUPLICATE: return "duplicate";
    case AN_ALERT_THROTTLED: return "throttled";
    }
    return "?";
}

int64_t an_alert_ts_ms(double ts)
{
    return (int64_t)llround(ts * 1000.0);
}

an_alert_verdict an_alert_gate(const an_alert_rules *rules, double threshold,
                               const an_alert_row *row, int64_t now_ms)
{
    /* `!(a >= t)` rather than `a < t`: a NaN score never alerts. */
    if (!(row->anomaly >= threshold))
        return AN_ALERT_BELOW;
    if (rules->min_rowid > 0 && row->rowid <= rules->min_rowid)
        return AN_ALERT_WARMUP;
    if (rules->max_age_ms > 0 && an_alert_ts_ms(row->ts) < now_ms - rules->max_age_ms)
        return AN_ALERT_TOO_OLD;
    return AN_ALERT_FIRE;
}

/* The state gates for a row that passed the static ones. The fired record
 * comes first: a row this entry fired before is delivered again even when
 * the throttle (which counts that very alert) would now hold it. */
static int state_gates(const an_alert_rules *rules, const an_alert_store *store,
                       const char *uid, const char *entry_id, int64_t rowid, int64_t ts_ms,
                       an_alert_outcome *o, an_alert_verdict *v)
{
    if (store && store->fired_get) {
        char who[64];
        who[0] = '\0';
        int rc = store->fired_get(store->ud, uid, rowid, who, sizeof who);
        if (rc)
            return rc;
        if (who[0]) {
            *v = entry_id && !strcmp(who, entry_id) ? AN_ALERT_REDELIVER : AN_ALERT_DUPLICATE;
            return 0;
        }
    }
    if (rules->throttle_ms > 0 && o->has_last && ts_ms < o->new_last_ms + rules->throttle_ms) {
        *v = AN_ALERT_THROTTLED;
        return 0;
    }
    *v = AN_ALERT_FIRE;
    return 0;
}

int an_alerts_decide(const an_alert_rules *rules, double threshold,
                     const an_alert_store *store, const char *uid,
                     const char *entry_id, const an_alert_row *rows, size_t n,
                     int64_t now_ms, an_alert_verdict *verdict,
                     an_alert_outcome *out)
{
    memset(out, 0, sizeof *out);
    if (store && store->last_get) {
        int rc = store->last_get(store->ud, uid, &out->had_last, &out->last_ms);
        if (rc)
            return rc;
    }
    out->has_last = out->had_last;
    out->new_last_ms = out->last_ms;
    for (size_t i = 0; i < n; i++) {
        verdict[i] = an_alert_gate(rules, threshold, &rows[i], now_ms);
        if (verdict[i] != AN_ALERT_FIRE)
            continue;
        int64_t ts_ms = an_alert_ts_ms(rows[i].ts);
        int rc = state_gates(rules, store, uid, entry_id, rows[i].rowid, ts_ms, out, &verdict[i]);
        if (rc)
            return rc;
        if (verdict[i] == AN_ALERT_FIRE)
            out->nfire++;
        if (verdict[i] == AN_ALERT_FIRE || verdict[i] == AN_ALERT_REDELIVER) {
            out->ndeliver++;
            /* The newest alert time: a late row (older than the last alert,
             * possible only with the throttle off) does not move it back. */
            if (!out->has_last || ts_ms > out->new_last_ms)
                out->new_last_ms = ts_ms;
            out->has_last = true;
        }
    }
    return 0;
}

char *an_alert_iso8601(double ts, char *buf, size_t len)
{
    int64_t ms = an_alert_ts_ms(ts);
    time_t sec = (time_t)(ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000));
    int frac = (int)(ms - (int64_t)sec * 1000);
    struct tm tm;
    if (!gmtime_r(&sec, &tm)) {
        snprintf(buf, len, "invalid");
        return buf;
    }
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
    return buf;
}

json_t *an_alert_json(const an_alert_info *a)
{
    if (!isfinite(a->ts) || !isfinite(a->value) || !isfinite(a->anomaly) ||
        !isfinite(a->raw) || !isfinite(a->threshold) || !a->uid)
        return NULL;
    char iso[40], thr[40], rule[160];
    an_alert_iso8601(a->ts, iso, sizeof iso);
    an_codec_fmt_double(thr, sizeof thr, a->threshold);
    snprintf(rule, sizeof rule, "anomaly >= %s (%s)", thr,
             a->threshold_from ? a->threshold_from : "default");
    return json_pack("{s:s, s:s?, s:I, s:s, s:f, s:f, s:f, s:f, s:f, s:s, s:s?, s:s?}",
                     "uid", a->uid, "name", a->name, "rowid", (json_int_t)a->rowid,
                     "timestamp", iso, "ts", a->ts, "value", a->value, "anomaly",
                     a->anomaly, "rawAnomaly", a->raw, "threshold", a->threshold, "rule",
                     rule, "source", a->source, "entry", a->entry_id);
}

int an_alert_parse_threshold(const char *s, size_t len, double *out)
{
    char buf[64];
    if (!s || len == 0 || len >= sizeof buf)
        return AN_EINVAL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    double v = strtod(buf, &end);
    if (end == buf || *end || !(v >= 0.0 && v <= 1.0))
        return AN_EINVAL;
    *out = v;
    return 0;
}
