/* klabels: Kubernetes label and field selectors, parsed once and matched
 * many times.
 *
 * Label selector grammar (comma = AND): `k=v`, `k==v`, `k!=v`,
 * `k in (a,b)`, `k notin (a,b)`, `k` (exists), `!k` (does not exist),
 * `k>5`, `k<5`. Field selectors accept only `=`, `==` and `!=`.
 * Matching goes through a lookup callback, so the same selector works on a
 * labels map (klabels_match_labels) or on any field of an object.
 *
 * Ownership: klabels_parse() returns a selector the caller frees with
 * klabels_free(). An empty string parses to a selector matching everything. */
#ifndef KLABELS_H
#define KLABELS_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"

typedef struct klabels_sel klabels_sel;

enum klabels_mode { KLABELS_LABEL = 0, KLABELS_FIELD = 1 };

/* Parses s (label grammar or field grammar per mode). Returns 0 or
 * KILN_EINVAL (message in err) or KILN_ENOMEM. */
int klabels_parse(const char *s, int mode, klabels_sel **out, kiln_error *err);

void klabels_free(klabels_sel *sel);

/* Number of requirements (0 for the empty selector). */
size_t klabels_count(const klabels_sel *sel);

/* The key of requirement i (do not free), or NULL when out of range. */
const char *klabels_key(const klabels_sel *sel, size_t i);

/* Looks up a key; returns the value (borrowed) or NULL when absent. */
typedef const char *(*klabels_get_fn)(void *ctx, const char *key);

/* 1 if every requirement holds for the values get() returns, else 0. */
int klabels_match(const klabels_sel *sel, klabels_get_fn get, void *ctx);

/* 1 if a labels object ({"k":"v"}, may be NULL) satisfies sel. */
int klabels_match_labels(const klabels_sel *sel, const cJSON *labels);

/* If sel is exactly `key=value` (or `==`) for key, returns value (borrowed);
 * otherwise NULL. Lets callers turn metadata.name=x into a direct lookup. */
const char *klabels_exact(const klabels_sel *sel, const char *key);

#endif
