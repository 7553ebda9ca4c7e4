/*
 * test_consumers.c: `anomalyctl consumers list|prune` against the real
 * Redis of ops/stack.sh (and, for the takeover test, anomalyd and
 * PostgreSQL). Consumers are simulated with XREADGROUP where nothing needs
 * processing, so the idle times are under the test's control.
 */
#define _GNU_SOURCE
#include <check.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "support_e2e.h"
#include "check_main.h"

static e2e T;

static void setup(void) { e2e_init(&T, "cons"); }
static void teardown(void) { e2e_fini(&T); }

/* XADD n plain entries to the input stream, and create the group. */
static void add_entries(int n)
{
    for (int i = 0; i < n; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        an_field f = e2e_field("n", v);
        char id[AN_ID_MAX];
        e2e_xadd_fields(&T, &f, 1, id);
    }
    bool created = false;
    ck_assert_int_eq(an_group_create(T.rd, T.input, E2E_GROUP, "0", &created), 0);
}

/* A consumer that exists, nothing more (its idle time restarts). */
static void touch(const char *consumer)
{
    /* XAUTOCLAIM with an idle time nothing has: claims nothing, refreshes
     * (or creates) the consumer. */
    redisReply *r = e2e_redis_cmd(&T, "XGROUP CREATECONSUMER %s %s %s", T.input, E2E_GROUP,
                                  consumer);
    freeReplyObject(r);
    r = e2e_redis_cmd(&T, "XAUTOCLAIM %s %s %s 86400000 0-0 COUNT 1 JUSTID", T.input,
                      E2E_GROUP, consumer);
    freeReplyObject(r);
}

/* XREADGROUP ... COUNT n ... ">" as consumer (n > 0 entries become its
 * pending). */
static void read_as(const char *consumer, int n)
{
    ck_assert_int_gt(n, 0);
    redisReply *r = e2e_redis_cmd(&T, "XREADGROUP GROUP %s %s COUNT %d STREAMS %s >",
                                  E2E_GROUP, consumer, n, T.input);
    freeReplyObject(r);
}

/* Runs anomalyctl consumers ARGS...; returns the exit code, *out the stdout
 * (malloc'd). */
static int ctl(char **out, ...)
{
    const char *argv[16];
    int n = 0;
    argv[n++] = e2e_bin("anomalyctl");
    argv[n++] = "consumers";
    va_list ap;
    va_start(ap, out);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 15)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    e2e_proc p;
    e2e_spawn(&T, &p, "anomalyctl consumers", argv);
    e2e_wait(&T, &p, 30000);
    char *o = e2e_slurp(p.out_path, NULL);
    char *e = e2e_slurp(p.err_path, NULL);
    size_t lo = o ? strlen(o) : 0, le = e ? strlen(e) : 0;
    char *all = malloc(lo + le + 2);
    ck_assert_ptr_nonnull(all);
    snprintf(all, lo + le + 2, "%s%s", o ? o : "", e ? e : "");
    free(o);
    free(e);
    if (out)
        *out = all;
    else
        free(all);
    return p.code;
}

typedef struct pend {
    int64_t n;
    an_pending_item *v;
} pend;

static pend pending_of(const char *consumer)
{
    pend p = {0};
    size_t n = 0;
    int rc = an_pending_range(T.rd, T.input, E2E_GROUP, -1, "-", "+", 1000, consumer, &p.v,
                              &n);
    ck_assert_msg(rc == 0, "XPENDING: %s", an_redis_errstr(T.rd));
    p.n = (int64_t)n;
    return p;
}

static size_t nconsumers(void)
{
    an_consumer_info *c = NULL;
    size_t n = 0;
    ck_assert_int_eq(an_xinfo_consumers(T.rd, T.input, E2E_GROUP, &c, &n), 0);
    an_consumer_info_free(c, n);
    return n;
}

static bool has_consumer(const char *name)
{
    an_consumer_info *c = NULL;
    size_t n = 0;
    ck_assert_int_eq(an_xinfo_consumers(T.rd, T.input, E2E_GROUP, &c, &n), 0);
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found = found || !strcmp(c[i].name, name);
    an_consumer_info_free(c, n);
    return found;
}

START_TEST(usage_errors)
{
    ck_assert_int_eq(ctl(NULL, NULL), 2);
    ck_assert_int_eq(ctl(NULL, "prune", NULL), 2);             /* --idle required */
    ck_assert_int_eq(ctl(NULL, "prune", "--idle", "abc", NULL), 2);
    ck_assert_int_eq(ctl(NULL, "prune", "--idle", "5x", NULL), 2);
    ck_assert_int_eq(ctl(NULL, "list", "--idle", "5", NULL), 2);
    ck_assert_int_eq(ctl(NULL, "list", "--bogus", NULL), 2);
    ck_assert_int_eq(ctl(NULL, "explode", NULL), 2);
    char *out = NULL;
    /* no such stream: a clear failure, not a crash */
    ck_assert_int_eq(ctl(&out, "list", NULL), 1);
    ck_assert_msg(strstr(out, "does not exist"), "list on a missing stream: %s", out);
    free(out);
    ck_assert_int_eq(ctl(&out, "prune", "--idle", "1s", NULL), 1);
    ck_assert_msg(strstr(out, "does not exist"), "prune on a missing stream: %s", out);
    free(out);
}
END_TEST

START_TEST(list_and_prune)
{
    add_entries(10);
    read_as("dead1", 4);
    read_as("dead2", 3);
    redisReply *r = e2e_redis_cmd(&T, "XGROUP CREATECONSUMER %s %s %s", T.input, E2E_GROUP,
                                  "empty");
    freeReplyObject(r);
    e2e_sleep_ms(600);
    read_as("live", 1);

    char *out = NULL;
    ck_assert_int_eq(ctl(&out, "list", NULL), 0);
    ck_assert_msg(strstr(out, "4 consumers"), "list: %s", out);
    const char *l = strstr(out, "\nlive ");
    ck_assert_msg(l && strstr(out, "NAME") < l, "list: live first (least idle): %s", out);
    ck_assert_msg(strstr(out, "dead1") && strstr(out, "dead2") && strstr(out, "empty"),
                  "list: %s", out);
    /* the pending column */
    int64_t pend_dead1 = -1;
    const char *d1 = strstr(out, "\ndead1 ");
    ck_assert_ptr_nonnull(d1);
    ck_assert_int_eq(sscanf(d1 + 6, " %" SCNd64, &pend_dead1), 1);
    ck_assert_int_eq(pend_dead1, 4);
    free(out);

    pend before1 = pending_of("dead1");
    ck_assert_int_eq(before1.n, 4);

    /* dry run: says what it would do, changes nothing */
    ck_assert_int_eq(ctl(&out, "prune", "--idle", "400", "--dry-run", NULL), 0);
    ck_assert_msg(strstr(out, "dry run") && strstr(out, "would move them to live"),
                  "dry run: %s", out);
    ck_assert_msg(strstr(out, "3 consumers would be pruned, 7 pending entries would be moved"),
                  "dry run summary: %s", out);
    free(out);
    ck_assert_int_eq(nconsumers(), 4);
    ck_assert_int_eq(e2e_pending(&T), 8);

    /* the real thing: live keeps, the three idle ones go, their entries move */
    e2e_sleep_ms(100);
    touch("live");   /* keep live fresh */
    ck_assert_int_eq(ctl(&out, "prune", "--idle", "400", NULL), 0);
    ck_assert_msg(strstr(out, "consumer dead1: idle") && strstr(out, "moved 4 pending entries to live"),
                  "prune: %s", out);
    ck_assert_msg(strstr(out, "moved 3 pending entries to live"), "prune: %s", out);
    ck_assert_msg(strstr(out, "consumer empty: idle") && strstr(out, "nothing pending: deleted"),
                  "prune: %s", out);
    ck_assert_msg(strstr(out, "3 consumers pruned, 7 pending entries moved, 1 kept, 0 problems"),
                  "prune summary: %s", out);
    ck_assert_msg(!strstr(out, "DISCARDED") && !strstr(out, "ERROR"), "prune: %s", out);
    free(out);
    ck_assert_int_eq(nconsumers(), 1);
    ck_assert(has_consumer("live"));
    ck_assert_int_eq(e2e_pending(&T), 8);

    /* moved entries: same ids, not a delivery more, idle time kept (so the
     * live consumers' XAUTOCLAIM still sees them as idle) */
    pend after = pending_of("live");
    ck_assert_int_eq(after.n, 8);
    for (int64_t i = 0; i < before1.n; i++) {
        bool found = false;
        for (int64_t j = 0; j < after.n; j++) {
            if (strcmp(after.v[j].id, before1.v[i].id))
                continue;
            found = true;
            ck_assert_int_eq(after.v[j].deliveries, before1.v[i].deliveries);
            ck_assert_msg(after.v[j].idle_ms >= 600,
                          "moved entry %s: idle %" PRId64 " ms, its idle time was reset",
                          after.v[j].id, after.v[j].idle_ms);
        }
        ck_assert_msg(found, "entry %s of dead1 is not pending for live", before1.v[i].id);
    }
    free(before1.v);
    free(after.v);

    /* nothing idle enough: nothing to do */
    ck_assert_int_eq(ctl(&out, "prune", "--idle", "1h", NULL), 0);
    ck_assert_msg(strstr(out, "0 consumers pruned"), "prune --idle 1h: %s", out);
    free(out);
}
END_TEST

START_TEST(prune_without_target)
{
    add_entries(5);
    read_as("a", 2);
    touch("b");      /* exists, nothing pending */
    e2e_sleep_ms(300);
    char *out = NULL;
    /* every consumer is idle: a has pending entries and nobody to take them */
    ck_assert_int_eq(ctl(&out, "prune", "--idle", "200", NULL), 1);
    ck_assert_msg(strstr(out, "target for pending entries: none"), "prune: %s", out);
    ck_assert_msg(strstr(out, "consumer a: idle") && strstr(out, "NOT deleted") &&
                      strstr(out, "use --to NAME"),
                  "prune: %s", out);
    ck_assert_msg(strstr(out, "consumer b: idle") && strstr(out, "nothing pending: deleted"),
                  "prune: %s", out);
    free(out);
    ck_assert(has_consumer("a"));
    ck_assert(!has_consumer("b"));
    ck_assert_int_eq(e2e_pending(&T), 2);

    /* --to NAME: a new consumer name is fine (XCLAIM creates it) */
    ck_assert_int_eq(ctl(&out, "prune", "--idle", "200", "--to", "rescuer", NULL), 0);
    ck_assert_msg(strstr(out, "not a consumer of the group yet") &&
                      strstr(out, "moved 2 pending entries to rescuer"),
                  "prune --to: %s", out);
    free(out);
    ck_assert(!has_consumer("a"));
    pend p = pending_of("rescuer");
    ck_assert_int_eq(p.n, 2);
    free(p.v);

    /* the target itself is never pruned, however idle */
    e2e_sleep_ms(300);
    ck_assert_int_eq(ctl(&out, "prune", "--idle", "200", "--to", "rescuer", NULL), 0);
    ck_assert_msg(strstr(out, "consumer rescuer: idle") && strstr(out, "kept (it is the target)"),
                  "prune --to self: %s", out);
    free(out);
    ck_assert(has_consumer("rescuer"));
}
END_TEST

/* A consumer dies holding entries; prune moves them to a consumer that is
 * not running; a live anomalyd (another name) takes them over with
 * XAUTOCLAIM, because the move kept them idle. Everything gets processed,
 * nothing is delivered more often than before. */
START_TEST(prune_then_takeover)
{
    const char *uid = e2e_uid(&T, "takeover");
    char csv[PATH_MAX + 16];
    snprintf(csv, sizeof csv, "%s/head.csv", T.tmpdir);
    e2e_csv_head(e2e_data("likelihood/htmengine/numenta_art_daily_jumpsup.inputs.csv"), csv,
                 300);
    e2e_replay(&T, csv, "e2e.takeover", uid, 100, 200, 300, 1 + 2 + 100);
    bool created;
    ck_assert_int_eq(an_group_create(T.rd, T.input, E2E_GROUP, "0", &created), 0);
    read_as("crashed", 1000);   /* takes all 103 entries and "dies" */
    ck_assert_int_eq(e2e_pending(&T), 103);
    e2e_sleep_ms(1200);

    char *out = NULL;
    ck_assert_int_eq(ctl(&out, "prune", "--idle", "1000", "--to", "standby", NULL), 0);
    ck_assert_msg(strstr(out, "moved 103 pending entries to standby"), "prune: %s", out);
    free(out);

    e2e_setenv(&T, "ANOMALYD_STREAMS_CLAIM_IDLE_MS", "1000");
    e2e_proc d;
    e2e_run_anomalyd(&T, &d, "worker", 2000, 120000);
    ck_assert_int_eq(e2e_pending(&T), 0);
    ck_assert_int_eq(e2e_scored_rowid(&T, uid), 300);
    ck_assert_int_eq(e2e_xlen(&T, T.output), 103);
    ck_assert_int_eq(e2e_xlen(&T, T.dead), 0);
    size_t claims = e2e_count_lines(d.err_path, "claimed entry");
    ck_assert_msg(claims == 103, "worker claimed %zu entries, expected all 103:\n%s", claims,
                  e2e_tail(d.err_path, 2000));
    /* delivery 2: the crashed consumer's read, then the worker's claim (the
     * move itself is not a delivery) */
    ck_assert_msg(e2e_count_lines(d.err_path, "(delivery 2)") == 103,
                  "deliveries: %s", e2e_tail(d.err_path, 2000));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("consumers");
    TCase *tc = tcase_create("consumers");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, usage_errors);
    tcase_add_test(tc, list_and_prune);
    tcase_add_test(tc, prune_without_target);
    tcase_add_test(tc, prune_then_takeover);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(suite(), CK_NORMAL);
}
