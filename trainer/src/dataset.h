/* dataset: reads training data (CSV or IDX, from a path, file:// or
 * http(s)://, raw or gzip) into memory once, then makes train/validation
 * splits from it: the MNIST layout's own test set, a seeded stratified
 * hold-out, or the k-th of `folds` cross-validation folds. Preprocessing is
 * fitted on the training part of each split only (see preproc.h).
 *
 * Ownership: data_load returns a data_raw the caller frees with
 * data_raw_free; data_split_make fills caller storage that
 * data_split_release empties. All errors are KILN_EINVAL (bad data, with
 * the file, row/byte offset and expected-vs-found in err->msg),
 * KILN_ENOTFOUND (missing file or URL), KILN_ENET or KILN_ENOMEM. */
#ifndef KILN_DATASET_H
#define KILN_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "kiln_err.h"
#include "preproc.h"

/* Preprocessed samples: what the models consume. Byte images are not
 * expanded to floats (60k Fashion-MNIST images are 47 MB as bytes, 188 MB
 * as floats): then x is NULL and feature = xu8 * scale + shift, with xu8
 * borrowed from the data_raw. Read rows through dataset_gather. */
typedef struct dataset {
    int n;               /* samples */
    int d;               /* features per sample after preprocessing */
    float *x;            /* (n, d) row-major, owned; NULL when xu8 is used */
    const uint8_t *xu8;  /* (n, d) bytes, borrowed from data_raw; or NULL */
    float scale, shift;  /* for xu8 */
    int32_t *y;          /* (n) class index in [0, n_classes), or NULL when unlabelled; owned */
    int32_t *rows;       /* for xu8: row i of this set is row rows[i] of xu8; owned (NULL:
                            identity) */
} dataset;

/* Copies rows idx[0..n) of ds (features as floats) into out (n, ds->d);
 * idx NULL means rows 0..n-1. */
void dataset_gather(const dataset *ds, const int32_t *idx, int n, float *out);

typedef struct data_opts {
    const char *uri;          /* path, file://PATH or http(s)://URL; a directory = MNIST layout */
    const char *format;       /* "idx", "csv", or NULL/"" to infer from the uri */
    const char *label;        /* CSV label column, by name or by 0-based index in digits;
                                 NULL: unlabelled. Ignored for IDX (labels come from files) */
    double validation_split;  /* fraction held out when there is no test set (0.2) */
    int folds;                /* > 1: k-fold cross-validation */
    int max_samples;          /* > 0: only the first N training samples */
    const char *impute;       /* "mean" | "median" | "drop" (drop rows with missing cells) */
    const char *scale;        /* "standard" | "minmax" | "none" */
    const char *const *drop_columns; /* CSV column names to drop */
    int n_drop_columns;
    double variance_threshold; /* drop features whose training variance is <= this (0: off
                                  except constant columns are kept) */
    uint64_t seed;            /* split / fold assignment */
} data_opts;

typedef struct data_raw data_raw; /* opaque: the data as read */

typedef struct data_split {
    dataset train;        /* training part, preprocessed */
    dataset val;          /* test set (MNIST layout) or hold-out or fold, preprocessed */
    preproc *pp;          /* fitted on train only; owned */
    int n_classes;        /* 0 when unlabelled */
    char **class_names;   /* n_classes strings, the labels as written in the data ("0".."9"
                             for IDX); owned */
    int is_image;         /* inputs are images (IDX rank >= 3) */
    int h, w, c;          /* image geometry when is_image (c = 1 for rank-3 IDX) */
    int has_test_set;     /* val is the data's own test set */
} data_split;

/* Reads the data named by o->uri once (o->format, o->label, o->max_samples,
 * o->drop_columns are used here). */
int data_load(const data_opts *o, data_raw **out, kiln_error *err);
void data_raw_free(data_raw *raw);

/* Number of training rows available (after max_samples). */
int data_raw_rows(const data_raw *raw);

/* fold < 0: the test set if the data has one, else a seeded stratified
 * validation_split hold-out. 0 <= fold < o->folds: that fold is the
 * validation part. Fits preprocessing on the training part only. */
int data_split_make(const data_raw *raw, const data_opts *o, int fold, data_split *out,
                    kiln_error *err);
void data_split_release(data_split *s);

/* ---------------------------------------------------------------- extras */

/* Reads data already in memory, as data_load reads o->uri: CSV, or IDX
 * images with an optional labels file (labels NULL: unlabelled). gzip
 * content is inflated up to max bytes. Names are used in messages. The
 * buffers are copied. For tests, fuzzing and uploads. */
int data_load_buffers(const data_opts *o, const char *name, const void *buf, size_t len,
                      const char *labels_name, const void *labels, size_t labels_len, size_t max,
                      data_raw **out, kiln_error *err);

/* 1 when the data has its own test set (MNIST layout with t10k files). */
int data_raw_has_test_set(const data_raw *raw);

#endif
