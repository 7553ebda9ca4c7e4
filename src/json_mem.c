/*
 * json_mem.c: jansson's allocator with a per-thread failure mark
 * (an_json_mem.h).
 */
#include "an_json_mem.h"

#include <pthread.h>
#include <stdlib.h>

#include <jansson.h>

#include "an_error.h"

static void *(*beneath)(size_t) = malloc;
static _Thread_local bool failed;
static pthread_once_t installed = PTHREAD_ONCE_INIT;

static void *tracking_malloc(size_t n)
{
    void *p = beneath(n);
    if (!p)
        failed = true;
    return p;
}

static void install(void)
{
    json_set_alloc_funcs(tracking_malloc, free);
}

void an_json_mem_mark(void)
{
    pthread_once(&installed, install);
    failed = false;
}

bool an_json_mem_failed(void)
{
    return failed;
}

int an_json_parse(const char *text, size_t len, size_t flags, json_t **out, json_error_t *je)
{
    an_json_mem_mark();
    *out = json_loadb(text, len, flags, je);
    if (*out)
        return 0;
    return an_json_mem_failed() ? AN_ENOMEM : AN_EINVAL;
}

void an_json_mem_set_malloc(void *(*fn)(size_t))
{
    pthread_once(&installed, install);
    beneath = fn ? fn : malloc;
}
