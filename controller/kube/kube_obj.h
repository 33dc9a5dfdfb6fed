/* kube_obj: small helpers over generic Kubernetes objects held as cJSON.
 *
 * Kiln keeps API objects as cJSON trees (the generic object model) and
 * reads or edits their metadata through these helpers: name, namespace,
 * uid, resourceVersion, generation, labels, annotations, owner references,
 * finalizers, and status conditions with the kstatus convention that
 * lastTransitionTime moves only when a condition's status changes.
 * Getters return borrowed strings (do not free) or NULL when absent.
 * Setters create missing intermediate objects and return 0 or a negative
 * kiln code; they never free the object passed in. */
#ifndef KUBE_OBJ_H
#define KUBE_OBJ_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "ktime.h"

const char *kube_obj_name(const cJSON *o);
const char *kube_obj_namespace(const cJSON *o);
const char *kube_obj_uid(const cJSON *o);
const char *kube_obj_resource_version(const cJSON *o);
const char *kube_obj_kind(const cJSON *o);
int64_t kube_obj_generation(const cJSON *o); /* 0 when absent */
int kube_obj_deleting(const cJSON *o);       /* deletionTimestamp set */

/* Member at a dotted path of object keys ("status.phase"), or NULL. */
const cJSON *kube_obj_path(const cJSON *o, const char *dotted);

/* "ns/name", or "name" for cluster-scoped objects; malloc'd, NULL on OOM or
 * when the object has no name. */
char *kube_obj_key(const cJSON *o);

/* Splits "ns/name" (or "name") into caller buffers. KILN_EINVAL when a part
 * does not fit or the key is empty. */
int kube_key_split(const char *key, char *ns, size_t ns_sz, char *name, size_t name_sz);

int kube_obj_set_name(cJSON *o, const char *name, const char *ns);
int kube_obj_set_resource_version(cJSON *o, const char *rv);

const char *kube_obj_label(const cJSON *o, const char *key);
int kube_obj_set_label(cJSON *o, const char *key, const char *val); /* val NULL removes */
const char *kube_obj_annotation(const cJSON *o, const char *key);
int kube_obj_set_annotation(cJSON *o, const char *key, const char *val);

int kube_obj_has_finalizer(const cJSON *o, const char *f);
/* Return 1 if the list changed, 0 if not, or a negative code. */
int kube_obj_add_finalizer(cJSON *o, const char *f);
int kube_obj_remove_finalizer(cJSON *o, const char *f);

/* Appends an owner reference (replacing one with the same uid). */
int kube_obj_set_owner(cJSON *o, const char *api_version, const char *kind, const char *name,
                       const char *uid, int controller);
/* The uid of the controlling owner (controller: true), or NULL. */
const char *kube_obj_controller_uid(const cJSON *o);
int kube_obj_owned_by(const cJSON *o, const char *uid);

/* status.conditions[type=type], or NULL. */
const cJSON *kube_obj_condition(const cJSON *o, const char *type);

/* Sets a condition in status.conditions: status "True"/"False"/"Unknown",
 * reason, message, observedGeneration (< 0: omitted). lastTransitionTime is
 * set to now only when the condition is new or its status changed. Returns
 * 1 if anything changed, 0 if the condition was already identical, or a
 * negative code. */
int kube_obj_set_condition(cJSON *o, const char *type, const char *status, const char *reason,
                           const char *message, int64_t observed_generation, ktime now);

#endif
