/* kl_api: the Kubernetes REST semantics of kubelite, independent of the
 * HTTP transport: one parsed request in, one response (or the start of a
 * watch stream) out. Discovery, OpenAPI, CRUD with resourceVersion and
 * generation, status and scale subresources, the four patch types, list
 * selectors and pagination, watches from the history ring, finalizers,
 * CRD registration and the request log. Implemented in kl_api.c (entry
 * points, routing) and kl_api_admit.c, kl_api_list.c, kl_api_write.c,
 * kl_api_delete.c, which share kl_api_int.h.
 *
 * Single-threaded: the HTTP service thread calls everything here.
 * Ownership: kl_api_new()/kl_api_free(); a kl_resp is caller storage,
 * released with kl_resp_release(); a kl_watch returned in a response is
 * owned by the caller and freed with kl_watch_free(). */
#ifndef KL_API_H
#define KL_API_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"
#include "kl_res.h"
#include "kl_store.h"

#define KL_MAX_QUERY 48

typedef struct kl_req {
    const char *method;
    const char *path; /* decoded, without the query */
    const char *qk[KL_MAX_QUERY];
    const char *qv[KL_MAX_QUERY];
    int nq;
    const char *accept;
    const char *content_type;
    const char *user_agent;
    const char *body;
    size_t body_len;
} kl_req;

typedef struct kl_watch kl_watch;
/* A pods/log stream: read() returns bytes (>0), 0 when nothing new yet,
 * -1 at the end; close() releases ctx. Owned by the response. */
typedef struct kl_log_stream {
    long (*read)(void *ctx, char *buf, size_t n);
    void (*close)(void *ctx);
    void *ctx;
} kl_log_stream;

typedef struct kl_resp {
    int code;
    const char *ctype; /* static */
    char *body;        /* malloc'd */
    size_t len;
    char warning[512];
    int retry_after;
    kl_watch *watch;     /* set: stream watch events (body unused) */
    kl_log_stream *logs; /* set: stream a container log (malloc'd) */
    char created[254];   /* a create's object name (the URL has none), for the request log */
} kl_resp;

typedef struct kl_api kl_api;

typedef struct kl_api_opts {
    const char *data_dir;     /* NULL: memory only */
    const char *server_addr;  /* "127.0.0.1:PORT" for /api */
    size_t history;           /* watch events kept */
    int log_requests;
    int net_octet;            /* pods get 127.N.x.y, services 127.N+128.x.y */
} kl_api_opts;

int kl_api_new(const kl_api_opts *o, kl_api **out, kiln_error *err);
void kl_api_free(kl_api *api);

void kl_api_set_addr(kl_api *api, const char *addr);

/* The second octet of this instance's pod addresses (1..126). */
int kl_api_net_octet(const kl_api *api);

/* Handles one complete request. Always fills resp. */
void kl_api_handle(kl_api *api, const kl_req *req, kl_resp *resp);

void kl_resp_release(kl_resp *resp);

/* Writes out the buffered request log lines. The server calls it before
 * sending a reply, so a client that got its answer finds its request in
 * DIR/requests.log. */
void kl_api_flush_log(kl_api *api);

/* Appends the next events of w to a new buffer (*out, caller frees; *len 0
 * when nothing is pending). Returns 1 when the stream must end after this
 * output (timeout, 410, dropped), else 0. */
int kl_api_watch_poll(kl_api *api, kl_watch *w, char **out, size_t *len);
void kl_watch_free(kl_watch *w);
/* 1 if w was requested over WebSocket framing by the caller. */
void kl_watch_set_ws(kl_watch *w, int ws);
int kl_watch_is_ws(const kl_watch *w);

/* Borrowed access for the controllers and the kubelet. */
kl_store *kl_api_store(kl_api *api);
kl_reg *kl_api_reg(kl_api *api);

/* Internal writes used by controllers (no admission beyond server fields):
 * create or replace obj (taken) at its metadata name/namespace. */
int kl_api_write(kl_api *api, kl_res *r, cJSON *obj, kiln_error *err);
/* Creates obj (taken) with full admission, as a POST would. */
int kl_api_create(kl_api *api, kl_res *r, cJSON *obj, kiln_error *err);
/* Deletes with finalizer semantics (policy "Background", "Foreground",
 * "Orphan" or NULL). */
int kl_api_delete(kl_api *api, kl_res *r, const char *ns, const char *name, const char *policy,
                  kiln_error *err);
kl_res *kl_api_res(kl_api *api, const char *group, const char *plural);

/* Fault injection state. */
typedef struct kl_faults {
    double error_rate;  /* fraction of requests answered with error_code */
    int error_code;     /* 429, 500 or 503 */
    int latency_ms;
    unsigned watch_epoch; /* bumped to drop every open watch */
} kl_faults;
kl_faults *kl_api_faults(kl_api *api);

/* Set by the kubelet: serves pods/log. Returns 0 and fills resp, or an
 * error status already in resp. */
typedef void (*kl_log_fn)(void *ctx, const char *ns, const char *pod, const kl_req *req,
                          kl_resp *resp);
void kl_api_set_log_handler(kl_api *api, kl_log_fn fn, void *ctx);
/* Set by the kubelet: a pod DELETE with a grace period; returns 1 if the
 * kubelet takes over the deletion. */
typedef int (*kl_pod_delete_fn)(void *ctx, const char *ns, const char *pod, int64_t grace);
void kl_api_set_pod_delete_handler(kl_api *api, kl_pod_delete_fn fn, void *ctx);
/* Set by main: handles POST /kubelite/faults extras (kill a pod). */
typedef int (*kl_kill_fn)(void *ctx, const char *ns, const char *pod);
void kl_api_set_kill_handler(kl_api *api, kl_kill_fn fn, void *ctx);

/* Helpers shared with controllers. */
void kl_api_status(kl_resp *resp, int code, const char *reason, const char *name,
                   const char *group, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
void kl_api_json(kl_resp *resp, int code, cJSON *obj); /* takes obj */
void kl_now_str(char *buf, size_t n, int micro);
void kl_new_uid(char *buf, size_t n);

#endif
