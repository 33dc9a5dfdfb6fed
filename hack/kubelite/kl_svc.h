/* kl_svc: Services for kubelite's kubelet: maintains an Endpoints object
 * per Service with a selector (ready pods in addresses, unready ones in
 * notReadyAddresses) and runs a userspace TCP forwarder on each Service's
 * cluster IP (a loopback address) and port, round-robin over the ready
 * endpoints.
 *
 * kl_svc_sync() runs in the service thread; forwarders run in their own
 * threads and only read the backend table under a mutex.
 * Ownership: kl_svc_new()/kl_svc_free() (stops every forwarder). */
#ifndef KL_SVC_H
#define KL_SVC_H

#include "kiln_err.h"
#include "kl_api.h"

typedef struct kl_svc kl_svc;

int kl_svc_new(kl_api *api, kl_svc **out, kiln_error *err);
void kl_svc_free(kl_svc *s);
void kl_svc_sync(kl_svc *s);

#endif
