/* kl_worker: the kubelet's thread for blocking system calls (see
 * kl_worker.h).
 *
 * A FIFO under one mutex. An item carries two references while a handle
 * is out (the queue's and the handle's) and one otherwise; whichever of
 * the worker and kl_work_release() drops the last frees it. An item run
 * on the caller's thread (no worker) has no worker pointer. */
#include "kl_worker.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "knice.h"

struct kl_work {
    kl_worker *w;
    kl_work *next;
    kl_work_fn fn;
    void *arg;
    long result;
    int done;
    int refs;
};

struct kl_worker {
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* work queued, or stop */
    pthread_cond_t done_cv; /* an item ran */
    pthread_t thr;
    kl_work *head, *tail;
    int stop;
};

static void drop(kl_worker *w, kl_work *wk, int ran, long result)
{
    pthread_mutex_lock(&w->mu);
    if (ran) {
        wk->done = 1;
        wk->result = result;
        pthread_cond_broadcast(&w->done_cv);
    }
    int last = --wk->refs == 0;
    pthread_mutex_unlock(&w->mu);
    if (last)
        free(wk);
}

static void *loop(void *ctx)
{
    kl_worker *w = ctx;
    knice_lower_thread(KL_WORKER_NICE);
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->head && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        kl_work *wk = w->head;
        if (!wk) {
            pthread_mutex_unlock(&w->mu);
            return NULL;
        }
        w->head = wk->next;
        if (!w->head)
            w->tail = NULL;
        pthread_mutex_unlock(&w->mu);
        long result = wk->fn(wk->arg);
        free(wk->arg);
        wk->arg = NULL;
        drop(w, wk, 1, result);
    }
}

int kl_worker_new(kl_worker **out, kiln_error *err)
{
    *out = NULL;
    kl_worker *w = calloc(1, sizeof(*w));
    if (!w)
        return KILN_ENOMEM;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_cond_init(&w->done_cv, NULL);
    /* Signals are for the main thread (its handlers stop the server). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&w->thr, NULL, loop, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&w->done_cv);
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return kiln_fail(err, KILN_EIO, "kubelet worker thread: error %d", rc);
    }
    pthread_setname_np(w->thr, "kubelet-worker");
    *out = w;
    return 0;
}

void kl_worker_free(kl_worker *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thr, NULL);
    pthread_cond_destroy(&w->done_cv);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

kl_work *kl_worker_run(kl_worker *w, kl_work_fn fn, void *arg, int want_handle)
{
    kl_work *wk = calloc(1, sizeof(*wk));
    if (!wk) {
        if (want_handle)
            return NULL; /* not run: arg is still the caller's */
        fn(arg);
        free(arg);
        return NULL;
    }
    if (!w) {
        /* No thread: run here; the handle is done at once. */
        wk->result = fn(arg);
        free(arg);
        wk->done = 1;
        wk->refs = 1;
        if (want_handle)
            return wk;
        free(wk);
        return NULL;
    }
    wk->w = w;
    wk->fn = fn;
    wk->arg = arg;
    wk->refs = want_handle ? 2 : 1;
    pthread_mutex_lock(&w->mu);
    if (w->tail)
        w->tail->next = wk;
    else
        w->head = wk;
    w->tail = wk;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return want_handle ? wk : NULL;
}

int kl_work_done(kl_work *wk)
{
    if (!wk || !wk->w)
        return 1;
    pthread_mutex_lock(&wk->w->mu);
    int d = wk->done;
    pthread_mutex_unlock(&wk->w->mu);
    return d;
}

void kl_work_wait(kl_work *wk)
{
    if (!wk || !wk->w)
        return;
    pthread_mutex_lock(&wk->w->mu);
    while (!wk->done)
        pthread_cond_wait(&wk->w->done_cv, &wk->w->mu);
    pthread_mutex_unlock(&wk->w->mu);
}

long kl_work_result(kl_work *wk)
{
    if (!wk || !wk->w)
        return wk ? wk->result : 0;
    pthread_mutex_lock(&wk->w->mu);
    long r = wk->done ? wk->result : 0;
    pthread_mutex_unlock(&wk->w->mu);
    return r;
}

void kl_work_release(kl_work *wk)
{
    if (!wk)
        return;
    if (!wk->w) {
        free(wk); /* done on the caller's thread */
        return;
    }
    drop(wk->w, wk, 0, 0);
}
