/* kl_store when fdatasync of the log fails (a full or failing disk): the
 * syncer must not publish the failed batch as durable, the error must
 * stick, and later writes must be refused instead of acknowledged. The
 * test replaces fdatasync() for the code linked into it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kl_store.h"
#include "ktest.h"

static int g_fail; /* set: every fdatasync fails with EIO */

int fdatasync(int fd)
{
    if (__atomic_load_n(&g_fail, __ATOMIC_SEQ_CST)) {
        errno = EIO;
        return -1;
    }
    return (int)syscall(SYS_fdatasync, fd);
}

static cJSON *obj(const char *name)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "{\"metadata\":{\"name\":\"%s\"}}", name);
    return cJSON_Parse(buf);
}

static void wake(void *ctx)
{
    __atomic_add_fetch((int *)ctx, 1, __ATOMIC_SEQ_CST);
}

static void test_failed_fsync_is_not_durable(void)
{
    char dir[] = "/tmp/kl_store_eio.XXXXXX";
    KT_CHECK(mkdtemp(dir) != NULL);
    kl_store *st = NULL;
    KT_EQ_INT(kl_store_open(dir, 10, &st, NULL), 0);
    int wakes = 0;
    KT_EQ_INT(kl_store_start_syncer(st, wake, &wakes, NULL), 0);
    KT_EQ_INT(kl_store_put(st, "/cm", "d", "ok", obj("ok"), NULL), 0);
    for (int i = 0; i < 1000 && kl_store_durable(st) < kl_store_appended(st); i++)
        usleep(2000);
    KT_EQ_INT(kl_store_durable(st), kl_store_appended(st));
    uint64_t durable = kl_store_durable(st);

    __atomic_store_n(&g_fail, 1, __ATOMIC_SEQ_CST);
    KT_EQ_INT(kl_store_put(st, "/cm", "d", "lost", obj("lost"), NULL), 0);
    for (int i = 0; i < 1000 && !kl_store_sync_error(st); i++)
        usleep(2000);
    KT_EQ_INT(kl_store_sync_error(st), EIO);
    KT_EQ_INT(kl_store_durable(st), durable); /* never acknowledged */
    KT_CHECK(kl_store_dirty(st));
    KT_CHECK(__atomic_load_n(&wakes, __ATOMIC_SEQ_CST) >= 2); /* the server hears of it */
    kiln_error err = {0};
    KT_EQ_INT(kl_store_put(st, "/cm", "d", "after", obj("after"), &err), KILN_EIO);
    KT_CHECK(kl_store_get(st, "/cm", "d", "after") == NULL);
    /* Even once the disk recovers the error sticks: the lost batch is not
     * known to be on disk. */
    __atomic_store_n(&g_fail, 0, __ATOMIC_SEQ_CST);
    KT_EQ_INT(kl_store_del(st, "/cm", "d", "ok", NULL), KILN_EIO);
    kl_store_free(st);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    KT_EQ_INT(system(cmd), 0);
}

int main(void)
{
    KT_RUN(test_failed_fsync_is_not_durable);
    return KT_DONE();
}
