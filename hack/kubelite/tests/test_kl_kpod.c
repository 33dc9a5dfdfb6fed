/* Unit tests for kl_kpod_idle and kl_kpod_resting: which pods a kubelet
 * pass may skip, for a pod with one plain container and one with a probe. */
#include <stdlib.h>

#include "kl_kpod.h"
#include "ktest.h"

static const char *PLAIN =
    "{\"metadata\":{\"name\":\"p\",\"namespace\":\"default\",\"uid\":\"u-1\"},"
    "\"spec\":{\"containers\":[{\"name\":\"app\",\"image\":\"busybox\"}]}}";
static const char *PROBED =
    "{\"metadata\":{\"name\":\"q\",\"namespace\":\"default\",\"uid\":\"u-2\"},"
    "\"spec\":{\"containers\":[{\"name\":\"app\",\"image\":\"busybox\","
    "\"readinessProbe\":{\"tcpSocket\":{\"port\":80}}}]}}";

static kl_kpod *record(const char *json)
{
    cJSON *pod = cJSON_Parse(json);
    kl_kpod *p = NULL;
    KT_EQ_INT(kl_kpod_new(pod, "/nonexistent", "127.0.0.2", &p), 0);
    cJSON_Delete(pod);
    return p;
}

/* A pod whose container runs with its exit watched, as of record "7". */
static void running(kl_kpod *p)
{
    p->dirs_ready = 1;
    p->c[0].started = p->c[0].running = 1;
    p->c[0].pid = 4242;
    p->c[0].pidfd = 1000; /* never closed: reset before the record is freed */
    snprintf(p->rv, sizeof(p->rv), "7");
    p->idle = kl_kpod_idle(p);
}

static void test_idle(void)
{
    kl_kpod *p = record(PLAIN);
    KT_EQ_INT(kl_kpod_idle(p), 1); /* its directories are being made */
    p->dirs_ready = 1;
    KT_EQ_INT(kl_kpod_idle(p), 0); /* its container has to start */
    running(p);
    KT_EQ_INT(kl_kpod_idle(p), 1);
    p->c[0].pidfd = -1;
    KT_EQ_INT(kl_kpod_idle(p), 0); /* its exit is not watched: polled */
    p->c[0].pidfd = 1000;
    p->c[0].kill_at_ms = 5;
    KT_EQ_INT(kl_kpod_idle(p), 0); /* a kill to escalate */
    p->c[0].kill_at_ms = 0;
    p->terminating = 1;
    KT_EQ_INT(kl_kpod_idle(p), 0);
    p->terminating = 0;
    p->c[0].running = 0;
    p->c[0].next_start_ms = 99;
    KT_EQ_INT(kl_kpod_idle(p), 0); /* a restart to make */
    p->c[0].next_start_ms = 0;
    p->c[0].done = 1;
    KT_EQ_INT(kl_kpod_idle(p), 1);
    p->c[0].pidfd = -1;
    kl_kpod_free(p);

    kl_kpod *q = record(PROBED);
    running(q);
    KT_EQ_INT(kl_kpod_idle(q), 0); /* probes run on every pass */
    q->c[0].pidfd = -1;
    kl_kpod_free(q);
}

static void test_resting(void)
{
    kl_kpod *p = record(PLAIN);
    running(p);
    KT_EQ_INT(kl_kpod_resting(p, "7", 1000), 1);
    KT_EQ_INT(kl_kpod_resting(p, NULL, 1000), 1);
    KT_EQ_INT(kl_kpod_resting(p, "8", 1000), 0); /* its record was written */
    p->exited = 1;
    KT_EQ_INT(kl_kpod_resting(p, "7", 1000), 0);
    p->exited = 0;
    p->wake_ms = 2000;
    KT_EQ_INT(kl_kpod_resting(p, "7", 1999), 1);
    KT_EQ_INT(kl_kpod_resting(p, "7", 2000), 0); /* its deadline came */
    p->idle = 0;
    KT_EQ_INT(kl_kpod_resting(p, "7", 0), 0);
    p->settled = 1;
    KT_EQ_INT(kl_kpod_resting(p, "8", 0), 1);
    p->c[0].pidfd = -1;
    kl_kpod_free(p);
}

int main(void)
{
    KT_RUN(test_idle);
    KT_RUN(test_resting);
    return KT_DONE();
}
