/* Unit tests for kl_store: resourceVersions, history ring and 410 floor,
 * and WAL replay (including a torn last line) across reopen. */
#include <stdio.h>
#include <stdlib.h>
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

int main(void)
{
    KT_RUN(test_rv_and_history);
    KT_RUN(test_wal_replay);
    return KT_DONE();
}
