/* kube_informer: reflector loop, relist diffing, indexed cache, resync. */
#include "kube_informer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "klog.h"
#include "ktime.h"
#include "kube_map.h"
#include "kube_obj.h"
#include "kube_watch.h"

/* ---- types ---- */

struct kube_informer {
    kube_client *c;
    kube_informer_opts o;
    char *ns, *lsel, *fsel;
    kube_handlers h;
    kube_stream *stream;
    pthread_t th, resync_th;
    int started, resync_started;
    atomic_int stopping;
    pthread_mutex_t mu; /* cache, indexes, last_rv, synced, stats */
    pthread_cond_t cv;  /* synced / stop wake-ups */
    kube_map *cache;    /* key -> centry* (owned) */
    kube_map *by_ns;    /* ns -> kube_map of keys */
    kube_map *by_owner; /* owner uid -> kube_map of keys */
    char last_rv[128];
    int synced;
    kube_informer_stats st;
    /* set by the event callback during a watch */
    int want_relist;
    unsigned seed;
};

/* A cached object, kept as compact JSON text rather than a cJSON tree:
 * a tree costs several times the text's size (a node, a key and a value
 * allocation per field), and a controller with a thousand jobs and their
 * pods would spend most of its memory on them. Readers parse a copy, as
 * they received a copy before.
 *
 * Entries are printed before mu is taken and parsed after it is released,
 * and carry the keys of the indexes they are in, so that nothing under mu
 * costs more than a copy. With every worker runnable at once on a small
 * machine, a thread preempted while it holds mu keeps all the others
 * waiting for its next time slice; the shorter the section, the rarer
 * that is. */
typedef struct centry {
    char *rv;     /* metadata.resourceVersion ("" if none) */
    char *json;   /* the object */
    char *ns;     /* metadata.namespace ("" if none): its by_ns key */
    char *owners; /* its owners' uids, each NUL-terminated, then "": by_owner keys */
} centry;

typedef struct pending {
    int type;        /* KUBE_EV_ADDED / MODIFIED / DELETED */
    centry *old_ent; /* owned: the entry replaced, parsed into old_obj after mu */
    cJSON *old_obj;  /* owned (freed after dispatch) */
    cJSON *new_obj;  /* owned: the object now cached */
    cJSON *del_obj;  /* owned: the delete event's object */
} pending;

/* ---- helpers ---- */

static void free_entry(void *p)
{
    centry *e = p;
    if (!e)
        return;
    free(e->rv);
    free(e->json);
    free(e->ns);
    free(e->owners);
    free(e);
}

/* The uids of obj's owner references as "uid\0uid\0\0". */
static char *owner_uids(const cJSON *obj)
{
    const cJSON *refs = kube_obj_path(obj, "metadata.ownerReferences");
    if (!cJSON_IsArray(refs))
        refs = NULL;
    const cJSON *r;
    size_t len = 1;
    cJSON_ArrayForEach(r, refs)
    {
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(r, "uid");
        if (cJSON_IsString(u))
            len += strlen(u->valuestring) + 1;
    }
    char *out = malloc(len), *p = out;
    if (!out)
        return NULL;
    cJSON_ArrayForEach(r, refs)
    {
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(r, "uid");
        if (cJSON_IsString(u)) {
            size_t n = strlen(u->valuestring) + 1;
            memcpy(p, u->valuestring, n);
            p += n;
        }
    }
    *p = 0;
    return out;
}

static centry *entry_new(const cJSON *obj)
{
    centry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    const char *rv = kube_obj_resource_version(obj);
    const char *ns = kube_obj_namespace(obj);
    e->rv = strdup(rv ? rv : "");
    e->ns = strdup(ns ? ns : "");
    e->owners = owner_uids(obj);
    e->json = cJSON_PrintUnformatted(obj);
    if (!e->rv || !e->ns || !e->owners || !e->json) {
        free_entry(e);
        return NULL;
    }
    return e;
}

static cJSON *entry_obj(const centry *e)
{
    return e ? cJSON_Parse(e->json) : NULL;
}

static void free_set(void *p)
{
    kube_map_free(p);
}

static int cond_wait_ms(kube_informer *inf, int64_t ms)
{
    int64_t until = ktime_mono_ms() + ms;
    pthread_mutex_lock(&inf->mu);
    while (!atomic_load(&inf->stopping) && ktime_mono_ms() < until) {
        struct timespec ts = {.tv_sec = until / 1000, .tv_nsec = (until % 1000) * 1000000L};
        pthread_cond_timedwait(&inf->cv, &inf->mu, &ts);
    }
    pthread_mutex_unlock(&inf->mu);
    return atomic_load(&inf->stopping);
}

/* index maintenance; caller holds mu. Failures only make an index miss a
 * key, never corrupt it. */
static void index_add(kube_map *idx, const char *ik, const char *key)
{
    if (!ik || !ik[0])
        return;
    kube_map *set = kube_map_get(idx, ik);
    if (!set) {
        if (kube_map_new(NULL, &set))
            return;
        if (kube_map_put(idx, ik, set)) {
            kube_map_free(set);
            return;
        }
    }
    kube_map_put(set, key, (void *)1);
}

static void index_del(kube_map *idx, const char *ik, const char *key)
{
    if (!ik || !ik[0])
        return;
    kube_map *set = kube_map_get(idx, ik);
    if (!set)
        return;
    kube_map_del(set, key);
    if (kube_map_len(set) == 0)
        kube_map_del(idx, ik);
}

/* Adds the entry's key to the indexes, or removes it (caller holds mu). */
static void index_entry(kube_informer *inf, const char *key, const centry *e, int add)
{
    if (add)
        index_add(inf->by_ns, e->ns, key);
    else
        index_del(inf->by_ns, e->ns, key);
    for (const char *u = e->owners; *u; u += strlen(u) + 1) {
        if (add)
            index_add(inf->by_owner, u, key);
        else
            index_del(inf->by_owner, u, key);
    }
}

/* Takes the entry out of cache and indexes (caller holds mu and owns the
 * entry returned, NULL if none was cached). */
static centry *cache_take(kube_informer *inf, const char *key)
{
    centry *e = kube_map_take(inf->cache, key);
    if (e)
        index_entry(inf, key, e, 0);
    return e;
}

/* Caches the entry, which it takes on success (caller holds mu). */
static int cache_put(kube_informer *inf, const char *key, centry *e)
{
    if (kube_map_put(inf->cache, key, e))
        return KILN_ENOMEM;
    index_entry(inf, key, e, 1);
    return 0;
}

/* Replaces key's entry with e (caller holds mu). Returns the entry
 * replaced (owned by the caller) in *old; on failure the old entry stays
 * cached and the caller still owns e. */
static int cache_replace(kube_informer *inf, const char *key, centry *e, centry **old)
{
    *old = cache_take(inf, key);
    if (cache_put(inf, key, e) == 0)
        return 0;
    if (*old && cache_put(inf, key, *old) == 0)
        *old = NULL;
    else if (*old)
        klog(KLOG_WARN, "informer: out of memory, object dropped from the cache", KS("key", key),
             KEND);
    free_entry(*old);
    *old = NULL;
    return KILN_ENOMEM;
}

static int same_rv(const centry *a, const cJSON *b)
{
    const char *rb = kube_obj_resource_version(b);
    return a && a->rv[0] && rb && strcmp(a->rv, rb) == 0;
}

static void set_last_rv(kube_informer *inf, const char *rv)
{
    if (rv && rv[0])
        snprintf(inf->last_rv, sizeof inf->last_rv, "%s", rv);
}

/* Runs the handlers (mu not held); parses the replaced entries first. */
static void dispatch(kube_informer *inf, pending *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i].old_ent) {
            /* a delete with its own object never needs the cached one */
            if (!p[i].del_obj)
                p[i].old_obj = entry_obj(p[i].old_ent);
            free_entry(p[i].old_ent);
            p[i].old_ent = NULL;
        }
        switch (p[i].type) {
        case KUBE_EV_ADDED:
            if (inf->h.on_add)
                inf->h.on_add(inf->h.ud, p[i].new_obj);
            break;
        case KUBE_EV_MODIFIED:
            if (inf->h.on_update)
                inf->h.on_update(inf->h.ud, p[i].old_obj, p[i].new_obj);
            break;
        case KUBE_EV_DELETED:
            if (inf->h.on_delete)
                inf->h.on_delete(inf->h.ud, p[i].del_obj ? p[i].del_obj : p[i].old_obj);
            break;
        }
        cJSON_Delete(p[i].old_obj);
        cJSON_Delete(p[i].new_obj);
        cJSON_Delete(p[i].del_obj);
    }
}

void kube_informer_strip_server_fields(cJSON *obj, void *ud)
{
    (void)ud;
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "managedFields");
    cJSON *ann = cJSON_GetObjectItemCaseSensitive(meta, "annotations");
    cJSON_DeleteItemFromObjectCaseSensitive(ann,
                                            "kubectl.kubernetes.io/last-applied-configuration");
    if (ann && !ann->child)
        cJSON_DeleteItemFromObjectCaseSensitive(meta, "annotations");
}

static void transform(kube_informer *inf, cJSON *obj)
{
    if (inf->o.transform && obj)
        inf->o.transform(obj, inf->o.transform_ud);
}

/* ---- watch events ---- */

#define RC_STOP_STREAM 1 /* returned by on_event to end the stream on purpose */

static int on_event(void *ud, int type, cJSON *obj)
{
    kube_informer *inf = ud;
    if (type == KUBE_EV_ERROR) {
        kstatus st;
        kstatus_init(&st);
        kstatus_from_json(&st, obj, NULL);
        klog(KLOG_INFO, "informer: watch error event", KS("resource", inf->o.res.resource),
             KI("code", st.code), KS("reason", st.reason ? st.reason : ""), KEND);
        pthread_mutex_lock(&inf->mu);
        if (st.code == 410)
            inf->st.expired++;
        inf->want_relist = 1;
        pthread_mutex_unlock(&inf->mu);
        kstatus_release(&st);
        cJSON_Delete(obj);
        return RC_STOP_STREAM;
    }
    /* transformed and printed outside the lock: it may be a large object */
    centry *ne = NULL;
    if (type != KUBE_EV_BOOKMARK)
        transform(inf, obj);
    if (type != KUBE_EV_DELETED && type != KUBE_EV_BOOKMARK) {
        if (!(ne = entry_new(obj))) {
            cJSON_Delete(obj);
            return KILN_ENOMEM; /* not recorded: watched again */
        }
    }
    pthread_mutex_lock(&inf->mu);
    /* copied now: obj may be freed below; recorded only once applied, so
     * a failed event is watched again instead of skipped */
    char rv[128];
    snprintf(rv, sizeof rv, "%s",
             kube_obj_resource_version(obj) ? kube_obj_resource_version(obj) : "");
    if (type == KUBE_EV_BOOKMARK) {
        set_last_rv(inf, rv);
        inf->st.bookmarks++;
        pthread_mutex_unlock(&inf->mu);
        cJSON_Delete(obj);
        return 0;
    }
    char *key = kube_obj_key(obj);
    if (!key) {
        int named = kube_obj_name(obj) != NULL; /* named: out of memory */
        if (!named)
            set_last_rv(inf, rv); /* nameless: cannot be cached, skip it */
        pthread_mutex_unlock(&inf->mu);
        free_entry(ne);
        cJSON_Delete(obj);
        return named ? KILN_ENOMEM : 0;
    }
    pending p = {0};
    int n = 0;
    if (type == KUBE_EV_DELETED) {
        centry *old = cache_take(inf, key);
        if (old) { /* not cached: a relist already reported it */
            p = (pending){.type = KUBE_EV_DELETED, .old_ent = old, .del_obj = obj};
            n = 1;
        } else {
            cJSON_Delete(obj);
        }
    } else if (same_rv(kube_map_get(inf->cache, key), obj)) {
        free_entry(ne); /* already seen (replayed event) */
        cJSON_Delete(obj);
    } else {
        centry *old;
        if (cache_replace(inf, key, ne, &old)) {
            pthread_mutex_unlock(&inf->mu);
            free_entry(ne);
            cJSON_Delete(obj);
            free(key);
            return KILN_ENOMEM;
        }
        p = (pending){.type = old ? KUBE_EV_MODIFIED : KUBE_EV_ADDED, .old_ent = old, .new_obj = obj};
        n = 1;
    }
    if (n)
        inf->st.events++;
    set_last_rv(inf, rv);
    pthread_mutex_unlock(&inf->mu);
    free(key);
    dispatch(inf, &p, (size_t)n);
    return 0;
}

/* ---- list and diff ---- */

typedef struct gone_scan {
    kube_map *seen;
    char **keys;
    size_t n, cap;
    int oom;
} gone_scan;

static int collect_gone(const char *key, void *val, void *ud)
{
    (void)val;
    gone_scan *g = ud;
    if (kube_map_get(g->seen, key))
        return 0;
    if (g->n == g->cap) {
        size_t nc = g->cap ? g->cap * 2 : 16;
        char **nk = realloc(g->keys, nc * sizeof *nk);
        if (!nk) {
            g->oom = 1;
            return 1;
        }
        g->keys = nk;
        g->cap = nc;
    }
    if (!(g->keys[g->n] = strdup(key))) {
        g->oom = 1;
        return 1;
    }
    g->n++;
    return 0;
}

/* A listed object with its key and cache entry. */
typedef struct listed {
    char *key;
    centry *e;
    cJSON *obj;
} listed;

static int do_list(kube_informer *inf)
{
    kube_err err;
    kube_err_init(&err);
    kube_list_opts lo = {.label_selector = inf->lsel, .field_selector = inf->fsel};
    cJSON *items = NULL;
    char *rv = NULL;
    int rc = kube_list(inf->c, &inf->o.res, inf->ns, &lo, &items, &rv, &err);
    if (rc) {
        if (rc != KILN_ECANCELED)
            klog(KLOG_WARN, "informer: list failed", KS("resource", inf->o.res.resource),
                 KS("error", err.e.msg), KEND);
        kube_err_release(&err);
        return rc;
    }
    kube_err_release(&err);
    int n_items = cJSON_GetArraySize(items);
    pending *p = calloc((size_t)n_items + 1, sizeof *p);
    listed *l = calloc((size_t)n_items + 1, sizeof *l);
    kube_map *seen = NULL;
    if (!p || !l || kube_map_new(NULL, &seen)) {
        free(p);
        free(l);
        cJSON_Delete(items);
        free(rv);
        return KILN_ENOMEM;
    }
    /* keys and entries made before the lock (see centry) */
    size_t nl = 0;
    while (items->child) {
        cJSON *obj = cJSON_DetachItemViaPointer(items, items->child);
        transform(inf, obj);
        char *key = kube_obj_key(obj);
        centry *e = key ? entry_new(obj) : NULL;
        if (!e || kube_map_put(seen, key, (void *)1)) {
            free(key);
            free_entry(e);
            cJSON_Delete(obj);
            continue;
        }
        l[nl++] = (listed){.key = key, .e = e, .obj = obj};
    }
    size_t np = 0;
    pthread_mutex_lock(&inf->mu);
    for (size_t i = 0; i < nl; i++) {
        centry *old;
        if (same_rv(kube_map_get(inf->cache, l[i].key), l[i].obj) ||
            cache_replace(inf, l[i].key, l[i].e, &old)) {
            free_entry(l[i].e);
            cJSON_Delete(l[i].obj);
        } else {
            p[np++] = (pending){.type = old ? KUBE_EV_MODIFIED : KUBE_EV_ADDED,
                                .old_ent = old,
                                .new_obj = l[i].obj};
        }
    }
    /* objects gone while we were not watching: synthetic deletes */
    gone_scan g = {.seen = seen};
    kube_map_foreach(inf->cache, collect_gone, &g);
    pending *pd = g.n ? calloc(g.n, sizeof *pd) : NULL;
    size_t nd = 0;
    for (size_t i = 0; i < g.n; i++) {
        centry *old = cache_take(inf, g.keys[i]);
        if (old && pd)
            pd[nd++] = (pending){.type = KUBE_EV_DELETED, .old_ent = old};
        else
            free_entry(old);
        free(g.keys[i]);
    }
    free(g.keys);
    set_last_rv(inf, rv);
    inf->st.lists++;
    inf->st.events += (long)(np + nd);
    pthread_mutex_unlock(&inf->mu);
    dispatch(inf, p, np);
    dispatch(inf, pd, nd);
    /* synced means the handlers have seen the first list, as in client-go */
    pthread_mutex_lock(&inf->mu);
    inf->synced = 1;
    pthread_cond_broadcast(&inf->cv);
    pthread_mutex_unlock(&inf->mu);
    free(pd);
    free(p);
    for (size_t i = 0; i < nl; i++)
        free(l[i].key);
    free(l);
    kube_map_free(seen);
    cJSON_Delete(items);
    free(rv);
    return 0;
}

/* ---- threads ---- */

static int64_t backoff(kube_informer *inf, int failures)
{
    int64_t ms = inf->o.backoff_base_ms;
    for (int i = 0; i < failures && ms < inf->o.backoff_max_ms; i++)
        ms *= 2;
    if (ms > inf->o.backoff_max_ms)
        ms = inf->o.backoff_max_ms;
    return ms + (int64_t)(rand_r(&inf->seed) % (unsigned)(ms + 1)); /* jitter 1.0 */
}

static void *run(void *arg)
{
    kube_informer *inf = arg;
    int need_list = 1, failures = 0;
    while (!atomic_load(&inf->stopping) && !kube_client_cancelled(inf->c)) {
        if (need_list) {
            int rc = do_list(inf);
            if (rc) {
                if (rc == KILN_ECANCELED || cond_wait_ms(inf, backoff(inf, failures++)))
                    break;
                continue;
            }
            need_list = 0;
            failures = 0;
        }
        char rv[128];
        pthread_mutex_lock(&inf->mu);
        snprintf(rv, sizeof rv, "%s", inf->last_rv);
        inf->want_relist = 0;
        inf->st.watches++;
        pthread_mutex_unlock(&inf->mu);
        kube_watch_opts wo = {
            .resource_version = rv,
            .label_selector = inf->lsel,
            .field_selector = inf->fsel,
            .bookmarks = 1,
            .timeout_seconds = inf->o.watch_timeout_s > 0 ? inf->o.watch_timeout_s
                                                          : 300 + (int)(rand_r(&inf->seed) % 300),
            .websocket = inf->o.websocket,
        };
        kube_err err;
        kube_err_init(&err);
        int rc =
            kube_watch_run(inf->c, inf->stream, &inf->o.res, inf->ns, &wo, on_event, inf, &err);
        int http = err.status.code;
        if (rc && rc != RC_STOP_STREAM && rc != KILN_ECANCELED)
            klog(KLOG_INFO, "informer: watch ended", KS("resource", inf->o.res.resource),
                 KS("error", err.e.msg), KEND);
        kube_err_release(&err);
        if (atomic_load(&inf->stopping) || rc == KILN_ECANCELED)
            break;
        pthread_mutex_lock(&inf->mu);
        int relist = inf->want_relist;
        if (http == 410)
            inf->st.expired++;
        pthread_mutex_unlock(&inf->mu);
        if (relist || http == 410) {
            need_list = 1; /* 410 Expired: relist at once */
            continue;
        }
        if (rc == 0) {
            failures = 0; /* a clean end: watch again from the last version */
            continue;
        }
        if (cond_wait_ms(inf, backoff(inf, failures++)))
            break;
    }
    return NULL;
}

/* Copies of cached texts taken under the lock, parsed after it. */
typedef struct snap {
    char **texts;
    size_t n, cap;
    const kube_map *cache; /* for snap_key */
} snap;

static int snap_text(snap *s, const centry *e)
{
    if (!e)
        return 0;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 32;
        char **nt = realloc(s->texts, nc * sizeof *nt);
        if (!nt)
            return 1;
        s->texts = nt;
        s->cap = nc;
    }
    if (!(s->texts[s->n] = strdup(e->json)))
        return 1;
    s->n++;
    return 0;
}

static int snap_add(const char *key, void *val, void *ud)
{
    (void)key;
    return snap_text(ud, val);
}

/* For an index set: the cached object of each key in it. */
static int snap_key(const char *key, void *val, void *ud)
{
    (void)val;
    snap *s = ud;
    return snap_text(s, kube_map_get(s->cache, key));
}

static void snap_release(snap *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->texts[i]);
    free(s->texts);
    memset(s, 0, sizeof *s);
}

static void *resync_main(void *arg)
{
    kube_informer *inf = arg;
    while (!cond_wait_ms(inf, inf->o.resync_ms)) {
        snap s = {0};
        pthread_mutex_lock(&inf->mu);
        kube_map_foreach(inf->cache, snap_add, &s);
        pthread_mutex_unlock(&inf->mu);
        for (size_t i = 0; i < s.n; i++) {
            cJSON *o = cJSON_Parse(s.texts[i]);
            if (o && inf->h.on_update && !atomic_load(&inf->stopping))
                inf->h.on_update(inf->h.ud, o, o);
            cJSON_Delete(o);
        }
        snap_release(&s);
    }
    return NULL;
}

/* ---- API ---- */

int kube_informer_new(kube_client *c, const kube_informer_opts *o, const kube_handlers *h,
                      kube_informer **out)
{
    kube_informer *inf = calloc(1, sizeof *inf);
    if (!inf)
        return KILN_ENOMEM;
    inf->c = c;
    inf->o = *o;
    if (h)
        inf->h = *h;
    if (inf->o.backoff_base_ms <= 0)
        inf->o.backoff_base_ms = 800;
    if (inf->o.backoff_max_ms <= 0)
        inf->o.backoff_max_ms = 30000;
    inf->seed = (unsigned)ktime_now().nsec;
    pthread_mutex_init(&inf->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&inf->cv, &ca);
    pthread_condattr_destroy(&ca);
    if ((o->ns && !(inf->ns = strdup(o->ns))) ||
        (o->label_selector && !(inf->lsel = strdup(o->label_selector))) ||
        (o->field_selector && !(inf->fsel = strdup(o->field_selector))) ||
        kube_map_new(free_entry, &inf->cache) || kube_map_new(free_set, &inf->by_ns) ||
        kube_map_new(free_set, &inf->by_owner) || kube_stream_new(&inf->stream)) {
        kube_informer_free(inf);
        return KILN_ENOMEM;
    }
    *out = inf;
    return 0;
}

int kube_informer_start(kube_informer *inf)
{
    if (inf->started)
        return KILN_EINVAL;
    if (pthread_create(&inf->th, NULL, run, inf))
        return KILN_EINTERNAL;
    /* Named for top -H and perf: "watch:<resource>", cut to 15 bytes. */
    char name[16];
    snprintf(name, sizeof name, "watch:%s", inf->o.res.resource);
    pthread_setname_np(inf->th, name);
    inf->started = 1;
    if (inf->o.resync_ms > 0) {
        if (pthread_create(&inf->resync_th, NULL, resync_main, inf) == 0) {
            inf->resync_started = 1;
            snprintf(name, sizeof name, "resync:%s", inf->o.res.resource);
            pthread_setname_np(inf->resync_th, name);
        }
    }
    return 0;
}

int kube_informer_synced(kube_informer *inf)
{
    pthread_mutex_lock(&inf->mu);
    int s = inf->synced;
    pthread_mutex_unlock(&inf->mu);
    return s;
}

int kube_informer_wait_synced(kube_informer *inf, int64_t timeout_ms)
{
    int64_t until = ktime_mono_ms() + timeout_ms;
    pthread_mutex_lock(&inf->mu);
    while (!inf->synced && !atomic_load(&inf->stopping) && ktime_mono_ms() < until) {
        struct timespec ts = {.tv_sec = until / 1000, .tv_nsec = (until % 1000) * 1000000L};
        pthread_cond_timedwait(&inf->cv, &inf->mu, &ts);
    }
    int s = inf->synced;
    pthread_mutex_unlock(&inf->mu);
    return s ? 0 : KILN_ETIMEOUT;
}

void kube_informer_stop(kube_informer *inf)
{
    atomic_store(&inf->stopping, 1);
    pthread_mutex_lock(&inf->mu);
    pthread_cond_broadcast(&inf->cv);
    pthread_mutex_unlock(&inf->mu);
    if (inf->stream)
        kube_stream_cancel(inf->stream);
    if (inf->started) {
        pthread_join(inf->th, NULL);
        inf->started = 0;
    }
    if (inf->resync_started) {
        pthread_join(inf->resync_th, NULL);
        inf->resync_started = 0;
    }
}

void kube_informer_free(kube_informer *inf)
{
    if (!inf)
        return;
    kube_informer_stop(inf);
    kube_stream_free(inf->stream);
    kube_map_free(inf->cache);
    kube_map_free(inf->by_ns);
    kube_map_free(inf->by_owner);
    free(inf->ns);
    free(inf->lsel);
    free(inf->fsel);
    pthread_cond_destroy(&inf->cv);
    pthread_mutex_destroy(&inf->mu);
    free(inf);
}

cJSON *kube_informer_get(kube_informer *inf, const char *key)
{
    pthread_mutex_lock(&inf->mu);
    const centry *e = kube_map_get(inf->cache, key);
    char *text = e ? strdup(e->json) : NULL;
    pthread_mutex_unlock(&inf->mu);
    cJSON *d = text ? cJSON_Parse(text) : NULL; /* parsed outside the lock (see centry) */
    free(text);
    return d;
}

/* Parses the snapshot into a new array; frees the snapshot. */
static int to_array(snap *s, cJSON **out)
{
    cJSON *arr = cJSON_CreateArray();
    int rc = arr ? 0 : KILN_ENOMEM;
    for (size_t i = 0; i < s->n && !rc; i++) {
        cJSON *o = cJSON_Parse(s->texts[i]);
        if (!o || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            rc = KILN_ENOMEM;
        }
    }
    snap_release(s);
    if (rc) {
        cJSON_Delete(arr);
        return rc;
    }
    *out = arr;
    return 0;
}

static int list_index(kube_informer *inf, kube_map *idx, const char *ik, cJSON **out)
{
    snap s = {.cache = inf->cache};
    pthread_mutex_lock(&inf->mu);
    int rc = 0;
    if (!idx) {
        rc = kube_map_foreach(inf->cache, snap_add, &s);
    } else {
        /* only the keys in the index set, not a scan of the whole cache */
        kube_map *set = kube_map_get(idx, ik);
        if (set)
            rc = kube_map_foreach(set, snap_key, &s);
    }
    pthread_mutex_unlock(&inf->mu);
    if (rc) {
        snap_release(&s);
        return KILN_ENOMEM;
    }
    return to_array(&s, out);
}

int kube_informer_list(kube_informer *inf, const char *ns, cJSON **out)
{
    return list_index(inf, ns ? inf->by_ns : NULL, ns, out);
}

int kube_informer_by_owner(kube_informer *inf, const char *uid, cJSON **out)
{
    return list_index(inf, inf->by_owner, uid, out);
}

size_t kube_informer_len(kube_informer *inf)
{
    pthread_mutex_lock(&inf->mu);
    size_t n = kube_map_len(inf->cache);
    pthread_mutex_unlock(&inf->mu);
    return n;
}

void kube_informer_last_rv(kube_informer *inf, char *buf, size_t n)
{
    pthread_mutex_lock(&inf->mu);
    snprintf(buf, n, "%s", inf->last_rv);
    pthread_mutex_unlock(&inf->mu);
}

void kube_informer_get_stats(kube_informer *inf, kube_informer_stats *out)
{
    pthread_mutex_lock(&inf->mu);
    *out = inf->st;
    pthread_mutex_unlock(&inf->mu);
}

/* ---- queue-feeding handlers ---- */

static void enq(kube_queue *q, const cJSON *o)
{
    char *k = kube_obj_key(o);
    if (k) {
        kube_queue_add(q, k);
        free(k);
    }
}

static void q_add(void *ud, const cJSON *o)
{
    enq(ud, o);
}
static void q_upd(void *ud, const cJSON *a, const cJSON *b)
{
    (void)a;
    enq(ud, b);
}
static void q_del(void *ud, const cJSON *o)
{
    enq(ud, o);
}

void kube_informer_enqueue_handlers(kube_queue *q, kube_handlers *out)
{
    out->on_add = q_add;
    out->on_update = q_upd;
    out->on_delete = q_del;
    out->ud = q;
}

static void enq_owner(kube_owner_enqueuer *e, const cJSON *o)
{
    const cJSON *refs = kube_obj_path(o, "metadata.ownerReferences");
    const cJSON *r;
    const char *ns = kube_obj_namespace(o);
    if (!cJSON_IsArray(refs))
        return;
    cJSON_ArrayForEach(r, refs)
    {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(r, "kind");
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(r, "name");
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "controller")) ||
            !cJSON_IsString(k) || !cJSON_IsString(n) || strcmp(k->valuestring, e->owner_kind))
            continue;
        size_t l = strlen(n->valuestring) + (ns ? strlen(ns) : 0) + 2;
        char *key = malloc(l);
        if (!key)
            return;
        if (ns && ns[0])
            snprintf(key, l, "%s/%s", ns, n->valuestring);
        else
            snprintf(key, l, "%s", n->valuestring);
        kube_queue_add_after(e->q, key, e->delay_ms);
        free(key);
    }
}

static void o_add(void *ud, const cJSON *o)
{
    enq_owner(ud, o);
}
static void o_upd(void *ud, const cJSON *a, const cJSON *b)
{
    (void)a;
    enq_owner(ud, b);
}
static void o_del(void *ud, const cJSON *o)
{
    enq_owner(ud, o);
}

void kube_informer_owner_handlers(kube_owner_enqueuer *e, kube_handlers *out)
{
    out->on_add = o_add;
    out->on_update = o_upd;
    out->on_delete = o_del;
    out->ud = e;
}
