/* kube_api: typed verbs for any group/version/resource over kube_client.
 *
 * A kube_resource names an API resource ("" group for core/v1). Objects go
 * in and out as cJSON trees (see kube_obj for metadata helpers). Every call
 * returns 0 or a negative kiln code; on an API error the Status is in the
 * caller's kube_err (409 Conflict -> KILN_ECONFLICT, 404 -> KILN_ENOTFOUND).
 * Out-parameters (cJSON **) may be NULL when the reply is not wanted;
 * otherwise the caller owns the tree (cJSON_Delete). Inputs are borrowed.
 * Paths are built in growable buffers with namespaces, names and query
 * values percent-encoded: nothing is truncated. */
#ifndef KUBE_API_H
#define KUBE_API_H

#include <cjson/cJSON.h>

#include "kube_client.h"

typedef struct kube_resource {
    const char *group;    /* "" for the core group */
    const char *version;  /* "v1" */
    const char *resource; /* plural: "pods" */
    const char *kind;     /* "Pod" */
    int namespaced;
} kube_resource;

extern const kube_resource kube_res_pods;
extern const kube_resource kube_res_events;
extern const kube_resource kube_res_leases;
extern const kube_resource kube_res_configmaps;
extern const kube_resource kube_res_pvcs;

/* The path of a collection (name NULL) or object, with an optional
 * subresource ("status"); ns is ignored for cluster-scoped resources and
 * NULL/"" means all namespaces for collections. *out is malloc'd. */
int kube_path(const kube_resource *r, const char *ns, const char *name, const char *sub,
              char **out);

/* Appends "?k=v" or "&k=v" with v percent-encoded; *path may move. */
int kube_path_query(char **path, const char *k, const char *v);

typedef struct kube_list_opts {
    const char *label_selector;
    const char *field_selector;
    const char *resource_version; /* NULL: latest */
    int limit;                    /* page size; 0 -> 500 */
} kube_list_opts;

int kube_get(kube_client *c, const kube_resource *r, const char *ns, const char *name, cJSON **out,
             kube_err *err);

/* Lists every page (following continue tokens) into one array of items
 * (*items, owned by the caller) and the list's resourceVersion (*rv,
 * malloc'd; may be NULL if not wanted). Items get apiVersion and kind when
 * the server left them out. */
int kube_list(kube_client *c, const kube_resource *r, const char *ns, const kube_list_opts *o,
              cJSON **items, char **rv, kube_err *err);

int kube_create(kube_client *c, const kube_resource *r, const char *ns, const cJSON *obj,
                cJSON **out, kube_err *err);
/* PUT to the object named in obj's metadata (its resourceVersion is the
 * precondition: a stale one gives KILN_ECONFLICT). */
int kube_update(kube_client *c, const kube_resource *r, const char *ns, const cJSON *obj,
                cJSON **out, kube_err *err);
int kube_update_status(kube_client *c, const kube_resource *r, const char *ns, const cJSON *obj,
                       cJSON **out, kube_err *err);

typedef struct kube_delete_opts {
    const char *propagation; /* "Background" | "Foreground" | "Orphan" | NULL */
    const char *precondition_uid;
    const char *precondition_rv;
    int grace_seconds; /* < 0: server default; use -1 when unset */
    int has_grace;     /* grace_seconds is meaningful */
} kube_delete_opts;

int kube_delete(kube_client *c, const kube_resource *r, const char *ns, const char *name,
                const kube_delete_opts *o, kube_err *err);

enum kube_patch_type {
    KUBE_PATCH_MERGE, /* application/merge-patch+json (RFC 7386) */
    KUBE_PATCH_JSON,  /* application/json-patch+json (RFC 6902) */
    KUBE_PATCH_STRATEGIC,
};

/* sub: NULL or "status". */
int kube_patch(kube_client *c, const kube_resource *r, const char *ns, const char *name,
               const char *sub, int type, const char *patch, cJSON **out, kube_err *err);

/* Server-side apply of obj (must carry apiVersion, kind, metadata.name). */
int kube_apply(kube_client *c, const kube_resource *r, const char *ns, const cJSON *obj,
               const char *field_manager, int force, cJSON **out, kube_err *err);

#endif
