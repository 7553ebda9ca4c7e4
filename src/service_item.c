/*
 * service_item.c: the output messages of an item (service_item.h): each
 * message is encoded as it is added, so the publish only copies bytes.
 */
#include "service_item.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_log.h"

/* The first room for an item's messages: an inference entry has one, a
 * command entry one per command result; doubling from there. */
#define OUTS_FIRST_CAP 2

int svc_add_out_text(item *it, an_encoding enc, const char *data_type, const char *rows,
                     char *text, size_t len)
{
    int rc = 0;
    if (it->nouts == it->capouts) {
        size_t cap = it->capouts ? 2 * it->capouts : OUTS_FIRST_CAP;
        out_item *o = realloc(it->outs, cap * sizeof *o);
        if (!o) {
            free(text);
            return AN_ENOMEM;
        }
        it->outs = o;
        it->capouts = cap;
    }
    out_item *o = &it->outs[it->nouts];
    memset(o, 0, sizeof *o);
    o->data_type = data_type;
    snprintf(o->rows, sizeof o->rows, "%s", rows ? rows : "");
    char err[SVC_ERR_MAX];
    rc = an_body_encode_text(text, len, enc, &o->body, &o->body_len, err, sizeof err);
    if (rc) {
        an_error("cannot encode output message: %s", err);
        return rc;
    }
    it->nouts++;
    return 0;
}

int svc_add_out(item *it, an_encoding enc, const char *data_type, const char *rows,
                json_t *msg)
{
    size_t len = 0;
    char *text = an_json_dumps(msg, &len);
    json_decref(msg);
    if (!text) {
        an_error("cannot encode output message: out of memory or non-finite number");
        return AN_EINVAL;
    }
    return svc_add_out_text(it, enc, data_type, rows, text, len);
}
