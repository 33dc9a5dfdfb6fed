/* model: a trained model loaded from a checkpoint for inference: the
 * network or the centroids, the stored preprocessing and the class names.
 * `kiln-trainer predict` and the model server use only this interface.
 *
 * Inputs are raw, in the training data's own value space (pixels 0-255 for
 * unsigned-byte IDX, CSV columns as in the training file); the stored
 * preprocessing is applied here. A loaded model is read-only: every
 * function may be called from several threads at once.
 *
 * Ownership: model_load returns a model freed by model_free; strings and
 * JSON returned are borrowed from it. */
#ifndef KILN_MODEL_H
#define KILN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"

typedef struct kiln_model kiln_model;

/* Loads and validates (magic, version, CRC, shapes against the header).
 * A bad file is KILN_ECORRUPT or KILN_EINVAL with the path in err->msg. */
int model_load(const char *path, kiln_model **out, kiln_error *err);
void model_free(kiln_model *m);

const char *model_family(const kiln_model *m);  /* "mlp", "cnn", "logistic", "kmeans" */
int model_n_inputs(const kiln_model *m);        /* raw values per instance */
int model_n_outputs(const kiln_model *m);       /* classes, or clusters for kmeans */
/* Class label as written in the training data ("T-shirt/top" or "0"); for
 * kmeans the cluster number. Borrowed. */
const char *model_output_label(const kiln_model *m, int i);
/* 1 and the geometry when the model takes images. */
int model_is_image(const kiln_model *m, int *h, int *w, int *c);
/* Short stable identity of the loaded file: its CRC32 as 8 hex digits. */
const char *model_version(const kiln_model *m);
/* Whole checkpoint header (architecture, preprocessing, metrics, params). */
const cJSON *model_header(const kiln_model *m);

/* n instances of model_n_inputs raw numbers -> classes[n] and, when probs is
 * not NULL, probs (n, model_n_outputs) (kmeans: probs are not defined and
 * must be NULL). */
int model_predict(const kiln_model *m, const float *raw, int n, int32_t *classes, float *probs,
                  kiln_error *err);
/* The same with a caller-given workspace of ws_n floats, at least
 * model_ws_floats(m, n), any alignment: allocates nothing, so a server
 * thread reuses one buffer across requests. The workspace a call needs
 * stops growing at 64 instances. Answers are the same bits as
 * model_predict's. */
size_t model_ws_floats(const kiln_model *m, int n);
int model_predict_ws(const kiln_model *m, const float *raw, int n, int32_t *classes, float *probs,
                     float *ws, size_t ws_n, kiln_error *err);
/* One instance given as CSV cells (see preproc_apply_cells). */
int model_predict_cells(const kiln_model *m, const char *const *cells, int ncells,
                        int32_t *cls, float *probs, kiln_error *err);

#endif
