/* kl_res: built-in resource table, CRD registration, discovery and OpenAPI
 * (see kl_res.h). */
#include "kl_res.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kl_reg {
    kl_res **res;
    size_t n;
    unsigned long gen; /* bumped whenever the set changes (OpenAPI hashes) */
};

/* ---- built-in table ---- */

enum { F_NS = 1, F_STATUS = 2, F_SCALE = 4, F_GEN = 8 };

static const struct builtin {
    const char *group, *version, *plural, *singular, *kind;
    int flags;
    const char *shorts; /* comma separated */
    const char *cats;
} BUILTINS[] = {
    {"", "v1", "namespaces", "namespace", "Namespace", F_STATUS, "ns", ""},
    {"", "v1", "pods", "pod", "Pod", F_NS | F_STATUS, "po", "all"},
    {"", "v1", "services", "service", "Service", F_NS | F_STATUS, "svc", "all"},
    {"", "v1", "endpoints", "endpoints", "Endpoints", F_NS, "ep", ""},
    {"", "v1", "configmaps", "configmap", "ConfigMap", F_NS, "cm", ""},
    {"", "v1", "secrets", "secret", "Secret", F_NS, "", ""},
    {"", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", F_NS, "sa", ""},
    {"", "v1", "events", "event", "Event", F_NS, "ev", ""},
    {"", "v1", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim",
     F_NS | F_STATUS, "pvc", ""},
    {"", "v1", "nodes", "node", "Node", F_STATUS, "no", ""},
    {"apps", "v1", "deployments", "deployment", "Deployment", F_NS | F_STATUS | F_SCALE | F_GEN,
     "deploy", "all"},
    {"apps", "v1", "replicasets", "replicaset", "ReplicaSet", F_NS | F_STATUS | F_SCALE | F_GEN,
     "rs", "all"},
    {"events.k8s.io", "v1", "events", "event", "Event", F_NS, "ev", ""},
    {"coordination.k8s.io", "v1", "leases", "lease", "Lease", F_NS, "", ""},
    {"rbac.authorization.k8s.io", "v1", "roles", "role", "Role", F_NS, "", ""},
    {"rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding", F_NS, "", ""},
    {"rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole", 0, "", ""},
    {"rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding",
     "ClusterRoleBinding", 0, "", ""},
    {"apiextensions.k8s.io", "v1", "customresourcedefinitions", "customresourcedefinition",
     "CustomResourceDefinition", F_STATUS | F_GEN, "crd,crds", ""},
};

/* ---- private helpers ---- */

static char *dupstr(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void res_free(kl_res *r)
{
    if (!r)
        return;
    free(r->group);
    free(r->version);
    free(r->plural);
    free(r->singular);
    free(r->kind);
    free(r->list_kind);
    free(r->rkey);
    free(r->scale_spec);
    free(r->scale_status);
    free(r->scale_selector);
    for (size_t i = 0; i < r->n_short; i++)
        free(r->short_names[i]);
    free(r->short_names);
    for (size_t i = 0; i < r->n_cat; i++)
        free(r->categories[i]);
    free(r->categories);
    cJSON_Delete(r->schema);
    cJSON_Delete(r->printer_cols);
    free(r->crd_name);
    free(r);
}

static int push_str(char ***arr, size_t *n, const char *s)
{
    char **na = realloc(*arr, (*n + 1) * sizeof(*na));
    if (!na)
        return KILN_ENOMEM;
    *arr = na;
    if (!(na[*n] = strdup(s)))
        return KILN_ENOMEM;
    (*n)++;
    return 0;
}

static int split_into(char ***arr, size_t *n, const char *csv)
{
    char buf[128];
    const char *p = csv;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len >= sizeof(buf))
            len = sizeof(buf) - 1;
        memcpy(buf, p, len);
        buf[len] = 0;
        if (push_str(arr, n, buf))
            return KILN_ENOMEM;
        p = e ? e + 1 : p + strlen(p);
    }
    return 0;
}

static kl_res *res_make(const char *group, const char *version, const char *plural,
                        const char *singular, const char *kind)
{
    kl_res *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->group = dupstr(group);
    r->version = dupstr(version);
    r->plural = dupstr(plural);
    r->singular = dupstr(singular);
    r->kind = dupstr(kind);
    size_t kl = strlen(kind) + 5;
    r->list_kind = malloc(kl);
    size_t rl = strlen(group) + strlen(plural) + 2;
    r->rkey = malloc(rl);
    if (!r->group || !r->version || !r->plural || !r->singular || !r->kind || !r->list_kind ||
        !r->rkey) {
        res_free(r);
        return NULL;
    }
    snprintf(r->list_kind, kl, "%sList", kind);
    snprintf(r->rkey, rl, "%s/%s", group, plural);
    return r;
}

static int reg_push(kl_reg *reg, kl_res *r)
{
    kl_res **nr = realloc(reg->res, (reg->n + 1) * sizeof(*nr));
    if (!nr)
        return KILN_ENOMEM;
    reg->res = nr;
    reg->res[reg->n++] = r;
    reg->gen++;
    return 0;
}

/* ---- API ---- */

int kl_reg_new(kl_reg **out)
{
    *out = NULL;
    kl_reg *reg = calloc(1, sizeof(*reg));
    if (!reg)
        return KILN_ENOMEM;
    for (size_t i = 0; i < sizeof(BUILTINS) / sizeof(BUILTINS[0]); i++) {
        const struct builtin *b = &BUILTINS[i];
        kl_res *r = res_make(b->group, b->version, b->plural, b->singular, b->kind);
        if (!r || split_into(&r->short_names, &r->n_short, b->shorts) ||
            split_into(&r->categories, &r->n_cat, b->cats)) {
            res_free(r);
            kl_reg_free(reg);
            return KILN_ENOMEM;
        }
        r->namespaced = !!(b->flags & F_NS);
        r->has_status = !!(b->flags & F_STATUS);
        r->has_scale = !!(b->flags & F_SCALE);
        r->track_generation = !!(b->flags & F_GEN);
        r->builtin = 1;
        if (r->has_scale) {
            r->scale_spec = strdup(".spec.replicas");
            r->scale_status = strdup(".status.replicas");
            r->scale_selector = strdup(".spec.selector");
        }
        if (reg_push(reg, r)) {
            res_free(r);
            kl_reg_free(reg);
            return KILN_ENOMEM;
        }
    }
    *out = reg;
    return 0;
}

void kl_reg_free(kl_reg *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n; i++)
        res_free(reg->res[i]);
    free(reg->res);
    free(reg);
}

kl_res *kl_reg_find(kl_reg *reg, const char *group, const char *version, const char *plural)
{
    for (size_t i = 0; i < reg->n; i++) {
        kl_res *r = reg->res[i];
        if (strcmp(r->group, group) == 0 && strcmp(r->version, version) == 0 &&
            strcmp(r->plural, plural) == 0)
            return r;
    }
    return NULL;
}

size_t kl_reg_count(const kl_reg *reg)
{
    return reg->n;
}

kl_res *kl_reg_at(kl_reg *reg, size_t i)
{
    return i < reg->n ? reg->res[i] : NULL;
}

const char *kl_res_api_version(const kl_res *r, char *buf, size_t n)
{
    if (r->group[0])
        snprintf(buf, n, "%s/%s", r->group, r->version);
    else
        snprintf(buf, n, "%s", r->version);
    return buf;
}

void kl_reg_remove_crd(kl_reg *reg, const char *name)
{
    size_t j = 0;
    for (size_t i = 0; i < reg->n; i++) {
        if (reg->res[i]->crd_name && strcmp(reg->res[i]->crd_name, name) == 0)
            res_free(reg->res[i]);
        else
            reg->res[j++] = reg->res[i];
    }
    if (j != reg->n)
        reg->gen++;
    reg->n = j;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int add_str_list(char ***arr, size_t *n, const cJSON *list)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, list)
    {
        if (cJSON_IsString(it) && push_str(arr, n, it->valuestring))
            return KILN_ENOMEM;
    }
    return 0;
}

int kl_reg_add_crd(kl_reg *reg, const cJSON *crd, kiln_error *err)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(crd, "metadata");
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(crd, "spec");
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(spec, "names");
    const char *name = jstr(meta, "name"), *group = jstr(spec, "group");
    const char *plural = jstr(names, "plural"), *kind = jstr(names, "kind");
    const char *singular = jstr(names, "singular");
    const char *scope = jstr(spec, "scope");
    if (!name || !group || !plural || !kind)
        return kiln_fail(err, KILN_EINVAL, "CRD needs metadata.name, spec.group, spec.names");
    char lower[256];
    if (!singular) {
        size_t i;
        for (i = 0; kind[i] && i < sizeof(lower) - 1; i++)
            lower[i] = (char)((kind[i] >= 'A' && kind[i] <= 'Z') ? kind[i] + 32 : kind[i]);
        lower[i] = 0;
        singular = lower;
    }
    kl_reg_remove_crd(reg, name);
    const cJSON *versions = cJSON_GetObjectItemCaseSensitive(spec, "versions");
    const cJSON *v;
    cJSON_ArrayForEach(v, versions)
    {
        const cJSON *served = cJSON_GetObjectItemCaseSensitive(v, "served");
        const char *vname = jstr(v, "name");
        if (!vname || cJSON_IsFalse(served))
            continue;
        kl_res *r = res_make(group, vname, plural, singular, kind);
        if (!r)
            return KILN_ENOMEM;
        r->namespaced = !scope || strcmp(scope, "Cluster") != 0;
        r->track_generation = 1;
        r->crd_name = strdup(name);
        const cJSON *sub = cJSON_GetObjectItemCaseSensitive(v, "subresources");
        r->has_status = cJSON_GetObjectItemCaseSensitive(sub, "status") != NULL;
        const cJSON *scale = cJSON_GetObjectItemCaseSensitive(sub, "scale");
        if (scale) {
            r->has_scale = 1;
            r->scale_spec = dupstr(jstr(scale, "specReplicasPath"));
            r->scale_status = dupstr(jstr(scale, "statusReplicasPath"));
            r->scale_selector = dupstr(jstr(scale, "labelSelectorPath"));
        }
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(v, "schema"), "openAPIV3Schema");
        if (schema)
            r->schema = cJSON_Duplicate(schema, 1);
        const cJSON *cols = cJSON_GetObjectItemCaseSensitive(v, "additionalPrinterColumns");
        if (cols)
            r->printer_cols = cJSON_Duplicate(cols, 1);
        if (!r->crd_name || add_str_list(&r->short_names, &r->n_short,
                                         cJSON_GetObjectItemCaseSensitive(names, "shortNames")) ||
            add_str_list(&r->categories, &r->n_cat,
                         cJSON_GetObjectItemCaseSensitive(names, "categories")) ||
            reg_push(reg, r)) {
            res_free(r);
            return KILN_ENOMEM;
        }
    }
    return 0;
}

/* ---- discovery ---- */

static void add_strings(cJSON *o, const char *key, char **arr, size_t n)
{
    cJSON *a = cJSON_AddArrayToObject(o, key);
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(arr[i]));
}

static void add_verbs(cJSON *o, int sub)
{
    static const char *all[] = {"create", "delete", "deletecollection", "get",
                                "list",   "patch",  "update",           "watch"};
    static const char *subv[] = {"get", "patch", "update"};
    if (sub)
        add_strings(o, "verbs", (char **)subv, 3);
    else
        add_strings(o, "verbs", (char **)all, 8);
}

static cJSON *gvk(const char *g, const char *v, const char *k)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "group", g);
    cJSON_AddStringToObject(o, "version", v);
    cJSON_AddStringToObject(o, "kind", k);
    return o;
}

/* Groups in registration order, each once; versions likewise. */
static int seen_group(kl_reg *reg, size_t upto, const char *g)
{
    for (size_t i = 0; i < upto; i++)
        if (strcmp(reg->res[i]->group, g) == 0)
            return 1;
    return 0;
}

static int seen_gv(kl_reg *reg, size_t upto, const char *g, const char *v)
{
    for (size_t i = 0; i < upto; i++)
        if (strcmp(reg->res[i]->group, g) == 0 && strcmp(reg->res[i]->version, v) == 0)
            return 1;
    return 0;
}

static void add_sub_disc(cJSON *subs, const char *name, const kl_res *r, const char *g,
                         const char *v, const char *k)
{
    (void)r;
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "subresource", name);
    cJSON_AddItemToObject(s, "responseKind", gvk(g, v, k));
    add_verbs(s, 1);
    cJSON_AddItemToArray(subs, s);
}

static cJSON *gv_disc_resources(kl_reg *reg, const char *g, const char *v)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < reg->n; i++) {
        kl_res *r = reg->res[i];
        if (strcmp(r->group, g) != 0 || strcmp(r->version, v) != 0)
            continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "resource", r->plural);
        cJSON_AddStringToObject(o, "singularResource", r->singular);
        cJSON_AddStringToObject(o, "scope", r->namespaced ? "Namespaced" : "Cluster");
        cJSON_AddItemToObject(o, "responseKind", gvk(g, v, r->kind));
        add_verbs(o, 0);
        if (r->n_short)
            add_strings(o, "shortNames", r->short_names, r->n_short);
        if (r->n_cat)
            add_strings(o, "categories", r->categories, r->n_cat);
        cJSON *subs = cJSON_AddArrayToObject(o, "subresources");
        if (r->has_status)
            add_sub_disc(subs, "status", r, g, v, r->kind);
        if (r->has_scale)
            add_sub_disc(subs, "scale", r, "autoscaling", "v1", "Scale");
        if (strcmp(r->plural, "pods") == 0 && !g[0])
            add_sub_disc(subs, "log", r, "", "", "");
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

cJSON *kl_reg_discovery_aggregated(kl_reg *reg, int core)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "kind", "APIGroupDiscoveryList");
    cJSON_AddStringToObject(root, "apiVersion", "apidiscovery.k8s.io/v2");
    cJSON_AddObjectToObject(root, "metadata");
    cJSON *items = cJSON_AddArrayToObject(root, "items");
    for (size_t i = 0; i < reg->n; i++) {
        const char *g = reg->res[i]->group;
        if ((core && g[0]) || (!core && !g[0]) || seen_group(reg, i, g))
            continue;
        cJSON *item = cJSON_CreateObject();
        cJSON *md = cJSON_AddObjectToObject(item, "metadata");
        cJSON_AddStringToObject(md, "name", g);
        cJSON *vers = cJSON_AddArrayToObject(item, "versions");
        for (size_t j = i; j < reg->n; j++) {
            kl_res *r = reg->res[j];
            if (strcmp(r->group, g) != 0 || seen_gv(reg, j, g, r->version))
                continue;
            cJSON *vo = cJSON_CreateObject();
            cJSON_AddStringToObject(vo, "version", r->version);
            cJSON_AddItemToObject(vo, "resources", gv_disc_resources(reg, g, r->version));
            cJSON_AddStringToObject(vo, "freshness", "Current");
            cJSON_AddItemToArray(vers, vo);
        }
        cJSON_AddItemToArray(items, item);
    }
    return root;
}

cJSON *kl_reg_api_versions(kl_reg *reg, const char *server_addr)
{
    (void)reg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", "APIVersions");
    cJSON *v = cJSON_AddArrayToObject(o, "versions");
    cJSON_AddItemToArray(v, cJSON_CreateString("v1"));
    cJSON *s = cJSON_AddArrayToObject(o, "serverAddressByClientCIDRs");
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "clientCIDR", "0.0.0.0/0");
    cJSON_AddStringToObject(e, "serverAddress", server_addr);
    cJSON_AddItemToArray(s, e);
    return o;
}

static cJSON *group_obj(kl_reg *reg, const char *g)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", g);
    cJSON *vers = cJSON_AddArrayToObject(o, "versions");
    char gv[256];
    const char *first = NULL;
    for (size_t j = 0; j < reg->n; j++) {
        kl_res *r = reg->res[j];
        if (strcmp(r->group, g) != 0 || seen_gv(reg, j, g, r->version))
            continue;
        if (!first)
            first = r->version;
        cJSON *vo = cJSON_CreateObject();
        snprintf(gv, sizeof(gv), "%s/%s", g, r->version);
        cJSON_AddStringToObject(vo, "groupVersion", gv);
        cJSON_AddStringToObject(vo, "version", r->version);
        cJSON_AddItemToArray(vers, vo);
    }
    if (!first) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON *pv = cJSON_AddObjectToObject(o, "preferredVersion");
    snprintf(gv, sizeof(gv), "%s/%s", g, first);
    cJSON_AddStringToObject(pv, "groupVersion", gv);
    cJSON_AddStringToObject(pv, "version", first);
    return o;
}

cJSON *kl_reg_group_list(kl_reg *reg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", "APIGroupList");
    cJSON_AddStringToObject(o, "apiVersion", "v1");
    cJSON *groups = cJSON_AddArrayToObject(o, "groups");
    for (size_t i = 0; i < reg->n; i++) {
        const char *g = reg->res[i]->group;
        if (!g[0] || seen_group(reg, i, g))
            continue;
        cJSON *go = group_obj(reg, g);
        if (go)
            cJSON_AddItemToArray(groups, go);
    }
    return o;
}

cJSON *kl_reg_group(kl_reg *reg, const char *group)
{
    cJSON *o = group_obj(reg, group);
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "kind", "APIGroup");
    cJSON_AddStringToObject(o, "apiVersion", "v1");
    return o;
}

cJSON *kl_reg_resource_list(kl_reg *reg, const char *group, const char *version)
{
    if (!seen_gv(reg, reg->n, group, version))
        return NULL;
    cJSON *o = cJSON_CreateObject();
    char gv[256];
    cJSON_AddStringToObject(o, "kind", "APIResourceList");
    cJSON_AddStringToObject(o, "apiVersion", "v1");
    if (group[0])
        snprintf(gv, sizeof(gv), "%s/%s", group, version);
    else
        snprintf(gv, sizeof(gv), "%s", version);
    cJSON_AddStringToObject(o, "groupVersion", gv);
    cJSON *arr = cJSON_AddArrayToObject(o, "resources");
    char nm[300];
    for (size_t i = 0; i < reg->n; i++) {
        kl_res *r = reg->res[i];
        if (strcmp(r->group, group) != 0 || strcmp(r->version, version) != 0)
            continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", r->plural);
        cJSON_AddStringToObject(e, "singularName", r->singular);
        cJSON_AddBoolToObject(e, "namespaced", r->namespaced);
        cJSON_AddStringToObject(e, "kind", r->kind);
        add_verbs(e, 0);
        if (r->n_short)
            add_strings(e, "shortNames", r->short_names, r->n_short);
        if (r->n_cat)
            add_strings(e, "categories", r->categories, r->n_cat);
        cJSON_AddItemToArray(arr, e);
        if (r->has_status) {
            e = cJSON_CreateObject();
            snprintf(nm, sizeof(nm), "%s/status", r->plural);
            cJSON_AddStringToObject(e, "name", nm);
            cJSON_AddStringToObject(e, "singularName", "");
            cJSON_AddBoolToObject(e, "namespaced", r->namespaced);
            cJSON_AddStringToObject(e, "kind", r->kind);
            add_verbs(e, 1);
            cJSON_AddItemToArray(arr, e);
        }
        if (r->has_scale) {
            e = cJSON_CreateObject();
            snprintf(nm, sizeof(nm), "%s/scale", r->plural);
            cJSON_AddStringToObject(e, "name", nm);
            cJSON_AddStringToObject(e, "singularName", "");
            cJSON_AddBoolToObject(e, "namespaced", r->namespaced);
            cJSON_AddStringToObject(e, "group", "autoscaling");
            cJSON_AddStringToObject(e, "version", "v1");
            cJSON_AddStringToObject(e, "kind", "Scale");
            add_verbs(e, 1);
            cJSON_AddItemToArray(arr, e);
        }
    }
    return o;
}

/* ---- OpenAPI ---- */

static void gvpath_of(const kl_res *r, char *buf, size_t n)
{
    if (r->group[0])
        snprintf(buf, n, "apis/%s/%s", r->group, r->version);
    else
        snprintf(buf, n, "api/%s", r->version);
}

static unsigned long fnv(const char *s, unsigned long h)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211UL;
    return h;
}

cJSON *kl_reg_openapi_index(kl_reg *reg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *paths = cJSON_AddObjectToObject(o, "paths");
    char gp[256], url[400];
    for (size_t i = 0; i < reg->n; i++) {
        gvpath_of(reg->res[i], gp, sizeof(gp));
        if (cJSON_GetObjectItemCaseSensitive(paths, gp))
            continue;
        /* The hash changes with the set of resources in the group-version. */
        unsigned long h = 1469598103934665603UL;
        for (size_t j = 0; j < reg->n; j++) {
            char g2[256];
            gvpath_of(reg->res[j], g2, sizeof(g2));
            if (strcmp(g2, gp) == 0) {
                h = fnv(reg->res[j]->plural, h);
                h = fnv(reg->res[j]->crd_name ? "crd" : "b", h);
                h ^= reg->gen * 31;
            }
        }
        snprintf(url, sizeof(url), "/openapi/v3/%s?hash=%016lX", gp, h);
        cJSON *e = cJSON_AddObjectToObject(paths, gp);
        cJSON_AddStringToObject(e, "serverRelativeURL", url);
    }
    return o;
}

static void add_param(cJSON *params, const char *name, const char *type)
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "name", name);
    cJSON_AddStringToObject(p, "in", "query");
    cJSON *s = cJSON_AddObjectToObject(p, "schema");
    cJSON_AddStringToObject(s, "type", type);
    cJSON_AddItemToArray(params, p);
}

cJSON *kl_reg_openapi_gv(kl_reg *reg, const char *gvpath)
{
    cJSON *doc = NULL, *paths = NULL, *schemas = NULL;
    char gp[256], path[600];
    for (size_t i = 0; i < reg->n; i++) {
        kl_res *r = reg->res[i];
        gvpath_of(r, gp, sizeof(gp));
        if (strcmp(gp, gvpath) != 0)
            continue;
        if (!doc) {
            doc = cJSON_CreateObject();
            cJSON_AddStringToObject(doc, "openapi", "3.0.0");
            cJSON *info = cJSON_AddObjectToObject(doc, "info");
            cJSON_AddStringToObject(info, "title", "Kubernetes");
            cJSON_AddStringToObject(info, "version", "v1.32.0");
            paths = cJSON_AddObjectToObject(doc, "paths");
            cJSON *comp = cJSON_AddObjectToObject(doc, "components");
            schemas = cJSON_AddObjectToObject(comp, "schemas");
        }
        snprintf(path, sizeof(path), "/%s/%s%s/{name}", gp,
                 r->namespaced ? "namespaces/{namespace}/" : "", r->plural);
        cJSON *item = cJSON_AddObjectToObject(paths, path);
        cJSON *patch = cJSON_AddObjectToObject(item, "patch");
        cJSON_AddItemToObject(patch, "x-kubernetes-group-version-kind",
                              gvk(r->group, r->version, r->kind));
        cJSON_AddStringToObject(patch, "x-kubernetes-action", "patch");
        cJSON *params = cJSON_AddArrayToObject(patch, "parameters");
        add_param(params, "fieldValidation", "string");
        add_param(params, "dryRun", "string");
        add_param(params, "fieldManager", "string");
        add_param(params, "force", "boolean");
        cJSON *rb = cJSON_AddObjectToObject(patch, "requestBody");
        cJSON *content = cJSON_AddObjectToObject(rb, "content");
        const char *types[] = {"application/json-patch+json", "application/merge-patch+json",
                               "application/apply-patch+yaml",
                               "application/strategic-merge-patch+json"};
        for (int t = 0; t < (r->builtin ? 4 : 3); t++) {
            cJSON *ct = cJSON_AddObjectToObject(content, types[t]);
            cJSON *s = cJSON_AddObjectToObject(ct, "schema");
            cJSON_AddStringToObject(s, "type", "object");
        }
        cJSON *resp = cJSON_AddObjectToObject(patch, "responses");
        cJSON *ok = cJSON_AddObjectToObject(resp, "200");
        cJSON_AddStringToObject(ok, "description", "OK");
        if (r->schema) {
            /* Reversed group name: kiln.dev -> dev.kiln */
            char rev[256] = "";
            const char *g = r->group;
            const char *end = g + strlen(g);
            while (end > g) {
                const char *dot = end;
                while (dot > g && dot[-1] != '.')
                    dot--;
                size_t l = strlen(rev);
                snprintf(rev + l, sizeof(rev) - l, "%s%.*s", l ? "." : "", (int)(end - dot), dot);
                end = dot > g ? dot - 1 : g;
            }
            char sname[512];
            snprintf(sname, sizeof(sname), "%s.%s.%s", rev, r->version, r->kind);
            cJSON *s = cJSON_Duplicate(r->schema, 1);
            cJSON *arr = cJSON_AddArrayToObject(s, "x-kubernetes-group-version-kind");
            cJSON_AddItemToArray(arr, gvk(r->group, r->version, r->kind));
            cJSON_AddItemToObject(schemas, sname, s);
        }
    }
    return doc;
}
