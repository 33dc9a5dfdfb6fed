/* nn_threads: persistent worker threads for the engine's data-parallel
 * training step (see nn_threads.h). */
#include "nn_threads.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_err.h"

/* The spin loops below poll without PAUSE: in a virtual machine a PAUSE
 * loop can trap to the hypervisor (pause-loop exiting), which then runs
 * someone else on the vCPU. On the 2-vCPU EPYC VM Kiln is benchmarked on,
 * PAUSE made the two-thread MLP epoch 3x slower than plain polling. */
#define cpu_relax() atomic_signal_fence(memory_order_seq_cst)

/* Polling rounds (roughly 20-100 microseconds) before a waiting thread
 * sleeps (worker) or yields (caller): longer than the gap between two
 * jobs of one batch or between batches, shorter than an evaluation pass
 * between epochs. */
#define SPIN_ROUNDS 20000

typedef struct worker {
    struct nn_threads *pool;
    int tid;
} worker;

struct nn_threads {
    int n;
    pthread_t *th;
    worker *wk;
    nn_threads_fn fn;
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* The polled words get cache lines of their own, so polling does not
     * slow down writes to the mutex or to each other. */
    _Alignas(64) atomic_uint gen;     /* bumped once per job */
    _Alignas(64) atomic_int pending;  /* workers still running the current job */
    _Alignas(64) atomic_int sleepers; /* workers in (or entering) cond_wait */
    atomic_int stop;
};

static void *worker_main(void *a)
{
    worker *w = a;
    nn_threads *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen &&
               !atomic_load_explicit(&p->stop, memory_order_acquire)) {
            if (++spins < SPIN_ROUNDS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            /* sleepers before gen, the caller gen before sleepers (both
             * seq_cst): one of us sees the other's write, so no wakeup is
             * lost */
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop))
            return NULL;
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        p->fn(p->arg, w->tid, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
}

int nn_threads_new(int n, nn_threads **out)
{
    *out = NULL;
    if (n < 1)
        n = 1;
    /* aligned_alloc: the struct has 64-byte aligned members */
    size_t size = (sizeof(nn_threads) + 63) / 64 * 64;
    nn_threads *p = aligned_alloc(64, size);
    if (!p)
        return KILN_ENOMEM;
    memset(p, 0, size);
    p->n = n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->stop, 0);
    if (n > 1) {
        p->th = calloc((size_t)n, sizeof *p->th);
        p->wk = calloc((size_t)n, sizeof *p->wk);
        if (!p->th || !p->wk) {
            p->n = 1;
            nn_threads_free(p);
            return KILN_ENOMEM;
        }
        for (int i = 1; i < n; i++) {
            p->wk[i].pool = p;
            p->wk[i].tid = i;
            if (pthread_create(&p->th[i], NULL, worker_main, &p->wk[i]) != 0) {
                p->n = i; /* join the ones already started */
                nn_threads_free(p);
                return KILN_ENOMEM;
            }
            pthread_setname_np(p->th[i], "nn-worker");
        }
    }
    *out = p;
    return 0;
}

void nn_threads_free(nn_threads *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->th);
    free(p->wk);
    free(p);
}

int nn_threads_count(const nn_threads *p)
{
    return p ? p->n : 1;
}

void nn_threads_run(nn_threads *p, nn_threads_fn fn, void *arg)
{
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers)) {
        /* a sleeper holds mu until cond_wait releases it, so taking mu
         * here means it is waiting and gets the broadcast */
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n);
    int spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) != 0) {
        if (++spins < SPIN_ROUNDS)
            cpu_relax();
        else
            sched_yield();
    }
}
