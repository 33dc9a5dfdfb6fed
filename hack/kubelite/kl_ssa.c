/* kl_ssa: managedFields and server-side apply (see kl_ssa.h). */
#include "kl_ssa.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kjson_patch.h"
#include "kl_smp.h"
#include "ktime.h"

/* metadata members that belong to the user and are tracked. */
static int tracked_meta(const char *k)
{
    return !strcmp(k, "labels") || !strcmp(k, "annotations") || !strcmp(k, "finalizers") ||
           !strcmp(k, "ownerReferences");
}

/* Adds the leaves of v under node (a FieldsV1 tree). */
static void leaves_into(const cJSON *v, cJSON *node)
{
    for (const cJSON *c = v->child; c; c = c->next) {
        char key[600];
        snprintf(key, sizeof(key), "f:%s", c->string);
        cJSON *sub = cJSON_GetObjectItemCaseSensitive(node, key);
        if (!sub)
            sub = cJSON_AddObjectToObject(node, key);
        if (cJSON_IsObject(c) && c->child)
            leaves_into(c, sub);
    }
}

/* The FieldsV1 tree of an object's user fields. */
static cJSON *fields_of(const cJSON *obj, int status_sub)
{
    cJSON *t = cJSON_CreateObject();
    for (const cJSON *c = obj ? obj->child : NULL; c; c = c->next) {
        if (!strcmp(c->string, "apiVersion") || !strcmp(c->string, "kind"))
            continue;
        if (status_sub && !strcmp(c->string, "status"))
            continue;
        if (!strcmp(c->string, "metadata")) {
            cJSON *md = NULL;
            for (const cJSON *m = c->child; m; m = m->next) {
                if (!tracked_meta(m->string))
                    continue;
                if (!md)
                    md = cJSON_AddObjectToObject(t, "f:metadata");
                char key[600];
                snprintf(key, sizeof(key), "f:%s", m->string);
                cJSON *sub = cJSON_AddObjectToObject(md, key);
                if (cJSON_IsObject(m) && m->child)
                    leaves_into(m, sub);
            }
            continue;
        }
        char key[600];
        snprintf(key, sizeof(key), "f:%s", c->string);
        cJSON *sub = cJSON_AddObjectToObject(t, key);
        if (cJSON_IsObject(c) && c->child)
            leaves_into(c, sub);
    }
    return t;
}

/* ---- leaf iteration ---- */

typedef void (*leaf_fn)(const char **path, int depth, void *ctx);

static void walk(const cJSON *t, const char **path, int depth, leaf_fn fn, void *ctx)
{
    if (depth >= 32)
        return;
    if (!t->child) {
        if (depth)
            fn(path, depth, ctx);
        return;
    }
    for (const cJSON *c = t->child; c; c = c->next) {
        if (strncmp(c->string, "f:", 2) != 0)
            continue;
        path[depth] = c->string + 2;
        walk(c, path, depth + 1, fn, ctx);
    }
}

static const cJSON *value_at(const cJSON *obj, const char **path, int depth)
{
    const cJSON *cur = obj;
    for (int i = 0; i < depth && cur; i++)
        cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, path[i]) : NULL;
    return cur;
}

/* Does tree t own path (a leaf or an ancestor leaf of it)? */
static int owns(const cJSON *t, const char **path, int depth)
{
    const cJSON *cur = t;
    char key[600];
    for (int i = 0; i < depth; i++) {
        if (!cur->child && i > 0)
            return 1;
        snprintf(key, sizeof(key), "f:%s", path[i]);
        cur = cJSON_GetObjectItemCaseSensitive(cur, key);
        if (!cur)
            return 0;
    }
    return 1;
}

/* Removes path from t, pruning empty parents. */
static void disown(cJSON *t, const char **path, int depth)
{
    if (depth == 0)
        return;
    char key[600];
    snprintf(key, sizeof(key), "f:%s", path[0]);
    cJSON *c = cJSON_GetObjectItemCaseSensitive(t, key);
    if (!c)
        return;
    if (depth == 1 || !c->child) {
        cJSON_DeleteItemFromObjectCaseSensitive(t, key);
        return;
    }
    disown(c, path + 1, depth - 1);
    if (!c->child)
        cJSON_DeleteItemFromObjectCaseSensitive(t, key);
}

static void own(cJSON *t, const char **path, int depth)
{
    cJSON *cur = t;
    char key[600];
    for (int i = 0; i < depth; i++) {
        snprintf(key, sizeof(key), "f:%s", path[i]);
        cJSON *n = cJSON_GetObjectItemCaseSensitive(cur, key);
        if (!n)
            n = cJSON_AddObjectToObject(cur, key);
        cur = n;
    }
}

static void remove_path(cJSON *obj, const char **path, int depth)
{
    cJSON *cur = obj;
    for (int i = 0; i < depth - 1 && cur; i++)
        cur = cJSON_GetObjectItemCaseSensitive(cur, path[i]);
    if (cJSON_IsObject(cur))
        cJSON_DeleteItemFromObjectCaseSensitive(cur, path[depth - 1]);
}

static void fmt_path(const char **path, int depth, char *buf, size_t n)
{
    size_t l = 0;
    buf[0] = 0;
    for (int i = 0; i < depth && l < n; i++)
        l += (size_t)snprintf(buf + l, n - l, ".%s", path[i]);
}

/* ---- managedFields entries ---- */

static cJSON *entries(cJSON *obj)
{
    cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    if (!md)
        md = cJSON_AddObjectToObject(obj, "metadata");
    cJSON *mf = cJSON_GetObjectItemCaseSensitive(md, "managedFields");
    if (!cJSON_IsArray(mf)) {
        cJSON_DeleteItemFromObjectCaseSensitive(md, "managedFields");
        mf = cJSON_AddArrayToObject(md, "managedFields");
    }
    return mf;
}

static cJSON *entry_for(cJSON *mf, const char *manager, const char *op, const char *av, int create)
{
    cJSON *e;
    cJSON_ArrayForEach(e, mf)
    {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "manager");
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(e, "operation");
        if (cJSON_IsString(m) && cJSON_IsString(o) && !strcmp(m->valuestring, manager) &&
            !strcmp(o->valuestring, op))
            return e;
    }
    if (!create)
        return NULL;
    e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "manager", manager);
    cJSON_AddStringToObject(e, "operation", op);
    cJSON_AddStringToObject(e, "apiVersion", av);
    cJSON_AddStringToObject(e, "fieldsType", "FieldsV1");
    cJSON_AddObjectToObject(e, "fieldsV1");
    cJSON_AddItemToArray(mf, e);
    return e;
}

static void stamp(cJSON *e)
{
    char t[KTIME_BUFSZ];
    if (ktime_format(ktime_now(), 0, t, sizeof(t)) != 0)
        return;
    cJSON_DeleteItemFromObjectCaseSensitive(e, "time");
    cJSON_AddStringToObject(e, "time", t);
}

static cJSON *fv1(cJSON *e)
{
    cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "fieldsV1");
    if (!cJSON_IsObject(f)) {
        cJSON_DeleteItemFromObjectCaseSensitive(e, "fieldsV1");
        f = cJSON_AddObjectToObject(e, "fieldsV1");
    }
    return f;
}

/* Drops entries that own nothing. */
static void tidy(cJSON *mf)
{
    cJSON *e = mf->child;
    while (e) {
        cJSON *next = e->next;
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "fieldsV1");
        if (!f || !f->child) {
            cJSON_DetachItemViaPointer(mf, e);
            cJSON_Delete(e);
        }
        e = next;
    }
}

/* ---- update tracking ---- */

typedef struct upd_ctx {
    const cJSON *old, *obj;
    cJSON *mf, *mine;
} upd_ctx;

static void upd_leaf(const char **path, int depth, void *vctx)
{
    upd_ctx *c = vctx;
    const cJSON *a = c->old ? value_at(c->old, path, depth) : NULL;
    const cJSON *b = value_at(c->obj, path, depth);
    if (a && b && cJSON_Compare(a, b, 1))
        return;
    cJSON *e;
    cJSON_ArrayForEach(e, c->mf) if (e != c->mine) disown(fv1(e), path, depth);
    own(fv1(c->mine), path, depth);
}

void kl_ssa_track_update(const cJSON *old, cJSON *obj, const char *manager,
                         const char *api_version, int status_sub)
{
    if (!manager || !manager[0])
        return;
    cJSON *mf = entries(obj);
    cJSON *mine = entry_for(mf, manager, "Update", api_version, 1);
    cJSON *t = fields_of(obj, status_sub);
    const char *path[32];
    upd_ctx c = {old, obj, mf, mine};
    walk(t, path, 0, upd_leaf, &c);
    cJSON_Delete(t);
    stamp(mine);
    tidy(mf);
}

/* ---- apply ---- */

typedef struct apply_ctx {
    const cJSON *cur, *cfg;
    cJSON *mf;
    const char *manager;
    int force;
    kl_strs *conflicts;
    int n_conflicts;
} apply_ctx;

static void conflict_leaf(const char **path, int depth, void *vctx)
{
    apply_ctx *c = vctx;
    const cJSON *want = value_at(c->cfg, path, depth);
    const cJSON *have = c->cur ? value_at(c->cur, path, depth) : NULL;
    cJSON *e;
    cJSON_ArrayForEach(e, c->mf)
    {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "manager");
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(e, "operation");
        int same = cJSON_IsString(m) && !strcmp(m->valuestring, c->manager) && cJSON_IsString(o) &&
                   !strcmp(o->valuestring, "Apply");
        if (same || !owns(fv1(e), path, depth))
            continue;
        if (have && want && cJSON_Compare(have, want, 1))
            continue; /* same value: shared ownership */
        if (c->force) {
            disown(fv1(e), path, depth);
            continue;
        }
        char f[1024], line[1400];
        fmt_path(path, depth, f, sizeof(f));
        snprintf(line, sizeof(line), "%s\t%s", cJSON_IsString(m) ? m->valuestring : "", f);
        char **nv = realloc(c->conflicts->v, (c->conflicts->n + 1) * sizeof(*nv));
        if (nv) {
            c->conflicts->v = nv;
            if ((nv[c->conflicts->n] = strdup(line)))
                c->conflicts->n++;
        }
        c->n_conflicts++;
    }
}

typedef struct drop_ctx {
    cJSON *obj, *mf, *mine;
    const cJSON *newt;
} drop_ctx;

static void drop_leaf(const char **path, int depth, void *vctx)
{
    drop_ctx *c = vctx;
    if (owns(c->newt, path, depth))
        return;
    cJSON *e;
    cJSON_ArrayForEach(e, c->mf) if (e != c->mine && owns(fv1(e), path, depth)) return;
    remove_path(c->obj, path, depth);
}

int kl_ssa_apply(const cJSON *cur, const cJSON *cfg, const char *manager, int force, int smp,
                 int status_sub, const char *api_version, cJSON **out, kl_strs *conflicts,
                 kiln_error *err)
{
    *out = NULL;
    cJSON *obj = cur ? cJSON_Duplicate(cur, 1) : cJSON_CreateObject();
    if (!obj)
        return KILN_ENOMEM;
    cJSON *mf = entries(obj);
    cJSON *newt = fields_of(cfg, status_sub);
    const char *path[32];
    apply_ctx ac = {cur, cfg, mf, manager, force, conflicts, 0};
    walk(newt, path, 0, conflict_leaf, &ac);
    if (ac.n_conflicts) {
        cJSON_Delete(newt);
        cJSON_Delete(obj);
        return kiln_fail(err, KILN_ECONFLICT, "Apply failed with %d conflict(s)", ac.n_conflicts);
    }
    cJSON *mine = entry_for(mf, manager, "Apply", api_version, 1);
    /* Fields this manager applied before and no longer applies go away,
     * unless someone else also owns them. */
    drop_ctx dc = {obj, mf, mine, newt};
    cJSON *oldt = cJSON_Duplicate(fv1(mine), 1);
    if (oldt)
        walk(oldt, path, 0, drop_leaf, &dc);
    cJSON_Delete(oldt);
    /* Merge the configuration. */
    cJSON *patch = cJSON_Duplicate(cfg, 1);
    if (patch && status_sub)
        cJSON_DeleteItemFromObjectCaseSensitive(patch, "status");
    cJSON *pmd = patch ? cJSON_GetObjectItemCaseSensitive(patch, "metadata") : NULL;
    if (pmd) {
        cJSON_DeleteItemFromObjectCaseSensitive(pmd, "managedFields");
        cJSON_DeleteItemFromObjectCaseSensitive(pmd, "resourceVersion");
    }
    int rc = !patch ? KILN_ENOMEM : smp ? kl_smp_apply(&obj, patch, err) : kjson_merge_patch(&obj, patch, err);
    cJSON_Delete(patch);
    if (rc) {
        cJSON_Delete(newt);
        cJSON_Delete(obj);
        return rc;
    }
    mf = entries(obj);
    mine = entry_for(mf, manager, "Apply", api_version, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(mine, "fieldsV1");
    cJSON_AddItemToObject(mine, "fieldsV1", newt);
    stamp(mine);
    tidy(mf);
    *out = obj;
    return 0;
}
