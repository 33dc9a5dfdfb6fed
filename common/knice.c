/* knice: a thread's niceness (see knice.h). Linux gives each thread its
 * own niceness: PRIO_PROCESS with a thread id. */
#include "knice.h"

#include <errno.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int knice_thread(void)
{
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    return errno ? KNICE_UNKNOWN : nice;
}

int knice_lower_thread(int steps)
{
    int nice = knice_thread();
    if (nice == KNICE_UNKNOWN)
        return KNICE_UNKNOWN;
    nice += steps;
    if (nice > 19)
        nice = 19;
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice) != 0)
        return KNICE_UNKNOWN;
    return nice;
}
