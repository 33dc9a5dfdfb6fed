/* ctrl_claims: models claims created off the reconcile's path (see
 * ctrl_claims.h).
 *
 * One mutex guards a FIFO of creates, the map of jobs with a create queued
 * or under way (key -> uid) and the map of jobs whose claims are known
 * (key -> uid). A queued create whose job was forgotten, or replaced by a
 * job of the same name, no longer matches its key's uid in `pending` and
 * is dropped when its turn comes. */
#include "ctrl_claims.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "klog.h"
#include "knice.h"
#include "kube_api.h"
#include "kube_map.h"
#include "kube_obj.h"

typedef struct claim_req {
    struct claim_req *next;
    char *key, *uid, *ns;
    cJSON *pvcs; /* array of the claims to create */
} claim_req;

struct ctrl_claims {
    kube_client *client;
    kube_recorder *events;
    kube_queue *queue;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    claim_req *head, *tail;
    kube_map *pending; /* key -> uid: queued or under way */
    kube_map *known;   /* key -> uid: created or found existing */
    int stopping;
    pthread_t *threads;
    int n_threads;
    atomic_long writes, failures;
};

static void req_free(claim_req *r)
{
    if (!r)
        return;
    free(r->key);
    free(r->uid);
    free(r->ns);
    cJSON_Delete(r->pvcs);
    free(r);
}

/* 1 when the map holds uid under key. */
static int holds(const kube_map *m, const char *key, const char *uid)
{
    const char *have = kube_map_get(m, key);
    return have && !strcmp(have, uid);
}

static void put_uid(kube_map *m, const char *key, const char *uid)
{
    char *v = strdup(uid);
    if (v && kube_map_put(m, key, v) != 0)
        free(v); /* out of memory: the next reconcile only asks again */
}

/* A Warning on the job, which the Event names by kind, name and uid. */
static void warn_job(ctrl_claims *cl, const claim_req *r, const char *claim, const char *msg)
{
    const char *slash = strchr(r->key, '/');
    cJSON *job = cJSON_CreateObject();
    cJSON *md = cJSON_AddObjectToObject(job, "metadata");
    if (md && slash && cJSON_AddStringToObject(job, "apiVersion", "kiln.dev/v1alpha1") &&
        cJSON_AddStringToObject(job, "kind", "TrainingJob") &&
        cJSON_AddStringToObject(md, "name", slash + 1) &&
        cJSON_AddStringToObject(md, "namespace", r->ns) &&
        cJSON_AddStringToObject(md, "uid", r->uid))
        kube_event_record(cl->events, job, "Warning", "ClaimCreateFailed", "claim %s: %s", claim,
                          msg);
    cJSON_Delete(job);
}

/* Creates r's claims in order, stopping at the first failure. */
static int create_all(ctrl_claims *cl, const claim_req *r)
{
    const cJSON *pvc;
    cJSON_ArrayForEach(pvc, r->pvcs)
    {
        kube_err e;
        kube_err_init(&e);
        int rc = kube_create(cl->client, &kube_res_pvcs, r->ns, pvc, NULL, &e);
        atomic_fetch_add(&cl->writes, 1);
        if (rc && e.http == 409)
            rc = 0; /* created before: by this process before a restart, or by the user */
        if (rc) {
            const char *name = kube_obj_name(pvc) ? kube_obj_name(pvc) : "";
            klog(KLOG_WARN, "cannot create the models claim", KS("job", r->key), KS("claim", name),
                 KI("http", e.http), KS("reason", e.status.reason), KS("error", e.e.msg), KEND);
            warn_job(cl, r, name, e.e.msg);
        }
        kube_err_release(&e);
        if (rc)
            return rc;
    }
    return 0;
}

static void *creator_main(void *arg)
{
    ctrl_claims *cl = arg;
    knice_lower_thread(CTRL_CLAIMS_NICE);
    pthread_mutex_lock(&cl->mu);
    for (;;) {
        while (!cl->stopping && !cl->head)
            pthread_cond_wait(&cl->cv, &cl->mu);
        if (cl->stopping)
            break;
        claim_req *r = cl->head;
        cl->head = r->next;
        if (!cl->head)
            cl->tail = NULL;
        if (!holds(cl->pending, r->key, r->uid)) {
            req_free(r); /* forgotten, or a newer job of that name has its own */
            continue;
        }
        pthread_mutex_unlock(&cl->mu);
        int rc = create_all(cl, r);
        pthread_mutex_lock(&cl->mu);
        if (holds(cl->pending, r->key, r->uid)) {
            kube_map_del(cl->pending, r->key);
            if (rc == 0)
                put_uid(cl->known, r->key, r->uid);
        }
        pthread_mutex_unlock(&cl->mu);
        if (rc) {
            atomic_fetch_add(&cl->failures, 1);
            kube_queue_add_rate_limited(cl->queue, r->key); /* asks again, with back-off */
        }
        req_free(r);
        pthread_mutex_lock(&cl->mu);
    }
    pthread_mutex_unlock(&cl->mu);
    return NULL;
}

int ctrl_claims_new(kube_client *client, kube_recorder *events, kube_queue *q, int threads,
                    ctrl_claims **out)
{
    *out = NULL;
    ctrl_claims *cl = calloc(1, sizeof *cl);
    if (!cl)
        return KILN_ENOMEM;
    cl->client = client;
    cl->events = events;
    cl->queue = q;
    pthread_mutex_init(&cl->mu, NULL);
    pthread_cond_init(&cl->cv, NULL);
    if (threads < 1)
        threads = 1;
    cl->threads = calloc((size_t)threads, sizeof *cl->threads);
    if (!cl->threads || kube_map_new(free, &cl->pending) != 0 ||
        kube_map_new(free, &cl->known) != 0) {
        ctrl_claims_free(cl);
        return KILN_ENOMEM;
    }
    for (; cl->n_threads < threads; cl->n_threads++)
        if (pthread_create(&cl->threads[cl->n_threads], NULL, creator_main, cl) != 0)
            break;
        else
            pthread_setname_np(cl->threads[cl->n_threads], "claims");
    if (cl->n_threads == 0) {
        ctrl_claims_free(cl);
        return KILN_ENOMEM;
    }
    *out = cl;
    return 0;
}

void ctrl_claims_stop(ctrl_claims *cl)
{
    if (!cl)
        return;
    pthread_mutex_lock(&cl->mu);
    cl->stopping = 1;
    pthread_cond_broadcast(&cl->cv);
    pthread_mutex_unlock(&cl->mu);
    for (int i = 0; i < cl->n_threads; i++)
        pthread_join(cl->threads[i], NULL);
    cl->n_threads = 0;
}

void ctrl_claims_free(ctrl_claims *cl)
{
    if (!cl)
        return;
    ctrl_claims_stop(cl);
    while (cl->head) {
        claim_req *r = cl->head;
        cl->head = r->next;
        req_free(r);
    }
    kube_map_free(cl->pending);
    kube_map_free(cl->known);
    free(cl->threads);
    pthread_cond_destroy(&cl->cv);
    pthread_mutex_destroy(&cl->mu);
    free(cl);
}

int ctrl_claims_known(ctrl_claims *cl, const char *key, const char *uid)
{
    if (!uid)
        return 0;
    pthread_mutex_lock(&cl->mu);
    int known = holds(cl->known, key, uid);
    pthread_mutex_unlock(&cl->mu);
    return known;
}

void ctrl_claims_forget(ctrl_claims *cl, const char *key)
{
    pthread_mutex_lock(&cl->mu);
    kube_map_del(cl->known, key);
    kube_map_del(cl->pending, key);
    pthread_mutex_unlock(&cl->mu);
}

int ctrl_claims_create(ctrl_claims *cl, const char *key, const char *uid, const char *ns,
                       const cJSON *const *pvcs, int n)
{
    if (!uid || !ns || n <= 0)
        return 0;
    pthread_mutex_lock(&cl->mu);
    int queued = holds(cl->pending, key, uid) || cl->stopping;
    pthread_mutex_unlock(&cl->mu);
    if (queued)
        return 0;
    claim_req *r = calloc(1, sizeof *r);
    int ok = r && (r->key = strdup(key)) && (r->uid = strdup(uid)) && (r->ns = strdup(ns)) &&
             (r->pvcs = cJSON_CreateArray());
    for (int i = 0; ok && i < n; i++) {
        cJSON *copy = cJSON_Duplicate(pvcs[i], 1);
        ok = copy && cJSON_AddItemToArray(r->pvcs, copy);
        if (!ok)
            cJSON_Delete(copy);
    }
    char *v = ok ? strdup(uid) : NULL;
    if (!v) {
        req_free(r);
        return KILN_ENOMEM;
    }
    int rc = 0;
    pthread_mutex_lock(&cl->mu);
    if (holds(cl->pending, key, uid) || cl->stopping) {
        /* queued meanwhile by another worker, or stopping */
    } else if (kube_map_put(cl->pending, key, v) != 0) {
        rc = KILN_ENOMEM;
    } else {
        if (cl->tail)
            cl->tail->next = r;
        else
            cl->head = r;
        cl->tail = r;
        pthread_cond_signal(&cl->cv);
        r = NULL;
        v = NULL;
    }
    pthread_mutex_unlock(&cl->mu);
    free(v);
    req_free(r);
    return rc;
}

long ctrl_claims_writes(ctrl_claims *cl)
{
    return atomic_load(&cl->writes);
}

long ctrl_claims_failures(ctrl_claims *cl)
{
    return atomic_load(&cl->failures);
}

size_t ctrl_claims_pending(ctrl_claims *cl)
{
    pthread_mutex_lock(&cl->mu);
    size_t n = kube_map_len(cl->pending);
    pthread_mutex_unlock(&cl->mu);
    return n;
}
