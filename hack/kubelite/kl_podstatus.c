/* kl_podstatus: pod status and kubelet Events for kubelite (see
 * kl_podstatus.h). */
#include "kl_podstatus.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kbuf.h"
#include "ktime.h"

cJSON *kl_podstatus_terminated(const kl_kpod *p, const kl_kctr *c)
{
    cJSON *t = cJSON_CreateObject();
    if (!t)
        return NULL;
    cJSON_AddNumberToObject(t, "exitCode", c->exit_code);
    if (c->signal)
        cJSON_AddNumberToObject(t, "signal", c->signal);
    cJSON_AddStringToObject(t, "reason",
                            c->reason[0] ? c->reason : (c->exit_code ? "Error" : "Completed"));
    char tl[4400];
    kl_kpod_term_path(p, c, tl, sizeof(tl));
    FILE *f = fopen(tl, "re");
    if (f) {
        char msg[4097];
        size_t n = fread(msg, 1, 4096, f);
        msg[n] = 0;
        fclose(f);
        if (n)
            cJSON_AddStringToObject(t, "message", msg);
    }
    cJSON_AddStringToObject(t, "startedAt", c->started_at);
    cJSON_AddStringToObject(t, "finishedAt", c->finished_at);
    char id[400];
    snprintf(id, sizeof(id), "kubelite://%s-%s-%d", p->uid, c->name, c->restarts);
    cJSON_AddStringToObject(t, "containerID", id);
    return t;
}

/* A pod condition; lastTransitionTime is kept from old while the status
 * stays the same, so an unchanged pod writes an unchanged status. */
static cJSON *cond(const char *type, int ok, const char *reason, const char *msg, const char *t,
                   const cJSON *old)
{
    cJSON *c = cJSON_CreateObject();
    if (!c)
        return NULL;
    cJSON_AddStringToObject(c, "type", type);
    cJSON_AddStringToObject(c, "status", ok ? "True" : "False");
    const cJSON *oc;
    const char *ltt = t;
    cJSON_ArrayForEach(oc, old)
    {
        if (!strcmp(kl_kpod_jstr0(oc, "type"), type) &&
            !strcmp(kl_kpod_jstr0(oc, "status"), ok ? "True" : "False") &&
            kl_kpod_jstr(oc, "lastTransitionTime"))
            ltt = kl_kpod_jstr(oc, "lastTransitionTime");
    }
    cJSON_AddNullToObject(c, "lastProbeTime");
    cJSON_AddStringToObject(c, "lastTransitionTime", ltt);
    if (!ok && reason) {
        cJSON_AddStringToObject(c, "reason", reason);
        cJSON_AddStringToObject(c, "message", msg);
    }
    return c;
}

/* FNV-1a over n bytes. */
static uint64_t fnv_bytes(uint64_t h, const void *d, size_t n)
{
    const unsigned char *b = d;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* Counts gathered while building the container statuses. */
typedef struct tally {
    int running, all_done, failed, ready_all, any_started;
    kbuf unready; /* app containers that are not ready, "a b" */
    kbuf uninit;  /* init containers that have not completed */
} tally;

static void name_to(kbuf *b, const char *name)
{
    if (b->len)
        kbuf_str(b, " ");
    kbuf_str(b, name);
}

static cJSON *ctr_status(const cJSON *pod, const kl_kpod *p, const kl_kctr *c, tally *t)
{
    const cJSON *cs = kl_kpod_spec(pod, c);
    cJSON *x = cJSON_CreateObject();
    if (!x)
        return NULL;
    cJSON_AddStringToObject(x, "name", c->name);
    cJSON *state = cJSON_AddObjectToObject(x, "state");
    cJSON_AddItemToObject(x, "lastState",
                          c->last_state ? cJSON_Duplicate(c->last_state, 1) : cJSON_CreateObject());
    /* An init container counts as ready once it completed, as Kubernetes
     * reports it; an app container when its probes say so. */
    int init_ok = c->init && c->done && c->exit_code == 0 && !c->reason[0];
    int ready = c->init ? init_ok : c->running && c->ready && c->startup_ok && !p->terminating;
    cJSON_AddBoolToObject(x, "ready", ready);
    cJSON_AddNumberToObject(x, "restartCount", c->restarts);
    cJSON_AddStringToObject(x, "image", kl_kpod_jstr0(cs, "image"));
    cJSON_AddStringToObject(x, "imageID", "");
    if (c->started) {
        char id[400];
        snprintf(id, sizeof(id), "kubelite://%s-%s-%d", p->uid, c->name, c->restarts);
        cJSON_AddStringToObject(x, "containerID", id);
    }
    cJSON_AddBoolToObject(x, "started", c->running && c->startup_ok);
    if (c->running) {
        cJSON *r = cJSON_AddObjectToObject(state, "running");
        cJSON_AddStringToObject(r, "startedAt", c->started_at);
        if (!c->init)
            t->running++;
        t->all_done = 0;
    } else if (c->done) {
        cJSON_AddItemToObject(state, "terminated", kl_podstatus_terminated(p, c));
        if (!c->init)
            t->failed |= c->exit_code != 0 || c->reason[0];
    } else {
        cJSON *w = cJSON_AddObjectToObject(state, "waiting");
        const char *why = c->started ? "CrashLoopBackOff" : "ContainerCreating";
        /* Containers that wait for init containers say so; kubectl shows
         * Init:N/M or PodInitializing from these. */
        if (!c->started && (c->init || !p->initialized))
            why = "PodInitializing";
        cJSON_AddStringToObject(w, "reason", why);
        if (c->started) {
            char m[400];
            snprintf(m, sizeof(m), "back-off %ds restarting failed container=%s pod=%s_%s(%s)",
                     c->backoff_ms / 1000, c->name, p->name, p->ns, p->uid);
            cJSON_AddStringToObject(w, "message", m);
        }
        t->all_done = 0;
    }
    if (c->init) {
        if (!init_ok)
            name_to(&t->uninit, c->name);
    } else {
        t->any_started |= c->started;
        t->ready_all &= ready;
        if (!ready)
            name_to(&t->unready, c->name);
    }
    return x;
}

static void add_ip(cJSON *st, const char *one, const char *many, const char *ip)
{
    cJSON_AddStringToObject(st, one, ip);
    cJSON *arr = cJSON_AddArrayToObject(st, many);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "ip", ip);
    if (!cJSON_AddItemToArray(arr, o))
        cJSON_Delete(o);
}

/* What the status is built from: the pod's resourceVersion (its stored
 * status, which transition times are kept from) and every record field
 * ctr_status() and kl_podstatus_write() read. */
static uint64_t status_inputs(const cJSON *pod, const kl_kpod *p)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a offset basis */
    const char *rv =
        kl_kpod_jstr0(cJSON_GetObjectItemCaseSensitive(pod, "metadata"), "resourceVersion");
    h = fnv_bytes(h, rv, strlen(rv) + 1);
    int pf[] = {p->n, p->initialized, p->init_failed, p->deadline_hit, p->terminating};
    h = fnv_bytes(h, pf, sizeof(pf));
    for (int i = 0; i < p->n; i++) {
        const kl_kctr *c = &p->c[i];
        int cf[] = {c->running,  c->started,   c->done,   c->ready,     c->startup_ok,
                    c->restarts, c->exit_code, c->signal, c->backoff_ms};
        h = fnv_bytes(h, cf, sizeof(cf));
        h = fnv_bytes(h, &c->next_start_ms, sizeof(c->next_start_ms));
        h = fnv_bytes(h, c->reason, strlen(c->reason) + 1);
        h = fnv_bytes(h, c->started_at, strlen(c->started_at) + 1);
        h = fnv_bytes(h, c->finished_at, strlen(c->finished_at) + 1);
    }
    return h ? h : 1; /* 0 means "never built" */
}

void kl_podstatus_unschedulable(kl_api *api, const cJSON *pod, const char *msg)
{
    const cJSON *old = cJSON_GetObjectItemCaseSensitive(pod, "status");
    const cJSON *oc = cJSON_GetObjectItemCaseSensitive(old, "conditions"), *c;
    cJSON_ArrayForEach(c, oc)
    {
        if (!strcmp(kl_kpod_jstr0(c, "type"), "PodScheduled") &&
            !strcmp(kl_kpod_jstr0(c, "status"), "False") &&
            !strcmp(kl_kpod_jstr0(c, "message"), msg))
            return; /* said already */
    }
    char now[KTIME_BUFSZ];
    kl_now_str(now, sizeof(now), 0);
    cJSON *n = cJSON_Duplicate(pod, 1);
    cJSON *st = cJSON_CreateObject();
    cJSON *conds = st ? cJSON_AddArrayToObject(st, "conditions") : NULL;
    cJSON *sc = conds ? cond("PodScheduled", 0, "Unschedulable", msg, now, oc) : NULL;
    if (!n || !sc || !cJSON_AddStringToObject(st, "phase", "Pending") ||
        !cJSON_AddStringToObject(st, "qosClass", "BestEffort")) {
        cJSON_Delete(sc);
        cJSON_Delete(st);
        cJSON_Delete(n);
        return; /* out of memory: the next pass tries again */
    }
    cJSON_AddItemToArray(conds, sc);
    cJSON_DeleteItemFromObjectCaseSensitive(n, "status");
    cJSON_AddItemToObject(n, "status", st);
    kl_api_write(api, kl_api_res(api, "", "pods"), n, NULL);
}

void kl_podstatus_write(kl_api *api, const cJSON *pod, kl_kpod *p)
{
    /* Unchanged inputs build the same status: nothing to build or compare
     * (a pass over a thousand running pods did little else). */
    uint64_t in = status_inputs(pod, p);
    if (in == p->status_inputs)
        return;
    cJSON *st = cJSON_CreateObject();
    cJSON *ics = cJSON_CreateArray();
    cJSON *css = cJSON_CreateArray();
    tally t = {.all_done = 1, .ready_all = 1};
    if (!st || !ics || !css)
        goto out;
    for (int i = 0; i < p->n; i++)
        cJSON_AddItemToArray(p->c[i].init ? ics : css, ctr_status(pod, p, &p->c[i], &t));
    int n_app = p->n - p->n_init;
    const char *phase = "Pending";
    if (p->deadline_hit || p->init_failed)
        phase = "Failed";
    else if (!p->initialized)
        phase = "Pending";
    else if (t.all_done && n_app)
        phase = t.failed ? "Failed" : "Succeeded";
    else if (t.any_started)
        phase = "Running";
    cJSON_AddStringToObject(st, "phase", phase);
    if (p->deadline_hit) {
        cJSON_AddStringToObject(st, "reason", "DeadlineExceeded");
        cJSON_AddStringToObject(st, "message",
                                "Pod was active on the node longer than the specified deadline");
    }
    const cJSON *old = cJSON_GetObjectItemCaseSensitive(pod, "status");
    const cJSON *oc = cJSON_GetObjectItemCaseSensitive(old, "conditions");
    char now[KTIME_BUFSZ], m1[600], m2[600];
    kl_now_str(now, sizeof(now), 0);
    snprintf(m1, sizeof(m1), "containers with incomplete status: [%s]",
             t.uninit.p ? t.uninit.p : "");
    snprintf(m2, sizeof(m2), "containers with unready status: [%s]",
             t.unready.p ? t.unready.p : "");
    cJSON *conds = cJSON_AddArrayToObject(st, "conditions");
    int ready = t.ready_all && t.running == n_app && !t.all_done && p->initialized;
    cJSON_AddItemToArray(
        conds, cond("Initialized", p->initialized, "ContainersNotInitialized", m1, now, oc));
    cJSON_AddItemToArray(conds, cond("Ready", ready, "ContainersNotReady", m2, now, oc));
    cJSON_AddItemToArray(conds, cond("ContainersReady", ready, "ContainersNotReady", m2, now, oc));
    cJSON_AddItemToArray(conds, cond("PodScheduled", 1, NULL, NULL, now, oc));
    add_ip(st, "hostIP", "hostIPs", "127.0.0.1");
    add_ip(st, "podIP", "podIPs", p->ip);
    cJSON_AddStringToObject(st, "startTime", p->start_time);
    cJSON_AddStringToObject(st, "qosClass", "BestEffort");
    if (p->n_init) {
        cJSON_AddItemToObject(st, "initContainerStatuses", ics);
        ics = NULL;
    }
    cJSON_AddItemToObject(st, "containerStatuses", css);
    css = NULL;
    if (old && cJSON_Compare(old, st, 1)) {
        p->status_inputs = in;
        goto out;
    }
    cJSON *n = cJSON_Duplicate(pod, 1);
    if (!n)
        goto out;
    cJSON_DeleteItemFromObjectCaseSensitive(n, "status");
    cJSON_AddItemToObject(n, "status", st);
    st = NULL;
    /* Written, the pod has a new resourceVersion: the next call builds
     * once more and finds it equal. A failed write is tried again. */
    kl_api_write(api, kl_api_res(api, "", "pods"), n, NULL);
out:
    cJSON_Delete(st);
    cJSON_Delete(ics);
    cJSON_Delete(css);
    kbuf_release(&t.unready);
    kbuf_release(&t.uninit);
}

/* FNV-1a over the parts that make two events "the same". */
static uint64_t fnv(uint64_t h, const char *s)
{
    h = fnv_bytes(h, s, strlen(s));
    return (h ^ 0xff) * 1099511628211ULL; /* separator */
}

void kl_podstatus_event(kl_api *api, const kl_kpod *p, const kl_kctr *c, const char *type,
                        const char *reason, const char *fmt, ...)
{
    char msg[1024], name[400], now[KTIME_BUFSZ], fp[300] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c)
        snprintf(fp, sizeof(fp), "spec.%s{%s}", c->init ? "initContainers" : "containers", c->name);
    /* Repeats (a crash loop's BackOff, each restart's Started) update one
     * event's count and lastTimestamp, as the kubelet's event correlator
     * does, so a pod's events stay bounded however long it runs. */
    uint64_t h = fnv(fnv(fnv(fnv(1469598103934665603ULL, p->uid), fp), reason), msg);
    snprintf(name, sizeof(name), "%s.%016llx", p->name, (unsigned long long)h);
    kl_now_str(now, sizeof(now), 0);
    kl_res *r = kl_api_res(api, "", "events");
    const cJSON *old = kl_store_get(kl_api_store(api), r->rkey, p->ns, name);
    if (old) {
        cJSON *e = cJSON_Duplicate(old, 1);
        if (!e)
            return;
        const cJSON *cnt = cJSON_GetObjectItemCaseSensitive(e, "count");
        double n = cJSON_IsNumber(cnt) ? cnt->valuedouble + 1 : 2;
        cJSON_DeleteItemFromObjectCaseSensitive(e, "count");
        cJSON_DeleteItemFromObjectCaseSensitive(e, "lastTimestamp");
        cJSON_AddNumberToObject(e, "count", n);
        cJSON_AddStringToObject(e, "lastTimestamp", now);
        kl_api_write(api, r, e, NULL);
        return;
    }
    cJSON *e = cJSON_CreateObject();
    if (!e)
        return;
    cJSON_AddStringToObject(e, "apiVersion", "v1");
    cJSON_AddStringToObject(e, "kind", "Event");
    cJSON *md = cJSON_AddObjectToObject(e, "metadata");
    cJSON_AddStringToObject(md, "name", name);
    cJSON_AddStringToObject(md, "namespace", p->ns);
    cJSON *io = cJSON_AddObjectToObject(e, "involvedObject");
    cJSON_AddStringToObject(io, "apiVersion", "v1");
    cJSON_AddStringToObject(io, "kind", "Pod");
    cJSON_AddStringToObject(io, "namespace", p->ns);
    cJSON_AddStringToObject(io, "name", p->name);
    cJSON_AddStringToObject(io, "uid", p->uid);
    if (fp[0])
        cJSON_AddStringToObject(io, "fieldPath", fp);
    cJSON_AddStringToObject(e, "reason", reason);
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type);
    cJSON *src = cJSON_AddObjectToObject(e, "source");
    cJSON_AddStringToObject(src, "component", "kubelet");
    cJSON_AddStringToObject(src, "host", "kubelite");
    cJSON_AddStringToObject(e, "firstTimestamp", now);
    cJSON_AddStringToObject(e, "lastTimestamp", now);
    cJSON_AddNumberToObject(e, "count", 1);
    cJSON_AddStringToObject(e, "reportingComponent", "kubelet");
    cJSON_AddStringToObject(e, "reportingInstance", "kubelite");
    kl_api_create(api, r, e, NULL);
}
