/* kl_store: kubelite's object store: every object as a cJSON tree keyed by
 * (resource key, namespace, name) in a hash table per resource, one global
 * resourceVersion counter, a ring of recent events for watches, and a
 * write-ahead log replayed (and compacted) at open. A write is durable
 * before it returns, or, with group commit, once an fdatasync on the
 * syncer thread covers it (see kl_store_start_syncer).
 *
 * Single-threaded: the API thread owns it; the syncer thread only fsyncs
 * the log. Objects returned are borrowed and stay valid until the next
 * write to the same key. */
#ifndef KL_STORE_H
#define KL_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"

enum kl_ev_type { KL_ADDED = 0, KL_MODIFIED = 1, KL_DELETED = 2 };

typedef struct kl_event {
    uint64_t rv;
    int type;
    char *rkey;
    char *ns;
    cJSON *obj;  /* the new state (the last state for DELETED), owned */
    cJSON *prev; /* the state before (NULL for ADDED), owned */
    char *json;  /* obj printed once for every watcher (may be NULL) */
    size_t json_len;
} kl_event;

typedef struct kl_store kl_store;

/* dir may be NULL for a memory-only store. hist_cap: events kept for
 * watches. */
int kl_store_open(const char *dir, size_t hist_cap, kl_store **out, kiln_error *err);
void kl_store_free(kl_store *st);

uint64_t kl_store_rv(const kl_store *st);

const cJSON *kl_store_get(kl_store *st, const char *rkey, const char *ns, const char *name);

/* Stores obj (taken, even on failure) under the key: writes a new
 * metadata.resourceVersion, logs (and fsyncs unless deferred), records
 * ADDED or MODIFIED.
 * Returns 0, KILN_EIO or KILN_ENOMEM. */
int kl_store_put(kl_store *st, const char *rkey, const char *ns, const char *name, cJSON *obj,
                 kiln_error *err);

/* Removes the object; the DELETED event carries its last state with a new
 * resourceVersion. KILN_ENOTFOUND when absent. */
int kl_store_del(kl_store *st, const char *rkey, const char *ns, const char *name,
                 kiln_error *err);

/* Objects of rkey (in namespace ns, or all when ns is NULL), sorted by
 * namespace then name. *out is a malloc'd array of borrowed pointers. */
int kl_store_list(kl_store *st, const char *rkey, const char *ns, const cJSON ***out,
                  size_t *n);

/* Watch history: every event with rv > floor is kept. */
uint64_t kl_store_hist_floor(const kl_store *st);

/* The first kept event with rv > after, or NULL. */
const kl_event *kl_store_event_after(const kl_store *st, uint64_t after);
/* The event after ev (one kl_store_event* returned since the last write),
 * or NULL: walks the history without a search per event. */
const kl_event *kl_store_event_next(const kl_store *st, const kl_event *ev);

/* Forgets all history (fault injection: the next watch from an older RV
 * gets 410). */
void kl_store_expire_history(kl_store *st);

/* Counters for the benchmark and logs: writes applied, fdatasyncs of the
 * log, and nanoseconds the syncer thread spent in them. */
uint64_t kl_store_writes(const kl_store *st);
uint64_t kl_store_syncs(const kl_store *st);
uint64_t kl_store_sync_ns(const kl_store *st);

/* Sets fsync on or off (tests of throughput only). */
void kl_store_set_sync(kl_store *st, int on);

/* Group commit by hand: with deferred on, writes reach the log without
 * fsync and kl_store_flush() makes every write so far durable with one
 * fdatasync. The caller must not acknowledge a write before flushing. */
void kl_store_set_deferred(kl_store *st, int on);
int kl_store_flush(kl_store *st, kiln_error *err);

/* Group commit on a thread: turns deferred on and starts a syncer thread
 * that fdatasyncs whatever has been appended, as soon as the previous
 * fdatasync ends, then publishes the durable mark and calls wake(ctx) from
 * the syncer thread (it must be thread-safe, e.g. lws_cancel_service).
 * A write is acknowledged once kl_store_durable() reaches the
 * kl_store_appended() read after it. Without a log or with fsync off no
 * thread starts and every write counts as durable at once. */
typedef void (*kl_store_wake_fn)(void *ctx);
int kl_store_start_syncer(kl_store *st, kl_store_wake_fn wake, void *ctx, kiln_error *err);
/* Stops the syncer (wake is never called after this returns), makes every
 * write durable and turns deferred off. */
int kl_store_stop_syncer(kl_store *st, kiln_error *err);

/* Log records appended since open, and how many of them are durable. */
uint64_t kl_store_appended(const kl_store *st);
uint64_t kl_store_durable(const kl_store *st);
/* The highest resourceVersion that is durable: watch events above it are
 * not delivered yet (as the API server delivers after the etcd commit). */
uint64_t kl_store_durable_rv(const kl_store *st);
/* 1 if appended records wait for an fdatasync. */
int kl_store_dirty(const kl_store *st);
/* errno of a failed fdatasync (0: none). Sticky: the log may have lost
 * writes, so no later write is acknowledged either. */
int kl_store_sync_error(const kl_store *st);

#endif
