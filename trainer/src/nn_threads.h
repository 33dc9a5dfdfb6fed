/* nn_threads: the engine's small persistent thread pool. nn_threads_run
 * calls fn(arg, tid, n) once on each of the n threads (tid 0 is the caller)
 * and returns when all have finished. Workers spin briefly between jobs
 * (a training step dispatches a few jobs per batch, microseconds apart) and
 * then sleep on a condition variable, so an idle pool costs no CPU.
 * Ownership: nn_threads_new returns a pool freed by nn_threads_free; a pool
 * is driven by one thread at a time. */
#ifndef KILN_NN_THREADS_H
#define KILN_NN_THREADS_H

typedef struct nn_threads nn_threads;
typedef void (*nn_threads_fn)(void *arg, int tid, int n);

/* n >= 1 (n - 1 workers are started). Returns 0 or KILN_ENOMEM. */
int nn_threads_new(int n, nn_threads **out);
void nn_threads_free(nn_threads *p);
int nn_threads_count(const nn_threads *p);
void nn_threads_run(nn_threads *p, nn_threads_fn fn, void *arg);

#endif
