/* serve_app: the model server's request handling, independent of the
 * transport: given a method, path, content type and body it produces a
 * status, a content type and a body. The HTTP layer (serve_http) only
 * moves bytes; tests and the fuzz target call serve_handle directly.
 *
 * Status codes: 400 malformed body, 404 unknown path or model name, 405
 * wrong method, 408 body not delivered in time (HTTP layer), 411 chunked
 * request bodies, 413 body over --max-body, 415 unsupported Content-Type,
 * 422 well-formed input the model cannot take (wrong value count or
 * datatype, non-numeric CSV cells), 503 no model loaded yet. Every error
 * body is {"error": "..."}.
 *
 * Ownership: serve_app_init/serve_app_release on caller storage;
 * serve_scratch_init/release per connection (buffers reused across
 * requests). serve_handle is thread-safe for distinct scratch objects. */
#ifndef KILN_SERVE_APP_H
#define KILN_SERVE_APP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "serve_buf.h"
#include "serve_infer.h"
#include "serve_metrics.h"
#include "serve_model.h"
#include "serve_route.h"

typedef struct serve_config {
    const char *model_path;
    const char *name;
    const char *address; /* listen address */
    int port;            /* 0: any free port (the chosen one is logged) */
    size_t max_body;     /* bytes */
    int threads;         /* service threads */
    int timeout_s;       /* to deliver headers, and the body */
    int grace_s;         /* on SIGTERM, longest wait for in-flight requests */
    int drain_s;         /* on SIGTERM, keep serving (not ready) this long first */
    int poll_ms;         /* periodic stat of --model */
} serve_config;

typedef struct serve_app {
    serve_config cfg;
    serve_holder holder;
    serve_metrics metrics;
    _Atomic int stopping;
} serve_app;

typedef struct serve_scratch {
    serve_batch batch;
    serve_csv csv;
    int32_t *cls;
    float *probs;
    size_t cls_cap, probs_cap;
} serve_scratch;

typedef struct serve_request {
    int method;        /* enum serve_method */
    const char *path;  /* without the query string */
    const char *query; /* "a=1&b=2" or NULL */
    const char *ctype; /* Content-Type or NULL */
    const char *body;
    size_t len;
} serve_request;

typedef struct serve_response {
    int status;
    int route;         /* enum serve_route, for metrics */
    const char *ctype; /* static string */
    sbuf *body;        /* the caller's buffer, filled by serve_handle */
} serve_response;

int serve_app_init(serve_app *app, const serve_config *cfg);
void serve_app_release(serve_app *app);

void serve_scratch_init(serve_scratch *s);
void serve_scratch_release(serve_scratch *s);

/* Fills rs (status, route, ctype, body). Never fails: an internal error is
 * a 500 with a JSON body. */
void serve_handle(serve_app *app, serve_scratch *s, const serve_request *rq, serve_response *rs);

/* Fills rs with a JSON error for status (used by the HTTP layer for 408,
 * 411, 413 decided before the body is read). */
void serve_error(serve_response *rs, int status, const char *msg);

const char *serve_status_text(int status);

#endif
