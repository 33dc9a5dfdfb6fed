/* kmeans: k-means clustering (k-means++ seeding, Lloyd iterations until
 * the assignments stop changing or the relative WCSS change is below tol),
 * the elbow rule that picks k when the user gives none, and the silhouette
 * score. Distances use ||x||^2 - 2 x.c + ||c||^2 with SGEMM for x.c.
 * Deterministic for a seed and thread count. Caller owns all buffers. */
#ifndef KILN_KMEANS_H
#define KILN_KMEANS_H

#include <stdint.h>

#include "kiln_err.h"
#include "rng.h"

typedef struct kmeans_result {
    int k, d;
    float *centroids; /* (k, d), owned: free() */
    double wcss;      /* within-cluster sum of squares */
    int iterations;
} kmeans_result;

/* Fits k clusters on x (n, d). n >= k >= 1. */
int kmeans_fit(const float *x, int n, int d, int k, int max_iter, double tol, rng *r,
               kmeans_result *out, kiln_error *err);
void kmeans_result_release(kmeans_result *res);

/* Nearest centroid for each row; wcss (may be NULL) gets the sum of
 * squared distances. */
void kmeans_assign(const float *centroids, int k, int d, const float *x, int n, int32_t *labels,
                   double *wcss);

/* Fits k = 1..max_k, fills wcss_curve[0..max_k) and returns the elbow k in
 * *k_out (the rule is documented in kmeans.c). */
int kmeans_elbow(const float *x, int n, int d, int max_k, int max_iter, double tol, rng *r,
                 int *k_out, double *wcss_curve, kiln_error *err);

/* Mean silhouette over at most max_samples rows (a seeded sample when n is
 * larger); 0 when k < 2. */
double kmeans_silhouette(const float *x, int n, int d, const int32_t *labels, int k,
                         int max_samples, rng *r);

#endif
