/* kl_api_admit: kind-specific defaulting and validation of objects before
 * they are stored (part of kl_api, see kl_api_int.h): Secret stringData,
 * Lease and Event times, Namespace finalizers, Service cluster IPs, PVC
 * binding, Pod and workload defaults, CRD names and status, and pruning,
 * defaulting and validation of custom resources against their schema. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kl_api_int.h"
#include "kl_proto.h"
#include "kl_schema.h"
#include "ktime.h"

static void set_default(cJSON *o, const char *k, cJSON *v)
{
    if (!o || cJSON_GetObjectItemCaseSensitive(o, k)) {
        cJSON_Delete(v);
        return;
    }
    cJSON_AddItemToObject(o, k, v);
}

/* The probe fields a real API server fills in, so kubectl describe shows
 * them as the kubelet applies them. */
static void default_probe(cJSON *p)
{
    if (!cJSON_IsObject(p))
        return;
    set_default(p, "timeoutSeconds", cJSON_CreateNumber(1));
    set_default(p, "periodSeconds", cJSON_CreateNumber(10));
    set_default(p, "successThreshold", cJSON_CreateNumber(1));
    set_default(p, "failureThreshold", cJSON_CreateNumber(3));
}

static void default_container(cJSON *c)
{
    set_default(c, "terminationMessagePath", cJSON_CreateString("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", cJSON_CreateString("File"));
    set_default(c, "imagePullPolicy", cJSON_CreateString("IfNotPresent"));
    set_default(c, "resources", cJSON_CreateObject());
    cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(c, "ports"))
        set_default(p, "protocol", cJSON_CreateString("TCP"));
    static const char *const probes[] = {"startupProbe", "livenessProbe", "readinessProbe"};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++)
        default_probe(cJSON_GetObjectItemCaseSensitive(c, probes[i]));
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
    static const char *const lists[] = {"initContainers", "containers"};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(spec, lists[i]))
            default_container(c);
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
int kla_admit(kl_api *api, const kl_res *r, const cJSON *old, cJSON *obj, const kl_req *req,
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
            kla_invalid1(resp, r, name, "FieldValueRequired", "spec.containers", "Required value");
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
            kla_invalid1(resp, r, name, "FieldValueRequired", "spec.selector", "Required value");
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
            kla_invalid1(resp, r, name, "FieldValueInvalid", "metadata.name", m);
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
            kla_bad_request(resp, "%s in version \"%s\" cannot be handled as a %s: strict decoding "
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
            kla_invalid(resp, r, name, &c);
            kstatus_release(&c);
            return -1;
        }
        kstatus_release(&c);
    }
    return 0;
}
