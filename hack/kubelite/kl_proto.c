/* kl_proto: protobuf request bodies to JSON (see kl_proto.h). Field numbers
 * follow k8s.io/api core/v1 and apimachinery meta/v1 generated.proto. */
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
