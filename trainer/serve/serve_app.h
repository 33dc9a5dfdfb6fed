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
 * serve_scratch_init/release per service thread (buffers reused across
 * requests: a request in steady state allocates nothing). serve_handle is
 * thread-safe for distinct scratch objects. */
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

/* A JSON prediction between parsing and inference. The HTTP layer parses
 * every request that arrived in one pass of its event loop, then runs
 * their inference together (serve_run_jobs): one batched pass over the
 * weights instead of one per request. An instance's answer is the same
 * bits either way (see model_predict_ws). */
typedef struct serve_job {
    serve_model *sm; /* reference held while pending, else NULL */
    int v2;          /* Open Inference Protocol response */
    serve_batch batch;
} serve_job;

typedef struct serve_scratch {
    serve_job job; /* serve_handle's own (not deferred) job */
    serve_csv csv;
    int32_t *cls;
    float *probs;
    size_t cls_cap, probs_cap;
    float *ws; /* model_predict_ws workspace */
    size_t ws_cap;
    float *x; /* instances of several jobs run as one batch */
    size_t x_cap;
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

void serve_job_init(serve_job *j);
void serve_job_release(serve_job *j); /* drops a pending job's model reference */

/* serve_handle, except that a well-formed JSON prediction stops after
 * parsing: returns 1 with the job pending (rs->route set, the rest of rs
 * untouched) for serve_run_jobs to finish; returns 0 when rs is complete. */
int serve_handle_defer(serve_app *app, serve_scratch *s, serve_job *job, const serve_request *rq,
                       serve_response *rs);

/* Runs the inference of n pending jobs, in batches of consecutive small
 * jobs on the same model, and completes each one's response rs[i]. Never
 * fails: an error becomes that job's (or batch's) JSON error response.
 * The jobs are no longer pending afterwards. */
void serve_run_jobs(serve_app *app, serve_scratch *s, serve_job *const *jobs,
                    serve_response *const *rs, int n);

/* Fills rs with a JSON error for status (used by the HTTP layer for 408,
 * 411, 413 decided before the body is read). */
void serve_error(serve_response *rs, int status, const char *msg);

const char *serve_status_text(int status);

#endif
