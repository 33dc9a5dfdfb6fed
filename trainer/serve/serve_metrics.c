/* serve_metrics: counters and Prometheus exposition (see serve_metrics.h). */
#include "serve_metrics.h"

#include <string.h>

/* Upper bounds in seconds; the server answers in tens of microseconds, so
 * the low buckets are fine-grained and the top ones catch stalls. */
static const double bucket_le[SERVE_HIST_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};
static const int codes[SERVE_NCODES - 1] = {200, 400, 404, 405, 408, 411, 413,
                                            414, 415, 422, 431, 500, 503};

void serve_metrics_init(serve_metrics *m)
{
    memset(m, 0, sizeof *m);
}

static int code_index(int status)
{
    for (int i = 0; i < SERVE_NCODES - 1; i++)
        if (codes[i] == status)
            return i;
    return SERVE_NCODES - 1; /* "other" */
}

void serve_metrics_observe(serve_metrics *m, int route, int status, uint64_t ns)
{
    if (route < 0 || route >= SR__COUNT)
        route = SR_OTHER;
    atomic_fetch_add_explicit(&m->requests[route][code_index(status)], 1, memory_order_relaxed);
    double s = (double)ns / 1e9;
    int b = 0;
    while (b < SERVE_HIST_BUCKETS && s > bucket_le[b])
        b++;
    atomic_fetch_add_explicit(&m->hist[route][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->hist_sum_ns[route], ns, memory_order_relaxed);
}

void serve_metrics_reload(serve_metrics *m, int ok)
{
    atomic_fetch_add_explicit(ok ? &m->reload_ok : &m->reload_fail, 1, memory_order_relaxed);
}

static uint64_t ld(const _Atomic uint64_t *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

int serve_metrics_render(const serve_metrics *m, const char *model, const char *version, sbuf *o)
{
    int rc = sbuf_puts(o, "# HELP kiln_serve_requests_total HTTP requests answered, by route and "
                          "status code.\n# TYPE kiln_serve_requests_total counter\n");
    for (int r = 0; r < SR__COUNT && !rc; r++) {
        for (int c = 0; c < SERVE_NCODES && !rc; c++) {
            uint64_t v = ld(&m->requests[r][c]);
            if (!v)
                continue;
            if (c < SERVE_NCODES - 1)
                rc = sbuf_printf(o, "kiln_serve_requests_total{route=\"%s\",code=\"%d\"} %llu\n",
                                 serve_route_name(r), codes[c], (unsigned long long)v);
            else
                rc = sbuf_printf(o, "kiln_serve_requests_total{route=\"%s\",code=\"other\"} %llu\n",
                                 serve_route_name(r), (unsigned long long)v);
        }
    }
    rc = rc ? rc
            : sbuf_puts(o, "# HELP kiln_serve_request_duration_seconds Time from the request "
                           "headers to the response, by route.\n"
                           "# TYPE kiln_serve_request_duration_seconds histogram\n");
    for (int r = 0; r < SR__COUNT && !rc; r++) {
        uint64_t snap[SERVE_HIST_BUCKETS + 1], total = 0;
        for (int b = 0; b <= SERVE_HIST_BUCKETS; b++) {
            snap[b] = ld(&m->hist[r][b]);
            total += snap[b];
        }
        if (!total)
            continue;
        const char *rn = serve_route_name(r);
        uint64_t cum = 0;
        for (int b = 0; b < SERVE_HIST_BUCKETS && !rc; b++) {
            cum += snap[b];
            rc = sbuf_printf(o,
                             "kiln_serve_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} "
                             "%llu\n",
                             rn, bucket_le[b], (unsigned long long)cum);
        }
        rc =
            rc ? rc
               : sbuf_printf(o,
                             "kiln_serve_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} "
                             "%llu\n"
                             "kiln_serve_request_duration_seconds_sum{route=\"%s\"} %.9f\n"
                             "kiln_serve_request_duration_seconds_count{route=\"%s\"} %llu\n",
                             rn, (unsigned long long)total, rn,
                             (double)ld(&m->hist_sum_ns[r]) / 1e9, rn, (unsigned long long)total);
    }
    rc = rc ? rc
            : sbuf_printf(o,
                          "# HELP kiln_serve_inflight_requests Requests received and not yet "
                          "answered.\n# TYPE kiln_serve_inflight_requests gauge\n"
                          "kiln_serve_inflight_requests %lld\n"
                          "# HELP kiln_serve_model_reloads_total Checkpoint reload attempts, by "
                          "result.\n# TYPE kiln_serve_model_reloads_total counter\n"
                          "kiln_serve_model_reloads_total{result=\"success\"} %llu\n"
                          "kiln_serve_model_reloads_total{result=\"failure\"} %llu\n"
                          "# HELP kiln_serve_model_ready 1 when a model is loaded.\n"
                          "# TYPE kiln_serve_model_ready gauge\nkiln_serve_model_ready %d\n"
                          "# HELP kiln_serve_model_info The served model and its version.\n"
                          "# TYPE kiln_serve_model_info gauge\n",
                          (long long)atomic_load_explicit(&m->inflight, memory_order_relaxed),
                          (unsigned long long)ld(&m->reload_ok),
                          (unsigned long long)ld(&m->reload_fail), version ? 1 : 0);
    if (version && !rc) {
        /* label values: the name comes from the command line, so escape it */
        rc = sbuf_puts(o, "kiln_serve_model_info{model=\"");
        for (const char *p = model; *p && !rc; p++) {
            if (*p == '"' || *p == '\\')
                rc = sbuf_putc(o, '\\');
            rc = rc ? rc : *p == '\n' ? sbuf_puts(o, "\\n") : sbuf_putc(o, *p);
        }
        rc = rc ? rc : sbuf_printf(o, "\",version=\"%s\"} 1\n", version);
    }
    return rc;
}
