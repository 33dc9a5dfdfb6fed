/* bench_nn: times one training epoch of the engine's reference models on
 * data of Fashion-MNIST's shapes (60,000 rows of 28x28x1, 10 classes,
 * batch 64, Adam): MLP 784-128-10, CNN conv [8,16] + dense [64], and
 * logistic regression. Data values do not change the timing, so the rows
 * are random; batches are consecutive rows (the trainer's shuffle-gather
 * is not part of what is timed). Prints one JSON line per model with the
 * median and best seconds per epoch over --reps epochs, and GFLOP/s counted
 * the usual way (forward, weight-gradient and input-gradient GEMM for every
 * weight layer: 6 flops per multiply-add per sample).
 *
 *   bench_nn [--threads N] [--reps N] [--model mlp|cnn|logistic|all]
 *   bench_nn --accuracy DIR [--epochs N] [--model ...]
 *
 * --accuracy trains on the real data in DIR (gzip IDX files, scaled to
 * standard scores with the training set's per-pixel mean and deviation)
 * and prints the test accuracy: the engine's quality bar. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlib.h>

#include "nn.h"

#define N_TRAIN 60000
#define SIDE    28
#define D       (SIDE * SIDE)
#define K       10
#define BATCH   64

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static nn_arch make_arch(const char *name)
{
    nn_arch a;
    memset(&a, 0, sizeof a);
    a.n_classes = K;
    a.activation = NN_RELU;
    if (!strcmp(name, "cnn")) {
        a.family = NN_CNN;
        a.in_h = SIDE;
        a.in_w = SIDE;
        a.in_c = 1;
        a.n_conv = 2;
        a.conv[0] = 8;
        a.conv[1] = 16;
        a.n_dense = 1;
        a.dense[0] = 64;
    } else {
        a.family = !strcmp(name, "logistic") ? NN_LOGISTIC : NN_MLP;
        a.in_h = D;
        a.in_w = 1;
        a.in_c = 1;
        if (a.family == NN_MLP) {
            a.n_hidden = 1;
            a.hidden[0] = 128;
        }
    }
    return a;
}

/* Multiply-adds per sample of the weight layers' forward pass. */
static double macs_per_sample(const nn_arch *a)
{
    double macs = 0;
    int in = a->in_h * a->in_w * a->in_c;
    if (a->family == NN_CNN) {
        int h = a->in_h, w = a->in_w, c = a->in_c;
        for (int i = 0; i < a->n_conv; i++) {
            macs += (double)h * w * 9 * c * a->conv[i];
            h /= 2;
            w /= 2;
            c = a->conv[i];
        }
        in = h * w * c;
        for (int i = 0; i < a->n_dense; i++) {
            macs += (double)in * a->dense[i];
            in = a->dense[i];
        }
    } else if (a->family == NN_MLP) {
        for (int i = 0; i < a->n_hidden; i++) {
            macs += (double)in * a->hidden[i];
            in = a->hidden[i];
        }
    }
    return macs + (double)in * a->n_classes;
}

static int new_model(const char *name, nn_model **m, nn_optim **o)
{
    kiln_error err = {0};
    nn_arch a = make_arch(name);
    if (nn_new(&a, m, &err) != 0) {
        fprintf(stderr, "nn_new: %s\n", err.msg);
        return -1;
    }
    rng r;
    rng_seed(&r, 1);
    nn_init_params(*m, &r);
    nn_optim_params op = {
        .kind = NN_ADAM, .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    if (nn_optim_new(&op, nn_n_params(*m), o, &err) != 0) {
        fprintf(stderr, "nn_optim_new: %s\n", err.msg);
        nn_free(*m);
        return -1;
    }
    return 0;
}

static int time_model(const char *name, int reps)
{
    nn_model *m;
    nn_optim *o;
    if (new_model(name, &m, &o))
        return 1;
    float *x = malloc((size_t)N_TRAIN * D * sizeof(float));
    int32_t *y = malloc(N_TRAIN * sizeof(int32_t));
    double *t = malloc((size_t)reps * sizeof(double));
    if (!x || !y || !t)
        return 1;
    rng r;
    rng_seed(&r, 7);
    for (size_t i = 0; i < (size_t)N_TRAIN * D; i++)
        x[i] = rng_normal(&r);
    for (int i = 0; i < N_TRAIN; i++)
        y[i] = (int32_t)rng_below(&r, K);
    float loss = 0;
    int correct;
    /* one warm-up batch sizes the workspaces */
    nn_train_batch(m, o, x, y, BATCH, &r, &loss, &correct);
    for (int e = 0; e < reps; e++) {
        double t0 = now();
        for (int i = 0; i < N_TRAIN; i += BATCH) {
            int b = N_TRAIN - i < BATCH ? N_TRAIN - i : BATCH;
            if (nn_train_batch(m, o, x + (size_t)i * D, y + i, b, &r, &loss, &correct) != 0) {
                fprintf(stderr, "train step failed\n");
                return 1;
            }
        }
        t[e] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    double med = t[reps / 2], gflop = 6.0 * macs_per_sample(nn_get_arch(m)) * N_TRAIN / 1e9;
    /* B=1 inference latency, as the model server sees it */
    float probs[K];
    int n_lat = 2000;
    double t0 = now();
    for (int i = 0; i < n_lat; i++)
        nn_predict(m, x + (size_t)(i % N_TRAIN) * D, 1, probs);
    double lat_us = (now() - t0) / n_lat * 1e6;
    printf(
        "{\"model\": \"%s\", \"threads\": %d, \"batch\": %d, \"reps\": %d, "
        "\"sec_per_epoch_median\": %.4f, \"sec_per_epoch_best\": %.4f, \"gflop_per_epoch\": %.1f, "
        "\"gflops_median\": %.1f, \"predict_b1_us\": %.1f, \"last_loss\": %.4f}\n",
        name, nn_get_threads(), BATCH, reps, med, t[0], gflop, gflop / med, lat_us, (double)loss);
    fflush(stdout);
    free(x);
    free(y);
    free(t);
    nn_optim_free(o);
    nn_free(m);
    return 0;
}

/* ------------------------------------------------------------ real data */

static unsigned char *read_gz(const char *dir, const char *name, size_t want, size_t header)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    gzFile f = gzopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        return NULL;
    }
    unsigned char *buf = malloc(want + header);
    size_t got = 0;
    while (buf && got < want + header) {
        int n = gzread(f, buf + got, (unsigned)(want + header - got));
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    gzclose(f);
    if (!buf || got != want + header) {
        fprintf(stderr, "%s: short read\n", path);
        free(buf);
        return NULL;
    }
    memmove(buf, buf + header, want);
    return buf;
}

static int accuracy(const char *dir, const char *name, int epochs)
{
    const int n_test = 10000;
    unsigned char *xi = read_gz(dir, "train-images-idx3-ubyte.gz", (size_t)N_TRAIN * D, 16);
    unsigned char *yi = read_gz(dir, "train-labels-idx1-ubyte.gz", N_TRAIN, 8);
    unsigned char *xt = read_gz(dir, "t10k-images-idx3-ubyte.gz", (size_t)n_test * D, 16);
    unsigned char *yt = read_gz(dir, "t10k-labels-idx1-ubyte.gz", (size_t)n_test, 8);
    float *x = malloc((size_t)N_TRAIN * D * sizeof(float));
    float *xte = malloc((size_t)n_test * D * sizeof(float));
    float *xb = malloc((size_t)BATCH * D * sizeof(float));
    float *probs = malloc((size_t)n_test * K * sizeof(float));
    int32_t *y = malloc(N_TRAIN * sizeof(int32_t)), *yb = malloc(BATCH * sizeof(int32_t));
    int32_t *order = malloc(N_TRAIN * sizeof(int32_t));
    if (!xi || !yi || !xt || !yt || !x || !xte || !xb || !probs || !y || !yb || !order)
        return 1;
    for (int j = 0; j < D; j++) {
        double s = 0, ss = 0;
        for (int i = 0; i < N_TRAIN; i++) {
            double v = xi[(size_t)i * D + j];
            s += v;
            ss += v * v;
        }
        double mean = s / N_TRAIN, sd = sqrt(fmax(ss / N_TRAIN - mean * mean, 0));
        double inv = sd > 1e-12 ? 1.0 / sd : 0.0;
        for (int i = 0; i < N_TRAIN; i++)
            x[(size_t)i * D + j] = (float)((xi[(size_t)i * D + j] - mean) * inv);
        for (int i = 0; i < n_test; i++)
            xte[(size_t)i * D + j] = (float)((xt[(size_t)i * D + j] - mean) * inv);
    }
    for (int i = 0; i < N_TRAIN; i++)
        y[i] = yi[i];
    nn_model *m;
    nn_optim *o;
    if (new_model(name, &m, &o))
        return 1;
    rng r;
    rng_seed(&r, 1);
    double t0 = now();
    for (int e = 0; e < epochs; e++) {
        for (int i = 0; i < N_TRAIN; i++)
            order[i] = i;
        rng_shuffle(&r, order, N_TRAIN);
        double ls = 0;
        for (int i = 0; i < N_TRAIN; i += BATCH) {
            int b = N_TRAIN - i < BATCH ? N_TRAIN - i : BATCH;
            for (int k = 0; k < b; k++) {
                memcpy(xb + (size_t)k * D, x + (size_t)order[i + k] * D, D * sizeof(float));
                yb[k] = y[order[i + k]];
            }
            float loss;
            int c;
            if (nn_train_batch(m, o, xb, yb, b, &r, &loss, &c) != 0)
                return 1;
            ls += (double)loss * b;
        }
        fprintf(stderr, "%s epoch %d: train loss %.4f\n", name, e + 1, ls / N_TRAIN);
    }
    double train_s = now() - t0;
    if (nn_predict(m, xte, n_test, probs) != 0)
        return 1;
    int hits = 0;
    for (int i = 0; i < n_test; i++) {
        int arg = 0;
        for (int k = 1; k < K; k++)
            if (probs[(size_t)i * K + k] > probs[(size_t)i * K + arg])
                arg = k;
        hits += arg == yt[i];
    }
    printf(
        "{\"model\": \"%s\", \"epochs\": %d, \"test_accuracy\": %.4f, \"train_seconds\": %.2f}\n",
        name, epochs, (double)hits / n_test, train_s);
    free(xi);
    free(yi);
    free(xt);
    free(yt);
    free(x);
    free(xte);
    free(xb);
    free(probs);
    free(y);
    free(yb);
    free(order);
    nn_optim_free(o);
    nn_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    int threads = 0, reps = 5, epochs = 0;
    const char *model = "all", *data = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model = argv[++i];
        else if (!strcmp(argv[i], "--accuracy") && i + 1 < argc)
            data = argv[++i];
        else if (!strcmp(argv[i], "--epochs") && i + 1 < argc)
            epochs = (int)strtol(argv[++i], NULL, 10);
        else {
            fprintf(stderr,
                    "usage: bench_nn [--threads N] [--reps N] [--model mlp|cnn|logistic|all]\n"
                    "       bench_nn --accuracy DIR [--epochs N] [--model ...]\n");
            return 2;
        }
    }
    if (reps < 1)
        reps = 1;
    nn_set_threads(threads > 0 ? threads : nn_get_threads());
    const char *names[] = {"mlp", "cnn", "logistic"};
    const int default_epochs[] = {5, 3, 5};
    int rc = 0;
    for (int i = 0; i < 3; i++) {
        if (strcmp(model, "all") && strcmp(model, names[i]))
            continue;
        if (data)
            rc |= accuracy(data, names[i], epochs > 0 ? epochs : default_epochs[i]);
        else
            rc |= time_model(names[i], reps);
    }
    return rc;
}
