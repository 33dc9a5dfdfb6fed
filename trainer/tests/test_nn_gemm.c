/* test_nn_gemm: the engine's SGEMM against a double-precision triple loop,
 * for every operand layout the layer kernels use and for sizes that are
 * not multiples of the 6x16 tile or of the cache blocks. */
#include <math.h>
#include <stdlib.h>

#include "ktest.h"
#include "nn_gemm.h"
#include "rng.h"

static void check_shape(int M, int N, int K, int ta, int tb, int acc, float *work)
{
    rng r;
    rng_seed(&r, (uint64_t)(M * 131 + N * 17 + K));
    float *a = malloc(sizeof(float) * (size_t)M * K), *b = malloc(sizeof(float) * (size_t)K * N);
    int ldc = N + 3; /* a leading dimension wider than N */
    float *c = malloc(sizeof(float) * (size_t)M * ldc);
    double *want = malloc(sizeof(double) * (size_t)M * N);
    for (int i = 0; i < M * K; i++)
        a[i] = rng_normal(&r);
    for (int i = 0; i < K * N; i++)
        b[i] = rng_normal(&r);
    for (int i = 0; i < M * ldc; i++)
        c[i] = (float)(i % 5);
    /* A stored (M, K) or transposed (K, M); B stored (K, N) or (N, K) */
    ptrdiff_t rsa = ta ? 1 : K, csa = ta ? M : 1, rsb = tb ? 1 : N, csb = tb ? K : 1;
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = acc ? (double)c[i * ldc + j] : 0.0;
            for (int k = 0; k < K; k++)
                s += (double)a[i * rsa + k * csa] * b[k * rsb + j * csb];
            want[i * N + j] = s;
        }
    nn_gemm(M, N, K, a, rsa, csa, b, rsb, csb, c, ldc, acc, work);
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++)
            worst = fmax(worst, fabs(c[i * ldc + j] - want[i * N + j]) / (1.0 + sqrt((double)K)));
        for (int j = N; j < ldc; j++) /* padding columns untouched */
            KT_CHECK(c[i * ldc + j] == (float)((i * ldc + j) % 5));
    }
    if (!(worst < 1e-5))
        fprintf(stderr, "M%d N%d K%d ta%d tb%d acc%d: err %g\n", M, N, K, ta, tb, acc, worst);
    KT_CHECK(worst < 1e-5);
    free(a);
    free(b);
    free(c);
    free(want);
}

static void test_gemm_shapes(void)
{
    float *work = malloc(NN_GEMM_WORK * sizeof(float));
    const int shapes[][3] = {{1, 1, 1},    {6, 16, 8},    {7, 17, 9},   {13, 5, 300},
                             {64, 33, 20}, {100, 530, 7}, {5, 40, 513}, {200, 10, 3}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int acc = 0; acc < 2; acc++)
                    check_shape(shapes[s][0], shapes[s][1], shapes[s][2], ta, tb, acc, work);
    free(work);
}

static void test_gemm_k_zero(void)
{
    float work[NN_GEMM_WORK / 64 + 64]; /* never touched when K == 0 */
    float c[4] = {1, 2, 3, 4};
    nn_gemm(2, 2, 0, NULL, 0, 0, NULL, 0, 0, c, 2, 1, work);
    KT_CHECK(c[0] == 1 && c[3] == 4);
    nn_gemm(2, 2, 0, NULL, 0, 0, NULL, 0, 0, c, 2, 0, work);
    KT_CHECK(c[0] == 0 && c[3] == 0);
}

int main(void)
{
    KT_RUN(test_gemm_shapes);
    KT_RUN(test_gemm_k_zero);
    return KT_DONE();
}
