/* kube_rate: token bucket on the monotonic clock. */
#include "kube_rate.h"

#include <time.h>

#include "kiln_err.h"
#include "ktime.h"

int kube_rate_init(kube_rate *r, double qps, int burst)
{
    pthread_mutex_init(&r->mu, NULL);
    r->qps = qps;
    r->burst = burst < 1 ? 1 : burst;
    r->tokens = r->burst;
    r->last_ms = ktime_mono_ms();
    return 0;
}

void kube_rate_release(kube_rate *r)
{
    pthread_mutex_destroy(&r->mu);
}

void kube_rate_set(kube_rate *r, double qps, int burst)
{
    pthread_mutex_lock(&r->mu);
    r->qps = qps;
    r->burst = burst < 1 ? 1 : burst;
    if (r->tokens > r->burst)
        r->tokens = r->burst;
    pthread_mutex_unlock(&r->mu);
}

int64_t kube_rate_reserve(kube_rate *r)
{
    pthread_mutex_lock(&r->mu);
    int64_t now = ktime_mono_ms();
    int64_t wait = 0;
    if (r->qps > 0) {
        r->tokens += (double)(now - r->last_ms) * r->qps / 1000.0;
        if (r->tokens > r->burst)
            r->tokens = r->burst;
        r->last_ms = now;
        r->tokens -= 1.0;
        if (r->tokens < 0)
            wait = (int64_t)(-r->tokens * 1000.0 / r->qps + 0.999);
    }
    pthread_mutex_unlock(&r->mu);
    return wait;
}

int kube_rate_try(kube_rate *r)
{
    pthread_mutex_lock(&r->mu);
    int ok = 1;
    if (r->qps > 0) {
        int64_t now = ktime_mono_ms();
        r->tokens += (double)(now - r->last_ms) * r->qps / 1000.0;
        if (r->tokens > r->burst)
            r->tokens = r->burst;
        r->last_ms = now;
        if (r->tokens >= 1.0)
            r->tokens -= 1.0;
        else
            ok = 0;
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

int kube_rate_wait(kube_rate *r, const atomic_int *stop)
{
    int64_t wait = kube_rate_reserve(r);
    int64_t until = ktime_mono_ms() + wait;
    for (;;) {
        if (stop && atomic_load(stop))
            return KILN_ECANCELED;
        int64_t left = until - ktime_mono_ms();
        if (left <= 0)
            return 0;
        if (left > 20)
            left = 20;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = left * 1000000L};
        nanosleep(&ts, NULL);
    }
}
