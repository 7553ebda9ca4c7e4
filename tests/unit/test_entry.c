/* Unit tests of the one an_entry layout (an_entry.h): a copy owns every
 * byte it shows (binary safe), and an_entry_free releases all of it. Run
 * under ASan (the default test build): a leak, a double free or a read of
 * the source's memory after it is gone fails the test. No servers. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "an_entry.h"
#include "an_error.h"
#include "check_main.h"

/* A source entry whose bytes live in their own heap blocks, so the test
 * can free them and prove the copy does not point into them. */
typedef struct src_entry {
    an_entry e;
    an_field f[3];
    char *bytes[6];
} src_entry;

static void src_make(src_entry *s)
{
    static const char *const txt[6] = {"a", "1", "payload", "x\0y", "empty", ""};
    static const size_t len[6] = {1, 1, 7, 3, 5, 0};
    memset(s, 0, sizeof *s);
    for (int i = 0; i < 6; i++) {
        s->bytes[i] = malloc(len[i] + 1);
        ck_assert_ptr_nonnull(s->bytes[i]);
        memcpy(s->bytes[i], txt[i], len[i] + 1);
    }
    for (int i = 0; i < 3; i++)
        s->f[i] = (an_field){s->bytes[2 * i], len[2 * i], s->bytes[2 * i + 1], len[2 * i + 1]};
    snprintf(s->e.id, sizeof s->e.id, "%s", "1700000000000-7");
    s->e.deliveries = 3;
    s->e.fields = s->f;
    s->e.nfields = 3;
}

static void src_free(src_entry *s)
{
    for (int i = 0; i < 6; i++) {
        memset(s->bytes[i], '#', i == 5 ? 1 : strlen(s->bytes[i]));
        free(s->bytes[i]);
    }
}

START_TEST(dup_is_deep_binary_safe_and_one_block)
{
    src_entry s;
    src_make(&s);
    an_entry d;
    ck_assert_int_eq(an_entry_dup(&d, &s.e), 0);
    src_free(&s);   /* the copy must not need the source any more */
    ck_assert_str_eq(d.id, "1700000000000-7");
    ck_assert(!d.nil);
    ck_assert_int_eq(d.deliveries, 3);
    ck_assert_uint_eq(d.nfields, 3);
    const an_field *p = an_entry_field(&d, "payload");
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(p->value_len, 3);
    ck_assert_int_eq(memcmp(p->value, "x\0y", 4), 0);   /* NUL inside, NUL after */
    const an_field *e = an_entry_field(&d, "empty");
    ck_assert_ptr_nonnull(e);
    ck_assert_uint_eq(e->value_len, 0);
    ck_assert_str_eq(e->value, "");
    ck_assert_ptr_null(an_entry_field(&d, "absent"));
    /* one block: every name and value lies inside the allocation that
     * starts with the field array, after it */
    const char *lo = (const char *)d.fields + d.nfields * sizeof(an_field);
    for (size_t i = 0; i < d.nfields; i++) {
        ck_assert(d.fields[i].name >= lo && d.fields[i].value > d.fields[i].name);
        ck_assert_int_eq(d.fields[i].name[d.fields[i].name_len], '\0');
    }
    an_entry_free(&d);   /* ASan: a per-field layout would leak here */
    ck_assert_ptr_null(d.fields);
    ck_assert_uint_eq(d.nfields, 0);
    an_entry_free(&d);   /* zeroed: freeing again is harmless */
    an_entry_free(NULL);
}
END_TEST

START_TEST(dup_of_a_dup_and_of_a_nil_entry)
{
    src_entry s;
    src_make(&s);
    an_entry a, b;
    ck_assert_int_eq(an_entry_dup(&a, &s.e), 0);
    src_free(&s);
    ck_assert_int_eq(an_entry_dup(&b, &a), 0);
    an_entry_free(&a);
    ck_assert_str_eq(an_entry_field(&b, "a")->value, "1");
    an_entry_free(&b);

    an_entry nil = {.nil = true, .deliveries = -1};
    snprintf(nil.id, sizeof nil.id, "%s", "5-0");
    ck_assert_int_eq(an_entry_dup(&a, &nil), 0);
    ck_assert(a.nil);
    ck_assert_str_eq(a.id, "5-0");
    ck_assert_ptr_null(a.fields);
    ck_assert_uint_eq(a.nfields, 0);
    an_entry_free(&a);
}
END_TEST

START_TEST(set_fields_accepts_null_for_empty_and_refuses_overflow)
{
    an_field f[2] = {{"k", 1, NULL, 0}, {NULL, 0, "v", 1}};
    an_entry e;
    memset(&e, 0, sizeof e);
    ck_assert_int_eq(an_entry_set_fields(&e, f, 2), 0);
    ck_assert_str_eq(e.fields[0].value, "");
    ck_assert_str_eq(e.fields[1].name, "");
    ck_assert_str_eq(e.fields[1].value, "v");
    an_entry_free(&e);
    /* lengths whose sum cannot be allocated: AN_ENOMEM, nothing owned */
    an_field huge[2] = {{"a", SIZE_MAX / 2, "b", 1}, {"c", SIZE_MAX / 2, "d", 1}};
    ck_assert_int_eq(an_entry_set_fields(&e, huge, 2), AN_ENOMEM);
    ck_assert_ptr_null(e.fields);
    ck_assert_uint_eq(e.nfields, 0);
    an_entry_free(&e);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("entry");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, dup_is_deep_binary_safe_and_one_block);
    tcase_add_test(tc, dup_of_a_dup_and_of_a_nil_entry);
    tcase_add_test(tc, set_fields_accepts_null_for_empty_and_refuses_overflow);
    suite_add_tcase(s, tc);
    return an_check_run(s, CK_NORMAL);
}
