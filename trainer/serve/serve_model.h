/* serve_model: the model the server answers with, and its hot reload.
 *
 * A serve_model wraps one loaded checkpoint with what responses need
 * (version, resolved path, labels as JSON fragments) and a reference
 * count. The holder keeps the current one behind a mutex that is held
 * only to read or swap the pointer and bump the count: a request takes a
 * reference (serve_holder_get), predicts, and drops it (serve_model_put);
 * a reload swaps the pointer and drops the holder's reference, so the old
 * model is freed by whichever request finishes with it last. In-flight
 * requests are never cut short by a reload.
 *
 * serve_holder_check is the reloader: it stats --model (following a
 * symlink such as "latest") and, when the file's identity (device, inode,
 * size, mtime) differs from the last file it tried, or when forced
 * (SIGHUP), loads and validates it (model_load checks magic, CRC and
 * shapes). A valid file is swapped in, even with a different input shape
 * (logged as a warning); a bad one is refused, logged and counted, and the
 * current model keeps serving. Only one thread may call it.
 *
 * Ownership: serve_holder_init/serve_holder_release on caller storage;
 * serve_holder_get returns a reference the caller gives back with
 * serve_model_put. */
#ifndef KILN_SERVE_MODEL_H
#define KILN_SERVE_MODEL_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>
#include <time.h>

#include "model.h"
#include "serve_infer.h"
#include "serve_metrics.h"

typedef struct serve_model {
    kiln_model *m;
    _Atomic int refs;
    char *path; /* the file that was loaded (symlinks resolved) */
    char version[32];
    int n_inputs, n_outputs;
    int has_probs; /* kmeans has none */
    serve_labels labels;
    char **label_json;
    size_t *label_len;
    /* training column names from the header (borrowed from it), for
     * telling a CSV header row from data; NULL for images */
    const char **input_names;
    int n_input_names;
} serve_model;

typedef struct serve_holder {
    pthread_mutex_t mu;
    serve_model *cur;
    char *path; /* as given on the command line */
    serve_metrics *metrics;
    /* identity of the last file tried, loaded or not */
    int seen;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    int missing_logged;
} serve_holder;

int serve_holder_init(serve_holder *h, const char *path, serve_metrics *metrics);
void serve_holder_release(serve_holder *h);

/* A reference to the current model, or NULL when none is loaded. */
serve_model *serve_holder_get(serve_holder *h);
void serve_model_put(serve_model *sm);

/* Returns 1 when a new model was swapped in, 0 when nothing changed, or a
 * negative code when the file was refused (logged and counted). */
int serve_holder_check(serve_holder *h, int force);

/* Wraps an already loaded model (takes ownership of m on success). */
int serve_model_wrap(kiln_model *m, const char *path, serve_model **out);

#endif
