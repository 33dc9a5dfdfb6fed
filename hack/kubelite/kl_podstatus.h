/* kl_podstatus: what kubelite's kubelet reports to the API about a pod:
 * status.phase, conditions (Initialized, Ready, ContainersReady,
 * PodScheduled), initContainerStatuses and containerStatuses with state,
 * lastState, ready, started and restartCount, pod and host IPs; and the
 * kubelet's Events (Unhealthy, Killing, BackOff, ...) on the pod.
 *
 * Status is derived from the kl_kpod record alone and written only when it
 * differs from what the API holds, so calling it every tick is cheap.
 * Returned cJSON trees are new and owned by the caller. */
#ifndef KL_PODSTATUS_H
#define KL_PODSTATUS_H

#include <cjson/cJSON.h>

#include "kl_api.h"
#include "kl_kpod.h"

/* The `terminated` state of c's last run: exitCode, signal, reason,
 * message (termination log), startedAt, finishedAt, containerID. */
cJSON *kl_podstatus_terminated(const kl_kpod *p, const kl_kctr *c);

/* Builds the status of pod from p and writes it when it changed. Skips
 * the build while neither p's fields nor the pod's resourceVersion changed
 * since the last call (p->status_inputs). */
void kl_podstatus_write(kl_api *api, const cJSON *pod, kl_kpod *p);

/* Writes the status a scheduler gives a pod it cannot place: phase
 * Pending and PodScheduled False, reason Unschedulable, with msg; only
 * when the pod does not already say so. */
void kl_podstatus_unschedulable(kl_api *api, const cJSON *pod, const char *msg);

/* Records an Event on the pod, as the kubelet on node "kubelite". type is
 * "Normal" or "Warning"; c may be NULL (an event about the whole pod). The
 * same event again (same pod, container, reason and message) raises the
 * existing one's count. A failed write is ignored: events are best
 * effort, as in Kubernetes. */
void kl_podstatus_event(kl_api *api, const kl_kpod *p, const kl_kctr *c, const char *type,
                        const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

#endif
