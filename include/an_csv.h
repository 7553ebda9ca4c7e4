/*
 * an_csv.h: reader for NAB result/input CSVs (timestamp, value, raw_score).
 *
 * Format accepted:
 *   - line 1 is a header; the columns "timestamp", "value" and "raw_score"
 *     are found by name (exact match after trimming blanks), in any order;
 *     other columns are ignored; a UTF-8 byte-order mark is skipped;
 *   - every other non-empty line has as many comma-separated fields as the
 *     header; empty lines are skipped; LF or CRLF line ends; the last line
 *     may lack its newline;
 *   - no quoting: a '"' anywhere is an error (NAB files never quote);
 *   - value and raw_score are decimal numbers parsed with the correctly
 *     rounded strtod of the C locale (blanks around them allowed); NaN,
 *     Inf, overflow to Inf, hexadecimal floats and trailing junk are errors;
 *   - timestamps are kept verbatim (not parsed) and must not be empty.
 *
 * Storage is compact for 1,000,000+ rows: the values and raw scores in two
 * double arrays, the timestamps back to back in one arena without
 * terminators, plus an offset table only when their lengths differ (NAB
 * timestamps all have 19 characters, so none is needed): about 35 bytes per
 * row. The file is read in chunks, never whole.
 *
 * Errors: a negative AN_E* code and a message in err with the 1-based line
 * number (the header is line 1), e.g.
 *   "missing column 'raw_score' in header"
 *   "line 17: column 'value': 'abc' is not a number"
 */
#ifndef AN_CSV_H
#define AN_CSV_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct an_csv an_csv;

/* Loads path ("-" reads stdin). On success returns 0 and *out (caller owns;
 * an_csv_free). On error returns AN_EIO (cannot open/read), AN_EINVAL
 * (malformed content), AN_ERANGE (too large) or AN_ENOMEM, with a message
 * in err that starts with the path; *out is then NULL. A file with a header
 * and no data rows loads with 0 rows. */
int an_csv_load(const char *path, an_csv **out, char *err, size_t errlen);

/* As an_csv_load from an open stream (not closed); name is used in
 * messages. */
int an_csv_load_stream(FILE *fp, const char *name, an_csv **out, char *err,
                       size_t errlen);

/* Number of data rows. */
size_t an_csv_rows(const an_csv *c);

/* Timestamp text of row i (< rows), NOT NUL-terminated; its length in *len. */
const char *an_csv_timestamp(const an_csv *c, size_t i, size_t *len);

/* The value and raw_score columns: arrays of an_csv_rows() doubles. */
const double *an_csv_values(const an_csv *c);
const double *an_csv_raws(const an_csv *c);

/* Bytes held for the rows (diagnostics, benchmarks). */
size_t an_csv_memory(const an_csv *c);

void an_csv_free(an_csv *c);

#ifdef __cplusplus
}
#endif
#endif /* AN_CSV_H */
