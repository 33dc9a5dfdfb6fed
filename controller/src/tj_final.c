/* tj_final: the finalizer kiln.dev/checkpoints and the clean-up of a
 * deleted job's checkpoints (see tj_final.h). */
#include "tj_final.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tj_json.h"
#include "tj_pod.h"
#include "tj_status.h"

#define WAIT_MS         1000   /* looking again while pods stop */
#define BACKOFF_BASE_MS 5000   /* first retry after a failed clean-up */
#define BACKOFF_MAX_MS  300000 /* the longest wait between attempts */
#define DEFAULT_STALL_S 60

/* ------------------------------------------------------------ finalizer */

static int is_ours(const cJSON *f, const void *ud)
{
    (void)ud;
    return cJSON_IsString(f) && !strcmp(f->valuestring, TJ_FINALIZER);
}

int tj_final_has(const cJSON *job)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, tj_json_path(job, "metadata.finalizers"))
    {
        if (is_ours(f, NULL))
            return 1;
    }
    return 0;
}

int tj_final_patch(const cJSON *job, int add, char **out, kiln_error *err)
{
    *out = tj_json_meta_list_patch(job, "finalizers", is_ours, NULL,
                                   add ? cJSON_CreateString(TJ_FINALIZER) : NULL, 0);
    return *out ? 0 : kiln_fail(err, KILN_ENOMEM, "out of memory");
}

int64_t tj_final_backoff_ms(int n)
{
    int64_t ms = BACKOFF_BASE_MS;
    for (int i = 1; i < n && ms < BACKOFF_MAX_MS; i++)
        ms *= 2;
    return ms < BACKOFF_MAX_MS ? ms : BACKOFF_MAX_MS;
}

/* ------------------------------------------------------------ status */

typedef struct fstate {
    const tj_spec *s;
    const tj_env *env;
    tj_plan_out *out;
    kiln_error *err;
    const cJSON *old; /* stored status or NULL */
    int failures;     /* status.cleanup.failures */
    const char *last_failure;
    char dir[600];      /* the job's directory in the pods */
    char last_msg[700]; /* the last failure, "" when none */
} fstate;

static int remove_finalizer(fstate *f)
{
    f->out->finalizer = TJ_FINALIZER_REMOVE;
    return tj_final_patch(f->s->job, 0, &f->out->finalizer_patch, f->err);
}

/* The status of a job being finalized: the stored one with its message,
 * status.cleanup and the Reconciling and Stalled conditions replaced. */
static int plan_status(fstate *f, const char *message, const char *last_failure)
{
    ktime now = f->env->now;
    char now_s[KTIME_BUFSZ];
    tj_status_time(now, now_s);
    cJSON *st = f->old ? cJSON_Duplicate(f->old, 1) : cJSON_CreateObject();
    if (!st)
        return kiln_fail(f->err, KILN_ENOMEM, "out of memory");
    cJSON_DeleteItemFromObjectCaseSensitive(st, "message");
    cJSON_DeleteItemFromObjectCaseSensitive(st, "cleanup");
    cJSON_DeleteItemFromObjectCaseSensitive(st, "conditions");
    int ok = tj_json_add_str(st, "message", message);
    cJSON *cl = tj_json_obj(st, "cleanup");
    ok &= tj_json_add_num(cl, "failures", f->failures);
    if (last_failure)
        ok &= tj_json_add_str(cl, "lastFailureTime", last_failure);
    if (f->last_msg[0])
        ok &= tj_json_add_str(cl, "lastFailure", f->last_msg);
    const cJSON *old_conds = tj_json_path(f->old, "conditions");
    cJSON *conds = cJSON_CreateArray();
    ok &= tj_json_add(st, "conditions", conds);
    const cJSON *c;
    cJSON_ArrayForEach(c, old_conds)
    {
        const char *t = tj_json_str(c, "type", "");
        if (ok && strcmp(t, "Reconciling") && strcmp(t, "Stalled"))
            ok &= tj_json_push(conds, cJSON_Duplicate(c, 1));
    }
    int64_t g = f->s->generation;
    ok &=
        tj_status_condition(conds, old_conds, "Reconciling", "True", "Finalizing", message, g, now);
    if (f->failures > 0)
        ok &= tj_status_condition(conds, old_conds, "Stalled", "True", "CleanupFailed", f->last_msg,
                                  g, now);
    else
        ok &= tj_status_condition(conds, old_conds, "Stalled", "False", "Progressing", "", g, now);
    if (!ok) {
        cJSON_Delete(st);
        return kiln_fail(f->err, KILN_ENOMEM, "out of memory");
    }
    if (f->old && cJSON_Compare(f->old, st, 1))
        cJSON_Delete(st);
    else
        f->out->status = st;
    return 0;
}

/* ------------------------------------------------------------ pods */

static int labelled(const cJSON *pod, const char *key, const char *value)
{
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(tj_json_path(pod, "metadata.labels"), key);
    return cJSON_IsString(l) && (!value || !strcmp(l->valuestring, value));
}

/* Deletes the trial pods still Pending or Running; returns how many there
 * are (deleting or not) through *active. */
static int stop_trials(fstate *f, const cJSON *const *pods, int n_pods, int *active)
{
    *active = 0;
    for (int i = 0; i < n_pods; i++) {
        if (!pods[i] || !labelled(pods[i], TJ_LABEL_JOB, f->s->name) ||
            !labelled(pods[i], TJ_LABEL_TRIAL, NULL))
            continue;
        tj_pod_obs o;
        int rc = tj_status_observe(pods[i], &o, f->err);
        if (rc)
            return rc;
        if (o.phase == TJ_POD_PENDING || o.phase == TJ_POD_RUNNING) {
            (*active)++;
            if (!o.deleting)
                rc = tj_plan_add_delete(f->out, o.name, "job-deleted");
        }
        tj_pod_obs_release(&o);
        if (rc)
            return kiln_fail(f->err, rc, "out of memory");
    }
    return 0;
}

static const cJSON *find_cleanup_pod(const fstate *f, const cJSON *const *pods, int n_pods)
{
    char name[300];
    if (tj_pod_cleanup_name(f->s, name, sizeof name) != 0)
        return NULL;
    for (int i = 0; i < n_pods; i++) {
        if (pods[i] && labelled(pods[i], TJ_LABEL_JOB, f->s->name) &&
            !strcmp(tj_json_str(pods[i], "metadata.name", ""), name))
            return pods[i];
    }
    return NULL;
}

/* A finished clean-up pod that failed, or one Pending on a problem (image,
 * config, scheduling: a volume that is gone) for longer than the stall
 * window, is a failed attempt. Returns 1 and the reason in msg; 0 while it
 * may still succeed (requeueing for the stall check). */
static int attempt_failed(fstate *f, const tj_pod_obs *o, char *msg, size_t n)
{
    if (o->phase == TJ_POD_FAILED) {
        snprintf(msg, n, "%s", o->message[0] ? o->message : "the clean-up pod failed");
        return 1;
    }
    if (o->phase != TJ_POD_PENDING || !o->stall_reason[0])
        return 0;
    int64_t after_ms =
        (int64_t)(f->env->stall_after_s < 0 ? DEFAULT_STALL_S : f->env->stall_after_s) * 1000;
    int64_t age = o->has_created ? ktime_diff_ms(f->env->now, o->created) : after_ms;
    if (age < after_ms) {
        tj_plan_requeue(f->out, after_ms - age);
        return 0;
    }
    snprintf(msg, n, "the clean-up pod cannot start: %s: %s", o->stall_reason, o->stall_message);
    return 1;
}

static int on_cleanup_pod(fstate *f, const tj_pod_obs *o)
{
    tj_plan_out *out = f->out;
    if (o->deleting) {
        tj_plan_requeue(out, WAIT_MS);
        return 0;
    }
    if (o->phase == TJ_POD_SUCCEEDED) {
        int dirs = (int)tj_json_int(o->report, "removedDirs", 0);
        int files = (int)tj_json_int(o->report, "removedFiles", 0);
        if (tj_plan_add_event(out, "Normal", "CheckpointsDeleted",
                              "deleted %d trial director%s (%d file%s) under %s on the storage "
                              "volume",
                              dirs, dirs == 1 ? "y" : "ies", files, files == 1 ? "" : "s", f->dir))
            return kiln_fail(f->err, KILN_ENOMEM, "out of memory");
        return remove_finalizer(f);
    }
    char why[700];
    if (!attempt_failed(f, o, why, sizeof why)) {
        char msg[900];
        snprintf(msg, sizeof msg, "deleting: removing the checkpoints under %s (attempt %d)",
                 f->dir, o->attempt);
        return plan_status(f, msg, f->last_failure);
    }
    char now_s[KTIME_BUFSZ];
    tj_status_time(f->env->now, now_s);
    const char *last = f->last_failure;
    int fresh = o->attempt > f->failures; /* this failure is not recorded yet */
    if (fresh) {
        f->failures = o->attempt;
        snprintf(f->last_msg, sizeof f->last_msg, "%s", why);
        last = now_s;
    }
    if (f->failures >= TJ_FINAL_MAX_ATTEMPTS) {
        if (tj_plan_add_event(out, "Warning", "CheckpointsNotDeleted",
                              "gave up deleting the checkpoints under %s after %d attempts (%s); "
                              "they may remain on the storage volume",
                              f->dir, f->failures, f->last_msg))
            return kiln_fail(f->err, KILN_ENOMEM, "out of memory");
        return remove_finalizer(f);
    }
    int64_t wait = tj_final_backoff_ms(f->failures);
    if (fresh &&
        tj_plan_add_event(out, "Warning", "CleanupFailed",
                          "clean-up attempt %d of %d failed: %s; retrying in %lld s", o->attempt,
                          TJ_FINAL_MAX_ATTEMPTS, why, (long long)(wait / 1000)))
        return kiln_fail(f->err, KILN_ENOMEM, "out of memory");
    char msg[1000];
    snprintf(msg, sizeof msg, "deleting: clean-up attempt %d failed, retrying: %s", f->failures,
             f->last_msg);
    int rc = plan_status(f, msg, last);
    /* The record is written before the pod goes (the plan's order), so a
     * lost status write never loses the attempt count. */
    if (!rc && tj_plan_add_delete(out, o->name, "retry"))
        rc = kiln_fail(f->err, KILN_ENOMEM, "out of memory");
    tj_plan_requeue(out, wait);
    return rc;
}

static int start_cleanup(fstate *f)
{
    ktime last;
    if (f->failures > 0 && f->last_failure && ktime_parse(f->last_failure, &last, NULL) == 0) {
        int64_t left =
            ktime_diff_ms(ktime_add_ms(last, tj_final_backoff_ms(f->failures)), f->env->now);
        if (left > 0) {
            char msg[1000];
            snprintf(msg, sizeof msg, "deleting: clean-up attempt %d failed, retrying: %s",
                     f->failures, f->last_msg);
            tj_plan_requeue(f->out, left);
            return plan_status(f, msg, f->last_failure);
        }
    }
    cJSON *pod = NULL;
    int rc = tj_pod_cleanup(f->s, f->failures + 1, &pod, f->err);
    if (rc)
        return rc;
    if (tj_plan_add_create(f->out, pod))
        return kiln_fail(f->err, KILN_ENOMEM, "out of memory");
    char msg[900];
    snprintf(msg, sizeof msg, "deleting: removing the checkpoints under %s (attempt %d)", f->dir,
             f->failures + 1);
    return plan_status(f, msg, f->last_failure);
}

/* ------------------------------------------------------------ entry */

static int in_foreground_deletion(const cJSON *job)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, tj_json_path(job, "metadata.finalizers"))
    {
        if (cJSON_IsString(f) && !strcmp(f->valuestring, "foregroundDeletion"))
            return 1;
    }
    return 0;
}

int tj_final_plan(const tj_spec *s, const cJSON *const *pods, int n_pods, const tj_env *env,
                  tj_plan_out *out, kiln_error *err)
{
    if (!tj_final_has(s->job))
        return 0; /* not ours to hold (or already released) */
    fstate f = {.s = s, .env = env, .out = out, .err = err};
    if (s->storage_retain || tj_pod_uses_models_pvc(s)) {
        /* Retained, or on the job's own claim, which the garbage collector
         * deletes with the job exactly when it is not retained. */
        if (s->storage_retain &&
            tj_plan_add_event(out, "Normal", "CheckpointsRetained",
                              "spec.storage.retain: the checkpoints stay on the storage volume"))
            return kiln_fail(err, KILN_ENOMEM, "out of memory");
        return remove_finalizer(&f);
    }
    const cJSON *st = tj_json_path(s->job, "status");
    f.old = cJSON_IsObject(st) && st->child ? st : NULL;
    int64_t failures = tj_json_int(f.old, "cleanup.failures", 0);
    f.failures = failures > 0 && failures < 1000 ? (int)failures : 0;
    f.last_failure = tj_json_str(f.old, "cleanup.lastFailureTime", NULL);
    snprintf(f.last_msg, sizeof f.last_msg, "%s", tj_json_str(f.old, "cleanup.lastFailure", ""));
    if (tj_pod_models_dir(s, f.dir, sizeof f.dir) != 0)
        return kiln_fail(err, KILN_EINVAL, "the job's models directory does not fit");

    int active;
    int rc = stop_trials(&f, pods, n_pods, &active);
    if (rc)
        return rc;
    if (active > 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "deleting: waiting for %d trial pod%s to stop", active,
                 active == 1 ? "" : "s");
        tj_plan_requeue(out, WAIT_MS);
        return plan_status(&f, msg, f.last_failure);
    }
    const cJSON *pod = find_cleanup_pod(&f, pods, n_pods);
    if (!pod && in_foreground_deletion(s->job)) {
        /* The garbage collector deletes every dependent of a job deleted in
         * the foreground, a clean-up pod created now included; it drops
         * its finalizer once the dependents are gone. */
        tj_plan_requeue(out, WAIT_MS);
        return plan_status(&f, "deleting: waiting for the garbage collector to delete the pods",
                           f.last_failure);
    }
    if (!pod)
        return start_cleanup(&f);
    tj_pod_obs o;
    rc = tj_status_observe(pod, &o, err);
    if (!rc)
        rc = on_cleanup_pod(&f, &o);
    tj_pod_obs_release(&o);
    return rc;
}
