/* kl_api_list: the read side of kubelite's REST layer (part of kl_api, see
 * kl_api_int.h): label and field selectors, lists with pagination and
 * Table output, and watches: initial events, events from the store's
 * history ring, bookmarks, 410 Gone and timeouts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbuf.h"
#include "kl_api_int.h"
#include "kl_table.h"
#include "ktime.h"

struct kl_watch {
    char *group, *version, *plural, *rkey;
    char av[256]; /* apiVersion served to this watcher */
    char *ns; /* NULL: all namespaces */
    klabels_sel *lsel, *fsel;
    uint64_t cursor;
    int table, cols_sent, bookmarks, ws;
    int64_t deadline_ms, last_bookmark_ms;
    cJSON *initial;
    int init_idx;
    char *error_line;
    unsigned epoch;
    int initial_end; /* sendInitialEvents: bookmark after the initial ADDED events */
};

static const char *JSON = "application/json";

/* ---- selectors ---- */

static const char *field_get(void *ctx, const char *key)
{
    char path[300];
    snprintf(path, sizeof(path), ".%s", key);
    const cJSON *v = kl_table_jsonpath(ctx, path);
    if (cJSON_IsString(v))
        return v->valuestring;
    if (!strcmp(key, "metadata.namespace") || !strcmp(key, "spec.nodeName"))
        return "";
    return NULL;
}

int kla_sel_match(const klabels_sel *l, const klabels_sel *f, const cJSON *obj)
{
    if (l && !klabels_match_labels(l, cJSON_GetObjectItemCaseSensitive(meta(obj), "labels")))
        return 0;
    if (f && !klabels_match(f, field_get, (void *)obj))
        return 0;
    return 1;
}

int kla_parse_sels(const kl_req *req, klabels_sel **l, klabels_sel **f, kl_resp *resp)
{
    *l = *f = NULL;
    kiln_error err = {0};
    const char *ls = q(req, "labelSelector"), *fs = q(req, "fieldSelector");
    if (ls && klabels_parse(ls, KLABELS_LABEL, l, &err) != 0) {
        kla_bad_request(resp, "unable to parse requirement: %s", err.msg);
        return -1;
    }
    if (fs && klabels_parse(fs, KLABELS_FIELD, f, &err) != 0) {
        klabels_free(*l);
        *l = NULL;
        kla_bad_request(resp, "invalid field selector: %s", err.msg);
        return -1;
    }
    return 0;
}

/* conversion strategy None: only apiVersion changes between versions. */
cJSON *kla_as_version(const kl_res *r, const cJSON *obj)
{
    cJSON *c = cJSON_Duplicate(obj, 1);
    if (c && r->crd_name) {
        char av[256];
        jset_str(c, "apiVersion", kl_res_api_version(r, av, sizeof(av)));
    }
    return c;
}

void kla_reply_obj(kl_resp *resp, int code, const kl_res *r, const cJSON *obj,
                      const kl_req *req)
{
    if (wants_table(req) && code == 200) {
        const cJSON *one[1] = {obj};
        kl_api_json(resp, 200, kl_table_build(r, one, 1, 1, q(req, "includeObject"),
                                              ktime_now().sec));
        return;
    }
    kl_api_json(resp, code, kla_as_version(r, obj));
}

/* ---- list ---- */

static void hexenc(const char *s, char *out, size_t n)
{
    size_t j = 0;
    for (; *s && j + 3 < n; s++)
        j += (size_t)snprintf(out + j, n - j, "%02x", (unsigned char)*s);
    out[j] = 0;
}

/* Orders (ns, name) against a continue key "ns/name" the way the store
 * sorts lists: by namespace, then name. Comparing the joined strings would
 * put "a-b/x" before "a/y" ('-' sorts before '/') and skip or repeat
 * objects across pages. */
static int key_cmp(const char *ns, const char *name, const char *key)
{
    const char *sl = strchr(key, '/');
    size_t kl = sl ? (size_t)(sl - key) : strlen(key);
    size_t nl = strlen(ns);
    int c = strncmp(ns, key, nl < kl ? nl : kl);
    if (c)
        return c;
    if (nl != kl)
        return nl < kl ? -1 : 1;
    return strcmp(name, sl ? sl + 1 : "");
}

static void hexdec(const char *s, char *out, size_t n)
{
    size_t j = 0;
    unsigned v;
    while (s[0] && s[1] && j + 1 < n && sscanf(s, "%2x", &v) == 1) {
        out[j++] = (char)v;
        s += 2;
    }
    out[j] = 0;
}

void kla_list(kl_api *api, const target *t, const kl_req *req, kl_resp *resp)
{
    kl_res *r = t->res;
    klabels_sel *ls, *fs;
    if (kla_parse_sels(req, &ls, &fs, resp))
        return;
    const cJSON **items;
    size_t n;
    if (kl_store_list(api->st, r->rkey, t->has_ns ? t->ns : NULL, &items, &n) != 0) {
        kl_api_status(resp, 500, "InternalError", NULL, NULL, NULL, "out of memory");
        klabels_free(ls);
        klabels_free(fs);
        return;
    }
    long limit = q(req, "limit") ? strtol(q(req, "limit"), NULL, 10) : 0;
    const char *cont = q(req, "continue");
    char after[520] = "";
    uint64_t list_rv = kl_store_rv(api->st);
    if (cont && cont[0]) {
        const char *dash = strchr(cont, '-');
        if (cont[0] != 'c' || !dash) {
            free(items);
            klabels_free(ls);
            klabels_free(fs);
            kla_bad_request(resp, "continue key is not valid");
            return;
        }
        list_rv = strtoull(cont + 1, NULL, 10);
        hexdec(dash + 1, after, sizeof(after));
    }
    const char *lrv = q(req, "resourceVersion");
    if (lrv && lrv[0] && !(cont && cont[0]) && strtoull(lrv, NULL, 10) > kl_store_rv(api->st)) {
        free(items);
        klabels_free(ls);
        klabels_free(fs);
        kstatus s;
        kstatus_init(&s);
        kstatus_setf(&s, 504, "Timeout", "Too large resource version: %s, current: %llu", lrv,
                     (unsigned long long)kl_store_rv(api->st));
        kstatus_add_cause(&s, "ResourceVersionTooLarge", "Too large resource version", NULL);
        s.retry_after_seconds = 1;
        kl_api_json(resp, 504, kstatus_to_json(&s));
        kstatus_release(&s);
        return;
    }
    const cJSON **sel = n ? malloc(n * sizeof(*sel)) : NULL;
    size_t k = 0;
    char next_key[520] = "";
    int more = 0;
    for (size_t i = 0; i < n; i++) {
        const char *ns = jstr(meta(items[i]), "namespace");
        char key[520];
        snprintf(key, sizeof(key), "%s/%s", ns ? ns : "", jstr(meta(items[i]), "name"));
        if (after[0] && key_cmp(ns ? ns : "", jstr0(meta(items[i]), "name"), after) <= 0)
            continue;
        if (!kla_sel_match(ls, fs, items[i]))
            continue;
        if (limit > 0 && (long)k == limit) {
            more = 1;
            break;
        }
        sel[k++] = items[i];
        snprintf(next_key, sizeof(next_key), "%s", key);
    }
    char rvs[32], tok[1200] = "";
    snprintf(rvs, sizeof(rvs), "%llu", (unsigned long long)list_rv);
    if (more) {
        char hx[1100];
        hexenc(next_key, hx, sizeof(hx));
        snprintf(tok, sizeof(tok), "c%llu-%s", (unsigned long long)list_rv, hx);
    }
    cJSON *out;
    if (wants_table(req)) {
        out = kl_table_build(r, sel, k, 1, q(req, "includeObject"), ktime_now().sec);
    } else {
        out = cJSON_CreateObject();
        char av[256];
        cJSON_AddStringToObject(out, "kind", r->list_kind);
        cJSON_AddStringToObject(out, "apiVersion", kl_res_api_version(r, av, sizeof(av)));
        cJSON_AddObjectToObject(out, "metadata");
        cJSON *arr = cJSON_AddArrayToObject(out, "items");
        for (size_t i = 0; i < k; i++)
            cJSON_AddItemToArray(arr, kla_as_version(r, sel[i]));
    }
    cJSON *md = meta(out);
    cJSON_AddStringToObject(md, "resourceVersion", rvs);
    if (tok[0])
        cJSON_AddStringToObject(md, "continue", tok);
    free(sel);
    free(items);
    klabels_free(ls);
    klabels_free(fs);
    kl_api_json(resp, 200, out);
}

/* ---- watch ---- */

void kl_watch_free(kl_watch *w)
{
    if (!w)
        return;
    free(w->group);
    free(w->version);
    free(w->plural);
    free(w->rkey);
    free(w->ns);
    klabels_free(w->lsel);
    klabels_free(w->fsel);
    cJSON_Delete(w->initial);
    free(w->error_line);
    free(w);
}

void kl_watch_set_ws(kl_watch *w, int ws)
{
    w->ws = ws;
}

int kl_watch_is_ws(const kl_watch *w)
{
    return w->ws;
}

static char *status_line(int code, const char *reason, const char *msg)
{
    kstatus s;
    kstatus_init(&s);
    kstatus_setf(&s, code, reason, "%s", msg);
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", "ERROR");
    cJSON_AddItemToObject(ev, "object", kstatus_to_json(&s));
    kstatus_release(&s);
    char *js = cJSON_PrintUnformatted(ev);
    cJSON_Delete(ev);
    return js;
}

void kla_watch(kl_api *api, const target *t, const kl_req *req, kl_resp *resp)
{
    kl_res *r = t->res;
    kl_watch *w = calloc(1, sizeof(*w));
    if (!w) {
        kl_api_status(resp, 500, "InternalError", NULL, NULL, NULL, "out of memory");
        return;
    }
    if (kla_parse_sels(req, &w->lsel, &w->fsel, resp)) {
        free(w);
        return;
    }
    w->group = strdup(r->group);
    w->version = strdup(r->version);
    w->plural = strdup(r->plural);
    w->rkey = strdup(r->rkey);
    kl_res_api_version(r, w->av, sizeof(w->av));
    if (t->has_ns)
        w->ns = strdup(t->ns);
    w->table = wants_table(req);
    w->bookmarks = qbool(req, "allowWatchBookmarks");
    w->epoch = api->faults.watch_epoch;
    long to = q(req, "timeoutSeconds") ? strtol(q(req, "timeoutSeconds"), NULL, 10) : 0;
    if (to <= 0)
        to = 1800;
    w->deadline_ms = ktime_mono_ms() + to * 1000;
    w->last_bookmark_ms = ktime_mono_ms();
    const char *rv = q(req, "resourceVersion");
    uint64_t cur = kl_store_rv(api->st);
    int sie = qbool(req, "sendInitialEvents");
    const char *rvm = q(req, "resourceVersionMatch");
    if (sie && (!rvm || strcmp(rvm, "NotOlderThan") != 0)) {
        kl_watch_free(w);
        kla_invalid1(resp, r, "", "FieldValueForbidden", "resourceVersionMatch",
                 "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan");
        return;
    }
    if (!sie && rvm && rvm[0]) {
        kl_watch_free(w);
        kla_invalid1(resp, r, "", "FieldValueForbidden", "resourceVersionMatch",
                 "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided");
        return;
    }
    w->initial_end = sie && w->bookmarks;
    if (sie || !rv || !rv[0] || !strcmp(rv, "0")) {
        w->cursor = cur;
        w->initial = cJSON_CreateArray();
        const cJSON **items;
        size_t n;
        if (kl_store_list(api->st, r->rkey, t->has_ns ? t->ns : NULL, &items, &n) == 0) {
            for (size_t i = 0; i < n; i++)
                if (kla_sel_match(w->lsel, w->fsel, items[i]))
                    cJSON_AddItemToArray(w->initial, cJSON_Duplicate(items[i], 1));
            free(items);
        }
    } else {
        uint64_t want = strtoull(rv, NULL, 10);
        if (want < kl_store_hist_floor(api->st)) {
            char m[128];
            snprintf(m, sizeof(m), "too old resource version: %llu (%llu)",
                     (unsigned long long)want,
                     (unsigned long long)kl_store_hist_floor(api->st) + 1);
            w->error_line = status_line(410, "Expired", m);
        }
        if (want > cur && !w->error_line) {
            kstatus s;
            kstatus_init(&s);
            kstatus_setf(&s, 504, "Timeout", "Too large resource version: %llu, current: %llu",
                         (unsigned long long)want, (unsigned long long)cur);
            kstatus_add_cause(&s, "ResourceVersionTooLarge", "Too large resource version", NULL);
            s.retry_after_seconds = 1;
            cJSON *ev = cJSON_CreateObject();
            cJSON_AddStringToObject(ev, "type", "ERROR");
            cJSON_AddItemToObject(ev, "object", kstatus_to_json(&s));
            kstatus_release(&s);
            w->error_line = cJSON_PrintUnformatted(ev);
            cJSON_Delete(ev);
        }
        w->cursor = want > cur ? cur : want;
    }
    if (!w->group || !w->version || !w->plural || !w->rkey || (t->has_ns && !w->ns)) {
        kl_watch_free(w);
        kl_api_status(resp, 500, "InternalError", NULL, NULL, NULL, "out of memory");
        return;
    }
    resp->code = 200;
    resp->ctype = JSON;
    resp->watch = w;
}

static void emit(kl_api *api, kl_watch *w, kbuf *b, const char *type, const cJSON *obj)
{
    cJSON *ev = cJSON_CreateObject();
    if (!ev)
        return;
    cJSON_AddStringToObject(ev, "type", type);
    if (w->table && strcmp(type, "BOOKMARK") != 0) {
        kl_res *r = kl_reg_find(api->reg, w->group, w->version, w->plural);
        const cJSON *one[1] = {obj};
        cJSON *t = r ? kl_table_build(r, one, 1, !w->cols_sent, NULL, ktime_now().sec) : NULL;
        w->cols_sent = 1;
        if (t) {
            const char *rv = jstr(meta(obj), "resourceVersion");
            cJSON_AddStringToObject(meta(t), "resourceVersion", rv ? rv : "");
        }
        cJSON_AddItemToObject(ev, "object", t);
    } else {
        cJSON_AddItemToObject(ev, "object", cJSON_Duplicate(obj, 1));
    }
    char *js = cJSON_PrintUnformatted(ev);
    cJSON_Delete(ev);
    if (!js)
        return;
    kbuf_add(b, js, strlen(js));
    kbuf_add(b, "\n", 1);
    free(js);
}

/* Event lines for plain watches reuse the store's one serialization. */
static void emit_ev(kl_api *api, kl_watch *w, kbuf *b, const char *type, const kl_event *ev)
{
    const char *av = w->av;
    const char *oav = jstr(ev->obj, "apiVersion");
    if (oav && strcmp(oav, av) != 0 && !w->table) {
        /* A CRD served in several versions: the watcher sees its version. */
        cJSON *c = cJSON_Duplicate(ev->obj, 1);
        if (c) {
            jset_str(c, "apiVersion", av);
            emit(api, w, b, type, c);
            cJSON_Delete(c);
        }
        return;
    }
    if (w->table || !ev->json) {
        emit(api, w, b, type, ev->obj);
        return;
    }
    kbuf_add(b, "{\"type\":\"", 9);
    kbuf_add(b, type, strlen(type));
    kbuf_add(b, "\",\"object\":", 11);
    kbuf_add(b, ev->json, ev->json_len);
    kbuf_add(b, "}\n", 2);
}

static void emit_bookmark(kl_api *api, kl_watch *w, kbuf *b)
{
    kl_res *r = kl_reg_find(api->reg, w->group, w->version, w->plural);
    if (!r)
        return;
    cJSON *o = cJSON_CreateObject();
    char av[256], rv[32];
    cJSON_AddStringToObject(o, "kind", r->kind);
    cJSON_AddStringToObject(o, "apiVersion", kl_res_api_version(r, av, sizeof(av)));
    cJSON *md = cJSON_AddObjectToObject(o, "metadata");
    snprintf(rv, sizeof(rv), "%llu", (unsigned long long)w->cursor);
    cJSON_AddStringToObject(md, "resourceVersion", rv);
    emit(api, w, b, "BOOKMARK", o);
    cJSON_Delete(o);
    w->last_bookmark_ms = ktime_mono_ms();
}

int kl_api_watch_poll(kl_api *api, kl_watch *w, char **out, size_t *len)
{
    kbuf b = {0};
    int end = 0;
    *out = NULL;
    *len = 0;
    if (w->error_line) {
        kbuf_add(&b, w->error_line, strlen(w->error_line));
        kbuf_add(&b, "\n", 1);
        free(w->error_line);
        w->error_line = NULL;
        end = 1;
        goto done;
    }
    if (w->epoch != api->faults.watch_epoch ||
        !kl_reg_find(api->reg, w->group, w->version, w->plural)) {
        end = 1;
        goto done;
    }
    if (w->initial) {
        int sz = cJSON_GetArraySize(w->initial);
        for (int i = 0; w->init_idx < sz && i < 200; i++, w->init_idx++)
            emit(api, w, &b, "ADDED", cJSON_GetArrayItem(w->initial, w->init_idx));
        if (w->init_idx >= sz) {
            cJSON_Delete(w->initial);
            w->initial = NULL;
            if (w->initial_end) {
                kl_res *r = kl_reg_find(api->reg, w->group, w->version, w->plural);
                if (r) {
                    cJSON *o = cJSON_CreateObject();
                    char av[256], rvs[32];
                    cJSON_AddStringToObject(o, "kind", r->kind);
                    cJSON_AddStringToObject(o, "apiVersion", kl_res_api_version(r, av, sizeof(av)));
                    cJSON *md = cJSON_AddObjectToObject(o, "metadata");
                    snprintf(rvs, sizeof(rvs), "%llu", (unsigned long long)w->cursor);
                    cJSON_AddStringToObject(md, "resourceVersion", rvs);
                    cJSON *ann = cJSON_AddObjectToObject(md, "annotations");
                    cJSON_AddStringToObject(ann, "k8s.io/initial-events-end", "true");
                    emit(api, w, &b, "BOOKMARK", o);
                    cJSON_Delete(o);
                }
                w->initial_end = 0;
            }
        } else {
            goto done;
        }
    }
    if (w->cursor < kl_store_hist_floor(api->st)) {
        char m[128];
        snprintf(m, sizeof(m), "too old resource version: %llu (%llu)",
                 (unsigned long long)w->cursor,
                 (unsigned long long)kl_store_hist_floor(api->st) + 1);
        char *line = status_line(410, "Expired", m);
        if (line) {
            kbuf_add(&b, line, strlen(line));
            kbuf_add(&b, "\n", 1);
        }
        free(line);
        end = 1;
        goto done;
    }
    /* Only durable events go out: a watcher never sees a write that a
     * crash could still take back. */
    uint64_t durable = kl_store_durable_rv(api->st);
    const kl_event *ev = kl_store_event_after(api->st, w->cursor);
    for (int i = 0; ev && i < 500; i++, ev = kl_store_event_next(api->st, ev)) {
        if (ev->rv > durable)
            break;
        w->cursor = ev->rv;
        if (strcmp(ev->rkey, w->rkey) != 0 || (w->ns && strcmp(ev->ns, w->ns) != 0))
            continue;
        int now_m = kla_sel_match(w->lsel, w->fsel, ev->obj);
        int prev_m = ev->prev ? kla_sel_match(w->lsel, w->fsel, ev->prev) : 0;
        if (ev->type == KL_DELETED) {
            if (now_m)
                emit_ev(api, w, &b, "DELETED", ev);
        } else if (ev->type == KL_ADDED) {
            if (now_m)
                emit_ev(api, w, &b, "ADDED", ev);
        } else if (now_m && prev_m) {
            emit_ev(api, w, &b, "MODIFIED", ev);
        } else if (now_m) {
            emit_ev(api, w, &b, "ADDED", ev);
        } else if (prev_m) {
            /* Left the selection: DELETED with the previous content and the new RV. */
            cJSON *p = cJSON_Duplicate(ev->prev, 1);
            if (p) {
                char rv[32];
                snprintf(rv, sizeof(rv), "%llu", (unsigned long long)ev->rv);
                jset_str(meta(p), "resourceVersion", rv);
                emit(api, w, &b, "DELETED", p);
                cJSON_Delete(p);
            }
        }
    }
    int64_t now = ktime_mono_ms();
    if (w->bookmarks && (now - w->last_bookmark_ms > 60000 ||
                         (w->deadline_ms - now < 2000 && w->last_bookmark_ms < w->deadline_ms - 2000)))
        emit_bookmark(api, w, &b);
    if (now >= w->deadline_ms)
        end = 1;
done:
    if (b.oom) {
        free(b.p);
        return 1;
    }
    *out = b.p;
    *len = b.len;
    return end;
}
