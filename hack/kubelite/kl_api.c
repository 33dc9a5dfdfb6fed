/* kl_api: REST semantics of kubelite (see kl_api.h). */
#include "kl_api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "kbuf.h"
#include "kjson_patch.h"
#include "klabels.h"
#include "kl_proto.h"
#include "kl_schema.h"
#include "kl_smp.h"
#include "kl_ssa.h"
#include "kl_table.h"
#include "kstatus.h"
#include "ktime.h"

struct kl_api {
    kl_reg *reg;
    kl_store *st;
    char addr[64];
    FILE *reqlog;
    kl_faults faults;
    unsigned svc_next; /* next cluster IP host number */
    int net;           /* second octet of pod addresses */
    kl_log_fn log_fn;
    void *log_ctx;
    kl_pod_delete_fn pod_del_fn;
    void *pod_del_ctx;
    kl_kill_fn kill_fn;
    void *kill_ctx;
};

struct kl_watch {
    char *group, *version, *plural, *rkey;
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

/* ---- small helpers ---- */

static const char *q(const kl_req *r, const char *k)
{
    for (int i = 0; i < r->nq; i++)
        if (strcmp(r->qk[i], k) == 0)
            return r->qv[i];
    return NULL;
}

/* Go's strconv.ParseBool truth values. */
static int qbool(const kl_req *r, const char *k)
{
    const char *v = q(r, k);
    if (!v)
        return 0;
    return !strcmp(v, "1") || !strcmp(v, "t") || !strcmp(v, "T") || !strcmp(v, "true") ||
           !strcmp(v, "TRUE") || !strcmp(v, "True");
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

static cJSON *jobj(cJSON *o, const char *k)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsObject(v)) {
        cJSON_DeleteItemFromObjectCaseSensitive(o, k);
        v = cJSON_AddObjectToObject(o, k);
    }
    return v;
}

static void jset(cJSON *o, const char *k, cJSON *v)
{
    if (!o || !v) {
        cJSON_Delete(v);
        return;
    }
    if (cJSON_GetObjectItemCaseSensitive(o, k))
        cJSON_ReplaceItemInObjectCaseSensitive(o, k, v);
    else
        cJSON_AddItemToObject(o, k, v);
}

static void jset_str(cJSON *o, const char *k, const char *s)
{
    jset(o, k, cJSON_CreateString(s));
}

static cJSON *meta(const cJSON *o)
{
    return cJSON_GetObjectItemCaseSensitive(o, "metadata");
}

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
    snprintf(buf, n,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

static void qualified(const kl_res *r, char *buf, size_t n)
{
    if (r->group[0])
        snprintf(buf, n, "%s.%s", r->plural, r->group);
    else
        snprintf(buf, n, "%s", r->plural);
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

void kl_api_status(kl_resp *resp, int code, const char *reason, const char *name,
                   const char *group, const char *kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    status_v(resp, code, reason, name, group, kind, NULL, fmt, ap);
    va_end(ap);
}

static void not_found(kl_resp *resp, const kl_res *r, const char *name)
{
    char qn[300];
    qualified(r, qn, sizeof(qn));
    kl_api_status(resp, 404, "NotFound", name, r->group, r->plural, "%s \"%s\" not found", qn,
                  name);
}

static void conflict(kl_resp *resp, const kl_res *r, const char *name)
{
    char qn[300];
    qualified(r, qn, sizeof(qn));
    kl_api_status(resp, 409, "Conflict", name, r->group, r->plural,
                  "Operation cannot be fulfilled on %s \"%s\": the object has been modified; "
                  "please apply your changes to the latest version and try again",
                  qn, name);
}

static void bad_request(kl_resp *resp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bad_request(kl_resp *resp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    status_v(resp, 400, "BadRequest", NULL, NULL, NULL, NULL, fmt, ap);
    va_end(ap);
}

static void invalid(kl_resp *resp, const kl_res *r, const char *name, kstatus *causes)
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
        snprintf(full, sizeof(full), "%s%s%s \"%s\" is invalid: [%s]", r->kind, g[0] ? "." : "",
                 g, name ? name : "", msg);
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

static void invalid1(kl_resp *resp, const kl_res *r, const char *name, const char *reason,
                     const char *field, const char *msg)
{
    kstatus c;
    kstatus_init(&c);
    kstatus_add_cause(&c, reason, msg, field);
    invalid(resp, r, name, &c);
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
            if (ip && sscanf(ip, "%u.%u.%u.%u", &a, &b, &c, &d) == 4 && c * 256 + d >= api->svc_next)
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

/* ---- object preparation ---- */

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

static int has_finalizers(const cJSON *obj)
{
    return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(meta(obj), "finalizers")) > 0;
}

static void set_default(cJSON *o, const char *k, cJSON *v)
{
    if (!o || cJSON_GetObjectItemCaseSensitive(o, k)) {
        cJSON_Delete(v);
        return;
    }
    cJSON_AddItemToObject(o, k, v);
}

static void default_pod_spec(cJSON *spec)
{
    if (!spec)
        return;
    set_default(spec, "restartPolicy", cJSON_CreateString("Always"));
    set_default(spec, "terminationGracePeriodSeconds", cJSON_CreateNumber(30));
    set_default(spec, "dnsPolicy", cJSON_CreateString("ClusterFirst"));
    set_default(spec, "schedulerName", cJSON_CreateString("default-scheduler"));
    set_default(spec, "securityContext", cJSON_CreateObject());
    cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(spec, "containers"))
    {
        set_default(c, "terminationMessagePath", cJSON_CreateString("/dev/termination-log"));
        set_default(c, "terminationMessagePolicy", cJSON_CreateString("File"));
        set_default(c, "imagePullPolicy", cJSON_CreateString("IfNotPresent"));
        set_default(c, "resources", cJSON_CreateObject());
        cJSON *p;
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(c, "ports"))
            set_default(p, "protocol", cJSON_CreateString("TCP"));
    }
}

/* Secret stringData is merged into data and never stored. */
static void secret_fold(cJSON *obj)
{
    cJSON *sd = cJSON_GetObjectItemCaseSensitive(obj, "stringData");
    if (!sd)
        return;
    cJSON *data = jobj(obj, "data");
    const cJSON *e;
    cJSON_ArrayForEach(e, sd)
    {
        if (!cJSON_IsString(e))
            continue;
        char *b = kl_base64((const unsigned char *)e->valuestring, strlen(e->valuestring));
        if (b)
            jset_str(data, e->string, b);
        free(b);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "stringData");
}

static void crd_status(cJSON *obj)
{
    cJSON *spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
    cJSON *st = jobj(obj, "status");
    jset(st, "acceptedNames", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(spec, "names"), 1));
    cJSON *sv = cJSON_CreateArray();
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(spec, "versions"))
    {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "storage")) && jstr(v, "name"))
            cJSON_AddItemToArray(sv, cJSON_CreateString(jstr(v, "name")));
    }
    jset(st, "storedVersions", sv);
    char now[KTIME_BUFSZ];
    kl_now_str(now, sizeof(now), 0);
    cJSON *conds = cJSON_CreateArray();
    const char *types[][3] = {
        {"NamesAccepted", "NoConflicts", "no conflicts found"},
        {"Established", "InitialNamesAccepted", "the initial names have been accepted"}};
    for (int i = 0; i < 2; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "type", types[i][0]);
        cJSON_AddStringToObject(c, "status", "True");
        cJSON_AddStringToObject(c, "lastTransitionTime", now);
        cJSON_AddStringToObject(c, "reason", types[i][1]);
        cJSON_AddStringToObject(c, "message", types[i][2]);
        cJSON_AddItemToArray(conds, c);
    }
    jset(st, "conditions", conds);
}

/* Rewrites a time field in UTC Z form (micro: 6 fraction digits). */
static void norm_time(cJSON *o, const char *k, int micro)
{
    const char *v = jstr(o, k);
    ktime t;
    char buf[KTIME_BUFSZ];
    if (v && ktime_parse(v, &t, NULL) == 0 && ktime_format(t, micro ? 6 : 0, buf, sizeof(buf)) == 0)
        jset_str(o, k, buf);
}

/* Kind-specific defaulting and validation; old is NULL on create. Returns 0
 * or fills resp with an error. */
static int admit(kl_api *api, const kl_res *r, const cJSON *old, cJSON *obj, const kl_req *req,
                 kl_resp *resp)
{
    const char *k = r->kind;
    const char *name = jstr(meta(obj), "name");
    if (r->builtin && !strcmp(k, "Secret")) {
        secret_fold(obj);
        set_default(obj, "type", cJSON_CreateString("Opaque"));
    } else if (r->builtin && !strcmp(k, "Lease")) {
        cJSON *spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
        norm_time(spec, "acquireTime", 1);
        norm_time(spec, "renewTime", 1);
    } else if (r->builtin && !strcmp(k, "Event")) {
        norm_time(obj, "eventTime", 1);
        norm_time(obj, "firstTimestamp", 0);
        norm_time(obj, "lastTimestamp", 0);
        norm_time(obj, "deprecatedFirstTimestamp", 0);
        norm_time(obj, "deprecatedLastTimestamp", 0);
    } else if (r->builtin && !strcmp(k, "Namespace")) {
        cJSON *st = jobj(obj, "status");
        set_default(st, "phase", cJSON_CreateString("Active"));
        cJSON *spec = jobj(obj, "spec");
        if (!old) {
            cJSON *f = cJSON_CreateArray();
            cJSON_AddItemToArray(f, cJSON_CreateString("kubernetes"));
            set_default(spec, "finalizers", f);
        }
    } else if (r->builtin && !strcmp(k, "Service")) {
        cJSON *spec = jobj(obj, "spec");
        const char *ip = jstr(spec, "clusterIP");
        const char *oldip = old ? jstr(cJSON_GetObjectItemCaseSensitive(old, "spec"), "clusterIP")
                                : NULL;
        if (oldip)
            jset_str(spec, "clusterIP", oldip);
        else if (!ip || !ip[0]) {
            char b[32];
            unsigned n = api->svc_next++;
            snprintf(b, sizeof(b), "127.%d.%u.%u", api->net + 128, (n / 250) % 250, n % 250 + 1);
            jset_str(spec, "clusterIP", b);
            cJSON *ips = cJSON_CreateArray();
            cJSON_AddItemToArray(ips, cJSON_CreateString(b));
            jset(spec, "clusterIPs", ips);
        }
        set_default(spec, "type", cJSON_CreateString("ClusterIP"));
        set_default(spec, "sessionAffinity", cJSON_CreateString("None"));
        cJSON *p;
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(spec, "ports"))
        {
            set_default(p, "protocol", cJSON_CreateString("TCP"));
            const cJSON *port = cJSON_GetObjectItemCaseSensitive(p, "port");
            if (port)
                set_default(p, "targetPort", cJSON_Duplicate(port, 1));
        }
    } else if (r->builtin && !strcmp(k, "PersistentVolumeClaim")) {
        /* A default storage class binds at once. */
        cJSON *st = jobj(obj, "status");
        jset_str(st, "phase", "Bound");
        cJSON *spec = jobj(obj, "spec");
        const cJSON *req_ = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(spec, "resources"), "requests");
        if (req_)
            jset(st, "capacity", cJSON_Duplicate(req_, 1));
        if (cJSON_GetObjectItemCaseSensitive(spec, "accessModes"))
            jset(st, "accessModes",
                 cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(spec, "accessModes"), 1));
        if (!jstr(spec, "volumeName") && name) {
            char vn[300];
            snprintf(vn, sizeof(vn), "pvc-%s", jstr(meta(obj), "uid") ? jstr(meta(obj), "uid") : name);
            jset_str(spec, "volumeName", vn);
        }
        set_default(spec, "storageClassName", cJSON_CreateString("standard"));
    } else if (r->builtin && !strcmp(k, "Pod")) {
        cJSON *spec = jobj(obj, "spec");
        if (!cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(spec, "containers"))) {
            invalid1(resp, r, name, "FieldValueRequired", "spec.containers", "Required value");
            return -1;
        }
        if (!old) {
            set_default(spec, "nodeName", cJSON_CreateString("kubelite"));
            set_default(spec, "serviceAccountName", cJSON_CreateString("default"));
            default_pod_spec(spec);
            cJSON *st = cJSON_CreateObject();
            cJSON_AddStringToObject(st, "phase", "Pending");
            cJSON_AddStringToObject(st, "qosClass", "BestEffort");
            jset(obj, "status", st);
        }
    } else if (r->builtin && (!strcmp(k, "Deployment") || !strcmp(k, "ReplicaSet"))) {
        cJSON *spec = jobj(obj, "spec");
        set_default(spec, "replicas", cJSON_CreateNumber(1));
        if (!strcmp(k, "Deployment")) {
            set_default(spec, "revisionHistoryLimit", cJSON_CreateNumber(10));
            set_default(spec, "progressDeadlineSeconds", cJSON_CreateNumber(600));
            cJSON *strat = jobj(spec, "strategy");
            set_default(strat, "type", cJSON_CreateString("RollingUpdate"));
            if (!strcmp(jstr(strat, "type") ? jstr(strat, "type") : "", "RollingUpdate")) {
                cJSON *ru = jobj(strat, "rollingUpdate");
                set_default(ru, "maxUnavailable", cJSON_CreateString("25%"));
                set_default(ru, "maxSurge", cJSON_CreateString("25%"));
            }
        }
        cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(spec, "template");
        default_pod_spec(cJSON_GetObjectItemCaseSensitive(tmpl, "spec"));
        if (!cJSON_GetObjectItemCaseSensitive(spec, "selector")) {
            invalid1(resp, r, name, "FieldValueRequired", "spec.selector", "Required value");
            return -1;
        }
    } else if (r->builtin && !strcmp(k, "CustomResourceDefinition")) {
        cJSON *spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
        const char *g = jstr(spec, "group");
        const char *pl = jstr(cJSON_GetObjectItemCaseSensitive(spec, "names"), "plural");
        char want[512];
        snprintf(want, sizeof(want), "%s.%s", pl ? pl : "", g ? g : "");
        if (!g || !pl || !name || strcmp(want, name) != 0) {
            char m[700];
            snprintf(m, sizeof(m), "Invalid value: \"%s\": must be spec.names.plural+\".\"+spec.group",
                     name ? name : "");
            invalid1(resp, r, name, "FieldValueInvalid", "metadata.name", m);
            return -1;
        }
        set_default(spec, "scope", cJSON_CreateString("Namespaced"));
        crd_status(obj);
    } else if (r->schema) {
        const char *fv = q(req, "fieldValidation");
        kl_strs unk = {0};
        kl_schema_prune_default(r->schema, obj, &unk);
        if (unk.n && fv && !strcmp(fv, "Strict")) {
            char m[1500] = "";
            for (size_t i = 0; i < unk.n; i++) {
                size_t l = strlen(m);
                snprintf(m + l, sizeof(m) - l, "%sunknown field \"%s\"", i ? ", " : "", unk.v[i]);
            }
            bad_request(resp, "%s in version \"%s\" cannot be handled as a %s: strict decoding "
                        "error: %s", r->kind, r->version, r->kind, m);
            kl_schema_strs_free(&unk);
            return -1;
        }
        if (unk.n && (!fv || !strcmp(fv, "Warn"))) {
            size_t l = 0;
            for (size_t i = 0; i < unk.n && l < sizeof(resp->warning) - 80; i++)
                l += (size_t)snprintf(resp->warning + l, sizeof(resp->warning) - l,
                                      "%sunknown field \\\"%s\\\"", i ? ", " : "", unk.v[i]);
        }
        kl_schema_strs_free(&unk);
        kstatus c;
        kstatus_init(&c);
        if (kl_schema_validate(r->schema, obj, &c) > 0) {
            invalid(resp, r, name, &c);
            kstatus_release(&c);
            return -1;
        }
        kstatus_release(&c);
    }
    return 0;
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
    const char *ns = r->namespaced ? jstr(md, "namespace") : "";
    char name[256];
    snprintf(name, sizeof(name), "%s", jstr0(md, "name"));
    return kl_store_put(api->st, r->rkey, ns ? ns : "", name, obj, err);
}

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
static void crd_cleanup(kl_api *api, const cJSON *crd)
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
        conflict(resp, r, name);
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
                invalid1(resp, r, name, "FieldValueForbidden", "metadata.finalizers",
                         "Forbidden: no new finalizers can be added if the object is being deleted");
                return;
            }
        }
    }
    if (!status_only && admit(api, r, cur, obj, req, resp) != 0) {
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
            crd_cleanup(api, cur);
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
    kl_api_json(resp, 200, stored ? cJSON_Duplicate(stored, 1) : NULL);
}

/* ---- request body ---- */

static cJSON *decode_body(const kl_req *req, kl_resp *resp)
{
    if (!req->body || !req->body_len) {
        bad_request(resp, "the request body is empty");
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
            bad_request(resp, "%s", err.msg);
        return o;
    }
    cJSON *o = cJSON_ParseWithLength(req->body, req->body_len);
    if (!o)
        bad_request(resp, "error decoding request body: invalid JSON");
    return o;
}

/* ---- targets ---- */

typedef struct target {
    kl_res *res;
    char ns[254];
    char name[254];
    char sub[32];
    int has_ns, has_name;
} target;

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

static int sel_match(const klabels_sel *l, const klabels_sel *f, const cJSON *obj)
{
    if (l && !klabels_match_labels(l, cJSON_GetObjectItemCaseSensitive(meta(obj), "labels")))
        return 0;
    if (f && !klabels_match(f, field_get, (void *)obj))
        return 0;
    return 1;
}

static int parse_sels(const kl_req *req, klabels_sel **l, klabels_sel **f, kl_resp *resp)
{
    *l = *f = NULL;
    kiln_error err = {0};
    const char *ls = q(req, "labelSelector"), *fs = q(req, "fieldSelector");
    if (ls && klabels_parse(ls, KLABELS_LABEL, l, &err) != 0) {
        bad_request(resp, "unable to parse requirement: %s", err.msg);
        return -1;
    }
    if (fs && klabels_parse(fs, KLABELS_FIELD, f, &err) != 0) {
        klabels_free(*l);
        *l = NULL;
        bad_request(resp, "invalid field selector: %s", err.msg);
        return -1;
    }
    return 0;
}

static int wants_table(const kl_req *req)
{
    return req->accept && strstr(req->accept, "as=Table") != NULL;
}

/* A Table asked for only in a group-version we do not serve -> 406. */
static int table_unacceptable(const kl_req *req)
{
    if (!wants_table(req))
        return 0;
    const char *a = req->accept;
    if (strstr(a, "g=meta.k8s.io") && (strstr(a, "v=v1;") || strstr(a, "v=v1,") ||
                                       strstr(a, "v=v1beta1")))
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

/* conversion strategy None: only apiVersion changes between versions. */
static cJSON *as_version(const kl_res *r, const cJSON *obj)
{
    cJSON *c = cJSON_Duplicate(obj, 1);
    if (c && r->crd_name) {
        char av[256];
        jset_str(c, "apiVersion", kl_res_api_version(r, av, sizeof(av)));
    }
    return c;
}

/* ---- list ---- */

static void hexenc(const char *s, char *out, size_t n)
{
    size_t j = 0;
    for (; *s && j + 3 < n; s++)
        j += (size_t)snprintf(out + j, n - j, "%02x", (unsigned char)*s);
    out[j] = 0;
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

static void do_list(kl_api *api, const target *t, const kl_req *req, kl_resp *resp)
{
    kl_res *r = t->res;
    klabels_sel *ls, *fs;
    if (parse_sels(req, &ls, &fs, resp))
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
            bad_request(resp, "continue key is not valid");
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
        if (after[0] && strcmp(key, after) <= 0)
            continue;
        if (!sel_match(ls, fs, items[i]))
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
            cJSON_AddItemToArray(arr, as_version(r, sel[i]));
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

static void do_watch(kl_api *api, const target *t, const kl_req *req, kl_resp *resp)
{
    kl_res *r = t->res;
    kl_watch *w = calloc(1, sizeof(*w));
    if (!w) {
        kl_api_status(resp, 500, "InternalError", NULL, NULL, NULL, "out of memory");
        return;
    }
    if (parse_sels(req, &w->lsel, &w->fsel, resp)) {
        free(w);
        return;
    }
    w->group = strdup(r->group);
    w->version = strdup(r->version);
    w->plural = strdup(r->plural);
    w->rkey = strdup(r->rkey);
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
        invalid1(resp, r, "", "FieldValueForbidden", "resourceVersionMatch",
                 "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan");
        return;
    }
    if (!sie && rvm && rvm[0]) {
        kl_watch_free(w);
        invalid1(resp, r, "", "FieldValueForbidden", "resourceVersionMatch",
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
                if (sel_match(w->lsel, w->fsel, items[i]))
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
    char av[256];
    if (w->group[0])
        snprintf(av, sizeof(av), "%s/%s", w->group, w->version);
    else
        snprintf(av, sizeof(av), "%s", w->version);
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
    kbuf_add(b, ev->json, strlen(ev->json));
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
    for (int i = 0; i < 500; i++) {
        const kl_event *ev = kl_store_event_after(api->st, w->cursor);
        if (!ev)
            break;
        w->cursor = ev->rv;
        if (strcmp(ev->rkey, w->rkey) != 0 || (w->ns && strcmp(ev->ns, w->ns) != 0))
            continue;
        int now_m = sel_match(w->lsel, w->fsel, ev->obj);
        int prev_m = ev->prev ? sel_match(w->lsel, w->fsel, ev->prev) : 0;
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

/* ---- verbs ---- */

static void reply_obj(kl_resp *resp, int code, const kl_res *r, const cJSON *obj,
                      const kl_req *req)
{
    if (wants_table(req) && code == 200) {
        const cJSON *one[1] = {obj};
        kl_api_json(resp, 200, kl_table_build(r, one, 1, 1, q(req, "includeObject"),
                                              ktime_now().sec));
        return;
    }
    kl_api_json(resp, code, as_version(r, obj));
}

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
        bad_request(resp, "the API version in the data (%s) does not match the expected API "
                    "version (%s)", a ? a : "", av);
        if (k && strcmp(k, r->kind) != 0)
            bad_request(resp, "%s in version \"%s\" cannot be handled as a %s: the object kind "
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
            bad_request(resp, "the namespace of the provided object does not match the namespace "
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

static int dry_run(const kl_req *req)
{
    const char *d = q(req, "dryRun");
    return d && d[0];
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
            invalid1(resp, r, "", "FieldValueRequired", "metadata.name",
                     "Required value: name or generateName is required");
            cJSON_Delete(obj);
            return;
        }
    }
    if (strlen(name) > 253 || strchr(name, '/') || strchr(name, '\t') || strchr(name, '\n') ||
        strchr(name, ' ')) {
        invalid1(resp, r, name, "FieldValueInvalid", "metadata.name",
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
        qualified(r, qn, sizeof(qn));
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
    if (r->has_status && !(r->builtin && (!strcmp(r->kind, "Namespace") ||
                                          !strcmp(r->kind, "PersistentVolumeClaim") ||
                                          !strcmp(r->kind, "Node"))))
        cJSON_DeleteItemFromObjectCaseSensitive(obj, "status");
    if (admit(api, r, NULL, obj, req, resp) != 0) {
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
    kl_api_json(resp, code, cJSON_Duplicate(stored, 1));
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

static void do_create(kl_api *api, const target *t, const kl_req *req, kl_resp *resp)
{
    cJSON *obj = decode_body(req, resp);
    if (!obj)
        return;
    if (!cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        bad_request(resp, "the body of the request must be a JSON object");
        return;
    }
    do_create_obj(api, t, obj, req, resp, 201);
}

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

static void do_get(kl_api *api, const target *t, const kl_req *req, kl_resp *resp)
{
    kl_res *r = t->res;
    const cJSON *o = kl_store_get(api->st, r->rkey, t->ns, t->name);
    if (!o) {
        not_found(resp, r, t->name);
        return;
    }
    if (!strcmp(t->sub, "scale")) {
        kl_api_json(resp, 200, to_scale(r, o));
        return;
    }
    reply_obj(resp, 200, r, o, req);
}

static void do_update(kl_api *api, const target *t, const kl_req *req, kl_resp *resp)
{
    kl_res *r = t->res;
    cJSON *obj = decode_body(req, resp);
    if (!obj)
        return;
    const cJSON *cur = kl_store_get(api->st, r->rkey, t->ns, t->name);
    if (!cur) {
        cJSON_Delete(obj);
        not_found(resp, r, t->name);
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
        bad_request(resp, "the name of the object (%s) does not match the name on the URL (%s)",
                    bname, t->name);
        return;
    }
    const char *brv = jstr(meta(obj), "resourceVersion");
    if ((!brv || !brv[0]) && !r->builtin) {
        cJSON_Delete(obj);
        invalid1(resp, r, t->name, "FieldValueInvalid", "metadata.resourceVersion",
                 "Invalid value: 0x0: must be specified for an update");
        return;
    }
    finish_update(api, r, cur, obj, !strcmp(t->sub, "status"), req, resp);
}

static const char *PATCH_TYPES =
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

static void do_patch(kl_api *api, const target *t, const kl_req *req, kl_resp *resp)
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
        bad_request(resp, "error decoding patch: invalid JSON");
        return;
    }
    if ((merge || smp || apply) && !cJSON_IsObject(patch)) {
        cJSON_Delete(patch);
        bad_request(resp, "error decoding patch: json: cannot unmarshal array into Go value of "
                    "type map[string]interface {}");
        return;
    }
    if (apply && !q(req, "fieldManager")) {
        cJSON_Delete(patch);
        bad_request(resp, "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required "
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
            bad_request(resp, "%s", err.msg[0] ? err.msg : "apply failed");
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
        not_found(resp, r, t->name);
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
        bad_request(resp, "%s", err.msg[0] ? err.msg : "invalid patch");
        return;
    }
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        bad_request(resp, "the patch produced something other than an object");
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

static void do_delete(kl_api *api, const target *t, const kl_req *req, kl_resp *resp)
{
    kl_res *r = t->res;
    cJSON *opts = NULL;
    if (req->body && req->body_len) {
        opts = decode_body(req, resp);
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
        not_found(resp, r, t->name);
        return;
    }
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(opts, "preconditions");
    const char *puid = jstr(pre, "uid"), *prv = jstr(pre, "resourceVersion");
    if ((puid && strcmp(puid, jstr(meta(cur), "uid") ? jstr(meta(cur), "uid") : "")) ||
        (prv && strcmp(prv, jstr(meta(cur), "resourceVersion") ? jstr(meta(cur), "resourceVersion") : ""))) {
        cJSON_Delete(opts);
        conflict(resp, r, t->name);
        return;
    }
    char pol[32] = "";
    if (policy)
        snprintf(pol, sizeof(pol), "%s", policy);
    cJSON_Delete(opts);
    if (dry_run(req)) {
        reply_obj(resp, 200, r, cur, req);
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
                reply_obj(resp, 200, r, now, req);
                return;
            }
        }
    }
    cJSON *last = cJSON_Duplicate(cur, 1);
    int deleted = 0;
    kiln_error err = {0};
    int is_crd = r->builtin && !strcmp(r->kind, "CustomResourceDefinition");
    if (is_crd && !has_finalizers(cur) && !pol[0])
        crd_cleanup(api, cur);
    else if (is_crd && !has_finalizers(cur) && !strcmp(pol, "Background"))
        crd_cleanup(api, cur);
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
        reply_obj(resp, 200, r, kl_store_get(api->st, r->rkey, t->ns, t->name), req);
    }
    cJSON_Delete(last);
}

static void do_delete_collection(kl_api *api, const target *t, const kl_req *req, kl_resp *resp)
{
    kl_res *r = t->res;
    klabels_sel *ls, *fs;
    if (parse_sels(req, &ls, &fs, resp))
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
            if (sel_match(ls, fs, items[i]))
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
        bad_request(resp, "faults: body must be a JSON object");
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

static void log_request(kl_api *api, const kl_req *req, const target *t, int code)
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
    }
    cJSON_AddStringToObject(o, "userAgent", req->user_agent ? req->user_agent : "");
    if (req->content_type)
        cJSON_AddStringToObject(o, "contentType", req->content_type);
    cJSON_AddNumberToObject(o, "code", code);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (s) {
        fprintf(api->reqlog, "%s\n", s);
        fflush(api->reqlog);
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
        kl_api_status(resp, 404, "NotFound", NULL, NULL, NULL, "the server could not find the requested resource");
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
        kstatus_setf(&s, code, NULL, "%s", code == 429 ? "Too many requests, please try again later." : "injected fault");
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
    if (n == 1 && (!strcmp(segs[0], "healthz") || !strcmp(segs[0], "livez") ||
                   !strcmp(segs[0], "readyz"))) {
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
            kl_api_json(resp, 200, core ? kl_reg_api_versions(api->reg, api->addr)
                                        : kl_reg_group_list(api->reg));
        }
        goto out;
    }
    if ((core && n == 2) || (!core && n <= 3)) {
        cJSON *o = core ? kl_reg_resource_list(api->reg, "", segs[1])
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
            not_found(resp, t.res, t.name);
        else if (api->log_fn)
            api->log_fn(api->log_ctx, t.ns, t.name, req, resp);
        else
            bad_request(resp, "container logs are not available: no kubelet");
        goto out;
    }
    if (!strcmp(m, "GET")) {
        if (t.has_name)
            do_get(api, &t, req, resp);
        else if (qbool(req, "watch"))
            do_watch(api, &t, req, resp);
        else
            do_list(api, &t, req, resp);
    } else if (!strcmp(m, "POST") && !t.has_name) {
        do_create(api, &t, req, resp);
    } else if (!strcmp(m, "PUT") && t.has_name) {
        do_update(api, &t, req, resp);
    } else if (!strcmp(m, "PATCH") && t.has_name) {
        do_patch(api, &t, req, resp);
    } else if (!strcmp(m, "DELETE")) {
        if (t.has_name)
            do_delete(api, &t, req, resp);
        else
            do_delete_collection(api, &t, req, resp);
    } else {
        kl_api_status(resp, 405, "MethodNotAllowed", NULL, NULL, NULL,
                      "the server does not allow this method on the requested resource");
    }
out:
    log_request(api, req, t.res ? &t : NULL, resp->code);
}
