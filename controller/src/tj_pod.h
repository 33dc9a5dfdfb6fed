/* tj_pod: the manifests a TrainingJob owns, built from its spec: trial
 * pods (one kiln-trainer train run each), serving pods (kiln-trainer
 * serve on the best checkpoint), the Service in front of them, the
 * models PVC the controller creates when spec.storage names no volume,
 * and the clean-up pod that deletes a deleted job's checkpoints.
 *
 * Layout of the models volume (mounted at /models): on the job's own PVC
 * trial i writes /models/t<i>/; on a volume named by spec.storage.volume,
 * which other jobs may share, it writes /models/<namespace>/<job>/t<i>/,
 * so a clean-up can delete one job's directory and nothing else.
 *
 * Every manifest carries an ownerReference to the job (controller: true,
 * blockOwnerDeletion: true) so the garbage collector removes it with the
 * job, and the restricted-profile security context. Trial pods are named
 * deterministically (<job>-t<index>): a restarted controller re-derives
 * them, and creating one twice is an AlreadyExists, never a duplicate.
 *
 * Ownership: every builder returns a new cJSON tree through *out that the
 * caller frees with cJSON_Delete. Spec and params are only read. */
#ifndef KILN_TJ_POD_H
#define KILN_TJ_POD_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"
#include "tj_spec.h"

#define TJ_LABEL_JOB      "kiln.dev/job"
#define TJ_LABEL_TRIAL    "kiln.dev/trial"
#define TJ_LABEL_SERVING  "kiln.dev/serving"
#define TJ_ANN_SEARCH     "kiln.dev/search"  /* the search the trial belongs to (status.search) */
#define TJ_ANN_PARAMS     "kiln.dev/params"  /* the trial's parameters as JSON */
#define TJ_ANN_ATTEMPT    "kiln.dev/attempt" /* 1 for the first run, 2 for the first retry, ... */
#define TJ_ANN_REASON     "kiln.dev/reason"  /* why the strategy chose these parameters */
#define TJ_ANN_CHECKPOINT "kiln.dev/checkpoint"  /* the model a serving pod serves */
#define TJ_LABEL_CLEANUP  "kiln.dev/cleanup"     /* on the clean-up pod: the job's name */
#define TJ_FINALIZER      "kiln.dev/checkpoints" /* held until the job's checkpoints are gone */

#define TJ_TRAINER_BIN "/usr/local/bin/kiln-trainer"
#define TJ_MODELS_DIR  "/models"
#define TJ_RUN_AS_USER 65532

typedef struct tj_trial_pod {
    int index;
    const cJSON *params; /* tune_next's object; warmStartFrom/extraEpochs honoured */
    int attempt;         /* >= 1; > 1 adds --resume */
    int resume;          /* add --resume anyway (a pod recreated after it vanished) */
    const char *search;  /* status.search of the search that planned it */
    const char *reason;  /* the strategy's reason, or NULL */
} tj_trial_pod;

/* "<job>-t<index>" into buf. KILN_EINVAL when it does not fit. */
int tj_pod_trial_name(const tj_spec *s, int index, char *buf, size_t n);

/* The config JSON a trial runs: the spec's data (pvc:// rewritten to the
 * in-pod path) and objective, with model and training from params; for a
 * warm start, epochs = extraEpochs. Only the keys the trainer accepts. */
int tj_pod_trial_config(const tj_spec *s, const cJSON *params, cJSON **out, kiln_error *err);

/* The trial pod manifest. */
int tj_pod_trial(const tj_spec *s, const tj_trial_pod *t, cJSON **out, kiln_error *err);

/* A serving pod (generateName "<job>-serve-") serving checkpoint. */
int tj_pod_serving(const tj_spec *s, const char *checkpoint, cJSON **out, kiln_error *err);

/* The Service "<job>" in front of the serving pods. */
int tj_pod_service(const tj_spec *s, cJSON **out, kiln_error *err);

/* The PVC "<job>-models" (spec.storage.size, ReadWriteOnce); owned by the
 * job unless spec.storage.retain. */
int tj_pod_models_pvc(const tj_spec *s, cJSON **out, kiln_error *err);

/* The name of that PVC; KILN_EINVAL when it does not fit in n. */
int tj_pod_models_pvc_name(const tj_spec *s, char *buf, size_t n);

/* When the stored PVC pvc disagrees with spec.storage.retain (owned by the
 * job though retained, so the garbage collector would delete it with the
 * job, or not owned though not retained, so it would outlive the job),
 * *out gets the JSON merge patch of metadata.ownerReferences that settles
 * it; else *out is NULL. The caller frees *out. */
int tj_pod_claim_owner_patch(const tj_spec *s, const cJSON *pvc, char **out, kiln_error *err);

/* 1 when the job's models live on the controller's PVC. */
int tj_pod_uses_models_pvc(const tj_spec *s);

/* The in-pod directory the job's trials write under (no trailing slash):
 * "/models" on the job's own PVC, "/models/<ns>/<job>" on a shared
 * volume. KILN_EINVAL when it does not fit. */
int tj_pod_models_dir(const tj_spec *s, char *buf, size_t n);

/* "<job>-cleanup" into buf. KILN_EINVAL when it does not fit. */
int tj_pod_cleanup_name(const tj_spec *s, char *buf, size_t n);

/* The clean-up pod "<job>-cleanup": kiln-trainer clean on the job's
 * directory of the storage volume (mounted whole at /models, with the
 * trial pods' security context), owned by the job. attempt (>= 1) goes
 * into the kiln.dev/attempt annotation. */
int tj_pod_cleanup(const tj_spec *s, int attempt, cJSON **out, kiln_error *err);

#endif
