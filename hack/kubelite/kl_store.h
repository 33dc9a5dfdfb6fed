/* kl_store: kubelite's object store: every object as a cJSON tree keyed by
 * (resource key, namespace, name), one global resourceVersion counter, a
 * ring of recent events for watches, and a write-ahead log fsync'd before
 * a write returns, replayed (and compacted) at open.
 *
 * Single-threaded: the API thread owns it. Objects returned are borrowed
 * and stay valid until the next write to the same key. */
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
} kl_event;

typedef struct kl_store kl_store;

/* dir may be NULL for a memory-only store. hist_cap: events kept for
 * watches. */
int kl_store_open(const char *dir, size_t hist_cap, kl_store **out, kiln_error *err);
void kl_store_free(kl_store *st);

uint64_t kl_store_rv(const kl_store *st);

const cJSON *kl_store_get(kl_store *st, const char *rkey, const char *ns, const char *name);

/* Stores obj (taken, even on failure) under the key: writes a new
 * metadata.resourceVersion, logs and fsyncs, records ADDED or MODIFIED.
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

/* Removes every object of rkey (no events; used when a CRD goes away after
 * its objects were deleted one by one). */

/* Watch history: every event with rv > floor is kept. */
uint64_t kl_store_hist_floor(const kl_store *st);

/* The first kept event with rv > after, or NULL. */
const kl_event *kl_store_event_after(const kl_store *st, uint64_t after);

/* Forgets all history (fault injection: the next watch from an older RV
 * gets 410). */
void kl_store_expire_history(kl_store *st);

/* Counters for the benchmark and logs. */
uint64_t kl_store_writes(const kl_store *st);

/* Sets fsync on or off (tests of throughput only). */
void kl_store_set_sync(kl_store *st, int on);

/* Group commit: with deferred on, writes reach the log without fsync and
 * kl_store_flush() makes every write so far durable with one fdatasync.
 * The caller must not acknowledge a write before flushing. */
void kl_store_set_deferred(kl_store *st, int on);
int kl_store_flush(kl_store *st, kiln_error *err);
/* 1 if writes are waiting for kl_store_flush(). */
int kl_store_dirty(const kl_store *st);

#endif
