/* kl_schema: CRD structural schema pruning, defaulting and validation
 * (see kl_schema.h). Patterns use POSIX extended regular expressions,
 * which cover the anchors, classes and repetitions CRDs use in practice. */
#include "kl_schema.h"

#include <math.h>
#include <stdarg.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kl_schema_strs_free(kl_strs *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

static int strs_push(kl_strs *s, const char *v)
{
    char **nv = realloc(s->v, (s->n + 1) * sizeof(*nv));
    if (!nv)
        return KILN_ENOMEM;
    s->v = nv;
    if (!(nv[s->n] = strdup(v)))
        return KILN_ENOMEM;
    s->n++;
    return 0;
}

static const cJSON *get(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static int is_true(const cJSON *o, const char *k)
{
    return cJSON_IsTrue(get(o, k));
}

/* path + "." + key into buf */
static void join(char *buf, size_t n, const char *path, const char *key)
{
    if (path[0])
        snprintf(buf, n, "%s.%s", path, key);
    else
        snprintf(buf, n, "%s", key);
}

/* ---- pruning and defaulting ---- */

static void prune(const cJSON *schema, cJSON *node, const char *path, kl_strs *unknown);

static void apply_defaults(const cJSON *schema, cJSON *node)
{
    if (!schema)
        return;
    if (cJSON_IsObject(node)) {
        const cJSON *props = get(schema, "properties");
        for (const cJSON *p = props ? props->child : NULL; p; p = p->next) {
            cJSON *v = cJSON_GetObjectItemCaseSensitive(node, p->string);
            const cJSON *def = get(p, "default");
            if (v && cJSON_IsNull(v) && !is_true(p, "nullable")) {
                cJSON_DeleteItemFromObjectCaseSensitive(node, p->string);
                v = NULL;
            }
            if (!v && def) {
                v = cJSON_Duplicate(def, 1);
                if (v)
                    cJSON_AddItemToObject(node, p->string, v);
            }
            if (v)
                apply_defaults(p, v);
        }
        const cJSON *ap = get(schema, "additionalProperties");
        if (cJSON_IsObject(ap))
            for (cJSON *c = node->child; c; c = c->next)
                apply_defaults(ap, c);
    } else if (cJSON_IsArray(node)) {
        const cJSON *items = get(schema, "items");
        cJSON *c;
        cJSON_ArrayForEach(c, node) apply_defaults(items, c);
    }
}

static void prune(const cJSON *schema, cJSON *node, const char *path, kl_strs *unknown)
{
    if (!schema)
        return;
    char sub[1024];
    if (cJSON_IsObject(node)) {
        if (is_true(schema, "x-kubernetes-embedded-resource"))
            return;
        const cJSON *props = get(schema, "properties");
        const cJSON *ap = get(schema, "additionalProperties");
        int preserve = is_true(schema, "x-kubernetes-preserve-unknown-fields");
        cJSON *c = node->child;
        while (c) {
            cJSON *next = c->next;
            const cJSON *ps = props ? get(props, c->string) : NULL;
            join(sub, sizeof(sub), path, c->string);
            if (ps)
                prune(ps, c, sub, unknown);
            else if (cJSON_IsObject(ap))
                prune(ap, c, sub, unknown);
            else if (!preserve && !cJSON_IsTrue(ap)) {
                if (unknown)
                    strs_push(unknown, sub);
                cJSON_DetachItemViaPointer(node, c);
                cJSON_Delete(c);
            }
            c = next;
        }
    } else if (cJSON_IsArray(node)) {
        const cJSON *items = get(schema, "items");
        cJSON *c;
        int i = 0;
        cJSON_ArrayForEach(c, node)
        {
            snprintf(sub, sizeof(sub), "%s[%d]", path, i++);
            prune(items, c, sub, unknown);
        }
    }
}

int kl_schema_prune_default(const cJSON *schema, cJSON *obj, kl_strs *unknown)
{
    if (!schema || !cJSON_IsObject(obj))
        return 0;
    const cJSON *props = get(schema, "properties");
    char sub[512];
    cJSON *c = obj->child;
    while (c) {
        cJSON *next = c->next;
        if (strcmp(c->string, "apiVersion") && strcmp(c->string, "kind") &&
            strcmp(c->string, "metadata")) {
            const cJSON *ps = props ? get(props, c->string) : NULL;
            if (ps)
                prune(ps, c, c->string, unknown);
            else if (!is_true(schema, "x-kubernetes-preserve-unknown-fields")) {
                snprintf(sub, sizeof(sub), "%s", c->string);
                if (unknown)
                    strs_push(unknown, sub);
                cJSON_DetachItemViaPointer(obj, c);
                cJSON_Delete(c);
            }
        }
        c = next;
    }
    for (const cJSON *p = props ? props->child : NULL; p; p = p->next) {
        if (!strcmp(p->string, "metadata") || !strcmp(p->string, "apiVersion") ||
            !strcmp(p->string, "kind"))
            continue;
        cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, p->string);
        const cJSON *def = get(p, "default");
        if (!v && def && (v = cJSON_Duplicate(def, 1)))
            cJSON_AddItemToObject(obj, p->string, v);
        if (v)
            apply_defaults(p, v);
    }
    return 0;
}

/* ---- validation ---- */

static const char *type_of(const cJSON *v)
{
    if (cJSON_IsString(v))
        return "string";
    if (cJSON_IsBool(v))
        return "boolean";
    if (cJSON_IsNumber(v))
        return v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 9e15 ? "integer"
                                                                                    : "number";
    if (cJSON_IsArray(v))
        return "array";
    if (cJSON_IsObject(v))
        return "object";
    return "null";
}

static int type_ok(const char *want, const cJSON *v)
{
    const char *t = type_of(v);
    if (strcmp(want, "number") == 0)
        return cJSON_IsNumber(v);
    return strcmp(want, t) == 0;
}

static void fmt_val(const cJSON *v, char *buf, size_t n)
{
    char *s = cJSON_PrintUnformatted(v);
    snprintf(buf, n, "%s", s ? s : "?");
    if (strlen(buf) > 80)
        snprintf(buf + 76, n - 76, "...");
    free(s);
}

static int fail(kstatus *st, const char *reason, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(kstatus *st, const char *reason, const char *field, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    kstatus_add_cause(st, reason, msg, field);
    return 1;
}

static int validate(const cJSON *schema, const cJSON *v, const char *path, kstatus *st)
{
    if (!schema)
        return 0;
    int n = 0;
    char vb[128], sub[1024];
    const cJSON *type = get(schema, "type");
    if (cJSON_IsNull(v)) {
        if (is_true(schema, "nullable") || !cJSON_IsString(type))
            return 0;
    }
    if (is_true(schema, "x-kubernetes-int-or-string")) {
        if (!cJSON_IsString(v) && !(cJSON_IsNumber(v) && !strcmp(type_of(v), "integer"))) {
            fmt_val(v, vb, sizeof(vb));
            return fail(st, "FieldValueTypeInvalid", path,
                        "Invalid value: %s: %s in body must be of type integer,string: \"%s\"", vb,
                        path, type_of(v));
        }
    } else if (cJSON_IsString(type) && !type_ok(type->valuestring, v)) {
        fmt_val(v, vb, sizeof(vb));
        return fail(st, "FieldValueTypeInvalid", path,
                    "Invalid value: %s: %s in body must be of type %s: \"%s\"", vb, path,
                    type->valuestring, type_of(v));
    }
    const cJSON *en = get(schema, "enum");
    if (cJSON_IsArray(en)) {
        int ok = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, en) ok |= cJSON_Compare(e, v, 1);
        if (!ok) {
            char list[512] = "";
            cJSON_ArrayForEach(e, en)
            {
                fmt_val(e, vb, sizeof(vb));
                size_t l = strlen(list);
                snprintf(list + l, sizeof(list) - l, "%s%s", l ? ", " : "", vb);
            }
            fmt_val(v, vb, sizeof(vb));
            n += fail(st, "FieldValueNotSupported", path,
                      "Unsupported value: %s: supported values: %s", vb, list);
        }
    }
    if (cJSON_IsNumber(v)) {
        const cJSON *mn = get(schema, "minimum"), *mx = get(schema, "maximum");
        fmt_val(v, vb, sizeof(vb));
        if (cJSON_IsNumber(mn)) {
            int ex = is_true(schema, "exclusiveMinimum");
            if (ex ? v->valuedouble <= mn->valuedouble : v->valuedouble < mn->valuedouble)
                n += fail(st, "FieldValueInvalid", path,
                          "Invalid value: %s: %s in body should be greater than %s%g", vb, path,
                          ex ? "" : "or equal to ", mn->valuedouble);
        }
        if (cJSON_IsNumber(mx)) {
            int ex = is_true(schema, "exclusiveMaximum");
            if (ex ? v->valuedouble >= mx->valuedouble : v->valuedouble > mx->valuedouble)
                n += fail(st, "FieldValueInvalid", path,
                          "Invalid value: %s: %s in body should be less than %s%g", vb, path,
                          ex ? "" : "or equal to ", mx->valuedouble);
        }
    }
    if (cJSON_IsString(v)) {
        size_t len = strlen(v->valuestring);
        const cJSON *mxl = get(schema, "maxLength"), *mnl = get(schema, "minLength");
        const cJSON *pat = get(schema, "pattern");
        fmt_val(v, vb, sizeof(vb));
        if (cJSON_IsNumber(mxl) && len > (size_t)mxl->valuedouble)
            n += fail(st, "FieldValueTooLong", path,
                      "Too long: may not be more than %d bytes", (int)mxl->valuedouble);
        if (cJSON_IsNumber(mnl) && len < (size_t)mnl->valuedouble)
            n += fail(st, "FieldValueInvalid", path,
                      "Invalid value: %s: %s in body should be at least %d chars long", vb, path,
                      (int)mnl->valuedouble);
        if (cJSON_IsString(pat)) {
            regex_t re;
            if (regcomp(&re, pat->valuestring, REG_EXTENDED | REG_NOSUB) == 0) {
                if (regexec(&re, v->valuestring, 0, NULL, 0) != 0)
                    n += fail(st, "FieldValueInvalid", path,
                              "Invalid value: %s: %s in body should match '%s'", vb, path,
                              pat->valuestring);
                regfree(&re);
            }
        }
    }
    if (cJSON_IsArray(v)) {
        int sz = cJSON_GetArraySize(v);
        const cJSON *mxi = get(schema, "maxItems"), *mni = get(schema, "minItems");
        if (cJSON_IsNumber(mxi) && sz > (int)mxi->valuedouble)
            n += fail(st, "FieldValueTooMany", path, "Too many: %d: must have at most %d items",
                      sz, (int)mxi->valuedouble);
        if (cJSON_IsNumber(mni) && sz < (int)mni->valuedouble)
            n += fail(st, "FieldValueInvalid", path,
                      "Invalid value: %d: %s in body should have at least %d items", sz, path,
                      (int)mni->valuedouble);
        const cJSON *items = get(schema, "items");
        int i = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, v)
        {
            snprintf(sub, sizeof(sub), "%s[%d]", path, i++);
            n += validate(items, c, sub, st);
        }
    }
    if (cJSON_IsObject(v)) {
        const cJSON *req = get(schema, "required");
        const cJSON *r;
        cJSON_ArrayForEach(r, req)
        {
            if (cJSON_IsString(r) && !get(v, r->valuestring)) {
                join(sub, sizeof(sub), path, r->valuestring);
                n += fail(st, "FieldValueRequired", sub, "Required value");
            }
        }
        const cJSON *props = get(schema, "properties");
        const cJSON *ap = get(schema, "additionalProperties");
        for (const cJSON *c = v->child; c; c = c->next) {
            const cJSON *ps = props ? get(props, c->string) : NULL;
            join(sub, sizeof(sub), path, c->string);
            if (ps)
                n += validate(ps, c, sub, st);
            else if (cJSON_IsObject(ap))
                n += validate(ap, c, sub, st);
        }
    }
    return n;
}

int kl_schema_validate(const cJSON *schema, const cJSON *obj, kstatus *st)
{
    if (!schema || !cJSON_IsObject(obj))
        return 0;
    const cJSON *props = get(schema, "properties");
    int n = 0;
    const cJSON *req = get(schema, "required");
    const cJSON *r;
    cJSON_ArrayForEach(r, req)
    {
        if (cJSON_IsString(r) && !get(obj, r->valuestring))
            n += fail(st, "FieldValueRequired", r->valuestring, "Required value");
    }
    for (const cJSON *c = obj->child; c; c = c->next) {
        if (!strcmp(c->string, "apiVersion") || !strcmp(c->string, "kind") ||
            !strcmp(c->string, "metadata"))
            continue;
        const cJSON *ps = props ? get(props, c->string) : NULL;
        if (ps)
            n += validate(ps, c, c->string, st);
    }
    return n;
}
