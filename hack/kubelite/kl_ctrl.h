/* kl_ctrl: kubelite's built-in controllers, run from the server tick:
 * the owner-reference garbage collector (background, foreground and
 * orphan propagation), namespace termination, and a minimal
 * Deployment -> ReplicaSet -> Pod controller (template hash, replicas,
 * readyReplicas, observedGeneration) enough for `helm install --wait`.
 *
 * Ownership: kl_ctrl_new()/kl_ctrl_free(); the api is borrowed. */
#ifndef KL_CTRL_H
#define KL_CTRL_H

#include "kiln_err.h"
#include "kl_api.h"

typedef struct kl_ctrl kl_ctrl;

int kl_ctrl_new(kl_api *api, kl_ctrl **out, kiln_error *err);
void kl_ctrl_free(kl_ctrl *c);

/* One pass of every controller (cheap when nothing changed), at most
 * every 100 ms however often it is called. Returns 0. */
int kl_ctrl_tick(void *ctx);

/* The pod-template-hash of a template: 8-10 characters from the
 * Kubernetes safe alphabet. Exposed for tests. */
void kl_ctrl_template_hash(const cJSON *tmpl, char *buf, size_t n);

#endif
