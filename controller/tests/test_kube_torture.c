/* Allocation-failure torture for the parsers and object helpers: every
 * cJSON allocation in turn is made to fail (through cJSON_InitHooks), and
 * each call must return an error or succeed, never crash or leak (ASan's
 * leak check runs at exit). */
#include <stdlib.h>

#include "kstatus.h"
#include "ktest.h"
#include "kube_config.h"
#include "kube_exec.h"
#include "kube_obj.h"
#include "kube_watch.h"

static long fail_at, n_alloc;

static void *tmalloc(size_t n)
{
    if (fail_at && ++n_alloc == fail_at)
        return NULL;
    return malloc(n);
}

/* Runs fn with the 1st, 2nd, ... allocation failing until a run completes
 * without reaching the failure point; returns the number of runs. */
static int torture(int (*fn)(void), int *errors)
{
    int runs = 0;
    for (fail_at = 1; fail_at < 5000; fail_at++) {
        n_alloc = 0;
        int rc = fn();
        runs++;
        if (rc)
            (*errors)++;
        if (n_alloc < fail_at)
            break; /* no failure injected: every allocation point was covered */
    }
    fail_at = 0;
    return runs;
}

static int t_status(void)
{
    const char *body =
        "{\"kind\":\"Status\",\"code\":422,\"reason\":\"Invalid\",\"message\":\"m\","
        "\"details\":{\"name\":\"x\",\"causes\":[{\"reason\":\"R\",\"field\":\"f\"}]}}";
    kstatus s;
    kstatus_init(&s);
    int rc = kstatus_parse(&s, body, strlen(body), 422, NULL);
    char *txt = rc ? NULL : kstatus_to_string(&s);
    if (!rc && !txt)
        rc = -1;
    free(txt);
    kstatus_release(&s);
    return rc;
}

static int drop(void *ud, int type, cJSON *obj)
{
    (void)type;
    (*(int *)ud)++;
    cJSON_Delete(obj);
    return 0;
}

static int t_watch(void)
{
    const char *s =
        "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"labels\":{\"x\":\"y\"}}}}\n"
        "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"2\"}}}\n"
        "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n";
    int n = 0;
    kube_watch_parser p;
    kube_watch_parser_init(&p, 0, drop, &n);
    int rc = 0;
    for (size_t off = 0; off < strlen(s) && !rc; off += 13) {
        size_t len = strlen(s) - off < 13 ? strlen(s) - off : 13;
        rc = kube_watch_parser_feed(&p, s + off, len, NULL);
    }
    kube_watch_parser_release(&p);
    return rc;
}

static int t_config(void)
{
    const char *y = "current-context: dev\n"
                    "clusters:\n- name: c\n  cluster: {server: \"https://x:1\", "
                    "certificate-authority-data: QQ==}\n"
                    "users:\n- name: u\n  user:\n    token: t\n    exec:\n      command: p\n"
                    "      args: [a]\n      env: [{name: A, value: b}]\n"
                    "contexts:\n- name: dev\n  context: {cluster: c, user: u, namespace: n}\n";
    kube_config *c = NULL;
    int rc = kube_config_parse(y, strlen(y), NULL, NULL, &c, NULL);
    kube_config_free(c);
    return rc;
}

static int t_obj(void)
{
    cJSON *o = cJSON_Parse("{\"metadata\":{\"name\":\"j\",\"namespace\":\"n\"}}");
    if (!o)
        return -1;
    ktime t = {.sec = 1};
    int rc = kube_obj_set_condition(o, "Ready", "True", "R", "m", 2, t);
    if (rc >= 0)
        rc = kube_obj_set_owner(o, "v1", "K", "n", "u", 1);
    if (rc >= 0)
        rc = kube_obj_add_finalizer(o, "f");
    if (rc >= 0)
        rc = kube_obj_set_label(o, "a", "b");
    cJSON_Delete(o);
    return rc < 0 ? rc : 0;
}

static int t_exec(void)
{
    const char *j = "{\"kind\":\"ExecCredential\",\"status\":{\"token\":\"t\","
                    "\"expirationTimestamp\":\"2030-01-01T00:00:00Z\"}}";
    kube_exec_cred c;
    int rc = kube_exec_parse(j, strlen(j), &c, NULL);
    if (!rc)
        kube_exec_cred_release(&c);
    return rc;
}

static void test_torture(void)
{
    cJSON_Hooks h = {tmalloc, free};
    cJSON_InitHooks(&h);
    struct {
        const char *name;
        int (*fn)(void);
    } cases[] = {{"status", t_status},
                 {"watch", t_watch},
                 {"config", t_config},
                 {"obj", t_obj},
                 {"exec", t_exec}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int errors = 0;
        int runs = torture(cases[i].fn, &errors);
        /* each case allocates more than once, and failures were reported */
        fprintf(stderr, "torture %s: %d runs, %d errors\n", cases[i].name, runs, errors);
        if (runs < 3 || errors < 1)
            fprintf(stderr, "%s: runs %d errors %d\n", cases[i].name, runs, errors);
        KT_CHECK(runs >= 3);
        KT_CHECK(errors >= 1);
        /* the final run had no injected failure and must succeed */
        KT_EQ_INT(cases[i].fn(), 0);
    }
    cJSON_InitHooks(NULL);
}

int main(void)
{
    KT_RUN(test_torture);
    return KT_DONE();
}
