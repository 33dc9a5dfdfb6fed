/* kl_api_delete: deletion in kubelite's REST layer (part of kl_api, see
 * kl_api_int.h): preconditions, propagation policies as finalizers
 * (foregroundDeletion, orphan), marking objects with finalizers instead of
 * removing them, graceful pod deletion through the kubelet, collection
 * deletes, and the removal of a CRD's objects. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kl_api_int.h"
#include "kl_table.h"
#include "ktime.h"

/* Deletes immediately, or marks for deletion when finalizers remain.
 * *deleted tells which happened. */
static int delete_now_or_mark(kl_api *api, kl_res *r, const cJSON *cur, const char *policy,
                              int *deleted, kiln_error *err)
{
    const char *ns = r->namespaced ? jstr(meta(cur), "namespace") : "";
    const char *name = jstr(meta(cur), "name");
    const char *extra = NULL;
    if (policy && !strcmp(policy, "Foreground"))
        extra = "foregroundDeletion";
    else if (policy && !strcmp(policy, "Orphan"))
        extra = "orphan";
    int is_ns = r->builtin && !strcmp(r->kind, "Namespace");
    if (!has_finalizers(cur) && !extra && !is_ns) {
        *deleted = 1;
        char nm[256], nsb[256];
        snprintf(nm, sizeof(nm), "%s", name);
        snprintf(nsb, sizeof(nsb), "%s", ns ? ns : "");
        return kl_store_del(api->st, r->rkey, nsb, nm, err);
    }
    *deleted = 0;
    cJSON *obj = cJSON_Duplicate(cur, 1);
    if (!obj)
        return KILN_ENOMEM;
    cJSON *md = meta(obj);
    int changed = 0;
    if (!cJSON_GetObjectItemCaseSensitive(md, "deletionTimestamp")) {
        char now[KTIME_BUFSZ];
        kl_now_str(now, sizeof(now), 0);
        cJSON_AddStringToObject(md, "deletionTimestamp", now);
        cJSON_AddNumberToObject(md, "deletionGracePeriodSeconds", 0);
        cJSON *g = cJSON_GetObjectItemCaseSensitive(md, "generation");
        if (cJSON_IsNumber(g))
            cJSON_SetNumberValue(g, g->valuedouble + 1);
        changed = 1;
    }
    if (extra) {
        cJSON *f = cJSON_GetObjectItemCaseSensitive(md, "finalizers");
        if (!f)
            f = cJSON_AddArrayToObject(md, "finalizers");
        int present = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, f) present |= cJSON_IsString(e) && !strcmp(e->valuestring, extra);
        if (!present) {
            cJSON_AddItemToArray(f, cJSON_CreateString(extra));
            changed = 1;
        }
    }
    if (is_ns) {
        cJSON *st = jobj(obj, "status");
        jset_str(st, "phase", "Terminating");
        changed = 1;
    }
    if (!changed) {
        cJSON_Delete(obj);
        return 0;
    }
    return kl_api_write(api, r, obj, err);
}

int kl_api_delete(kl_api *api, kl_res *r, const char *ns, const char *name, const char *policy,
                  kiln_error *err)
{
    const cJSON *cur = kl_store_get(api->st, r->rkey, r->namespaced ? ns : "", name);
    if (!cur)
        return kiln_fail(err, KILN_ENOTFOUND, "not found");
    int deleted;
    return delete_now_or_mark(api, r, cur, policy, &deleted, err);
}

/* Removes a CRD's objects and its resources. */
void kla_crd_cleanup(kl_api *api, const cJSON *crd)
{
    const char *name = jstr(meta(crd), "name");
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(crd, "spec");
    const char *g = jstr(spec, "group");
    const char *pl = jstr(cJSON_GetObjectItemCaseSensitive(spec, "names"), "plural");
    if (!g || !pl || !name)
        return;
    kl_res *r = kl_api_res(api, g, pl);
    if (r && r->crd_name && !strcmp(r->crd_name, name)) {
        const cJSON **items;
        size_t n;
        if (kl_store_list(api->st, r->rkey, NULL, &items, &n) == 0) {
            /* Copy the keys first: deleting invalidates the borrowed list. */
            char (*keys)[2][256] = n ? malloc(n * sizeof(*keys)) : NULL;
            for (size_t i = 0; keys && i < n; i++) {
                snprintf(keys[i][0], 256, "%s", jstr0(meta(items[i]), "namespace") ? jstr(meta(items[i]), "namespace") : "");
                snprintf(keys[i][1], 256, "%s", jstr0(meta(items[i]), "name"));
            }
            free(items);
            for (size_t i = 0; keys && i < n; i++)
                kl_store_del(api->st, r->rkey, keys[i][0], keys[i][1], NULL);
            free(keys);
        }
    }
    char nb[256];
    snprintf(nb, sizeof(nb), "%s", name);
    kl_reg_remove_crd(api->reg, nb);
}

void kla_delete(kl_api *api, const target *t, const kl_req *req, kl_resp *resp)
{
    kl_res *r = t->res;
    cJSON *opts = NULL;
    if (req->body && req->body_len) {
        opts = kla_decode_body(req, resp);
        if (!opts)
            return;
    }
    const char *policy = jstr(opts, "propagationPolicy");
    if (!policy)
        policy = q(req, "propagationPolicy");
    const cJSON *orphan = cJSON_GetObjectItemCaseSensitive(opts, "orphanDependents");
    if (!policy && cJSON_IsTrue(orphan))
        policy = "Orphan";
    int64_t grace = -1;
    const cJSON *gp = cJSON_GetObjectItemCaseSensitive(opts, "gracePeriodSeconds");
    if (cJSON_IsNumber(gp))
        grace = (int64_t)gp->valuedouble;
    else if (q(req, "gracePeriodSeconds"))
        grace = strtoll(q(req, "gracePeriodSeconds"), NULL, 10);
    const cJSON *cur = kl_store_get(api->st, r->rkey, t->ns, t->name);
    if (!cur) {
        cJSON_Delete(opts);
        kla_not_found(resp, r, t->name);
        return;
    }
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(opts, "preconditions");
    const char *puid = jstr(pre, "uid"), *prv = jstr(pre, "resourceVersion");
    if ((puid && strcmp(puid, jstr(meta(cur), "uid") ? jstr(meta(cur), "uid") : "")) ||
        (prv && strcmp(prv, jstr(meta(cur), "resourceVersion") ? jstr(meta(cur), "resourceVersion") : ""))) {
        cJSON_Delete(opts);
        kla_conflict(resp, r, t->name);
        return;
    }
    char pol[32] = "";
    if (policy)
        snprintf(pol, sizeof(pol), "%s", policy);
    cJSON_Delete(opts);
    if (dry_run(req)) {
        kla_reply_obj(resp, 200, r, cur, req);
        return;
    }
    /* Pods under the kubelet terminate gracefully. */
    if (r->builtin && !strcmp(r->kind, "Pod") && api->pod_del_fn && grace != 0 &&
        !has_finalizers(cur)) {
        const cJSON *tg = kl_table_jsonpath(cur, ".spec.terminationGracePeriodSeconds");
        int64_t g = grace >= 0 ? grace : (cJSON_IsNumber(tg) ? (int64_t)tg->valuedouble : 30);
        if (g > 0 && api->pod_del_fn(api->pod_del_ctx, t->ns, t->name, g)) {
            const cJSON *now = kl_store_get(api->st, r->rkey, t->ns, t->name);
            if (now) {
                kla_reply_obj(resp, 200, r, now, req);
                return;
            }
        }
    }
    cJSON *last = cJSON_Duplicate(cur, 1);
    int deleted = 0;
    kiln_error err = {0};
    int is_crd = r->builtin && !strcmp(r->kind, "CustomResourceDefinition");
    if (is_crd && !has_finalizers(cur) && !pol[0])
        kla_crd_cleanup(api, cur);
    else if (is_crd && !has_finalizers(cur) && !strcmp(pol, "Background"))
        kla_crd_cleanup(api, cur);
    cur = kl_store_get(api->st, r->rkey, t->ns, t->name);
    int rc = cur ? delete_now_or_mark(api, r, cur, pol[0] ? pol : NULL, &deleted, &err) : 0;
    if (rc) {
        cJSON_Delete(last);
        kl_api_status(resp, 500, "InternalError", NULL, NULL, NULL, "delete: %s", err.msg);
        return;
    }
    if (!cur || deleted) {
        kstatus s;
        kstatus_init(&s);
        kstatus_setf(&s, 200, "", "%s", "");
        free(s.message);
        s.message = NULL;
        free(s.reason);
        s.reason = NULL;
        kstatus_set_details(&s, t->name, r->group, r->plural, jstr(meta(last), "uid"));
        if (r->builtin && strcmp(r->kind, "CustomResourceDefinition") != 0) {
            kl_api_json(resp, 200, last);
            last = NULL;
        } else {
            kl_api_json(resp, 200, kstatus_to_json(&s));
        }
        kstatus_release(&s);
    } else {
        kla_reply_obj(resp, 200, r, kl_store_get(api->st, r->rkey, t->ns, t->name), req);
    }
    cJSON_Delete(last);
}

void kla_delete_collection(kl_api *api, const target *t, const kl_req *req, kl_resp *resp)
{
    kl_res *r = t->res;
    klabels_sel *ls, *fs;
    if (kla_parse_sels(req, &ls, &fs, resp))
        return;
    const cJSON **items;
    size_t n;
    cJSON *out = cJSON_CreateObject();
    char av[256];
    cJSON_AddStringToObject(out, "kind", r->list_kind);
    cJSON_AddStringToObject(out, "apiVersion", kl_res_api_version(r, av, sizeof(av)));
    cJSON_AddObjectToObject(out, "metadata");
    cJSON *arr = cJSON_AddArrayToObject(out, "items");
    if (kl_store_list(api->st, r->rkey, t->has_ns ? t->ns : NULL, &items, &n) == 0) {
        for (size_t i = 0; i < n; i++)
            if (kla_sel_match(ls, fs, items[i]))
                cJSON_AddItemToArray(arr, cJSON_Duplicate(items[i], 1));
        free(items);
    }
    const cJSON *o;
    cJSON_ArrayForEach(o, arr)
    {
        const char *ns = jstr(meta(o), "namespace");
        kl_api_delete(api, r, ns ? ns : "", jstr(meta(o), "name"), q(req, "propagationPolicy"),
                      NULL);
    }
    klabels_free(ls);
    klabels_free(fs);
    kl_api_json(resp, 200, out);
}
