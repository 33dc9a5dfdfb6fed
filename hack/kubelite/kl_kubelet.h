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
void kl_kubelet_tick(void *ctx);

#endif
