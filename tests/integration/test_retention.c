/* test_retention.c: input retention against the real Redis (and, for the
 * service run, PostgreSQL) of ops/stack.sh.
 *
 *  - trim_respects_every_group: lua/trim_input.lua with a fast group and a
 *    slow one on the same stream; the slow group reads a few entries at a
 *    time, trims run in between, and every entry it reads (new or pending)
 *    is intact;
 *  - retention_window_and_pins: entries with ids in the past (explicit ids,
 *    so no waiting): processed entries younger than input_retention stay,
 *    a group that never read pins the stream and anomalyctl status names it;
 *  - attempts_gc_removes_orphans: fields of entries no longer pending go;
 *  - service_trims_beside_slow_group: anomalyd trims while it scores a
 *    replay; a second, slow group then reads every remaining entry intact;
 *  - deferral_list_is_bounded: [streams] defer_max_entries.
 */
#include <check.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "an_retention.h"
#include "support_e2e.h"
#include "check_main.h"

static e2e T;

static void setup(void) { e2e_init(&T, "ret"); }
static void teardown(void) { e2e_fini(&T); }

#define JUMPSUP "likelihood/htmengine/numenta_art_daily_jumpsup.inputs.csv"

static redisReply *rcmd(const char *fmt, const char *a, const char *b, const char *c)
{
    return e2e_redis_cmd(&T, fmt, a, b, c);
}

/* The entries of Redis's stream nodes: approximate trimming (MINID ~) only
 * removes whole nodes, so this is how far a trim may stop short. */
static long node_entries(void)
{
    redisReply *r = e2e_redis_cmd(&T, "CONFIG GET stream-node-max-entries");
    ck_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    long n = atol(r->element[1]->str);
    freeReplyObject(r);
    ck_assert_int_gt(n, 0);
    return n;
}

/* Appends n entries "seq" = first..first+n-1 to the input stream; ids
 * (may be NULL) receive their ids. explicit_ms > 0: ids explicit_ms-<seq>. */
static void add_seq(long first, long n, int64_t explicit_ms, char (*ids)[AN_ID_MAX])
{
    for (long i = 0; i < n; i++) {
        char seq[32], id[AN_ID_MAX];
        snprintf(seq, sizeof seq, "%ld", first + i);
        redisReply *r;
        if (explicit_ms > 0) {
            char want[AN_ID_MAX];
            snprintf(want, sizeof want, "%" PRId64 "-%ld", explicit_ms, first + i);
            r = rcmd("XADD %s %s seq %s", T.input, want, seq);
        } else {
            r = rcmd("XADD %s * seq %s", T.input, seq, NULL);
        }
        ck_assert_msg(r->type == REDIS_REPLY_STRING, "XADD: %s", r->str ? r->str : "?");
        snprintf(id, sizeof id, "%s", r->str);
        freeReplyObject(r);
        if (ids)
            memcpy(ids[i], id, AN_ID_MAX);
    }
}

static void group_create(const char *group, const char *start)
{
    redisReply *r = rcmd("XGROUP CREATE %s %s %s MKSTREAM", T.input, group, start);
    ck_assert_msg(r->type == REDIS_REPLY_STATUS, "XGROUP CREATE %s: %s", group,
                  r->str ? r->str : "?");
    freeReplyObject(r);
}

/* Reads up to count entries of group (id ">" or "0") and checks each is
 * intact: payload present and "seq" equal to expect[...] in order (*next
 * indexes the expected sequence and advances). Acks them when ack. Returns
 * the number read. */
static size_t read_check(const char *group, const char *id, size_t count, long *next, bool ack)
{
    an_entry_list l = {0};
    int rc = an_read_group(T.rd, T.input, group, "c", id, count, -1, &l);
    ck_assert_msg(rc == 0, "XREADGROUP %s: %s", group, an_redis_errstr(T.rd));
    for (size_t i = 0; i < l.n; i++) {
        ck_assert_msg(!l.v[i].nil, "group %s: entry %s was trimmed before it was processed",
                      group, l.v[i].id);
        const an_field *f = an_entry_field(&l.v[i], "seq");
        ck_assert_msg(f, "group %s: entry %s has no seq field", group, l.v[i].id);
        ck_assert_msg(atol(f->value) == *next, "group %s: entry %s has seq %s, expected %ld",
                      group, l.v[i].id, f->value, *next);
        (*next)++;
        if (ack) {
            const char *ids[] = {l.v[i].id};
            ck_assert_int_eq(an_xack(T.rd, T.input, group, ids, 1, NULL), 0);
        }
    }
    size_t n = l.n;
    an_entry_list_free(&l);
    return n;
}

static int64_t trim(int64_t retention_ms, an_trim_result *out)
{
    int rc = an_trim_input(T.rd, T.input, retention_ms, true, AN_RETENTION_TRIM_LIMIT, out);
    ck_assert_msg(rc == 0, "trim: %s", an_redis_errstr(T.rd));
    return out->trimmed;
}

static const an_trim_group *find_group(const an_trim_result *t, const char *name)
{
    for (size_t i = 0; i < t->ngroups; i++)
        if (!strcmp(t->groups[i].name, name))
            return &t->groups[i];
    ck_abort_msg("group %s not in the trim result", name);
    return NULL;
}

/* ------------------------------------------------------------------------ */

START_TEST(trim_respects_every_group)
{
    const long N = 1200, node = node_entries();
    char (*ids)[AN_ID_MAX] = calloc((size_t)N, AN_ID_MAX);
    ck_assert_ptr_nonnull(ids);
    /* no stream, then a stream without groups: nothing to trim */
    an_trim_result t;
    ck_assert_int_eq(trim(0, &t), 0);
    ck_assert_str_eq(t.cutoff, "");
    an_trim_result_free(&t);
    add_seq(0, N, 0, ids);
    ck_assert_int_eq(trim(0, &t), 0);
    ck_assert_str_eq(t.cutoff, "");
    ck_assert_uint_eq(t.ngroups, 0);
    an_trim_result_free(&t);
    ck_assert_int_eq(e2e_xlen(&T, T.input), N);

    group_create("fast", "0");
    group_create("slow", "0");
    /* fast processes everything; slow reads 300 and acks only the first 100 */
    long fast_next = 0, slow_next = 0;
    while (read_check("fast", ">", 500, &fast_next, true) > 0)
        ;
    ck_assert_int_eq(fast_next, N);
    ck_assert_uint_eq(read_check("slow", ">", 100, &slow_next, true), 100);
    ck_assert_uint_eq(read_check("slow", ">", 200, &slow_next, false), 200);

    /* the cutoff is slow's oldest pending entry (id 100), whatever fast did */
    int64_t total = trim(0, &t);
    ck_assert_str_eq(t.cutoff, ids[100]);
    ck_assert_uint_eq(t.ngroups, 2);
    ck_assert_str_eq(find_group(&t, "slow")->needed, ids[100]);
    ck_assert(find_group(&t, "slow")->holds);
    ck_assert(!find_group(&t, "fast")->holds);
    ck_assert_int_le(total, 100);
    an_trim_result_free(&t);
    /* idempotent: a second trim with nothing new removes nothing */
    ck_assert_int_eq(trim(0, &t), 0);
    an_trim_result_free(&t);
    ck_assert_int_eq(e2e_xlen(&T, T.input), N - total);

    /* slow's pending entries are intact when it re-reads them */
    long pending_next = 100;
    ck_assert_uint_eq(read_check("slow", "0", 1000, &pending_next, true), 200);
    ck_assert_int_eq(pending_next, 300);

    /* then slow goes on a few entries at a time, a trim after every read;
     * every entry it gets is intact, and the stream shrinks behind it */
    size_t got;
    while ((got = read_check("slow", ">", 37, &slow_next, false)) > 0) {
        long oldest = slow_next - (long)got;
        total += trim(0, &t);
        /* the cutoff is exactly slow's oldest unacked entry */
        ck_assert_str_eq(t.cutoff, ids[oldest]);
        an_trim_result_free(&t);
        /* re-read the pending ones after the trim, intact, then ack them */
        ck_assert_uint_eq(read_check("slow", "0", 1000, &oldest, true), got);
    }
    ck_assert_int_eq(slow_next, N);
    total += trim(0, &t);
    an_trim_result_free(&t);
    /* everything processed by both: all but at most one node is gone */
    int64_t left = e2e_xlen(&T, T.input);
    ck_assert_int_eq(left, N - total);
    ck_assert_msg(left <= node, "%" PRId64 " entries left after everything was processed "
                  "(node size %ld)", left, node);

    /* a group created after the trims, from "0", sees what is left */
    group_create("late", "0");
    long late_next = N - left;
    while (read_check("late", ">", 500, &late_next, true) > 0)
        ;
    ck_assert_int_eq(late_next, N);
    free(ids);
}
END_TEST

/* One call removes at most its limit (whole nodes), so a large backlog of
 * processed entries goes over several calls; none removes a needed entry. */
START_TEST(trim_limit_per_call)
{
    const long node = node_entries(), N = 5 * node + 7;
    char (*ids)[AN_ID_MAX] = calloc((size_t)N, AN_ID_MAX);
    ck_assert_ptr_nonnull(ids);
    add_seq(0, N, 0, ids);
    group_create("g", "0");
    long next = 0;
    while (read_check("g", ">", 1000, &next, true) > 0)
        ;
    int calls = 0;
    int64_t total = 0;
    an_trim_result t;
    for (;;) {
        ck_assert_int_eq(an_trim_input(T.rd, T.input, 0, true, node, &t), 0);
        int64_t n = t.trimmed;
        an_trim_result_free(&t);
        ck_assert_int_le(n, node);
        if (n == 0)
            break;
        total += n;
        ck_assert_int_lt(++calls, 100);
    }
    ck_assert_int_ge(calls, 5);
    ck_assert_int_ge(total, 5 * node);
    ck_assert_int_eq(e2e_xlen(&T, T.input), N - total);
    /* bad limits are refused before anything is sent */
    ck_assert_int_eq(an_trim_input(T.rd, T.input, 0, true, 0, &t), AN_EINVAL);
    free(ids);
}
END_TEST

/* Server time in ms (the clock trim_input.lua uses). */
static int64_t redis_now_ms(void)
{
    redisReply *r = e2e_redis_cmd(&T, "TIME");
    ck_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    int64_t ms = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
    freeReplyObject(r);
    return ms;
}

START_TEST(retention_window_and_pins)
{
    const long node = node_entries();
    const int64_t H = 3600000;
    int64_t now = redis_now_ms();
    /* 2 nodes of entries 3 h old, 2 nodes 30 min old, a few 1 min old */
    add_seq(0, 2 * node, now - 3 * H, NULL);
    add_seq(2 * node, 2 * node, now - H / 2, NULL);
    add_seq(4 * node, 5, now - 60000, NULL);
    const long N = 4 * node + 5;
    group_create("anomalyd", "0");
    long next = 0;
    while (read_check("anomalyd", ">", 500, &next, true) > 0)
        ;
    ck_assert_int_eq(next, N);

    /* report only: nothing trimmed */
    an_trim_result t;
    ck_assert_int_eq(an_trim_input(T.rd, T.input, H, false, AN_RETENTION_TRIM_LIMIT, &t), 0);
    ck_assert_int_eq(t.trimmed, 0);
    an_trim_result_free(&t);
    ck_assert_int_eq(e2e_xlen(&T, T.input), N);

    /* retention 1 h: the 3 h old entries go, the younger ones stay */
    int64_t n = trim(H, &t);
    ck_assert_int_eq(n, 2 * node);
    an_trim_result_free(&t);
    an_entry_list all;
    e2e_xrange_all(&T, T.input, &all);
    ck_assert_uint_eq(all.n, (size_t)(2 * node + 5));
    for (size_t i = 0; i < all.n; i++) {
        const an_field *f = an_entry_field(&all.v[i], "seq");
        ck_assert(f && atol(f->value) == 2 * node + (long)i);
    }
    an_entry_list_free(&all);

    /* an operator's group left behind from "0": it needs everything */
    group_create("forgotten", "0");
    ck_assert_int_eq(trim(0, &t), 0);
    const an_trim_group *fg = find_group(&t, "forgotten");
    ck_assert_str_eq(fg->needed, "0-1");
    ck_assert(an_retention_pins(&t, fg, 0, H / 4, NULL));
    ck_assert(!an_retention_pins(&t, find_group(&t, "anomalyd"), 0, H / 4, NULL));
    an_trim_result_free(&t);
    ck_assert_int_eq(e2e_xlen(&T, T.input), 2 * node + 5);

    /* anomalyctl status names it (the group of the e2e context is "anomalyd") */
    e2e_setenv(&T, "ANOMALYD_STREAMS_PIN_WARN_MS", "900000");
    e2e_proc p;
    e2e_run(&T, &p, "anomalyctl status", 30000, e2e_bin("anomalyctl"), "status", NULL);
    E2E_EXPECT_EXIT0(&p);
    char *out = e2e_slurp(p.out_path, NULL);
    ck_assert_msg(out && strstr(out, "forgotten") && strstr(out, "PINS"),
                  "status does not name the pinning group:\n%s", out);
    free(out);
    e2e_run(&T, &p, "anomalyctl status --json", 30000, e2e_bin("anomalyctl"), "status",
            "--json", NULL);
    E2E_EXPECT_EXIT0(&p);
    out = e2e_slurp(p.out_path, NULL);
    json_t *j = e2e_parse(out, "status --json");
    free(out);
    json_t *ret = json_object_get(j, "retention");
    ck_assert_msg(json_is_object(ret), "no retention object: %s", e2e_js(j));
    json_t *pins = json_object_get(ret, "pinned_by");
    ck_assert_msg(json_is_array(pins) && json_array_size(pins) == 1 &&
                      !strcmp(json_string_value(json_array_get(pins, 0)), "forgotten"),
                  "pinned_by: %s", e2e_js(ret));
    json_decref(j);

    /* once it has read and acked everything, it no longer pins */
    long fnext = 2 * node;
    while (read_check("forgotten", ">", 500, &fnext, true) > 0)
        ;
    n = trim(0, &t);
    ck_assert(!an_retention_pins(&t, find_group(&t, "forgotten"), 0, H / 4, NULL));
    an_trim_result_free(&t);
    /* everything is processed now: at least the full nodes go */
    ck_assert_int_ge(n, 2 * node);
    ck_assert_int_eq(e2e_xlen(&T, T.input), 2 * node + 5 - n);
}
END_TEST

START_TEST(attempts_gc_removes_orphans)
{
    char ids[4][AN_ID_MAX];
    add_seq(0, 4, 0, ids);
    group_create("anomalyd", "0");
    long next = 0;
    ck_assert_uint_eq(read_check("anomalyd", ">", 10, &next, false), 4);
    const char *v[] = {ids[0], ids[1], ids[2], ids[3]};
    int64_t counts[4];
    bool split;
    ck_assert_int_eq(an_attempts_begin(T.rd, T.input, v, 4, false, counts, &split), 0);
    /* ids[1] acked behind the scripts' back, and a field that is no id */
    ck_assert_int_eq(an_xack(T.rd, T.input, "anomalyd", &v[1], 1, NULL), 0);
    char key[512];
    an_attempts_key(T.input, key, sizeof key);
    freeReplyObject(rcmd("HSET %s %s 1", key, "not-an-id", NULL));
    freeReplyObject(rcmd("HSET %s %s 1", key, "1-1", NULL));   /* never pending */

    char cursor[AN_ID_MAX] = "0";
    int64_t removed = 0, total = 0;
    int rounds = 0;
    do {
        ck_assert_int_eq(an_attempts_gc(T.rd, T.input, "anomalyd", cursor, 2, &removed), 0);
        total += removed;
        ck_assert_int_lt(++rounds, 100);
    } while (strcmp(cursor, "0"));
    ck_assert_int_eq(total, 3);
    redisReply *r = rcmd("HKEYS %s", key, NULL, NULL);
    ck_assert_uint_eq(r->elements, 3);
    for (size_t i = 0; i < r->elements; i++)
        ck_assert(strcmp(r->element[i]->str, ids[1]) && strcmp(r->element[i]->str, "1-1"));
    freeReplyObject(r);
    /* a missing group: NOGROUP, nothing removed */
    strcpy(cursor, "0");
    ck_assert_int_eq(an_attempts_gc(T.rd, T.input, "nosuchgroup", cursor, 10, &removed),
                     AN_ENOGROUP);
    r = rcmd("HLEN %s", key, NULL, NULL);
    ck_assert_int_eq(r->integer, 3);
    freeReplyObject(r);
}
END_TEST

/* The short form of ops/retention-run.sh: anomalyd trims while it scores a
 * replay (1-row live batches); a second group "slow" has read only the first
 * half and acked all but its last 3 nodes' worth; afterwards it reads the rest, and every entry is intact. */
START_TEST(service_trims_beside_slow_group)
{
    const char *csv = e2e_data(JUMPSUP);
    const char *uid = e2e_uid(&T, "ret");
    const long N = 4032, LIVE = 2880, ENTRIES = 1 + 2 + (N - LIVE);
    e2e_replay(&T, csv, "e2e.ret", uid, 1440, LIVE, N, ENTRIES);
    an_entry_list in;
    e2e_xrange_all(&T, T.input, &in);
    ck_assert_uint_eq(in.n, (size_t)ENTRIES);

    group_create("slow", "0");
    const long HALF = ENTRIES / 2, KEEP = 3 * node_entries();   /* pending over 3 nodes */
    an_entry_list l = {0};
    ck_assert_int_eq(an_read_group(T.rd, T.input, "slow", "s1", ">", (size_t)HALF, -1, &l), 0);
    ck_assert_uint_eq(l.n, (size_t)HALF);
    for (long i = 0; i < HALF - KEEP; i++) {   /* the last KEEP stay pending */
        const char *ids[] = {l.v[i].id};
        ck_assert_int_eq(an_xack(T.rd, T.input, "slow", ids, 1, NULL), 0);
    }
    an_entry_list_free(&l);

    e2e_setenv(&T, "ANOMALYD_STREAMS_TRIM_INTERVAL_MS", "100");
    e2e_proc d;
    e2e_run_anomalyd(&T, &d, "c1", 1500, 300000);
    ck_assert_int_eq(e2e_scored_rowid(&T, uid), N);
    ck_assert_int_eq(e2e_pending(&T), 0);

    /* it trimmed the processed first half, up to slow's oldest pending entry */
    int64_t left = e2e_xlen(&T, T.input);
    char *err = e2e_slurp(d.err_path, NULL);
    const char *p = err ? strstr(err, " input_trimmed=") : NULL;
    ck_assert_msg(p, "no input_trimmed in the stats line:\n%s", e2e_tail(d.err_path, 2000));
    long logged = atol(p + strlen(" input_trimmed="));
    free(err);
    ck_assert_int_gt(logged, 0);
    ck_assert_int_eq(left, ENTRIES - logged);
    /* the slow group is seconds behind, far from pin_warn_ms (1 h): no warning,
     * although it was created from "0" (its needed id "0-1" has time 0) */
    ck_assert_msg(e2e_count_lines(d.err_path, "pins stream") == 0, "a pin warning:\n%s",
                  e2e_tail(d.err_path, 2000));
    ck_assert_int_le(left, ENTRIES - HALF + KEEP + node_entries());

    /* slow's pending entries and the rest are all intact */
    long k = HALF - KEEP;
    for (const char *from = "0";; from = ">") {
        for (;;) {
            ck_assert_int_eq(an_read_group(T.rd, T.input, "slow", "s1", from, 1000, -1, &l), 0);
            if (l.n == 0)
                break;
            for (size_t i = 0; i < l.n; i++, k++) {
                ck_assert_msg(!l.v[i].nil, "slow: entry %s was trimmed before it was read",
                              l.v[i].id);
                ck_assert_str_eq(l.v[i].id, in.v[k].id);
                ck_assert_uint_eq(l.v[i].nfields, in.v[k].nfields);
                for (size_t f = 0; f < l.v[i].nfields; f++)
                    ck_assert(l.v[i].fields[f].value_len == in.v[k].fields[f].value_len &&
                              !memcmp(l.v[i].fields[f].value, in.v[k].fields[f].value,
                                      l.v[i].fields[f].value_len));
                const char *ids[] = {l.v[i].id};
                ck_assert_int_eq(an_xack(T.rd, T.input, "slow", ids, 1, NULL), 0);
            }
            an_entry_list_free(&l);
            if (!strcmp(from, "0"))
                break;   /* pending ones are read once, then acked */
        }
        if (!strcmp(from, ">"))
            break;
    }
    ck_assert_int_eq(k, ENTRIES);
    an_entry_list_free(&in);
}
END_TEST

/* Pending entries of one consumer (XPENDING summary). */
static int64_t pending_of(const char *consumer)
{
    an_pending_summary ps;
    ck_assert_int_eq(an_pending_summary_get(T.rd, T.input, E2E_GROUP, &ps), 0);
    int64_t n = 0;
    for (size_t i = 0; i < ps.nconsumers; i++)
        if (!strcmp(ps.consumers[i].name, consumer))
            n = ps.consumers[i].pending;
    an_pending_summary_free(&ps);
    return n;
}

/* [streams] defer_max_entries: while a model's first batch is held by
 * another consumer, anomalyd defers its later batches, keeps at most
 * defer_max_entries of them and leaves the rest pending ("deferral list is
 * full"); once the holder comes back, everything completes, nothing lost. */
START_TEST(deferral_list_is_bounded)
{
    char csv[PATH_MAX + 64];
    snprintf(csv, sizeof csv, "%s/short.csv", T.tmpdir);
    e2e_csv_head(e2e_data(JUMPSUP), csv, 300);
    const char *uid = e2e_uid(&T, "defer");
    e2e_replay(&T, csv, "e2e.defer", uid, 1, 0, 300, 301);
    /* "holder" takes the defineModel result and row 1, and sits on them */
    group_create(E2E_GROUP, "0");
    an_entry_list l = {0};
    ck_assert_int_eq(an_read_group(T.rd, T.input, E2E_GROUP, "holder", ">", 2, -1, &l), 0);
    ck_assert_uint_eq(l.n, 2);
    an_entry_list_free(&l);

    e2e_setenv(&T, "ANOMALYD_STREAMS_DEFER_MAX_ENTRIES", "5");
    e2e_setenv(&T, "ANOMALYD_STREAMS_READ_COUNT", "2");
    e2e_setenv(&T, "ANOMALYD_STREAMS_CLAIM_IDLE_MS", "3600000");
    e2e_setenv(&T, "ANOMALYD_STREAMS_DEFER_MAX_MS", "3600000");
    e2e_proc d;
    const char *argv[] = {e2e_bin("anomalyd"), "--consumer", "c1", NULL};
    e2e_spawn(&T, &d, "anomalyd c1 (deferring)", argv);
    double deadline = e2e_now() + 60;
    while (e2e_count_lines(d.err_path, "deferral list is full (5 entries") == 0) {
        ck_assert_msg(e2e_now() < deadline && !e2e_poll(&T, &d),
                      "anomalyd never reported a full deferral list:\n%s",
                      e2e_tail(d.err_path, 2000));
        e2e_sleep_ms(50);
    }
    ck_assert_int_eq(e2e_count_lines(d.err_path, "deferral list is full (6 entries"), 0);
    kill(d.pid, SIGTERM);
    ck_assert_int_eq(e2e_wait(&T, &d, 60000), 0);
    int64_t held = pending_of("c1");
    ck_assert_int_gt(held, 5);   /* more than it kept: the rest stayed pending */

    /* the holder comes back: it finishes its two, takes over c1's, reads the rest */
    e2e_setenv(&T, "ANOMALYD_STREAMS_CLAIM_IDLE_MS", "500");
    e2e_setenv(&T, "ANOMALYD_STREAMS_DEFER_MAX_MS", "60000");
    e2e_run_anomalyd(&T, &d, "holder", 1500, 120000);
    ck_assert_int_eq(e2e_scored_rowid(&T, uid), 300);
    ck_assert_int_eq(e2e_pending(&T), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("retention");
    an_check_add_case(s, "trim_respects_every_group", trim_respects_every_group, setup, teardown, 600);
    an_check_add_case(s, "trim_limit_per_call", trim_limit_per_call, setup, teardown, 600);
    an_check_add_case(s, "retention_window_and_pins", retention_window_and_pins, setup, teardown, 600);
    an_check_add_case(s, "attempts_gc_removes_orphans", attempts_gc_removes_orphans, setup, teardown, 600);
    an_check_add_case(s, "service_trims_beside_slow_group", service_trims_beside_slow_group, setup, teardown, 600);
    an_check_add_case(s, "deferral_list_is_bounded", deferral_list_is_bounded, setup, teardown, 600);
    return an_check_run(s, CK_NORMAL);
}
