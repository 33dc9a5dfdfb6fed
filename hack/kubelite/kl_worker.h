/* kl_worker: one thread for the kubelet's system calls that can block
 * for milliseconds, so the API server's thread never waits on them:
 * creating a new pod's directories (on ext4, a directory's inode
 * allocation can scan inode tables for a millisecond or more), making and
 * removing pods' cpu cgroups (kl_cpu) and moving a container into its
 * cgroup (the kernel waits for an RCU grace period when one process moves
 * another).
 *
 * A work item is a function and its argument; the worker calls it, then
 * frees the argument. The thread that queued an item either forgets it or
 * keeps a handle to ask whether it ran, and releases the handle when done
 * with it, even before the item ran. Work is done in the order queued.
 *
 * The thread runs KL_WORKER_NICE steps of niceness below the process
 * (knice.h), and the containers it starts inherit that (kl_sandbox). With the
 * kernel's autogroups (the default on most distributions) a process
 * started in its own session, this server included, weighs as one on the
 * CPU whatever its thread count: at the same niceness this thread's
 * container starts (forks, cgroup moves) took up to half of the server's
 * share while a burst of pods started, and the API's requests, the ones
 * that create those pods among them, waited behind them. Pods yield to
 * the API server instead. controller_bench (1,000 jobs at once) met its
 * apply-to-first-pod p99 of 100 ms in 3 of 10 runs before and in 46 of 57
 * with this thread at nice 10, over the same hours (at nice 5, 2 of 8);
 * in alternating runs, 6 of 13 before and 11 of 13 after, with the same
 * time to all Succeeded.
 *
 * Ownership: kl_worker_new()/kl_worker_free(); a kl_work handle is owned
 * by whoever asked for one until kl_work_release(). */
#ifndef KL_WORKER_H
#define KL_WORKER_H

#include "kiln_err.h"

/* How much nicer than the process the worker's thread is. */
#define KL_WORKER_NICE 10

typedef struct kl_worker kl_worker;
typedef struct kl_work kl_work;
/* Returns the item's result (kl_work_result). */
typedef long (*kl_work_fn)(void *arg);

int kl_worker_new(kl_worker **out, kiln_error *err);
/* Runs the work still queued, then stops and joins the thread. */
void kl_worker_free(kl_worker *w);

/* Queues fn(arg); arg (malloc'd, may be NULL) is the worker's from now on
 * and freed after fn returns. With want_handle, returns a handle for
 * kl_work_done(), or NULL when there is no memory for one: then fn has
 * not run and arg is still the caller's. Without, returns NULL and runs
 * fn(arg) on the calling thread when the item cannot be allocated, so the
 * work is never lost. With w NULL, fn(arg) runs at once on the calling
 * thread and the handle is already done. */
kl_work *kl_worker_run(kl_worker *w, kl_work_fn fn, void *arg, int want_handle);
/* 1 once the item's function returned. A NULL handle counts as done. */
int kl_work_done(kl_work *wk);
/* Blocks until the item's function returned (for the rare caller that
 * cannot go on without it, such as stopping a pod). */
void kl_work_wait(kl_work *wk);
/* What the function returned; 0 until it did. */
long kl_work_result(kl_work *wk);
void kl_work_release(kl_work *wk);

#endif
