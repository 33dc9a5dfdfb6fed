/* serve_metrics: the model server's counters and their Prometheus text
 * rendering. Every counter is a relaxed atomic, so the service threads
 * update them without locks; a scrape reads each one once (a scrape may
 * see one request in the histogram but not yet in the counter, never a
 * torn value).
 *
 *   kiln_serve_requests_total{route,code}           counter
 *   kiln_serve_request_duration_seconds{route}      histogram
 *   kiln_serve_inflight_requests                    gauge
 *   kiln_serve_model_reloads_total{result}          counter (success|failure)
 *   kiln_serve_model_info{model,version}            gauge (1 for the served one)
 *   kiln_serve_model_ready                          gauge
 *
 * Ownership: caller storage, serve_metrics_init. No teardown needed. */
#ifndef KILN_SERVE_METRICS_H
#define KILN_SERVE_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "serve_buf.h"
#include "serve_route.h"

#define SERVE_HIST_BUCKETS 14
#define SERVE_NCODES       14

typedef struct serve_metrics {
    _Atomic uint64_t requests[SR__COUNT][SERVE_NCODES];
    _Atomic uint64_t hist[SR__COUNT][SERVE_HIST_BUCKETS + 1]; /* last: +Inf only */
    _Atomic uint64_t hist_sum_ns[SR__COUNT];
    _Atomic uint64_t reload_ok, reload_fail;
    _Atomic int64_t inflight;
} serve_metrics;

void serve_metrics_init(serve_metrics *m);
/* One finished request: its route, HTTP status and duration. */
void serve_metrics_observe(serve_metrics *m, int route, int status, uint64_t ns);
void serve_metrics_reload(serve_metrics *m, int ok);
static inline void serve_metrics_inflight(serve_metrics *m, int delta)
{
    atomic_fetch_add_explicit(&m->inflight, delta, memory_order_relaxed);
}
/* Appends the exposition text. version is NULL when no model is loaded. */
int serve_metrics_render(const serve_metrics *m, const char *model, const char *version, sbuf *out);

#endif
