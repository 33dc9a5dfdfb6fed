/* serve_http: libwebsockets transport of the model server (see
 * serve_http.h). */
#include "serve_http.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "klog.h"

/* ======================================================================
 * types
 * ====================================================================== */

/* Response headers are written into the spare bytes in front of the body,
 * after libwebsockets' own LWS_PRE, so one send carries both. */
#define HDR_MAX  256
#define HDR_ROOM (LWS_PRE + HDR_MAX)
/* Buffers that grew past this for one big request are given back. */
#define KEEP_MAX (1u << 20)

/* C_NEW: accepted, no request yet (the header deadline runs from the
 * accept); C_IDLE: keep-alive between requests; C_READING, C_RESPONDING:
 * a request in flight; C_CLOSING: answered 408, being closed. */
enum { C_NEW, C_IDLE, C_READING, C_RESPONDING, C_CLOSING };

typedef struct worker worker;

/* Per-connection state. libwebsockets 4.1 frees its per-session data at
 * the end of every HTTP transaction, so this lives in our own allocation,
 * hung on the wsi as opaque user data, kept for the connection's life and
 * freed when it closes: buffers are reused across keep-alive requests. */
typedef struct conn {
    struct conn *prev, *next; /* the worker's connections with a request seen */
    struct lws *wsi;
    int state;
    int method;
    int pre_status; /* decided before the body: 404/405/411/413/414 */
    const char *pre_why;
    int discard;     /* drop body bytes */
    int close_after; /* answer with Connection: close, then close */
    uint64_t t0;     /* headers complete, ns */
    char path[1024];
    char query[512];
    char ctype[128];
    sbuf body;
    sbuf resp;
    serve_response rs;
    serve_job job; /* a prediction parsed, its inference pending */
    int pending;   /* in the worker's pend list */
} conn;

struct worker {
    serve_http *http;
    serve_app *app;
    struct lws_context *ctx;
    struct lws_vhost *vh;
    int lfd;          /* this thread's listen socket (SO_REUSEPORT) */
    struct lws *lwsi; /* lfd adopted as a raw descriptor */
    int adopted;
    pthread_t th;
    int started;
    conn *conns;
    /* request scratch: a thread runs one request's (or batch's) model at
     * a time */
    serve_scratch scratch;
    /* connections whose prediction waits for the end of this pass of the
     * event loop, with their jobs and responses for serve_run_jobs */
    conn **pend;
    serve_job **pend_job;
    serve_response **pend_rs;
    int npend, pend_cap;
    int inflight;
    int shutting;
    uint64_t deadline;
    lws_sorted_usec_list_t sweep;
};

struct serve_http {
    serve_app *app;
    int n;
    worker *w;
    _Atomic int stop;
    _Atomic int left_inflight;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ======================================================================
 * connections
 * ====================================================================== */

static conn *conn_get(worker *w, struct lws *wsi)
{
    conn *c = lws_get_opaque_user_data(wsi);
    if (c)
        return c;
    c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->wsi = wsi;
    sbuf_init(&c->body, 0);
    sbuf_init(&c->resp, HDR_ROOM);
    serve_job_init(&c->job);
    c->state = C_NEW;
    c->t0 = now_ns();
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    lws_set_opaque_user_data(wsi, c);
    return c;
}

static void conn_free(worker *w, struct lws *wsi)
{
    conn *c = lws_get_opaque_user_data(wsi);
    if (!c)
        return;
    lws_set_opaque_user_data(wsi, NULL);
    if (c->state == C_READING || c->state == C_RESPONDING) {
        /* the client went away mid-request: no answer, no observation */
        w->inflight--;
        serve_metrics_inflight(&w->app->metrics, -1);
    }
    if (c->pending) {
        /* closed while its prediction waited: drop it from the batch */
        for (int i = 0; i < w->npend; i++) {
            if (w->pend[i] == c) {
                w->npend--;
                memmove(w->pend + i, w->pend + i + 1, (size_t)(w->npend - i) * sizeof *w->pend);
                break;
            }
        }
    }
    serve_job_release(&c->job);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    sbuf_release(&c->body);
    sbuf_release(&c->resp);
    free(c);
}

static int method_of(struct lws *wsi)
{
    static const struct {
        enum lws_token_indexes tok;
        int method;
    } m[] = {
        {WSI_TOKEN_GET_URI, SM_GET},         {WSI_TOKEN_POST_URI, SM_POST},
        {WSI_TOKEN_HEAD_URI, SM_HEAD},       {WSI_TOKEN_PUT_URI, SM_PUT},
        {WSI_TOKEN_DELETE_URI, SM_DELETE},   {WSI_TOKEN_PATCH_URI, SM_PATCH},
        {WSI_TOKEN_OPTIONS_URI, SM_OPTIONS},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (lws_hdr_total_length(wsi, m[i].tok) > 0)
            return m[i].method;
    return SM_OTHER;
}

/* Queues c's parsed prediction for run_pending; 0 when out of memory. */
static int pend_add(worker *w, conn *c)
{
    if (w->npend == w->pend_cap) {
        int cap = w->pend_cap ? w->pend_cap * 2 : 32;
        conn **p = realloc(w->pend, (size_t)cap * sizeof *p);
        if (p)
            w->pend = p;
        serve_job **pj = p ? realloc(w->pend_job, (size_t)cap * sizeof *pj) : NULL;
        if (pj)
            w->pend_job = pj;
        serve_response **pr = pj ? realloc(w->pend_rs, (size_t)cap * sizeof *pr) : NULL;
        if (!pr)
            return 0;
        w->pend_rs = pr;
        w->pend_cap = cap;
    }
    w->pend[w->npend++] = c;
    c->pending = 1;
    return 1;
}

/* Computes the answer (a JSON prediction only up to its parsing: its
 * inference waits for run_pending) and asks for a writable callback to
 * send it. */
static void respond(worker *w, conn *c)
{
    c->state = C_RESPONDING;
    c->rs.body = &c->resp;
    c->rs.route = SR_OTHER;
    if (c->pre_status) {
        serve_match mt;
        serve_route_match(c->path, c->method, w->app->cfg.name, &mt);
        serve_error(&c->rs, c->pre_status, c->pre_why);
        c->rs.route = mt.route;
    } else {
        serve_request rq = {
            .method = c->method,
            .path = c->path,
            .query = c->query[0] ? c->query : NULL,
            .ctype = c->ctype[0] ? c->ctype : NULL,
            .body = c->body.len ? sbuf_data(&c->body) : "",
            .len = c->body.len,
        };
        if (serve_handle_defer(w->app, &w->scratch, &c->job, &rq, &c->rs)) {
            if (pend_add(w, c))
                return;
            /* no room to defer: answer it alone, now */
            serve_job *j = &c->job;
            serve_response *r = &c->rs;
            serve_run_jobs(w->app, &w->scratch, &j, &r, 1);
        }
    }
    lws_callback_on_writable(c->wsi);
}

/* Runs the predictions parsed in this pass of the event loop as batches
 * and asks to send their answers. */
static void run_pending(worker *w)
{
    int n = w->npend;
    if (!n)
        return;
    for (int i = 0; i < n; i++) {
        w->pend_job[i] = &w->pend[i]->job;
        w->pend_rs[i] = &w->pend[i]->rs;
    }
    serve_run_jobs(w->app, &w->scratch, w->pend_job, w->pend_rs, n);
    w->npend = 0;
    for (int i = 0; i < n; i++) {
        w->pend[i]->pending = 0;
        lws_callback_on_writable(w->pend[i]->wsi);
    }
}

static void fail_early(conn *c, int status, const char *why, int close_after)
{
    if (!c->pre_status) {
        c->pre_status = status;
        c->pre_why = why;
    }
    c->discard = 1;
    if (close_after)
        c->close_after = 1;
}

/* Writes bytes straight to the socket, waiting for it (bounded): for the
 * few writes made outside libwebsockets' write path, when it has nothing
 * queued on this connection (100 Continue, answers on a connection that
 * closes right after, which libwebsockets would cut short on close). */
static void send_raw(struct lws *wsi, const unsigned char *p, size_t n)
{
    int fd = lws_get_socket_fd(wsi);
    uint64_t until = now_ns() + 1000000000u;
    while (n && fd >= 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) {
            p += k;
            n -= (size_t)k;
            continue;
        }
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return;
        if (now_ns() > until)
            return;
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        poll(&pf, 1, 100);
    }
}

static void send_all(struct lws *wsi, const unsigned char *p, size_t n)
{
    send_raw(wsi, p, n);
    shutdown(lws_get_socket_fd(wsi), SHUT_WR);
}

static int expects_continue(struct lws *wsi)
{
    char v[32];
    return lws_hdr_copy(wsi, v, (int)sizeof v, WSI_TOKEN_HTTP_EXPECT) > 0 &&
           !strcasecmp(v, "100-continue");
}

static int on_headers(worker *w, struct lws *wsi, const char *uri)
{
    conn *c = conn_get(w, wsi);
    if (!c)
        return -1;
    if (c->state != C_IDLE && c->state != C_NEW)
        return -1; /* a request while one is pending, or after a 408 */
    c->t0 = now_ns();
    c->state = C_READING;
    w->inflight++;
    serve_metrics_inflight(&w->app->metrics, 1);
    c->pre_status = 0;
    c->pre_why = NULL;
    c->discard = 0;
    c->close_after = atomic_load(&w->http->stop) ? 1 : 0;
    sbuf_reset(&c->body);
    c->method = method_of(wsi);

    size_t ul = strlen(uri);
    if (ul >= sizeof c->path) {
        c->path[0] = '\0';
        fail_early(c, 414, "the request path is too long", 0);
    } else {
        memcpy(c->path, uri, ul + 1);
    }
    if (lws_hdr_copy(wsi, c->query, (int)sizeof c->query, WSI_TOKEN_HTTP_URI_ARGS) < 0)
        c->query[0] = '\0';
    if (lws_hdr_copy(wsi, c->ctype, (int)sizeof c->ctype, WSI_TOKEN_HTTP_CONTENT_TYPE) < 0)
        snprintf(c->ctype, sizeof c->ctype, "%s",
                 lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE) ? "x-invalid/too-long"
                                                                        : "");

    serve_match mt;
    serve_route_match(c->path, c->method, w->app->cfg.name, &mt);
    if (mt.status)
        fail_early(c, mt.status, mt.why, 0);

    int has_body = 0;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
        /* Chunked request bodies are not supported: without a length we
         * cannot tell where the next request starts, so answer and close. */
        fail_early(c, 411, "send the body with a Content-Length", 1);
    } else {
        char cl[32];
        int n = lws_hdr_copy(wsi, cl, (int)sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH);
        if (n > 0) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(cl, &end, 10);
            if (errno || end == cl || *end || cl[0] == '-') {
                fail_early(c, 400, "bad Content-Length", 1);
            } else if (v > 0) {
                has_body = 1;
                if (v > w->app->cfg.max_body)
                    fail_early(c, 413, "the body is larger than the server's --max-body", 0);
            }
        } else if (n < 0 && lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
            fail_early(c, 400, "bad Content-Length", 1);
        }
    }
    if (has_body && expects_continue(wsi)) {
        if (c->pre_status) {
            /* the client holds the body back until told to send it: answer
             * now and close instead of waiting for a body never sent */
            c->close_after = 1;
            has_body = 0;
        } else {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            send_raw(wsi, (const unsigned char *)cont, sizeof cont - 1);
        }
    }
    if (!has_body)
        respond(w, c);
    return 0;
}

static int on_body(worker *w, conn *c, const void *in, size_t len)
{
    if (!c || c->state != C_READING)
        return 0;
    if (now_ns() - c->t0 > (uint64_t)w->app->cfg.timeout_s * 1000000000u) {
        fail_early(c, 408, "the request body was not delivered in time", 1);
        respond(w, c);
        return 0;
    }
    if (c->discard)
        return 0;
    if (c->body.len + len > w->app->cfg.max_body || sbuf_append(&c->body, in, len)) {
        fail_early(c, 413, "the body is larger than the server's --max-body", 0);
        sbuf_reset(&c->body);
    }
    return 0;
}

/* Appends s at *p if it fits before end. */
static int put(char **p, const char *end, const char *s, size_t n)
{
    if ((size_t)(end - *p) < n)
        return -1;
    memcpy(*p, s, n);
    *p += n;
    return 0;
}

/* The status line and headers, into out (HDR_MAX bytes); returns their
 * length or -1 when they do not fit. Written by hand: snprintf's format
 * interpretation was a visible share of a small response's cost. */
static int status_head(char *out, int status, const char *ctype, size_t len, int close)
{
    char num[24], *p = out;
    const char *end = out + HDR_MAX;
    const char *text = serve_status_text(status);
    int n = 0;
    do
        num[sizeof num - 1 - n++] = (char)('0' + len % 10);
    while ((len /= 10) != 0 && n < (int)sizeof num);
    char code[4] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
                    (char)('0' + status % 10), ' '};
    static const char ct[] = "\r\nContent-Type: ", cl[] = "\r\nContent-Length: ",
                      cc[] = "\r\nConnection: close";
    if (status < 100 || status > 999 || put(&p, end, "HTTP/1.1 ", 9) || put(&p, end, code, 4) ||
        put(&p, end, text, strlen(text)) || put(&p, end, ct, sizeof ct - 1) ||
        put(&p, end, ctype, strlen(ctype)) || put(&p, end, cl, sizeof cl - 1) ||
        put(&p, end, num + sizeof num - n, (size_t)n) ||
        (close && put(&p, end, cc, sizeof cc - 1)) || put(&p, end, "\r\n\r\n", 4))
        return -1;
    return (int)(p - out);
}

static int on_writeable(worker *w, conn *c, struct lws *wsi)
{
    if (!c || c->state != C_RESPONDING || c->pending)
        return 0;
    sbuf *b = &c->resp;
    if (sbuf_reserve(b, 0)) {
        /* no memory even for an empty body: give up on this connection */
        c->close_after = 1;
    }
    /* Once SIGTERM came (the drain before the stop included), every answer
     * ends its connection: a client's next request opens a new one, which
     * the Service sends to a pod that is staying, instead of reusing one
     * this server will close when the drain ends. */
    if (atomic_load_explicit(&w->app->stopping, memory_order_relaxed))
        c->close_after = 1;
    char hdr[HDR_MAX];
    int hl = b->mem ? status_head(hdr, c->rs.status, c->rs.ctype, b->len, c->close_after) : -1;
    if (hl < 0)
        return -1;
    unsigned char *start = (unsigned char *)sbuf_data(b) - hl;
    memcpy(start, hdr, (size_t)hl);
    size_t total = (size_t)hl + (c->method == SM_HEAD ? 0 : b->len);

    serve_metrics_observe(&w->app->metrics, c->rs.route, c->rs.status, now_ns() - c->t0);
    serve_metrics_inflight(&w->app->metrics, -1);
    w->inflight--;
    c->state = C_IDLE;

    int rc = 0;
    if (c->close_after) {
        send_all(wsi, start, total);
        rc = -1;
    } else if (lws_write(wsi, start, total, LWS_WRITE_HTTP_FINAL) < 0) {
        rc = -1;
    } else if (lws_http_transaction_completed(wsi)) {
        rc = -1;
    }
    if (c->resp.cap > KEEP_MAX)
        sbuf_release(&c->resp);
    if (c->body.cap > KEEP_MAX)
        sbuf_release(&c->body);
    if (c->job.batch.cap > KEEP_MAX / sizeof(float))
        serve_batch_release(&c->job.batch);
    sbuf_reset(&c->resp);
    return rc;
}

/* ======================================================================
 * service threads
 * ====================================================================== */

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    worker *w = lws_context_user(lws_get_context(wsi));
    conn *c = wsi ? lws_get_opaque_user_data(wsi) : NULL;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return on_headers(w, wsi, in ? (const char *)in : "/");
    case LWS_CALLBACK_HTTP_BODY:
        return on_body(w, c, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (c && c->state == C_READING)
            respond(w, c);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return on_writeable(w, c, wsi);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_WSI_DESTROY:
        conn_free(w, wsi);
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        return 0; /* the service loop looks at the stop flag */
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return -1; /* plain HTTP only: no WebSocket or h2c upgrades */
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* The listen socket is ours (libwebsockets 4.1 cannot share a port
 * between contexts on Linux), adopted as a raw descriptor: when it is
 * readable, accept and hand each connection to libwebsockets as HTTP. */
/* Accepts every connection waiting on the listen socket and hands it to
 * libwebsockets as HTTP. */
static void accept_pending(worker *w)
{
    while (w->lfd >= 0) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                klog(KLOG_WARN, "accept failed", KS("error", strerror(errno)), KEND);
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* on failure lws_adopt_socket_vhost closes fd itself */
        struct lws *nw = lws_adopt_socket_vhost(w->vh, fd);
        if (nw && !conn_get(w, nw))
            lws_set_timeout(nw, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
}

static int listen_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len)
{
    worker *w = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE:
        accept_pending(w);
        return 0;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        w->lwsi = NULL;
        w->lfd = -1; /* closed by libwebsockets */
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols protocols[] = {
    {.name = "kiln-serve",
     .callback = callback,
     .per_session_data_size = 0,
     .rx_buffer_size = 65536},
    {.name = "kiln-listen", .callback = listen_callback},
    {.name = NULL},
};

/* Once a second: a connection still reading its body after the timeout
 * (a slow or stalled client) gets 408 and is closed. */
static void sweep_cb(lws_sorted_usec_list_t *sul)
{
    static const char late_headers[] =
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
        "Content-Length: 58\r\nConnection: close\r\n\r\n"
        "{\"error\":\"the request headers were not delivered in time\"}";
    worker *w = lws_container_of(sul, worker, sweep);
    uint64_t now = now_ns(), limit = (uint64_t)w->app->cfg.timeout_s * 1000000000u;
    for (conn *c = w->conns; c; c = c->next) {
        if (now - c->t0 <= limit)
            continue;
        if (c->state == C_READING) {
            klog(KLOG_WARN, "request body timed out", KS("path", c->path), KEND);
            fail_early(c, 408, "the request body was not delivered in time", 1);
            respond(w, c);
        } else if (c->state == C_NEW) {
            /* Connected but no complete request headers in time (a slow
             * or silent client): libwebsockets has nothing queued on this
             * socket, so answer directly and close. */
            send_all(c->wsi, (const unsigned char *)late_headers, sizeof late_headers - 1);
            serve_metrics_observe(&w->app->metrics, SR_OTHER, 408, now - c->t0);
            c->state = C_CLOSING;
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        }
    }
    lws_sul_schedule(w->ctx, 0, &w->sweep, sweep_cb, LWS_US_PER_SEC);
}

/* On stop: connections between requests are closed, unless request
 * bytes are already waiting on the socket (a request sent before the
 * stop is still answered); requests in flight finish with
 * Connection: close. */
static void close_idle(worker *w)
{
    for (conn *c = w->conns; c; c = c->next) {
        if (c->state == C_IDLE || c->state == C_NEW) {
            int pending = 0;
            if (ioctl(lws_get_socket_fd(c->wsi), FIONREAD, &pending) || pending <= 0)
                lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        } else {
            c->close_after = 1;
        }
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (;;) {
        if (lws_service(w->ctx, 0) < 0)
            break;
        run_pending(w);
        if (!atomic_load(&w->http->stop))
            continue;
        if (!w->shutting) {
            w->shutting = 1;
            w->deadline = now_ns() + (uint64_t)w->app->cfg.grace_s * 1000000000u;
            /* connections the kernel completed before the stop are taken
             * (their requests are answered), then the socket is closed */
            accept_pending(w);
            /* shutdown, not close: the descriptor stays libwebsockets' to
             * close, but the kernel stops queueing connections on it */
            if (w->lfd >= 0)
                shutdown(w->lfd, SHUT_RDWR);
            if (w->lwsi)
                lws_set_timeout(w->lwsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        }
        close_idle(w);
        if (!w->conns || now_ns() > w->deadline)
            break;
    }
    if (w->inflight > 0)
        atomic_fetch_add(&w->http->left_inflight, w->inflight);
    return NULL;
}

static void lws_log(int level, const char *line)
{
    klog_line(level & LLL_ERR ? KLOG_ERROR : KLOG_WARN, "libwebsockets", line);
}

/* A listen socket with SO_REUSEPORT, so every service thread can have
 * its own on the same address and port. */
static int open_listener(const char *address, int port, int *fd_out, int *port_out, kiln_error *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(address, ps, &hints, &ai);
    if (rc)
        return kiln_fail(err, KILN_EINVAL, "bad listen address '%s': %s", address,
                         gai_strerror(rc));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 1024)) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return kiln_fail(err, KILN_EIO, "cannot listen on %s:%d: %s", address, port, strerror(e));
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    *port_out = port;
    if (!getsockname(fd, (struct sockaddr *)&ss, &sl))
        *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return 0;
}

static struct lws_context *make_context(worker *w)
{
    const serve_config *cfg = &w->app->cfg;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = protocols;
    info.user = w;
    info.vhost_name = "kiln";
    /* our own sweep answers a stalled body with 408 at timeout_s; the
     * library's own network timeout is only the backstop */
    info.timeout_secs = (unsigned int)cfg->timeout_s + 3;
    info.timeout_secs_ah_idle = (unsigned int)cfg->timeout_s + 3;
    info.keepalive_timeout = 60;
    info.pt_serv_buf_size = 65536;
    info.max_http_header_data = 8192;
    info.count_threads = 1;
    return lws_create_context(&info);
}

/* ======================================================================
 * API
 * ====================================================================== */

int serve_http_start(serve_app *app, serve_http **out, int *port, kiln_error *err)
{
    *out = NULL;
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
    serve_http *h = calloc(1, sizeof *h);
    int n = app->cfg.threads > 0 ? app->cfg.threads : 1;
    if (!h || !(h->w = calloc((size_t)n, sizeof *h->w))) {
        free(h);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    h->app = app;
    h->n = n;
    atomic_init(&h->stop, 0);
    atomic_init(&h->left_inflight, 0);
    for (int i = 0; i < n; i++) {
        h->w[i].lfd = -1;
        serve_scratch_init(&h->w[i].scratch);
    }
    int p = app->cfg.port;
    for (int i = 0; i < n; i++) {
        worker *w = &h->w[i];
        w->http = h;
        w->app = app;
        /* port 0: the first socket gets a free port, the others share it */
        int rc = open_listener(app->cfg.address, p, &w->lfd, &p, err);
        if (rc) {
            serve_http_free(h);
            return rc;
        }
        w->ctx = make_context(w);
        w->vh = w->ctx ? lws_get_vhost_by_name(w->ctx, "kiln") : NULL;
        lws_sock_file_fd_type u;
        u.filefd = w->lfd;
        if (w->vh)
            w->lwsi =
                lws_adopt_descriptor_vhost(w->vh, LWS_ADOPT_RAW_FILE_DESC, u, "kiln-listen", NULL);
        if (w->vh)
            w->adopted = 1; /* closed by libwebsockets even when adoption failed */
        if (!w->lwsi) {
            serve_http_free(h);
            return kiln_fail(err, KILN_EIO, "cannot start the HTTP service");
        }
        lws_sul_schedule(w->ctx, 0, &w->sweep, sweep_cb, LWS_US_PER_SEC);
    }
    for (int i = 0; i < n; i++) {
        if (pthread_create(&h->w[i].th, NULL, worker_main, &h->w[i])) {
            serve_http_stop(h);
            serve_http_join(h);
            serve_http_free(h);
            return kiln_fail(err, KILN_EINTERNAL, "cannot start a service thread");
        }
        pthread_setname_np(h->w[i].th, "serve-http");
        h->w[i].started = 1;
    }
    *port = p;
    *out = h;
    return 0;
}

void serve_http_stop(serve_http *h)
{
    atomic_store(&h->stop, 1);
    for (int i = 0; i < h->n; i++)
        if (h->w[i].ctx)
            lws_cancel_service(h->w[i].ctx);
}

int serve_http_join(serve_http *h)
{
    for (int i = 0; i < h->n; i++) {
        if (h->w[i].started) {
            pthread_join(h->w[i].th, NULL);
            h->w[i].started = 0;
        }
    }
    return atomic_load(&h->left_inflight);
}

void serve_http_free(serve_http *h)
{
    if (!h)
        return;
    for (int i = 0; i < h->n; i++) {
        if (h->w[i].ctx) {
            lws_context_destroy(h->w[i].ctx);
            h->w[i].ctx = NULL;
        }
        /* once adopted, libwebsockets owns (and closes) the listen socket */
        if (h->w[i].lfd >= 0 && !h->w[i].adopted)
            close(h->w[i].lfd);
        serve_scratch_release(&h->w[i].scratch);
        free(h->w[i].pend);
        free(h->w[i].pend_job);
        free(h->w[i].pend_rs);
    }
    free(h->w);
    free(h);
}
