/* Unit tests for kl_podstatus: the pod status kubelite's kubelet writes for
 * a pod with two init containers and one app container, at each stage
 * (waiting, first init running, initialized and running, startup probe
 * pending, init failure), read back from an in-memory API; and an Event. */
#include <stdlib.h>

#include "kl_api.h"
#include "kl_kpod.h"
#include "kl_podstatus.h"
#include "kl_table.h"
#include "ktest.h"

static const char *POD = "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\","
                         "\"namespace\":\"default\",\"uid\":\"u-1\"},\"spec\":{\"nodeName\":\"kubelite\","
                         "\"restartPolicy\":\"Never\",\"initContainers\":[{\"name\":\"i1\",\"image\":\"busybox\"},"
                         "{\"name\":\"i2\",\"image\":\"busybox\"}],\"containers\":[{\"name\":\"app\","
                         "\"image\":\"busybox\"}]}}";

static kl_api *api;

static const cJSON *stored(void)
{
    kl_res *r = kl_api_res(api, "", "pods");
    return kl_store_get(kl_api_store(api), r->rkey, "default", "p");
}

/* Writes p's status and returns the stored pod's value at path as a string
 * ("" when absent, "true"/"false" for booleans). */
static const char *after_write(kl_kpod *p, const char *path)
{
    static char out[256]; /* test-only scratch */
    const cJSON *cur = stored();
    KT_CHECK(cur != NULL);
    kl_podstatus_write(api, cur, p);
    const cJSON *v = kl_table_jsonpath(stored(), path);
    if (cJSON_IsString(v))
        snprintf(out, sizeof(out), "%s", v->valuestring);
    else if (cJSON_IsBool(v))
        snprintf(out, sizeof(out), "%s", cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsNumber(v))
        snprintf(out, sizeof(out), "%g", v->valuedouble);
    else
        out[0] = 0;
    return out;
}

#define KT_STR(got, want) KT_CHECK(!strcmp((got), (want)))

static void run(kl_kctr *c)
{
    c->started = 1;
    c->running = 1;
    c->pid = 1;
    snprintf(c->started_at, sizeof(c->started_at), "2026-01-01T00:00:00Z");
}

static void exit_with(kl_kctr *c, int code)
{
    c->running = 0;
    c->done = 1;
    c->exit_code = code;
    snprintf(c->finished_at, sizeof(c->finished_at), "2026-01-01T00:00:01Z");
}

static void test_stages(void)
{
    cJSON *pod = cJSON_Parse(POD);
    KT_EQ_INT(kl_api_write(api, kl_api_res(api, "", "pods"), cJSON_Duplicate(pod, 1), NULL), 0);
    kl_kpod *p = NULL;
    KT_EQ_INT(kl_kpod_new(pod, "/nonexistent-kubelite-test", "127.5.1.2", &p), 0);
    KT_EQ_INT(p->n, 3);
    KT_EQ_INT(p->n_init, 2);
    KT_CHECK(p->c[0].init && p->c[1].init && !p->c[2].init);
    KT_CHECK(!p->initialized);

    /* nothing ran yet */
    KT_STR(after_write(p, ".status.phase"), "Pending");
    KT_STR(after_write(p, ".status.initContainerStatuses[0].state.waiting.reason"), "PodInitializing");
    KT_STR(after_write(p, ".status.containerStatuses[0].state.waiting.reason"), "PodInitializing");
    KT_STR(after_write(p, ".status.conditions[?(@.type==\"Initialized\")].status"), "False");
    KT_STR(after_write(p, ".status.conditions[?(@.type==\"Initialized\")].message"),
           "containers with incomplete status: [i1 i2]");
    KT_STR(after_write(p, ".status.podIP"), "127.5.1.2");

    /* the first init container runs */
    run(&p->c[0]);
    KT_STR(after_write(p, ".status.initContainerStatuses[0].state.running.startedAt"), "2026-01-01T00:00:00Z");
    KT_STR(after_write(p, ".status.phase"), "Pending");

    /* both init containers completed, the app runs behind a startup probe */
    exit_with(&p->c[0], 0);
    run(&p->c[1]);
    exit_with(&p->c[1], 0);
    p->initialized = 1;
    run(&p->c[2]);
    p->c[2].ready = 1;
    p->c[2].startup_ok = 0;
    KT_STR(after_write(p, ".status.phase"), "Running");
    KT_STR(after_write(p, ".status.initContainerStatuses[1].state.terminated.reason"), "Completed");
    KT_STR(after_write(p, ".status.initContainerStatuses[1].ready"), "true");
    KT_STR(after_write(p, ".status.conditions[?(@.type==\"Initialized\")].status"), "True");
    KT_STR(after_write(p, ".status.containerStatuses[0].started"), "false");
    KT_STR(after_write(p, ".status.containerStatuses[0].ready"), "false");
    KT_STR(after_write(p, ".status.conditions[?(@.type==\"Ready\")].message"),
           "containers with unready status: [app]");

    /* the startup probe passed */
    p->c[2].startup_ok = 1;
    KT_STR(after_write(p, ".status.containerStatuses[0].started"), "true");
    KT_STR(after_write(p, ".status.containerStatuses[0].ready"), "true");
    KT_STR(after_write(p, ".status.conditions[?(@.type==\"Ready\")].status"), "True");

    /* the app exits 0 under restartPolicy Never */
    exit_with(&p->c[2], 0);
    KT_STR(after_write(p, ".status.phase"), "Succeeded");
    kl_kpod_free(p);

    /* a second life: the first init container fails for good */
    KT_EQ_INT(kl_kpod_new(pod, "/nonexistent-kubelite-test", "127.5.1.2", &p), 0);
    run(&p->c[0]);
    exit_with(&p->c[0], 1);
    p->init_failed = 1;
    KT_STR(after_write(p, ".status.phase"), "Failed");
    KT_STR(after_write(p, ".status.initContainerStatuses[0].state.terminated.reason"), "Error");
    KT_STR(after_write(p, ".status.initContainerStatuses[0].state.terminated.exitCode"), "1");
    KT_STR(after_write(p, ".status.initContainerStatuses[0].ready"), "false");
    KT_STR(after_write(p, ".status.containerStatuses[0].state.waiting.reason"), "PodInitializing");
    kl_kpod_free(p);
    cJSON_Delete(pod);
}

static void test_event(void)
{
    cJSON *pod = cJSON_Parse(POD);
    kl_kpod *p = NULL;
    KT_EQ_INT(kl_kpod_new(pod, "/nonexistent-kubelite-test", "127.5.1.2", &p), 0);
    kl_podstatus_event(api, p, &p->c[2], "Normal", "Killing", "Container %s failed %s probe", "app", "liveness");
    kl_res *r = kl_api_res(api, "", "events");
    const cJSON **evs = NULL;
    size_t n = 0;
    KT_EQ_INT(kl_store_list(kl_api_store(api), r->rkey, NULL, &evs, &n), 0);
    KT_EQ_INT(n, 1);
    if (n == 1) {
        KT_EQ_INT(cJSON_GetObjectItem(evs[0], "count")->valuedouble, 1);
        KT_STR(cJSON_GetObjectItem(evs[0], "reason")->valuestring, "Killing");
        KT_STR(cJSON_GetObjectItem(evs[0], "message")->valuestring, "Container app failed liveness probe");
        const cJSON *io = cJSON_GetObjectItem(evs[0], "involvedObject");
        KT_STR(cJSON_GetObjectItem(io, "uid")->valuestring, "u-1");
        KT_STR(cJSON_GetObjectItem(io, "fieldPath")->valuestring, "spec.containers{app}");
    }
    free(evs);
    /* the same event again is counted, a different one is a new event */
    kl_podstatus_event(api, p, &p->c[2], "Normal", "Killing", "Container %s failed %s probe", "app", "liveness");
    kl_podstatus_event(api, p, &p->c[2], "Normal", "Killing", "Container %s failed %s probe", "app", "startup");
    KT_EQ_INT(kl_store_list(kl_api_store(api), r->rkey, NULL, &evs, &n), 0);
    KT_EQ_INT(n, 2);
    int twice = 0;
    for (size_t i = 0; i < n; i++)
        twice += cJSON_GetObjectItem(evs[i], "count")->valuedouble == 2;
    KT_EQ_INT(twice, 1);
    free(evs);
    kl_kpod_free(p);
    cJSON_Delete(pod);
}

int main(void)
{
    kiln_error err = {0};
    kl_api_opts ao = {.data_dir = NULL, .server_addr = "127.0.0.1", .history = 100, .net_octet = 5};
    if (kl_api_new(&ao, &api, &err) != 0) {
        fprintf(stderr, "kl_api_new: %s\n", err.msg);
        return 1;
    }
    KT_RUN(test_stages);
    KT_RUN(test_event);
    kl_api_free(api);
    return KT_DONE();
}
