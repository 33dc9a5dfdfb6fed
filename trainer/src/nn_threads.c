/* nn_threads: persistent worker threads for the engine's data-parallel
 * training step (see nn_threads.h). */
#include "nn_threads.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "kiln_err.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* About 50-200 microseconds of polling before a worker goes to sleep:
 * longer than the gap between two jobs of one batch, shorter than an
 * evaluation pass between epochs. */
#define SPIN_ROUNDS 20000

typedef struct worker {
    struct nn_threads *pool;
    int tid;
} worker;

struct nn_threads {
    int n;
    pthread_t *th;
    worker *wk;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int sleepers;          /* under mu */
    atomic_uint gen;       /* bumped once per job */
    atomic_int pending;    /* workers still running the current job */
    atomic_int stop;
    nn_threads_fn fn;
    void *arg;
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
            p->sleepers++;
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            p->sleepers--;
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
    nn_threads *p = calloc(1, sizeof *p);
    if (!p)
        return KILN_ENOMEM;
    p->n = n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
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
    /* Bump gen under the mutex so a worker that is about to sleep either
     * sees the new value or is already waiting and gets the broadcast. */
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_acq_rel);
    if (p->sleepers)
        pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    int spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) != 0) {
        if (++spins < SPIN_ROUNDS)
            cpu_relax();
        else
            sched_yield();
    }
}
