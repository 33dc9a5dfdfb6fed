/* ctrl: informers, work queue and the reconcile step that executes plans
 * (see ctrl.h and tj_plan.h for the order of the writes). */
#include "ctrl.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "ctrl_claims.h"
#include "kbuf.h"
#include "klog.h"
#include "ktime.h"
#include "kube_api.h"
#include "kube_event.h"
#include "kube_informer.h"
#include "kube_leader.h"
#include "kube_map.h"
#include "kube_obj.h"
#include "kube_queue.h"
#include "notify.h"
#include "tj_plan.h"
#include "tj_pod.h"
#include "tj_serve.h"
#include "tj_spec.h"
#include "tj_status.h"
#include "tune.h"

static const kube_resource res_tj = {"kiln.dev", "v1alpha1", "trainingjobs", "TrainingJob", 1};
static const kube_resource res_secrets = {"", "v1", "secrets", "Secret", 1};
static const kube_resource res_services = {"", "v1", "services", "Service", 1};

#define SYNC_TIMEOUT_MS 60000
#define EXPECT_MS 5000
/* Threads creating models claims. A scheduler keeps a pod Pending
 * (PodScheduled False, one more status write and reconcile) until its
 * claim exists, so the claims must keep pace with the trial pods of a
 * burst of new jobs: with 2 threads 886 of 1,000 pods applied at once
 * waited for theirs, with 8 up to 539, with 16 at most 37. */
#define CLAIM_THREADS 16

struct ctrl {
    kube_client *client;
    ctrl_opts opts;
    kube_informer *jobs, *pods, *services;
    kube_queue *queue;
    kube_recorder *events;
    kube_leader *leader;
    kube_owner_enqueuer owner_enq;
    /* The jobs' models claims: those known to exist (later trials skip
     * the create, which would only meet AlreadyExists) and their creates,
     * made on threads of their own. */
    ctrl_claims *claims;
    /* "ns/job" -> a resourceVersion of the job that this process has
     * already written past (the finalizer patch's, when the same pass then
     * wrote the status): a reconcile from the cache at that version would
     * plan from a stale status and meet 409. Under mu. */
    kube_map *stale;
    /* "ns/pod" -> mono ms of its create, until the pod informer shows it:
     * a reconcile in between (our own status write's event comes first)
     * would create it again and meet 409. Kept at most EXPECT_MS, so a
     * pod deleted before it was ever seen is created again later. Under
     * mu. */
    kube_map *expect;
    pthread_mutex_t mu;
    atomic_int ready, leading, started_workers;
    /* metrics (counters are the one kind of global-ish mutable state allowed) */
    atomic_long reconciles, reconcile_errors, writes, conflicts;
    atomic_long pods_created, pods_deleted, notifications_failed;
};

/* ------------------------------------------------------------ plan execution */

/* Ignores the codes that mean "already as wanted". */
static int ok_or(int rc, const kube_err *e, int fine_http)
{
    return rc != 0 && e->http == fine_http ? 0 : rc;
}

static void log_api_error(const char *what, const char *key, const kube_err *e)
{
    klog(KLOG_WARN, what, KS("job", key), KI("http", e->http), KS("reason", e->status.reason),
         KS("error", e->e.msg), KEND);
}

/* Reads user name and password from the Secret named by
 * notify.email.secretRef (keys "username" and "password"). */
static void email_credentials(ctrl *c, const char *ns, const cJSON *email, char **user, char **pass)
{
    *user = *pass = NULL;
    const char *name = cJSON_GetStringValue(kube_obj_path(email, "secretRef.name"));
    if (!name)
        return;
    cJSON *sec = NULL;
    kube_err e;
    kube_err_init(&e);
    if (kube_get(c->client, &res_secrets, ns, name, &sec, &e) != 0) {
        klog(KLOG_WARN, "cannot read the e-mail Secret", KS("secret", name), KI("http", e.http), KEND);
        kube_err_release(&e);
        return;
    }
    kube_err_release(&e);
    const char *paths[2] = {"data.username", "data.password"};
    char **outs[2] = {user, pass};
    for (int i = 0; i < 2; i++) {
        const char *b64 = cJSON_GetStringValue(kube_obj_path(sec, paths[i]));
        unsigned char *raw = NULL;
        size_t len = 0;
        if (b64 && kube_base64_decode(b64, &raw, &len, NULL) == 0) {
            *outs[i] = malloc(len + 1);
            if (*outs[i]) {
                memcpy(*outs[i], raw, len);
                (*outs[i])[len] = '\0';
            }
            free(raw);
        }
    }
    cJSON_Delete(sec);
}

/* The job reached its end: webhook and e-mail, as the spec asks. */
static void announce(ctrl *c, const cJSON *job, const cJSON *status, const char *outcome)
{
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(job, "spec");
    const cJSON *webhook = kube_obj_path(spec, "notify.webhook");
    const cJSON *email = kube_obj_path(spec, "notify.email");
    if (!webhook && !email)
        return;
    const cJSON *best = cJSON_GetObjectItemCaseSensitive(status, "bestTrial");
    notify_event ev = {
        .job = kube_obj_name(job),
        .ns = kube_obj_namespace(job),
        .outcome = outcome,
        .metric = cJSON_GetStringValue(kube_obj_path(spec, "objective.metric")),
        .goal = cJSON_GetNumberValue(kube_obj_path(spec, "objective.goal")),
        .best_trial = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(best, "name")),
        .best_value = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(best, "value")),
        .metrics = cJSON_GetObjectItemCaseSensitive(best, "metrics"),
        .checkpoint = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(best, "checkpoint")),
        .trials = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(status, "trialCount")),
    };
    if (!ev.metric)
        ev.metric = "accuracy";
    kiln_error err = {0};
    const char *url = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(webhook, "url"));
    if (url) {
        cJSON *payload = notify_payload(&ev);
        if (notify_webhook(url, payload, NULL, &err) != 0) {
            atomic_fetch_add(&c->notifications_failed, 1);
            kube_event_record(c->events, job, "Warning", "NotificationFailed", "%s", err.msg);
        }
        cJSON_Delete(payload);
    }
    if (email) {
        const char *to[16];
        int n_to = 0;
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(email, "to"))
        {
            if (n_to < 16 && cJSON_IsString(t))
                to[n_to++] = t->valuestring;
        }
        char *user, *pass;
        email_credentials(c, kube_obj_namespace(job), email, &user, &pass);
        notify_email_cfg cfg = {
            .smtp_url = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(email, "smtpUrl")),
            .from = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(email, "from")),
            .to = to,
            .n_to = n_to,
            .username = user,
            .password = pass,
        };
        kiln_error_clear(&err);
        if (notify_email(&cfg, &ev, NULL, &err) != 0) {
            atomic_fetch_add(&c->notifications_failed, 1);
            kube_event_record(c->events, job, "Warning", "NotificationFailed", "%s", err.msg);
        }
        if (pass)
            memset(pass, 0, strlen(pass));
        free(user);
        free(pass);
    }
}

/* Creates obj; AlreadyExists counts as done (a restarted controller may
 * have created it already). On failure the API's message goes to msg. */
static int create_obj(ctrl *c, const char *key, const kube_resource *r, const char *ns,
                      const cJSON *obj, const char *what, char *msg, size_t n)
{
    kube_err e;
    kube_err_init(&e);
    int rc = ok_or(kube_create(c->client, r, ns, obj, NULL, &e), &e, 409);
    atomic_fetch_add(&c->writes, 1);
    if (rc) {
        log_api_error(what, key, &e);
        if (msg)
            snprintf(msg, n, "%s", e.e.msg);
    }
    kube_err_release(&e);
    return rc;
}

/* Deletes a pod; NotFound counts as done. */
static int delete_pod(ctrl *c, const char *key, const char *ns, const char *name, const char *what)
{
    kube_err e;
    kube_err_init(&e);
    kube_delete_opts d = {.propagation = "Background", .grace_seconds = -1};
    int rc = ok_or(kube_delete(c->client, &kube_res_pods, ns, name, &d, &e), &e, 404);
    atomic_fetch_add(&c->writes, 1);
    if (rc)
        log_api_error(what, key, &e);
    else
        atomic_fetch_add(&c->pods_deleted, 1);
    kube_err_release(&e);
    return rc;
}

static int write_status(ctrl *c, const char *key, const cJSON *job, const cJSON *status)
{
    cJSON *obj = cJSON_Duplicate(job, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "status");
    cJSON_AddItemToObject(obj, "status", cJSON_Duplicate(status, 1));
    kube_err e;
    kube_err_init(&e);
    int rc = kube_update_status(c->client, &res_tj, kube_obj_namespace(job), obj, NULL, &e);
    atomic_fetch_add(&c->writes, 1);
    if (rc && e.http == 409) {
        atomic_fetch_add(&c->conflicts, 1);
        klog(KLOG_DEBUG, "status conflict, will re-read", KS("job", key), KEND);
    } else if (rc) {
        log_api_error("cannot write status", key, &e);
    }
    kube_err_release(&e);
    cJSON_Delete(obj);
    return rc;
}

/* Patches the job's metadata.finalizers (tj_final_patch); a conflict
 * means a newer job is on its way: the next reconcile plans again. */
static int patch_finalizers(ctrl *c, const char *key, const cJSON *job, const char *patch,
                            int *http, cJSON **patched)
{
    kube_err e;
    kube_err_init(&e);
    int rc = ok_or(kube_patch(c->client, &res_tj, kube_obj_namespace(job), kube_obj_name(job), NULL,
                              KUBE_PATCH_MERGE, patch, patched, &e),
                   &e, 404);
    atomic_fetch_add(&c->writes, 1);
    *http = e.http;
    if (rc && e.http == 409)
        atomic_fetch_add(&c->conflicts, 1);
    else if (rc)
        log_api_error("cannot update the job's finalizers", key, &e);
    kube_err_release(&e);
    return rc;
}

static void forget_job(ctrl *c, const char *key)
{
    ctrl_claims_forget(c->claims, key);
    pthread_mutex_lock(&c->mu);
    kube_map_del(c->stale, key);
    pthread_mutex_unlock(&c->mu);
}

static void stale_mark(ctrl *c, const char *key, const char *rv)
{
    char *v = rv ? strdup(rv) : NULL;
    if (!v)
        return; /* costs at most one 409 */
    pthread_mutex_lock(&c->mu);
    if (kube_map_put(c->stale, key, v))
        free(v);
    pthread_mutex_unlock(&c->mu);
}

static void pod_expect(ctrl *c, const char *ns, const char *name)
{
    char k[600];
    int64_t *t = malloc(sizeof *t);
    if (!t || snprintf(k, sizeof k, "%s/%s", ns, name) >= (int)sizeof k) {
        free(t);
        return;
    }
    *t = ktime_mono_ms();
    pthread_mutex_lock(&c->mu);
    if (kube_map_put(c->expect, k, t))
        free(t);
    pthread_mutex_unlock(&c->mu);
}

/* 1 when this process created the pod moments ago and the cache has not
 * shown it yet. */
static int pod_expected(ctrl *c, const char *ns, const char *name)
{
    char k[600];
    if (snprintf(k, sizeof k, "%s/%s", ns, name) >= (int)sizeof k)
        return 0;
    pthread_mutex_lock(&c->mu);
    const int64_t *t = kube_map_get(c->expect, k);
    int fresh = t && ktime_mono_ms() - *t < EXPECT_MS;
    if (t && !fresh)
        kube_map_del(c->expect, k);
    pthread_mutex_unlock(&c->mu);
    return fresh;
}

/* The cache shows these pods: no create of theirs is pending any more. */
static void pods_seen(ctrl *c, const cJSON *pods)
{
    const cJSON *pod;
    pthread_mutex_lock(&c->mu);
    if (kube_map_len(c->expect)) {
        cJSON_ArrayForEach(pod, pods)
        {
            char k[600];
            const char *ns = kube_obj_namespace(pod), *name = kube_obj_name(pod);
            if (ns && name && snprintf(k, sizeof k, "%s/%s", ns, name) < (int)sizeof k)
                kube_map_del(c->expect, k);
        }
    }
    pthread_mutex_unlock(&c->mu);
}

/* Serving pods get generated names, so a create repeated by a reconcile
 * that ran before the cache showed the first one would not meet
 * AlreadyExists: it would make a second pod (deleted again at once). The
 * generated name is expected like a trial pod's, and while one of the
 * job's is, no serving pod is created. */
static int create_serving_pod(ctrl *c, const char *key, const char *ns, const cJSON *pod)
{
    kube_err e;
    kube_err_init(&e);
    cJSON *made = NULL;
    int rc = kube_create(c->client, &kube_res_pods, ns, pod, &made, &e);
    atomic_fetch_add(&c->writes, 1);
    if (rc) {
        log_api_error("cannot create a serving pod", key, &e);
    } else {
        atomic_fetch_add(&c->pods_created, 1);
        if (made && kube_obj_name(made))
            pod_expect(c, ns, kube_obj_name(made));
    }
    cJSON_Delete(made);
    kube_err_release(&e);
    return rc;
}

typedef struct serve_scan {
    char prefix[600]; /* "ns/<job>-serve-" */
    int64_t now;
    int found;
} serve_scan;

static int scan_expect(const char *k, void *val, void *ud)
{
    serve_scan *sc = ud;
    const int64_t *t = val;
    if (!strncmp(k, sc->prefix, strlen(sc->prefix)) && sc->now - *t < EXPECT_MS)
        sc->found = 1;
    return sc->found;
}

/* 1 while a serving pod this process created for job is not in the cache. */
static int serving_create_pending(ctrl *c, const cJSON *job)
{
    serve_scan sc = {.now = ktime_mono_ms()};
    if (snprintf(sc.prefix, sizeof sc.prefix, "%s/%s-serve-", kube_obj_namespace(job),
                 kube_obj_name(job)) >= (int)sizeof sc.prefix)
        return 0;
    pthread_mutex_lock(&c->mu);
    kube_map_foreach(c->expect, scan_expect, &sc);
    pthread_mutex_unlock(&c->mu);
    return sc.found;
}

/* 1 when the cached job is a version this process already wrote past: the
 * newer version's watch event queues the key again. */
static int stale_skip(ctrl *c, const char *key, const cJSON *job)
{
    const char *rv = kube_obj_resource_version(job);
    pthread_mutex_lock(&c->mu);
    const char *v = kube_map_get(c->stale, key);
    int skip = v && rv && !strcmp(v, rv);
    if (v && !skip)
        kube_map_del(c->stale, key); /* the cache has moved on */
    pthread_mutex_unlock(&c->mu);
    return skip;
}

/* Progress events that every trial produces (a search start, each trial's
 * creation and success) are logged, not posted, unless --progress-events:
 * they would be most of the controller's writes, and status.trials holds
 * the same facts. Warnings, each new best trial and outcomes are posted. */
static int post_event(const ctrl *c, const tj_event *ev)
{
    static const char *const progress[] = {"SearchStarted", "TrialCreated", "TrialSucceeded", NULL};
    if (c->opts.progress_events || strcmp(ev->type, "Normal"))
        return 1;
    for (int i = 0; progress[i]; i++)
        if (!strcmp(ev->reason, progress[i]))
            return 0;
    return 1;
}

/* 1 when the plan only launches trials of a search already under way, or
 * the first trials of a job with none yet. Such a status write records
 * nothing a restarted controller cannot read back from the pods it
 * creates (each names its trial and carries its params), so it is left to
 * the reconcile those pods' own events bring, which records their
 * progress as well: one write fewer per trial, and the pods start a round
 * trip sooner. */
static int launch_only(const cJSON *job, const tj_plan_out *p)
{
    if (!p->status || p->n_creates == 0 || p->n_deletes || p->finalizer != TJ_FINALIZER_KEEP)
        return 0;
    for (int i = 0; i < p->n_events; i++) {
        const char *r = p->events[i].reason;
        if (!strcmp(r, "TrialCreated"))
            continue;
        /* A new search's first write marks where it starts; only a job
         * with no trial yet has nothing to mark it against. */
        if (!strcmp(r, "SearchStarted") &&
            cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(job, "status"), "trials")) == 0)
            continue;
        return 0;
    }
    return 1;
}

/* claim_unconfirmed: the job's models claim is not known to exist. */
static int execute(ctrl *c, const char *key, const cJSON *job, tj_plan_out *p, tj_serve_out *sv,
                   int claim_unconfirmed)
{
    const char *ns = kube_obj_namespace(job);
    int rc = 0;
    if (p->finalizer == TJ_FINALIZER_ADD) {
        /* The rest of the plan waits for the updated job (its status write
         * would meet a conflict now); the watch brings it back. Without
         * the right to patch jobs (an older Role) the job still runs, only
         * without the clean-up on deletion. */
        int http = 0;
        cJSON *patched = NULL;
        rc = patch_finalizers(c, key, job, p->finalizer_patch, &http, &patched);
        if (rc == 0 && patched && kube_obj_resource_version(patched)) {
            /* The rest of the plan goes on with the patched job, whose
             * resourceVersion the status write needs: the trial pod is
             * created now, not after a second trip through the queue. */
            p->finalizer = TJ_FINALIZER_KEEP;
            rc = execute(c, key, patched, p, sv, claim_unconfirmed);
            if (rc == 0 && p->status)
                stale_mark(c, key, kube_obj_resource_version(patched));
            cJSON_Delete(patched);
            return rc;
        }
        cJSON_Delete(patched);
        if (rc == 0 || http != 403) {
            p->requeue_after_ms = 1000;
            return rc;
        }
        rc = 0;
    }
    /* The claims are created off this path (ctrl_claims.h): the trial
     * pod's create does not wait for them. */
    if (p->n_pvcs && claim_unconfirmed)
        rc = ctrl_claims_create(c->claims, key, kube_obj_uid(job), ns,
                                (const cJSON *const *)p->pvcs, p->n_pvcs);
    /* On a failed status write nothing else happens: the next reconcile
     * recomputes the plan from fresh state. */
    if (!rc && p->status && launch_only(job, p)) {
        cJSON_Delete(p->status); /* nothing written: the job's version stays current */
        p->status = NULL;
    }
    int64_t wait = rc ? 0 : tj_plan_first_write_wait(job, p, ktime_now());
    if (wait > 0) {
        cJSON_Delete(p->status); /* written on a later reconcile */
        p->status = NULL;
        if (p->requeue_after_ms <= 0 || wait < p->requeue_after_ms)
            p->requeue_after_ms = wait;
    }
    if (!rc && p->status)
        rc = write_status(c, key, job, p->status);
    for (int i = 0; i < p->n_deletes && !rc; i++)
        rc = delete_pod(c, key, ns, p->deletes[i].name, "cannot delete a pod");
    for (int i = 0; i < p->n_creates && !rc; i++) {
        char msg[KILN_ERRMSG_MAX];
        const char *pod = kube_obj_name(p->creates[i]);
        if (pod && pod_expected(c, ns, pod))
            continue;
        rc = create_obj(c, key, &kube_res_pods, ns, p->creates[i], "cannot create a trial pod", msg,
                        sizeof msg);
        if (rc) {
            kube_event_record(c->events, job, "Warning", "PodCreateFailed", "pod %s: %s", pod, msg);
        } else {
            atomic_fetch_add(&c->pods_created, 1);
            if (pod)
                pod_expect(c, ns, pod);
        }
    }
    if (!rc && sv->create_service)
        rc = create_obj(c, key, &res_services, ns, sv->service, "cannot create the Service", NULL, 0);
    for (int i = 0; i < sv->n_deletes && !rc; i++)
        rc = delete_pod(c, key, ns, sv->deletes[i], "cannot delete a serving pod");
    for (int i = 0; i < sv->n_creates && !rc; i++)
        rc = create_serving_pod(c, key, ns, sv->creates[i]);
    for (int i = 0; i < sv->n_events; i++)
        kube_event_record(c->events, job, sv->events[i].type, sv->events[i].reason, "%s",
                          sv->events[i].message);
    if (rc)
        return rc;
    for (int i = 0; i < p->n_events; i++) {
        if (post_event(c, &p->events[i]))
            kube_event_record(c->events, job, p->events[i].type, p->events[i].reason, "%s",
                              p->events[i].message);
        else
            klog(KLOG_INFO, "job event", KS("job", key), KS("reason", p->events[i].reason),
                 KS("message", p->events[i].message), KEND);
        if (!strcmp(p->events[i].reason, "GoalReached") || !strcmp(p->events[i].reason, "GoalNotReached"))
            announce(c, job, p->status ? p->status : cJSON_GetObjectItemCaseSensitive(job, "status"),
                     p->events[i].reason);
    }
    if (p->finalizer == TJ_FINALIZER_REMOVE) {
        int http = 0;
        return patch_finalizers(c, key, job, p->finalizer_patch, &http, NULL);
    }
    return 0;
}

static size_t collect(char *ptr, size_t size, size_t n, void *ud)
{
    kbuf *b = ud;
    if (b->len + size * n > 65536)
        return 0;
    kbuf_add(b, ptr, size * n);
    return size * n;
}

/* status.serving.ready is true only while the serving pod answers
 * /v1/models/<job> with the checkpoint status.serving names, so readiness
 * means "this model answers", not only "a pod is Ready". */
static int served_checkpoint_answers(const cJSON *job, const cJSON *const *pods, int n,
                                     const cJSON *serving)
{
    const char *pod = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(serving, "pod"));
    const char *want = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(serving, "checkpoint"));
    if (!pod || !want)
        return 0;
    const char *ip = NULL;
    for (int i = 0; i < n && !ip; i++)
        if (!strcmp(kube_obj_name(pods[i]) ? kube_obj_name(pods[i]) : "", pod))
            ip = cJSON_GetStringValue(kube_obj_path(pods[i], "status.podIP"));
    if (!ip)
        return 0;
    double port = cJSON_GetNumberValue(kube_obj_path(job, "spec.serving.port"));
    char url[512];
    snprintf(url, sizeof url, "http://%s:%d/v1/models/%s", ip, port > 0 ? (int)port : 8080,
             kube_obj_name(job));
    CURL *h = curl_easy_init();
    kbuf body = {0};
    long code = 0;
    if (h) {
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 1000L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
        if (curl_easy_perform(h) == CURLE_OK)
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_cleanup(h);
    }
    int ok = 0;
    if (code == 200 && body.p) {
        cJSON *j = cJSON_Parse(body.p);
        const char *got = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "checkpoint"));
        ok = got && !strcmp(got, want);
        cJSON_Delete(j);
    }
    kbuf_release(&body);
    return ok;
}

/* Plans the serving side on the status tj_plan is about to write and
 * merges status.serving and the Serving condition into it, so one status
 * write carries both; no write at all when nothing changed. */
static int plan_serving(ctrl *c, const cJSON *job, const cJSON *const *pods, int n,
                        const tj_env *env, tj_plan_out *plan, tj_serve_out *sv, kiln_error *err)
{
    const cJSON *cur = cJSON_GetObjectItemCaseSensitive(job, "status");
    const cJSON *base = plan->status ? plan->status : cur;
    char key[600];
    snprintf(key, sizeof key, "%s/%s", kube_obj_namespace(job), kube_obj_name(job));
    cJSON *svc = kube_informer_get(c->services, key);
    int rc = tj_serve_plan(job, base, pods, n, svc != NULL, env, sv, err);
    cJSON_Delete(svc);
    if (rc)
        return rc;
    if (sv->n_creates && serving_create_pending(c, job)) {
        for (int i = 0; i < sv->n_creates; i++)
            cJSON_Delete(sv->creates[i]);
        sv->n_creates = 0;
        if (sv->requeue_after_ms <= 0 || sv->requeue_after_ms > 500)
            sv->requeue_after_ms = 500;
    }
    cJSON *st = base ? cJSON_Duplicate(base, 1) : cJSON_CreateObject();
    if (!st)
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(sv->serving, "ready")) &&
        !served_checkpoint_answers(job, pods, n, sv->serving)) {
        cJSON_ReplaceItemInObjectCaseSensitive(sv->serving, "ready", cJSON_CreateFalse());
        if (!strcmp(sv->cond_status, "True")) {
            sv->cond_status = "False";
            sv->cond_reason = "NotAnswering";
            snprintf(sv->cond_message, sizeof sv->cond_message,
                     "the serving pod does not answer /v1/models/%s with its checkpoint yet",
                     kube_obj_name(job));
        }
        if (sv->requeue_after_ms <= 0 || sv->requeue_after_ms > 2000)
            sv->requeue_after_ms = 2000;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(st, "serving");
    cJSON_AddItemToObject(st, "serving", sv->serving);
    sv->serving = NULL;
    const cJSON *old_conds = cJSON_GetObjectItemCaseSensitive(cur, "conditions");
    cJSON *conds = cJSON_CreateArray();
    const cJSON *cnd;
    cJSON_ArrayForEach(cnd, cJSON_GetObjectItemCaseSensitive(st, "conditions"))
    {
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cnd, "type"));
        if (!t || strcmp(t, "Serving"))
            cJSON_AddItemToArray(conds, cJSON_Duplicate(cnd, 1));
    }
    tj_status_condition(conds, old_conds, "Serving", sv->cond_status, sv->cond_reason,
                        sv->cond_message, kube_obj_generation(job), env->now);
    cJSON_DeleteItemFromObjectCaseSensitive(st, "conditions");
    cJSON_AddItemToObject(st, "conditions", conds);
    cJSON_Delete(plan->status);
    if (cur && cJSON_Compare(st, cur, 1)) {
        cJSON_Delete(st);
        plan->status = NULL;
    } else {
        plan->status = st;
    }
    return 0;
}

/* spec.storage.retain may change after the job's own claim was created
 * (owned by the job unless retained): after a spec change, the claim's
 * owner reference is made to agree, before the new generation is recorded
 * as observed, so that deleting the job deletes the claim exactly when it
 * is not retained. One read per spec change; a write only on a change. */
static int sync_claim_owner(ctrl *c, const char *key, const cJSON *job)
{
    const cJSON *seen = kube_obj_path(job, "status.observedGeneration");
    const cJSON *gen = kube_obj_path(job, "metadata.generation");
    if (!cJSON_IsNumber(seen) || !cJSON_IsNumber(gen) || seen->valuedouble == gen->valuedouble ||
        kube_obj_path(job, "metadata.deletionTimestamp"))
        return 0; /* a new job's claim is made from its spec; nothing changed since */
    tj_spec s;
    kiln_error err = {0};
    char name[300];
    if (tj_spec_read(job, c->opts.trainer_image, &s, &err) != 0 || !tj_pod_uses_models_pvc(&s) ||
        tj_pod_models_pvc_name(&s, name, sizeof name) != 0)
        return 0;
    kube_err e;
    kube_err_init(&e);
    cJSON *pvc = NULL;
    int rc = ok_or(kube_get(c->client, &kube_res_pvcs, s.ns, name, &pvc, &e), &e, 404);
    char *patch = NULL;
    if (rc)
        log_api_error("cannot read the models claim", key, &e);
    else if (pvc && tj_pod_claim_owner_patch(&s, pvc, &patch, &err) != 0)
        rc = KILN_ENOMEM;
    if (!rc && patch) {
        kube_err_release(&e);
        rc = kube_patch(c->client, &kube_res_pvcs, s.ns, name, NULL, KUBE_PATCH_MERGE, patch, NULL, &e);
        atomic_fetch_add(&c->writes, 1);
        if (rc)
            log_api_error("cannot update the models claim's owner", key, &e);
        else
            klog(KLOG_INFO,
                 s.storage_retain ? "models claim retained" : "models claim owned by its job",
                 KS("job", key), KS("claim", name), KEND);
    }
    free(patch);
    cJSON_Delete(pvc);
    kube_err_release(&e);
    return rc;
}

static int reconcile(void *ud, const char *key, int64_t *requeue_ms)
{
    ctrl *c = ud;
    atomic_fetch_add(&c->reconciles, 1);
    cJSON *job = kube_informer_get(c->jobs, key);
    if (!job) {
        forget_job(c, key);
        return 0; /* deleted: owner references take its pods away */
    }
    if (stale_skip(c, key, job)) {
        cJSON_Delete(job);
        return 0;
    }
    if (sync_claim_owner(c, key, job) != 0) {
        cJSON_Delete(job);
        atomic_fetch_add(&c->reconcile_errors, 1);
        return KILN_EIO; /* retried with back-off; nothing else runs before it */
    }
    cJSON *pods = NULL;
    const char *uid = kube_obj_uid(job);
    if (kube_informer_by_owner(c->pods, uid ? uid : "", &pods) != 0) {
        cJSON_Delete(job);
        return KILN_ENOMEM;
    }
    int n = cJSON_GetArraySize(pods);
    pods_seen(c, pods);
    const cJSON **arr = calloc((size_t)(n ? n : 1), sizeof *arr);
    int i = 0;
    const cJSON *pod;
    cJSON_ArrayForEach(pod, pods)
    {
        if (arr)
            arr[i++] = pod;
    }
    tj_env env = {
        .now = ktime_now(),
        .trainer_image = c->opts.trainer_image,
        .ns = kube_obj_namespace(job),
        .controller = "kiln-controller",
        .stall_after_s = -1,
        .claim_unconfirmed = !ctrl_claims_known(c->claims, key, kube_obj_uid(job)),
    };
    tj_plan_out plan;
    tj_plan_init(&plan);
    kiln_error err = {0};
    tj_serve_out serve;
    memset(&serve, 0, sizeof serve);
    int rc = arr ? tj_plan(job, (const cJSON *const *)arr, n, &env, &plan, &err) : KILN_ENOMEM;
    /* A job being deleted keeps its serving pods until the garbage
     * collector takes them; its plan is the clean-up's alone. */
    if (rc == 0 && !kube_obj_path(job, "metadata.deletionTimestamp"))
        rc = plan_serving(c, job, (const cJSON *const *)arr, n, &env, &plan, &serve, &err);
    if (rc == 0) {
        rc = execute(c, key, job, &plan, &serve, env.claim_unconfirmed);
        int64_t after = plan.requeue_after_ms;
        if (serve.requeue_after_ms > 0 && (after <= 0 || serve.requeue_after_ms < after))
            after = serve.requeue_after_ms;
        if (rc == 0 && after > 0)
            *requeue_ms = after;
    } else {
        klog(KLOG_ERROR, "cannot plan", KS("job", key), KS("error", err.msg), KEND);
    }
    if (rc)
        atomic_fetch_add(&c->reconcile_errors, 1);
    tj_plan_release(&plan);
    tj_serve_release(&serve);
    free(arr);
    cJSON_Delete(pods);
    cJSON_Delete(job);
    return rc;
}

/* ------------------------------------------------------------ lifecycle */

static void start_workers(ctrl *c)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&c->started_workers, &expected, 1))
        return;
    if (kube_queue_start(c->queue, c->opts.workers > 0 ? c->opts.workers : 2, reconcile, c) != 0) {
        klog(KLOG_ERROR, "cannot start the reconcile workers", KEND);
        return;
    }
    /* Every known job gets one reconcile when this replica starts leading. */
    cJSON *all = NULL;
    if (kube_informer_list(c->jobs, NULL, &all) == 0) {
        const cJSON *j;
        cJSON_ArrayForEach(j, all)
        {
            char *k = kube_obj_key(j);
            if (k)
                kube_queue_add(c->queue, k);
            free(k);
        }
    }
    cJSON_Delete(all);
    klog(KLOG_INFO, "reconciling", KI("workers", c->opts.workers), KEND);
}

static void on_started_leading(void *ud)
{
    ctrl *c = ud;
    atomic_store(&c->leading, 1);
    klog(KLOG_INFO, "became leader", KS("identity", kube_leader_identity(c->leader)), KEND);
    start_workers(c);
}

static void on_stopped_leading(void *ud)
{
    ctrl *c = ud;
    atomic_store(&c->leading, 0);
    /* Losing the Lease stops reconciling at once; the process then exits
     * so a fresh start competes for the Lease again, as controller-runtime
     * does. */
    kube_queue_shutdown(c->queue);
    klog(KLOG_WARN, "stopped leading", KEND);
}

/* Cached pods keep metadata and status only: the reconciler reads a pod's
 * labels, annotations, owner, phase and termination report, never its
 * spec, which is most of a trial pod's size (its args carry the whole
 * trial configuration). */
static void strip_pod(cJSON *pod, void *ud)
{
    kube_informer_strip_server_fields(pod, ud);
    cJSON_DeleteItemFromObjectCaseSensitive(pod, "spec");
}

int ctrl_new(kube_client *client, const ctrl_opts *o, ctrl **out, kiln_error *err)
{
    *out = NULL;
    ctrl *c = calloc(1, sizeof *c);
    if (!c)
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    pthread_mutex_init(&c->mu, NULL);
    if (kube_map_new(free, &c->stale) != 0 ||
        kube_map_new(free, &c->expect) != 0) {
        ctrl_free(c);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    c->client = client;
    c->opts = *o;
    if (!c->opts.lease_name)
        c->opts.lease_name = "kiln-controller";
    kube_queue_opts qo = {0};
    kube_recorder_opts ro = {.component = "kiln-controller"};
    if (kube_queue_new(&qo, &c->queue) != 0 || kube_recorder_new(client, &ro, &c->events) != 0 ||
        ctrl_claims_new(client, c->events, c->queue, CLAIM_THREADS, &c->claims) != 0) {
        ctrl_free(c);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    kube_handlers jh;
    kube_informer_enqueue_handlers(c->queue, &jh);
    kube_informer_opts jo = {.res = res_tj, .ns = o->ns, .websocket = o->websocket_watches,
                             .resync_ms = 10 * 60 * 1000,
                             .transform = kube_informer_strip_server_fields};
    /* Pod changes reach the job a moment late, so that a short trial's
     * Running and Succeeded land in one status write. */
    c->owner_enq =
        (kube_owner_enqueuer){.q = c->queue, .owner_kind = "TrainingJob", .delay_ms = 250};
    kube_handlers ph;
    kube_informer_owner_handlers(&c->owner_enq, &ph);
    kube_informer_opts po = {.res = kube_res_pods, .ns = o->ns, .label_selector = "kiln.dev/job",
                             .websocket = o->websocket_watches, .transform = strip_pod};
    kube_informer_opts so = {.res = res_services, .ns = o->ns, .label_selector = "kiln.dev/job",
                             .websocket = o->websocket_watches,
                             .transform = kube_informer_strip_server_fields};
    if (kube_informer_new(client, &jo, &jh, &c->jobs) != 0 ||
        kube_informer_new(client, &po, &ph, &c->pods) != 0 ||
        kube_informer_new(client, &so, &ph, &c->services) != 0) {
        ctrl_free(c);
        return kiln_fail(err, KILN_ENOMEM, "cannot create informers");
    }
    if (o->leader_elect) {
        kube_leader_opts lo = {.name = c->opts.lease_name, .ns = o->lease_ns ? o->lease_ns : "kiln-system",
                               .on_started = on_started_leading, .on_stopped = on_stopped_leading,
                               .ud = c};
        int rc = kube_leader_new(client, &lo, &c->leader, err);
        if (rc) {
            ctrl_free(c);
            return rc;
        }
    }
    *out = c;
    return 0;
}

int ctrl_start(ctrl *c, kiln_error *err)
{
    if (kube_informer_start(c->jobs) != 0 || kube_informer_start(c->pods) != 0 ||
        kube_informer_start(c->services) != 0)
        return kiln_fail(err, KILN_EINTERNAL, "cannot start informers");
    if (kube_informer_wait_synced(c->jobs, SYNC_TIMEOUT_MS) != 0 ||
        kube_informer_wait_synced(c->pods, SYNC_TIMEOUT_MS) != 0 ||
        kube_informer_wait_synced(c->services, SYNC_TIMEOUT_MS) != 0)
        return kiln_fail(err, KILN_ETIMEOUT,
                         "caches did not sync within %d s: is the TrainingJob CRD installed and "
                         "may this account list trainingjobs and pods?",
                         SYNC_TIMEOUT_MS / 1000);
    atomic_store(&c->ready, 1);
    klog(KLOG_INFO, "caches synced", KI("jobs", (int64_t)kube_informer_len(c->jobs)),
         KI("pods", (int64_t)kube_informer_len(c->pods)), KEND);
    if (c->leader)
        return kube_leader_start(c->leader) == 0 ? 0 : kiln_fail(err, KILN_EINTERNAL, "cannot start leader election");
    atomic_store(&c->leading, 1);
    start_workers(c);
    return 0;
}

void ctrl_stop(ctrl *c)
{
    if (!c)
        return;
    kube_client_cancel(c->client);
    if (c->leader)
        kube_leader_stop(c->leader); /* releases the Lease: a successor takes over at once */
    kube_queue_shutdown(c->queue);
    kube_queue_stop(c->queue);
    ctrl_claims_stop(c->claims);
    kube_informer_stop(c->jobs);
    kube_informer_stop(c->pods);
    kube_informer_stop(c->services);
}

void ctrl_free(ctrl *c)
{
    if (!c)
        return;
    ctrl_claims_free(c->claims); /* before what its threads borrow */
    kube_leader_free(c->leader);
    kube_informer_free(c->jobs);
    kube_informer_free(c->pods);
    kube_informer_free(c->services);
    kube_queue_free(c->queue);
    kube_recorder_free(c->events);
    kube_map_free(c->stale);
    kube_map_free(c->expect);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int ctrl_ready(ctrl *c)
{
    return atomic_load(&c->ready);
}

int ctrl_list_jobs(ctrl *c, cJSON **out)
{
    *out = NULL;
    return kube_informer_list(c->jobs, NULL, out) == 0 && *out ? 0 : KILN_ENOMEM;
}

int ctrl_leading(ctrl *c)
{
    return atomic_load(&c->leading) && !kube_queue_shutting_down(c->queue);
}

/* ------------------------------------------------------------ metrics */

char *ctrl_metrics_text(ctrl *c)
{
    kbuf b = {0};
    kbuf_printf(&b, "# HELP kiln_reconciles_total Reconciles run.\n# TYPE kiln_reconciles_total counter\n"
                  "kiln_reconciles_total %ld\n",
              atomic_load(&c->reconciles));
    kbuf_printf(&b, "# HELP kiln_reconcile_errors_total Reconciles that failed and were retried.\n"
                  "# TYPE kiln_reconcile_errors_total counter\nkiln_reconcile_errors_total %ld\n",
              atomic_load(&c->reconcile_errors));
    kbuf_printf(&b, "# HELP kiln_api_writes_total Writes sent to the API server.\n"
                  "# TYPE kiln_api_writes_total counter\nkiln_api_writes_total %ld\n",
              atomic_load(&c->writes) + ctrl_claims_writes(c->claims));
    kbuf_printf(&b, "# HELP kiln_claim_create_failures_total Models claims whose create failed (retried).\n"
                  "# TYPE kiln_claim_create_failures_total counter\nkiln_claim_create_failures_total %ld\n",
              ctrl_claims_failures(c->claims));
    kbuf_printf(&b, "# HELP kiln_claims_pending Models claims waiting to be created.\n"
                  "# TYPE kiln_claims_pending gauge\nkiln_claims_pending %zu\n",
              ctrl_claims_pending(c->claims));
    kbuf_printf(&b, "# HELP kiln_status_conflicts_total Status writes answered 409 Conflict.\n"
                  "# TYPE kiln_status_conflicts_total counter\nkiln_status_conflicts_total %ld\n",
              atomic_load(&c->conflicts));
    kbuf_printf(&b, "# HELP kiln_trial_pods_created_total Trial pods created.\n"
                  "# TYPE kiln_trial_pods_created_total counter\nkiln_trial_pods_created_total %ld\n",
              atomic_load(&c->pods_created));
    kbuf_printf(&b, "# HELP kiln_pods_deleted_total Trial and serving pods deleted.\n"
                  "# TYPE kiln_pods_deleted_total counter\nkiln_pods_deleted_total %ld\n",
              atomic_load(&c->pods_deleted));
    kbuf_printf(&b, "# HELP kiln_notifications_failed_total Webhooks and e-mails that could not be delivered.\n"
                  "# TYPE kiln_notifications_failed_total counter\nkiln_notifications_failed_total %ld\n",
              atomic_load(&c->notifications_failed));
    kbuf_printf(&b, "# HELP kiln_workqueue_depth Keys waiting in the work queue.\n"
                  "# TYPE kiln_workqueue_depth gauge\nkiln_workqueue_depth %zu\n",
              kube_queue_len(c->queue));
    kbuf_printf(&b, "# HELP kiln_leader 1 while this replica reconciles.\n# TYPE kiln_leader gauge\n"
                  "kiln_leader %d\n",
              ctrl_leading(c));

    /* Where a job's time goes: waiting for a worker, reconciling, and the
     * API requests a reconcile waits for. */
    kube_hist_text_header(&b, "kiln_workqueue_queue_duration_seconds",
                          "How long a job waited in the work queue for a worker.");
    kube_hist_text(kube_queue_wait_hist(c->queue), &b, "kiln_workqueue_queue_duration_seconds", NULL);
    kube_hist_text_header(&b, "kiln_reconcile_duration_seconds", "How long a reconcile took.");
    kube_hist_text(kube_queue_work_hist(c->queue), &b, "kiln_reconcile_duration_seconds", NULL);
    kube_hist_text_header(&b, "kiln_api_request_duration_seconds",
                          "API requests, from the request's start to the reply's end, by verb.");
    for (int v = 0; v < KUBE_VERBS; v++) {
        char verb[32];
        snprintf(verb, sizeof(verb), "verb=\"%s\"", kube_client_verb(v));
        kube_hist_text(kube_client_latency(c->client, v), &b, "kiln_api_request_duration_seconds",
                       verb);
    }

    /* Trials by phase and time to goal, from the cached job statuses. */
    long phases[5] = {0};
    static const char *names[5] = {"Pending", "Running", "Succeeded", "Failed", "Other"};
    cJSON *all = NULL;
    kbuf ttg = {0};
    if (kube_informer_list(c->jobs, NULL, &all) == 0) {
        const cJSON *j;
        cJSON_ArrayForEach(j, all)
        {
            const cJSON *t;
            cJSON_ArrayForEach(t, kube_obj_path(j, "status.trials"))
            {
                const char *ph = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "phase"));
                int k = 4;
                for (int i = 0; i < 4; i++)
                    if (ph && !strcmp(ph, names[i]))
                        k = i;
                phases[k]++;
            }
            const char *st = cJSON_GetStringValue(kube_obj_path(j, "status.startTime"));
            const char *ct = cJSON_GetStringValue(kube_obj_path(j, "status.completionTime"));
            const char *phase = cJSON_GetStringValue(kube_obj_path(j, "status.phase"));
            ktime a, z;
            if (st && ct && phase && !strcmp(phase, "Succeeded") && ktime_parse(st, &a, NULL) == 0 &&
                ktime_parse(ct, &z, NULL) == 0)
                kbuf_printf(&ttg, "kiln_time_to_goal_seconds{namespace=\"%s\",job=\"%s\"} %.3f\n",
                          kube_obj_namespace(j), kube_obj_name(j),
                          (double)ktime_diff_ms(z, a) / 1000.0);
        }
    }
    cJSON_Delete(all);
    kbuf_printf(&b, "# HELP kiln_trials Trials recorded in TrainingJob statuses, by phase.\n"
                  "# TYPE kiln_trials gauge\n");
    for (int i = 0; i < 5; i++)
        kbuf_printf(&b, "kiln_trials{phase=\"%s\"} %ld\n", names[i], phases[i]);
    kbuf_printf(&b, "# HELP kiln_time_to_goal_seconds From a search's start to its goal.\n"
                  "# TYPE kiln_time_to_goal_seconds gauge\n%s",
              ttg.p ? ttg.p : "");
    free(ttg.p);
    return b.p;
}
