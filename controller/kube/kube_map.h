/* kube_map: a small string-keyed hash map with chaining.
 *
 * Used by the work queue (key states), the informer cache and its indexes,
 * and the event recorder. Not thread-safe: the owner holds its own lock.
 * Keys are copied; values are owned by the map when a destructor is given
 * (called on replace, delete and free), borrowed otherwise. */
#ifndef KUBE_MAP_H
#define KUBE_MAP_H

#include <stddef.h>

typedef struct kube_map kube_map;

/* free_val may be NULL (values are borrowed). Returns 0 or KILN_ENOMEM. */
int kube_map_new(void (*free_val)(void *), kube_map **out);
void kube_map_free(kube_map *m);

/* Inserts or replaces. On KILN_ENOMEM the map is unchanged and val is not
 * taken (the caller still owns it). */
int kube_map_put(kube_map *m, const char *key, void *val);

/* The value or NULL (borrowed; do not free). */
void *kube_map_get(const kube_map *m, const char *key);

/* Removes key and destroys its value; 1 if it was present, else 0. */
int kube_map_del(kube_map *m, const char *key);

/* Removes key and returns its value to the caller (not destroyed). */
void *kube_map_take(kube_map *m, const char *key);

size_t kube_map_len(const kube_map *m);

/* Calls fn for each entry in unspecified order; fn must not modify m.
 * Stops early when fn returns non-zero and returns that value. */
int kube_map_foreach(const kube_map *m, int (*fn)(const char *key, void *val, void *ud), void *ud);

#endif
