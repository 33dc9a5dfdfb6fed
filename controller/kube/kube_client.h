/* kube_client: HTTP transport to the Kubernetes API server (libcurl).
 *
 * - Connections are reused: every easy handle shares one CURLSH (connection
 *   cache, DNS and TLS sessions), and idle easy handles are pooled. HTTP/2
 *   is used on TLS when the server offers it.
 * - TLS verification is on unless the kubeconfig says
 *   insecure-skip-tls-verify. Certificates and keys given as *-data (or
 *   returned by an exec plugin) go to libcurl as in-memory blobs.
 * - Credentials: bearer token (static, from a token file re-read every
 *   minute and after a 401, or from an exec plugin honouring its expiry and
 *   re-run after a 401), client certificates, basic auth. As with client-go
 *   no credentials travel over plain http, except to a loopback host
 *   (development clusters such as kubelite).
 * - Every request waits on a client-side token bucket (QPS/burst).
 * - Non-2xx replies become the API's Status in a caller-owned kube_err.
 *   429 and 5xx are retried with exponential back-off and jitter, or after
 *   the Retry-After header when present, a bounded number of times; 409 and
 *   every other 4xx return at once.
 * - Long requests (watches) run through kube_client_stream() and can be
 *   cancelled at once from another thread (curl_multi_wakeup).
 * curl_global_init() must have been called once by main() before any
 * client is made (it is not thread-safe). All calls are thread-safe.
 * Ownership: kube_client_new() takes the kube_config (freed by the client,
 * also on failure); kube_client_free() frees it. */
#ifndef KUBE_CLIENT_H
#define KUBE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "kiln_err.h"
#include "kstatus.h"
#include "kube_config.h"
#include "kube_hist.h"

typedef struct kube_client kube_client;

typedef struct kube_client_opts {
    double qps;                 /* 0 -> 20 (controller-runtime); < 0 -> unlimited */
    int burst;                  /* 0 -> 30 */
    int max_retries;            /* for 429/5xx/transport errors; 0 -> 5, < 0 -> none */
    int64_t retry_base_ms;      /* 0 -> 200; doubles per attempt, plus jitter */
    int64_t retry_max_ms;       /* cap on one wait, Retry-After included; 0 -> 30000 */
    int64_t connect_timeout_ms; /* 0 -> 10000 */
    int64_t request_timeout_ms; /* whole non-streaming request; 0 -> 60000 */
    int64_t token_reread_ms;    /* token file re-read period; 0 -> 60000 */
    size_t max_body;            /* largest reply body accepted; 0 -> 256 MiB */
    const char *user_agent;     /* NULL -> "kiln-controller/0.1" */
} kube_client_opts;

/* What went wrong, owned by the caller: a message and code (e), plus the
 * API's Status when the server answered non-2xx (status.code != 0). */
typedef struct kube_err {
    kiln_error e;
    kstatus status;
    int http; /* the HTTP status of the last reply, 0 if none arrived */
} kube_err;

void kube_err_init(kube_err *err);
/* Frees the Status strings and re-initialises err for reuse. */
void kube_err_release(kube_err *err);

typedef struct kube_resp {
    int http;   /* HTTP status */
    char *body; /* NUL-terminated, owned; may be empty */
    size_t len;
} kube_resp;

void kube_resp_release(kube_resp *r);

/* opts may be NULL. Returns 0, KILN_ENOMEM, or KILN_EINVAL for unusable
 * settings (a missing CA file is reported by the first request). */
int kube_client_new(kube_config *cfg, const kube_client_opts *opts, kube_client **out,
                    kiln_error *err);
void kube_client_free(kube_client *c);

/* The config the client runs with (borrowed; do not free). */
const kube_config *kube_client_config(const kube_client *c);

/* Changes the rate limits at run time. */
void kube_client_set_rate(kube_client *c, double qps, int burst);

/* Aborts waits, retries and streams in every thread, now and later: calls
 * then return KILN_ECANCELED. Used at shutdown. */
void kube_client_cancel(kube_client *c);
int kube_client_cancelled(kube_client *c);

/* One request. path starts with '/' and may carry a query. content_type
 * may be NULL when there is no body. On 2xx returns 0 and fills *resp
 * (release it). Otherwise returns a negative code and fills err: for an
 * API reply the Status, with kstatus_kiln_code() as the code (409 ->
 * KILN_ECONFLICT, 404 -> KILN_ENOTFOUND, ...); resp is then empty. */
int kube_client_request(kube_client *c, const char *method, const char *path,
                        const char *content_type, const char *body, size_t body_len,
                        kube_resp *resp, kube_err *err);

/* ---- streams (watches) ---- */

typedef struct kube_stream kube_stream;

int kube_stream_new(kube_stream **out);
void kube_stream_free(kube_stream *s);
/* Wakes and ends the stream running on s (from any thread); later streams
 * on s end at once until kube_stream_reset(). */
void kube_stream_cancel(kube_stream *s);
void kube_stream_reset(kube_stream *s);

/* Called with each piece of the body as it arrives; non-zero aborts. */
typedef int (*kube_data_fn)(void *ud, const char *data, size_t len);

/* GETs path and feeds the body to fn until the server ends it (returns 0),
 * the stream is cancelled (KILN_ECANCELED), nothing arrives for
 * idle_timeout_ms (KILN_ETIMEOUT; 0 -> no limit; TCP keepalive is on
 * anyway), fn aborts (its code, or KILN_ECANCELED), or the server answers
 * non-2xx (Status in err; fn is not called). A 401 triggers one credential
 * refresh and retry. */
int kube_client_stream(kube_client *c, kube_stream *s, const char *path, kube_data_fn fn, void *ud,
                       int64_t idle_timeout_ms, kube_err *err);

/* ---- for other transports in kiln_kube (kube_ws); not for general use ---- */

/* Credential refresh (forced or when due), rate limit and cancel check
 * before a request. Returns 0 or a negative code with err set. */
int kube_client_prepare(kube_client *c, int force_refresh, kiln_error *err);
/* "Bearer <token>" into buf (empty when no token applies); 0 or KILN_ENOMEM. */
int kube_client_bearer(kube_client *c, char *buf, size_t n);
/* Registers s as running (on = 1) or done (on = 0), so that
 * kube_client_cancel() reaches it. */
void kube_client_track(kube_client *c, kube_stream *s, int on);
/* A function kube_stream_cancel() calls (with the stream lock held) to wake
 * a transport's event loop; NULL to clear. */
void kube_stream_set_waker(kube_stream *s, void (*wake)(void *), void *arg);
int kube_stream_cancelled(kube_stream *s);

/* Counters for metrics and tests. */
typedef struct kube_client_stats {
    long requests; /* HTTP exchanges, retries included */
    long retries;
    long throttled; /* 429 replies */
    long auth_refreshes;
} kube_client_stats;

void kube_client_get_stats(kube_client *c, kube_client_stats *out);

/* Request latency by method, for /metrics: one HTTP exchange from the
 * request's start to the reply's end, as the client waited for it (each
 * retry counts apart; watches and other streams are not counted). Verb v
 * is 0..KUBE_VERBS-1; kube_client_verb names it ("GET", "POST", ...). */
#define KUBE_VERBS 5
const char *kube_client_verb(int v);
const kube_hist *kube_client_latency(const kube_client *c, int v);

#endif
