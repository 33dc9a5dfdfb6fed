/* kl_ctrl: garbage collector, namespace termination, Deployment and
 * ReplicaSet controllers (see kl_ctrl.h).
 *
 * Each pass first decides on a list of actions from borrowed store
 * objects, then applies them, because every write invalidates the
 * borrowed pointers. */
#include "kl_ctrl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kjson_patch.h"
#include "klabels.h"
#include "kl_table.h"
#include "ktime.h"

struct kl_ctrl {
    kl_api *api;
    uint64_t last_rv;
    int64_t last_full_ms;
    int64_t last_gc_ms;
};

static cJSON *meta(const cJSON *o)
{
    return cJSON_GetObjectItemCaseSensitive(o, "metadata");
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Like jstr, but "" instead of NULL, for formatting. */
static const char *jstr0(const cJSON *o, const char *k)
{
    const char *s = jstr(o, k);
    return s ? s : "";
}

static int has_str(const cJSON *arr, const char *s)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) if (cJSON_IsString(e) && !strcmp(e->valuestring, s)) return 1;
    return 0;
}

int kl_ctrl_new(kl_api *api, kl_ctrl **out, kiln_error *err)
{
    (void)err;
    kl_ctrl *c = calloc(1, sizeof(*c));
    if (!c)
        return KILN_ENOMEM;
    c->api = api;
    *out = c;
    return 0;
}

void kl_ctrl_free(kl_ctrl *c)
{
    free(c);
}

/* ---- actions ---- */

enum { A_DELETE, A_PUT };

typedef struct action {
    int kind;
    kl_res *r;
    char ns[254], name[254];
    cJSON *obj; /* A_PUT: new object (owned) */
} action;

typedef struct actions {
    action *v;
    size_t n, cap;
} actions;

static void act_add(actions *a, int kind, kl_res *r, const cJSON *o, cJSON *obj)
{
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 16;
        action *nv = realloc(a->v, nc * sizeof(*nv));
        if (!nv) {
            cJSON_Delete(obj);
            return;
        }
        a->v = nv;
        a->cap = nc;
    }
    action *x = &a->v[a->n++];
    x->kind = kind;
    x->r = r;
    const char *ns = jstr(meta(o), "namespace");
    snprintf(x->ns, sizeof(x->ns), "%s", ns ? ns : "");
    snprintf(x->name, sizeof(x->name), "%s", jstr0(meta(o), "name") ? jstr(meta(o), "name") : "");
    x->obj = obj;
}

static void act_run(kl_api *api, actions *a)
{
    kl_store *st = kl_api_store(api);
    for (size_t i = 0; i < a->n; i++) {
        action *x = &a->v[i];
        if (x->kind == A_DELETE) {
            if (kl_store_get(st, x->r->rkey, x->ns, x->name))
                kl_api_delete(api, x->r, x->ns, x->name, "Background", NULL);
        } else {
            const cJSON *cur = kl_store_get(st, x->r->rkey, x->ns, x->name);
            if (!cur) {
                cJSON_Delete(x->obj);
                continue;
            }
            cJSON *md = meta(x->obj);
            /* A deleting object whose last finalizer went away is removed. */
            if (cJSON_GetObjectItemCaseSensitive(md, "deletionTimestamp") &&
                cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(md, "finalizers")) == 0 &&
                strcmp(x->r->kind, "Namespace") != 0) {
                cJSON_Delete(x->obj);
                kl_store_del(st, x->r->rkey, x->ns, x->name, NULL);
                continue;
            }
            kl_api_write(api, x->r, x->obj, NULL);
        }
    }
    free(a->v);
    memset(a, 0, sizeof(*a));
}

/* ---- snapshot of all objects ---- */

typedef struct item {
    kl_res *r;
    const cJSON *obj;
    const char *uid;
} item;

static int cmp_uid(const void *a, const void *b)
{
    return strcmp(((const item *)a)->uid, ((const item *)b)->uid);
}

static int collect(kl_api *api, item **out, size_t *n)
{
    kl_reg *reg = kl_api_reg(api);
    kl_store *st = kl_api_store(api);
    item *v = NULL;
    size_t k = 0, cap = 0;
    for (size_t i = 0; i < kl_reg_count(reg); i++) {
        kl_res *r = kl_reg_at(reg, i);
        int dup = 0;
        for (size_t j = 0; j < i; j++)
            dup |= !strcmp(kl_reg_at(reg, j)->rkey, r->rkey);
        if (dup)
            continue;
        const cJSON **objs;
        size_t m;
        if (kl_store_list(st, r->rkey, NULL, &objs, &m) != 0)
            continue;
        for (size_t j = 0; j < m; j++) {
            if (k == cap) {
                cap = cap ? cap * 2 : 256;
                item *nv = realloc(v, cap * sizeof(*nv));
                if (!nv) {
                    free(objs);
                    free(v);
                    return KILN_ENOMEM;
                }
                v = nv;
            }
            const char *uid = jstr(meta(objs[j]), "uid");
            v[k++] = (item){r, objs[j], uid ? uid : ""};
        }
        free(objs);
    }
    qsort(v, k, sizeof(*v), cmp_uid);
    *out = v;
    *n = k;
    return 0;
}

static const item *find_uid(const item *v, size_t n, const char *uid)
{
    item key = {NULL, NULL, uid};
    return bsearch(&key, v, n, sizeof(*v), cmp_uid);
}

static int deleting(const cJSON *o)
{
    return cJSON_GetObjectItemCaseSensitive(meta(o), "deletionTimestamp") != NULL;
}

/* ---- garbage collector ---- */

static void gc(kl_ctrl *c)
{
    item *v;
    size_t n;
    if (collect(c->api, &v, &n) != 0)
        return;
    actions a = {0};
    /* Owners being deleted in the foreground keep a count of dependents. */
    size_t *deps = calloc(n ? n : 1, sizeof(*deps));
    if (!deps) {
        free(v);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const cJSON *refs = cJSON_GetObjectItemCaseSensitive(meta(v[i].obj), "ownerReferences");
        if (!cJSON_GetArraySize(refs))
            continue;
        const char *myns = jstr(meta(v[i].obj), "namespace");
        cJSON *keep = cJSON_CreateArray();
        int changed = 0, alive = 0, fg = 0;
        const cJSON *ref;
        cJSON_ArrayForEach(ref, refs)
        {
            const char *uid = jstr(ref, "uid");
            const item *o = uid ? find_uid(v, n, uid) : NULL;
            /* A namespaced dependent only sees owners in its namespace or cluster-scoped. */
            if (o && o->r->namespaced && myns &&
                strcmp(jstr(meta(o->obj), "namespace") ? jstr(meta(o->obj), "namespace") : "", myns))
                o = NULL;
            if (o && jstr(ref, "name") && strcmp(jstr(ref, "name"), jstr(meta(o->obj), "name") ? jstr(meta(o->obj), "name") : ""))
                o = NULL;
            if (!o) {
                changed = 1;
                continue;
            }
            const cJSON *fin = cJSON_GetObjectItemCaseSensitive(meta(o->obj), "finalizers");
            if (deleting(o->obj) && has_str(fin, "orphan")) {
                changed = 1;
                continue;
            }
            alive++;
            if (deleting(o->obj) && has_str(fin, "foregroundDeletion")) {
                fg = 1;
                deps[o - v]++;
            }
            cJSON_AddItemToArray(keep, cJSON_Duplicate(ref, 1));
        }
        if ((alive == 0 && changed) || (fg && !deleting(v[i].obj))) {
            cJSON_Delete(keep);
            if (!deleting(v[i].obj))
                act_add(&a, A_DELETE, v[i].r, v[i].obj, NULL);
        } else if (changed) {
            cJSON *o = cJSON_Duplicate(v[i].obj, 1);
            cJSON_ReplaceItemInObjectCaseSensitive(meta(o), "ownerReferences", keep);
            act_add(&a, A_PUT, v[i].r, v[i].obj, o);
        } else {
            cJSON_Delete(keep);
        }
    }
    /* Finalizers the GC owns. */
    for (size_t i = 0; i < n; i++) {
        if (!deleting(v[i].obj))
            continue;
        const cJSON *fin = cJSON_GetObjectItemCaseSensitive(meta(v[i].obj), "finalizers");
        int has_fg = has_str(fin, "foregroundDeletion"), has_or = has_str(fin, "orphan");
        if (!has_or && !(has_fg && deps[i] == 0))
            continue;
        cJSON *o = cJSON_Duplicate(v[i].obj, 1);
        cJSON *f = cJSON_GetObjectItemCaseSensitive(meta(o), "finalizers");
        cJSON *e = f ? f->child : NULL;
        while (e) {
            cJSON *next = e->next;
            if (cJSON_IsString(e) && ((has_or && !strcmp(e->valuestring, "orphan")) ||
                                      (has_fg && deps[i] == 0 &&
                                       !strcmp(e->valuestring, "foregroundDeletion")))) {
                cJSON_DetachItemViaPointer(f, e);
                cJSON_Delete(e);
            }
            e = next;
        }
        act_add(&a, A_PUT, v[i].r, v[i].obj, o);
    }
    free(deps);
    free(v);
    act_run(c->api, &a);
}

/* ---- namespaces ---- */

static void namespaces(kl_ctrl *c)
{
    kl_api *api = c->api;
    kl_store *st = kl_api_store(api);
    kl_res *nsr = kl_api_res(api, "", "namespaces");
    const cJSON **nss;
    size_t n;
    if (kl_store_list(st, nsr->rkey, NULL, &nss, &n) != 0)
        return;
    char (*term)[254] = n ? malloc(n * sizeof(*term)) : NULL;
    size_t nt = 0;
    for (size_t i = 0; term && i < n; i++)
        if (deleting(nss[i]))
            snprintf(term[nt++], 254, "%s", jstr0(meta(nss[i]), "name"));
    free(nss);
    kl_reg *reg = kl_api_reg(api);
    for (size_t t = 0; t < nt; t++) {
        size_t remaining = 0;
        actions a = {0};
        for (size_t i = 0; i < kl_reg_count(reg); i++) {
            kl_res *r = kl_reg_at(reg, i);
            if (!r->namespaced)
                continue;
            int dup = 0;
            for (size_t j = 0; j < i; j++)
                dup |= !strcmp(kl_reg_at(reg, j)->rkey, r->rkey);
            if (dup)
                continue;
            const cJSON **objs;
            size_t m;
            if (kl_store_list(st, r->rkey, term[t], &objs, &m) != 0)
                continue;
            remaining += m;
            for (size_t j = 0; j < m; j++)
                if (!deleting(objs[j]))
                    act_add(&a, A_DELETE, r, objs[j], NULL);
            free(objs);
        }
        act_run(api, &a);
        if (remaining == 0)
            kl_store_del(st, nsr->rkey, "", term[t], NULL);
    }
    free(term);
}

/* ---- deployments and replica sets ---- */

void kl_ctrl_template_hash(const cJSON *tmpl, char *buf, size_t n)
{
    static const char A[] = "bcdfghjklmnpqrstvwxz2456789";
    char *s = cJSON_PrintUnformatted(tmpl);
    uint32_t h = 2166136261u;
    for (const char *p = s ? s : ""; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    free(s);
    size_t i = 0;
    do {
        if (i + 1 < n)
            buf[i++] = A[h % 27];
        h /= 27;
    } while (h && i + 1 < n);
    buf[i] = 0;
}

static int owned_by(const cJSON *o, const char *uid)
{
    const cJSON *ref;
    cJSON_ArrayForEach(ref, cJSON_GetObjectItemCaseSensitive(meta(o), "ownerReferences"))
    {
        const char *u = jstr(ref, "uid");
        if (u && !strcmp(u, uid))
            return 1;
    }
    return 0;
}

static cJSON *owner_ref(const char *api_version, const char *kind, const cJSON *owner)
{
    cJSON *arr = cJSON_CreateArray();
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "apiVersion", api_version);
    cJSON_AddStringToObject(r, "kind", kind);
    cJSON_AddStringToObject(r, "name", jstr(meta(owner), "name"));
    cJSON_AddStringToObject(r, "uid", jstr(meta(owner), "uid"));
    cJSON_AddBoolToObject(r, "controller", 1);
    cJSON_AddBoolToObject(r, "blockOwnerDeletion", 1);
    cJSON_AddItemToArray(arr, r);
    return arr;
}

static double num(const cJSON *o, const char *path)
{
    const cJSON *v = kl_table_jsonpath(o, path);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static int pod_ready(const cJSON *p)
{
    const cJSON *v = kl_table_jsonpath(p, ".status.conditions[?(@.type==\"Ready\")].status");
    return cJSON_IsString(v) && !strcmp(v->valuestring, "True");
}

static int pod_done(const cJSON *p)
{
    const char *ph = jstr(cJSON_GetObjectItemCaseSensitive(p, "status"), "phase");
    return ph && (!strcmp(ph, "Succeeded") || !strcmp(ph, "Failed"));
}

/* Replaces status when it differs; returns a PUT action's object or NULL. */
static cJSON *with_status(const cJSON *o, cJSON *status)
{
    const cJSON *cur = cJSON_GetObjectItemCaseSensitive(o, "status");
    if (cur && cJSON_Compare(cur, status, 1)) {
        cJSON_Delete(status);
        return NULL;
    }
    cJSON *n = cJSON_Duplicate(o, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(n, "status");
    cJSON_AddItemToObject(n, "status", status);
    return n;
}

static void replicasets(kl_ctrl *c)
{
    kl_api *api = c->api;
    kl_store *st = kl_api_store(api);
    kl_res *rsr = kl_api_res(api, "apps", "replicasets");
    kl_res *podr = kl_api_res(api, "", "pods");
    const cJSON **rss, **pods;
    size_t nr, np;
    if (kl_store_list(st, rsr->rkey, NULL, &rss, &nr) != 0)
        return;
    if (kl_store_list(st, podr->rkey, NULL, &pods, &np) != 0) {
        free(rss);
        return;
    }
    actions a = {0};
    cJSON *creates = cJSON_CreateArray();
    for (size_t i = 0; i < nr; i++) {
        const cJSON *rs = rss[i];
        if (deleting(rs))
            continue;
        const char *uid = jstr(meta(rs), "uid");
        int want = (int)num(rs, ".spec.replicas");
        int have = 0, ready = 0;
        for (size_t j = 0; j < np; j++) {
            if (!owned_by(pods[j], uid) || deleting(pods[j]) || pod_done(pods[j]))
                continue;
            if (have >= want) {
                act_add(&a, A_DELETE, podr, pods[j], NULL);
                continue;
            }
            have++;
            ready += pod_ready(pods[j]);
        }
        for (int k = have; k < want; k++) {
            const cJSON *tmpl = kl_table_jsonpath(rs, ".spec.template");
            cJSON *pod = cJSON_CreateObject();
            cJSON_AddStringToObject(pod, "apiVersion", "v1");
            cJSON_AddStringToObject(pod, "kind", "Pod");
            cJSON *md = cJSON_Duplicate(meta(tmpl), 1);
            if (!md)
                md = cJSON_CreateObject();
            char gn[300];
            snprintf(gn, sizeof(gn), "%s-", jstr(meta(rs), "name"));
            cJSON_DeleteItemFromObjectCaseSensitive(md, "name");
            cJSON_AddStringToObject(md, "generateName", gn);
            cJSON_DeleteItemFromObjectCaseSensitive(md, "namespace");
            cJSON_AddStringToObject(md, "namespace", jstr(meta(rs), "namespace"));
            cJSON_AddItemToObject(md, "ownerReferences", owner_ref("apps/v1", "ReplicaSet", rs));
            cJSON_AddItemToObject(pod, "metadata", md);
            cJSON_AddItemToObject(pod, "spec",
                                  cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(tmpl, "spec"), 1));
            cJSON_AddItemToArray(creates, pod);
        }
        cJSON *status = cJSON_CreateObject();
        cJSON_AddNumberToObject(status, "replicas", have);
        cJSON_AddNumberToObject(status, "fullyLabeledReplicas", have);
        cJSON_AddNumberToObject(status, "readyReplicas", ready);
        cJSON_AddNumberToObject(status, "availableReplicas", ready);
        cJSON_AddNumberToObject(status, "observedGeneration", num(rs, ".metadata.generation"));
        cJSON *n = with_status(rs, status);
        if (n)
            act_add(&a, A_PUT, rsr, rs, n);
    }
    free(rss);
    free(pods);
    act_run(api, &a);
    cJSON *p;
    while ((p = cJSON_DetachItemFromArray(creates, 0)) != NULL)
        kl_api_create(api, podr, p, NULL);
    cJSON_Delete(creates);
}

static void deployments(kl_ctrl *c)
{
    kl_api *api = c->api;
    kl_store *st = kl_api_store(api);
    kl_res *dr = kl_api_res(api, "apps", "deployments");
    kl_res *rsr = kl_api_res(api, "apps", "replicasets");
    const cJSON **ds, **rss;
    size_t nd, nr;
    if (kl_store_list(st, dr->rkey, NULL, &ds, &nd) != 0)
        return;
    if (kl_store_list(st, rsr->rkey, NULL, &rss, &nr) != 0) {
        free(ds);
        return;
    }
    actions a = {0};
    cJSON *creates = cJSON_CreateArray();
    char now[KTIME_BUFSZ];
    kl_now_str(now, sizeof(now), 0);
    for (size_t i = 0; i < nd; i++) {
        const cJSON *d = ds[i];
        if (deleting(d))
            continue;
        const char *uid = jstr(meta(d), "uid");
        const cJSON *tmpl = kl_table_jsonpath(d, ".spec.template");
        char hash[16], rsname[300];
        kl_ctrl_template_hash(tmpl, hash, sizeof(hash));
        snprintf(rsname, sizeof(rsname), "%s-%s", jstr(meta(d), "name"), hash);
        int want = (int)num(d, ".spec.replicas");
        int found = 0, total = 0, ready = 0, updated = 0;
        for (size_t j = 0; j < nr; j++) {
            const cJSON *rs = rss[j];
            if (!owned_by(rs, uid))
                continue;
            total += (int)num(rs, ".status.replicas");
            ready += (int)num(rs, ".status.readyReplicas");
            if (!strcmp(jstr(meta(rs), "name"), rsname)) {
                found = 1;
                updated = (int)num(rs, ".status.replicas");
                if ((int)num(rs, ".spec.replicas") != want) {
                    cJSON *n = cJSON_Duplicate(rs, 1);
                    cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(n, "spec"),
                                                           "replicas", cJSON_CreateNumber(want));
                    cJSON *g = cJSON_GetObjectItemCaseSensitive(meta(n), "generation");
                    if (cJSON_IsNumber(g))
                        cJSON_SetNumberValue(g, g->valuedouble + 1);
                    act_add(&a, A_PUT, rsr, rs, n);
                }
            } else if ((int)num(rs, ".spec.replicas") != 0) {
                cJSON *n = cJSON_Duplicate(rs, 1);
                cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(n, "spec"),
                                                       "replicas", cJSON_CreateNumber(0));
                cJSON *g = cJSON_GetObjectItemCaseSensitive(meta(n), "generation");
                if (cJSON_IsNumber(g))
                    cJSON_SetNumberValue(g, g->valuedouble + 1);
                act_add(&a, A_PUT, rsr, rs, n);
            }
        }
        if (!found) {
            cJSON *rs = cJSON_CreateObject();
            cJSON_AddStringToObject(rs, "apiVersion", "apps/v1");
            cJSON_AddStringToObject(rs, "kind", "ReplicaSet");
            cJSON *md = cJSON_AddObjectToObject(rs, "metadata");
            cJSON_AddStringToObject(md, "name", rsname);
            cJSON_AddStringToObject(md, "namespace", jstr(meta(d), "namespace"));
            cJSON *labels = cJSON_Duplicate(kl_table_jsonpath(tmpl, ".metadata.labels"), 1);
            if (!labels)
                labels = cJSON_CreateObject();
            cJSON_AddStringToObject(labels, "pod-template-hash", hash);
            cJSON_AddItemToObject(md, "labels", cJSON_Duplicate(labels, 1));
            cJSON *ann = cJSON_AddObjectToObject(md, "annotations");
            char rev[32];
            snprintf(rev, sizeof(rev), "%d", (int)num(d, ".metadata.generation"));
            cJSON_AddStringToObject(ann, "deployment.kubernetes.io/revision", rev);
            cJSON_AddItemToObject(md, "ownerReferences", owner_ref("apps/v1", "Deployment", d));
            cJSON *spec = cJSON_AddObjectToObject(rs, "spec");
            cJSON_AddNumberToObject(spec, "replicas", want);
            cJSON *sel = cJSON_Duplicate(kl_table_jsonpath(d, ".spec.selector"), 1);
            if (!sel)
                sel = cJSON_CreateObject();
            cJSON *ml = cJSON_GetObjectItemCaseSensitive(sel, "matchLabels");
            if (!ml)
                ml = cJSON_AddObjectToObject(sel, "matchLabels");
            cJSON_AddStringToObject(ml, "pod-template-hash", hash);
            cJSON_AddItemToObject(spec, "selector", sel);
            cJSON *t = cJSON_Duplicate(tmpl, 1);
            cJSON *tmd = meta(t);
            if (!tmd)
                tmd = cJSON_AddObjectToObject(t, "metadata");
            cJSON_DeleteItemFromObjectCaseSensitive(tmd, "labels");
            cJSON_AddItemToObject(tmd, "labels", labels);
            cJSON_AddItemToObject(spec, "template", t);
            cJSON_AddItemToArray(creates, rs);
        }
        cJSON *status = cJSON_CreateObject();
        cJSON_AddNumberToObject(status, "observedGeneration", num(d, ".metadata.generation"));
        cJSON_AddNumberToObject(status, "replicas", total);
        cJSON_AddNumberToObject(status, "updatedReplicas", updated);
        cJSON_AddNumberToObject(status, "readyReplicas", ready);
        cJSON_AddNumberToObject(status, "availableReplicas", ready);
        if (total > ready)
            cJSON_AddNumberToObject(status, "unavailableReplicas", total - ready);
        cJSON *conds = cJSON_AddArrayToObject(status, "conditions");
        int avail = ready >= want;
        const cJSON *old = kl_table_jsonpath(d, ".status.conditions");
        const char *types[2][4] = {
            {"Available", avail ? "True" : "False",
             avail ? "MinimumReplicasAvailable" : "MinimumReplicasUnavailable",
             avail ? "Deployment has minimum availability." : "Deployment does not have minimum availability."},
            {"Progressing", "True", found && updated == want && ready >= want ? "NewReplicaSetAvailable" : "ReplicaSetUpdated",
             "ReplicaSet is progressing."}};
        for (int k = 0; k < 2; k++) {
            cJSON *cd = cJSON_CreateObject();
            cJSON_AddStringToObject(cd, "type", types[k][0]);
            cJSON_AddStringToObject(cd, "status", types[k][1]);
            cJSON_AddStringToObject(cd, "reason", types[k][2]);
            cJSON_AddStringToObject(cd, "message", types[k][3]);
            /* Keep the old transition times when the status did not change. */
            const cJSON *oc;
            const char *ltt = now, *lut = now;
            cJSON_ArrayForEach(oc, old)
            {
                if (jstr(oc, "type") && !strcmp(jstr(oc, "type"), types[k][0]) &&
                    jstr(oc, "status") && !strcmp(jstr(oc, "status"), types[k][1])) {
                    if (jstr(oc, "lastTransitionTime"))
                        ltt = jstr(oc, "lastTransitionTime");
                    if (jstr(oc, "lastUpdateTime") && jstr(oc, "reason") &&
                        !strcmp(jstr(oc, "reason"), types[k][2]))
                        lut = jstr(oc, "lastUpdateTime");
                }
            }
            cJSON_AddStringToObject(cd, "lastUpdateTime", lut);
            cJSON_AddStringToObject(cd, "lastTransitionTime", ltt);
            cJSON_AddItemToArray(conds, cd);
        }
        cJSON *n = with_status(d, status);
        if (n)
            act_add(&a, A_PUT, dr, d, n);
    }
    free(ds);
    free(rss);
    act_run(api, &a);
    cJSON *rs;
    while ((rs = cJSON_DetachItemFromArray(creates, 0)) != NULL)
        kl_api_create(api, rsr, rs, NULL);
    cJSON_Delete(creates);
}

/* Whether the writes since the last pass can matter to the garbage
 * collector: 2 for a deletion or a deletionTimestamp (dependents wait on
 * it), 1 for a write of an object with ownerReferences (its owner may be
 * gone already, which is rare), 0 for neither. The full scan is
 * O(objects), so a write-heavy load of unrelated objects skips it. */
static int gc_needed(kl_ctrl *c)
{
    kl_store *st = kl_api_store(c->api);
    if (kl_store_hist_floor(st) > c->last_rv)
        return 2; /* history overflowed: we cannot tell */
    int need = 0;
    for (const kl_event *ev = kl_store_event_after(st, c->last_rv); ev;
         ev = kl_store_event_after(st, ev->rv)) {
        const cJSON *md = meta(ev->obj);
        if (ev->type == KL_DELETED || cJSON_GetObjectItemCaseSensitive(md, "deletionTimestamp"))
            return 2;
        if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(md, "ownerReferences")) > 0)
            need = 1;
    }
    return need;
}

/* The resource an owner reference names by apiVersion and kind, or NULL. */
static kl_res *owner_res(kl_api *api, const cJSON *ref)
{
    const char *av = jstr(ref, "apiVersion"), *kind = jstr(ref, "kind");
    if (!av || !kind)
        return NULL;
    const char *slash = strchr(av, '/');
    size_t glen = slash ? (size_t)(slash - av) : 0;
    kl_reg *reg = kl_api_reg(api);
    for (size_t i = 0; i < kl_reg_count(reg); i++) {
        kl_res *r = kl_reg_at(reg, i);
        if (!strcmp(r->kind, kind) && strlen(r->group) == glen && !strncmp(r->group, av, glen))
            return r;
    }
    return NULL;
}

/* 1 when every owner that the objects written since the last pass name
 * is there (same uid, not being deleted): the full scan would find
 * nothing to do for them. Looks the owners up by name, so a burst of
 * dependents costs their number, not the number of objects. */
static int owners_present(kl_ctrl *c)
{
    kl_store *st = kl_api_store(c->api);
    for (const kl_event *ev = kl_store_event_after(st, c->last_rv); ev;
         ev = kl_store_event_next(st, ev)) {
        const cJSON *md = meta(ev->obj);
        const cJSON *ref;
        cJSON_ArrayForEach(ref, cJSON_GetObjectItemCaseSensitive(md, "ownerReferences"))
        {
            kl_res *r = owner_res(c->api, ref);
            const char *name = jstr(ref, "name"), *uid = jstr(ref, "uid");
            const cJSON *o =
                r && name ? kl_store_get(st, r->rkey, r->namespaced ? jstr0(md, "namespace") : "",
                                         name)
                          : NULL;
            if (!o || !uid || strcmp(jstr0(meta(o), "uid"), uid) != 0 || deleting(o))
                return 0;
        }
    }
    return 1;
}

int kl_ctrl_tick(void *ctx)
{
    kl_ctrl *c = ctx;
    uint64_t rv = kl_store_rv(kl_api_store(c->api));
    int64_t now = ktime_mono_ms();
    if (now - c->last_full_ms < 100 || (rv == c->last_rv && now - c->last_full_ms < 2000))
        return 0;
    c->last_full_ms = now;
    /* Dependents written in a burst (every trial pod has an owner) are
     * checked by looking their owners up; the scan of every object runs
     * when one is missing, at most once a second: scanning on each pass
     * of a burst cost the API server more than the burst itself. */
    int need = gc_needed(c);
    if (need == 1 && owners_present(c))
        need = 0;
    if (need == 2 || (need == 1 && now - c->last_gc_ms >= 1000) || now - c->last_gc_ms >= 5000) {
        c->last_gc_ms = now;
        gc(c);
        namespaces(c);
    }
    deployments(c);
    replicasets(c);
    c->last_rv = kl_store_rv(kl_api_store(c->api));
    return 0;
}
