/* tj_status: pod observation, conditions and the bounded trial list (see
 * tj_status.h). */
#include "tj_status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tj_json.h"
#include "tj_pod.h"

/* ------------------------------------------------------------ pods */

static int parse_index(const char *s)
{
    if (!s || !*s)
        return -1;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    return *end || v < 0 || v > 1000000000L ? -1 : (int)v;
}

/* Copies text into buf as one line (newlines become "; ") and keeps the
 * tail when it is too long: a log's last lines say what went wrong. */
static void one_line(char *buf, size_t n, const char *text)
{
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' ' || text[len - 1] == '\r'))
        len--;
    const char *start = text;
    if (len + 1 > n) {
        start = text + len - (n - 4);
        len = n - 4;
    }
    size_t o = 0;
    if (start != text) {
        memcpy(buf, "...", 3);
        o = 3;
    }
    for (size_t i = 0; i < len && o + 1 < n; i++) {
        char c = start[i];
        buf[o++] = c == '\n' || c == '\r' || c == '\t' ? ' ' : c;
    }
    buf[o] = '\0';
}

static const char *stall_waiting_reasons[] = {"ErrImagePull",         "ImagePullBackOff",
                                              "InvalidImageName",     "CreateContainerConfigError",
                                              "CreateContainerError", NULL};

static void observe_waiting(const cJSON *cs, const cJSON *pod, tj_pod_obs *o)
{
    const cJSON *w = tj_json_path(cs, "state.waiting");
    const char *reason = tj_json_str(w, "reason", "");
    for (const char **r = stall_waiting_reasons; *r; r++) {
        if (!strcmp(reason, *r)) {
            snprintf(o->stall_reason, sizeof o->stall_reason, "%s", reason);
            one_line(o->stall_message, sizeof o->stall_message, tj_json_str(w, "message", reason));
            return;
        }
    }
    const cJSON *c;
    cJSON_ArrayForEach(c, tj_json_path(pod, "status.conditions"))
    {
        if (!strcmp(tj_json_str(c, "type", ""), "PodScheduled") &&
            !strcmp(tj_json_str(c, "status", ""), "False")) {
            snprintf(o->stall_reason, sizeof o->stall_reason, "%s",
                     tj_json_str(c, "reason", "Unschedulable"));
            one_line(o->stall_message, sizeof o->stall_message,
                     tj_json_str(c, "message", "the pod cannot be scheduled"));
            return;
        }
    }
}

/* The failure line: the trainer's {"error"} when it wrote one, else the
 * termination message (log tail), else the pod's own reason. */
static void failure_message(tj_pod_obs *o, const cJSON *term)
{
    char detail[512] = "", head[128];
    const char *err = tj_json_str(o->report, "error", NULL);
    const char *msg = tj_json_str(term, "message", "");
    if (err)
        one_line(detail, sizeof detail, err);
    else if (*msg && !o->report)
        one_line(detail, sizeof detail, msg);
    if (o->exit_code >= 0) {
        const char *r = tj_json_str(term, "reason", "");
        if (*r && strcmp(r, "Error") && strcmp(r, "Completed"))
            snprintf(head, sizeof head, "exit code %d (%.64s)", o->exit_code, r);
        else
            snprintf(head, sizeof head, "exit code %d", o->exit_code);
    } else {
        snprintf(head, sizeof head, "pod %.64s", tj_json_str(o->pod, "status.reason", "Failed"));
        if (!*detail)
            one_line(detail, sizeof detail, tj_json_str(o->pod, "status.message", ""));
    }
    snprintf(o->message, sizeof o->message, "%s%s%s", head, *detail ? ": " : "", detail);
}

int tj_status_observe(const cJSON *pod, tj_pod_obs *o, kiln_error *err)
{
    memset(o, 0, sizeof *o);
    o->pod = pod;
    o->exit_code = -1;
    o->name = tj_json_str(pod, "metadata.name", "");
    const cJSON *labels = tj_json_path(pod, "metadata.labels");
    o->index = parse_index(tj_json_key_str(labels, TJ_LABEL_TRIAL, NULL));
    const cJSON *ann = tj_json_path(pod, "metadata.annotations");
    int a = parse_index(tj_json_key_str(ann, TJ_ANN_ATTEMPT, NULL));
    o->attempt = a >= 1 ? a : 1;
    o->search = tj_json_key_str(ann, TJ_ANN_SEARCH, "");
    const char *params = tj_json_key_str(ann, TJ_ANN_PARAMS, NULL);
    if (params) {
        o->params = cJSON_Parse(params);
        if (o->params && !cJSON_IsObject(o->params)) {
            cJSON_Delete(o->params);
            o->params = NULL;
        }
    }
    o->deleting = tj_json_path(pod, "metadata.deletionTimestamp") != NULL;
    const char *ct = tj_json_str(pod, "metadata.creationTimestamp", NULL);
    o->has_created = ct && ktime_parse(ct, &o->created, NULL) == 0;

    const cJSON *cs = cJSON_GetArrayItem(tj_json_path(pod, "status.containerStatuses"), 0);
    const cJSON *term = tj_json_path(cs, "state.terminated");
    const char *phase = tj_json_str(pod, "status.phase", "Pending");
    const char *run = tj_json_str(cs, "state.running.startedAt", NULL);
    o->has_started = run && ktime_parse(run, &o->started, NULL) == 0;
    if (term) {
        o->exit_code = (int)tj_json_int(term, "exitCode", 1);
        o->phase = o->exit_code == 0 ? TJ_POD_SUCCEEDED : TJ_POD_FAILED;
        const char *fin = tj_json_str(term, "finishedAt", NULL);
        o->has_finished = fin && ktime_parse(fin, &o->finished, NULL) == 0;
        const char *msg = tj_json_str(term, "message", NULL);
        if (msg) {
            /* Strict parse: a log tail of JSON lines is not a report. */
            const char *end = NULL;
            cJSON *r = cJSON_ParseWithOpts(msg, &end, 1);
            if (r && cJSON_IsObject(r))
                o->report = r;
            else
                cJSON_Delete(r);
        }
    } else if (!strcmp(phase, "Succeeded")) {
        o->phase = TJ_POD_SUCCEEDED;
    } else if (!strcmp(phase, "Failed")) {
        o->phase = TJ_POD_FAILED;
    } else if (!strcmp(phase, "Running")) {
        o->phase = TJ_POD_RUNNING;
    } else {
        o->phase = TJ_POD_PENDING;
        observe_waiting(cs, pod, o);
    }
    if (o->phase == TJ_POD_FAILED)
        failure_message(o, term);
    /* A mangled params annotation is not fatal: the stored record still
     * holds the trial's params. */
    o->bad_params = params && !o->params;
    (void)err;
    return 0;
}

void tj_pod_obs_release(tj_pod_obs *o)
{
    cJSON_Delete(o->params);
    cJSON_Delete(o->report);
    o->params = NULL;
    o->report = NULL;
}

/* ------------------------------------------------------------ records */

int tj_status_phase_finished(const char *phase)
{
    return phase &&
           (!strcmp(phase, "Succeeded") || !strcmp(phase, "Failed") || !strcmp(phase, "Stopped"));
}

void tj_status_time(ktime t, char *buf)
{
    if (ktime_format(t, 0, buf, KTIME_BUFSZ) != 0)
        snprintf(buf, KTIME_BUFSZ, "1970-01-01T00:00:00Z");
}

/* ------------------------------------------------------------ conditions */

const cJSON *tj_status_find_condition(const cJSON *conds, const char *type)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, conds)
    {
        if (!strcmp(tj_json_str(c, "type", ""), type))
            return c;
    }
    return NULL;
}

int tj_status_condition(cJSON *conds, const cJSON *old, const char *type, const char *status,
                        const char *reason, const char *message, int64_t generation, ktime now)
{
    const cJSON *prev = tj_status_find_condition(old, type);
    const char *prev_time = tj_json_str(prev, "lastTransitionTime", NULL);
    char when[KTIME_BUFSZ];
    if (prev_time && !strcmp(tj_json_str(prev, "status", ""), status))
        snprintf(when, sizeof when, "%s", prev_time);
    else
        tj_status_time(now, when);
    cJSON *c = cJSON_CreateObject();
    int ok = tj_json_add_str(c, "type", type);
    ok &= tj_json_add_str(c, "status", status);
    ok &= tj_json_add_str(c, "reason", reason);
    ok &= tj_json_add_str(c, "message", message ? message : "");
    ok &= tj_json_add_num(c, "observedGeneration", (double)generation);
    ok &= tj_json_add_str(c, "lastTransitionTime", when);
    if (!ok) {
        cJSON_Delete(c);
        return 0;
    }
    return tj_json_push(conds, c);
}

/* ------------------------------------------------------------ bounded list */

static int bump(cJSON *older, const char *key)
{
    return tj_json_add_num(older, key, tj_json_num(older, key, 0) + 1);
}

int tj_status_bound_trials(cJSON *trials, cJSON *older, int max)
{
    int ok = 1;
    while (ok && cJSON_GetArraySize(trials) > max) {
        cJSON *first = cJSON_GetArrayItem(trials, 0);
        const char *phase = tj_json_str(first, "phase", "");
        if (!tj_status_phase_finished(phase))
            break;
        ok &= bump(older, "count");
        if (!strcmp(phase, "Succeeded"))
            ok &= bump(older, "succeeded");
        else if (!strcmp(phase, "Failed"))
            ok &= bump(older, "failed");
        cJSON_DeleteItemFromArray(trials, 0);
    }
    return ok;
}
