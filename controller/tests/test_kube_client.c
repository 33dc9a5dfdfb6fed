/* Unit tests for kube_client and kube_api against the fake API server:
 * connection reuse, Status errors, 429/5xx retries, 409, pagination,
 * delete options, patch types, server-side apply, token refresh on 401. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "fakeapi.h"
#include "kt_util.h"
#include "ktest.h"
#include "ktime.h"
#include "kube_api.h"
#include "kube_obj.h"

typedef struct script {
    atomic_int n429, n500, n_flaky, n_auth;
    char last_query[4096];
    char last_body[4096];
    char last_ctype[128];
    char last_method[16];
    char last_path[2048];
    char last_auth[256];
    const char *want_token; /* Bearer value required on /api/v1/namespaces/default/secrets */
    pthread_mutex_t mu;
} script;

static const char *status_json(int code, const char *reason, const char *msg)
{
    static __thread char b[512];
    snprintf(
        b, sizeof b,
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
        "\"message\":\"%s\",\"reason\":\"%s\",\"details\":{\"name\":\"x\",\"kind\":\"configmaps\","
        "\"causes\":[{\"reason\":\"FieldValueInvalid\",\"message\":\"bad\",\"field\":\"spec.a\"}]},"
        "\"code\":%d}",
        msg, reason, code);
    return b;
}

static void handler(void *ud, const fake_req *r, fake_conn *c)
{
    script *s = ud;
    pthread_mutex_lock(&s->mu);
    snprintf(s->last_query, sizeof s->last_query, "%s", r->query);
    snprintf(s->last_body, sizeof s->last_body, "%s", r->body);
    snprintf(s->last_ctype, sizeof s->last_ctype, "%s", r->content_type);
    snprintf(s->last_method, sizeof s->last_method, "%s", r->method);
    snprintf(s->last_path, sizeof s->last_path, "%s", r->path);
    snprintf(s->last_auth, sizeof s->last_auth, "%s", r->auth);
    pthread_mutex_unlock(&s->mu);
    const char *p = r->path;
    if (!strcmp(p, "/api/v1/namespaces/default/configmaps/ok")) {
        fake_reply(c, 200, NULL,
                   "{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"ok\","
                   "\"namespace\":\"default\",\"resourceVersion\":\"7\"}}");
    } else if (!strcmp(p, "/api/v1/namespaces/default/configmaps/slow")) {
        fake_sleep_ms(300);
        fake_reply(c, 200, NULL, "{\"metadata\":{\"name\":\"slow\"}}");
    } else if (!strcmp(p, "/api/v1/namespaces/default/configmaps/throttled")) {
        if (atomic_fetch_add(&s->n429, 1) == 0)
            fake_reply(c, 429, "Retry-After: 1\r\n",
                       status_json(429, "TooManyRequests", "slow down"));
        else
            fake_reply(c, 200, NULL, "{\"metadata\":{\"name\":\"throttled\"}}");
    } else if (!strcmp(p, "/api/v1/namespaces/default/configmaps/flaky")) {
        if (atomic_fetch_add(&s->n500, 1) < 2)
            fake_reply(c, 500, NULL, status_json(500, "InternalError", "boom"));
        else
            fake_reply(c, 200, NULL, "{\"metadata\":{\"name\":\"flaky\"}}");
    } else if (!strcmp(p, "/api/v1/namespaces/default/configmaps/down")) {
        atomic_fetch_add(&s->n_flaky, 1);
        fake_reply(c, 503, NULL, "<html>upstream down</html>");
    } else if (!strcmp(p, "/api/v1/namespaces/default/configmaps/conflict")) {
        fake_reply(c, 409, NULL,
                   status_json(409, "Conflict",
                               "Operation cannot be fulfilled: the object has been modified"));
    } else if (!strcmp(p, "/api/v1/namespaces/default/configmaps/invalid")) {
        fake_reply(c, 422, NULL, status_json(422, "Invalid", "ConfigMap \\\"x\\\" is invalid"));
    } else if (!strcmp(p, "/api/v1/namespaces/default/configmaps") && !strcmp(r->method, "GET")) {
        /* 5 items in pages of 2: continue tokens "2" and "4" */
        char cont[32] = "0", lim[32] = "500";
        fake_query(r, "continue", cont, sizeof cont);
        fake_query(r, "limit", lim, sizeof lim);
        int start = atoi(cont), limit = atoi(lim);
        char body[2048];
        size_t n = (size_t)snprintf(
            body, sizeof body, "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"items\":[");
        int i;
        for (i = start; i < 5 && i < start + limit; i++)
            n += (size_t)snprintf(body + n, sizeof body - n, "%s{\"metadata\":{\"name\":\"cm%d\"}}",
                                  i > start ? "," : "", i);
        if (i < 5)
            n += (size_t)snprintf(
                body + n, sizeof body - n,
                "],\"metadata\":{\"resourceVersion\":\"%d\",\"continue\":\"%d\"}}", 40 + start, i);
        else
            n += (size_t)snprintf(body + n, sizeof body - n,
                                  "],\"metadata\":{\"resourceVersion\":\"%d\"}}", 40 + start);
        fake_reply(c, 200, NULL, body);
    } else if (!strcmp(p, "/api/v1/namespaces/default/secrets/basic")) {
        fake_reply(c, 200, NULL, "{\"metadata\":{\"name\":\"basic\"}}");
    } else if (!strcmp(p, "/api/v1/namespaces/default/secrets/guarded")) {
        char want[256];
        snprintf(want, sizeof want, "Bearer %s", s->want_token);
        if (strcmp(r->auth, want) != 0) {
            atomic_fetch_add(&s->n_auth, 1);
            fake_reply(c, 401, NULL, status_json(401, "Unauthorized", "Unauthorized"));
        } else {
            fake_reply(c, 200, NULL, "{\"metadata\":{\"name\":\"guarded\"}}");
        }
    } else if (!strcmp(r->method, "DELETE")) {
        fake_reply(c, 200, NULL, "{\"kind\":\"Status\",\"status\":\"Success\"}");
    } else if (!strcmp(r->method, "POST")) {
        fake_reply(c, 201, NULL, r->body);
    } else if (!strcmp(r->method, "PUT") || !strcmp(r->method, "PATCH")) {
        fake_reply(c, 200, NULL, "{\"metadata\":{\"name\":\"patched\"}}");
    } else {
        fake_reply(
            c, 404, NULL,
            status_json(404, "NotFound", "the server could not find the requested resource"));
    }
}

static script S;
static fake_server *srv;

static kube_client *mk_client(const kube_client_opts *o)
{
    kube_client *c = NULL;
    kiln_error e = {0};
    if (kube_client_new(kt_config(fake_port(srv)), o, &c, &e))
        fprintf(stderr, "client: %s\n", e.msg);
    return c;
}

static void test_get_and_reuse(void)
{
    kube_client *c = mk_client(NULL);
    int before = fake_connections(srv);
    kube_err err;
    kube_err_init(&err);
    for (int i = 0; i < 5; i++) {
        cJSON *o = NULL;
        KT_EQ_INT(kube_get(c, &kube_res_configmaps, "default", "ok", &o, &err), 0);
        KT_CHECK(o && strcmp(kube_obj_name(o), "ok") == 0);
        KT_CHECK(o && strcmp(kube_obj_resource_version(o), "7") == 0);
        cJSON_Delete(o);
    }
    KT_EQ_INT(fake_connections(srv) - before, 1); /* one kept-alive connection */
    kube_client_stats st;
    kube_client_get_stats(c, &st);
    KT_EQ_INT(st.requests, 5);
    KT_EQ_INT(st.retries, 0);
    kube_err_release(&err);
    kube_client_free(c);
}

/* Threads that share a client share its connections: a burst of requests
 * from 16 threads never opens more than one connection per thread, since
 * idle connections go back to the shared cache instead of being closed. */
#define REUSE_THREADS 16
static void *reuse_worker(void *arg)
{
    kube_client *c = arg;
    kube_err err;
    kube_err_init(&err);
    for (int i = 0; i < 20; i++) {
        cJSON *o = NULL;
        if (kube_get(c, &kube_res_configmaps, "default", "ok", &o, &err) != 0)
            fprintf(stderr, "reuse_worker: %s\n", err.e.msg);
        cJSON_Delete(o);
    }
    kube_err_release(&err);
    return NULL;
}

static void test_reuse_across_threads(void)
{
    kube_client *c = mk_client(NULL);
    int before = fake_connections(srv);
    pthread_t th[REUSE_THREADS];
    for (int i = 0; i < REUSE_THREADS; i++)
        pthread_create(&th[i], NULL, reuse_worker, c);
    for (int i = 0; i < REUSE_THREADS; i++)
        pthread_join(th[i], NULL);
    kube_client_stats st;
    kube_client_get_stats(c, &st);
    KT_EQ_INT(st.requests, REUSE_THREADS * 20);
    int opened = fake_connections(srv) - before;
    if (opened > REUSE_THREADS)
        fprintf(stderr, "%d connections for %d threads\n", opened, REUSE_THREADS);
    KT_CHECK(opened >= 1 && opened <= REUSE_THREADS);
    kube_client_free(c);
}

static void test_status_errors(void)
{
    kube_client *c = mk_client(NULL);
    kube_err err;
    kube_err_init(&err);
    cJSON *o = NULL;
    KT_EQ_INT(kube_get(c, &kube_res_configmaps, "default", "missing", &o, &err), KILN_ENOTFOUND);
    KT_EQ_INT(err.status.code, 404);
    KT_CHECK(kstatus_is(&err.status, "NotFound"));
    KT_STR_CONTAINS(err.e.msg, "could not find");
    KT_CHECK(o == NULL);
    kube_err_release(&err);
    /* 409 goes back to the caller at once */
    kube_client_stats st0, st1;
    kube_client_get_stats(c, &st0);
    KT_EQ_INT(kube_get(c, &kube_res_configmaps, "default", "conflict", &o, &err), KILN_ECONFLICT);
    KT_CHECK(kstatus_is(&err.status, "Conflict"));
    kube_client_get_stats(c, &st1);
    KT_EQ_INT(st1.requests - st0.requests, 1);
    kube_err_release(&err);
    /* 422 with causes */
    KT_EQ_INT(kube_get(c, &kube_res_configmaps, "default", "invalid", &o, &err), KILN_EINVAL);
    KT_EQ_INT(err.status.n_causes, 1);
    if (err.status.n_causes)
        KT_CHECK(strcmp(err.status.causes[0].field, "spec.a") == 0);
    KT_EQ_INT(err.http, 422);
    kube_err_release(&err);
    kube_client_free(c);
}

static void test_retries(void)
{
    kube_client_opts o = {.retry_base_ms = 10, .max_retries = 3};
    kube_client *c = mk_client(&o);
    kube_err err;
    kube_err_init(&err);
    cJSON *obj = NULL;
    int64_t t0 = ktime_mono_ms();
    KT_EQ_INT(kube_get(c, &kube_res_configmaps, "default", "throttled", &obj, &err), 0);
    int64_t took = ktime_mono_ms() - t0;
    KT_CHECK(took >= 1000); /* Retry-After: 1 was honoured */
    KT_CHECK(took < 5000);
    KT_EQ_INT(atomic_load(&S.n429), 2);
    cJSON_Delete(obj);
    obj = NULL;
    KT_EQ_INT(kube_get(c, &kube_res_configmaps, "default", "flaky", &obj, &err), 0);
    KT_EQ_INT(atomic_load(&S.n500), 3);
    KT_CHECK(obj != NULL);
    cJSON_Delete(obj);
    kube_client_stats st;
    kube_client_get_stats(c, &st);
    KT_EQ_INT(st.retries, 3);
    KT_EQ_INT(st.throttled, 1);
    /* bounded: 1 + 3 attempts, then the 503 surfaces with the body quoted */
    obj = NULL;
    KT_EQ_INT(kube_get(c, &kube_res_configmaps, "default", "down", &obj, &err), KILN_EAPI);
    KT_EQ_INT(atomic_load(&S.n_flaky), 4);
    KT_EQ_INT(err.status.code, 503);
    KT_STR_CONTAINS(err.status.message, "upstream down");
    kube_err_release(&err);
    kube_client_free(c);
}

static void test_list_pages(void)
{
    kube_client *c = mk_client(NULL);
    kube_err err;
    kube_err_init(&err);
    kube_list_opts lo = {.limit = 2,
                         .label_selector = "app=kiln,tier in (a,b)",
                         .field_selector = "metadata.name!=x"};
    cJSON *items = NULL;
    char *rv = NULL;
    KT_EQ_INT(kube_list(c, &kube_res_configmaps, "default", &lo, &items, &rv, &err), 0);
    KT_EQ_INT(cJSON_GetArraySize(items), 5);
    for (int i = 0; i < cJSON_GetArraySize(items); i++) {
        char want[16];
        snprintf(want, sizeof want, "cm%d", i);
        cJSON *it = cJSON_GetArrayItem(items, i);
        KT_CHECK(strcmp(kube_obj_name(it), want) == 0);
        KT_CHECK(strcmp(kube_obj_kind(it), "ConfigMap") == 0); /* filled in */
    }
    KT_CHECK(rv && strcmp(rv, "44") == 0);
    KT_STR_CONTAINS(S.last_query, "labelSelector=app%3Dkiln%2Ctier%20in%20%28a%2Cb%29");
    KT_STR_CONTAINS(S.last_query, "continue=4");
    KT_STR_CONTAINS(S.last_query, "fieldSelector=metadata.name%21%3Dx");
    KT_STR_CONTAINS(S.last_query, "limit=2");
    cJSON_Delete(items);
    free(rv);
    kube_err_release(&err);
    kube_client_free(c);
}

static void test_writes(void)
{
    kube_client *c = mk_client(NULL);
    kube_err err;
    kube_err_init(&err);
    cJSON *obj =
        cJSON_Parse("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":"
                    "{\"name\":\"a b\",\"namespace\":\"team-1\",\"resourceVersion\":\"5\"}}");
    cJSON *out = NULL;
    KT_EQ_INT(kube_create(c, &kube_res_configmaps, NULL, obj, &out, &err), 0);
    KT_CHECK(strcmp(S.last_path, "/api/v1/namespaces/team-1/configmaps") == 0);
    KT_CHECK(out && strcmp(kube_obj_name(out), "a b") == 0);
    cJSON_Delete(out);
    KT_EQ_INT(kube_update(c, &kube_res_configmaps, NULL, obj, NULL, &err), 0);
    KT_CHECK(strcmp(S.last_method, "PUT") == 0);
    KT_CHECK(strcmp(S.last_path, "/api/v1/namespaces/team-1/configmaps/a%20b") == 0);
    KT_STR_CONTAINS(S.last_body, "\"resourceVersion\":\"5\"");
    KT_EQ_INT(kube_update_status(c, &kube_res_configmaps, NULL, obj, NULL, &err), 0);
    KT_CHECK(strcmp(S.last_path, "/api/v1/namespaces/team-1/configmaps/a%20b/status") == 0);
    kube_delete_opts dop = {
        .propagation = "Foreground", .precondition_uid = "u-1", .precondition_rv = "5"};
    KT_EQ_INT(kube_delete(c, &kube_res_configmaps, "team-1", "gone", &dop, &err), 0);
    KT_CHECK(strcmp(S.last_method, "DELETE") == 0);
    KT_STR_CONTAINS(S.last_body, "\"propagationPolicy\":\"Foreground\"");
    KT_STR_CONTAINS(S.last_body, "\"preconditions\":{\"uid\":\"u-1\",\"resourceVersion\":\"5\"}");
    KT_EQ_INT(kube_patch(c, &kube_res_configmaps, "team-1", "p", NULL, KUBE_PATCH_MERGE,
                         "{\"data\":{\"a\":\"b\"}}", NULL, &err),
              0);
    KT_CHECK(strcmp(S.last_ctype, "application/merge-patch+json") == 0);
    KT_EQ_INT(kube_patch(c, &kube_res_configmaps, "team-1", "p", "status", KUBE_PATCH_JSON,
                         "[{\"op\":\"add\",\"path\":\"/x\",\"value\":1}]", NULL, &err),
              0);
    KT_CHECK(strcmp(S.last_ctype, "application/json-patch+json") == 0);
    KT_CHECK(strcmp(S.last_path, "/api/v1/namespaces/team-1/configmaps/p/status") == 0);
    KT_EQ_INT(kube_apply(c, &kube_res_configmaps, NULL, obj, "kiln", 1, NULL, &err), 0);
    KT_CHECK(strcmp(S.last_ctype, "application/apply-patch+yaml") == 0);
    KT_STR_CONTAINS(S.last_query, "fieldManager=kiln");
    KT_STR_CONTAINS(S.last_query, "force=true");
    KT_EQ_INT(kube_apply(c, &kube_res_configmaps, NULL, obj, NULL, 0, NULL, &err), KILN_EINVAL);
    kube_err_release(&err);
    cJSON_Delete(obj);
    /* lease path for a grouped resource */
    char *path;
    KT_EQ_INT(kube_path(&kube_res_leases, "kiln-system", "kiln-controller", NULL, &path), 0);
    KT_CHECK(strcmp(path,
                    "/apis/coordination.k8s.io/v1/namespaces/kiln-system/leases/kiln-controller") ==
             0);
    free(path);
    /* cluster-scoped: no namespace segment even when one is passed */
    kube_resource crd = {"apiextensions.k8s.io", "v1", "customresourcedefinitions",
                         "CustomResourceDefinition", 0};
    KT_EQ_INT(kube_path(&crd, "ignored", "trainingjobs.kiln.dev", NULL, &path), 0);
    KT_CHECK(strcmp(path, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                          "trainingjobs.kiln.dev") == 0);
    free(path);
    /* all namespaces for a namespaced collection */
    KT_EQ_INT(kube_path(&kube_res_pods, NULL, NULL, NULL, &path), 0);
    KT_CHECK(strcmp(path, "/api/v1/pods") == 0);
    free(path);
    kube_client_free(c);
}

static void test_token_file_refresh(void)
{
    char dir[256];
    KT_EQ_INT(kt_tmpdir(dir, sizeof dir), 0);
    kt_write(dir, "token", "old-token\n");
    kube_config *cfg = kt_config(fake_port(srv));
    char tf[512];
    snprintf(tf, sizeof tf, "%s/token", dir);
    cfg->token_file = strdup(tf);
    S.want_token = "new-token";
    kube_client *c = NULL;
    KT_EQ_INT(kube_client_new(cfg, NULL, &c, NULL), 0);
    kube_err err;
    kube_err_init(&err);
    /* first request reads "old-token" -> 401 */
    KT_EQ_INT(kube_get(c, &kube_res_configmaps, "default", "ok", NULL, &err), 0);
    kt_write(dir, "token", "new-token\n"); /* rotated */
    cJSON *o = NULL;
    KT_EQ_INT(kube_get(c, &(kube_resource){"", "v1", "secrets", "Secret", 1}, "default", "guarded",
                       &o, &err),
              0);
    KT_CHECK(o != NULL);
    cJSON_Delete(o);
    KT_EQ_INT(atomic_load(&S.n_auth), 1);
    kube_client_stats st;
    kube_client_get_stats(c, &st);
    KT_EQ_INT(st.auth_refreshes, 1);
    kube_err_release(&err);
    kube_client_free(c);
    kt_rmtree(dir);
}

static void test_token_file_periodic(void)
{
    char dir[256];
    KT_EQ_INT(kt_tmpdir(dir, sizeof dir), 0);
    kt_write(dir, "token", "first\n");
    kube_config *cfg = kt_config(fake_port(srv));
    char tf[512];
    snprintf(tf, sizeof tf, "%s/token", dir);
    cfg->token_file = strdup(tf);
    kube_client_opts o = {.token_reread_ms = 50};
    kube_client *c = NULL;
    KT_EQ_INT(kube_client_new(cfg, &o, &c, NULL), 0);
    kube_err err;
    kube_err_init(&err);
    S.want_token = "first";
    atomic_store(&S.n_auth, 0);
    kube_resource secrets = {"", "v1", "secrets", "Secret", 1};
    KT_EQ_INT(kube_get(c, &secrets, "default", "guarded", NULL, &err), 0);
    kt_write(dir, "token", "second\n");
    S.want_token = "second";
    fake_sleep_ms(80);
    /* re-read on its period: no 401 round trip needed */
    KT_EQ_INT(kube_get(c, &secrets, "default", "guarded", NULL, &err), 0);
    KT_EQ_INT(atomic_load(&S.n_auth), 0);
    kube_client_stats st;
    kube_client_get_stats(c, &st);
    KT_EQ_INT(st.auth_refreshes, 0);
    kube_err_release(&err);
    kube_client_free(c);
    kt_rmtree(dir);
}

static void test_exec_plugin_auth(void)
{
    char dir[256];
    KT_EQ_INT(kt_tmpdir(dir, sizeof dir), 0);
    /* the token comes from an env entry only the child sees */
    kt_write(
        dir, "plugin.sh",
        "#!/bin/sh\n"
        "printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
        "\"status\":{\"token\":\"%s-%s\",\"expirationTimestamp\":\"2099-01-01T00:00:00Z\"}}' "
        "\"$KILN_TEST_SECRET\" \"$1\"\n");
    char kc[2048];
    snprintf(
        kc, sizeof kc,
        "apiVersion: v1\nkind: Config\ncurrent-context: dev\n"
        "clusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:%d\n"
        "users:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
        "      command: ./plugin.sh\n      args: [\"arg one\"]\n"
        "      env:\n      - name: KILN_TEST_SECRET\n        value: s3cret\n"
        "contexts:\n- name: dev\n  context: {cluster: c, user: u}\n",
        fake_port(srv));
    kt_write(dir, "config", kc);
    char path[512];
    snprintf(path, sizeof path, "%s/plugin.sh", dir);
    KT_EQ_INT(chmod(path, 0700), 0);
    snprintf(path, sizeof path, "%s/config", dir);
    kube_config_opts co = {.path = path};
    kube_config *cfg = NULL;
    kiln_error e = {0};
    KT_EQ_INT(kube_config_load(&co, &cfg, &e), 0);
    S.want_token = "s3cret-arg one";
    atomic_store(&S.n_auth, 0);
    kube_client *c = NULL;
    KT_EQ_INT(kube_client_new(cfg, NULL, &c, &e), 0);
    kube_err err;
    kube_err_init(&err);
    KT_EQ_INT(kube_get(c, &(kube_resource){"", "v1", "secrets", "Secret", 1}, "default", "guarded",
                       NULL, &err),
              0);
    KT_EQ_INT(atomic_load(&S.n_auth), 0);
    KT_CHECK(getenv("KILN_TEST_SECRET") == NULL);
    kube_err_release(&err);
    kube_client_free(c);
    kt_rmtree(dir);
}

/* Runs a plugin that counts its runs and returns an expiry `offset` away. */
static int exec_runs(const char *offset)
{
    char dir[256];
    if (kt_tmpdir(dir, sizeof dir))
        return -1;
    char body[1024];
    snprintf(body, sizeof body,
             "#!/bin/sh\necho run >> \"%s/runs\"\n"
             "exp=$(date -u -d '%s' +%%Y-%%m-%%dT%%H:%%M:%%SZ)\n"
             "printf '{\"kind\":\"ExecCredential\",\"status\":{\"token\":\"exp-tok\","
             "\"expirationTimestamp\":\"%%s\"}}' \"$exp\"\n",
             dir, offset);
    kt_write(dir, "p.sh", body);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s/p.sh", dir);
    chmod(cmd, 0700);
    kube_config *cfg = kt_config(fake_port(srv));
    cfg->exec = calloc(1, sizeof *cfg->exec);
    cfg->exec->command = strdup(cmd);
    kube_client *c = NULL;
    if (kube_client_new(cfg, NULL, &c, NULL))
        return -1;
    kube_err err;
    kube_err_init(&err);
    S.want_token = "exp-tok";
    kube_resource secrets = {"", "v1", "secrets", "Secret", 1};
    for (int i = 0; i < 3; i++)
        if (kube_get(c, &secrets, "default", "guarded", NULL, &err))
            fprintf(stderr, "exec get: %s\n", err.e.msg);
    kube_err_release(&err);
    kube_client_free(c);
    char runs[512];
    snprintf(runs, sizeof runs, "%s/runs", dir);
    int n = 0;
    FILE *f = fopen(runs, "r");
    char line[16];
    while (f && fgets(line, sizeof line, f))
        n++;
    if (f)
        fclose(f);
    kt_rmtree(dir);
    return n;
}

static void test_exec_expiry(void)
{
    KT_EQ_INT(exec_runs("+1 hour"), 1);    /* cached until it nears expiry */
    KT_EQ_INT(exec_runs("+5 seconds"), 3); /* within 10 s of expiry: re-run each time */
}

static void test_basic_auth(void)
{
    kube_config *cfg = kt_config(fake_port(srv));
    cfg->username = strdup("u");
    cfg->password = strdup("p");
    kube_client *c = NULL;
    KT_EQ_INT(kube_client_new(cfg, NULL, &c, NULL), 0);
    S.want_token = "unused";
    kube_err err;
    kube_err_init(&err);
    kube_resource secrets = {"", "v1", "secrets", "Secret", 1};
    KT_EQ_INT(kube_get(c, &secrets, "default", "basic", NULL, &err), 0);
    pthread_mutex_lock(&S.mu);
    KT_CHECK(strcmp(S.last_auth, "Basic dTpw") == 0);
    pthread_mutex_unlock(&S.mu);
    kube_err_release(&err);
    kube_client_free(c);
}

/* Each exchange lands in its verb's latency histogram, with the time the
 * caller waited: the slow reply (300 ms) falls in the 0.5 s bucket. The
 * fast one only has to stay under 0.25 s, so a loaded machine (sanitizers,
 * parallel tests) does not move it past the slow one's bound. */
static void test_latency_by_verb(void)
{
    kube_client *c = mk_client(NULL);
    kube_err err;
    kube_err_init(&err);
    cJSON *o = NULL;
    KT_EQ_INT(kube_get(c, &kube_res_configmaps, "default", "slow", &o, &err), 0);
    cJSON_Delete(o);
    KT_EQ_INT(kube_get(c, &kube_res_configmaps, "default", "ok", &o, &err), 0);
    cJSON_Delete(o);
    cJSON *obj = cJSON_Parse("{\"metadata\":{\"name\":\"n\",\"namespace\":\"default\"}}");
    KT_EQ_INT(kube_create(c, &kube_res_configmaps, NULL, obj, NULL, &err), 0);
    cJSON_Delete(obj);
    KT_CHECK(!strcmp(kube_client_verb(0), "GET") && !strcmp(kube_client_verb(1), "POST"));
    KT_CHECK(kube_client_verb(KUBE_VERBS) == NULL);
    const kube_hist *get = kube_client_latency(c, 0), *post = kube_client_latency(c, 1);
    KT_EQ_INT((int)kube_hist_count(get), 2);
    KT_EQ_INT((int)kube_hist_count(post), 1);
    KT_EQ_INT((int)kube_hist_count(kube_client_latency(c, 2)), 0);
    kbuf b = {0};
    kube_hist_text(get, &b, "t", NULL);
    /* 300 ms: above the 0.25 s bound, within 0.5 s (one fast GET below) */
    KT_STR_CONTAINS(b.p, "t_bucket{le=\"0.25\"} 1\n");
    KT_STR_CONTAINS(b.p, "t_bucket{le=\"0.5\"} 2\n");
    KT_CHECK(atof(strstr(b.p, "t_sum ") + 6) >= 0.3);
    kbuf_release(&b);
    kube_err_release(&err);
    kube_client_free(c);
}

static void test_rate_limit(void)
{
    kube_client_opts o = {.qps = 20, .burst = 1};
    kube_client *c = mk_client(&o);
    kube_err err;
    kube_err_init(&err);
    int64_t t0 = ktime_mono_ms();
    for (int i = 0; i < 5; i++)
        KT_EQ_INT(kube_get(c, &kube_res_configmaps, "default", "ok", NULL, &err), 0);
    int64_t took = ktime_mono_ms() - t0;
    KT_CHECK(took >= 190); /* 4 waits of 50 ms */
    kube_client_cancel(c);
    KT_EQ_INT(kube_get(c, &kube_res_configmaps, "default", "ok", NULL, &err), KILN_ECANCELED);
    kube_err_release(&err);
    kube_client_free(c);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_mutex_init(&S.mu, NULL);
    if (fake_start(handler, &S, &srv) != 0)
        return 1;
    KT_RUN(test_get_and_reuse);
    KT_RUN(test_reuse_across_threads);
    KT_RUN(test_status_errors);
    KT_RUN(test_retries);
    KT_RUN(test_list_pages);
    KT_RUN(test_writes);
    KT_RUN(test_latency_by_verb);
    KT_RUN(test_token_file_refresh);
    KT_RUN(test_token_file_periodic);
    KT_RUN(test_exec_plugin_auth);
    KT_RUN(test_exec_expiry);
    KT_RUN(test_basic_auth);
    KT_RUN(test_rate_limit);
    fake_stop(srv);
    pthread_mutex_destroy(&S.mu);
    curl_global_cleanup();
    return KT_DONE();
}
