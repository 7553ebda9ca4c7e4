/*
 * an_error.h: the library's one error convention. Functions return 0 or one
 * of these negative codes; the details go into the caller's err buffer or
 * the module context's errstr.
 */
#ifndef AN_ERROR_H
#define AN_ERROR_H

enum {
    AN_OK = 0,
    AN_EINVAL = -1,     /* bad argument or malformed input */
    AN_ENOMEM = -2,
    AN_EIO = -3,        /* a sample source or other I/O failed */
    AN_ERANGE = -4,     /* a value outside what the format accepts */
    AN_ENOTFOUND = -5,  /* the object (metric, key, entry) does not exist */
    AN_ETRANSIENT = -6, /* a retryable server error: connection lost, deadlock, ... */
    AN_EDB = -7,        /* a non-transient PostgreSQL error */
    AN_EREDIS = -8,     /* a non-transient Redis error */
    AN_ECONFIG = -9,    /* bad configuration */
    AN_ESTATE = -10,    /* the object is not in the state the operation needs */
    AN_EENV = -11,      /* the server refuses everyone (disk full, read-only, permission,
                           missing schema, WRONGTYPE on our keys, ...): pause, not the
                           entry's fault (an_fault.h) */
    AN_ENOGROUP = -12,  /* Redis NOGROUP: the consumer group (or its stream) is gone;
                           the caller recreates it. Never "no such object": that is
                           AN_ENOTFOUND */
};

#endif
