/* kube_queue: dedupe + processing sets, delayed adds, back-off, workers. */
#include "kube_queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln_err.h"
#include "kube_map.h"
#include "kube_rate.h"
#include "ktime.h"

/* ---- types ---- */

/* One per known key; removed when it is idle and has no back-off. */
typedef struct kstate {
    int dirty;        /* queued, or must be queued again at done() */
    int processing;   /* handed to a worker */
    int failures;     /* per-key back-off exponent */
    int64_t ready_at; /* > 0: delayed until this monotonic time */
} kstate;

typedef struct worker {
    pthread_t th;
    kube_queue *q;
} worker;

/* Idle workers wait on cv, except one at most that waits on timer_cv until
 * the earliest delayed key is due. A wake-up therefore goes to one worker,
 * never to all: an add_after per pod event used to broadcast, and thirty-
 * two workers woke to fight over the mutex and each rescan every key, which
 * held a burst of new jobs back by up to a fifth of a second. */
struct kube_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* idle workers, untimed */
    pthread_cond_t timer_cv; /* the one worker waiting for next_due */
    int idle;                /* workers waiting on cv */
    int timer_waiting;       /* a worker waits on timer_cv */
    int64_t next_due;        /* earliest ready_at (may be early, never late); 0: none */
    kube_map *states;        /* key -> kstate */
    char **fifo;             /* ring of ready keys (owned strings) */
    int64_t *fifo_at;        /* when each was queued (monotonic us) */
    size_t cap, head, n;
    kube_hist wait; /* queued -> handed to a worker */
    kube_hist work; /* the reconcile function */
    int shutting_down;
    kube_queue_opts opts;
    kube_rate bucket;
    /* workers */
    worker *workers;
    int n_workers;
    kube_reconcile_fn fn;
    void *ud;
};

/* ---- helpers (caller holds q->mu) ---- */

/* Wakes one waiting worker: an idle one, else the timer's. */
static void wake_one(kube_queue *q)
{
    if (q->idle > 0)
        pthread_cond_signal(&q->cv);
    else if (q->timer_waiting)
        pthread_cond_signal(&q->timer_cv);
}

static int fifo_push(kube_queue *q, const char *key)
{
    if (q->n == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 64;
        char **nf = malloc(nc * sizeof *nf);
        int64_t *na = malloc(nc * sizeof *na);
        if (!nf || !na) {
            free(nf);
            free(na);
            return KILN_ENOMEM;
        }
        for (size_t i = 0; i < q->n; i++) {
            nf[i] = q->fifo[(q->head + i) % q->cap];
            na[i] = q->fifo_at[(q->head + i) % q->cap];
        }
        free(q->fifo);
        free(q->fifo_at);
        q->fifo = nf;
        q->fifo_at = na;
        q->cap = nc;
        q->head = 0;
    }
    size_t kl = strlen(key);
    char *k = malloc(kl + 1);
    if (!k)
        return KILN_ENOMEM;
    memcpy(k, key, kl + 1);
    q->fifo[(q->head + q->n) % q->cap] = k;
    q->fifo_at[(q->head + q->n) % q->cap] = ktime_mono_us();
    q->n++;
    return 0;
}

static kstate *state_get(kube_queue *q, const char *key, int create)
{
    kstate *s = kube_map_get(q->states, key);
    if (s || !create)
        return s;
    s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (kube_map_put(q->states, key, s)) {
        free(s);
        return NULL;
    }
    return s;
}

static void state_gc(kube_queue *q, const char *key, kstate *s)
{
    if (!s->dirty && !s->processing && s->failures == 0 && s->ready_at == 0)
        kube_map_del(q->states, key);
}

/* The add itself: dirty set, and queued unless being processed. */
static int add_locked(kube_queue *q, const char *key)
{
    if (q->shutting_down)
        return KILN_ECANCELED;
    kstate *s = state_get(q, key, 1);
    if (!s)
        return KILN_ENOMEM;
    s->ready_at = 0;
    if (s->dirty)
        return 0;
    s->dirty = 1;
    if (s->processing)
        return 0;
    int rc = fifo_push(q, key);
    if (rc) {
        s->dirty = 0;
        state_gc(q, key, s);
        return rc;
    }
    wake_one(q); /* one key, one worker: no herd of idle ones */
    return 0;
}

typedef struct due_scan {
    int64_t now, next;
    char **due;
    size_t n, cap;
} due_scan;

static int collect_due(const char *key, void *val, void *ud)
{
    kstate *s = val;
    due_scan *d = ud;
    if (s->ready_at == 0)
        return 0;
    if (s->ready_at <= d->now) {
        if (d->n == d->cap) {
            size_t nc = d->cap ? d->cap * 2 : 16;
            char **nd = realloc(d->due, nc * sizeof *nd);
            if (!nd)
                return 0; /* picked up on the next scan */
            d->due = nd;
            d->cap = nc;
        }
        d->due[d->n++] = (char *)key;
    } else if (d->next == 0 || s->ready_at < d->next) {
        d->next = s->ready_at;
    }
    return 0;
}

/* Moves delayed keys whose time has come into the queue; returns the next
 * deadline (0: none). Scans the keys only once next_due has come. Keys are
 * copied before the map changes. */
static int64_t promote_due(kube_queue *q)
{
    due_scan d = {.now = ktime_mono_ms()};
    if (q->next_due == 0 || d.now < q->next_due)
        return q->next_due;
    kube_map_foreach(q->states, collect_due, &d);
    for (size_t i = 0; i < d.n; i++) {
        size_t kl = strlen(d.due[i]);
        char *k = malloc(kl + 1);
        if (!k) {
            d.next = d.now + 10;
            continue;
        }
        memcpy(k, d.due[i], kl + 1);
        kstate *s = kube_map_get(q->states, k);
        if (s && s->ready_at) {
            s->ready_at = 0;
            if (add_locked(q, k) == KILN_ENOMEM) {
                s->ready_at = d.now + 10;
                d.next = d.now + 10;
            }
        }
        free(k);
    }
    free(d.due);
    q->next_due = d.next;
    return d.next;
}

static int64_t backoff_ms(const kube_queue *q, int failures)
{
    int64_t d = q->opts.base_delay_ms;
    for (int i = 0; i < failures && d < q->opts.max_delay_ms; i++)
        d *= 2;
    return d > q->opts.max_delay_ms ? q->opts.max_delay_ms : d;
}

/* ---- API ---- */

int kube_queue_new(const kube_queue_opts *opts, kube_queue **out)
{
    kube_queue *q = calloc(1, sizeof *q);
    if (!q)
        return KILN_ENOMEM;
    if (opts)
        q->opts = *opts;
    if (q->opts.base_delay_ms <= 0)
        q->opts.base_delay_ms = 5;
    if (q->opts.max_delay_ms <= 0)
        q->opts.max_delay_ms = 1000000;
    if (q->opts.qps == 0)
        q->opts.qps = 10;
    if (q->opts.burst <= 0)
        q->opts.burst = 100;
    if (kube_map_new(free, &q->states)) {
        free(q);
        return KILN_ENOMEM;
    }
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cv, &ca);
    pthread_cond_init(&q->timer_cv, &ca);
    pthread_condattr_destroy(&ca);
    kube_rate_init(&q->bucket, q->opts.qps, q->opts.burst);
    *out = q;
    return 0;
}

void kube_queue_free(kube_queue *q)
{
    if (!q)
        return;
    kube_queue_stop(q);
    for (size_t i = 0; i < q->n; i++)
        free(q->fifo[(q->head + i) % q->cap]);
    free(q->fifo);
    free(q->fifo_at);
    kube_map_free(q->states);
    kube_rate_release(&q->bucket);
    pthread_cond_destroy(&q->cv);
    pthread_cond_destroy(&q->timer_cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

int kube_queue_add(kube_queue *q, const char *key)
{
    pthread_mutex_lock(&q->mu);
    int rc = add_locked(q, key);
    pthread_mutex_unlock(&q->mu);
    return rc;
}

/* kube_queue_add_after with q->mu held. */
static int add_after_locked(kube_queue *q, const char *key, int64_t delay_ms)
{
    if (delay_ms <= 0)
        return add_locked(q, key);
    if (q->shutting_down)
        return KILN_ECANCELED;
    kstate *s = state_get(q, key, 1);
    if (!s)
        return KILN_ENOMEM;
    if (s->dirty)
        return 0;
    /* keep the earliest deadline, as client-go's delaying queue does */
    int64_t at = ktime_mono_ms() + delay_ms;
    if (s->ready_at == 0 || at < s->ready_at)
        s->ready_at = at;
    if (q->next_due == 0 || at < q->next_due) {
        q->next_due = at;
        /* the timer's worker waits for a later time, or none does */
        if (q->timer_waiting)
            pthread_cond_signal(&q->timer_cv);
        else if (q->idle > 0)
            pthread_cond_signal(&q->cv);
    }
    return 0;
}

int kube_queue_add_after(kube_queue *q, const char *key, int64_t delay_ms)
{
    pthread_mutex_lock(&q->mu);
    int rc = add_after_locked(q, key, delay_ms);
    pthread_mutex_unlock(&q->mu);
    return rc;
}

/* The overall bucket's delay for one more retry (taken before q->mu). */
static int64_t bucket_delay(kube_queue *q)
{
    return q->opts.qps > 0 ? kube_rate_reserve(&q->bucket) : 0;
}

/* Counts one more failure of the key and queues it after the longer of
 * its back-off and the bucket's delay (q->mu held). */
static int retry_locked(kube_queue *q, const char *key, int64_t bucket)
{
    kstate *s = state_get(q, key, 1);
    if (!s)
        return KILN_ENOMEM;
    int64_t d = backoff_ms(q, s->failures);
    s->failures++;
    return add_after_locked(q, key, d > bucket ? d : bucket);
}

int kube_queue_add_rate_limited(kube_queue *q, const char *key)
{
    int64_t bucket = bucket_delay(q);
    pthread_mutex_lock(&q->mu);
    int rc = retry_locked(q, key, bucket);
    pthread_mutex_unlock(&q->mu);
    return rc;
}

void kube_queue_forget(kube_queue *q, const char *key)
{
    pthread_mutex_lock(&q->mu);
    kstate *s = state_get(q, key, 0);
    if (s) {
        s->failures = 0;
        state_gc(q, key, s);
    }
    pthread_mutex_unlock(&q->mu);
}

int kube_queue_num_requeues(kube_queue *q, const char *key)
{
    pthread_mutex_lock(&q->mu);
    kstate *s = state_get(q, key, 0);
    int n = s ? s->failures : 0;
    pthread_mutex_unlock(&q->mu);
    return n;
}

int kube_queue_get(kube_queue *q, char **key_out)
{
    pthread_mutex_lock(&q->mu);
    for (;;) {
        int64_t next = promote_due(q);
        if (q->n > 0)
            break;
        if (q->shutting_down) {
            pthread_mutex_unlock(&q->mu);
            return KILN_ECANCELED;
        }
        if (next && !q->timer_waiting) {
            struct timespec ts;
            ts.tv_sec = next / 1000;
            ts.tv_nsec = (next % 1000) * 1000000L;
            q->timer_waiting = 1;
            pthread_cond_timedwait(&q->timer_cv, &q->mu, &ts);
            q->timer_waiting = 0;
        } else {
            q->idle++;
            pthread_cond_wait(&q->cv, &q->mu);
            q->idle--;
        }
    }
    char *k = q->fifo[q->head];
    kube_hist_observe_us(&q->wait, ktime_mono_us() - q->fifo_at[q->head]);
    q->head = (q->head + 1) % q->cap;
    q->n--;
    /* Adds wake one worker each; keys promote_due made ready at once pass
     * the wake-up on, and so does a timer's worker leaving with keys still
     * delayed (an idle one takes its place). */
    if (q->n > 0 || (q->next_due && !q->timer_waiting))
        wake_one(q);
    kstate *s = state_get(q, k, 0);
    if (s) {
        s->dirty = 0;
        s->processing = 1;
    }
    pthread_mutex_unlock(&q->mu);
    *key_out = k;
    return 0;
}

/* kube_queue_done with q->mu held. */
static void done_locked(kube_queue *q, const char *key)
{
    kstate *s = state_get(q, key, 0);
    if (!s)
        return;
    s->processing = 0;
    if (s->dirty && !q->shutting_down) {
        if (fifo_push(q, key) == 0)
            wake_one(q);
        else
            s->dirty = 0; /* out of memory: the next add brings it back */
    }
    state_gc(q, key, s);
}

void kube_queue_done(kube_queue *q, const char *key)
{
    pthread_mutex_lock(&q->mu);
    done_locked(q, key);
    pthread_mutex_unlock(&q->mu);
}

size_t kube_queue_len(kube_queue *q)
{
    pthread_mutex_lock(&q->mu);
    size_t n = q->n;
    pthread_mutex_unlock(&q->mu);
    return n;
}

void kube_queue_shutdown(kube_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->shutting_down = 1;
    /* drop what is queued so workers stop after their current key */
    for (size_t i = 0; i < q->n; i++)
        free(q->fifo[(q->head + i) % q->cap]);
    q->n = 0;
    q->head = 0;
    pthread_cond_broadcast(&q->cv);
    pthread_cond_broadcast(&q->timer_cv);
    pthread_mutex_unlock(&q->mu);
}

int kube_queue_shutting_down(kube_queue *q)
{
    pthread_mutex_lock(&q->mu);
    int s = q->shutting_down;
    pthread_mutex_unlock(&q->mu);
    return s;
}

/* ---- workers ---- */

/* What a worker does with its key after the reconcile: forget its
 * failures or count one more, queue it again if asked, and mark it done,
 * all in one hold of the mutex rather than three (every hold is one more
 * chance for the holder to be preempted with the other workers waiting). */
static void finish(kube_queue *q, const char *key, int r, int64_t after)
{
    int failed = r != KUBE_RC_OK && r != KUBE_RC_TERMINAL && r != KUBE_RC_REQUEUE_AFTER;
    int64_t bucket = failed ? bucket_delay(q) : 0;
    pthread_mutex_lock(&q->mu);
    kstate *s = state_get(q, key, 0);
    if (failed) {
        retry_locked(q, key, bucket);
    } else if (s) {
        s->failures = 0;
        if (r == KUBE_RC_REQUEUE_AFTER)
            add_after_locked(q, key, after);
    }
    done_locked(q, key);
    pthread_mutex_unlock(&q->mu);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    kube_queue *q = w->q;
    char *key;
    while (kube_queue_get(q, &key) == 0) {
        int64_t after = 0;
        int64_t t0 = ktime_mono_us();
        int r = q->fn(q->ud, key, &after);
        kube_hist_observe_us(&q->work, ktime_mono_us() - t0);
        finish(q, key, r, after);
        free(key);
    }
    return NULL;
}

int kube_queue_start(kube_queue *q, int n, kube_reconcile_fn fn, void *ud)
{
    if (q->workers || n <= 0 || !fn)
        return KILN_EINVAL;
    q->workers = calloc((size_t)n, sizeof *q->workers);
    if (!q->workers)
        return KILN_ENOMEM;
    q->fn = fn;
    q->ud = ud;
    for (int i = 0; i < n; i++) {
        q->workers[i].q = q;
        if (pthread_create(&q->workers[i].th, NULL, worker_main, &q->workers[i])) {
            kube_queue_stop(q);
            return KILN_EINTERNAL;
        }
        pthread_setname_np(q->workers[i].th, "kube-worker");
        q->n_workers++;
    }
    return 0;
}

const kube_hist *kube_queue_wait_hist(const kube_queue *q)
{
    return &q->wait;
}

const kube_hist *kube_queue_work_hist(const kube_queue *q)
{
    return &q->work;
}

void kube_queue_stop(kube_queue *q)
{
    kube_queue_shutdown(q);
    for (int i = 0; i < q->n_workers; i++)
        pthread_join(q->workers[i].th, NULL);
    q->n_workers = 0;
    free(q->workers);
    q->workers = NULL;
}
