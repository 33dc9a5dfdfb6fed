/* ctrl_http: /metrics, /healthz, /readyz and the dashboard on
 * libwebsockets (see ctrl_http.h). One context, one vhost per address, one
 * service thread; every callback and the snapshot timer run on it, so the
 * dashboard state below needs no lock. */
#include "ctrl_http.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "ctrl_dash.h"
#include "klog.h"

#define DASH_POLL_MS 500 /* how often connected dashboards look for changes */
#define DASH_MAX_WS  64  /* dashboard sockets at once; more are refused */

/* One response per connection turn: built on the request, written when
 * the socket is writable. A dashboard WebSocket uses the same storage:
 * it remembers which snapshot version it was sent last. */
typedef struct session {
    char *body;
    size_t len;
    int status;
    const char *type;
    /* WebSocket */
    struct lws *wsi;
    struct session *next;
    unsigned long sent;
} session;

struct ctrl_http {
    ctrl *c;
    struct lws_context *ctx;
    pthread_t thread;
    int started;
    atomic_int stop;
    /* dashboard: touched only on the service thread */
    session *ws; /* connected dashboard sockets */
    int n_ws;
    char *snap; /* the last snapshot text */
    size_t snap_len;
    unsigned long version; /* bumped whenever snap changes */
    lws_sorted_usec_list_t sul;
};

static int handle(struct lws *wsi, session *s, const char *uri)
{
    ctrl_http *h = lws_context_user(lws_get_context(wsi));
    s->type = "text/plain; charset=utf-8";
    s->status = 200;
    if (!strcmp(uri, "/metrics")) {
        s->body = ctrl_metrics_text(h->c);
        s->type = "text/plain; version=0.0.4; charset=utf-8";
    } else if (!strcmp(uri, "/healthz")) {
        s->body = strdup("ok\n");
    } else if (!strcmp(uri, "/readyz")) {
        int ready = ctrl_ready(h->c);
        s->status = ready ? 200 : 503;
        s->body = strdup(ready ? "ok\n" : "caches not synced\n");
    } else if (!strcmp(uri, "/dashboard") || !strcmp(uri, "/dashboard/")) {
        s->body = strdup(ctrl_dash_page());
        s->type = "text/html; charset=utf-8";
    } else {
        s->status = 404;
        s->body = strdup("not found\n");
    }
    if (!s->body)
        return -1;
    s->len = strlen(s->body);
    unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf;
    if (lws_add_http_common_headers(wsi, (unsigned int)s->status, s->type, s->len, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

/* Rebuilds the snapshot; a different text gets a new version and wakes
 * every dashboard socket. */
static void refresh(ctrl_http *h)
{
    cJSON *jobs = NULL, *snap = NULL;
    kiln_error err = {0};
    if (ctrl_list_jobs(h->c, &jobs) != 0 || ctrl_dash_snapshot(jobs, &snap, &err) != 0) {
        cJSON_Delete(jobs);
        return;
    }
    cJSON_Delete(jobs);
    char *text = cJSON_PrintUnformatted(snap);
    cJSON_Delete(snap);
    if (!text)
        return;
    if (h->snap && !strcmp(h->snap, text)) {
        free(text);
        return;
    }
    free(h->snap);
    h->snap = text;
    h->snap_len = strlen(text);
    h->version++;
    for (session *w = h->ws; w; w = w->next)
        lws_callback_on_writable(w->wsi);
}

static void on_timer(lws_sorted_usec_list_t *sul)
{
    ctrl_http *h = lws_container_of(sul, ctrl_http, sul);
    if (h->n_ws > 0)
        refresh(h);
    lws_sul_schedule(h->ctx, 0, &h->sul, on_timer, DASH_POLL_MS * LWS_US_PER_MS);
}

static void ws_unlink(ctrl_http *h, session *s)
{
    for (session **p = &h->ws; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            h->n_ws--;
            return;
        }
    }
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, session *s)
{
    ctrl_http *h = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        /* Only the dashboard speaks WebSocket here. */
        char uri[64];
        if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 ||
            strcmp(uri, "/dashboard/ws") || h->n_ws >= DASH_MAX_WS)
            return 1;
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED:
        memset(s, 0, sizeof *s);
        s->wsi = wsi;
        s->next = h->ws;
        h->ws = s;
        h->n_ws++;
        refresh(h);
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (!h->snap || s->sent == h->version)
            return 0;
        unsigned char *buf = malloc(LWS_PRE + h->snap_len);
        if (!buf)
            return -1;
        memcpy(buf + LWS_PRE, h->snap, h->snap_len);
        int w = lws_write(wsi, buf + LWS_PRE, h->snap_len, LWS_WRITE_TEXT);
        free(buf);
        if (w < (int)h->snap_len)
            return -1;
        s->sent = h->version;
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        return 0; /* the page sends nothing that matters */
    case LWS_CALLBACK_CLOSED:
        ws_unlink(h, s);
        return 0;
    default:
        return 0;
    }
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    session *s = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
    case LWS_CALLBACK_ESTABLISHED:
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_CLOSED:
        return ws_callback(wsi, reason, s);
    case LWS_CALLBACK_HTTP: {
        char uri[256];
        snprintf(uri, sizeof uri, "%.*s", (int)len, (const char *)in);
        if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0) {
            /* only GET is served */
            lws_return_http_status(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED, NULL);
            return -1;
        }
        return handle(wsi, s, uri);
    }
    case LWS_CALLBACK_HTTP_WRITEABLE: {
        if (!s->body)
            return -1;
        unsigned char *buf = malloc(LWS_PRE + s->len + 1);
        if (!buf)
            return -1;
        memcpy(buf + LWS_PRE, s->body, s->len);
        int w = lws_write(wsi, buf + LWS_PRE, s->len, LWS_WRITE_HTTP_FINAL);
        free(buf);
        free(s->body);
        s->body = NULL;
        if (w < (int)s->len)
            return -1;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    case LWS_CALLBACK_CLOSED_HTTP:
        free(s->body);
        s->body = NULL;
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols protocols[] = {
    {.name = "kiln-ctrl-http", .callback = callback, .per_session_data_size = sizeof(session)},
    {.name = NULL},
};

static void *service(void *arg)
{
    ctrl_http *h = arg;
    while (!atomic_load(&h->stop))
        if (lws_service(h->ctx, 0) < 0)
            break;
    return NULL;
}

/* "HOST:PORT" or ":PORT" -> host (NULL: all) and port; "0" -> off. */
static int parse_addr(const char *addr, char *host, size_t n, int *port)
{
    if (!addr || !strcmp(addr, "0") || !*addr)
        return 1;
    const char *colon = strrchr(addr, ':');
    if (!colon)
        return -1;
    snprintf(host, n, "%.*s", (int)(colon - addr), addr);
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

static void lws_log(int level, const char *line)
{
    klog_line(level & LLL_ERR ? KLOG_ERROR : KLOG_WARN, "libwebsockets", line);
}

int ctrl_http_start(ctrl *c, const char *metrics_addr, const char *health_addr, ctrl_http **out,
                    int *metrics_port, int *health_port, kiln_error *err)
{
    *out = NULL;
    *metrics_port = *health_port = 0;
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
    ctrl_http *h = calloc(1, sizeof *h);
    if (!h)
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    h->c = c;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    info.user = h;
    h->ctx = lws_create_context(&info);
    if (!h->ctx) {
        free(h);
        return kiln_fail(err, KILN_EINTERNAL, "cannot create the HTTP context");
    }
    const char *addrs[2] = {metrics_addr, health_addr};
    const char *names[2] = {"metrics", "health"};
    int *ports[2] = {metrics_port, health_port};
    char hosts[2][128];
    for (int i = 0; i < 2; i++) {
        int port = 0;
        int r = parse_addr(addrs[i], hosts[i], sizeof hosts[i], &port);
        if (r == 1)
            continue;
        if (r < 0) {
            ctrl_http_stop(h);
            return kiln_fail(err, KILN_EINVAL,
                             "--%s-bind-address '%s': expected HOST:PORT or :PORT",
                             i ? "health-probe" : "metrics", addrs[i]);
        }
        struct lws_context_creation_info vi;
        memset(&vi, 0, sizeof vi);
        vi.port = port;
        vi.iface = hosts[i][0] ? hosts[i] : NULL;
        vi.protocols = protocols;
        vi.vhost_name = names[i];
        vi.keepalive_timeout = 30;
        vi.timeout_secs = 10;
        struct lws_vhost *vh = lws_create_vhost(h->ctx, &vi);
        if (!vh) {
            ctrl_http_stop(h);
            return kiln_fail(err, KILN_EIO, "cannot listen on %s for %s", addrs[i], names[i]);
        }
        *ports[i] = lws_get_vhost_listen_port(vh);
        klog(KLOG_INFO, "serving", KS("endpoint", names[i]),
             KS("host", hosts[i][0] ? hosts[i] : "*"), KI("port", *ports[i]), KEND);
    }
    lws_sul_schedule(h->ctx, 0, &h->sul, on_timer, DASH_POLL_MS * LWS_US_PER_MS);
    if (pthread_create(&h->thread, NULL, service, h) != 0) {
        ctrl_http_stop(h);
        return kiln_fail(err, KILN_EINTERNAL, "cannot start the HTTP thread");
    }
    pthread_setname_np(h->thread, "http");
    h->started = 1;
    *out = h;
    return 0;
}

void ctrl_http_stop(ctrl_http *h)
{
    if (!h)
        return;
    if (h->started) {
        atomic_store(&h->stop, 1);
        lws_cancel_service(h->ctx);
        pthread_join(h->thread, NULL);
    }
    lws_context_destroy(h->ctx);
    free(h->snap);
    free(h);
}
