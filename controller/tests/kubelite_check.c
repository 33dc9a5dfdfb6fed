/* kubelite_check: drives kiln_kube against a running API server (kubelite
 * in the client tests, or any cluster) through the kubeconfig in
 * $KUBECONFIG: CRUD with a 409, patches, server-side apply, paginated
 * list, an informer, leader election between two electors and an Event.
 * Prints one ok/FAIL line per check; exits non-zero on any failure.
 * It creates ConfigMaps and a Lease named kiln-check-* in the context's
 * namespace and deletes the ConfigMaps at the end. KILN_CHECK_WEBSOCKET=1
 * makes the informer watch over WebSocket. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ktime.h"
#include "kube_api.h"
#include "kube_event.h"
#include "kube_informer.h"
#include "kube_leader.h"
#include "kube_obj.h"

static int fails;

static void check(int ok, const char *what, const kube_err *err)
{
    if (ok) {
        printf("ok   %s\n", what);
    } else {
        printf("FAIL %s%s%s\n", what, err && err->e.msg[0] ? ": " : "", err ? err->e.msg : "");
        fails++;
    }
    fflush(stdout);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static atomic_int adds, dels;
static void on_add(void *ud, const cJSON *o)
{
    (void)ud;
    (void)o;
    atomic_fetch_add(&adds, 1);
}
static void on_del(void *ud, const cJSON *o)
{
    (void)ud;
    (void)o;
    atomic_fetch_add(&dels, 1);
}

static cJSON *cm(const char *name, const char *val)
{
    char b[512];
    snprintf(b, sizeof b,
             "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\","
             "\"labels\":{\"app\":\"kiln-check\"}},\"data\":{\"v\":\"%s\"}}",
             name, val);
    return cJSON_Parse(b);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    kube_config *cfg = NULL;
    kiln_error e = {0};
    if (kube_config_auto(NULL, &cfg, &e)) {
        printf("FAIL config: %s\n", e.msg);
        return 1;
    }
    char ns[128];
    snprintf(ns, sizeof ns, "%s", cfg->namespace_);
    kube_client *c = NULL;
    if (kube_client_new(cfg, NULL, &c, &e)) {
        printf("FAIL client: %s\n", e.msg);
        return 1;
    }
    kube_err err;
    kube_err_init(&err);
    char name[64];
    snprintf(name, sizeof name, "kiln-check-%d", (int)getpid());

    /* informer first, so it sees the creates */
    kube_informer_opts io = {.res = kube_res_configmaps,
                             .ns = ns,
                             .label_selector = "app=kiln-check",
                             .watch_timeout_s = 60};
    const char *ws = getenv("KILN_CHECK_WEBSOCKET");
    io.websocket = ws && ws[0] == '1';
    kube_handlers h = {.on_add = on_add, .on_delete = on_del};
    kube_informer *inf = NULL;
    kube_informer_new(c, &io, &h, &inf);
    kube_informer_start(inf);
    check(kube_informer_wait_synced(inf, 5000) == 0, "informer synced", NULL);

    cJSON *o = cm(name, "1"), *got = NULL;
    check(kube_create(c, &kube_res_configmaps, ns, o, &got, &err) == 0, "create", &err);
    const char *rv0 = got ? kube_obj_resource_version(got) : NULL;
    char stale[64] = "";
    if (rv0)
        snprintf(stale, sizeof stale, "%s", rv0);
    cJSON_Delete(got);
    got = NULL;
    kube_err_release(&err);
    check(kube_create(c, &kube_res_configmaps, ns, o, NULL, &err) == KILN_ECONFLICT &&
              kstatus_is(&err.status, "AlreadyExists"),
          "create again: 409 AlreadyExists", &err);
    kube_err_release(&err);
    check(kube_patch(c, &kube_res_configmaps, ns, name, NULL, KUBE_PATCH_MERGE,
                     "{\"data\":{\"v\":\"2\"}}", &got, &err) == 0 &&
              strcmp(kube_obj_path(got, "data.v")->valuestring, "2") == 0,
          "merge patch", &err);
    cJSON_Delete(got);
    got = NULL;
    kube_err_release(&err);
    kube_obj_set_resource_version(o, stale);
    check(kube_update(c, &kube_res_configmaps, ns, o, NULL, &err) == KILN_ECONFLICT &&
              err.status.code == 409,
          "update with a stale resourceVersion: 409 Conflict", &err);
    kube_err_release(&err);
    check(kube_patch(c, &kube_res_configmaps, ns, name, NULL, KUBE_PATCH_JSON,
                     "[{\"op\":\"replace\",\"path\":\"/data/v\",\"value\":\"3\"}]", &got,
                     &err) == 0 &&
              strcmp(kube_obj_path(got, "data.v")->valuestring, "3") == 0,
          "json patch", &err);
    cJSON_Delete(got);
    got = NULL;
    kube_err_release(&err);
    check(kube_patch(c, &kube_res_configmaps, ns, name, NULL, KUBE_PATCH_JSON,
                     "[{\"op\":\"test\",\"path\":\"/data/v\",\"value\":\"nope\"}]", NULL,
                     &err) < 0 &&
              err.status.code == 422,
          "failed json patch test op: 422 with Status", &err);
    kube_err_release(&err);
    cJSON *ap = cm(name, "4");
    check(kube_apply(c, &kube_res_configmaps, ns, ap, "kiln-check", 1, &got, &err) == 0 &&
              strcmp(kube_obj_path(got, "data.v")->valuestring, "4") == 0,
          "server-side apply", &err);
    cJSON_Delete(ap);
    cJSON_Delete(got);
    got = NULL;
    kube_err_release(&err);
    char n2[80], n3[80];
    snprintf(n2, sizeof n2, "%s-b", name);
    snprintf(n3, sizeof n3, "%s-c", name);
    cJSON *o2 = cm(n2, "x"), *o3 = cm(n3, "y");
    kube_create(c, &kube_res_configmaps, ns, o2, NULL, &err);
    kube_create(c, &kube_res_configmaps, ns, o3, NULL, &err);
    kube_err_release(&err);
    kube_list_opts lo = {.label_selector = "app=kiln-check", .limit = 1};
    cJSON *items = NULL;
    char *lrv = NULL;
    check(kube_list(c, &kube_res_configmaps, ns, &lo, &items, &lrv, &err) == 0 &&
              cJSON_GetArraySize(items) >= 3 && lrv,
          "paginated list (limit=1)", &err);
    cJSON_Delete(items);
    free(lrv);
    kube_err_release(&err);
    check(kube_get(c, &kube_res_configmaps, ns, "kiln-check-missing", NULL, &err) ==
                  KILN_ENOTFOUND &&
              kstatus_is(&err.status, "NotFound"),
          "get missing: 404 NotFound", &err);
    kube_err_release(&err);

    /* event */
    kube_recorder *rec = NULL;
    kube_recorder_opts ro = {.component = "kiln-check"};
    kube_recorder_new(c, &ro, &rec);
    cJSON *cur = NULL;
    kube_get(c, &kube_res_configmaps, ns, name, &cur, &err);
    kube_err_release(&err);
    int er = 0;
    for (int i = 0; i < 3 && !er; i++)
        er = kube_event_record(rec, cur, "Normal", "Checked", "kiln_kube check %d", 0);
    kube_recorder_stats rs;
    kube_recorder_get_stats(rec, &rs);
    check(er == 0 && rs.created == 1 && rs.aggregated == 2, "event created and aggregated", NULL);
    cJSON_Delete(cur);
    kube_recorder_free(rec);

    /* leader election */
    char lease[80];
    snprintf(lease, sizeof lease, "%s-lease", name);
    kube_leader_opts lo1 = {.name = lease,
                            .ns = ns,
                            .identity = "one",
                            .lease_ms = 3000,
                            .renew_deadline_ms = 2000,
                            .retry_ms = 200};
    kube_leader_opts lo2 = lo1;
    lo2.identity = "two";
    kube_leader *l1 = NULL, *l2 = NULL;
    kube_leader_new(c, &lo1, &l1, NULL);
    kube_leader_new(c, &lo2, &l2, NULL);
    kube_leader_start(l1);
    for (int i = 0; i < 50 && !kube_leader_is_leader(l1); i++)
        sleep_ms(50);
    kube_leader_start(l2);
    sleep_ms(600);
    check(kube_leader_is_leader(l1) && !kube_leader_is_leader(l2), "one leader of two", NULL);
    int64_t t0 = ktime_mono_ms();
    kube_leader_stop(l1);
    for (int i = 0; i < 100 && !kube_leader_is_leader(l2); i++)
        sleep_ms(20);
    check(kube_leader_is_leader(l2) && ktime_mono_ms() - t0 < 1500,
          "successor takes over after release", NULL);
    kube_leader_free(l2);
    kube_leader_free(l1);

    /* deletes, seen by the informer */
    kube_delete_opts dop = {.propagation = "Background"};
    int d1 = kube_delete(c, &kube_res_configmaps, ns, name, &dop, &err);
    int d2 = kube_delete(c, &kube_res_configmaps, ns, n2, NULL, &err);
    int d3 = kube_delete(c, &kube_res_configmaps, ns, n3, NULL, &err);
    check(!d1 && !d2 && !d3, "delete", &err);
    kube_err_release(&err);
    for (int i = 0; i < 100 && atomic_load(&dels) < 3; i++)
        sleep_ms(20);
    check(atomic_load(&adds) >= 3 && atomic_load(&dels) == 3, "informer saw adds and deletes",
          NULL);
    check(kube_informer_len(inf) == 0, "informer cache empty after deletes", NULL);
    kube_informer_free(inf);
    cJSON_Delete(o);
    cJSON_Delete(o2);
    cJSON_Delete(o3);
    kube_client_free(c);
    curl_global_cleanup();
    printf("%d failure(s)\n", fails);
    return fails ? 1 : 0;
}
