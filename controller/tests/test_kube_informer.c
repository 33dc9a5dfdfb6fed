/* Unit tests for kube_watch and kube_informer against scripted streams:
 * an event split across chunks, a bookmark, a 1 MiB event, a replayed
 * event, a 410 Expired with a relist diff (update, add, synthetic delete),
 * an owner change followed by the owner index, a held-open watch
 * cancelled at stop, and the same over WebSocket; a
 * transform that strips server fields before objects are cached. */
#include <curl/curl.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "fakeapi.h"
#include "kt_util.h"
#include "ktest.h"
#include "ktime.h"
#include "kube_informer.h"
#include "kube_obj.h"
#include "kube_watch.h"

typedef struct script {
    atomic_int lists, watches, ws_lists, ws_watches;
    char watch_query[4][512];
    char ws_origin[256];
    pthread_mutex_t mu;
} script;

static script S;

static void obj_json(char *buf, size_t n, const char *name, const char *rv, const char *extra)
{
    snprintf(buf, n,
             "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\","
             "\"namespace\":\"ns1\",\"resourceVersion\":\"%s\"%s}}",
             name, rv, extra ? extra : "");
}

static void event(char *buf, size_t n, const char *type, const char *name, const char *rv,
                  const char *extra)
{
    char o[1024];
    obj_json(o, sizeof o, name, rv, extra);
    snprintf(buf, n, "{\"type\":\"%s\",\"object\":%s}\n", type, o);
}

static void hold_open(fake_conn *c)
{
    /* blank keepalive lines until the client goes away or the server stops */
    while (!fake_stopping(fake_conn_server(c)) && fake_chunk(c, "\n", 1) == 0)
        fake_sleep_ms(20);
}

static void http_script(const fake_req *r, fake_conn *c)
{
    char w[8];
    char b[4096], o1[1024], o2[1024], o3[1024];
    if (!fake_query(r, "watch", w, sizeof w)) {
        int n = atomic_fetch_add(&S.lists, 1);
        if (n == 0) {
            obj_json(o1, sizeof o1, "a", "5", NULL);
            obj_json(o2, sizeof o2, "b", "6", NULL);
            snprintf(b, sizeof b,
                     "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":"
                     "{\"resourceVersion\":\"10\"},\"items\":[%s,%s]}",
                     o1, o2);
        } else {
            obj_json(o1, sizeof o1, "a", "15", NULL);
            obj_json(o2, sizeof o2, "c", "11", NULL);
            obj_json(o3, sizeof o3, "d", "18",
                     ",\"ownerReferences\":[{\"apiVersion\":\"kiln.dev/v1alpha1\",\"kind\":"
                     "\"TrainingJob\",\"name\":\"job\",\"uid\":\"owner-1\",\"controller\":true}]");
            snprintf(b, sizeof b,
                     "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":"
                     "{\"resourceVersion\":\"20\"},\"items\":[%s,%s,%s]}",
                     o1, o2, o3);
        }
        fake_reply(c, 200, NULL, b);
        return;
    }
    int n = atomic_fetch_add(&S.watches, 1);
    if (n < 4) {
        pthread_mutex_lock(&S.mu);
        snprintf(S.watch_query[n], sizeof S.watch_query[n], "%s", r->query);
        pthread_mutex_unlock(&S.mu);
    }
    fake_chunked_begin(c, 200, NULL);
    if (n == 0) {
        /* ADDED c split in three pieces, mid-token */
        event(b, sizeof b, "ADDED", "c", "11", NULL);
        size_t len = strlen(b);
        fake_chunk(c, b, 7);
        fake_sleep_ms(10);
        fake_chunk(c, b + 7, len / 2 - 7);
        fake_sleep_ms(10);
        fake_chunk(c, b + len / 2, len - len / 2);
        /* the same event again at the same version: must not fire twice */
        fake_chunk(c, b, len);
        const char *bm = "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"ConfigMap\",\"apiVersion\":"
                         "\"v1\",\"metadata\":{\"resourceVersion\":\"12\"}}}\n";
        fake_chunk(c, bm, strlen(bm));
        /* a 1 MiB event in 64 KiB chunks */
        size_t big = 1 << 20;
        char *huge = malloc(big + 512);
        if (huge) {
            int h = snprintf(huge, 512,
                             "{\"type\":\"MODIFIED\",\"object\":{\"apiVersion\":\"v1\",\"kind\":"
                             "\"ConfigMap\",\"metadata\":{\"name\":\"a\",\"namespace\":\"ns1\","
                             "\"resourceVersion\":\"13\"},\"data\":{\"blob\":\"");
            memset(huge + h, 'x', big);
            size_t tl = (size_t)h + big;
            tl += (size_t)snprintf(huge + tl, 32, "\"}}}\n");
            for (size_t off = 0; off < tl; off += 65536)
                fake_chunk(c, huge + off, tl - off < 65536 ? tl - off : 65536);
            free(huge);
        }
        fake_chunked_end(c);
    } else if (n == 1) {
        const char *gone =
            "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\","
            "\"metadata\":{},\"status\":\"Failure\",\"message\":\"too old resource "
            "version: 13 (19)\",\"reason\":\"Expired\",\"code\":410}}\n";
        fake_chunk(c, gone, strlen(gone));
        fake_chunked_end(c);
    } else {
        event(b, sizeof b, "DELETED", "c", "21", NULL);
        fake_chunk(c, b, strlen(b));
        /* d changes owner and e takes its place under owner-1: the owner
         * index must follow both */
        event(b, sizeof b, "MODIFIED", "d", "22",
              ",\"ownerReferences\":[{\"apiVersion\":\"kiln.dev/v1alpha1\",\"kind\":"
              "\"TrainingJob\",\"name\":\"job2\",\"uid\":\"owner-2\",\"controller\":true}]");
        fake_chunk(c, b, strlen(b));
        event(b, sizeof b, "ADDED", "e", "23",
              ",\"ownerReferences\":[{\"apiVersion\":\"kiln.dev/v1alpha1\",\"kind\":"
              "\"TrainingJob\",\"name\":\"job\",\"uid\":\"owner-1\",\"controller\":true}]");
        fake_chunk(c, b, strlen(b));
        hold_open(c);
    }
}

static void ws_script(const fake_req *r, fake_conn *c)
{
    char w[8], b[4096], o1[1024], o2[1024];
    if (!fake_query(r, "watch", w, sizeof w)) {
        atomic_fetch_add(&S.ws_lists, 1);
        obj_json(o1, sizeof o1, "a", "5", NULL);
        obj_json(o2, sizeof o2, "b", "6", NULL);
        snprintf(b, sizeof b,
                 "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":"
                 "{\"resourceVersion\":\"10\"},\"items\":[%s,%s]}",
                 o1, o2);
        fake_reply(c, 200, NULL, b);
        return;
    }
    int n = atomic_fetch_add(&S.ws_watches, 1);
    if (!r->ws_key[0]) {
        fake_reply(c, 400, NULL,
                   "{\"kind\":\"Status\",\"code\":400,\"message\":\"want websocket\"}");
        return;
    }
    pthread_mutex_lock(&S.mu);
    snprintf(S.ws_origin, sizeof S.ws_origin, "%s", r->origin);
    pthread_mutex_unlock(&S.mu);
    fake_ws_accept(c, r);
    if (n == 0) {
        /* a 200 KiB message (arrives in fragments) */
        size_t big = 200 * 1024;
        char *m = malloc(big + 512);
        if (m) {
            int h = snprintf(m, 512,
                             "{\"type\":\"ADDED\",\"object\":{\"apiVersion\":\"v1\",\"kind\":"
                             "\"ConfigMap\",\"metadata\":{\"name\":\"c\",\"namespace\":\"ns1\","
                             "\"resourceVersion\":\"11\"},\"data\":{\"blob\":\"");
            memset(m + h, 'y', big);
            size_t tl = (size_t)h + big;
            tl += (size_t)snprintf(m + tl, 32, "\"}}}\n");
            fake_ws_text(c, m, tl);
            free(m);
        }
        fake_ws_close(c);
        fake_sleep_ms(50);
    } else {
        event(b, sizeof b, "DELETED", "a", "12", NULL);
        fake_ws_text(c, b, strlen(b));
        while (!fake_stopping(fake_conn_server(c)))
            fake_sleep_ms(20);
    }
}

/* ns3: the first watch is throttled (429), later ones stay open */
static atomic_int ns3_watches;
static void throttle_script(const fake_req *r, fake_conn *c)
{
    char w[8], b[2048], o1[1024];
    if (!fake_query(r, "watch", w, sizeof w)) {
        obj_json(o1, sizeof o1, "x", "1", NULL);
        snprintf(b, sizeof b,
                 "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":"
                 "{\"resourceVersion\":\"1\"},\"items\":[%s]}",
                 o1);
        fake_reply(c, 200, NULL, b);
        return;
    }
    if (atomic_fetch_add(&ns3_watches, 1) == 0) {
        fake_reply(c, 429, NULL,
                   "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                   "\"reason\":\"TooManyRequests\",\"code\":429}");
        return;
    }
    fake_chunked_begin(c, 200, NULL);
    hold_open(c);
}

/* ns4: objects carrying managedFields and kubectl's last-applied
 * annotation, in the list and in a watch event. */
static void strip_script(const fake_req *r, fake_conn *c)
{
    static const char *mf = ",\"managedFields\":[{\"manager\":\"kubectl\",\"operation\":\"Apply\","
                            "\"fieldsV1\":{\"f:data\":{\"f:k\":{}}}}]";
    char w[8], b[4096], o1[1024], extra[1024];
    if (!fake_query(r, "watch", w, sizeof w)) {
        snprintf(extra, sizeof extra,
                 "%s,\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":"
                 "\"{\\\"big\\\":1}\",\"keep\":\"me\"}",
                 mf);
        obj_json(o1, sizeof o1, "s1", "3", extra);
        snprintf(b, sizeof b,
                 "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":"
                 "{\"resourceVersion\":\"4\"},\"items\":[%s]}",
                 o1);
        fake_reply(c, 200, NULL, b);
        return;
    }
    fake_chunked_begin(c, 200, NULL);
    snprintf(extra, sizeof extra,
             "%s,\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":\"{}\"}",
             mf);
    event(b, sizeof b, "ADDED", "s2", "5", extra);
    fake_chunk(c, b, strlen(b));
    hold_open(c);
}

static void handler(void *ud, const fake_req *r, fake_conn *c)
{
    (void)ud;
    if (!strcmp(r->path, "/api/v1/namespaces/ns4/configmaps")) {
        strip_script(r, c);
        return;
    }
    if (!strcmp(r->path, "/api/v1/namespaces/ns3/configmaps")) {
        throttle_script(r, c);
        return;
    }
    if (!strcmp(r->path, "/api/v1/namespaces/ns1/configmaps"))
        http_script(r, c);
    else if (!strcmp(r->path, "/api/v1/namespaces/ns2/configmaps"))
        ws_script(r, c);
    else
        fake_reply(c, 404, NULL, "{\"kind\":\"Status\",\"code\":404,\"reason\":\"NotFound\"}");
}

/* ---- recorded handler calls ---- */

typedef struct rec {
    pthread_mutex_t mu;
    char log[64][64];
    int n;
    int bad_old; /* updates whose old object is missing or not older */
} rec;

static void note(rec *r, const char *what, const cJSON *o)
{
    pthread_mutex_lock(&r->mu);
    if (r->n < 64)
        snprintf(r->log[r->n++], 64, "%s:%s:%s", what, kube_obj_name(o),
                 kube_obj_resource_version(o));
    pthread_mutex_unlock(&r->mu);
}

static void h_add(void *ud, const cJSON *o)
{
    note(ud, "add", o);
}
static void h_upd(void *ud, const cJSON *a, const cJSON *b)
{
    rec *r = ud;
    int bad = !a || strcmp(kube_obj_name(a), kube_obj_name(b)) != 0 ||
              atoll(kube_obj_resource_version(a)) >= atoll(kube_obj_resource_version(b));
    pthread_mutex_lock(&r->mu);
    r->bad_old += bad;
    pthread_mutex_unlock(&r->mu);
    note(ud, "upd", b);
}
static void h_del(void *ud, const cJSON *o)
{
    note(ud, "del", o);
}

static int rec_n(rec *r)
{
    pthread_mutex_lock(&r->mu);
    int n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static fake_server *srv;

/* ---- parser ---- */

typedef struct pcount {
    int n, types[8];
    size_t last_len;
} pcount;

static int count_ev(void *ud, int type, cJSON *obj)
{
    pcount *p = ud;
    if (p->n < 8)
        p->types[p->n] = type;
    p->n++;
    const cJSON *d = kube_obj_path(obj, "data.v");
    p->last_len = cJSON_IsString(d) ? strlen(d->valuestring) : 0;
    cJSON_Delete(obj);
    return 0;
}

static void test_parser_bytewise(void)
{
    const char *stream =
        "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"},\"data\":{\"v\":\"12345\"}}}"
        "\n"
        "\n"
        "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"9\"}}}\r\n"
        "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}";
    pcount pc = {0};
    kube_watch_parser p;
    kube_watch_parser_init(&p, 0, count_ev, &pc);
    for (size_t i = 0; stream[i]; i++)
        KT_EQ_INT(kube_watch_parser_feed(&p, stream + i, 1, NULL), 0);
    KT_EQ_INT(pc.n, 2); /* the last one has no newline yet */
    KT_EQ_INT(kube_watch_parser_finish(&p, NULL), 0);
    KT_EQ_INT(pc.n, 3);
    KT_EQ_INT(pc.types[0], KUBE_EV_ADDED);
    KT_EQ_INT(pc.types[1], KUBE_EV_BOOKMARK);
    KT_EQ_INT(pc.types[2], KUBE_EV_DELETED);
    /* garbage and size cap */
    kiln_error e = {0};
    KT_EQ_INT(kube_watch_parser_feed(&p, "{\"type\":\"NOPE\",\"object\":{}}\n", 29, &e),
              KILN_ECORRUPT);
    kube_watch_parser_release(&p);
    kube_watch_parser_init(&p, 64, count_ev, &pc);
    char big[100];
    memset(big, 'z', sizeof big);
    KT_EQ_INT(kube_watch_parser_feed(&p, big, sizeof big, NULL), KILN_ENOMEM);
    kube_watch_parser_release(&p);
}

static void test_informer_http(void)
{
    rec r = {.n = 0};
    pthread_mutex_init(&r.mu, NULL);
    kube_client *c = NULL;
    KT_EQ_INT(kube_client_new(kt_config(fake_port(srv)), NULL, &c, NULL), 0);
    kube_informer_opts o = {
        .res = kube_res_configmaps, .ns = "ns1", .backoff_base_ms = 10, .watch_timeout_s = 30};
    kube_handlers h = {h_add, h_upd, h_del, &r};
    kube_informer *inf;
    KT_EQ_INT(kube_informer_new(c, &o, &h, &inf), 0);
    KT_EQ_INT(kube_informer_start(inf), 0);
    KT_EQ_INT(kube_informer_wait_synced(inf, 3000), 0);
    int64_t t0 = ktime_mono_ms();
    while (rec_n(&r) < 10 && ktime_mono_ms() - t0 < 5000)
        fake_sleep_ms(10);
    fake_sleep_ms(50); /* a duplicate would show up now */
    static const char *want[] = {"add:a:5",  "add:b:6",  "add:c:11", "upd:a:13", "upd:a:15",
                                 "add:d:18", "del:b:6",  "del:c:21", "upd:d:22", "add:e:23"};
    KT_EQ_INT(rec_n(&r), 10);
    KT_EQ_INT(r.bad_old, 0);
    for (int i = 0; i < 10 && i < r.n; i++) {
        if (strcmp(r.log[i], want[i]) != 0)
            fprintf(stderr, "event %d: got %s want %s\n", i, r.log[i], want[i]);
        KT_CHECK(strcmp(r.log[i], want[i]) == 0);
    }
    KT_STR_CONTAINS(S.watch_query[0], "resourceVersion=10");
    KT_STR_CONTAINS(S.watch_query[0], "allowWatchBookmarks=true");
    KT_STR_CONTAINS(S.watch_query[0], "timeoutSeconds=30");
    KT_STR_CONTAINS(S.watch_query[1], "resourceVersion=13"); /* resumed after the huge event */
    KT_STR_CONTAINS(S.watch_query[2], "resourceVersion=20"); /* after the relist */
    KT_EQ_INT(atomic_load(&S.lists), 2);
    KT_EQ_INT(kube_informer_len(inf), 3);
    cJSON *a = kube_informer_get(inf, "ns1/a");
    KT_CHECK(a && strcmp(kube_obj_resource_version(a), "15") == 0);
    cJSON_Delete(a);
    KT_CHECK(kube_informer_get(inf, "ns1/b") == NULL);
    cJSON *arr = NULL;
    KT_EQ_INT(kube_informer_by_owner(inf, "owner-1", &arr), 0);
    KT_EQ_INT(cJSON_GetArraySize(arr), 1);
    KT_CHECK(strcmp(kube_obj_name(cJSON_GetArrayItem(arr, 0)), "e") == 0);
    cJSON_Delete(arr);
    KT_EQ_INT(kube_informer_by_owner(inf, "owner-2", &arr), 0);
    KT_EQ_INT(cJSON_GetArraySize(arr), 1);
    KT_CHECK(strcmp(kube_obj_name(cJSON_GetArrayItem(arr, 0)), "d") == 0);
    cJSON_Delete(arr);
    KT_EQ_INT(kube_informer_list(inf, "ns1", &arr), 0);
    KT_EQ_INT(cJSON_GetArraySize(arr), 3);
    cJSON_Delete(arr);
    KT_EQ_INT(kube_informer_list(inf, "other", &arr), 0);
    KT_EQ_INT(cJSON_GetArraySize(arr), 0);
    cJSON_Delete(arr);
    kube_informer_stats st;
    kube_informer_get_stats(inf, &st);
    KT_EQ_INT(st.bookmarks, 1);
    KT_EQ_INT(st.expired, 1);
    KT_EQ_INT(st.lists, 2);
    char rv[32];
    kube_informer_last_rv(inf, rv, sizeof rv);
    KT_CHECK(strcmp(rv, "23") == 0);
    /* stopping cancels the held-open watch at once */
    int64_t s0 = ktime_mono_ms();
    kube_informer_stop(inf);
    KT_CHECK(ktime_mono_ms() - s0 < 3000); /* not the 30 s watch timeout */
    kube_informer_free(inf);
    kube_client_free(c);
    pthread_mutex_destroy(&r.mu);
}

static void test_informer_websocket(void)
{
    rec r = {.n = 0};
    pthread_mutex_init(&r.mu, NULL);
    kube_client *c = NULL;
    KT_EQ_INT(kube_client_new(kt_config(fake_port(srv)), NULL, &c, NULL), 0);
    kube_informer_opts o = {
        .res = kube_res_configmaps, .ns = "ns2", .backoff_base_ms = 10, .websocket = 1};
    kube_handlers h = {h_add, h_upd, h_del, &r};
    kube_informer *inf;
    KT_EQ_INT(kube_informer_new(c, &o, &h, &inf), 0);
    KT_EQ_INT(kube_informer_start(inf), 0);
    int64_t t0 = ktime_mono_ms();
    while (rec_n(&r) < 4 && ktime_mono_ms() - t0 < 5000)
        fake_sleep_ms(10);
    static const char *want[] = {"add:a:5", "add:b:6", "add:c:11", "del:a:12"};
    KT_EQ_INT(rec_n(&r), 4);
    for (int i = 0; i < 4 && i < r.n; i++)
        KT_CHECK(strcmp(r.log[i], want[i]) == 0);
    cJSON *cc = kube_informer_get(inf, "ns1/c");
    const cJSON *blob = kube_obj_path(cc, "data.blob");
    KT_CHECK(cJSON_IsString(blob) && strlen(blob->valuestring) == 200 * 1024);
    cJSON_Delete(cc);
    KT_CHECK(S.ws_origin[0] != '\0');
    int64_t s0 = ktime_mono_ms();
    kube_client_cancel(c); /* the client-wide shutdown path */
    kube_informer_stop(inf);
    KT_CHECK(ktime_mono_ms() - s0 < 3000);
    kube_informer_free(inf);
    kube_client_free(c);
    pthread_mutex_destroy(&r.mu);
}

static void test_throttled_watch_and_resync(void)
{
    rec r = {.n = 0};
    pthread_mutex_init(&r.mu, NULL);
    kube_client *c = NULL;
    KT_EQ_INT(kube_client_new(kt_config(fake_port(srv)), NULL, &c, NULL), 0);
    kube_informer_opts o = {
        .res = kube_res_configmaps, .ns = "ns3", .backoff_base_ms = 20, .resync_ms = 60};
    kube_handlers h = {h_add, h_upd, h_del, &r};
    kube_informer *inf;
    KT_EQ_INT(kube_informer_new(c, &o, &h, &inf), 0);
    KT_EQ_INT(kube_informer_start(inf), 0);
    fake_sleep_ms(400);
    kube_informer_stats st;
    kube_informer_get_stats(inf, &st);
    KT_EQ_INT(st.lists, 1);                  /* a 429 is no reason to relist */
    KT_EQ_INT(atomic_load(&ns3_watches), 2); /* re-watched once after back-off */
    kube_client_stats cs;
    kube_client_get_stats(c, &cs);
    KT_EQ_INT(cs.throttled, 1);
    int n = rec_n(&r);
    KT_CHECK(n >= 4); /* the add, then resyncs every 60 ms */
    pthread_mutex_lock(&r.mu);
    KT_CHECK(strcmp(r.log[0], "add:x:1") == 0);
    for (int i = 1; i < r.n; i++)
        KT_CHECK(strcmp(r.log[i], "upd:x:1") == 0);
    pthread_mutex_unlock(&r.mu);
    kube_informer_free(inf);
    kube_client_free(c);
    pthread_mutex_destroy(&r.mu);
}

/* ---- transform ---- */

typedef struct strip_rec {
    atomic_int calls, handler_saw_managed;
} strip_rec;

static void counting_strip(cJSON *obj, void *ud)
{
    strip_rec *sr = ud;
    atomic_fetch_add(&sr->calls, 1);
    kube_informer_strip_server_fields(obj, NULL);
}

static void strip_add(void *ud, const cJSON *o)
{
    strip_rec *sr = ud;
    if (kube_obj_path(o, "metadata.managedFields"))
        atomic_fetch_add(&sr->handler_saw_managed, 1);
}

static void test_transform(void)
{
    /* the transform alone: an annotation map left empty goes too */
    cJSON *o = cJSON_Parse("{\"metadata\":{\"name\":\"x\",\"managedFields\":[{}],\"annotations\":"
                           "{\"kubectl.kubernetes.io/last-applied-configuration\":\"{}\"}},"
                           "\"data\":{\"k\":\"v\"}}");
    KT_CHECK(o != NULL);
    kube_informer_strip_server_fields(o, NULL);
    KT_CHECK(kube_obj_path(o, "metadata.managedFields") == NULL);
    KT_CHECK(kube_obj_path(o, "metadata.annotations") == NULL);
    KT_CHECK(cJSON_IsString(kube_obj_path(o, "data.k")));
    KT_CHECK(strcmp(kube_obj_name(o), "x") == 0);
    cJSON_Delete(o);

    /* in an informer: list and watch objects are cached and handed over stripped */
    strip_rec sr = {0};
    kube_client *c = NULL;
    KT_EQ_INT(kube_client_new(kt_config(fake_port(srv)), NULL, &c, NULL), 0);
    kube_informer_opts io = {.res = kube_res_configmaps,
                             .ns = "ns4",
                             .backoff_base_ms = 10,
                             .transform = counting_strip,
                             .transform_ud = &sr};
    kube_handlers h = {.on_add = strip_add, .ud = &sr};
    kube_informer *inf;
    KT_EQ_INT(kube_informer_new(c, &io, &h, &inf), 0);
    KT_EQ_INT(kube_informer_start(inf), 0);
    KT_EQ_INT(kube_informer_wait_synced(inf, 3000), 0);
    int64_t t0 = ktime_mono_ms();
    while (kube_informer_len(inf) < 2 && ktime_mono_ms() - t0 < 5000)
        fake_sleep_ms(10);
    KT_EQ_INT(kube_informer_len(inf), 2);
    KT_EQ_INT(atomic_load(&sr.calls), 2);
    KT_EQ_INT(atomic_load(&sr.handler_saw_managed), 0);
    cJSON *s1 = kube_informer_get(inf, "ns1/s1");
    KT_CHECK(s1 != NULL);
    KT_CHECK(kube_obj_path(s1, "metadata.managedFields") == NULL);
    const cJSON *ann = kube_obj_path(s1, "metadata.annotations");
    KT_CHECK(cJSON_GetObjectItemCaseSensitive(
                 ann, "kubectl.kubernetes.io/last-applied-configuration") == NULL);
    KT_CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ann, "keep")), "me") ==
             0);
    KT_CHECK(strcmp(kube_obj_resource_version(s1), "3") == 0);
    cJSON_Delete(s1);
    cJSON *s2 = kube_informer_get(inf, "ns1/s2");
    KT_CHECK(s2 && !kube_obj_path(s2, "metadata.managedFields") &&
             !kube_obj_path(s2, "metadata.annotations"));
    cJSON_Delete(s2);
    kube_informer_free(inf);
    kube_client_free(c);
}

/* ---- owner handlers ---- */

static void test_owner_delay(void)
{
    kube_queue *q = NULL;
    KT_EQ_INT(kube_queue_new(NULL, &q), 0);
    cJSON *pod = cJSON_Parse(
        "{\"metadata\":{\"name\":\"j-t0\",\"namespace\":\"ns\",\"ownerReferences\":"
        "[{\"kind\":\"TrainingJob\",\"name\":\"j\",\"uid\":\"u\",\"controller\":true}]}}");
    KT_CHECK(pod != NULL);
    /* at once */
    kube_owner_enqueuer now = {.q = q, .owner_kind = "TrainingJob"};
    kube_handlers h;
    kube_informer_owner_handlers(&now, &h);
    h.on_add(h.ud, pod);
    KT_EQ_INT((int)kube_queue_len(q), 1);
    char *key = NULL;
    KT_EQ_INT(kube_queue_get(q, &key), 0);
    KT_CHECK(key && strcmp(key, "ns/j") == 0);
    kube_queue_done(q, key);
    free(key);
    /* delayed: three changes in a row become one key, and only later */
    kube_owner_enqueuer later = {.q = q, .owner_kind = "TrainingJob", .delay_ms = 150};
    kube_informer_owner_handlers(&later, &h);
    h.on_add(h.ud, pod);
    h.on_update(h.ud, pod, pod);
    h.on_update(h.ud, pod, pod);
    KT_EQ_INT((int)kube_queue_len(q), 0);
    int64_t t0 = ktime_mono_ms();
    KT_EQ_INT(kube_queue_get(q, &key), 0);
    KT_CHECK(ktime_mono_ms() - t0 >= 100);
    KT_CHECK(key && strcmp(key, "ns/j") == 0);
    kube_queue_done(q, key);
    free(key);
    fake_sleep_ms(200);
    KT_EQ_INT((int)kube_queue_len(q), 0); /* no second copy */
    cJSON_Delete(pod);
    kube_queue_free(q);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
    pthread_mutex_init(&S.mu, NULL);
    if (fake_start(handler, NULL, &srv) != 0)
        return 1;
    KT_RUN(test_parser_bytewise);
    KT_RUN(test_informer_http);
    KT_RUN(test_informer_websocket);
    KT_RUN(test_throttled_watch_and_resync);
    KT_RUN(test_transform);
    KT_RUN(test_owner_delay);
    fake_stop(srv);
    pthread_mutex_destroy(&S.mu);
    curl_global_cleanup();
    return KT_DONE();
}
