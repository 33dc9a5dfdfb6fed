/* kube_leader: Lease-based leader election (client-go semantics). */
#include "kube_leader.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "klog.h"
#include "ktime.h"
#include "kube_api.h"
#include "kube_obj.h"

struct kube_leader {
    kube_client *c;
    kube_leader_opts o;
    char *name, *ns, *id;
    pthread_t th;
    int started;
    atomic_int stopping;
    atomic_int leading;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* observed record (elector thread only) */
    char *observed; /* spec printed, compared as bytes */
    int64_t observed_ms;
    char holder[256];
    unsigned seed;
};

/* Returns 1 when asked to stop. */
static int wait_ms(kube_leader *l, int64_t ms)
{
    int64_t until = ktime_mono_ms() + ms;
    pthread_mutex_lock(&l->mu);
    while (!atomic_load(&l->stopping) && ktime_mono_ms() < until) {
        struct timespec ts = {.tv_sec = until / 1000, .tv_nsec = (until % 1000) * 1000000L};
        pthread_cond_timedwait(&l->cv, &l->mu, &ts);
    }
    pthread_mutex_unlock(&l->mu);
    return atomic_load(&l->stopping);
}

static int now_micro(char *buf, size_t n)
{
    return ktime_format(ktime_now(), 6, buf, n);
}

/* A Lease object for holder with the given times and transitions. */
static cJSON *lease_obj(kube_leader *l, const char *holder, int duration_s, const char *acquire,
                        const char *renew, int transitions, const char *rv)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *m = o ? cJSON_AddObjectToObject(o, "metadata") : NULL;
    cJSON *s = o ? cJSON_AddObjectToObject(o, "spec") : NULL;
    if (!m || !s || !cJSON_AddStringToObject(o, "apiVersion", "coordination.k8s.io/v1") ||
        !cJSON_AddStringToObject(o, "kind", "Lease") ||
        !cJSON_AddStringToObject(m, "name", l->name) ||
        !cJSON_AddStringToObject(m, "namespace", l->ns) ||
        (rv && !cJSON_AddStringToObject(m, "resourceVersion", rv)) ||
        !cJSON_AddStringToObject(s, "holderIdentity", holder) ||
        !cJSON_AddNumberToObject(s, "leaseDurationSeconds", duration_s) ||
        !cJSON_AddStringToObject(s, "acquireTime", acquire) ||
        !cJSON_AddStringToObject(s, "renewTime", renew) ||
        !cJSON_AddNumberToObject(s, "leaseTransitions", transitions)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static void note_holder(kube_leader *l, const char *holder)
{
    if (strcmp(l->holder, holder) != 0) {
        snprintf(l->holder, sizeof l->holder, "%s", holder);
        if (l->o.on_new_leader && holder[0])
            l->o.on_new_leader(l->o.ud, holder);
    }
}

/* One attempt; 1 when we hold the lease afterwards, 0 when not, -1 when
 * another valid holder was seen. */
static int try_acquire_or_renew(kube_leader *l)
{
    kube_err err;
    kube_err_init(&err);
    cJSON *cur = NULL, *next = NULL;
    char now[KTIME_BUFSZ];
    int result = 0;
    now_micro(now, sizeof now);
    int dur_s = (int)((l->o.lease_ms + 999) / 1000);
    int rc = kube_get(l->c, &kube_res_leases, l->ns, l->name, &cur, &err);
    if (rc == KILN_ENOTFOUND) {
        kube_err_release(&err);
        next = lease_obj(l, l->id, dur_s, now, now, 0, NULL);
        if (next && kube_create(l->c, &kube_res_leases, l->ns, next, NULL, &err) == 0) {
            result = 1;
            note_holder(l, l->id);
        }
        goto out;
    }
    if (rc)
        goto out;
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(cur, "spec");
    char *printed = spec ? cJSON_PrintUnformatted(spec) : strdup("");
    if (!printed)
        goto out;
    if (!l->observed || strcmp(l->observed, printed) != 0) {
        free(l->observed);
        l->observed = printed;
        l->observed_ms = ktime_mono_ms();
    } else {
        free(printed);
    }
    const cJSON *h = kube_obj_path(cur, "spec.holderIdentity");
    const char *holder = cJSON_IsString(h) ? h->valuestring : "";
    const cJSON *d = kube_obj_path(cur, "spec.leaseDurationSeconds");
    int64_t their_ms = cJSON_IsNumber(d) ? (int64_t)d->valuedouble * 1000 : l->o.lease_ms;
    note_holder(l, holder);
    int mine = strcmp(holder, l->id) == 0;
    if (holder[0] && !mine && l->observed_ms + their_ms > ktime_mono_ms()) {
        result = -1;
        goto out;
    }
    const cJSON *t = kube_obj_path(cur, "spec.leaseTransitions");
    int transitions = cJSON_IsNumber(t) ? (int)t->valuedouble : 0;
    const cJSON *acq = kube_obj_path(cur, "spec.acquireTime");
    const char *acquire = mine && cJSON_IsString(acq) ? acq->valuestring : now;
    next = lease_obj(l, l->id, dur_s, acquire, now, mine ? transitions : transitions + 1,
                     kube_obj_resource_version(cur));
    if (next && kube_update(l->c, &kube_res_leases, l->ns, next, NULL, &err) == 0) {
        result = 1;
        if (!mine)
            note_holder(l, l->id);
    }
out:
    if (err.e.code && err.e.code != KILN_ECONFLICT && err.e.code != KILN_ECANCELED)
        klog(KLOG_DEBUG, "leader: attempt failed", KS("lease", l->name), KS("error", err.e.msg),
             KEND);
    kube_err_release(&err);
    cJSON_Delete(cur);
    cJSON_Delete(next);
    return result;
}

static void release(kube_leader *l)
{
    kube_err err;
    kube_err_init(&err);
    cJSON *cur = NULL;
    if (kube_get(l->c, &kube_res_leases, l->ns, l->name, &cur, &err) == 0) {
        const cJSON *h = kube_obj_path(cur, "spec.holderIdentity");
        if (cJSON_IsString(h) && strcmp(h->valuestring, l->id) == 0) {
            char now[KTIME_BUFSZ];
            now_micro(now, sizeof now);
            const cJSON *t = kube_obj_path(cur, "spec.leaseTransitions");
            cJSON *next = lease_obj(l, "", 1, now, now, cJSON_IsNumber(t) ? (int)t->valuedouble : 0,
                                    kube_obj_resource_version(cur));
            if (next && kube_update(l->c, &kube_res_leases, l->ns, next, NULL, &err) == 0)
                klog(KLOG_INFO, "leader: lease released", KS("lease", l->name),
                     KS("identity", l->id), KEND);
            cJSON_Delete(next);
        }
    }
    kube_err_release(&err);
    cJSON_Delete(cur);
}

static int64_t jittered(kube_leader *l, int64_t ms)
{
    /* client-go JitterFactor 1.2: wait in [ms, 2.2 ms) while acquiring */
    return ms + (int64_t)(rand_r(&l->seed) % (unsigned)(ms * 12 / 10 + 1));
}

static void stop_leading(kube_leader *l, const char *why)
{
    atomic_store(&l->leading, 0);
    klog(KLOG_WARN, "leader: stopped leading", KS("lease", l->name), KS("identity", l->id),
         KS("why", why), KEND);
    if (l->o.on_stopped)
        l->o.on_stopped(l->o.ud);
}

static void *run(void *arg)
{
    kube_leader *l = arg;
    while (!atomic_load(&l->stopping)) {
        /* candidate */
        if (try_acquire_or_renew(l) != 1) {
            if (wait_ms(l, jittered(l, l->o.retry_ms)))
                break;
            continue;
        }
        atomic_store(&l->leading, 1);
        klog(KLOG_INFO, "leader: started leading", KS("lease", l->name), KS("identity", l->id),
             KEND);
        if (l->o.on_started)
            l->o.on_started(l->o.ud);
        int64_t last_renew = ktime_mono_ms();
        /* leader */
        for (;;) {
            if (wait_ms(l, l->o.retry_ms)) {
                atomic_store(&l->leading, 0);
                if (l->o.on_stopped)
                    l->o.on_stopped(l->o.ud);
                if (!l->o.no_release)
                    release(l);
                return NULL;
            }
            int r = try_acquire_or_renew(l);
            if (r == 1) {
                last_renew = ktime_mono_ms();
            } else if (r == -1) {
                stop_leading(l, "another holder took the lease");
                break;
            } else if (ktime_mono_ms() - last_renew > l->o.renew_deadline_ms) {
                stop_leading(l, "renew deadline passed");
                break;
            }
        }
    }
    return NULL;
}

int kube_leader_new(kube_client *c, const kube_leader_opts *o, kube_leader **out, kiln_error *err)
{
    if (!o->name || !o->name[0] || !o->ns || !o->ns[0])
        return kiln_fail(err, KILN_EINVAL, "leader: lease name and namespace are required");
    kube_leader *l = calloc(1, sizeof *l);
    if (!l)
        return kiln_fail(err, KILN_ENOMEM, "leader: out of memory");
    l->c = c;
    l->o = *o;
    if (l->o.lease_ms <= 0)
        l->o.lease_ms = 15000;
    if (l->o.renew_deadline_ms <= 0)
        l->o.renew_deadline_ms = 10000;
    if (l->o.retry_ms <= 0)
        l->o.retry_ms = 2000;
    if (l->o.renew_deadline_ms >= l->o.lease_ms ||
        l->o.renew_deadline_ms <= l->o.retry_ms * 12 / 10) {
        free(l);
        return kiln_fail(err, KILN_EINVAL,
                         "leader: need lease > renew deadline > 1.2 x retry period");
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cv, &ca);
    pthread_condattr_destroy(&ca);
    unsigned char rnd[6];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        memset(rnd, 0, sizeof rnd);
    l->seed = (unsigned)rnd[0] << 24 | (unsigned)rnd[1] << 16 | (unsigned)ktime_now().nsec;
    char idbuf[512];
    if (o->identity) {
        snprintf(idbuf, sizeof idbuf, "%s", o->identity);
    } else {
        char host[256] = "kiln";
        const char *pod = getenv("POD_NAME");
        if (pod && pod[0])
            snprintf(host, sizeof host, "%s", pod);
        else if (gethostname(host, sizeof host) != 0)
            snprintf(host, sizeof host, "kiln");
        host[sizeof host - 1] = '\0';
        snprintf(idbuf, sizeof idbuf, "%s_%02x%02x%02x%02x%02x%02x", host, rnd[0], rnd[1], rnd[2],
                 rnd[3], rnd[4], rnd[5]);
    }
    l->name = strdup(o->name);
    l->ns = strdup(o->ns);
    l->id = strdup(idbuf);
    if (!l->name || !l->ns || !l->id) {
        kube_leader_free(l);
        return kiln_fail(err, KILN_ENOMEM, "leader: out of memory");
    }
    *out = l;
    return 0;
}

int kube_leader_start(kube_leader *l)
{
    if (l->started)
        return KILN_EINVAL;
    if (pthread_create(&l->th, NULL, run, l))
        return KILN_EINTERNAL;
    pthread_setname_np(l->th, "leader-elect");
    l->started = 1;
    return 0;
}

void kube_leader_stop(kube_leader *l)
{
    atomic_store(&l->stopping, 1);
    pthread_mutex_lock(&l->mu);
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    if (l->started) {
        pthread_join(l->th, NULL);
        l->started = 0;
    }
}

void kube_leader_free(kube_leader *l)
{
    if (!l)
        return;
    kube_leader_stop(l);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(l->observed);
    free(l->name);
    free(l->ns);
    free(l->id);
    free(l);
}

int kube_leader_is_leader(kube_leader *l)
{
    return atomic_load(&l->leading);
}

const char *kube_leader_identity(const kube_leader *l)
{
    return l->id;
}
