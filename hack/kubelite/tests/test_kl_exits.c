/* Unit tests for kl_exits: an exited child marks its pod, reaped or not;
 * a running one does not; an unwatched one is forgotten; no set, no watch. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kl_exits.h"
#include "ktest.h"

static pid_t child(int sleep_s)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (sleep_s)
            sleep((unsigned)sleep_s);
        _exit(0);
    }
    return pid;
}

static kl_kpod *pod_with(pid_t pid)
{
    kl_kpod *p = calloc(1, sizeof(*p));
    p->n = 1;
    p->c[0].pid = pid;
    p->c[0].pidfd = -1;
    return p;
}

/* Collects until p is marked or about two seconds passed. */
static int marked(kl_exits *x, kl_kpod *p)
{
    for (int i = 0; i < 200 && !p->exited; i++) {
        kl_exits_collect(x);
        if (!p->exited)
            usleep(10000);
    }
    return p->exited;
}

static void test_exit_marks_pod(void)
{
    kl_exits *x;
    KT_EQ_INT(kl_exits_new(&x), 0);
    kl_kpod *quick = pod_with(child(0)), *slow = pod_with(child(30));
    KT_EQ_INT(kl_exits_watch(x, quick, &quick->c[0]), 0);
    KT_EQ_INT(kl_exits_watch(x, slow, &slow->c[0]), 0);
    KT_CHECK(quick->c[0].pidfd >= 0);
    KT_EQ_INT(kl_exits_watch(x, quick, &quick->c[0]), 0); /* twice: same pidfd */
    KT_CHECK(marked(x, quick));
    KT_EQ_INT(slow->exited, 0);
    /* Still reported until unwatched, also once reaped. */
    KT_EQ_INT(waitpid(quick->c[0].pid, NULL, 0), quick->c[0].pid);
    quick->exited = 0;
    KT_CHECK(marked(x, quick));
    kl_exits_unwatch(x, &quick->c[0]);
    KT_EQ_INT(quick->c[0].pidfd, -1);
    quick->exited = 0;
    kl_exits_collect(x);
    KT_EQ_INT(quick->exited, 0);
    /* The slow one exits when killed. */
    kill(slow->c[0].pid, SIGKILL);
    KT_CHECK(marked(x, slow));
    kl_exits_unwatch(x, &slow->c[0]);
    waitpid(slow->c[0].pid, NULL, 0);
    kl_exits_unwatch(x, &slow->c[0]); /* no-op */
    free(quick);
    free(slow);
    kl_exits_free(x);
}

static void test_without_set(void)
{
    kl_kpod *p = pod_with(child(0));
    KT_EQ_INT(kl_exits_watch(NULL, p, &p->c[0]), -1);
    KT_EQ_INT(p->c[0].pidfd, -1);
    kl_exits_collect(NULL);
    kl_exits_unwatch(NULL, &p->c[0]);
    waitpid(p->c[0].pid, NULL, 0);
    kl_exits *x;
    KT_EQ_INT(kl_exits_new(&x), 0);
    p->c[0].pid = 0; /* no pid yet */
    KT_EQ_INT(kl_exits_watch(x, p, &p->c[0]), -1);
    kl_exits_free(x);
    free(p);
}

int main(void)
{
    KT_RUN(test_exit_marks_pod);
    KT_RUN(test_without_set);
    return KT_DONE();
}
