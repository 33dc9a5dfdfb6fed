/* serve_infer: the inference payloads of the model server, without any
 * HTTP or model code, so they can be unit-tested and fuzzed on their own.
 *
 *  - KServe v1 JSON: {"instances": [[...], ...], "parameters": {...}},
 *    read by a small hand parser that puts numbers straight into a float
 *    buffer (the hot path: no DOM, no per-number allocation);
 *  - Open Inference Protocol v2 JSON (inputs with name, shape, datatype,
 *    flat or nested data), read with cJSON;
 *  - CSV bodies (RFC 4180 quoting, optional header row), split into cells;
 *  - the JSON responses of both protocols.
 *
 * Instances are raw values in the training data's own value space; nested
 * arrays are flattened in row-major order and must hold exactly n_inputs
 * values. A failed parse returns KILN_EINVAL with the reason in err and
 * sets `status` to the HTTP status it deserves: 400 for malformed bodies,
 * 422 for well-formed bodies the model cannot take (wrong value count,
 * unsupported datatype, values outside the datatype's range).
 *
 * Ownership: serve_batch and serve_csv are caller storage (init/release),
 * reused across requests so steady-state parsing allocates nothing. */
#ifndef KILN_SERVE_INFER_H
#define KILN_SERVE_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "kiln_err.h"
#include "serve_buf.h"

/* ---- types ---- */

typedef struct serve_batch {
    float *x;       /* (n, n_inputs) raw values */
    size_t cap;     /* capacity of x in floats */
    int n;          /* instances parsed */
    int n_inputs;   /* values per instance */
    int want_probs; /* the client asked for probabilities */
    int status;     /* HTTP status of the last failure (400 or 422) */
    char id[128];   /* v2 request id, echoed in the response ("" when absent) */
} serve_batch;

typedef struct serve_csv {
    char *text; /* copy of the body, cells NUL-terminated in place */
    size_t text_cap;
    const char **cells; /* every cell of every kept row, row after row */
    size_t cells_cap;
    int *row_off; /* (nrows + 1) offsets into cells */
    size_t rows_cap;
    int nrows;  /* data rows (header excluded) */
    int header; /* 1 when the first row was a header and skipped */
    int status;
} serve_csv;

/* How a model's class labels are written in responses: one JSON fragment
 * per class, a quoted string ("T-shirt/top") or, when every label is a
 * plain integer, a bare number (numeric=1; v2 then uses INT64). */
typedef struct serve_labels {
    int n;
    int numeric;
    const char *const *json; /* n fragments */
    const size_t *json_len;
} serve_labels;

/* ---- API ---- */

void serve_batch_init(serve_batch *b);
void serve_batch_release(serve_batch *b);
void serve_csv_init(serve_csv *c);
void serve_csv_release(serve_csv *c);

int serve_parse_v1(serve_batch *b, const char *body, size_t len, int n_inputs, kiln_error *err);
int serve_parse_v2(serve_batch *b, const char *body, size_t len, int n_inputs, kiln_error *err);
/* Splits a CSV body into rows of cells; blank lines are skipped. The first
 * row is taken as a header (and skipped) when every non-empty cell in it is
 * text that does not read as a number, a missing-value mark or empty. */
int serve_parse_csv(serve_csv *c, const char *body, size_t len, kiln_error *err);

/* 1 when s is a complete JSON/C decimal number (leading/trailing blanks
 * not allowed). */
int serve_is_number(const char *s);

/* {"predictions": [...]} plus "probabilities": [[...]] when probs != NULL. */
int serve_write_v1(sbuf *out, const serve_labels *l, const int32_t *cls, const float *probs, int n,
                   int n_out);
int serve_write_v2(sbuf *out, const char *model, const char *version, const char *id,
                   const serve_labels *l, const int32_t *cls, const float *probs, int n, int n_out);
/* {"error": msg} */
int serve_write_error(sbuf *out, const char *msg);

#endif
