/* tj_json: typed reads and failure-tracking builders over cJSON. */
#include "tj_json.h"

#include <math.h>
#include <string.h>

const cJSON *tj_json_path(const cJSON *o, const char *dotted)
{
    const char *p = dotted;
    while (o && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        char key[128];
        if (n >= sizeof key || !cJSON_IsObject(o))
            return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        o = cJSON_GetObjectItemCaseSensitive(o, key);
        p = dot ? dot + 1 : p + n;
    }
    return o;
}

const char *tj_json_str(const cJSON *o, const char *dotted, const char *def)
{
    const cJSON *v = tj_json_path(o, dotted);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : def;
}

const char *tj_json_key_str(const cJSON *o, const char *key, const char *def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : def;
}

double tj_json_num(const cJSON *o, const char *dotted, double def)
{
    const cJSON *v = tj_json_path(o, dotted);
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) ? v->valuedouble : def;
}

int64_t tj_json_int(const cJSON *o, const char *dotted, int64_t def)
{
    const cJSON *v = tj_json_path(o, dotted);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return def;
    double d = v->valuedouble;
    /* Bounded well inside int64 so later arithmetic (ms, sums) cannot overflow. */
    if (d != floor(d) || fabs(d) > 4.0e15)
        return def;
    return (int64_t)d;
}

int tj_json_bool(const cJSON *o, const char *dotted, int def)
{
    const cJSON *v = tj_json_path(o, dotted);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

int tj_json_add(cJSON *o, const char *key, cJSON *item)
{
    if (!o || !item) {
        cJSON_Delete(item);
        return 0;
    }
    if (cJSON_GetObjectItemCaseSensitive(o, key))
        return cJSON_ReplaceItemInObjectCaseSensitive(o, key, item) ? 1 : (cJSON_Delete(item), 0);
    if (!cJSON_AddItemToObject(o, key, item)) {
        cJSON_Delete(item);
        return 0;
    }
    return 1;
}

int tj_json_add_str(cJSON *o, const char *key, const char *s)
{
    return tj_json_add(o, key, cJSON_CreateString(s ? s : ""));
}

int tj_json_add_num(cJSON *o, const char *key, double v)
{
    return tj_json_add(o, key, cJSON_CreateNumber(v));
}

int tj_json_add_bool(cJSON *o, const char *key, int v)
{
    return tj_json_add(o, key, cJSON_CreateBool(v));
}

int tj_json_push(cJSON *arr, cJSON *item)
{
    if (!arr || !item || !cJSON_AddItemToArray(arr, item)) {
        cJSON_Delete(item);
        return 0;
    }
    return 1;
}

int tj_json_add_copy(cJSON *o, const char *key, const cJSON *src)
{
    if (!src)
        return o != NULL;
    return tj_json_add(o, key, cJSON_Duplicate(src, 1));
}

cJSON *tj_json_obj(cJSON *o, const char *key)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsObject(v))
        return v;
    return tj_json_add(o, key, cJSON_CreateObject()) ? cJSON_GetObjectItemCaseSensitive(o, key)
                                                     : NULL;
}

char *tj_json_meta_list_patch(const cJSON *obj, const char *field,
                              int (*mine)(const cJSON *item, const void *ud), const void *ud,
                              cJSON *add, int null_if_empty)
{
    cJSON *patch = cJSON_CreateObject();
    cJSON *meta = tj_json_obj(patch, "metadata");
    cJSON *list = cJSON_CreateArray();
    int ok = meta && list;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(m, "resourceVersion");
    if (ok && cJSON_IsString(rv))
        ok &= tj_json_add_str(meta, "resourceVersion", rv->valuestring);
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(m, field))
    {
        if (ok && !mine(it, ud))
            ok &= tj_json_push(list, cJSON_Duplicate(it, 1));
    }
    if (add)
        ok &= tj_json_push(list, add); /* frees add on failure */
    if (ok && null_if_empty && cJSON_GetArraySize(list) == 0) {
        cJSON_Delete(list);
        list = cJSON_CreateNull();
    }
    ok &= tj_json_add(meta, field, list);
    char *text = ok ? cJSON_PrintUnformatted(patch) : NULL;
    cJSON_Delete(patch);
    return text;
}
