/* ctrl_claims: the models claims (<job>-models) the controller creates
 * for jobs without spec.storage: which of them this process knows exist,
 * and their creation on threads of their own, off the reconcile's
 * path.
 *
 * A reconcile that launches a trial hands the job's claims over and goes
 * on to create the trial pod at once: the pod does not wait for the
 * claim's round trip, and a burst of new jobs does not spend its workers
 * (or a thread each) on claims. A scheduler keeps a pod Pending until its
 * claim exists, so the claim only has to follow shortly.
 *
 * Nothing is lost on a failure or a restart: a job whose claim is not
 * known to exist gets it asked for again by every reconcile while a trial
 * of its is in flight (tj_env.claim_unconfirmed); a create that fails is
 * logged, recorded as a Warning Event on the job and queues the job again
 * with back-off. AlreadyExists counts as created.
 *
 * The creators run CTRL_CLAIMS_NICE steps of niceness below the rest of
 * the controller (knice.h): in a burst of new jobs their creates would
 * otherwise take their share of the controller's CPU from the reconciles
 * that create the trial pods. controller_bench (1,000 jobs at once), in
 * alternating runs: apply-to-first-pod p99 under 100 ms in 10 of 12 runs
 * with them at nice 10 and 6 of 12 without, the work queue's wait p99
 * under 25 ms in every run with them and over 100 ms in half without,
 * time to all Succeeded the same (11.5-14.8 s).
 *
 * Thread-safe. Keys are "ns/job"; a claim is known per job uid, so a job
 * deleted and created again under the same name gets its claim again. */
#ifndef CTRL_CLAIMS_H
#define CTRL_CLAIMS_H

#include <cjson/cJSON.h>

#include "kube_client.h"
#include "kube_event.h"
#include "kube_queue.h"

/* How much nicer than the controller the claims' creators are. */
#define CTRL_CLAIMS_NICE 10

typedef struct ctrl_claims ctrl_claims;

/* Starts `threads` creators (at least 1). client, events and q are
 * borrowed and must outlive the claims. Returns 0 or KILN_ENOMEM. */
int ctrl_claims_new(kube_client *client, kube_recorder *events, kube_queue *q, int threads,
                    ctrl_claims **out);
/* Joins the creators; creates still queued are dropped (a later reconcile
 * asks for them again). Idempotent. */
void ctrl_claims_stop(ctrl_claims *cl);
void ctrl_claims_free(ctrl_claims *cl);

/* 1 when job key (of this uid) has its claims created or found existing. */
int ctrl_claims_known(ctrl_claims *cl, const char *key, const char *uid);
/* The job is gone: forgets what is known of it and drops its queued create. */
void ctrl_claims_forget(ctrl_claims *cl, const char *key);

/* Queues the creation of the n claims of job key (uid) in namespace ns;
 * the claims are copied. Nothing is queued while a create of the same job
 * is queued or under way. Returns 0 or KILN_ENOMEM. */
int ctrl_claims_create(ctrl_claims *cl, const char *key, const char *uid, const char *ns,
                       const cJSON *const *pvcs, int n);

/* Creates sent to the API server, and those that failed. */
long ctrl_claims_writes(ctrl_claims *cl);
long ctrl_claims_failures(ctrl_claims *cl);
/* Creates queued or under way. */
size_t ctrl_claims_pending(ctrl_claims *cl);

#endif
