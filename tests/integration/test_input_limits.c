/*
 * test_input_limits.c: the service side of the input limits (issue 9,
 * case 2): [streams] max_group_decoded_bytes at and past the limit, and a
 * limit's dead letter reaching the dead-letter stream through the real
 * service (the decoder's limits themselves are unit-tested in
 * tests/unit/test_codec.c).
 */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support_e2e.h"
#include "check_main.h"

/* Decoded bytes of an entry of n plain inference results (no strings):
 * what an_batch.decoded_bytes counts. */
static size_t entry_bytes(size_t n) { return sizeof(an_batch) + n * sizeof(an_result); }

/* 4 entries of 10 rows each for a fresh ACTIVE metric, then one anomalyd
 * run with the budget; returns the "groups=" of its stats line. */
static long run_groups(const char *budget)
{
    e2e t;
    e2e_init(&t, "limits");
    const char *uid = e2e_uid(&t, "grp");
    e2e_create_metric(&t, uid, "limits.grp", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&t, uid, 40);
    for (int k = 0; k < 4; k++) {
        an_result res[10];
        for (int i = 0; i < 10; i++)
            res[i] = e2e_inf(k * 10 + i + 1, 0.25);
        char id[AN_ID_MAX];
        e2e_xadd_results(&t, uid, res, 10, AN_ENC_JSON, id);
    }
    e2e_setenv(&t, "ANOMALYD_STREAMS_MAX_GROUP_DECODED_BYTES", budget);
    e2e_proc p;
    e2e_run_anomalyd(&t, &p, "c1", 1000, 120000);
    an_metric m;
    e2e_get_metric(&t, uid, &m);
    ck_assert_int_eq(m.scored_rowid, 40);   /* everything scored either way */
    an_metric_clear(&m);
    char *log = e2e_slurp(p.err_path, NULL);
    ck_assert_ptr_nonnull(log);
    const char *g = strstr(log, " groups=");
    ck_assert_msg(g, "no stats line in:\n%s", e2e_tail(p.err_path, 2000));
    long groups = strtol(g + 8, NULL, 10);
    free(log);
    e2e_fini(&t);
    return groups;
}

START_TEST(group_budget_at_and_past)
{
    char b[32];
    /* far above: one group of the 4 entries */
    ck_assert_int_eq(run_groups("64MiB"), 1);
    /* exactly two entries' worth: groups of 2 */
    snprintf(b, sizeof b, "%zu", 2 * entry_bytes(10));
    ck_assert_int_eq(run_groups(b), 2);
    /* one byte less: one entry per group */
    snprintf(b, sizeof b, "%zu", 2 * entry_bytes(10) - 1);
    ck_assert_int_eq(run_groups(b), 4);
}
END_TEST

/* An entry over max_json_nodes is dead-lettered by the running service
 * with the reason naming the limit, at and past the limit. */
START_TEST(node_limit_dead_letter)
{
    e2e t;
    e2e_init(&t, "limits");
    const char *uid = e2e_uid(&t, "nodes");
    e2e_create_metric(&t, uid, "limits.nodes", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&t, uid, 2);
    /* 2 arrays + 5 scalars + {"1":[...]} (3) + 6 numbers = 16 nodes; 17 */
    char id1[AN_ID_MAX], id2[AN_ID_MAX];
    an_field f1[2] = {e2e_field("model", uid),
                      e2e_field("batch", "[[\"iRv2\",1,0,0.5,null,{\"1\":[1,2,3,4,5,6]}]]")};
    e2e_xadd_fields(&t, f1, 2, id1);
    an_field f2[2] = {e2e_field("model", uid),
                      e2e_field("batch", "[[\"iRv2\",2,0,0.5,null,{\"1\":[1,2,3,4,5,6,7]}]]")};
    e2e_xadd_fields(&t, f2, 2, id2);
    e2e_setenv(&t, "ANOMALYD_STREAMS_MAX_JSON_NODES", "16");
    e2e_proc p;
    e2e_run_anomalyd(&t, &p, "c1", 1000, 120000);
    an_entry_list dl;
    e2e_xrange_all(&t, t.dead, &dl);
    ck_assert_uint_eq(dl.n, 1);
    ck_assert_str_eq(an_entry_field(&dl.v[0], "source")->value, id2);
    ck_assert_str_eq(an_entry_field(&dl.v[0], "reason")->value,
                     "batch: more than 16 JSON nodes, over max_json_nodes (16)");
    an_entry_list_free(&dl);
    an_metric m;
    e2e_get_metric(&t, uid, &m);
    ck_assert_int_eq(m.scored_rowid, 1);   /* the one at the limit was scored */
    an_metric_clear(&m);
    ck_assert_int_eq(e2e_pending(&t), 0);
    e2e_fini(&t);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("input_limits");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, group_budget_at_and_past);
    tcase_add_test(tc, node_limit_dead_letter);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(suite(), CK_NORMAL);
}
