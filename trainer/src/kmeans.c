/* kmeans: k-means clustering for the engine. Greedy k-means++ seeding,
 * Lloyd iterations whose assignment step runs SGEMM on small blocks of rows
 * across worker threads and folds the centroid sums into the same pass (so
 * the data is read from memory once per iteration), the elbow rule for
 * choosing k, and a sampled silhouette score. */
#include "kmeans.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ tuning */

/* Worker threads never exceed this (fixed arrays on the stack). */
#define MAX_WORKERS 16
/* Below this many rows per worker, threads cost more than they save. */
#define MIN_ROWS_PER_WORKER 4096
/* OpenBLAS runs an SGEMM on the calling thread when m*n*k is at most
 * 65536 * GEMM_MULTITHREAD_THRESHOLD (4 in Debian's build). Our workers
 * already use every core, so each block is sized under that limit: nested
 * OpenBLAS threads would only fight ours (and measured slower anyway for
 * the tall, thin products k-means makes). */
#define SGEMM_SERIAL_MNK 262144
#define MIN_BLOCK_ROWS   8
#define MAX_BLOCK_ROWS   256
/* Centroid sums are accumulated in float over at most this many rows, then
 * added into double totals: float keeps the inner loop cheap, the short
 * window keeps the rounding negligible. */
#define FLUSH_ROWS 256
/* Seedings tried per k on the elbow curve (the best WCSS is kept). */
#ifndef ELBOW_INITS
#define ELBOW_INITS 3
#endif

/* ------------------------------------------------------------ types */

/* What one worker accumulates over its rows during a pass. */
typedef struct worker {
    float *g;               /* (B, k) block of -2 x.c, then scratch */
    float *bsum;            /* (k, d) float sums since the last flush */
    double *sum;            /* (k, d) double sums of the rows per cluster */
    int64_t *count;         /* (k) */
    unsigned char *touched; /* (k) cluster has rows in bsum */
    double wcss;
    int64_t changed;
} worker;

/* One pass over the rows: assignment, optionally with centroid sums. */
typedef struct pass {
    const float *x;
    int n, d, k, block;
    const float *c;  /* (k, d) centroids */
    float *ct;       /* (d, k) the same, transposed for SGEMM */
    const float *cn; /* (k) squared centroid norms */
    int32_t *labels; /* (n) out; with keep_prev also in */
    float *dist;     /* (n) squared distance to the chosen centroid, or NULL */
    int keep_prev;   /* labels hold the previous assignment */
    int accumulate;  /* fill worker sums and counts */
    int nw;
    worker w[MAX_WORKERS];
} pass;

/* ------------------------------------------------------------ helpers */

/* Squared Euclidean distance, computed directly (no cancellation). LANES
 * independent partial sums let the compiler keep several vector
 * accumulators in flight without reassociating one sum. */
#define LANES 32

static float sum_lanes(float *acc)
{
    for (int w = LANES / 2; w >= 1; w /= 2)
        for (int q = 0; q < w; q++)
            acc[q] += acc[q + w];
    return acc[0];
}

static float sqdist(const float *restrict a, const float *restrict b, int d)
{
    float acc[LANES] = {0};
    int l = 0;
    for (; l + LANES <= d; l += LANES)
        for (int q = 0; q < LANES; q++) {
            float t = a[l + q] - b[l + q];
            acc[q] += t * t;
        }
    for (int q = 0; l < d; l++, q++) {
        float t = a[l] - b[l];
        acc[q] += t * t;
    }
    return sum_lanes(acc);
}

static float sqnorm(const float *a, int d)
{
    float acc[LANES] = {0};
    int l = 0;
    for (; l + LANES <= d; l += LANES)
        for (int q = 0; q < LANES; q++)
            acc[q] += a[l + q] * a[l + q];
    for (int q = 0; l < d; l++, q++)
        acc[q] += a[l] * a[l];
    return sum_lanes(acc);
}

static void add_row(float *restrict dst, const float *restrict src, int d)
{
    int l = 0;
    for (; l + LANES <= d; l += LANES)
        for (int q = 0; q < LANES; q++)
            dst[l + q] += src[l + q];
    for (; l < d; l++)
        dst[l] += src[l];
}

/* Uniform double in [0, 1) with 53 bits: k-means++ samples among up to
 * millions of rows, more than rng_uniform's 24 bits resolve. */
static double uniform53(rng *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static int block_rows(int k, int d)
{
    long b = SGEMM_SERIAL_MNK / ((long)k * d);
    if (b < MIN_BLOCK_ROWS)
        b = MIN_BLOCK_ROWS;
    if (b > MAX_BLOCK_ROWS)
        b = MAX_BLOCK_ROWS;
    return (int)b;
}

/* The engine's thread budget is OpenBLAS's thread count (OPENBLAS_NUM_THREADS
 * or the core count), so one setting governs every parallel kernel. */
static int worker_count(int n)
{
    int t = openblas_get_num_threads();
    if (t < 1)
        t = 1;
    if (t > MAX_WORKERS)
        t = MAX_WORKERS;
    int by_rows = n / MIN_ROWS_PER_WORKER;
    if (t > by_rows)
        t = by_rows > 0 ? by_rows : 1;
    return t;
}

/* ------------------------------------------------------------ threads */

typedef void (*range_fn)(void *ctx, int w, int lo, int hi);

typedef struct job {
    range_fn fn;
    void *ctx;
    int w, lo, hi;
} job;

static void *job_main(void *p)
{
    job *j = p;
    j->fn(j->ctx, j->w, j->lo, j->hi);
    return NULL;
}

/* Splits rows [0, n) into nw contiguous ranges and runs fn on each, worker
 * 0 on the calling thread. The split depends only on n and nw, and a range
 * whose thread cannot be started runs inline, so results never depend on
 * thread creation succeeding. */
static void run_parallel(int nw, int n, range_fn fn, void *ctx)
{
    job jobs[MAX_WORKERS];
    pthread_t th[MAX_WORKERS];
    int started[MAX_WORKERS] = {0};
    for (int w = 0; w < nw; w++)
        jobs[w] = (job){fn, ctx, w, (int)((int64_t)n * w / nw), (int)((int64_t)n * (w + 1) / nw)};
    for (int w = 1; w < nw; w++)
        started[w] = pthread_create(&th[w], NULL, job_main, &jobs[w]) == 0;
    job_main(&jobs[0]);
    for (int w = 1; w < nw; w++) {
        if (started[w])
            pthread_join(th[w], NULL);
        else
            job_main(&jobs[w]);
    }
}

/* ------------------------------------------------------------ the pass */

static void pass_release(pass *p)
{
    free(p->ct);
    p->ct = NULL;
    for (int w = 0; w < MAX_WORKERS; w++) {
        free(p->w[w].g);
        free(p->w[w].bsum);
        free(p->w[w].sum);
        free(p->w[w].count);
        free(p->w[w].touched);
    }
    memset(p->w, 0, sizeof p->w);
}

/* Allocates per-worker buffers; 0 or KILN_ENOMEM. */
static int pass_init(pass *p, const float *x, int n, int d, int k, int accumulate)
{
    memset(p, 0, sizeof *p);
    p->x = x;
    p->n = n;
    p->d = d;
    p->k = k;
    p->block = block_rows(k, d);
    p->accumulate = accumulate;
    p->nw = worker_count(n);
    size_t kd = (size_t)k * (size_t)d;
    p->ct = malloc(kd * sizeof(float));
    if (!p->ct)
        goto oom;
    for (int w = 0; w < p->nw; w++) {
        worker *wk = &p->w[w];
        wk->g = malloc((size_t)p->block * (size_t)k * sizeof(float));
        if (!wk->g)
            goto oom;
        if (!accumulate)
            continue;
        wk->bsum = calloc(kd, sizeof(float));
        wk->sum = calloc(kd, sizeof(double));
        wk->count = calloc((size_t)k, sizeof(int64_t));
        wk->touched = calloc((size_t)k, 1);
        if (!wk->bsum || !wk->sum || !wk->count || !wk->touched)
            goto oom;
    }
    return 0;
oom:
    pass_release(p);
    return KILN_ENOMEM;
}

static void flush_sums(worker *wk, int k, int d)
{
    for (int j = 0; j < k; j++) {
        if (!wk->touched[j])
            continue;
        float *b = wk->bsum + (size_t)j * d;
        double *s = wk->sum + (size_t)j * d;
        for (int l = 0; l < d; l++) {
            s[l] += b[l];
            b[l] = 0;
        }
        wk->touched[j] = 0;
    }
}

/* Assigns rows [lo, hi): the nearest centroid by ||c||^2 - 2 x.c (||x||^2
 * is the same for every centroid, so it is not needed to rank them), then
 * the exact squared distance to the chosen one for the WCSS. With
 * keep_prev a row moves only when the exact distance to its new centroid is
 * strictly smaller than to its old one: float rounding in the expansion can
 * misrank near-ties, and this keeps every assignment step from raising the
 * WCSS. */
static void pass_range(void *ctx, int w, int lo, int hi)
{
    pass *p = ctx;
    worker *wk = &p->w[w];
    const int d = p->d, k = p->k;
    double wcss = 0;
    int64_t changed = 0;
    int since_flush = 0;
    for (int i0 = lo; i0 < hi; i0 += p->block) {
        int b = hi - i0 < p->block ? hi - i0 : p->block;
        const float *xb = p->x + (size_t)i0 * d;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, k, d, -2.0f, xb, d, p->ct, k,
                    0.0f, wk->g, k);
        for (int r = 0; r < b; r++) {
            const float *gr = wk->g + (size_t)r * k;
            const float *xr = xb + (size_t)r * d;
            int best = 0;
            float bv = p->cn[0] + gr[0];
            for (int j = 1; j < k; j++) {
                float v = p->cn[j] + gr[j];
                if (v < bv) {
                    bv = v;
                    best = j;
                }
            }
            float dist = sqdist(xr, p->c + (size_t)best * d, d);
            int32_t *lab = &p->labels[i0 + r];
            if (p->keep_prev && *lab != best) {
                if (*lab >= 0 && *lab < k) {
                    float dold = sqdist(xr, p->c + (size_t)*lab * d, d);
                    if (dist < dold)
                        changed++;
                    else {
                        best = *lab;
                        dist = dold;
                    }
                } else {
                    changed++;
                }
            }
            *lab = best;
            if (p->dist)
                p->dist[i0 + r] = dist;
            wcss += dist;
            if (p->accumulate) {
                add_row(wk->bsum + (size_t)best * d, xr, d);
                wk->touched[best] = 1;
                wk->count[best]++;
            }
        }
        since_flush += b;
        if (p->accumulate && since_flush >= FLUSH_ROWS) {
            flush_sums(wk, k, d);
            since_flush = 0;
        }
    }
    if (p->accumulate)
        flush_sums(wk, k, d);
    wk->wcss = wcss;
    wk->changed = changed;
}

/* Runs one pass with centroids c; returns the WCSS. */
static double pass_run(pass *p, const float *c, const float *cn, int32_t *labels, float *dist,
                       int keep_prev, int64_t *changed)
{
    p->c = c;
    p->cn = cn;
    p->labels = labels;
    p->dist = dist;
    p->keep_prev = keep_prev;
    size_t kd = (size_t)p->k * (size_t)p->d;
    /* (d, k) layout: OpenBLAS's small-matrix kernel for X * C runs faster
     * than for X * C^T on these shapes. */
    for (int j = 0; j < p->k; j++)
        for (int l = 0; l < p->d; l++)
            p->ct[(size_t)l * p->k + j] = c[(size_t)j * p->d + l];
    for (int w = 0; w < p->nw; w++) {
        if (p->accumulate) {
            memset(p->w[w].sum, 0, kd * sizeof(double));
            memset(p->w[w].count, 0, (size_t)p->k * sizeof(int64_t));
        }
    }
    run_parallel(p->nw, p->n, pass_range, p);
    double wcss = 0;
    int64_t ch = 0;
    for (int w = 0; w < p->nw; w++) {
        wcss += p->w[w].wcss;
        ch += p->w[w].changed;
    }
    if (changed)
        *changed = ch;
    return wcss;
}

static void centroid_norms(const float *c, int k, int d, float *cn)
{
    for (int j = 0; j < k; j++)
        cn[j] = sqnorm(c + (size_t)j * d, d);
}

/* ------------------------------------------------------------ seeding */

/* Greedy k-means++: each new centre is the best of a few candidates drawn
 * with probability proportional to the squared distance to the nearest
 * centre so far ("best" = lowest resulting potential). Drawing several
 * candidates makes a poor seeding, such as two centres in one blob, much
 * rarer than plain k-means++, which matters for a clean elbow curve. */
#define MAX_CANDIDATES 8

typedef struct seed_ctx {
    const float *x;
    int d, nc, block;
    float *xn;         /* (n) squared row norms */
    float *closest;    /* (n) squared distance to the nearest centre */
    const float *cand; /* (nc, d) candidates; the first centre in seed_first */
    const float *candn;
    float *dcand; /* (n, nc) min(closest, distance to candidate) */
    double pot[MAX_WORKERS][MAX_CANDIDATES];
    float *g[MAX_WORKERS];
} seed_ctx;

/* Row norms and the exact distance to the first centre (cand[0]). */
static void seed_first(void *ctx, int w, int lo, int hi)
{
    seed_ctx *s = ctx;
    double pot = 0;
    for (int i = lo; i < hi; i++) {
        const float *xi = s->x + (size_t)i * s->d;
        s->xn[i] = sqnorm(xi, s->d);
        s->closest[i] = sqdist(xi, s->cand, s->d);
        pot += s->closest[i];
    }
    s->pot[w][0] = pot;
}

static void seed_range(void *ctx, int w, int lo, int hi)
{
    seed_ctx *s = ctx;
    const int d = s->d, nc = s->nc;
    double pot[MAX_CANDIDATES] = {0};
    for (int i0 = lo; i0 < hi; i0 += s->block) {
        int b = hi - i0 < s->block ? hi - i0 : s->block;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, nc, d, -2.0f, s->x + (size_t)i0 * d,
                    d, s->cand, d, 0.0f, s->g[w], nc);
        for (int r = 0; r < b; r++) {
            int i = i0 + r;
            for (int c = 0; c < nc; c++) {
                float v = s->xn[i] + s->candn[c] + s->g[w][(size_t)r * nc + c];
                if (v < 0)
                    v = 0;
                if (v > s->closest[i])
                    v = s->closest[i];
                s->dcand[(size_t)i * nc + c] = v;
                pot[c] += v;
            }
        }
    }
    for (int c = 0; c < nc; c++)
        s->pot[w][c] = pot[c];
}

/* Index of the row where the running sum of weights passes u * total. */
static int sample_weighted(const float *wts, int n, double total, rng *r)
{
    if (!(total > 0))
        return (int)rng_below(r, (uint32_t)n);
    double u = uniform53(r) * total, acc = 0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        if (wts[i] <= 0)
            continue;
        acc += wts[i];
        last = i;
        if (acc > u)
            return i;
    }
    return last; /* rounding left u just above the sum */
}

static int seed_pp(const float *x, int n, int d, int k, rng *r, float *c, kiln_error *err)
{
    int nc = 2 + (int)log((double)k);
    if (nc > MAX_CANDIDATES)
        nc = MAX_CANDIDATES;
    seed_ctx s = {.x = x, .d = d, .nc = nc, .block = block_rows(nc, d)};
    int nw = worker_count(n);
    float *xn = malloc((size_t)n * sizeof(float));
    float *closest = malloc((size_t)n * sizeof(float));
    float *dcand = malloc((size_t)n * (size_t)nc * sizeof(float));
    float *cand = malloc((size_t)nc * (size_t)d * sizeof(float));
    float candn[MAX_CANDIDATES];
    int rc = 0;
    for (int w = 0; w < nw; w++)
        s.g[w] = malloc((size_t)s.block * (size_t)nc * sizeof(float));
    if (!xn || !closest || !dcand || !cand) {
        rc = kiln_fail(err, KILN_ENOMEM, "k-means: out of memory seeding %d x %d rows", n, d);
        goto done;
    }
    for (int w = 0; w < nw; w++)
        if (!s.g[w]) {
            rc = kiln_fail(err, KILN_ENOMEM, "k-means: out of memory seeding %d x %d rows", n, d);
            goto done;
        }
    int first = (int)rng_below(r, (uint32_t)n);
    memcpy(c, x + (size_t)first * d, (size_t)d * sizeof(float));
    s.xn = xn;
    s.closest = closest;
    s.cand = c;
    run_parallel(nw, n, seed_first, &s);
    double total = 0;
    for (int w = 0; w < nw; w++)
        total += s.pot[w][0];
    s.cand = cand;
    s.candn = candn;
    s.dcand = dcand;
    for (int j = 1; j < k; j++) {
        for (int q = 0; q < nc; q++) {
            int i = sample_weighted(closest, n, total, r);
            memcpy(cand + (size_t)q * d, x + (size_t)i * d, (size_t)d * sizeof(float));
            candn[q] = sqnorm(cand + (size_t)q * d, d);
        }
        run_parallel(nw, n, seed_range, &s);
        int best = 0;
        double best_pot = 0;
        for (int q = 0; q < nc; q++) {
            double pot = 0;
            for (int w = 0; w < nw; w++)
                pot += s.pot[w][q];
            if (q == 0 || pot < best_pot) {
                best_pot = pot;
                best = q;
            }
        }
        memcpy(c + (size_t)j * d, cand + (size_t)best * d, (size_t)d * sizeof(float));
        for (int i = 0; i < n; i++)
            closest[i] = dcand[(size_t)i * nc + best];
        total = best_pot;
    }
done:
    for (int w = 0; w < nw; w++)
        free(s.g[w]);
    free(xn);
    free(closest);
    free(dcand);
    free(cand);
    return rc;
}

/* ------------------------------------------------------------ Lloyd */

/* New centroids from the pass's sums. A cluster that lost all its rows
 * takes the row farthest from its own centroid (lowest index on ties)
 * among clusters that keep at least one other row; that row moves to it.
 * This is deterministic and takes the worst-served point, as the WCSS
 * would prefer. */
static void update_centroids(pass *p, float *c, int32_t *labels, float *dist, double *sum,
                             int64_t *count)
{
    const int k = p->k, d = p->d;
    size_t kd = (size_t)k * (size_t)d;
    memset(sum, 0, kd * sizeof(double));
    memset(count, 0, (size_t)k * sizeof(int64_t));
    for (int w = 0; w < p->nw; w++) {
        for (size_t q = 0; q < kd; q++)
            sum[q] += p->w[w].sum[q];
        for (int j = 0; j < k; j++)
            count[j] += p->w[w].count[j];
    }
    for (int j = 0; j < k; j++) {
        if (count[j] > 0)
            continue;
        int far = -1;
        for (int i = 0; i < p->n; i++)
            if (count[labels[i]] > 1 && dist[i] >= 0 && (far < 0 || dist[i] > dist[far]))
                far = i;
        if (far < 0)
            continue; /* impossible while n >= k, kept for safety */
        const float *xf = p->x + (size_t)far * d;
        int from = labels[far];
        for (int l = 0; l < d; l++) {
            sum[(size_t)from * d + l] -= xf[l];
            sum[(size_t)j * d + l] = xf[l];
        }
        count[from]--;
        count[j] = 1;
        labels[far] = j;
        dist[far] = -1; /* never picked twice */
    }
    for (int j = 0; j < k; j++) {
        if (count[j] == 0)
            continue;
        double inv = 1.0 / (double)count[j];
        for (int l = 0; l < d; l++)
            c[(size_t)j * d + l] = (float)(sum[(size_t)j * d + l] * inv);
    }
}

int kmeans_fit(const float *x, int n, int d, int k, int max_iter, double tol, rng *r,
               kmeans_result *out, kiln_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!x || !r || !out || d < 1 || k < 1 || n < k || max_iter < 1 || !(tol >= 0))
        return kiln_fail(err, KILN_EINVAL,
                         "k-means: need n >= k >= 1, d >= 1, max_iter >= 1, tol >= 0 "
                         "(got n=%d d=%d k=%d max_iter=%d)",
                         n, d, k, max_iter);
    size_t kd = (size_t)k * (size_t)d;
    float *c = malloc(kd * sizeof(float));
    float *cn = malloc((size_t)k * sizeof(float));
    int32_t *labels = malloc((size_t)n * sizeof(int32_t));
    float *dist = malloc((size_t)n * sizeof(float));
    double *sum = malloc(kd * sizeof(double));
    int64_t *count = malloc((size_t)k * sizeof(int64_t));
    pass p;
    int rc = pass_init(&p, x, n, d, k, 1);
    if (rc || !c || !cn || !labels || !dist || !sum || !count) {
        rc = kiln_fail(err, KILN_ENOMEM, "k-means: out of memory for %d x %d rows, k=%d", n, d, k);
        goto done;
    }
    if ((rc = seed_pp(x, n, d, k, r, c, err)) != 0)
        goto done;
    for (int i = 0; i < n; i++)
        labels[i] = -1;
    double prev = 0, wcss = 0;
    int it, final_pass = 1;
    for (it = 0; it < max_iter; it++) {
        int64_t changed = 0;
        centroid_norms(c, k, d, cn);
        wcss = pass_run(&p, c, cn, labels, dist, 1, &changed);
        if (changed == 0) {
            /* Same assignment, same means: c is already the answer and
             * wcss is its cost. */
            final_pass = 0;
            it++;
            break;
        }
        update_centroids(&p, c, labels, dist, sum, count);
        if (it > 0 && fabs(prev - wcss) < tol * prev) {
            it++;
            break;
        }
        prev = wcss;
    }
    if (final_pass) {
        /* The centroids moved after the last assignment: its WCSS is
         * stale, so cost them as kmeans_assign would. */
        p.accumulate = 0;
        centroid_norms(c, k, d, cn);
        wcss = pass_run(&p, c, cn, labels, NULL, 0, NULL);
    }
    out->k = k;
    out->d = d;
    out->centroids = c;
    out->wcss = wcss;
    out->iterations = it;
    c = NULL;
done:
    pass_release(&p);
    free(c);
    free(cn);
    free(labels);
    free(dist);
    free(sum);
    free(count);
    return rc;
}

void kmeans_result_release(kmeans_result *res)
{
    if (!res)
        return;
    free(res->centroids);
    memset(res, 0, sizeof *res);
}

void kmeans_assign(const float *centroids, int k, int d, const float *x, int n, int32_t *labels,
                   double *wcss)
{
    if (wcss)
        *wcss = 0;
    if (!centroids || !x || !labels || k < 1 || d < 1 || n < 1)
        return;
    float *cn = malloc((size_t)k * sizeof(float));
    pass p;
    if (!cn || pass_init(&p, x, n, d, k, 0) != 0) {
        /* No memory for the blocked path: the direct one needs none. */
        free(cn);
        double s = 0;
        for (int i = 0; i < n; i++) {
            const float *xi = x + (size_t)i * d;
            int best = 0;
            float bv = sqdist(xi, centroids, d);
            for (int j = 1; j < k; j++) {
                float v = sqdist(xi, centroids + (size_t)j * d, d);
                if (v < bv) {
                    bv = v;
                    best = j;
                }
            }
            labels[i] = best;
            s += bv;
        }
        if (wcss)
            *wcss = s;
        return;
    }
    centroid_norms(centroids, k, d, cn);
    double s = pass_run(&p, centroids, cn, labels, NULL, 0, NULL);
    if (wcss)
        *wcss = s;
    pass_release(&p);
    free(cn);
}

/* ------------------------------------------------------------ the elbow */

/* The elbow rule. WCSS(k), written W(k), falls steeply while each added
 * centre separates a real group and slowly once it only splits a group.
 * On a log scale (which makes the rule blind to the data's units) let
 *
 *     drop(k) = log W(k) - log W(k+1)        k = 1 .. max_k-1
 *
 * At the true k the drop into k is a merge cost and the drop after k only
 * a split, so their ratio is large; below the true k both are merges and
 * above it both are splits, so it is near 1. The rule picks the k in
 * 2 .. max_k-1 with the largest
 *
 *     score(k) = drop(k-1) / max(drop(k), s)
 *
 * (ties to the smaller k), where s, the curve's noise level, is the lower
 * quartile of all the drops: with max_k at least about 1.5 times the true
 * k plus one, most drops past the true k are splits, so the quartile is a
 * split-sized drop. The floor s stops a next drop that is tiny by chance (a
 * fit that barely beat k-1) from inflating a ratio; the plain "largest
 * second difference" rule was tried and fails on loose groups whose last
 * merge is cheap next to an earlier one. Before scoring, the curve is made
 * non-increasing (a fit that ended above k-1's is replaced by k-1's value)
 * and floored at 1e-12 W(1) so duplicated points (W = 0) have a logarithm.
 * The rule cannot see an elbow at max_k itself (it needs W(max_k+1)); with
 * max_k <= 2 it returns max_k, and with max_k >= 3 it returns 1 only when
 * every row is the same point (W(1) = 0).
 * scratch holds 2 * max_k doubles. */
static int elbow_rule(const double *w, int max_k, double *scratch)
{
    double *drops = scratch, *sorted = scratch + max_k;
    if (max_k <= 2)
        return max_k;
    if (!(w[0] > 0))
        return 1;
    int m = max_k - 1;
    double floor = w[0] * 1e-12, v = w[0], prev_log = 0;
    for (int i = 0; i < max_k; i++) {
        if (w[i] < v)
            v = w[i];
        double lv = log(v > floor ? v : floor);
        if (i > 0)
            drops[i - 1] = prev_log - lv;
        prev_log = lv;
    }
    memcpy(sorted, drops, (size_t)m * sizeof(double));
    for (int i = 1; i < m; i++)
        for (int j = i; j > 0 && sorted[j] < sorted[j - 1]; j--) {
            double t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    double pos = 0.25 * (m - 1);
    int lo = (int)pos;
    double s = lo + 1 < m ? sorted[lo] + (pos - lo) * (sorted[lo + 1] - sorted[lo]) : sorted[lo];
    if (s < 1e-9)
        s = 1e-9;
    int best = 2;
    double best_score = -1;
    for (int k = 2; k <= max_k - 1; k++) {
        double den = drops[k - 1] > s ? drops[k - 1] : s;
        double score = drops[k - 2] / den;
        if (score > best_score) {
            best_score = score;
            best = k;
        }
    }
    return best;
}

int kmeans_elbow(const float *x, int n, int d, int max_k, int max_iter, double tol, rng *r,
                 int *k_out, double *wcss_curve, kiln_error *err)
{
    if (!k_out || !wcss_curve || max_k < 1 || max_k > n)
        return kiln_fail(err, KILN_EINVAL,
                         "k-means elbow: need 1 <= max_k <= n (got max_k=%d, n=%d)", max_k, n);
    double *scratch = malloc(2 * (size_t)max_k * sizeof(double));
    if (!scratch)
        return kiln_fail(err, KILN_ENOMEM, "k-means elbow: out of memory");
    for (int k = 1; k <= max_k; k++) {
        /* k = 1 has one solution (the mean); other k keep the best of a
         * few seedings, since one fit stuck in a poor local minimum bends
         * the curve exactly where the rule looks. */
        int inits = k == 1 ? 1 : ELBOW_INITS;
        for (int t = 0; t < inits; t++) {
            kmeans_result res;
            int rc = kmeans_fit(x, n, d, k, max_iter, tol, r, &res, err);
            if (rc) {
                free(scratch);
                return rc;
            }
            if (t == 0 || res.wcss < wcss_curve[k - 1])
                wcss_curve[k - 1] = res.wcss;
            kmeans_result_release(&res);
        }
    }
    *k_out = elbow_rule(wcss_curve, max_k, scratch);
    free(scratch);
    return 0;
}

/* ------------------------------------------------------------ silhouette */

/* The silhouette of row i is (b - a) / max(a, b), where a is its mean
 * distance to the other rows of its cluster and b the smallest mean
 * distance to the rows of another cluster; a row alone in its cluster
 * scores 0. When n exceeds max_samples, a seeded sample of max_samples
 * rows is drawn and both the scored rows and the rows a and b average over
 * are that sample (the silhouette of the sample, as with scikit-learn's
 * sample_size): exact, O(s^2 d) and bounded. Rows with a label outside
 * [0, k) are left out. Distances come from ||x||^2 - 2 x.y + ||y||^2 with
 * SGEMM, clamped at 0 before the square root. Returns 0 when fewer than two
 * clusters are present or memory runs out. */
double kmeans_silhouette(const float *x, int n, int d, const int32_t *labels, int k,
                         int max_samples, rng *r)
{
    if (!x || !labels || !r || k < 2 || n < 2 || d < 1)
        return 0;
    int s = max_samples > 0 && max_samples < n ? max_samples : n;
    int32_t *idx = malloc((size_t)n * sizeof(int32_t));
    float *xs = malloc((size_t)s * (size_t)d * sizeof(float));
    float *xn = malloc((size_t)s * sizeof(float));
    int32_t *ls = malloc((size_t)s * sizeof(int32_t));
    int64_t *cnt = calloc((size_t)k, sizeof(int64_t));
    double *dsum = malloc((size_t)k * sizeof(double));
    const int blk = 64;
    float *g = malloc((size_t)blk * (size_t)s * sizeof(float));
    double result = 0;
    if (!idx || !xs || !xn || !ls || !cnt || !dsum || !g)
        goto done;
    for (int i = 0; i < n; i++)
        idx[i] = i;
    if (s < n) {
        /* Partial Fisher-Yates: the first s slots become a uniform sample. */
        for (int i = 0; i < s; i++) {
            int j = i + (int)rng_below(r, (uint32_t)(n - i));
            int32_t t = idx[i];
            idx[i] = idx[j];
            idx[j] = t;
        }
    }
    int m = 0;
    for (int i = 0; i < s; i++) {
        int32_t lab = labels[idx[i]];
        if (lab < 0 || lab >= k)
            continue;
        memcpy(xs + (size_t)m * d, x + (size_t)idx[i] * d, (size_t)d * sizeof(float));
        xn[m] = sqnorm(xs + (size_t)m * d, d);
        ls[m] = lab;
        cnt[lab]++;
        m++;
    }
    int present = 0;
    for (int j = 0; j < k; j++)
        present += cnt[j] > 0;
    if (present < 2)
        goto done;
    double total = 0;
    for (int i0 = 0; i0 < m; i0 += blk) {
        int b = m - i0 < blk ? m - i0 : blk;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, m, d, -2.0f, xs + (size_t)i0 * d, d,
                    xs, d, 0.0f, g, m);
        for (int q = 0; q < b; q++) {
            int i = i0 + q;
            int own = ls[i];
            if (cnt[own] < 2)
                continue; /* a singleton scores 0 */
            memset(dsum, 0, (size_t)k * sizeof(double));
            const float *gr = g + (size_t)q * m;
            for (int j = 0; j < m; j++) {
                if (j == i)
                    continue;
                float v = xn[i] + xn[j] + gr[j];
                dsum[ls[j]] += v > 0 ? sqrt((double)v) : 0.0;
            }
            double a = dsum[own] / (double)(cnt[own] - 1);
            double bmin = INFINITY;
            for (int j = 0; j < k; j++) {
                if (j == own || cnt[j] == 0)
                    continue;
                double mean = dsum[j] / (double)cnt[j];
                if (mean < bmin)
                    bmin = mean;
            }
            double mx = a > bmin ? a : bmin;
            if (mx > 0)
                total += (bmin - a) / mx;
        }
    }
    result = total / (double)m;
done:
    free(idx);
    free(xs);
    free(xn);
    free(ls);
    free(cnt);
    free(dsum);
    free(g);
    return result;
}
