/* config: the trial configuration `kiln-trainer train` runs: the
 * TrainingJob spec's data, model, training and objective parts (DESIGN.md),
 * from a JSON file, inline JSON and/or command-line flags (flags win). Every
 * field is optional with the documented default; unknown fields, wrong
 * types, unknown enum values and out-of-range numbers are KILN_EINVAL with
 * the field's path in the message ("training.epochs: -3 is not >= 1").
 *
 * Ownership: config_init fills caller storage that config_release empties;
 * strings inside are owned by the struct. */
#ifndef KILN_CONFIG_H
#define KILN_CONFIG_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"
#include "nn.h"

#define CONFIG_MAX_LIST 16

typedef struct train_config {
    /* data */
    char *uri;
    char *format;             /* "idx" | "csv" | NULL (infer) */
    char *label;              /* column name or index as text; NULL: unlabelled */
    double validation_split;  /* 0.2 */
    int folds;                /* 0 */
    int max_samples;          /* 0 = all */
    char *impute;             /* "mean" */
    char *scale;              /* "standard" */
    char *drop_columns[CONFIG_MAX_LIST];
    int n_drop_columns;
    double variance_threshold;
    /* model */
    char *family;             /* "auto" | "mlp" | "cnn" | "kmeans" | "logistic" */
    int hidden[NN_MAX_LAYERS];
    int n_hidden;             /* [64] */
    char *activation;         /* "relu" */
    double dropout;           /* 0 */
    int conv[NN_MAX_LAYERS];
    int n_conv;               /* [8] */
    int dense[NN_MAX_LAYERS];
    int n_dense;              /* [64] */
    int clusters;             /* 0: elbow */
    int max_clusters;         /* 12 */
    /* training */
    int epochs;               /* 3 */
    int batch_size;           /* 64 */
    double learning_rate;     /* 0.001 */
    char *optimizer;          /* "adam" | "sgd" */
    double momentum;          /* 0.9 (sgd) */
    uint64_t seed;            /* 1 */
    int patience;             /* 0: no early stopping */
    int threads;              /* 0: all cores */
    /* objective */
    char *metric;             /* "accuracy"; "wcss" when unlabelled and not given */
    int metric_given;
    double goal;              /* 0.8 */
} train_config;

void config_init(train_config *c);
void config_release(train_config *c);

/* Applies a spec object (keys data/model/training/objective; other
 * TrainingJob spec keys such as tuning or serving are ignored). */
int config_apply_json(train_config *c, const cJSON *spec, kiln_error *err);
int config_apply_json_text(train_config *c, const char *text, const char *what, kiln_error *err);

/* Applies one flag (name without "--", value); KILN_ENOTFOUND when the flag
 * is not a config flag. */
int config_apply_flag(train_config *c, const char *name, const char *value, kiln_error *err);

/* Checks cross-field rules after all sources were applied. */
int config_validate(const train_config *c, kiln_error *err);

/* The configuration as a spec object (data/model/training/objective),
 * stored in checkpoints so a resume can check it runs the same config. */
cJSON *config_to_json(const train_config *c);

#endif
