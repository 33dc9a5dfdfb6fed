/* tj_json: the few cJSON helpers the TrainingJob reconciler's modules
 * share: typed reads with defaults along a dotted path, and building
 * helpers that track allocation failure in one flag instead of a check
 * after every call.
 *
 * Reads never fail: a missing member or one of the wrong type yields the
 * default, so a hostile or half-defaulted object cannot crash a caller.
 * Builders take ownership of the item they add (freeing it when the add
 * fails) and return 1 on success, 0 when out of memory, so callers write
 * `ok &= tj_json_add(o, "k", cJSON_CreateString(v));` and check ok once. */
#ifndef KILN_TJ_JSON_H
#define KILN_TJ_JSON_H

#include <stdint.h>

#include <cjson/cJSON.h>

/* ---- reading ---- */

/* The member at a dotted path of object keys ("spec.tuning.maxTrials"),
 * or NULL. Borrowed. */
const cJSON *tj_json_path(const cJSON *o, const char *dotted);

/* Typed reads of tj_json_path(o, dotted) with a default. */
const char *tj_json_str(const cJSON *o, const char *dotted, const char *def);
double tj_json_num(const cJSON *o, const char *dotted, double def);
/* An integral number within [INT64_MIN/2, INT64_MAX/2], else def. */
int64_t tj_json_int(const cJSON *o, const char *dotted, int64_t def);
/* The string member key of o, read literally (label and annotation keys
 * hold dots), or def. */
const char *tj_json_key_str(const cJSON *o, const char *key, const char *def);
/* 1/0 for JSON true/false, else def. */
int tj_json_bool(const cJSON *o, const char *dotted, int def);

/* ---- building ---- */

/* Adds item under key (replacing a member of that name). Takes ownership
 * of item; 1 on success, 0 when o or item is NULL or the add failed. */
int tj_json_add(cJSON *o, const char *key, cJSON *item);
int tj_json_add_str(cJSON *o, const char *key, const char *s);
int tj_json_add_num(cJSON *o, const char *key, double v);
int tj_json_add_bool(cJSON *o, const char *key, int v);
/* Appends item to an array; same ownership rule. */
int tj_json_push(cJSON *arr, cJSON *item);
/* A deep copy of src under key (absent src adds nothing and succeeds). */
int tj_json_add_copy(cJSON *o, const char *key, const cJSON *src);

/* A JSON merge patch that sets metadata.<field> of obj (a list: finalizers,
 * ownerReferences) to its current items less those mine(item, ud) claims,
 * plus add when not NULL (taken, even on failure), carrying obj's
 * resourceVersion so that a concurrent change is a conflict. An empty
 * result is written as null when null_if_empty (the field goes), else as
 * []. Returns the patch text (the caller frees it) or NULL when out of
 * memory. */
char *tj_json_meta_list_patch(const cJSON *obj, const char *field,
                              int (*mine)(const cJSON *item, const void *ud), const void *ud,
                              cJSON *add, int null_if_empty);
/* The object member key of o, created when absent; NULL on failure. */
cJSON *tj_json_obj(cJSON *o, const char *key);

#endif
