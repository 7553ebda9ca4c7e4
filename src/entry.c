/*
 * entry.c: the one memory layout of an an_entry (an_entry.h): its fields
 * array and all their bytes in one block, so one free() releases it,
 * whoever built it (the stream reader or a copy).
 */
#include "an_entry.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "an_error.h"

const an_field *an_entry_field(const an_entry *e, const char *name)
{
    return an_field_find(e->fields, e->nfields, name);
}

/* Copies len bytes and a NUL to *p and advances it; returns the copy. */
static const char *put(char **p, const char *s, size_t len)
{
    char *d = *p;
    if (len)
        memcpy(d, s, len);
    d[len] = '\0';
    *p = d + len + 1;
    return d;
}

int an_entry_set_fields(an_entry *e, const an_field *src, size_t n)
{
    e->fields = NULL;
    e->nfields = 0;
    if (n == 0)
        return 0;
    if (n > SIZE_MAX / 2 / sizeof(an_field))
        return AN_ENOMEM;
    size_t bytes = n * sizeof(an_field);
    for (size_t i = 0; i < n; i++) {
        size_t add = src[i].name_len + src[i].value_len + 2;
        if (add < src[i].name_len || bytes > SIZE_MAX - add)
            return AN_ENOMEM;   /* cannot be allocated anyway */
        bytes += add;
    }
    char *blk = malloc(bytes);
    if (!blk)
        return AN_ENOMEM;
    an_field *f = (an_field *)(void *)blk;
    char *p = blk + n * sizeof(an_field);
    for (size_t i = 0; i < n; i++) {
        f[i].name_len = src[i].name_len;
        f[i].name = put(&p, src[i].name, src[i].name_len);
        f[i].value_len = src[i].value_len;
        f[i].value = put(&p, src[i].value, src[i].value_len);
    }
    e->fields = f;
    e->nfields = n;
    return 0;
}

int an_entry_dup(an_entry *dst, const an_entry *src)
{
    memset(dst, 0, sizeof *dst);
    memcpy(dst->id, src->id, sizeof dst->id);
    dst->nil = src->nil;
    dst->deliveries = src->deliveries;
    return an_entry_set_fields(dst, src->fields, src->nfields);
}

void an_entry_free(an_entry *e)
{
    if (!e)
        return;
    free(e->fields);
    memset(e, 0, sizeof *e);
}
