/* Tests for tj_pod: trial config and pod details the plan tests leave
 * out (pvc:// data, a given storage volume, resources, warm start, the
 * OpenBLAS thread count), the serving pod, its Service and the models
 * PVC. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ktest.h"
#include "tj_json.h"
#include "tj_pod.h"

static cJSON *job_with(const char *spec)
{
    char buf[2048];
    snprintf(
        buf, sizeof buf,
        "{\"metadata\":{\"name\":\"iris\",\"namespace\":\"ml\",\"uid\":\"u-9\",\"generation\":2},"
        "\"spec\":%s}",
        spec);
    cJSON *j = cJSON_Parse(buf);
    if (!j)
        fprintf(stderr, "bad JSON: %s\n", buf);
    return j;
}

static const cJSON *container(const cJSON *pod)
{
    return cJSON_GetArrayItem(tj_json_path(pod, "spec.containers"), 0);
}

static const cJSON *volume(const cJSON *pod, const char *name)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, tj_json_path(pod, "spec.volumes"))
    {
        if (!strcmp(tj_json_str(v, "name", ""), name))
            return v;
    }
    return NULL;
}

static const cJSON *mount_at(const cJSON *pod, const char *path)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, tj_json_path(container(pod), "volumeMounts"))
    {
        if (!strcmp(tj_json_str(m, "mountPath", ""), path))
            return m;
    }
    return NULL;
}

static const char *arg(const cJSON *pod, int i)
{
    const cJSON *a = cJSON_GetArrayItem(tj_json_path(container(pod), "args"), i);
    return a ? a->valuestring : "";
}

static void test_pvc_data_and_given_volume(void)
{
    cJSON *job = job_with(
        "{\"data\":{\"uri\":\"pvc://datasets/iris/iris.csv\",\"label\":4,"
        "\"preprocessing\":{\"scale\":\"minmax\"},\"bogus\":1},"
        "\"storage\":{\"volume\":{\"persistentVolumeClaim\":{\"claimName\":\"kiln-models\"}}},"
        "\"trainer\":{\"image\":\"registry.local/kiln-trainer:dev\","
        "\"resources\":{\"limits\":{\"cpu\":\"2\",\"memory\":\"1Gi\"}},"
        "\"activeDeadlineSeconds\":120}}");
    tj_spec s;
    kiln_error err = {0};
    KT_EQ_INT(tj_spec_read(job, NULL, &s, &err), 0);
    KT_EQ_INT(tj_spec_check(&s, &err), 0);
    KT_CHECK(!strcmp(s.pod_data_uri, "file:///data/datasets/iris/iris.csv"));
    cJSON *params = cJSON_Parse(
        "{\"family\":\"mlp\",\"hiddenLayers\":[16,8],\"epochs\":7,\"learningRate\":0.01,"
        "\"unknownKnob\":3}");
    tj_trial_pod t = {.index = 4, .params = params, .attempt = 3, .search = "g2 t3"};
    cJSON *pod = NULL;
    KT_EQ_INT(tj_pod_trial(&s, &t, &pod, &err), 0);
    KT_CHECK(!strcmp(tj_json_str(pod, "metadata.name", ""), "iris-t4"));
    KT_CHECK(!strcmp(tj_json_str(container(pod), "image", ""), "registry.local/kiln-trainer:dev"));
    KT_CHECK(!strcmp(tj_json_str(container(pod), "resources.limits.memory", ""), "1Gi"));
    KT_EQ_INT(tj_json_int(pod, "spec.activeDeadlineSeconds", 0), 120);
    KT_CHECK(!strcmp(tj_json_str(volume(pod, "models"), "persistentVolumeClaim.claimName", ""),
                     "kiln-models"));
    const cJSON *data = volume(pod, "data");
    KT_CHECK(!strcmp(tj_json_str(data, "persistentVolumeClaim.claimName", ""), "datasets"));
    KT_CHECK(tj_json_bool(mount_at(pod, "/data/datasets"), "readOnly", 0));
    KT_CHECK(mount_at(pod, "/models") != NULL && mount_at(pod, "/tmp") != NULL);
    /* A claim named in the spec may be shared: the job writes under its
     * own <namespace>/<name> directory there. */
    char want[128];
    snprintf(want, sizeof want, "/models/%s/iris/t4", s.ns);
    KT_CHECK(!strcmp(arg(pod, 4), want));
    KT_CHECK(!strcmp(arg(pod, 7), "--resume")); /* attempt 3 */
    cJSON *cfg = cJSON_Parse(arg(pod, 2));
    KT_CHECK(!strcmp(tj_json_str(cfg, "data.uri", ""), "file:///data/datasets/iris/iris.csv"));
    KT_EQ_INT(tj_json_int(cfg, "data.label", -1), 4);
    KT_CHECK(!strcmp(tj_json_str(cfg, "data.preprocessing.scale", ""), "minmax"));
    KT_CHECK(tj_json_path(cfg, "data.bogus") == NULL);
    KT_EQ_INT(cJSON_GetArraySize(tj_json_path(cfg, "model.mlp.hiddenLayers")), 2);
    KT_EQ_INT(tj_json_int(cfg, "training.epochs", 0), 7);
    KT_NEAR(tj_json_num(cfg, "training.learningRate", 0), 0.01, 1e-12);
    KT_CHECK(strstr(arg(pod, 2), "unknownKnob") == NULL);
    cJSON_Delete(cfg);
    cJSON_Delete(pod);
    cJSON_Delete(params);
    cJSON_Delete(job);
}

static void test_warm_start(void)
{
    cJSON *job = job_with("{\"data\":{\"uri\":\"/d.csv\"}}");
    tj_spec s;
    tj_spec_read(job, "img:custom", &s, NULL);
    KT_CHECK(!strcmp(s.image, "img:custom"));
    cJSON *params =
        cJSON_Parse("{\"family\":\"mlp\",\"epochs\":8,\"warmStartFrom\":2,\"extraEpochs\":4}");
    tj_trial_pod t = {.index = 5, .params = params, .attempt = 1};
    cJSON *pod = NULL;
    kiln_error err = {0};
    KT_EQ_INT(tj_pod_trial(&s, &t, &pod, &err), 0);
    KT_CHECK(!strcmp(arg(pod, 7), "--warm-start"));
    KT_CHECK(!strcmp(arg(pod, 8), "/models/t2/model.kiln"));
    cJSON *cfg = cJSON_Parse(arg(pod, 2));
    KT_EQ_INT(tj_json_int(cfg, "training.epochs", 0), 4);
    cJSON_Delete(cfg);
    cJSON_Delete(pod);
    cJSON_Delete(params);
    cJSON_Delete(job);
}

static void test_serving_pod_and_service(void)
{
    cJSON *job = job_with("{\"data\":{\"uri\":\"/d.csv\"},\"serving\":{\"port\":9090}}");
    tj_spec s;
    tj_spec_read(job, NULL, &s, NULL);
    cJSON *pod = NULL, *svc = NULL;
    kiln_error err = {0};
    KT_EQ_INT(tj_pod_serving(&s, "/models/t3/model.kiln", &pod, &err), 0);
    KT_CHECK(!strcmp(tj_json_str(pod, "metadata.generateName", ""), "iris-serve-"));
    KT_CHECK(tj_json_path(pod, "metadata.name") == NULL);
    const cJSON *labels = tj_json_path(pod, "metadata.labels");
    KT_CHECK(!strcmp(tj_json_key_str(labels, "kiln.dev/serving", ""), "iris"));
    KT_CHECK(cJSON_GetObjectItem(labels, "kiln.dev/trial") == NULL);
    const cJSON *ref = cJSON_GetArrayItem(tj_json_path(pod, "metadata.ownerReferences"), 0);
    KT_CHECK(!strcmp(tj_json_str(ref, "uid", ""), "u-9") && tj_json_bool(ref, "controller", 0));
    const char *want[] = {"serve",  "--model",   "/models/t3/model.kiln",
                          "--name", "iris",      "--port",
                          "9090",   "--address", "$(POD_IP)"};
    for (int i = 0; i < 9; i++)
        KT_CHECK(!strcmp(arg(pod, i), want[i]));
    const cJSON *env = cJSON_GetArrayItem(tj_json_path(container(pod), "env"), 0);
    KT_CHECK(!strcmp(tj_json_str(env, "name", ""), "POD_IP"));
    KT_CHECK(!strcmp(tj_json_str(env, "valueFrom.fieldRef.fieldPath", ""), "status.podIP"));
    KT_CHECK(!strcmp(tj_json_str(container(pod), "readinessProbe.httpGet.path", ""), "/readyz"));
    KT_EQ_INT(tj_json_int(container(pod), "readinessProbe.httpGet.port", 0), 9090);
    KT_CHECK(!strcmp(tj_json_str(container(pod), "livenessProbe.httpGet.path", ""), "/healthz"));
    KT_CHECK(tj_json_bool(container(pod), "securityContext.readOnlyRootFilesystem", 0));
    KT_CHECK(!strcmp(tj_json_str(volume(pod, "models"), "persistentVolumeClaim.claimName", ""),
                     "iris-models"));
    KT_EQ_INT(tj_pod_serving(&s, "", &pod, &err), KILN_EINVAL);

    KT_EQ_INT(tj_pod_service(&s, &svc, &err), 0);
    KT_CHECK(!strcmp(tj_json_str(svc, "metadata.name", ""), "iris"));
    KT_CHECK(!strcmp(tj_json_key_str(tj_json_path(svc, "spec.selector"), "kiln.dev/serving", ""),
                     "iris"));
    KT_EQ_INT(tj_json_int(cJSON_GetArrayItem(tj_json_path(svc, "spec.ports"), 0), "port", 0), 9090);
    cJSON_Delete(pod);
    cJSON_Delete(svc);
    cJSON_Delete(job);
}

static void test_models_pvc(void)
{
    cJSON *job =
        job_with("{\"data\":{\"uri\":\"/d.csv\"},\"storage\":{\"size\":\"5Gi\",\"retain\":true}}");
    tj_spec s;
    tj_spec_read(job, NULL, &s, NULL);
    KT_CHECK(tj_pod_uses_models_pvc(&s));
    cJSON *pvc = NULL;
    KT_EQ_INT(tj_pod_models_pvc(&s, &pvc, NULL), 0);
    KT_CHECK(!strcmp(tj_json_str(pvc, "metadata.name", ""), "iris-models"));
    KT_CHECK(!strcmp(tj_json_str(pvc, "spec.resources.requests.storage", ""), "5Gi"));
    /* retain: not owned, so deleting the job keeps the models. */
    KT_CHECK(tj_json_path(pvc, "metadata.ownerReferences") == NULL);
    cJSON_Delete(pvc);
    cJSON_Delete(job);
}

/* The claim's owner reference follows spec.storage.retain when it changes
 * after the claim was made; another owner stays. */
static void test_claim_owner_follows_retain(void)
{
    static const char *const OWNED =
        "{\"metadata\":{\"name\":\"iris-models\",\"resourceVersion\":\"17\","
        "\"ownerReferences\":[{\"kind\":\"Backup\",\"name\":\"b\",\"uid\":\"u-other\"},"
        "{\"kind\":\"TrainingJob\",\"name\":\"iris\",\"uid\":\"u-9\",\"controller\":true}]}}";
    static const char *const FREE =
        "{\"metadata\":{\"name\":\"iris-models\",\"resourceVersion\":\"18\"}}";
    cJSON *keep = job_with("{\"data\":{\"uri\":\"/d.csv\"},\"storage\":{\"retain\":true}}");
    cJSON *drop = job_with("{\"data\":{\"uri\":\"/d.csv\"},\"storage\":{\"retain\":false}}");
    tj_spec sk, sd;
    tj_spec_read(keep, NULL, &sk, NULL);
    tj_spec_read(drop, NULL, &sd, NULL);
    cJSON *owned = cJSON_Parse(OWNED), *free_ = cJSON_Parse(FREE);
    char *patch = NULL;

    /* agreeing: nothing to do */
    KT_EQ_INT(tj_pod_claim_owner_patch(&sd, owned, &patch, NULL), 0);
    KT_CHECK(patch == NULL);
    KT_EQ_INT(tj_pod_claim_owner_patch(&sk, free_, &patch, NULL), 0);
    KT_CHECK(patch == NULL);

    /* retained now: our reference goes, the other stays */
    KT_EQ_INT(tj_pod_claim_owner_patch(&sk, owned, &patch, NULL), 0);
    cJSON *p = cJSON_Parse(patch ? patch : "");
    const cJSON *refs = tj_json_path(p, "metadata.ownerReferences");
    KT_EQ_INT(cJSON_GetArraySize(refs), 1);
    KT_CHECK(!strcmp(tj_json_str(cJSON_GetArrayItem(refs, 0), "uid", ""), "u-other"));
    KT_CHECK(!strcmp(tj_json_str(p, "metadata.resourceVersion", ""), "17"));
    cJSON_Delete(p);
    free(patch);
    patch = NULL;

    /* no longer retained: the job becomes the controlling owner */
    KT_EQ_INT(tj_pod_claim_owner_patch(&sd, free_, &patch, NULL), 0);
    p = cJSON_Parse(patch ? patch : "");
    refs = tj_json_path(p, "metadata.ownerReferences");
    KT_EQ_INT(cJSON_GetArraySize(refs), 1);
    KT_CHECK(!strcmp(tj_json_str(cJSON_GetArrayItem(refs, 0), "uid", ""), "u-9"));
    KT_CHECK(tj_json_bool(cJSON_GetArrayItem(refs, 0), "controller", 0));
    cJSON_Delete(p);
    free(patch);

    cJSON_Delete(owned);
    cJSON_Delete(free_);
    cJSON_Delete(keep);
    cJSON_Delete(drop);
}

static const char *env_value(const cJSON *pod, const char *name)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, tj_json_path(container(pod), "env"))
    {
        if (!strcmp(tj_json_str(e, "name", ""), name))
            return tj_json_str(e, "value", "");
    }
    return NULL;
}

/* The OPENBLAS_NUM_THREADS a trial of spec gets with params (JSON) is
 * want (NULL: none set). */
static void check_blas(const char *spec, const char *params, const char *want)
{
    cJSON *job = job_with(spec);
    tj_spec s;
    kiln_error err = {0};
    KT_EQ_INT(tj_spec_read(job, NULL, &s, &err), 0);
    cJSON *p = cJSON_Parse(params);
    tj_trial_pod t = {.index = 0, .params = p, .attempt = 1};
    cJSON *pod = NULL;
    KT_EQ_INT(tj_pod_trial(&s, &t, &pod, &err), 0);
    const char *got = env_value(pod, "OPENBLAS_NUM_THREADS");
    KT_CHECK(want ? got && !strcmp(got, want) : got == NULL);
    cJSON_Delete(pod);
    cJSON_Delete(p);
    cJSON_Delete(job);
}

/* A trial's thread count reaches OpenBLAS, which sizes its pool before
 * the trainer reads a flag; with 0 (the pod's CPUs) so does the pod's CPU
 * limit, and without one nothing is set. */
static void test_blas_threads(void)
{
    static const char logistic[] = "{\"family\":\"logistic\"}";
    check_blas("{\"data\":{\"uri\":\"/d.csv\"},\"training\":{\"threads\":2}}", logistic, "2");
    /* A searched thread count wins over the spec's. */
    check_blas("{\"data\":{\"uri\":\"/d.csv\"},\"training\":{\"threads\":2}}",
               "{\"family\":\"logistic\",\"threads\":1}", "1");
    check_blas("{\"data\":{\"uri\":\"/d.csv\"},\"training\":{\"threads\":0}}", logistic, NULL);
    /* 0 is the pod's CPUs: its CPU limit rounded up, not the node's. */
    static const struct {
        const char *limit;
        int threads;
        const char *want;
    } cases[] = {{"1500m", 0, "2"}, {"4", 0, "4"}, {"100m", 0, "1"}, {"3", 1, "1"}, {"3", 5, "5"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char spec[300];
        snprintf(spec, sizeof spec,
                 "{\"data\":{\"uri\":\"/d.csv\"},\"training\":{\"threads\":%d},"
                 "\"trainer\":{\"resources\":{\"limits\":{\"cpu\":\"%s\"}}}}",
                 cases[i].threads, cases[i].limit);
        check_blas(spec, logistic, cases[i].want);
    }
    /* a request alone bounds nothing */
    check_blas("{\"data\":{\"uri\":\"/d.csv\"},"
               "\"trainer\":{\"resources\":{\"requests\":{\"cpu\":\"2\"}}}}",
               logistic, NULL);
}

int main(void)
{
    KT_RUN(test_pvc_data_and_given_volume);
    KT_RUN(test_warm_start);
    KT_RUN(test_blas_threads);
    KT_RUN(test_serving_pod_and_service);
    KT_RUN(test_models_pvc);
    KT_RUN(test_claim_owner_follows_retain);
    return KT_DONE();
}
