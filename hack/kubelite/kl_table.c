/* kl_table: Table conversion (see kl_table.h). */
#include "kl_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ktime.h"

void kl_table_duration(int64_t s, char *buf, size_t n)
{
    if (s < -1) {
        snprintf(buf, n, "<invalid>");
        return;
    }
    if (s < 0)
        s = 0;
    int64_t m = s / 60, h = s / 3600, d = h / 24, y = d / 365;
    if (s < 120)
        snprintf(buf, n, "%llds", (long long)s);
    else if (m < 10)
        s % 60 ? snprintf(buf, n, "%lldm%llds", (long long)m, (long long)(s % 60))
               : snprintf(buf, n, "%lldm", (long long)m);
    else if (m < 180)
        snprintf(buf, n, "%lldm", (long long)m);
    else if (h < 8)
        m % 60 ? snprintf(buf, n, "%lldh%lldm", (long long)h, (long long)(m % 60))
               : snprintf(buf, n, "%lldh", (long long)h);
    else if (h < 48)
        snprintf(buf, n, "%lldh", (long long)h);
    else if (h < 24 * 8)
        h % 24 ? snprintf(buf, n, "%lldd%lldh", (long long)d, (long long)(h % 24))
               : snprintf(buf, n, "%lldd", (long long)d);
    else if (d < 365 * 2)
        snprintf(buf, n, "%lldd", (long long)d);
    else if (y < 8)
        snprintf(buf, n, "%lldy%lldd", (long long)y, (long long)(d % 365));
    else
        snprintf(buf, n, "%lldy", (long long)y);
}

const cJSON *kl_table_jsonpath(const cJSON *obj, const char *path)
{
    const cJSON *cur = obj;
    const char *p = path;
    if (*p == '{')
        p++;
    char name[256];
    while (cur && *p && *p != '}') {
        if (*p == '.') {
            p++;
            size_t i = 0;
            while (*p && *p != '.' && *p != '[' && *p != '}' && i < sizeof(name) - 1)
                name[i++] = *p++;
            name[i] = 0;
            if (i)
                cur = cJSON_GetObjectItemCaseSensitive(cur, name);
        } else if (*p == '[') {
            p++;
            if (p[0] == '?' ) {
                /* [?(@.key=="value")] */
                char key[128] = "", val[256] = "";
                if (sscanf(p, "?(@.%127[^=]==\"%255[^\"]\")]", key, val) < 2 &&
                    sscanf(p, "?(@.%127[^=]=='%255[^']')]", key, val) < 2)
                    return NULL;
                const cJSON *e, *hit = NULL;
                cJSON_ArrayForEach(e, cur)
                {
                    const cJSON *k = cJSON_GetObjectItemCaseSensitive(e, key);
                    if (cJSON_IsString(k) && strcmp(k->valuestring, val) == 0) {
                        hit = e;
                        break;
                    }
                }
                cur = hit;
                const char *e2 = strstr(p, ")]");
                if (!e2)
                    return NULL;
                p = e2 + 2;
            } else {
                char *end;
                long idx = strtol(p, &end, 10);
                if (*end != ']')
                    return NULL;
                if (idx < 0)
                    idx += cJSON_GetArraySize(cur);
                cur = cJSON_GetArrayItem(cur, (int)idx);
                p = end + 1;
            }
        } else {
            return NULL;
        }
    }
    return cur;
}

/* ---- columns ---- */

typedef struct col {
    const char *name, *type, *format;
    int priority;
} col;

static void add_col(cJSON *defs, const char *name, const char *type, const char *format,
                    int priority, const char *desc)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "name", name);
    cJSON_AddStringToObject(c, "type", type);
    cJSON_AddStringToObject(c, "format", format);
    cJSON_AddStringToObject(c, "description", desc);
    cJSON_AddNumberToObject(c, "priority", priority);
    cJSON_AddItemToArray(defs, c);
}

static const char *sget(const cJSON *o, const char *path)
{
    const cJSON *v = kl_table_jsonpath(o, path);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double nget(const cJSON *o, const char *path)
{
    const cJSON *v = kl_table_jsonpath(o, path);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void age(const cJSON *o, int64_t now, char *buf, size_t n)
{
    const char *ts = sget(o, ".metadata.creationTimestamp");
    ktime t;
    if (!ts || ktime_parse(ts, &t, NULL) != 0) {
        snprintf(buf, n, "<unknown>");
        return;
    }
    kl_table_duration(now - t.sec, buf, n);
}

/* While init containers run, kubectl shows the first one not done:
 * Init:<reason> when it failed or waits for a reason of its own (back-off),
 * else Init:<done>/<count>. Overrides the app containers' status, which
 * only says PodInitializing then. */
static void init_status(const cJSON *o, char *buf, size_t n)
{
    const cJSON *ics = kl_table_jsonpath(o, ".status.initContainerStatuses"), *c;
    int count = cJSON_GetArraySize(kl_table_jsonpath(o, ".spec.initContainers")), i = 0;
    cJSON_ArrayForEach(c, ics)
    {
        const char *t = sget(c, ".state.terminated.reason");
        const char *w = sget(c, ".state.waiting.reason");
        int code = (int)nget(c, ".state.terminated.exitCode");
        int sig = (int)nget(c, ".state.terminated.signal");
        if (kl_table_jsonpath(c, ".state.terminated") && code == 0) {
            i++;
            continue;
        }
        if (kl_table_jsonpath(c, ".state.terminated")) {
            if (t && *t)
                snprintf(buf, n, "Init:%s", t);
            else if (sig)
                snprintf(buf, n, "Init:Signal:%d", sig);
            else
                snprintf(buf, n, "Init:ExitCode:%d", code);
        } else if (w && *w && strcmp(w, "PodInitializing") != 0) {
            snprintf(buf, n, "Init:%s", w);
        } else {
            snprintf(buf, n, "Init:%d/%d", i, count);
        }
        return;
    }
}

static void pod_status(const cJSON *o, char *buf, size_t n, int *ready, int *total, int *restarts)
{
    const char *phase = sget(o, ".status.phase");
    snprintf(buf, n, "%s", phase ? phase : "Pending");
    *ready = *total = *restarts = 0;
    const cJSON *cs = kl_table_jsonpath(o, ".spec.containers");
    *total = cJSON_GetArraySize(cs);
    const cJSON *st = kl_table_jsonpath(o, ".status.containerStatuses"), *c;
    cJSON_ArrayForEach(c, st)
    {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "ready")))
            (*ready)++;
        *restarts += (int)nget(c, ".restartCount");
        const char *w = sget(c, ".state.waiting.reason");
        const char *t = sget(c, ".state.terminated.reason");
        if (w && strcmp(w, "ContainerCreating") != 0)
            snprintf(buf, n, "%s", w);
        else if (t && (!phase || strcmp(phase, "Running") == 0 || strcmp(phase, "Failed") == 0 ||
                       strcmp(phase, "Succeeded") == 0))
            snprintf(buf, n, "%s", t);
    }
    init_status(o, buf, n);
    if (kl_table_jsonpath(o, ".metadata.deletionTimestamp"))
        snprintf(buf, n, "Terminating");
}

static cJSON *cell_str(const char *s)
{
    return cJSON_CreateString(s ? s : "");
}

/* Appends the kind-specific columns (defs may be NULL) and cells. */
static void builtin_row(const kl_res *r, const cJSON *o, cJSON *defs, cJSON *cells, int64_t now)
{
    char buf[256], ag[32];
    age(o, now, ag, sizeof(ag));
    const char *k = r->kind;
    const char *name = sget(o, ".metadata.name");
#define COL(nm, ty, fmt, pr) if (defs) add_col(defs, nm, ty, fmt, pr, nm)
    COL("Name", "string", "name", 0);
    cJSON_AddItemToArray(cells, cell_str(name));
    if (!strcmp(k, "Pod")) {
        int ready, total, restarts;
        char st[64];
        pod_status(o, st, sizeof(st), &ready, &total, &restarts);
        COL("Ready", "string", "", 0);
        COL("Status", "string", "", 0);
        COL("Restarts", "string", "", 0);
        COL("Age", "string", "", 0);
        COL("IP", "string", "", 1);
        COL("Node", "string", "", 1);
        snprintf(buf, sizeof(buf), "%d/%d", ready, total);
        cJSON_AddItemToArray(cells, cell_str(buf));
        cJSON_AddItemToArray(cells, cell_str(st));
        snprintf(buf, sizeof(buf), "%d", restarts);
        cJSON_AddItemToArray(cells, cell_str(buf));
        cJSON_AddItemToArray(cells, cell_str(ag));
        const char *ip = sget(o, ".status.podIP");
        const char *node = sget(o, ".spec.nodeName");
        cJSON_AddItemToArray(cells, cell_str(ip ? ip : "<none>"));
        cJSON_AddItemToArray(cells, cell_str(node ? node : "<none>"));
    } else if (!strcmp(k, "Deployment")) {
        COL("Ready", "string", "", 0);
        COL("Up-to-date", "integer", "", 0);
        COL("Available", "integer", "", 0);
        COL("Age", "string", "", 0);
        snprintf(buf, sizeof(buf), "%d/%d", (int)nget(o, ".status.readyReplicas"),
                 (int)nget(o, ".spec.replicas"));
        cJSON_AddItemToArray(cells, cell_str(buf));
        cJSON_AddItemToArray(cells, cJSON_CreateNumber(nget(o, ".status.updatedReplicas")));
        cJSON_AddItemToArray(cells, cJSON_CreateNumber(nget(o, ".status.availableReplicas")));
        cJSON_AddItemToArray(cells, cell_str(ag));
    } else if (!strcmp(k, "ReplicaSet")) {
        COL("Desired", "integer", "", 0);
        COL("Current", "integer", "", 0);
        COL("Ready", "integer", "", 0);
        COL("Age", "string", "", 0);
        cJSON_AddItemToArray(cells, cJSON_CreateNumber(nget(o, ".spec.replicas")));
        cJSON_AddItemToArray(cells, cJSON_CreateNumber(nget(o, ".status.replicas")));
        cJSON_AddItemToArray(cells, cJSON_CreateNumber(nget(o, ".status.readyReplicas")));
        cJSON_AddItemToArray(cells, cell_str(ag));
    } else if (!strcmp(k, "ConfigMap") || !strcmp(k, "Secret")) {
        int cnt = cJSON_GetArraySize(kl_table_jsonpath(o, ".data")) +
                  cJSON_GetArraySize(kl_table_jsonpath(o, ".binaryData"));
        if (!strcmp(k, "Secret")) {
            COL("Type", "string", "", 0);
            const char *t = sget(o, ".type");
            cJSON_AddItemToArray(cells, cell_str(t ? t : "Opaque"));
        }
        COL("Data", "integer", "", 0);
        COL("Age", "string", "", 0);
        cJSON_AddItemToArray(cells, cJSON_CreateNumber(cnt));
        cJSON_AddItemToArray(cells, cell_str(ag));
    } else if (!strcmp(k, "Namespace")) {
        COL("Status", "string", "", 0);
        COL("Age", "string", "", 0);
        const char *ph = sget(o, ".status.phase");
        cJSON_AddItemToArray(cells, cell_str(ph ? ph : "Active"));
        cJSON_AddItemToArray(cells, cell_str(ag));
    } else if (!strcmp(k, "Service")) {
        COL("Type", "string", "", 0);
        COL("Cluster-IP", "string", "", 0);
        COL("External-IP", "string", "", 0);
        COL("Port(s)", "string", "", 0);
        COL("Age", "string", "", 0);
        const char *t = sget(o, ".spec.type");
        const char *ip = sget(o, ".spec.clusterIP");
        cJSON_AddItemToArray(cells, cell_str(t ? t : "ClusterIP"));
        cJSON_AddItemToArray(cells, cell_str(ip ? ip : "<none>"));
        cJSON_AddItemToArray(cells, cell_str("<none>"));
        buf[0] = 0;
        const cJSON *p;
        cJSON_ArrayForEach(p, kl_table_jsonpath(o, ".spec.ports"))
        {
            size_t l = strlen(buf);
            const char *proto = sget(p, ".protocol");
            snprintf(buf + l, sizeof(buf) - l, "%s%d/%s", l ? "," : "", (int)nget(p, ".port"),
                     proto ? proto : "TCP");
        }
        cJSON_AddItemToArray(cells, cell_str(buf[0] ? buf : "<none>"));
        cJSON_AddItemToArray(cells, cell_str(ag));
    } else if (!strcmp(k, "Lease")) {
        COL("Holder", "string", "", 0);
        COL("Age", "string", "", 0);
        cJSON_AddItemToArray(cells, cell_str(sget(o, ".spec.holderIdentity")));
        cJSON_AddItemToArray(cells, cell_str(ag));
    } else if (!strcmp(k, "Node")) {
        COL("Status", "string", "", 0);
        COL("Roles", "string", "", 0);
        COL("Age", "string", "", 0);
        COL("Version", "string", "", 0);
        const char *rd = sget(o, ".status.conditions[?(@.type==\"Ready\")].status");
        cJSON_AddItemToArray(cells, cell_str(rd && !strcmp(rd, "True") ? "Ready" : "NotReady"));
        cJSON_AddItemToArray(cells, cell_str("<none>"));
        cJSON_AddItemToArray(cells, cell_str(ag));
        cJSON_AddItemToArray(cells, cell_str(sget(o, ".status.nodeInfo.kubeletVersion")));
    } else if (!strcmp(k, "Event")) {
        COL("Type", "string", "", 0);
        COL("Reason", "string", "", 0);
        COL("Object", "string", "", 0);
        COL("Message", "string", "", 0);
        COL("Age", "string", "", 0);
        cJSON_AddItemToArray(cells, cell_str(sget(o, ".type")));
        cJSON_AddItemToArray(cells, cell_str(sget(o, ".reason")));
        const char *ik = sget(o, ".involvedObject.kind"), *in = sget(o, ".involvedObject.name");
        snprintf(buf, sizeof(buf), "%s/%s", ik ? ik : "", in ? in : "");
        cJSON_AddItemToArray(cells, cell_str(buf));
        const char *msg = sget(o, ".message");
        if (!msg)
            msg = sget(o, ".note");
        cJSON_AddItemToArray(cells, cell_str(msg));
        cJSON_AddItemToArray(cells, cell_str(ag));
    } else if (!strcmp(k, "CustomResourceDefinition")) {
        COL("Created At", "date", "", 0);
        cJSON_AddItemToArray(cells, cell_str(sget(o, ".metadata.creationTimestamp")));
    } else {
        COL("Age", "string", "", 0);
        cJSON_AddItemToArray(cells, cell_str(ag));
    }
#undef COL
}

static void crd_row(const kl_res *r, const cJSON *o, cJSON *defs, cJSON *cells, int64_t now)
{
    char buf[64];
    if (defs)
        add_col(defs, "Name", "string", "name", 0,
                "Name must be unique within a namespace. Is required when creating resources.");
    cJSON_AddItemToArray(cells, cell_str(sget(o, ".metadata.name")));
    const cJSON *c;
    cJSON_ArrayForEach(c, r->printer_cols)
    {
        const char *name = sget(c, ".name"), *type = sget(c, ".type");
        const char *jp = sget(c, ".jsonPath"), *fmt = sget(c, ".format");
        const char *desc = sget(c, ".description");
        if (!name || !jp)
            continue;
        type = type ? type : "string";
        if (defs) {
            char d[600];
            snprintf(d, sizeof(d), "%s", desc ? desc : "");
            if (!desc)
                snprintf(d, sizeof(d), "Custom resource definition column (in JSONPath format): %s",
                         jp);
            add_col(defs, name, type, fmt ? fmt : "", (int)nget(c, ".priority"), d);
        }
        const cJSON *v = kl_table_jsonpath(o, jp);
        if (!v || cJSON_IsNull(v)) {
            cJSON_AddItemToArray(cells, cJSON_CreateNull());
        } else if (!strcmp(type, "date")) {
            ktime t;
            if (cJSON_IsString(v) && ktime_parse(v->valuestring, &t, NULL) == 0) {
                kl_table_duration(now - t.sec, buf, sizeof(buf));
                cJSON_AddItemToArray(cells, cell_str(buf));
            } else {
                cJSON_AddItemToArray(cells, cJSON_CreateNull());
            }
        } else if (!strcmp(type, "string") && !cJSON_IsString(v)) {
            char *s = cJSON_PrintUnformatted(v);
            cJSON_AddItemToArray(cells, cell_str(s));
            free(s);
        } else {
            cJSON_AddItemToArray(cells, cJSON_Duplicate(v, 1));
        }
    }
    if (!cJSON_GetArraySize(r->printer_cols)) {
        if (defs)
            add_col(defs, "Age", "date", "", 0,
                    "CreationTimestamp is a timestamp representing the server time when this "
                    "object was created.");
        age(o, now, buf, sizeof(buf));
        cJSON_AddItemToArray(cells, cell_str(buf));
    }
}

cJSON *kl_table_build(const kl_res *r, const cJSON *const *objs, size_t n, int with_cols,
                      const char *include_object, int64_t now_sec)
{
    cJSON *t = cJSON_CreateObject();
    if (!t)
        return NULL;
    cJSON_AddStringToObject(t, "kind", "Table");
    cJSON_AddStringToObject(t, "apiVersion", "meta.k8s.io/v1");
    cJSON_AddObjectToObject(t, "metadata");
    cJSON *defs = with_cols ? cJSON_AddArrayToObject(t, "columnDefinitions") : NULL;
    cJSON *rows = cJSON_AddArrayToObject(t, "rows");
    for (size_t i = 0; i < n; i++) {
        cJSON *row = cJSON_CreateObject();
        cJSON *cells = cJSON_AddArrayToObject(row, "cells");
        if (r->crd_name)
            crd_row(r, objs[i], i == 0 ? defs : NULL, cells, now_sec);
        else
            builtin_row(r, objs[i], i == 0 ? defs : NULL, cells, now_sec);
        if (include_object && !strcmp(include_object, "None")) {
            /* no object */
        } else if (include_object && !strcmp(include_object, "Object")) {
            cJSON_AddItemToObject(row, "object", cJSON_Duplicate(objs[i], 1));
        } else {
            cJSON *po = cJSON_CreateObject();
            cJSON_AddStringToObject(po, "kind", "PartialObjectMetadata");
            cJSON_AddStringToObject(po, "apiVersion", "meta.k8s.io/v1");
            cJSON_AddItemToObject(
                po, "metadata",
                cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(objs[i], "metadata"), 1));
            cJSON_AddItemToObject(row, "object", po);
        }
        cJSON_AddItemToArray(rows, row);
    }
    if (defs && n == 0) {
        /* Column definitions even for an empty list, so kubectl prints headers. */
        cJSON *dummy = cJSON_CreateObject(), *cells = cJSON_CreateArray();
        cJSON_AddItemToObject(dummy, "metadata", cJSON_CreateObject());
        if (r->crd_name)
            crd_row(r, dummy, defs, cells, now_sec);
        else
            builtin_row(r, dummy, defs, cells, now_sec);
        cJSON_Delete(dummy);
        cJSON_Delete(cells);
    }
    return t;
}
