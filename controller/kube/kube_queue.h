/* kube_queue: the controller work queue (keys, not events).
 *
 * Semantics follow client-go's rate-limited work queue:
 * - A key ("ns/name") is queued at most once: adding a queued key is a no-op
 *   (the dirty set).
 * - A key handed out by kube_queue_get() is "processing" until
 *   kube_queue_done(); adding it meanwhile marks it dirty and it is queued
 *   again only at done(), so no two workers ever hold the same key.
 * - kube_queue_add_after() queues a key once a delay has passed (requeue
 *   after); kube_queue_add_rate_limited() uses the per-key exponential
 *   back-off (base 5 ms doubling to 1000 s by default) combined, by taking
 *   the larger delay, with an overall token bucket (10 qps, burst 100).
 *   kube_queue_forget() resets a key's back-off after a success.
 * - kube_queue_shutdown() wakes every waiter; get() then returns
 *   KILN_ECANCELED once nothing more is handed out.
 * Workers: kube_queue_start() runs N threads calling a reconcile function
 * and maps its result to forget / requeue-after / back-off.
 * All functions are thread-safe. Ownership: kube_queue_new/free; keys are
 * copied in; the key returned by get() is owned by the caller (free it). */
#ifndef KUBE_QUEUE_H
#define KUBE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "kube_hist.h"

typedef struct kube_queue kube_queue;

typedef struct kube_queue_opts {
    int64_t base_delay_ms; /* per-key back-off start; 0 -> 5 */
    int64_t max_delay_ms;  /* per-key back-off cap; 0 -> 1,000,000 */
    double qps;            /* overall bucket; 0 -> 10, < 0 -> unlimited */
    int burst;             /* 0 -> 100 */
} kube_queue_opts;

/* opts may be NULL (all defaults). Returns 0 or KILN_ENOMEM. */
int kube_queue_new(const kube_queue_opts *opts, kube_queue **out);

/* Shuts down, joins the workers started by kube_queue_start, frees. */
void kube_queue_free(kube_queue *q);

int kube_queue_add(kube_queue *q, const char *key);
int kube_queue_add_after(kube_queue *q, const char *key, int64_t delay_ms);
int kube_queue_add_rate_limited(kube_queue *q, const char *key);
void kube_queue_forget(kube_queue *q, const char *key);
int kube_queue_num_requeues(kube_queue *q, const char *key);

/* Blocks until a key is ready; *key_out is malloc'd (caller frees) and must
 * be passed to kube_queue_done() when processed. Returns 0 or
 * KILN_ECANCELED after shutdown. */
int kube_queue_get(kube_queue *q, char **key_out);
void kube_queue_done(kube_queue *q, const char *key);

/* Keys ready now (not counting delayed or processing ones). */
size_t kube_queue_len(kube_queue *q);

void kube_queue_shutdown(kube_queue *q);

/* Latencies for /metrics: how long ready keys waited for a worker, and how
 * long the workers' reconcile function took. Valid until kube_queue_free. */
const kube_hist *kube_queue_wait_hist(const kube_queue *q);
const kube_hist *kube_queue_work_hist(const kube_queue *q);
int kube_queue_shutting_down(kube_queue *q);

/* ---- workers ---- */

enum kube_result {
    KUBE_RC_OK = 0,        /* done: forget the key's back-off */
    KUBE_RC_REQUEUE_AFTER, /* poll again after *requeue_ms, back-off forgotten */
    KUBE_RC_ERROR,         /* retry with the key's exponential back-off */
    KUBE_RC_TERMINAL,      /* give up on this key until it changes again */
};

/* Returns a kube_result; sets *requeue_ms for KUBE_RC_REQUEUE_AFTER. */
typedef int (*kube_reconcile_fn)(void *ud, const char *key, int64_t *requeue_ms);

/* Starts n worker threads (once per queue). Returns 0, KILN_EINVAL if
 * already started, or KILN_ENOMEM / KILN_EINTERNAL if a thread failed to
 * start (those that started are shut down and joined). */
int kube_queue_start(kube_queue *q, int n, kube_reconcile_fn fn, void *ud);

/* Shuts the queue down and joins the workers (each finishes its current
 * key first). Safe to call more than once. */
void kube_queue_stop(kube_queue *q);

#endif
