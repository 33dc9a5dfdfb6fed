/* Unit tests for kube_hist: bucket edges, the Prometheus text and
 * observations from many threads. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ktest.h"
#include "kube_hist.h"

static void test_buckets(void)
{
    kube_hist h = {0};
    kube_hist_observe_us(&h, 1000);     /* exactly 1 ms: le 0.001 */
    kube_hist_observe_us(&h, 1001);     /* just above: le 0.0025 */
    kube_hist_observe_us(&h, -5);       /* a clock step back counts as 0 */
    kube_hist_observe_us(&h, 40000000); /* 40 s: +Inf only */
    KT_EQ_INT((int)atomic_load(&h.n[0]), 2);
    KT_EQ_INT((int)atomic_load(&h.n[1]), 1);
    KT_EQ_INT((int)atomic_load(&h.n[KUBE_HIST_BUCKETS]), 1);
    KT_EQ_INT((int)kube_hist_count(&h), 4);
    KT_CHECK(kube_hist_bound(0) == 0.001 && kube_hist_bound(KUBE_HIST_BUCKETS - 1) == 30);
    KT_CHECK(kube_hist_bound(KUBE_HIST_BUCKETS) == 0);
}

static void test_text(void)
{
    kube_hist h = {0};
    kube_hist_observe_us(&h, 3000);  /* le 0.005 */
    kube_hist_observe_us(&h, 70000); /* le 0.1 */
    kbuf b = {0};
    kube_hist_text_header(&b, "x_seconds", "Help text.");
    kube_hist_text(&h, &b, "x_seconds", "verb=\"POST\"");
    KT_CHECK(!b.oom && b.p);
    KT_STR_CONTAINS(b.p, "# HELP x_seconds Help text.\n# TYPE x_seconds histogram\n");
    /* cumulative: 0, 0, 1 ... 1, 2 from le 0.1 on */
    KT_STR_CONTAINS(b.p, "x_seconds_bucket{verb=\"POST\",le=\"0.0025\"} 0\n");
    KT_STR_CONTAINS(b.p, "x_seconds_bucket{verb=\"POST\",le=\"0.005\"} 1\n");
    KT_STR_CONTAINS(b.p, "x_seconds_bucket{verb=\"POST\",le=\"0.05\"} 1\n");
    KT_STR_CONTAINS(b.p, "x_seconds_bucket{verb=\"POST\",le=\"0.1\"} 2\n");
    KT_STR_CONTAINS(b.p, "x_seconds_bucket{verb=\"POST\",le=\"+Inf\"} 2\n");
    KT_STR_CONTAINS(b.p, "x_seconds_sum{verb=\"POST\"} 0.073000\n");
    KT_STR_CONTAINS(b.p, "x_seconds_count{verb=\"POST\"} 2\n");
    kbuf_release(&b);
    kube_hist_text(&h, &b, "y", NULL);
    KT_STR_CONTAINS(b.p, "y_bucket{le=\"0.001\"} 0\n");
    KT_STR_CONTAINS(b.p, "y_sum 0.073000\ny_count 2\n");
    kbuf_release(&b);
}

#define THREADS 8
#define EACH    10000
static void *observer(void *arg)
{
    for (int i = 0; i < EACH; i++)
        kube_hist_observe_us(arg, i % 3 ? 500 : 20000);
    return NULL;
}

static void test_threads(void)
{
    kube_hist h = {0};
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, observer, &h);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    KT_EQ_INT((int)kube_hist_count(&h), THREADS * EACH);
    /* i % 3 == 0 for 3,334 of every 10,000 */
    KT_EQ_INT((int)atomic_load(&h.n[4]), THREADS * 3334);
    KT_CHECK(atomic_load(&h.sum_us) == (uint64_t)THREADS * (3334 * 20000 + 6666 * 500));
}

int main(void)
{
    KT_RUN(test_buckets);
    KT_RUN(test_text);
    KT_RUN(test_threads);
    return KT_DONE();
}
