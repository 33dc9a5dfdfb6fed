/* serve_http: the model server's HTTP/1.1 transport on libwebsockets.
 *
 * Debian's libwebsockets has LWS_MAX_SMP 1 (one service thread per
 * context), so each service thread owns one lws context listening on the
 * same address and port (SO_REUSEPORT via LWS_SERVER_OPTION_ALLOW_LISTEN_SHARE)
 * and the kernel spreads connections between them. A request is read,
 * handled (model included) and answered on its connection's thread: a
 * prediction costs microseconds, less than a hand-off between threads
 * would. JSON predictions are parsed as their bodies complete, and the
 * ones a pass of the event loop completed run through the model together
 * at the end of the pass (serve_run_jobs): the answers are written on the
 * next writable event anyway, so the batch adds no wait, and one pass over
 * the weights serves all of them.
 *
 * Per-connection limits: a new connection must deliver its first request
 * headers within cfg.timeout_s of the accept, and every body within
 * cfg.timeout_s of its headers, or it is answered 408 and closed (a
 * once-a-second sweep); libwebsockets' own timeouts, set a little longer,
 * are the backstop and bound later requests on a keep-alive connection.
 * A body over cfg.max_body is read and dropped, then answered 413.
 *
 * From SIGTERM on (app->stopping, the drain included) every answer carries
 * Connection: close, so keep-alive clients reconnect rather than reuse a
 * connection the stop will close.
 *
 * serve_http_stop (any thread) makes every service thread close its listen
 * socket, close idle keep-alive connections, finish the requests in flight
 * (answering with Connection: close) and return; serve_http_join waits.
 *
 * Ownership: serve_http_start returns an object freed by serve_http_free
 * after serve_http_join. */
#ifndef KILN_SERVE_HTTP_H
#define KILN_SERVE_HTTP_H

#include "kiln_err.h"
#include "serve_app.h"

typedef struct serve_http serve_http;

/* Binds and starts cfg.threads service threads; *port gets the bound port. */
int serve_http_start(serve_app *app, serve_http **out, int *port, kiln_error *err);
void serve_http_stop(serve_http *h);
/* Waits for the service threads; returns the number of requests that were
 * still in flight when the grace period ran out (0 on a clean stop). */
int serve_http_join(serve_http *h);
void serve_http_free(serve_http *h);

#endif
