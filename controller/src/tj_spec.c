/* tj_spec: TrainingJob spec defaults and validation (see tj_spec.h). */
#include "tj_spec.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kquantity.h"
#include "tj_json.h"

/* ------------------------------------------------------------ reading */

static int clamp_int(int64_t v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : (int)v;
}

/* Splits pvc://CLAIM/PATH; 0 when the uri has that form with both parts. */
static int split_pvc(const char *uri, char *claim, size_t claim_sz, const char **path)
{
    if (strncmp(uri, "pvc://", 6) != 0)
        return -1;
    const char *c = uri + 6;
    const char *slash = strchr(c, '/');
    if (!slash || slash == c || (size_t)(slash - c) >= claim_sz || !slash[1])
        return -1;
    memcpy(claim, c, (size_t)(slash - c));
    claim[slash - c] = '\0';
    *path = slash + 1;
    return 0;
}

int tj_spec_read(const cJSON *job, const char *default_image, tj_spec *out, kiln_error *err)
{
    static const cJSON empty = {.type = cJSON_Object};
    memset(out, 0, sizeof *out);
    out->job = job;
    out->name = tj_json_str(job, "metadata.name", NULL);
    if (!out->name || !*out->name)
        return kiln_fail(err, KILN_EINVAL, "TrainingJob without metadata.name");
    out->ns = tj_json_str(job, "metadata.namespace", "default");
    out->uid = tj_json_str(job, "metadata.uid", "");
    out->generation = tj_json_int(job, "metadata.generation", 0);
    const cJSON *ann = tj_json_path(job, "metadata.annotations");
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(ann, TJ_RETRAIN_ANNOTATION);
    out->retrain = cJSON_IsString(rt) && rt->valuestring[0] ? rt->valuestring : NULL;

    const cJSON *s = tj_json_path(job, "spec");
    out->spec = cJSON_IsObject(s) ? s : &empty;
    s = out->spec;

    out->data_uri = tj_json_str(s, "data.uri", "");
    const char *path = NULL;
    if (split_pvc(out->data_uri, out->data_claim, sizeof out->data_claim, &path) == 0)
        snprintf(out->pod_data_uri, sizeof out->pod_data_uri, "file:///data/%s/%s", out->data_claim,
                 path);
    else
        snprintf(out->pod_data_uri, sizeof out->pod_data_uri, "%s", out->data_uri);

    out->family = tj_json_str(s, "model.family", "auto");
    out->metric = tj_json_str(s, "objective.metric", "accuracy");
    out->goal = tj_json_num(s, "objective.goal", 0.8);

    out->strategy = tj_json_str(s, "tuning.strategy", "adaptive");
    out->max_trials = clamp_int(tj_json_int(s, "tuning.maxTrials", 8), 1, 1000);
    out->parallelism = clamp_int(tj_json_int(s, "tuning.parallelism", 1), 1, 64);
    out->max_failed = clamp_int(tj_json_int(s, "tuning.maxFailedTrials", 3), 1, 1000);
    out->on_goal_finish = strcmp(tj_json_str(s, "tuning.onGoal", "stop"), "finish") == 0;

    const char *img = tj_json_str(s, "trainer.image", "");
    out->image = *img ? img : default_image && *default_image ? default_image : TJ_DEFAULT_IMAGE;
    const cJSON *res = tj_json_path(s, "trainer.resources");
    out->resources = cJSON_IsObject(res) ? res : NULL;
    out->active_deadline_s = tj_json_int(s, "trainer.activeDeadlineSeconds", 3600);
    if (out->active_deadline_s < 1)
        out->active_deadline_s = 3600;
    out->backoff_limit = clamp_int(tj_json_int(s, "trainer.backoffLimit", 2), 0, 100);
    out->ttl_s = tj_json_int(s, "trainer.ttlSecondsAfterFinished", 600);
    if (out->ttl_s < 0)
        out->ttl_s = 600;

    const cJSON *vol = tj_json_path(s, "storage.volume");
    out->storage_volume = cJSON_IsObject(vol) && vol->child ? vol : NULL;
    out->storage_size = tj_json_str(s, "storage.size", "1Gi");
    out->storage_retain = tj_json_bool(s, "storage.retain", 0);

    out->serving_enabled = tj_json_bool(s, "serving.enabled", 1);
    out->serving_replicas = clamp_int(tj_json_int(s, "serving.replicas", 1), 0, 100);
    out->serving_port = clamp_int(tj_json_int(s, "serving.port", 8080), 1, 65535);
    return 0;
}

/* ------------------------------------------------------------ checking */

static int one_of(const char *v, const char *const *set)
{
    for (; *set; set++) {
        if (!strcmp(v, *set))
            return 1;
    }
    return 0;
}

/* A present member must be a string in set. */
static int check_enum(const cJSON *s, const char *path, const char *const *set, kiln_error *err)
{
    const cJSON *v = tj_json_path(s, path);
    if (!v)
        return 0;
    if (!cJSON_IsString(v) || !one_of(v->valuestring, set))
        return kiln_fail(err, KILN_EINVAL, "spec.%s: unsupported value", path);
    return 0;
}

/* A present member must be an integer within [lo, hi]. */
static int check_int(const cJSON *s, const char *path, double lo, double hi, kiln_error *err)
{
    const cJSON *v = tj_json_path(s, path);
    if (!v)
        return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return kiln_fail(err, KILN_EINVAL, "spec.%s: must be an integer in [%.0f, %.0f]", path, lo,
                         hi);
    return 0;
}

static int check_num(const cJSON *s, const char *path, double lo, double hi, kiln_error *err)
{
    const cJSON *v = tj_json_path(s, path);
    if (!v)
        return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return kiln_fail(err, KILN_EINVAL, "spec.%s: must be a number in [%g, %g]", path, lo, hi);
    return 0;
}

static int check_obj(const cJSON *s, const char *path, kiln_error *err)
{
    const cJSON *v = tj_json_path(s, path);
    if (v && !cJSON_IsObject(v))
        return kiln_fail(err, KILN_EINVAL, "spec.%s: must be an object", path);
    return 0;
}

/* RFC 1123 subdomain (a claim name) or, with label set, an RFC 1035 label
 * (a Service name). */
static int dns_name(const char *n, int label)
{
    size_t len = strlen(n);
    if (len == 0 || len > (label ? 63u : 253u))
        return 0;
    if (label && !(n[0] >= 'a' && n[0] <= 'z'))
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        int ok =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || (!label && c == '.');
        if (!ok)
            return 0;
    }
    return n[0] != '-' && n[len - 1] != '-' && n[len - 1] != '.';
}

int tj_spec_metric_unsupervised(const char *metric)
{
    return !strcmp(metric, "wcss") || !strcmp(metric, "silhouette");
}

static int check_data(const tj_spec *t, kiln_error *err)
{
    const cJSON *s = t->spec;
    const char *u = t->data_uri;
    if (!cJSON_IsObject(tj_json_path(s, "data")))
        return kiln_fail(err, KILN_EINVAL, "spec.data: required");
    if (!*u)
        return kiln_fail(err, KILN_EINVAL, "spec.data.uri: required");
    static const char *const schemes[] = {"file://", "http://", "https://", "pvc://", "/", NULL};
    int scheme_ok = 0;
    for (const char *const *p = schemes; *p && !scheme_ok; p++)
        scheme_ok = strncmp(u, *p, strlen(*p)) == 0 && strlen(u) > strlen(*p);
    if (!scheme_ok)
        return kiln_fail(
            err, KILN_EINVAL,
            "spec.data.uri: '%s' is not file://, http(s)://, pvc://CLAIM/PATH or /path", u);
    if (strncmp(u, "pvc://", 6) == 0) {
        const char *path = NULL;
        char claim[254];
        if (split_pvc(u, claim, sizeof claim, &path) != 0 || !dns_name(claim, 0))
            return kiln_fail(err, KILN_EINVAL,
                             "spec.data.uri: '%s' must be pvc://CLAIM/PATH with a valid claim name",
                             u);
        if (strstr(path, "..") || strlen(u) + 16 >= sizeof t->pod_data_uri)
            return kiln_fail(err, KILN_EINVAL, "spec.data.uri: '%s': bad path in the claim", u);
    }
    static const char *const formats[] = {"idx", "csv", NULL};
    int rc = check_enum(s, "data.format", formats, err);
    if (!rc)
        rc = check_num(s, "data.validationSplit", 0, 0.9, err);
    if (!rc)
        rc = check_int(s, "data.folds", 0, 100, err);
    if (!rc && tj_json_int(s, "data.folds", 0) == 1)
        rc = kiln_fail(err, KILN_EINVAL,
                       "spec.data.folds: 1 is not a cross-validation; use 0 or >= 2");
    if (!rc)
        rc = check_int(s, "data.maxSamples", 0, 2e9, err);
    return rc;
}

static int check_model(const tj_spec *t, kiln_error *err)
{
    const cJSON *s = t->spec;
    static const char *const families[] = {"auto", "mlp", "cnn", "kmeans", "logistic", NULL};
    static const char *const optimizers[] = {"adam", "sgd", NULL};
    static const char *const metrics[] = {"accuracy", "f1",         "auc", "loss",
                                          "wcss",     "silhouette", NULL};
    int rc = check_enum(s, "model.family", families, err);
    if (!rc)
        rc = check_int(s, "model.kmeans.clusters", 0, 1000, err);
    if (!rc)
        rc = check_int(s, "model.kmeans.maxClusters", 1, 1000, err);
    if (!rc) {
        int64_t k = tj_json_int(s, "model.kmeans.clusters", 0);
        int64_t maxk = tj_json_int(s, "model.kmeans.maxClusters", 12);
        if (k > maxk)
            rc = kiln_fail(err, KILN_EINVAL,
                           "spec.model.kmeans.clusters: %lld exceeds maxClusters %lld",
                           (long long)k, (long long)maxk);
    }
    if (!rc)
        rc = check_num(s, "model.mlp.dropout", 0, 0.95, err);
    if (!rc)
        rc = check_int(s, "training.epochs", 1, 100000, err);
    if (!rc)
        rc = check_int(s, "training.batchSize", 1, 65536, err);
    if (!rc)
        rc = check_num(s, "training.learningRate", 1e-12, 100, err);
    if (!rc)
        rc = check_enum(s, "training.optimizer", optimizers, err);
    if (!rc)
        rc = check_enum(s, "objective.metric", metrics, err);
    if (!rc)
        rc = check_num(s, "objective.goal", -1e300, 1e300, err);
    if (rc)
        return rc;

    const char *m = t->metric;
    double g = t->goal;
    if ((!strcmp(m, "accuracy") || !strcmp(m, "f1") || !strcmp(m, "auc")) && (g < 0 || g > 1))
        return kiln_fail(err, KILN_EINVAL,
                         "spec.objective.goal: %g must be within [0, 1] for accuracy, f1 and auc",
                         g);
    if (!strcmp(m, "silhouette") && (g < -1 || g > 1))
        return kiln_fail(err, KILN_EINVAL,
                         "spec.objective.goal: %g must be within [-1, 1] for silhouette", g);
    if ((!strcmp(m, "loss") || !strcmp(m, "wcss")) && g < 0)
        return kiln_fail(err, KILN_EINVAL, "spec.objective.goal: %g must be >= 0 for %s", g, m);
    /* "auto" resolves from the data inside the trainer, so only an explicit
     * family can be checked against the metric here. */
    int unsup = tj_spec_metric_unsupervised(m);
    if (!strcmp(t->family, "kmeans") && !unsup)
        return kiln_fail(
            err, KILN_EINVAL,
            "spec.objective.metric: %s does not apply to kmeans (use wcss or silhouette)", m);
    if (strcmp(t->family, "kmeans") && strcmp(t->family, "auto") && unsup)
        return kiln_fail(err, KILN_EINVAL,
                         "spec.objective.metric: %s applies only to kmeans, not to %s", m,
                         t->family);
    return 0;
}

static int check_tuning(const tj_spec *t, kiln_error *err)
{
    const cJSON *s = t->spec;
    static const char *const strategies[] = {"adaptive", "ladder", "random", "grid", NULL};
    static const char *const on_goal[] = {"stop", "finish", NULL};
    int rc = check_enum(s, "tuning.strategy", strategies, err);
    if (!rc)
        rc = check_int(s, "tuning.maxTrials", 1, 1000, err);
    if (!rc)
        rc = check_int(s, "tuning.parallelism", 1, 64, err);
    if (!rc)
        rc = check_int(s, "tuning.maxFailedTrials", 1, 1000, err);
    if (!rc)
        rc = check_enum(s, "tuning.onGoal", on_goal, err);
    if (!rc)
        rc = check_obj(s, "tuning.searchSpace", err);
    if (!rc && t->parallelism > t->max_trials)
        rc = kiln_fail(err, KILN_EINVAL,
                       "spec.tuning.parallelism: %d cannot exceed tuning.maxTrials %d",
                       t->parallelism, t->max_trials);
    return rc;
}

static int check_runtime(const tj_spec *t, kiln_error *err)
{
    const cJSON *s = t->spec;
    int rc = check_int(s, "trainer.activeDeadlineSeconds", 1, 4e15, err);
    if (!rc)
        rc = check_int(s, "trainer.backoffLimit", 0, 100, err);
    if (!rc)
        rc = check_int(s, "trainer.ttlSecondsAfterFinished", 0, 4e15, err);
    if (!rc)
        rc = check_obj(s, "trainer.resources", err);
    if (!rc)
        rc = check_obj(s, "storage.volume", err);
    if (!rc && tj_json_path(s, "trainer.image") &&
        !cJSON_IsString(tj_json_path(s, "trainer.image")))
        rc = kiln_fail(err, KILN_EINVAL, "spec.trainer.image: must be a string");
    if (!rc && !t->storage_volume) {
        kquantity q;
        kiln_error qerr = {0};
        if (kquantity_parse(t->storage_size, &q, &qerr) != 0 || q.value <= 0)
            rc = kiln_fail(err, KILN_EINVAL, "spec.storage.size: '%s' is not a positive quantity",
                           t->storage_size);
    }
    if (!rc)
        rc = check_int(s, "serving.port", 1, 65535, err);
    if (!rc)
        rc = check_int(s, "serving.replicas", 0, 100, err);
    return rc;
}

int tj_spec_check(const tj_spec *t, kiln_error *err)
{
    /* Trial pods carry the job name as a label value (63 characters at
     * most) and the Service is named after the job (an RFC 1035 label). */
    if (strlen(t->name) > 63)
        return kiln_fail(err, KILN_EINVAL,
                         "metadata.name: longer than 63 characters; pod labels cannot hold it");
    if (t->serving_enabled && !dns_name(t->name, 1))
        return kiln_fail(err, KILN_EINVAL,
                         "metadata.name: '%s' is not a DNS-1035 label, which the serving Service "
                         "needs (or set spec.serving.enabled: false)",
                         t->name);
    int rc = check_data(t, err);
    if (!rc)
        rc = check_model(t, err);
    if (!rc)
        rc = check_tuning(t, err);
    if (!rc)
        rc = check_runtime(t, err);
    return rc;
}
