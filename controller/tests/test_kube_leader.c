/* Unit tests for kube_leader: two electors against a fake Lease store
 * (optimistic concurrency with 409s), hand-over on release, and losing
 * leadership when renewals fail. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "fakeapi.h"
#include "kt_util.h"
#include "ktest.h"
#include "ktime.h"
#include "kube_leader.h"
#include "kube_obj.h"

#define LEASE_COLL "/apis/coordination.k8s.io/v1/namespaces/kiln-system/leases"
#define LEASE_PATH LEASE_COLL "/kiln-controller"

typedef struct store {
    pthread_mutex_t mu;
    cJSON *lease;
    int rv;
    int conflicts;
    char fail_holder[64]; /* PUTs naming this holder get a 500 */
    int64_t saved_ms;     /* monotonic time of the last successful write */
} store;

static store ST;

static void save(cJSON *o)
{
    char rv[32];
    snprintf(rv, sizeof rv, "%d", ++ST.rv);
    kube_obj_set_resource_version(o, rv);
    cJSON_Delete(ST.lease);
    ST.lease = o;
    ST.saved_ms = ktime_mono_ms();
}

static void handler(void *ud, const fake_req *r, fake_conn *c)
{
    (void)ud;
    pthread_mutex_lock(&ST.mu);
    char *out = NULL;
    int code = 200;
    if (!strcmp(r->method, "GET") && !strcmp(r->path, LEASE_PATH)) {
        if (ST.lease)
            out = cJSON_PrintUnformatted(ST.lease);
        else
            code = 404;
    } else if (!strcmp(r->method, "POST") && !strcmp(r->path, LEASE_COLL)) {
        cJSON *o = cJSON_Parse(r->body);
        if (ST.lease || !o) {
            cJSON_Delete(o);
            code = 409;
        } else {
            save(o);
            out = cJSON_PrintUnformatted(o);
            code = 201;
        }
    } else if (!strcmp(r->method, "PUT") && !strcmp(r->path, LEASE_PATH)) {
        cJSON *o = cJSON_Parse(r->body);
        const cJSON *h = kube_obj_path(o, "spec.holderIdentity");
        const char *rv = kube_obj_resource_version(o);
        char cur[32];
        snprintf(cur, sizeof cur, "%d", ST.rv);
        if (!o || !ST.lease) {
            code = 404;
            cJSON_Delete(o);
        } else if (cJSON_IsString(h) && ST.fail_holder[0] &&
                   !strcmp(h->valuestring, ST.fail_holder)) {
            code = 500;
            cJSON_Delete(o);
        } else if (!rv || strcmp(rv, cur) != 0) {
            ST.conflicts++;
            code = 409;
            cJSON_Delete(o);
        } else {
            save(o);
            out = cJSON_PrintUnformatted(o);
        }
    } else {
        code = 404;
    }
    pthread_mutex_unlock(&ST.mu);
    if (out) {
        fake_reply(c, code, NULL, out);
        free(out);
    } else {
        char b[256];
        snprintf(b, sizeof b,
                 "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"code\":%d}",
                 code);
        fake_reply(c, code, NULL, b);
    }
}

typedef struct cb {
    atomic_int started, stopped;
    char seen_leader[64];
    pthread_mutex_t mu;
} cb;

static void on_started(void *ud)
{
    atomic_fetch_add(&((cb *)ud)->started, 1);
}
static void on_stopped(void *ud)
{
    atomic_fetch_add(&((cb *)ud)->stopped, 1);
}
static void on_new(void *ud, const char *id)
{
    cb *b = ud;
    pthread_mutex_lock(&b->mu);
    snprintf(b->seen_leader, sizeof b->seen_leader, "%s", id);
    pthread_mutex_unlock(&b->mu);
}

static int wait_for(kube_leader *l, int want, int64_t ms)
{
    int64_t t0 = ktime_mono_ms();
    while (kube_leader_is_leader(l) != want && ktime_mono_ms() - t0 < ms)
        fake_sleep_ms(5);
    return kube_leader_is_leader(l) == want;
}

static const char *holder(void)
{
    static char h[64];
    pthread_mutex_lock(&ST.mu);
    const cJSON *v = kube_obj_path(ST.lease, "spec.holderIdentity");
    snprintf(h, sizeof h, "%s", cJSON_IsString(v) ? v->valuestring : "?");
    pthread_mutex_unlock(&ST.mu);
    return h;
}

static void test_two_electors(fake_server *srv)
{
    kube_client_opts co = {.max_retries = -1, .qps = -1};
    kube_client *c = NULL;
    KT_EQ_INT(kube_client_new(kt_config(fake_port(srv)), &co, &c, NULL), 0);
    cb ca = {0}, cbb = {0};
    pthread_mutex_init(&ca.mu, NULL);
    pthread_mutex_init(&cbb.mu, NULL);
    /* a long lease and a short retry period: a successor that had to wait
     * for expiry would need >= 3 s, one that sees the release far less */
    kube_leader_opts o = {.name = "kiln-controller",
                          .ns = "kiln-system",
                          .lease_ms = 3000,
                          .renew_deadline_ms = 1000,
                          .retry_ms = 100,
                          .on_started = on_started,
                          .on_stopped = on_stopped,
                          .on_new_leader = on_new};
    kube_leader *a, *b;
    o.identity = "a";
    o.ud = &ca;
    KT_EQ_INT(kube_leader_new(c, &o, &a, NULL), 0);
    o.identity = "b";
    o.ud = &cbb;
    KT_EQ_INT(kube_leader_new(c, &o, &b, NULL), 0);
    KT_EQ_INT(kube_leader_start(a), 0);
    KT_CHECK(wait_for(a, 1, 5000));
    KT_EQ_INT(kube_leader_start(b), 0);
    fake_sleep_ms(800); /* A keeps renewing; B stays a follower */
    KT_EQ_INT(kube_leader_is_leader(a), 1);
    KT_EQ_INT(kube_leader_is_leader(b), 0);
    KT_CHECK(strcmp(holder(), "a") == 0);
    pthread_mutex_lock(&cbb.mu);
    KT_CHECK(strcmp(cbb.seen_leader, "a") == 0);
    pthread_mutex_unlock(&cbb.mu);
    /* A stops and releases: B takes over well before a lease duration */
    kube_leader_stop(a);
    KT_EQ_INT(atomic_load(&ca.stopped), 1);
    int64_t t0 = ktime_mono_ms();
    KT_CHECK(wait_for(b, 1, 5000));
    int64_t took = ktime_mono_ms() - t0;
    KT_CHECK(took < 2500);
    KT_CHECK(strcmp(holder(), "b") == 0);
    pthread_mutex_lock(&ST.mu);
    const cJSON *tr = kube_obj_path(ST.lease, "spec.leaseTransitions");
    KT_CHECK(cJSON_IsNumber(tr) && tr->valuedouble == 1); /* a -> b (the release keeps it) */
    const cJSON *rt = kube_obj_path(ST.lease, "spec.renewTime");
    ktime t;
    KT_CHECK(cJSON_IsString(rt) && ktime_parse(rt->valuestring, &t, NULL) == 0 &&
             strlen(rt->valuestring) == 27); /* MicroTime: 6 fraction digits */
    pthread_mutex_unlock(&ST.mu);
    /* renewals start failing: B steps down within the renew deadline */
    pthread_mutex_lock(&ST.mu);
    snprintf(ST.fail_holder, sizeof ST.fail_holder, "b");
    pthread_mutex_unlock(&ST.mu);
    KT_CHECK(wait_for(b, 0, 5000));
    /* It kept trying until the renew deadline, counted from its last
     * renewal (not from the failures' start: on a loaded machine that
     * renewal may be long before). */
    pthread_mutex_lock(&ST.mu);
    took = ktime_mono_ms() - ST.saved_ms;
    pthread_mutex_unlock(&ST.mu);
    KT_CHECK(took >= 800);
    KT_EQ_INT(atomic_load(&cbb.stopped), 1);
    KT_EQ_INT(atomic_load(&cbb.started), 1);
    kube_leader_free(b);
    kube_leader_free(a);
    /* inconsistent timings are refused */
    kube_leader *bad;
    kube_leader_opts bo = {.name = "x", .ns = "y", .lease_ms = 1000, .renew_deadline_ms = 2000};
    kiln_error e = {0};
    KT_EQ_INT(kube_leader_new(c, &bo, &bad, &e), KILN_EINVAL);
    kube_leader_opts io = {.name = "x", .ns = "y"};
    KT_EQ_INT(kube_leader_new(c, &io, &bad, NULL), 0);
    KT_CHECK(strchr(kube_leader_identity(bad), '_') != NULL);
    kube_leader_free(bad);
    kube_client_free(c);
    pthread_mutex_destroy(&ca.mu);
    pthread_mutex_destroy(&cbb.mu);
}

static fake_server *srv;

static void run_two(void)
{
    test_two_electors(srv);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_mutex_init(&ST.mu, NULL);
    if (fake_start(handler, NULL, &srv) != 0)
        return 1;
    KT_RUN(run_two);
    fake_stop(srv);
    cJSON_Delete(ST.lease);
    pthread_mutex_destroy(&ST.mu);
    curl_global_cleanup();
    return KT_DONE();
}
