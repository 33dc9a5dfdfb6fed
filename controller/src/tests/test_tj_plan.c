/* Tests for tj_plan: whole reconcile flows over a simulated API (a job
 * object and its pods, advanced by applying each plan the way the I/O
 * layer would), checking the pods created and deleted, the status and the
 * events at each step. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ktest.h"
#include "tj_json.h"
#include "tj_plan.h"

/* ------------------------------------------------------------ a tiny API */

#define MAX_PODS 128

typedef struct world {
    cJSON *job;
    cJSON *pods[MAX_PODS];
    int n;
    tj_env env;
    tj_plan_out plan;
    int rc;
} world;

static cJSON *parse(const char *text)
{
    cJSON *j = cJSON_Parse(text);
    if (!j)
        fprintf(stderr, "bad test JSON: %s\n", text);
    return j;
}

static void world_init(world *w, const char *spec)
{
    memset(w, 0, sizeof *w);
    w->job = parse("{\"apiVersion\":\"kiln.dev/v1alpha1\",\"kind\":\"TrainingJob\","
                   "\"metadata\":{\"name\":\"demo\",\"namespace\":\"ml\",\"uid\":\"uid-1\","
                   "\"generation\":1}}");
    cJSON_AddItemToObject(w->job, "spec", parse(spec));
    ktime_parse("2026-11-23T10:00:00Z", &w->env.now, NULL);
    w->env.controller = "kiln-controller";
    w->env.stall_after_s = 60;
    tj_plan_init(&w->plan);
}

static void world_free(world *w)
{
    cJSON_Delete(w->job);
    for (int i = 0; i < w->n; i++)
        cJSON_Delete(w->pods[i]);
    tj_plan_release(&w->plan);
}

static void advance(world *w, int seconds)
{
    w->env.now = ktime_add_ms(w->env.now, (int64_t)seconds * 1000);
}

static void now_str(const world *w, char *buf)
{
    ktime_format(w->env.now, 0, buf, KTIME_BUFSZ);
}

static int reconcile(world *w)
{
    kiln_error err = {0};
    w->rc = tj_plan(w->job, (const cJSON *const *)w->pods, w->n, &w->env, &w->plan, &err);
    if (w->rc)
        fprintf(stderr, "tj_plan: %s\n", err.msg);
    return w->rc;
}

static cJSON *find_pod(world *w, const char *name)
{
    for (int i = 0; i < w->n; i++) {
        if (!strcmp(tj_json_str(w->pods[i], "metadata.name", ""), name))
            return w->pods[i];
    }
    return NULL;
}

static void remove_pod(world *w, const char *name)
{
    for (int i = 0; i < w->n; i++) {
        if (!strcmp(tj_json_str(w->pods[i], "metadata.name", ""), name)) {
            cJSON_Delete(w->pods[i]);
            w->pods[i] = w->pods[--w->n];
            return;
        }
    }
}

/* What the I/O layer does with a plan: status, deletes, then creates
 * (an existing name is AlreadyExists: nothing happens). */
static void apply(world *w)
{
    tj_plan_out *p = &w->plan;
    if (p->status) {
        cJSON_DeleteItemFromObject(w->job, "status");
        cJSON_AddItemToObject(w->job, "status", cJSON_Duplicate(p->status, 1));
    }
    for (int i = 0; i < p->n_deletes; i++)
        remove_pod(w, p->deletes[i].name);
    char t[KTIME_BUFSZ];
    now_str(w, t);
    for (int i = 0; i < p->n_creates; i++) {
        const char *name = tj_json_str(p->creates[i], "metadata.name", "");
        if (find_pod(w, name) || w->n >= MAX_PODS)
            continue;
        cJSON *pod = cJSON_Duplicate(p->creates[i], 1);
        cJSON_AddStringToObject(cJSON_GetObjectItem(pod, "metadata"), "creationTimestamp", t);
        cJSON_AddItemToObject(pod, "status", parse("{\"phase\":\"Pending\"}"));
        w->pods[w->n++] = pod;
    }
}

static void step(world *w)
{
    if (reconcile(w) == 0)
        apply(w);
}

static void set_pod_status(cJSON *pod, cJSON *status)
{
    cJSON_ReplaceItemInObject(pod, "status", status);
}

/* The pod's trainer starts running now. */
static void pod_run(const world *w, cJSON *pod)
{
    char t[KTIME_BUFSZ], buf[256];
    ktime_format(w->env.now, 0, t, sizeof t);
    snprintf(buf, sizeof buf,
             "{\"phase\":\"Running\",\"containerStatuses\":[{\"name\":\"trainer\","
             "\"state\":{\"running\":{\"startedAt\":\"%s\"}}}]}",
             t);
    set_pod_status(pod, parse(buf));
}

/* The trainer's report for a finished trial with this validation accuracy. */
static void pod_succeed(world *w, cJSON *pod, double acc)
{
    char t[KTIME_BUFSZ], buf[2048];
    now_str(w, t);
    const char *params = tj_json_str(pod, "metadata.annotations", NULL);
    (void)params;
    const cJSON *ann = tj_json_path(pod, "metadata.annotations");
    const char *p = cJSON_GetObjectItem(ann, "kiln.dev/params")->valuestring;
    cJSON *pj = parse(p);
    cJSON_ReplaceItemInObject(pj, "family", cJSON_CreateString("mlp"));
    char *ps = cJSON_PrintUnformatted(pj);
    cJSON_Delete(pj);
    snprintf(
        buf, sizeof buf,
        "{\"metrics\":{\"accuracy\":%g,\"loss\":0.5},\"trainMetrics\":{\"accuracy\":%g},"
        "\"epochs\":3,\"params\":%s,\"checkpoint\":\"/models/t%s/model.kiln\",\"seconds\":4}",
        acc, acc + 0.01, ps,
        cJSON_GetObjectItem(tj_json_path(pod, "metadata.labels"), "kiln.dev/trial")->valuestring);
    free(ps);
    cJSON *st = parse("{\"phase\":\"Succeeded\",\"containerStatuses\":[{\"name\":\"trainer\","
                      "\"state\":{\"terminated\":{\"exitCode\":0,\"reason\":\"Completed\"}}}]}");
    cJSON *term = (cJSON *)tj_json_path(
        cJSON_GetArrayItem(cJSON_GetObjectItem(st, "containerStatuses"), 0), "state.terminated");
    cJSON_AddStringToObject(term, "message", buf);
    cJSON_AddStringToObject(term, "finishedAt", t);
    set_pod_status(pod, st);
}

/* Trial index finishes with this accuracy five seconds later; reconcile. */
static void succeed_and_step(world *w, int index, double acc)
{
    char name[32];
    snprintf(name, sizeof name, "demo-t%d", index);
    advance(w, 5);
    pod_succeed(w, find_pod(w, name), acc);
    step(w);
}

static void pod_fail(world *w, cJSON *pod, int code, const char *error)
{
    char t[KTIME_BUFSZ], msg[512];
    now_str(w, t);
    snprintf(msg, sizeof msg, "{\"error\":\"%s\"}", error);
    cJSON *st = parse("{\"phase\":\"Failed\",\"containerStatuses\":[{\"name\":\"trainer\","
                      "\"state\":{\"terminated\":{\"reason\":\"Error\"}}}]}");
    cJSON *term = (cJSON *)tj_json_path(
        cJSON_GetArrayItem(cJSON_GetObjectItem(st, "containerStatuses"), 0), "state.terminated");
    cJSON_AddNumberToObject(term, "exitCode", code);
    cJSON_AddStringToObject(term, "message", msg);
    cJSON_AddStringToObject(term, "finishedAt", t);
    set_pod_status(pod, st);
}

/* ------------------------------------------------------------ queries */

static const cJSON *status(world *w)
{
    return tj_json_path(w->job, "status");
}

static const char *st_str(world *w, const char *path)
{
    return tj_json_str(status(w), path, "");
}

static const cJSON *condition(world *w, const char *type)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, tj_json_path(status(w), "conditions"))
    {
        if (!strcmp(tj_json_str(c, "type", ""), type))
            return c;
    }
    return NULL;
}

static const char *cond_status(world *w, const char *type)
{
    return tj_json_str(condition(w, type), "status", "");
}

static const char *cond_reason(world *w, const char *type)
{
    return tj_json_str(condition(w, type), "reason", "");
}

static const cJSON *record(world *w, int index)
{
    const cJSON *r;
    cJSON_ArrayForEach(r, tj_json_path(status(w), "trials"))
    {
        if (tj_json_int(r, "index", -1) == index)
            return r;
    }
    return NULL;
}

static int has_event(const tj_plan_out *p, const char *reason)
{
    for (int i = 0; i < p->n_events; i++) {
        if (!strcmp(p->events[i].reason, reason))
            return 1;
    }
    return 0;
}

static const char *event_message(const tj_plan_out *p, const char *reason)
{
    for (int i = 0; i < p->n_events; i++) {
        if (!strcmp(p->events[i].reason, reason))
            return p->events[i].message;
    }
    return NULL;
}

static int deleted(const tj_plan_out *p, const char *name, const char *reason)
{
    for (int i = 0; i < p->n_deletes; i++) {
        if (!strcmp(p->deletes[i].name, name) && (!reason || !strcmp(p->deletes[i].reason, reason)))
            return 1;
    }
    return 0;
}

static const cJSON *created(const tj_plan_out *p, int i)
{
    return i < p->n_creates ? p->creates[i] : NULL;
}

static const char *created_name(const tj_plan_out *p, int i)
{
    return i < p->n_creates ? tj_json_str(p->creates[i], "metadata.name", "") : "";
}

static int args_have(const cJSON *pod, const char *a, const char *b)
{
    const cJSON *args =
        tj_json_path(cJSON_GetArrayItem(tj_json_path(pod, "spec.containers"), 0), "args");
    int n = cJSON_GetArraySize(args);
    for (int i = 0; i < n; i++) {
        const char *s = cJSON_GetArrayItem(args, i)->valuestring;
        if (!strcmp(s, a) &&
            (!b || (i + 1 < n && !strcmp(cJSON_GetArrayItem(args, i + 1)->valuestring, b))))
            return 1;
    }
    return 0;
}

static const char *annotation(const cJSON *pod, const char *key)
{
    return tj_json_str(cJSON_GetObjectItem(tj_json_path(pod, "metadata.annotations"), key), "", "");
}

#define SPEC(extra)                                                                                \
    "{\"data\":{\"uri\":\"file:///data/iris.csv\",\"label\":\"species\"},"                         \
    "\"model\":{\"family\":\"mlp\",\"mlp\":{\"hiddenLayers\":[32]}},\"training\":{\"epochs\":2},"  \
    "\"objective\":{\"metric\":\"accuracy\",\"goal\":0.9}" extra "}"

/* ------------------------------------------------------------ tests */

static void test_first_reconcile_creates_t0(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":4}"));
    KT_EQ_INT(reconcile(&w), 0);
    tj_plan_out *p = &w.plan;
    KT_EQ_INT(p->n_creates, 1);
    KT_EQ_INT(p->n_deletes, 0);
    KT_EQ_INT(p->n_pvcs, 1);
    const cJSON *pod = created(p, 0);
    KT_CHECK(!strcmp(tj_json_str(pod, "metadata.name", ""), "demo-t0"));
    KT_CHECK(!strcmp(tj_json_str(pod, "metadata.namespace", ""), "ml"));
    const cJSON *labels = tj_json_path(pod, "metadata.labels");
    KT_CHECK(!strcmp(tj_json_str(cJSON_GetObjectItem(labels, "kiln.dev/job"), "", ""), "demo"));
    KT_CHECK(!strcmp(tj_json_str(cJSON_GetObjectItem(labels, "kiln.dev/trial"), "", ""), "0"));
    const cJSON *ref = cJSON_GetArrayItem(tj_json_path(pod, "metadata.ownerReferences"), 0);
    KT_CHECK(!strcmp(tj_json_str(ref, "uid", ""), "uid-1"));
    KT_CHECK(!strcmp(tj_json_str(ref, "kind", ""), "TrainingJob"));
    KT_CHECK(tj_json_bool(ref, "controller", 0) && tj_json_bool(ref, "blockOwnerDeletion", 0));
    KT_CHECK(!strcmp(tj_json_str(pod, "spec.restartPolicy", ""), "Never"));
    KT_EQ_INT(tj_json_int(pod, "spec.activeDeadlineSeconds", 0), 3600);
    const cJSON *c = cJSON_GetArrayItem(tj_json_path(pod, "spec.containers"), 0);
    KT_CHECK(!strcmp(tj_json_str(c, "name", ""), "trainer"));
    KT_CHECK(!strcmp(tj_json_str(c, "image", ""), "ghcr.io/kiln-dev/kiln-trainer:0.1.0"));
    KT_CHECK(!strcmp(cJSON_GetArrayItem(tj_json_path(c, "command"), 0)->valuestring,
                     "/usr/local/bin/kiln-trainer"));
    KT_CHECK(!strcmp(cJSON_GetArrayItem(tj_json_path(c, "args"), 0)->valuestring, "train"));
    KT_CHECK(args_have(pod, "--output", "/models/t0"));
    KT_CHECK(args_have(pod, "--report", "/dev/termination-log"));
    KT_CHECK(!args_have(pod, "--resume", NULL));
    KT_CHECK(!args_have(pod, "--warm-start", NULL));
    /* The config: the spec's data and objective, the trial's model. */
    const cJSON *args = tj_json_path(c, "args");
    KT_CHECK(!strcmp(cJSON_GetArrayItem(args, 1)->valuestring, "--config-json"));
    cJSON *cfg = cJSON_Parse(cJSON_GetArrayItem(args, 2)->valuestring);
    KT_CHECK(!strcmp(tj_json_str(cfg, "data.uri", ""), "file:///data/iris.csv"));
    KT_CHECK(!strcmp(tj_json_str(cfg, "objective.metric", ""), "accuracy"));
    KT_EQ_INT(tj_json_int(cfg, "training.epochs", 0), 2);
    KT_EQ_INT(cJSON_GetArrayItem(tj_json_path(cfg, "model.mlp.hiddenLayers"), 0)->valueint, 32);
    KT_CHECK(tj_json_path(cfg, "tuning") == NULL);
    cJSON_Delete(cfg);
    KT_CHECK(!strcmp(tj_json_str(c, "terminationMessagePolicy", ""), "FallbackToLogsOnError"));
    KT_CHECK(tj_json_bool(c, "securityContext.runAsNonRoot", 0));
    KT_EQ_INT(tj_json_int(c, "securityContext.runAsUser", 0), 65532);
    KT_CHECK(tj_json_bool(c, "securityContext.readOnlyRootFilesystem", 0));
    KT_CHECK(!tj_json_bool(c, "securityContext.allowPrivilegeEscalation", 1));
    KT_CHECK(!strcmp(
        cJSON_GetArrayItem(tj_json_path(c, "securityContext.capabilities.drop"), 0)->valuestring,
        "ALL"));
    KT_CHECK(!strcmp(tj_json_str(c, "securityContext.seccompProfile.type", ""), "RuntimeDefault"));
    /* /models on the controller's PVC, /tmp an emptyDir. */
    const cJSON *vols = tj_json_path(pod, "spec.volumes");
    KT_CHECK(
        !strcmp(tj_json_str(cJSON_GetArrayItem(vols, 0), "persistentVolumeClaim.claimName", ""),
                "demo-models"));
    KT_CHECK(tj_json_path(cJSON_GetArrayItem(vols, 1), "emptyDir") != NULL);
    KT_CHECK(!strcmp(
        tj_json_str(cJSON_GetArrayItem(tj_json_path(c, "volumeMounts"), 0), "mountPath", ""),
        "/models"));
    KT_CHECK(!strcmp(
        tj_json_str(cJSON_GetArrayItem(tj_json_path(c, "volumeMounts"), 1), "mountPath", ""),
        "/tmp"));
    const cJSON *pvc = p->pvcs[0];
    KT_CHECK(!strcmp(tj_json_str(pvc, "metadata.name", ""), "demo-models"));
    KT_CHECK(!strcmp(tj_json_str(pvc, "spec.resources.requests.storage", ""), "1Gi"));
    KT_CHECK(!strcmp(cJSON_GetArrayItem(tj_json_path(pvc, "spec.accessModes"), 0)->valuestring,
                     "ReadWriteOnce"));
    KT_CHECK(tj_json_path(pvc, "metadata.ownerReferences") != NULL);
    /* Annotations record the search identity and the params. */
    KT_CHECK(!strcmp(annotation(pod, "kiln.dev/search"), "g1 t0"));
    KT_CHECK(!strcmp(annotation(pod, "kiln.dev/attempt"), "1"));
    KT_CHECK(strstr(annotation(pod, "kiln.dev/params"), "\"hiddenLayers\":[32]") != NULL);
    /* Status and events. */
    KT_CHECK(p->status != NULL);
    KT_CHECK(!strcmp(tj_json_str(p->status, "phase", ""), "Pending"));
    KT_EQ_INT(tj_json_int(p->status, "trialCount", -1), 1);
    KT_EQ_INT(tj_json_int(p->status, "observedGeneration", -1), 1);
    KT_CHECK(has_event(p, "TrialCreated"));
    world_free(&w);
}

static void test_idempotent(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":4,\"parallelism\":2}"));
    KT_EQ_INT(reconcile(&w), 0);
    cJSON *a = tj_plan_to_json(&w.plan);
    KT_EQ_INT(reconcile(&w), 0);
    cJSON *b = tj_plan_to_json(&w.plan);
    KT_CHECK(cJSON_Compare(a, b, 1));
    KT_EQ_INT(w.plan.n_creates, 2);
    cJSON_Delete(a);
    cJSON_Delete(b);
    apply(&w);
    /* The planned pods exist now: nothing new to create, no status change. */
    advance(&w, 5);
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.n_creates, 0);
    KT_EQ_INT(w.plan.n_deletes, 0);
    KT_CHECK(w.plan.status == NULL);
    KT_EQ_INT(w.plan.n_events, 0);
    /* A restarted controller whose status write was lost: pods exist,
     * status is empty. It re-derives the same trials, creates nothing. */
    cJSON_DeleteItemFromObject(w.job, "status");
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.n_creates, 0);
    KT_CHECK(w.plan.status != NULL);
    KT_EQ_INT(tj_json_int(w.plan.status, "trialCount", -1), 2);
    KT_EQ_INT(cJSON_GetArraySize(tj_json_path(w.plan.status, "trials")), 2);
    world_free(&w);
}

static void test_success_records_and_plans_next(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":4}"));
    step(&w);
    cJSON *t0 = find_pod(&w, "demo-t0");
    KT_CHECK(t0 != NULL);
    pod_run(&w, t0);
    advance(&w, 1);
    /* Running for a second: not recorded yet, the reconcile comes back
     * when it would be. */
    KT_EQ_INT(reconcile(&w), 0);
    KT_CHECK(w.plan.requeue_after_ms > 0 && w.plan.requeue_after_ms <= 2000);
    KT_CHECK(w.plan.status == NULL ||
             strcmp(tj_json_str(cJSON_GetArrayItem(tj_json_path(w.plan.status, "trials"), 0),
                                "phase", ""),
                    "Running") != 0);
    apply(&w);
    advance(&w, 2);
    step(&w);
    KT_CHECK(!strcmp(st_str(&w, "phase"), "Running"));
    KT_CHECK(!strcmp(tj_json_str(record(&w, 0), "phase", ""), "Running"));
    advance(&w, 30);
    pod_succeed(&w, t0, 0.7);
    KT_EQ_INT(reconcile(&w), 0);
    tj_plan_out *p = &w.plan;
    KT_EQ_INT(p->n_creates, 1);
    KT_CHECK(!strcmp(created_name(p, 0), "demo-t1"));
    KT_CHECK(has_event(p, "TrialSucceeded"));
    KT_CHECK(has_event(p, "NewBestTrial"));
    KT_STR_CONTAINS(event_message(p, "NewBestTrial"), "accuracy 0.7");
    apply(&w);
    const cJSON *r0 = record(&w, 0);
    KT_CHECK(!strcmp(tj_json_str(r0, "phase", ""), "Succeeded"));
    KT_NEAR(tj_json_num(r0, "metrics.accuracy", 0), 0.7, 1e-9);
    KT_NEAR(tj_json_num(r0, "trainMetrics.accuracy", 0), 0.71, 1e-9);
    KT_CHECK(!strcmp(tj_json_str(r0, "checkpoint", ""), "/models/t0/model.kiln"));
    KT_CHECK(!strcmp(tj_json_str(r0, "params.family", ""), "mlp"));
    KT_CHECK(tj_json_path(r0, "completionTime") != NULL);
    KT_CHECK(!strcmp(st_str(&w, "bestTrial.name"), "demo-t0"));
    KT_NEAR(tj_json_num(status(&w), "bestTrial.value", 0), 0.7, 1e-9);
    /* The strategy's next choice differs from t0 and says why. */
    cJSON *t1 = find_pod(&w, "demo-t1");
    KT_CHECK(strcmp(annotation(t1, "kiln.dev/params"), annotation(t0, "kiln.dev/params")) != 0);
    KT_CHECK(annotation(t1, "kiln.dev/reason")[0] != '\0');
    KT_EQ_INT(tj_json_int(status(&w), "trialCount", 0), 2);
    world_free(&w);
}

/* A job created now whose first trial pod the controller has just
 * created, the launch's status left out as the controller leaves it. */
static void world_launched(world *w)
{
    world_init(w, SPEC(""));
    char t[KTIME_BUFSZ];
    now_str(w, t);
    cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(w->job, "metadata"),
                            "creationTimestamp", t);
    KT_EQ_INT(reconcile(w), 0);
    KT_EQ_INT(w->plan.n_creates, 1);
    KT_EQ_INT(tj_plan_first_write_wait(w->job, &w->plan, w->env.now), 0); /* it launches */
    cJSON_Delete(w->plan.status);
    w->plan.status = NULL;
    apply(w);
}

/* A models claim the controller has not seen created (its create failed,
 * or the controller restarted) is asked for while a trial is in flight,
 * not only with a new pod. */
static void test_claim_asked_while_unconfirmed(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":4}"));
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.n_creates, 1);
    KT_EQ_INT(w.plan.n_pvcs, 1);
    apply(&w);
    advance(&w, 1);
    KT_EQ_INT(reconcile(&w), 0); /* the pod exists; the claim is known */
    KT_EQ_INT(w.plan.n_creates, 0);
    KT_EQ_INT(w.plan.n_pvcs, 0);
    w.env.claim_unconfirmed = 1;
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.n_creates, 0);
    KT_EQ_INT(w.plan.n_pvcs, 1);
    KT_CHECK(!strcmp(tj_json_str(w.plan.pvcs[0], "metadata.name", ""), "demo-models"));
    /* A job with its own storage has no claim to ask for. */
    world_free(&w);
    world_init(&w, SPEC(",\"storage\":{\"volume\":{\"persistentVolumeClaim\":{\"claimName\":\"shared\"}}}"));
    w.env.claim_unconfirmed = 1;
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.n_creates, 1);
    KT_EQ_INT(w.plan.n_pvcs, 0);
    world_free(&w);
}

/* A young job whose first trial is still pending may leave its first
 * status write for later (one write then, if it ends soon); not when the
 * plan reports more than that, nor, once it is three seconds old, when
 * its pod is stuck. */
static void test_first_status_waits_while_pending(void)
{
    world w;
    world_launched(&w);
    advance(&w, 1);
    KT_EQ_INT(reconcile(&w), 0);
    KT_CHECK(w.plan.status != NULL);
    int64_t wait = tj_plan_first_write_wait(w.job, &w.plan, w.env.now);
    KT_CHECK(wait > 0 && wait <= 29000); /* its pod is still being started */
    /* A trial past Pending is worth recording at once. */
    cJSON *rec = cJSON_GetArrayItem(tj_json_path(w.plan.status, "trials"), 0);
    cJSON_ReplaceItemInObjectCaseSensitive(rec, "phase", cJSON_CreateString("Running"));
    KT_EQ_INT(tj_plan_first_write_wait(w.job, &w.plan, w.env.now), 0);
    /* A pod the kubelet reports as stuck is no reason to wait past 3 s. */
    set_pod_status(find_pod(&w, "demo-t0"),
                   parse("{\"phase\":\"Pending\",\"conditions\":[{\"type\":\"PodScheduled\","
                         "\"status\":\"False\",\"reason\":\"Unschedulable\"}]}"));
    KT_EQ_INT(reconcile(&w), 0);
    wait = tj_plan_first_write_wait(w.job, &w.plan, w.env.now);
    KT_CHECK(wait > 0 && wait <= 2000);
    advance(&w, 2);
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(tj_plan_first_write_wait(w.job, &w.plan, w.env.now), 0); /* 3 s old */
    world_free(&w);
}

/* Past those three seconds, the first write still waits while the trial
 * pod is being started (at most 30 s from its creation) and for the first
 * three seconds of its trainer's run; not for a pod stuck on its image. */
static void test_first_status_waits_for_starting_pods(void)
{
    world w;
    world_launched(&w);
    advance(&w, 10);
    KT_EQ_INT(reconcile(&w), 0);
    int64_t wait = tj_plan_first_write_wait(w.job, &w.plan, w.env.now);
    KT_CHECK(wait > 19000 && wait <= 20000); /* 30 s from the pod's creation */
    KT_CHECK(w.plan.quiet_ms > 0);
    advance(&w, 25);
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(tj_plan_first_write_wait(w.job, &w.plan, w.env.now), 0); /* 35 s: enough */
    /* Its trainer starts: three more seconds, then Running is news. */
    pod_run(&w, find_pod(&w, "demo-t0"));
    KT_EQ_INT(reconcile(&w), 0);
    wait = tj_plan_first_write_wait(w.job, &w.plan, w.env.now);
    KT_CHECK(wait > 2000 && wait <= 3000);
    advance(&w, 3);
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(tj_plan_first_write_wait(w.job, &w.plan, w.env.now), 0);
    /* A pod waiting on a missing image is not starting: no wait past 3 s. */
    set_pod_status(
        find_pod(&w, "demo-t0"),
        parse("{\"phase\":\"Pending\",\"containerStatuses\":[{\"name\":\"trainer\",\"state\":"
              "{\"waiting\":{\"reason\":\"ErrImagePull\",\"message\":\"not found\"}}}]}"));
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(tj_plan_first_write_wait(w.job, &w.plan, w.env.now), 0);
    world_free(&w);
}

/* The pods are the record of launched trials: a plan whose status write
 * is left out (the controller defers the write of a plan that only
 * launches trials) loses nothing, and launches nothing twice. */
static void test_pods_created_before_their_records(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":5,\"parallelism\":2,\"strategy\":\"random\"}"));
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.n_creates, 2);
    cJSON_Delete(w.plan.status); /* the status write is deferred */
    w.plan.status = NULL;
    apply(&w);
    KT_CHECK(tj_json_path(w.job, "status") == NULL);
    KT_EQ_INT(w.n, 2);
    pod_run(&w, find_pod(&w, "demo-t0"));
    advance(&w, 3);
    /* The next reconcile adopts both pods, creates nothing more and
     * records them. */
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.n_creates, 0);
    KT_EQ_INT(w.plan.n_deletes, 0);
    KT_CHECK(w.plan.status != NULL);
    apply(&w);
    KT_EQ_INT(tj_json_int(status(&w), "trialCount", 0), 2);
    KT_CHECK(!strcmp(tj_json_str(record(&w, 0), "phase", ""), "Running"));
    KT_CHECK(!strcmp(tj_json_str(record(&w, 1), "phase", ""), "Pending"));
    /* Each record has the params its pod was launched with. */
    for (int i = 0; i < 2; i++) {
        char name[16];
        snprintf(name, sizeof name, "demo-t%d", i);
        cJSON *want = cJSON_Parse(annotation(find_pod(&w, name), "kiln.dev/params"));
        KT_CHECK(want && cJSON_Compare(want, tj_json_path(record(&w, i), "params"), 1));
        cJSON_Delete(want);
    }
    /* Its result is recorded as usual. */
    advance(&w, 10);
    pod_succeed(&w, find_pod(&w, "demo-t0"), 0.6);
    step(&w);
    KT_CHECK(!strcmp(tj_json_str(record(&w, 0), "phase", ""), "Succeeded"));
    KT_NEAR(tj_json_num(record(&w, 0), "metrics.accuracy", 0), 0.6, 1e-9);
    KT_CHECK(find_pod(&w, "demo-t2") != NULL);
    world_free(&w);
}

static void test_parallelism(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":5,\"parallelism\":3,\"strategy\":\"random\"}"));
    step(&w);
    KT_EQ_INT(w.plan.n_creates, 3);
    KT_EQ_INT(w.n, 3);
    /* Three different configurations in flight. */
    const char *a = annotation(w.pods[0], "kiln.dev/params"),
               *b = annotation(w.pods[1], "kiln.dev/params"),
               *c = annotation(w.pods[2], "kiln.dev/params");
    KT_CHECK(strcmp(a, b) && strcmp(a, c) && strcmp(b, c));
    advance(&w, 10);
    pod_succeed(&w, find_pod(&w, "demo-t1"), 0.5);
    step(&w);
    KT_EQ_INT(w.plan.n_creates, 1);
    KT_CHECK(!strcmp(created_name(&w.plan, 0), "demo-t3"));
    advance(&w, 10);
    step(&w);
    KT_EQ_INT(w.plan.n_creates, 0);
    /* Budget: two more at most. */
    pod_succeed(&w, find_pod(&w, "demo-t0"), 0.5);
    pod_succeed(&w, find_pod(&w, "demo-t2"), 0.5);
    step(&w);
    KT_EQ_INT(w.plan.n_creates, 1);
    KT_CHECK(!strcmp(created_name(&w.plan, 0), "demo-t4"));
    KT_EQ_INT(tj_json_int(status(&w), "trialCount", 0), 5);
    world_free(&w);
}

static void test_goal_met_stop(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":5,\"parallelism\":2}"));
    step(&w);
    pod_run(&w, find_pod(&w, "demo-t0"));
    pod_run(&w, find_pod(&w, "demo-t1"));
    advance(&w, 60);
    pod_succeed(&w, find_pod(&w, "demo-t0"), 0.93);
    KT_EQ_INT(reconcile(&w), 0);
    tj_plan_out *p = &w.plan;
    KT_EQ_INT(p->n_creates, 0);
    KT_CHECK(deleted(p, "demo-t1", "goal-reached"));
    KT_CHECK(!deleted(p, "demo-t0", NULL)); /* its record is not stored yet */
    KT_CHECK(has_event(p, "GoalReached"));
    KT_STR_CONTAINS(event_message(p, "GoalReached"), "0.93");
    KT_STR_CONTAINS(event_message(p, "GoalReached"), "demo-t0");
    /* The goal's Event names the new best trial; no second Event for it. */
    KT_CHECK(!has_event(p, "NewBestTrial"));
    apply(&w);
    KT_CHECK(!strcmp(st_str(&w, "phase"), "Succeeded"));
    KT_CHECK(!strcmp(cond_status(&w, "GoalReached"), "True"));
    KT_CHECK(!strcmp(cond_status(&w, "Ready"), "True"));
    KT_CHECK(!strcmp(cond_status(&w, "Reconciling"), "False"));
    KT_CHECK(!strcmp(tj_json_str(record(&w, 1), "phase", ""), "Stopped"));
    KT_CHECK(tj_json_path(status(&w), "completionTime") != NULL);
    /* Nothing more happens, no repeated events; t0's pod goes after its TTL. */
    advance(&w, 10);
    KT_EQ_INT(reconcile(&w), 0);
    KT_CHECK(w.plan.status == NULL);
    KT_EQ_INT(w.plan.n_events, 0);
    KT_EQ_INT(w.plan.n_creates, 0);
    KT_CHECK(w.plan.requeue_after_ms > 0 && w.plan.requeue_after_ms <= 600 * 1000);
    advance(&w, 600);
    KT_EQ_INT(reconcile(&w), 0);
    KT_CHECK(deleted(&w.plan, "demo-t0", "ttl"));
    apply(&w);
    KT_EQ_INT(reconcile(&w), 0);
    KT_CHECK(w.plan.status == NULL); /* records outlive their pods */
    KT_CHECK(!strcmp(tj_json_str(record(&w, 0), "phase", ""), "Succeeded"));
    world_free(&w);
}

static void test_goal_met_finish(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":5,\"parallelism\":2,\"onGoal\":\"finish\"}"));
    step(&w);
    advance(&w, 60);
    pod_succeed(&w, find_pod(&w, "demo-t0"), 0.95);
    step(&w);
    KT_EQ_INT(w.plan.n_deletes, 0);
    KT_EQ_INT(w.plan.n_creates, 0);
    KT_CHECK(!strcmp(st_str(&w, "phase"), "Running"));
    KT_CHECK(!strcmp(cond_status(&w, "GoalReached"), "True"));
    advance(&w, 60);
    pod_succeed(&w, find_pod(&w, "demo-t1"), 0.97);
    step(&w);
    KT_CHECK(!strcmp(st_str(&w, "phase"), "Succeeded"));
    KT_CHECK(!strcmp(st_str(&w, "bestTrial.name"), "demo-t1"));
    KT_EQ_INT(w.plan.n_creates, 0);
    world_free(&w);
}

static void test_budget_spent(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":3,\"strategy\":\"ladder\"}"));
    double acc[] = {0.6, 0.75, 0.7};
    for (int i = 0; i < 3; i++) {
        step(&w);
        char name[32];
        snprintf(name, sizeof name, "demo-t%d", i);
        KT_CHECK(find_pod(&w, name) != NULL);
        advance(&w, 30);
        pod_succeed(&w, find_pod(&w, name), acc[i]);
    }
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.n_creates, 0);
    KT_CHECK(has_event(&w.plan, "GoalNotReached"));
    KT_STR_CONTAINS(event_message(&w.plan, "GoalNotReached"), "0.75");
    apply(&w);
    KT_CHECK(!strcmp(st_str(&w, "phase"), "Failed"));
    KT_CHECK(!strcmp(cond_status(&w, "GoalReached"), "False"));
    KT_CHECK(!strcmp(cond_reason(&w, "GoalReached"), "GoalNotReached"));
    KT_CHECK(!strcmp(st_str(&w, "bestTrial.name"), "demo-t1"));
    KT_CHECK(!strcmp(st_str(&w, "bestTrial.checkpoint"), "/models/t1/model.kiln"));
    KT_EQ_INT(tj_json_int(status(&w), "bestTrial.index", -1), 1);
    world_free(&w);
}

static void test_retry_with_resume(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":3,\"maxFailedTrials\":3},\"trainer\":{"
                        "\"backoffLimit\":1}"));
    step(&w);
    advance(&w, 20);
    pod_fail(&w, find_pod(&w, "demo-t0"), 137, "killed");
    KT_EQ_INT(reconcile(&w), 0);
    KT_CHECK(deleted(&w.plan, "demo-t0", "retry"));
    KT_EQ_INT(w.plan.n_creates, 0);
    KT_CHECK(has_event(&w.plan, "TrialRetrying"));
    KT_CHECK(w.plan.requeue_after_ms > 0);
    apply(&w);
    KT_EQ_INT(tj_json_int(record(&w, 0), "attempts", 0), 2);
    KT_CHECK(!strcmp(tj_json_str(record(&w, 0), "phase", ""), "Pending"));
    /* The pod is gone: it comes back with --resume, same index. */
    step(&w);
    KT_EQ_INT(w.plan.n_creates, 1);
    KT_CHECK(!strcmp(created_name(&w.plan, 0), "demo-t0"));
    KT_CHECK(args_have(created(&w.plan, 0), "--resume", NULL));
    KT_CHECK(!strcmp(annotation(created(&w.plan, 0), "kiln.dev/attempt"), "2"));
    KT_EQ_INT(tj_json_int(status(&w), "trialCount", 0), 1); /* counted once */
    /* The retry fails too: backoffLimit 1 is used up, the trial fails and
     * the search moves on to t1. */
    advance(&w, 20);
    pod_fail(&w, find_pod(&w, "demo-t0"), 1, "out of memory");
    KT_EQ_INT(reconcile(&w), 0);
    KT_CHECK(!deleted(&w.plan, "demo-t0", "retry"));
    KT_CHECK(has_event(&w.plan, "TrialFailed"));
    KT_EQ_INT(w.plan.n_creates, 1);
    KT_CHECK(!strcmp(created_name(&w.plan, 0), "demo-t1"));
    apply(&w);
    const cJSON *r0 = record(&w, 0);
    KT_CHECK(!strcmp(tj_json_str(r0, "phase", ""), "Failed"));
    KT_STR_CONTAINS(tj_json_str(r0, "message", ""), "out of memory");
    KT_STR_CONTAINS(tj_json_str(r0, "message", ""), "2 attempts");
    KT_EQ_INT(tj_json_int(status(&w), "failedTrials", 0), 1);
    KT_CHECK(!strcmp(st_str(&w, "phase"), "Running"));
    world_free(&w);
}

static void test_exit2_first_trial_stalls(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":3}"));
    step(&w);
    advance(&w, 5);
    pod_fail(&w, find_pod(&w, "demo-t0"), 2, "data.label: column species not found");
    KT_EQ_INT(reconcile(&w), 0);
    KT_CHECK(!deleted(&w.plan, "demo-t0", "retry"));
    KT_EQ_INT(w.plan.n_creates, 0);
    KT_CHECK(has_event(&w.plan, "TrialConfigError"));
    apply(&w);
    KT_CHECK(!strcmp(st_str(&w, "phase"), "Failed"));
    KT_CHECK(!strcmp(cond_status(&w, "Stalled"), "True"));
    KT_CHECK(!strcmp(cond_reason(&w, "Stalled"), "TrialConfigError"));
    KT_STR_CONTAINS(tj_json_str(condition(&w, "Stalled"), "message", ""),
                    "column species not found");
    KT_EQ_INT(tj_json_int(record(&w, 0), "attempts", 0), 1);
    /* Stable afterwards. */
    KT_EQ_INT(reconcile(&w), 0);
    KT_CHECK(w.plan.status == NULL);
    KT_EQ_INT(w.plan.n_creates, 0);
    world_free(&w);
}

static void test_max_failed_trials(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":6,\"maxFailedTrials\":2},\"trainer\":{"
                        "\"backoffLimit\":0}"));
    step(&w);
    succeed_and_step(&w, 0, 0.5);
    advance(&w, 5);
    pod_fail(&w, find_pod(&w, "demo-t1"), 1, "diverging loss");
    step(&w);
    KT_CHECK(!strcmp(st_str(&w, "phase"), "Running"));
    KT_EQ_INT(w.plan.n_creates, 1);
    advance(&w, 5);
    pod_fail(&w, find_pod(&w, "demo-t2"), 2, "warm start mismatch");
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.n_creates, 0);
    KT_CHECK(has_event(&w.plan, "TooManyFailedTrials"));
    apply(&w);
    KT_CHECK(!strcmp(st_str(&w, "phase"), "Failed"));
    KT_CHECK(!strcmp(cond_reason(&w, "Ready"), "TooManyFailedTrials"));
    KT_STR_CONTAINS(st_str(&w, "message"), "2 trials failed");
    KT_CHECK(!strcmp(cond_status(&w, "Stalled"), "False"));
    world_free(&w);
}

static void test_spec_change_new_search(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":4}"));
    step(&w);
    advance(&w, 5);
    pod_succeed(&w, find_pod(&w, "demo-t0"), 0.6);
    step(&w); /* t1 starts */
    pod_run(&w, find_pod(&w, "demo-t1"));
    advance(&w, 5);
    /* The user edits the spec: a new generation. */
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(w.job, "metadata"), "generation",
                              cJSON_CreateNumber(2));
    cJSON_ReplaceItemInObject(
        tj_json_path(w.job, "spec.training") ? (cJSON *)tj_json_path(w.job, "spec.training") : NULL,
        "epochs", cJSON_CreateNumber(5));
    KT_EQ_INT(reconcile(&w), 0);
    tj_plan_out *p = &w.plan;
    KT_CHECK(deleted(p, "demo-t1", "superseded"));
    KT_EQ_INT(p->n_creates, 1);
    KT_CHECK(!strcmp(created_name(p, 0), "demo-t2"));
    KT_CHECK(has_event(p, "SearchStarted"));
    KT_CHECK(!strcmp(annotation(created(p, 0), "kiln.dev/search"), "g2 t2"));
    apply(&w);
    KT_CHECK(!strcmp(st_str(&w, "search"), "g2 t2"));
    KT_EQ_INT(tj_json_int(status(&w), "observedGeneration", 0), 2);
    KT_CHECK(!strcmp(tj_json_str(record(&w, 1), "phase", ""), "Stopped"));
    /* The old best keeps its place until something better exists. */
    KT_CHECK(!strcmp(st_str(&w, "bestTrial.name"), "demo-t0"));
    cJSON *cfg = cJSON_Parse(
        cJSON_GetArrayItem(
            tj_json_path(
                cJSON_GetArrayItem(tj_json_path(find_pod(&w, "demo-t2"), "spec.containers"), 0),
                "args"),
            2)
            ->valuestring);
    KT_EQ_INT(tj_json_int(cfg, "training.epochs", 0), 5);
    cJSON_Delete(cfg);
    succeed_and_step(&w, 2, 0.55);
    KT_CHECK(!strcmp(st_str(&w, "bestTrial.name"), "demo-t0"));
    KT_CHECK(!strcmp(created_name(&w.plan, 0), "demo-t3"));
    succeed_and_step(&w, 3, 0.8);
    KT_CHECK(!strcmp(st_str(&w, "bestTrial.name"), "demo-t3"));
    world_free(&w);
}

static void set_retrain(world *w, const char *v)
{
    cJSON *meta = cJSON_GetObjectItem(w->job, "metadata");
    cJSON_DeleteItemFromObject(meta, "annotations");
    cJSON *ann = cJSON_AddObjectToObject(meta, "annotations");
    cJSON_AddStringToObject(ann, "kiln.dev/retrain", v);
}

static void test_retrain_annotation(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":1}"));
    step(&w);
    succeed_and_step(&w, 0, 0.5);
    KT_CHECK(!strcmp(st_str(&w, "phase"), "Failed"));
    step(&w);
    KT_EQ_INT(w.plan.n_creates, 0);
    set_retrain(&w, "2026-11-23");
    step(&w);
    KT_EQ_INT(w.plan.n_creates, 1);
    KT_CHECK(!strcmp(created_name(&w.plan, 0), "demo-t1"));
    KT_CHECK(!strcmp(st_str(&w, "search"), "g1 t1 retrain=2026-11-23"));
    KT_CHECK(!strcmp(st_str(&w, "phase"), "Pending"));
    /* The same value again starts nothing. */
    step(&w);
    KT_EQ_INT(w.plan.n_creates, 0);
    KT_CHECK(w.plan.status == NULL);
    set_retrain(&w, "again");
    step(&w);
    KT_CHECK(!strcmp(created_name(&w.plan, 0), "demo-t2"));
    world_free(&w);
}

static void test_invalid_specs_stall(void)
{
    static const struct {
        const char *spec;
        const char *needle;
    } cases[] = {
        {SPEC(",\"tuning\":{\"maxTrials\":2,\"parallelism\":3}"), "parallelism"},
        {"{\"data\":{\"uri\":\"file:///d\"},\"objective\":{\"metric\":\"accuracy\",\"goal\":1.5}}",
         "[0, 1]"},
        {"{\"data\":{\"uri\":\"file:///d\"},\"objective\":{\"metric\":\"silhouette\",\"goal\":-2}}",
         "[-1, 1]"},
        {"{\"data\":{\"uri\":\"file:///"
         "d\"},\"model\":{\"family\":\"kmeans\"},\"objective\":{\"metric\":\"accuracy\"}}",
         "kmeans"},
        {"{\"data\":{\"uri\":\"file:///"
         "d\"},\"model\":{\"family\":\"cnn\"},\"objective\":{\"metric\":\"wcss\",\"goal\":3}}",
         "only to kmeans"},
        {"{\"data\":{\"uri\":\"ftp://x/y\"}}", "spec.data.uri"},
        {"{\"data\":{\"uri\":\"pvc://Bad_Claim/x\"}}", "pvc://"},
        {"{\"model\":{}}", "spec.data"},
        {"{\"data\":{\"uri\":\"/d\"},\"storage\":{\"size\":\"lots\"}}", "storage.size"},
        {"{\"data\":{\"uri\":\"/d\"},\"tuning\":{\"strategy\":\"genetic\"}}", "tuning.strategy"},
        {"{\"data\":{\"uri\":\"/"
         "d\"},\"model\":{\"kmeans\":{\"clusters\":20,\"maxClusters\":5}},\"objective\":{"
         "\"metric\":\"wcss\",\"goal\":1}}",
         "maxClusters"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        world w;
        world_init(&w, cases[i].spec);
        KT_EQ_INT(reconcile(&w), 0);
        KT_EQ_INT(w.plan.n_creates, 0);
        KT_CHECK(has_event(&w.plan, "InvalidSpec"));
        apply(&w);
        KT_CHECK(!strcmp(cond_status(&w, "Stalled"), "True"));
        KT_CHECK(!strcmp(cond_reason(&w, "Stalled"), "InvalidSpec"));
        const char *msg = tj_json_str(condition(&w, "Stalled"), "message", "");
        if (!strstr(msg, cases[i].needle))
            fprintf(stderr, "case %zu: '%s' lacks '%s'\n", i, msg, cases[i].needle);
        KT_STR_CONTAINS(msg, cases[i].needle);
        KT_CHECK(!strcmp(st_str(&w, "phase"), "Failed"));
        /* Once reported, it stays quiet until the spec changes. */
        KT_EQ_INT(reconcile(&w), 0);
        KT_EQ_INT(w.plan.n_events, 0);
        KT_CHECK(w.plan.status == NULL);
        world_free(&w);
    }
    /* Fixing the spec (a new generation) starts the search. */
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":2,\"parallelism\":3}"));
    step(&w);
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(w.job, "metadata"), "generation",
                              cJSON_CreateNumber(2));
    cJSON_ReplaceItemInObject((cJSON *)tj_json_path(w.job, "spec.tuning"), "parallelism",
                              cJSON_CreateNumber(2));
    step(&w);
    KT_EQ_INT(w.plan.n_creates, 2);
    KT_CHECK(!strcmp(cond_status(&w, "Stalled"), "False"));
    world_free(&w);
}

static void test_status_bounded(void)
{
    world w;
    world_init(&w,
               SPEC(",\"tuning\":{\"maxTrials\":60,\"parallelism\":2,\"strategy\":\"random\","
                    "\"searchSpace\":{\"learningRate\":{\"min\":0.0001,\"max\":0.1,\"log\":true},"
                    "\"batchSize\":{\"min\":8,\"max\":512}}},"
                    "\"trainer\":{\"ttlSecondsAfterFinished\":0}"));
    int max_listed = 0;
    for (int round = 0; round < 40 && strcmp(st_str(&w, "phase"), "Failed"); round++) {
        step(&w);
        int n = cJSON_GetArraySize(tj_json_path(status(&w), "trials"));
        max_listed = n > max_listed ? n : max_listed;
        advance(&w, 10);
        for (int i = 0; i < w.n; i++) {
            if (!strcmp(tj_json_str(w.pods[i], "status.phase", ""), "Pending"))
                pod_succeed(&w, w.pods[i], 0.3 + 0.001 * round);
        }
    }
    step(&w);
    step(&w);
    KT_CHECK(!strcmp(st_str(&w, "phase"), "Failed"));
    KT_EQ_INT(tj_json_int(status(&w), "trialCount", 0), 60);
    KT_EQ_INT(cJSON_GetArraySize(tj_json_path(status(&w), "trials")), 50);
    KT_CHECK(max_listed <= 50);
    KT_EQ_INT(tj_json_int(status(&w), "olderTrials.count", 0), 10);
    KT_EQ_INT(tj_json_int(status(&w), "olderTrials.succeeded", 0), 10);
    KT_EQ_INT(tj_json_int(cJSON_GetArrayItem(tj_json_path(status(&w), "trials"), 0), "index", -1),
              10);
    KT_EQ_INT(w.n, 0); /* ttl 0: every finished pod deleted once recorded */
    world_free(&w);
}

static void test_conditions_keep_transition_time(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":3}"));
    step(&w);
    char t0[64];
    snprintf(t0, sizeof t0, "%s",
             tj_json_str(condition(&w, "Reconciling"), "lastTransitionTime", ""));
    KT_CHECK(t0[0] != '\0');
    pod_run(&w, find_pod(&w, "demo-t0"));
    advance(&w, 100);
    step(&w);
    KT_CHECK(w.plan.status != NULL); /* phase Pending -> Running */
    KT_CHECK(!strcmp(tj_json_str(condition(&w, "Reconciling"), "lastTransitionTime", ""), t0));
    KT_CHECK(!strcmp(tj_json_str(condition(&w, "Stalled"), "lastTransitionTime", ""), t0));
    advance(&w, 100);
    KT_EQ_INT(reconcile(&w), 0);
    KT_CHECK(w.plan.status == NULL);
    /* A status change moves only the condition that changed. */
    pod_succeed(&w, find_pod(&w, "demo-t0"), 0.95);
    step(&w);
    KT_CHECK(!strcmp(cond_status(&w, "GoalReached"), "True"));
    KT_CHECK(strcmp(tj_json_str(condition(&w, "GoalReached"), "lastTransitionTime", ""), t0) != 0);
    KT_CHECK(!strcmp(tj_json_str(condition(&w, "Stalled"), "lastTransitionTime", ""), t0));
    world_free(&w);
}

static void test_pending_pod_stalls(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":3}"));
    step(&w);
    set_pod_status(
        find_pod(&w, "demo-t0"),
        parse("{\"phase\":\"Pending\",\"containerStatuses\":[{\"name\":\"trainer\",\"state\":"
              "{\"waiting\":{\"reason\":\"ImagePullBackOff\",\"message\":\"pull access "
              "denied\"}}}]}"));
    advance(&w, 10);
    step(&w);
    KT_CHECK(!strcmp(cond_status(&w, "Stalled"), "False"));
    KT_CHECK(w.plan.requeue_after_ms > 0 && w.plan.requeue_after_ms <= 50 * 1000);
    advance(&w, 60);
    KT_EQ_INT(reconcile(&w), 0);
    KT_CHECK(has_event(&w.plan, "Stalled"));
    apply(&w);
    KT_CHECK(!strcmp(cond_status(&w, "Stalled"), "True"));
    KT_CHECK(!strcmp(cond_reason(&w, "Stalled"), "ImagePullBackOff"));
    KT_STR_CONTAINS(st_str(&w, "message"), "pull access denied");
    KT_EQ_INT(w.n, 1); /* the pod stays: the image may appear */
    /* Unschedulable works the same way. */
    set_pod_status(
        find_pod(&w, "demo-t0"),
        parse("{\"phase\":\"Pending\",\"conditions\":[{\"type\":\"PodScheduled\",\"status\":"
              "\"False\","
              "\"reason\":\"Unschedulable\",\"message\":\"0/1 nodes: insufficient memory\"}]}"));
    step(&w);
    KT_CHECK(!strcmp(cond_reason(&w, "Stalled"), "Unschedulable"));
    pod_run(&w, find_pod(&w, "demo-t0"));
    step(&w);
    KT_CHECK(!strcmp(cond_status(&w, "Stalled"), "False"));
    world_free(&w);
}

static void test_warm_start_args(void)
{
    /* Adaptive on an MLP just short of its goal (0.89 for 0.9) warm-starts
     * more epochs from t0. */
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":3,\"strategy\":\"adaptive\"}"));
    step(&w);
    succeed_and_step(&w, 0, 0.89);
    cJSON *t1 = find_pod(&w, "demo-t1");
    KT_CHECK(t1 != NULL);
    if (t1 && strstr(annotation(t1, "kiln.dev/params"), "warmStartFrom")) {
        KT_CHECK(args_have(t1, "--warm-start", "/models/t0/model.kiln"));
        cJSON *cfg = cJSON_Parse(
            cJSON_GetArrayItem(
                tj_json_path(cJSON_GetArrayItem(tj_json_path(t1, "spec.containers"), 0), "args"), 2)
                ->valuestring);
        KT_EQ_INT(tj_json_int(cfg, "training.epochs", 0), 2); /* extraEpochs: 4 - 2 */
        cJSON_Delete(cfg);
    } else {
        KT_CHECK(!"adaptive should warm-start more epochs");
    }
    world_free(&w);
}

static void test_deleting_job_plans_nothing(void)
{
    world w;
    world_init(&w, SPEC(""));
    cJSON_AddStringToObject(cJSON_GetObjectItem(w.job, "metadata"), "deletionTimestamp",
                            "2026-11-23T10:00:00Z");
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.n_creates, 0);
    KT_CHECK(w.plan.status == NULL);
    world_free(&w);
    cJSON *nameless = parse("{\"spec\":{}}");
    tj_env env = {0};
    tj_plan_out p;
    tj_plan_init(&p);
    kiln_error err = {0};
    KT_EQ_INT(tj_plan(nameless, NULL, 0, &env, &p, &err), KILN_EINVAL);
    tj_plan_release(&p);
    cJSON_Delete(nameless);
}

static void test_vanished_pod_recreated(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":3}"));
    step(&w);
    pod_run(&w, find_pod(&w, "demo-t0"));
    advance(&w, 5);
    step(&w);
    /* Someone deletes the running pod (a drained node, kubectl delete). */
    remove_pod(&w, "demo-t0");
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.n_creates, 1);
    KT_CHECK(!strcmp(created_name(&w.plan, 0), "demo-t0"));
    KT_CHECK(args_have(created(&w.plan, 0), "--resume", NULL));
    KT_CHECK(!strcmp(annotation(created(&w.plan, 0), "kiln.dev/attempt"), "1"));
    KT_CHECK(!has_event(&w.plan, "TrialRetrying"));
    KT_CHECK(!has_event(&w.plan, "TrialCreated"));
    apply(&w);
    KT_EQ_INT(tj_json_int(status(&w), "trialCount", 0), 1);
    world_free(&w);
}

static void test_foreign_pods_ignored(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":3}"));
    /* Another job's trial pod, a pod with our label but another owner, and
     * a serving pod: none of them is a trial of this job. */
    w.pods[w.n++] =
        parse("{\"metadata\":{\"name\":\"other-t0\",\"labels\":{\"kiln.dev/job\":\"other\","
              "\"kiln.dev/trial\":\"0\"}},\"status\":{\"phase\":\"Running\"}}");
    w.pods[w.n++] =
        parse("{\"metadata\":{\"name\":\"demo-t7\",\"labels\":{\"kiln.dev/job\":\"demo\","
              "\"kiln.dev/"
              "trial\":\"7\"},\"ownerReferences\":[{\"uid\":\"old-uid\",\"controller\":true}]},"
              "\"status\":{\"phase\":\"Running\"}}");
    w.pods[w.n++] =
        parse("{\"metadata\":{\"name\":\"demo-serve-x\",\"labels\":{\"kiln.dev/job\":\"demo\","
              "\"kiln.dev/serving\":\"demo\"}},\"status\":{\"phase\":\"Running\"}}");
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.n_creates, 1);
    KT_CHECK(!strcmp(created_name(&w.plan, 0), "demo-t0"));
    KT_EQ_INT(w.plan.n_deletes, 0);
    KT_EQ_INT(tj_json_int(w.plan.status, "trialCount", 0), 1);
    world_free(&w);
}

static void test_lost_write_of_new_search(void)
{
    /* The status that started search g2 at t1 was never stored, but its
     * pod was created: the next plan joins that search instead of
     * superseding its own trial. */
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":1}"));
    step(&w);
    succeed_and_step(&w, 0, 0.5);
    KT_CHECK(!strcmp(st_str(&w, "phase"), "Failed"));
    cJSON *stored = cJSON_Duplicate(status(&w), 1);
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(w.job, "metadata"), "generation",
                              cJSON_CreateNumber(2));
    step(&w);
    KT_CHECK(find_pod(&w, "demo-t1") != NULL);
    cJSON_ReplaceItemInObject(w.job, "status", stored); /* the write is lost */
    KT_EQ_INT(reconcile(&w), 0);
    KT_CHECK(!deleted(&w.plan, "demo-t1", NULL));
    KT_EQ_INT(w.plan.n_creates, 0);
    KT_CHECK(!strcmp(tj_json_str(w.plan.status, "search", ""), "g2 t1"));
    world_free(&w);
}

static void test_namespace_from_env(void)
{
    world w;
    world_init(&w, SPEC(""));
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(w.job, "metadata"), "namespace");
    w.env.ns = "team-a";
    w.env.trainer_image = "kiln-trainer:local";
    KT_EQ_INT(reconcile(&w), 0);
    KT_CHECK(!strcmp(tj_json_str(created(&w.plan, 0), "metadata.namespace", ""), "team-a"));
    KT_CHECK(!strcmp(
        tj_json_str(cJSON_GetArrayItem(tj_json_path(created(&w.plan, 0), "spec.containers"), 0),
                    "image", ""),
        "kiln-trainer:local"));
    world_free(&w);
}

static void test_hostile_status(void)
{
    static const char *const statuses[] = {
        "{\"trials\":\"x\",\"trialCount\":-5,\"search\":7,\"bestTrial\":[],\"conditions\":{},"
        "\"olderTrials\":3,\"phase\":\"Succeeded\"}",
        "{\"trials\":[1,{\"index\":\"2\"},{\"index\":-1,\"phase\":\"Running\"},{\"index\":1e300}],"
        "\"search\":\"g1 t99999999999\",\"failedTrials\":\"many\"}",
        "{\"search\":\"g1 t0 extra\",\"olderTrials\":{\"count\":5},\"trials\":[]}",
    };
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        world w;
        world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":3}"));
        cJSON_AddItemToObject(w.job, "status", parse(statuses[i]));
        KT_EQ_INT(reconcile(&w), 0);
        KT_CHECK(w.plan.status != NULL);
        KT_CHECK(w.plan.n_creates <= 1);
        world_free(&w);
    }
    /* A pod with mangled annotations and labels. */
    world w;
    world_init(&w, SPEC(""));
    w.pods[w.n++] =
        parse("{\"metadata\":{\"name\":\"demo-t0\",\"labels\":{\"kiln.dev/job\":\"demo\","
              "\"kiln.dev/trial\":\"0\"},\"annotations\":{\"kiln.dev/params\":\"{\",\"kiln.dev/"
              "attempt\":\"x\"}},"
              "\"status\":{\"phase\":\"Failed\",\"containerStatuses\":\"no\"}}");
    w.pods[w.n++] =
        parse("{\"metadata\":{\"name\":\"demo-tx\",\"labels\":{\"kiln.dev/job\":\"demo\","
              "\"kiln.dev/trial\":\"x\"}}}");
    KT_EQ_INT(reconcile(&w), 0);
    KT_CHECK(w.plan.status != NULL);
    world_free(&w);
}

/* Trials in flight are not failures: the parallel trials planned next to
 * them are not explained as reactions to a failed trial, and only a trial
 * that did fail is reported (and counted) as failed. */
static void test_parallel_running_not_failed(void)
{
    world w;
    world_init(&w, SPEC(",\"tuning\":{\"maxTrials\":6,\"parallelism\":3}"));
    step(&w);
    KT_EQ_INT(w.plan.n_creates, 3);
    int created = 0;
    for (int i = 0; i < w.plan.n_events; i++) {
        created += !strcmp(w.plan.events[i].reason, "TrialCreated");
        KT_CHECK(strstr(w.plan.events[i].message, "failed") == NULL);
    }
    KT_EQ_INT(created, 3);
    pod_run(&w, find_pod(&w, "demo-t0"));
    pod_run(&w, find_pod(&w, "demo-t1"));
    advance(&w, 5);
    pod_fail(&w, find_pod(&w, "demo-t2"), 2, "boom");
    step(&w);
    int failed = 0;
    for (int i = 0; i < w.plan.n_events; i++) {
        const tj_event *e = &w.plan.events[i];
        if (!strcmp(e->reason, "TrialFailed")) {
            failed++;
            KT_STR_CONTAINS(e->message, "demo-t2");
        }
        KT_CHECK(!strstr(e->message, "demo-t0") && !strstr(e->message, "demo-t1"));
    }
    KT_EQ_INT(failed, 1);
    /* The next trial reacts to the one that failed, and says so. */
    KT_STR_CONTAINS(event_message(&w.plan, "TrialCreated"), "failed trial");
    KT_EQ_INT(tj_json_int(status(&w), "failedTrials", -1), 1);
    const cJSON *t;
    cJSON_ArrayForEach(t, tj_json_path(status(&w), "trials"))
    {
        int idx = (int)tj_json_int(t, "index", -1);
        const char *ph = tj_json_str(t, "phase", "");
        if (idx == 0 || idx == 1)
            KT_CHECK(!strcmp(ph, "Running"));
        else if (idx == 2)
            KT_CHECK(!strcmp(ph, "Failed"));
    }
    world_free(&w);
}

int main(void)
{
    KT_RUN(test_first_reconcile_creates_t0);
    KT_RUN(test_idempotent);
    KT_RUN(test_claim_asked_while_unconfirmed);
    KT_RUN(test_success_records_and_plans_next);
    KT_RUN(test_parallelism);
    KT_RUN(test_pods_created_before_their_records);
    KT_RUN(test_first_status_waits_while_pending);
    KT_RUN(test_first_status_waits_for_starting_pods);
    KT_RUN(test_goal_met_stop);
    KT_RUN(test_goal_met_finish);
    KT_RUN(test_budget_spent);
    KT_RUN(test_retry_with_resume);
    KT_RUN(test_exit2_first_trial_stalls);
    KT_RUN(test_max_failed_trials);
    KT_RUN(test_spec_change_new_search);
    KT_RUN(test_retrain_annotation);
    KT_RUN(test_invalid_specs_stall);
    KT_RUN(test_status_bounded);
    KT_RUN(test_conditions_keep_transition_time);
    KT_RUN(test_pending_pod_stalls);
    KT_RUN(test_warm_start_args);
    KT_RUN(test_deleting_job_plans_nothing);
    KT_RUN(test_vanished_pod_recreated);
    KT_RUN(test_foreign_pods_ignored);
    KT_RUN(test_lost_write_of_new_search);
    KT_RUN(test_namespace_from_env);
    KT_RUN(test_hostile_status);
    KT_RUN(test_parallel_running_not_failed);
    return KT_DONE();
}
