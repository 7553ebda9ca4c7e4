/*
 * fault.c: the error classification of an_fault.h. Two tables, one per
 * server; everything not listed is the entry's data (PostgreSQL) or the
 * entry's data (Redis: an error reply we do not know, e.g. a script's
 * argument check).
 */
#include "an_fault.h"

#include <string.h>

const char *an_fault_class_name(an_fault_class c)
{
    switch (c) {
    case AN_FAULT_TRANSIENT: return "transient";
    case AN_FAULT_DATA: return "data";
    case AN_FAULT_ENVIRONMENT: return "environment";
    case AN_FAULT_CONFIG: return "config";
    }
    return "?";
}

/* A SQLSTATE (5 characters) or a class ("08", matching every code that
 * starts with it), its class and the advice logged with a pause. */
typedef struct pg_rule {
    const char *code;
    an_fault_class cls;
    const char *hint;
} pg_rule;

/* First match wins: exact codes come before their class. */
static const pg_rule pg_rules[] = {
    {"40001", AN_FAULT_TRANSIENT, ""},   /* serialization failure */
    {"40P01", AN_FAULT_TRANSIENT, ""},   /* deadlock */
    {"55P03", AN_FAULT_TRANSIENT, ""},   /* lock not available (lock_timeout) */
    {"57P01", AN_FAULT_TRANSIENT, ""},   /* admin shutdown */
    {"57P02", AN_FAULT_TRANSIENT, ""},   /* crash shutdown */
    {"57P03", AN_FAULT_TRANSIENT, ""},   /* cannot connect now (starting) */
    {"57P05", AN_FAULT_TRANSIENT, ""},   /* idle session timeout */
    {"25P03", AN_FAULT_TRANSIENT, ""},   /* idle in transaction timeout */
    {"53300", AN_FAULT_TRANSIENT, ""},   /* too many connections */
    {"08", AN_FAULT_TRANSIENT, ""},      /* connection exception */
    {"53100", AN_FAULT_ENVIRONMENT,
     "PostgreSQL is out of disk space: free space on the database volume"},
    {"53200", AN_FAULT_ENVIRONMENT,
     "PostgreSQL is out of memory: check the server's memory settings and load"},
    {"53", AN_FAULT_ENVIRONMENT, "PostgreSQL lacks a resource: see the server's log"},
    {"57014", AN_FAULT_ENVIRONMENT,
     "a statement ran past statement_timeout (or was cancelled): check the server's load "
     "and locks, or raise [postgres] statement_timeout_ms"},
    {"57P04", AN_FAULT_ENVIRONMENT, "the database was dropped: restore it, then anomalyctl db init"},
    {"42501", AN_FAULT_ENVIRONMENT,
     "anomalyd's role lacks a privilege: GRANT SELECT, INSERT, UPDATE, DELETE on the "
     "anomalyd tables to it"},
    {"25006", AN_FAULT_ENVIRONMENT,
     "the database is read-only (a standby, or default_transaction_read_only): point "
     "[postgres] dsn at the primary or reset the setting"},
    {"3F000", AN_FAULT_ENVIRONMENT, "the schema is missing: run anomalyctl db init"},
    {"42P01", AN_FAULT_ENVIRONMENT, "a table is missing: run anomalyctl db init"},
    {"42703", AN_FAULT_ENVIRONMENT,
     "a column is missing (schema older than the program?): run anomalyctl db init"},
    {"42883", AN_FAULT_ENVIRONMENT,
     "a function is missing (schema older than the program?): run anomalyctl db init"},
    {"3D000", AN_FAULT_ENVIRONMENT, "the database does not exist: create it, then anomalyctl db init"},
    {"28", AN_FAULT_ENVIRONMENT,
     "PostgreSQL refuses anomalyd's credentials: fix the role, its password or pg_hba.conf"},
    {"58", AN_FAULT_ENVIRONMENT, "PostgreSQL reports a system (I/O) error: see the server's log"},
    {"XX001", AN_FAULT_ENVIRONMENT, "PostgreSQL reports corrupted data: see the server's log"},
    {"XX002", AN_FAULT_ENVIRONMENT, "PostgreSQL reports a corrupted index: REINDEX it"},
};

static const pg_rule *pg_find(const char *s)
{
    if (!s || strlen(s) != 5)
        return NULL;
    for (size_t i = 0; i < sizeof pg_rules / sizeof pg_rules[0]; i++) {
        size_t l = strlen(pg_rules[i].code);
        if (!strncmp(s, pg_rules[i].code, l))
            return &pg_rules[i];
    }
    return NULL;
}

an_fault_class an_fault_pg(const char *sqlstate, bool connection_bad)
{
    if (connection_bad)
        return AN_FAULT_TRANSIENT;
    const pg_rule *r = pg_find(sqlstate);
    return r ? r->cls : AN_FAULT_DATA;
}

const char *an_fault_pg_hint(const char *sqlstate)
{
    const pg_rule *r = pg_find(sqlstate);
    return r ? r->hint : "";
}

typedef struct redis_rule {
    const char *code;
    an_fault_class cls;
    const char *hint;
} redis_rule;

static const redis_rule redis_rules[] = {
    {"LOADING", AN_FAULT_TRANSIENT, ""},
    {"BUSY", AN_FAULT_TRANSIENT, ""},
    {"TRYAGAIN", AN_FAULT_TRANSIENT, ""},
    {"MASTERDOWN", AN_FAULT_TRANSIENT, ""},
    {"CLUSTERDOWN", AN_FAULT_TRANSIENT, ""},
    {"NOGROUP", AN_FAULT_TRANSIENT, ""},
    {"WRONGTYPE", AN_FAULT_ENVIRONMENT,
     "a key anomalyd writes holds another type: rename or delete it (redis-cli TYPE/DEL)"},
    {"NOPERM", AN_FAULT_ENVIRONMENT,
     "the Redis ACL user lacks a permission: allow anomalyd's commands and keys (ACL SETUSER)"},
    {"NOAUTH", AN_FAULT_ENVIRONMENT, "Redis now requires a password: set it in [redis] url"},
    {"WRONGPASS", AN_FAULT_ENVIRONMENT, "Redis refuses the password: fix [redis] url or the ACL"},
    {"CROSSSLOT", AN_FAULT_ENVIRONMENT,
     "Redis Cluster is not supported: point [redis] url at a standalone server"},
    {"MOVED", AN_FAULT_ENVIRONMENT,
     "Redis Cluster is not supported: point [redis] url at a standalone server"},
    {"ASK", AN_FAULT_ENVIRONMENT,
     "Redis Cluster is not supported: point [redis] url at a standalone server"},
    {"OOM", AN_FAULT_ENVIRONMENT,
     "Redis reached maxmemory: raise it or free memory (trim streams, output_maxlen)"},
    {"READONLY", AN_FAULT_ENVIRONMENT,
     "Redis is a read-only replica: point [redis] url at the primary"},
    {"MISCONF", AN_FAULT_ENVIRONMENT,
     "Redis cannot persist (stop-writes-on-bgsave-error): fix its disk, see its log"},
    {"NOREPLICAS", AN_FAULT_ENVIRONMENT, "Redis lacks the replicas min-replicas-to-write asks for"},
};

static const redis_rule *redis_find(const char *s, size_t n)
{
    if (!s)
        return NULL;
    size_t w = 0;
    while (w < n && s[w] != ' ')
        w++;
    for (size_t i = 0; i < sizeof redis_rules / sizeof redis_rules[0]; i++)
        if (strlen(redis_rules[i].code) == w && !memcmp(s, redis_rules[i].code, w))
            return &redis_rules[i];
    return NULL;
}

an_fault_class an_fault_redis(const char *reply, size_t len)
{
    const redis_rule *r = redis_find(reply, len);
    return r ? r->cls : AN_FAULT_DATA;
}

const char *an_fault_redis_hint(const char *reply, size_t len)
{
    const redis_rule *r = redis_find(reply, len);
    return r ? r->hint : "";
}
