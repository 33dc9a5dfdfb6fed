/* tj_final: the TrainingJob's finalizer kiln.dev/checkpoints, planned as
 * pure functions like tj_plan (which calls tj_final_plan for a job that
 * has a deletionTimestamp).
 *
 * Deleting a job deletes its pods, Service and own models claim through
 * owner references. Checkpoints on a volume named by spec.storage.volume
 * (one that other jobs may share) have no owner, so unless
 * spec.storage.retain is true the finalizer holds the job until they are
 * gone:
 *   1. trial pods still Pending or Running are deleted, so nothing writes
 *      while the clean-up runs;
 *   2. the pod <job>-cleanup (kiln-trainer clean on /models/<ns>/<job>,
 *      nothing else) runs once they are gone;
 *   3. when it Succeeded, the finalizer goes (the garbage collector then
 *      removes the pod with the job).
 * A failed clean-up (or one stuck Pending, e.g. on a vanished volume) is
 * recorded in status.cleanup, the Reconciling/Stalled conditions and a
 * Warning event, and retried with back-off (5 s doubling, at most 5 min);
 * after TJ_FINAL_MAX_ATTEMPTS failures the finalizer goes anyway with a
 * Warning event, so a job whose volume is gone is never stuck.
 * The job's own claim <job>-models needs no clean-up pod: with retain
 * false it is owned by the job and goes with it; with retain true it was
 * created without an owner and survives. Either way the finalizer goes at
 * once.
 *
 * Ownership: tj_final_patch returns a malloc'd string; tj_final_plan fills
 * a tj_plan_out like tj_plan. */
#ifndef KILN_TJ_FINAL_H
#define KILN_TJ_FINAL_H

#include <cjson/cJSON.h>

#include "kiln_err.h"
#include "tj_plan.h"
#include "tj_spec.h"

#define TJ_FINAL_MAX_ATTEMPTS 5

/* 1 when job's metadata.finalizers holds kiln.dev/checkpoints. */
int tj_final_has(const cJSON *job);

/* The JSON merge patch that adds (add = 1) or removes (add = 0) the
 * finalizer, keeping the others: {"metadata":{"resourceVersion":RV,
 * "finalizers":[...]}} (the resourceVersion, when the job has one, makes
 * the write fail with a conflict instead of dropping someone else's
 * concurrent finalizer change). *out is malloc'd. */
int tj_final_patch(const cJSON *job, int add, char **out, kiln_error *err);

/* The plan for a job being deleted (s read from it; pods as for tj_plan).
 * out must be released (empty) by the caller. */
int tj_final_plan(const tj_spec *s, const cJSON *const *pods, int n_pods, const tj_env *env,
                  tj_plan_out *out, kiln_error *err);

/* The back-off after the n-th failed clean-up (n >= 1), in ms. */
int64_t tj_final_backoff_ms(int n);

#endif
