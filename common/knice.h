/* knice: a thread's CPU priority relative to its process.
 *
 * Threads that do work others wait on (an API server's event loop, a
 * controller's reconcile workers) and threads whose work can follow a
 * little later (a kubelet's container starts, the creation of claims)
 * share one weight on the CPU: with the kernel's scheduler autogroups a
 * process started in its own session weighs as one, whatever its thread
 * count, and in a cgroup the cgroup does. Raising the niceness of the
 * latter threads makes them yield to the former inside that weight, and
 * needs no privilege. */
#ifndef KNICE_H
#define KNICE_H

/* What the functions return when the niceness cannot be read or set. */
#define KNICE_UNKNOWN (-100)

/* Raises the calling thread's niceness by steps (at most to 19); other
 * threads keep theirs, and threads and processes it creates from now on
 * inherit it. Returns the new niceness, or KNICE_UNKNOWN when it cannot
 * be read or set (the thread then keeps its priority). */
int knice_lower_thread(int steps);

/* The calling thread's niceness, or KNICE_UNKNOWN. */
int knice_thread(void);

#endif
