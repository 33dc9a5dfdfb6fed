/* serve_infer: the inference payloads of the model server, without any
 * HTTP or model code, so they can be unit-tested and fuzzed on their own.
 *
 *  - KServe v1 JSON: {"instances": [[...], ...], "parameters": {...}},
 *    read by a small hand parser that puts numbers straight into a float
 *    buffer (the hot path: no DOM, no per-number allocation);
 *  - Open Inference Protocol v2 JSON (inputs with name, shape, datatype,
 *    flat or nested data), read with cJSON;
 *  - CSV bodies (split into cells by serve_csv);
 *  - the JSON responses of both protocols.
 *
 * Instances are raw values in the training data's own value space; nested
 * arrays are flattened in row-major order and must hold exactly n_inputs
 * values. A failed parse returns KILN_EINVAL with the reason in err and
 * sets `status` to the HTTP status it deserves: 400 for malformed bodies,
 * 422 for well-formed bodies the model cannot take (wrong value count,
 * unsupported datatype, values outside the datatype's range).
 *
 * Ownership: serve_batch is caller storage (init/release),
 * reused across requests so steady-state parsing allocates nothing. */
#ifndef KILN_SERVE_INFER_H
#define KILN_SERVE_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "kiln_err.h"
#include "serve_buf.h"
#include "serve_csv.h"

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

int serve_parse_v1(serve_batch *b, const char *body, size_t len, int n_inputs, kiln_error *err);
int serve_parse_v2(serve_batch *b, const char *body, size_t len, int n_inputs, kiln_error *err);

/* {"predictions": [...]} plus "probabilities": [[...]] when probs != NULL. */
int serve_write_v1(sbuf *out, const serve_labels *l, const int32_t *cls, const float *probs, int n,
                   int n_out);
int serve_write_v2(sbuf *out, const char *model, const char *version, const char *id,
                   const serve_labels *l, const int32_t *cls, const float *probs, int n, int n_out);
/* {"error": msg} */
int serve_write_error(sbuf *out, const char *msg);

#endif
