/* kube_client: libcurl transport with sharing, auth, rate limit, retries. */
#include "kube_client.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "klog.h"
#include "ktime.h"
#include "kube_exec.h"
#include "kube_rate.h"

/* Easy handles kept for reuse, one per worker (up to 64): a handle set up
 * and torn down per request (its multi handle, wake-up socketpair and
 * buffers) cost about a quarter of the controller's CPU in a burst of
 * new jobs, once more requests ran at once than the pool held. */
#define POOL_MAX 64
/* Idle connections kept for reuse (more than the 64 workers allowed). */
#define MAX_IDLE_CONNS 80

/* ---- types ---- */

struct kube_stream {
    pthread_mutex_t mu;
    CURLM *multi; /* set while a stream runs */
    int cancelled;
    void (*wake)(void *);
    void *wake_arg;
    struct kube_stream *next_active; /* in the client's active list */
};

struct kube_client {
    kube_config *cfg;
    kube_client_opts o;
    CURLSH *share;
    pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
    pthread_mutex_t pool_mu;
    CURL *pool[POOL_MAX];
    int pool_n;
    kube_rate rate;
    atomic_int cancelled;
    pthread_mutex_t cancel_mu;
    pthread_cond_t cancel_cv;
    kube_stream *active;     /* running streams, under cancel_mu */
    int send_creds;          /* https, or http to a loopback host */
    char *url_host_override; /* tls-server-name: URL host, CONNECT_TO the real one */
    char connect_to[1024];
    /* credentials, under auth_mu */
    pthread_mutex_t auth_mu;
    char *token;
    int64_t token_read_ms;
    kube_exec_cred exec;
    int have_exec;
    atomic_uint seed;
    /* stats */
    atomic_long n_requests, n_retries, n_throttled, n_refreshes;
    kube_hist latency[KUBE_VERBS]; /* one exchange, by method (not streams) */
};

static const char *const VERBS[KUBE_VERBS] = {"GET", "POST", "PUT", "PATCH", "DELETE"};

typedef struct buf {
    char *p;
    size_t len, cap, max;
    int toobig;
} buf;

typedef struct xfer {
    buf body;
    long retry_after_s; /* -1 when absent */
    /* streaming */
    kube_data_fn fn;
    void *ud;
    CURL *easy;
    int status_known;
    long http;
    int fn_rc;
    int64_t last_data_ms;
} xfer;

/* ---- small helpers ---- */

void kube_err_init(kube_err *err)
{
    kiln_error_clear(&err->e);
    kstatus_init(&err->status);
    err->http = 0;
}

void kube_err_release(kube_err *err)
{
    kstatus_release(&err->status);
    kiln_error_clear(&err->e);
    err->http = 0;
}

void kube_resp_release(kube_resp *r)
{
    if (!r)
        return;
    free(r->body);
    r->body = NULL;
    r->len = 0;
    r->http = 0;
}

static int buf_append(buf *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->max) {
        b->toobig = 1;
        return -1;
    }
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->len + n + 1)
            nc *= 2;
        if (nc > b->max)
            nc = b->max;
        char *np = realloc(b->p, nc);
        if (!np)
            return -1;
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static unsigned jitter(kube_client *c, unsigned range)
{
    unsigned s = atomic_load(&c->seed), n;
    do {
        n = s * 1103515245u + 12345u;
    } while (!atomic_compare_exchange_weak(&c->seed, &s, n));
    return range ? (n >> 8) % range : 0;
}

/* Sleeps ms unless the client is cancelled first. */
static int sleep_cancellable(kube_client *c, int64_t ms)
{
    int64_t until = ktime_mono_ms() + ms;
    pthread_mutex_lock(&c->cancel_mu);
    while (!atomic_load(&c->cancelled)) {
        int64_t now = ktime_mono_ms();
        if (now >= until)
            break;
        struct timespec ts = {.tv_sec = until / 1000, .tv_nsec = (until % 1000) * 1000000L};
        pthread_cond_timedwait(&c->cancel_cv, &c->cancel_mu, &ts);
    }
    int cancelled = atomic_load(&c->cancelled);
    pthread_mutex_unlock(&c->cancel_mu);
    return cancelled ? KILN_ECANCELED : 0;
}

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *ud)
{
    (void)h;
    (void)a;
    kube_client *c = ud;
    pthread_mutex_lock(&c->share_mu[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *ud)
{
    (void)h;
    kube_client *c = ud;
    pthread_mutex_unlock(&c->share_mu[d]);
}

static int is_loopback(const char *url)
{
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    return !strncmp(h, "127.", 4) || !strncmp(h, "localhost", 9) || !strncmp(h, "[::1]", 5);
}

/* ---- credentials ---- */

/* Re-reads the token file when due or forced; caller holds auth_mu. */
static int refresh_token_file(kube_client *c, int force, kiln_error *err)
{
    int64_t now = ktime_mono_ms();
    if (!force && c->token && now - c->token_read_ms < c->o.token_reread_ms)
        return 0;
    char *t;
    int rc = kube_read_file(c->cfg->token_file, 1 << 20, &t, NULL, err);
    if (rc) {
        if (c->token) {
            /* keep the old token: a rotation in progress is no reason to fail */
            kiln_error_clear(err);
            return 0;
        }
        return rc;
    }
    size_t l = strlen(t);
    while (l && (t[l - 1] == '\n' || t[l - 1] == '\r' || t[l - 1] == ' '))
        t[--l] = '\0';
    free(c->token);
    c->token = t;
    c->token_read_ms = now;
    return 0;
}

/* Runs the exec plugin when there is no credential, it expires within 10 s,
 * or forced; caller holds auth_mu. */
static int refresh_exec(kube_client *c, int force, kiln_error *err)
{
    if (c->have_exec && !force &&
        (!c->exec.has_expiry || ktime_diff_ms(c->exec.expiry, ktime_now()) > 10000))
        return 0;
    kube_exec_cred cred;
    int rc = kube_exec_run(c->cfg->exec, 0, &cred, err);
    if (rc)
        return rc;
    kube_exec_cred_release(&c->exec);
    c->exec = cred;
    c->have_exec = 1;
    return 0;
}

static int refresh_creds(kube_client *c, int force, kiln_error *err)
{
    int rc = 0;
    pthread_mutex_lock(&c->auth_mu);
    if (c->cfg->exec)
        rc = refresh_exec(c, force, err);
    else if (c->cfg->token_file && !c->cfg->token)
        rc = refresh_token_file(c, force, err);
    pthread_mutex_unlock(&c->auth_mu);
    if (force && !rc)
        atomic_fetch_add(&c->n_refreshes, 1);
    return rc;
}

/* ---- easy handle setup ---- */

static CURL *pool_get(kube_client *c)
{
    CURL *e = NULL;
    pthread_mutex_lock(&c->pool_mu);
    if (c->pool_n > 0)
        e = c->pool[--c->pool_n];
    pthread_mutex_unlock(&c->pool_mu);
    if (e)
        curl_easy_reset(e);
    else
        e = curl_easy_init();
    return e;
}

static void pool_put(kube_client *c, CURL *e)
{
    pthread_mutex_lock(&c->pool_mu);
    if (c->pool_n < POOL_MAX) {
        c->pool[c->pool_n++] = e;
        e = NULL;
    }
    pthread_mutex_unlock(&c->pool_mu);
    if (e)
        curl_easy_cleanup(e);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    xfer *x = ud;
    size_t len = size * n;
    if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        char tmp[32];
        size_t l = len - 12 < sizeof tmp - 1 ? len - 12 : sizeof tmp - 1;
        memcpy(tmp, p + 12, l);
        tmp[l] = '\0';
        char *end;
        long v = strtol(tmp, &end, 10);
        if (end != tmp && v >= 0)
            x->retry_after_s = v;
    }
    return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    xfer *x = ud;
    size_t len = size * n;
    if (x->fn) {
        if (!x->status_known) {
            curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->http);
            x->status_known = 1;
        }
        x->last_data_ms = ktime_mono_ms();
        if (x->http >= 200 && x->http < 300) {
            int rc = x->fn(x->ud, p, len);
            if (rc) {
                x->fn_rc = rc;
                return 0; /* aborts the transfer */
            }
            return len;
        }
    }
    return buf_append(&x->body, p, len) ? 0 : len;
}

/* Everything but the method and body. Returns the header list to free. */
static struct curl_slist *setup(kube_client *c, CURL *e, const char *path, xfer *x,
                                const char *content_type, kiln_error *err, int *rc_out)
{
    const kube_config *cfg = c->cfg;
    struct curl_slist *h = NULL, *t;
    *rc_out = 0;
    const char *base = c->url_host_override ? c->url_host_override : cfg->server;
    size_t ul = strlen(base) + strlen(path) + 1;
    char *url = malloc(ul);
    if (!url) {
        *rc_out = kiln_fail(err, KILN_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(url, ul, "%s%s", base, path);
    curl_easy_setopt(e, CURLOPT_URL, url);
    free(url); /* libcurl copies string options */
    curl_easy_setopt(e, CURLOPT_SHARE, c->share);
    /* The connection cache is shared, and a transfer that ends closes the
     * oldest idle connections beyond this bound. libcurl's default (5) is
     * below the number of threads that make requests at once, so a burst
     * of reconciles closed a connection after about every other request
     * and paid a new TLS handshake for the next. */
    curl_easy_setopt(e, CURLOPT_MAXCONNECTS, (long)MAX_IDLE_CONNS);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* No CURLOPT_PIPEWAIT: with the connection cache shared between
     * threads, a request could wait for a connection another thread was
     * still setting up, and a server that turned out to speak HTTP/1.1 then
     * kept it busy with a watch for minutes. */
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->o.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 15L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, c->o.user_agent);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    if (cfg->proxy_url)
        curl_easy_setopt(e, CURLOPT_PROXY, cfg->proxy_url);
    /* TLS */
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, cfg->insecure ? 0L : 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, cfg->insecure ? 0L : 2L);
    if (cfg->ca_data) {
        struct curl_blob b = {.data = cfg->ca_data, .len = cfg->ca_len, .flags = CURL_BLOB_COPY};
        curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
    } else if (cfg->ca_file) {
        curl_easy_setopt(e, CURLOPT_CAINFO, cfg->ca_file);
    }
    pthread_mutex_lock(&c->auth_mu);
    const char *cert_pem = c->have_exec ? c->exec.cert_pem : NULL;
    const char *key_pem = c->have_exec ? c->exec.key_pem : NULL;
    if (cert_pem && key_pem) {
        struct curl_blob cb = {
            .data = (void *)cert_pem, .len = strlen(cert_pem), .flags = CURL_BLOB_COPY};
        struct curl_blob kb = {
            .data = (void *)key_pem, .len = strlen(key_pem), .flags = CURL_BLOB_COPY};
        curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cb);
        curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &kb);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    } else if (cfg->cert_data && cfg->key_data) {
        struct curl_blob cb = {
            .data = cfg->cert_data, .len = cfg->cert_len, .flags = CURL_BLOB_COPY};
        struct curl_blob kb = {.data = cfg->key_data, .len = cfg->key_len, .flags = CURL_BLOB_COPY};
        curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cb);
        curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &kb);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    } else if (cfg->cert_file && cfg->key_file) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, cfg->cert_file);
        curl_easy_setopt(e, CURLOPT_SSLKEY, cfg->key_file);
    }
    const char *token = c->have_exec ? c->exec.token : cfg->token ? cfg->token : c->token;
    char auth[8192] = "";
    if (c->send_creds && token && token[0]) {
        int n = snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        if (n < 0 || (size_t)n >= sizeof auth)
            auth[0] = '\0';
    }
    pthread_mutex_unlock(&c->auth_mu);
    if (c->send_creds && !auth[0] && cfg->username && cfg->password) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERNAME, cfg->username);
        curl_easy_setopt(e, CURLOPT_PASSWORD, cfg->password);
    }
    if (!(t = curl_slist_append(h, "Accept: application/json")))
        goto oom;
    h = t;
    if (auth[0]) {
        t = curl_slist_append(h, auth);
        memset(auth, 0, sizeof auth);
        if (!t)
            goto oom;
        h = t;
    }
    if (content_type) {
        char ct[256];
        snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
        if (!(t = curl_slist_append(h, ct)))
            goto oom;
        h = t;
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    return h;
oom:
    curl_slist_free_all(h);
    *rc_out = kiln_fail(err, KILN_ENOMEM, "out of memory");
    return NULL;
}

/* ---- life cycle ---- */

int kube_client_new(kube_config *cfg, const kube_client_opts *opts, kube_client **out,
                    kiln_error *err)
{
    if (!cfg || !cfg->server) {
        kube_config_free(cfg);
        return kiln_fail(err, KILN_EINVAL, "kube client: no server configured");
    }
    kube_client *c = calloc(1, sizeof *c);
    if (!c) {
        kube_config_free(cfg);
        return kiln_fail(err, KILN_ENOMEM, "kube client: out of memory");
    }
    c->cfg = cfg;
    if (opts)
        c->o = *opts;
    if (c->o.qps == 0)
        c->o.qps = 20;
    if (c->o.burst <= 0)
        c->o.burst = 30;
    if (c->o.max_retries == 0)
        c->o.max_retries = 5;
    if (c->o.max_retries < 0)
        c->o.max_retries = 0;
    if (c->o.retry_base_ms <= 0)
        c->o.retry_base_ms = 200;
    if (c->o.retry_max_ms <= 0)
        c->o.retry_max_ms = 30000;
    if (c->o.connect_timeout_ms <= 0)
        c->o.connect_timeout_ms = 10000;
    if (c->o.request_timeout_ms <= 0)
        c->o.request_timeout_ms = 60000;
    if (c->o.token_reread_ms <= 0)
        c->o.token_reread_ms = 60000;
    if (c->o.max_body == 0)
        c->o.max_body = 256u << 20;
    if (!c->o.user_agent)
        c->o.user_agent = "kiln-controller/0.1";
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&c->share_mu[i], NULL);
    pthread_mutex_init(&c->pool_mu, NULL);
    pthread_mutex_init(&c->auth_mu, NULL);
    pthread_mutex_init(&c->cancel_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cancel_cv, &ca);
    pthread_condattr_destroy(&ca);
    kube_rate_init(&c->rate, c->o.qps, c->o.burst);
    atomic_store(&c->seed, (unsigned)ktime_now().nsec ^ (unsigned)(uintptr_t)c);
    c->send_creds = strncmp(cfg->server, "https://", 8) == 0 || is_loopback(cfg->server);
    if (!c->send_creds && (cfg->token || cfg->token_file || cfg->exec || cfg->username))
        klog(KLOG_WARN, "kube client: not sending credentials over plain http",
             KS("server", cfg->server), KEND);
    c->share = curl_share_init();
    if (!c->share) {
        kube_client_free(c);
        return kiln_fail(err, KILN_ENOMEM, "kube client: out of memory");
    }
    curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    if (cfg->tls_server_name && strncmp(cfg->server, "https://", 8) == 0) {
        /* Verify against (and send SNI for) tls-server-name while connecting
         * to the configured host: put the name in the URL and map it. */
        const char *hp = cfg->server + 8;
        const char *colon = strrchr(hp, ':');
        const char *port = colon && !strchr(colon, ']') ? colon + 1 : "443";
        size_t hl = colon && !strchr(colon, ']') ? (size_t)(colon - hp) : strlen(hp);
        size_t n = strlen(cfg->tls_server_name) + strlen(port) + 16;
        c->url_host_override = malloc(n);
        if (!c->url_host_override) {
            kube_client_free(c);
            return kiln_fail(err, KILN_ENOMEM, "kube client: out of memory");
        }
        snprintf(c->url_host_override, n, "https://%s:%s", cfg->tls_server_name, port);
        int w = snprintf(c->connect_to, sizeof c->connect_to, "%s:%s:%.*s:%s", cfg->tls_server_name,
                         port, (int)hl, hp, port);
        if (w < 0 || (size_t)w >= sizeof c->connect_to) {
            kube_client_free(c);
            return kiln_fail(err, KILN_EINVAL, "kube client: server name too long");
        }
    }
    *out = c;
    return 0;
}

void kube_client_free(kube_client *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->pool_n; i++)
        curl_easy_cleanup(c->pool[i]);
    if (c->share)
        curl_share_cleanup(c->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&c->share_mu[i]);
    pthread_mutex_destroy(&c->pool_mu);
    pthread_mutex_destroy(&c->auth_mu);
    pthread_mutex_destroy(&c->cancel_mu);
    pthread_cond_destroy(&c->cancel_cv);
    kube_rate_release(&c->rate);
    if (c->token)
        memset(c->token, 0, strlen(c->token));
    free(c->token);
    kube_exec_cred_release(&c->exec);
    free(c->url_host_override);
    kube_config_free(c->cfg);
    free(c);
}

const kube_config *kube_client_config(const kube_client *c)
{
    return c->cfg;
}

void kube_client_set_rate(kube_client *c, double qps, int burst)
{
    kube_rate_set(&c->rate, qps, burst);
}

void kube_client_cancel(kube_client *c)
{
    pthread_mutex_lock(&c->cancel_mu);
    atomic_store(&c->cancelled, 1);
    pthread_cond_broadcast(&c->cancel_cv);
    for (kube_stream *s = c->active; s; s = s->next_active)
        kube_stream_cancel(s);
    pthread_mutex_unlock(&c->cancel_mu);
}

int kube_client_cancelled(kube_client *c)
{
    return atomic_load(&c->cancelled);
}

const char *kube_client_verb(int v)
{
    return v >= 0 && v < KUBE_VERBS ? VERBS[v] : NULL;
}

const kube_hist *kube_client_latency(const kube_client *c, int v)
{
    return v >= 0 && v < KUBE_VERBS ? &c->latency[v] : NULL;
}

void kube_client_get_stats(kube_client *c, kube_client_stats *out)
{
    out->requests = atomic_load(&c->n_requests);
    out->retries = atomic_load(&c->n_retries);
    out->throttled = atomic_load(&c->n_throttled);
    out->auth_refreshes = atomic_load(&c->n_refreshes);
}

/* ---- requests ---- */

static int backoff_wait(kube_client *c, int attempt, long retry_after_s)
{
    int64_t ms;
    if (retry_after_s >= 0) {
        ms = retry_after_s * 1000;
    } else {
        ms = c->o.retry_base_ms;
        for (int i = 0; i < attempt && ms < c->o.retry_max_ms; i++)
            ms *= 2;
        ms += jitter(c, (unsigned)(ms / 2 + 1)); /* up to +50% */
    }
    if (ms > c->o.retry_max_ms)
        ms = c->o.retry_max_ms;
    atomic_fetch_add(&c->n_retries, 1);
    return sleep_cancellable(c, ms);
}

/* Turns a non-2xx reply into err; returns the kiln code. */
static int api_error(int http, const buf *b, kube_err *err)
{
    kstatus_parse(&err->status, b->p, b->len, http, NULL);
    err->http = http;
    return kstatus_fail(&err->status, &err->e);
}

int kube_client_request(kube_client *c, const char *method, const char *path,
                        const char *content_type, const char *body, size_t body_len,
                        kube_resp *resp, kube_err *err)
{
    memset(resp, 0, sizeof *resp);
    int refreshed = 0;
    int verb = -1; /* the latency histogram this method's exchanges go to */
    for (int v = 0; v < KUBE_VERBS; v++)
        if (!strcmp(method, VERBS[v]))
            verb = v;
    int rc = refresh_creds(c, 0, &err->e);
    if (rc)
        return rc;
    for (int attempt = 0;; attempt++) {
        if (atomic_load(&c->cancelled))
            return kiln_fail(&err->e, KILN_ECANCELED, "%s %s: cancelled", method, path);
        if (c->o.qps > 0 && kube_rate_wait(&c->rate, &c->cancelled))
            return kiln_fail(&err->e, KILN_ECANCELED, "%s %s: cancelled", method, path);
        CURL *e = pool_get(c);
        if (!e)
            return kiln_fail(&err->e, KILN_ENOMEM, "out of memory");
        xfer x = {.retry_after_s = -1, .easy = e};
        x.body.max = c->o.max_body;
        struct curl_slist *ct = NULL;
        struct curl_slist *h = setup(c, e, path, &x, body ? content_type : NULL, &err->e, &rc);
        if (rc) {
            pool_put(c, e);
            return rc;
        }
        if (c->connect_to[0]) {
            ct = curl_slist_append(NULL, c->connect_to);
            if (!ct) { /* never fall back to connecting to the SNI name itself */
                curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
                curl_slist_free_all(h);
                pool_put(c, e);
                return kiln_fail(&err->e, KILN_ENOMEM, "out of memory");
            }
            curl_easy_setopt(e, CURLOPT_CONNECT_TO, ct);
        }
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        if (body) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        } else if (!strcmp(method, "GET")) {
            curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        }
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->o.request_timeout_ms);
        /* a stalled reply (under 1 byte/s for 30 s) fails before the total timeout */
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 30L);
        int64_t t0 = ktime_mono_us();
        CURLcode cc = curl_easy_perform(e);
        if (verb >= 0)
            kube_hist_observe_us(&c->latency[verb], ktime_mono_us() - t0);
        long http = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &http);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, NULL);
        curl_slist_free_all(h);
        curl_slist_free_all(ct);
        pool_put(c, e);
        atomic_fetch_add(&c->n_requests, 1);
        if (cc != CURLE_OK) {
            int toobig = x.body.toobig;
            free(x.body.p);
            if (toobig)
                return kiln_fail(&err->e, KILN_ENOMEM, "%s %s: reply larger than %zu bytes", method,
                                 path, c->o.max_body);
            /* A refused or failed connection never reached the server, and
             * GETs are idempotent: those are safe to retry. */
            int safe = cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ||
                       !strcmp(method, "GET");
            if (safe && attempt < c->o.max_retries) {
                if (backoff_wait(c, attempt, -1))
                    return kiln_fail(&err->e, KILN_ECANCELED, "%s %s: cancelled", method, path);
                continue;
            }
            return kiln_fail(&err->e, cc == CURLE_OPERATION_TIMEDOUT ? KILN_ETIMEOUT : KILN_ENET,
                             "%s %s: %s", method, path, curl_easy_strerror(cc));
        }
        if (http >= 200 && http < 300) {
            resp->http = (int)http;
            if (!x.body.p && !(x.body.p = calloc(1, 1)))
                return kiln_fail(&err->e, KILN_ENOMEM, "out of memory");
            resp->body = x.body.p;
            resp->len = x.body.len;
            return 0;
        }
        if (http == 401 && !refreshed && (c->cfg->exec || (c->cfg->token_file && !c->cfg->token))) {
            free(x.body.p);
            refreshed = 1;
            attempt--;
            if ((rc = refresh_creds(c, 1, &err->e)))
                return rc;
            continue;
        }
        if (http == 429)
            atomic_fetch_add(&c->n_throttled, 1);
        if ((http == 429 || http >= 500) && attempt < c->o.max_retries) {
            klog(KLOG_DEBUG, "kube client: retrying", KS("method", method), KS("path", path),
                 KI("code", http), KI("attempt", attempt + 1), KEND);
            free(x.body.p);
            if (backoff_wait(c, attempt, x.retry_after_s))
                return kiln_fail(&err->e, KILN_ECANCELED, "%s %s: cancelled", method, path);
            continue;
        }
        rc = api_error((int)http, &x.body, err);
        free(x.body.p);
        return rc;
    }
}

/* ---- streams ---- */

int kube_stream_new(kube_stream **out)
{
    kube_stream *s = calloc(1, sizeof *s);
    if (!s)
        return KILN_ENOMEM;
    pthread_mutex_init(&s->mu, NULL);
    *out = s;
    return 0;
}

void kube_stream_free(kube_stream *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void kube_stream_cancel(kube_stream *s)
{
    pthread_mutex_lock(&s->mu);
    s->cancelled = 1;
    if (s->multi)
        curl_multi_wakeup(s->multi);
    if (s->wake)
        s->wake(s->wake_arg);
    pthread_mutex_unlock(&s->mu);
}

void kube_stream_reset(kube_stream *s)
{
    pthread_mutex_lock(&s->mu);
    s->cancelled = 0;
    pthread_mutex_unlock(&s->mu);
}

static void active_add(kube_client *c, kube_stream *s)
{
    pthread_mutex_lock(&c->cancel_mu);
    s->next_active = c->active;
    c->active = s;
    pthread_mutex_unlock(&c->cancel_mu);
}

static void active_del(kube_client *c, kube_stream *s)
{
    pthread_mutex_lock(&c->cancel_mu);
    for (kube_stream **pp = &c->active; *pp; pp = &(*pp)->next_active) {
        if (*pp == s) {
            *pp = s->next_active;
            break;
        }
    }
    pthread_mutex_unlock(&c->cancel_mu);
}

static int stream_once(kube_client *c, kube_stream *s, const char *path, kube_data_fn fn, void *ud,
                       int64_t idle_ms, kube_err *err, long *http_out)
{
    int rc = 0;
    CURL *e = pool_get(c);
    CURLM *m = curl_multi_init();
    if (!e || !m) {
        if (e)
            curl_easy_cleanup(e);
        if (m)
            curl_multi_cleanup(m);
        return kiln_fail(&err->e, KILN_ENOMEM, "out of memory");
    }
    xfer x = {.retry_after_s = -1, .easy = e, .fn = fn, .ud = ud, .last_data_ms = ktime_mono_ms()};
    x.body.max = 1 << 20;
    struct curl_slist *ct = NULL;
    struct curl_slist *h = setup(c, e, path, &x, NULL, &err->e, &rc);
    if (rc) {
        curl_multi_cleanup(m);
        pool_put(c, e);
        return rc;
    }
    if (c->connect_to[0]) {
        ct = curl_slist_append(NULL, c->connect_to);
        if (!ct) {
            curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
            curl_slist_free_all(h);
            curl_multi_cleanup(m);
            pool_put(c, e);
            return kiln_fail(&err->e, KILN_ENOMEM, "out of memory");
        }
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, ct);
    }
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    /* A watch may be quiet for minutes: no total timeout; keepalive and the
     * optional idle limit detect dead peers instead. */
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 0L);
    curl_multi_add_handle(m, e);
    pthread_mutex_lock(&s->mu);
    int cancelled = s->cancelled;
    if (!cancelled)
        s->multi = m;
    pthread_mutex_unlock(&s->mu);
    CURLcode result = CURLE_OK;
    int finished = 0;
    while (!cancelled && !finished) {
        int running = 0;
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg == CURLMSG_DONE) {
                result = msg->data.result;
                finished = 1;
            }
        }
        if (finished || !running)
            break;
        curl_multi_poll(m, NULL, 0, 1000, NULL);
        pthread_mutex_lock(&s->mu);
        cancelled = s->cancelled;
        pthread_mutex_unlock(&s->mu);
        if (idle_ms > 0 && ktime_mono_ms() - x.last_data_ms > idle_ms) {
            rc = kiln_fail(&err->e, KILN_ETIMEOUT, "watch %s: idle for %lld ms", path,
                           (long long)idle_ms);
            break;
        }
    }
    pthread_mutex_lock(&s->mu);
    s->multi = NULL;
    pthread_mutex_unlock(&s->mu);
    long http = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &http);
    curl_multi_remove_handle(m, e);
    curl_multi_cleanup(m);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(e, CURLOPT_CONNECT_TO, NULL);
    curl_slist_free_all(h);
    curl_slist_free_all(ct);
    /* a handle cut off mid-stream must not go back to the pool half-used */
    if (finished && result == CURLE_OK)
        pool_put(c, e);
    else
        curl_easy_cleanup(e);
    atomic_fetch_add(&c->n_requests, 1);
    *http_out = http;
    if (!rc && cancelled)
        rc = kiln_fail(&err->e, KILN_ECANCELED, "watch %s: cancelled", path);
    if (!rc && x.fn_rc)
        rc = x.fn_rc;
    if (!rc && finished && result != CURLE_OK && !(http >= 300 && x.body.len))
        rc = kiln_fail(&err->e, KILN_ENET, "watch %s: %s", path, curl_easy_strerror(result));
    if (!rc && !(http >= 200 && http < 300)) {
        if (http == 429)
            atomic_fetch_add(&c->n_throttled, 1);
        rc = api_error((int)http, &x.body, err);
    }
    free(x.body.p);
    return rc;
}

int kube_client_stream(kube_client *c, kube_stream *s, const char *path, kube_data_fn fn, void *ud,
                       int64_t idle_timeout_ms, kube_err *err)
{
    int rc = refresh_creds(c, 0, &err->e);
    if (rc)
        return rc;
    if (c->o.qps > 0 && kube_rate_wait(&c->rate, &c->cancelled))
        return kiln_fail(&err->e, KILN_ECANCELED, "watch %s: cancelled", path);
    if (atomic_load(&c->cancelled))
        return kiln_fail(&err->e, KILN_ECANCELED, "watch %s: cancelled", path);
    active_add(c, s);
    long http = 0;
    rc = stream_once(c, s, path, fn, ud, idle_timeout_ms, err, &http);
    if (http == 401 && (c->cfg->exec || (c->cfg->token_file && !c->cfg->token))) {
        kube_err_release(err);
        rc = refresh_creds(c, 1, &err->e);
        if (!rc)
            rc = stream_once(c, s, path, fn, ud, idle_timeout_ms, err, &http);
    }
    active_del(c, s);
    return rc;
}

/* ---- for kube_ws ---- */

int kube_client_prepare(kube_client *c, int force_refresh, kiln_error *err)
{
    int rc = refresh_creds(c, force_refresh, err);
    if (rc)
        return rc;
    if (c->o.qps > 0 && kube_rate_wait(&c->rate, &c->cancelled))
        return kiln_fail(err, KILN_ECANCELED, "cancelled");
    if (atomic_load(&c->cancelled))
        return kiln_fail(err, KILN_ECANCELED, "cancelled");
    return 0;
}

int kube_client_bearer(kube_client *c, char *buf, size_t n)
{
    buf[0] = '\0';
    if (!c->send_creds)
        return 0;
    pthread_mutex_lock(&c->auth_mu);
    const char *token = c->have_exec ? c->exec.token : c->cfg->token ? c->cfg->token : c->token;
    int w = token && token[0] ? snprintf(buf, n, "Bearer %s", token) : 0;
    pthread_mutex_unlock(&c->auth_mu);
    if (w < 0 || (size_t)w >= n) {
        buf[0] = '\0';
        return KILN_ENOMEM;
    }
    return 0;
}

void kube_client_track(kube_client *c, kube_stream *s, int on)
{
    if (on)
        active_add(c, s);
    else
        active_del(c, s);
}

void kube_stream_set_waker(kube_stream *s, void (*wake)(void *), void *arg)
{
    pthread_mutex_lock(&s->mu);
    s->wake = wake;
    s->wake_arg = arg;
    pthread_mutex_unlock(&s->mu);
}

int kube_stream_cancelled(kube_stream *s)
{
    pthread_mutex_lock(&s->mu);
    int v = s->cancelled;
    pthread_mutex_unlock(&s->mu);
    return v;
}
