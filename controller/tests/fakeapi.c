/* fakeapi: scripted loopback HTTP server for the kiln_kube unit tests. */
#include "fakeapi.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct fake_conn {
    fake_server *srv;
    int fd;
    SSL *ssl;
    int close_after;
    pthread_t th;
    struct fake_conn *next;
};

struct fake_server {
    int lfd, port;
    atomic_int stop;
    atomic_int n_conns;
    fake_handler h;
    void *ud;
    pthread_t accept_th;
    pthread_mutex_t mu;
    fake_conn *conns;
    SSL_CTX *tls;
};

void fake_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int conn_write(fake_conn *c, const char *p, size_t n)
{
    if (!c->ssl)
        return write_all(c->fd, p, n);
    while (n) {
        int w = SSL_write(c->ssl, p, n > 1 << 30 ? 1 << 30 : (int)n);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 101:
        return "Switching Protocols";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Status";
    }
}

int fake_reply(fake_conn *c, int status, const char *extra, const char *body)
{
    size_t bl = body ? strlen(body) : 0;
    char head[2048];
    int n = snprintf(
        head, sizeof head,
        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s%s\r\n",
        status, reason(status), bl, extra ? extra : "",
        c->close_after ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof head)
        return -1;
    if (conn_write(c, head, (size_t)n))
        return -1;
    return bl ? conn_write(c, body, bl) : 0;
}

int fake_chunked_begin(fake_conn *c, int status, const char *extra)
{
    char head[2048];
    int n = snprintf(
        head, sizeof head,
        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n%s\r\n",
        status, reason(status), extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof head)
        return -1;
    return conn_write(c, head, (size_t)n);
}

int fake_chunk(fake_conn *c, const char *data, size_t len)
{
    if (len == 0)
        return 0;
    char h[32];
    int n = snprintf(h, sizeof h, "%zx\r\n", len);
    if (conn_write(c, h, (size_t)n) || conn_write(c, data, len) || conn_write(c, "\r\n", 2))
        return -1;
    return 0;
}

int fake_chunked_end(fake_conn *c)
{
    return conn_write(c, "0\r\n\r\n", 5);
}

void fake_close_after(fake_conn *c)
{
    c->close_after = 1;
}

fake_server *fake_conn_server(fake_conn *c)
{
    return c->srv;
}

int fake_stopping(fake_server *s)
{
    return atomic_load(&s->stop);
}

int fake_port(const fake_server *s)
{
    return s->port;
}

int fake_connections(fake_server *s)
{
    return atomic_load(&s->n_conns);
}

/* ---- WebSocket ---- */

int fake_ws_accept(fake_conn *c, const fake_req *r)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char cat[256];
    snprintf(cat, sizeof cat, "%s%s", r->ws_key, guid);
    unsigned char sha[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)cat, strlen(cat), sha);
    unsigned char b64[64];
    EVP_EncodeBlock(b64, sha, SHA_DIGEST_LENGTH);
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     b64);
    c->close_after = 1;
    return conn_write(c, head, (size_t)n);
}

static int ws_frame(fake_conn *c, int opcode, const char *data, size_t len)
{
    unsigned char h[10];
    size_t hl = 2;
    h[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        h[1] = (unsigned char)len;
    } else if (len < 65536) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((unsigned long long)len >> (56 - 8 * i));
        hl = 10;
    }
    if (conn_write(c, (const char *)h, hl))
        return -1;
    return len ? conn_write(c, data, len) : 0;
}

int fake_ws_text(fake_conn *c, const char *data, size_t len)
{
    return ws_frame(c, 1, data, len);
}

int fake_ws_close(fake_conn *c)
{
    static const char code[2] = {0x03, (char)0xe8}; /* 1000 */
    return ws_frame(c, 8, code, 2);
}

/* ---- request parsing ---- */

static void header_value(const char *hdrs, const char *name, char *out, size_t n)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = hdrs; p && *p;) {
        const char *e = strstr(p, "\r\n");
        if (!e)
            break;
        if ((size_t)(e - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = (size_t)(e - v);
            if (vl >= n)
                vl = n - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return;
        }
        p = e + 2;
    }
}

int fake_query(const fake_req *r, const char *name, char *buf, size_t n)
{
    size_t nl = strlen(name);
    const char *p = r->query;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t seg = amp ? (size_t)(amp - p) : strlen(p);
        if (seg > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t o = 0;
            for (size_t i = nl + 1; i < seg && o + 1 < n; i++) {
                if (p[i] == '%' && i + 2 < seg && isxdigit((unsigned char)p[i + 1]) &&
                    isxdigit((unsigned char)p[i + 2])) {
                    char hx[3] = {p[i + 1], p[i + 2], 0};
                    buf[o++] = (char)strtol(hx, NULL, 16);
                    i += 2;
                } else {
                    buf[o++] = p[i] == '+' ? ' ' : p[i];
                }
            }
            buf[o] = '\0';
            return 1;
        }
        if (seg == nl && strncmp(p, name, nl) == 0) {
            buf[0] = '\0';
            return 1;
        }
        p += seg;
        if (*p == '&')
            p++;
    }
    return 0;
}

/* Reads until the buffer holds a full request head; -1 on close/stop. */
static int read_more(fake_conn *c, char **buf, size_t *len, size_t *cap)
{
    for (;;) {
        if (atomic_load(&c->srv->stop))
            return -1;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int pr = c->ssl && SSL_pending(c->ssl) ? 1 : poll(&pfd, 1, 50);
        if (pr == 0)
            continue;
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return -1;
        if (*len + 4096 + 1 > *cap) {
            size_t nc = *cap * 2 + 8192;
            char *nb = realloc(*buf, nc);
            if (!nb)
                return -1;
            *buf = nb;
            *cap = nc;
        }
        ssize_t r = c->ssl ? SSL_read(c->ssl, *buf + *len, (int)(*cap - *len - 1))
                           : recv(c->fd, *buf + *len, *cap - *len - 1, 0);
        if (r <= 0)
            return -1;
        *len += (size_t)r;
        (*buf)[*len] = '\0';
        return 0;
    }
}

static void *conn_main(void *arg)
{
    fake_conn *c = arg;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (c->srv->tls) {
        c->ssl = SSL_new(c->srv->tls);
        if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) || SSL_accept(c->ssl) != 1) {
            c->close_after = 1; /* handshake refused (untrusted CA, no client cert) */
            ERR_clear_error();
        }
    }
    while (!c->close_after) {
        char *end;
        while (!(buf && (end = strstr(buf, "\r\n\r\n"))))
            if (read_more(c, &buf, &len, &cap))
                goto out;
        size_t head_len = (size_t)(end - buf) + 4;
        char cl[32];
        char *hdr_start = strstr(buf, "\r\n");
        /* the head ends with CRLF CRLF, so every header line keeps its CRLF */
        char saved = buf[head_len];
        buf[head_len] = '\0';
        header_value(hdr_start ? hdr_start + 2 : "", "Content-Length", cl, sizeof cl);
        buf[head_len] = saved;
        size_t body_len = cl[0] ? strtoul(cl, NULL, 10) : 0;
        while (len < head_len + body_len)
            if (read_more(c, &buf, &len, &cap))
                goto out;
        fake_req *r = calloc(1, sizeof *r);
        if (!r)
            goto out;
        char target[6144] = "";
        sscanf(buf, "%15s %6143s", r->method, target);
        char *q = strchr(target, '?');
        if (q) {
            *q = '\0';
            snprintf(r->query, sizeof r->query, "%s", q + 1);
        }
        snprintf(r->path, sizeof r->path, "%s", target);
        char *hdrs = malloc(head_len + 1);
        if (!hdrs) {
            free(r);
            goto out;
        }
        memcpy(hdrs, buf, head_len);
        hdrs[head_len] = '\0';
        char *first = strstr(hdrs, "\r\n");
        const char *h = first ? first + 2 : "";
        header_value(h, "Authorization", r->auth, sizeof r->auth);
        header_value(h, "Content-Type", r->content_type, sizeof r->content_type);
        header_value(h, "Sec-WebSocket-Key", r->ws_key, sizeof r->ws_key);
        header_value(h, "Origin", r->origin, sizeof r->origin);
        char conn_hdr[64];
        header_value(h, "Connection", conn_hdr, sizeof conn_hdr);
        if (strcasecmp(conn_hdr, "close") == 0)
            c->close_after = 1;
        free(hdrs);
        r->body = malloc(body_len + 1);
        if (!r->body) {
            free(r);
            goto out;
        }
        memcpy(r->body, buf + head_len, body_len);
        r->body[body_len] = '\0';
        r->body_len = body_len;
        memmove(buf, buf + head_len + body_len, len - head_len - body_len);
        len -= head_len + body_len;
        buf[len] = '\0';
        c->srv->h(c->srv->ud, r, c);
        free(r->body);
        free(r);
    }
out:
    free(buf);
    if (c->ssl)
        SSL_shutdown(c->ssl);
    shutdown(c->fd, SHUT_RDWR);
    return NULL;
}

static void *accept_main(void *arg)
{
    fake_server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd pfd = {.fd = s->lfd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        fake_conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->srv = s;
        c->fd = fd;
        atomic_fetch_add(&s->n_conns, 1);
        pthread_mutex_lock(&s->mu);
        if (pthread_create(&c->th, NULL, conn_main, c)) {
            pthread_mutex_unlock(&s->mu);
            close(fd);
            free(c);
            continue;
        }
        c->next = s->conns;
        s->conns = c;
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

static int start(fake_handler h, void *ud, SSL_CTX *tls, fake_server **out)
{
    /* SSL_write to a peer that hung up raises SIGPIPE; tests own their process */
    signal(SIGPIPE, SIG_IGN);
    fake_server *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    s->tls = tls;
    s->h = h;
    s->ud = ud;
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof a) || listen(s->lfd, 64) ||
        getsockname(s->lfd, (struct sockaddr *)&a, &al)) {
        if (s->lfd >= 0)
            close(s->lfd);
        free(s);
        return -1;
    }
    s->port = ntohs(a.sin_port);
    if (pthread_create(&s->accept_th, NULL, accept_main, s)) {
        close(s->lfd);
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

int fake_start(fake_handler h, void *ud, fake_server **out)
{
    return start(h, ud, NULL, out);
}

void fake_stop(fake_server *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, 1);
    pthread_join(s->accept_th, NULL);
    close(s->lfd);
    pthread_mutex_lock(&s->mu);
    fake_conn *c = s->conns;
    s->conns = NULL;
    pthread_mutex_unlock(&s->mu);
    for (fake_conn *p = c; p; p = p->next)
        shutdown(p->fd, SHUT_RDWR);
    while (c) {
        fake_conn *n = c->next;
        pthread_join(c->th, NULL);
        SSL_free(c->ssl);
        close(c->fd);
        free(c);
        c = n;
    }
    pthread_mutex_destroy(&s->mu);
    SSL_CTX_free(s->tls);
    free(s);
}

/* ---- TLS ---- */

static EVP_PKEY *pem_key(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    return k;
}

static X509 *pem_cert(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    return x;
}

static char *to_pem(X509 *x, EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return NULL;
    int ok =
        x ? PEM_write_bio_X509(b, x) : PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *out = ok && n > 0 ? malloc((size_t)n + 1) : NULL;
    if (out) {
        memcpy(out, data, (size_t)n);
        out[n] = '\0';
    }
    BIO_free(b);
    return out;
}

static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       const char *san, int ca, int serial)
{
    X509 *x = X509_new();
    if (!x)
        return NULL;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
                                            ca ? "critical,CA:TRUE" : "CA:FALSE");
    if (e) {
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    if (san) {
        e = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
        if (e) {
            X509_add_ext(x, e, -1);
            X509_EXTENSION_free(e);
        }
    }
    if (!X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256())) {
        X509_free(x);
        return NULL;
    }
    return x;
}

int fake_make_pki(fake_pki *p, const char *server_san)
{
    memset(p, 0, sizeof *p);
    EVP_PKEY *ck = EVP_EC_gen("P-256"), *sk = EVP_EC_gen("P-256"), *uk = EVP_EC_gen("P-256");
    X509 *ca = ck ? make_cert(ck, "kiln-test-ca", NULL, NULL, NULL, 1, 1) : NULL;
    X509 *sc = ca && sk ? make_cert(sk, "kiln-test-server", ca, ck, server_san, 0, 2) : NULL;
    X509 *uc = ca && uk ? make_cert(uk, "kiln-test-client", ca, ck, NULL, 0, 3) : NULL;
    if (sc && uc) {
        p->ca_pem = to_pem(ca, NULL);
        p->server_cert = to_pem(sc, NULL);
        p->server_key = to_pem(NULL, sk);
        p->client_cert = to_pem(uc, NULL);
        p->client_key = to_pem(NULL, uk);
    }
    X509_free(ca);
    X509_free(sc);
    X509_free(uc);
    EVP_PKEY_free(ck);
    EVP_PKEY_free(sk);
    EVP_PKEY_free(uk);
    if (!p->ca_pem || !p->server_cert || !p->server_key || !p->client_cert || !p->client_key) {
        fake_pki_free(p);
        return -1;
    }
    return 0;
}

void fake_pki_free(fake_pki *p)
{
    free(p->ca_pem);
    free(p->server_cert);
    free(p->server_key);
    free(p->client_cert);
    free(p->client_key);
    memset(p, 0, sizeof *p);
}

int fake_start_tls(fake_handler h, void *ud, const fake_pki *pki, int require_client_cert,
                   fake_server **out)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    X509 *cert = pem_cert(pki->server_cert);
    EVP_PKEY *key = pem_key(pki->server_key);
    X509 *ca = pem_cert(pki->ca_pem);
    int ok = ctx && cert && key && ca && SSL_CTX_use_certificate(ctx, cert) == 1 &&
             SSL_CTX_use_PrivateKey(ctx, key) == 1;
    if (ok && require_client_cert) {
        ok = X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca) == 1;
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    X509_free(cert);
    X509_free(ca);
    EVP_PKEY_free(key);
    if (!ok || start(h, ud, ctx, out) != 0) {
        SSL_CTX_free(ctx);
        return -1;
    }
    return 0;
}
