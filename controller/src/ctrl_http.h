/* ctrl_http: the controller's own small HTTP servers on libwebsockets:
 * metrics (GET /metrics, Prometheus text), the dashboard (GET /dashboard:
 * one self-contained page; GET /dashboard/ws: a WebSocket that sends the
 * ctrl_dash snapshot of every job on connect and again whenever it
 * changes, checked every 500 ms while a dashboard is connected) and health
 * probes (GET /healthz: the process is alive; GET /readyz: caches synced).
 * Metrics and health each listen on their own address (the two flags of
 * controller-runtime); both are served by one thread. Port 0 picks a free
 * port, logged and returned.
 *
 * Ownership: ctrl_http_start returns an object freed by ctrl_http_stop. */
#ifndef KILN_CTRL_HTTP_H
#define KILN_CTRL_HTTP_H

#include "ctrl.h"
#include "kiln_err.h"

typedef struct ctrl_http ctrl_http;

/* addr: "HOST:PORT", ":PORT" or "0" (off). */
int ctrl_http_start(ctrl *c, const char *metrics_addr, const char *health_addr, ctrl_http **out,
                    int *metrics_port, int *health_port, kiln_error *err);
void ctrl_http_stop(ctrl_http *h);

#endif
