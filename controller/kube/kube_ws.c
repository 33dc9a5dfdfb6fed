/* kube_ws: libwebsockets client for WebSocket watches. */
#include "kube_ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "ktime.h"

#define WS_MAX_MSG ((size_t)128 << 20)

typedef struct ws_ctx {
    kube_ws_msg_fn fn;
    void *ud;
    char *msg;
    size_t len, cap;
    int done;
    int rc;
    int http;
    char why[256];
    char bearer[8192];
    int64_t last_ms;
} ws_ctx;

static int on_event(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    (void)user;
    struct lws_context *ctx = lws_get_context(wsi);
    ws_ctx *w = ctx ? lws_context_user(ctx) : NULL;
    if (!w)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        unsigned char **p = (unsigned char **)in, *end = (*p) + len;
        if (w->bearer[0] && lws_add_http_header_by_name(
                                wsi, (const unsigned char *)"authorization:",
                                (const unsigned char *)w->bearer, (int)strlen(w->bearer), p, end))
            return -1;
        break;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        w->last_ms = ktime_mono_ms();
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        w->last_ms = ktime_mono_ms();
        if (w->len + len + 1 > w->cap) {
            if (w->len + len + 1 > WS_MAX_MSG) {
                w->rc = KILN_ENOMEM;
                snprintf(w->why, sizeof w->why, "message larger than %zu bytes", WS_MAX_MSG);
                w->done = 1;
                return -1;
            }
            size_t nc = w->cap ? w->cap : 16384;
            while (nc < w->len + len + 1)
                nc *= 2;
            char *nm = realloc(w->msg, nc);
            if (!nm) {
                w->rc = KILN_ENOMEM;
                snprintf(w->why, sizeof w->why, "out of memory");
                w->done = 1;
                return -1;
            }
            w->msg = nm;
            w->cap = nc;
        }
        memcpy(w->msg + w->len, in, len);
        w->len += len;
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            w->msg[w->len] = '\0';
            int rc = w->fn(w->ud, w->msg, w->len);
            w->len = 0;
            if (rc) {
                w->rc = rc;
                w->done = 1;
                return -1;
            }
        }
        break;
    }
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        w->http = (int)lws_http_client_http_response(wsi);
        snprintf(w->why, sizeof w->why, "%s", in ? (const char *)in : "connection error");
        if (!w->rc)
            w->rc = KILN_ENET;
        w->done = 1;
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
        w->done = 1;
        break;
    default:
        break;
    }
    return 0;
}

static void wake(void *arg)
{
    lws_cancel_service((struct lws_context *)arg);
}

/* Splits "https://host:port" into its parts; returns 0 or KILN_EINVAL. */
static int split_url(const char *url, int *tls, char *host, size_t hn, int *port)
{
    *tls = strncmp(url, "https://", 8) == 0;
    const char *h = strstr(url, "://");
    if (!h)
        return KILN_EINVAL;
    h += 3;
    const char *end = h + strcspn(h, "/");
    const char *colon = NULL;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb)
            return KILN_EINVAL;
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
        h++;
        if ((size_t)(rb - h) >= hn)
            return KILN_EINVAL;
        memcpy(host, h, (size_t)(rb - h));
        host[rb - h] = '\0';
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        size_t l = (size_t)((colon ? colon : end) - h);
        if (l >= hn || l == 0)
            return KILN_EINVAL;
        memcpy(host, h, l);
        host[l] = '\0';
    }
    long pv = *tls ? 443 : 80;
    if (colon) {
        char *pe;
        pv = strtol(colon + 1, &pe, 10);
        if (pe == colon + 1)
            return KILN_EINVAL;
    }
    *port = (int)pv;
    return pv > 0 && pv < 65536 ? 0 : KILN_EINVAL;
}

int kube_ws_stream(kube_client *c, kube_stream *s, const char *path, kube_ws_msg_fn fn, void *ud,
                   int64_t idle_ms, kube_err *err)
{
    const kube_config *cfg = kube_client_config(c);
    int tls, port;
    char host[256];
    if (split_url(cfg->server, &tls, host, sizeof host, &port))
        return kiln_fail(&err->e, KILN_EINVAL, "websocket: cannot parse server %s", cfg->server);
    int rc = kube_client_prepare(c, 0, &err->e);
    if (rc)
        return rc;
    ws_ctx *w = calloc(1, sizeof *w);
    if (!w)
        return kiln_fail(&err->e, KILN_ENOMEM, "out of memory");
    w->fn = fn;
    w->ud = ud;
    w->last_ms = ktime_mono_ms();
    if (kube_client_bearer(c, w->bearer, sizeof w->bearer)) {
        free(w);
        return kiln_fail(&err->e, KILN_ENOMEM, "websocket: token too long");
    }
    static const struct lws_protocols protocols[] = {
        {"kiln-watch", on_event, 0, 65536, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
    };
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.user = w;
    info.gid = -1;
    info.uid = -1;
    if (tls) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        if (cfg->ca_data) {
            info.client_ssl_ca_mem = cfg->ca_data;
            info.client_ssl_ca_mem_len = (unsigned)cfg->ca_len;
        } else if (cfg->ca_file) {
            info.client_ssl_ca_filepath = cfg->ca_file;
        }
        if (cfg->cert_data && cfg->key_data) {
            info.client_ssl_cert_mem = cfg->cert_data;
            info.client_ssl_cert_mem_len = (unsigned)cfg->cert_len;
            info.client_ssl_key_mem = cfg->key_data;
            info.client_ssl_key_mem_len = (unsigned)cfg->key_len;
        } else if (cfg->cert_file && cfg->key_file) {
            info.client_ssl_cert_filepath = cfg->cert_file;
            info.client_ssl_private_key_filepath = cfg->key_file;
        }
    }
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx) {
        memset(w->bearer, 0, sizeof w->bearer);
        free(w);
        return kiln_fail(&err->e, KILN_ENET, "websocket: cannot create context");
    }
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = ctx;
    ci.address = host;
    ci.port = port;
    /* a server URL with a path prefix (https://host/k8s/clusters/x) keeps it */
    const char *hp = strstr(cfg->server, "://");
    const char *prefix = hp ? strchr(hp + 3, '/') : NULL;
    char *full = NULL;
    if (prefix && prefix[1]) {
        size_t fl = strlen(prefix) + strlen(path) + 1;
        full = malloc(fl);
        if (!full) {
            lws_context_destroy(ctx);
            memset(w->bearer, 0, sizeof w->bearer);
            free(w);
            return kiln_fail(&err->e, KILN_ENOMEM, "out of memory");
        }
        snprintf(full, fl, "%s%s", prefix, path);
    }
    ci.path = full ? full : path;
    ci.host = cfg->tls_server_name ? cfg->tls_server_name : host;
    ci.origin = ci.host;
    ci.local_protocol_name = "kiln-watch";
    ci.ssl_connection = tls ? LCCSCF_USE_SSL : 0;
    if (tls && cfg->insecure)
        ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                             LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
    kube_stream_set_waker(s, wake, ctx);
    kube_client_track(c, s, 1);
    if (!lws_client_connect_via_info(&ci) && !w->done) {
        w->rc = KILN_ENET;
        snprintf(w->why, sizeof w->why, "connect failed");
        w->done = 1;
    }
    int cancelled = 0, idle = 0;
    while (!w->done) {
        if (kube_stream_cancelled(s)) {
            cancelled = 1;
            break;
        }
        if (idle_ms > 0 && ktime_mono_ms() - w->last_ms > idle_ms) {
            idle = 1;
            break;
        }
        lws_service(ctx, 0);
    }
    kube_client_track(c, s, 0);
    kube_stream_set_waker(s, NULL, NULL);
    lws_context_destroy(ctx);
    if (cancelled)
        rc = kiln_fail(&err->e, KILN_ECANCELED, "websocket watch %s: cancelled", path);
    else if (idle)
        rc = kiln_fail(&err->e, KILN_ETIMEOUT, "websocket watch %s: idle", path);
    else if (w->rc) {
        err->http = w->http;
        if (w->http)
            rc = kiln_fail(&err->e, w->rc, "websocket watch %s: %s (HTTP %d)", path, w->why,
                           w->http);
        else
            rc = kiln_fail(&err->e, w->rc, "websocket watch %s: %s", path, w->why);
    }
    memset(w->bearer, 0, sizeof w->bearer);
    free(full);
    free(w->msg);
    free(w);
    return rc;
}
