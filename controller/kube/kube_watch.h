/* kube_watch: watch streams, parsed incrementally.
 *
 * The API sends one JSON event per line: {"type":"ADDED","object":{...}}.
 * kube_watch_parser buffers bytes as they arrive and scans only the new
 * bytes for '\n', so an event split across any number of chunks arrives
 * whole, a huge event costs linear time, and each event is parsed exactly
 * once; the handler receives the parsed object and owns it. Over WebSocket
 * each message is one event (a trailing newline is trimmed).
 * kube_watch_run() opens one watch (chunked HTTP by default, WebSocket when
 * asked) and feeds the parser until the stream ends or is cancelled. */
#ifndef KUBE_WATCH_H
#define KUBE_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "kube_api.h"
#include "kube_client.h"

enum kube_event_type {
    KUBE_EV_ADDED = 1,
    KUBE_EV_MODIFIED,
    KUBE_EV_DELETED,
    KUBE_EV_BOOKMARK,
    KUBE_EV_ERROR, /* object is a Status (410 Expired: relist) */
};

/* obj is owned by the callee (cJSON_Delete it). Non-zero stops the parser
 * and is returned by kube_watch_parser_feed(). */
typedef int (*kube_watch_event_fn)(void *ud, int type, cJSON *obj);

typedef struct kube_watch_parser {
    char *buf;
    size_t len, cap;
    size_t scanned; /* bytes of buf already known to hold no '\n' */
    size_t max;     /* largest event accepted */
    kube_watch_event_fn fn;
    void *ud;
    long events;
} kube_watch_parser;

/* max 0 -> 128 MiB. */
void kube_watch_parser_init(kube_watch_parser *p, size_t max, kube_watch_event_fn fn, void *ud);
void kube_watch_parser_release(kube_watch_parser *p);

/* Returns 0, the handler's non-zero value, KILN_ECORRUPT for a line that is
 * not a watch event, or KILN_ENOMEM (also for an event above max). */
int kube_watch_parser_feed(kube_watch_parser *p, const char *data, size_t len, kiln_error *err);

/* At end of stream: a last event without its newline is still delivered. */
int kube_watch_parser_finish(kube_watch_parser *p, kiln_error *err);

/* One whole event (a line or a WebSocket message). */
int kube_watch_parse_event(const char *data, size_t len, int *type, cJSON **obj, kiln_error *err);

typedef struct kube_watch_opts {
    const char *resource_version; /* NULL/"" : from now, with synthetic ADDED */
    const char *label_selector;
    const char *field_selector;
    int bookmarks;       /* allowWatchBookmarks=true */
    int timeout_seconds; /* server-side timeout; 0: none */
    int64_t idle_ms;     /* client-side idle limit; 0: none */
    int websocket;       /* 1: WebSocket instead of chunked HTTP */
} kube_watch_opts;

/* Builds the watch path (caller frees). */
int kube_watch_path(const kube_resource *r, const char *ns, const kube_watch_opts *o, char **out);

/* Runs one watch. Returns 0 when the server ended the stream, or an error
 * as kube_client_stream() does (HTTP 410 -> KILN_EAPI with status.code 410). */
int kube_watch_run(kube_client *c, kube_stream *s, const kube_resource *r, const char *ns,
                   const kube_watch_opts *o, kube_watch_event_fn fn, void *ud, kube_err *err);

#endif
