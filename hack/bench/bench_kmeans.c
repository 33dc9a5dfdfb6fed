/* bench_kmeans: k-means (k = 10) on the 60,000 Fashion-MNIST training
 * images (784 pixels scaled to [0, 1]), timed end to end (seeding, Lloyd
 * iterations, final costing), per Lloyd iteration, for the seeding, and
 * per assignment pass. Prints one JSON line. The thread count is
 * OpenBLAS's (OPENBLAS_NUM_THREADS); the engine's k-means uses the same.
 *
 *   bench_kmeans [images.idx3-ubyte.gz] [k] [seed]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cblas.h>
#include <zlib.h>

#include "kmeans.h"

#define DEFAULT_IMAGES "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Reads an IDX3 unsigned-byte file into floats in [0, 1]; NULL on error. */
static float *load_images(const char *path, int *n, int *d)
{
    gzFile f = gzopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char h[16];
    float *x = NULL;
    unsigned char *raw = NULL;
    if (gzread(f, h, sizeof h) != (int)sizeof h || be32(h) != 0x803)
        goto done;
    uint32_t rows = be32(h + 4), px = be32(h + 8) * be32(h + 12);
    if (rows == 0 || rows > 1000000 || px == 0 || px > 100000)
        goto done;
    size_t total = (size_t)rows * px;
    raw = malloc(total);
    x = malloc(total * sizeof(float));
    if (!raw || !x || gzread(f, raw, (unsigned)total) != (int)total) {
        free(x);
        x = NULL;
        goto done;
    }
    for (size_t i = 0; i < total; i++)
        x[i] = (float)raw[i] * (1.0f / 255.0f);
    *n = (int)rows;
    *d = (int)px;
done:
    free(raw);
    gzclose(f);
    return x;
}

/* Wall and CPU seconds of one kmeans_fit; 0 or the fit's error code. */
static int timed_fit(const float *x, int n, int d, int k, int max_iter, uint64_t seed,
                     kmeans_result *res, double *wall, double *cpu, kiln_error *err)
{
    rng r;
    rng_seed(&r, seed);
    double t0 = now(), c0 = cpu_now();
    int rc = kmeans_fit(x, n, d, k, max_iter, 1e-4, &r, res, err);
    *wall = now() - t0;
    *cpu = cpu_now() - c0;
    return rc;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : DEFAULT_IMAGES;
    int k = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 10;
    uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
    int n = 0, d = 0;
    float *x = load_images(path, &n, &d);
    if (!x) {
        fprintf(stderr, "bench_kmeans: cannot read IDX images from %s\n", path);
        return 1;
    }
    /* The whole fit as the trainer runs it (tol 1e-4, at most 300
     * iterations), then the same seed stopped after one iteration: the
     * difference divided by the extra iterations is the cost of a Lloyd
     * iteration without the seeding. */
    kmeans_result res, one;
    kiln_error err = {0};
    double wall, cpu, wall1, cpu1;
    if (timed_fit(x, n, d, k, 300, seed, &res, &wall, &cpu, &err) ||
        timed_fit(x, n, d, k, 1, seed, &one, &wall1, &cpu1, &err)) {
        fprintf(stderr, "bench_kmeans: %s\n", err.msg);
        free(x);
        return 1;
    }
    int extra = res.iterations > 1 ? res.iterations - 1 : 1;
    int32_t *labels = malloc((size_t)n * sizeof(int32_t));
    double assign_ms = 0, wcss = 0;
    if (labels) {
        double best = 1e30;
        for (int rep = 0; rep < 5; rep++) {
            double t = now();
            kmeans_assign(res.centroids, k, d, x, n, labels, &wcss);
            t = now() - t;
            if (t < best)
                best = t;
        }
        assign_ms = best * 1e3;
    }
    printf("{\"n\": %d, \"d\": %d, \"k\": %d, \"threads\": %d, \"seconds\": %.3f, "
           "\"cpu_seconds\": %.3f, \"iterations\": %d, \"ms_per_iteration\": %.1f, "
           "\"lloyd_ms_per_iteration\": %.1f, \"lloyd_cpu_ms_per_iteration\": %.1f, "
           "\"seeding_ms\": %.1f, \"assign_pass_ms\": %.1f, "
           "\"wcss\": %.1f}\n",
           n, d, k, openblas_get_num_threads(), wall, cpu, res.iterations,
           wall * 1e3 / (res.iterations > 0 ? res.iterations : 1), (wall - wall1) * 1e3 / extra,
           (cpu - cpu1) * 1e3 / extra, (wall1 - 2 * (wall - wall1) / extra) * 1e3, assign_ms,
           res.wcss);
    free(labels);
    kmeans_result_release(&one);
    kmeans_result_release(&res);
    free(x);
    return 0;
}
