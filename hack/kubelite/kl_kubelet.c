/* kl_kubelet: the process-based kubelet (see kl_kubelet.h): the pod table
 * and the sync loop.
 *
 * Every pass, per pod (every pod once a second, else the pods written
 * since the last pass and those not settled; either way not the pods with
 * nothing to do, see kl_kpod_idle): reap exited containers (waitpid
 * WNOHANG; kl_exits says which pods have one), run the init containers one
 * at a time to completion, then start the app containers, drive their
 * startup, liveness and readiness probes, apply the restart policy with
 * back-off, and write the pod status when it changed. How a container is
 * launched lives in kl_sandbox (its blocking calls on kl_worker's thread),
 * probe checks in kl_probe, status and events in kl_podstatus. Back-off
 * starts at 1 s and doubles up to 60 s (a real kubelet starts at 10 s;
 * tests need it shorter). */
#include "kl_kubelet.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kl_cpu.h"
#include "kl_exits.h"
#include "kl_kpod.h"
#include "kl_podstatus.h"
#include "kl_probe.h"
#include "kl_sandbox.h"
#include "kl_svc.h"
#include "kl_table.h"
#include "klog.h"
#include "ktime.h"

#define BACKOFF_START_MS 1000
#define BACKOFF_MAX_MS   60000

typedef struct pod_key {
    char ns[254], name[254], uid[64];
} pod_key;

struct kl_kubelet {
    kl_api *api;
    char dir[4096];
    kl_sandbox *sb;
    kl_kpod **pods;
    size_t n_pods;
    kl_kpod **index; /* open addressing by uid over pods, 0 or a power of two */
    size_t index_cap;
    pod_key *deferred; /* new pods left for later by the start budget */
    size_t n_deferred;
    pod_key *held; /* new pods waiting for a claim of theirs to exist */
    size_t n_held, cap_held;
    size_t n_preparing;  /* pods whose directories were not ready at the last look */
    uint64_t seen_rv;    /* the store's resourceVersion after the last pass */
    int64_t last_all_ms; /* when a pass last looked at every pod */
    unsigned pass;       /* passes so far, to look at each pod once per pass */
    int64_t last_full_ms;
    unsigned ip_next;
    int64_t last_node_ms;
    kl_svc *svc;
    kl_cpu *cpu;
    kl_exits *exits; /* NULL: no pidfds, running pods are looked at every pass */
};

static cJSON *meta(const cJSON *o)
{
    return cJSON_GetObjectItemCaseSensitive(o, "metadata");
}

static kl_res *pods_res(kl_kubelet *k)
{
    return kl_api_res(k->api, "", "pods");
}

/* ---- node ---- */

static void ensure_node(kl_kubelet *k)
{
    int64_t now = ktime_mono_ms();
    kl_res *nr = kl_api_res(k->api, "", "nodes");
    const cJSON *cur = kl_store_get(kl_api_store(k->api), nr->rkey, "", "kubelite");
    if (cur && now - k->last_node_ms < 30000)
        return;
    k->last_node_ms = now;
    cJSON *n = cur ? cJSON_Duplicate(cur, 1) : cJSON_CreateObject();
    if (!cur) {
        cJSON_AddStringToObject(n, "apiVersion", "v1");
        cJSON_AddStringToObject(n, "kind", "Node");
        cJSON *md = cJSON_AddObjectToObject(n, "metadata");
        cJSON_AddStringToObject(md, "name", "kubelite");
        cJSON *l = cJSON_AddObjectToObject(md, "labels");
        cJSON_AddStringToObject(l, "kubernetes.io/hostname", "kubelite");
        cJSON_AddStringToObject(l, "kubernetes.io/os", "linux");
    }
    cJSON_DeleteItemFromObjectCaseSensitive(n, "status");
    cJSON *st = cJSON_AddObjectToObject(n, "status");
    char mem[32], cpus[16];
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    snprintf(mem, sizeof(mem), "%lldKi", (long long)pages * psz / 1024);
    snprintf(cpus, sizeof(cpus), "%ld", sysconf(_SC_NPROCESSORS_ONLN));
    const char *kinds[] = {"capacity", "allocatable"};
    for (int i = 0; i < 2; i++) {
        cJSON *c = cJSON_AddObjectToObject(st, kinds[i]);
        cJSON_AddStringToObject(c, "cpu", cpus);
        cJSON_AddStringToObject(c, "memory", mem);
        cJSON_AddStringToObject(c, "pods", "110");
        cJSON_AddStringToObject(c, "ephemeral-storage", "10Gi");
    }
    char t[KTIME_BUFSZ];
    kl_now_str(t, sizeof(t), 0);
    cJSON *conds = cJSON_AddArrayToObject(st, "conditions");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "type", "Ready");
    cJSON_AddStringToObject(c, "status", "True");
    cJSON_AddStringToObject(c, "reason", "KubeletReady");
    cJSON_AddStringToObject(c, "message", "kubelite kubelet is posting ready status");
    cJSON_AddStringToObject(c, "lastHeartbeatTime", t);
    cJSON_AddStringToObject(c, "lastTransitionTime", t);
    cJSON_AddItemToArray(conds, c);
    cJSON *addr = cJSON_AddArrayToObject(st, "addresses");
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "type", "InternalIP");
    cJSON_AddStringToObject(a, "address", "127.0.0.1");
    cJSON_AddItemToArray(addr, a);
    cJSON *ni = cJSON_AddObjectToObject(st, "nodeInfo");
    cJSON_AddStringToObject(ni, "kubeletVersion", "v1.32.0-kubelite");
    cJSON_AddStringToObject(ni, "operatingSystem", "linux");
    cJSON_AddStringToObject(ni, "architecture", "amd64");
    cJSON_AddStringToObject(ni, "containerRuntimeVersion", "bwrap");
    kl_api_write(k->api, nr, n, NULL);
}

/* ---- pod table ---- */

/* The pods by uid: every tick looks each of the node's pods up, which a
 * scan made quadratic in the number of pods. */
static size_t uid_slot(const char *uid, size_t cap)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *c = (const unsigned char *)uid; *c; c++)
        h = (h ^ *c) * 1099511628211ULL;
    return (size_t)h & (cap - 1);
}

static void index_put(kl_kpod **slots, size_t cap, kl_kpod *p)
{
    size_t i = uid_slot(p->uid, cap);
    while (slots[i])
        i = (i + 1) & (cap - 1);
    slots[i] = p;
}

/* Rebuilds the index at a load of at most one half. On allocation
 * failure the index is dropped and lookups fall back to a scan. */
static void index_rebuild(kl_kubelet *k)
{
    size_t cap = 64;
    while (cap < 2 * k->n_pods)
        cap *= 2;
    free(k->index);
    k->index = calloc(cap, sizeof(*k->index));
    k->index_cap = k->index ? cap : 0;
    for (size_t i = 0; k->index && i < k->n_pods; i++)
        index_put(k->index, cap, k->pods[i]);
}

static kl_kpod *find_pod(kl_kubelet *k, const char *uid)
{
    if (!k->index_cap) {
        for (size_t i = 0; i < k->n_pods; i++)
            if (!strcmp(k->pods[i]->uid, uid))
                return k->pods[i];
        return NULL;
    }
    for (size_t i = uid_slot(uid, k->index_cap); k->index[i]; i = (i + 1) & (k->index_cap - 1))
        if (!strcmp(k->index[i]->uid, uid))
            return k->index[i];
    return NULL;
}

static kl_kpod *find_pod_name(kl_kubelet *k, const char *ns, const char *name)
{
    for (size_t i = 0; i < k->n_pods; i++)
        if (!strcmp(k->pods[i]->ns, ns) && !strcmp(k->pods[i]->name, name))
            return k->pods[i];
    return NULL;
}

static kl_kpod *add_pod(kl_kubelet *k, const cJSON *pod)
{
    kl_kpod **np = realloc(k->pods, (k->n_pods + 1) * sizeof(*np));
    if (!np)
        return NULL;
    k->pods = np;
    char ip[32];
    const char *old = kl_kpod_jstr(cJSON_GetObjectItemCaseSensitive(pod, "status"), "podIP");
    if (old && old[0]) {
        snprintf(ip, sizeof(ip), "%s", old);
    } else {
        unsigned n = k->ip_next++;
        snprintf(ip, sizeof(ip), "127.%d.%u.%u", kl_api_net_octet(k->api), 1 + (n / 250) % 250,
                 n % 250 + 2);
    }
    kl_kpod *p;
    if (kl_kpod_new(pod, k->dir, ip, &p) != 0)
        return NULL;
    kl_cpu_pod_add(k->cpu, pod, p);
    k->pods[k->n_pods++] = p;
    if (k->index_cap && 2 * k->n_pods <= k->index_cap)
        index_put(k->index, k->index_cap, p);
    else
        index_rebuild(k);
    kl_sandbox_prepare(k->sb, pod, p);
    return p;
}

/* Stops every process of p (SIGKILL) and waits for them; starts still on
 * the worker are killed there. */
static void stop_pod(kl_kubelet *k, kl_kpod *p)
{
    for (int i = 0; i < p->n; i++) {
        kl_exits_unwatch(k->exits, &p->c[i]);
        kl_sandbox_abandon(k->sb, &p->c[i]);
    }
    kl_kpod_kill(p, SIGKILL);
    for (int i = 0; i < p->n; i++)
        if (p->c[i].running)
            waitpid(p->c[i].pid, NULL, 0);
}

/* Stops p's processes and frees its record (stop_pod unwatches them). */
static void drop_pod(kl_kubelet *k, kl_kpod *p)
{
    stop_pod(k, p);
    kl_cpu_pod_remove(k->cpu, p);
    kl_kpod_free(p);
}

/* ---- containers ---- */

static const cJSON *probe_of(const cJSON *cs, const char *which)
{
    return cJSON_GetObjectItemCaseSensitive(cs, which);
}

static void start_ctr(kl_kubelet *k, const cJSON *pod, kl_kpod *p, kl_kctr *c)
{
    kl_sandbox_start(k->sb, pod, p, c);
    const cJSON *cs = kl_kpod_spec(pod, c);
    int64_t now = ktime_mono_ms();
    c->kill_at_ms = 0;
    /* Probes apply to app containers only. Without a startup probe the
     * container counts as started at once; without a readiness probe it
     * is ready while it runs. */
    const cJSON *sp = c->init ? NULL : probe_of(cs, "startupProbe");
    const cJSON *rp = c->init ? NULL : probe_of(cs, "readinessProbe");
    c->startup_ok = sp == NULL;
    c->ready = rp == NULL;
    kl_probe_arm(&c->startup, sp, now);
    kl_probe_arm(&c->liveness, c->init ? NULL : probe_of(cs, "livenessProbe"), now);
    kl_probe_arm(&c->readiness, rp, now);
    if (c->running)
        kl_podstatus_event(k->api, p, c, "Normal", "Started", "Started container %s", c->name);
}

static void reap(kl_kubelet *k, kl_kpod *p)
{
    for (int i = 0; i < p->n; i++) {
        kl_kctr *c = &p->c[i];
        if (!kl_sandbox_started(c, 0) || !c->running || c->pid <= 0)
            continue;
        int st;
        pid_t w = waitpid(c->pid, &st, WNOHANG);
        if (w != c->pid)
            continue;
        kl_exits_unwatch(k->exits, c);
        c->running = 0;
        c->kill_at_ms = 0;
        kl_probe_cancel(&c->startup);
        kl_probe_cancel(&c->liveness);
        kl_probe_cancel(&c->readiness);
        kl_now_str(c->finished_at, sizeof(c->finished_at), 0);
        if (WIFEXITED(st)) {
            c->exit_code = WEXITSTATUS(st);
            /* bwrap reports a child killed by a signal as 128+n. */
            if (c->exit_code > 128 && c->exit_code < 160)
                c->signal = c->exit_code - 128;
        } else if (WIFSIGNALED(st)) {
            c->signal = WTERMSIG(st);
            c->exit_code = 128 + c->signal;
        }
        c->reason[0] = 0;
        if (kl_sandbox_finish(c))
            snprintf(c->reason, sizeof(c->reason), "OOMKilled");
        if (p->deadline_hit)
            snprintf(c->reason, sizeof(c->reason), "DeadlineExceeded");
    }
}

/* The grace period of a probe-failure kill: the probe's own
 * terminationGracePeriodSeconds, else the pod's, else 30 s. */
static int64_t kill_grace_ms(const cJSON *pod, const cJSON *probe)
{
    kl_probe_params pp;
    kl_probe_params_of(probe, 1, &pp);
    if (pp.grace_s >= 0)
        return pp.grace_s * 1000;
    const cJSON *g = kl_table_jsonpath(pod, ".spec.terminationGracePeriodSeconds");
    return cJSON_IsNumber(g) && g->valuedouble >= 0 ? (int64_t)g->valuedouble * 1000 : 30000;
}

/* A failed liveness or startup probe: SIGTERM now, SIGKILL after the grace
 * period; the exit then goes through the restart policy like any other. */
static void kill_unhealthy(kl_kubelet *k, const cJSON *pod, kl_kpod *p, kl_kctr *c,
                           const cJSON *probe, const char *what, int64_t now)
{
    kl_podstatus_event(k->api, p, c, "Normal", "Killing",
                       "Container %s failed %s probe, will be restarted", c->name, what);
    kl_probe_cancel(&c->startup);
    kl_probe_cancel(&c->liveness);
    kl_probe_cancel(&c->readiness);
    c->ready = 0;
    c->kill_at_ms = now + kill_grace_ms(pod, probe);
    if (c->kill_at_ms <= now)
        c->kill_at_ms = now + 1; /* grace 0: SIGKILL on the next tick */
    kl_kctr_kill(c, SIGTERM);
}

static void run_probes(kl_kubelet *k, const cJSON *pod, kl_kpod *p, kl_kctr *c)
{
    int64_t now = ktime_mono_ms();
    if (c->kill_at_ms) {
        if (now >= c->kill_at_ms)
            kl_kctr_kill(c, SIGKILL);
        return;
    }
    const cJSON *cs = kl_kpod_spec(pod, c);
    kl_probe_params pp;
    if (!c->startup_ok) {
        /* The startup probe gates the other two until it succeeds. */
        const cJSON *sp = probe_of(cs, "startupProbe");
        kl_probe_params_of(sp, 1, &pp);
        int r = kl_probe_step(&c->startup, sp, cs, p->ip, c->pid, now);
        if (r == KL_PROBE_SUCCESS) {
            c->startup_ok = 1;
        } else if (r == KL_PROBE_FAILURE) {
            kl_podstatus_event(k->api, p, c, "Warning", "Unhealthy", "Startup probe failed: %s",
                               c->startup.detail);
            if (c->startup.failures >= pp.failure_threshold)
                kill_unhealthy(k, pod, p, c, sp, "startup", now);
        }
        return;
    }
    const cJSON *lp = probe_of(cs, "livenessProbe");
    kl_probe_params_of(lp, 1, &pp);
    if (kl_probe_step(&c->liveness, lp, cs, p->ip, c->pid, now) == KL_PROBE_FAILURE) {
        kl_podstatus_event(k->api, p, c, "Warning", "Unhealthy", "Liveness probe failed: %s",
                           c->liveness.detail);
        if (c->liveness.failures >= pp.failure_threshold) {
            kill_unhealthy(k, pod, p, c, lp, "liveness", now);
            return;
        }
    }
    const cJSON *rp = probe_of(cs, "readinessProbe");
    kl_probe_params_of(rp, 0, &pp);
    int r = kl_probe_step(&c->readiness, rp, cs, p->ip, c->pid, now);
    if (r == KL_PROBE_SUCCESS && c->readiness.successes >= pp.success_threshold) {
        c->ready = 1;
    } else if (r == KL_PROBE_FAILURE && c->readiness.failures >= pp.failure_threshold) {
        /* One event when the container turns unready, not one per check:
         * a pod that is never ready would flood the event list. */
        if (c->ready || c->readiness.failures == pp.failure_threshold)
            kl_podstatus_event(k->api, p, c, "Warning", "Unhealthy", "Readiness probe failed: %s",
                               c->readiness.detail);
        c->ready = 0;
    }
}

/* An exited container that the policy restarts: record its termination in
 * lastState, wait out the back-off, start it again. */
static void restart_later(kl_kubelet *k, const cJSON *pod, kl_kpod *p, kl_kctr *c, int64_t now)
{
    if (!c->next_start_ms) {
        cJSON_Delete(c->last_state);
        c->last_state = cJSON_CreateObject();
        cJSON_AddItemToObject(c->last_state, "terminated", kl_podstatus_terminated(p, c));
        c->next_start_ms = now + c->backoff_ms;
        if (c->restarts > 0)
            kl_podstatus_event(k->api, p, c, "Warning", "BackOff",
                               "Back-off restarting failed container %s", c->name);
        return;
    }
    if (now >= c->next_start_ms) {
        c->next_start_ms = 0;
        c->restarts++;
        c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
        start_ctr(k, pod, p, c);
    }
}

/* ---- the sync loop ---- */

/* Runs the init containers in order, one at a time. Each must exit 0
 * before the next starts; a failure is retried with back-off unless the
 * pod's restartPolicy is Never, which fails the pod. Sets p->initialized
 * once the last one succeeded. */
static void sync_init(kl_kubelet *k, const cJSON *pod, kl_kpod *p, const char *policy, int64_t now)
{
    for (int i = 0; i < p->n_init; i++) {
        kl_kctr *c = &p->c[i];
        if (c->running)
            return;
        if (!c->started) {
            start_ctr(k, pod, p, c);
            return;
        }
        if (c->exit_code == 0 && !c->reason[0]) {
            c->done = 1;
            continue;
        }
        if (c->done || !strcmp(policy, "Never")) {
            c->done = 1;
            p->init_failed = 1;
            return;
        }
        restart_later(k, pod, p, c, now);
        return;
    }
    p->initialized = 1;
}

static void sync_pod(kl_kubelet *k, const cJSON *pod, kl_kpod *p)
{
    reap(k, p);
    int64_t now = ktime_mono_ms();
    const char *policy = kl_kpod_jstr(kl_table_jsonpath(pod, ".spec"), "restartPolicy");
    policy = policy ? policy : "Always";
    if (p->deadline_ms && now >= p->deadline_ms && !p->deadline_hit) {
        p->deadline_hit = 1;
        kl_kpod_kill(p, SIGKILL);
    }
    int stopping = p->terminating || p->deadline_hit || p->init_failed;
    /* Nothing starts before the pod's directories exist, and the status
     * stays as the scheduler left it (Pending) meanwhile. Asked even when
     * stopping, so that the pod stops counting as preparing. */
    int ready = kl_sandbox_ready(k->sb, pod, p);
    if (!stopping && !ready)
        return;
    if (!p->initialized && !stopping)
        sync_init(k, pod, p, policy, now);
    for (int i = 0; i < p->n; i++) {
        kl_kctr *c = &p->c[i];
        if (c->running) {
            /* A terminating pod is being stopped anyway: no probe kills. */
            if (!c->init && !p->terminating && !c->spawning)
                run_probes(k, pod, p, c);
            continue;
        }
        if (c->done || stopping) {
            if (c->started)
                c->done = 1;
            continue;
        }
        if (c->init || !p->initialized)
            continue;
        if (!c->started) {
            start_ctr(k, pod, p, c);
            continue;
        }
        /* exited: restart policy */
        int again =
            !strcmp(policy, "Always") || (!strcmp(policy, "OnFailure") && c->exit_code != 0);
        if (!again) {
            c->done = 1;
            continue;
        }
        restart_later(k, pod, p, c, now);
    }
    kl_podstatus_write(k->api, pod, p);
}

static int pod_del_handler(void *ctx, const char *ns, const char *name, int64_t grace)
{
    kl_kubelet *k = ctx;
    kl_kpod *p = find_pod_name(k, ns, name);
    if (!p)
        return 0;
    if (!kl_kpod_any_running(p))
        return 0;
    kl_res *r = pods_res(k);
    const cJSON *cur = kl_store_get(kl_api_store(k->api), r->rkey, ns, name);
    if (!cur)
        return 0;
    cJSON *n = cJSON_Duplicate(cur, 1);
    if (!n)
        return 0; /* the API deletes the pod itself */
    cJSON *md = meta(n);
    if (!cJSON_GetObjectItemCaseSensitive(md, "deletionTimestamp")) {
        char t[KTIME_BUFSZ];
        kl_now_str(t, sizeof(t), 0);
        cJSON_AddStringToObject(md, "deletionTimestamp", t);
        cJSON_AddNumberToObject(md, "deletionGracePeriodSeconds", (double)grace);
    }
    kl_api_write(k->api, r, n, NULL);
    if (!p->terminating) {
        p->terminating = 1;
        p->kill_at_ms = ktime_mono_ms() + grace * 1000;
        kl_kpod_kill(p, SIGTERM);
    }
    return 1;
}

static int kill_handler(void *ctx, const char *ns, const char *name)
{
    kl_kubelet *k = ctx;
    kl_kpod *p = find_pod_name(k, ns, name);
    if (!p)
        return -1;
    kl_kpod_kill(p, SIGKILL);
    return 0;
}

/* ---- logs ---- */

typedef struct logctx {
    kl_kubelet *k;
    char uid[64], ctr[128];
    int restart;
    int fd;
    int follow;
    int64_t limit; /* bytes left, -1: no limit */
} logctx;

static long log_read(void *ctx, char *buf, size_t n)
{
    logctx *l = ctx;
    if (l->limit == 0)
        return -1;
    if (l->limit > 0 && (int64_t)n > l->limit)
        n = (size_t)l->limit;
    ssize_t r = read(l->fd, buf, n);
    if (r > 0) {
        if (l->limit > 0)
            l->limit -= r;
        return r;
    }
    if (!l->follow)
        return -1;
    kl_kpod *p = find_pod(l->k, l->uid);
    kl_kctr *c = p ? kl_kpod_ctr(p, l->ctr) : NULL;
    if (c && c->running && c->restarts == l->restart)
        return 0;
    /* The container ended: drain what is left, then end. */
    r = read(l->fd, buf, n);
    return r > 0 ? r : -1;
}

static void log_close(void *ctx)
{
    logctx *l = ctx;
    if (l->fd >= 0)
        close(l->fd);
    free(l);
}

static const char *qget(const kl_req *req, const char *k)
{
    for (int i = 0; i < req->nq; i++)
        if (!strcmp(req->qk[i], k))
            return req->qv[i];
    return NULL;
}

static int qtrue(const kl_req *req, const char *k)
{
    const char *v = qget(req, k);
    return v && (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "True") || !strcmp(v, "t"));
}

static void log_handler(void *ctx, const char *ns, const char *name, const kl_req *req,
                        kl_resp *resp)
{
    kl_kubelet *k = ctx;
    kl_kpod *p = find_pod_name(k, ns, name);
    const char *cname = qget(req, "container");
    if (p && !cname) {
        /* Like kubectl's default: the one app container, if there is one. */
        if (p->n - p->n_init != 1) {
            kl_api_status(resp, 400, "BadRequest", NULL, NULL, NULL,
                          "a container name must be specified for pod %s", name);
            return;
        }
        cname = p->c[p->n_init].name;
    }
    kl_kctr *c = p ? kl_kpod_ctr(p, cname) : NULL;
    if (p && !c) {
        kl_api_status(resp, 400, "BadRequest", NULL, NULL, NULL,
                      "container %s is not valid for pod %s", cname, name);
        return;
    }
    if (!c || !c->started) {
        kl_api_status(resp, 400, "BadRequest", NULL, NULL, NULL,
                      "container \"%s\" in pod \"%s\" is waiting to start: ContainerCreating",
                      cname ? cname : "", name);
        return;
    }
    int prev = qtrue(req, "previous");
    if (prev && c->restarts == 0) {
        kl_api_status(resp, 400, "BadRequest", NULL, NULL, NULL,
                      "previous terminated container \"%s\" in pod \"%s\" not found", cname, name);
        return;
    }
    int restart = prev ? c->restarts - 1 : c->restarts;
    char lp[4400];
    kl_kpod_log_path(p, c, restart, lp, sizeof(lp));
    int fd = open(lp, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    const char *tl = qget(req, "tailLines");
    if (tl) {
        long want = strtol(tl, NULL, 10);
        off_t size = lseek(fd, 0, SEEK_END);
        off_t pos = size;
        long lines = 0;
        char ch;
        /* Walk back over want newlines (ignoring a final one). */
        while (pos > 0) {
            if (pread(fd, &ch, 1, pos - 1) != 1)
                break;
            if (ch == '\n' && pos != size && ++lines >= want)
                break;
            pos--;
        }
        if (want <= 0)
            pos = size;
        lseek(fd, pos, SEEK_SET);
    }
    logctx *l = calloc(1, sizeof(*l));
    kl_log_stream *s = calloc(1, sizeof(*s));
    if (!l || !s) {
        free(l);
        free(s);
        close(fd);
        kl_api_status(resp, 500, "InternalError", NULL, NULL, NULL, "out of memory");
        return;
    }
    l->k = k;
    snprintf(l->uid, sizeof(l->uid), "%s", p->uid);
    snprintf(l->ctr, sizeof(l->ctr), "%s", c->name);
    l->restart = restart;
    l->fd = fd;
    l->follow = qtrue(req, "follow") && !prev;
    const char *lb = qget(req, "limitBytes");
    l->limit = lb ? strtoll(lb, NULL, 10) : -1;
    s->read = log_read;
    s->close = log_close;
    s->ctx = l;
    resp->code = 200;
    resp->ctype = "text/plain";
    resp->logs = s;
}

/* ---- API ---- */

int kl_kubelet_new(kl_api *api, const char *data_dir, const char *images_file, kl_kubelet **out,
                   kiln_error *err)
{
    *out = NULL;
    kl_kubelet *k = calloc(1, sizeof(*k));
    if (!k)
        return KILN_ENOMEM;
    k->api = api;
    snprintf(k->dir, sizeof(k->dir), "%s", data_dir);
    k->ip_next = 0;
    k->cpu = kl_cpu_new();
    int rc = k->cpu ? kl_sandbox_new(api, data_dir, images_file, &k->sb, err) : KILN_ENOMEM;
    if (rc) {
        kl_cpu_free(k->cpu);
        free(k);
        return rc;
    }
    kl_cpu_use_worker(k->cpu, kl_sandbox_worker(k->sb));
    const char *why;
    const char *mode = kl_cpu_mode(k->cpu, &why);
    klog(KLOG_INFO, "pods' CPU weights", KS("by", mode), KS("detail", why), KEND);
    if (kl_exits_new(&k->exits) != 0)
        klog(KLOG_WARN, "no epoll set for container exits: running pods are looked at every pass",
             KS("error", strerror(errno)), KEND);
    /* Pod IPs already handed out stay reserved. */
    const cJSON **pods;
    size_t n;
    kl_res *r = kl_api_res(api, "", "pods");
    if (kl_store_list(kl_api_store(api), r->rkey, NULL, &pods, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            unsigned a, b, c, d;
            const char *ip =
                kl_kpod_jstr(cJSON_GetObjectItemCaseSensitive(pods[i], "status"), "podIP");
            if (ip && sscanf(ip, "%u.%u.%u.%u", &a, &b, &c, &d) == 4 && c >= 1 && d >= 2) {
                unsigned idx = (c - 1) * 250 + (d - 2);
                if (idx + 1 > k->ip_next)
                    k->ip_next = idx + 1;
            }
        }
        free(pods);
    }
    rc = kl_svc_new(api, &k->svc, err);
    if (rc != 0) {
        kl_exits_free(k->exits);
        kl_sandbox_free(k->sb);
        kl_cpu_free(k->cpu);
        free(k);
        return rc;
    }
    kl_api_set_log_handler(api, log_handler, k);
    kl_api_set_pod_delete_handler(api, pod_del_handler, k);
    kl_api_set_kill_handler(api, kill_handler, k);
    *out = k;
    return 0;
}

void kl_kubelet_free(kl_kubelet *k)
{
    if (!k)
        return;
    for (size_t i = 0; i < k->n_pods; i++)
        drop_pod(k, k->pods[i]);
    kl_exits_free(k->exits);
    free(k->pods);
    free(k->index);
    free(k->deferred);
    free(k->held);
    kl_sandbox_free(k->sb); /* runs the cgroup changes still queued on its worker */
    kl_cpu_free(k->cpu);
    kl_svc_free(k->svc);
    kl_api_set_log_handler(k->api, NULL, NULL);
    kl_api_set_pod_delete_handler(k->api, NULL, NULL);
    kl_api_set_kill_handler(k->api, NULL, NULL);
    free(k);
}

static int phase_terminal(const cJSON *pod)
{
    const char *ph = kl_kpod_jstr(cJSON_GetObjectItemCaseSensitive(pod, "status"), "phase");
    return ph && (!strcmp(ph, "Succeeded") || !strcmp(ph, "Failed"));
}

/* After a pod's sync: a pod whose terminal phase is in the store and whose
 * processes are gone changes no more until it is deleted; processes that
 * got their pid are watched; whether it is idle, as of which record. */
static void settle(kl_kubelet *k, kl_store *st, kl_res *r, kl_kpod *p)
{
    const cJSON *cur = kl_store_get(st, r->rkey, p->ns, p->name);
    if (!p->terminating && !kl_kpod_any_running(p))
        p->settled = phase_terminal(cur);
    for (int i = 0; i < p->n; i++)
        if (p->c[i].running && p->c[i].pid > 0)
            kl_exits_watch(k->exits, p, &p->c[i]);
    p->exited = 0;
    p->idle = kl_kpod_idle(p);
    p->wake_ms = p->deadline_ms && !p->deadline_hit ? p->deadline_ms : 0;
    snprintf(p->rv, sizeof(p->rv), "%s", kl_kpod_jstr0(meta(cur), "resourceVersion"));
}

/* Starts the pods the last pass left over, for at most the start
 * budget; the others wait for the next call. Returns 1 while some wait. */
static int start_deferred(kl_kubelet *k, int64_t t0)
{
    kl_store *st = kl_api_store(k->api);
    kl_res *r = pods_res(k);
    size_t i = 0;
    for (; i < k->n_deferred && ktime_mono_ms() - t0 < KL_KUBELET_START_BUDGET_MS; i++) {
        const pod_key *pk = &k->deferred[i];
        const cJSON *pod = kl_store_get(st, r->rkey, pk->ns, pk->name);
        /* Gone, replaced, started already, or being deleted: the next
         * pass over every pod (within a second) deals with it. */
        if (!pod || strcmp(kl_kpod_jstr0(meta(pod), "uid"), pk->uid) != 0 || find_pod(k, pk->uid) ||
            cJSON_GetObjectItemCaseSensitive(meta(pod), "deletionTimestamp"))
            continue;
        kl_kpod *p = add_pod(k, pod);
        if (!p)
            continue;
        sync_pod(k, pod, p);
        settle(k, st, r, p);
    }
    if (i == 0)
        return k->n_deferred > 0;
    k->n_deferred -= i;
    memmove(k->deferred, k->deferred + i, k->n_deferred * sizeof(*k->deferred));
    return k->n_deferred > 0;
}

/* Syncs the pods whose directories the worker has made since the last
 * look, for at most the start budget. Returns 1 while some are not ready. */
static int start_prepared(kl_kubelet *k, int64_t t0)
{
    kl_store *st = kl_api_store(k->api);
    kl_res *r = pods_res(k);
    size_t waiting = 0;
    for (size_t i = 0; i < k->n_pods; i++) {
        kl_kpod *p = k->pods[i];
        if (p->dirs_ready || p->terminating)
            continue;
        if (!kl_work_done(p->dirs) || ktime_mono_ms() - t0 >= KL_KUBELET_START_BUDGET_MS) {
            waiting++;
            continue;
        }
        const cJSON *pod = kl_store_get(st, r->rkey, p->ns, p->name);
        if (!pod || strcmp(kl_kpod_jstr0(meta(pod), "uid"), p->uid) != 0)
            continue; /* gone or replaced: the next pass deals with it */
        sync_pod(k, pod, p);
        settle(k, st, r, p);
    }
    k->n_preparing = waiting;
    return waiting > 0;
}

/* The identity of a pod on this node; 0 for a pod of another node. */
static int key_of(const cJSON *pod, pod_key *out)
{
    if (strcmp(kl_kpod_jstr0(cJSON_GetObjectItemCaseSensitive(pod, "spec"), "nodeName"),
               "kubelite") != 0)
        return 0;
    const cJSON *md = meta(pod);
    snprintf(out->ns, sizeof(out->ns), "%s", kl_kpod_jstr0(md, "namespace"));
    snprintf(out->name, sizeof(out->name), "%s", kl_kpod_jstr0(md, "name"));
    snprintf(out->uid, sizeof(out->uid), "%s", kl_kpod_jstr0(md, "uid"));
    return 1;
}

/* Appends to a growing key array; 0, or -1 when out of memory. */
static int keys_add(pod_key **v, size_t *n, size_t *cap, const pod_key *key)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        pod_key *nv = realloc(*v, c * sizeof(*nv));
        if (!nv)
            return -1;
        *v = nv;
        *cap = c;
    }
    (*v)[(*n)++] = *key;
    return 0;
}

/* Every pod of this node into *out (malloc'd). Identities are copied:
 * status writes invalidate the borrowed list. 0, or -1 when out of
 * memory. */
static int all_keys(kl_store *st, kl_res *r, pod_key **out, size_t *n)
{
    const cJSON **pods;
    size_t m, cap = 0;
    pod_key key;
    *out = NULL;
    *n = 0;
    if (kl_store_list(st, r->rkey, NULL, &pods, &m) != 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < m && !rc; i++)
        if (key_of(pods[i], &key))
            rc = keys_add(out, n, &cap, &key);
    free(pods);
    return rc;
}

/* Into *out: the pods written since the last pass, this kubelet's pods
 * that are not settled, and the starts the last pass deferred; each known
 * pod once. 0, or -1 when out of memory. */
static int changed_keys(kl_kubelet *k, kl_store *st, kl_res *r, pod_key **out, size_t *n)
{
    size_t cap = 0;
    pod_key key;
    *out = NULL;
    *n = 0;
    int rc = 0;
    unsigned pass = ++k->pass;
    int64_t now = ktime_mono_ms();
    for (size_t i = 0; i < k->n_pods && !rc; i++) {
        kl_kpod *p = k->pods[i];
        if (kl_kpod_resting(p, NULL, now))
            continue; /* a write to it comes in as an event below */
        p->pass = pass;
        snprintf(key.ns, sizeof(key.ns), "%s", p->ns);
        snprintf(key.name, sizeof(key.name), "%s", p->name);
        snprintf(key.uid, sizeof(key.uid), "%s", p->uid);
        rc = keys_add(out, n, &cap, &key);
    }
    for (size_t i = 0; i < k->n_deferred && !rc; i++)
        rc = keys_add(out, n, &cap, &k->deferred[i]);
    for (size_t i = 0; i < k->n_held && !rc; i++)
        rc = keys_add(out, n, &cap, &k->held[i]);
    for (const kl_event *ev = kl_store_event_after(st, k->seen_rv); ev && !rc;
         ev = kl_store_event_next(st, ev)) {
        if (strcmp(ev->rkey, r->rkey) != 0 || !key_of(ev->obj, &key))
            continue;
        kl_kpod *p = find_pod(k, key.uid);
        if (p && p->pass == pass)
            continue;
        if (p)
            p->pass = pass;
        rc = keys_add(out, n, &cap, &key);
    }
    return rc;
}

/* A scheduler places a pod only once every PersistentVolumeClaim it
 * mounts exists; until then the pod stays Pending with PodScheduled False
 * (Unschedulable), and it is looked at again on every pass. 1 when pod is
 * held. */
static int held_for_claim(kl_kubelet *k, kl_store *st, const cJSON *pod, const pod_key *key)
{
    kl_res *pvcs = kl_api_res(k->api, "", "persistentvolumeclaims");
    const cJSON *v;
    cJSON_ArrayForEach(v, kl_table_jsonpath(pod, ".spec.volumes"))
    {
        const char *claim =
            kl_kpod_jstr(cJSON_GetObjectItemCaseSensitive(v, "persistentVolumeClaim"), "claimName");
        if (!claim || !pvcs || kl_store_get(st, pvcs->rkey, key->ns, claim))
            continue;
        char msg[400];
        snprintf(msg, sizeof(msg),
                 "0/1 nodes are available: persistentvolumeclaim \"%s\" not found.", claim);
        kl_podstatus_unschedulable(k->api, pod, msg);
        if (keys_add(&k->held, &k->n_held, &k->cap_held, key) != 0) {
            /* out of memory: the pass over every pod, once a second, looks again */
        }
        return 1;
    }
    return 0;
}

int kl_kubelet_tick(void *ctx)
{
    kl_kubelet *k = ctx;
    int64_t t0 = ktime_mono_ms();
    /* Between passes (every 100 ms), only the starts left over and the
     * pods whose directories became ready. */
    if ((k->n_deferred || k->n_preparing) && t0 - k->last_full_ms < 100) {
        int more = k->n_preparing ? start_prepared(k, t0) : 0;
        return start_deferred(k, t0) | more;
    }
    k->last_full_ms = t0;
    int64_t start_ms = 0; /* spent starting new pods in this pass */
    ensure_node(k);
    kl_store *st = kl_api_store(k->api);
    kl_res *r = pods_res(k);
    /* Every pod once a second (and when the store's history no longer
     * reaches back to the last pass); between, only the pods written since
     * the last pass and this kubelet's own pods that are not settled: a
     * settled pod changes only through a write. */
    int all = t0 - k->last_all_ms >= KL_KUBELET_ALL_PODS_MS || !k->seen_rv ||
              kl_store_hist_floor(st) > k->seen_rv;
    kl_exits_collect(k->exits);
    size_t nk;
    pod_key *keys;
    if ((all ? all_keys(st, r, &keys, &nk) : changed_keys(k, st, r, &keys, &nk)) != 0) {
        /* Without the list every pod would look deleted: skip this tick. */
        free(keys);
        return 0;
    }
    if (all)
        k->last_all_ms = t0;
    k->n_deferred = 0; /* they are among the keys */
    k->n_held = 0;
    for (size_t i = 0; i < k->n_pods; i++)
        k->pods[i]->gone = all;
    for (size_t i = 0; i < nk; i++) {
        const cJSON *pod = kl_store_get(st, r->rkey, keys[i].ns, keys[i].name);
        if (!pod || strcmp(kl_kpod_jstr0(meta(pod), "uid"), keys[i].uid) != 0) {
            /* Deleted, or replaced by a pod of its own (with its own key). */
            kl_kpod *gp = find_pod(k, keys[i].uid);
            if (gp)
                gp->gone = 1;
            continue;
        }
        int64_t s0 = 0; /* a pod new to this kubelet: when its start began */
        kl_kpod *p = find_pod(k, keys[i].uid);
        if (!p) {
            /* Terminal pods from before a restart are not run again. */
            if (phase_terminal(pod))
                continue;
            if (held_for_claim(k, st, pod, &keys[i]))
                continue;
            if (start_ms >= KL_KUBELET_START_BUDGET_MS) {
                /* Pending until a call soon after this one starts it. */
                pod_key *d = realloc(k->deferred, (k->n_deferred + 1) * sizeof(*d));
                if (d) {
                    k->deferred = d;
                    d[k->n_deferred++] = keys[i];
                }
                continue;
            }
            s0 = ktime_mono_ms();
            p = add_pod(k, pod);
            if (!p)
                continue;
        }
        p->gone = 0;
        if (kl_kpod_resting(p, kl_kpod_jstr0(meta(pod), "resourceVersion"), t0) &&
            !cJSON_GetObjectItemCaseSensitive(meta(pod), "deletionTimestamp"))
            continue;
        if (!p->terminating && cJSON_GetObjectItemCaseSensitive(meta(pod), "deletionTimestamp")) {
            const cJSON *g = kl_table_jsonpath(pod, ".metadata.deletionGracePeriodSeconds");
            p->terminating = 1;
            p->kill_at_ms =
                ktime_mono_ms() + (cJSON_IsNumber(g) ? (int64_t)g->valuedouble * 1000 : 0);
            kl_kpod_kill(p, SIGTERM);
        }
        /* A pod whose directories are ready starts its containers in this
         * sync: that counts against the start budget like a new pod. */
        if (!s0 && !p->dirs_ready && !p->terminating && kl_work_done(p->dirs)) {
            if (start_ms >= KL_KUBELET_START_BUDGET_MS)
                continue; /* start_prepared() starts it soon */
            s0 = ktime_mono_ms();
        }
        sync_pod(k, pod, p);
        settle(k, st, r, p);
        if (p->terminating) {
            int any = kl_kpod_any_running(p);
            if (any && ktime_mono_ms() >= p->kill_at_ms)
                kl_kpod_kill(p, SIGKILL);
            const cJSON *cur = kl_store_get(st, r->rkey, keys[i].ns, keys[i].name);
            if (!any && cur && cJSON_GetObjectItemCaseSensitive(meta(cur), "deletionTimestamp") &&
                cJSON_GetArraySize(kl_table_jsonpath(cur, ".metadata.finalizers")) == 0)
                kl_store_del(st, r->rkey, keys[i].ns, keys[i].name, NULL);
        }
        if (s0)
            start_ms += ktime_mono_ms() - s0;
    }
    free(keys);
    /* Pods removed from the store: stop their processes. */
    size_t j = 0;
    for (size_t i = 0; i < k->n_pods; i++) {
        kl_kpod *p = k->pods[i];
        if (p->gone) {
            drop_pod(k, p);
        } else {
            k->pods[j++] = p;
        }
    }
    if (j != k->n_pods) {
        k->n_pods = j;
        index_rebuild(k);
    }
    kl_svc_sync(k->svc);
    k->seen_rv = kl_store_rv(st); /* this pass's own writes need no look */
    k->n_preparing = 0;
    for (size_t i = 0; i < k->n_pods; i++)
        k->n_preparing += !k->pods[i]->dirs_ready && !k->pods[i]->terminating;
    return k->n_deferred > 0 || k->n_preparing > 0;
}
