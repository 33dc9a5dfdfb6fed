/* kl_kpod: the kubelet's own record of a pod it runs and of each of its
 * containers (init containers first, then app containers): process ids,
 * restart counts and back-off, probe states, termination details. The API
 * object stays the source of the spec; these records hold what only the
 * node knows. Shared by the kubelet modules (kl_kubelet, kl_sandbox,
 * kl_podstatus); nothing here talks to the API or starts processes.
 *
 * Ownership: kl_kpod_new()/kl_kpod_free(); last_state inside a container
 * record is owned by the record. */
#ifndef KL_KPOD_H
#define KL_KPOD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "kl_probe.h"
#include "kl_worker.h"
#include "ktime.h"

#define KL_KPOD_MAX_CTR 16

typedef struct kl_kctr {
    char name[128];
    int init; /* an init container */
    pid_t pid;
    int started; /* ever started */
    int running;
    int done; /* terminated and will not restart */
    int restarts;
    int exit_code, signal;
    char reason[32];
    char started_at[KTIME_BUFSZ], finished_at[KTIME_BUFSZ];
    cJSON *last_state; /* previous termination, owned */
    int64_t next_start_ms;
    int backoff_ms;
    int ready;      /* readiness verdict */
    int startup_ok; /* startup probe passed, or there is none */
    kl_probe startup, liveness, readiness;
    int64_t kill_at_ms; /* a probe-failure kill in progress: SIGKILL at */
    int64_t mem_limit;
    char cg[512];      /* memory cgroup of the running instance, "" if none */
    kl_work *spawning; /* the worker is starting this instance: pid is 0 until then */
    int pending_sig;   /* a signal asked for meanwhile, sent once the pid is known */
    int pidfd;         /* readable once the process exits (kl_exits), -1: not watched */
    int probed;        /* an app container with a probe: checked on every pass */
} kl_kctr;

typedef struct kl_kpod {
    char uid[64], ns[254], name[254];
    char ip[32];
    char dir[4096];
    char start_time[KTIME_BUFSZ];
    int n; /* containers in c[], init containers first */
    int n_init;
    kl_kctr c[KL_KPOD_MAX_CTR];
    int initialized;     /* every init container succeeded */
    int init_failed;     /* an init container failed and will not be retried */
    int64_t deadline_ms; /* activeDeadlineSeconds, 0: none */
    int deadline_hit;
    int64_t kill_at_ms; /* graceful deletion: SIGKILL at */
    int terminating;
    int gone;               /* removed from the store */
    int settled;            /* terminal phase written, nothing runs: unchanged until deleted */
    int nice;               /* the pod's CPU weight as a niceness (kl_cpu_pod_add) */
    char cpu_cg[400];       /* the pod's cpu cgroup, "" when weights are niceness */
    kl_work *dirs;          /* its directories being created (kl_sandbox_prepare) */
    int dirs_ready;         /* they exist and its volumes are filled */
    uint64_t status_inputs; /* what its status was last built from (kl_podstatus) */
    unsigned pass;          /* the kubelet's last pass that looked at it */
    int idle;               /* needs no look until a write, an exit or wake_ms */
    int exited;             /* a watched process exited since its last sync (kl_exits) */
    int64_t wake_ms;        /* when an idle pod needs a look anyway (its deadline), 0: never */
    char rv[24];            /* its resourceVersion after its last sync */
    int64_t cpu_burstable;  /* its shares counted in the burstable group */
} kl_kpod;

/* A record for pod (its uid, name, containers and limits); dir is the
 * kubelet's data directory, ip the pod IP. Creates no files. Returns 0 or
 * KILN_ENOMEM. */
int kl_kpod_new(const cJSON *pod, const char *data_dir, const char *ip, kl_kpod **out);
/* Ends probe checks in flight, removes leftover cgroups, frees. Processes,
 * and starts still on the worker (kl_sandbox_abandon), are the caller's to
 * stop first. */
void kl_kpod_free(kl_kpod *p);

/* 1 when p needs nothing until one of its processes exits, the worker
 * has made its directories or started a process, its record is written or
 * wake_ms comes: its directories are being made, or every container is
 * starting, runs (watched, without probes and with no kill pending) or is
 * done for good; and nothing waits to restart or is being stopped. Most
 * of a burst's pods are such, and syncing each of them on every kubelet
 * pass took the API server's thread tens of milliseconds a pass. */
int kl_kpod_idle(const kl_kpod *p);
/* 1 when a kubelet pass can skip p: settled, or idle (as of its last
 * sync) with nothing new since: no exit, no finished work on the worker,
 * wake_ms not come, and its record at rv (NULL: not looked at). */
int kl_kpod_resting(const kl_kpod *p, const char *rv, int64_t now);

/* The container record named name, or NULL (borrowed). */
kl_kctr *kl_kpod_ctr(kl_kpod *p, const char *name);
/* The container's spec in pod (containers or initContainers), or NULL. */
const cJSON *kl_kpod_spec(const cJSON *pod, const kl_kctr *c);

/* Sends sig to the container's process group; no-op when not running. */
void kl_kctr_kill(kl_kctr *c, int sig);
/* kl_kctr_kill() for every container of p. */
void kl_kpod_kill(kl_kpod *p, int sig);
/* 1 while any container of p runs. */
int kl_kpod_any_running(const kl_kpod *p);

/* Log file of the container's instance number restart. */
void kl_kpod_log_path(const kl_kpod *p, const kl_kctr *c, int restart, char *buf, size_t n);
/* The file bound at the container's /dev/termination-log. */
void kl_kpod_term_path(const kl_kpod *p, const kl_kctr *c, char *buf, size_t n);

/* JSON helpers shared by the kubelet modules: the string member k of o,
 * or NULL (kl_kpod_jstr) or "" (kl_kpod_jstr0) when absent. */
const char *kl_kpod_jstr(const cJSON *o, const char *k);
const char *kl_kpod_jstr0(const cJSON *o, const char *k);

#endif
