/* train: one trial, start to finish. Loads the data, picks the model
 * family, trains (with epoch checkpoints, resume and warm start), evaluates
 * on held-out data and writes the final checkpoint. The CLI wrapper in
 * main.c turns the result into the trial report.
 *
 * Output directory layout: epoch-NNNN.kiln (the latest epoch, with
 * optimizer and RNG state, replaced after each epoch) and model.kiln (the
 * final model; never rewritten once complete).
 *
 * Ownership: train_run returns a report object the caller frees with
 * cJSON_Delete. */
#ifndef KILN_TRAIN_H
#define KILN_TRAIN_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "kiln_err.h"

typedef struct train_opts {
    const char *output_dir;  /* created if missing */
    int resume;              /* continue from the newest epoch checkpoint in output_dir */
    const char *warm_start;  /* a model.kiln of the same architecture to start from, or NULL */
    FILE *progress;          /* JSON lines, one per epoch (stdout) */
} train_opts;

/* Runs the trial. On success *report holds {"metrics", "trainMetrics",
 * "epochs", "params", "checkpoint", "seconds", ...}. */
int train_run(const train_config *cfg, const train_opts *o, cJSON **report, kiln_error *err);

/* Exit code for an error code: 2 for bad input or config, 1 otherwise. */
int train_exit_code(int rc);

#endif
