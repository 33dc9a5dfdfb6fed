/* Unit tests for kl_worker: order, results, waiting, handles released
 * before or after their item ran, the fallback without a thread, and the
 * worker's lower CPU priority. */
#include <pthread.h>
#include <stdlib.h>

#include "kl_worker.h"
#include "knice.h"
#include "ktest.h"

/* What the items saw, in the order they ran. */
static int ran[64];
static int n_ran;

typedef struct item_arg {
    int id;
    pthread_mutex_t *gate; /* held by the test to keep the worker busy, or NULL */
} item_arg;

static long record(void *arg)
{
    item_arg *a = arg;
    if (a->gate) {
        pthread_mutex_lock(a->gate);
        pthread_mutex_unlock(a->gate);
    }
    ran[n_ran++] = a->id;
    return 1000 + a->id;
}

static item_arg *item(int id, pthread_mutex_t *gate)
{
    item_arg *a = malloc(sizeof(*a));
    a->id = id;
    a->gate = gate;
    return a;
}

static void test_order_and_results(void)
{
    kl_worker *w;
    KT_EQ_INT(kl_worker_new(&w, NULL), 0);
    n_ran = 0;
    pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&gate);
    kl_work *first = kl_worker_run(w, record, item(1, &gate), 1);
    kl_work *h[5];
    for (int i = 0; i < 5; i++)
        h[i] = kl_worker_run(w, record, item(2 + i, NULL), 1);
    kl_worker_run(w, record, item(7, NULL), 0); /* no handle: forgotten */
    /* The worker is held in the first item: nothing is done yet. */
    KT_EQ_INT(kl_work_done(first), 0);
    KT_EQ_INT((int)kl_work_result(first), 0);
    /* Released before it ran: the worker frees it when done. */
    kl_work_release(h[4]);
    pthread_mutex_unlock(&gate);
    kl_work_wait(h[3]);
    KT_EQ_INT(kl_work_done(first), 1);
    KT_EQ_INT((int)kl_work_result(first), 1001);
    KT_EQ_INT((int)kl_work_result(h[3]), 1005);
    for (int i = 0; i < 4; i++) {
        kl_work_wait(h[i]);
        KT_EQ_INT(kl_work_done(h[i]), 1);
        KT_EQ_INT((int)kl_work_result(h[i]), 1002 + i);
        kl_work_release(h[i]);
    }
    kl_work_release(first);
    /* Freeing runs what is still queued. */
    kl_worker_free(w);
    KT_EQ_INT(n_ran, 7);
    for (int i = 0; i < n_ran; i++)
        KT_EQ_INT(ran[i], i + 1);
    pthread_mutex_destroy(&gate);
}

static void test_without_a_thread(void)
{
    n_ran = 0;
    kl_work *h = kl_worker_run(NULL, record, item(9, NULL), 1);
    KT_EQ_INT(n_ran, 1); /* ran at once, on this thread */
    KT_EQ_INT(kl_work_done(h), 1);
    KT_EQ_INT((int)kl_work_result(h), 1009);
    kl_work_wait(h);
    kl_work_release(h);
    KT_CHECK(kl_worker_run(NULL, record, item(10, NULL), 0) == NULL);
    KT_EQ_INT(n_ran, 2);
    /* A NULL handle counts as done. */
    KT_EQ_INT(kl_work_done(NULL), 1);
    kl_work_release(NULL);
}

/* The niceness of the thread that runs it, as 100 + nice (never 0). */
static long thread_nice(void *arg)
{
    (void)arg;
    int n = knice_thread();
    return n == KNICE_UNKNOWN ? -1 : 100 + n;
}

static void test_worker_runs_nicer(void)
{
    long mine = thread_nice(NULL);
    KT_CHECK(mine >= 0);
    long want = mine + KL_WORKER_NICE > 119 ? 119 : mine + KL_WORKER_NICE;
    kl_worker *w;
    KT_EQ_INT(kl_worker_new(&w, NULL), 0);
    kl_work *h = kl_worker_run(w, thread_nice, NULL, 1);
    kl_work_wait(h);
    KT_EQ_INT((int)kl_work_result(h), (int)want);
    kl_work_release(h);
    kl_worker_free(w);
    /* only the worker's thread: this one keeps its niceness */
    KT_EQ_INT((int)thread_nice(NULL), (int)mine);
}

int main(void)
{
    KT_RUN(test_worker_runs_nicer);
    KT_RUN(test_order_and_results);
    KT_RUN(test_without_a_thread);
    return KT_DONE();
}
