/* kl_server: kubelite's HTTP(S) front end on libwebsockets: request
 * assembly (method, path, query, headers, body), bearer-token and
 * client-certificate authentication, responses, chunked watch and log
 * streams, WebSocket watches, and the periodic tick that drives the
 * controllers. One lws context, one service thread.
 *
 * Ownership: kl_server_new()/kl_server_free(); the api is borrowed. */
#ifndef KL_SERVER_H
#define KL_SERVER_H

#include "kiln_err.h"
#include "kl_api.h"

typedef struct kl_server kl_server;

typedef struct kl_server_opts {
    const char *listen_host; /* "127.0.0.1" */
    int port;                /* 0: pick a free one */
    int insecure;            /* plain http, no authentication */
    const char *cert_path, *key_path, *ca_path; /* TLS mode */
    const char *token;       /* bearer token (TLS mode) */
} kl_server_opts;

/* Called every tick (about 100 ms) from the service thread. Returns
 * nonzero when it stopped with work left, to be called again as soon as
 * the requests waiting meanwhile are served. */
typedef int (*kl_tick_fn)(void *ctx);

int kl_server_new(const kl_server_opts *o, kl_api *api, kl_server **out, kiln_error *err);
void kl_server_free(kl_server *s);

/* The bound port. */
int kl_server_port(const kl_server *s);

void kl_server_add_tick(kl_server *s, kl_tick_fn fn, void *ctx);

/* Wakes every stream to poll for new events (after a store write). */
void kl_server_kick(kl_server *s);

/* Runs until *stop becomes nonzero. */
int kl_server_run(kl_server *s, volatile int *stop);


#endif
