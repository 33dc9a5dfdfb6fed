/* fakeapi: a tiny scripted HTTP/1.1 server on a loopback port, standing in
 * for the Kubernetes API server in the kiln_kube unit tests.
 *
 * One thread accepts, one thread per connection reads requests (keep-alive,
 * Content-Length bodies) and calls the test's handler, which answers with
 * fake_reply() (a whole body), the chunked trio (watch streams), or the
 * WebSocket calls. The server counts connections so tests can prove reuse.
 * fake_stop() closes every socket and joins every thread. */
#ifndef FAKEAPI_H
#define FAKEAPI_H

#include <stddef.h>

typedef struct fake_req {
    char method[16];
    char path[2048];  /* without the query */
    char query[4096]; /* without '?', "" when none */
    char auth[1024];  /* Authorization header value, "" when none */
    char content_type[128];
    char ws_key[128]; /* Sec-WebSocket-Key, "" when not an upgrade */
    char origin[256];
    char *body; /* NUL-terminated, may be empty */
    size_t body_len;
} fake_req;

typedef struct fake_conn fake_conn;
typedef struct fake_server fake_server;

typedef void (*fake_handler)(void *ud, const fake_req *req, fake_conn *c);

int fake_start(fake_handler h, void *ud, fake_server **out);
void fake_stop(fake_server *s);
int fake_port(const fake_server *s);
int fake_connections(fake_server *s);
int fake_stopping(fake_server *s);
fake_server *fake_conn_server(fake_conn *c);

/* Value of a query parameter (URL-decoded) into buf; 1 if present. */
int fake_query(const fake_req *r, const char *name, char *buf, size_t n);

/* Returns 0, or -1 when the peer is gone. extra_headers are full lines
 * ending in "\r\n" (may be NULL). */
int fake_reply(fake_conn *c, int status, const char *extra_headers, const char *body);
int fake_chunked_begin(fake_conn *c, int status, const char *extra_headers);
int fake_chunk(fake_conn *c, const char *data, size_t len);
int fake_chunked_end(fake_conn *c);
/* Makes the connection close after the current response. */
void fake_close_after(fake_conn *c);

/* WebSocket (RFC 6455, server side, unmasked frames). */
int fake_ws_accept(fake_conn *c, const fake_req *r);
int fake_ws_text(fake_conn *c, const char *data, size_t len);
int fake_ws_close(fake_conn *c);

/* TLS: a throwaway CA, a server certificate with the given
 * subjectAltName ("DNS:localhost,IP:127.0.0.1") and a client certificate,
 * all PEM strings the pki owns. */
typedef struct fake_pki {
    char *ca_pem, *server_cert, *server_key, *client_cert, *client_key;
} fake_pki;

int fake_make_pki(fake_pki *p, const char *server_san);
void fake_pki_free(fake_pki *p);
/* Like fake_start, over TLS (HTTP/1.1 only; no ALPN). With
 * require_client_cert the handshake fails without a certificate from the CA. */
int fake_start_tls(fake_handler h, void *ud, const fake_pki *pki, int require_client_cert,
                   fake_server **out);

/* Sleeps ms milliseconds (tests only). */
void fake_sleep_ms(int ms);

#endif
