/* Tests for tj_serve: serving pods follow the best model with a rolling
 * replacement, failed pods are replaced from the last good checkpoint with
 * back-off, and a checkpoint that does not load is marked bad. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ktest.h"
#include "ktime.h"
#include "tj_serve.h"

static ktime now_at(int s)
{
    ktime t;
    ktime_parse("2026-11-23T10:00:00Z", &t, NULL);
    return ktime_add_ms(t, (int64_t)s * 1000);
}

static cJSON *job(int replicas)
{
    char buf[1024];
    snprintf(buf, sizeof buf,
             "{\"apiVersion\":\"kiln.dev/v1alpha1\",\"kind\":\"TrainingJob\","
             "\"metadata\":{\"name\":\"fm\",\"namespace\":\"ml\",\"uid\":\"u1\",\"generation\":1},"
             "\"spec\":{\"data\":{\"uri\":\"file:///d\"},\"objective\":{\"metric\":\"accuracy\",\"goal\":0.9},"
             "\"serving\":{\"enabled\":true,\"replicas\":%d,\"port\":8080}}}",
             replicas);
    return cJSON_Parse(buf);
}

static cJSON *status_with(const char *best, const char *serving_json)
{
    char buf[2048];
    snprintf(buf, sizeof buf,
             "{\"bestTrial\":{\"name\":\"fm-t1\",\"checkpoint\":\"%s\"},"
             "\"trials\":[{\"index\":0,\"checkpoint\":\"/models/t0/model.kiln\",\"metrics\":{\"accuracy\":0.8}},"
             "{\"index\":1,\"checkpoint\":\"/models/t1/model.kiln\",\"metrics\":{\"accuracy\":0.85}}]%s%s}",
             best, serving_json ? ",\"serving\":" : "", serving_json ? serving_json : "");
    return cJSON_Parse(buf);
}

/* A serving pod: state "ready", "loading", "failed", "crash". */
static cJSON *pod(const char *name, const char *ckpt, const char *state, int running_for_s)
{
    ktime start = now_at(-running_for_s);
    char ts[KTIME_BUFSZ];
    ktime_format(start, 0, ts, sizeof ts);
    char buf[2048];
    const char *phase = !strcmp(state, "failed") ? "Failed" : "Running";
    int ready = !strcmp(state, "ready");
    snprintf(buf, sizeof buf,
             "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"ml\",\"creationTimestamp\":\"%s\","
             "\"labels\":{\"kiln.dev/job\":\"fm\",\"kiln.dev/serving\":\"fm\"},"
             "\"annotations\":{\"kiln.dev/checkpoint\":\"%s\"}},"
             "\"status\":{\"phase\":\"%s\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"%s\"}],"
             "\"containerStatuses\":[{\"ready\":%s,\"restartCount\":0,\"state\":%s}]}}",
             name, ts, ckpt, phase, ready ? "True" : "False", ready ? "true" : "false",
             !strcmp(state, "crash") ? "{\"waiting\":{\"reason\":\"CrashLoopBackOff\"}}"
             : !strcmp(state, "failed") ? "{\"terminated\":{\"reason\":\"Error\",\"exitCode\":1}}"
                                        : "{\"running\":{\"startedAt\":\"TS\"}}");
    char *ts_at = strstr(buf, "\"TS\"");
    if (ts_at) {
        char fixed[2048];
        snprintf(fixed, sizeof fixed, "%.*s\"%s\"%s", (int)(ts_at - buf), buf, ts, ts_at + 4);
        return cJSON_Parse(fixed);
    }
    return cJSON_Parse(buf);
}

static int plan(const cJSON *j, const cJSON *st, cJSON **pods, int n, int have_svc, int at,
                tj_serve_out *o)
{
    tj_env env = {.now = now_at(at), .stall_after_s = -1};
    kiln_error err = {0};
    int rc = tj_serve_plan(j, st, (const cJSON *const *)pods, n, have_svc, &env, o, &err);
    if (rc)
        fprintf(stderr, "tj_serve_plan: %s\n", err.msg);
    return rc;
}

static const char *create_ckpt(const tj_serve_out *o, int i)
{
    const cJSON *a = cJSON_GetObjectItem(cJSON_GetObjectItem(o->creates[i], "metadata"), "annotations");
    return cJSON_GetStringValue(cJSON_GetObjectItem(a, "kiln.dev/checkpoint"));
}

static void test_no_model(void)
{
    cJSON *j = job(1), *st = cJSON_Parse("{}");
    tj_serve_out o;
    KT_EQ_INT(plan(j, st, NULL, 0, 0, 0, &o), 0);
    KT_EQ_INT(o.n_creates, 0);
    KT_CHECK(!strcmp(o.cond_reason, "NoModel"));
    tj_serve_release(&o);
    cJSON_Delete(j);
    cJSON_Delete(st);
}

static void test_first_model_starts_serving(void)
{
    cJSON *j = job(2), *st = status_with("/models/t1/model.kiln", NULL);
    tj_serve_out o;
    KT_EQ_INT(plan(j, st, NULL, 0, 0, 0, &o), 0);
    KT_CHECK(o.create_service && o.service);
    KT_EQ_INT(o.n_creates, 2);
    KT_CHECK(!strcmp(create_ckpt(&o, 0), "/models/t1/model.kiln"));
    KT_CHECK(!strcmp(o.cond_status, "False") && !strcmp(o.cond_reason, "Starting"));
    tj_serve_release(&o);

    /* once a pod is ready: Serving, last good recorded */
    cJSON *pods[2] = {pod("fm-serve-a", "/models/t1/model.kiln", "ready", 5),
                      pod("fm-serve-b", "/models/t1/model.kiln", "ready", 4)};
    KT_EQ_INT(plan(j, st, pods, 2, 1, 10, &o), 0);
    KT_EQ_INT(o.n_creates, 0);
    KT_EQ_INT(o.n_deletes, 0);
    KT_CHECK(!o.create_service);
    KT_CHECK(!strcmp(o.cond_status, "True") && !strcmp(o.cond_reason, "Serving"));
    KT_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(o.serving, "ready")));
    KT_CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(o.serving, "lastGoodCheckpoint")),
                     "/models/t1/model.kiln"));
    KT_CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(o.serving, "pod")), "fm-serve-b"));
    tj_serve_release(&o);
    for (int i = 0; i < 2; i++)
        cJSON_Delete(pods[i]);
    cJSON_Delete(j);
    cJSON_Delete(st);
}

static void test_rolling_replacement(void)
{
    cJSON *j = job(1);
    cJSON *st = status_with("/models/t2/model.kiln",
                            "{\"lastGoodCheckpoint\":\"/models/t1/model.kiln\",\"restarts\":0}");
    cJSON *old = pod("fm-serve-old", "/models/t1/model.kiln", "ready", 100);
    tj_serve_out o;
    /* new model: a new pod starts, the old keeps serving */
    KT_EQ_INT(plan(j, st, &old, 1, 1, 0, &o), 0);
    KT_EQ_INT(o.n_creates, 1);
    KT_CHECK(!strcmp(create_ckpt(&o, 0), "/models/t2/model.kiln"));
    KT_EQ_INT(o.n_deletes, 0);
    KT_CHECK(!strcmp(o.cond_reason, "RollingOut"));
    tj_serve_release(&o);
    /* the new pod is loading: still nothing deleted */
    cJSON *pods[2] = {old, pod("fm-serve-new", "/models/t2/model.kiln", "loading", 2)};
    KT_EQ_INT(plan(j, st, pods, 2, 1, 2, &o), 0);
    KT_EQ_INT(o.n_creates, 0);
    KT_EQ_INT(o.n_deletes, 0);
    KT_CHECK(o.requeue_after_ms > 0);
    tj_serve_release(&o);
    /* the new pod is ready: the old one goes */
    cJSON_Delete(pods[1]);
    pods[1] = pod("fm-serve-new", "/models/t2/model.kiln", "ready", 3);
    KT_EQ_INT(plan(j, st, pods, 2, 1, 3, &o), 0);
    KT_EQ_INT(o.n_deletes, 1);
    KT_CHECK(o.n_deletes == 1 && !strcmp(o.deletes[0], "fm-serve-old"));
    KT_CHECK(!strcmp(o.cond_reason, "Serving"));
    tj_serve_release(&o);
    cJSON_Delete(pods[0]);
    cJSON_Delete(pods[1]);
    cJSON_Delete(j);
    cJSON_Delete(st);
}

static void test_failed_pod_replaced_with_backoff(void)
{
    cJSON *j = job(1);
    cJSON *st = status_with("/models/t1/model.kiln",
                            "{\"lastGoodCheckpoint\":\"/models/t1/model.kiln\",\"restarts\":4,"
                            "\"failStreak\":0}");
    cJSON *p = pod("fm-serve-a", "/models/t1/model.kiln", "crash", 10);
    tj_serve_out o;
    KT_EQ_INT(plan(j, st, &p, 1, 1, 0, &o), 0);
    KT_EQ_INT(o.n_deletes, 1);
    KT_EQ_INT(o.n_creates, 1); /* first failure: replaced at once */
    KT_EQ_INT((int)cJSON_GetNumberValue(cJSON_GetObjectItem(o.serving, "restarts")), 5);
    KT_EQ_INT((int)cJSON_GetNumberValue(cJSON_GetObjectItem(o.serving, "failStreak")), 1);
    KT_CHECK(o.n_events >= 1 && !strcmp(o.events[0].reason, "ServingPodFailed"));
    tj_serve_release(&o);

    /* a streak of 4 with a replacement 2 s ago waits (8 s back-off) */
    cJSON *st2 = status_with("/models/t1/model.kiln",
                             "{\"lastGoodCheckpoint\":\"/models/t1/model.kiln\",\"restarts\":9,"
                             "\"failStreak\":4,\"lastReplacementTime\":\"2026-11-23T09:59:58Z\"}");
    KT_EQ_INT(plan(j, st2, NULL, 0, 1, 0, &o), 0);
    KT_EQ_INT(o.n_creates, 0);
    KT_CHECK(o.requeue_after_ms > 5000 && o.requeue_after_ms <= 6001);
    KT_CHECK(!strcmp(o.cond_reason, "CrashLoop"));
    tj_serve_release(&o);
    /* after the back-off: replaced */
    KT_EQ_INT(plan(j, st2, NULL, 0, 1, 7, &o), 0);
    KT_EQ_INT(o.n_creates, 1);
    tj_serve_release(&o);
    cJSON_Delete(st2);
    cJSON_Delete(p);
    cJSON_Delete(j);
    cJSON_Delete(st);
}

static void test_bad_checkpoint_falls_back(void)
{
    cJSON *j = job(1);
    cJSON *st = status_with("/models/t2/model.kiln",
                            "{\"lastGoodCheckpoint\":\"/models/t1/model.kiln\"}");
    cJSON *pods[2] = {pod("fm-serve-old", "/models/t1/model.kiln", "ready", 200),
                      pod("fm-serve-new", "/models/t2/model.kiln", "loading", 45)};
    tj_serve_out o;
    KT_EQ_INT(plan(j, st, pods, 2, 1, 0, &o), 0);
    const cJSON *bad = cJSON_GetObjectItem(o.serving, "badCheckpoints");
    KT_EQ_INT(cJSON_GetArraySize(bad), 1);
    KT_CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetArrayItem(bad, 0)), "/models/t2/model.kiln"));
    KT_CHECK(o.n_deletes == 1 && !strcmp(o.deletes[0], "fm-serve-new"));
    KT_EQ_INT(o.n_creates, 0); /* the old model keeps serving */
    KT_CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(o.serving, "target")), "/models/t1/model.kiln"));
    KT_CHECK(o.n_events >= 1 && !strcmp(o.events[0].reason, "BadCheckpoint"));
    KT_STR_CONTAINS(o.events[0].message, "/models/t2/model.kiln");
    tj_serve_release(&o);
    for (int i = 0; i < 2; i++)
        cJSON_Delete(pods[i]);
    cJSON_Delete(j);
    cJSON_Delete(st);
}

static void test_disabled(void)
{
    cJSON *j = job(0);
    cJSON *st = status_with("/models/t1/model.kiln", NULL);
    cJSON *p = pod("fm-serve-a", "/models/t1/model.kiln", "ready", 10);
    tj_serve_out o;
    KT_EQ_INT(plan(j, st, &p, 1, 1, 0, &o), 0);
    KT_EQ_INT(o.n_deletes, 1);
    KT_CHECK(!strcmp(o.cond_reason, "Disabled"));
    tj_serve_release(&o);
    cJSON_Delete(p);
    cJSON_Delete(j);
    cJSON_Delete(st);
}

int main(void)
{
    KT_RUN(test_no_model);
    KT_RUN(test_first_model_starts_serving);
    KT_RUN(test_rolling_replacement);
    KT_RUN(test_failed_pod_replaced_with_backoff);
    KT_RUN(test_bad_checkpoint_falls_back);
    KT_RUN(test_disabled);
    return KT_DONE();
}
