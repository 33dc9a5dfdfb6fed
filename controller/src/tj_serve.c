/* tj_serve: serving pods, the Service and status.serving (see tj_serve.h). */
#include "tj_serve.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ktime.h"
#include "tj_json.h"
#include "tj_pod.h"
#include "tj_spec.h"
#include "tj_status.h"
#include "tune.h"

#define LOAD_DEADLINE_S 30     /* running but not ready for this long: the model did not load */
#define CHECK_AGAIN_MS 2000    /* while pods are starting */
#define BACKOFF_MAX_S 60
#define MAX_PODS 64

typedef enum { P_LOADING, P_READY, P_FAILED, P_GONE } pod_state;

typedef struct spod {
    const cJSON *pod;
    const char *name, *checkpoint;
    pod_state state;
    int ever_ready;     /* its Ready condition was True at some point */
    double age_s;       /* since creation */
    double running_s;   /* since the container started, 0 when not running */
    const char *why;    /* failure reason for messages */
} spod;

/* ------------------------------------------------------------ helpers */

static double seconds_since(const char *ts, ktime now)
{
    ktime t;
    if (!ts || ktime_parse(ts, &t, NULL) != 0)
        return 0;
    return (double)ktime_diff_ms(now, t) / 1000.0;
}

static int in_list(const cJSON *arr, const char *s)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        if (cJSON_IsString(e) && !strcmp(e->valuestring, s))
            return 1;
    }
    return 0;
}

static void classify(const cJSON *pod, ktime now, spod *out)
{
    memset(out, 0, sizeof *out);
    out->pod = pod;
    out->name = tj_json_str(pod, "metadata.name", "");
    out->checkpoint = tj_json_key_str(tj_json_path(pod, "metadata.annotations"), TJ_ANN_CHECKPOINT, "");
    out->age_s = seconds_since(tj_json_str(pod, "metadata.creationTimestamp", NULL), now);
    const char *phase = tj_json_str(pod, "status.phase", "Pending");
    const cJSON *cs = cJSON_GetArrayItem(tj_json_path(pod, "status.containerStatuses"), 0);
    const char *waiting = tj_json_str(cs, "state.waiting.reason", NULL);
    const char *started = tj_json_str(cs, "state.running.startedAt", NULL);
    int restarts = (int)tj_json_int(cs, "restartCount", 0);
    const cJSON *ready = tj_status_find_condition(tj_json_path(pod, "status.conditions"), "Ready");
    int is_ready = ready && !strcmp(tj_json_str(ready, "status", ""), "True");
    out->ever_ready = is_ready || tj_json_bool(cs, "ready", 0);
    out->running_s = started ? seconds_since(started, now) : 0;
    if (tj_json_path(pod, "metadata.deletionTimestamp")) {
        out->state = P_GONE;
        out->why = "terminating";
    } else if (!strcmp(phase, "Failed") || !strcmp(phase, "Succeeded")) {
        out->state = P_FAILED;
        out->why = tj_json_str(cs, "state.terminated.reason", phase);
    } else if (waiting && (!strcmp(waiting, "CrashLoopBackOff") || !strcmp(waiting, "ErrImagePull") ||
                           !strcmp(waiting, "ImagePullBackOff") ||
                           !strcmp(waiting, "CreateContainerConfigError"))) {
        out->state = P_FAILED;
        out->why = waiting;
    } else if (!strcmp(phase, "Running") && is_ready) {
        out->state = P_READY;
    } else {
        out->state = P_LOADING;
        /* A server that keeps restarting before it ever serves is failing too. */
        if (restarts >= 3 && !is_ready) {
            out->state = P_FAILED;
            out->why = "restarting";
        }
    }
}

/* The checkpoint to serve: the best trial's, unless it is known bad; then
 * the last good one; then other finished trials' models, best first. */
static const char *choose_target(const tj_spec *s, const cJSON *status, const cJSON *bad)
{
    const char *best = tj_json_str(status, "bestTrial.checkpoint", NULL);
    if (best && *best && !in_list(bad, best))
        return best;
    const char *good = tj_json_str(status, "serving.lastGoodCheckpoint", NULL);
    if (good && *good && !in_list(bad, good))
        return good;
    const char *pick = NULL;
    double pick_v = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tj_json_path(status, "trials"))
    {
        const char *ck = tj_json_str(t, "checkpoint", NULL);
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(t, "metrics");
        double v;
        if (!ck || !*ck || in_list(bad, ck) || tune_metric_value(s->spec, m, &v) != 0)
            continue;
        if (!pick || tune_better(s->spec, v, pick_v)) {
            pick = ck;
            pick_v = v;
        }
    }
    return pick;
}

static int add_delete(tj_serve_out *o, const char *name)
{
    for (int i = 0; i < o->n_deletes; i++)
        if (!strcmp(o->deletes[i], name))
            return 0;
    char(*nd)[254] = realloc(o->deletes, (size_t)(o->n_deletes + 1) * sizeof *nd);
    if (!nd)
        return KILN_ENOMEM;
    o->deletes = nd;
    snprintf(o->deletes[o->n_deletes++], 254, "%s", name);
    return 0;
}

static void add_event(tj_serve_out *o, const char *type, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_event(tj_serve_out *o, const char *type, const char *reason, const char *fmt, ...)
{
    if (o->n_events >= (int)(sizeof o->events / sizeof o->events[0]))
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    tj_event *e = &o->events[o->n_events];
    e->message = strdup(buf);
    if (!e->message)
        return;
    e->type = type;
    e->reason = reason;
    o->n_events++;
}

static void set_cond(tj_serve_out *o, const char *status, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_cond(tj_serve_out *o, const char *status, const char *reason, const char *fmt, ...)
{
    o->cond_status = status;
    o->cond_reason = reason;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->cond_message, sizeof o->cond_message, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ the plan */

void tj_serve_release(tj_serve_out *o)
{
    cJSON_Delete(o->service);
    for (int i = 0; i < o->n_creates; i++)
        cJSON_Delete(o->creates[i]);
    free(o->creates);
    free(o->deletes);
    cJSON_Delete(o->serving);
    for (int i = 0; i < o->n_events; i++)
        free(o->events[i].message);
    memset(o, 0, sizeof *o);
}

int tj_serve_plan(const cJSON *job, const cJSON *status, const cJSON *const *pods, int n_pods,
                  int have_service, const tj_env *env, tj_serve_out *o, kiln_error *err)
{
    memset(o, 0, sizeof *o);
    tj_spec s;
    int rc = tj_spec_read(job, env->trainer_image, &s, err);
    if (rc)
        return rc;
    const cJSON *old = tj_json_path(status, "serving");
    o->serving = cJSON_CreateObject();
    cJSON *bad = cJSON_Duplicate(tj_json_path(old, "badCheckpoints"), 1);
    if (!bad)
        bad = cJSON_CreateArray();
    int restarts = (int)tj_json_int(old, "restarts", 0);
    int streak = (int)tj_json_int(old, "failStreak", 0);
    const char *last_repl = tj_json_str(old, "lastReplacementTime", NULL);
    const char *last_good = tj_json_str(old, "lastGoodCheckpoint", NULL);
    char good_buf[1024] = "";
    if (last_good)
        snprintf(good_buf, sizeof good_buf, "%s", last_good);

    spod sp[MAX_PODS];
    int n = 0;
    for (int i = 0; i < n_pods && n < MAX_PODS; i++)
        if (tj_json_key_str(tj_json_path(pods[i], "metadata.labels"), TJ_LABEL_SERVING, NULL))
            classify(pods[i], env->now, &sp[n++]);

    if (!s.serving_enabled || s.serving_replicas == 0) {
        for (int i = 0; i < n; i++)
            if (sp[i].state != P_GONE && (rc = add_delete(o, sp[i].name)) != 0)
                goto oom;
        tj_json_add_bool(o->serving, "ready", 0);
        set_cond(o, "False", "Disabled", "serving is disabled in the spec");
        goto done;
    }

    /* Pods that could not load their model mark it bad (unless it is the
     * proven last good one: then the pod itself failed). */
    for (int i = 0; i < n; i++) {
        spod *p = &sp[i];
        int load_failed = (p->state == P_LOADING && p->running_s > LOAD_DEADLINE_S) ||
                          (p->state == P_FAILED && !p->ever_ready);
        if (!load_failed || !*p->checkpoint || !strcmp(p->checkpoint, good_buf) ||
            in_list(bad, p->checkpoint))
            continue;
        cJSON_AddItemToArray(bad, cJSON_CreateString(p->checkpoint));
        add_event(o, "Warning", "BadCheckpoint",
                  "serving pod %s could not load %s (%s); serving the last good model instead",
                  p->name, p->checkpoint, p->state == P_FAILED ? p->why : "never became ready");
        if ((rc = add_delete(o, p->name)) != 0)
            goto oom;
        p->state = P_GONE;
    }

    const char *target = choose_target(&s, status, bad);
    if (!target) {
        for (int i = 0; i < n; i++)
            if (sp[i].state != P_GONE && (rc = add_delete(o, sp[i].name)) != 0)
                goto oom;
        tj_json_add_bool(o->serving, "ready", 0);
        if (cJSON_GetArraySize(bad) > 0)
            set_cond(o, "False", "BadCheckpoint", "no loadable model: every checkpoint tried failed to load");
        else
            set_cond(o, "False", "NoModel", "no trial has produced a model yet");
        goto done;
    }
    if (!have_service) {
        o->create_service = 1;
        if ((rc = tj_pod_service(&s, &o->service, err)) != 0)
            goto fail;
    }

    /* Failed pods are replaced; a ready pod ends a failure streak. */
    int failed_now = 0, ready_target = 0, alive_target = 0, any_ready = 0;
    const spod *newest_ready = NULL;
    for (int i = 0; i < n; i++) {
        spod *p = &sp[i];
        if (p->state == P_FAILED) {
            failed_now++;
            if ((rc = add_delete(o, p->name)) != 0)
                goto oom;
            add_event(o, "Warning", "ServingPodFailed", "serving pod %s failed (%s); replacing it",
                      p->name, p->why ? p->why : "unknown");
            p->state = P_GONE;
        } else if (p->state == P_READY) {
            any_ready = 1;
            if (!newest_ready || p->age_s < newest_ready->age_s)
                newest_ready = p;
            if (!strcmp(p->checkpoint, target))
                ready_target++;
        }
        if ((p->state == P_READY || p->state == P_LOADING) && !strcmp(p->checkpoint, target))
            alive_target++;
    }
    if (failed_now) {
        restarts += failed_now;
        streak += failed_now;
    }
    if (newest_ready) {
        snprintf(good_buf, sizeof good_buf, "%s", newest_ready->checkpoint);
        if (!failed_now)
            streak = 0;
    }

    /* New pods on the target, after the crash-loop back-off. */
    int want = s.serving_replicas - alive_target;
    char now_s[KTIME_BUFSZ];
    tj_status_time(env->now, now_s);
    if (want > 0) {
        double wait = 0;
        if (streak > 0 && last_repl) {
            double delay = streak >= 7 ? BACKOFF_MAX_S : (double)(1 << (streak - 1));
            if (delay > BACKOFF_MAX_S)
                delay = BACKOFF_MAX_S;
            wait = delay - seconds_since(last_repl, env->now);
        }
        if (wait > 0) {
            o->requeue_after_ms = (int64_t)(wait * 1000) + 1;
        } else {
            o->creates = calloc((size_t)want, sizeof *o->creates);
            if (!o->creates)
                goto oom;
            for (int i = 0; i < want; i++) {
                if ((rc = tj_pod_serving(&s, target, &o->creates[o->n_creates], err)) != 0)
                    goto fail;
                o->n_creates++;
            }
            last_repl = NULL;
            tj_json_add_str(o->serving, "lastReplacementTime", now_s);
        }
    }
    if (last_repl)
        tj_json_add_str(o->serving, "lastReplacementTime", last_repl);

    /* Old models leave only once the target serves at full strength; extra
     * pods on the target (not ready first) leave at once. */
    int keep_target = s.serving_replicas;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            spod *p = &sp[i];
            if (p->state == P_GONE)
                continue;
            if (strcmp(p->checkpoint, target)) {
                if (pass == 0 && ready_target >= s.serving_replicas && (rc = add_delete(o, p->name)) != 0)
                    goto oom;
                continue;
            }
            int mine = pass == 0 ? p->state == P_READY : p->state == P_LOADING;
            if (!mine)
                continue;
            if (keep_target > 0)
                keep_target--;
            else if ((rc = add_delete(o, p->name)) != 0)
                goto oom;
        }
    }

    /* status.serving */
    cJSON *names = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        if (sp[i].state != P_GONE)
            cJSON_AddItemToArray(names, cJSON_CreateString(sp[i].name));
    if (newest_ready) {
        tj_json_add_str(o->serving, "pod", newest_ready->name);
        tj_json_add_str(o->serving, "checkpoint", newest_ready->checkpoint);
    }
    tj_json_add(o->serving, "pods", names);
    tj_json_add_bool(o->serving, "ready", any_ready);
    tj_json_add_num(o->serving, "restarts", restarts);
    tj_json_add_num(o->serving, "failStreak", streak);
    tj_json_add_str(o->serving, "target", target);
    if (good_buf[0])
        tj_json_add_str(o->serving, "lastGoodCheckpoint", good_buf);

    if (any_ready && ready_target >= s.serving_replicas)
        set_cond(o, "True", "Serving", "%d pod(s) serve %s", ready_target, target);
    else if (any_ready)
        set_cond(o, "True", "RollingOut", "serving %s while %s starts", newest_ready->checkpoint, target);
    else if (streak >= 3)
        set_cond(o, "False", "CrashLoop", "serving pods failed %d times in a row; retrying with back-off",
                 streak);
    else
        set_cond(o, "False", "Starting", "serving pod(s) for %s are starting", target);
    for (int i = 0; i < n && !o->requeue_after_ms; i++)
        if (sp[i].state == P_LOADING)
            o->requeue_after_ms = CHECK_AGAIN_MS;

done:
    tj_json_add(o->serving, "badCheckpoints", bad);
    return 0;
oom:
    rc = kiln_fail(err, KILN_ENOMEM, "out of memory planning serving");
fail:
    cJSON_Delete(bad);
    tj_serve_release(o);
    return rc;
}
