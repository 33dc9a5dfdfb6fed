/* test_nn_threads: the engine's worker pool: every thread id runs once per
 * job, the caller sees all the workers' writes when nn_threads_run returns,
 * jobs keep working after the workers have gone to sleep, and freeing a
 * pool with sleeping or spinning workers returns. */
#include <stdatomic.h>
#include <time.h>

#include "ktest.h"
#include "nn_threads.h"

typedef struct job {
    int hits[8]; /* per tid: written only by that tid */
    long sums[8];
    atomic_int calls;
} job;

static void count(void *arg, int tid, int n)
{
    job *j = arg;
    j->hits[tid]++;
    long s = 0;
    for (int i = 0; i < 1000 * (tid + 1); i++)
        s += i % (n + 3);
    j->sums[tid] = s;
    atomic_fetch_add(&j->calls, 1);
}

static void run_pool(int n, int jobs)
{
    nn_threads *p = NULL;
    KT_EQ_INT(nn_threads_new(n, &p), 0);
    KT_CHECK(p != NULL);
    if (!p)
        return;
    KT_EQ_INT(nn_threads_count(p), n);
    job j = {0};
    atomic_init(&j.calls, 0);
    for (int k = 0; k < jobs; k++) {
        nn_threads_run(p, count, &j);
        /* every id ran exactly once per job, and its write is visible */
        for (int t = 0; t < n; t++)
            KT_EQ_INT(j.hits[t], k + 1);
        KT_EQ_INT(atomic_load(&j.calls), (k + 1) * n);
        if (k == jobs / 2) {
            /* long enough for the workers to stop spinning and sleep */
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    for (int t = 0; t < n; t++) {
        long s = 0;
        for (int i = 0; i < 1000 * (t + 1); i++)
            s += i % (n + 3);
        KT_EQ_INT(j.sums[t], s);
    }
    nn_threads_free(p);
}

static void test_pool_runs_every_thread(void)
{
    run_pool(1, 10);
    run_pool(2, 500);
    run_pool(4, 200);
}

static void test_pool_free_while_idle(void)
{
    nn_threads *p = NULL;
    KT_EQ_INT(nn_threads_new(3, &p), 0);
    nn_threads_free(p); /* workers still spinning on their first wait */
    KT_EQ_INT(nn_threads_new(2, &p), 0);
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    nn_threads_free(p); /* workers asleep on the condition variable */
    nn_threads_free(NULL);
    KT_EQ_INT(nn_threads_count(NULL), 1);
}

int main(void)
{
    KT_RUN(test_pool_runs_every_thread);
    KT_RUN(test_pool_free_while_idle);
    return KT_DONE();
}
