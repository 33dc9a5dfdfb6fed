/* kl_probe: non-blocking startup, liveness and readiness checks (see
 * kl_probe.h). A check is started by one kubelet tick and finished by a
 * later one, so a slow endpoint or a hanging exec command never stalls the
 * API server that shares the service thread. */
#include "kl_probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kl_kpod.h"
#include "kl_sandbox.h"
#include "kl_table.h"

/* How long after a (re)start an exec check may find no process to enter. */
#define SETUP_GRACE_MS 2000

/* A probe number field in seconds, or def when absent or not positive
 * (Kubernetes rejects such values; a kubelet never sees them). */
static int64_t secs(const cJSON *probe, const char *k, int64_t def, int allow_zero)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(probe, k);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || (!allow_zero && v->valuedouble == 0))
        return def;
    return (int64_t)v->valuedouble;
}

void kl_probe_params_of(const cJSON *probe, int one_success, kl_probe_params *out)
{
    out->initial_delay_ms = secs(probe, "initialDelaySeconds", 0, 1) * 1000;
    out->period_ms = secs(probe, "periodSeconds", 10, 0) * 1000;
    out->timeout_ms = secs(probe, "timeoutSeconds", 1, 0) * 1000;
    out->success_threshold = one_success ? 1 : (int)secs(probe, "successThreshold", 1, 0);
    out->failure_threshold = (int)secs(probe, "failureThreshold", 3, 0);
    out->grace_s = secs(probe, "terminationGracePeriodSeconds", -1, 1);
}

void kl_probe_init(kl_probe *s)
{
    memset(s, 0, sizeof(*s));
    s->fd = -1;
}

void kl_probe_cancel(kl_probe *s)
{
    if (s->pid > 0) {
        /* The child leads its own session: nsenter and the command it
         * forked inside the container go together. */
        kill(-s->pid, SIGKILL);
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    if (s->tls)
        SSL_free(s->tls);
    s->tls = NULL;
    s->tls_ready = 0;
    s->want = 0;
    if (s->fd >= 0)
        close(s->fd);
    s->pid = 0;
    s->fd = -1;
    s->active = 0;
    s->sent = 0;
    s->got = 0;
}

void kl_probe_arm(kl_probe *s, const cJSON *probe, int64_t now)
{
    kl_probe_cancel(s);
    kl_probe_params pp;
    kl_probe_params_of(probe, 0, &pp);
    s->successes = 0;
    s->failures = 0;
    s->next_ms = now + pp.initial_delay_ms;
    s->armed_ms = now;
}

static int probe_port(const cJSON *cs, const cJSON *port)
{
    if (cJSON_IsNumber(port))
        return port->valueint;
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(cs, "ports"))
    {
        const cJSON *cp = cJSON_GetObjectItemCaseSensitive(p, "containerPort");
        if (cJSON_IsString(port) && !strcmp(kl_kpod_jstr0(p, "name"), port->valuestring) &&
            cJSON_IsNumber(cp))
            return cp->valueint;
    }
    return cJSON_IsString(port) ? (int)strtol(port->valuestring, NULL, 10) : 0;
}

/* Starts a non-blocking connect to ip:port. Returns the socket or -1. */
static int connect_start(const char *ip, int port)
{
    if (port <= 0 || port > 65535)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1 ||
        (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Records why a check failed (for the Unhealthy event) and says so. */
static int failed(kl_probe *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int failed(kl_probe *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->detail, sizeof(s->detail), fmt, ap);
    va_end(ap);
    return KL_PROBE_FAILURE;
}

/* Starts a check. Returns KL_PROBE_PENDING when one is now in flight, or
 * KL_PROBE_FAILURE when it could not even start. */
static int start_check(kl_probe *s, const cJSON *probe, const cJSON *cs, const char *ip,
                       pid_t sandbox, int64_t now, const kl_probe_params *pp)
{
    const cJSON *hg = cJSON_GetObjectItemCaseSensitive(probe, "httpGet");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(probe, "tcpSocket");
    const cJSON *gr = cJSON_GetObjectItemCaseSensitive(probe, "grpc");
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(probe, "exec");
    s->started_ms = now;
    s->deadline_ms = now + pp->timeout_ms;
    s->sent = 0;
    s->got = 0;
    s->want = 0;
    s->http = hg != NULL;
    if (hg || ts || gr) {
        /* grpc: kubelite has no gRPC client; a TCP connect is the nearest
         * check it can make. */
        const cJSON *h = hg ? hg : ts ? ts : gr;
        int port = probe_port(cs, cJSON_GetObjectItemCaseSensitive(h, "port"));
        if (port <= 0 || port > 65535)
            return failed(s, "invalid port %d", port);
        s->fd = connect_start(ip, port);
        if (s->fd < 0)
            return failed(s, "dial tcp %s:%d: %s", ip, port, strerror(errno));
    } else if (ex) {
        int rc =
            kl_sandbox_exec_in(sandbox, cJSON_GetObjectItemCaseSensitive(ex, "command"), &s->pid);
        /* Right after a start bwrap may not have forked the container's
         * first process yet: try again on the next tick instead of
         * counting a failure nobody could have passed. */
        if (rc == KILN_ENOTFOUND && now - s->armed_ms < SETUP_GRACE_MS) {
            s->next_ms = now;
            return KL_PROBE_PENDING;
        }
        if (rc != 0)
            return failed(s, "cannot run the command in the container");
    } else {
        return failed(s, "the probe has no handler");
    }
    s->active = 1;
    return KL_PROBE_PENDING;
}

/* The client context of HTTPS checks: like the kubelet's, it does not
 * verify the serving certificate (a probe tests liveness, not identity). */
static SSL_CTX *probe_tls_ctx(void)
{
    static SSL_CTX *ctx;
    if (!ctx) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (ctx)
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
}

/* The GET a kubelet sends: path, Host (httpGet.host or the pod IP, or an
 * httpHeaders Host), its User-Agent and Accept unless httpHeaders set them,
 * and the other httpHeaders. Returns the length, or -1 when it does not fit. */
static int http_request(const cJSON *hg, const char *ip, char *req, size_t cap)
{
    const char *path = kl_kpod_jstr(hg, "path");
    const char *host = kl_kpod_jstr(hg, "host");
    const cJSON *hs = cJSON_GetObjectItemCaseSensitive(hg, "httpHeaders");
    const char *ua = "kube-probe/1.32", *accept = "*/*";
    const cJSON *h;
    cJSON_ArrayForEach(h, hs)
    {
        const char *name = kl_kpod_jstr(h, "name"), *value = kl_kpod_jstr(h, "value");
        if (!name || !value)
            continue;
        if (!strcasecmp(name, "Host"))
            host = value;
        else if (!strcasecmp(name, "User-Agent"))
            ua = value;
        else if (!strcasecmp(name, "Accept"))
            accept = value;
    }
    int n = snprintf(req, cap, "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: %s\r\nAccept: %s\r\n",
                     path && path[0] ? path : "/", host && host[0] ? host : ip, ua, accept);
    cJSON_ArrayForEach(h, hs)
    {
        const char *name = kl_kpod_jstr(h, "name"), *value = kl_kpod_jstr(h, "value");
        if (n < 0 || (size_t)n >= cap || !name || !value || !strcasecmp(name, "Host") ||
            !strcasecmp(name, "User-Agent") || !strcasecmp(name, "Accept") ||
            strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
            continue;
        n += snprintf(req + n, cap - (size_t)n, "%s: %s\r\n", name, value);
    }
    if (n >= 0 && (size_t)n < cap)
        n += snprintf(req + n, cap - (size_t)n, "Connection: close\r\n\r\n");
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* One step of the TLS handshake: 1 when done, 0 while it waits (s->want
 * says for what), -1 on failure. */
static int tls_step(kl_probe *s)
{
    if (!s->tls) {
        SSL_CTX *ctx = probe_tls_ctx();
        s->tls = ctx ? SSL_new(ctx) : NULL;
        if (!s->tls || SSL_set_fd(s->tls, s->fd) != 1)
            return -1;
        SSL_set_connect_state(s->tls);
    }
    ERR_clear_error();
    int r = SSL_do_handshake(s->tls);
    if (r == 1) {
        s->tls_ready = 1;
        return 1;
    }
    int e = SSL_get_error(s->tls, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        s->want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        return 0;
    }
    return -1;
}

/* Reads what the socket has: >0 bytes, 0 at the end, -1 on an error, -2
 * when nothing is there yet. */
static ssize_t probe_read(kl_probe *s, char *buf, size_t n)
{
    if (!s->tls) {
        ssize_t r = read(s->fd, buf, n);
        return r < 0 ? (errno == EAGAIN ? -2 : -1) : r;
    }
    ERR_clear_error();
    int r = SSL_read(s->tls, buf, (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(s->tls, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        s->want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        return -2;
    }
    /* a server that closes without close_notify still gave its answer */
    return e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL ? 0 : -1;
}

/* Moves an http/tcp check on. Returns the result once known. */
static int poll_socket(kl_probe *s, const cJSON *probe, const char *ip)
{
    short want = s->want ? s->want : (short)(s->sent ? POLLIN : POLLOUT);
    struct pollfd pf = {s->fd, want, 0};
    if (poll(&pf, 1, 0) != 1)
        return KL_PROBE_PENDING;
    s->want = 0;
    const cJSON *hg = cJSON_GetObjectItemCaseSensitive(probe, "httpGet");
    if (!s->sent) {
        if (!s->tls) {
            int err = 0;
            socklen_t el = sizeof(err);
            if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0)
                return failed(s, "dial tcp %s: %s", ip, strerror(err ? err : errno));
            if (!(pf.revents & POLLOUT))
                return KL_PROBE_PENDING;
            if (!s->http)
                return KL_PROBE_SUCCESS; /* connected */
        }
        const char *scheme = kl_kpod_jstr(hg, "scheme");
        if (scheme && !strcasecmp(scheme, "HTTPS") && !s->tls_ready) {
            int t = tls_step(s);
            if (t < 0)
                return failed(s, "TLS handshake with %s failed", ip);
            if (t == 0)
                return KL_PROBE_PENDING;
        }
        char req[4096];
        int n = http_request(hg, ip, req, sizeof(req));
        if (n < 0)
            return failed(s, "the HTTP request does not fit");
        int w = s->tls ? SSL_write(s->tls, req, n) : (int)write(s->fd, req, (size_t)n);
        if (w != n)
            return failed(s, "cannot send the HTTP request");
        s->sent = 1;
        return KL_PROBE_PENDING;
    }
    ssize_t r = probe_read(s, s->resp + s->got, sizeof(s->resp) - 1 - s->got);
    if (r == -2)
        return KL_PROBE_PENDING;
    if (r < 0)
        return failed(s, "read: %s", s->tls ? "TLS error" : strerror(errno));
    s->got += (size_t)r;
    s->resp[s->got] = 0;
    /* "HTTP/1.x NNN": the status code decides; 200-399 is a success. */
    if (s->got >= 12 || r == 0) {
        if (s->got < 12 || strncmp(s->resp, "HTTP/", 5) != 0)
            return failed(s, "the answer is not HTTP");
        const char *sp = strchr(s->resp, ' ');
        long code = sp ? strtol(sp + 1, NULL, 10) : 0;
        if (code >= 200 && code < 400)
            return KL_PROBE_SUCCESS;
        return failed(s, "HTTP probe failed with statuscode: %ld", code);
    }
    return KL_PROBE_PENDING;
}

/* Checks on a check in flight; ends it when its result is known. */
static int finish_check(kl_probe *s, const cJSON *probe, const char *ip, int64_t now)
{
    int res = KL_PROBE_PENDING;
    if (s->pid > 0) {
        int st = 0;
        pid_t w = waitpid(s->pid, &st, WNOHANG);
        if (w == s->pid) {
            s->pid = 0;
            if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
                res = KL_PROBE_SUCCESS;
            else if (WIFEXITED(st))
                res = failed(s, "command exited with status %d", WEXITSTATUS(st));
            else
                res = failed(s, "command killed by signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        } else if (w < 0) {
            s->pid = 0;
            res = failed(s, "lost the command: %s", strerror(errno));
        }
    } else if (s->fd >= 0) {
        res = poll_socket(s, probe, ip);
    }
    if (res == KL_PROBE_PENDING && now >= s->deadline_ms)
        res =
            failed(s, "timed out after %llds", (long long)(s->deadline_ms - s->started_ms) / 1000);
    if (res != KL_PROBE_PENDING)
        kl_probe_cancel(s);
    return res;
}

int kl_probe_step(kl_probe *s, const cJSON *probe, const cJSON *cs, const char *ip, pid_t sandbox,
                  int64_t now)
{
    if (!probe)
        return KL_PROBE_PENDING;
    kl_probe_params pp;
    kl_probe_params_of(probe, 0, &pp);
    int res = KL_PROBE_PENDING;
    if (s->active) {
        res = finish_check(s, probe, ip, now);
    } else if (now >= s->next_ms) {
        /* The period runs from the start of one check to the next. */
        s->next_ms = now + pp.period_ms;
        res = start_check(s, probe, cs, ip, sandbox, now, &pp);
        if (res == KL_PROBE_PENDING)
            res = finish_check(s, probe, ip, now); /* a local connect may be done already */
    }
    if (res == KL_PROBE_SUCCESS) {
        s->successes++;
        s->failures = 0;
    } else if (res == KL_PROBE_FAILURE) {
        s->failures++;
        s->successes = 0;
    }
    return res;
}
