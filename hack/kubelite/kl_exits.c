/* kl_exits: pods whose container processes exited, by pidfd (see
 * kl_exits.h). */
#include "kl_exits.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

struct kl_exits {
    int ep;
};

int kl_exits_new(kl_exits **out)
{
    *out = NULL;
    kl_exits *x = calloc(1, sizeof(*x));
    if (!x)
        return -1;
    x->ep = epoll_create1(EPOLL_CLOEXEC);
    if (x->ep < 0) {
        int e = errno;
        free(x);
        errno = e;
        return -1;
    }
    *out = x;
    return 0;
}

void kl_exits_free(kl_exits *x)
{
    if (!x)
        return;
    close(x->ep);
    free(x);
}

int kl_exits_watch(kl_exits *x, kl_kpod *p, kl_kctr *c)
{
    if (!x || c->pid <= 0)
        return -1;
    if (c->pidfd >= 0)
        return 0;
    /* The process is this one's child and is reaped only after
     * kl_exits_unwatch(), so the pid cannot name another process yet. */
    int fd = (int)syscall(SYS_pidfd_open, c->pid, 0); /* close-on-exec */
    if (fd < 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
    if (epoll_ctl(x->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        return -1;
    }
    c->pidfd = fd;
    return 0;
}

void kl_exits_unwatch(kl_exits *x, kl_kctr *c)
{
    if (c->pidfd < 0)
        return;
    if (x)
        epoll_ctl(x->ep, EPOLL_CTL_DEL, c->pidfd, NULL);
    close(c->pidfd);
    c->pidfd = -1;
}

void kl_exits_collect(kl_exits *x)
{
    if (!x)
        return;
    /* Level-triggered: a pidfd stays readable until it is unwatched, and
     * epoll hands the ready ones out in turn, so exits beyond one batch are
     * reported on the next calls. */
    struct epoll_event evs[256];
    int n = epoll_wait(x->ep, evs, 256, 0);
    for (int i = 0; i < n; i++)
        ((kl_kpod *)evs[i].data.ptr)->exited = 1;
}
