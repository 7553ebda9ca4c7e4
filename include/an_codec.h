/*
 * an_codec.h: the message codec. Pure: jansson + zlib, no Redis, no SQL.
 *
 *  - input side: decode one input stream entry (fields `model`, `batch`,
 *    optional `encoding`) into an an_batch of result objects
 *    (docs/htmengine.md §5.1/§5.2); and the producer side (anomalyctl replay,
 *    tests): encode results into the `batch` field text.
 *  - output side: build the docs/htmengine.md §6.1 inference-results and §6.2
 *    command-result messages, serialize them to the `body` field (`zlib` or
 *    `json`), and decode an output entry back (anomalyctl tail, tests).
 *
 * JSON text written by this module is that of an_json_out.h.
 *
 * Error convention (an_error.h): 0 or a negative AN_E* code; a short human
 * reason goes into the caller's buffer (always NUL-terminated when len > 0).
 * Decode failures caused by the entry's content return AN_EINVAL (malformed)
 * or AN_ERANGE (over a size limit): those are poison entries for the
 * dead-letter stream, and the reason text is meant for its `reason` field.
 * AN_ENOMEM is never the entry's fault (do not dead-letter on it).
 */
#ifndef AN_CODEC_H
#define AN_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "an_error.h"
#include "an_json_out.h" /* an_json_dumps: the text format of the bodies */

#ifdef __cplusplus
extern "C" {
#endif

/* Metric uid: non-empty, at most 40 bytes, printable ASCII without spaces
 * (0x21..0x7e). */
#define AN_UID_MAX 40

/* Defaults for an_codec_limits (the service takes them from the [streams]
 * keys of the same names; docs/operations.md gives the memory each allows,
 * measured by ops/codec-memory.sh). Real batches hold at most 1440 results
 * (htmengine's catch-up chunk), ~10-30 JSON nodes and ~100-300 bytes each. */
#define AN_CODEC_DEFAULT_MAX_ENTRY_BYTES ((size_t)4 << 20)     /* 4 MiB */
#define AN_CODEC_DEFAULT_MAX_INFLATED_BYTES ((size_t)32 << 20) /* 32 MiB */
#define AN_CODEC_DEFAULT_MAX_RESULTS ((size_t)20000)
#define AN_CODEC_DEFAULT_MAX_JSON_NODES ((size_t)250000)

/* Valid rowIDs: metric_data.rowid is a PostgreSQL integer counting from 1,
 * so a rowID outside 1..2^31-1 can never name a row. */
#define AN_ROWID_MIN 1
#define AN_ROWID_MAX INT32_MAX

/* Output entry dataType values. */
#define AN_DATATYPE_INFERENCE "model-inference-results"
#define AN_DATATYPE_COMMAND "model-cmd-result"

/* One field of a stream entry. Binary safe: name/value carry lengths; the
 * producer of an an_field (an_streams.c) also NUL-terminates both, but the
 * codec only relies on the lengths. */
typedef struct an_field {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} an_field;

/* Field lookup by exact name; NULL when absent (first occurrence). */
const an_field *an_field_find(const an_field *fields, size_t n, const char *name);

/* ---------------------------------------------------------------- encoding */

typedef enum {
    AN_ENC_JSON = 0, /* plain JSON text */
    AN_ENC_ZLIB = 1, /* RFC 1950 zlib stream of the JSON text (level 6) */
} an_encoding;

/* "json" / "zlib" <-> enum. parse: 0 or AN_EINVAL. */
int an_encoding_parse(const char *s, size_t len, an_encoding *out);
const char *an_encoding_name(an_encoding e);

typedef struct an_codec_limits {
    /* Total bytes of an input entry: sum over all fields of name + value
     * lengths. 0 = no limit. */
    size_t max_entry_bytes;
    /* Largest inflated size of a zlib field (batch or body). Inflation is
     * incremental and stops at this size: memory use is bounded by it, never
     * by what the stream claims. 0 = AN_CODEC_DEFAULT_MAX_INFLATED_BYTES. */
    size_t max_inflated_bytes;
    /* Results (elements of the batch array) per entry. 0 = default. */
    size_t max_results;
    /* JSON nodes of the batch text (every value and every object key,
     * predictions and args included): counted on the text before any tree
     * is built, so the parser's memory is bounded by this, not by the text's
     * shape (a 3-byte "{}," costs ~250 bytes of tree). 0 = default. */
    size_t max_json_nodes;
} an_codec_limits;

/* The AN_CODEC_DEFAULT_* values. */
an_codec_limits an_codec_limits_default(void);

/* ------------------------------------------------------- input: decoding */

typedef enum {
    AN_RES_INFERENCE = 1, /* "iRv2" or legacy "iR" */
    AN_RES_COMMAND = 2,   /* "mcR" */
} an_result_kind;

/* ModelInferenceResult. Invariants checked by the decoder
 * (docs/htmengine.md §5.1):
 *   rowid in AN_ROWID_MIN..AN_ROWID_MAX;
 *   status == 0: has_score (number; an integer is cast to double; must be
 *                in [0, 1]: a raw anomaly score is a fraction of columns),
 *                error NULL, predictions object or NULL;
 *   status != 0: error is a string, has_score false, predictions NULL. */
typedef struct an_inference_result {
    int64_t rowid;
    int64_t status;
    bool has_score;
    double score;        /* anomalyScore (raw); 0.0 when !has_score */
    char *error;         /* errorMessage, NULL for JSON null */
    /* multiStepBestPredictions. The decoder sets only predictions_text: the
     * object as an_json_dumps writes it (compact, canonical: what the
     * service stores and splices into its output), NUL-terminated, owned by
     * the batch; NULL for JSON null. The predictions are only passed
     * through, so no tree of them is kept. The encoder
     * (an_batch_encode) takes `predictions` (borrowed) if non-NULL, else
     * parses predictions_text. */
    json_t *predictions;
    char *predictions_text;
    bool legacy;         /* decoded from "iR" (predictions always NULL) */
} an_inference_result;

/* ModelCommandResult. Invariants (docs/htmengine.md §5.1):
 *   status == 0: args object or NULL, error NULL;
 *   status != 0: error is a string, args NULL. */
typedef struct an_command_result {
    char *command_id; /* commandID (string) */
    char *method;     /* "defineModel", "deleteModel", "cloneModel", ... (any
                         string; the service decides what it supports) */
    int64_t status;
    json_t *args;     /* object or NULL (owned by the batch) */
    char *error;      /* errorMessage, NULL for JSON null */
} an_command_result;

typedef struct an_result {
    an_result_kind kind;
    union {
        an_inference_result inf;
        an_command_result cmd;
    } u;
} an_result;

/* A decoded input entry. Owns all its memory (strings, json_t); free with
 * an_batch_free. Results are in entry order. Rowids are NOT checked for
 * order or duplicates (the original does not; the service's scrub does). */
typedef struct an_batch {
    char model[AN_UID_MAX + 1]; /* metric uid (the `model` field) */
    an_encoding encoding;       /* how the `batch` field was encoded */
    size_t n;                   /* number of results, >= 1 */
    an_result *results;
    size_t n_inference;         /* results of kind AN_RES_INFERENCE */
    size_t n_command;           /* results of kind AN_RES_COMMAND */
    /* Bytes the decoded batch holds (this struct, the results array, every
     * string and predictions text; a command's args tree is not counted:
     * command entries are processed alone). What the service's
     * max_group_decoded_bytes budget adds up. */
    size_t decoded_bytes;
} an_batch;

/*
 * Decode one input entry from its fields. Fields other than model, batch and
 * encoding are ignored; model and batch must appear exactly once, encoding
 * at most once. On failure *out stays NULL and reason holds e.g.
 *   "missing field 'batch'"
 *   "batch[3]: unknown result signature 'xR'"
 *   "batch[0]: iRv2 needs 6 elements, got 5"
 *   "batch[0]: iRv2 rowID=3: anomalyScore 1e+200 is outside [0, 1]"
 *   "batch: zlib stream inflates beyond max_inflated_bytes (1048576)"
 *   "batch: more than 250000 JSON nodes, over max_json_nodes (250000)"
 *   "batch: 30000 results, over max_results (20000)"
 *   "entry is 10485800 bytes, over max_entry_bytes (4194304)"
 * Every limit is checked before the work it bounds: the entry size before
 * anything, the inflated size while inflating, the node count on the text
 * before parsing. Text from the entry in a reason is escaped (an_escape).
 * Returns 0, AN_EINVAL (malformed), AN_ERANGE (size limit) or AN_ENOMEM.
 * limits may be NULL (defaults).
 */
int an_batch_decode(const an_field *fields, size_t nfields,
                    const an_codec_limits *limits, an_batch **out,
                    char *reason, size_t reasonlen);

/* Same, from the parts (model need not be NUL-terminated). */
int an_batch_decode_parts(const char *model, size_t model_len,
                          const char *batch, size_t batch_len,
                          an_encoding enc, const an_codec_limits *limits,
                          an_batch **out, char *reason, size_t reasonlen);

void an_batch_free(an_batch *b);

/* ------------------------------------------ input: encoding (producer side) */

/*
 * Encode results into the `batch` field value: a JSON array of state arrays
 * (["iRv2", rowID, status, score|null, error|null, predictions|null], or
 * ["iR", ...5] when inf.legacy, or ["mcR", commandID, method, status,
 * args|null, error|null]); with AN_ENC_ZLIB the JSON text is compressed.
 * Invariants are NOT enforced here (tests need to produce invalid input);
 * only structural problems (NULL strings where a string is needed,
 * non-finite score, a string that is not UTF-8, predictions text that is
 * not JSON) fail with AN_EINVAL; AN_ENOMEM. *out is malloc'd (free()); for
 * AN_ENC_JSON it is also NUL-terminated (not counted in *outlen).
 */
int an_batch_encode(const an_result *results, size_t n, an_encoding enc,
                    char **out, size_t *outlen, char *err, size_t errlen);

/* ------------------------------------------------------ output messages */

/* The metric part of the docs/htmengine.md §6.1 message (from the metric row).
 * Borrowed. */
typedef struct an_metric_info {
    const char *uid;         /* required */
    const char *name;        /* NULL -> null */
    const char *description; /* NULL -> null */
    const char *resource;    /* metric.server; NULL -> null */
    const char *location;    /* NULL -> null */
    const char *datasource;  /* required */
    /* metric.spec, a JSON object: `spec` if non-NULL (borrowed, not
     * modified), else `spec_json` (JSON text of the object). One of the two
     * is required. See an_metric_spec_from_parameters. */
    const json_t *spec;
    const char *spec_json;
} an_metric_info;

/* One processed row of the docs/htmengine.md §6.1 message. */
typedef struct an_out_row {
    int64_t rowid;
    double ts;      /* seconds since the Unix epoch (UTC), with microseconds */
    double value;   /* metric_value */
    double raw;     /* raw_anomaly_score -> "rawAnomaly" */
    double anomaly; /* anomaly_score -> "anomaly" */
    /* multiStepBestPredictions: `predictions` if non-NULL (borrowed; object
     * or JSON null), else `predictions_json` (the DB text: NULL or "null" ->
     * null, otherwise must parse to an object). */
    const json_t *predictions;
    const char *predictions_json;
    /* predictions_json is an_json_dumps output (the decoder's
     * predictions_text): an_msg_inference_text splices it verbatim instead
     * of parsing it (a pass-through, no tree). */
    bool predictions_canonical;
} an_out_row;

/* The message builders below return 0 with the message in *out (owned by
 * the caller), or, with *out NULL and err set: AN_EINVAL when the content
 * cannot be written (a non-finite double, bad spec or predictions JSON, a
 * missing required string, a string that is not UTF-8) or AN_ENOMEM. */

/* docs/htmengine.md §6.1 message:
 * {"metric":{uid,name,description,resource,location,
 * datasource,spec},"results":[{rowid,ts,value,rawAnomaly,anomaly,
 * multiStepBestPredictions},...]} with exactly these keys. n may be 0 (the
 * service does not publish empty results, but the codec allows it). *out is
 * a new reference. */
int an_msg_inference(const an_metric_info *m, const an_out_row *rows, size_t n, json_t **out,
                     char *err, size_t errlen);

/* The same message as compact JSON text, byte for byte
 * an_json_dumps(an_msg_inference(...)), built without a tree of the rows:
 * canonical predictions texts are spliced, others parsed and re-dumped one
 * row at a time. *out malloc'd, NUL-terminated, *len (if non-NULL) its
 * length without the NUL. */
int an_msg_inference_text(const an_metric_info *m, const an_out_row *rows, size_t n,
                          char **out, size_t *len, char *err, size_t errlen);

/* an_msg_inference_text in two parts, so a caller can keep the first per
 * metric: the head is the text up to the rows ({"metric":{...},"results":[),
 * malloc'd, NUL-terminated, *len its length; text_head appends the rows and
 * the end to a head (borrowed) and makes the whole message as
 * an_msg_inference_text does. */
int an_msg_inference_head(const an_metric_info *m, char **out, size_t *len, char *err,
                          size_t errlen);
int an_msg_inference_text_head(const char *head, size_t head_len, const an_out_row *rows,
                               size_t n, char **out, size_t *len, char *err, size_t errlen);

/* docs/htmengine.md §6.2 command-result message, borrowed inputs. */
typedef struct an_cmd_msg {
    const char *method;     /* required */
    const char *model_id;   /* required ("modelId" = the batch's model) */
    const char *command_id; /* required */
    int64_t status;
    const char *error_message; /* NULL -> null (key always present) */
    /* modelInfo, only when has_model_info (successful defineModel):
     * {"metricName","resource","modelSpec"}; modelSpec = model_spec (borrowed
     * object) if non-NULL, else model_spec_json (the metric's `parameters`
     * text, must parse to an object). */
    bool has_model_info;
    const char *metric_name; /* required with model info */
    const char *resource;    /* required with model info (metric.server) */
    const json_t *model_spec;
    const char *model_spec_json;
} an_cmd_msg;

/* {"method","modelId","commandId","status","errorMessage"[,"modelInfo"]}
 * in *out (a new reference), as the builders above. */
int an_msg_command(const an_cmd_msg *c, json_t **out, char *err, size_t errlen);

/* `spec` of docs/htmengine.md §1.9.1 from the metric's `parameters` column
 * text: the value of its "metricSpec" key (must be an object). New reference in
 * *spec. AN_EINVAL when the text is NULL/not JSON/has no metricSpec object;
 * AN_ENOMEM. */
int an_metric_spec_from_parameters(const char *parameters_json, json_t **spec,
                                   char *err, size_t errlen);

/* ------------------------------------------------------------- bodies */

/* The `body` field of an output entry: an_json_dumps(msg), zlib-compressed
 * (an_zlib_compress) for AN_ENC_ZLIB. *body is malloc'd (free()); for
 * AN_ENC_JSON it is also NUL-terminated (not counted in *len). AN_EINVAL
 * when msg holds a non-finite real or is nested too deep; AN_ENOMEM. */
int an_body_encode(const json_t *msg, an_encoding enc, char **body,
                   size_t *len, char *err, size_t errlen);

/* an_body_encode of a message already serialized (text, len): takes
 * ownership of text (freed, or returned as *body for AN_ENC_JSON). */
int an_body_encode_text(char *text, size_t tlen, an_encoding enc, char **body, size_t *len,
                        char *err, size_t errlen);

/* Raw zlib helpers. an_zlib_compress: an RFC 1950 stream, deflate level 6
 * with a 32 KiB window (inputs up to 16 KiB with a 2,048-entry hash, larger
 * ones with compress2's parameters: the bytes may differ from compress2's,
 * never what they inflate to), malloc'd output.
 * an_zlib_inflate: inflates a complete RFC 1950 stream incrementally; fails
 * with AN_ERANGE as soon as the output would exceed max_out (no allocation
 * beyond max_out + 1), AN_EINVAL for corrupt/truncated data or trailing
 * bytes after the stream end. *out is malloc'd and NUL-terminated (not
 * counted in *outlen). The reason text has no prefix, e.g. "zlib stream
 * inflates beyond max_inflated_bytes (1048576)", "truncated zlib stream",
 * "corrupt zlib stream (incorrect header check)". */
int an_zlib_compress(const void *in, size_t inlen, char **out, size_t *outlen,
                     char *err, size_t errlen);
int an_zlib_inflate(const void *in, size_t inlen, size_t max_out, char **out,
                    size_t *outlen, char *err, size_t errlen);

/* Parse a JSON value from a (possibly zlib) field. NUL characters inside
 * strings are rejected; numbers must be finite. New reference in *out. */
int an_json_field_decode(const char *data, size_t len, an_encoding enc,
                         size_t max_inflated, json_t **out, char *err,
                         size_t errlen);

/*
 * Decode one output entry (anomalyctl tail, tests): fields dataType, model,
 * rows (optional), source, encoding (optional, default json), body. Returns
 * a new object {"id":id,"dataType":..,"model":..,"rows":..|null,
 * "source":..|null,"encoding":"zlib"|"json","body":<decoded JSON>} in
 * *out. id may be NULL (-> null). Missing dataType/model/body, unknown
 * encoding, bad body, a field that is not UTF-8 -> AN_EINVAL / AN_ERANGE
 * with reason; AN_ENOMEM. max_inflated 0 = default.
 */
int an_output_entry_decode(const char *id, const an_field *fields,
                           size_t nfields, size_t max_inflated, json_t **out,
                           char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif /* AN_CODEC_H */
