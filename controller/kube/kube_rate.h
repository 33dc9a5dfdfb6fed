/* kube_rate: a thread-safe token bucket (client-side QPS/burst limits).
 *
 * The bucket starts full (burst tokens) and refills at qps tokens per
 * second up to burst. kube_rate_reserve() takes a token now or books the
 * next one and says how long to wait for it, so callers that cannot block
 * (the work queue) turn it into a delay, and callers that can block use
 * kube_rate_wait(). qps <= 0 means unlimited.
 * Storage: caller-owned (kube_rate_init / kube_rate_release). */
#ifndef KUBE_RATE_H
#define KUBE_RATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct kube_rate {
    pthread_mutex_t mu;
    double qps;
    double burst;
    double tokens;   /* may go negative: tokens already promised */
    int64_t last_ms; /* monotonic time of the last refill */
} kube_rate;

/* burst < 1 is clamped to 1. Returns 0. */
int kube_rate_init(kube_rate *r, double qps, int burst);
void kube_rate_release(kube_rate *r);

/* Changes the limits at run time (the caller's QPS/burst setting). */
void kube_rate_set(kube_rate *r, double qps, int burst);

/* Takes one token; returns the milliseconds to wait before using it (0 when
 * a token was available). */
int64_t kube_rate_reserve(kube_rate *r);

/* Takes a token only if one is available now: 1 if taken, 0 if not (and
 * nothing is booked). For callers that drop work when throttled. */
int kube_rate_try(kube_rate *r);

/* Takes a token and sleeps until it is due. Returns 0, or KILN_ECANCELED if
 * *stop became non-zero while waiting (checked every few milliseconds).
 * stop may be NULL. */
int kube_rate_wait(kube_rate *r, const atomic_int *stop);

#endif
