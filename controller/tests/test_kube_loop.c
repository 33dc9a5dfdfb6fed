/* The pieces wired as a controller uses them: an informer feeding keys to
 * a work queue, workers reconciling from the cache (with a requeue-after),
 * all gated by leader election; losing the lease stops reconciling at
 * once, and shutdown joins every thread (checked by ASan for leaks). */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "fakeapi.h"
#include "kt_util.h"
#include "ktest.h"
#include "ktime.h"
#include "kube_informer.h"
#include "kube_leader.h"
#include "kube_obj.h"

#define LEASE "/apis/coordination.k8s.io/v1/namespaces/kiln-system/leases"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static cJSON *lease;
static int lease_rv;
static atomic_int fail_puts;

static void lease_handler(const fake_req *r, fake_conn *c)
{
    pthread_mutex_lock(&mu);
    char *out = NULL;
    int code = 404;
    if (!strcmp(r->method, "GET") && lease && !strcmp(r->path, LEASE "/kiln")) {
        out = cJSON_PrintUnformatted(lease);
        code = 200;
    } else if ((!strcmp(r->method, "POST") && !lease) ||
               (!strcmp(r->method, "PUT") && lease && !atomic_load(&fail_puts))) {
        cJSON *o = cJSON_Parse(r->body);
        char rv[16];
        snprintf(rv, sizeof rv, "%d", lease_rv);
        const char *orv = kube_obj_resource_version(o);
        if (o && (!lease || (orv && !strcmp(orv, rv)))) {
            snprintf(rv, sizeof rv, "%d", ++lease_rv);
            kube_obj_set_resource_version(o, rv);
            cJSON_Delete(lease);
            lease = o;
            out = cJSON_PrintUnformatted(o);
            code = r->method[1] == 'O' ? 201 : 200;
        } else {
            cJSON_Delete(o);
            code = 409;
        }
    } else if (!strcmp(r->method, "PUT")) {
        code = 503;
    }
    pthread_mutex_unlock(&mu);
    fake_reply(c, code, NULL, out ? out : "{\"kind\":\"Status\",\"status\":\"Failure\"}");
    free(out);
}

static void handler(void *ud, const fake_req *r, fake_conn *c)
{
    (void)ud;
    char w[8];
    if (!strncmp(r->path, LEASE, strlen(LEASE))) {
        lease_handler(r, c);
    } else if (!strcmp(r->path, "/api/v1/namespaces/team/pods") &&
               !fake_query(r, "watch", w, sizeof w)) {
        fake_reply(
            c, 200, NULL,
            "{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"3\"},"
            "\"items\":[{\"metadata\":{\"name\":\"a\",\"namespace\":\"team\",\"resourceVersion\":"
            "\"1\"}},"
            "{\"metadata\":{\"name\":\"b\",\"namespace\":\"team\",\"resourceVersion\":\"2\"}},"
            "{\"metadata\":{\"name\":\"c\",\"namespace\":\"team\",\"resourceVersion\":\"3\"}}]}");
    } else if (!strcmp(r->path, "/api/v1/namespaces/team/pods")) {
        fake_chunked_begin(c, 200, NULL);
        while (!fake_stopping(fake_conn_server(c)) && fake_chunk(c, "\n", 1) == 0)
            fake_sleep_ms(20);
    } else {
        fake_reply(c, 404, NULL, "{\"kind\":\"Status\",\"code\":404}");
    }
}

typedef struct ctl {
    kube_informer *inf;
    kube_queue *q;
    atomic_int counts[3];
    atomic_int missing;
    atomic_int after_loss;
    atomic_int lost;
} ctl;

static int reconcile(void *ud, const char *key, int64_t *requeue_ms)
{
    ctl *c = ud;
    if (atomic_load(&c->lost))
        atomic_fetch_add(&c->after_loss, 1);
    cJSON *o = kube_informer_get(c->inf, key); /* state from the cache, not the event */
    if (!o) {
        atomic_fetch_add(&c->missing, 1);
        return KUBE_RC_OK;
    }
    int i = kube_obj_name(o)[0] - 'a';
    cJSON_Delete(o);
    if (i < 0 || i > 2)
        return KUBE_RC_TERMINAL;
    if (atomic_fetch_add(&c->counts[i], 1) == 0 && i == 0) {
        *requeue_ms = 50;
        return KUBE_RC_REQUEUE_AFTER;
    }
    return KUBE_RC_OK;
}

static void started(void *ud)
{
    ctl *c = ud;
    /* everything in the cache gets one look when leadership starts; keys
     * the informer queued already are not queued twice */
    cJSON *all = NULL;
    if (kube_informer_list(c->inf, NULL, &all) == 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, all)
        {
            char *k = kube_obj_key(it);
            if (k)
                kube_queue_add(c->q, k);
            free(k);
        }
        cJSON_Delete(all);
    }
    kube_queue_start(c->q, 2, reconcile, c);
}

static void stopped(void *ud)
{
    ctl *c = ud;
    atomic_store(&c->lost, 1);
    kube_queue_stop(c->q); /* at once: workers finish their current key and exit */
}

static void test_loop(void)
{
    fake_server *srv;
    KT_EQ_INT(fake_start(handler, NULL, &srv), 0);
    kube_client_opts co = {.max_retries = -1};
    kube_client *cl = NULL;
    KT_EQ_INT(kube_client_new(kt_config(fake_port(srv)), &co, &cl, NULL), 0);
    ctl c;
    memset(&c, 0, sizeof c);
    kube_queue_opts qo = {.base_delay_ms = 5};
    KT_EQ_INT(kube_queue_new(&qo, &c.q), 0);
    kube_handlers h;
    kube_informer_enqueue_handlers(c.q, &h);
    kube_informer_opts io = {.res = kube_res_pods, .ns = "team"};
    KT_EQ_INT(kube_informer_new(cl, &io, &h, &c.inf), 0);
    KT_EQ_INT(kube_informer_start(c.inf), 0);
    KT_EQ_INT(kube_informer_wait_synced(c.inf, 3000), 0);
    kube_leader_opts lo = {.name = "kiln",
                           .ns = "kiln-system",
                           .identity = "me",
                           .lease_ms = 600,
                           .renew_deadline_ms = 400,
                           .retry_ms = 100,
                           .on_started = started,
                           .on_stopped = stopped,
                           .ud = &c};
    kube_leader *l;
    KT_EQ_INT(kube_leader_new(cl, &lo, &l, NULL), 0);
    KT_EQ_INT(kube_leader_start(l), 0);
    int64_t t0 = ktime_mono_ms();
    while ((atomic_load(&c.counts[0]) < 2 || atomic_load(&c.counts[1]) < 1 ||
            atomic_load(&c.counts[2]) < 1) &&
           ktime_mono_ms() - t0 < 10000)
        fake_sleep_ms(5);
    KT_EQ_INT(atomic_load(&c.counts[0]), 2); /* requeued once after 50 ms */
    KT_EQ_INT(atomic_load(&c.counts[1]), 1); /* deduplicated: informer add + leader start */
    KT_EQ_INT(atomic_load(&c.counts[2]), 1);
    KT_EQ_INT(atomic_load(&c.missing), 0);
    /* the API stops accepting renewals: leadership and reconciling stop */
    atomic_store(&fail_puts, 1);
    t0 = ktime_mono_ms();
    while (kube_leader_is_leader(l) && ktime_mono_ms() - t0 < 10000)
        fake_sleep_ms(5);
    KT_EQ_INT(kube_leader_is_leader(l), 0);
    KT_CHECK(kube_queue_shutting_down(c.q));
    KT_EQ_INT(kube_queue_add(c.q, "team/a"), KILN_ECANCELED);
    fake_sleep_ms(50);
    KT_EQ_INT(atomic_load(&c.after_loss), 0);
    /* shutdown order: leader, informer (closes its watch), queue, client */
    kube_client_cancel(cl);
    kube_leader_free(l);
    kube_informer_free(c.inf);
    kube_queue_free(c.q);
    kube_client_free(cl);
    fake_stop(srv);
    cJSON_Delete(lease);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    KT_RUN(test_loop);
    curl_global_cleanup();
    return KT_DONE();
}
