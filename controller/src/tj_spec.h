/* tj_spec: a TrainingJob's spec read into one struct with every default
 * applied, and the cross-field rules the CRD states as CEL checked here
 * (kubelite does not evaluate CEL, and a real API server may run without
 * the CRD's defaults), so a bad spec becomes a Stalled condition with a
 * clear message instead of a trainer crash loop.
 *
 * Reading is tolerant: missing or mistyped members take their defaults.
 * tj_spec_check then reports the first rule a spec breaks.
 *
 * Ownership: a tj_spec borrows from the job object it was read from (keep
 * the job alive while using it); the fixed buffers inside are its own. */
#ifndef KILN_TJ_SPEC_H
#define KILN_TJ_SPEC_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"

#define TJ_DEFAULT_IMAGE      "ghcr.io/kiln-dev/kiln-trainer:0.1.0"
#define TJ_API_VERSION        "kiln.dev/v1alpha1"
#define TJ_KIND               "TrainingJob"
#define TJ_RETRAIN_ANNOTATION "kiln.dev/retrain"

typedef struct tj_spec {
    const cJSON *job;  /* the whole object */
    const cJSON *spec; /* job.spec; never NULL after tj_spec_read (an empty object stands in) */
    const char *name;
    const char *ns;
    const char *uid;     /* "" when absent (a job not yet stored) */
    int64_t generation;  /* metadata.generation, 0 when absent */
    const char *retrain; /* the kiln.dev/retrain annotation, or NULL */

    /* data */
    const char *data_uri;    /* as written in the spec ("" when absent) */
    char data_claim[254];    /* the claim of a pvc://CLAIM/PATH uri, else "" */
    char pod_data_uri[1100]; /* the uri as trial pods see it (pvc:// rewritten to file:///data/...)
                              */

    /* model and objective */
    const char *family; /* auto | mlp | cnn | kmeans | logistic */
    const char *metric; /* accuracy | f1 | auc | loss | wcss | silhouette */
    double goal;

    /* tuning */
    const char *strategy;
    int max_trials;
    int parallelism;
    int max_failed;
    int on_goal_finish; /* 1: tuning.onGoal finish; 0: stop */

    /* trainer */
    const char *image;
    const cJSON *resources; /* spec.trainer.resources or NULL */
    int64_t active_deadline_s;
    int backoff_limit;
    int64_t ttl_s; /* ttlSecondsAfterFinished */

    /* storage: either a pod volume source, or the controller's own PVC */
    const cJSON *storage_volume; /* NULL: use the PVC <job>-models */
    const char *storage_size;
    int storage_retain;

    /* serving */
    int serving_enabled;
    int serving_replicas;
    int serving_port;
} tj_spec;

/* Reads job (a TrainingJob object) into *out. default_image replaces the
 * built-in trainer image when the spec names none (NULL: built-in).
 * Returns 0, or KILN_EINVAL when the object has no metadata.name (nothing
 * can be planned for it). A bad spec still reads: see tj_spec_check. */
int tj_spec_read(const cJSON *job, const char *default_image, tj_spec *out, kiln_error *err);

/* Checks the rules the schema and its CEL expressions state, plus the
 * trainer's own cross-field rules. Returns 0, or KILN_EINVAL with
 * "spec.field: what is wrong" in err. */
int tj_spec_check(const tj_spec *s, kiln_error *err);

/* 1 when metric applies to unsupervised (k-means) models: wcss, silhouette. */
int tj_spec_metric_unsupervised(const char *metric);

#endif
