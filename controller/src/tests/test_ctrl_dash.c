/* Tests for ctrl_dash: the dashboard snapshot built from cached jobs
 * (sorting, objective values, best trial, minimised metrics, deletion,
 * hostile input) and the page's self-containment. */
#include <stdlib.h>
#include <string.h>

#include "ctrl_dash.h"
#include "ktest.h"
#include "tj_json.h"

static cJSON *jobs_of(const char *text)
{
    cJSON *j = cJSON_Parse(text);
    if (!j)
        fprintf(stderr, "bad test JSON: %s\n", text);
    return j;
}

static void test_snapshot_jobs_and_trials(void)
{
    cJSON *jobs = jobs_of(
        "[{\"metadata\":{\"name\":\"zeta\",\"namespace\":\"ml\"},"
        "\"spec\":{\"objective\":{\"metric\":\"loss\",\"goal\":0.3}},"
        "\"status\":{\"phase\":\"Running\",\"trialCount\":2,\"message\":\"2 of 8 trials\","
        "\"bestTrial\":{\"name\":\"zeta-t1\",\"metrics\":{\"loss\":0.41}},"
        "\"trials\":[{\"name\":\"zeta-t0\",\"index\":0,\"phase\":\"Succeeded\","
        "\"metrics\":{\"loss\":0.52,\"accuracy\":0.7},\"trainMetrics\":{\"loss\":0.4}},"
        "{\"name\":\"zeta-t1\",\"index\":1,\"phase\":\"Succeeded\",\"metrics\":{\"loss\":0.41}},"
        "{\"name\":\"zeta-t2\",\"index\":2,\"phase\":\"Running\"}]}},"
        "{\"metadata\":{\"name\":\"alpha\",\"namespace\":\"ml\","
        "\"deletionTimestamp\":\"2026-11-23T10:00:00Z\"},"
        "\"spec\":{\"objective\":{\"metric\":\"accuracy\",\"goal\":0.8}}},"
        "{\"metadata\":{\"name\":\"first\",\"namespace\":\"a\"},\"spec\":{}},"
        "{\"metadata\":{}},\"not a job\",7]");
    cJSON *snap = NULL;
    kiln_error err = {0};
    KT_EQ_INT(ctrl_dash_snapshot(jobs, &snap, &err), 0);
    KT_CHECK(!strcmp(tj_json_str(snap, "kind", ""), "KilnDashboard"));
    const cJSON *list = tj_json_path(snap, "jobs");
    /* Nameless entries are skipped; the rest sorted by namespace, name. */
    KT_EQ_INT(cJSON_GetArraySize(list), 3);
    const cJSON *a = cJSON_GetArrayItem(list, 0), *b = cJSON_GetArrayItem(list, 1),
                *z = cJSON_GetArrayItem(list, 2);
    KT_CHECK(!strcmp(tj_json_str(a, "name", ""), "first"));
    KT_CHECK(!strcmp(tj_json_str(b, "name", ""), "alpha"));
    KT_CHECK(!strcmp(tj_json_str(z, "name", ""), "zeta"));

    /* Defaults for a job with no status yet. */
    KT_CHECK(!strcmp(tj_json_str(a, "phase", ""), "Pending"));
    KT_CHECK(!strcmp(tj_json_str(a, "metric", ""), "accuracy"));
    KT_CHECK(cJSON_IsNull(tj_json_path(a, "goal")));
    KT_CHECK(cJSON_IsNull(tj_json_path(a, "best")));
    KT_EQ_INT(cJSON_GetArraySize(tj_json_path(a, "trials")), 0);
    KT_CHECK(tj_json_bool(b, "deleting", 0));
    KT_CHECK(!tj_json_bool(z, "deleting", 1));
    KT_CHECK(tj_json_bool(b, "maximize", 0));

    /* loss is minimised; each trial carries its objective value. */
    KT_CHECK(!tj_json_bool(z, "maximize", 1));
    KT_NEAR(tj_json_num(z, "goal", 0), 0.3, 1e-12);
    KT_NEAR(tj_json_num(z, "best.value", 0), 0.41, 1e-12);
    KT_CHECK(!strcmp(tj_json_str(z, "best.name", ""), "zeta-t1"));
    KT_EQ_INT(tj_json_int(z, "trialCount", 0), 2);
    KT_CHECK(!strcmp(tj_json_str(z, "message", ""), "2 of 8 trials"));
    const cJSON *tr = tj_json_path(z, "trials");
    KT_EQ_INT(cJSON_GetArraySize(tr), 3);
    const cJSON *t0 = cJSON_GetArrayItem(tr, 0), *t2 = cJSON_GetArrayItem(tr, 2);
    KT_NEAR(tj_json_num(t0, "value", 0), 0.52, 1e-12);
    KT_NEAR(tj_json_num(t0, "metrics.accuracy", 0), 0.7, 1e-12);
    KT_NEAR(tj_json_num(t0, "trainMetrics.loss", 0), 0.4, 1e-12);
    KT_CHECK(cJSON_IsNull(tj_json_path(t2, "value")));
    KT_CHECK(!strcmp(tj_json_str(t2, "phase", ""), "Running"));
    KT_EQ_INT(tj_json_int(t2, "index", -1), 2);

    /* The same jobs in another order print the same text. */
    cJSON *rev = cJSON_CreateArray();
    for (int i = cJSON_GetArraySize(jobs) - 1; i >= 0; i--)
        cJSON_AddItemToArray(rev, cJSON_Duplicate(cJSON_GetArrayItem(jobs, i), 1));
    cJSON *snap2 = NULL;
    KT_EQ_INT(ctrl_dash_snapshot(rev, &snap2, &err), 0);
    char *x = cJSON_PrintUnformatted(snap), *y = cJSON_PrintUnformatted(snap2);
    KT_CHECK(x && y && !strcmp(x, y));
    free(x);
    free(y);
    cJSON_Delete(snap2);
    cJSON_Delete(rev);
    cJSON_Delete(snap);
    cJSON_Delete(jobs);
}

static void test_snapshot_empty_and_not_an_array(void)
{
    cJSON *snap = NULL;
    kiln_error err = {0};
    KT_EQ_INT(ctrl_dash_snapshot(NULL, &snap, &err), 0);
    KT_EQ_INT(cJSON_GetArraySize(tj_json_path(snap, "jobs")), 0);
    cJSON_Delete(snap);
    cJSON *obj = cJSON_Parse("{\"metadata\":{\"name\":\"x\"}}");
    KT_EQ_INT(ctrl_dash_snapshot(obj, &snap, &err), 0);
    /* A lone object is not a list of jobs: its members have no names. */
    KT_EQ_INT(cJSON_GetArraySize(tj_json_path(snap, "jobs")), 0);
    cJSON_Delete(snap);
    cJSON_Delete(obj);
}

static void test_page_is_self_contained(void)
{
    const char *p = ctrl_dash_page();
    KT_STR_CONTAINS(p, "<!doctype html>");
    KT_STR_CONTAINS(p, "/dashboard/ws");
    KT_STR_CONTAINS(p, "new WebSocket(");
    /* No external scripts, styles or images. */
    KT_CHECK(strstr(p, "src=") == NULL);
    KT_CHECK(strstr(p, "<link") == NULL);
    KT_CHECK(strstr(p, "https://") == NULL);
}

int main(void)
{
    KT_RUN(test_snapshot_jobs_and_trials);
    KT_RUN(test_snapshot_empty_and_not_an_array);
    KT_RUN(test_page_is_self_contained);
    return KT_DONE();
}
