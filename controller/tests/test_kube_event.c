/* Unit tests for kube_event: creation, count aggregation through merge
 * patches, re-creation after the Event vanished, and rate limiting. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>

#include "fakeapi.h"
#include "kt_util.h"
#include "ktest.h"
#include "kube_event.h"
#include "kube_obj.h"

#define EV_COLL "/api/v1/namespaces/team/events"

typedef struct estore {
    pthread_mutex_t mu;
    cJSON *events; /* object name -> event */
    int posts, patches;
} estore;

static estore E;

static void handler(void *ud, const fake_req *r, fake_conn *c)
{
    (void)ud;
    pthread_mutex_lock(&E.mu);
    int code = 404;
    char *out = NULL;
    if (!strcmp(r->method, "POST") && !strcmp(r->path, EV_COLL)) {
        cJSON *o = cJSON_Parse(r->body);
        if (o && kube_obj_name(o)) {
            E.posts++;
            cJSON_AddItemToObject(E.events, kube_obj_name(o), o);
            out = cJSON_PrintUnformatted(o);
            code = 201;
        } else {
            cJSON_Delete(o);
            code = 400;
        }
    } else if (!strcmp(r->method, "PATCH") && !strncmp(r->path, EV_COLL "/", strlen(EV_COLL) + 1)) {
        const char *name = r->path + strlen(EV_COLL) + 1;
        cJSON *o = cJSON_GetObjectItemCaseSensitive(E.events, name);
        cJSON *p = cJSON_Parse(r->body);
        if (o && p && !strcmp(r->content_type, "application/merge-patch+json")) {
            E.patches++;
            cJSON *it;
            cJSON_ArrayForEach(it, p)
            {
                cJSON_DeleteItemFromObjectCaseSensitive(o, it->string);
                cJSON_AddItemToObject(o, it->string, cJSON_Duplicate(it, 1));
            }
            out = cJSON_PrintUnformatted(o);
            code = 200;
        }
        cJSON_Delete(p);
    }
    pthread_mutex_unlock(&E.mu);
    if (out) {
        fake_reply(c, code, NULL, out);
        free(out);
    } else {
        char b[128];
        snprintf(b, sizeof b, "{\"kind\":\"Status\",\"code\":%d}", code);
        fake_reply(c, code, NULL, b);
    }
}

static cJSON *only_event(void)
{
    return E.events->child;
}

static void test_aggregate(fake_server *srv)
{
    kube_client *c = NULL;
    KT_EQ_INT(kube_client_new(kt_config(fake_port(srv)), NULL, &c, NULL), 0);
    kube_recorder_opts o = {.component = "kiln-controller", .host = "node-1", .burst = 10};
    kube_recorder *r;
    KT_EQ_INT(kube_recorder_new(c, &o, &r), 0);
    cJSON *job =
        cJSON_Parse("{\"apiVersion\":\"kiln.dev/v1alpha1\",\"kind\":\"TrainingJob\","
                    "\"metadata\":{\"name\":\"demo\",\"namespace\":\"team\",\"uid\":\"u-9\","
                    "\"resourceVersion\":\"3\"}}");
    for (int i = 0; i < 3; i++)
        KT_EQ_INT(kube_event_record(r, job, "Normal", "TrialStarted", "trial %d started", 1), 0);
    KT_EQ_INT(E.posts, 1);
    KT_EQ_INT(E.patches, 2);
    cJSON *ev = only_event();
    KT_CHECK(ev != NULL);
    const cJSON *cnt = cJSON_GetObjectItemCaseSensitive(ev, "count");
    KT_CHECK(cJSON_IsNumber(cnt) && cnt->valuedouble == 3);
    KT_CHECK(strcmp(kube_obj_path(ev, "involvedObject.uid")->valuestring, "u-9") == 0);
    KT_CHECK(strcmp(kube_obj_path(ev, "involvedObject.kind")->valuestring, "TrainingJob") == 0);
    KT_CHECK(strcmp(kube_obj_path(ev, "source.component")->valuestring, "kiln-controller") == 0);
    KT_CHECK(strcmp(kube_obj_path(ev, "type")->valuestring, "Normal") == 0);
    KT_CHECK(strcmp(kube_obj_path(ev, "message")->valuestring, "trial 1 started") == 0);
    KT_CHECK(strncmp(kube_obj_name(ev), "demo.", 5) == 0);
    /* a different message is a different Event */
    KT_EQ_INT(kube_event_record(r, job, "Warning", "TrialFailed", "trial %d failed", 2), 0);
    KT_EQ_INT(E.posts, 2);
    /* the Event vanished (TTL): the next repeat creates a fresh one */
    pthread_mutex_lock(&E.mu);
    cJSON_Delete(E.events);
    E.events = cJSON_CreateObject();
    pthread_mutex_unlock(&E.mu);
    KT_EQ_INT(kube_event_record(r, job, "Normal", "TrialStarted", "trial %d started", 1), 0);
    KT_EQ_INT(E.posts, 3);
    kube_recorder_stats st;
    kube_recorder_get_stats(r, &st);
    KT_EQ_INT(st.created, 3);
    KT_EQ_INT(st.aggregated, 2);
    KT_EQ_INT(st.dropped, 0);
    kube_recorder_free(r);
    /* rate limit: burst 2, (almost) no refill */
    kube_recorder_opts lo = {.component = "kiln-controller", .burst = 2, .qps = 0.001};
    KT_EQ_INT(kube_recorder_new(c, &lo, &r), 0);
    int before = E.posts + E.patches;
    for (int i = 0; i < 5; i++)
        KT_EQ_INT(kube_event_record(r, job, "Normal", "Spam", "n=%d", i), 0);
    KT_EQ_INT(E.posts + E.patches - before, 2);
    kube_recorder_get_stats(r, &st);
    KT_EQ_INT(st.dropped, 3);
    /* the limit is per involved object: another object still gets through */
    cJSON *other = cJSON_Parse("{\"kind\":\"Pod\",\"metadata\":{\"name\":\"demo-t1\","
                               "\"namespace\":\"team\",\"uid\":\"u-10\"}}");
    KT_EQ_INT(kube_event_record(r, other, "Normal", "Spam", "n=%d", 0), 0);
    KT_EQ_INT(E.posts + E.patches - before, 3);
    cJSON_Delete(other);
    kube_recorder_free(r);
    cJSON_Delete(job);
    kube_client_free(c);
}

static fake_server *srv;
static void run_aggregate(void)
{
    test_aggregate(srv);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_mutex_init(&E.mu, NULL);
    E.events = cJSON_CreateObject();
    if (fake_start(handler, NULL, &srv) != 0)
        return 1;
    KT_RUN(run_aggregate);
    fake_stop(srv);
    cJSON_Delete(E.events);
    pthread_mutex_destroy(&E.mu);
    curl_global_cleanup();
    return KT_DONE();
}
