/* kl_kpod: the kubelet's pod and container records (see kl_kpod.h). */
#include "kl_kpod.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_err.h"
#include "kl_api.h"
#include "kl_table.h"
#include "kquantity.h"
#include "ktime.h"

const char *kl_kpod_jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

const char *kl_kpod_jstr0(const cJSON *o, const char *k)
{
    const char *s = kl_kpod_jstr(o, k);
    return s ? s : "";
}

static void add_ctrs(kl_kpod *p, const cJSON *list, int init)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, list)
    {
        if (p->n == KL_KPOD_MAX_CTR)
            break;
        kl_kctr *x = &p->c[p->n++];
        snprintf(x->name, sizeof(x->name), "%s", kl_kpod_jstr0(c, "name"));
        x->init = init;
        x->backoff_ms = 1000;
        x->pidfd = -1;
        x->probed = !init && (cJSON_GetObjectItemCaseSensitive(c, "startupProbe") ||
                              cJSON_GetObjectItemCaseSensitive(c, "livenessProbe") ||
                              cJSON_GetObjectItemCaseSensitive(c, "readinessProbe"));
        kl_probe_init(&x->startup);
        kl_probe_init(&x->liveness);
        kl_probe_init(&x->readiness);
        const char *ml = kl_kpod_jstr(kl_table_jsonpath(c, ".resources.limits"), "memory");
        kquantity q;
        if (ml && kquantity_parse(ml, &q, NULL) == 0)
            x->mem_limit = q.value;
        if (init)
            p->n_init++;
    }
}

int kl_kpod_new(const cJSON *pod, const char *data_dir, const char *ip, kl_kpod **out)
{
    *out = NULL;
    kl_kpod *p = calloc(1, sizeof(*p));
    if (!p)
        return KILN_ENOMEM;
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(pod, "metadata");
    snprintf(p->uid, sizeof(p->uid), "%s", kl_kpod_jstr0(md, "uid"));
    snprintf(p->ns, sizeof(p->ns), "%s", kl_kpod_jstr0(md, "namespace"));
    snprintf(p->name, sizeof(p->name), "%s", kl_kpod_jstr0(md, "name"));
    snprintf(p->dir, sizeof(p->dir), "%s/pods/%s", data_dir, p->uid);
    snprintf(p->ip, sizeof(p->ip), "%s", ip);
    kl_now_str(p->start_time, sizeof(p->start_time), 0);
    const cJSON *ads = kl_table_jsonpath(pod, ".spec.activeDeadlineSeconds");
    if (cJSON_IsNumber(ads))
        p->deadline_ms = ktime_mono_ms() + (int64_t)(ads->valuedouble * 1000);
    /* Init containers come first so that index order is run order. */
    add_ctrs(p, kl_table_jsonpath(pod, ".spec.initContainers"), 1);
    add_ctrs(p, kl_table_jsonpath(pod, ".spec.containers"), 0);
    p->initialized = p->n_init == 0;
    *out = p;
    return 0;
}

void kl_kpod_free(kl_kpod *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n; i++) {
        kl_kctr *c = &p->c[i];
        kl_probe_cancel(&c->startup);
        kl_probe_cancel(&c->liveness);
        kl_probe_cancel(&c->readiness);
        cJSON_Delete(c->last_state);
        if (c->pidfd >= 0)
            close(c->pidfd); /* not in an exit set: the kubelet unwatches first */
        if (c->cg[0])
            rmdir(c->cg);
    }
    kl_work_release(p->dirs);
    free(p);
}

int kl_kpod_idle(const kl_kpod *p)
{
    if (p->terminating || p->deadline_hit || p->init_failed)
        return 0;
    if (!p->dirs_ready)
        return 1; /* it needs a look once the worker has made them */
    if (!p->initialized)
        return 0;
    for (int i = 0; i < p->n; i++) {
        const kl_kctr *c = &p->c[i];
        if (c->kill_at_ms || c->next_start_ms)
            return 0;
        if (c->spawning)
            continue; /* its pod needs a look once the worker is done */
        if (c->running ? c->pidfd < 0 || c->probed : !c->done)
            return 0;
    }
    return 1;
}

int kl_kpod_resting(const kl_kpod *p, const char *rv, int64_t now)
{
    if (p->settled)
        return 1;
    if (!p->idle || p->exited || (p->wake_ms && now >= p->wake_ms))
        return 0;
    if (!p->dirs_ready)
        return !kl_work_done(p->dirs);
    for (int i = 0; i < p->n; i++)
        if (p->c[i].spawning && kl_work_done(p->c[i].spawning))
            return 0;
    return !rv || !strcmp(rv, p->rv);
}

kl_kctr *kl_kpod_ctr(kl_kpod *p, const char *name)
{
    for (int i = 0; name && i < p->n; i++)
        if (!strcmp(p->c[i].name, name))
            return &p->c[i];
    return NULL;
}

const cJSON *kl_kpod_spec(const cJSON *pod, const kl_kctr *c)
{
    const cJSON *x;
    cJSON_ArrayForEach(
        x, kl_table_jsonpath(pod, c->init ? ".spec.initContainers" : ".spec.containers"))
    {
        if (!strcmp(kl_kpod_jstr0(x, "name"), c->name))
            return x;
    }
    return NULL;
}

/* The first child of pid, or -1 (from /proc/PID/task/PID/children). */
static pid_t first_child(pid_t pid)
{
    char path[64], buf[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    int child = -1;
    if (!fgets(buf, sizeof(buf), f) || sscanf(buf, "%d", &child) != 1)
        child = -1;
    fclose(f);
    return child;
}

static int is_bwrap(pid_t pid)
{
    char path[64], comm[32] = "";
    snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    int ok = fgets(comm, sizeof(comm), f) != NULL;
    fclose(f);
    return ok && !strncmp(comm, "bwrap", 5);
}

/* The container's own first process: below bwrap, and below the bwrap
 * that is init of the container's PID namespace. -1 when not (yet) there. */
static pid_t main_process(pid_t sandbox)
{
    pid_t p = sandbox;
    for (int depth = 0; depth < 4 && p > 0; depth++) {
        if (!is_bwrap(p))
            return p;
        p = first_child(p);
    }
    return -1;
}

void kl_kctr_kill(kl_kctr *c, int sig)
{
    if (c->running && c->spawning && c->pid <= 0) {
        if (c->pending_sig != SIGKILL)
            c->pending_sig = sig;
        return;
    }
    if (!c->running || c->pid <= 0)
        return;
    /* A graceful stop signals the container's first process alone, as a
     * runtime signals the container's PID 1: bwrap would die of the
     * signal and take the container down at once, with no time to finish
     * its work. */
    if (sig != SIGKILL) {
        pid_t m = main_process(c->pid);
        if (m > 0 && kill(m, sig) == 0)
            return;
    }
    /* SIGKILL, or no process found: the child called setsid(), so its pid
     * is the group of the whole sandbox, bwrap and everything it started. */
    kill(-c->pid, sig);
    kill(c->pid, sig);
}

void kl_kpod_kill(kl_kpod *p, int sig)
{
    for (int i = 0; i < p->n; i++)
        kl_kctr_kill(&p->c[i], sig);
}

int kl_kpod_any_running(const kl_kpod *p)
{
    for (int i = 0; i < p->n; i++)
        if (p->c[i].running)
            return 1;
    return 0;
}

void kl_kpod_log_path(const kl_kpod *p, const kl_kctr *c, int restart, char *buf, size_t n)
{
    snprintf(buf, n, "%s/logs/%s-%d.log", p->dir, c->name, restart);
}

void kl_kpod_term_path(const kl_kpod *p, const kl_kctr *c, char *buf, size_t n)
{
    snprintf(buf, n, "%s/term/%s", p->dir, c->name);
}
