/* kube_api: paths, queries and the typed verbs. */
#include "kube_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbuf.h"
#include "kube_obj.h"

const kube_resource kube_res_pods = {"", "v1", "pods", "Pod", 1};
const kube_resource kube_res_events = {"", "v1", "events", "Event", 1};
const kube_resource kube_res_leases = {"coordination.k8s.io", "v1", "leases", "Lease", 1};
const kube_resource kube_res_configmaps = {"", "v1", "configmaps", "ConfigMap", 1};
const kube_resource kube_res_pvcs = {"", "v1", "persistentvolumeclaims", "PersistentVolumeClaim",
                                     1};

/* ---- path building ---- */

/* RFC 3986 unreserved characters pass; everything else is %XX. */
static void kbuf_esc(kbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            kbuf_add(b, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            kbuf_add(b, e, 3);
        }
    }
}

int kube_path(const kube_resource *r, const char *ns, const char *name, const char *sub, char **out)
{
    kbuf b = {0};
    if (r->group && r->group[0]) {
        kbuf_str(&b, "/apis/");
        kbuf_str(&b, r->group);
        kbuf_str(&b, "/");
    } else {
        kbuf_str(&b, "/api/");
    }
    kbuf_str(&b, r->version);
    if (r->namespaced && ns && ns[0]) {
        kbuf_str(&b, "/namespaces/");
        kbuf_esc(&b, ns);
    }
    kbuf_str(&b, "/");
    kbuf_str(&b, r->resource);
    if (name) {
        if (!name[0]) {
            free(b.p);
            return KILN_EINVAL;
        }
        kbuf_str(&b, "/");
        kbuf_esc(&b, name);
        if (sub) {
            kbuf_str(&b, "/");
            kbuf_str(&b, sub);
        }
    }
    if (b.oom) {
        free(b.p);
        return KILN_ENOMEM;
    }
    *out = b.p;
    return 0;
}

int kube_path_query(char **path, const char *k, const char *v)
{
    kbuf b = {.p = *path, .len = strlen(*path), .cap = strlen(*path) + 1};
    kbuf_str(&b, strchr(*path, '?') ? "&" : "?");
    kbuf_str(&b, k);
    kbuf_str(&b, "=");
    kbuf_esc(&b, v);
    if (b.oom)
        return KILN_ENOMEM; /* *path is still the caller's, unchanged */
    *path = b.p;
    return 0;
}

/* ---- helpers ---- */

static int parse_body(const kube_resp *resp, cJSON **out, kube_err *err)
{
    if (!out)
        return 0;
    cJSON *j = cJSON_ParseWithLength(resp->body, resp->len);
    if (!j)
        return kiln_fail(&err->e, KILN_ECORRUPT, "API reply is not JSON (%zu bytes)", resp->len);
    *out = j;
    return 0;
}

static int do_json(kube_client *c, const char *method, const char *path, const char *ctype,
                   const char *body, cJSON **out, kube_err *err)
{
    kube_resp resp;
    int rc = kube_client_request(c, method, path, ctype, body, body ? strlen(body) : 0, &resp, err);
    if (rc)
        return rc;
    rc = parse_body(&resp, out, err);
    kube_resp_release(&resp);
    return rc;
}

static const char *obj_ns(const kube_resource *r, const char *ns, const cJSON *obj)
{
    if (!r->namespaced)
        return NULL;
    if (ns && ns[0])
        return ns;
    return kube_obj_namespace(obj);
}

/* ---- verbs ---- */

int kube_get(kube_client *c, const kube_resource *r, const char *ns, const char *name, cJSON **out,
             kube_err *err)
{
    char *path;
    if (kube_path(r, ns, name ? name : "", NULL, &path))
        return kiln_fail(&err->e, KILN_EINVAL, "get %s: bad name", r->resource);
    int rc = do_json(c, "GET", path, NULL, NULL, out, err);
    free(path);
    return rc;
}

static int add_type_meta(const kube_resource *r, cJSON *item)
{
    char av[256];
    if (r->group && r->group[0])
        snprintf(av, sizeof av, "%s/%s", r->group, r->version);
    else
        snprintf(av, sizeof av, "%s", r->version);
    if (!cJSON_GetObjectItemCaseSensitive(item, "apiVersion") &&
        !cJSON_AddStringToObject(item, "apiVersion", av))
        return KILN_ENOMEM;
    if (r->kind && !cJSON_GetObjectItemCaseSensitive(item, "kind") &&
        !cJSON_AddStringToObject(item, "kind", r->kind))
        return KILN_ENOMEM;
    return 0;
}

int kube_list(kube_client *c, const kube_resource *r, const char *ns, const kube_list_opts *o,
              cJSON **items, char **rv, kube_err *err)
{
    kube_list_opts none = {0};
    if (!o)
        o = &none;
    char limit[32];
    snprintf(limit, sizeof limit, "%d", o->limit > 0 ? o->limit : 500);
    cJSON *all = cJSON_CreateArray();
    char *cont = NULL, *list_rv = NULL;
    int rc = 0;
    if (!all)
        return kiln_fail(&err->e, KILN_ENOMEM, "out of memory");
    for (int page = 0;; page++) {
        char *path = NULL;
        if (kube_path(r, ns, NULL, NULL, &path) ||
            (o->label_selector && o->label_selector[0] &&
             kube_path_query(&path, "labelSelector", o->label_selector)) ||
            (o->field_selector && o->field_selector[0] &&
             kube_path_query(&path, "fieldSelector", o->field_selector)) ||
            kube_path_query(&path, "limit", limit) ||
            (cont && kube_path_query(&path, "continue", cont)) ||
            (!cont && o->resource_version &&
             kube_path_query(&path, "resourceVersion", o->resource_version))) {
            free(path);
            rc = kiln_fail(&err->e, KILN_ENOMEM, "out of memory");
            break;
        }
        cJSON *lst = NULL;
        rc = do_json(c, "GET", path, NULL, NULL, &lst, err);
        free(path);
        if (rc)
            break;
        const cJSON *its = cJSON_GetObjectItemCaseSensitive(lst, "items");
        const char *lrv = cJSON_IsString(kube_obj_path(lst, "metadata.resourceVersion"))
                              ? kube_obj_path(lst, "metadata.resourceVersion")->valuestring
                              : NULL;
        const cJSON *ct = kube_obj_path(lst, "metadata.continue");
        if (!cJSON_IsArray(its) && !cJSON_IsNull(its) && its) {
            cJSON_Delete(lst);
            rc = kiln_fail(&err->e, KILN_ECORRUPT, "list %s: items is not an array", r->resource);
            break;
        }
        cJSON *it = cJSON_IsArray(its) ? its->child : NULL;
        while (it) {
            cJSON *next = it->next;
            cJSON *d = cJSON_DetachItemViaPointer((cJSON *)its, it);
            if (add_type_meta(r, d) || !cJSON_AddItemToArray(all, d)) {
                cJSON_Delete(d);
                rc = KILN_ENOMEM;
                break;
            }
            it = next;
        }
        free(list_rv);
        list_rv = lrv ? strdup(lrv) : NULL;
        free(cont);
        cont = cJSON_IsString(ct) && ct->valuestring[0] ? strdup(ct->valuestring) : NULL;
        int more = cJSON_IsString(ct) && ct->valuestring[0];
        cJSON_Delete(lst);
        if (rc || (lrv && !list_rv) || (more && !cont)) {
            rc = kiln_fail(&err->e, KILN_ENOMEM, "out of memory");
            break;
        }
        if (!more)
            break;
        if (page > 100000) {
            rc = kiln_fail(&err->e, KILN_EINTERNAL, "list %s: endless pagination", r->resource);
            break;
        }
    }
    free(cont);
    if (rc) {
        cJSON_Delete(all);
        free(list_rv);
        return rc;
    }
    *items = all;
    if (rv)
        *rv = list_rv;
    else
        free(list_rv);
    return 0;
}

static int write_obj(kube_client *c, const char *method, const kube_resource *r, const char *ns,
                     const cJSON *obj, const char *sub, cJSON **out, kube_err *err)
{
    const char *name = kube_obj_name(obj);
    if (strcmp(method, "POST") != 0 && !name)
        return kiln_fail(&err->e, KILN_EINVAL, "%s %s: object has no metadata.name", method,
                         r->resource);
    char *path, *body = cJSON_PrintUnformatted(obj);
    if (!body)
        return kiln_fail(&err->e, KILN_ENOMEM, "out of memory");
    if (kube_path(r, obj_ns(r, ns, obj), strcmp(method, "POST") ? name : NULL, sub, &path)) {
        free(body);
        return kiln_fail(&err->e, KILN_ENOMEM, "out of memory");
    }
    int rc = do_json(c, method, path, "application/json", body, out, err);
    free(path);
    free(body);
    return rc;
}

int kube_create(kube_client *c, const kube_resource *r, const char *ns, const cJSON *obj,
                cJSON **out, kube_err *err)
{
    return write_obj(c, "POST", r, ns, obj, NULL, out, err);
}

int kube_update(kube_client *c, const kube_resource *r, const char *ns, const cJSON *obj,
                cJSON **out, kube_err *err)
{
    return write_obj(c, "PUT", r, ns, obj, NULL, out, err);
}

int kube_update_status(kube_client *c, const kube_resource *r, const char *ns, const cJSON *obj,
                       cJSON **out, kube_err *err)
{
    return write_obj(c, "PUT", r, ns, obj, "status", out, err);
}

int kube_delete(kube_client *c, const kube_resource *r, const char *ns, const char *name,
                const kube_delete_opts *o, kube_err *err)
{
    char *path;
    if (!name || kube_path(r, ns, name, NULL, &path))
        return kiln_fail(&err->e, KILN_EINVAL, "delete %s: bad name", r->resource);
    cJSON *body = cJSON_CreateObject();
    int bad = !body || !cJSON_AddStringToObject(body, "kind", "DeleteOptions") ||
              !cJSON_AddStringToObject(body, "apiVersion", "v1");
    if (!bad && o && o->propagation)
        bad = !cJSON_AddStringToObject(body, "propagationPolicy", o->propagation);
    if (!bad && o && o->has_grace)
        bad = !cJSON_AddNumberToObject(body, "gracePeriodSeconds", o->grace_seconds);
    if (!bad && o && (o->precondition_uid || o->precondition_rv)) {
        cJSON *p = cJSON_AddObjectToObject(body, "preconditions");
        bad = !p ||
              (o->precondition_uid && !cJSON_AddStringToObject(p, "uid", o->precondition_uid)) ||
              (o->precondition_rv &&
               !cJSON_AddStringToObject(p, "resourceVersion", o->precondition_rv));
    }
    char *txt = bad ? NULL : cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    if (!txt) {
        free(path);
        return kiln_fail(&err->e, KILN_ENOMEM, "out of memory");
    }
    int rc = do_json(c, "DELETE", path, "application/json", txt, NULL, err);
    free(txt);
    free(path);
    return rc;
}

int kube_patch(kube_client *c, const kube_resource *r, const char *ns, const char *name,
               const char *sub, int type, const char *patch, cJSON **out, kube_err *err)
{
    const char *ct = type == KUBE_PATCH_JSON        ? "application/json-patch+json"
                     : type == KUBE_PATCH_STRATEGIC ? "application/strategic-merge-patch+json"
                                                    : "application/merge-patch+json";
    char *path;
    if (!name || kube_path(r, ns, name, sub, &path))
        return kiln_fail(&err->e, KILN_EINVAL, "patch %s: bad name", r->resource);
    int rc = do_json(c, "PATCH", path, ct, patch, out, err);
    free(path);
    return rc;
}

int kube_apply(kube_client *c, const kube_resource *r, const char *ns, const cJSON *obj,
               const char *field_manager, int force, cJSON **out, kube_err *err)
{
    const char *name = kube_obj_name(obj);
    if (!name || !field_manager || !field_manager[0])
        return kiln_fail(&err->e, KILN_EINVAL, "apply %s: needs metadata.name and a field manager",
                         r->resource);
    char *path = NULL, *body = cJSON_PrintUnformatted(obj);
    if (!body)
        return kiln_fail(&err->e, KILN_ENOMEM, "out of memory");
    if (kube_path(r, obj_ns(r, ns, obj), name, NULL, &path) ||
        kube_path_query(&path, "fieldManager", field_manager) ||
        (force && kube_path_query(&path, "force", "true"))) {
        free(path);
        free(body);
        return kiln_fail(&err->e, KILN_ENOMEM, "out of memory");
    }
    int rc = do_json(c, "PATCH", path, "application/apply-patch+yaml", body, out, err);
    free(path);
    free(body);
    return rc;
}
