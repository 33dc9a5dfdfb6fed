/* kube_hist: a latency histogram for a Prometheus /metrics page, the kind
 * client-go and controller-runtime export (time a key waits in the work
 * queue, a reconcile, an API request), so that an operator can tell which
 * step a slow apply-to-pod spent its time in.
 *
 * Observing is lock-free (atomic counters), so workers call it on their
 * hot path. Buckets are fixed, in seconds: 1 ms to 30 s.
 *
 * Ownership: caller storage, zero-initialised (kube_hist h = {0}). */
#ifndef KUBE_HIST_H
#define KUBE_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#include "kbuf.h"

#define KUBE_HIST_BUCKETS 14

typedef struct kube_hist {
    _Atomic uint64_t n[KUBE_HIST_BUCKETS + 1]; /* per bucket, not cumulative; last: +Inf */
    _Atomic uint64_t sum_us;
} kube_hist;

/* The upper bound of bucket i (0 <= i < KUBE_HIST_BUCKETS), in seconds. */
double kube_hist_bound(int i);

/* Counts one observation of us microseconds (negative counts as 0). */
void kube_hist_observe_us(kube_hist *h, int64_t us);

/* Observations so far. */
uint64_t kube_hist_count(const kube_hist *h);

/* Appends the "# HELP" and "# TYPE" lines of histogram name. */
void kube_hist_text_header(kbuf *b, const char *name, const char *help);

/* Appends one series of name: cumulative name_bucket{labels,le="..."}
 * lines, then name_sum and name_count. labels is NULL or a label list
 * without braces, e.g. verb="POST". */
void kube_hist_text(const kube_hist *h, kbuf *b, const char *name, const char *labels);

#endif
