/* kl_smp: strategic merge patch (see kl_smp.h). */
#include "kl_smp.h"

#include <string.h>

static const struct {
    const char *field, *key;
} KEYS[] = {
    {"containers", "name"},       {"initContainers", "name"},
    {"ephemeralContainers", "name"}, {"env", "name"},
    {"imagePullSecrets", "name"}, {"volumes", "name"},
    {"schedulingGates", "name"},  {"resourceClaims", "name"},
    {"volumeMounts", "mountPath"}, {"volumeDevices", "devicePath"},
    {"hostAliases", "ip"},        {"podIPs", "ip"},
    {"hostIPs", "ip"},            {"conditions", "type"},
    {"addresses", "type"},        {"topologySpreadConstraints", "topologyKey"},
    {"secrets", "name"},          {"ownerReferences", "uid"},
    {"finalizers", ""},
};

const char *kl_smp_merge_key(const char *field, const cJSON *sample)
{
    if (strcmp(field, "ports") == 0) {
        /* Container ports merge on containerPort, Service ports on port. */
        if (sample && cJSON_GetObjectItemCaseSensitive(sample, "containerPort"))
            return "containerPort";
        return "port";
    }
    for (size_t i = 0; i < sizeof(KEYS) / sizeof(KEYS[0]); i++)
        if (strcmp(KEYS[i].field, field) == 0)
            return KEYS[i].key;
    return NULL;
}

static int is_directive(const char *k)
{
    return k[0] == '$';
}

/* A copy of v without directive keys, recursively. */
static cJSON *strip(const cJSON *v)
{
    if (cJSON_IsObject(v)) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return NULL;
        for (const cJSON *c = v->child; c; c = c->next) {
            if (is_directive(c->string))
                continue;
            cJSON *cc = strip(c);
            if (!cc) {
                cJSON_Delete(o);
                return NULL;
            }
            cJSON_AddItemToObject(o, c->string, cc);
        }
        return o;
    }
    if (cJSON_IsArray(v)) {
        cJSON *a = cJSON_CreateArray();
        if (!a)
            return NULL;
        for (const cJSON *c = v->child; c; c = c->next) {
            cJSON *cc = strip(c);
            if (!cc) {
                cJSON_Delete(a);
                return NULL;
            }
            cJSON_AddItemToArray(a, cc);
        }
        return a;
    }
    return cJSON_Duplicate(v, 1);
}

static int merge_map(cJSON **doc, const cJSON *patch);

static cJSON *find_keyed(cJSON *arr, const char *key, const cJSON *val)
{
    cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(e, key);
        if (k && cJSON_Compare(k, val, 1))
            return e;
    }
    return NULL;
}

static int merge_list(cJSON *dst, const cJSON *patch, const char *key)
{
    const cJSON *pe;
    if (!key[0]) { /* set of primitives */
        cJSON_ArrayForEach(pe, patch)
        {
            int found = 0;
            const cJSON *de;
            cJSON_ArrayForEach(de, dst) found |= cJSON_Compare(de, pe, 1);
            if (!found) {
                cJSON *c = cJSON_Duplicate(pe, 1);
                if (!c)
                    return KILN_ENOMEM;
                cJSON_AddItemToArray(dst, c);
            }
        }
        return 0;
    }
    cJSON_ArrayForEach(pe, patch)
    {
        const cJSON *kv = cJSON_GetObjectItemCaseSensitive(pe, key);
        const cJSON *dir = cJSON_GetObjectItemCaseSensitive(pe, "$patch");
        cJSON *de = kv ? find_keyed(dst, key, kv) : NULL;
        if (cJSON_IsString(dir) && strcmp(dir->valuestring, "delete") == 0) {
            if (de) {
                cJSON_DetachItemViaPointer(dst, de);
                cJSON_Delete(de);
            }
            continue;
        }
        if (de) {
            cJSON *copy = cJSON_Duplicate(de, 1);
            if (!copy)
                return KILN_ENOMEM;
            int rc = merge_map(&copy, pe);
            if (rc) {
                cJSON_Delete(copy);
                return rc;
            }
            cJSON_ReplaceItemViaPointer(dst, de, copy);
        } else {
            cJSON *c = strip(pe);
            if (!c)
                return KILN_ENOMEM;
            cJSON_AddItemToArray(dst, c);
        }
    }
    return 0;
}

static int merge_map(cJSON **doc, const cJSON *patch)
{
    const cJSON *pd = cJSON_GetObjectItemCaseSensitive(patch, "$patch");
    if (cJSON_IsString(pd) && strcmp(pd->valuestring, "replace") == 0) {
        cJSON *c = strip(patch);
        if (!c)
            return KILN_ENOMEM;
        cJSON_Delete(*doc);
        *doc = c;
        return 0;
    }
    if (!cJSON_IsObject(*doc)) {
        cJSON_Delete(*doc);
        if (!(*doc = cJSON_CreateObject()))
            return KILN_ENOMEM;
    }
    for (const cJSON *p = patch->child; p; p = p->next) {
        const char *k = p->string;
        if (strncmp(k, "$deleteFromPrimitiveList/", 25) == 0) {
            cJSON *lst = cJSON_GetObjectItemCaseSensitive(*doc, k + 25);
            const cJSON *rm;
            cJSON_ArrayForEach(rm, p)
            {
                cJSON *e = lst ? lst->child : NULL;
                while (e) {
                    cJSON *next = e->next;
                    if (cJSON_Compare(e, rm, 1)) {
                        cJSON_DetachItemViaPointer(lst, e);
                        cJSON_Delete(e);
                    }
                    e = next;
                }
            }
            continue;
        }
        if (is_directive(k))
            continue;
        if (cJSON_IsNull(p)) {
            cJSON_DeleteItemFromObjectCaseSensitive(*doc, k);
            continue;
        }
        cJSON *cur = cJSON_GetObjectItemCaseSensitive(*doc, k);
        if (cJSON_IsObject(p)) {
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(p, "$patch");
            if (cJSON_IsString(d) && strcmp(d->valuestring, "delete") == 0) {
                cJSON_DeleteItemFromObjectCaseSensitive(*doc, k);
                continue;
            }
            cJSON *c = cur ? cJSON_DetachItemViaPointer(*doc, cur) : NULL;
            int rc = merge_map(&c, p);
            if (rc) {
                cJSON_Delete(c);
                return rc;
            }
            cJSON_AddItemToObject(*doc, k, c);
            continue;
        }
        if (cJSON_IsArray(p)) {
            const char *mk = kl_smp_merge_key(k, p->child ? p->child : (cur ? cur->child : NULL));
            if (mk && cJSON_IsArray(cur)) {
                int rc = merge_list(cur, p, mk);
                if (rc)
                    return rc;
                continue;
            }
        }
        cJSON *c = strip(p);
        if (!c)
            return KILN_ENOMEM;
        if (cur)
            cJSON_ReplaceItemInObjectCaseSensitive(*doc, k, c);
        else
            cJSON_AddItemToObject(*doc, k, c);
    }
    /* $retainKeys: drop members the patch does not list. */
    const cJSON *rk = cJSON_GetObjectItemCaseSensitive(patch, "$retainKeys");
    if (cJSON_IsArray(rk)) {
        cJSON *e = (*doc)->child;
        while (e) {
            cJSON *next = e->next;
            int keep = 0;
            const cJSON *r;
            cJSON_ArrayForEach(r, rk) keep |= cJSON_IsString(r) && strcmp(r->valuestring, e->string) == 0;
            if (!keep) {
                cJSON_DetachItemViaPointer(*doc, e);
                cJSON_Delete(e);
            }
            e = next;
        }
    }
    return 0;
}

int kl_smp_apply(cJSON **doc, const cJSON *patch, kiln_error *err)
{
    if (!cJSON_IsObject(patch))
        return kiln_fail(err, KILN_EINVAL,
                         "error decoding patch: json: cannot unmarshal array into Go value of "
                         "type map[string]interface {}");
    int rc = merge_map(doc, patch);
    if (rc)
        return kiln_fail(err, rc, "strategic merge patch: out of memory");
    return 0;
}
