/*
 * codec_memory.c: measures the memory one input entry costs to decode
 * (an_batch_decode) for worst-case entries at the codec limits, so the
 * figures in docs/operations.md are measured, not guessed. Run it from a
 * build WITHOUT sanitizers (ASan's redzones and quarantine inflate RSS):
 * ops/codec-memory.sh does that.
 *
 *   codec_memory [--max-entry-bytes B] [--max-inflated-bytes B]
 *                [--max-results N] [--max-json-nodes N]
 *
 * (limits default to an_codec_limits_default()). Each shape is built in
 * the parent; a forked child resets its peak RSS (/proc/self/clear_refs),
 * decodes the entry, frees the result and reports VmHWM - VmRSS before the
 * decode: the decode's own peak growth (transient inflated text, parser
 * tree, decoded batch). Prints one line per shape; exit status 1 when a
 * shape that must decode did not, or one that must be refused was not.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "an_codec.h"
#include "proc_status.h"

typedef struct text {
    char *p;
    size_t len, cap;
} text;

static void put(text *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t c = t->cap ? t->cap : 4096;
        while (c < t->len + n + 1)
            c *= 2;
        t->p = realloc(t->p, c);
        if (!t->p) {
            perror("realloc");
            exit(2);
        }
        t->cap = c;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void puts_(text *t, const char *s) { put(t, s, strlen(s)); }

typedef struct result {
    int rc;
    long peak_kb;        /* VmHWM growth during the decode */
    size_t decoded_bytes;
    char reason[200];
} result;

/* Decodes in a child; fills r. */
static void measure(const char *batch, size_t len, an_encoding enc,
                    const an_codec_limits *lim, result *r)
{
    int pfd[2];
    if (pipe(pfd) != 0) {
        perror("pipe");
        exit(2);
    }
    malloc_trim(0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        close(pfd[0]);
        result c;
        memset(&c, 0, sizeof c);
        FILE *cr = fopen("/proc/self/clear_refs", "w");
        if (!cr || fputs("5", cr) < 0 || fclose(cr) != 0) {
            perror("/proc/self/clear_refs");
            _exit(2);
        }
        long rss0 = status_kb("VmRSS");
        an_field f[3] = {{"model", 5, "worst-case", 10},
                         {"batch", 5, batch, len},
                         {"encoding", 8, enc == AN_ENC_ZLIB ? "zlib" : "json", 4}};
        an_batch *b = NULL;
        c.rc = an_batch_decode(f, 3, lim, &b, c.reason, sizeof c.reason);
        c.decoded_bytes = b ? b->decoded_bytes : 0;
        an_batch_free(b);
        c.peak_kb = status_kb("VmHWM") - rss0;
        ssize_t w = write(pfd[1], &c, sizeof c);
        _exit(w == (ssize_t)sizeof c ? 0 : 2);
    }
    close(pfd[1]);
    ssize_t got = read(pfd[0], r, sizeof *r);
    close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (got != (ssize_t)sizeof *r || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "child failed (status %d)\n", st);
        exit(2);
    }
}

/* [["iRv2",1,0,0.5,null,{"1":[ITEM,ITEM,...]}]] with `count` ITEMs: 10
 * nodes plus `per` per item. */
static void one_row_items(text *t, const char *item, size_t count)
{
    puts_(t, "[[\"iRv2\",1,0,0.5,null,{\"1\":[");
    size_t il = strlen(item);
    for (size_t i = 0; i < count; i++) {
        if (i)
            put(t, ",", 1);
        put(t, item, il);
    }
    puts_(t, "]}]]");
}

typedef struct shape {
    const char *name;
    bool must_decode;
    an_encoding enc;
    text t;
} shape;

static int run(const an_codec_limits *lim, shape *sh)
{
    const char *data = sh->t.p;
    size_t len = sh->t.len;
    char *z = NULL;
    char err[256];
    if (sh->enc == AN_ENC_ZLIB) {
        if (an_zlib_compress(sh->t.p, sh->t.len, &z, &len, err, sizeof err)) {
            fprintf(stderr, "%s: %s\n", sh->name, err);
            exit(2);
        }
        data = z;
    }
    result r;
    measure(data, len, sh->enc, lim, &r);
    printf("| %-44s | %10zu | %10zu | %-4s | %9.1f | %10.1f | %s |\n", sh->name, sh->t.len, len,
           an_encoding_name(sh->enc), r.peak_kb / 1024.0, r.decoded_bytes / 1048576.0,
           r.rc == 0 ? "decoded" : r.reason);
    free(z);
    free(sh->t.p);
    bool ok = sh->must_decode ? r.rc == 0 : r.rc == AN_ERANGE;
    if (!ok)
        fprintf(stderr, "%s: unexpected outcome rc=%d %s\n", sh->name, r.rc, r.reason);
    return ok ? 0 : 1;
}

static size_t arg_size(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v == 0) {
        fprintf(stderr, "bad number '%s'\n", s);
        exit(2);
    }
    return (size_t)v;
}

int main(int argc, char **argv)
{
    an_codec_limits lim = an_codec_limits_default();
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--max-entry-bytes"))
            lim.max_entry_bytes = arg_size(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-inflated-bytes"))
            lim.max_inflated_bytes = arg_size(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-results"))
            lim.max_results = arg_size(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-json-nodes"))
            lim.max_json_nodes = arg_size(argv[i + 1]);
        else {
            fprintf(stderr, "usage: %s [--max-entry-bytes B] [--max-inflated-bytes B] "
                            "[--max-results N] [--max-json-nodes N]\n", argv[0]);
            return 2;
        }
    }
    size_t N = lim.max_json_nodes, B = lim.max_inflated_bytes, R = lim.max_results;
    printf("limits: max_entry_bytes=%zu max_inflated_bytes=%zu max_results=%zu "
           "max_json_nodes=%zu\n\n", lim.max_entry_bytes, B, R, N);
    printf("| %-44s | %10s | %10s | %-4s | %9s | %10s | %s |\n", "entry", "JSON bytes",
           "entry bytes", "enc", "peak MiB", "kept MiB", "outcome");
    printf("|%s|%s|%s|%s|%s|%s|%s|\n", "----------------------------------------------",
           "------------", "------------", "------", "-----------", "------------", "---");
    int bad = 0;
    shape sh;

    /* a real catch-up batch: 1440 rows with a prediction each */
    sh = (shape){"real: 1440 rows, predictions {\"1\":x}", true, AN_ENC_ZLIB, {0}};
    put(&sh.t, "[", 1);
    for (int i = 1; i <= 1440; i++) {
        char row[96];
        snprintf(row, sizeof row, "%s[\"iRv2\",%d,0,0.%06d,null,{\"1\":%d.%03d}]", i > 1 ? "," : "",
                 i, (i * 7919) % 1000000, 100 + i % 50, (i * 31) % 1000);
        puts_(&sh.t, row);
    }
    put(&sh.t, "]", 1);
    bad += run(&lim, &sh);

    /* the parser's costliest node, an empty object, N of them */
    sh = (shape){"max_json_nodes of {} (costliest node)", true, AN_ENC_ZLIB, {0}};
    one_row_items(&sh.t, "{}", N - 10);
    bad += run(&lim, &sh);
    sh = (shape){"max_json_nodes of []", true, AN_ENC_ZLIB, {0}};
    one_row_items(&sh.t, "[]", N - 10);
    bad += run(&lim, &sh);
    /* reals that the dump writes longer than the input (1E5 -> 100000.0) */
    sh = (shape){"max_json_nodes of 1E5 (dump grows 2.25x)", true, AN_ENC_ZLIB, {0}};
    one_row_items(&sh.t, "1E5", N - 10);
    bad += run(&lim, &sh);
    /* max_results results sharing the node budget */
    sh = (shape){"max_results rows, nodes up to max_json_nodes", true, AN_ENC_ZLIB, {0}};
    {
        size_t per = N / R > 10 ? N / R - 10 : 0; /* numbers in each prediction */
        put(&sh.t, "[", 1);
        for (size_t i = 1; i <= R; i++) {
            char row[96];
            snprintf(row, sizeof row, "%s[\"iRv2\",%zu,0,0.5,null,{\"1\":[", i > 1 ? "," : "", i);
            puts_(&sh.t, row);
            for (size_t k = 0; k < per; k++)
                puts_(&sh.t, k ? ",1E5" : "1E5");
            puts_(&sh.t, "]}]");
        }
        put(&sh.t, "]", 1);
    }
    bad += run(&lim, &sh);
    /* one string filling max_inflated_bytes (kept as predictions text) */
    sh = (shape){"one string of max_inflated_bytes", true, AN_ENC_ZLIB, {0}};
    {
        const char *head = "[[\"iRv2\",1,0,0.5,null,{\"1\":\"", *tail = "\"}]]";
        size_t fill = B - strlen(head) - strlen(tail);
        puts_(&sh.t, head);
        char *a = malloc(fill);
        memset(a, 'a', fill);
        put(&sh.t, a, fill);
        free(a);
        puts_(&sh.t, tail);
    }
    bad += run(&lim, &sh);
    /* a plain JSON entry at max_entry_bytes */
    sh = (shape){"json entry at max_entry_bytes", true, AN_ENC_JSON, {0}};
    {
        const char *head = "[[\"iRv2\",1,1,null,\"", *tail = "\",null]]";
        size_t fill = lim.max_entry_bytes - strlen(head) - strlen(tail) - 5 - 5 - 10 - 8 - 4;
        puts_(&sh.t, head);
        char *a = malloc(fill);
        memset(a, 'e', fill);
        put(&sh.t, a, fill);
        free(a);
        puts_(&sh.t, tail);
    }
    bad += run(&lim, &sh);

    /* refused: one node too many, a zlib bomb, too many results */
    sh = (shape){"refused: max_json_nodes + 1 of {}", false, AN_ENC_ZLIB, {0}};
    one_row_items(&sh.t, "{}", N - 9);
    bad += run(&lim, &sh);
    /* issue 9's entry: predictions of millions of [] in a small zlib entry */
    sh = (shape){"refused: issue 9's entry, 4M [] in predictions", false, AN_ENC_ZLIB, {0}};
    one_row_items(&sh.t, "[]", (size_t)4 << 20);
    bad += run(&lim, &sh);
    sh = (shape){"refused: zlib bomb (4 x max_inflated_bytes)", false, AN_ENC_ZLIB, {0}};
    {
        char *a = malloc(4 * B);
        memset(a, ' ', 4 * B);
        put(&sh.t, a, 4 * B);
        free(a);
    }
    bad += run(&lim, &sh);
    sh = (shape){"refused: max_results + 1 rows", false, AN_ENC_ZLIB, {0}};
    put(&sh.t, "[", 1);
    for (size_t i = 1; i <= R + 1; i++) {
        char row[64];
        snprintf(row, sizeof row, "%s[\"iR\",%zu,0,0.5,null]", i > 1 ? "," : "", i);
        puts_(&sh.t, row);
    }
    put(&sh.t, "]", 1);
    bad += run(&lim, &sh);
    return bad ? 1 : 0;
}
