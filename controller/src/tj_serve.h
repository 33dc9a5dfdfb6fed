/* tj_serve: the serving half of the reconciler as one pure function, like
 * tj_plan: from the job (with the status tj_plan is about to write) and its
 * serving pods, decide which serving pods to create or delete, whether the
 * Service exists, and what status.serving and the Serving condition say.
 *
 * Rules:
 *   - the target is the best trial's checkpoint; a checkpoint that a pod
 *     could not load (running but never ready within the load deadline, or
 *     exiting at start) is recorded in status.serving.badCheckpoints, gets a
 *     Warning event, and the target falls back to the last good checkpoint
 *     (one a pod loaded and reported ready on);
 *   - a failed or terminating pod is replaced at once by a pod on the
 *     serving checkpoint; replacements back off after repeated failures
 *     (1 s doubling to 60 s) and a crash loop shows in the condition;
 *   - a better model rolls out: new pods start on the new checkpoint and old
 *     ones are deleted only once as many new ones are ready, so clients
 *     never lose service.
 *
 * Ownership: tj_serve_plan fills caller storage that tj_serve_release
 * empties. */
#ifndef KILN_TJ_SERVE_H
#define KILN_TJ_SERVE_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"
#include "tj_plan.h"

typedef struct tj_serve_out {
    int create_service;      /* the Service <job> is missing */
    cJSON *service;          /* its manifest when create_service */
    cJSON **creates;         /* serving pods to create (generateName) */
    int n_creates;
    char (*deletes)[254];    /* serving pods to delete */
    int n_deletes;
    cJSON *serving;          /* the new status.serving (always set) */
    const char *cond_status; /* Serving condition: "True" | "False" */
    const char *cond_reason;
    char cond_message[512];
    tj_event events[4];
    int n_events;
    int64_t requeue_after_ms;
} tj_serve_out;

/* status: the status about to be written (or the job's current one).
 * pods: the job's pods (trial pods are skipped). have_service: whether the
 * Service <job> exists. */
int tj_serve_plan(const cJSON *job, const cJSON *status, const cJSON *const *pods, int n_pods,
                  int have_service, const tj_env *env, tj_serve_out *out, kiln_error *err);
void tj_serve_release(tj_serve_out *out);

#endif
