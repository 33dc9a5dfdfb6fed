/* kl_cpu: the CPU weight and limit kubelite's kubelet gives each pod, the
 * way a kubelet does with the cgroupfs driver: a cgroup per kubelite
 * (kubepods, weighed as the node's cores) holding besteffort (weight 2 in
 * all), burstable (the sum of its pods' CPU requests) and the Guaranteed
 * pods; each pod's cgroup weighs its CPU requests (millicores * 1024 /
 * 1000) and, when every container has a CPU limit, is capped at their sum
 * by the CFS quota. A thousand BestEffort pods then weigh together what
 * one pod does, and cannot starve the API server running beside them.
 *
 * It uses the cgroup v1 cpu controller (/sys/fs/cgroup/cpu). Where none
 * can be written (no privilege, a unified-only hierarchy), each container
 * takes instead the niceness whose scheduler weight comes closest to its
 * pod's (kl_kpod.nice), its session's autogroup too (kl_sandbox).
 *
 * The cgroup files are written on the kubelet's worker thread (kl_worker:
 * a mkdir under the kernel's cgroup lock can take milliseconds, and in a
 * burst of pods these writes took 7% of the API server's thread); the
 * decisions, and the burstable group's running total, stay on the
 * caller's thread.
 *
 * Ownership: kl_cpu_new()/kl_cpu_free(); a pod's cgroup lives from
 * kl_cpu_pod_add() to kl_cpu_pod_remove(), called once its processes are
 * gone. kl_cpu_free() after the worker has run its queue. */
#ifndef KL_CPU_H
#define KL_CPU_H

#include <sys/types.h>

#include <cjson/cJSON.h>

#include "kl_kpod.h"
#include "kl_worker.h"

typedef struct kl_cpu kl_cpu;

/* Creates this process's pod hierarchy, or settles for niceness (never
 * fails but for memory: NULL). Removes the hierarchies of kubelites that
 * are no longer running. */
kl_cpu *kl_cpu_new(void);
/* Removes the hierarchy (the pods' cgroups must be removed already). */
void kl_cpu_free(kl_cpu *cpu);
/* "cgroup" or "niceness", and why when niceness (for the log). */
const char *kl_cpu_mode(const kl_cpu *cpu, const char **why);

/* The worker that writes the cgroup files from now on, in the order
 * asked (NULL: written at once on the calling thread). */
void kl_cpu_use_worker(kl_cpu *cpu, kl_worker *w);

/* Sets p's QoS weight: p->nice always, and p->cpu_cg, the pod's cgroup
 * with its weight and quota, when cgroups are in use; the cgroup is made
 * on the worker, before any container start queued after this call. */
void kl_cpu_pod_add(kl_cpu *cpu, const cJSON *pod, kl_kpod *p);
void kl_cpu_pod_remove(kl_cpu *cpu, kl_kpod *p);

/* Moves process pid and the children it has forked into the cpu cgroup
 * cg (a pod's cpu_cg). pid is a bwrap holding at --block-fd: its sandbox
 * child forks nothing before it is let go, and forks into the cgroup
 * after. Called once bwrap has exec'd: a child still sharing this
 * process's memory (vfork) must not be slowed down to a BestEffort pod's
 * weight while its parent waits for it. Touches no kubelet state, so it
 * may run on another thread (the kernel can keep it there for a grace
 * period). Returns -1 when pid could not be moved (the cgroup could not be
 * made), else 0. */
int kl_cpu_enter(const char *cg, pid_t pid);

#endif
