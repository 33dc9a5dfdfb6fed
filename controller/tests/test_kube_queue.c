/* Unit tests for kube_queue and kube_rate with real threads. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fakeapi.h"
#include "ktest.h"
#include "ktime.h"
#include "kube_queue.h"
#include "kube_rate.h"

static void test_dedupe_and_order(void)
{
    kube_queue *q;
    KT_EQ_INT(kube_queue_new(NULL, &q), 0);
    kube_queue_add(q, "ns/a");
    kube_queue_add(q, "ns/b");
    kube_queue_add(q, "ns/a");
    kube_queue_add(q, "ns/b");
    KT_EQ_INT(kube_queue_len(q), 2);
    char *k;
    KT_EQ_INT(kube_queue_get(q, &k), 0);
    KT_CHECK(strcmp(k, "ns/a") == 0);
    /* adding while processing: not handed out again until done */
    kube_queue_add(q, "ns/a");
    KT_EQ_INT(kube_queue_len(q), 1);
    char *k2;
    KT_EQ_INT(kube_queue_get(q, &k2), 0);
    KT_CHECK(strcmp(k2, "ns/b") == 0);
    KT_EQ_INT(kube_queue_len(q), 0);
    kube_queue_done(q, k);
    KT_EQ_INT(kube_queue_len(q), 1); /* the dirty a came back */
    kube_queue_done(q, k2);
    free(k2);
    char *k3;
    KT_EQ_INT(kube_queue_get(q, &k3), 0);
    KT_CHECK(strcmp(k3, "ns/a") == 0);
    kube_queue_done(q, k3);
    free(k3);
    free(k);
    kube_queue_shutdown(q);
    KT_EQ_INT(kube_queue_get(q, &k), KILN_ECANCELED);
    KT_EQ_INT(kube_queue_add(q, "x"), KILN_ECANCELED);
    kube_queue_free(q);
}

/* The wait histogram counts every hand-out with the time the key was
 * ready; the work histogram every reconcile with its duration. */
static void test_latency_histograms(void)
{
    kube_queue *q;
    KT_EQ_INT(kube_queue_new(NULL, &q), 0);
    kube_queue_add(q, "ns/a");
    fake_sleep_ms(30);
    char *k = NULL;
    KT_EQ_INT(kube_queue_get(q, &k), 0);
    kube_queue_done(q, k);
    free(k);
    const kube_hist *w = kube_queue_wait_hist(q);
    KT_EQ_INT((int)kube_hist_count(w), 1);
    KT_CHECK(atomic_load(&w->sum_us) >= 30000);
    KT_EQ_INT((int)atomic_load(&w->n[0]), 0); /* not in the 1 ms bucket */
    kube_queue_free(q);
}

static int timed_reconcile(void *ud, const char *key, int64_t *requeue_ms)
{
    (void)key;
    (void)requeue_ms;
    fake_sleep_ms(20);
    atomic_fetch_add((atomic_int *)ud, 1);
    return KUBE_RC_OK;
}

static void test_work_histogram(void)
{
    kube_queue *q;
    KT_EQ_INT(kube_queue_new(NULL, &q), 0);
    atomic_int calls = 0;
    KT_EQ_INT(kube_queue_start(q, 2, timed_reconcile, &calls), 0);
    kube_queue_add(q, "ns/a");
    kube_queue_add(q, "ns/b");
    kube_queue_add(q, "ns/c");
    int64_t t0 = ktime_mono_ms();
    while (atomic_load(&calls) < 3 && ktime_mono_ms() - t0 < 5000)
        fake_sleep_ms(5);
    kube_queue_stop(q);
    const kube_hist *h = kube_queue_work_hist(q);
    KT_EQ_INT((int)kube_hist_count(h), 3);
    KT_CHECK(atomic_load(&h->sum_us) >= 3 * 20000);
    KT_EQ_INT((int)kube_hist_count(kube_queue_wait_hist(q)), 3);
    kube_queue_free(q);
}

static void test_add_after(void)
{
    kube_queue *q;
    KT_EQ_INT(kube_queue_new(NULL, &q), 0);
    int64_t t0 = ktime_mono_ms();
    kube_queue_add_after(q, "ns/late", 80);
    kube_queue_add_after(q, "ns/soon", 20);
    KT_EQ_INT(kube_queue_len(q), 0);
    char *k;
    KT_EQ_INT(kube_queue_get(q, &k), 0);
    KT_CHECK(strcmp(k, "ns/soon") == 0);
    KT_CHECK(ktime_mono_ms() - t0 >= 20);
    kube_queue_done(q, k);
    free(k);
    KT_EQ_INT(kube_queue_get(q, &k), 0);
    KT_CHECK(strcmp(k, "ns/late") == 0);
    KT_CHECK(ktime_mono_ms() - t0 >= 80);
    kube_queue_done(q, k);
    free(k);
    /* an immediate add overrides a pending delay */
    kube_queue_add_after(q, "ns/x", 100000);
    kube_queue_add(q, "ns/x");
    KT_EQ_INT(kube_queue_len(q), 1);
    kube_queue_free(q);
}

static void test_backoff_growth(void)
{
    kube_queue_opts o = {.base_delay_ms = 10, .max_delay_ms = 40, .qps = -1};
    kube_queue *q;
    KT_EQ_INT(kube_queue_new(&o, &q), 0);
    int64_t expect[] = {10, 20, 40, 40};
    for (int i = 0; i < 4; i++) {
        int64_t t0 = ktime_mono_ms();
        kube_queue_add_rate_limited(q, "ns/f");
        char *k;
        KT_EQ_INT(kube_queue_get(q, &k), 0);
        int64_t took = ktime_mono_ms() - t0;
        KT_CHECK(took >= expect[i]);
        KT_CHECK(took < expect[i] + 3000); /* generous: only catches runaway delays */
        kube_queue_done(q, k);
        free(k);
    }
    KT_EQ_INT(kube_queue_num_requeues(q, "ns/f"), 4);
    kube_queue_forget(q, "ns/f");
    KT_EQ_INT(kube_queue_num_requeues(q, "ns/f"), 0);
    kube_queue_free(q);
}

/* Workers: many adds of few keys; count overlap per key. */
typedef struct wstate {
    atomic_int active[4];
    atomic_int overlap;
    atomic_int calls;
    atomic_int fails_left;
    atomic_int requeued;
} wstate;

static int reconcile(void *ud, const char *key, int64_t *requeue_ms)
{
    wstate *w = ud;
    int i = key[3] - '0';
    if (atomic_fetch_add(&w->active[i], 1) != 0)
        atomic_fetch_add(&w->overlap, 1);
    fake_sleep_ms(2);
    atomic_fetch_sub(&w->active[i], 1);
    atomic_fetch_add(&w->calls, 1);
    if (i == 3 && atomic_fetch_sub(&w->fails_left, 1) > 0)
        return KUBE_RC_ERROR;
    if (i == 2 && atomic_fetch_add(&w->requeued, 1) == 0) {
        *requeue_ms = 30;
        return KUBE_RC_REQUEUE_AFTER;
    }
    return KUBE_RC_OK;
}

static void test_workers(void)
{
    kube_queue_opts o = {.base_delay_ms = 1, .qps = -1};
    kube_queue *q;
    KT_EQ_INT(kube_queue_new(&o, &q), 0);
    wstate w;
    memset(&w, 0, sizeof w);
    atomic_store(&w.fails_left, 3);
    KT_EQ_INT(kube_queue_start(q, 4, reconcile, &w), 0);
    for (int r = 0; r < 50; r++) {
        char key[8];
        snprintf(key, sizeof key, "ns/%d", r % 4);
        kube_queue_add(q, key);
        if (r % 7 == 0)
            fake_sleep_ms(1);
    }
    int64_t t0 = ktime_mono_ms();
    while (ktime_mono_ms() - t0 < 10000 &&
           (atomic_load(&w.fails_left) > -1 || atomic_load(&w.requeued) < 2))
        fake_sleep_ms(5);
    fake_sleep_ms(20);
    kube_queue_stop(q);
    KT_EQ_INT(atomic_load(&w.overlap), 0);
    KT_CHECK(atomic_load(&w.calls) >= 4);
    KT_CHECK(atomic_load(&w.calls) <= 50 + 10);
    KT_CHECK(atomic_load(&w.fails_left) <= -1);       /* key 3 retried past its failures */
    KT_CHECK(atomic_load(&w.requeued) >= 2);          /* key 2 came back after 30 ms */
    KT_EQ_INT(kube_queue_num_requeues(q, "ns/3"), 0); /* forgotten on success */
    kube_queue_free(q);
}

/* One add each: "ns/again" asks once to come back after 60 ms, "ns/fail"
 * fails twice and then succeeds; nothing else brings them back. */
typedef struct rstate {
    atomic_int again_calls, fail_calls;
    int64_t again_at[4], fail_at[4];
} rstate;

static int requeue_reconcile(void *ud, const char *key, int64_t *requeue_ms)
{
    rstate *r = ud;
    if (!strcmp(key, "ns/again")) {
        int n = atomic_fetch_add(&r->again_calls, 1);
        if (n < 4)
            r->again_at[n] = ktime_mono_ms();
        if (n == 0) {
            *requeue_ms = 60;
            return KUBE_RC_REQUEUE_AFTER;
        }
        return KUBE_RC_OK;
    }
    int n = atomic_fetch_add(&r->fail_calls, 1);
    if (n < 4)
        r->fail_at[n] = ktime_mono_ms();
    return n < 2 ? KUBE_RC_ERROR : KUBE_RC_OK;
}

static void test_worker_requeues(void)
{
    kube_queue_opts o = {.base_delay_ms = 40, .qps = -1};
    kube_queue *q;
    KT_EQ_INT(kube_queue_new(&o, &q), 0);
    rstate r;
    memset(&r, 0, sizeof r);
    KT_EQ_INT(kube_queue_start(q, 2, requeue_reconcile, &r), 0);
    kube_queue_add(q, "ns/again");
    kube_queue_add(q, "ns/fail");
    int64_t t0 = ktime_mono_ms();
    while (ktime_mono_ms() - t0 < 5000 &&
           (atomic_load(&r.again_calls) < 2 || atomic_load(&r.fail_calls) < 3))
        fake_sleep_ms(5);
    fake_sleep_ms(300); /* a spurious extra call would show up now */
    kube_queue_stop(q);
    KT_EQ_INT(atomic_load(&r.again_calls), 2);
    KT_CHECK(r.again_at[1] - r.again_at[0] >= 60);
    KT_EQ_INT(atomic_load(&r.fail_calls), 3);
    KT_CHECK(r.fail_at[1] - r.fail_at[0] >= 40); /* back-off: 40 ms, then 80 */
    KT_CHECK(r.fail_at[2] - r.fail_at[1] >= 80);
    KT_EQ_INT(kube_queue_num_requeues(q, "ns/fail"), 0); /* forgotten on success */
    kube_queue_free(q);
}

/* Each add wakes one worker, and a worker that takes a key while others
 * wait hands the wake-up on: keys added together, at once or falling due
 * together, run side by side on as many workers. */
typedef struct pstate {
    atomic_int active, peak, calls;
} pstate;

static int slow_reconcile(void *ud, const char *key, int64_t *requeue_ms)
{
    (void)key;
    (void)requeue_ms;
    pstate *p = ud;
    int now = atomic_fetch_add(&p->active, 1) + 1;
    int peak = atomic_load(&p->peak);
    while (now > peak && !atomic_compare_exchange_weak(&p->peak, &peak, now))
        ;
    fake_sleep_ms(100);
    atomic_fetch_sub(&p->active, 1);
    atomic_fetch_add(&p->calls, 1);
    return KUBE_RC_OK;
}

static void wait_calls(pstate *p, int n)
{
    int64_t t0 = ktime_mono_ms();
    while (atomic_load(&p->calls) < n && ktime_mono_ms() - t0 < 10000)
        fake_sleep_ms(5);
}

static void test_parallel_wakeups(void)
{
    kube_queue_opts o = {.base_delay_ms = 1, .qps = -1};
    kube_queue *q;
    KT_EQ_INT(kube_queue_new(&o, &q), 0);
    pstate p;
    memset(&p, 0, sizeof p);
    KT_EQ_INT(kube_queue_start(q, 8, slow_reconcile, &p), 0);
    fake_sleep_ms(20); /* every worker waiting */
    char key[16];
    for (int i = 0; i < 8; i++) {
        snprintf(key, sizeof key, "ns/now%d", i);
        kube_queue_add(q, key);
    }
    wait_calls(&p, 8);
    KT_EQ_INT(atomic_load(&p.calls), 8);
    KT_CHECK(atomic_load(&p.peak) >= 4);
    atomic_store(&p.peak, 0);
    for (int i = 0; i < 8; i++) {
        snprintf(key, sizeof key, "ns/later%d", i);
        kube_queue_add_after(q, key, 30);
    }
    wait_calls(&p, 16);
    KT_EQ_INT(atomic_load(&p.calls), 16);
    KT_CHECK(atomic_load(&p.peak) >= 4);
    kube_queue_stop(q);
    kube_queue_free(q);
}

/* Records when each key ran, by its first letter. */
typedef struct tstate {
    atomic_llong at_now, at_soon, at_late;
} tstate;

static int stamp_reconcile(void *ud, const char *key, int64_t *requeue_ms)
{
    (void)requeue_ms;
    tstate *t = ud;
    atomic_llong *slot = strstr(key, "/now")    ? &t->at_now
                         : strstr(key, "/soon") ? &t->at_soon
                                                : &t->at_late;
    atomic_store(slot, (long long)ktime_mono_ms());
    return KUBE_RC_OK;
}

/* With a key delayed far ahead, one worker waits for it on the timer: a
 * plain add must still wake that worker when it is the only one, and an
 * earlier deadline must cut its wait short. */
static void test_timer_wait(void)
{
    for (int workers = 1; workers <= 4; workers += 3) {
        kube_queue_opts o = {.base_delay_ms = 1, .qps = -1};
        kube_queue *q;
        KT_EQ_INT(kube_queue_new(&o, &q), 0);
        tstate t;
        memset(&t, 0, sizeof t);
        KT_EQ_INT(kube_queue_start(q, workers, stamp_reconcile, &t), 0);
        kube_queue_add_after(q, "ns/late", 5000);
        fake_sleep_ms(30); /* a worker waits for ns/late */
        int64_t t0 = ktime_mono_ms();
        kube_queue_add(q, "ns/now");
        while (!atomic_load(&t.at_now) && ktime_mono_ms() - t0 < 2000)
            fake_sleep_ms(5);
        KT_CHECK(atomic_load(&t.at_now) > 0 && atomic_load(&t.at_now) - t0 < 1000);
        t0 = ktime_mono_ms();
        kube_queue_add_after(q, "ns/soon", 50);
        while (!atomic_load(&t.at_soon) && ktime_mono_ms() - t0 < 2000)
            fake_sleep_ms(5);
        KT_CHECK(atomic_load(&t.at_soon) - t0 >= 50);
        KT_CHECK(atomic_load(&t.at_soon) - t0 < 1000);
        KT_EQ_INT((int)atomic_load(&t.at_late), 0);
        kube_queue_stop(q);
        kube_queue_free(q);
    }
}

static void test_rate(void)
{
    kube_rate r;
    kube_rate_init(&r, 100, 3);
    KT_EQ_INT(kube_rate_reserve(&r), 0);
    KT_EQ_INT(kube_rate_reserve(&r), 0);
    KT_EQ_INT(kube_rate_reserve(&r), 0);
    int64_t w = kube_rate_reserve(&r);
    KT_CHECK(w >= 8 && w <= 10);
    int64_t w2 = kube_rate_reserve(&r);
    KT_CHECK(w2 >= 18 && w2 <= 20);
    int64_t t0 = ktime_mono_ms();
    KT_EQ_INT(kube_rate_wait(&r, NULL), 0);
    KT_CHECK(ktime_mono_ms() - t0 >= 20);
    atomic_int stop = 1;
    KT_EQ_INT(kube_rate_wait(&r, &stop), KILN_ECANCELED);
    kube_rate_set(&r, 0, 1); /* unlimited */
    KT_EQ_INT(kube_rate_reserve(&r), 0);
    kube_rate_release(&r);
}

int main(void)
{
    KT_RUN(test_dedupe_and_order);
    KT_RUN(test_add_after);
    KT_RUN(test_latency_histograms);
    KT_RUN(test_work_histogram);
    KT_RUN(test_backoff_growth);
    KT_RUN(test_workers);
    KT_RUN(test_worker_requeues);
    KT_RUN(test_parallel_wakeups);
    KT_RUN(test_timer_wait);
    KT_RUN(test_rate);
    return KT_DONE();
}
