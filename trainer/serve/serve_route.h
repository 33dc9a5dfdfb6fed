/* serve_route: maps an HTTP method and path to one of the model server's
 * routes, and says 404 or 405 when nothing fits. Pure string work (no
 * model, no sockets), shared by the HTTP layer, the metrics labels and the
 * fuzz target.
 *
 *   POST /v1/models/NAME:predict          GET /v1/models/NAME, /v1/models
 *   POST /v2/models/NAME[/versions/V]/infer
 *   GET  /v2/models/NAME[/versions/V][/ready], /v2, /v2/health/{live,ready}
 *   GET  /healthz, /readyz, /metrics */
#ifndef KILN_SERVE_ROUTE_H
#define KILN_SERVE_ROUTE_H

#include <stddef.h>

enum serve_route {
    SR_V1_PREDICT = 0,
    SR_V1_MODEL,
    SR_V1_MODELS,
    SR_V2_INFER,
    SR_V2_MODEL,
    SR_V2_MODEL_READY,
    SR_V2_SERVER,
    SR_V2_LIVE,
    SR_V2_READY,
    SR_HEALTHZ,
    SR_READYZ,
    SR_METRICS,
    SR_OTHER, /* no route: always 404 */
    SR__COUNT
};

enum serve_method {
    SM_GET = 0,
    SM_HEAD,
    SM_POST,
    SM_PUT,
    SM_DELETE,
    SM_PATCH,
    SM_OPTIONS,
    SM_OTHER
};

typedef struct serve_match {
    int route;           /* enum serve_route, also set when status != 0 */
    int status;          /* 0 when the request may go on, else 404 or 405 */
    const char *why;     /* static message for a non-zero status */
    const char *version; /* "/versions/V" part (not NUL-terminated), or NULL */
    size_t version_len;
} serve_match;

/* path has no query string. model is the served model's name. */
void serve_route_match(const char *path, int method, const char *model, serve_match *out);
/* Stable label for metrics ("v1_predict", ...). */
const char *serve_route_name(int route);
/* 1 when requests of this method carry a body the server must read. */
int serve_method_has_body(int method);

#endif
