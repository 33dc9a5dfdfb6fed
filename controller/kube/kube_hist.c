/* kube_hist: fixed-bucket latency histograms in Prometheus text (see
 * kube_hist.h). */
#include "kube_hist.h"

static const double BOUNDS[KUBE_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                 0.25,  0.5,    1,     2.5,  5,     10,   30};

double kube_hist_bound(int i)
{
    return i >= 0 && i < KUBE_HIST_BUCKETS ? BOUNDS[i] : 0;
}

void kube_hist_observe_us(kube_hist *h, int64_t us)
{
    if (us < 0)
        us = 0;
    int i = 0;
    while (i < KUBE_HIST_BUCKETS && (double)us > BOUNDS[i] * 1e6)
        i++;
    atomic_fetch_add_explicit(&h->n[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (uint64_t)us, memory_order_relaxed);
}

uint64_t kube_hist_count(const kube_hist *h)
{
    uint64_t t = 0;
    for (int i = 0; i <= KUBE_HIST_BUCKETS; i++)
        t += atomic_load_explicit(&h->n[i], memory_order_relaxed);
    return t;
}

void kube_hist_text_header(kbuf *b, const char *name, const char *help)
{
    kbuf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
}

void kube_hist_text(const kube_hist *h, kbuf *b, const char *name, const char *labels)
{
    const char *sep = labels && labels[0] ? "," : "";
    if (!labels)
        labels = "";
    /* One read per counter, so the buckets and the count agree even while
     * workers observe. */
    uint64_t cum = 0;
    for (int i = 0; i <= KUBE_HIST_BUCKETS; i++) {
        cum += atomic_load_explicit(&h->n[i], memory_order_relaxed);
        if (i < KUBE_HIST_BUCKETS)
            kbuf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, BOUNDS[i],
                        (unsigned long long)cum);
        else
            kbuf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                        (unsigned long long)cum);
    }
    double sum = (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6;
    if (labels[0]) {
        kbuf_printf(b, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, sum, name, labels,
                    (unsigned long long)cum);
    } else {
        kbuf_printf(b, "%s_sum %.6f\n%s_count %llu\n", name, sum, name, (unsigned long long)cum);
    }
}
