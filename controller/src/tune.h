/* tune: the tweaking strategies that choose each next trial of a
 * TrainingJob from its spec and the trials run so far. Pure functions over
 * JSON: no I/O, no clock, no global state, so every decision is unit-tested
 * and a restarted controller derives the same next trial from the same
 * history.
 *
 * A trial's parameters are one JSON object in the shape the trainer
 * reports them: {"family", "hiddenLayers", "activation", "dropout",
 * "convFilters", "denseLayers", "epochs", "batchSize", "learningRate",
 * "optimizer", "seed", "clusters"} plus, for a warm start, "warmStartFrom"
 * (the index of the trial whose checkpoint to continue) and "extraEpochs"
 * (the epochs to run on top of it).
 *
 * Strategies (spec.tuning.strategy):
 *   ladder    the classic fixed sequence per family (add a dense or conv
 *             block, raise epochs, add two hidden layers, shrink neurons),
 *             applied cumulatively.
 *   random    seeded samples of spec.tuning.searchSpace.
 *   grid      the cartesian product of searchSpace, in order.
 *   adaptive  diagnoses the best trial so far from its training and
 *             validation metrics and its learning curve (the trials of the
 *             same configuration at other epoch counts): under-fitting
 *             grows epochs when the curve, extrapolated, reaches the goal
 *             (warm-started: only the extra epochs run) and capacity when
 *             it flattens first; far from the goal, capacity and epochs
 *             grow in one trial, sized by the distance; over-fitting (a
 *             large train/validation gap, or validation falling with more
 *             epochs) adds dropout or shrinks; divergence or a training
 *             loss rising with more epochs lowers the learning rate. Never
 *             repeats a tried configuration.
 *   k-means   jobs search k around the elbow instead.
 *
 * Ownership: tune_initial and tune_next return objects the caller frees
 * with cJSON_Delete. */
#ifndef KILN_TUNE_H
#define KILN_TUNE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"

typedef struct tune_trial {
    int index;
    const cJSON *params;        /* as run (the trainer's reported params when known) */
    int succeeded;              /* 1: finished with metrics; 0: failed */
    const cJSON *metrics;       /* held-out metrics, or NULL */
    const cJSON *train_metrics; /* training metrics, or NULL */
    const char *message;        /* failure message, or NULL */
} tune_trial;

/* Parameters of the first trial: the spec's own model and training parts. */
cJSON *tune_initial(const cJSON *spec);

/* The next trial's parameters, with a one-line reason ("under-fitting
 * (train 0.81, val 0.80 < goal 0.85): hidden layers 64 -> 128").
 * KILN_ENOTFOUND when the strategy has nothing left to try. */
int tune_next(const cJSON *spec, const tune_trial *trials, int n_trials, cJSON **params,
              char *reason, size_t reason_len, kiln_error *err);

/* The objective's value in a metrics object, and whether a value meets the
 * goal (>= goal for accuracy-like metrics, <= goal for loss and wcss). */
int tune_metric_value(const cJSON *spec, const cJSON *metrics, double *value);
int tune_goal_met(const cJSON *spec, double value);
/* 1 when a is better than b for the spec's objective. */
int tune_better(const cJSON *spec, double a, double b);

#endif
