/* Unit tests for kl_ssa: ownership, conflicts, force, removals. */
#include <stdlib.h>

#include "kl_ssa.h"
#include "ktest.h"

static cJSON *apply(const cJSON *cur, const char *cfg, const char *mgr, int force, int *rc,
                    kl_strs *conf)
{
    cJSON *c = cJSON_Parse(cfg), *out = NULL;
    *rc = kl_ssa_apply(cur, c, mgr, force, 0, 1, "v1", &out, conf, NULL);
    cJSON_Delete(c);
    return out;
}

static const char *data(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "data"), k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static void test_apply(void)
{
    int rc;
    kl_strs conf = {0};
    cJSON *o = apply(NULL, "{\"metadata\":{\"name\":\"s\"},\"data\":{\"a\":\"1\",\"c\":\"3\"}}", "m1", 0, &rc, &conf);
    KT_EQ_INT(rc, 0);
    cJSON *o2 = apply(o, "{\"metadata\":{\"name\":\"s\"},\"data\":{\"b\":\"2\"}}", "m2", 0, &rc, &conf);
    KT_EQ_INT(rc, 0);
    cJSON_Delete(o);
    /* m1 drops c: removed; b (m2) survives */
    o = apply(o2, "{\"metadata\":{\"name\":\"s\"},\"data\":{\"a\":\"1\"}}", "m1", 0, &rc, &conf);
    KT_EQ_INT(rc, 0);
    cJSON_Delete(o2);
    KT_CHECK(!strcmp(data(o, "a"), "1") && !strcmp(data(o, "b"), "2") && !strcmp(data(o, "c"), ""));
    /* m2 changing a conflicts; the same value is shared ownership */
    o2 = apply(o, "{\"metadata\":{\"name\":\"s\"},\"data\":{\"a\":\"9\",\"b\":\"2\"}}", "m2", 0, &rc, &conf);
    KT_EQ_INT(rc, KILN_ECONFLICT);
    KT_CHECK(o2 == NULL && conf.n == 1 && !strcmp(conf.v[0], "m1\t.data.a"));
    kl_schema_strs_free(&conf);
    o2 = apply(o, "{\"metadata\":{\"name\":\"s\"},\"data\":{\"a\":\"1\",\"b\":\"2\"}}", "m2", 0, &rc, &conf);
    KT_EQ_INT(rc, 0);
    cJSON_Delete(o2);
    o2 = apply(o, "{\"metadata\":{\"name\":\"s\"},\"data\":{\"a\":\"9\",\"b\":\"2\"}}", "m2", 1, &rc, &conf);
    KT_EQ_INT(rc, 0);
    KT_CHECK(!strcmp(data(o2, "a"), "9"));
    cJSON_Delete(o);
    /* after force, m1 no longer owns a: its re-apply without a keeps a */
    o = apply(o2, "{\"metadata\":{\"name\":\"s\"},\"data\":{\"z\":\"0\"}}", "m1", 0, &rc, &conf);
    KT_EQ_INT(rc, 0);
    KT_CHECK(!strcmp(data(o, "a"), "9") && !strcmp(data(o, "z"), "0"));
    cJSON_Delete(o2);
    cJSON_Delete(o);
}

static void test_update_tracking(void)
{
    cJSON *old = cJSON_Parse("{\"metadata\":{\"name\":\"s\"},\"spec\":{\"x\":1,\"y\":2}}");
    cJSON *obj = cJSON_Parse("{\"metadata\":{\"name\":\"s\"},\"spec\":{\"x\":1,\"y\":3}}");
    kl_ssa_track_update(old, obj, "ctl", "v1", 1);
    char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "metadata"), "managedFields"));
    KT_STR_CONTAINS(s, "\"manager\":\"ctl\",\"operation\":\"Update\"");
    KT_STR_CONTAINS(s, "\"fieldsV1\":{\"f:spec\":{\"f:y\":{}}}");
    free(s);
    cJSON_Delete(old);
    cJSON_Delete(obj);
}

int main(void)
{
    KT_RUN(test_apply);
    KT_RUN(test_update_tracking);
    return KT_DONE();
}
