/*
 * redis_internal.h: what the Redis layer's files share (redis.c, streams.c,
 * scripts.c) and nobody else sees: the connection struct, the argv builder
 * and the command runner with its error classification. Not installed.
 *
 * Every rd_* function that takes an an_redis leaves its message in
 * r->errstr and returns 0 or an AN_E* code (an_redis.h says which).
 */
#ifndef AN_REDIS_INTERNAL_H
#define AN_REDIS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "an_redis.h"
#include "an_entry.h" /* AN_ID_MAX */

/* ------------------------------------------------------------ small utils */

/* Formats the message of the last error (an_redis_errstr). */
void rd_err(an_redis *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Clears it (an error reply the caller accepts, e.g. BUSYGROUP). */
void rd_clear_err(an_redis *r);
/* Copies an id of n bytes into dst, truncated to AN_ID_MAX - 1. */
void rd_copy_id(char dst[AN_ID_MAX], const char *s, size_t n);

/* ------------------------------------------------------------ commands */

/* An argv under construction. Numbers are formatted into `nums`. The
 * strings added are borrowed: they must outlive the command's run. A
 * failure (ENOMEM, a NULL string, too many numbers) is remembered in
 * `fail` and reported by rd_run as AN_EINVAL. */
#define CMD_NUMS 16
typedef struct rd_cmd {
    size_t argc, cap;
    const char **argv;
    size_t *lens;
    char nums[CMD_NUMS][24];
    int nnums;
    bool fail;
} rd_cmd;

void rd_cmd_init(rd_cmd *c);
void rd_cmd_free(rd_cmd *c);
void rd_cmd_addn(rd_cmd *c, const char *s, size_t n); /* binary safe */
void rd_cmd_add(rd_cmd *c, const char *s);             /* strlen(s) */
void rd_cmd_addi(rd_cmd *c, int64_t v);                /* decimal */
void rd_cmd_addv(rd_cmd *c, const char *const *v, size_t n); /* n strings */
/* rd_cmd_init, then the n strings v (a command's fixed head, RD_ARGV). */
void rd_cmd_start(rd_cmd *c, const char *const *v, size_t n);
/* rd_cmd_init for rd_eval_script: "EVALSHA", "" (filled in) and numkeys;
 * add the keys and arguments next. */
void rd_cmd_eval(rd_cmd *c, size_t numkeys);

/* The argv and argc of a fixed list of strings, for rd_cmd_start, rd_call
 * and rd_call_int: rd_call(r, RD_ARGV("XLEN", stream), &rep, false). */
#define RD_ARGV(...)                                                            \
    (const char *const[]){__VA_ARGS__},                                        \
        sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)

/* ------------------------------------------------------------ connection */

/* Closes the context (the next command reconnects). */
void rd_drop_ctx(an_redis *r);
/* Connects r from its parsed URL and options: AUTH and SELECT. */
int rd_connect(an_redis *r);
/* The code of a lazy reconnect's result (a refusal is AN_EENV then). */
int rd_reconnect_rc(int rc);
/* An error reply's code: AN_ENOGROUP, AN_ETRANSIENT, AN_EENV, AN_EREDIS. */
int rd_classify_error(const char *s, size_t n);
/* True when rep is an error reply whose first word is code. */
bool rd_is_error_code(const redisReply *rep, const char *code);

/* Reconnects r if its context is broken (AUTH, SELECT redone): 0, or the
 * code of the failure (a refusal is AN_EENV then: rd_reconnect_rc). */
int rd_ensure(an_redis *r);

/* The runners below consume the command: c is freed (rd_cmd_free) whatever
 * the result. */

/* Runs c: lazy reconnect, connection errors -> AN_ETRANSIENT, error replies
 * classified (unless keep_error: then an error reply is returned with rc 0
 * for the caller to inspect). *out owns the reply on rc 0 (freeReplyObject). */
int rd_run(an_redis *r, rd_cmd *c, redisReply **out, bool keep_error);
/* rd_run with the socket timeout of a BLOCK block_ms call. */
int rd_run_blocking(an_redis *r, rd_cmd *c, int block_ms, redisReply **out);
/* Runs c, whose reply must be an integer (*v, may be NULL). */
int rd_int_command(an_redis *r, rd_cmd *c, int64_t *v);

/* rd_run / rd_int_command of the command argv[0..argc) (NUL-terminated
 * strings; a NULL one is AN_EINVAL, nothing sent). */
int rd_call(an_redis *r, const char *const *argv, size_t argc, redisReply **out,
            bool keep_error);
int rd_call_int(an_redis *r, const char *const *argv, size_t argc, int64_t *v);
/* Sends n commands of argc strings each (command i is argv[i * argc ..])
 * in one round trip and reads their replies into reps[0..n) (the caller
 * frees each; error replies are left there, unclassified). A connection
 * failure is AN_ETRANSIENT with the context dropped and reps all NULL. */
int rd_pipeline(an_redis *r, const char **argv, size_t argc, size_t n,
                redisReply **reps);
/* EVALSHA of the embedded script `name` with lazy load and one NOSCRIPT
 * reload and retry. c was begun with rd_cmd_eval (its argv[0] and argv[1]
 * are placeholders this function fills in). *out as rd_run. */
int rd_eval_script(an_redis *r, const char *name, rd_cmd *c, redisReply **out);

/* ------------------------------------------------------------ replies */

/* Frees rep (may be NULL) and returns AN_EREDIS: a reply of an unexpected
 * shape for `what`. */
int rd_bad_reply(an_redis *r, const char *what, redisReply *rep);
/* An integer, or a string / status holding one; -1 otherwise. */
int64_t rd_reply_int(const redisReply *x);
/* A string or status reply as an id into dst; "" otherwise. */
void rd_reply_id(char dst[AN_ID_MAX], const redisReply *x);

#endif
