/*
 * proc_status.h: one field of /proc/self/status, for the measuring tools
 * (tests/codec_memory.c, tests/window_memory.c). Header-only, as
 * check_main.h.
 */
#ifndef AN_TESTS_PROC_STATUS_H
#define AN_TESTS_PROC_STATUS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Value of a "Name:   123 kB" line of /proc/self/status, or -1. */
static inline long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    size_t klen = strlen(key);
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtol(line + klen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

#endif
