/* kl_exits: which pods have a container process that exited, without a
 * waitpid per running container on every kubelet pass. Each watched
 * process has a pidfd (it turns readable when the process exits, reaped
 * or not) in one epoll set whose entries point at the pod.
 *
 * Ownership: kl_exits_new()/kl_exits_free(). c->pidfd belongs to the set
 * while it is >= 0: kl_exits_unwatch() once the process is reaped, and
 * always before the pod's record is freed (closing is not enough: a pidfd
 * that a vforked child still shares would stay in the set, pointing at
 * the freed pod). */
#ifndef KL_EXITS_H
#define KL_EXITS_H

#include "kl_kpod.h"

typedef struct kl_exits kl_exits;

/* Returns 0, or -1 (errno) when no epoll set can be made. */
int kl_exits_new(kl_exits **out);
void kl_exits_free(kl_exits *x);

/* Watches c's process (c->pid > 0) on behalf of p and sets c->pidfd.
 * 0, or -1 when it cannot (x NULL, no pidfds on this kernel, no file
 * descriptors left): c->pidfd stays -1 and the pod has to be polled. */
int kl_exits_watch(kl_exits *x, kl_kpod *p, kl_kctr *c);

/* Stops watching c, closes c->pidfd and sets it to -1; no-op when -1. */
void kl_exits_unwatch(kl_exits *x, kl_kctr *c);

/* Sets p->exited on each pod with a watched process that has exited. */
void kl_exits_collect(kl_exits *x);

#endif
