/* tj_pod: trial pod, serving pod, Service and PVC manifests (see tj_pod.h). */
#include "tj_pod.h"

#include <stdio.h>
#include <string.h>

#include "kquantity.h"
#include "tj_json.h"

/* ------------------------------------------------------------ shared parts */

/* The job as the controlling owner of what it makes; NULL when out of memory. */
static cJSON *owner_ref(const tj_spec *s)
{
    cJSON *ref = cJSON_CreateObject();
    int ok = tj_json_add_str(ref, "apiVersion", TJ_API_VERSION);
    ok &= tj_json_add_str(ref, "kind", TJ_KIND);
    ok &= tj_json_add_str(ref, "name", s->name);
    ok &= tj_json_add_str(ref, "uid", s->uid);
    ok &= tj_json_add_bool(ref, "controller", 1);
    ok &= tj_json_add_bool(ref, "blockOwnerDeletion", 1);
    if (!ok) {
        cJSON_Delete(ref);
        return NULL;
    }
    return ref;
}

static int add_owner(cJSON *meta, const tj_spec *s)
{
    cJSON *refs = cJSON_CreateArray();
    int ok = tj_json_push(refs, owner_ref(s));
    ok &= tj_json_add(meta, "ownerReferences", refs);
    return ok;
}

/* {"apiVersion","kind","metadata":{name|generateName, namespace, labels}} */
static cJSON *new_object(const char *api_version, const char *kind, const char *name,
                         const char *generate_name, const tj_spec *s, int owned, cJSON **meta,
                         cJSON **labels)
{
    cJSON *o = cJSON_CreateObject();
    int ok = tj_json_add_str(o, "apiVersion", api_version);
    ok &= tj_json_add_str(o, "kind", kind);
    cJSON *m = tj_json_obj(o, "metadata");
    if (name)
        ok &= tj_json_add_str(m, "name", name);
    if (generate_name)
        ok &= tj_json_add_str(m, "generateName", generate_name);
    ok &= tj_json_add_str(m, "namespace", s->ns);
    cJSON *l = tj_json_obj(m, "labels");
    ok &= tj_json_add_str(l, TJ_LABEL_JOB, s->name);
    ok &= tj_json_add_str(l, "app.kubernetes.io/managed-by", "kiln-controller");
    if (owned)
        ok &= add_owner(m, s);
    if (!ok || !m || !l) {
        cJSON_Delete(o);
        return NULL;
    }
    *meta = m;
    *labels = l;
    return o;
}

static cJSON *seccomp(void)
{
    cJSON *o = cJSON_CreateObject();
    if (!tj_json_add_str(o, "type", "RuntimeDefault")) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static int add_pod_security(cJSON *podspec)
{
    cJSON *sc = tj_json_obj(podspec, "securityContext");
    int ok = tj_json_add_bool(sc, "runAsNonRoot", 1);
    ok &= tj_json_add_num(sc, "runAsUser", TJ_RUN_AS_USER);
    ok &= tj_json_add_num(sc, "runAsGroup", TJ_RUN_AS_USER);
    ok &= tj_json_add_num(sc, "fsGroup", TJ_RUN_AS_USER);
    ok &= tj_json_add(sc, "seccompProfile", seccomp());
    return ok;
}

static int add_container_security(cJSON *c)
{
    cJSON *sc = tj_json_obj(c, "securityContext");
    int ok = tj_json_add_bool(sc, "runAsNonRoot", 1);
    ok &= tj_json_add_num(sc, "runAsUser", TJ_RUN_AS_USER);
    ok &= tj_json_add_bool(sc, "readOnlyRootFilesystem", 1);
    ok &= tj_json_add_bool(sc, "allowPrivilegeEscalation", 0);
    cJSON *caps = tj_json_obj(sc, "capabilities");
    cJSON *drop = cJSON_CreateArray();
    ok &= tj_json_push(drop, cJSON_CreateString("ALL"));
    ok &= tj_json_add(caps, "drop", drop);
    ok &= tj_json_add(sc, "seccompProfile", seccomp());
    return ok;
}

static int pvc_name(const tj_spec *s, char *buf, size_t n)
{
    int w = snprintf(buf, n, "%s-models", s->name);
    return w > 0 && (size_t)w < n ? 0 : -1;
}

int tj_pod_uses_models_pvc(const tj_spec *s)
{
    return s->storage_volume == NULL;
}

int tj_pod_models_dir(const tj_spec *s, char *buf, size_t n)
{
    int w = s->storage_volume ? snprintf(buf, n, TJ_MODELS_DIR "/%s/%s", s->ns, s->name)
                              : snprintf(buf, n, TJ_MODELS_DIR);
    if (w < 0 || (size_t)w >= n)
        return kiln_fail(NULL, KILN_EINVAL, "models directory too long");
    return 0;
}

static cJSON *mount(const char *name, const char *path, int read_only)
{
    cJSON *m = cJSON_CreateObject();
    int ok = tj_json_add_str(m, "name", name);
    ok &= tj_json_add_str(m, "mountPath", path);
    if (read_only)
        ok &= tj_json_add_bool(m, "readOnly", 1);
    if (!ok) {
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}

/* The models volume, mounted at /models: spec.storage.volume, or the
 * job's own claim. */
static int add_models_volume(const tj_spec *s, cJSON *vols, cJSON *mounts)
{
    cJSON *models =
        s->storage_volume ? cJSON_Duplicate(s->storage_volume, 1) : cJSON_CreateObject();
    int ok = tj_json_add_str(models, "name", "models");
    if (!s->storage_volume) {
        char claim[300];
        if (pvc_name(s, claim, sizeof claim) != 0) {
            cJSON_Delete(models);
            return 0;
        }
        cJSON *pvc = tj_json_obj(models, "persistentVolumeClaim");
        ok &= tj_json_add_str(pvc, "claimName", claim);
    }
    ok &= tj_json_push(vols, models);
    ok &= tj_json_push(mounts, mount("models", TJ_MODELS_DIR, 0));
    return ok;
}

static int add_tmp_volume(cJSON *vols, cJSON *mounts)
{
    cJSON *tmp = cJSON_CreateObject();
    int ok = tj_json_add_str(tmp, "name", "tmp");
    ok &= tj_json_add(tmp, "emptyDir", cJSON_CreateObject());
    ok &= tj_json_push(vols, tmp);
    ok &= tj_json_push(mounts, mount("tmp", "/tmp", 0));
    return ok;
}

/* The models volume (/models), /tmp, and the data claim when the data uri
 * is pvc://: volumes into podspec, mounts into the container. */
static int add_volumes(const tj_spec *s, cJSON *podspec, cJSON *container)
{
    cJSON *vols = cJSON_CreateArray();
    cJSON *mounts = cJSON_CreateArray();
    int ok = tj_json_add(podspec, "volumes", vols) & tj_json_add(container, "volumeMounts", mounts);
    if (!ok)
        return 0;
    ok &= add_models_volume(s, vols, mounts);
    ok &= add_tmp_volume(vols, mounts);

    if (s->data_claim[0]) {
        char path[300];
        snprintf(path, sizeof path, "/data/%s", s->data_claim);
        cJSON *data = cJSON_CreateObject();
        ok &= tj_json_add_str(data, "name", "data");
        cJSON *pvc = tj_json_obj(data, "persistentVolumeClaim");
        ok &= tj_json_add_str(pvc, "claimName", s->data_claim);
        ok &= tj_json_add_bool(pvc, "readOnly", 1);
        ok &= tj_json_push(vols, data);
        ok &= tj_json_push(mounts, mount("data", path, 1));
    }
    return ok;
}

/* ------------------------------------------------------------ trial config */

/* Copies key from src into dst when present. */
static int copy_key(cJSON *dst, const cJSON *src, const char *key)
{
    return tj_json_add_copy(dst, key, cJSON_GetObjectItemCaseSensitive(src, key));
}

/* A trial's value for key: its searched parameter, else the spec's at path. */
static const cJSON *param_value(const cJSON *params, const cJSON *spec, const char *key,
                                const char *path)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, key);
    return v ? v : tj_json_path(spec, path);
}

/* dst[key] = params[key] when present, else spec[path] when present. */
static int param_or_spec(cJSON *dst, const char *key, const cJSON *params, const cJSON *spec,
                         const char *path)
{
    return tj_json_add_copy(dst, key, param_value(params, spec, key, path));
}

int tj_pod_trial_config(const tj_spec *s, const cJSON *params, cJSON **out, kiln_error *err)
{
    const cJSON *sp = s->spec;
    cJSON *c = cJSON_CreateObject();
    cJSON *data = tj_json_obj(c, "data");
    int ok = tj_json_add_str(data, "uri", s->pod_data_uri);
    const cJSON *sd = tj_json_path(sp, "data");
    static const char *const data_keys[] = {"format", "label", "validationSplit", "folds",
                                            "maxSamples"};
    for (size_t i = 0; i < sizeof data_keys / sizeof data_keys[0]; i++)
        ok &= copy_key(data, sd, data_keys[i]);
    const cJSON *pre = tj_json_path(sd, "preprocessing");
    if (cJSON_IsObject(pre)) {
        cJSON *p = tj_json_obj(data, "preprocessing");
        static const char *const pre_keys[] = {"impute", "scale", "dropColumns",
                                               "varianceThreshold"};
        for (size_t i = 0; i < sizeof pre_keys / sizeof pre_keys[0]; i++)
            ok &= copy_key(p, pre, pre_keys[i]);
    }

    cJSON *model = tj_json_obj(c, "model");
    ok &= param_or_spec(model, "family", params, sp, "model.family");
    cJSON *mlp = tj_json_obj(model, "mlp");
    ok &= param_or_spec(mlp, "hiddenLayers", params, sp, "model.mlp.hiddenLayers");
    ok &= param_or_spec(mlp, "activation", params, sp, "model.mlp.activation");
    ok &= param_or_spec(mlp, "dropout", params, sp, "model.mlp.dropout");
    cJSON *cnn = tj_json_obj(model, "cnn");
    ok &= param_or_spec(cnn, "convFilters", params, sp, "model.cnn.convFilters");
    ok &= param_or_spec(cnn, "denseLayers", params, sp, "model.cnn.denseLayers");
    cJSON *km = tj_json_obj(model, "kmeans");
    ok &= param_or_spec(km, "clusters", params, sp, "model.kmeans.clusters");
    ok &= tj_json_add_copy(km, "maxClusters", tj_json_path(sp, "model.kmeans.maxClusters"));

    cJSON *tr = tj_json_obj(c, "training");
    static const char *const tr_keys[] = {"epochs",   "batchSize", "learningRate", "optimizer",
                                          "momentum", "seed",      "patience",     "threads"};
    for (size_t i = 0; i < sizeof tr_keys / sizeof tr_keys[0]; i++) {
        char path[64];
        snprintf(path, sizeof path, "training.%s", tr_keys[i]);
        ok &= param_or_spec(tr, tr_keys[i], params, sp, path);
    }
    /* A warm start continues a finished model: run only the extra epochs. */
    const cJSON *extra = cJSON_GetObjectItemCaseSensitive(params, "extraEpochs");
    if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(params, "warmStartFrom")) &&
        cJSON_IsNumber(extra) && extra->valuedouble >= 1)
        ok &= tj_json_add_num(tr, "epochs", extra->valuedouble);

    const cJSON *obj = tj_json_path(sp, "objective");
    cJSON *o = tj_json_obj(c, "objective");
    ok &= copy_key(o, obj, "metric") & copy_key(o, obj, "goal");
    if (!ok) {
        cJSON_Delete(c);
        return kiln_fail(err, KILN_ENOMEM, "out of memory building the trial config");
    }
    *out = c;
    return 0;
}

/* ------------------------------------------------------------ trial pod */

int tj_pod_trial_name(const tj_spec *s, int index, char *buf, size_t n)
{
    int w = snprintf(buf, n, "%s-t%d", s->name, index);
    if (w < 0 || (size_t)w >= n)
        return kiln_fail(NULL, KILN_EINVAL, "name too long");
    return 0;
}

static int push_str(cJSON *arr, const char *s)
{
    return tj_json_push(arr, cJSON_CreateString(s));
}

static int trial_args(const tj_spec *s, const tj_trial_pod *t, cJSON *args, kiln_error *err)
{
    cJSON *cfg = NULL;
    int rc = tj_pod_trial_config(s, t->params, &cfg, err);
    if (rc)
        return rc;
    char *text = cJSON_PrintUnformatted(cfg);
    cJSON_Delete(cfg);
    char dir[600], out[640];
    int ok = text != NULL && tj_pod_models_dir(s, dir, sizeof dir) == 0;
    snprintf(out, sizeof out, "%s/t%d", dir, t->index);
    ok &= push_str(args, "train") & push_str(args, "--config-json");
    ok &= text ? push_str(args, text) : 0;
    ok &= push_str(args, "--output") & push_str(args, out);
    ok &= push_str(args, "--report") & push_str(args, "/dev/termination-log");
    cJSON_free(text);
    /* --resume continues from the newest epoch checkpoint when there is
     * one, and accepts a finished model.kiln left by a lost pod. */
    if (t->attempt > 1 || t->resume)
        ok &= push_str(args, "--resume");
    const cJSON *from = cJSON_GetObjectItemCaseSensitive(t->params, "warmStartFrom");
    if (cJSON_IsNumber(from) && from->valuedouble >= 0) {
        char model[700];
        snprintf(model, sizeof model, "%s/t%d/model.kiln", dir, from->valueint);
        ok &= push_str(args, "--warm-start") & push_str(args, model);
    }
    return ok ? 0 : kiln_fail(err, KILN_ENOMEM, "out of memory building trial args");
}

/* The pod's one container, NAME, running kiln-trainer from the job's
 * image; *args is its (attached) argument list for the caller to fill. */
static cJSON *trainer_container(const tj_spec *s, cJSON *spec, const char *name, cJSON **args,
                                int *ok)
{
    cJSON *containers = cJSON_CreateArray();
    cJSON *c = cJSON_CreateObject();
    *ok &= tj_json_push(containers, c) & tj_json_add(spec, "containers", containers);
    *ok &= tj_json_add_str(c, "name", name);
    *ok &= tj_json_add_str(c, "image", s->image);
    cJSON *cmd = cJSON_CreateArray();
    *ok &= push_str(cmd, TJ_TRAINER_BIN) & tj_json_add(c, "command", cmd);
    *args = cJSON_CreateArray();
    *ok &= tj_json_add(c, "args", *args);
    return c;
}

/* The threads "all the pod's CPUs" (a thread count of 0) stands for: its
 * CPU limit rounded up, or 0 when it has none (then all of the node's may
 * be its to use). */
static int pod_cpus(const tj_spec *s)
{
    const cJSON *lim = cJSON_GetObjectItemCaseSensitive(s->resources, "limits");
    const cJSON *cpu = cJSON_GetObjectItemCaseSensitive(lim, "cpu");
    kquantity q;
    if (!cJSON_IsString(cpu) || kquantity_parse(cpu->valuestring, &q, NULL) != 0 || q.milli <= 0)
        return 0;
    int64_t n = (q.milli + 999) / 1000;
    return n > 256 ? 256 : (int)n;
}

/* OpenBLAS sizes its thread pool when the trainer loads it, before any
 * flag is read, from OPENBLAS_NUM_THREADS or else the node's CPU count: a
 * one-thread trial would still start a thread per CPU of the node, each
 * spinning on sched_yield for a while, and a thousand such trials kept
 * two cores busy yielding. A trial with a thread count says so here too;
 * with 0 (the pod's CPUs) so does a pod with a CPU limit, or on a 64-core
 * node a trial limited to 2 CPUs would run 64 threads and spend its quota
 * on their contention. Without a limit OpenBLAS's own default is right. */
static int add_blas_threads(const tj_spec *s, const tj_trial_pod *t, cJSON *c)
{
    const cJSON *th = param_value(t->params, s->spec, "threads", "training.threads");
    int n = cJSON_IsNumber(th) && th->valuedouble >= 1 ? (int)th->valuedouble : pod_cpus(s);
    if (n < 1)
        return 1;
    char v[16];
    snprintf(v, sizeof v, "%d", n);
    cJSON *env = cJSON_GetObjectItemCaseSensitive(c, "env");
    if (!env && !(env = cJSON_AddArrayToObject(c, "env")))
        return 0;
    cJSON *e = cJSON_CreateObject();
    int ok = tj_json_add_str(e, "name", "OPENBLAS_NUM_THREADS") & tj_json_add_str(e, "value", v);
    return tj_json_push(env, e) & ok;
}

int tj_pod_trial(const tj_spec *s, const tj_trial_pod *t, cJSON **out, kiln_error *err)
{
    char name[300], idx[16], attempt[16];
    if (tj_pod_trial_name(s, t->index, name, sizeof name) != 0)
        return kiln_fail(err, KILN_EINVAL, "trial pod name too long");
    snprintf(idx, sizeof idx, "%d", t->index);
    snprintf(attempt, sizeof attempt, "%d", t->attempt < 1 ? 1 : t->attempt);
    cJSON *meta, *labels;
    cJSON *pod = new_object("v1", "Pod", name, NULL, s, 1, &meta, &labels);
    if (!pod)
        return kiln_fail(err, KILN_ENOMEM, "out of memory building a trial pod");
    int ok = tj_json_add_str(labels, TJ_LABEL_TRIAL, idx);
    ok &= tj_json_add_str(labels, "app.kubernetes.io/name", "kiln-trainer");
    cJSON *ann = tj_json_obj(meta, "annotations");
    ok &= tj_json_add_str(ann, TJ_ANN_SEARCH, t->search ? t->search : "");
    char *params = cJSON_PrintUnformatted(t->params);
    ok &= params ? tj_json_add_str(ann, TJ_ANN_PARAMS, params) : 0;
    cJSON_free(params);
    ok &= tj_json_add_str(ann, TJ_ANN_ATTEMPT, attempt);
    if (t->reason && *t->reason)
        ok &= tj_json_add_str(ann, TJ_ANN_REASON, t->reason);

    cJSON *spec = tj_json_obj(pod, "spec");
    ok &= tj_json_add_str(spec, "restartPolicy", "Never");
    ok &= tj_json_add_num(spec, "activeDeadlineSeconds", (double)s->active_deadline_s);
    /* Trainers read results from pod status only: no API credentials. */
    ok &= tj_json_add_bool(spec, "automountServiceAccountToken", 0);
    ok &= add_pod_security(spec);
    cJSON *args = NULL;
    cJSON *c = trainer_container(s, spec, "trainer", &args, &ok);
    if (ok) {
        int rc = trial_args(s, t, args, err);
        if (rc) {
            cJSON_Delete(pod);
            return rc;
        }
    }
    ok &= tj_json_add_copy(c, "resources", s->resources);
    ok &= tj_json_add_str(c, "terminationMessagePath", "/dev/termination-log");
    ok &= tj_json_add_str(c, "terminationMessagePolicy", "FallbackToLogsOnError");
    ok &= add_container_security(c);
    ok &= add_volumes(s, spec, c);
    ok &= add_blas_threads(s, t, c);
    if (!ok) {
        cJSON_Delete(pod);
        return kiln_fail(err, KILN_ENOMEM, "out of memory building a trial pod");
    }
    *out = pod;
    return 0;
}

/* ------------------------------------------------------------ serving */

static cJSON *http_probe(const char *path, int port, int period)
{
    cJSON *p = cJSON_CreateObject();
    cJSON *get = tj_json_obj(p, "httpGet");
    int ok = tj_json_add_str(get, "path", path);
    ok &= tj_json_add_num(get, "port", port);
    ok &= tj_json_add_num(p, "periodSeconds", period);
    ok &= tj_json_add_num(p, "failureThreshold", 3);
    if (!ok) {
        cJSON_Delete(p);
        return NULL;
    }
    return p;
}

int tj_pod_serving(const tj_spec *s, const char *checkpoint, cJSON **out, kiln_error *err)
{
    if (!checkpoint || !*checkpoint)
        return kiln_fail(err, KILN_EINVAL, "serving pod: no checkpoint");
    char gen[300], port[16];
    snprintf(gen, sizeof gen, "%s-serve-", s->name);
    snprintf(port, sizeof port, "%d", s->serving_port);
    cJSON *meta, *labels;
    cJSON *pod = new_object("v1", "Pod", NULL, gen, s, 1, &meta, &labels);
    if (!pod)
        return kiln_fail(err, KILN_ENOMEM, "out of memory building a serving pod");
    int ok = tj_json_add_str(labels, TJ_LABEL_SERVING, s->name);
    ok &= tj_json_add_str(labels, "app.kubernetes.io/name", "kiln-server");
    cJSON *ann = tj_json_obj(meta, "annotations");
    ok &= tj_json_add_str(ann, TJ_ANN_CHECKPOINT, checkpoint);

    cJSON *spec = tj_json_obj(pod, "spec");
    /* The kubelet restarts a crashed server in place; the controller
     * replaces pods that keep failing (from the last good checkpoint). */
    ok &= tj_json_add_str(spec, "restartPolicy", "Always");
    ok &= tj_json_add_bool(spec, "automountServiceAccountToken", 0);
    ok &= add_pod_security(spec);
    cJSON *args = NULL;
    cJSON *c = trainer_container(s, spec, "server", &args, &ok);
    ok &= push_str(args, "serve") & push_str(args, "--model") & push_str(args, checkpoint);
    ok &= push_str(args, "--name") & push_str(args, s->name);
    ok &= push_str(args, "--port") & push_str(args, port);
    ok &= push_str(args, "--address") & push_str(args, "$(POD_IP)");
    /* On deletion keep answering for a moment while the Service drops the
     * pod, so a rolling replacement loses no request. */
    ok &= push_str(args, "--drain") & push_str(args, "3");
    cJSON *env = cJSON_CreateArray();
    cJSON *ip = cJSON_CreateObject();
    ok &= tj_json_add_str(ip, "name", "POD_IP");
    cJSON *ref = tj_json_obj(tj_json_obj(ip, "valueFrom"), "fieldRef");
    ok &= tj_json_add_str(ref, "fieldPath", "status.podIP");
    ok &= tj_json_push(env, ip) & tj_json_add(c, "env", env);
    cJSON *ports = cJSON_CreateArray();
    cJSON *p = cJSON_CreateObject();
    ok &= tj_json_add_str(p, "name", "http");
    ok &= tj_json_add_num(p, "containerPort", s->serving_port);
    ok &= tj_json_add_str(p, "protocol", "TCP");
    ok &= tj_json_push(ports, p) & tj_json_add(c, "ports", ports);
    ok &= tj_json_add(c, "readinessProbe", http_probe("/readyz", s->serving_port, 5));
    ok &= tj_json_add(c, "livenessProbe", http_probe("/healthz", s->serving_port, 10));
    ok &= tj_json_add_copy(c, "resources", s->resources);
    ok &= tj_json_add_str(c, "terminationMessagePolicy", "FallbackToLogsOnError");
    ok &= add_container_security(c);
    ok &= add_volumes(s, spec, c);
    if (!ok) {
        cJSON_Delete(pod);
        return kiln_fail(err, KILN_ENOMEM, "out of memory building a serving pod");
    }
    *out = pod;
    return 0;
}

int tj_pod_service(const tj_spec *s, cJSON **out, kiln_error *err)
{
    cJSON *meta, *labels;
    cJSON *svc = new_object("v1", "Service", s->name, NULL, s, 1, &meta, &labels);
    if (!svc)
        return kiln_fail(err, KILN_ENOMEM, "out of memory building the Service");
    cJSON *spec = tj_json_obj(svc, "spec");
    cJSON *sel = tj_json_obj(spec, "selector");
    int ok = tj_json_add_str(sel, TJ_LABEL_SERVING, s->name);
    cJSON *ports = cJSON_CreateArray();
    cJSON *p = cJSON_CreateObject();
    ok &= tj_json_add_str(p, "name", "http");
    ok &= tj_json_add_num(p, "port", s->serving_port);
    ok &= tj_json_add_num(p, "targetPort", s->serving_port);
    ok &= tj_json_add_str(p, "protocol", "TCP");
    ok &= tj_json_push(ports, p) & tj_json_add(spec, "ports", ports);
    ok &= tj_json_add_str(spec, "type", "ClusterIP");
    if (!ok) {
        cJSON_Delete(svc);
        return kiln_fail(err, KILN_ENOMEM, "out of memory building the Service");
    }
    *out = svc;
    return 0;
}

int tj_pod_models_pvc(const tj_spec *s, cJSON **out, kiln_error *err)
{
    char name[300];
    if (pvc_name(s, name, sizeof name) != 0)
        return kiln_fail(err, KILN_EINVAL, "PVC name too long");
    cJSON *meta, *labels;
    /* retain: the models outlive the job, so the PVC has no owner. */
    cJSON *pvc = new_object("v1", "PersistentVolumeClaim", name, NULL, s, !s->storage_retain, &meta,
                            &labels);
    if (!pvc)
        return kiln_fail(err, KILN_ENOMEM, "out of memory building the PVC");
    cJSON *spec = tj_json_obj(pvc, "spec");
    cJSON *modes = cJSON_CreateArray();
    int ok = push_str(modes, "ReadWriteOnce") & tj_json_add(spec, "accessModes", modes);
    cJSON *req = tj_json_obj(tj_json_obj(spec, "resources"), "requests");
    ok &= tj_json_add_str(req, "storage", s->storage_size);
    if (!ok) {
        cJSON_Delete(pvc);
        return kiln_fail(err, KILN_ENOMEM, "out of memory building the PVC");
    }
    *out = pvc;
    return 0;
}

int tj_pod_models_pvc_name(const tj_spec *s, char *buf, size_t n)
{
    return pvc_name(s, buf, n) == 0 ? 0 : kiln_fail(NULL, KILN_EINVAL, "PVC name too long");
}

static int is_our_owner(const cJSON *ref, const void *ud)
{
    const tj_spec *s = ud;
    const cJSON *uid = cJSON_GetObjectItemCaseSensitive(ref, "uid");
    return cJSON_IsString(uid) && !strcmp(uid->valuestring, s->uid);
}

int tj_pod_claim_owner_patch(const tj_spec *s, const cJSON *pvc, char **out, kiln_error *err)
{
    *out = NULL;
    int owned = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, tj_json_path(pvc, "metadata.ownerReferences"))
    {
        owned |= is_our_owner(r, s);
    }
    if (owned == !s->storage_retain || !s->uid[0])
        return 0;
    /* Other owners stay; with none left the field goes. */
    *out = tj_json_meta_list_patch(pvc, "ownerReferences", is_our_owner, s,
                                   s->storage_retain ? NULL : owner_ref(s), 1);
    return *out ? 0 : kiln_fail(err, KILN_ENOMEM, "out of memory");
}

/* ------------------------------------------------------------ clean-up */

int tj_pod_cleanup_name(const tj_spec *s, char *buf, size_t n)
{
    int w = snprintf(buf, n, "%s-cleanup", s->name);
    if (w < 0 || (size_t)w >= n)
        return kiln_fail(NULL, KILN_EINVAL, "name too long");
    return 0;
}

int tj_pod_cleanup(const tj_spec *s, int attempt, cJSON **out, kiln_error *err)
{
    char name[300], job[600], at[16];
    if (tj_pod_cleanup_name(s, name, sizeof name) != 0)
        return kiln_fail(err, KILN_EINVAL, "clean-up pod name too long");
    snprintf(job, sizeof job, "%s/%s", s->ns, s->name);
    snprintf(at, sizeof at, "%d", attempt < 1 ? 1 : attempt);
    cJSON *meta, *labels;
    cJSON *pod = new_object("v1", "Pod", name, NULL, s, 1, &meta, &labels);
    if (!pod)
        return kiln_fail(err, KILN_ENOMEM, "out of memory building the clean-up pod");
    int ok = tj_json_add_str(labels, TJ_LABEL_CLEANUP, s->name);
    ok &= tj_json_add_str(labels, "app.kubernetes.io/name", "kiln-cleanup");
    cJSON *ann = tj_json_obj(meta, "annotations");
    ok &= tj_json_add_str(ann, TJ_ANN_ATTEMPT, at);

    cJSON *spec = tj_json_obj(pod, "spec");
    ok &= tj_json_add_str(spec, "restartPolicy", "Never");
    ok &= tj_json_add_num(spec, "activeDeadlineSeconds", 600);
    ok &= tj_json_add_bool(spec, "automountServiceAccountToken", 0);
    ok &= add_pod_security(spec);
    cJSON *args = NULL;
    cJSON *c = trainer_container(s, spec, "cleanup", &args, &ok);
    ok &= push_str(args, "clean") & push_str(args, "--models") & push_str(args, TJ_MODELS_DIR);
    ok &= push_str(args, "--job") & push_str(args, job);
    ok &= push_str(args, "--report") & push_str(args, "/dev/termination-log");
    /* Deleting files needs little; the trial's resources may be large. */
    cJSON *req = tj_json_obj(tj_json_obj(c, "resources"), "requests");
    ok &= tj_json_add_str(req, "cpu", "10m") & tj_json_add_str(req, "memory", "32Mi");
    ok &= tj_json_add_str(c, "terminationMessagePath", "/dev/termination-log");
    ok &= tj_json_add_str(c, "terminationMessagePolicy", "FallbackToLogsOnError");
    ok &= add_container_security(c);
    cJSON *vols = cJSON_CreateArray();
    cJSON *mounts = cJSON_CreateArray();
    ok &= tj_json_add(spec, "volumes", vols) & tj_json_add(c, "volumeMounts", mounts);
    ok &= add_models_volume(s, vols, mounts) & add_tmp_volume(vols, mounts);
    if (!ok) {
        cJSON_Delete(pod);
        return kiln_fail(err, KILN_ENOMEM, "out of memory building the clean-up pod");
    }
    *out = pod;
    return 0;
}
