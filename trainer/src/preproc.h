/* preproc: the transformation from raw inputs (a CSV row as written, or
 * image pixels as stored, 0-255 for unsigned-byte IDX) to model features.
 * It is fitted on training data by dataset.c, stored as JSON in every
 * checkpoint, and applied by `predict` and the model server, so clients
 * always send data in the training data's own value space.
 *
 * Steps, in order: drop columns; impute missing cells (mean/median of the
 * training column); one-hot encode string columns (unknown category: all
 * zeros); variance-threshold selection; standard or min-max scaling. For
 * images one global scale (mean/std or min/max over all training pixels).
 *
 * Ownership: preproc_from_json returns a preproc freed by preproc_free.
 * Applying is thread-safe (the object is read-only after fitting). */
#ifndef KILN_PREPROC_H
#define KILN_PREPROC_H

#include <cjson/cJSON.h>

#include "kiln_err.h"

typedef struct preproc preproc;

/* Raw values one instance has (CSV: the training columns minus the label
 * column, dropped columns included; images: h*w*c). */
int preproc_n_inputs(const preproc *pp);
/* Features the model sees per instance. */
int preproc_n_features(const preproc *pp);
/* Name of raw input column i (CSV header name, or "c<i>" without header;
 * "pixel<i>" for images). Borrowed. */
const char *preproc_input_name(const preproc *pp, int i);

/* n instances of preproc_n_inputs numbers each (NaN = missing) -> out, n x
 * n_features. A string (categorical) column given as a number is matched
 * by its printed form ("3" for 3.0). */
int preproc_apply(const preproc *pp, const float *raw, int n, float *out, kiln_error *err);

/* One instance as text cells, as in a CSV row of the training file. ncells
 * is either n_inputs, or n_inputs + 1 when the row still holds the label
 * column at its training position (then that cell is ignored). Empty, "NA",
 * "NaN" cells are missing. Non-numeric text in a numeric column is
 * KILN_EINVAL naming the column. */
int preproc_apply_cells(const preproc *pp, const char *const *cells, int ncells, float *out,
                        kiln_error *err);

cJSON *preproc_to_json(const preproc *pp);
int preproc_from_json(const cJSON *j, preproc **out, kiln_error *err);
void preproc_free(preproc *pp);

#endif
