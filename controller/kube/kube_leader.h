/* kube_leader: leader election on a coordination.k8s.io/v1 Lease.
 *
 * Mirrors client-go's LeaseLock elector: every retry period (with jitter)
 * the candidate GETs the Lease; a missing Lease is created, one whose
 * record has not changed for leaseDurationSeconds (measured on our own
 * monotonic clock since we last saw it change, never trusting the remote
 * renewTime) is taken over with a PUT carrying the resourceVersion read
 * (409: someone else won). The leader renews every retry period; when no
 * renewal succeeded for the renew deadline, or another holder shows up, it
 * stops leading at once and on_stopped runs before anything else. On stop
 * a leader releases the Lease (empty holder, leaseDurationSeconds 1) so a
 * successor takes over immediately. Defaults: lease 15 s, renew deadline
 * 10 s, retry 2 s. The identity is POD_NAME, else the hostname, plus "_"
 * and a random suffix. Callbacks run on the elector thread.
 * Ownership: kube_leader_new/free; the client is borrowed. */
#ifndef KUBE_LEADER_H
#define KUBE_LEADER_H

#include <stdint.h>

#include "kube_client.h"

typedef struct kube_leader kube_leader;

typedef struct kube_leader_opts {
    const char *name;          /* Lease name (copied) */
    const char *ns;            /* Lease namespace (copied) */
    const char *identity;      /* NULL: POD_NAME or hostname, plus a random suffix */
    int64_t lease_ms;          /* 0 -> 15000 */
    int64_t renew_deadline_ms; /* 0 -> 10000 */
    int64_t retry_ms;          /* 0 -> 2000 */
    int no_release;            /* 1: keep the Lease on stop (successor waits) */
    void (*on_started)(void *ud);
    void (*on_stopped)(void *ud);
    void (*on_new_leader)(void *ud, const char *identity); /* holder changed */
    void *ud;
} kube_leader_opts;

/* KILN_EINVAL when timings are inconsistent (renew deadline must exceed
 * 1.2 x retry and be below the lease duration). */
int kube_leader_new(kube_client *c, const kube_leader_opts *o, kube_leader **out, kiln_error *err);
int kube_leader_start(kube_leader *l);
/* Stops the elector; a leader calls on_stopped and releases the Lease. */
void kube_leader_stop(kube_leader *l);
void kube_leader_free(kube_leader *l);

int kube_leader_is_leader(kube_leader *l);
const char *kube_leader_identity(const kube_leader *l); /* borrowed */

#endif
