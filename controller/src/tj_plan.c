/* tj_plan: the TrainingJob reconciler's decisions (see tj_plan.h).
 *
 * One pass: observe the pods, settle the search identity, derive every
 * trial's record from its pod (or, with the pod gone, from the stored
 * record), decide the search's outcome, start the next trials, and write
 * it all as status, comparing with the stored status so an unchanged
 * world plans nothing. */
#include "tj_plan.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tj_final.h"
#include "tj_json.h"
#include "tj_pod.h"
#include "tj_spec.h"
#include "tj_status.h"
#include "tune.h"

#define DEFAULT_STALL_S  60
#define RETRY_REQUEUE_MS 1000 /* look again soon after deleting a pod to rerun it */
#define SEARCH_MAX       600
#define MAX_INDEX        1000000000 /* trial indices beyond this are not ours */

/* ------------------------------------------------------------ plan storage */

void tj_plan_init(tj_plan_out *p)
{
    memset(p, 0, sizeof *p);
}

void tj_plan_release(tj_plan_out *p)
{
    for (int i = 0; i < p->n_pvcs; i++)
        cJSON_Delete(p->pvcs[i]);
    for (int i = 0; i < p->n_creates; i++)
        cJSON_Delete(p->creates[i]);
    for (int i = 0; i < p->n_events; i++)
        free(p->events[i].message);
    free(p->pvcs);
    free(p->creates);
    free(p->deletes);
    free(p->events);
    cJSON_Delete(p->status);
    free(p->finalizer_patch);
    tj_plan_init(p);
}

/* Makes room for one more element; 0 or KILN_ENOMEM. */
static int grow(void **arr, int *cap, int n, size_t elem)
{
    if (n < *cap)
        return 0;
    int ncap = *cap ? *cap * 2 : 8;
    void *a = realloc(*arr, (size_t)ncap * elem);
    if (!a)
        return KILN_ENOMEM;
    *arr = a;
    *cap = ncap;
    return 0;
}

/* Takes ownership of obj. */
static int push_obj(cJSON ***arr, int *n, int *cap, cJSON *obj)
{
    if (!obj || grow((void **)arr, cap, *n, sizeof **arr)) {
        cJSON_Delete(obj);
        return KILN_ENOMEM;
    }
    (*arr)[(*n)++] = obj;
    return 0;
}

static int add_delete(tj_plan_out *p, const char *name, const char *reason)
{
    for (int i = 0; i < p->n_deletes; i++) {
        if (!strcmp(p->deletes[i].name, name))
            return 0;
    }
    if (grow((void **)&p->deletes, &p->cap_deletes, p->n_deletes, sizeof *p->deletes))
        return KILN_ENOMEM;
    tj_delete *d = &p->deletes[p->n_deletes++];
    snprintf(d->name, sizeof d->name, "%s", name);
    d->reason = reason;
    return 0;
}

static int add_event(tj_plan_out *p, const char *type, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int add_event(tj_plan_out *p, const char *type, const char *reason, const char *fmt, ...)
{
    if (grow((void **)&p->events, &p->cap_events, p->n_events, sizeof *p->events))
        return KILN_ENOMEM;
    char *msg = malloc(1024);
    if (!msg)
        return KILN_ENOMEM;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, 1024, fmt, ap);
    va_end(ap);
    p->events[p->n_events++] = (tj_event){.type = type, .reason = reason, .message = msg};
    return 0;
}

/* A trial that ends within this long after its trainer starts, in a job
 * this young, goes from its launch to its result in one status write:
 * neither its Running phase nor the job's first pending status is
 * written before then (a reconcile is asked for at that mark). */
#define SHORT_TRIAL_MS 3000

/* A job whose trial pods are all still being started by their kubelets
 * (created, nothing wrong, no container run yet) has nothing to record
 * but Pending: its first status write waits for them this long at most,
 * counted from each pod's creation. */
#define STARTING_QUIET_MS 30000

/* A trial stays quiet for left more ms (see tj_plan_out.quiet_ms). */
static void quiet_for(tj_plan_out *out, int64_t left)
{
    if (left <= 0)
        out->quiet_ms = -1; /* this one is past it: so is the job */
    else if (out->quiet_ms == 0 || (out->quiet_ms > 0 && left < out->quiet_ms))
        out->quiet_ms = left;
}

static void requeue(tj_plan_out *p, int64_t ms)
{
    if (ms < 1)
        ms = 1;
    if (p->requeue_after_ms == 0 || ms < p->requeue_after_ms)
        p->requeue_after_ms = ms;
}

int tj_plan_add_delete(tj_plan_out *p, const char *name, const char *reason)
{
    return add_delete(p, name, reason);
}

int tj_plan_add_create(tj_plan_out *p, cJSON *pod)
{
    return push_obj(&p->creates, &p->n_creates, &p->cap_creates, pod);
}

int tj_plan_add_event(tj_plan_out *p, const char *type, const char *reason, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return add_event(p, type, reason, "%s", msg);
}

void tj_plan_requeue(tj_plan_out *p, int64_t ms)
{
    requeue(p, ms);
}

/* ------------------------------------------------------------ working state */

typedef struct wtrial {
    int index;
    const cJSON *old;      /* the stored record, or NULL */
    const tj_pod_obs *pod; /* its pod, or NULL */
    const cJSON *params;   /* borrowed (pod annotation, record or own_params) */
    cJSON *own_params;     /* params this plan chose or merged */
    const cJSON *metrics;  /* borrowed, succeeded trials */
    const cJSON *train_metrics;
    const char *checkpoint;
    char phase[16]; /* the new record phase */
    char message[720];
    int attempts;
    int current;   /* belongs to the current search */
    int keep;      /* the stored record stands as it is */
    int retry;     /* delete the failed pod to run it again */
    int create;    /* create its pod */
    int is_new;    /* started by this plan */
    int permanent; /* failed with exit code 2 */
    int has_value;
    double value;
} wtrial;

typedef struct ctx {
    const tj_spec *s;
    const tj_env *env;
    tj_plan_out *out;
    kiln_error *err;
    ktime now;
    char now_s[KTIME_BUFSZ];
    const cJSON *old; /* stored status or NULL */
    const cJSON *old_conds;
    tj_pod_obs *obs;
    int n_obs;
    wtrial *t;
    int n, cap;
    char key[SEARCH_MAX];    /* search identity without its first index */
    char search[SEARCH_MAX]; /* status.search */
    int first;               /* first trial index of the current search */
    int new_search;
    int next;  /* next trial index */
    int floor; /* stored records below this index are summarised */
    int spec_ok;
    char spec_msg[KILN_ERRMSG_MAX];
    /* outcome */
    int ended;
    const char *end_phase; /* "Succeeded" | "Failed" */
    const char *end_reason;
    char end_msg[1024];
    int goal_met;
    int stalled;
    char stall_reason[64];
    char stall_msg[1024];
    int failed_total;
    int exhausted;
    int best_changed;
    cJSON *best; /* the new bestTrial (owned) */
} ctx;

/* A stored record's index, or -1 when it has none that could be ours. */
static int rec_index(const cJSON *r)
{
    int64_t i = tj_json_int(r, "index", -1);
    return i >= 0 && i <= MAX_INDEX ? (int)i : -1;
}

static const char *rec_phase(const cJSON *r)
{
    return tj_json_str(r, "phase", "");
}

static int is_inflight(const wtrial *w)
{
    return !tj_status_phase_finished(w->phase);
}

static wtrial *find_trial(ctx *c, int index)
{
    for (int i = 0; i < c->n; i++) {
        if (c->t[i].index == index)
            return &c->t[i];
    }
    return NULL;
}

static wtrial *add_trial(ctx *c, int index)
{
    wtrial *w = find_trial(c, index);
    if (w)
        return w;
    if (grow((void **)&c->t, &c->cap, c->n, sizeof *c->t))
        return NULL;
    w = &c->t[c->n++];
    memset(w, 0, sizeof *w);
    w->index = index;
    w->attempts = 1;
    return w;
}

static int cmp_trial(const void *a, const void *b)
{
    return ((const wtrial *)a)->index - ((const wtrial *)b)->index;
}

static void trial_name(const ctx *c, int index, char *buf, size_t n)
{
    if (tj_pod_trial_name(c->s, index, buf, n) != 0)
        snprintf(buf, n, "t%d", index);
}

/* "accuracy 0.8534" for the objective metric of a metrics object. */
static void fmt_value(const ctx *c, const cJSON *metrics, char *buf, size_t n)
{
    double v;
    if (tune_metric_value(c->s->spec, metrics, &v) == 0)
        snprintf(buf, n, "%s %.4g", c->s->metric, v);
    else
        snprintf(buf, n, "no %s", c->s->metric);
}

/* ------------------------------------------------------------ pods */

static int owned_trial_pod(const ctx *c, const cJSON *pod)
{
    /* Label keys hold dots, so the label map is read directly. */
    const cJSON *labels = tj_json_path(pod, "metadata.labels");
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(labels, TJ_LABEL_JOB);
    if (!cJSON_IsString(j) || strcmp(j->valuestring, c->s->name))
        return 0;
    if (!cJSON_GetObjectItemCaseSensitive(labels, TJ_LABEL_TRIAL))
        return 0;
    const cJSON *ref;
    cJSON_ArrayForEach(ref, tj_json_path(pod, "metadata.ownerReferences"))
    {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ref, "controller")) && *c->s->uid &&
            strcmp(tj_json_str(ref, "uid", ""), c->s->uid))
            return 0;
    }
    return 1;
}

static int observe_pods(ctx *c, const cJSON *const *pods, int n_pods)
{
    c->obs = calloc(n_pods > 0 ? (size_t)n_pods : 1, sizeof *c->obs);
    if (!c->obs)
        return kiln_fail(c->err, KILN_ENOMEM, "out of memory");
    for (int i = 0; i < n_pods; i++) {
        if (!pods[i] || !owned_trial_pod(c, pods[i]))
            continue;
        tj_pod_obs *o = &c->obs[c->n_obs];
        int rc = tj_status_observe(pods[i], o, c->err);
        if (rc)
            return rc;
        if (o->index < 0)
            tj_pod_obs_release(o); /* a trial label that is not a number */
        else
            c->n_obs++;
    }
    return 0;
}

/* ------------------------------------------------------------ search identity */

/* "g<generation>[ retrain=<value>]" */
static void search_key(const tj_spec *s, char *buf, size_t n)
{
    if (s->retrain)
        snprintf(buf, n, "g%lld retrain=%.256s", (long long)s->generation, s->retrain);
    else
        snprintf(buf, n, "g%lld", (long long)s->generation);
}

/* Splits a search string "g<gen> t<first>[ retrain=<v>]" into its key and
 * first index; -1 when it does not parse. */
static int parse_search(const char *text, char *key, size_t n, int *first)
{
    if (!text || text[0] != 'g')
        return -1;
    char *end;
    long long gen = strtoll(text + 1, &end, 10);
    if (end == text + 1 || strncmp(end, " t", 2))
        return -1;
    const char *f = end + 2;
    long long idx = strtoll(f, &end, 10);
    if (end == f || idx < 0 || idx > MAX_INDEX)
        return -1;
    if (*end && strncmp(end, " retrain=", 9))
        return -1;
    snprintf(key, n, "g%lld%s", gen, end);
    *first = (int)idx;
    return 0;
}

static void settle_search(ctx *c)
{
    const cJSON *list = tj_json_path(c->old, "trials");
    int maxidx = -1, minlisted = INT_MAX;
    const cJSON *r;
    cJSON_ArrayForEach(r, list)
    {
        int idx = rec_index(r);
        if (idx < 0)
            continue;
        maxidx = idx > maxidx ? idx : maxidx;
        minlisted = idx < minlisted ? idx : minlisted;
    }
    for (int i = 0; i < c->n_obs; i++)
        maxidx = c->obs[i].index > maxidx ? c->obs[i].index : maxidx;
    int64_t count = tj_json_int(c->old, "trialCount", 0);
    c->next = maxidx + 1;
    if (count > c->next && count < INT_MAX / 2)
        c->next = (int)count;
    c->floor = 0;
    if (tj_json_int(c->old, "olderTrials.count", 0) > 0)
        c->floor = minlisted != INT_MAX ? minlisted : c->next;

    search_key(c->s, c->key, sizeof c->key);
    char old_key[SEARCH_MAX];
    int old_first;
    if (parse_search(tj_json_str(c->old, "search", NULL), old_key, sizeof old_key, &old_first) ==
            0 &&
        !strcmp(old_key, c->key)) {
        c->first = old_first;
    } else {
        c->new_search = 1;
        /* Pods of this very search may exist when the status write that
         * started it was lost: the search began at the lowest of them. */
        c->first = c->next;
        for (int i = 0; i < c->n_obs; i++) {
            char k[SEARCH_MAX];
            int f;
            if (parse_search(c->obs[i].search, k, sizeof k, &f) == 0 && !strcmp(k, c->key) &&
                f < c->first && c->obs[i].index >= c->floor)
                c->first = f;
        }
    }
    if (c->s->retrain)
        snprintf(c->search, sizeof c->search, "g%lld t%d retrain=%.256s",
                 (long long)c->s->generation, c->first, c->s->retrain);
    else
        snprintf(c->search, sizeof c->search, "g%lld t%d", (long long)c->s->generation, c->first);
}

/* ------------------------------------------------------------ trial records */

/* The reported params over the planned ones. A warm start's trainer
 * reports only the extra epochs it ran; the trial's identity is the total. */
static int merge_params(wtrial *w, const cJSON *planned, const cJSON *reported)
{
    cJSON *p = planned ? cJSON_Duplicate(planned, 1) : cJSON_CreateObject();
    if (!p)
        return KILN_ENOMEM;
    int warm = cJSON_GetObjectItemCaseSensitive(planned, "warmStartFrom") != NULL;
    const cJSON *e;
    int ok = 1;
    cJSON_ArrayForEach(e, reported)
    {
        if (warm && !strcmp(e->string, "epochs"))
            continue;
        ok &= tj_json_add_copy(p, e->string, e);
    }
    if (!ok) {
        cJSON_Delete(p);
        return KILN_ENOMEM;
    }
    w->own_params = p;
    w->params = p;
    return 0;
}

static int derive_trial(ctx *c, wtrial *w)
{
    const cJSON *r = w->old;
    const tj_pod_obs *p = w->pod;
    const char *rp = rec_phase(r);
    int r_attempts = (int)tj_json_int(r, "attempts", 1);
    w->current = w->index >= c->first;
    w->attempts = r_attempts > 1 ? r_attempts : 1;
    if (p && p->attempt > w->attempts)
        w->attempts = p->attempt;
    w->params = p && p->params ? p->params : tj_json_path(r, "params");

    /* A finished record stands: a stopped trial stays stopped even if its
     * pod got to finish, and finished pods say what the record says. */
    if (r && tj_status_phase_finished(rp) && (!p || !strcmp(rp, "Stopped"))) {
        w->keep = 1;
        snprintf(w->phase, sizeof w->phase, "%s", rp);
        w->metrics = tj_json_path(r, "metrics");
        w->train_metrics = tj_json_path(r, "trainMetrics");
        w->checkpoint = tj_json_str(r, "checkpoint", NULL);
        snprintf(w->message, sizeof w->message, "%s", tj_json_str(r, "message", ""));
        return 0;
    }
    if (!p) {
        /* Unfinished and no pod: its pod is yet to be created (again). */
        snprintf(w->phase, sizeof w->phase, "Pending");
        snprintf(w->message, sizeof w->message, "%s", tj_json_str(r, "message", ""));
        w->create = 1;
        return 0;
    }
    switch (p->phase) {
    case TJ_POD_PENDING:
    case TJ_POD_RUNNING: {
        const char *ph = p->phase == TJ_POD_RUNNING ? "Running" : "Pending";
        /* Running is recorded once the trainer has run SHORT_TRIAL_MS. */
        if (p->phase == TJ_POD_RUNNING && p->has_started && strcmp(rp, "Running") != 0) {
            int64_t left = SHORT_TRIAL_MS - ktime_diff_ms(c->now, p->started);
            if (left > 0) {
                ph = "Pending";
                requeue(c->out, left);
            }
            quiet_for(c->out, left);
        } else if (p->phase == TJ_POD_PENDING && !p->stall_reason[0] && p->has_created) {
            quiet_for(c->out, STARTING_QUIET_MS - ktime_diff_ms(c->now, p->created));
        } else {
            quiet_for(c->out, 0);
        }
        snprintf(w->phase, sizeof w->phase, "%s", ph);
        snprintf(w->message, sizeof w->message, "%s", tj_json_str(r, "message", ""));
        return 0;
    }
    case TJ_POD_SUCCEEDED: {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(p->report, "metrics");
        if (!cJSON_IsObject(m)) {
            snprintf(w->phase, sizeof w->phase, "Failed");
            snprintf(w->message, sizeof w->message,
                     "the trainer exited 0 without a result in its termination message");
            w->permanent = 1;
            return 0;
        }
        snprintf(w->phase, sizeof w->phase, "Succeeded");
        w->metrics = m;
        const cJSON *tm = cJSON_GetObjectItemCaseSensitive(p->report, "trainMetrics");
        w->train_metrics = cJSON_IsObject(tm) ? tm : NULL;
        w->checkpoint = tj_json_str(p->report, "checkpoint", NULL);
        w->message[0] = '\0';
        return merge_params(w, w->params, cJSON_GetObjectItemCaseSensitive(p->report, "params"));
    }
    default:
        break;
    }
    /* The pod failed. */
    if (r_attempts > p->attempt && !tj_status_phase_finished(rp)) {
        /* Its rerun is already decided: the pod is on its way out. */
        snprintf(w->phase, sizeof w->phase, "Pending");
        snprintf(w->message, sizeof w->message, "%s", tj_json_str(r, "message", ""));
        w->retry = 1;
        return 0;
    }
    if (p->exit_code == 2) {
        snprintf(w->phase, sizeof w->phase, "Failed");
        snprintf(w->message, sizeof w->message, "%s", p->message);
        w->permanent = 1;
    } else if (p->attempt <= c->s->backoff_limit) {
        snprintf(w->phase, sizeof w->phase, "Pending");
        snprintf(w->message, sizeof w->message, "attempt %d failed: %s; resuming", p->attempt,
                 p->message);
        w->attempts = p->attempt + 1;
        w->retry = 1;
    } else {
        snprintf(w->phase, sizeof w->phase, "Failed");
        snprintf(w->message, sizeof w->message, "failed after %d attempt%s: %s", p->attempt,
                 p->attempt == 1 ? "" : "s", p->message);
    }
    return 0;
}

static int collect_trials(ctx *c)
{
    const cJSON *r;
    cJSON_ArrayForEach(r, tj_json_path(c->old, "trials"))
    {
        int idx = rec_index(r);
        if (idx < 0 || find_trial(c, idx))
            continue;
        wtrial *w = add_trial(c, idx);
        if (!w)
            return kiln_fail(c->err, KILN_ENOMEM, "out of memory");
        w->old = r;
    }
    for (int i = 0; i < c->n_obs; i++) {
        if (c->obs[i].index < c->floor)
            continue; /* summarised in olderTrials; only its TTL matters */
        wtrial *w = add_trial(c, c->obs[i].index);
        if (!w)
            return kiln_fail(c->err, KILN_ENOMEM, "out of memory");
        w->pod = &c->obs[i];
    }
    for (int i = 0; i < c->n; i++) {
        int rc = derive_trial(c, &c->t[i]);
        if (rc)
            return kiln_fail(c->err, rc, "out of memory");
        wtrial *w = &c->t[i];
        double v;
        if (!strcmp(w->phase, "Succeeded") && tune_metric_value(c->s->spec, w->metrics, &v) == 0) {
            w->has_value = 1;
            w->value = v;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ outcome */

static void end_search(ctx *c, const char *phase, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void end_search(ctx *c, const char *phase, const char *reason, const char *fmt, ...)
{
    c->ended = 1;
    c->end_phase = phase;
    c->end_reason = reason;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->end_msg, sizeof c->end_msg, fmt, ap);
    va_end(ap);
    /* These need someone to fix the spec or the data: kstatus Stalled. */
    if (!strcmp(reason, "InvalidSpec") || !strcmp(reason, "TrialConfigError")) {
        c->stalled = 1;
        snprintf(c->stall_reason, sizeof c->stall_reason, "%s", reason);
        snprintf(c->stall_msg, sizeof c->stall_msg, "%s", c->end_msg);
    }
}

static const wtrial *best_current(const ctx *c)
{
    const wtrial *best = NULL;
    for (int i = 0; i < c->n; i++) {
        const wtrial *w = &c->t[i];
        if (w->current && w->has_value && (!best || tune_better(c->s->spec, w->value, best->value)))
            best = w;
    }
    return best;
}

static int count_inflight(const ctx *c, int *lowest)
{
    int n = 0;
    *lowest = -1;
    for (int i = 0; i < c->n; i++) {
        if (c->t[i].current && is_inflight(&c->t[i])) {
            if (*lowest < 0 || c->t[i].index < *lowest)
                *lowest = c->t[i].index;
            n++;
        }
    }
    return n;
}

/* Failed trials of the search, including those already folded into
 * olderTrials (the stored count minus the ones still listed). */
static int count_failed(const ctx *c)
{
    int listed_before = 0, now = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, tj_json_path(c->old, "trials"))
    {
        if (rec_index(r) >= c->first && !strcmp(rec_phase(r), "Failed"))
            listed_before++;
    }
    for (int i = 0; i < c->n; i++)
        now += c->t[i].current && !strcmp(c->t[i].phase, "Failed");
    int carried = 0;
    if (!c->new_search) {
        carried = (int)tj_json_int(c->old, "failedTrials", 0) - listed_before;
        carried = carried < 0 ? 0 : carried;
    }
    return carried + now;
}

static void decide_outcome(ctx *c)
{
    const char *old_phase = tj_json_str(c->old, "phase", "");
    if (!c->new_search && (!strcmp(old_phase, "Succeeded") || !strcmp(old_phase, "Failed"))) {
        /* An ended search stays ended until the spec or the retrain
         * annotation starts a new one. */
        const cJSON *ready = tj_status_find_condition(c->old_conds, "Ready");
        static const char *const reasons[] = {"GoalReached",         "GoalNotReached",
                                              "TooManyFailedTrials", "InvalidSpec",
                                              "TrialConfigError",    NULL};
        const char *why = tj_json_str(ready, "reason", "");
        const char *reason = !strcmp(old_phase, "Succeeded") ? "GoalReached" : "GoalNotReached";
        for (const char *const *r = reasons; *r; r++) {
            if (!strcmp(why, *r))
                reason = *r;
        }
        end_search(c, !strcmp(old_phase, "Succeeded") ? "Succeeded" : "Failed", reason, "%s",
                   tj_json_str(c->old, "message", ""));
        c->goal_met = !strcmp(old_phase, "Succeeded");
        return;
    }
    if (!c->spec_ok) {
        end_search(c, "Failed", "InvalidSpec", "invalid spec: %s", c->spec_msg);
        return;
    }
    int lowest;
    int inflight = count_inflight(c, &lowest);
    const wtrial *best = best_current(c);
    const wtrial *first = find_trial(c, c->first);
    char name[300], val[96];
    if (first && first->permanent && !strcmp(first->phase, "Failed") && !best) {
        trial_name(c, first->index, name, sizeof name);
        end_search(c, "Failed", "TrialConfigError",
                   "the first trial %s failed on its data or config, so every trial would: %s",
                   name, first->message);
        return;
    }
    if (best && tune_goal_met(c->s->spec, best->value)) {
        c->goal_met = 1;
        trial_name(c, best->index, name, sizeof name);
        char msg[512];
        snprintf(msg, sizeof msg, "trial %s reached %s %.4g (goal %g)", name, c->s->metric,
                 best->value, c->s->goal);
        /* onGoal finish: the search ends when the trials in flight do. */
        if (!c->s->on_goal_finish || inflight == 0)
            end_search(c, "Succeeded", "GoalReached", "%s", msg);
        else
            snprintf(c->end_msg, sizeof c->end_msg, "%s; finishing %d trial%s in flight", msg,
                     inflight, inflight == 1 ? "" : "s");
        return;
    }
    if (c->failed_total >= c->s->max_failed) {
        end_search(c, "Failed", "TooManyFailedTrials", "%d trials failed (maxFailedTrials %d)",
                   c->failed_total, c->s->max_failed);
        return;
    }
    if (c->next - c->first >= c->s->max_trials && inflight == 0) {
        if (best) {
            trial_name(c, best->index, name, sizeof name);
            fmt_value(c, best->metrics, val, sizeof val);
        }
        end_search(c, "Failed", "GoalNotReached", "%d trials without reaching %s %g; best %s%s%s",
                   c->s->max_trials, c->s->metric, c->s->goal, best ? name : "none",
                   best ? ": " : "", best ? val : "");
    }
}

/* ------------------------------------------------------------ new trials */

/* The search's trials as tune sees them: those in flight first (their
 * configurations are taken, though without results), then the finished
 * ones in index order, so the last entry is the latest result. */
static int tune_history(const ctx *c, tune_trial *out)
{
    int n = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < c->n; i++) {
            const wtrial *w = &c->t[i];
            if (!w->current || !strcmp(w->phase, "Stopped") || is_inflight(w) != (pass == 0))
                continue;
            out[n++] = (tune_trial){.index = w->index,
                                    .params = w->params,
                                    .succeeded = !strcmp(w->phase, "Succeeded"),
                                    .metrics = w->metrics,
                                    .train_metrics = w->train_metrics,
                                    .message = pass == 1 && !strcmp(w->phase, "Failed") ? w->message
                                                                                        : NULL};
        }
    }
    return n;
}

static int start_trials(ctx *c)
{
    int lowest;
    int inflight = count_inflight(c, &lowest);
    while (inflight < c->s->parallelism && c->next - c->first < c->s->max_trials) {
        /* The status lists at most 50 trials and only folds finished ones
         * into the summary: keep the oldest running trial listable. */
        if (lowest >= 0 && c->next - lowest >= TJ_MAX_LISTED_TRIALS)
            break;
        tune_trial *hist = calloc((size_t)c->n + 1, sizeof *hist);
        if (!hist)
            return kiln_fail(c->err, KILN_ENOMEM, "out of memory");
        int nh = tune_history(c, hist);
        cJSON *params = NULL;
        char why[512];
        kiln_error terr = {0};
        int rc = tune_next(c->s->spec, hist, nh, &params, why, sizeof why, &terr);
        free(hist);
        if (rc == KILN_ENOTFOUND) {
            c->exhausted = 1;
            break;
        }
        if (rc == KILN_EINVAL) {
            end_search(c, "Failed", "InvalidSpec", "invalid spec: %s", terr.msg);
            return 0;
        }
        if (rc)
            return kiln_fail(c->err, rc, "choosing the next trial: %s", terr.msg);
        wtrial *w = add_trial(c, c->next);
        if (!w) {
            cJSON_Delete(params);
            return kiln_fail(c->err, KILN_ENOMEM, "out of memory");
        }
        w->own_params = params;
        w->params = params;
        w->current = 1;
        w->is_new = 1;
        w->create = 1;
        snprintf(w->phase, sizeof w->phase, "Pending");
        snprintf(w->message, sizeof w->message, "%s", why);
        if (lowest < 0)
            lowest = c->next;
        c->next++;
        inflight++;
    }
    if (c->exhausted && inflight == 0) {
        const wtrial *best = best_current(c);
        char name[300] = "none", val[96] = "";
        if (best) {
            trial_name(c, best->index, name, sizeof name);
            fmt_value(c, best->metrics, val, sizeof val);
        }
        end_search(c, "Failed", "GoalNotReached",
                   "the %s strategy has nothing left to try after %d trials; best %s%s%s",
                   c->s->strategy, c->next - c->first, name, best ? ": " : "", val);
    }
    return 0;
}

/* ------------------------------------------------------------ pod actions */

static int stop_trial(ctx *c, wtrial *w, const char *why, const char *delete_reason)
{
    snprintf(w->phase, sizeof w->phase, "Stopped");
    snprintf(w->message, sizeof w->message, "stopped: %s", why);
    w->create = 0;
    w->retry = 0;
    if (w->pod && !w->pod->deleting)
        return add_delete(c->out, w->pod->name, delete_reason);
    return 0;
}

static int stop_trials(ctx *c)
{
    int rc = 0;
    for (int i = 0; i < c->n && !rc; i++) {
        wtrial *w = &c->t[i];
        if (w->keep && !strcmp(w->phase, "Stopped")) {
            /* Stopped earlier: make sure its pod goes. */
            if (w->pod && !w->pod->deleting &&
                (w->pod->phase == TJ_POD_PENDING || w->pod->phase == TJ_POD_RUNNING))
                rc = add_delete(c->out, w->pod->name, w->current ? "job-finished" : "superseded");
            continue;
        }
        if (!is_inflight(w))
            continue;
        if (!w->current)
            rc = stop_trial(c, w, "superseded by a new search", "superseded");
        else if (c->ended)
            rc =
                stop_trial(c, w, c->end_msg,
                           !strcmp(c->end_reason, "GoalReached") ? "goal-reached" : "job-finished");
    }
    return rc ? kiln_fail(c->err, rc, "out of memory") : 0;
}

static int trial_pods(ctx *c)
{
    int rc = 0;
    int need_pvc = 0;
    for (int i = 0; i < c->n && !rc; i++) {
        wtrial *w = &c->t[i];
        if (w->retry && w->pod) {
            if (!w->pod->deleting)
                rc = add_delete(c->out, w->pod->name, "retry");
            requeue(c->out, RETRY_REQUEUE_MS);
            continue;
        }
        if (w->current && is_inflight(w) && c->env->claim_unconfirmed)
            need_pvc = 1;
        if (!w->create || !w->current || !is_inflight(w))
            continue;
        if (!w->params) {
            snprintf(w->phase, sizeof w->phase, "Failed");
            snprintf(w->message, sizeof w->message, "its parameters were lost; cannot rerun it");
            continue;
        }
        tj_trial_pod tp = {.index = w->index,
                           .params = w->params,
                           .attempt = w->attempts,
                           .resume = !w->is_new,
                           .search = c->search,
                           .reason = w->is_new ? w->message : NULL};
        cJSON *pod = NULL;
        rc = tj_pod_trial(c->s, &tp, &pod, c->err);
        if (!rc)
            rc = push_obj(&c->out->creates, &c->out->n_creates, &c->out->cap_creates, pod);
        need_pvc = 1;
    }
    if (!rc && need_pvc && tj_pod_uses_models_pvc(c->s)) {
        cJSON *pvc = NULL;
        rc = tj_pod_models_pvc(c->s, &pvc, c->err);
        if (!rc)
            rc = push_obj(&c->out->pvcs, &c->out->n_pvcs, &c->out->cap_pvcs, pvc);
    }
    return rc ? kiln_fail(c->err, rc, "out of memory") : 0;
}

/* Deletes finished pods ttlSecondsAfterFinished after their record was
 * stored, and looks again when the next one is due. */
static int expire_pods(ctx *c)
{
    for (int i = 0; i < c->n_obs; i++) {
        const tj_pod_obs *o = &c->obs[i];
        if (o->deleting || (o->phase != TJ_POD_SUCCEEDED && o->phase != TJ_POD_FAILED))
            continue;
        ktime done;
        if (o->index < c->floor) {
            done = o->has_finished ? o->finished : o->has_created ? o->created : c->now;
        } else {
            const wtrial *w = find_trial(c, o->index);
            if (!w || !w->old || !tj_status_phase_finished(rec_phase(w->old)) || w->retry)
                continue; /* its result is not stored yet */
            const char *ct = tj_json_str(w->old, "completionTime", NULL);
            if (!ct || ktime_parse(ct, &done, NULL) != 0)
                done = o->has_finished ? o->finished : c->now;
        }
        int64_t left = ktime_diff_ms(ktime_add_ms(done, c->s->ttl_s * 1000), c->now);
        if (left <= 0) {
            if (add_delete(c->out, o->name, "ttl"))
                return kiln_fail(c->err, KILN_ENOMEM, "out of memory");
        } else {
            requeue(c->out, left);
        }
    }
    return 0;
}

/* A trial pod stuck Pending on its image, config or scheduling. */
static void detect_stall(ctx *c)
{
    if (c->ended)
        return;
    int64_t after_ms =
        (int64_t)(c->env->stall_after_s < 0 ? DEFAULT_STALL_S : c->env->stall_after_s) * 1000;
    for (int i = 0; i < c->n; i++) {
        const wtrial *w = &c->t[i];
        const tj_pod_obs *o = w->pod;
        if (!w->current || !o || o->phase != TJ_POD_PENDING || !o->stall_reason[0] ||
            !is_inflight(w))
            continue;
        int64_t age = o->has_created ? ktime_diff_ms(c->now, o->created) : after_ms;
        if (age < after_ms) {
            requeue(c->out, after_ms - age);
            continue;
        }
        if (!c->stalled) {
            c->stalled = 1;
            snprintf(c->stall_reason, sizeof c->stall_reason, "%s", o->stall_reason);
            snprintf(c->stall_msg, sizeof c->stall_msg, "trial pod %s: %s: %s", o->name,
                     o->stall_reason, o->stall_message);
        }
    }
}

/* ------------------------------------------------------------ status */

static cJSON *trial_record(const ctx *c, const wtrial *w)
{
    if (w->keep)
        return cJSON_Duplicate(w->old, 1);
    char name[300], t[KTIME_BUFSZ];
    trial_name(c, w->index, name, sizeof name);
    cJSON *r = cJSON_CreateObject();
    int ok = tj_json_add_str(r, "name", name);
    ok &= tj_json_add_num(r, "index", w->index);
    ok &= tj_json_add_str(r, "phase", w->phase);
    ok &= tj_json_add_copy(r, "params", w->params);
    ok &= tj_json_add_copy(r, "metrics", w->metrics);
    ok &= tj_json_add_copy(r, "trainMetrics", w->train_metrics);
    ok &= tj_json_add_str(r, "pod", name);
    if (w->checkpoint)
        ok &= tj_json_add_str(r, "checkpoint", w->checkpoint);
    ok &= tj_json_add_num(r, "attempts", w->attempts);
    const char *start = tj_json_str(w->old, "startTime", NULL);
    if (!start && w->pod && w->pod->has_created) {
        tj_status_time(w->pod->created, t);
        start = t;
    }
    ok &= tj_json_add_str(r, "startTime", start ? start : c->now_s);
    if (tj_status_phase_finished(w->phase)) {
        const char *done = NULL;
        if (!strcmp(rec_phase(w->old), w->phase))
            done = tj_json_str(w->old, "completionTime", NULL);
        if (!done && w->pod && w->pod->has_finished && strcmp(w->phase, "Stopped")) {
            tj_status_time(w->pod->finished, t);
            done = t;
        }
        ok &= tj_json_add_str(r, "completionTime", done ? done : c->now_s);
    }
    if (w->message[0])
        ok &= tj_json_add_str(r, "message", w->message);
    if (!ok) {
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

static cJSON *best_record(const ctx *c, const wtrial *w)
{
    char name[300];
    trial_name(c, w->index, name, sizeof name);
    char dir[600], ckpt[700];
    if (tj_pod_models_dir(c->s, dir, sizeof dir) != 0)
        snprintf(dir, sizeof dir, TJ_MODELS_DIR);
    snprintf(ckpt, sizeof ckpt, "%s/t%d/model.kiln", dir, w->index);
    cJSON *b = cJSON_CreateObject();
    int ok = tj_json_add_str(b, "name", name);
    ok &= tj_json_add_num(b, "index", w->index);
    ok &= tj_json_add_num(b, "value", w->value);
    ok &= tj_json_add_copy(b, "metrics", w->metrics);
    ok &= tj_json_add_copy(b, "params", w->params);
    ok &= tj_json_add_str(b, "checkpoint", w->checkpoint ? w->checkpoint : ckpt);
    if (!ok) {
        cJSON_Delete(b);
        return NULL;
    }
    return b;
}

/* The best trial: the stored one unless a trial of this search beats it
 * (the stored best keeps serving until something better exists). */
static int choose_best(ctx *c)
{
    const cJSON *old = tj_json_path(c->old, "bestTrial");
    const wtrial *cand = best_current(c);
    double ov;
    int old_has = cJSON_IsObject(old) &&
                  tune_metric_value(c->s->spec, tj_json_path(old, "metrics"), &ov) == 0;
    if (cand && (!old_has || tune_better(c->s->spec, cand->value, ov))) {
        c->best = best_record(c, cand);
        c->best_changed = tj_json_int(old, "index", -1) != cand->index;
    } else if (cJSON_IsObject(old)) {
        c->best = cJSON_Duplicate(old, 1);
    }
    if (cand && !c->best)
        return kiln_fail(c->err, KILN_ENOMEM, "out of memory");
    return 0;
}

static const char *phase_of(const ctx *c)
{
    if (c->ended)
        return c->end_phase;
    for (int i = 0; i < c->n; i++) {
        const wtrial *w = &c->t[i];
        if (w->current && strcmp(w->phase, "Pending"))
            return "Running";
    }
    return "Pending";
}

static int add_conditions(ctx *c, cJSON *st, const char *phase, const char *summary)
{
    cJSON *conds = cJSON_CreateArray();
    if (!tj_json_add(st, "conditions", conds))
        return 0;
    int64_t g = c->s->generation;
    const cJSON *o = c->old_conds;
    ktime now = c->now;
    int ok = 1;
    int succeeded = c->ended && !strcmp(phase, "Succeeded");
    if (succeeded)
        ok &= tj_status_condition(conds, o, "Ready", "True", "GoalReached", c->end_msg, g, now);
    else
        ok &=
            tj_status_condition(conds, o, "Ready", "False", c->ended ? c->end_reason : "Searching",
                                c->ended ? c->end_msg : summary, g, now);
    if (c->ended)
        ok &= tj_status_condition(conds, o, "Reconciling", "False", "SearchFinished", c->end_msg, g,
                                  now);
    else
        ok &= tj_status_condition(conds, o, "Reconciling", "True",
                                  c->goal_met ? "FinishingTrials" : "Searching", summary, g, now);
    if (c->stalled)
        ok &=
            tj_status_condition(conds, o, "Stalled", "True", c->stall_reason, c->stall_msg, g, now);
    else
        ok &= tj_status_condition(conds, o, "Stalled", "False", "Progressing", "", g, now);
    if (c->goal_met)
        ok &=
            tj_status_condition(conds, o, "GoalReached", "True", "GoalReached", c->end_msg, g, now);
    else if (c->ended)
        ok &= tj_status_condition(conds, o, "GoalReached", "False", c->end_reason, c->end_msg, g,
                                  now);
    else
        ok &= tj_status_condition(conds, o, "GoalReached", "Unknown", "Searching", summary, g, now);
    /* Serving is the serving loop's condition: carried over untouched. */
    const cJSON *serving = tj_status_find_condition(o, "Serving");
    if (serving)
        ok &= tj_json_push(conds, cJSON_Duplicate(serving, 1));
    return ok;
}

static cJSON *build_status(ctx *c)
{
    cJSON *st = cJSON_CreateObject();
    const char *phase = phase_of(c);
    int ok = tj_json_add_num(st, "observedGeneration", (double)c->s->generation);
    ok &= tj_json_add_str(st, "search", c->search);
    ok &= tj_json_add_str(st, "phase", phase);
    ok &= tj_json_add_num(st, "trialCount", c->next);
    ok &= tj_json_add_num(st, "failedTrials", c->failed_total);

    int running = 0;
    for (int i = 0; i < c->n; i++)
        running += c->t[i].current && is_inflight(&c->t[i]);
    char summary[512];
    double bv;
    if (c->best && tune_metric_value(c->s->spec, tj_json_path(c->best, "metrics"), &bv) == 0)
        snprintf(summary, sizeof summary,
                 "%d of %d trials started, %d in flight; best %s %.4g (goal %g)",
                 c->next - c->first, c->s->max_trials, running, c->s->metric, bv, c->s->goal);
    else
        snprintf(summary, sizeof summary, "%d of %d trials started, %d in flight",
                 c->next - c->first, c->s->max_trials, running);
    const char *message = c->ended || c->goal_met ? c->end_msg
                          : c->stalled            ? c->stall_msg
                                                  : summary;
    ok &= tj_json_add_str(st, "message", message);

    const char *start = c->new_search ? NULL : tj_json_str(c->old, "startTime", NULL);
    ok &= tj_json_add_str(st, "startTime", start ? start : c->now_s);
    if (c->ended) {
        const char *old_done = NULL;
        if (!c->new_search && !strcmp(tj_json_str(c->old, "phase", ""), phase))
            old_done = tj_json_str(c->old, "completionTime", NULL);
        ok &= tj_json_add_str(st, "completionTime", old_done ? old_done : c->now_s);
    }

    cJSON *trials = cJSON_CreateArray();
    ok &= tj_json_add(st, "trials", trials);
    for (int i = 0; i < c->n && ok; i++)
        ok &= tj_json_push(trials, trial_record(c, &c->t[i]));
    const cJSON *older_in = tj_json_path(c->old, "olderTrials");
    cJSON *older = cJSON_IsObject(older_in) ? cJSON_Duplicate(older_in, 1) : cJSON_CreateObject();
    ok &= tj_status_bound_trials(trials, older, TJ_MAX_LISTED_TRIALS);
    if (older && older->child)
        ok &= tj_json_add(st, "olderTrials", older);
    else
        cJSON_Delete(older);
    if (c->best)
        ok &= tj_json_add_copy(st, "bestTrial", c->best);
    ok &= tj_json_add_copy(st, "serving", tj_json_path(c->old, "serving"));
    ok &= add_conditions(c, st, phase, summary);
    if (!ok) {
        cJSON_Delete(st);
        return NULL;
    }
    return st;
}

/* ------------------------------------------------------------ events */

static int cond_is(const ctx *c, const char *type, const char *status, const char *reason)
{
    const cJSON *k = tj_status_find_condition(c->old_conds, type);
    return k && !strcmp(tj_json_str(k, "status", ""), status) &&
           (!reason || !strcmp(tj_json_str(k, "reason", ""), reason));
}

static int plan_events(ctx *c)
{
    tj_plan_out *p = c->out;
    int rc = 0;
    char name[300], val[96], tval[96];
    if (c->new_search && c->old && tj_json_path(c->old, "search"))
        rc |= add_event(p, "Normal", "SearchStarted", "new search from trial t%d (%s)", c->first,
                        c->key);
    for (int i = 0; i < c->n; i++) {
        const wtrial *w = &c->t[i];
        if (w->keep)
            continue;
        trial_name(c, w->index, name, sizeof name);
        const char *was = rec_phase(w->old);
        if (w->is_new)
            rc |= add_event(p, "Normal", "TrialCreated", "trial %s: %s", name, w->message);
        else if (!strcmp(w->phase, "Succeeded") && strcmp(was, "Succeeded")) {
            fmt_value(c, w->metrics, val, sizeof val);
            fmt_value(c, w->train_metrics, tval, sizeof tval);
            rc |= add_event(p, "Normal", "TrialSucceeded", "trial %s: %s (training %s)", name, val,
                            tval);
        } else if (!strcmp(w->phase, "Failed") && strcmp(was, "Failed"))
            rc |= add_event(p, "Warning", "TrialFailed", "trial %s: %s", name, w->message);
        else if (w->retry && w->attempts > (int)tj_json_int(w->old, "attempts", 1))
            rc |= add_event(p, "Warning", "TrialRetrying", "trial %s: %s (attempt %d of %d)", name,
                            w->message, w->attempts, c->s->backoff_limit + 1);
    }
    int goal_event = c->goal_met && (c->new_search || !cond_is(c, "GoalReached", "True", NULL));
    /* GoalReached names the trial that reached it, which is then the new
     * best: one Event says both. */
    if (c->best_changed && !goal_event) {
        fmt_value(c, tj_json_path(c->best, "metrics"), val, sizeof val);
        rc |= add_event(p, "Normal", "NewBestTrial", "trial %s is the best so far: %s",
                        tj_json_str(c->best, "name", "?"), val);
    }
    if (goal_event)
        rc |= add_event(p, "Normal", "GoalReached", "%s", c->end_msg);
    if (c->ended && strcmp(c->end_phase, "Succeeded") &&
        (c->new_search || strcmp(tj_json_str(c->old, "phase", ""), "Failed")))
        rc |= add_event(p, "Warning", c->end_reason, "%s", c->end_msg);
    if (c->stalled && !c->ended && !cond_is(c, "Stalled", "True", c->stall_reason))
        rc |= add_event(p, "Warning", "Stalled", "%s", c->stall_msg);
    return rc ? kiln_fail(c->err, KILN_ENOMEM, "out of memory") : 0;
}

/* ------------------------------------------------------------ entry */

static void ctx_release(ctx *c)
{
    for (int i = 0; i < c->n_obs; i++)
        tj_pod_obs_release(&c->obs[i]);
    free(c->obs);
    for (int i = 0; i < c->n; i++)
        cJSON_Delete(c->t[i].own_params);
    free(c->t);
    cJSON_Delete(c->best);
}

int64_t tj_plan_first_write_wait(const cJSON *job, const tj_plan_out *p, ktime now)
{
    if (!p->status || p->n_creates || p->n_deletes || p->n_events ||
        p->finalizer != TJ_FINALIZER_KEEP || cJSON_GetArraySize(tj_json_path(job, "status.trials")))
        return 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tj_json_path(p->status, "trials"))
    {
        if (strcmp(tj_json_str(t, "phase", ""), "Pending") != 0)
            return 0;
    }
    ktime created;
    const char *ct = tj_json_str(job, "metadata.creationTimestamp", NULL);
    if (!ct || ktime_parse(ct, &created, NULL) != 0)
        return 0;
    int64_t left = SHORT_TRIAL_MS - ktime_diff_ms(now, created);
    if (p->quiet_ms > left)
        left = p->quiet_ms;
    return left > 0 ? left : 0;
}

int tj_plan(const cJSON *job, const cJSON *const *pods, int n_pods, const tj_env *env,
            tj_plan_out *out, kiln_error *err)
{
    tj_plan_release(out);
    tj_spec s;
    int rc = tj_spec_read(job, env->trainer_image, &s, err);
    if (rc)
        return rc;
    if (!tj_json_path(job, "metadata.namespace") && env->ns)
        s.ns = env->ns;
    /* A job being deleted only needs its checkpoints cleaned up. */
    if (tj_json_path(job, "metadata.deletionTimestamp")) {
        rc = tj_final_plan(&s, pods, n_pods, env, out, err);
        if (rc)
            tj_plan_release(out);
        return rc;
    }

    ctx c = {.s = &s, .env = env, .out = out, .err = err, .now = env->now};
    tj_status_time(env->now, c.now_s);
    const cJSON *st = tj_json_path(job, "status");
    c.old = cJSON_IsObject(st) && st->child ? st : NULL;
    c.old_conds = tj_json_path(c.old, "conditions");
    kiln_error serr = {0};
    c.spec_ok = tj_spec_check(&s, &serr) == 0;
    snprintf(c.spec_msg, sizeof c.spec_msg, "%s", serr.msg);

    rc = observe_pods(&c, pods, n_pods);
    if (!rc) {
        settle_search(&c);
        rc = collect_trials(&c);
    }
    if (!rc) {
        if (c.n > 1)
            qsort(c.t, (size_t)c.n, sizeof *c.t, cmp_trial);
        c.failed_total = count_failed(&c);
    }
    if (!rc) {
        decide_outcome(&c);
        if (!c.ended && !c.goal_met)
            rc = start_trials(&c);
    }
    if (!rc)
        rc = stop_trials(&c);
    if (!rc) {
        detect_stall(&c);
        rc = trial_pods(&c);
    }
    if (!rc)
        rc = expire_pods(&c);
    if (!rc)
        rc = choose_best(&c);
    cJSON *status = NULL;
    if (!rc) {
        status = build_status(&c);
        if (!status)
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    if (!rc)
        rc = plan_events(&c);
    if (!rc) {
        if (c.old && cJSON_Compare(c.old, status, 1))
            cJSON_Delete(status);
        else
            out->status = status;
    } else {
        cJSON_Delete(status);
    }
    /* Only checkpoints on a volume the job does not own need the clean-up
     * the finalizer holds the job for; the job's own claim goes with it
     * through its owner reference, and a retained volume is left alone. So
     * only those jobs pay the extra write and round trip. */
    if (!rc && !tj_final_has(job) && !c.s->storage_retain && !tj_pod_uses_models_pvc(c.s)) {
        out->finalizer = TJ_FINALIZER_ADD;
        rc = tj_final_patch(job, 1, &out->finalizer_patch, err);
    }
    if (rc)
        tj_plan_release(out);
    ctx_release(&c);
    return rc;
}

/* ------------------------------------------------------------ debug */

cJSON *tj_plan_to_json(const tj_plan_out *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *pvcs = cJSON_CreateArray(), *dels = cJSON_CreateArray(), *creates = cJSON_CreateArray(),
          *events = cJSON_CreateArray();
    int ok = tj_json_add(o, "pvcs", pvcs) & tj_json_add(o, "deletes", dels) &
             tj_json_add(o, "creates", creates) & tj_json_add(o, "events", events);
    for (int i = 0; ok && i < p->n_pvcs; i++)
        ok &= tj_json_push(pvcs, cJSON_Duplicate(p->pvcs[i], 1));
    for (int i = 0; ok && i < p->n_creates; i++)
        ok &= tj_json_push(creates, cJSON_Duplicate(p->creates[i], 1));
    for (int i = 0; ok && i < p->n_deletes; i++) {
        cJSON *d = cJSON_CreateObject();
        ok &= tj_json_add_str(d, "name", p->deletes[i].name);
        ok &= tj_json_add_str(d, "reason", p->deletes[i].reason);
        ok &= tj_json_push(dels, d);
    }
    for (int i = 0; ok && i < p->n_events; i++) {
        cJSON *e = cJSON_CreateObject();
        ok &= tj_json_add_str(e, "type", p->events[i].type);
        ok &= tj_json_add_str(e, "reason", p->events[i].reason);
        ok &= tj_json_add_str(e, "message", p->events[i].message);
        ok &= tj_json_push(events, e);
    }
    ok &= tj_json_add(o, "status", p->status ? cJSON_Duplicate(p->status, 1) : cJSON_CreateNull());
    ok &= tj_json_add_num(o, "requeueAfterMs", (double)p->requeue_after_ms);
    ok &= tj_json_add(o, "finalizer",
                      p->finalizer == TJ_FINALIZER_ADD      ? cJSON_CreateString("add")
                      : p->finalizer == TJ_FINALIZER_REMOVE ? cJSON_CreateString("remove")
                                                            : cJSON_CreateNull());
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
