/* Tests for tj_status: what a trial pod's status says (reports, log
 * tails, pod-level failures, waiting reasons), condition transition times
 * and the bounded trial list. */
#include <stdlib.h>
#include <string.h>

#include "ktest.h"
#include "tj_json.h"
#include "tj_status.h"

static cJSON *pod_with(const char *status)
{
    char buf[4096];
    snprintf(buf, sizeof buf,
             "{\"metadata\":{\"name\":\"j-t2\",\"creationTimestamp\":\"2026-11-23T10:00:00Z\","
             "\"labels\":{\"kiln.dev/job\":\"j\",\"kiln.dev/trial\":\"2\"},"
             "\"annotations\":{\"kiln.dev/attempt\":\"2\",\"kiln.dev/search\":\"g1 t0\","
             "\"kiln.dev/params\":\"{\\\"epochs\\\":3}\"}},\"status\":%s}",
             status);
    cJSON *p = cJSON_Parse(buf);
    if (!p)
        fprintf(stderr, "bad JSON: %s\n", buf);
    return p;
}

static void test_succeeded_report(void)
{
    cJSON *pod =
        pod_with("{\"phase\":\"Succeeded\",\"containerStatuses\":[{\"state\":{\"terminated\":"
                 "{\"exitCode\":0,\"finishedAt\":\"2026-11-23T10:05:00Z\",\"message\":"
                 "\"{\\\"metrics\\\":{\\\"accuracy\\\":0.9},\\\"checkpoint\\\":\\\"/models/t2/"
                 "model.kiln\\\"}\"}}}]}");
    tj_pod_obs o;
    KT_EQ_INT(tj_status_observe(pod, &o, NULL), 0);
    KT_EQ_INT(o.index, 2);
    KT_EQ_INT(o.attempt, 2);
    KT_EQ_INT(o.phase, TJ_POD_SUCCEEDED);
    KT_EQ_INT(o.exit_code, 0);
    KT_CHECK(!strcmp(o.search, "g1 t0"));
    KT_EQ_INT(tj_json_int(o.params, "epochs", 0), 3);
    KT_NEAR(tj_json_num(o.report, "metrics.accuracy", 0), 0.9, 1e-12);
    KT_CHECK(o.has_finished && o.has_created);
    KT_EQ_INT(ktime_diff_ms(o.finished, o.created), 300000);
    tj_pod_obs_release(&o);
    cJSON_Delete(pod);
}

static void test_failures(void)
{
    /* The trainer's {"error"}. */
    cJSON *pod = pod_with("{\"phase\":\"Failed\",\"containerStatuses\":[{\"state\":{\"terminated\":"
                          "{\"exitCode\":2,\"reason\":\"Error\",\"message\":\"{\\\"error\\\":"
                          "\\\"data.uri: not found\\\"}\"}}}]}");
    tj_pod_obs o;
    KT_EQ_INT(tj_status_observe(pod, &o, NULL), 0);
    KT_EQ_INT(o.phase, TJ_POD_FAILED);
    KT_EQ_INT(o.exit_code, 2);
    KT_CHECK(!strcmp(o.message, "exit code 2: data.uri: not found"));
    tj_pod_obs_release(&o);
    cJSON_Delete(pod);
    /* FallbackToLogsOnError: JSON progress lines are a log, not a report. */
    pod = pod_with("{\"phase\":\"Failed\",\"containerStatuses\":[{\"state\":{\"terminated\":"
                   "{\"exitCode\":137,\"reason\":\"OOMKilled\",\"message\":\"{\\\"epoch\\\":1}\\n{"
                   "\\\"epoch\\\":2}\\n\"}}}]}");
    KT_EQ_INT(tj_status_observe(pod, &o, NULL), 0);
    KT_CHECK(o.report == NULL);
    KT_STR_CONTAINS(o.message, "exit code 137 (OOMKilled)");
    KT_STR_CONTAINS(o.message, "{\"epoch\":2}");
    KT_CHECK(strchr(o.message, '\n') == NULL);
    tj_pod_obs_release(&o);
    cJSON_Delete(pod);
    /* A pod-level failure without a container result. */
    pod = pod_with("{\"phase\":\"Failed\",\"reason\":\"DeadlineExceeded\",\"message\":\"Pod was "
                   "active on the node longer than the specified deadline\"}");
    KT_EQ_INT(tj_status_observe(pod, &o, NULL), 0);
    KT_EQ_INT(o.exit_code, -1);
    KT_STR_CONTAINS(o.message, "pod DeadlineExceeded: Pod was active");
    tj_pod_obs_release(&o);
    cJSON_Delete(pod);
}

static void test_waiting(void)
{
    cJSON *pod = pod_with(
        "{\"phase\":\"Pending\",\"containerStatuses\":[{\"state\":{\"waiting\":"
        "{\"reason\":\"CreateContainerConfigError\",\"message\":\"secret x not found\"}}}]}");
    tj_pod_obs o;
    KT_EQ_INT(tj_status_observe(pod, &o, NULL), 0);
    KT_EQ_INT(o.phase, TJ_POD_PENDING);
    KT_CHECK(!strcmp(o.stall_reason, "CreateContainerConfigError"));
    KT_CHECK(!strcmp(o.stall_message, "secret x not found"));
    tj_pod_obs_release(&o);
    cJSON_Delete(pod);
    pod = pod_with("{\"phase\":\"Pending\",\"containerStatuses\":[{\"state\":{\"waiting\":{"
                   "\"reason\":\"ContainerCreating\"}}}]}");
    KT_EQ_INT(tj_status_observe(pod, &o, NULL), 0);
    KT_CHECK(o.stall_reason[0] == '\0');
    tj_pod_obs_release(&o);
    cJSON_Delete(pod);
}

static void test_bad_params_annotation(void)
{
    cJSON *pod =
        cJSON_Parse("{\"metadata\":{\"name\":\"j-t1\",\"labels\":{\"kiln.dev/trial\":\"1\"},"
                    "\"annotations\":{\"kiln.dev/params\":\"[1,\"}}}");
    tj_pod_obs o;
    kiln_error err = {0};
    KT_EQ_INT(tj_status_observe(pod, &o, &err), 0);
    KT_CHECK(o.bad_params);
    KT_CHECK(o.params == NULL);
    KT_EQ_INT(o.index, 1);
    tj_pod_obs_release(&o);
    cJSON_Delete(pod);
}

static void test_condition_times(void)
{
    ktime t1, t2;
    ktime_parse("2026-11-23T10:00:00Z", &t1, NULL);
    ktime_parse("2026-11-23T11:00:00Z", &t2, NULL);
    cJSON *old = cJSON_CreateArray();
    KT_EQ_INT(tj_status_condition(old, NULL, "Ready", "False", "Searching", "", 1, t1), 1);
    cJSON *same = cJSON_CreateArray(), *flip = cJSON_CreateArray();
    tj_status_condition(same, old, "Ready", "False", "Other", "changed message", 2, t2);
    tj_status_condition(flip, old, "Ready", "True", "GoalReached", "", 2, t2);
    KT_CHECK(!strcmp(tj_json_str(tj_status_find_condition(same, "Ready"), "lastTransitionTime", ""),
                     "2026-11-23T10:00:00Z"));
    KT_CHECK(!strcmp(tj_json_str(tj_status_find_condition(flip, "Ready"), "lastTransitionTime", ""),
                     "2026-11-23T11:00:00Z"));
    KT_EQ_INT(tj_json_int(tj_status_find_condition(same, "Ready"), "observedGeneration", 0), 2);
    cJSON_Delete(old);
    cJSON_Delete(same);
    cJSON_Delete(flip);
}

static void test_bound_trials(void)
{
    cJSON *trials = cJSON_CreateArray();
    const char *phases[] = {"Succeeded", "Failed", "Running", "Succeeded", "Succeeded"};
    for (int i = 0; i < 5; i++) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddNumberToObject(r, "index", i);
        cJSON_AddStringToObject(r, "phase", phases[i]);
        cJSON_AddItemToArray(trials, r);
    }
    cJSON *older = cJSON_CreateObject();
    KT_EQ_INT(tj_status_bound_trials(trials, older, 2), 1);
    /* Two finished records folded; the running one stops the folding. */
    KT_EQ_INT(cJSON_GetArraySize(trials), 3);
    KT_EQ_INT(tj_json_int(cJSON_GetArrayItem(trials, 0), "index", -1), 2);
    KT_EQ_INT(tj_json_int(older, "count", 0), 2);
    KT_EQ_INT(tj_json_int(older, "succeeded", 0), 1);
    KT_EQ_INT(tj_json_int(older, "failed", 0), 1);
    cJSON_Delete(trials);
    cJSON_Delete(older);
}

int main(void)
{
    KT_RUN(test_succeeded_report);
    KT_RUN(test_failures);
    KT_RUN(test_waiting);
    KT_RUN(test_bad_params_annotation);
    KT_RUN(test_condition_times);
    KT_RUN(test_bound_trials);
    return KT_DONE();
}
