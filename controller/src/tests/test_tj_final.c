/* Tests for tj_final: the finalizer kiln.dev/checkpoints on live jobs, and
 * the clean-up of a deleted job's checkpoints planned step by step over a
 * simulated API (trial pods stopped first, the clean-up pod, its retries
 * with back-off, giving up, retain and the job's own claim). */
#include <stdlib.h>
#include <string.h>

#include "ktest.h"
#include "tj_final.h"
#include "tj_json.h"
#include "tj_plan.h"
#include "tj_pod.h"

#define MAX_PODS 16

typedef struct world {
    cJSON *job;
    cJSON *pods[MAX_PODS];
    int n;
    tj_env env;
    tj_plan_out plan;
} world;

static const char *SHARED =
    "{\"data\":{\"uri\":\"file:///usr/share/datasets/fashion-mnist\"},"
    "\"model\":{\"family\":\"mlp\"},\"objective\":{\"metric\":\"accuracy\",\"goal\":0.8},"
    "\"storage\":{\"volume\":{\"persistentVolumeClaim\":{\"claimName\":\"shared\"}}}}";

static void world_init(world *w, const char *spec, const char *finalizers, int deleting)
{
    memset(w, 0, sizeof *w);
    char meta[512];
    snprintf(meta, sizeof meta,
             "{\"apiVersion\":\"kiln.dev/v1alpha1\",\"kind\":\"TrainingJob\",\"metadata\":{"
             "\"name\":\"demo\",\"namespace\":\"ml\",\"uid\":\"uid-1\",\"generation\":1,"
             "\"resourceVersion\":\"42\",\"finalizers\":%s%s}}",
             finalizers, deleting ? ",\"deletionTimestamp\":\"2026-11-23T10:00:00Z\"" : "");
    w->job = cJSON_Parse(meta);
    cJSON_AddItemToObject(w->job, "spec", cJSON_Parse(spec));
    ktime_parse("2026-11-23T10:00:00Z", &w->env.now, NULL);
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

static int reconcile(world *w)
{
    kiln_error err = {0};
    int rc = tj_plan(w->job, (const cJSON *const *)w->pods, w->n, &w->env, &w->plan, &err);
    if (rc)
        fprintf(stderr, "tj_plan: %s\n", err.msg);
    return rc;
}

static cJSON *find_pod(world *w, const char *name)
{
    for (int i = 0; i < w->n; i++)
        if (!strcmp(tj_json_str(w->pods[i], "metadata.name", ""), name))
            return w->pods[i];
    return NULL;
}

static void add_pod(world *w, cJSON *pod, const char *status)
{
    char t[KTIME_BUFSZ];
    ktime_format(w->env.now, 0, t, sizeof t);
    cJSON_AddStringToObject(cJSON_GetObjectItem(pod, "metadata"), "creationTimestamp", t);
    cJSON_AddItemToObject(pod, "status", cJSON_Parse(status));
    w->pods[w->n++] = pod;
}

/* Status, deletes, creates, as ctrl.c runs them. */
static void apply(world *w)
{
    tj_plan_out *p = &w->plan;
    if (p->status) {
        cJSON_DeleteItemFromObject(w->job, "status");
        cJSON_AddItemToObject(w->job, "status", cJSON_Duplicate(p->status, 1));
    }
    for (int i = 0; i < p->n_deletes; i++) {
        for (int j = 0; j < w->n; j++) {
            if (!strcmp(tj_json_str(w->pods[j], "metadata.name", ""), p->deletes[i].name)) {
                cJSON_Delete(w->pods[j]);
                w->pods[j] = w->pods[--w->n];
                break;
            }
        }
    }
    for (int i = 0; i < p->n_creates; i++)
        if (!find_pod(w, tj_json_str(p->creates[i], "metadata.name", "")))
            add_pod(w, cJSON_Duplicate(p->creates[i], 1), "{\"phase\":\"Pending\"}");
}

static int has_event(const tj_plan_out *p, const char *reason)
{
    for (int i = 0; i < p->n_events; i++)
        if (!strcmp(p->events[i].reason, reason))
            return 1;
    return 0;
}

static const char *event_msg(const tj_plan_out *p, const char *reason)
{
    for (int i = 0; i < p->n_events; i++)
        if (!strcmp(p->events[i].reason, reason))
            return p->events[i].message;
    return NULL;
}

/* strcmp that fails a check instead of crashing on a missing string. */
static int streq(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

static const char *arg(const cJSON *pod, int i)
{
    const cJSON *a = cJSON_GetArrayItem(tj_json_path(pod, "spec.containers"), 0);
    return cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(a, "args"), i));
}

static void fail_cleanup(cJSON *pod)
{
    cJSON_ReplaceItemInObject(
        pod, "status",
        cJSON_Parse("{\"phase\":\"Failed\",\"containerStatuses\":[{\"name\":\"cleanup\",\"state\":"
                    "{\"terminated\":{\"exitCode\":1,\"reason\":\"Error\",\"message\":"
                    "\"{\\\"error\\\":\\\"/models/ml/demo: t0: Permission denied\\\"}\"}}}]}"));
}

/* ------------------------------------------------------------ tests */

static void test_live_job_gets_the_finalizer(void)
{
    world w;
    world_init(&w, SHARED, "[\"other.example/keep\"]", 0);
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.finalizer, TJ_FINALIZER_ADD);
    cJSON *patch = cJSON_Parse(w.plan.finalizer_patch ? w.plan.finalizer_patch : "");
    const cJSON *list = tj_json_path(patch, "metadata.finalizers");
    KT_EQ_INT(cJSON_GetArraySize(list), 2);
    KT_CHECK(streq(cJSON_GetStringValue(cJSON_GetArrayItem(list, 0)), "other.example/keep"));
    KT_CHECK(streq(cJSON_GetStringValue(cJSON_GetArrayItem(list, 1)), TJ_FINALIZER));
    KT_CHECK(!strcmp(tj_json_str(patch, "metadata.resourceVersion", ""), "42"));
    cJSON_Delete(patch);
    /* The rest of the plan is still computed: the first trial. */
    KT_EQ_INT(w.plan.n_creates, 1);
    world_free(&w);

    world_init(&w, SHARED, "[\"kiln.dev/checkpoints\"]", 0);
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.finalizer, TJ_FINALIZER_KEEP);
    KT_CHECK(w.plan.finalizer_patch == NULL);
    world_free(&w);

    /* Nothing to clean up, no finalizer (and no extra write): the job's own
     * claim goes with it, a retained volume is left alone. */
    const char *no_cleanup[] = {
        "{\"data\":{\"uri\":\"file:///d\"}}",
        "{\"data\":{\"uri\":\"file:///d\"},\"storage\":{\"retain\":true,\"volume\":{"
        "\"persistentVolumeClaim\":{\"claimName\":\"shared\"}}}}",
    };
    for (size_t i = 0; i < sizeof(no_cleanup) / sizeof(no_cleanup[0]); i++) {
        world_init(&w, no_cleanup[i], "[]", 0);
        KT_EQ_INT(reconcile(&w), 0);
        KT_EQ_INT(w.plan.finalizer, TJ_FINALIZER_KEEP);
        KT_CHECK(w.plan.finalizer_patch == NULL);
        KT_EQ_INT(w.plan.n_creates, 1);
        world_free(&w);
    }
}

static void test_shared_volume_layout(void)
{
    world w;
    world_init(&w, SHARED, "[\"kiln.dev/checkpoints\"]", 0);
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.n_creates, 1);
    /* On a shared claim each job writes under its own directory. */
    const cJSON *c = cJSON_GetArrayItem(tj_json_path(w.plan.creates[0], "spec.containers"), 0);
    const cJSON *a;
    int found = 0;
    cJSON_ArrayForEach(a, cJSON_GetObjectItem(c, "args"))
    {
        if (a->prev && !strcmp(cJSON_GetStringValue(a->prev), "--output"))
            found = !strcmp(a->valuestring, "/models/ml/demo/t0");
    }
    KT_CHECK(found);
    world_free(&w);
}

static void test_deleting_stops_trials_then_cleans_up(void)
{
    world w;
    world_init(&w, SHARED, "[\"kiln.dev/checkpoints\"]", 0);
    KT_EQ_INT(reconcile(&w), 0);
    apply(&w);
    cJSON *t0 = find_pod(&w, "demo-t0");
    KT_CHECK(t0 != NULL);
    cJSON_ReplaceItemInObject(t0, "status", cJSON_Parse("{\"phase\":\"Running\"}"));
    /* kubectl delete tj demo */
    cJSON_AddStringToObject(cJSON_GetObjectItem(w.job, "metadata"), "deletionTimestamp",
                            "2026-11-23T10:00:00Z");

    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.n_creates, 0); /* nothing starts while a trial runs */
    KT_EQ_INT(w.plan.n_deletes, 1);
    KT_CHECK(!strcmp(w.plan.deletes[0].name, "demo-t0"));
    KT_CHECK(!strcmp(w.plan.deletes[0].reason, "job-deleted"));
    KT_EQ_INT(w.plan.finalizer, TJ_FINALIZER_KEEP);
    KT_STR_CONTAINS(tj_json_str(w.plan.status, "message", ""), "waiting for 1 trial pod");
    KT_CHECK(w.plan.requeue_after_ms > 0);
    apply(&w);
    KT_CHECK(find_pod(&w, "demo-t0") == NULL);

    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.n_creates, 1);
    const cJSON *pod = w.plan.n_creates ? w.plan.creates[0] : NULL;
    KT_CHECK(!strcmp(tj_json_str(pod, "metadata.name", ""), "demo-cleanup"));
    KT_CHECK(streq(arg(pod, 0), "clean"));
    KT_CHECK(streq(arg(pod, 1), "--models") && streq(arg(pod, 2), "/models"));
    KT_CHECK(streq(arg(pod, 3), "--job") && streq(arg(pod, 4), "ml/demo"));
    const cJSON *vol = cJSON_GetArrayItem(tj_json_path(pod, "spec.volumes"), 0);
    KT_CHECK(!strcmp(tj_json_str(vol, "persistentVolumeClaim.claimName", ""), "shared"));
    KT_CHECK(tj_json_bool(pod, "spec.securityContext.runAsNonRoot", 0));
    KT_EQ_INT(tj_json_int(pod, "spec.securityContext.runAsUser", 0), TJ_RUN_AS_USER);
    const cJSON *ref = cJSON_GetArrayItem(tj_json_path(pod, "metadata.ownerReferences"), 0);
    KT_CHECK(!strcmp(tj_json_str(ref, "uid", ""), "uid-1"));
    KT_EQ_INT(w.plan.finalizer, TJ_FINALIZER_KEEP);
    apply(&w);

    /* Running: nothing to do but wait. */
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.n_creates + w.plan.n_deletes, 0);
    KT_EQ_INT(w.plan.finalizer, TJ_FINALIZER_KEEP);

    cJSON *cp = find_pod(&w, "demo-cleanup");
    cJSON_ReplaceItemInObject(
        cp, "status",
        cJSON_Parse("{\"phase\":\"Succeeded\",\"containerStatuses\":[{\"name\":\"cleanup\","
                    "\"state\":{\"terminated\":{\"exitCode\":0,\"message\":"
                    "\"{\\\"removedDirs\\\":3,\\\"removedFiles\\\":7}\"}}}]}"));
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.finalizer, TJ_FINALIZER_REMOVE);
    KT_CHECK(w.plan.status == NULL); /* a status write would conflict with the patch */
    KT_STR_CONTAINS(event_msg(&w.plan, "CheckpointsDeleted"), "3 trial directories (7 files)");
    cJSON *patch = cJSON_Parse(w.plan.finalizer_patch ? w.plan.finalizer_patch : "");
    KT_EQ_INT(cJSON_GetArraySize(tj_json_path(patch, "metadata.finalizers")), 0);
    KT_CHECK(cJSON_IsArray(tj_json_path(patch, "metadata.finalizers")));
    cJSON_Delete(patch);
    world_free(&w);
}

/* kubectl delete --cascade=foreground (and GitOps tools that delete that
 * way): the garbage collector deletes every dependent while the job holds
 * foregroundDeletion, so the clean-up pod waits for it to be dropped. */
static void test_foreground_deletion_waits_for_the_collector(void)
{
    world w;
    world_init(&w, SHARED, "[\"kiln.dev/checkpoints\",\"foregroundDeletion\"]", 1);
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.n_creates, 0);
    KT_EQ_INT(w.plan.finalizer, TJ_FINALIZER_KEEP);
    KT_CHECK(w.plan.requeue_after_ms > 0);
    KT_STR_CONTAINS(tj_json_str(w.plan.status, "message", ""), "garbage collector");
    apply(&w);
    /* the collector is done with the dependents and drops its finalizer */
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(w.job, "metadata"), "finalizers",
                              cJSON_Parse("[\"kiln.dev/checkpoints\"]"));
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.n_creates, 1);
    KT_CHECK(w.plan.n_creates &&
             streq(tj_json_str(w.plan.creates[0], "metadata.name", NULL), "demo-cleanup"));
    world_free(&w);
}

static void test_failed_cleanup_backs_off_then_gives_up(void)
{
    world w;
    world_init(&w, SHARED, "[\"kiln.dev/checkpoints\"]", 1);
    KT_EQ_INT(reconcile(&w), 0);
    apply(&w);
    for (int attempt = 1; attempt <= TJ_FINAL_MAX_ATTEMPTS; attempt++) {
        cJSON *cp = find_pod(&w, "demo-cleanup");
        KT_CHECK(cp != NULL);
        if (!cp)
            break;
        const cJSON *ann = tj_json_path(cp, "metadata.annotations");
        char want[8];
        snprintf(want, sizeof want, "%d", attempt);
        KT_CHECK(!strcmp(tj_json_key_str(ann, TJ_ANN_ATTEMPT, ""), want));
        fail_cleanup(cp);
        KT_EQ_INT(reconcile(&w), 0);
        if (attempt == TJ_FINAL_MAX_ATTEMPTS) {
            KT_EQ_INT(w.plan.finalizer, TJ_FINALIZER_REMOVE);
            KT_CHECK(has_event(&w.plan, "CheckpointsNotDeleted"));
            KT_CHECK(w.plan.status == NULL);
            break;
        }
        KT_EQ_INT(w.plan.finalizer, TJ_FINALIZER_KEEP);
        KT_CHECK(has_event(&w.plan, "CleanupFailed"));
        KT_STR_CONTAINS(event_msg(&w.plan, "CleanupFailed"), "Permission denied");
        KT_EQ_INT(w.plan.n_deletes, 1);
        KT_EQ_INT(w.plan.requeue_after_ms, tj_final_backoff_ms(attempt));
        KT_EQ_INT(tj_json_int(w.plan.status, "cleanup.failures", 0), attempt);
        const cJSON *conds = tj_json_path(w.plan.status, "conditions");
        const cJSON *c, *stalled = NULL;
        cJSON_ArrayForEach(c, conds) if (!strcmp(tj_json_str(c, "type", ""), "Stalled")) stalled =
            c;
        KT_CHECK(!strcmp(tj_json_str(stalled, "status", ""), "True"));
        KT_CHECK(!strcmp(tj_json_str(stalled, "reason", ""), "CleanupFailed"));
        apply(&w);
        /* Before the back-off is over nothing is created, and the failure
         * is not reported twice. */
        w.env.now = ktime_add_ms(w.env.now, 1000);
        KT_EQ_INT(reconcile(&w), 0);
        KT_EQ_INT(w.plan.n_creates, 0);
        KT_CHECK(!has_event(&w.plan, "CleanupFailed"));
        KT_EQ_INT(w.plan.requeue_after_ms, tj_final_backoff_ms(attempt) - 1000);
        apply(&w);
        w.env.now = ktime_add_ms(w.env.now, tj_final_backoff_ms(attempt));
        KT_EQ_INT(reconcile(&w), 0);
        KT_EQ_INT(w.plan.n_creates, 1);
        apply(&w);
    }
    KT_EQ_INT(tj_final_backoff_ms(1), 5000);
    KT_EQ_INT(tj_final_backoff_ms(2), 10000);
    KT_EQ_INT(tj_final_backoff_ms(30), 300000);
    world_free(&w);
}

static void test_stuck_cleanup_pod_counts_as_failure(void)
{
    world w;
    world_init(&w, SHARED, "[\"kiln.dev/checkpoints\"]", 1);
    KT_EQ_INT(reconcile(&w), 0);
    apply(&w);
    cJSON *cp = find_pod(&w, "demo-cleanup");
    cJSON_ReplaceItemInObject(
        cp, "status",
        cJSON_Parse("{\"phase\":\"Pending\",\"conditions\":[{\"type\":\"PodScheduled\",\"status\":"
                    "\"False\",\"reason\":\"Unschedulable\",\"message\":"
                    "\"persistentvolumeclaim \\\"shared\\\" not found\"}]}"));
    w.env.now = ktime_add_ms(w.env.now, 10000);
    KT_EQ_INT(reconcile(&w), 0);
    KT_CHECK(!has_event(&w.plan, "CleanupFailed"));
    KT_EQ_INT(w.plan.requeue_after_ms, 50000);
    w.env.now = ktime_add_ms(w.env.now, 50000);
    KT_EQ_INT(reconcile(&w), 0);
    KT_STR_CONTAINS(event_msg(&w.plan, "CleanupFailed"), "not found");
    KT_EQ_INT(w.plan.n_deletes, 1);
    world_free(&w);
}

static void test_retain_and_own_claim_need_no_cleanup(void)
{
    world w;
    world_init(&w,
               "{\"data\":{\"uri\":\"file:///d\"},\"storage\":{\"retain\":true,\"volume\":{"
               "\"persistentVolumeClaim\":{\"claimName\":\"shared\"}}}}",
               "[\"kiln.dev/checkpoints\",\"other.example/keep\"]", 1);
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.finalizer, TJ_FINALIZER_REMOVE);
    KT_EQ_INT(w.plan.n_creates, 0);
    KT_CHECK(has_event(&w.plan, "CheckpointsRetained"));
    cJSON *patch = cJSON_Parse(w.plan.finalizer_patch ? w.plan.finalizer_patch : "");
    const cJSON *list = tj_json_path(patch, "metadata.finalizers");
    KT_EQ_INT(cJSON_GetArraySize(list), 1);
    KT_CHECK(streq(cJSON_GetStringValue(cJSON_GetArrayItem(list, 0)), "other.example/keep"));
    cJSON_Delete(patch);
    world_free(&w);

    /* The job's own claim goes with the job (owner reference). */
    world_init(&w, "{\"data\":{\"uri\":\"file:///d\"}}", "[\"kiln.dev/checkpoints\"]", 1);
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.finalizer, TJ_FINALIZER_REMOVE);
    KT_EQ_INT(w.plan.n_creates, 0);
    KT_CHECK(!has_event(&w.plan, "CheckpointsRetained"));
    world_free(&w);

    /* Without our finalizer a deleted job is not ours to hold. */
    world_init(&w, SHARED, "[]", 1);
    KT_EQ_INT(reconcile(&w), 0);
    KT_EQ_INT(w.plan.finalizer, TJ_FINALIZER_KEEP);
    KT_EQ_INT(w.plan.n_creates + w.plan.n_deletes + w.plan.n_events, 0);
    KT_CHECK(w.plan.status == NULL);
    world_free(&w);
}

static void test_cleanup_pod_manifest(void)
{
    cJSON *job =
        cJSON_Parse("{\"metadata\":{\"name\":\"a\",\"namespace\":\"n\",\"uid\":\"u\"},"
                    "\"spec\":{\"storage\":{\"volume\":{\"hostPath\":{\"path\":\"/srv\"}}},"
                    "\"trainer\":{\"resources\":{\"limits\":{\"nvidia.com/gpu\":1}}}}}");
    tj_spec s;
    kiln_error err = {0};
    KT_EQ_INT(tj_spec_read(job, NULL, &s, &err), 0);
    char dir[64];
    KT_EQ_INT(tj_pod_models_dir(&s, dir, sizeof dir), 0);
    KT_CHECK(!strcmp(dir, "/models/n/a"));
    KT_EQ_INT(tj_pod_models_dir(&s, dir, 8), KILN_EINVAL);
    cJSON *pod = NULL;
    KT_EQ_INT(tj_pod_cleanup(&s, 3, &pod, &err), 0);
    const cJSON *c = cJSON_GetArrayItem(tj_json_path(pod, "spec.containers"), 0);
    /* The trial's GPU is not needed to delete files. */
    KT_CHECK(!tj_json_path(c, "resources.limits"));
    KT_CHECK(!strcmp(tj_json_str(pod, "spec.restartPolicy", ""), "Never"));
    KT_CHECK(!tj_json_bool(pod, "spec.automountServiceAccountToken", 1));
    KT_CHECK(tj_json_bool(c, "securityContext.readOnlyRootFilesystem", 0));
    const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "volumeMounts"), 0);
    KT_CHECK(!strcmp(tj_json_str(m, "mountPath", ""), "/models"));
    KT_CHECK(!cJSON_GetObjectItem(m, "subPath"));
    const cJSON *v = cJSON_GetArrayItem(tj_json_path(pod, "spec.volumes"), 0);
    KT_CHECK(!strcmp(tj_json_str(v, "hostPath.path", ""), "/srv"));
    const cJSON *ann = tj_json_path(pod, "metadata.annotations");
    KT_CHECK(!strcmp(tj_json_key_str(ann, TJ_ANN_ATTEMPT, ""), "3"));
    const cJSON *labels = tj_json_path(pod, "metadata.labels");
    KT_CHECK(!strcmp(tj_json_key_str(labels, TJ_LABEL_JOB, ""), "a"));
    KT_CHECK(!cJSON_GetObjectItemCaseSensitive(labels, TJ_LABEL_TRIAL));
    cJSON_Delete(pod);
    cJSON_Delete(job);
}

int main(void)
{
    KT_RUN(test_live_job_gets_the_finalizer);
    KT_RUN(test_shared_volume_layout);
    KT_RUN(test_deleting_stops_trials_then_cleans_up);
    KT_RUN(test_foreground_deletion_waits_for_the_collector);
    KT_RUN(test_failed_cleanup_backs_off_then_gives_up);
    KT_RUN(test_stuck_cleanup_pod_counts_as_failure);
    KT_RUN(test_retain_and_own_claim_need_no_cleanup);
    KT_RUN(test_cleanup_pod_manifest);
    return KT_DONE();
}
