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
#include <stdint.h>

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

/* ---------------------------------------------------------------- fitting
 * Used by dataset.c; models and the server only load and apply. */

/* Largest number of categories one string column may have (one feature
 * each); more is almost always an id column that should be dropped. */
#define PREPROC_MAX_CATEGORIES 4096

/* A table's raw columns as dataset.c holds them: x is (rows, n_inputs)
 * floats where numeric columns hold values (NaN = missing) and
 * categorical columns hold codes into the column's sorted dictionary of
 * all categories in the data (NaN = missing). */
typedef struct preproc_table_spec {
    int n_inputs;
    const char *const *names;       /* (n_inputs) column names */
    const uint8_t *categorical;     /* (n_inputs) 1: codes into cats[i] */
    const uint8_t *dropped;         /* (n_inputs) 1: dropped by name */
    const int *n_cats;              /* (n_inputs) dictionary sizes */
    const char *const *const *cats; /* (n_inputs) sorted dictionaries (strcmp order) */
    int label_pos;                  /* position of the label cell in a full row of
                                       n_inputs + 1 cells, or -1 when unlabelled */
    const char *source;             /* file name for messages */
} preproc_table_spec;

/* Fits on rows[0..n) of x (see preproc_table_spec): imputation values,
 * the categories present in those rows, variance selection (threshold > 0
 * drops features whose variance is <= threshold; 0 turns it off) and
 * scaling ("standard" | "minmax" | "none"; impute "mean" | "median" |
 * "drop", where "drop" means the caller dropped rows with missing cells and
 * missing cells met later are filled with the mean). */
int preproc_fit_table(const preproc_table_spec *spec, const float *x, const int32_t *rows, int n,
                      const char *impute, const char *scale, double variance_threshold,
                      preproc **out, kiln_error *err);

/* Applies a preproc from preproc_fit_table to rows[0..n) of the same coded
 * x (rows NULL: 0..n-1), writing n x n_features floats. */
int preproc_apply_coded(const preproc *pp, const float *x, const int32_t *rows, int n, float *out,
                        kiln_error *err);

/* Fits the one global affine map of an image set over rows[0..n) (rows
 * NULL: 0..n-1) of d = h*w*c pixels: bytes xu8, or floats xf when xu8 is
 * NULL. scale: "standard" | "minmax" | "none". */
int preproc_fit_image(int h, int w, int c, const uint8_t *xu8, const float *xf, const int32_t *rows,
                      int n, const char *scale, preproc **out, kiln_error *err);

/* For an image preproc: feature = pixel * scale + shift. Returns 1 for an
 * image preproc, 0 otherwise. */
int preproc_image_affine(const preproc *pp, float *scale, float *shift);

/* The one expression every image feature is computed with, so the
 * training path (dataset_gather) and the inference path agree bit for bit. */
static inline float preproc_affine(float p, float scale, float shift)
{
    return p * scale + shift;
}

#endif
