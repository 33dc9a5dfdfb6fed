/* kl_api_write: gets and the writing verbs of kubelite's REST layer (part
 * of kl_api, see kl_api_int.h): create (generateName, server-owned
 * fields), update with resourceVersion preconditions and generation, the
 * status and scale subresources, the four patch types and server-side
 * apply, and the internal writes the controllers use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "kjson_patch.h"
#include "kl_api_int.h"
#include "kl_smp.h"
#include "kl_ssa.h"
#include "kl_schema.h"
#include "kl_table.h"
#include "ktime.h"


/* Everything but metadata (and status when it is a subresource). */
static int spec_equal(const kl_res *r, const cJSON *a, const cJSON *b)
{
    cJSON *ca = cJSON_Duplicate(a, 1), *cb = cJSON_Duplicate(b, 1);
    int eq = 0;
    if (ca && cb) {
        const char *drop[] = {"metadata", "status", "apiVersion", "kind"};
        for (int i = 0; i < 4; i++) {
            if (i == 1 && !r->has_status)
                continue;
            cJSON_DeleteItemFromObjectCaseSensitive(ca, drop[i]);
            cJSON_DeleteItemFromObjectCaseSensitive(cb, drop[i]);
        }
        eq = cJSON_Compare(ca, cb, 1);
    }
    cJSON_Delete(ca);
    cJSON_Delete(cb);
    return eq;
}

static void gen_name(char *buf, size_t n, const char *prefix)
{
    static const char A[] = "bcdfghjklmnpqrstvwxz2456789";
    unsigned char r[5];
    if (getrandom(r, 5, 0) != 5)
        memset(r, 7, 5);
    snprintf(buf, n, "%s%c%c%c%c%c", prefix, A[r[0] % 27], A[r[1] % 27], A[r[2] % 27],
             A[r[3] % 27], A[r[4] % 27]);
}

/* ---- writes ---- */

static int store_put(kl_api *api, const kl_res *r, cJSON *obj, kl_resp *resp)
{
    kiln_error err = {0};
    const char *ns = r->namespaced ? jstr(meta(obj), "namespace") : "";
    char name[256];
    snprintf(name, sizeof(name), "%s", jstr0(meta(obj), "name"));
    int rc = kl_store_put(api->st, r->rkey, ns, name, obj, &err);
    if (rc && resp)
        kl_api_status(resp, 500, "InternalError", NULL, NULL, NULL, "storage: %s", err.msg);
    return rc;
}

/* The API server serializes ObjectMeta's lists and maps with omitempty:
 * emptied finalizers, ownerReferences, labels or annotations are gone from
 * the stored object, not [] or {} (clients read "" through jsonpath). */
static void drop_empty_meta(cJSON *md)
{
    static const char *const fields[] = {"finalizers", "ownerReferences", "labels", "annotations"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(md, fields[i]);
        if (v && (cJSON_IsNull(v) || ((cJSON_IsArray(v) || cJSON_IsObject(v)) && !v->child)))
            cJSON_DeleteItemFromObjectCaseSensitive(md, fields[i]);
    }
}

int kl_api_write(kl_api *api, kl_res *r, cJSON *obj, kiln_error *err)
{
    cJSON *md = meta(obj);
    if (!md || !jstr(md, "name")) {
        cJSON_Delete(obj);
        return kiln_fail(err, KILN_EINVAL, "object without a name");
    }
    if (!jstr(md, "uid")) {
        char uid[40];
        kl_new_uid(uid, sizeof(uid));
        cJSON_AddStringToObject(md, "uid", uid);
    }
    if (!jstr(md, "creationTimestamp")) {
        char now[KTIME_BUFSZ];
        kl_now_str(now, sizeof(now), 0);
        jset_str(md, "creationTimestamp", now);
    }
    if (r->track_generation && !cJSON_GetObjectItemCaseSensitive(md, "generation"))
        cJSON_AddNumberToObject(md, "generation", 1);
    drop_empty_meta(md);
    const char *ns = r->namespaced ? jstr(md, "namespace") : "";
    char name[256];
    snprintf(name, sizeof(name), "%s", jstr0(md, "name"));
    return kl_store_put(api->st, r->rkey, ns ? ns : "", name, obj, err);
}

/* Writes an updated object: server fields from cur, generation, finalizer
 * completion, CRD registration. Takes obj. code: reply code on success. */
static void finish_update(kl_api *api, kl_res *r, const cJSON *cur, cJSON *obj, int status_only,
                          const kl_req *req, kl_resp *resp)
{
    const char *name = jstr(meta(cur), "name");
    cJSON *md = meta(obj);
    if (!cJSON_IsObject(md)) {
        cJSON_DeleteItemFromObjectCaseSensitive(obj, "metadata");
        md = cJSON_AddObjectToObject(obj, "metadata");
    }
    const cJSON *cmd = meta(cur);
    /* Precondition: a resourceVersion in the body must match. */
    const char *brv = jstr(md, "resourceVersion");
    const char *crv = jstr(cmd, "resourceVersion");
    if (brv && brv[0] && crv && strcmp(brv, crv) != 0) {
        cJSON_Delete(obj);
        kla_conflict(resp, r, name);
        return;
    }
    if (status_only) {
        /* Only status changes; everything else comes from the stored object. */
        cJSON *ns = cJSON_Duplicate(cur, 1);
        cJSON *st = cJSON_DetachItemFromObjectCaseSensitive(obj, "status");
        cJSON_DeleteItemFromObjectCaseSensitive(ns, "status");
        if (st)
            cJSON_AddItemToObject(ns, "status", st);
        cJSON_Delete(obj);
        obj = ns;
        md = meta(obj);
    } else if (r->has_status) {
        cJSON_DeleteItemFromObjectCaseSensitive(obj, "status");
        const cJSON *cst = cJSON_GetObjectItemCaseSensitive(cur, "status");
        if (cst)
            cJSON_AddItemToObject(obj, "status", cJSON_Duplicate(cst, 1));
    }
    /* Server-owned metadata. */
    const char *keep[] = {"uid", "creationTimestamp", "deletionTimestamp",
                          "deletionGracePeriodSeconds", "generation", "name", "namespace"};
    for (int i = 0; i < 7; i++) {
        cJSON_DeleteItemFromObjectCaseSensitive(md, keep[i]);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cmd, keep[i]);
        if (v)
            cJSON_AddItemToObject(md, keep[i], cJSON_Duplicate(v, 1));
    }
    drop_empty_meta(md);
    if (!jstr(obj, "apiVersion") || !jstr(obj, "kind")) {
        char av[256];
        jset_str(obj, "apiVersion", kl_res_api_version(r, av, sizeof(av)));
        jset_str(obj, "kind", r->kind);
    }
    int deleting = cJSON_GetObjectItemCaseSensitive(cmd, "deletionTimestamp") != NULL;
    if (deleting && !status_only) {
        /* No new finalizers once deletion started. */
        const cJSON *f;
        const cJSON *old = cJSON_GetObjectItemCaseSensitive(cmd, "finalizers");
        cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(md, "finalizers"))
        {
            int found = 0;
            const cJSON *o;
            cJSON_ArrayForEach(o, old) found |= cJSON_Compare(o, f, 1);
            if (!found) {
                cJSON_Delete(obj);
                kla_invalid1(resp, r, name, "FieldValueForbidden", "metadata.finalizers",
                         "Forbidden: no new finalizers can be added if the object is being deleted");
                return;
            }
        }
    }
    if (!status_only && kla_admit(api, r, cur, obj, req, resp) != 0) {
        cJSON_Delete(obj);
        return;
    }
    if (r->track_generation && !spec_equal(r, cur, obj)) {
        cJSON *g = cJSON_GetObjectItemCaseSensitive(md, "generation");
        if (cJSON_IsNumber(g))
            cJSON_SetNumberValue(g, g->valuedouble + 1);
    }
    const char *ct = req->content_type ? req->content_type : "";
    if (strncmp(ct, "application/apply-patch", 23) != 0 && !status_only) {
        char av[256];
        kl_ssa_track_update(cur, obj, q(req, "fieldManager"), kl_res_api_version(r, av, sizeof(av)),
                            r->has_status);
    }
    if (qbool(req, "dryRun") || (q(req, "dryRun") && !strcmp(q(req, "dryRun"), "All"))) {
        kl_api_json(resp, 200, obj);
        return;
    }
    if (deleting && !has_finalizers(obj) && !(r->builtin && !strcmp(r->kind, "Namespace"))) {
        /* The last finalizer is gone: the object goes away. */
        char ns[256], nm[256];
        snprintf(ns, sizeof(ns), "%s", r->namespaced ? jstr(md, "namespace") : "");
        snprintf(nm, sizeof(nm), "%s", name);
        if (r->builtin && !strcmp(r->kind, "CustomResourceDefinition"))
            kla_crd_cleanup(api, cur);
        kl_store_del(api->st, r->rkey, ns, nm, NULL);
        kl_api_json(resp, 200, obj);
        return;
    }
    cJSON *copy = cJSON_Duplicate(obj, 1);
    int is_crd = r->builtin && !strcmp(r->kind, "CustomResourceDefinition");
    if (store_put(api, r, obj, resp) != 0) {
        cJSON_Delete(copy);
        return;
    }
    const cJSON *stored = kl_store_get(api->st, r->rkey, r->namespaced ? jstr(meta(copy), "namespace") : "", name);
    cJSON_Delete(copy);
    if (is_crd && stored)
        kl_reg_add_crd(api->reg, stored, NULL);
    kla_json_stored(api, resp, 200, stored);
}

/* ---- create ---- */

static int ns_check(kl_api *api, const kl_res *r, const char *ns, kl_resp *resp)
{
    if (!r->namespaced)
        return 0;
    kl_res *nsr = kl_api_res(api, "", "namespaces");
    const cJSON *n = kl_store_get(api->st, nsr->rkey, "", ns);
    if (!n) {
        kl_api_status(resp, 404, "NotFound", ns, "", "namespaces", "namespaces \"%s\" not found",
                      ns);
        return -1;
    }
    if (cJSON_GetObjectItemCaseSensitive(meta(n), "deletionTimestamp")) {
        kl_api_status(resp, 403, "Forbidden", NULL, NULL, NULL,
                      "unable to create new content in namespace %s because it is being "
                      "terminated",
                      ns);
        return -1;
    }
    return 0;
}

/* Checks kind/apiVersion/namespace of a body against the URL. */
static int body_check(const kl_res *r, const target *t, cJSON *obj, kl_resp *resp)
{
    char av[256];
    kl_res_api_version(r, av, sizeof(av));
    const char *k = jstr(obj, "kind"), *a = jstr(obj, "apiVersion");
    if ((k && strcmp(k, r->kind) != 0) || (a && strcmp(a, av) != 0)) {
        kla_bad_request(resp, "the API version in the data (%s) does not match the expected API "
                    "version (%s)", a ? a : "", av);
        if (k && strcmp(k, r->kind) != 0)
            kla_bad_request(resp, "%s in version \"%s\" cannot be handled as a %s: the object kind "
                        "\"%s\" does not match", k, r->version, r->kind, k);
        return -1;
    }
    jset_str(obj, "apiVersion", av);
    jset_str(obj, "kind", r->kind);
    cJSON *md = meta(obj);
    if (!cJSON_IsObject(md)) {
        cJSON_DeleteItemFromObjectCaseSensitive(obj, "metadata");
        md = cJSON_AddObjectToObject(obj, "metadata");
    }
    if (r->namespaced) {
        const char *ns = jstr(md, "namespace");
        if (ns && ns[0] && t->has_ns && strcmp(ns, t->ns) != 0) {
            kla_bad_request(resp, "the namespace of the provided object does not match the namespace "
                        "sent on the request");
            return -1;
        }
        if (t->has_ns)
            jset_str(md, "namespace", t->ns);
    } else {
        cJSON_DeleteItemFromObjectCaseSensitive(md, "namespace");
    }
    return 0;
}

static void do_create_obj(kl_api *api, const target *t, cJSON *obj, const kl_req *req,
                          kl_resp *resp, int code)
{
    kl_res *r = t->res;
    if (body_check(r, t, obj, resp)) {
        cJSON_Delete(obj);
        return;
    }
    cJSON *md = meta(obj);
    if (r->namespaced && !jstr(md, "namespace")) {
        kl_api_status(resp, 400, "BadRequest", NULL, NULL, NULL, "namespace is required");
        cJSON_Delete(obj);
        return;
    }
    const char *name = jstr(md, "name");
    if (!name || !name[0]) {
        const char *gn = jstr(md, "generateName");
        if (gn && gn[0]) {
            char nb[300];
            for (int tries = 0; tries < 10; tries++) {
                gen_name(nb, sizeof(nb), gn);
                if (!kl_store_get(api->st, r->rkey, r->namespaced ? jstr(md, "namespace") : "", nb))
                    break;
            }
            jset_str(md, "name", nb);
            name = jstr(md, "name");
        } else {
            kla_invalid1(resp, r, "", "FieldValueRequired", "metadata.name",
                     "Required value: name or generateName is required");
            cJSON_Delete(obj);
            return;
        }
    }
    if (strlen(name) > 253 || strchr(name, '/') || strchr(name, '\t') || strchr(name, '\n') ||
        strchr(name, ' ')) {
        kla_invalid1(resp, r, name, "FieldValueInvalid", "metadata.name",
                 "Invalid value: a lowercase RFC 1123 subdomain must consist of lower case "
                 "alphanumeric characters, '-' or '.'");
        cJSON_Delete(obj);
        return;
    }
    const char *ns = r->namespaced ? jstr(md, "namespace") : "";
    if (ns_check(api, r, ns, resp)) {
        cJSON_Delete(obj);
        return;
    }
    if (kl_store_get(api->st, r->rkey, ns, name)) {
        char qn[300];
        kla_qualified(r, qn, sizeof(qn));
        kl_api_status(resp, 409, "AlreadyExists", name, r->group, r->plural,
                      "%s \"%s\" already exists", qn, name);
        cJSON_Delete(obj);
        return;
    }
    /* Server-owned fields. */
    const char *drop[] = {"uid", "resourceVersion", "deletionTimestamp",
                          "deletionGracePeriodSeconds", "generation", "creationTimestamp",
                          "selfLink"};
    for (int i = 0; i < 7; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(md, drop[i]);
    char uid[40], now[KTIME_BUFSZ];
    kl_new_uid(uid, sizeof(uid));
    kl_now_str(now, sizeof(now), 0);
    cJSON_AddStringToObject(md, "uid", uid);
    cJSON_AddStringToObject(md, "creationTimestamp", now);
    if (r->track_generation)
        cJSON_AddNumberToObject(md, "generation", 1);
    drop_empty_meta(md);
    if (r->has_status && !(r->builtin && (!strcmp(r->kind, "Namespace") ||
                                          !strcmp(r->kind, "PersistentVolumeClaim") ||
                                          !strcmp(r->kind, "Node"))))
        cJSON_DeleteItemFromObjectCaseSensitive(obj, "status");
    if (kla_admit(api, r, NULL, obj, req, resp) != 0) {
        cJSON_Delete(obj);
        return;
    }
    const char *ctype = req->content_type ? req->content_type : "";
    if (strncmp(ctype, "application/apply-patch", 23) != 0) {
        char av[256];
        kl_ssa_track_update(NULL, obj, q(req, "fieldManager"), kl_res_api_version(r, av, sizeof(av)),
                            r->has_status);
    }
    if (dry_run(req)) {
        kl_api_json(resp, code, obj);
        return;
    }
    char nsb[256], nmb[256];
    snprintf(nsb, sizeof(nsb), "%s", ns ? ns : "");
    snprintf(nmb, sizeof(nmb), "%s", name);
    int is_crd = r->builtin && !strcmp(r->kind, "CustomResourceDefinition");
    if (store_put(api, r, obj, resp) != 0)
        return;
    const cJSON *stored = kl_store_get(api->st, r->rkey, nsb, nmb);
    if (is_crd)
        kl_reg_add_crd(api->reg, stored, NULL);
    kla_json_stored(api, resp, code, stored);
    snprintf(resp->created, sizeof(resp->created), "%s", nmb);
}

int kl_api_create(kl_api *api, kl_res *r, cJSON *obj, kiln_error *err)
{
    target t;
    memset(&t, 0, sizeof(t));
    t.res = r;
    const char *ns = jstr(meta(obj), "namespace");
    if (r->namespaced && ns) {
        t.has_ns = 1;
        snprintf(t.ns, sizeof(t.ns), "%s", ns);
    }
    kl_req req;
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.path = "";
    kl_resp resp;
    memset(&resp, 0, sizeof(resp));
    do_create_obj(api, &t, obj, &req, &resp, 201);
    int rc = resp.code == 201 ? 0 : kiln_fail(err, KILN_EAPI, "create: %.200s", resp.body ? resp.body : "");
    kl_resp_release(&resp);
    return rc;
}

void kla_create(kl_api *api, const target *t, const kl_req *req, kl_resp *resp)
{
    cJSON *obj = kla_decode_body(req, resp);
    if (!obj)
        return;
    if (!cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        kla_bad_request(resp, "the body of the request must be a JSON object");
        return;
    }
    do_create_obj(api, t, obj, req, resp, 201);
}

/* ---- get, update, patch, scale ---- */

/* Scale subresource view of an object. */
static cJSON *to_scale(const kl_res *r, const cJSON *obj)
{
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "kind", "Scale");
    cJSON_AddStringToObject(s, "apiVersion", "autoscaling/v1");
    cJSON *md = cJSON_AddObjectToObject(s, "metadata");
    const char *keys[] = {"name", "namespace", "uid", "resourceVersion", "creationTimestamp"};
    for (int i = 0; i < 5; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta(obj), keys[i]);
        if (v)
            cJSON_AddItemToObject(md, keys[i], cJSON_Duplicate(v, 1));
    }
    const cJSON *sp = r->scale_spec ? kl_table_jsonpath(obj, r->scale_spec) : NULL;
    const cJSON *st = r->scale_status ? kl_table_jsonpath(obj, r->scale_status) : NULL;
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(s, "spec"), "replicas",
                            cJSON_IsNumber(sp) ? sp->valuedouble : 0);
    cJSON *sst = cJSON_AddObjectToObject(s, "status");
    cJSON_AddNumberToObject(sst, "replicas", cJSON_IsNumber(st) ? st->valuedouble : 0);
    const cJSON *sel = r->scale_selector ? kl_table_jsonpath(obj, r->scale_selector) : NULL;
    if (cJSON_IsString(sel))
        cJSON_AddStringToObject(sst, "selector", sel->valuestring);
    else if (cJSON_IsObject(sel)) {
        char buf[1024] = "";
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(sel, "matchLabels"))
        {
            size_t l = strlen(buf);
            if (cJSON_IsString(e))
                snprintf(buf + l, sizeof(buf) - l, "%s%s=%s", l ? "," : "", e->string,
                         e->valuestring);
        }
        cJSON_AddStringToObject(sst, "selector", buf);
    }
    return s;
}

/* Writes replicas from a Scale into a copy of obj at the spec path. */
static cJSON *from_scale(const kl_res *r, const cJSON *obj, const cJSON *scale)
{
    cJSON *o = cJSON_Duplicate(obj, 1);
    const cJSON *rep = kl_table_jsonpath(scale, ".spec.replicas");
    if (!o || !cJSON_IsNumber(rep) || !r->scale_spec)
        return o;
    /* Walk/create ".a.b.c" */
    char path[256];
    snprintf(path, sizeof(path), "%s", r->scale_spec + 1);
    cJSON *cur = o;
    char *save = NULL;
    char *tok = strtok_r(path, ".", &save);
    while (tok) {
        char *next = strtok_r(NULL, ".", &save);
        if (!next) {
            jset(cur, tok, cJSON_CreateNumber(rep->valuedouble));
            break;
        }
        cur = jobj(cur, tok);
        tok = next;
    }
    return o;
}

void kla_get(kl_api *api, const target *t, const kl_req *req, kl_resp *resp)
{
    kl_res *r = t->res;
    const cJSON *o = kl_store_get(api->st, r->rkey, t->ns, t->name);
    if (!o) {
        kla_not_found(resp, r, t->name);
        return;
    }
    if (!strcmp(t->sub, "scale")) {
        kl_api_json(resp, 200, to_scale(r, o));
        return;
    }
    kla_reply_obj(resp, 200, r, o, req);
}

void kla_update(kl_api *api, const target *t, const kl_req *req, kl_resp *resp)
{
    kl_res *r = t->res;
    cJSON *obj = kla_decode_body(req, resp);
    if (!obj)
        return;
    const cJSON *cur = kl_store_get(api->st, r->rkey, t->ns, t->name);
    if (!cur) {
        cJSON_Delete(obj);
        kla_not_found(resp, r, t->name);
        return;
    }
    if (!strcmp(t->sub, "scale")) {
        const char *brv = jstr(meta(obj), "resourceVersion");
        cJSON *n = from_scale(r, cur, obj);
        cJSON_Delete(obj);
        if (brv && brv[0])
            jset_str(meta(n), "resourceVersion", brv);
        finish_update(api, r, cur, n, 0, req, resp);
        if (resp->code == 200) {
            const cJSON *s = kl_store_get(api->st, r->rkey, t->ns, t->name);
            if (s)
                kl_api_json(resp, 200, to_scale(r, s));
        }
        return;
    }
    if (!strcmp(t->sub, "finalize")) {
        cJSON *n = cJSON_Duplicate(cur, 1);
        jset(n, "spec", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(obj, "spec"), 1));
        cJSON_Delete(obj);
        finish_update(api, r, cur, n, 0, req, resp);
        return;
    }
    if (body_check(r, t, obj, resp)) {
        cJSON_Delete(obj);
        return;
    }
    const char *bname = jstr(meta(obj), "name");
    if (bname && strcmp(bname, t->name) != 0) {
        cJSON_Delete(obj);
        kla_bad_request(resp, "the name of the object (%s) does not match the name on the URL (%s)",
                    bname, t->name);
        return;
    }
    const char *brv = jstr(meta(obj), "resourceVersion");
    if ((!brv || !brv[0]) && !r->builtin) {
        cJSON_Delete(obj);
        kla_invalid1(resp, r, t->name, "FieldValueInvalid", "metadata.resourceVersion",
                 "Invalid value: 0x0: must be specified for an update");
        return;
    }
    finish_update(api, r, cur, obj, !strcmp(t->sub, "status"), req, resp);
}

static const char *PATCH_TYPES =
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

void kla_patch(kl_api *api, const target *t, const kl_req *req, kl_resp *resp)
{
    kl_res *r = t->res;
    const char *ct = req->content_type ? req->content_type : "";
    int merge = !strncmp(ct, "application/merge-patch+json", 28);
    int jsonp = !strncmp(ct, "application/json-patch+json", 27);
    int smp = !strncmp(ct, "application/strategic-merge-patch+json", 38);
    int apply = !strncmp(ct, "application/apply-patch+yaml", 28);
    if (!(merge || jsonp || smp || apply) || (smp && !r->builtin)) {
        kl_api_status(resp, 415, "UnsupportedMediaType", NULL, NULL, NULL,
                      "the body of the request was in an unknown format - accepted media types "
                      "include: %s%s",
                      PATCH_TYPES, r->builtin ? ", application/strategic-merge-patch+json" : "");
        return;
    }
    cJSON *patch = cJSON_ParseWithLength(req->body ? req->body : "", req->body_len);
    if (!patch) {
        kla_bad_request(resp, "error decoding patch: invalid JSON");
        return;
    }
    if ((merge || smp || apply) && !cJSON_IsObject(patch)) {
        cJSON_Delete(patch);
        kla_bad_request(resp, "error decoding patch: json: cannot unmarshal array into Go value of "
                    "type map[string]interface {}");
        return;
    }
    if (apply && !q(req, "fieldManager")) {
        cJSON_Delete(patch);
        kla_bad_request(resp, "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required "
                    "value: is required for apply patch");
        return;
    }
    const cJSON *cur = kl_store_get(api->st, r->rkey, t->ns, t->name);
    if (apply && !t->sub[0]) {
        /* Server-side apply: field ownership, conflicts, removals. */
        char av[256];
        kl_strs conf = {0};
        cJSON *doc = NULL;
        kiln_error err = {0};
        if (!jstr(meta(patch), "name"))
            jset_str(jobj(patch, "metadata"), "name", t->name);
        int rc = kl_ssa_apply(cur, patch, q(req, "fieldManager"), qbool(req, "force"), r->builtin,
                              r->has_status, kl_res_api_version(r, av, sizeof(av)), &doc, &conf, &err);
        cJSON_Delete(patch);
        if (rc == KILN_ECONFLICT) {
            kstatus s;
            kstatus_init(&s);
            char msg[2048];
            size_t l = (size_t)snprintf(msg, sizeof(msg), "Apply failed with %zu conflict%s: ",
                                        conf.n, conf.n == 1 ? "" : "s");
            for (size_t i = 0; i < conf.n; i++) {
                char *tab = strchr(conf.v[i], '\t');
                if (!tab)
                    continue;
                *tab = 0;
                char cm[700];
                snprintf(cm, sizeof(cm), "conflict with \"%s\" using %s", conf.v[i], av);
                kstatus_add_cause(&s, "FieldManagerConflict", cm, tab + 1);
                if (l < sizeof(msg))
                    l += (size_t)snprintf(msg + l, sizeof(msg) - l, "%s%s: %s", i ? "\n" : "", cm,
                                          tab + 1);
            }
            kstatus_setf(&s, 409, "Conflict", "%s", msg);
            kl_api_json(resp, 409, kstatus_to_json(&s));
            kstatus_release(&s);
            kl_schema_strs_free(&conf);
            return;
        }
        kl_schema_strs_free(&conf);
        if (rc) {
            kla_bad_request(resp, "%s", err.msg[0] ? err.msg : "apply failed");
            return;
        }
        if (!cur) {
            cJSON_DeleteItemFromObjectCaseSensitive(meta(doc), "resourceVersion");
            do_create_obj(api, t, doc, req, resp, 201);
            return;
        }
        const char *crv = jstr(meta(cur), "resourceVersion");
        jset_str(meta(doc), "resourceVersion", crv ? crv : "");
        finish_update(api, r, cur, doc, 0, req, resp);
        return;
    }
    if (!cur) {
        cJSON_Delete(patch);
        kla_not_found(resp, r, t->name);
        return;
    }
    cJSON *doc = !strcmp(t->sub, "scale") ? to_scale(r, cur) : cJSON_Duplicate(cur, 1);
    kiln_error err = {0};
    int rc;
    if (jsonp)
        rc = kjson_patch_apply(&doc, patch, &err);
    else if (smp || (apply && r->builtin))
        rc = kl_smp_apply(&doc, patch, &err);
    else
        rc = kjson_merge_patch(&doc, patch, &err);
    cJSON_Delete(patch);
    if (rc == KILN_ECONFLICT) {
        cJSON_Delete(doc);
        kl_api_status(resp, 422, "Invalid", t->name, r->group, r->kind, "%s", err.msg);
        return;
    }
    if (rc) {
        cJSON_Delete(doc);
        kla_bad_request(resp, "%s", err.msg[0] ? err.msg : "invalid patch");
        return;
    }
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        kla_bad_request(resp, "the patch produced something other than an object");
        return;
    }
    if (!strcmp(t->sub, "scale")) {
        cJSON *n = from_scale(r, cur, doc);
        cJSON_Delete(doc);
        finish_update(api, r, cur, n, 0, req, resp);
        if (resp->code == 200) {
            const cJSON *s = kl_store_get(api->st, r->rkey, t->ns, t->name);
            if (s)
                kl_api_json(resp, 200, to_scale(r, s));
        }
        return;
    }
    /* Without an RV in the patch, the patch applies to the latest version. */
    const char *prv = jstr(meta(doc), "resourceVersion");
    const char *crv = jstr(meta(cur), "resourceVersion");
    if (!prv && crv)
        jset_str(meta(doc), "resourceVersion", crv);
    if (apply)
        jset_str(meta(doc), "resourceVersion", crv ? crv : "");
    finish_update(api, r, cur, doc, !strcmp(t->sub, "status"), req, resp);
}
