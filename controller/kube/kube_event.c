/* kube_event: Event creation, count aggregation and rate limiting. */
#include "kube_event.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "klog.h"
#include "ktime.h"
#include "kube_api.h"
#include "kube_map.h"
#include "kube_obj.h"
#include "kube_rate.h"

#define MAX_AGG 4096 /* aggregation entries kept; the map is reset beyond */

typedef struct agg {
    char name[300]; /* Event object name */
    char ns[128];
    int count;
    char first[KTIME_BUFSZ];
} agg;

struct kube_recorder {
    kube_client *c;
    char component[128];
    char host[256];
    double qps;
    int burst;
    pthread_mutex_t mu;
    kube_map *seen;    /* aggregation key -> agg */
    kube_map *buckets; /* involved object -> kube_rate (spam filter per object) */
    kube_recorder_stats st;
};

static void free_rate(void *p)
{
    kube_rate_release(p);
    free(p);
}

/* One token from the involved object's bucket; caller holds r->mu. A bucket
 * that cannot be allocated lets the event through. */
static int take_token(kube_recorder *r, const char *obj_key)
{
    kube_rate *b = kube_map_get(r->buckets, obj_key);
    if (!b) {
        if (kube_map_len(r->buckets) >= MAX_AGG) {
            kube_map *fresh;
            if (kube_map_new(free_rate, &fresh) == 0) {
                kube_map_free(r->buckets);
                r->buckets = fresh;
            }
        }
        b = malloc(sizeof *b);
        if (!b)
            return 1;
        kube_rate_init(b, r->qps, r->burst);
        if (kube_map_put(r->buckets, obj_key, b)) {
            free_rate(b);
            return 1;
        }
    }
    return kube_rate_try(b);
}

int kube_recorder_new(kube_client *c, const kube_recorder_opts *o, kube_recorder **out)
{
    kube_recorder *r = calloc(1, sizeof *r);
    if (!r)
        return KILN_ENOMEM;
    r->c = c;
    snprintf(r->component, sizeof r->component, "%s",
             o && o->component ? o->component : "kiln-controller");
    if (o && o->host)
        snprintf(r->host, sizeof r->host, "%s", o->host);
    else if (gethostname(r->host, sizeof r->host) != 0)
        r->host[0] = '\0';
    r->host[sizeof r->host - 1] = '\0';
    r->qps = o && o->qps > 0 ? o->qps : 1.0 / 300.0;
    r->burst = o && o->burst > 0 ? o->burst : 25;
    pthread_mutex_init(&r->mu, NULL);
    if (kube_map_new(free, &r->seen) || kube_map_new(free_rate, &r->buckets)) {
        kube_map_free(r->seen);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return KILN_ENOMEM;
    }
    *out = r;
    return 0;
}

void kube_recorder_free(kube_recorder *r)
{
    if (!r)
        return;
    kube_map_free(r->seen);
    kube_map_free(r->buckets);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

void kube_recorder_get_stats(kube_recorder *r, kube_recorder_stats *out)
{
    pthread_mutex_lock(&r->mu);
    *out = r->st;
    pthread_mutex_unlock(&r->mu);
}

static void count(kube_recorder *r, long *field)
{
    pthread_mutex_lock(&r->mu);
    (*field)++;
    pthread_mutex_unlock(&r->mu);
}

static cJSON *build_event(kube_recorder *r, const cJSON *inv, const char *ns, const char *name,
                          const char *type, const char *reason, const char *msg, const char *first,
                          const char *now)
{
    cJSON *e = cJSON_CreateObject();
    cJSON *m = e ? cJSON_AddObjectToObject(e, "metadata") : NULL;
    cJSON *io = e ? cJSON_AddObjectToObject(e, "involvedObject") : NULL;
    cJSON *src = e ? cJSON_AddObjectToObject(e, "source") : NULL;
    const cJSON *av = cJSON_GetObjectItemCaseSensitive(inv, "apiVersion");
    const char *kind = kube_obj_kind(inv), *uid = kube_obj_uid(inv),
               *rv = kube_obj_resource_version(inv), *iname = kube_obj_name(inv);
    int bad =
        !m || !io || !src || !cJSON_AddStringToObject(e, "apiVersion", "v1") ||
        !cJSON_AddStringToObject(e, "kind", "Event") || !cJSON_AddStringToObject(m, "name", name) ||
        (ns[0] && !cJSON_AddStringToObject(m, "namespace", ns)) ||
        (cJSON_IsString(av) && !cJSON_AddStringToObject(io, "apiVersion", av->valuestring)) ||
        (kind && !cJSON_AddStringToObject(io, "kind", kind)) ||
        (iname && !cJSON_AddStringToObject(io, "name", iname)) ||
        (ns[0] && !cJSON_AddStringToObject(io, "namespace", ns)) ||
        (uid && !cJSON_AddStringToObject(io, "uid", uid)) ||
        (rv && !cJSON_AddStringToObject(io, "resourceVersion", rv)) ||
        !cJSON_AddStringToObject(e, "reason", reason) ||
        !cJSON_AddStringToObject(e, "message", msg) || !cJSON_AddStringToObject(e, "type", type) ||
        !cJSON_AddStringToObject(src, "component", r->component) ||
        (r->host[0] && !cJSON_AddStringToObject(src, "host", r->host)) ||
        !cJSON_AddStringToObject(e, "firstTimestamp", first) ||
        !cJSON_AddStringToObject(e, "lastTimestamp", now) ||
        !cJSON_AddNumberToObject(e, "count", 1) ||
        !cJSON_AddStringToObject(e, "reportingComponent", r->component) ||
        !cJSON_AddStringToObject(e, "reportingInstance", r->host);
    if (bad) {
        cJSON_Delete(e);
        return NULL;
    }
    return e;
}

int kube_event_record(kube_recorder *r, const cJSON *inv, const char *type, const char *reason,
                      const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *iname = kube_obj_name(inv);
    const char *ins = kube_obj_namespace(inv);
    if (!iname)
        return KILN_EINVAL;
    char ns[128];
    /* events about cluster-scoped objects go to "default", as client-go does */
    snprintf(ns, sizeof ns, "%s", ins && ins[0] ? ins : "default");
    const char *uid = kube_obj_uid(inv);
    const char *kind = kube_obj_kind(inv);
    size_t kl = strlen(iname) + strlen(msg) + strlen(reason) + strlen(type) + strlen(ns) +
                (uid ? strlen(uid) : 0) + (kind ? strlen(kind) : 0) + 16;
    char *akey = malloc(kl);
    if (!akey)
        return KILN_ENOMEM;
    snprintf(akey, kl, "%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s", ns, kind ? kind : "", iname,
             uid ? uid : "", type, reason, msg);
    /* the object part of the aggregation key names the bucket */
    size_t obj_len = 0;
    for (int fields = 0; akey[obj_len] && fields < 4; obj_len++)
        if (akey[obj_len] == '\x1f')
            fields++;
    char saved = akey[obj_len];
    akey[obj_len] = '\0';
    pthread_mutex_lock(&r->mu);
    int allowed = take_token(r, akey);
    if (!allowed)
        r->st.dropped++;
    pthread_mutex_unlock(&r->mu);
    akey[obj_len] = saved;
    if (!allowed) {
        free(akey);
        return 0;
    }
    char now[KTIME_BUFSZ];
    ktime_format(ktime_now(), 0, now, sizeof now);
    kube_err err;
    kube_err_init(&err);
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    agg *a = kube_map_get(r->seen, akey);
    agg cur = a ? *a : (agg){0};
    pthread_mutex_unlock(&r->mu);
    if (a) {
        char patch[256];
        snprintf(patch, sizeof patch, "{\"count\":%d,\"lastTimestamp\":\"%s\"}", cur.count + 1,
                 now);
        rc = kube_patch(r->c, &kube_res_events, cur.ns, cur.name, NULL, KUBE_PATCH_MERGE, patch,
                        NULL, &err);
        if (rc == 0) {
            pthread_mutex_lock(&r->mu);
            a = kube_map_get(r->seen, akey);
            if (a)
                a->count = cur.count + 1;
            r->st.aggregated++;
            pthread_mutex_unlock(&r->mu);
            goto out;
        }
        if (rc != KILN_ENOTFOUND)
            goto fail;
        kube_err_release(&err); /* deleted meanwhile: create a new one */
    }
    {
        unsigned char rnd[8];
        if (RAND_bytes(rnd, sizeof rnd) != 1)
            memset(rnd, 0, sizeof rnd);
        agg n = {.count = 1};
        snprintf(n.ns, sizeof n.ns, "%s", ns);
        ktime t = ktime_now();
        /* client-go names events <object>.<unix nanos in hex>; add randomness */
        snprintf(n.name, sizeof n.name, "%.200s.%llx%02x%02x", iname,
                 (unsigned long long)t.sec * 1000000000ULL + (unsigned long long)t.nsec, rnd[0],
                 rnd[1]);
        snprintf(n.first, sizeof n.first, "%s", now);
        cJSON *ev = build_event(r, inv, ns, n.name, type, reason, msg, now, now);
        if (!ev) {
            rc = KILN_ENOMEM;
            goto fail;
        }
        rc = kube_create(r->c, &kube_res_events, ns, ev, NULL, &err);
        cJSON_Delete(ev);
        if (rc)
            goto fail;
        agg *keep = malloc(sizeof *keep);
        pthread_mutex_lock(&r->mu);
        if (kube_map_len(r->seen) >= MAX_AGG) {
            /* bounded memory: forget old aggregation state wholesale */
            kube_map *fresh;
            if (kube_map_new(free, &fresh) == 0) {
                kube_map_free(r->seen);
                r->seen = fresh;
            }
        }
        if (keep) {
            *keep = n;
            if (kube_map_put(r->seen, akey, keep))
                free(keep);
        }
        r->st.created++;
        pthread_mutex_unlock(&r->mu);
    }
out:
    kube_err_release(&err);
    free(akey);
    return 0;
fail:
    klog(KLOG_WARN, "event: could not record", KS("reason", reason), KS("object", iname),
         KS("error", err.e.msg), KEND);
    count(r, &r->st.failed);
    kube_err_release(&err);
    free(akey);
    return rc;
}
