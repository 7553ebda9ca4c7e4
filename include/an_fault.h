/*
 * an_fault.h: the one classification of server errors (docs/operations.md,
 * "Error classes"). The repository and the streams layer map every failed
 * call to one of these classes, and the service acts on the class only:
 *
 *   transient    retry with backoff (connection lost, deadlock, LOADING...)
 *   data         this entry's fault: count an attempt, dead-letter after
 *                max_deliveries
 *   environment  the server refuses everyone (disk full, read-only,
 *                permission, missing schema, WRONGTYPE on our keys...):
 *                pause, count no attempt, resume when a probe succeeds
 *   config       bad URL/DSN, authentication refused at start-up: exit
 *
 * PostgreSQL errors are classified by SQLSTATE and connection status only,
 * Redis errors by the error reply's code (its first word): never by the
 * message text, which a server may translate.
 */
#ifndef AN_FAULT_H
#define AN_FAULT_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    AN_FAULT_TRANSIENT = 0,
    AN_FAULT_DATA,
    AN_FAULT_ENVIRONMENT,
    AN_FAULT_CONFIG,
} an_fault_class;

/* "transient", "data", "environment", "config". Static string. */
const char *an_fault_class_name(an_fault_class c);

/* The class of a PostgreSQL error: sqlstate is the result's SQLSTATE (NULL
 * or "" when there is none), connection_bad whether the connection's status
 * is CONNECTION_BAD (or there is no connection): a lost connection is
 * transient whatever the SQLSTATE. */
an_fault_class an_fault_pg(const char *sqlstate, bool connection_bad);

/* The class of a Redis error reply (the reply text and its length; only
 * the code before the first space is looked at). NOGROUP is classified
 * transient here: callers handle it (recreate the group) before asking. */
an_fault_class an_fault_redis(const char *reply, size_t len);

/* How to fix an environment (or config) fault, for the log line that
 * announces a pause: a static sentence, "" when there is no specific
 * advice. */
const char *an_fault_pg_hint(const char *sqlstate);
const char *an_fault_redis_hint(const char *reply, size_t len);

#endif
