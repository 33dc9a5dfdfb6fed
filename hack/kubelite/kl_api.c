/* kl_api: the entry points of kubelite's REST layer (see kl_api.h): life
 * cycle and accessors, Status replies shared by the verb modules, request
 * body decoding, URL resolution and dispatch (discovery, OpenAPI, /version,
 * health, fault injection, the request log).
 *
 * The verbs live beside it: kl_api_admit.c (defaulting and validation),
 * kl_api_list.c (selectors, list, watch), kl_api_write.c (get, create,
 * update, patch, scale), kl_api_delete.c (deletion, finalizers, CRD
 * removal). kl_api_int.h is what they share. */
#include "kl_api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "kl_api_int.h"
#include "kl_proto.h"
#include "kstatus.h"
#include "ktime.h"

static const char *JSON = "application/json";

void kl_now_str(char *buf, size_t n, int micro)
{
    if (ktime_format(ktime_now(), micro ? 6 : 0, buf, n) != 0 && n)
        buf[0] = 0;
}

void kl_new_uid(char *buf, size_t n)
{
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        /* getrandom on Linux >= 3.17 does not fail for 16 bytes; fall back to time. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        for (int i = 0; i < 16; i++)
            b[i] = (unsigned char)((ts.tv_nsec >> (i % 8)) ^ (i * 37));
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(buf, n, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

void kla_qualified(const kl_res *r, char *buf, size_t n)
{
    if (r->group[0])
        snprintf(buf, n, "%s.%s", r->plural, r->group);
    else
        snprintf(buf, n, "%s", r->plural);
}

void kl_api_flush_log(kl_api *api)
{
    if (api->reqlog)
        fflush(api->reqlog);
}

void kla_json_of(kl_resp *resp, int code, const cJSON *obj)
{
    free(resp->body);
    resp->body = obj ? cJSON_PrintUnformatted(obj) : NULL;
    resp->code = resp->body ? code : 500;
    if (!resp->body)
        resp->body = strdup("{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
                            "\"status\":\"Failure\",\"message\":\"out of memory\",\"code\":500}");
    resp->len = resp->body ? strlen(resp->body) : 0;
    resp->ctype = JSON;
}

void kla_json_stored(kl_api *api, kl_resp *resp, int code, const cJSON *stored)
{
    /* The stored object's resourceVersion names the write that stored it. */
    uint64_t rv = strtoull(jstr0(meta(stored), "resourceVersion"), NULL, 10);
    const kl_event *ev = rv ? kl_store_event_after(api->st, rv - 1) : NULL;
    if (!ev || ev->rv != rv || !ev->json) {
        kla_json_of(resp, code, stored); /* history gone or off: print it */
        return;
    }
    free(resp->body);
    resp->body = malloc(ev->json_len + 1);
    if (!resp->body) {
        kla_json_of(resp, code, NULL);
        return;
    }
    memcpy(resp->body, ev->json, ev->json_len + 1);
    resp->len = ev->json_len;
    resp->code = code;
    resp->ctype = JSON;
}

void kl_api_json(kl_resp *resp, int code, cJSON *obj)
{
    free(resp->body);
    resp->body = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    resp->code = resp->body ? code : 500;
    if (!resp->body)
        resp->body = strdup("{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
                            "\"status\":\"Failure\",\"message\":\"out of memory\",\"code\":500}");
    resp->len = resp->body ? strlen(resp->body) : 0;
    resp->ctype = JSON;
}

static void status_v(kl_resp *resp, int code, const char *reason, const char *name,
                     const char *group, const char *kind, kstatus *causes, const char *fmt,
                     va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    kstatus s;
    kstatus_init(&s);
    kstatus_setf(&s, code, reason, "%s", msg);
    if (name || group || kind)
        kstatus_set_details(&s, name, group, kind, NULL);
    if (causes)
        for (size_t i = 0; i < causes->n_causes; i++)
            kstatus_add_cause(&s, causes->causes[i].reason, causes->causes[i].message,
                              causes->causes[i].field);
    kl_api_json(resp, code, kstatus_to_json(&s));
    kstatus_release(&s);
}

void kl_api_status(kl_resp *resp, int code, const char *reason, const char *name, const char *group,
                   const char *kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    status_v(resp, code, reason, name, group, kind, NULL, fmt, ap);
    va_end(ap);
}

void kla_not_found(kl_resp *resp, const kl_res *r, const char *name)
{
    char qn[300];
    kla_qualified(r, qn, sizeof(qn));
    kl_api_status(resp, 404, "NotFound", name, r->group, r->plural, "%s \"%s\" not found", qn,
                  name);
}

void kla_conflict(kl_resp *resp, const kl_res *r, const char *name)
{
    char qn[300];
    kla_qualified(r, qn, sizeof(qn));
    kl_api_status(resp, 409, "Conflict", name, r->group, r->plural,
                  "Operation cannot be fulfilled on %s \"%s\": the object has been modified; "
                  "please apply your changes to the latest version and try again",
                  qn, name);
}
void kla_bad_request(kl_resp *resp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    status_v(resp, 400, "BadRequest", NULL, NULL, NULL, NULL, fmt, ap);
    va_end(ap);
}

void kla_invalid(kl_resp *resp, const kl_res *r, const char *name, kstatus *causes)
{
    char msg[2048] = "";
    for (size_t i = 0; i < causes->n_causes; i++) {
        size_t l = strlen(msg);
        snprintf(msg + l, sizeof(msg) - l, "%s%s: %s", i ? ", " : "",
                 causes->causes[i].field ? causes->causes[i].field : "",
                 causes->causes[i].message ? causes->causes[i].message : "");
    }
    char full[2600];
    const char *g = r->group;
    if (causes->n_causes > 1)
        snprintf(full, sizeof(full), "%s%s%s \"%s\" is invalid: [%s]", r->kind, g[0] ? "." : "", g,
                 name ? name : "", msg);
    else
        snprintf(full, sizeof(full), "%s%s%s \"%s\" is invalid: %s", r->kind, g[0] ? "." : "", g,
                 name ? name : "", msg);
    kstatus s;
    kstatus_init(&s);
    kstatus_setf(&s, 422, "Invalid", "%s", full);
    kstatus_set_details(&s, name, g, r->kind, NULL);
    for (size_t i = 0; i < causes->n_causes; i++)
        kstatus_add_cause(&s, causes->causes[i].reason, causes->causes[i].message,
                          causes->causes[i].field);
    kl_api_json(resp, 422, kstatus_to_json(&s));
    kstatus_release(&s);
}

void kla_invalid1(kl_resp *resp, const kl_res *r, const char *name, const char *reason,
                  const char *field, const char *msg)
{
    kstatus c;
    kstatus_init(&c);
    kstatus_add_cause(&c, reason, msg, field);
    kla_invalid(resp, r, name, &c);
    kstatus_release(&c);
}

void kl_resp_release(kl_resp *resp)
{
    free(resp->body);
    resp->body = NULL;
    if (resp->watch)
        kl_watch_free(resp->watch);
    resp->watch = NULL;
    if (resp->logs) {
        resp->logs->close(resp->logs->ctx);
        free(resp->logs);
    }
    resp->logs = NULL;
}

/* ---- life cycle ---- */

int kl_api_new(const kl_api_opts *o, kl_api **out, kiln_error *err)
{
    *out = NULL;
    kl_api *api = calloc(1, sizeof(*api));
    if (!api)
        return KILN_ENOMEM;
    int rc = kl_reg_new(&api->reg);
    if (!rc)
        rc = kl_store_open(o->data_dir, o->history ? o->history : 10000, &api->st, err);
    if (rc) {
        kl_api_free(api);
        return rc;
    }
    snprintf(api->addr, sizeof(api->addr), "%s", o->server_addr ? o->server_addr : "127.0.0.1");
    api->svc_next = 1;
    api->net = o->net_octet > 0 && o->net_octet < 127 ? o->net_octet : 1;
    if (o->data_dir && o->log_requests) {
        char p[4096];
        snprintf(p, sizeof(p), "%s/requests.log", o->data_dir);
        api->reqlog = fopen(p, "ae");
    }
    /* Re-register stored CRDs and seed the default namespaces. */
    kl_res *crd = kl_api_res(api, "apiextensions.k8s.io", "customresourcedefinitions");
    const cJSON **items;
    size_t n;
    if (kl_store_list(api->st, crd->rkey, NULL, &items, &n) == 0) {
        for (size_t i = 0; i < n; i++)
            kl_reg_add_crd(api->reg, items[i], NULL);
        free(items);
    }
    /* Services keep their cluster IPs across restarts; continue after the highest. */
    kl_res *svc = kl_api_res(api, "", "services");
    if (kl_store_list(api->st, svc->rkey, NULL, &items, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            const char *ip = jstr(cJSON_GetObjectItemCaseSensitive(items[i], "spec"), "clusterIP");
            unsigned a, b, c, d;
            if (ip && sscanf(ip, "%u.%u.%u.%u", &a, &b, &c, &d) == 4 &&
                c * 256 + d >= api->svc_next)
                api->svc_next = c * 256 + d + 1;
        }
        free(items);
    }
    kl_res *nsr = kl_api_res(api, "", "namespaces");
    const char *seed[] = {"default", "kube-system", "kube-public", "kube-node-lease"};
    for (int i = 0; i < 4; i++) {
        if (kl_store_get(api->st, nsr->rkey, "", seed[i]))
            continue;
        cJSON *ns = cJSON_CreateObject();
        cJSON_AddStringToObject(ns, "apiVersion", "v1");
        cJSON_AddStringToObject(ns, "kind", "Namespace");
        cJSON *md = cJSON_AddObjectToObject(ns, "metadata");
        cJSON_AddStringToObject(md, "name", seed[i]);
        rc = kl_api_write(api, nsr, ns, err);
        if (rc) {
            kl_api_free(api);
            return rc;
        }
    }
    *out = api;
    return 0;
}

void kl_api_free(kl_api *api)
{
    if (!api)
        return;
    kl_store_free(api->st);
    kl_reg_free(api->reg);
    if (api->reqlog)
        fclose(api->reqlog);
    free(api);
}

int kl_api_net_octet(const kl_api *api)
{
    return api->net;
}

void kl_api_set_addr(kl_api *api, const char *addr)
{
    snprintf(api->addr, sizeof(api->addr), "%s", addr);
}

kl_store *kl_api_store(kl_api *api)
{
    return api->st;
}

kl_reg *kl_api_reg(kl_api *api)
{
    return api->reg;
}

kl_faults *kl_api_faults(kl_api *api)
{
    return &api->faults;
}

void kl_api_set_log_handler(kl_api *api, kl_log_fn fn, void *ctx)
{
    api->log_fn = fn;
    api->log_ctx = ctx;
}

void kl_api_set_pod_delete_handler(kl_api *api, kl_pod_delete_fn fn, void *ctx)
{
    api->pod_del_fn = fn;
    api->pod_del_ctx = ctx;
}

void kl_api_set_kill_handler(kl_api *api, kl_kill_fn fn, void *ctx)
{
    api->kill_fn = fn;
    api->kill_ctx = ctx;
}

kl_res *kl_api_res(kl_api *api, const char *group, const char *plural)
{
    for (size_t i = 0; i < kl_reg_count(api->reg); i++) {
        kl_res *r = kl_reg_at(api->reg, i);
        if (!strcmp(r->group, group) && !strcmp(r->plural, plural))
            return r;
    }
    return NULL;
}

/* ---- request body ---- */

cJSON *kla_decode_body(const kl_req *req, kl_resp *resp)
{
    if (!req->body || !req->body_len) {
        kla_bad_request(resp, "the request body is empty");
        return NULL;
    }
    const char *ct = req->content_type ? req->content_type : "";
    if (!strncmp(ct, "application/vnd.kubernetes.protobuf", 35)) {
        cJSON *o = NULL;
        kiln_error err = {0};
        int rc = kl_proto_decode((const unsigned char *)req->body, req->body_len, &o, &err);
        if (rc == KILN_EUNSUPPORTED)
            kl_api_status(resp, 415, "UnsupportedMediaType", NULL, NULL, NULL, "%s", err.msg);
        else if (rc)
            kla_bad_request(resp, "%s", err.msg);
        return o;
    }
    cJSON *o = cJSON_ParseWithLength(req->body, req->body_len);
    if (!o)
        kla_bad_request(resp, "error decoding request body: invalid JSON");
    return o;
}

/* ---- targets ---- */

static int split(const char *path, char segs[][254], int max)
{
    int n = 0;
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (n == max || l >= 254)
            return -1;
        memcpy(segs[n], p, l);
        segs[n][l] = 0;
        n++;
        p += l;
    }
    return n;
}

/* Resolves a resource path; 0 on success, -1 (resp filled) otherwise. */
static int resolve(kl_api *api, char segs[][254], int n, target *t, kl_resp *resp)
{
    memset(t, 0, sizeof(*t));
    const char *g, *v;
    int i;
    if (!strcmp(segs[0], "api")) {
        g = "";
        v = segs[1];
        i = 2;
    } else {
        g = segs[1];
        v = segs[2];
        i = 3;
    }
    kl_res *r = NULL;
    if (n - i >= 3 && !strcmp(segs[i], "namespaces")) {
        kl_res *cand = kl_reg_find(api->reg, g, v, segs[i + 2]);
        if (cand && cand->namespaced) {
            r = cand;
            t->has_ns = 1;
            snprintf(t->ns, sizeof(t->ns), "%s", segs[i + 1]);
            i += 2;
        }
    }
    if (!r && n - i >= 1)
        r = kl_reg_find(api->reg, g, v, segs[i]);
    if (!r || n - i > 3) {
        kl_api_status(resp, 404, "NotFound", NULL, NULL, NULL,
                      "the server could not find the requested resource");
        return -1;
    }
    t->res = r;
    if (n - i >= 2) {
        t->has_name = 1;
        snprintf(t->name, sizeof(t->name), "%s", segs[i + 1]);
    }
    if (n - i >= 3)
        snprintf(t->sub, sizeof(t->sub), "%s", segs[i + 2]);
    if (t->sub[0] && strcmp(t->sub, "status") && !(strcmp(t->sub, "scale") == 0 && r->has_scale) &&
        !(strcmp(t->sub, "log") == 0 && !strcmp(r->kind, "Pod")) &&
        !(strcmp(t->sub, "finalize") == 0 && !strcmp(r->kind, "Namespace"))) {
        kl_api_status(resp, 404, "NotFound", NULL, NULL, NULL,
                      "the server could not find the requested resource");
        return -1;
    }
    if (!strcmp(t->sub, "status") && !r->has_status) {
        kl_api_status(resp, 404, "NotFound", NULL, NULL, NULL,
                      "the server could not find the requested resource");
        return -1;
    }
    if (t->has_name && r->namespaced && !t->has_ns) {
        kl_api_status(resp, 404, "NotFound", NULL, NULL, NULL,
                      "the server could not find the requested resource");
        return -1;
    }
    return 0;
}

/* A Table asked for only in a group-version we do not serve -> 406. */
static int table_unacceptable(const kl_req *req)
{
    if (!wants_table(req))
        return 0;
    const char *a = req->accept;
    if (strstr(a, "g=meta.k8s.io") &&
        (strstr(a, "v=v1;") || strstr(a, "v=v1,") || strstr(a, "v=v1beta1")))
        return 0;
    /* Any plain JSON alternative is acceptable too. */
    const char *p = a;
    while ((p = strstr(p, "application/json")) != NULL) {
        const char *e = p + 16;
        if (*e == 0 || *e == ',')
            return 0;
        p = e;
    }
    if (strstr(a, "*/*"))
        return 0;
    return 1;
}

/* ---- store counters ---- */

/* GET /kubelite/stats: the store's counters, read by the benchmark to give
 * fsyncs per write. */
static void do_stats(kl_api *api, kl_resp *resp)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "writes", (double)kl_store_writes(api->st));
    cJSON_AddNumberToObject(o, "walSyncs", (double)kl_store_syncs(api->st));
    cJSON_AddNumberToObject(o, "walSyncMicros", (double)(kl_store_sync_ns(api->st) / 1000));
    cJSON_AddNumberToObject(o, "walAppended", (double)kl_store_appended(api->st));
    cJSON_AddNumberToObject(o, "walDurable", (double)kl_store_durable(api->st));
    cJSON_AddNumberToObject(o, "resourceVersion", (double)kl_store_rv(api->st));
    kl_api_json(resp, 200, o);
}

/* ---- faults admin ---- */

static void do_faults(kl_api *api, const kl_req *req, kl_resp *resp)
{
    if (strcmp(req->method, "POST") != 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "errorRate", api->faults.error_rate);
        cJSON_AddNumberToObject(o, "errorCode", api->faults.error_code);
        cJSON_AddNumberToObject(o, "latencyMs", api->faults.latency_ms);
        cJSON_AddNumberToObject(o, "resourceVersion", (double)kl_store_rv(api->st));
        kl_api_json(resp, 200, o);
        return;
    }
    cJSON *b = cJSON_ParseWithLength(req->body ? req->body : "", req->body_len);
    if (!cJSON_IsObject(b)) {
        cJSON_Delete(b);
        kla_bad_request(resp, "faults: body must be a JSON object");
        return;
    }
    const cJSON *v;
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(b, "errorRate")))
        api->faults.error_rate = v->valuedouble;
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(b, "errorCode")))
        api->faults.error_code = v->valueint;
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(b, "latencyMs")))
        api->faults.latency_ms = v->valueint;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "dropWatches")))
        api->faults.watch_epoch++;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "expireHistory")))
        kl_store_expire_history(api->st);
    const char *kp = jstr(b, "killPod");
    int killed = -1;
    if (kp && api->kill_fn) {
        char ns[256] = "default", pod[256];
        const char *sl = strchr(kp, '/');
        if (sl) {
            snprintf(ns, sizeof(ns), "%.*s", (int)(sl - kp), kp);
            snprintf(pod, sizeof(pod), "%s", sl + 1);
        } else {
            snprintf(pod, sizeof(pod), "%s", kp);
        }
        killed = api->kill_fn(api->kill_ctx, ns, pod);
    }
    cJSON_Delete(b);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", 1);
    if (kp)
        cJSON_AddBoolToObject(o, "killed", killed == 0);
    kl_api_json(resp, 200, o);
}

/* ---- dispatch ---- */

static void version(kl_resp *resp)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "major", "1");
    cJSON_AddStringToObject(o, "minor", "32");
    cJSON_AddStringToObject(o, "gitVersion", "v1.32.0-kubelite");
    cJSON_AddStringToObject(o, "gitCommit", "0000000000000000000000000000000000000000");
    cJSON_AddStringToObject(o, "gitTreeState", "clean");
    cJSON_AddStringToObject(o, "buildDate", "2026-11-22T00:00:00Z");
    cJSON_AddStringToObject(o, "goVersion", "go1.23.0");
    cJSON_AddStringToObject(o, "compiler", "gc");
    cJSON_AddStringToObject(o, "platform", "linux/amd64");
    kl_api_json(resp, 200, o);
}

static const char *AGGR = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

static const char *verb_of(const kl_req *req, const target *t)
{
    const char *m = req->method;
    if (!strcmp(m, "GET"))
        return t->has_name ? "get" : (qbool(req, "watch") ? "watch" : "list");
    if (!strcmp(m, "POST"))
        return "create";
    if (!strcmp(m, "PUT"))
        return "update";
    if (!strcmp(m, "PATCH"))
        return "patch";
    if (!strcmp(m, "DELETE"))
        return t->has_name ? "delete" : "deletecollection";
    return m;
}

static void log_request(kl_api *api, const kl_req *req, const target *t, const kl_resp *resp)
{
    if (!api->reqlog)
        return;
    cJSON *o = cJSON_CreateObject();
    char now[KTIME_BUFSZ];
    kl_now_str(now, sizeof(now), 1);
    cJSON_AddStringToObject(o, "ts", now);
    cJSON_AddStringToObject(o, "method", req->method);
    cJSON_AddStringToObject(o, "path", req->path);
    if (t && t->res) {
        cJSON_AddStringToObject(o, "verb", verb_of(req, t));
        cJSON_AddStringToObject(o, "group", t->res->group);
        cJSON_AddStringToObject(o, "resource", t->res->plural);
        if (t->sub[0])
            cJSON_AddStringToObject(o, "subresource", t->sub);
        if (t->has_ns)
            cJSON_AddStringToObject(o, "namespace", t->ns);
        if (t->has_name)
            cJSON_AddStringToObject(o, "name", t->name);
        else if (resp->created[0])
            cJSON_AddStringToObject(o, "name", resp->created);
    }
    cJSON_AddStringToObject(o, "userAgent", req->user_agent ? req->user_agent : "");
    if (req->content_type)
        cJSON_AddStringToObject(o, "contentType", req->content_type);
    cJSON_AddNumberToObject(o, "code", resp->code);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    /* Buffered: kl_api_flush_log() writes the lines of a whole batch of
     * replies with one write, before the first of them is sent. */
    if (s) {
        fprintf(api->reqlog, "%s\n", s);
        free(s);
    }
}

static double rand01(void)
{
    uint32_t v;
    if (getrandom(&v, sizeof(v), 0) != sizeof(v))
        return 1.0;
    return v / 4294967296.0;
}

void kl_api_handle(kl_api *api, const kl_req *req, kl_resp *resp)
{
    memset(resp, 0, sizeof(*resp));
    char segs[12][254];
    int n = split(req->path, segs, 12);
    target t;
    memset(&t, 0, sizeof(t));
    const char *m = req->method;
    const char *accept = req->accept ? req->accept : "";
    if (n < 0) {
        kl_api_status(resp, 404, "NotFound", NULL, NULL, NULL,
                      "the server could not find the requested resource");
        goto out;
    }
    if (n == 2 && !strcmp(segs[0], "kubelite") && !strcmp(segs[1], "stats")) {
        do_stats(api, resp);
        goto out;
    }
    if (n >= 2 && !strcmp(segs[0], "kubelite") && !strcmp(segs[1], "faults")) {
        do_faults(api, req, resp);
        goto out;
    }
    /* Fault injection applies to the API proper, not to /version and health. */
    if (api->faults.latency_ms > 0 && n > 0 && strcmp(segs[0], "version") != 0)
        usleep((useconds_t)api->faults.latency_ms * 1000);
    if (api->faults.error_rate > 0 && n > 0 && strcmp(segs[0], "version") != 0 &&
        rand01() < api->faults.error_rate) {
        int code = api->faults.error_code ? api->faults.error_code : 429;
        kstatus s;
        kstatus_init(&s);
        kstatus_setf(&s, code, NULL, "%s",
                     code == 429 ? "Too many requests, please try again later." : "injected fault");
        s.retry_after_seconds = 1;
        kl_api_json(resp, code, kstatus_to_json(&s));
        kstatus_release(&s);
        resp->retry_after = 1;
        goto out;
    }
    if (n == 1 && !strcmp(segs[0], "version")) {
        version(resp);
        goto out;
    }
    if (n == 1 &&
        (!strcmp(segs[0], "healthz") || !strcmp(segs[0], "livez") || !strcmp(segs[0], "readyz"))) {
        resp->code = 200;
        resp->ctype = "text/plain";
        resp->body = strdup("ok");
        resp->len = 2;
        goto out;
    }
    if (n >= 1 && !strcmp(segs[0], "openapi")) {
        cJSON *doc = NULL;
        if (n == 2 && !strcmp(segs[1], "v3"))
            doc = kl_reg_openapi_index(api->reg);
        else if (n >= 3 && !strcmp(segs[1], "v3")) {
            char gp[600];
            const char *p = strstr(req->path, "/v3/") + 4;
            snprintf(gp, sizeof(gp), "%s", p);
            doc = kl_reg_openapi_gv(api->reg, gp);
        }
        if (doc)
            kl_api_json(resp, 200, doc);
        else
            kl_api_status(resp, 404, "NotFound", NULL, NULL, NULL,
                          "the server could not find the requested resource");
        goto out;
    }
    if (n == 0 || (strcmp(segs[0], "api") && strcmp(segs[0], "apis"))) {
        kl_api_status(resp, 404, "NotFound", NULL, NULL, NULL,
                      "the server could not find the requested resource");
        goto out;
    }
    int core = !strcmp(segs[0], "api");
    if (n == 1) {
        if (strstr(accept, "as=APIGroupDiscoveryList")) {
            kl_api_json(resp, 200, kl_reg_discovery_aggregated(api->reg, core));
            resp->ctype = AGGR;
        } else {
            kl_api_json(resp, 200,
                        core ? kl_reg_api_versions(api->reg, api->addr)
                             : kl_reg_group_list(api->reg));
        }
        goto out;
    }
    if ((core && n == 2) || (!core && n <= 3)) {
        cJSON *o = core     ? kl_reg_resource_list(api->reg, "", segs[1])
                   : n == 2 ? kl_reg_group(api->reg, segs[1])
                            : kl_reg_resource_list(api->reg, segs[1], segs[2]);
        if (o)
            kl_api_json(resp, 200, o);
        else
            kl_api_status(resp, 404, "NotFound", NULL, NULL, NULL,
                          "the server could not find the requested resource");
        goto out;
    }
    if (resolve(api, segs, n, &t, resp))
        goto out;
    if (!strcmp(m, "GET") && table_unacceptable(req)) {
        kl_api_status(resp, 406, "NotAcceptable", NULL, NULL, NULL,
                      "only the following media types are accepted: application/json, "
                      "application/json;as=Table;v=v1;g=meta.k8s.io");
        goto out;
    }
    if (!strcmp(t.sub, "log")) {
        if (strcmp(m, "GET") != 0)
            kl_api_status(resp, 405, "MethodNotAllowed", NULL, NULL, NULL, "method not allowed");
        else if (!kl_store_get(api->st, t.res->rkey, t.ns, t.name))
            kla_not_found(resp, t.res, t.name);
        else if (api->log_fn)
            api->log_fn(api->log_ctx, t.ns, t.name, req, resp);
        else
            kla_bad_request(resp, "container logs are not available: no kubelet");
        goto out;
    }
    if (!strcmp(m, "GET")) {
        if (t.has_name)
            kla_get(api, &t, req, resp);
        else if (qbool(req, "watch"))
            kla_watch(api, &t, req, resp);
        else
            kla_list(api, &t, req, resp);
    } else if (!strcmp(m, "POST") && !t.has_name) {
        kla_create(api, &t, req, resp);
    } else if (!strcmp(m, "PUT") && t.has_name) {
        kla_update(api, &t, req, resp);
    } else if (!strcmp(m, "PATCH") && t.has_name) {
        kla_patch(api, &t, req, resp);
    } else if (!strcmp(m, "DELETE")) {
        if (t.has_name)
            kla_delete(api, &t, req, resp);
        else
            kla_delete_collection(api, &t, req, resp);
    } else {
        kl_api_status(resp, 405, "MethodNotAllowed", NULL, NULL, NULL,
                      "the server does not allow this method on the requested resource");
    }
out:
    log_request(api, req, t.res ? &t : NULL, resp);
}
