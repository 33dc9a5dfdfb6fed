/* kube_obj: metadata, finalizer, owner and condition helpers over cJSON. */
#include "kube_obj.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_err.h"

/* ---- getters ---- */

static const cJSON *meta(const cJSON *o)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "metadata");
    return cJSON_IsObject(m) ? m : NULL;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

const char *kube_obj_name(const cJSON *o)
{
    return str(meta(o), "name");
}
const char *kube_obj_namespace(const cJSON *o)
{
    return str(meta(o), "namespace");
}
const char *kube_obj_uid(const cJSON *o)
{
    return str(meta(o), "uid");
}
const char *kube_obj_resource_version(const cJSON *o)
{
    return str(meta(o), "resourceVersion");
}
const char *kube_obj_kind(const cJSON *o)
{
    return str(o, "kind");
}

int64_t kube_obj_generation(const cJSON *o)
{
    const cJSON *m = meta(o);
    const cJSON *g = m ? cJSON_GetObjectItemCaseSensitive(m, "generation") : NULL;
    return cJSON_IsNumber(g) ? (int64_t)g->valuedouble : 0;
}

int kube_obj_deleting(const cJSON *o)
{
    return str(meta(o), "deletionTimestamp") != NULL;
}

const cJSON *kube_obj_path(const cJSON *o, const char *dotted)
{
    char part[256];
    const cJSON *cur = o;
    while (cur && *dotted) {
        const char *dot = strchr(dotted, '.');
        size_t n = dot ? (size_t)(dot - dotted) : strlen(dotted);
        if (n >= sizeof part)
            return NULL;
        memcpy(part, dotted, n);
        part[n] = '\0';
        cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, part) : NULL;
        dotted += n + (dot ? 1 : 0);
    }
    return cur;
}

char *kube_obj_key(const cJSON *o)
{
    const char *n = kube_obj_name(o), *ns = kube_obj_namespace(o);
    if (!n)
        return NULL;
    size_t l = strlen(n) + (ns ? strlen(ns) + 1 : 0) + 1;
    char *k = malloc(l);
    if (!k)
        return NULL;
    if (ns && ns[0])
        snprintf(k, l, "%s/%s", ns, n);
    else
        snprintf(k, l, "%s", n);
    return k;
}

int kube_key_split(const char *key, char *ns, size_t ns_sz, char *name, size_t name_sz)
{
    if (!key || !key[0])
        return KILN_EINVAL;
    const char *slash = strchr(key, '/');
    size_t nl = slash ? (size_t)(slash - key) : 0;
    const char *nm = slash ? slash + 1 : key;
    if (nl >= ns_sz || strlen(nm) >= name_sz || !nm[0])
        return KILN_EINVAL;
    memcpy(ns, key, nl);
    ns[nl] = '\0';
    memcpy(name, nm, strlen(nm) + 1);
    return 0;
}

/* ---- setters ---- */

static cJSON *obj_child(cJSON *o, const char *k)
{
    cJSON *c = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsObject(c))
        return c;
    if (c)
        cJSON_DeleteItemFromObjectCaseSensitive(o, k);
    return cJSON_AddObjectToObject(o, k);
}

static int set_str(cJSON *o, const char *k, const char *v)
{
    if (!o)
        return KILN_ENOMEM;
    if (!v) {
        cJSON_DeleteItemFromObjectCaseSensitive(o, k);
        return 0;
    }
    cJSON *s = cJSON_CreateString(v);
    if (!s)
        return KILN_ENOMEM;
    if (cJSON_GetObjectItemCaseSensitive(o, k))
        return cJSON_ReplaceItemInObjectCaseSensitive(o, k, s) ? 0 : (cJSON_Delete(s), KILN_ENOMEM);
    return cJSON_AddItemToObject(o, k, s) ? 0 : (cJSON_Delete(s), KILN_ENOMEM);
}

int kube_obj_set_name(cJSON *o, const char *name, const char *ns)
{
    cJSON *m = obj_child(o, "metadata");
    int rc = set_str(m, "name", name);
    if (!rc && ns)
        rc = set_str(m, "namespace", ns);
    return rc;
}

int kube_obj_set_resource_version(cJSON *o, const char *rv)
{
    return set_str(obj_child(o, "metadata"), "resourceVersion", rv);
}

const char *kube_obj_label(const cJSON *o, const char *key)
{
    const cJSON *m = meta(o);
    return str(m ? cJSON_GetObjectItemCaseSensitive(m, "labels") : NULL, key);
}

const char *kube_obj_annotation(const cJSON *o, const char *key)
{
    const cJSON *m = meta(o);
    return str(m ? cJSON_GetObjectItemCaseSensitive(m, "annotations") : NULL, key);
}

int kube_obj_set_label(cJSON *o, const char *key, const char *val)
{
    cJSON *m = obj_child(o, "metadata");
    return set_str(m ? obj_child(m, "labels") : NULL, key, val);
}

int kube_obj_set_annotation(cJSON *o, const char *key, const char *val)
{
    cJSON *m = obj_child(o, "metadata");
    return set_str(m ? obj_child(m, "annotations") : NULL, key, val);
}

/* ---- finalizers ---- */

static int finalizer_index(const cJSON *o, const char *f)
{
    const cJSON *m = meta(o);
    const cJSON *arr = m ? cJSON_GetObjectItemCaseSensitive(m, "finalizers") : NULL;
    int i = 0;
    const cJSON *it;
    if (!cJSON_IsArray(arr))
        return -1;
    cJSON_ArrayForEach(it, arr)
    {
        if (cJSON_IsString(it) && strcmp(it->valuestring, f) == 0)
            return i;
        i++;
    }
    return -1;
}

int kube_obj_has_finalizer(const cJSON *o, const char *f)
{
    return finalizer_index(o, f) >= 0;
}

int kube_obj_add_finalizer(cJSON *o, const char *f)
{
    if (finalizer_index(o, f) >= 0)
        return 0;
    cJSON *m = obj_child(o, "metadata");
    if (!m)
        return KILN_ENOMEM;
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(m, "finalizers");
    if (!cJSON_IsArray(arr)) {
        cJSON_DeleteItemFromObjectCaseSensitive(m, "finalizers");
        arr = cJSON_AddArrayToObject(m, "finalizers");
    }
    cJSON *s = cJSON_CreateString(f);
    if (!arr || !s || !cJSON_AddItemToArray(arr, s)) {
        cJSON_Delete(s);
        return KILN_ENOMEM;
    }
    return 1;
}

int kube_obj_remove_finalizer(cJSON *o, const char *f)
{
    int i = finalizer_index(o, f);
    if (i < 0)
        return 0;
    cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "metadata");
    cJSON_DeleteItemFromArray(cJSON_GetObjectItemCaseSensitive(m, "finalizers"), i);
    return 1;
}

/* ---- owners ---- */

int kube_obj_set_owner(cJSON *o, const char *api_version, const char *kind, const char *name,
                       const char *uid, int controller)
{
    cJSON *m = obj_child(o, "metadata");
    if (!m)
        return KILN_ENOMEM;
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(m, "ownerReferences");
    if (!cJSON_IsArray(arr)) {
        cJSON_DeleteItemFromObjectCaseSensitive(m, "ownerReferences");
        if (!(arr = cJSON_AddArrayToObject(m, "ownerReferences")))
            return KILN_ENOMEM;
    }
    int i = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        const char *u = str(it, "uid");
        if (u && strcmp(u, uid) == 0) {
            cJSON_DeleteItemFromArray(arr, i);
            break;
        }
        i++;
    }
    cJSON *r = cJSON_CreateObject();
    if (!r)
        return KILN_ENOMEM;
    if (!cJSON_AddStringToObject(r, "apiVersion", api_version) ||
        !cJSON_AddStringToObject(r, "kind", kind) || !cJSON_AddStringToObject(r, "name", name) ||
        !cJSON_AddStringToObject(r, "uid", uid) ||
        (controller && (!cJSON_AddTrueToObject(r, "controller") ||
                        !cJSON_AddTrueToObject(r, "blockOwnerDeletion"))) ||
        !cJSON_AddItemToArray(arr, r)) {
        cJSON_Delete(r);
        return KILN_ENOMEM;
    }
    return 0;
}

const char *kube_obj_controller_uid(const cJSON *o)
{
    const cJSON *m = meta(o);
    const cJSON *arr = m ? cJSON_GetObjectItemCaseSensitive(m, "ownerReferences") : NULL;
    const cJSON *it;
    if (!cJSON_IsArray(arr))
        return NULL;
    cJSON_ArrayForEach(it, arr)
    {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "controller")))
            return str(it, "uid");
    }
    return NULL;
}

int kube_obj_owned_by(const cJSON *o, const char *uid)
{
    const cJSON *m = meta(o);
    const cJSON *arr = m ? cJSON_GetObjectItemCaseSensitive(m, "ownerReferences") : NULL;
    const cJSON *it;
    if (!cJSON_IsArray(arr) || !uid)
        return 0;
    cJSON_ArrayForEach(it, arr)
    {
        const char *u = str(it, "uid");
        if (u && strcmp(u, uid) == 0)
            return 1;
    }
    return 0;
}

/* ---- conditions ---- */

const cJSON *kube_obj_condition(const cJSON *o, const char *type)
{
    const cJSON *arr = kube_obj_path(o, "status.conditions");
    const cJSON *it;
    if (!cJSON_IsArray(arr))
        return NULL;
    cJSON_ArrayForEach(it, arr)
    {
        const char *t = str(it, "type");
        if (t && strcmp(t, type) == 0)
            return it;
    }
    return NULL;
}

static int same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int kube_obj_set_condition(cJSON *o, const char *type, const char *status, const char *reason,
                           const char *message, int64_t observed_generation, ktime now)
{
    cJSON *st = obj_child(o, "status");
    if (!st)
        return KILN_ENOMEM;
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(st, "conditions");
    if (!cJSON_IsArray(arr)) {
        cJSON_DeleteItemFromObjectCaseSensitive(st, "conditions");
        if (!(arr = cJSON_AddArrayToObject(st, "conditions")))
            return KILN_ENOMEM;
    }
    cJSON *cur = (cJSON *)kube_obj_condition(o, type);
    const cJSON *og = cur ? cJSON_GetObjectItemCaseSensitive(cur, "observedGeneration") : NULL;
    int64_t cur_og = cJSON_IsNumber(og) ? (int64_t)og->valuedouble : -1;
    if (cur && same(str(cur, "status"), status) && same(str(cur, "reason"), reason) &&
        same(str(cur, "message"), message) && cur_og == observed_generation)
        return 0;
    char ts[KTIME_BUFSZ];
    const char *ltt = NULL;
    if (cur && same(str(cur, "status"), status))
        ltt = str(cur, "lastTransitionTime");
    if (!ltt) {
        if (ktime_format(now, 0, ts, sizeof ts))
            return KILN_EINVAL;
        ltt = ts;
    }
    cJSON *c = cJSON_CreateObject();
    if (!c)
        return KILN_ENOMEM;
    int bad = !cJSON_AddStringToObject(c, "type", type) ||
              !cJSON_AddStringToObject(c, "status", status) ||
              (observed_generation >= 0 &&
               !cJSON_AddNumberToObject(c, "observedGeneration", (double)observed_generation)) ||
              !cJSON_AddStringToObject(c, "lastTransitionTime", ltt) ||
              !cJSON_AddStringToObject(c, "reason", reason ? reason : "") ||
              !cJSON_AddStringToObject(c, "message", message ? message : "");
    if (bad) {
        cJSON_Delete(c);
        return KILN_ENOMEM;
    }
    if (cur) {
        /* ltt may point into cur: it was copied into c above */
        cJSON_ReplaceItemViaPointer(arr, cur, c);
    } else if (!cJSON_AddItemToArray(arr, c)) {
        cJSON_Delete(c);
        return KILN_ENOMEM;
    }
    return 1;
}
