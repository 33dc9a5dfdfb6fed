/* Unit tests for ctrl_claims against a scripted API server: a claim is
 * created once and then known; AlreadyExists counts as created; a create
 * already queued is not queued twice; a failure is logged as a Warning
 * Event and queues the job again; a forgotten job's queued create is
 * dropped; stopping with creates queued loses nothing to leaks. */
#include <curl/curl.h>
#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "ctrl_claims.h"
#include "fakeapi.h"
#include "knice.h"
#include "kt_util.h"
#include "ktest.h"
#include "kube_obj.h"

#define PVC_COLL "/api/v1/namespaces/team/persistentvolumeclaims"
#define EV_COLL  "/api/v1/namespaces/team/events"

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int code;  /* the answer to a claim's POST */
    int hold;  /* while set, claim POSTs wait */
    int posts; /* claim POSTs received */
    char names[8][64];
    int events; /* Event POSTs received */
    char reason[64];
} S;

static void handler(void *ud, const fake_req *r, fake_conn *c)
{
    (void)ud;
    if (!strcmp(r->method, "POST") && !strcmp(r->path, EV_COLL)) {
        cJSON *ev = cJSON_Parse(r->body);
        pthread_mutex_lock(&S.mu);
        S.events++;
        const char *reason = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "reason"));
        snprintf(S.reason, sizeof S.reason, "%s", reason ? reason : "");
        pthread_mutex_unlock(&S.mu);
        char *out = cJSON_PrintUnformatted(ev);
        fake_reply(c, 201, NULL, out ? out : "{}");
        free(out);
        cJSON_Delete(ev);
        return;
    }
    if (strcmp(r->method, "POST") || strcmp(r->path, PVC_COLL)) {
        fake_reply(c, 404, NULL, "{\"kind\":\"Status\",\"code\":404}");
        return;
    }
    cJSON *pvc = cJSON_Parse(r->body);
    pthread_mutex_lock(&S.mu);
    while (S.hold)
        pthread_cond_wait(&S.cv, &S.mu);
    if (S.posts < 8)
        snprintf(S.names[S.posts], sizeof S.names[0], "%s",
                 kube_obj_name(pvc) ? kube_obj_name(pvc) : "");
    S.posts++;
    int code = S.code;
    pthread_mutex_unlock(&S.mu);
    if (code == 201) {
        char *out = cJSON_PrintUnformatted(pvc);
        fake_reply(c, 201, NULL, out ? out : "{}");
        free(out);
    } else {
        char b[256];
        snprintf(b, sizeof b,
                 "{\"kind\":\"Status\",\"status\":\"Failure\",\"code\":%d,\"reason\":\"%s\","
                 "\"message\":\"claim refused (%d)\"}",
                 code, code == 409 ? "AlreadyExists" : "Forbidden", code);
        fake_reply(c, code, NULL, b);
    }
    cJSON_Delete(pvc);
}

static void reset(int code)
{
    pthread_mutex_lock(&S.mu);
    S.code = code;
    S.hold = 0;
    S.posts = 0;
    S.events = 0;
    S.reason[0] = 0;
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.mu);
}

static void set_hold(int on)
{
    pthread_mutex_lock(&S.mu);
    S.hold = on;
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.mu);
}

static int posts(void)
{
    pthread_mutex_lock(&S.mu);
    int n = S.posts;
    pthread_mutex_unlock(&S.mu);
    return n;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls cond for up to 5 s. */
#define WAIT_FOR(cond)                                                                             \
    do {                                                                                           \
        for (int w_ = 0; w_ < 500 && !(cond); w_++)                                                \
            sleep_ms(10);                                                                          \
    } while (0)

static fake_server *srv;

typedef struct env {
    kube_client *client;
    kube_recorder *events;
    kube_queue *queue;
    ctrl_claims *claims;
} env;

static void env_up(env *e, int threads)
{
    memset(e, 0, sizeof *e);
    KT_EQ_INT(kube_client_new(kt_config(fake_port(srv)), NULL, &e->client, NULL), 0);
    kube_recorder_opts ro = {.component = "kiln-controller"};
    KT_EQ_INT(kube_recorder_new(e->client, &ro, &e->events), 0);
    kube_queue_opts qo = {.qps = -1};
    KT_EQ_INT(kube_queue_new(&qo, &e->queue), 0);
    KT_EQ_INT(ctrl_claims_new(e->client, e->events, e->queue, threads, &e->claims), 0);
}

static void env_down(env *e)
{
    ctrl_claims_free(e->claims);
    kube_queue_free(e->queue);
    kube_recorder_free(e->events);
    kube_client_free(e->client);
}

static cJSON *claim(const char *name)
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "apiVersion", "v1");
    cJSON_AddStringToObject(p, "kind", "PersistentVolumeClaim");
    cJSON *md = cJSON_AddObjectToObject(p, "metadata");
    cJSON_AddStringToObject(md, "name", name);
    cJSON_AddStringToObject(md, "namespace", "team");
    return p;
}

static int create(env *e, const char *job, const char *uid)
{
    char key[128], name[128];
    snprintf(key, sizeof key, "team/%s", job);
    snprintf(name, sizeof name, "%s-models", job);
    cJSON *p = claim(name);
    const cJSON *pvcs[1] = {p};
    int rc = ctrl_claims_create(e->claims, key, uid, "team", pvcs, 1);
    cJSON_Delete(p);
    return rc;
}

static void test_created_then_known(void)
{
    env e;
    env_up(&e, 2);
    reset(201);
    KT_CHECK(!ctrl_claims_known(e.claims, "team/a", "u-a"));
    KT_EQ_INT(create(&e, "a", "u-a"), 0);
    WAIT_FOR(ctrl_claims_known(e.claims, "team/a", "u-a"));
    KT_CHECK(ctrl_claims_known(e.claims, "team/a", "u-a"));
    KT_EQ_INT(posts(), 1);
    KT_CHECK(!strcmp(S.names[0], "a-models"));
    KT_EQ_INT(ctrl_claims_writes(e.claims), 1);
    KT_EQ_INT(ctrl_claims_failures(e.claims), 0);
    KT_EQ_INT(ctrl_claims_pending(e.claims), 0);
    /* known per uid: a job re-created under the same name is not */
    KT_CHECK(!ctrl_claims_known(e.claims, "team/a", "u-a2"));
    ctrl_claims_forget(e.claims, "team/a");
    KT_CHECK(!ctrl_claims_known(e.claims, "team/a", "u-a"));
    env_down(&e);
}

static void test_already_exists_is_created(void)
{
    env e;
    env_up(&e, 1);
    reset(409);
    KT_EQ_INT(create(&e, "b", "u-b"), 0);
    WAIT_FOR(ctrl_claims_known(e.claims, "team/b", "u-b"));
    KT_CHECK(ctrl_claims_known(e.claims, "team/b", "u-b"));
    KT_EQ_INT(ctrl_claims_failures(e.claims), 0);
    KT_EQ_INT(kube_queue_len(e.queue), 0);
    env_down(&e);
}

static void test_queued_once(void)
{
    env e;
    env_up(&e, 2);
    reset(201);
    set_hold(1);
    KT_EQ_INT(create(&e, "c", "u-c"), 0);
    WAIT_FOR(posts() == 0 && ctrl_claims_pending(e.claims) == 1);
    /* every reconcile before the claim is known asks again */
    for (int i = 0; i < 5; i++)
        KT_EQ_INT(create(&e, "c", "u-c"), 0);
    KT_EQ_INT(ctrl_claims_pending(e.claims), 1);
    set_hold(0);
    WAIT_FOR(ctrl_claims_known(e.claims, "team/c", "u-c"));
    sleep_ms(100); /* a second create, were one queued, would be under way by now */
    KT_EQ_INT(posts(), 1);
    KT_EQ_INT(ctrl_claims_pending(e.claims), 0);
    env_down(&e);
}

static void test_failure_warns_and_requeues(void)
{
    env e;
    env_up(&e, 1);
    reset(403);
    KT_EQ_INT(create(&e, "d", "u-d"), 0);
    WAIT_FOR(kube_queue_num_requeues(e.queue, "team/d") == 1);
    KT_EQ_INT(ctrl_claims_failures(e.claims), 1);
    KT_CHECK(!ctrl_claims_known(e.claims, "team/d", "u-d"));
    KT_EQ_INT(ctrl_claims_pending(e.claims), 0);
    /* the job is queued again, with back-off, for its next reconcile to ask again */
    KT_EQ_INT(kube_queue_num_requeues(e.queue, "team/d"), 1);
    if (kube_queue_num_requeues(e.queue, "team/d") == 1) { /* else get() would wait forever */
        char *key = NULL;
        KT_EQ_INT(kube_queue_get(e.queue, &key), 0);
        KT_CHECK(key && !strcmp(key, "team/d"));
        kube_queue_done(e.queue, key);
        free(key);
    }
    pthread_mutex_lock(&S.mu);
    KT_EQ_INT(S.events, 1);
    KT_CHECK(!strcmp(S.reason, "ClaimCreateFailed"));
    pthread_mutex_unlock(&S.mu);
    /* asked again, it is created */
    reset(201);
    KT_EQ_INT(create(&e, "d", "u-d"), 0);
    WAIT_FOR(ctrl_claims_known(e.claims, "team/d", "u-d"));
    KT_CHECK(ctrl_claims_known(e.claims, "team/d", "u-d"));
    env_down(&e);
}

static void test_forgotten_job_dropped(void)
{
    env e;
    env_up(&e, 1);
    reset(201);
    set_hold(1);
    KT_EQ_INT(create(&e, "e1", "u-e1"), 0); /* taken by the one creator, held */
    WAIT_FOR(ctrl_claims_pending(e.claims) == 1);
    sleep_ms(50);
    KT_EQ_INT(create(&e, "e2", "u-e2"), 0); /* waits in the queue */
    KT_EQ_INT(ctrl_claims_pending(e.claims), 2);
    ctrl_claims_forget(e.claims, "team/e2");
    set_hold(0);
    WAIT_FOR(ctrl_claims_known(e.claims, "team/e1", "u-e1"));
    sleep_ms(100);
    KT_EQ_INT(posts(), 1);
    KT_CHECK(!strcmp(S.names[0], "e1-models"));
    KT_CHECK(!ctrl_claims_known(e.claims, "team/e2", "u-e2"));
    env_down(&e);
}

static void test_stop_with_queued(void)
{
    env e;
    env_up(&e, 1);
    reset(201);
    set_hold(1);
    for (int i = 0; i < 4; i++) {
        char job[16], uid[16];
        snprintf(job, sizeof job, "f%d", i);
        snprintf(uid, sizeof uid, "u-f%d", i);
        KT_EQ_INT(create(&e, job, uid), 0);
    }
    KT_EQ_INT(ctrl_claims_pending(e.claims), 4);
    kube_client_cancel(e.client); /* the held create fails at once */
    set_hold(0);
    ctrl_claims_stop(e.claims);
    KT_EQ_INT(create(&e, "g", "u-g"), 0); /* stopped: nothing is queued */
    KT_CHECK(posts() <= 1);
    env_down(&e);
}

/* Threads of this process at niceness nice (from /proc/self/task). */
static int threads_at(int nice)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char path[300], buf[1024];
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", de->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        /* after "(comm)" the state is field 3 and the niceness field 19 */
        int field = 2;
        for (const char *p = strrchr(buf, ')'); p && *p; p++)
            if (*p == ' ' && ++field == 19) {
                n += atoi(p + 1) == nice;
                break;
            }
    }
    if (d)
        closedir(d);
    return n;
}

static void test_creators_run_nicer(void)
{
    int mine = knice_thread();
    KT_CHECK(mine != KNICE_UNKNOWN);
    int want = mine + CTRL_CLAIMS_NICE > 19 ? 19 : mine + CTRL_CLAIMS_NICE;
    env e;
    env_up(&e, 3);
    WAIT_FOR(threads_at(want) >= 3);
    KT_EQ_INT(threads_at(want), 3); /* the creators, and no other thread */
    KT_EQ_INT(knice_thread(), mine);
    env_down(&e);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_mutex_init(&S.mu, NULL);
    pthread_cond_init(&S.cv, NULL);
    if (fake_start(handler, NULL, &srv) != 0)
        return 1;
    KT_RUN(test_created_then_known);
    KT_RUN(test_already_exists_is_created);
    KT_RUN(test_queued_once);
    KT_RUN(test_failure_warns_and_requeues);
    KT_RUN(test_forgotten_job_dropped);
    KT_RUN(test_stop_with_queued);
    KT_RUN(test_creators_run_nicer);
    fake_stop(srv);
    pthread_cond_destroy(&S.cv);
    pthread_mutex_destroy(&S.mu);
    curl_global_cleanup();
    return KT_DONE();
}
