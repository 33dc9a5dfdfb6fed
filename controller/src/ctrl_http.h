/* ctrl_http: the controller's own small HTTP servers on libwebsockets:
 * metrics (GET /metrics, Prometheus text) and health probes (GET /healthz:
 * the process is alive; GET /readyz: caches synced). Each listens on its
 * own address (the two flags of controller-runtime); both are served by
 * one thread. Port 0 picks a free port, logged and returned.
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
