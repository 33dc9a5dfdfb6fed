/* nn_gemm: the engine's single-threaded SGEMM for the small, oddly shaped
 * products of a training step (64x784x128, 12544x16x72, ...). A is read
 * in place through strides; B is read in place when its rows are
 * contiguous and its width a multiple of 8, otherwise packed into
 * zero-padded 16-column panels in a caller-given workspace; 6x16 and 6x8
 * AVX2/FMA micro-kernels compute the tiles (a portable C kernel when the
 * CPU lacks AVX2/FMA). It exists because OpenBLAS is slow on such shapes
 * when two threads call it at once, and because a kernel we own gives the
 * same bits for the same shapes on every call. Reentrant: all state is in
 * the arguments. */
#ifndef KILN_NN_GEMM_H
#define KILN_NN_GEMM_H

#include <stddef.h>

/* Floats of workspace nn_gemm needs. */
#define NN_GEMM_WORK ((size_t)NN_GEMM_KC * NN_GEMM_NC + 64)
#define NN_GEMM_MC   96
#define NN_GEMM_KC   256
#define NN_GEMM_NC   512

/* C (M, N) row-major with leading dimension ldc gets A B (accumulate == 0)
 * or C + A B (accumulate != 0). Element (i, k) of A is a[i*rsa + k*csa]
 * and element (k, j) of B is b[k*rsb + j*csb], so transposed operands are
 * just other strides. work: NN_GEMM_WORK floats. */
void nn_gemm(int M, int N, int K, const float *a, ptrdiff_t rsa, ptrdiff_t csa, const float *b,
             ptrdiff_t rsb, ptrdiff_t csb, float *c, int ldc, int accumulate, float *work);

#endif
