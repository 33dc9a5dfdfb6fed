/* Unit tests for kl_store: resourceVersions, history ring and 410 floor,
 * WAL replay (including a torn last line) across reopen, the hash index
 * against a reference (many keys, deletes, sorted and per-namespace
 * lists), group commit on the syncer thread, and the log's zero-filled
 * tail (replay ends at the zeros). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kl_store.h"
#include "ktest.h"

static cJSON *obj(const char *name, int v)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "{\"metadata\":{\"name\":\"%s\"},\"v\":%d}", name, v);
    return cJSON_Parse(buf);
}

static void test_rv_and_history(void)
{
    kl_store *st = NULL;
    KT_EQ_INT(kl_store_open(NULL, 3, &st, NULL), 0);
    KT_EQ_INT(kl_store_put(st, "/cm", "default", "a", obj("a", 1), NULL), 0);
    KT_EQ_INT(kl_store_put(st, "/cm", "default", "b", obj("b", 1), NULL), 0);
    KT_EQ_INT(kl_store_put(st, "/cm", "default", "a", obj("a", 2), NULL), 0);
    KT_EQ_INT(kl_store_rv(st), 3);
    const cJSON *a = kl_store_get(st, "/cm", "default", "a");
    KT_CHECK(a && !strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "metadata"), "resourceVersion")->valuestring, "3"));
    const kl_event *e = kl_store_event_after(st, 1);
    KT_CHECK(e && e->rv == 2 && e->type == KL_ADDED);
    e = kl_store_event_after(st, 2);
    KT_CHECK(e && e->rv == 3 && e->type == KL_MODIFIED && e->prev);
    KT_EQ_INT(kl_store_hist_floor(st), 0);
    KT_EQ_INT(kl_store_del(st, "/cm", "default", "b", NULL), 0); /* evicts rv 1 */
    KT_EQ_INT(kl_store_hist_floor(st), 1);
    e = kl_store_event_after(st, 3);
    KT_CHECK(e && e->rv == 4 && e->type == KL_DELETED);
    KT_EQ_INT(kl_store_del(st, "/cm", "default", "b", NULL), KILN_ENOTFOUND);
    const cJSON **items;
    size_t n;
    KT_EQ_INT(kl_store_list(st, "/cm", NULL, &items, &n), 0);
    KT_EQ_INT(n, 1);
    free(items);
    /* Walking the (wrapped) ring: rv 2, 3, 4, then the end. */
    e = kl_store_event_after(st, 0);
    uint64_t want = 2;
    int walked = 0;
    for (; e; e = kl_store_event_next(st, e), want++, walked++)
        KT_EQ_INT(e->rv, want);
    KT_EQ_INT(walked, 3);
    kl_store_expire_history(st);
    KT_EQ_INT(kl_store_hist_floor(st), 4);
    KT_CHECK(kl_store_event_after(st, 0) == NULL);
    kl_store_free(st);
}

static void test_wal_replay(void)
{
    char dir[] = "/tmp/kl_store_test.XXXXXX";
    KT_CHECK(mkdtemp(dir) != NULL);
    kl_store *st = NULL;
    KT_EQ_INT(kl_store_open(dir, 10, &st, NULL), 0);
    kl_store_put(st, "apps/deployments", "ns1", "d", obj("d", 7), NULL);
    kl_store_put(st, "/cm", "ns1", "x", obj("x", 1), NULL);
    kl_store_put(st, "/cm", "ns1", "y", obj("y", 1), NULL);
    kl_store_del(st, "/cm", "ns1", "x", NULL);
    kl_store_free(st);
    /* A crash mid-write leaves a torn line: it must be ignored. */
    char p[300];
    snprintf(p, sizeof(p), "%s/store.wal", dir);
    FILE *f = fopen(p, "a");
    fputs("P\t/cm\tns1\tz\t{\"metadata\":{\"na", f);
    fclose(f);
    KT_EQ_INT(kl_store_open(dir, 10, &st, NULL), 0);
    KT_EQ_INT(kl_store_rv(st), 4);
    KT_CHECK(kl_store_get(st, "/cm", "ns1", "x") == NULL);
    KT_CHECK(kl_store_get(st, "/cm", "ns1", "y") != NULL);
    KT_CHECK(kl_store_get(st, "/cm", "ns1", "z") == NULL);
    const cJSON *d = kl_store_get(st, "apps/deployments", "ns1", "d");
    KT_CHECK(d && cJSON_GetObjectItem(d, "v")->valueint == 7);
    /* History starts at the reopened RV: older watches get 410. */
    KT_EQ_INT(kl_store_hist_floor(st), 4);
    kl_store_put(st, "/cm", "ns1", "w", obj("w", 1), NULL);
    KT_EQ_INT(kl_store_rv(st), 5);
    kl_store_free(st);
    unlink(p);
    snprintf(p, sizeof(p), "%s/store.wal.tmp", dir);
    unlink(p);
    rmdir(dir);
}

/* Reference model: present[ns][i] says whether "n<i>" in namespace
 * "ns<ns>" exists, version[ns][i] its last "v". */
#define NNS 3
#define NKEYS 3000

/* Checks the store's view of "/big" against the model. */
static void check_model(kl_store *st, const char present[NNS][NKEYS], const int version[NNS][NKEYS])
{
    size_t total = 0;
    for (int ns = 0; ns < NNS; ns++) {
        char nsn[16];
        snprintf(nsn, sizeof(nsn), "ns%d", ns);
        size_t want = 0;
        int wrong = 0;
        for (int i = 0; i < NKEYS; i++) {
            char nm[16];
            snprintf(nm, sizeof(nm), "n%d", i);
            const cJSON *o = kl_store_get(st, "/big", nsn, nm);
            want += (size_t)present[ns][i];
            if (present[ns][i] != (o != NULL) ||
                (o && cJSON_GetObjectItem(o, "v")->valueint != version[ns][i]))
                wrong++;
        }
        KT_EQ_INT(wrong, 0);
        const cJSON **items;
        size_t n;
        KT_EQ_INT(kl_store_list(st, "/big", nsn, &items, &n), 0);
        KT_EQ_INT(n, want);
        /* Sorted by name, each name once, all in this namespace. */
        const char **names = malloc((n ? n : 1) * sizeof(*names));
        int unsorted = 0, foreign = 0;
        for (size_t i = 0; names && i < n; i++) {
            const cJSON *md = cJSON_GetObjectItem(items[i], "metadata");
            names[i] = cJSON_GetObjectItem(md, "name")->valuestring;
            const cJSON *ons = cJSON_GetObjectItem(md, "namespace");
            foreign += !ons || strcmp(ons->valuestring, nsn) != 0;
            if (i && strcmp(names[i - 1], names[i]) >= 0)
                unsorted++;
        }
        KT_EQ_INT(unsorted, 0);
        KT_EQ_INT(foreign, 0);
        free(names);
        free(items);
        total += want;
    }
    const cJSON **items;
    size_t n;
    KT_EQ_INT(kl_store_list(st, "/big", NULL, &items, &n), 0);
    KT_EQ_INT(n, total);
    free(items);
}

static cJSON *nobj(const char *ns, const char *name, int v)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\"},\"v\":%d}",
             name, ns, v);
    return cJSON_Parse(buf);
}

static void test_index_against_model(void)
{
    static char present[NNS][NKEYS];
    static int version[NNS][NKEYS];
    memset(present, 0, sizeof(present));
    char dir[] = "/tmp/kl_store_idx.XXXXXX";
    KT_CHECK(mkdtemp(dir) != NULL);
    kl_store *st = NULL;
    KT_EQ_INT(kl_store_open(dir, 100, &st, NULL), 0);
    kl_store_set_deferred(st, 1); /* one fdatasync at the end, not 10,000 */
    unsigned seed = 12345;
    /* Random puts, replaces and deletes, with lists in between so merges
     * of pending and dead entries happen at many sizes. */
    for (int step = 0; step < 12000; step++) {
        seed = seed * 1103515245u + 12345u;
        int ns = (int)((seed >> 8) % NNS), i = (int)((seed >> 12) % NKEYS);
        char nsn[16], nm[16];
        snprintf(nsn, sizeof(nsn), "ns%d", ns);
        snprintf(nm, sizeof(nm), "n%d", i);
        if ((seed >> 24) % 4 == 0) {
            int rc = kl_store_del(st, "/big", nsn, nm, NULL);
            KT_EQ_INT(rc, present[ns][i] ? 0 : KILN_ENOTFOUND);
            present[ns][i] = 0;
        } else {
            KT_EQ_INT(kl_store_put(st, "/big", nsn, nm, nobj(nsn, nm, step), NULL), 0);
            present[ns][i] = 1;
            version[ns][i] = step;
        }
        if (step % 2500 == 0)
            check_model(st, present, version);
    }
    check_model(st, present, version);
    KT_EQ_INT(kl_store_flush(st, NULL), 0);
    KT_CHECK(!kl_store_dirty(st));
    kl_store_free(st);
    /* The compacted log holds the same state. */
    KT_EQ_INT(kl_store_open(dir, 100, &st, NULL), 0);
    check_model(st, present, version);
    kl_store_free(st);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    KT_EQ_INT(system(cmd), 0);
}

typedef struct waker {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
} waker;

static void on_wake(void *ctx)
{
    waker *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->calls++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void waker_init(waker *w)
{
    w->calls = 0;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
}

static void waker_destroy(waker *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

/* A store in a new directory (template dir) with its syncer running and
 * waking w. */
static kl_store *open_syncing(char *dir, int compact_at, waker *w)
{
    KT_CHECK(mkdtemp(dir) != NULL);
    kl_store *st = NULL;
    KT_EQ_INT(kl_store_open(dir, compact_at, &st, NULL), 0);
    waker_init(w);
    KT_EQ_INT(kl_store_start_syncer(st, on_wake, w, NULL), 0);
    return st;
}

/* Waits (up to 10 s) until the store reports seq durable. */
static int wait_durable(kl_store *st, waker *w, uint64_t seq)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&w->mu);
    while (kl_store_durable(st) < seq)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) != 0)
            break;
    pthread_mutex_unlock(&w->mu);
    return kl_store_durable(st) >= seq;
}

static void test_group_commit(void)
{
    char dir[] = "/tmp/kl_store_gc.XXXXXX";
    waker w;
    kl_store *st = open_syncing(dir, 1000, &w);
    uint64_t syncs0 = kl_store_syncs(st);
    /* A burst of writes: appended at once, durable a little later, in far
     * fewer fdatasyncs than writes. */
    char nm[32];
    for (int i = 0; i < 400; i++) {
        snprintf(nm, sizeof(nm), "g%d", i);
        KT_EQ_INT(kl_store_put(st, "/cm", "d", nm, obj(nm, i), NULL), 0);
    }
    uint64_t seq = kl_store_appended(st);
    KT_EQ_INT(seq, 400);
    KT_CHECK(wait_durable(st, &w, seq));
    KT_EQ_INT(kl_store_durable_rv(st), kl_store_rv(st));
    uint64_t syncs = kl_store_syncs(st) - syncs0;
    KT_CHECK(syncs >= 1);
    KT_CHECK(syncs < 200);
    pthread_mutex_lock(&w.mu);
    KT_CHECK(w.calls >= 1);
    pthread_mutex_unlock(&w.mu);
    /* Stopping flushes; no wake-ups after that. */
    KT_EQ_INT(kl_store_put(st, "/cm", "d", "last", obj("last", 1), NULL), 0);
    KT_EQ_INT(kl_store_stop_syncer(st, NULL), 0);
    KT_CHECK(!kl_store_dirty(st));
    pthread_mutex_lock(&w.mu);
    int calls = w.calls;
    pthread_mutex_unlock(&w.mu);
    KT_EQ_INT(kl_store_put(st, "/cm", "d", "after", obj("after", 1), NULL), 0);
    KT_CHECK(!kl_store_dirty(st)); /* back to fsync per write */
    usleep(20000);
    pthread_mutex_lock(&w.mu);
    KT_EQ_INT(w.calls, calls);
    pthread_mutex_unlock(&w.mu);
    kl_store_free(st);
    KT_EQ_INT(kl_store_open(dir, 10, &st, NULL), 0);
    KT_CHECK(kl_store_get(st, "/cm", "d", "g399") != NULL);
    KT_CHECK(kl_store_get(st, "/cm", "d", "after") != NULL);
    kl_store_free(st);
    waker_destroy(&w);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    KT_EQ_INT(system(cmd), 0);
}

/* Reads the whole log into a malloc'd buffer (*len bytes). */
static char *read_log(const char *dir, size_t *len)
{
    char p[300];
    snprintf(p, sizeof(p), "%s/store.wal", dir);
    FILE *f = fopen(p, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n > 0 ? malloc((size_t)n) : NULL;
    *len = buf ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    return buf;
}

static void test_zero_filled_log(void)
{
    char dir[] = "/tmp/kl_store_zf.XXXXXX";
    waker w;
    kl_store *st = open_syncing(dir, 10, &w);
    /* 3,000 records of about 2 KiB: more than the syncer zero-fills ahead
     * at a time, so records both overwrite zeros and run past them. */
    char *pad = malloc(2049);
    memset(pad, 'x', 2048);
    pad[2048] = 0;
    char nm[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(nm, sizeof(nm), "z%d", i);
        cJSON *o = obj(nm, i);
        cJSON_AddStringToObject(o, "pad", pad);
        KT_EQ_INT(kl_store_put(st, "/cm", "d", nm, o, NULL), 0);
        if (i % 500 == 0)
            usleep(20000); /* lets the syncer fill while idle */
    }
    free(pad);
    KT_CHECK(wait_durable(st, &w, kl_store_appended(st)));
    usleep(300000); /* idle: the zeros ahead are written */
    size_t len = 0;
    char *log = read_log(dir, &len);
    KT_CHECK(log != NULL);
    char *nul = log ? memchr(log, 0, len) : NULL;
    KT_CHECK(nul != NULL); /* zeros follow the records */
    size_t data = nul ? (size_t)(nul - log) : len, zeros = 0;
    for (size_t i = data; i < len; i++)
        zeros += log[i] == 0;
    KT_EQ_INT(zeros, len - data);
    KT_CHECK(len - data >= (1u << 20));
    KT_CHECK(data > 3000 * 2048 && log[data - 1] == '\n');
    free(log);
    KT_EQ_INT(kl_store_stop_syncer(st, NULL), 0);
    kl_store_free(st);

    /* A record the disk kept while an earlier one was lost (writeback
     * reorders pages before an fdatasync) lies past a gap of zeros: replay
     * ends at the gap and never applies it. */
    char p[300];
    snprintf(p, sizeof(p), "%s/store.wal", dir);
    FILE *f = fopen(p, "r+b");
    KT_CHECK(f != NULL);
    const char *ghost = "P\t/cm\td\tghost\t{\"metadata\":{\"name\":\"ghost\","
                        "\"resourceVersion\":\"99999\"}}\n";
    fseek(f, (long)data + 4096, SEEK_SET);
    fputs(ghost, f);
    fputs("P\t/cm\td\tghost2\t{\"metadata\":{\"name\":\"ghost2\"}}\n", f);
    fclose(f);
    KT_EQ_INT(kl_store_open(dir, 10, &st, NULL), 0);
    KT_EQ_INT(kl_store_rv(st), 3000);
    KT_CHECK(kl_store_get(st, "/cm", "d", "z0") != NULL);
    KT_CHECK(kl_store_get(st, "/cm", "d", "z2999") != NULL);
    KT_CHECK(kl_store_get(st, "/cm", "d", "ghost") == NULL);
    KT_CHECK(kl_store_get(st, "/cm", "d", "ghost2") == NULL);
    kl_store_free(st);
    waker_destroy(&w);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    KT_EQ_INT(system(cmd), 0);
}

static void test_durable_rv_gating(void)
{
    /* Deferred by hand: events are recorded at once but the durable rv,
     * which bounds what watchers get, moves only with the fdatasync. */
    char dir[] = "/tmp/kl_store_dr.XXXXXX";
    KT_CHECK(mkdtemp(dir) != NULL);
    kl_store *st = NULL;
    KT_EQ_INT(kl_store_open(dir, 10, &st, NULL), 0);
    KT_EQ_INT(kl_store_put(st, "/cm", "d", "a", obj("a", 1), NULL), 0);
    KT_EQ_INT(kl_store_durable_rv(st), 1);
    kl_store_set_deferred(st, 1);
    KT_EQ_INT(kl_store_put(st, "/cm", "d", "b", obj("b", 1), NULL), 0);
    KT_EQ_INT(kl_store_del(st, "/cm", "d", "a", NULL), 0);
    KT_CHECK(kl_store_dirty(st));
    KT_EQ_INT(kl_store_appended(st) - kl_store_durable(st), 2);
    KT_EQ_INT(kl_store_durable_rv(st), 1);
    KT_CHECK(kl_store_event_after(st, 1) != NULL);
    uint64_t s0 = kl_store_syncs(st);
    KT_EQ_INT(kl_store_flush(st, NULL), 0);
    KT_EQ_INT(kl_store_syncs(st) - s0, 1);
    KT_EQ_INT(kl_store_durable_rv(st), 3);
    KT_CHECK(!kl_store_dirty(st));
    KT_EQ_INT(kl_store_sync_error(st), 0);
    kl_store_free(st);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    KT_EQ_INT(system(cmd), 0);
}

static void test_memory_store_is_durable(void)
{
    /* Without a log every write counts as durable: watches must not wait. */
    kl_store *st = NULL;
    KT_EQ_INT(kl_store_open(NULL, 10, &st, NULL), 0);
    KT_EQ_INT(kl_store_start_syncer(st, NULL, NULL, NULL), 0);
    KT_EQ_INT(kl_store_put(st, "/cm", "d", "a", obj("a", 1), NULL), 0);
    KT_EQ_INT(kl_store_durable_rv(st), kl_store_rv(st));
    KT_CHECK(!kl_store_dirty(st));
    kl_store_free(st);
}

int main(void)
{
    KT_RUN(test_rv_and_history);
    KT_RUN(test_wal_replay);
    KT_RUN(test_index_against_model);
    KT_RUN(test_group_commit);
    KT_RUN(test_zero_filled_log);
    KT_RUN(test_durable_rv_gating);
    KT_RUN(test_memory_store_is_durable);
    return KT_DONE();
}
