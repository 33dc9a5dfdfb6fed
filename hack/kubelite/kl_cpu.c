/* kl_cpu: pods' CPU weights and limits, by cgroup or by niceness (see
 * kl_cpu.h). */
#include "kl_cpu.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kl_table.h"
#include "kquantity.h"

#define CPU_MOUNT     "/sys/fs/cgroup/cpu"
#define CFS_PERIOD_US 100000

struct kl_cpu {
    char root[256];           /* CPU_MOUNT/kubelite-<pid>, "" when weights are niceness */
    char why[160];            /* why niceness */
    int64_t burstable_shares; /* its pods' together */
    kl_worker *worker;        /* where the cgroup files are written; NULL: here */
};

/* A change to the cgroup files, made on the worker. Items run in the
 * order queued, so a pod's cgroup exists before the start of its first
 * container (queued later) and is removed after its last, and the
 * burstable group's weight ends at the last total computed. */
typedef struct cg_job {
    char pod_cg[sizeof(((kl_kpod *)0)->cpu_cg)]; /* to make or remove, "" none */
    int remove;
    int64_t shares;   /* the pod's cpu.shares */
    int64_t quota_us; /* its CFS quota per CFS_PERIOD_US, 0: none */
    char burstable[300]; /* the burstable group to weigh anew, "" none */
    int64_t burstable_shares;
} cg_job;

enum qos { QOS_BEST_EFFORT, QOS_BURSTABLE, QOS_GUARANTEED };

static int write_num(const char *dir, const char *file, long long v)
{
    char path[600], s[32];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int n = snprintf(s, sizeof(s), "%lld", v);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t w = write(fd, s, (size_t)n);
    close(fd);
    return w == n ? 0 : -1;
}

static int make_group(const char *dir, long long shares)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return -1;
    return write_num(dir, "cpu.shares", shares);
}

/* Removes dir and the cgroups under it, deepest first (rmdir is all a
 * cgroup takes once it has no process). */
static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_type != DT_DIR || e->d_name[0] == '.')
                continue;
            char sub[1024];
            snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name);
            remove_tree(sub);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* Hierarchies left by kubelites that died without removing theirs. */
static void remove_stale(void)
{
    DIR *d = opendir(CPU_MOUNT);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid;
        char tail;
        if (sscanf(e->d_name, "kubelite-%ld%c", &pid, &tail) != 1 || pid <= 0)
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char dir[512];
        snprintf(dir, sizeof(dir), "%s/%s", CPU_MOUNT, e->d_name);
        remove_tree(dir);
    }
    closedir(d);
}

kl_cpu *kl_cpu_new(void)
{
    kl_cpu *cpu = calloc(1, sizeof(*cpu));
    if (!cpu)
        return NULL;
    if (access(CPU_MOUNT "/cpu.shares", F_OK) != 0) {
        snprintf(cpu->why, sizeof(cpu->why), "no cgroup v1 cpu controller at %s", CPU_MOUNT);
        return cpu;
    }
    remove_stale();
    char root[256], sub[300];
    snprintf(root, sizeof(root), "%s/kubelite-%ld", CPU_MOUNT, (long)getpid());
    /* The node's cores, as a kubelet weighs kubepods by what it can allocate. */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int ok = make_group(root, (cores > 0 ? cores : 1) * 1024) == 0;
    snprintf(sub, sizeof(sub), "%s/besteffort", root);
    ok = ok && make_group(sub, 2) == 0;
    snprintf(sub, sizeof(sub), "%s/burstable", root);
    ok = ok && make_group(sub, 2) == 0;
    if (!ok) {
        snprintf(cpu->why, sizeof(cpu->why), "cannot create %s: %s", root, strerror(errno));
        remove_tree(root);
        return cpu;
    }
    snprintf(cpu->root, sizeof(cpu->root), "%s", root);
    return cpu;
}

void kl_cpu_free(kl_cpu *cpu)
{
    if (!cpu)
        return;
    if (cpu->root[0])
        remove_tree(cpu->root);
    free(cpu);
}

const char *kl_cpu_mode(const kl_cpu *cpu, const char **why)
{
    *why = cpu->root[0] ? cpu->root : cpu->why;
    return cpu->root[0] ? "cgroup" : "niceness";
}

/* ---- a pod's QoS class and weight ---- */

static int64_t milli_of(const cJSON *res, const char *k)
{
    const char *s = kl_kpod_jstr(res, k);
    kquantity q;
    return s && kquantity_parse(s, &q, NULL) == 0 ? q.milli : -1;
}

typedef struct pod_cpu {
    enum qos qos;
    int64_t request_milli; /* what the pod asks for, as a kubelet counts it */
    int64_t limit_milli;   /* 0: unlimited (some container has no limit) */
} pod_cpu;

/* Requests default to limits. The pod's request is that of its app
 * containers together, or of its largest init container if more (they run
 * one at a time, before them); so is its limit. Guaranteed: every
 * container's CPU and memory limits are set and equal to its requests. */
static pod_cpu classify(const cJSON *pod)
{
    pod_cpu pc = {.qos = QOS_GUARANTEED};
    int any = 0, unlimited = 0;
    int64_t app_req = 0, init_req = 0, app_lim = 0, init_lim = 0;
    static const char *const lists[] = {".spec.initContainers", ".spec.containers"};
    for (int l = 0; l < 2; l++) {
        const cJSON *c;
        cJSON_ArrayForEach(c, kl_table_jsonpath(pod, lists[l]))
        {
            const cJSON *res = cJSON_GetObjectItemCaseSensitive(c, "resources");
            const cJSON *req = cJSON_GetObjectItemCaseSensitive(res, "requests");
            const cJSON *lim = cJSON_GetObjectItemCaseSensitive(res, "limits");
            any |= cJSON_GetArraySize(req) > 0 || cJSON_GetArraySize(lim) > 0;
            int64_t cl = milli_of(lim, "cpu"), ml = milli_of(lim, "memory");
            int64_t cr = milli_of(req, "cpu"), mr = milli_of(req, "memory");
            if (cr < 0)
                cr = cl;
            if (mr < 0)
                mr = ml;
            if (cl <= 0 || ml <= 0 || cr != cl || mr != ml)
                pc.qos = QOS_BURSTABLE;
            if (cl <= 0)
                unlimited = 1;
            int64_t r = cr > 0 ? cr : 0, m = cl > 0 ? cl : 0;
            if (l == 0) {
                init_req = r > init_req ? r : init_req;
                init_lim = m > init_lim ? m : init_lim;
            } else {
                app_req += r;
                app_lim += m;
            }
        }
    }
    if (!any)
        pc.qos = QOS_BEST_EFFORT;
    pc.request_milli = app_req > init_req ? app_req : init_req;
    pc.limit_milli = unlimited ? 0 : (app_lim > init_lim ? app_lim : init_lim);
    return pc;
}

/* cpu.shares from millicores, as a kubelet converts them (at least 2). */
static int64_t shares_of(const pod_cpu *pc)
{
    int64_t s = pc->qos == QOS_BEST_EFFORT ? 2 : pc->request_milli * 1024 / 1000;
    return s < 2 ? 2 : s;
}

/* The niceness whose weight comes closest to shares, never above a
 * control-plane thread's (nice 0, 1024). */
static int nice_of(int64_t shares)
{
    static const int weight[20] = {1024, 820, 655, 526, 423, 335, 272, 215, 172, 137,
                                   110,  87,  70,  56,  45,  36,  29,  23,  18,  15};
    int best = 19;
    for (int n = 19; n >= 0; n--)
        if (llabs(weight[n] - shares) < llabs(weight[best] - shares))
            best = n;
    return best;
}

static long run_cg_job(void *arg)
{
    cg_job *j = arg;
    if (j->pod_cg[0] && j->remove) {
        rmdir(j->pod_cg);
    } else if (j->pod_cg[0] &&
               (make_group(j->pod_cg, j->shares) != 0 ||
                (j->quota_us > 0 &&
                 (write_num(j->pod_cg, "cpu.cfs_period_us", CFS_PERIOD_US) != 0 ||
                  write_num(j->pod_cg, "cpu.cfs_quota_us", j->quota_us) != 0)))) {
        rmdir(j->pod_cg); /* kl_cpu_enter then fails: the pod runs by its niceness */
    }
    if (j->burstable[0])
        write_num(j->burstable, "cpu.shares", j->burstable_shares > 2 ? j->burstable_shares : 2);
    return 0;
}

/* Counts shares in (or, negative, out of) the burstable group's weight,
 * to be written by job j. */
static void burstable_add(kl_cpu *cpu, int64_t shares, cg_job *j)
{
    cpu->burstable_shares += shares;
    snprintf(j->burstable, sizeof(j->burstable), "%s/burstable", cpu->root);
    j->burstable_shares = cpu->burstable_shares;
}

void kl_cpu_use_worker(kl_cpu *cpu, kl_worker *w)
{
    if (cpu)
        cpu->worker = w;
}

void kl_cpu_pod_add(kl_cpu *cpu, const cJSON *pod, kl_kpod *p)
{
    pod_cpu pc = classify(pod);
    int64_t shares = shares_of(&pc);
    p->nice = nice_of(shares);
    p->cpu_cg[0] = 0;
    p->cpu_burstable = 0;
    if (!cpu || !cpu->root[0])
        return;
    cg_job *j = calloc(1, sizeof(*j));
    if (!j)
        return; /* this pod falls back to its niceness */
    static const char *const parent[] = {"/besteffort", "/burstable", ""};
    snprintf(p->cpu_cg, sizeof(p->cpu_cg), "%s%s/pod%s", cpu->root, parent[pc.qos], p->uid);
    memcpy(j->pod_cg, p->cpu_cg, sizeof(j->pod_cg));
    j->shares = shares;
    if (pc.limit_milli > 0) {
        int64_t q = pc.limit_milli * CFS_PERIOD_US / 1000;
        j->quota_us = q < 1000 ? 1000 : q;
    }
    if (pc.qos == QOS_BURSTABLE) {
        p->cpu_burstable = shares;
        burstable_add(cpu, shares, j);
    }
    kl_worker_run(cpu->worker, run_cg_job, j, 0);
}

void kl_cpu_pod_remove(kl_cpu *cpu, kl_kpod *p)
{
    if (!p->cpu_cg[0])
        return;
    cg_job *j = calloc(1, sizeof(*j));
    if (j) {
        memcpy(j->pod_cg, p->cpu_cg, sizeof(j->pod_cg));
        j->remove = 1;
        if (cpu && p->cpu_burstable)
            burstable_add(cpu, -p->cpu_burstable, j);
        kl_worker_run(cpu ? cpu->worker : NULL, run_cg_job, j, 0);
    }
    p->cpu_cg[0] = 0;
    p->cpu_burstable = 0;
}

/* Through "tasks", one thread at a time: moving a whole process through
 * cgroup.procs takes a lock whose writer waits for an RCU grace period,
 * up to milliseconds on a busy machine, on the API server's thread. Both
 * bwrap and the child it has forked are single-threaded while it holds. */
int kl_cpu_enter(const char *cg, pid_t pid)
{
    if (!cg[0] || pid <= 0)
        return -1;
    if (write_num(cg, "tasks", pid) != 0)
        return -1;
    char f[96], buf[256];
    snprintf(f, sizeof(f), "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *fp = fopen(f, "re");
    if (!fp)
        return 0;
    if (fgets(buf, sizeof(buf), fp)) {
        char *s = buf, *end;
        for (long c = strtol(s, &end, 10); end != s; c = strtol(s, &end, 10)) {
            write_num(cg, "tasks", c);
            s = end;
        }
    }
    fclose(fp);
    return 0;
}
