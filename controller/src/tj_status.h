/* tj_status: reading what trial pods say and writing it as TrainingJob
 * status: a pod's phase, exit code, termination message (the trainer's
 * JSON report) and waiting reasons become a tj_pod_obs; kstatus-style
 * conditions keep their lastTransitionTime unless their status changes;
 * the trial list stays bounded, older records folded into a summary.
 *
 * Trial record phases: Pending, Running, Succeeded, Failed, Stopped (the
 * controller ended the trial: goal reached, job failed, or a new search).
 *
 * Ownership: tj_status_observe fills caller storage that
 * tj_pod_obs_release empties (the report and params it parsed); the pod
 * is borrowed. Condition and list helpers edit the arrays they are given. */
#ifndef KILN_TJ_STATUS_H
#define KILN_TJ_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"
#include "ktime.h"

#define TJ_MAX_LISTED_TRIALS 50

enum tj_pod_phase { TJ_POD_PENDING = 0, TJ_POD_RUNNING, TJ_POD_SUCCEEDED, TJ_POD_FAILED };

typedef struct tj_pod_obs {
    const cJSON *pod;      /* borrowed */
    const char *name;      /* metadata.name ("" when absent) */
    int index;             /* kiln.dev/trial label; -1 when absent or not a number */
    int attempt;           /* kiln.dev/attempt annotation; 1 when absent */
    const char *search;    /* kiln.dev/search annotation ("" when absent) */
    cJSON *params;         /* kiln.dev/params parsed; NULL when absent or bad */
    int bad_params;        /* the annotation is there but not a JSON object */
    int phase;             /* enum tj_pod_phase; a terminated container decides */
    int deleting;          /* metadata.deletionTimestamp set */
    int exit_code;         /* the trainer's exit code; -1 when it did not terminate */
    cJSON *report;         /* the termination message as a JSON object, or NULL */
    char message[656];     /* for a failed pod: what went wrong, one line */
    char stall_reason[64]; /* ErrImagePull, ImagePullBackOff, ..., Unschedulable; "" */
    char stall_message[320];
    int has_created, has_started, has_finished;
    ktime created;  /* metadata.creationTimestamp */
    ktime started;  /* the running container's state.running.startedAt */
    ktime finished; /* the container's terminated.finishedAt */
} tj_pod_obs;

/* Observes pod. Never fails on what the pod holds (a bad annotation is
 * reported through bad_params); returns 0, or KILN_ENOMEM reserved. */
int tj_status_observe(const cJSON *pod, tj_pod_obs *out, kiln_error *err);
void tj_pod_obs_release(tj_pod_obs *o);

/* 1 for the finished record phases Succeeded, Failed and Stopped. */
int tj_status_phase_finished(const char *phase);

/* Appends condition type to conds (an array) with status "True", "False"
 * or "Unknown". lastTransitionTime is copied from the same type in old
 * (the previous conditions array, may be NULL) when its status is the
 * same, else it is now. Returns 1 on success, 0 when out of memory. */
int tj_status_condition(cJSON *conds, const cJSON *old, const char *type, const char *status,
                        const char *reason, const char *message, int64_t generation, ktime now);

/* The condition of that type in a conditions array, or NULL. */
const cJSON *tj_status_find_condition(const cJSON *conds, const char *type);

/* Keeps trials (an array of records sorted by index) at max entries or
 * fewer by removing the lowest-index finished records, counting each into
 * older ({count, succeeded, failed}, created members as needed). Stops at
 * the first unfinished record so that everything below the list's lowest
 * index is summarised. Returns 1, or 0 when out of memory. */
int tj_status_bound_trials(cJSON *trials, cJSON *older, int max);

/* now formatted as a metav1.Time string into buf (KTIME_BUFSZ bytes). */
void tj_status_time(ktime t, char *buf);

#endif
