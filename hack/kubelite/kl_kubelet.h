/* kl_kubelet: kubelite's process-based kubelet. It registers the Node
 * "kubelite", runs each pod scheduled to it as local processes inside a
 * bubblewrap sandbox (own PID namespace, read-only host /usr, volumes bound
 * at their mount paths, /dev/termination-log), maps images to local
 * binaries (--images), gives every pod its own loopback address, keeps
 * container statuses and restart policies as a kubelet does, serves
 * pods/log, and maintains Endpoints plus a userspace forwarder per Service.
 *
 * Runs from the server tick in the service thread; children are reaped
 * with waitpid(WNOHANG). Ownership: kl_kubelet_new()/kl_kubelet_free()
 * (which kills every container). */
#ifndef KL_KUBELET_H
#define KL_KUBELET_H

#include "kiln_err.h"
#include "kl_api.h"

typedef struct kl_kubelet kl_kubelet;

int kl_kubelet_new(kl_api *api, const char *data_dir, const char *images_file,
                   kl_kubelet **out, kiln_error *err);
void kl_kubelet_free(kl_kubelet *k);
/* One sync pass over the node's pods. New pods are started for at most
 * KL_KUBELET_START_BUDGET_MS per call (each costs a sandbox and a process
 * launch, several ms on a loaded machine), so a burst of pods never holds
 * the API server's thread for long; returns 1 when some were left for the
 * next call, else 0. */
#define KL_KUBELET_START_BUDGET_MS 10
/* How often a pass looks at every pod, not only the ones written since the
 * last pass and those with something to do. */
#define KL_KUBELET_ALL_PODS_MS 1000
int kl_kubelet_tick(void *ctx);

#endif
