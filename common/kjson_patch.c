/* kjson_patch: RFC 7386 merge patch and RFC 6902 JSON patch (see
 * kjson_patch.h). */
#include "kjson_patch.h"

#include <stdlib.h>
#include <string.h>

/* ---- merge patch ---- */

static int merge(cJSON **doc, const cJSON *patch)
{
    if (!cJSON_IsObject(patch)) {
        cJSON *c = cJSON_Duplicate(patch, 1);
        if (!c)
            return KILN_ENOMEM;
        cJSON_Delete(*doc);
        *doc = c;
        return 0;
    }
    if (!cJSON_IsObject(*doc)) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return KILN_ENOMEM;
        cJSON_Delete(*doc);
        *doc = o;
    }
    for (const cJSON *p = patch->child; p; p = p->next) {
        if (cJSON_IsNull(p)) {
            cJSON_DeleteItemFromObjectCaseSensitive(*doc, p->string);
            continue;
        }
        cJSON *cur = cJSON_DetachItemFromObjectCaseSensitive(*doc, p->string);
        if (!cJSON_IsObject(p)) {
            cJSON_Delete(cur);
            cur = NULL;
        }
        int rc = merge(&cur, p);
        if (rc) {
            cJSON_Delete(cur);
            return rc;
        }
        if (!cJSON_AddItemToObject(*doc, p->string, cur)) {
            cJSON_Delete(cur);
            return KILN_ENOMEM;
        }
    }
    return 0;
}

int kjson_merge_patch(cJSON **doc, const cJSON *patch, kiln_error *err)
{
    int rc = merge(doc, patch);
    if (rc)
        return kiln_fail(err, rc, "merge patch: out of memory");
    return 0;
}

cJSON *kjson_merge_diff(const cJSON *from, const cJSON *to)
{
    cJSON *d = cJSON_CreateObject();
    if (!d)
        return NULL;
    for (const cJSON *f = from ? from->child : NULL; f; f = f->next)
        if (!cJSON_GetObjectItemCaseSensitive(to, f->string) && !cJSON_AddNullToObject(d, f->string))
            goto oom;
    for (const cJSON *t = to ? to->child : NULL; t; t = t->next) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(from, t->string);
        cJSON *v = NULL;
        if (f && cJSON_Compare(f, t, 1))
            continue;
        if (f && cJSON_IsObject(f) && cJSON_IsObject(t))
            v = kjson_merge_diff(f, t);
        else
            v = cJSON_Duplicate(t, 1);
        if (!v || !cJSON_AddItemToObject(d, t->string, v)) {
            cJSON_Delete(v);
            goto oom;
        }
    }
    return d;
oom:
    cJSON_Delete(d);
    return NULL;
}

/* ---- JSON pointer ---- */

/* Decodes one reference token [s, s+n) into buf. Returns 0 or -1 on a bad
 * escape. */
static int unescape(const char *s, size_t n, char *buf)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '~') {
            if (i + 1 >= n || (s[i + 1] != '0' && s[i + 1] != '1'))
                return -1;
            buf[j++] = s[i + 1] == '0' ? '~' : '/';
            i++;
        } else {
            buf[j++] = s[i];
        }
    }
    buf[j] = 0;
    return 0;
}

/* Parses an array index; -1 if invalid. "-" gives `size` when allow_end. */
static long arr_index(const char *tok, int size, int allow_end)
{
    if (allow_end && strcmp(tok, "-") == 0)
        return size;
    if (!tok[0] || (tok[0] == '0' && tok[1]))
        return -1;
    long v = 0;
    for (const char *p = tok; *p; p++) {
        if (*p < '0' || *p > '9' || v > 100000000)
            return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

static cJSON *child(cJSON *node, const char *tok)
{
    if (cJSON_IsObject(node))
        return cJSON_GetObjectItemCaseSensitive(node, tok);
    if (cJSON_IsArray(node)) {
        long i = arr_index(tok, cJSON_GetArraySize(node), 0);
        return i < 0 ? NULL : cJSON_GetArrayItem(node, (int)i);
    }
    return NULL;
}

cJSON *kjson_pointer_get(cJSON *doc, const char *ptr)
{
    if (!ptr)
        return NULL;
    if (!ptr[0])
        return doc;
    if (ptr[0] != '/')
        return NULL;
    size_t len = strlen(ptr);
    char *buf = malloc(len + 1);
    if (!buf)
        return NULL;
    cJSON *cur = doc;
    const char *p = ptr + 1;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (unescape(p, n, buf) != 0) {
            cur = NULL;
            break;
        }
        cur = child(cur, buf);
        if (!cur || !e)
            break;
        p = e + 1;
    }
    free(buf);
    return cur;
}

/* Splits ptr into its parent node and the last (unescaped) token, which is
 * written into a malloc'd *last. Returns 0, KILN_EINVAL (bad syntax),
 * KILN_ECONFLICT (parent missing) or KILN_ENOMEM. */
static int split_parent(cJSON *doc, const char *ptr, cJSON **parent, char **last)
{
    *parent = NULL;
    *last = NULL;
    if (!ptr || ptr[0] != '/')
        return KILN_EINVAL;
    const char *slash = strrchr(ptr, '/');
    size_t plen = (size_t)(slash - ptr);
    char *pp = malloc(plen + 1);
    char *tok = malloc(strlen(slash) + 1);
    if (!pp || !tok) {
        free(pp);
        free(tok);
        return KILN_ENOMEM;
    }
    memcpy(pp, ptr, plen);
    pp[plen] = 0;
    if (unescape(slash + 1, strlen(slash + 1), tok) != 0) {
        free(pp);
        free(tok);
        return KILN_EINVAL;
    }
    *parent = kjson_pointer_get(doc, pp);
    free(pp);
    if (!*parent) {
        free(tok);
        return KILN_ECONFLICT;
    }
    *last = tok;
    return 0;
}

/* ---- JSON patch operations ---- */

/* Inserts item before index i. Written out because some cJSON builds
 * refuse cJSON_InsertItemInArray. */
static void arr_insert(cJSON *arr, int i, cJSON *item)
{
    cJSON *after = cJSON_GetArrayItem(arr, i);
    if (!after) {
        cJSON_AddItemToArray(arr, item);
        return;
    }
    item->next = after;
    item->prev = after->prev;
    if (after == arr->child)
        arr->child = item;
    else
        after->prev->next = item;
    after->prev = item;
}

static int op_add(cJSON **doc, const char *path, cJSON *val, kiln_error *err)
{
    if (!path[0]) {
        cJSON_Delete(*doc);
        *doc = val;
        return 0;
    }
    cJSON *parent;
    char *tok;
    int rc = split_parent(*doc, path, &parent, &tok);
    if (rc) {
        cJSON_Delete(val);
        return kiln_fail(err, rc, "add operation does not apply: doc is missing path: \"%s\"",
                         path);
    }
    if (cJSON_IsObject(parent)) {
        if (cJSON_GetObjectItemCaseSensitive(parent, tok))
            cJSON_ReplaceItemInObjectCaseSensitive(parent, tok, val);
        else
            cJSON_AddItemToObject(parent, tok, val);
    } else if (cJSON_IsArray(parent)) {
        int size = cJSON_GetArraySize(parent);
        long i = arr_index(tok, size, 1);
        if (i < 0 || i > size) {
            free(tok);
            cJSON_Delete(val);
            return kiln_fail(err, KILN_ECONFLICT,
                             "add operation does not apply: index out of bounds: \"%s\"", path);
        }
        if (i == size)
            cJSON_AddItemToArray(parent, val);
        else
            arr_insert(parent, (int)i, val);
    } else {
        free(tok);
        cJSON_Delete(val);
        return kiln_fail(err, KILN_ECONFLICT, "add operation does not apply: \"%s\"", path);
    }
    free(tok);
    return 0;
}

/* Detaches the node at path; NULL with an error when missing. */
static cJSON *op_detach(cJSON **doc, const char *path, const char *what, kiln_error *err)
{
    cJSON *parent;
    char *tok;
    if (!path[0]) {
        cJSON *d = *doc;
        *doc = cJSON_CreateNull();
        return d;
    }
    int rc = split_parent(*doc, path, &parent, &tok);
    if (rc) {
        kiln_fail(err, rc == KILN_EINVAL ? KILN_EINVAL : KILN_ECONFLICT,
                  "%s operation does not apply: doc is missing path: \"%s\"", what, path);
        return NULL;
    }
    cJSON *d = NULL;
    if (cJSON_IsObject(parent))
        d = cJSON_DetachItemFromObjectCaseSensitive(parent, tok);
    else if (cJSON_IsArray(parent)) {
        long i = arr_index(tok, cJSON_GetArraySize(parent), 0);
        if (i >= 0 && i < cJSON_GetArraySize(parent))
            d = cJSON_DetachItemFromArray(parent, (int)i);
    }
    free(tok);
    if (!d)
        kiln_fail(err, KILN_ECONFLICT, "%s operation does not apply: doc is missing path: \"%s\"",
                  what, path);
    return d;
}

static int apply_one(cJSON **doc, const cJSON *op, kiln_error *err)
{
    const cJSON *jop = cJSON_GetObjectItemCaseSensitive(op, "op");
    const cJSON *jpath = cJSON_GetObjectItemCaseSensitive(op, "path");
    if (!cJSON_IsString(jop) || !cJSON_IsString(jpath))
        return kiln_fail(err, KILN_EINVAL, "invalid JSON Patch: operation needs op and path");
    const char *o = jop->valuestring, *path = jpath->valuestring;
    if (path[0] && path[0] != '/')
        return kiln_fail(err, KILN_EINVAL, "invalid JSON Patch: bad path \"%s\"", path);
    const cJSON *value = cJSON_GetObjectItemCaseSensitive(op, "value");
    const cJSON *from = cJSON_GetObjectItemCaseSensitive(op, "from");
    if (strcmp(o, "add") == 0 || strcmp(o, "replace") == 0 || strcmp(o, "test") == 0) {
        if (!value)
            return kiln_fail(err, KILN_EINVAL, "invalid JSON Patch: %s operation needs a value", o);
    }
    if ((strcmp(o, "move") == 0 || strcmp(o, "copy") == 0) && !cJSON_IsString(from))
        return kiln_fail(err, KILN_EINVAL, "invalid JSON Patch: %s operation needs from", o);
    if (strcmp(o, "add") == 0) {
        cJSON *v = cJSON_Duplicate(value, 1);
        if (!v)
            return KILN_ENOMEM;
        return op_add(doc, path, v, err);
    }
    if (strcmp(o, "remove") == 0) {
        cJSON *d = op_detach(doc, path, "remove", err);
        if (!d)
            return err && err->code ? err->code : KILN_ECONFLICT;
        cJSON_Delete(d);
        return 0;
    }
    if (strcmp(o, "replace") == 0) {
        cJSON *d = op_detach(doc, path, "replace", err);
        if (!d)
            return err && err->code ? err->code : KILN_ECONFLICT;
        cJSON_Delete(d);
        cJSON *v = cJSON_Duplicate(value, 1);
        if (!v)
            return KILN_ENOMEM;
        return op_add(doc, path, v, err);
    }
    if (strcmp(o, "move") == 0) {
        cJSON *d = op_detach(doc, from->valuestring, "move", err);
        if (!d)
            return err && err->code ? err->code : KILN_ECONFLICT;
        return op_add(doc, path, d, err);
    }
    if (strcmp(o, "copy") == 0) {
        cJSON *s = kjson_pointer_get(*doc, from->valuestring);
        if (!s)
            return kiln_fail(err, KILN_ECONFLICT,
                             "copy operation does not apply: doc is missing from path: \"%s\"",
                             from->valuestring);
        cJSON *v = cJSON_Duplicate(s, 1);
        if (!v)
            return KILN_ENOMEM;
        return op_add(doc, path, v, err);
    }
    if (strcmp(o, "test") == 0) {
        cJSON *s = kjson_pointer_get(*doc, path);
        if (!s || !cJSON_Compare(s, value, 1))
            return kiln_fail(err, KILN_ECONFLICT, "testing value %s failed", path);
        return 0;
    }
    return kiln_fail(err, KILN_EINVAL, "invalid JSON Patch: unexpected operation \"%s\"", o);
}

int kjson_patch_apply(cJSON **doc, const cJSON *ops, kiln_error *err)
{
    if (!cJSON_IsArray(ops))
        return kiln_fail(err, KILN_EINVAL, "invalid JSON Patch: not an array");
    for (const cJSON *op = ops->child; op; op = op->next) {
        if (!cJSON_IsObject(op))
            return kiln_fail(err, KILN_EINVAL, "invalid JSON Patch: operation is not an object");
        int rc = apply_one(doc, op, err);
        if (rc)
            return rc;
    }
    return 0;
}
