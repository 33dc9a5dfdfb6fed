/* kube_informer: list + watch one resource into a local cache.
 *
 * A thread lists the resource (following pages), then watches from the
 * list's resourceVersion with allowWatchBookmarks. Every event and bookmark
 * advances the last resourceVersion; a stream that ends or breaks is
 * re-watched from it (with back-off after failures), and a 410 Expired
 * leads to a relist from that version (or from the latest state if that
 * is refused too). A relist is diffed against the cache, so handlers see
 * adds, updates and synthetic deletes for objects that vanished meanwhile,
 * and nothing twice: an object whose resourceVersion did not change fires
 * no event. Optional resync re-delivers every cached object as an update.
 *
 * The cache is thread-safe and indexed by "ns/name", by namespace and by
 * owner UID; lookups return deep copies the caller frees. Objects are held
 * as compact JSON text (a few times smaller than cJSON trees) and parsed
 * on lookup, after an optional transform has dropped unneeded fields. Handlers run on
 * the informer thread, outside the cache lock, and receive borrowed
 * objects valid only during the call; they should just enqueue keys
 * (kube_informer_enqueue_handlers does that).
 * Threads: each informer runs its watch on its own thread with its own
 * curl multi handle, rather than all watches on one event loop: a
 * controller has a handful of informers, a blocked watch then never delays
 * another, and kube_stream_cancel() still ends any of them at once.
 * Ownership: kube_informer_new/free; the client and queue are borrowed and
 * must outlive the informer. An informer cannot be restarted once stopped. */
#ifndef KUBE_INFORMER_H
#define KUBE_INFORMER_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "kube_api.h"
#include "kube_client.h"
#include "kube_queue.h"

typedef struct kube_informer kube_informer;

typedef struct kube_handlers {
    void (*on_add)(void *ud, const cJSON *obj);
    void (*on_update)(void *ud, const cJSON *old_obj, const cJSON *new_obj);
    void (*on_delete)(void *ud, const cJSON *obj);
    void *ud;
} kube_handlers;

typedef struct kube_informer_opts {
    kube_resource res;          /* copied; its strings must stay valid */
    const char *ns;             /* NULL/"": all namespaces (copied) */
    const char *label_selector; /* copied */
    const char *field_selector; /* copied */
    int64_t resync_ms;          /* 0: no resync */
    int websocket;              /* watch over WebSocket instead of chunked HTTP */
    int watch_timeout_s;        /* 0: random in [300, 600) like client-go */
    int64_t backoff_base_ms;    /* 0 -> 800 */
    int64_t backoff_max_ms;     /* 0 -> 30000 */
    /* Called on every object before it enters the cache (list and watch,
     * deletes included), on the informer thread; it may delete fields the
     * controller never reads, to keep the cache small. It must keep
     * metadata.name, namespace, resourceVersion and ownerReferences.
     * NULL: objects are cached as received. */
    void (*transform)(cJSON *obj, void *ud);
    void *transform_ud;
} kube_informer_opts;

typedef struct kube_informer_stats {
    long lists;   /* successful (re)lists */
    long watches; /* watch requests started */
    long events;  /* watch events applied (bookmarks excluded) */
    long bookmarks;
    long expired; /* 410s seen */
} kube_informer_stats;

int kube_informer_new(kube_client *c, const kube_informer_opts *o, const kube_handlers *h,
                      kube_informer **out);
/* Stops (if running) and frees. */
void kube_informer_free(kube_informer *inf);

int kube_informer_start(kube_informer *inf);
/* Waits until the first list is in the cache and its handlers have run;
 * 0, or KILN_ETIMEOUT. */
int kube_informer_wait_synced(kube_informer *inf, int64_t timeout_ms);
int kube_informer_synced(kube_informer *inf);
/* Closes the watch and joins the thread. Safe to call twice. */
void kube_informer_stop(kube_informer *inf);

/* ---- cache (thread-safe; results are deep copies the caller owns) ---- */

/* A copy of the object with key "ns/name" (or "name"), or NULL. */
cJSON *kube_informer_get(kube_informer *inf, const char *key);
/* All objects (ns NULL) or those of one namespace, as a new array. */
int kube_informer_list(kube_informer *inf, const char *ns, cJSON **out);
/* Objects with an owner reference to uid, as a new array. */
int kube_informer_by_owner(kube_informer *inf, const char *uid, cJSON **out);
size_t kube_informer_len(kube_informer *inf);
/* The last resourceVersion seen, copied into buf ("" before the list). */
void kube_informer_last_rv(kube_informer *inf, char *buf, size_t n);
void kube_informer_get_stats(kube_informer *inf, kube_informer_stats *out);

/* ---- transforms ---- */

/* A transform that drops what no controller reads and the server keeps
 * anyway: metadata.managedFields and the
 * kubectl.kubernetes.io/last-applied-configuration annotation (a full copy
 * of the applied object). ud is unused. */
void kube_informer_strip_server_fields(cJSON *obj, void *ud);

/* ---- handlers that feed a work queue ---- */

/* Handlers enqueueing each object's own key. */
void kube_informer_enqueue_handlers(kube_queue *q, kube_handlers *out);
/* Handlers enqueueing "ns/<owner name>" of each object's controller
 * reference whose kind is owner_kind (a static or long-lived string).
 * With delay_ms > 0 the owner is queued that much later (once, however
 * many changes arrive meanwhile), so a burst of changes to owned objects
 * (a pod going Pending, Running, Succeeded within a moment) costs one
 * reconcile, and one status write, instead of one per change. */
typedef struct kube_owner_enqueuer {
    kube_queue *q;
    const char *owner_kind;
    int64_t delay_ms; /* 0: at once */
} kube_owner_enqueuer;
void kube_informer_owner_handlers(kube_owner_enqueuer *e, kube_handlers *out);

#endif
