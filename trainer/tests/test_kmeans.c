/* Tests for kmeans: the elbow picks the true k on generated Gaussian blobs
 * (k = 2..6, tight and looser spreads, 2 to 10 dimensions, several seeds),
 * fitted centroids recover blob centres, WCSS never rises from one Lloyd
 * iteration to the next, a seed reproduces a fit bit for bit (also with two
 * worker threads), the blocked SGEMM assignment matches a direct reference,
 * duplicated points (empty clusters) are handled, bad arguments are
 * rejected, and the silhouette matches a hand-computed example. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kmeans.h"
#include "ktest.h"

/* ------------------------------------------------------------ data */

typedef struct blobs {
    int n, d, k;
    float *x;       /* (n, d) */
    float *centres; /* (k, d) */
    int32_t *label; /* (n) */
} blobs;

/* k blobs of `per` points with standard deviation `spread` around centres
 * drawn uniformly in [-10, 10]^d, redrawn until every pair of centres is at
 * least min_sep apart, so the groups are well separated by construction. */
static void make_blobs(blobs *b, uint64_t seed, int k, int d, int per, float spread, float min_sep)
{
    rng r;
    rng_seed(&r, seed);
    b->n = k * per;
    b->d = d;
    b->k = k;
    b->x = malloc(sizeof(float) * (size_t)b->n * d);
    b->centres = malloc(sizeof(float) * (size_t)k * d);
    b->label = malloc(sizeof(int32_t) * (size_t)b->n);
    for (int j = 0; j < k; j++) {
        for (int tries = 0; tries < 10000; tries++) {
            float *c = b->centres + (size_t)j * d;
            for (int l = 0; l < d; l++)
                c[l] = 20 * rng_uniform(&r) - 10;
            int ok = 1;
            for (int q = 0; q < j && ok; q++) {
                double s = 0;
                for (int l = 0; l < d; l++) {
                    double t = c[l] - b->centres[(size_t)q * d + l];
                    s += t * t;
                }
                ok = sqrt(s) >= min_sep;
            }
            if (ok)
                break;
        }
    }
    for (int i = 0; i < b->n; i++) {
        int j = i % k;
        b->label[i] = j;
        for (int l = 0; l < d; l++)
            b->x[(size_t)i * d + l] = b->centres[(size_t)j * d + l] + spread * rng_normal(&r);
    }
}

static void free_blobs(blobs *b)
{
    free(b->x);
    free(b->centres);
    free(b->label);
}

static double dist2(const float *a, const float *b, int d)
{
    double s = 0;
    for (int l = 0; l < d; l++) {
        double t = (double)a[l] - b[l];
        s += t * t;
    }
    return s;
}

/* ------------------------------------------------------------ elbow */

static void test_elbow_picks_true_k(void)
{
    static const int dims[] = {2, 3, 5, 10};
    static const float spreads[] = {0.3f, 1.0f, 1.5f};
    int cases = 0, right = 0;
    for (int k = 2; k <= 6; k++)
        for (size_t s = 0; s < sizeof spreads / sizeof *spreads; s++)
            for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
                int d = dims[di];
                uint64_t seed = 1000 + 97 * (uint64_t)k + 13 * s + di;
                blobs b;
                make_blobs(&b, seed, k, d, 40, spreads[s], 7.0f);
                int max_k = (k + d) % 2 ? 12 : 10;
                double curve[12];
                int got = -1;
                rng r;
                rng_seed(&r, seed * 7 + 1);
                kiln_error err = {0};
                KT_EQ_INT(kmeans_elbow(b.x, b.n, d, max_k, 100, 1e-4, &r, &got, curve, &err), 0);
                cases++;
                if (got == k)
                    right++;
                else
                    fprintf(stderr, "elbow: true k %d, d %d, spread %.1f, seed %llu: chose %d\n", k,
                            d, spreads[s], (unsigned long long)seed, got);
                /* The curve is a real WCSS curve: positive and, with
                 * k-means++, non-increasing up to the true k. */
                for (int q = 1; q < k; q++)
                    KT_CHECK(curve[q] < curve[q - 1]);
                free_blobs(&b);
            }
    KT_EQ_INT(right, cases);
}

/* Dense blobs with no spread at all: W(true k) is 0, which the rule must
 * survive (logarithm floor). Also max_k at the edges. */
static void test_elbow_degenerate(void)
{
    blobs b;
    make_blobs(&b, 7, 3, 2, 20, 0.0f, 5.0f);
    double curve[8];
    int got = -1;
    rng r;
    rng_seed(&r, 3);
    KT_EQ_INT(kmeans_elbow(b.x, b.n, 2, 8, 100, 1e-4, &r, &got, curve, NULL), 0);
    KT_EQ_INT(got, 3);
    KT_NEAR(curve[2], 0.0, 1e-6);
    KT_EQ_INT(kmeans_elbow(b.x, b.n, 2, 1, 100, 1e-4, &r, &got, curve, NULL), 0);
    KT_EQ_INT(got, 1);
    /* Every row the same point: one cluster. */
    for (int i = 0; i < b.n * 2; i++)
        b.x[i] = 1.5f;
    KT_EQ_INT(kmeans_elbow(b.x, b.n, 2, 8, 100, 1e-4, &r, &got, curve, NULL), 0);
    KT_EQ_INT(got, 1);
    KT_NEAR(curve[0], 0.0, 0);
    kiln_error err = {0};
    KT_EQ_INT(kmeans_elbow(b.x, b.n, 2, b.n + 1, 100, 1e-4, &r, &got, curve, &err), KILN_EINVAL);
    KT_STR_CONTAINS(err.msg, "max_k");
    free_blobs(&b);
}

/* ------------------------------------------------------------ fitting */

static void test_recovers_centres(void)
{
    blobs b;
    make_blobs(&b, 42, 4, 3, 200, 0.5f, 6.0f);
    rng r;
    rng_seed(&r, 5);
    kmeans_result res;
    kiln_error err = {0};
    KT_EQ_INT(kmeans_fit(b.x, b.n, 3, 4, 300, 1e-6, &r, &res, &err), 0);
    KT_EQ_INT(res.k, 4);
    KT_EQ_INT(res.d, 3);
    KT_CHECK(res.iterations >= 1 && res.iterations <= 300);
    /* Each true centre has exactly one fitted centroid nearby: with 200
     * points of sd 0.5 the mean is off by about 0.5/sqrt(200) per axis. */
    int used[4] = {0};
    for (int j = 0; j < 4; j++) {
        int best = 0;
        for (int q = 1; q < 4; q++)
            if (dist2(b.centres + j * 3, res.centroids + q * 3, 3) <
                dist2(b.centres + j * 3, res.centroids + best * 3, 3))
                best = q;
        KT_CHECK(sqrt(dist2(b.centres + j * 3, res.centroids + best * 3, 3)) < 0.2);
        used[best]++;
    }
    for (int q = 0; q < 4; q++)
        KT_EQ_INT(used[q], 1);
    /* Every point lands with its own blob, and the WCSS is about
     * n * d * sd^2. */
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)b.n);
    double w = 0;
    kmeans_assign(res.centroids, 4, 3, b.x, b.n, lab, &w);
    int map[4] = {-1, -1, -1, -1}, pure = 1;
    for (int i = 0; i < b.n; i++) {
        if (map[b.label[i]] < 0)
            map[b.label[i]] = lab[i];
        pure &= map[b.label[i]] == lab[i];
    }
    KT_CHECK(pure);
    KT_NEAR(w, res.wcss, 1e-6 * res.wcss);
    KT_NEAR(res.wcss / (b.n * 3 * 0.25), 1.0, 0.15);
    free(lab);
    kmeans_result_release(&res);
    free_blobs(&b);
}

/* fit(max_iter = t) returns the centroids after t Lloyd iterations (same
 * seed, same seeding; tol 0 never stops early), costed by a final
 * assignment, so its WCSS traces the iterations. Overlapping blobs with the
 * wrong k make the iterations many and the moves real. */
static void test_wcss_never_increases(void)
{
    blobs b;
    make_blobs(&b, 9, 5, 4, 80, 2.5f, 3.0f);
    double prev = INFINITY;
    int decreases = 0, last_iters = 0;
    for (int t = 1; t <= 30; t++) {
        rng r;
        rng_seed(&r, 11);
        kmeans_result res;
        KT_EQ_INT(kmeans_fit(b.x, b.n, 4, 7, t, 0.0, &r, &res, NULL), 0);
        KT_CHECK(res.wcss <= prev * (1 + 1e-7)); /* float rounding only */
        if (res.wcss < prev * (1 - 1e-6))
            decreases++;
        prev = res.wcss;
        last_iters = res.iterations;
        kmeans_result_release(&res);
    }
    KT_CHECK(decreases >= 4);
    KT_CHECK(last_iters >= 5);
    free_blobs(&b);
}

static int same_fit(const float *x, int n, int d, int k, uint64_t seed, kmeans_result *a,
                    kmeans_result *b)
{
    rng r;
    rng_seed(&r, seed);
    if (kmeans_fit(x, n, d, k, 300, 1e-4, &r, a, NULL))
        return 0;
    rng_seed(&r, seed);
    if (kmeans_fit(x, n, d, k, 300, 1e-4, &r, b, NULL))
        return 0;
    return 1;
}

static void test_deterministic(void)
{
    blobs b;
    make_blobs(&b, 3, 6, 5, 100, 2.0f, 4.0f);
    kmeans_result a, c;
    KT_CHECK(same_fit(b.x, b.n, 5, 6, 77, &a, &c));
    KT_CHECK(!memcmp(a.centroids, c.centroids, sizeof(float) * 6 * 5));
    KT_CHECK(a.wcss == c.wcss);
    KT_EQ_INT(a.iterations, c.iterations);
    kmeans_result_release(&a);
    kmeans_result_release(&c);
    free_blobs(&b);

    /* Enough rows for two workers: the parallel path is deterministic for
     * a thread count and agrees with one thread up to rounding. */
    int saved = openblas_get_num_threads();
    make_blobs(&b, 4, 5, 8, 3000, 1.0f, 6.0f);
    openblas_set_num_threads(2);
    KT_CHECK(same_fit(b.x, b.n, 8, 5, 21, &a, &c));
    KT_CHECK(!memcmp(a.centroids, c.centroids, sizeof(float) * 5 * 8));
    KT_CHECK(a.wcss == c.wcss);
    kmeans_result one;
    rng r;
    rng_seed(&r, 21);
    openblas_set_num_threads(1);
    KT_EQ_INT(kmeans_fit(b.x, b.n, 8, 5, 300, 1e-4, &r, &one, NULL), 0);
    openblas_set_num_threads(saved);
    double maxdiff = 0;
    for (int q = 0; q < 5 * 8; q++)
        maxdiff = fmax(maxdiff, fabs(one.centroids[q] - a.centroids[q]));
    KT_CHECK(maxdiff < 1e-3);
    KT_NEAR(one.wcss, a.wcss, 1e-5 * a.wcss);
    kmeans_result_release(&one);
    kmeans_result_release(&a);
    kmeans_result_release(&c);
    free_blobs(&b);
}

/* The SGEMM assignment against a direct double-precision reference on
 * random data: same nearest centroid except at near-ties, same WCSS. */
static void test_assign_matches_reference(void)
{
    const int n = 1500, d = 37, k = 9;
    rng r;
    rng_seed(&r, 8);
    float *x = malloc(sizeof(float) * n * d), *c = malloc(sizeof(float) * k * d);
    int32_t *lab = malloc(sizeof(int32_t) * n);
    for (int i = 0; i < n * d; i++)
        x[i] = 3 + rng_normal(&r);
    for (int i = 0; i < k * d; i++)
        c[i] = 3 + rng_normal(&r);
    double w = 0, ref = 0;
    kmeans_assign(c, k, d, x, n, lab, &w);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        double best = INFINITY;
        for (int j = 0; j < k; j++)
            best = fmin(best, dist2(x + (size_t)i * d, c + (size_t)j * d, d));
        ref += best;
        double got = dist2(x + (size_t)i * d, c + (size_t)lab[i] * d, d);
        if (lab[i] < 0 || lab[i] >= k || got > best * (1 + 1e-5))
            bad++;
    }
    KT_EQ_INT(bad, 0);
    KT_NEAR(w, ref, 1e-5 * ref);
    free(x);
    free(c);
    free(lab);
}

/* Six copies of three points, k = 5: seeding runs out of distinct points
 * and Lloyd meets duplicate centroids, so clusters empty out and must be
 * re-seeded. The fit must still succeed with zero cost and every centroid
 * on a data point. */
static void test_duplicates_and_empty_clusters(void)
{
    float x[18 * 2];
    for (int i = 0; i < 18; i++) {
        x[2 * i] = (float)(i % 3) * 4;
        x[2 * i + 1] = (float)(i % 3 == 2);
    }
    rng r;
    rng_seed(&r, 1);
    kmeans_result res;
    KT_EQ_INT(kmeans_fit(x, 18, 2, 5, 50, 1e-4, &r, &res, NULL), 0);
    KT_NEAR(res.wcss, 0.0, 1e-9);
    for (int j = 0; j < 5; j++) {
        int on_point = 0;
        for (int i = 0; i < 3; i++)
            on_point |= dist2(res.centroids + 2 * j, x + 2 * i, 2) == 0;
        KT_CHECK(on_point);
    }
    kmeans_result_release(&res);
    /* k = n: every point its own cluster. */
    rng_seed(&r, 2);
    KT_EQ_INT(kmeans_fit(x, 3, 2, 3, 50, 1e-4, &r, &res, NULL), 0);
    KT_NEAR(res.wcss, 0.0, 1e-9);
    kmeans_result_release(&res);
}

static void test_rejects_bad_arguments(void)
{
    float x[4] = {0, 1, 2, 3};
    rng r;
    rng_seed(&r, 1);
    kmeans_result res;
    kiln_error err = {0};
    KT_EQ_INT(kmeans_fit(x, 2, 2, 3, 10, 1e-4, &r, &res, &err), KILN_EINVAL);
    KT_STR_CONTAINS(err.msg, "k=3");
    KT_CHECK(res.centroids == NULL);
    KT_EQ_INT(kmeans_fit(x, 2, 2, 0, 10, 1e-4, &r, &res, NULL), KILN_EINVAL);
    KT_EQ_INT(kmeans_fit(x, 2, 2, 1, 0, 1e-4, &r, &res, NULL), KILN_EINVAL);
    KT_EQ_INT(kmeans_fit(x, 2, 2, 1, 10, -1, &r, &res, NULL), KILN_EINVAL);
    KT_EQ_INT(kmeans_fit(NULL, 2, 2, 1, 10, 1e-4, &r, &res, NULL), KILN_EINVAL);
    /* k = 1 is the mean. */
    KT_EQ_INT(kmeans_fit(x, 2, 2, 1, 10, 1e-4, &r, &res, NULL), 0);
    KT_NEAR(res.centroids[0], 1, 1e-6);
    KT_NEAR(res.centroids[1], 2, 1e-6);
    KT_NEAR(res.wcss, 4, 1e-6);
    kmeans_result_release(&res);
}

/* ------------------------------------------------------------ silhouette */

/* 1-D points, clusters {0, 2} and {10, 14}:
 *   0: a = 2, b = (10 + 14) / 2 = 12, s = 10/12
 *   2: a = 2, b = (8 + 12) / 2 = 10,  s = 8/10
 *  10: a = 4, b = (10 + 8) / 2 = 9,   s = 5/9
 *  14: a = 4, b = (14 + 12) / 2 = 13, s = 9/13
 * Adding a singleton {30} (cluster 2) scores 0 there and leaves the other
 * four unchanged (30 is farther than their own b), so the mean is the same
 * sum over 5. */
static void test_silhouette_hand_example(void)
{
    float x[] = {0, 2, 10, 14, 30};
    int32_t lab[] = {0, 0, 1, 1, 2};
    rng r;
    rng_seed(&r, 1);
    double sum = 10.0 / 12 + 0.8 + 5.0 / 9 + 9.0 / 13;
    KT_NEAR(kmeans_silhouette(x, 4, 1, lab, 2, 100, &r), sum / 4, 1e-6);
    KT_NEAR(kmeans_silhouette(x, 5, 1, lab, 3, 100, &r), sum / 5, 1e-6);
    /* A label outside [0, k) leaves its row out. */
    KT_NEAR(kmeans_silhouette(x, 5, 1, lab, 2, 100, &r), sum / 4, 1e-6);
    /* One cluster or k < 2: 0. */
    int32_t one[] = {0, 0, 0, 0};
    KT_NEAR(kmeans_silhouette(x, 4, 1, one, 2, 100, &r), 0.0, 0);
    KT_NEAR(kmeans_silhouette(x, 4, 1, lab, 1, 100, &r), 0.0, 0);
    /* The same points in 2-D, rotated by a 3-4-5 triangle: same value. */
    float x2[10];
    for (int i = 0; i < 5; i++) {
        x2[2 * i] = 0.6f * x[i];
        x2[2 * i + 1] = 0.8f * x[i];
    }
    KT_NEAR(kmeans_silhouette(x2, 5, 2, lab, 3, 100, &r), sum / 5, 1e-4);
}

static void test_silhouette_sampled(void)
{
    blobs b;
    make_blobs(&b, 12, 3, 4, 400, 0.5f, 8.0f);
    rng r;
    rng_seed(&r, 4);
    double full = kmeans_silhouette(b.x, b.n, 4, b.label, 3, 0, &r);
    rng_seed(&r, 4);
    double s1 = kmeans_silhouette(b.x, b.n, 4, b.label, 3, 300, &r);
    rng_seed(&r, 4);
    double s2 = kmeans_silhouette(b.x, b.n, 4, b.label, 3, 300, &r);
    KT_CHECK(s1 == s2);
    KT_CHECK(full > 0.8 && full < 1.0);
    KT_NEAR(s1, full, 0.02);
    /* Shuffled labels: no structure, silhouette near or below 0. */
    int32_t *bad = malloc(sizeof(int32_t) * (size_t)b.n);
    for (int i = 0; i < b.n; i++)
        bad[i] = (int32_t)rng_below(&r, 3);
    KT_CHECK(kmeans_silhouette(b.x, b.n, 4, bad, 3, 300, &r) < 0.05);
    free(bad);
    free_blobs(&b);
}

int main(void)
{
    KT_RUN(test_elbow_picks_true_k);
    KT_RUN(test_elbow_degenerate);
    KT_RUN(test_recovers_centres);
    KT_RUN(test_wcss_never_increases);
    KT_RUN(test_deterministic);
    KT_RUN(test_assign_matches_reference);
    KT_RUN(test_duplicates_and_empty_clusters);
    KT_RUN(test_rejects_bad_arguments);
    KT_RUN(test_silhouette_hand_example);
    KT_RUN(test_silhouette_sampled);
    return KT_DONE();
}
