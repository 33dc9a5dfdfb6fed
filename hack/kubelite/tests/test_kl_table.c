/* Unit tests for kl_table: durations, JSONPath subset, CRD columns. */
#include <stdlib.h>

#include "kl_table.h"
#include "ktest.h"

static void test_duration(void)
{
    char b[32];
    kl_table_duration(5, b, sizeof(b));
    KT_CHECK(!strcmp(b, "5s"));
    kl_table_duration(200, b, sizeof(b));
    KT_CHECK(!strcmp(b, "3m20s"));
    kl_table_duration(3600 * 5 + 60 * 7, b, sizeof(b));
    KT_CHECK(!strcmp(b, "5h7m"));
    kl_table_duration(86400 * 2 + 3600 * 4, b, sizeof(b));
    KT_CHECK(!strcmp(b, "2d4h"));
    kl_table_duration(-10, b, sizeof(b));
    KT_CHECK(!strcmp(b, "<invalid>"));
}

static void test_jsonpath(void)
{
    cJSON *o = cJSON_Parse("{\"status\":{\"phase\":\"Running\",\"conditions\":[{\"type\":\"A\",\"status\":\"False\"},"
                           "{\"type\":\"Ready\",\"status\":\"True\"}]},\"spec\":{\"l\":[1,2]}}");
    const cJSON *v = kl_table_jsonpath(o, ".status.phase");
    KT_CHECK(cJSON_IsString(v) && !strcmp(v->valuestring, "Running"));
    v = kl_table_jsonpath(o, ".status.conditions[?(@.type==\"Ready\")].status");
    KT_CHECK(cJSON_IsString(v) && !strcmp(v->valuestring, "True"));
    v = kl_table_jsonpath(o, ".spec.l[1]");
    KT_CHECK(cJSON_IsNumber(v) && v->valueint == 2);
    KT_CHECK(kl_table_jsonpath(o, ".spec.nope") == NULL);
    cJSON_Delete(o);
}

static void test_crd_columns(void)
{
    kl_res r;
    memset(&r, 0, sizeof(r));
    r.kind = "TrainingJob";
    r.crd_name = "trainingjobs.kiln.dev";
    r.printer_cols = cJSON_Parse("[{\"name\":\"Phase\",\"type\":\"string\",\"jsonPath\":\".status.phase\"},"
                                 "{\"name\":\"Goal\",\"type\":\"number\",\"jsonPath\":\".spec.goal\"},"
                                 "{\"name\":\"Age\",\"type\":\"date\",\"jsonPath\":\".metadata.creationTimestamp\"}]");
    cJSON *o = cJSON_Parse("{\"metadata\":{\"name\":\"demo\",\"creationTimestamp\":\"2026-01-01T00:00:00Z\"},"
                           "\"spec\":{\"goal\":0.8},\"status\":{\"phase\":\"Succeeded\"}}");
    const cJSON *objs[1] = {o};
    cJSON *t = kl_table_build(&r, objs, 1, 1, NULL, 1767225600 + 180);
    char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(t, "rows"), 0), "cells"));
    KT_CHECK(s && !strcmp(s, "[\"demo\",\"Succeeded\",0.8,\"3m\"]"));
    free(s);
    KT_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(t, "columnDefinitions")), 4);
    cJSON_Delete(t);
    cJSON_Delete(o);
    cJSON_Delete(r.printer_cols);
}

int main(void)
{
    KT_RUN(test_duration);
    KT_RUN(test_jsonpath);
    KT_RUN(test_crd_columns);
    return KT_DONE();
}
