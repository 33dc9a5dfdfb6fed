/* tj_plan: the TrainingJob reconciler's decisions as one pure function.
 *
 * tj_plan(job, owned pods, env) returns what to do: pods to create (full
 * manifests), pods to delete (with the reason), PVCs to create, the new
 * status to write through the status subresource (NULL when unchanged),
 * Events to record, and when to look again. It reads nothing else and
 * keeps no state, so a restarted controller recomputes the same plan from
 * the same API state and nothing is lost or duplicated:
 *   - trial pods are named <job>-t<index>; a create that meets
 *     AlreadyExists is success;
 *   - everything the search needs to remember (trial records, attempts,
 *     the search identity, the best trial) lives in the status it writes;
 *   - a finished pod is deleted (ttlSecondsAfterFinished) only once its
 *     record is already in the stored status.
 *
 * Inputs: the job as the informer holds it, and the pods listed in its
 * namespace with the label kiln.dev/job=<name> (trial pods carry it, and
 * so do serving pods, which the plan skips). Events concern the job.
 *
 * Deletion: every live job carries the finalizer kiln.dev/checkpoints
 * (finalizer = TJ_FINALIZER_ADD while it is missing); a job being deleted
 * is planned by tj_final (tj_final.h): stop its trials, delete its
 * checkpoints with a clean-up pod unless spec.storage.retain, then drop
 * the finalizer (TJ_FINALIZER_REMOVE).
 *
 * How the I/O layer executes a plan, in this order: with TJ_FINALIZER_ADD,
 * patch the job with finalizer_patch and stop there (the patch changes the
 * job's resourceVersion, so the status write would conflict) and
 * reconcile again; otherwise create the PVCs, write
 * the status with the job's resourceVersion (PUT .../status, so a plan
 * made from a stale cache meets 409 instead of overwriting newer state; on
 * a conflict or any error stop here and requeue: the next plan recomputes
 * everything), delete the pods (NotFound is success),
 * create the pods (AlreadyExists is success), record the events, with
 * TJ_FINALIZER_REMOVE patch the job last (a plan that removes the
 * finalizer never writes status), then requeue after requeue_after_ms
 * when it is > 0.
 *
 * Ownership: tj_plan fills caller storage initialised with tj_plan_init;
 * tj_plan_release frees everything in it (manifests, status, messages). */
#ifndef KILN_TJ_PLAN_H
#define KILN_TJ_PLAN_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"
#include "ktime.h"

typedef struct tj_env {
    ktime now;                 /* the wall clock for this reconcile */
    const char *trainer_image; /* image when spec.trainer.image is empty; NULL: the built-in */
    const char *ns;            /* namespace for a job object without one; NULL: "default" */
    const char *controller;    /* reporting identity ("kiln-controller"); informational */
    int stall_after_s;         /* a trial pod Pending this long on an image pull, config or
                                  scheduling problem makes the job Stalled; < 0: 60 */
    int claim_unconfirmed;     /* the job's models claim is not known to exist: the plan asks
                                  for it while a trial is in flight, not only with a new pod */
} tj_env;

typedef struct tj_delete {
    char name[254];     /* pod name in the job's namespace */
    const char *reason; /* static: "retry", "goal-reached", "job-finished", "superseded", "ttl",
                           "job-deleted" */
} tj_delete;

typedef struct tj_event {
    const char *type;   /* static: "Normal" or "Warning" */
    const char *reason; /* static CamelCase: TrialCreated, TrialSucceeded, TrialFailed,
                           TrialRetrying, NewBestTrial, GoalReached, GoalNotReached,
                           TooManyFailedTrials, InvalidSpec, TrialConfigError, SearchStarted,
                           Stalled; for a deleted job (tj_final): CheckpointsDeleted,
                           CheckpointsRetained, CleanupFailed, CheckpointsNotDeleted */
    char *message;      /* owned */
} tj_event;

enum tj_finalizer_op {
    TJ_FINALIZER_KEEP = 0, /* metadata.finalizers stays as it is */
    TJ_FINALIZER_ADD,      /* add kiln.dev/checkpoints */
    TJ_FINALIZER_REMOVE,   /* the clean-up is done: remove it */
};

typedef struct tj_plan_out {
    cJSON **pvcs; /* PersistentVolumeClaims to create (AlreadyExists: fine) */
    int n_pvcs;
    tj_delete *deletes; /* pods to delete */
    int n_deletes;
    cJSON **creates; /* pods to create, in index order */
    int n_creates;
    cJSON *status; /* the whole new .status, or NULL when it would not change */
    tj_event *events;
    int n_events;
    int64_t requeue_after_ms; /* > 0: reconcile again after this long even without a change */
    /* > 0: every unfinished trial's pod is still being started (created,
     * no container run yet, nothing wrong) or its trainer started less
     * than a few seconds ago, for this many ms more; -1: some trial is past
     * that; 0: no trial says (tj_plan_first_write_wait). */
    int64_t quiet_ms;
    int finalizer;         /* enum tj_finalizer_op */
    char *finalizer_patch; /* ADD/REMOVE: JSON merge patch for the job (with its
                              resourceVersion as precondition); owned */
    /* private: capacities */
    int cap_pvcs, cap_deletes, cap_creates, cap_events;
} tj_plan_out;

void tj_plan_init(tj_plan_out *p);
void tj_plan_release(tj_plan_out *p);

/* Computes the plan for job (a TrainingJob with metadata, spec and maybe
 * status) given the pods it owns (any order; pods of other jobs and
 * serving pods are ignored). out must be initialised (tj_plan_init) and
 * is reset first. Returns 0; KILN_EINVAL when the job has no name;
 * KILN_ENOMEM. An invalid spec is not an error: it plans a Stalled status
 * and a Warning event. */
int tj_plan(const cJSON *job, const cJSON *const *pods, int n_pods, const tj_env *env,
            tj_plan_out *out, kiln_error *err);

/* How long the status write of plan p (with the serving side merged in)
 * may wait, in ms; 0: write it now. A job with nothing recorded yet, whose
 * plan does nothing else and reports only pending trials, waits while it
 * is a few seconds old, or while its trial pods are still being started
 * (at most half a minute each) or their trainers are a few seconds into
 * their run: a restarted controller reads the same back from the pods,
 * and a job whose trials end by then gets one write, with its result. On
 * a node starting many pods at once, a pod may wait seconds for its turn
 * to start and then train in milliseconds. */
int64_t tj_plan_first_write_wait(const cJSON *job, const tj_plan_out *p, ktime now);

/* Plan building, shared with tj_final. Each returns 0 or KILN_ENOMEM.
 * add_delete ignores a name already planned; reason must be static;
 * add_create takes ownership of pod (freed on failure). */
int tj_plan_add_delete(tj_plan_out *p, const char *name, const char *reason);
int tj_plan_add_create(tj_plan_out *p, cJSON *pod);
int tj_plan_add_event(tj_plan_out *p, const char *type, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Keeps the earliest requeue: sets requeue_after_ms to ms (at least 1)
 * unless a sooner one is planned. */
void tj_plan_requeue(tj_plan_out *p, int64_t ms);

/* The plan as one JSON object (for logs, the dashboard and tests):
 * {"pvcs":[...],"deletes":[{"name","reason"}],"creates":[...],
 *  "status":{...}|null,"events":[{"type","reason","message"}],
 *  "requeueAfterMs":N,"finalizer":"add"|"remove"|null}. NULL when out of
 * memory. */
cJSON *tj_plan_to_json(const tj_plan_out *p);

#endif
