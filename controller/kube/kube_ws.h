/* kube_ws: a watch over WebSocket (libwebsockets client).
 *
 * The API server accepts the same watch URL with an Upgrade: websocket
 * handshake and sends each watch event as one text message. This module
 * connects with the kube_client's server, TLS settings (CA, client
 * certificate and key from memory or files, insecure flag) and bearer
 * token, sends an Origin header, reassembles fragmented messages and hands
 * each whole message to fn. One lws context per stream, serviced by the
 * calling thread; kube_stream_cancel() wakes it at once. */
#ifndef KUBE_WS_H
#define KUBE_WS_H

#include <stddef.h>
#include <stdint.h>

#include "kube_client.h"

/* Called once per message; non-zero ends the stream with that code. */
typedef int (*kube_ws_msg_fn)(void *ud, const char *data, size_t len);

/* Returns 0 when the server closed the stream, KILN_ECANCELED, KILN_ETIMEOUT
 * (idle_ms without a message; 0 = no limit), fn's code, KILN_ENET (connect
 * or handshake failure; err->http holds a refused upgrade's status). */
int kube_ws_stream(kube_client *c, kube_stream *s, const char *path, kube_ws_msg_fn fn, void *ud,
                   int64_t idle_ms, kube_err *err);

#endif
