/* kl_server: libwebsockets glue (see kl_server.h).
 *
 * Each HTTP connection walks: headers (LWS_CALLBACK_HTTP) -> optional body
 * (HTTP_BODY*) -> kl_api_handle() -> response written from HTTP_WRITEABLE
 * in pieces -> transaction completed (keep-alive). Watches and log follows
 * stay in a streaming state and write one chunk per writable callback.
 * Chunked framing is written here, since lws only frames chunks for its
 * own file serving.
 *
 * Group commit: a request's writes go to the store's log without waiting,
 * and its reply (headers included) is held until the store's syncer
 * thread reports that an fdatasync covered them. The syncer wakes this
 * thread with lws_cancel_service(); on LWS_CALLBACK_EVENT_WAIT_CANCELLED
 * the held replies whose writes are now durable are asked to write. The
 * watchers are woken for the newly durable events at once when they were
 * last woken more than WATCH_BATCH_US ago, else at that mark: one wake-up
 * per fsync would cost every watcher a send per fsync, which under load
 * costs more CPU than the writes themselves. */
#include "kl_server.h"

#include <libwebsockets.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "klog.h"
#include "ktime.h"

#define MAX_BODY (64u << 20)
#define PIECE 65536
/* Under load, the longest extra delay of a watch event behind the fsync
 * that made it durable, to batch events per watcher. */
#define WATCH_BATCH_US 10000
/* A turn of the event loop shorter than this that ran none of this file's
 * callbacks is lws polling without waiting (see kl_server_run), and the
 * loop then sleeps IDLE_SLEEP_US. */
#define IDLE_TURN_US  100
#define IDLE_SLEEP_US 200

struct kl_server {
    struct lws_context *ctx;
    struct lws_vhost *vh;
    kl_api *api;
    int port;
    int insecure;
    char token[256];
    lws_sorted_usec_list_t sul;
    kl_tick_fn ticks[8];
    void *tick_ctx[8];
    int n_ticks;
    uint64_t last_rv;
    struct pss *held;      /* replies waiting for the group commit */
    struct pss *streams;   /* watches and log follows: what a kick wakes */
    lws_sorted_usec_list_t wsul;
    int watch_kick_scheduled;
    lws_usec_t last_watch_kick;
    int sync_err_logged;
    uint64_t work; /* callbacks that did something, and ticks */
};

enum { ST_IDLE, ST_BODY, ST_RESP, ST_WATCH, ST_LOG };

/* A connection's place on one of the server's lists. */
typedef struct plink {
    struct pss *next, *prev;
    struct pss **head; /* the list it is on, NULL: none */
} plink;

typedef struct pss {
    int state;
    plink held;   /* on the server's held list while need > 0 */
    plink stream; /* on its stream list while a watch or log follow */
    struct lws *wsi;
    char method[8];
    char *path;
    char *qbuf[KL_MAX_QUERY];
    int nq;
    char *accept, *ctype, *ua, *auth;
    char *body;
    size_t body_len, body_cap;
    long content_length;
    /* response */
    char *out;
    size_t out_len, out_off;
    kl_watch *watch;
    kl_log_stream *logs;
    int ws;
    /* headers waiting for the group commit that covers this request */
    int hdr_pending;
    int code;
    long len; /* -1: chunked stream */
    char rctype[128];
    char warning[512];
    int retry_after;
    uint64_t need; /* log records that must be durable first (0: none) */
} pss;

/* The link at offset off (offsetof(pss, held) or offsetof(pss, stream)). */
#define LINK(p, off) ((plink *)((char *)(p) + (off)))

static void list_add(pss **head, pss *p, size_t off)
{
    plink *l = LINK(p, off);
    l->head = head;
    l->prev = NULL;
    l->next = *head;
    if (*head)
        LINK(*head, off)->prev = p;
    *head = p;
}

static void list_del(pss *p, size_t off)
{
    plink *l = LINK(p, off);
    if (!l->head)
        return;
    if (l->prev)
        LINK(l->prev, off)->next = l->next;
    else
        *l->head = l->next;
    if (l->next)
        LINK(l->next, off)->prev = l->prev;
    memset(l, 0, sizeof(*l));
}

static void hold(kl_server *s, pss *p, struct lws *wsi)
{
    p->wsi = wsi;
    list_add(&s->held, p, offsetof(pss, held));
}

/* Puts p on the list of streams that kl_server_kick() wakes. */
static void stream_add(kl_server *s, pss *p, struct lws *wsi)
{
    p->wsi = wsi;
    list_add(&s->streams, p, offsetof(pss, stream));
}

static void pss_reset(pss *p)
{
    list_del(p, offsetof(pss, held));
    list_del(p, offsetof(pss, stream));
    free(p->path);
    for (int i = 0; i < p->nq; i++)
        free(p->qbuf[i]);
    free(p->accept);
    free(p->ctype);
    free(p->ua);
    free(p->auth);
    free(p->body);
    free(p->out);
    if (p->watch)
        kl_watch_free(p->watch);
    if (p->logs) {
        p->logs->close(p->logs->ctx);
        free(p->logs);
    }
    int ws = p->ws;
    memset(p, 0, sizeof(*p));
    p->ws = ws;
}

static char *hdr(struct lws *wsi, enum lws_token_indexes t)
{
    int n = lws_hdr_total_length(wsi, t);
    if (n <= 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    if (lws_hdr_copy(wsi, s, n + 1, t) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

static kl_server *server_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

/* Which method token is present. */
static const char *method_of(struct lws *wsi, enum lws_token_indexes *tok)
{
    static const struct {
        enum lws_token_indexes t;
        const char *m;
    } M[] = {{WSI_TOKEN_GET_URI, "GET"},     {WSI_TOKEN_POST_URI, "POST"},
             {WSI_TOKEN_PUT_URI, "PUT"},     {WSI_TOKEN_PATCH_URI, "PATCH"},
             {WSI_TOKEN_DELETE_URI, "DELETE"}, {WSI_TOKEN_OPTIONS_URI, "OPTIONS"},
             {WSI_TOKEN_HEAD_URI, "HEAD"}};
    for (size_t i = 0; i < sizeof(M) / sizeof(M[0]); i++)
        if (lws_hdr_total_length(wsi, M[i].t) > 0) {
            *tok = M[i].t;
            return M[i].m;
        }
    return NULL;
}

static void collect_query(struct lws *wsi, pss *p)
{
    char buf[8192];
    for (int i = 0; i < KL_MAX_QUERY; i++) {
        int n = lws_hdr_copy_fragment(wsi, buf, sizeof(buf), WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0)
            break;
        p->qbuf[p->nq] = strdup(buf);
        if (!p->qbuf[p->nq])
            break;
        p->nq++;
    }
}

static int authorized(kl_server *s, struct lws *wsi, pss *p)
{
    if (s->insecure)
        return 1;
    const char *path = p->path ? p->path : "";
    if (!strcmp(path, "/version") || !strcmp(path, "/healthz") || !strcmp(path, "/livez") ||
        !strcmp(path, "/readyz"))
        return 1;
    if (p->auth && !strncmp(p->auth, "Bearer ", 7) && s->token[0] &&
        CRYPTO_memcmp(p->auth + 7, s->token, strlen(s->token)) == 0 &&
        strlen(p->auth + 7) == strlen(s->token))
        return 1;
    SSL *ssl = lws_get_ssl(wsi);
    if (ssl) {
        X509 *peer = SSL_get1_peer_certificate(ssl);
        int ok = peer && SSL_get_verify_result(ssl) == X509_V_OK;
        X509_free(peer);
        if (ok)
            return 1;
    }
    return 0;
}

/* Writes the status line and headers, followed in the same write by body
 * (body_len bytes, may be 0) when given. len < 0: chunked stream. One
 * send per small reply instead of two halves the syscalls, TCP segments
 * and client wake-ups per request. */
static int write_headers(struct lws *wsi, int code, const char *ctype, long len,
                         const char *warning, int retry_after, const char *body,
                         size_t body_len)
{
    size_t cap = LWS_PRE + 2048 + body_len;
    unsigned char stack[LWS_PRE + 2048 + 2048];
    unsigned char *buf = cap <= sizeof(stack) ? stack : malloc(cap);
    if (!buf)
        return -1;
    int rc = -1;
    unsigned char *start = buf + LWS_PRE, *pp = start, *end = buf + LWS_PRE + 2048 - 1;
    if (lws_add_http_header_status(wsi, (unsigned)code, &pp, end))
        goto out;
    if (ctype && lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                              (const unsigned char *)ctype, (int)strlen(ctype),
                                              &pp, end))
        goto out;
    if (len >= 0) {
        if (lws_add_http_header_content_length(wsi, (lws_filepos_t)len, &pp, end))
            goto out;
    } else {
        static const char te[] = "chunked";
        if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING,
                                         (const unsigned char *)te, 7, &pp, end))
            goto out;
    }
    static const char cc[] = "no-cache, private";
    if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)cc, (int)strlen(cc), &pp, end))
        goto out;
    if (warning && warning[0]) {
        char w[600];
        snprintf(w, sizeof(w), "299 - \"%s\"", warning);
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)"warning:",
                                        (const unsigned char *)w, (int)strlen(w), &pp, end))
            goto out;
    }
    if (retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%d", retry_after);
        if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_RETRY_AFTER,
                                         (const unsigned char *)ra, (int)strlen(ra), &pp, end))
            goto out;
    }
    if (lws_finalize_http_header(wsi, &pp, end))
        goto out;
    if (body && body_len) {
        memcpy(pp, body, body_len);
        pp += body_len;
    }
    if (lws_write(wsi, start, (size_t)(pp - start), LWS_WRITE_HTTP_HEADERS) < 0)
        goto out;
    rc = 0;
out:
    if (buf != stack)
        free(buf);
    return rc;
}

/* Called on the store's syncer thread after each fdatasync. */
static void wake_loop(void *ctx)
{
    kl_server *s = ctx;
    lws_cancel_service(s->ctx);
}

static void watch_kick(lws_sorted_usec_list_t *sul)
{
    kl_server *s = lws_container_of(sul, kl_server, wsul);
    s->watch_kick_scheduled = 0;
    s->last_watch_kick = lws_now_usecs();
    kl_server_kick(s);
}

/* On the service thread after the syncer's wake-up: releases the held
 * replies that are now durable (or failed) and schedules the watchers. */
static void on_durable(kl_server *s)
{
    kl_store *st = kl_api_store(s->api);
    uint64_t d = kl_store_durable(st);
    int failed = kl_store_sync_error(st) != 0;
    if (failed && !s->sync_err_logged) {
        s->sync_err_logged = 1;
        klog(KLOG_ERROR, "write-ahead log fsync failed: writes are refused from now on",
             KS("error", strerror(kl_store_sync_error(st))), KEND);
    }
    for (pss *p = s->held, *next; p; p = next) {
        next = p->held.next;
        if (p->need <= d || failed) {
            struct lws *wsi = p->wsi;
            list_del(p, offsetof(pss, held));
            lws_callback_on_writable(wsi);
        }
    }
    if (!s->watch_kick_scheduled) {
        lws_usec_t wait = s->last_watch_kick + WATCH_BATCH_US - lws_now_usecs();
        if (wait <= 0) {
            s->last_watch_kick = lws_now_usecs();
            kl_server_kick(s);
        } else {
            s->watch_kick_scheduled = 1;
            lws_sul_schedule(s->ctx, 0, &s->wsul, watch_kick, wait);
        }
    }
}

/* A reply held for a write the log failed to make durable becomes a 500:
 * the write may be lost, so it must not be acknowledged. */
static int fail_held(pss *p)
{
    if (p->state != ST_RESP || !p->hdr_pending)
        return -1;
    free(p->out);
    static const char msg[] = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
                              "\"status\":\"Failure\",\"message\":\"storage: fsync of the "
                              "write-ahead log failed\",\"reason\":\"InternalError\",\"code\":500}";
    p->out = strdup(msg);
    if (!p->out)
        return -1;
    p->out_len = strlen(msg);
    p->out_off = 0;
    p->code = 500;
    p->len = (long)p->out_len;
    snprintf(p->rctype, sizeof(p->rctype), "application/json");
    p->warning[0] = 0;
    p->need = 0;
    return 0;
}

static void handle(kl_server *s, struct lws *wsi, pss *p)
{
    kl_req req;
    memset(&req, 0, sizeof(req));
    req.method = p->method;
    req.path = p->path ? p->path : "/";
    for (int i = 0; i < p->nq; i++) {
        char *eq = strchr(p->qbuf[i], '=');
        req.qk[req.nq] = p->qbuf[i];
        req.qv[req.nq] = eq ? eq + 1 : "";
        if (eq)
            *eq = 0;
        req.nq++;
    }
    req.accept = p->accept;
    req.content_type = p->ctype;
    req.user_agent = p->ua;
    req.body = p->body;
    req.body_len = p->body_len;
    kl_resp resp;
    if (!authorized(s, wsi, p)) {
        memset(&resp, 0, sizeof(resp));
        kl_api_status(&resp, 401, "Unauthorized", NULL, NULL, NULL, "Unauthorized");
    } else {
        kl_api_handle(s->api, &req, &resp);
    }
    /* Watchers are woken after the group commit (on_durable), so they
     * only see durable writes and get them in batches. */
    if (resp.watch) {
        p->watch = resp.watch;
        resp.watch = NULL;
        p->state = ST_WATCH;
        stream_add(s, p, wsi);
        p->code = 200;
        p->len = -1;
        snprintf(p->rctype, sizeof(p->rctype), "application/json");
    } else if (resp.logs) {
        p->logs = resp.logs;
        resp.logs = NULL;
        p->state = ST_LOG;
        stream_add(s, p, wsi);
        p->code = 200;
        p->len = -1;
        snprintf(p->rctype, sizeof(p->rctype), "text/plain");
    } else {
        p->out = resp.body;
        p->out_len = resp.len;
        resp.body = NULL;
        p->state = ST_RESP;
        p->code = resp.code ? resp.code : 500;
        p->len = (long)p->out_len;
        snprintf(p->rctype, sizeof(p->rctype), "%s", resp.ctype ? resp.ctype : "application/json");
        snprintf(p->warning, sizeof(p->warning), "%s", resp.warning);
        p->retry_after = resp.retry_after;
    }
    p->hdr_pending = 1;
    /* Group commit: the reply waits for the fsync covering every write
     * made so far, its own and those it may have read; on_durable asks
     * for the write then. */
    kl_store *st = kl_api_store(s->api);
    p->need = kl_store_dirty(st) ? kl_store_appended(st) : 0;
    kl_resp_release(&resp);
    if (p->need)
        hold(s, p, wsi);
    else
        lws_callback_on_writable(wsi);
}

/* Writes one chunk (framed) of data; final adds the terminator. */
static int write_chunk(struct lws *wsi, const char *data, size_t n, int final)
{
    size_t cap = LWS_PRE + n + 32;
    unsigned char *buf = malloc(cap);
    if (!buf)
        return -1;
    unsigned char *st = buf + LWS_PRE;
    size_t k = 0;
    if (n) {
        k += (size_t)snprintf((char *)st, 20, "%zx\r\n", n);
        memcpy(st + k, data, n);
        k += n;
        memcpy(st + k, "\r\n", 2);
        k += 2;
    }
    if (final) {
        memcpy(st + k, "0\r\n\r\n", 5);
        k += 5;
    }
    int w = lws_write(wsi, st, k, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
    free(buf);
    return w < 0 ? -1 : 0;
}

static int ws_send(struct lws *wsi, const char *data, size_t n)
{
    /* Each line is one text message, as the real server frames events. */
    const char *p = data, *e = data + n;
    while (p < e) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        size_t len = nl ? (size_t)(nl - p + 1) : (size_t)(e - p);
        unsigned char *buf = malloc(LWS_PRE + len);
        if (!buf)
            return -1;
        memcpy(buf + LWS_PRE, p, len);
        int w = lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT);
        free(buf);
        if (w < 0)
            return -1;
        p += len;
    }
    return 0;
}

/* True once the client of a streamed HTTP reply (watch, log follow) has
 * closed its end. libwebsockets reads nothing from an HTTP/1.1 connection
 * while its reply is unfinished, so a client that gave up leaves bytes (a
 * TLS close_notify) and an end of stream that nobody reads: its socket
 * stays readable and would keep the event loop spinning until the stream
 * ends. No client sends anything while it waits for such a reply; the
 * kicks every 100 ms look. */
static int peer_closed(struct lws *wsi)
{
    struct pollfd pf = {lws_get_socket_fd(wsi), POLLRDHUP, 0};
    return pf.fd >= 0 && poll(&pf, 1, 0) > 0 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static int writeable(kl_server *s, struct lws *wsi, pss *p)
{
    if (p->state == ST_IDLE || p->state == ST_BODY)
        return 0;
    if (p->need) {
        kl_store *st = kl_api_store(s->api);
        if (p->need > kl_store_durable(st)) {
            if (!kl_store_sync_error(st))
                return 0; /* not durable yet; on_durable wakes us */
            if (fail_held(p))
                return -1;
        }
        p->need = 0;
    }
    if ((p->state == ST_WATCH || p->state == ST_LOG) && !p->ws && peer_closed(wsi))
        return -1;
    if (p->hdr_pending && !p->ws) {
        p->hdr_pending = 0;
        kl_api_flush_log(s->api);
        /* A small reply goes out whole with its headers; lws buffers what
         * the socket does not take at once. */
        if (p->state == ST_RESP && p->out_len <= PIECE) {
            if (write_headers(wsi, p->code, p->rctype, p->len, p->warning, p->retry_after,
                              p->out, p->out_len))
                return -1;
            pss_reset(p);
            return lws_http_transaction_completed(wsi) ? -1 : 0;
        }
        if (write_headers(wsi, p->code, p->rctype, p->len, p->warning, p->retry_after, NULL, 0))
            return -1;
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (p->state == ST_RESP) {
        size_t left = p->out_len - p->out_off;
        size_t n = left > PIECE ? PIECE : left;
        unsigned char *buf = malloc(LWS_PRE + n + 1);
        if (!buf)
            return -1;
        if (n)
            memcpy(buf + LWS_PRE, p->out + p->out_off, n);
        int final = p->out_off + n == p->out_len;
        int w = lws_write(wsi, buf + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
        free(buf);
        if (w < 0)
            return -1;
        p->out_off += n;
        if (!final) {
            lws_callback_on_writable(wsi);
            return 0;
        }
        pss_reset(p);
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    if (p->state == ST_WATCH) {
        char *out = NULL;
        size_t len = 0;
        int end = kl_api_watch_poll(s->api, p->watch, &out, &len);
        int rc = 0;
        if (p->ws) {
            if (len)
                rc = ws_send(wsi, out, len);
            free(out);
            if (end || rc)
                return -1;
            return 0;
        }
        if (len || end)
            rc = write_chunk(wsi, out, len, end);
        free(out);
        if (rc)
            return -1;
        if (end) {
            pss_reset(p);
            return lws_http_transaction_completed(wsi) ? -1 : 0;
        }
        return 0;
    }
    if (p->state == ST_LOG) {
        char buf[PIECE];
        long n = p->logs->read(p->logs->ctx, buf, sizeof(buf));
        if (n > 0) {
            if (write_chunk(wsi, buf, (size_t)n, 0))
                return -1;
            lws_callback_on_writable(wsi);
            return 0;
        }
        if (n < 0) {
            if (write_chunk(wsi, NULL, 0, 1))
                return -1;
            pss_reset(p);
            return lws_http_transaction_completed(wsi) ? -1 : 0;
        }
        return 0;
    }
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    pss *p = user;
    kl_server *s = server_of(wsi);
    switch (reason) {
    case LWS_CALLBACK_HTTP:
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    case LWS_CALLBACK_HTTP_WRITEABLE:
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_ESTABLISHED:
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (s)
            s->work++;
        break;
    default:
        break;
    }
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        pss_reset(p);
        enum lws_token_indexes tok;
        const char *m = method_of(wsi, &tok);
        if (!m) {
            lws_return_http_status(wsi, 405, NULL);
            return -1;
        }
        snprintf(p->method, sizeof(p->method), "%s", m);
        p->path = strdup(in ? (const char *)in : "/");
        collect_query(wsi, p);
        p->accept = hdr(wsi, WSI_TOKEN_HTTP_ACCEPT);
        p->ctype = hdr(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE);
        p->ua = hdr(wsi, WSI_TOKEN_HTTP_USER_AGENT);
        p->auth = hdr(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
        char *cl = hdr(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
        p->content_length = cl ? strtol(cl, NULL, 10) : 0;
        free(cl);
        char *te = hdr(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING);
        int chunked = te && strstr(te, "chunked");
        free(te);
        if (p->content_length > 0 || chunked) {
            p->state = ST_BODY;
            return 0;
        }
        handle(s, wsi, p);
        return 0;
    }
    case LWS_CALLBACK_HTTP_BODY:
        if (p->body_len + len > MAX_BODY)
            return -1;
        if (p->body_len + len + 1 > p->body_cap) {
            size_t nc = (p->body_len + len + 1) * 2;
            char *nb = realloc(p->body, nc);
            if (!nb)
                return -1;
            p->body = nb;
            p->body_cap = nc;
        }
        memcpy(p->body + p->body_len, in, len);
        p->body_len += len;
        p->body[p->body_len] = 0;
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        handle(s, wsi, p);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return writeable(s, wsi, p);
    case LWS_CALLBACK_ESTABLISHED: {
        /* WebSocket watch: the URL is the same as for a chunked watch. */
        pss_reset(p);
        p->ws = 1;
        snprintf(p->method, sizeof(p->method), "GET");
        p->path = hdr(wsi, WSI_TOKEN_GET_URI);
        char *qm = p->path ? strchr(p->path, '?') : NULL;
        if (qm)
            *qm = 0;
        collect_query(wsi, p);
        p->auth = hdr(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
        p->ua = hdr(wsi, WSI_TOKEN_HTTP_USER_AGENT);
        int has_watch = 0;
        for (int i = 0; i < p->nq; i++)
            has_watch |= !strncmp(p->qbuf[i], "watch=", 6);
        if (!has_watch && p->nq < KL_MAX_QUERY)
            p->qbuf[p->nq++] = strdup("watch=true");
        kl_req req;
        memset(&req, 0, sizeof(req));
        req.method = "GET";
        req.path = p->path ? p->path : "/";
        for (int i = 0; i < p->nq; i++) {
            if (!p->qbuf[i])
                continue;
            char *eq = strchr(p->qbuf[i], '=');
            req.qk[req.nq] = p->qbuf[i];
            req.qv[req.nq] = eq ? eq + 1 : "";
            if (eq)
                *eq = 0;
            req.nq++;
        }
        req.user_agent = p->ua;
        if (!authorized(s, wsi, p))
            return -1;
        kl_resp resp;
        kl_api_handle(s->api, &req, &resp);
        if (!resp.watch) {
            if (resp.body)
                ws_send(wsi, resp.body, resp.len);
            kl_resp_release(&resp);
            return -1;
        }
        p->watch = resp.watch;
        kl_watch_set_ws(p->watch, 1);
        resp.watch = NULL;
        kl_resp_release(&resp);
        p->state = ST_WATCH;
        stream_add(s, p, wsi);
        lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (p->ws && p->state == ST_WATCH)
            return writeable(s, wsi, p);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return 0; /* incoming messages are ignored */
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* p is NULL here: this is the syncer's wake-up, not a connection. */
        if (s)
            on_durable(s);
        return 0;
    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (p)
            pss_reset(p);
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols PROTOCOLS[] = {
    {"kubelite", callback, sizeof(pss), 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void tick(lws_sorted_usec_list_t *sul)
{
    kl_server *s = lws_container_of(sul, kl_server, sul);
    int more = 0;
    s->work++;
    lws_usec_t t0 = lws_now_usecs();
    for (int i = 0; i < s->n_ticks; i++)
        more |= s->ticks[i](s->tick_ctx[i]);
    lws_usec_t took = lws_now_usecs() - t0;
    kl_api_flush_log(s->api); /* WebSocket requests send no reply headers */
    /* Controllers may have written; watches also need timeouts and bookmarks. */
    s->last_rv = kl_store_rv(kl_api_store(s->api));
    kl_server_kick(s);
    /* Work left over (a tick keeps each turn short): the next turn comes
     * after as long as this one took, so that at least half of this
     * thread's time goes to requests while a burst of pods starts. */
    lws_usec_t soon = took > LWS_US_PER_MS ? took : LWS_US_PER_MS;
    lws_sul_schedule(s->ctx, 0, &s->sul, tick, more ? soon : 100 * LWS_US_PER_MS);
}

int kl_server_new(const kl_server_opts *o, kl_api *api, kl_server **out, kiln_error *err)
{
    *out = NULL;
    kl_server *s = calloc(1, sizeof(*s));
    if (!s)
        return KILN_ENOMEM;
    s->api = api;
    s->insecure = o->insecure;
    snprintf(s->token, sizeof(s->token), "%s", o->token ? o->token : "");
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = o->port;
    info.iface = o->listen_host;
    info.protocols = PROTOCOLS;
    info.user = s;
    /* Every open watch keeps its header table until the stream ends, so
     * the pool bounds concurrent watches: 512 x 8 KiB = 4 MiB. */
    info.max_http_header_data = 8192;
    info.max_http_header_pool = 512;
    info.pt_serv_buf_size = 65536;
    info.timeout_secs = 3600;
    info.keepalive_timeout = 120;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 * 0;
    if (!o->insecure) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = o->cert_path;
        info.ssl_private_key_filepath = o->key_path;
        info.ssl_ca_filepath = o->ca_path;
        info.options |= LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT;
        info.options |= LWS_SERVER_OPTION_PEER_CERT_NOT_REQUIRED;
        /* Go clients switch to h2 when offered; serve HTTP/1.1 only. */
        info.alpn = "http/1.1";
    }
    s->ctx = lws_create_context(&info);
    if (!s->ctx) {
        free(s);
        return kiln_fail(err, KILN_ENET, "cannot create the HTTP server on %s:%d",
                         o->listen_host, o->port);
    }
    s->vh = lws_get_vhost_by_name(s->ctx, "default");
    s->port = s->vh ? lws_get_vhost_listen_port(s->vh) : o->port;
    s->last_rv = kl_store_rv(kl_api_store(api));
    int rc = kl_store_start_syncer(kl_api_store(api), wake_loop, s, err);
    if (rc) {
        lws_context_destroy(s->ctx);
        free(s);
        return rc;
    }
    lws_sul_schedule(s->ctx, 0, &s->sul, tick, 100 * LWS_US_PER_MS);
    *out = s;
    return 0;
}

void kl_server_free(kl_server *s)
{
    if (!s)
        return;
    /* The syncer must not wake a destroyed context. */
    kl_store_stop_syncer(kl_api_store(s->api), NULL);
    lws_sul_cancel(&s->wsul);
    lws_context_destroy(s->ctx);
    free(s);
}

int kl_server_port(const kl_server *s)
{
    return s->port;
}

void kl_server_add_tick(kl_server *s, kl_tick_fn fn, void *ctx)
{
    if (s->n_ticks < 8) {
        s->ticks[s->n_ticks] = fn;
        s->tick_ctx[s->n_ticks] = ctx;
        s->n_ticks++;
    }
}

/* Only the streams: idle keep-alive connections and replies waiting for
 * the group commit have nothing to write, and waking every connection on
 * each tick made each poll return at once with all of them writable. */
void kl_server_kick(kl_server *s)
{
    for (pss *p = s->streams; p; p = p->stream.next)
        lws_callback_on_writable(p->wsi);
}

/* lws waits in poll() for the time to its next timer in whole
 * milliseconds, rounded down: in the last millisecond before each timer
 * (the ticks come every millisecond under load) it polls every connection
 * without waiting, tens of thousands of times a second, which was half of
 * this thread's time in a burst of writes. A turn that took next to no
 * time and ran none of the callbacks is such a poll: sleep a little
 * instead, which delays a request that arrives meanwhile by at most that. */
int kl_server_run(kl_server *s, volatile int *stop)
{
    while (!*stop) {
        uint64_t seen = s->work;
        lws_usec_t t0 = lws_now_usecs();
        if (lws_service(s->ctx, 0) < 0)
            break;
        if (s->work == seen && lws_now_usecs() - t0 < IDLE_TURN_US)
            usleep(IDLE_SLEEP_US);
    }
    return 0;
}
