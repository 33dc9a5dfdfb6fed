/* kl_proto: protobuf request bodies to JSON (see kl_proto.h). Field numbers
 * follow k8s.io/api core/v1 and apps/v1 and apimachinery meta/v1
 * generated.proto. */
#include "kl_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
    const unsigned char *p;
    size_t n;
} buf;

typedef struct field {
    uint32_t num;
    int wire;
    uint64_t v;  /* varint value */
    buf b;       /* length-delimited payload */
} field;

static int varint(buf *b, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (!b->n)
            return -1;
        unsigned char c = *b->p++;
        b->n--;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Reads the next field; 1 at end, 0 on success, -1 when malformed. */
static int next(buf *b, field *f)
{
    if (!b->n)
        return 1;
    uint64_t key;
    if (varint(b, &key))
        return -1;
    f->num = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    f->b.p = NULL;
    f->b.n = 0;
    switch (f->wire) {
    case 0:
        return varint(b, &f->v);
    case 1:
        if (b->n < 8)
            return -1;
        b->p += 8;
        b->n -= 8;
        return 0;
    case 2: {
        uint64_t len;
        if (varint(b, &len) || len > b->n)
            return -1;
        f->b.p = b->p;
        f->b.n = (size_t)len;
        b->p += len;
        b->n -= (size_t)len;
        return 0;
    }
    case 5:
        if (b->n < 4)
            return -1;
        b->p += 4;
        b->n -= 4;
        return 0;
    default:
        return -1;
    }
}

static char *str(buf b)
{
    char *s = malloc(b.n + 1);
    if (!s)
        return NULL;
    if (b.n)
        memcpy(s, b.p, b.n);
    s[b.n] = 0;
    return s;
}

char *kl_base64(const unsigned char *p, size_t n)
{
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc(4 * ((n + 2) / 3) + 1);
    if (!o)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        o[j++] = T[(v >> 18) & 63];
        o[j++] = T[(v >> 12) & 63];
        o[j++] = i + 1 < n ? T[(v >> 6) & 63] : '=';
        o[j++] = i + 2 < n ? T[v & 63] : '=';
    }
    o[j] = 0;
    return o;
}

/* Adds a string member unless empty (Go writes empty optional strings). */
static int add_str(cJSON *o, const char *k, buf b)
{
    if (!b.n)
        return 0;
    char *s = str(b);
    if (!s)
        return KILN_ENOMEM;
    cJSON *v = cJSON_CreateString(s);
    free(s);
    if (!v)
        return KILN_ENOMEM;
    cJSON_DeleteItemFromObjectCaseSensitive(o, k);
    cJSON_AddItemToObject(o, k, v);
    return 0;
}

/* A map entry {1 key, 2 value} into obj[key]; value as string or base64. */
static int map_entry(cJSON *obj, buf b, int bytes)
{
    field f;
    buf key = {0}, val = {0};
    int r;
    while ((r = next(&b, &f)) == 0) {
        if (f.num == 1 && f.wire == 2)
            key = f.b;
        else if (f.num == 2 && f.wire == 2)
            val = f.b;
    }
    if (r < 0)
        return KILN_EINVAL;
    char *k = str(key);
    char *v = bytes ? kl_base64(val.p, val.n) : str(val);
    if (!k || !v) {
        free(k);
        free(v);
        return KILN_ENOMEM;
    }
    cJSON_AddItemToObject(obj, k, cJSON_CreateString(v));
    free(k);
    free(v);
    return 0;
}

static cJSON *sub(cJSON *o, const char *k, int array)
{
    cJSON *s = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!s)
        s = array ? cJSON_AddArrayToObject(o, k) : cJSON_AddObjectToObject(o, k);
    return s;
}

static int owner_ref(cJSON *arr, buf b)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return KILN_ENOMEM;
    cJSON_AddItemToArray(arr, o);
    field f;
    int r, rc = 0;
    while ((r = next(&b, &f)) == 0 && !rc) {
        switch (f.num) {
        case 1: rc = add_str(o, "kind", f.b); break;
        case 3: rc = add_str(o, "name", f.b); break;
        case 4: rc = add_str(o, "uid", f.b); break;
        case 5: rc = add_str(o, "apiVersion", f.b); break;
        case 6: cJSON_AddBoolToObject(o, "controller", f.v != 0); break;
        case 7: cJSON_AddBoolToObject(o, "blockOwnerDeletion", f.v != 0); break;
        }
    }
    return r < 0 ? KILN_EINVAL : rc;
}

static int object_meta(cJSON *obj, buf b)
{
    cJSON *md = sub(obj, "metadata", 0);
    if (!md)
        return KILN_ENOMEM;
    field f;
    int r, rc = 0;
    while ((r = next(&b, &f)) == 0 && !rc) {
        switch (f.num) {
        case 1: rc = add_str(md, "name", f.b); break;
        case 2: rc = add_str(md, "generateName", f.b); break;
        case 3: rc = add_str(md, "namespace", f.b); break;
        case 5: rc = add_str(md, "uid", f.b); break;
        case 6: rc = add_str(md, "resourceVersion", f.b); break;
        case 11: rc = map_entry(sub(md, "labels", 0), f.b, 0); break;
        case 12: rc = map_entry(sub(md, "annotations", 0), f.b, 0); break;
        case 13: rc = owner_ref(sub(md, "ownerReferences", 1), f.b); break;
        case 14: {
            char *s = str(f.b);
            if (!s)
                return KILN_ENOMEM;
            cJSON_AddItemToArray(sub(md, "finalizers", 1), cJSON_CreateString(s));
            free(s);
            break;
        }
        default: break;
        }
    }
    return r < 0 ? KILN_EINVAL : rc;
}

/* ---- table-driven messages: Deployment, Pod and what they contain ----
 * Each message is a table of {field number, JSON name, type}. Go writes
 * every non-pointer field, zero values included, so "0 means unset" for the
 * ..._NZ types (int32/bool fields without a pointer), while pointer fields
 * (replicas, terminationGracePeriodSeconds, ...) are kept even when 0.
 * Fields not in a table are skipped. The tables form a tree, so decoding
 * depth is bounded by the schema, not by the input. */

typedef enum ftype {
    F_STR,     /* string; empty means unset */
    F_STRS,    /* repeated string -> array */
    F_INT,     /* varint kept as written (pointer field) */
    F_INT_NZ,  /* varint, 0 means unset */
    F_BOOL,    /* bool kept as written (pointer field) */
    F_BOOL_NZ, /* bool, false means unset */
    F_MSG,     /* nested message -> object */
    F_MSGS,    /* repeated message -> array of objects */
    F_INLINE,  /* embedded struct: its fields merge into this object */
    F_MAP,     /* map<string,string> */
    F_QMAP,    /* map<string,Quantity> */
    F_QTY,     /* resource.Quantity {1 string} -> string */
    F_IOS,     /* intstr.IntOrString {1 type, 2 intVal, 3 strVal} */
    F_META,    /* ObjectMeta -> "metadata" */
} ftype;

typedef struct mdesc mdesc;
typedef struct fdesc {
    uint32_t num;
    const char *name;
    ftype type;
    const mdesc *msg; /* F_MSG, F_MSGS, F_INLINE */
} fdesc;
struct mdesc {
    const fdesc *f;
    size_t n;
};
#define MSG(t) {t, sizeof(t) / sizeof(t[0])}

static const fdesc f_local_ref[] = {{1, "name", F_STR, NULL}};
static const mdesc m_local_ref = MSG(f_local_ref);
static const fdesc f_key_ref[] = {{1, "", F_INLINE, &m_local_ref}, {2, "key", F_STR, NULL},
                                  {3, "optional", F_BOOL, NULL}};
static const mdesc m_key_ref = MSG(f_key_ref);
static const fdesc f_field_ref[] = {{1, "apiVersion", F_STR, NULL}, {2, "fieldPath", F_STR, NULL}};
static const mdesc m_field_ref = MSG(f_field_ref);
static const fdesc f_res_ref[] = {{1, "containerName", F_STR, NULL}, {2, "resource", F_STR, NULL},
                                  {3, "divisor", F_QTY, NULL}};
static const mdesc m_res_ref = MSG(f_res_ref);
static const fdesc f_env_src[] = {{1, "fieldRef", F_MSG, &m_field_ref},
                                  {2, "resourceFieldRef", F_MSG, &m_res_ref},
                                  {3, "configMapKeyRef", F_MSG, &m_key_ref},
                                  {4, "secretKeyRef", F_MSG, &m_key_ref}};
static const mdesc m_env_src = MSG(f_env_src);
static const fdesc f_env[] = {{1, "name", F_STR, NULL}, {2, "value", F_STR, NULL},
                              {3, "valueFrom", F_MSG, &m_env_src}};
static const mdesc m_env = MSG(f_env);
static const fdesc f_env_from[] = {{1, "prefix", F_STR, NULL},
                                   {2, "configMapRef", F_MSG, &m_local_ref},
                                   {3, "secretRef", F_MSG, &m_local_ref}};
static const mdesc m_env_from = MSG(f_env_from);
static const fdesc f_port[] = {{1, "name", F_STR, NULL}, {2, "hostPort", F_INT_NZ, NULL},
                               {3, "containerPort", F_INT, NULL}, {4, "protocol", F_STR, NULL},
                               {5, "hostIP", F_STR, NULL}};
static const mdesc m_port = MSG(f_port);
static const fdesc f_resources[] = {{1, "limits", F_QMAP, NULL}, {2, "requests", F_QMAP, NULL}};
static const mdesc m_resources = MSG(f_resources);
static const fdesc f_mount[] = {{1, "name", F_STR, NULL},         {2, "readOnly", F_BOOL_NZ, NULL},
                                {3, "mountPath", F_STR, NULL},    {4, "subPath", F_STR, NULL},
                                {5, "mountPropagation", F_STR, NULL}, {6, "subPathExpr", F_STR, NULL}};
static const mdesc m_mount = MSG(f_mount);
static const fdesc f_exec[] = {{1, "command", F_STRS, NULL}};
static const mdesc m_exec = MSG(f_exec);
static const fdesc f_header[] = {{1, "name", F_STR, NULL}, {2, "value", F_STR, NULL}};
static const mdesc m_header = MSG(f_header);
static const fdesc f_http[] = {{1, "path", F_STR, NULL}, {2, "port", F_IOS, NULL},
                               {3, "host", F_STR, NULL}, {4, "scheme", F_STR, NULL},
                               {5, "httpHeaders", F_MSGS, &m_header}};
static const mdesc m_http = MSG(f_http);
static const fdesc f_tcp[] = {{1, "port", F_IOS, NULL}, {2, "host", F_STR, NULL}};
static const mdesc m_tcp = MSG(f_tcp);
static const fdesc f_grpc[] = {{1, "port", F_INT, NULL}, {2, "service", F_STR, NULL}};
static const mdesc m_grpc = MSG(f_grpc);
static const fdesc f_handler[] = {{1, "exec", F_MSG, &m_exec}, {2, "httpGet", F_MSG, &m_http},
                                  {3, "tcpSocket", F_MSG, &m_tcp}, {4, "grpc", F_MSG, &m_grpc}};
static const mdesc m_handler = MSG(f_handler);
static const fdesc f_probe[] = {{1, "", F_INLINE, &m_handler},
                                {2, "initialDelaySeconds", F_INT_NZ, NULL},
                                {3, "timeoutSeconds", F_INT_NZ, NULL},
                                {4, "periodSeconds", F_INT_NZ, NULL},
                                {5, "successThreshold", F_INT_NZ, NULL},
                                {6, "failureThreshold", F_INT_NZ, NULL},
                                {7, "terminationGracePeriodSeconds", F_INT, NULL}};
static const mdesc m_probe = MSG(f_probe);
static const fdesc f_container[] = {{1, "name", F_STR, NULL},
                                    {2, "image", F_STR, NULL},
                                    {3, "command", F_STRS, NULL},
                                    {4, "args", F_STRS, NULL},
                                    {5, "workingDir", F_STR, NULL},
                                    {6, "ports", F_MSGS, &m_port},
                                    {7, "env", F_MSGS, &m_env},
                                    {8, "resources", F_MSG, &m_resources},
                                    {9, "volumeMounts", F_MSGS, &m_mount},
                                    {10, "livenessProbe", F_MSG, &m_probe},
                                    {11, "readinessProbe", F_MSG, &m_probe},
                                    {13, "terminationMessagePath", F_STR, NULL},
                                    {14, "imagePullPolicy", F_STR, NULL},
                                    {16, "stdin", F_BOOL_NZ, NULL},
                                    {17, "stdinOnce", F_BOOL_NZ, NULL},
                                    {18, "tty", F_BOOL_NZ, NULL},
                                    {19, "envFrom", F_MSGS, &m_env_from},
                                    {20, "terminationMessagePolicy", F_STR, NULL},
                                    {22, "startupProbe", F_MSG, &m_probe},
                                    {24, "restartPolicy", F_STR, NULL}};
static const mdesc m_container = MSG(f_container);
static const fdesc f_key_path[] = {{1, "key", F_STR, NULL}, {2, "path", F_STR, NULL},
                                   {3, "mode", F_INT, NULL}};
static const mdesc m_key_path = MSG(f_key_path);
static const fdesc f_dw_file[] = {{1, "path", F_STR, NULL}, {2, "fieldRef", F_MSG, &m_field_ref},
                                  {3, "resourceFieldRef", F_MSG, &m_res_ref}, {4, "mode", F_INT, NULL}};
static const mdesc m_dw_file = MSG(f_dw_file);
static const fdesc f_host_path[] = {{1, "path", F_STR, NULL}, {2, "type", F_STR, NULL}};
static const mdesc m_host_path = MSG(f_host_path);
static const fdesc f_empty_dir[] = {{1, "medium", F_STR, NULL}, {2, "sizeLimit", F_QTY, NULL}};
static const mdesc m_empty_dir = MSG(f_empty_dir);
static const fdesc f_secret_vol[] = {{1, "secretName", F_STR, NULL}, {2, "items", F_MSGS, &m_key_path},
                                     {3, "defaultMode", F_INT, NULL}, {4, "optional", F_BOOL, NULL}};
static const mdesc m_secret_vol = MSG(f_secret_vol);
static const fdesc f_pvc_vol[] = {{1, "claimName", F_STR, NULL}, {2, "readOnly", F_BOOL_NZ, NULL}};
static const mdesc m_pvc_vol = MSG(f_pvc_vol);
static const fdesc f_dw_vol[] = {{1, "items", F_MSGS, &m_dw_file}, {2, "defaultMode", F_INT, NULL}};
static const mdesc m_dw_vol = MSG(f_dw_vol);
static const fdesc f_cm_vol[] = {{1, "", F_INLINE, &m_local_ref}, {2, "items", F_MSGS, &m_key_path},
                                 {3, "defaultMode", F_INT, NULL}, {4, "optional", F_BOOL, NULL}};
static const mdesc m_cm_vol = MSG(f_cm_vol);
static const fdesc f_vol_src[] = {{1, "hostPath", F_MSG, &m_host_path},
                                  {2, "emptyDir", F_MSG, &m_empty_dir},
                                  {6, "secret", F_MSG, &m_secret_vol},
                                  {10, "persistentVolumeClaim", F_MSG, &m_pvc_vol},
                                  {16, "downwardAPI", F_MSG, &m_dw_vol},
                                  {19, "configMap", F_MSG, &m_cm_vol}};
static const mdesc m_vol_src = MSG(f_vol_src);
static const fdesc f_volume[] = {{1, "name", F_STR, NULL}, {2, "", F_INLINE, &m_vol_src}};
static const mdesc m_volume = MSG(f_volume);
static const fdesc f_pod_spec[] = {{1, "volumes", F_MSGS, &m_volume},
                                   {2, "containers", F_MSGS, &m_container},
                                   {3, "restartPolicy", F_STR, NULL},
                                   {4, "terminationGracePeriodSeconds", F_INT, NULL},
                                   {5, "activeDeadlineSeconds", F_INT, NULL},
                                   {6, "dnsPolicy", F_STR, NULL},
                                   {7, "nodeSelector", F_MAP, NULL},
                                   {8, "serviceAccountName", F_STR, NULL},
                                   {10, "nodeName", F_STR, NULL},
                                   {11, "hostNetwork", F_BOOL_NZ, NULL},
                                   {16, "hostname", F_STR, NULL},
                                   {17, "subdomain", F_STR, NULL},
                                   {19, "schedulerName", F_STR, NULL},
                                   {20, "initContainers", F_MSGS, &m_container},
                                   {21, "automountServiceAccountToken", F_BOOL, NULL},
                                   {24, "priorityClassName", F_STR, NULL},
                                   {25, "priority", F_INT, NULL}};
static const mdesc m_pod_spec = MSG(f_pod_spec);
static const fdesc f_template[] = {{1, "", F_META, NULL}, {2, "spec", F_MSG, &m_pod_spec}};
static const mdesc m_template = MSG(f_template);
static const fdesc f_sel_req[] = {{1, "key", F_STR, NULL}, {2, "operator", F_STR, NULL},
                                  {3, "values", F_STRS, NULL}};
static const mdesc m_sel_req = MSG(f_sel_req);
static const fdesc f_selector[] = {{1, "matchLabels", F_MAP, NULL},
                                   {2, "matchExpressions", F_MSGS, &m_sel_req}};
static const mdesc m_selector = MSG(f_selector);
static const fdesc f_rolling[] = {{1, "maxUnavailable", F_IOS, NULL}, {2, "maxSurge", F_IOS, NULL}};
static const mdesc m_rolling = MSG(f_rolling);
static const fdesc f_strategy[] = {{1, "type", F_STR, NULL}, {2, "rollingUpdate", F_MSG, &m_rolling}};
static const mdesc m_strategy = MSG(f_strategy);
static const fdesc f_deploy_spec[] = {{1, "replicas", F_INT, NULL},
                                      {2, "selector", F_MSG, &m_selector},
                                      {3, "template", F_MSG, &m_template},
                                      {4, "strategy", F_MSG, &m_strategy},
                                      {5, "minReadySeconds", F_INT_NZ, NULL},
                                      {6, "revisionHistoryLimit", F_INT, NULL},
                                      {7, "paused", F_BOOL_NZ, NULL},
                                      {9, "progressDeadlineSeconds", F_INT, NULL}};
static const mdesc m_deploy_spec = MSG(f_deploy_spec);
static const fdesc f_deployment[] = {{1, "", F_META, NULL}, {2, "spec", F_MSG, &m_deploy_spec}};
static const mdesc m_deployment = MSG(f_deployment);
static const fdesc f_pod[] = {{1, "", F_META, NULL}, {2, "spec", F_MSG, &m_pod_spec}};
static const mdesc m_pod = MSG(f_pod);

static int decode_msg(cJSON *o, buf b, const mdesc *m);

/* A Quantity message {1 string} as a new JSON string. */
static cJSON *quantity(buf b)
{
    field f;
    buf s = {0};
    int r;
    while ((r = next(&b, &f)) == 0)
        if (f.num == 1 && f.wire == 2)
            s = f.b;
    if (r < 0)
        return NULL;
    char *v = str(s);
    cJSON *j = v ? cJSON_CreateString(v) : NULL;
    free(v);
    return j;
}

/* An IntOrString: a number or a string, as JSON writes it. */
static cJSON *int_or_string(buf b)
{
    field f;
    uint64_t type = 0, iv = 0;
    buf sv = {0};
    int r;
    while ((r = next(&b, &f)) == 0) {
        if (f.num == 1 && f.wire == 0)
            type = f.v;
        else if (f.num == 2 && f.wire == 0)
            iv = f.v;
        else if (f.num == 3 && f.wire == 2)
            sv = f.b;
    }
    if (r < 0)
        return NULL;
    if (type == 0)
        return cJSON_CreateNumber((double)(int32_t)(int64_t)iv);
    char *v = str(sv);
    cJSON *j = v ? cJSON_CreateString(v) : NULL;
    free(v);
    return j;
}

/* A map entry {1 key, 2 Quantity} into obj[key]. */
static int qmap_entry(cJSON *obj, buf b)
{
    field f;
    buf key = {0}, val = {0};
    int r;
    while ((r = next(&b, &f)) == 0) {
        if (f.num == 1 && f.wire == 2)
            key = f.b;
        else if (f.num == 2 && f.wire == 2)
            val = f.b;
    }
    if (r < 0)
        return KILN_EINVAL;
    char *k = str(key);
    cJSON *v = k ? quantity(val) : NULL;
    if (!v) {
        free(k);
        return KILN_EINVAL;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(obj, k);
    cJSON_AddItemToObject(obj, k, v);
    free(k);
    return 0;
}

static int add_item(cJSON *o, const char *k, cJSON *v)
{
    if (!v)
        return KILN_ENOMEM;
    cJSON_DeleteItemFromObjectCaseSensitive(o, k);
    cJSON_AddItemToObject(o, k, v);
    return 0;
}

static int decode_field(cJSON *o, const fdesc *d, const field *f)
{
    int want_len = d->type != F_INT && d->type != F_INT_NZ && d->type != F_BOOL && d->type != F_BOOL_NZ;
    if (want_len != (f->wire == 2))
        return KILN_EINVAL; /* a known field with the wrong wire type */
    switch (d->type) {
    case F_STR:
        return add_str(o, d->name, f->b);
    case F_STRS: {
        cJSON *arr = sub(o, d->name, 1);
        char *s = str(f->b);
        cJSON *v = s ? cJSON_CreateString(s) : NULL;
        free(s);
        if (!arr || !v || !cJSON_AddItemToArray(arr, v)) {
            cJSON_Delete(v);
            return KILN_ENOMEM;
        }
        return 0;
    }
    case F_INT:
    case F_INT_NZ:
        if (d->type == F_INT_NZ && f->v == 0)
            return 0;
        return add_item(o, d->name, cJSON_CreateNumber((double)(int64_t)f->v));
    case F_BOOL:
    case F_BOOL_NZ:
        if (d->type == F_BOOL_NZ && f->v == 0)
            return 0;
        return add_item(o, d->name, cJSON_CreateBool(f->v != 0));
    case F_MSG: {
        cJSON *s = sub(o, d->name, 0);
        return s ? decode_msg(s, f->b, d->msg) : KILN_ENOMEM;
    }
    case F_MSGS: {
        cJSON *arr = sub(o, d->name, 1);
        cJSON *s = cJSON_CreateObject();
        if (!arr || !s || !cJSON_AddItemToArray(arr, s)) {
            cJSON_Delete(s);
            return KILN_ENOMEM;
        }
        return decode_msg(s, f->b, d->msg);
    }
    case F_INLINE:
        return decode_msg(o, f->b, d->msg);
    case F_MAP: {
        cJSON *s = sub(o, d->name, 0);
        return s ? map_entry(s, f->b, 0) : KILN_ENOMEM;
    }
    case F_QMAP: {
        cJSON *s = sub(o, d->name, 0);
        return s ? qmap_entry(s, f->b) : KILN_ENOMEM;
    }
    case F_QTY: {
        cJSON *v = quantity(f->b);
        return v ? add_item(o, d->name, v) : KILN_EINVAL;
    }
    case F_IOS: {
        cJSON *v = int_or_string(f->b);
        return v ? add_item(o, d->name, v) : KILN_EINVAL;
    }
    case F_META:
        return object_meta(o, f->b);
    }
    return 0;
}

static int decode_msg(cJSON *o, buf b, const mdesc *m)
{
    field f;
    int r, rc = 0;
    while (!rc && (r = next(&b, &f)) == 0) {
        for (size_t i = 0; i < m->n; i++) {
            if (m->f[i].num == f.num) {
                rc = decode_field(o, &m->f[i], &f);
                break;
            }
        }
    }
    if (rc)
        return rc;
    return r < 0 ? KILN_EINVAL : 0;
}

static int decode_kind(const char *kind, buf raw, cJSON *o)
{
    field f;
    int r, rc = 0;
    if (!strcmp(kind, "Secret")) {
        while ((r = next(&raw, &f)) == 0 && !rc) {
            if (f.num == 1)
                rc = object_meta(o, f.b);
            else if (f.num == 2)
                rc = map_entry(sub(o, "data", 0), f.b, 1);
            else if (f.num == 3)
                rc = add_str(o, "type", f.b);
            else if (f.num == 4)
                rc = map_entry(sub(o, "stringData", 0), f.b, 0);
            else if (f.num == 5)
                cJSON_AddBoolToObject(o, "immutable", f.v != 0);
        }
    } else if (!strcmp(kind, "ConfigMap")) {
        while ((r = next(&raw, &f)) == 0 && !rc) {
            if (f.num == 1)
                rc = object_meta(o, f.b);
            else if (f.num == 2)
                rc = map_entry(sub(o, "data", 0), f.b, 0);
            else if (f.num == 3)
                rc = map_entry(sub(o, "binaryData", 0), f.b, 1);
            else if (f.num == 4)
                cJSON_AddBoolToObject(o, "immutable", f.v != 0);
        }
    } else if (!strcmp(kind, "Namespace")) {
        while ((r = next(&raw, &f)) == 0 && !rc) {
            if (f.num == 1)
                rc = object_meta(o, f.b);
            else if (f.num == 2) {
                buf s = f.b;
                field g;
                int r2;
                while ((r2 = next(&s, &g)) == 0)
                    if (g.num == 1) {
                        char *v = str(g.b);
                        if (!v)
                            return KILN_ENOMEM;
                        cJSON_AddItemToArray(sub(sub(o, "spec", 0), "finalizers", 1),
                                             cJSON_CreateString(v));
                        free(v);
                    }
                if (r2 < 0)
                    return KILN_EINVAL;
            }
        }
    } else if (!strcmp(kind, "DeleteOptions")) {
        while ((r = next(&raw, &f)) == 0 && !rc) {
            if (f.num == 1)
                cJSON_AddNumberToObject(o, "gracePeriodSeconds", (double)(int64_t)f.v);
            else if (f.num == 2) {
                cJSON *pc = sub(o, "preconditions", 0);
                buf s = f.b;
                field g;
                while (next(&s, &g) == 0 && !rc) {
                    if (g.num == 1)
                        rc = add_str(pc, "uid", g.b);
                    else if (g.num == 2)
                        rc = add_str(pc, "resourceVersion", g.b);
                }
            } else if (f.num == 3)
                cJSON_AddBoolToObject(o, "orphanDependents", f.v != 0);
            else if (f.num == 4)
                rc = add_str(o, "propagationPolicy", f.b);
            else if (f.num == 5) {
                char *v = str(f.b);
                if (!v)
                    return KILN_ENOMEM;
                cJSON_AddItemToArray(sub(o, "dryRun", 1), cJSON_CreateString(v));
                free(v);
            }
        }
    } else if (!strcmp(kind, "Deployment")) {
        return decode_msg(o, raw, &m_deployment);
    } else if (!strcmp(kind, "Pod")) {
        return decode_msg(o, raw, &m_pod);
    } else {
        return KILN_EUNSUPPORTED;
    }
    return r < 0 ? KILN_EINVAL : rc;
}

int kl_proto_decode(const unsigned char *body, size_t len, cJSON **out, kiln_error *err)
{
    *out = NULL;
    if (len < 4 || memcmp(body, "k8s\0", 4) != 0)
        return kiln_fail(err, KILN_EINVAL, "protobuf body without the k8s envelope");
    buf b = {body + 4, len - 4};
    buf tm = {0}, raw = {0};
    field f;
    int r;
    while ((r = next(&b, &f)) == 0) {
        if (f.num == 1 && f.wire == 2)
            tm = f.b;
        else if (f.num == 2 && f.wire == 2)
            raw = f.b;
    }
    if (r < 0)
        return kiln_fail(err, KILN_EINVAL, "malformed protobuf envelope");
    buf api = {0}, kind = {0};
    while ((r = next(&tm, &f)) == 0) {
        if (f.num == 1)
            api = f.b;
        else if (f.num == 2)
            kind = f.b;
    }
    char *k = str(kind), *a = str(api);
    cJSON *o = cJSON_CreateObject();
    if (!k || !a || !o) {
        free(k);
        free(a);
        cJSON_Delete(o);
        return KILN_ENOMEM;
    }
    cJSON_AddStringToObject(o, "kind", k);
    cJSON_AddStringToObject(o, "apiVersion", a);
    int rc = decode_kind(k, raw, o);
    if (rc == KILN_EUNSUPPORTED)
        kiln_fail(err, rc, "protobuf decoding of %s is not supported; send JSON", k);
    else if (rc)
        kiln_fail(err, rc, "malformed protobuf %s", k);
    free(k);
    free(a);
    if (rc) {
        cJSON_Delete(o);
        return rc;
    }
    *out = o;
    return 0;
}
