/* nn_gemm: packed SGEMM with a 6x16 micro-kernel (see nn_gemm.h). */
#include "nn_gemm.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_X86_KERNEL 1
#endif

#define MR 6
#define NR 16

/* Packs k x n of B into NR-column panels, k-major, zero-padded. */
static void pack_b(float *dst, const float *b, ptrdiff_t rsb, ptrdiff_t csb, int k, int n)
{
    for (int j0 = 0; j0 < n; j0 += NR) {
        int nr = n - j0 < NR ? n - j0 : NR;
        for (int p = 0; p < k; p++) {
            const float *src = b + (ptrdiff_t)p * rsb + (ptrdiff_t)j0 * csb;
            int j = 0;
            if (csb == 1 && nr == NR) {
                memcpy(dst, src, NR * sizeof(float));
            } else {
                for (; j < nr; j++)
                    dst[j] = src[(ptrdiff_t)j * csb];
                for (; j < NR; j++)
                    dst[j] = 0.0f;
            }
            dst += NR;
        }
    }
}

/* Writes an MR x NR tile (held in t) into C: only the first mr x nr
 * entries, added to C when add != 0. */
static void store_tile(float *c, int ldc, const float *t, int mr, int nr, int add)
{
    for (int r = 0; r < mr; r++) {
        float *cr = c + (ptrdiff_t)r * ldc;
        if (add)
            for (int j = 0; j < nr; j++)
                cr[j] += t[r * NR + j];
        else
            for (int j = 0; j < nr; j++)
                cr[j] = t[r * NR + j];
    }
}

/* Portable kernel: rows past mr of A are not read. */
static void kernel_c(int k, const float *a, ptrdiff_t rsa, ptrdiff_t csa, int mr, const float *bp,
                     float *t)
{
    float acc[MR * NR] = {0};
    for (int p = 0; p < k; p++)
        for (int r = 0; r < mr; r++)
            for (int j = 0; j < NR; j++)
                acc[r * NR + j] += a[(ptrdiff_t)r * rsa + (ptrdiff_t)p * csa] * bp[p * NR + j];
    memcpy(t, acc, sizeof acc);
}

#ifdef HAVE_X86_KERNEL
/* A is read in place (element (r, p) at a[r*rsa + p*csa]): the products
 * here have K or M small enough that packing A costs more than it saves.
 * Rows of a short tile (mr < MR) repeat row 0 instead of reading past A. */
/* noinline: inlined into nn_gemm's loops it ran short of registers and
 * spilled its row pointers inside the k loop */
__attribute__((target("avx2,fma"), noinline)) static void
kernel_avx2(int k, const float *a, ptrdiff_t rsa, ptrdiff_t csa, const float *bp, ptrdiff_t bstride,
            float *c, int ldc, int mr, int nr, int add)
{
    const float *a0 = a, *a1 = a + (mr > 1 ? rsa : 0), *a2 = a + (mr > 2 ? 2 * rsa : 0);
    const float *a3 = a + (mr > 3 ? 3 * rsa : 0), *a4 = a + (mr > 4 ? 4 * rsa : 0);
    const float *a5 = a + (mr > 5 ? 5 * rsa : 0);
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (ptrdiff_t off = 0, end = (ptrdiff_t)k * csa; off != end; off += csa) {
        __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
        __m256 x;
        x = _mm256_broadcast_ss(a0 + off);
        c00 = _mm256_fmadd_ps(x, b0, c00);
        c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(a1 + off);
        c10 = _mm256_fmadd_ps(x, b0, c10);
        c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(a2 + off);
        c20 = _mm256_fmadd_ps(x, b0, c20);
        c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(a3 + off);
        c30 = _mm256_fmadd_ps(x, b0, c30);
        c31 = _mm256_fmadd_ps(x, b1, c31);
        x = _mm256_broadcast_ss(a4 + off);
        c40 = _mm256_fmadd_ps(x, b0, c40);
        c41 = _mm256_fmadd_ps(x, b1, c41);
        x = _mm256_broadcast_ss(a5 + off);
        c50 = _mm256_fmadd_ps(x, b0, c50);
        c51 = _mm256_fmadd_ps(x, b1, c51);
        bp += bstride;
    }
    if (mr == MR && nr == NR) {
#define STORE_ROW(r, v0, v1)                                                                       \
    do {                                                                                           \
        float *cr = c + (ptrdiff_t)(r)*ldc;                                                        \
        if (add) {                                                                                 \
            _mm256_storeu_ps(cr, _mm256_add_ps(v0, _mm256_loadu_ps(cr)));                          \
            _mm256_storeu_ps(cr + 8, _mm256_add_ps(v1, _mm256_loadu_ps(cr + 8)));                  \
        } else {                                                                                   \
            _mm256_storeu_ps(cr, v0);                                                              \
            _mm256_storeu_ps(cr + 8, v1);                                                          \
        }                                                                                          \
    } while (0)
        STORE_ROW(0, c00, c01);
        STORE_ROW(1, c10, c11);
        STORE_ROW(2, c20, c21);
        STORE_ROW(3, c30, c31);
        STORE_ROW(4, c40, c41);
        STORE_ROW(5, c50, c51);
#undef STORE_ROW
        return;
    }
    float t[MR * NR] __attribute__((aligned(32)));
    _mm256_store_ps(t + 0, c00);
    _mm256_store_ps(t + 8, c01);
    _mm256_store_ps(t + 16, c10);
    _mm256_store_ps(t + 24, c11);
    _mm256_store_ps(t + 32, c20);
    _mm256_store_ps(t + 40, c21);
    _mm256_store_ps(t + 48, c30);
    _mm256_store_ps(t + 56, c31);
    _mm256_store_ps(t + 64, c40);
    _mm256_store_ps(t + 72, c41);
    _mm256_store_ps(t + 80, c50);
    _mm256_store_ps(t + 88, c51);
    store_tile(c, ldc, t, mr, nr, add);
}

/* The same for panels at most 8 columns wide (first convolutions have 8
 * filters): one vector per row, half the work of a padded 16-wide tile. */
__attribute__((target("avx2,fma"), noinline)) static void
kernel8_avx2(int k, const float *a, ptrdiff_t rsa, ptrdiff_t csa, const float *bp,
             ptrdiff_t bstride, float *c, int ldc, int mr, int nr, int add)
{
    const float *a0 = a, *a1 = a + (mr > 1 ? rsa : 0), *a2 = a + (mr > 2 ? 2 * rsa : 0);
    const float *a3 = a + (mr > 3 ? 3 * rsa : 0), *a4 = a + (mr > 4 ? 4 * rsa : 0);
    const float *a5 = a + (mr > 5 ? 5 * rsa : 0);
    __m256 c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps(), c2 = _mm256_setzero_ps();
    __m256 c3 = _mm256_setzero_ps(), c4 = _mm256_setzero_ps(), c5 = _mm256_setzero_ps();
    for (ptrdiff_t off = 0, end = (ptrdiff_t)k * csa; off != end; off += csa) {
        __m256 b0 = _mm256_loadu_ps(bp);
        c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + off), b0, c0);
        c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(a1 + off), b0, c1);
        c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(a2 + off), b0, c2);
        c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(a3 + off), b0, c3);
        c4 = _mm256_fmadd_ps(_mm256_broadcast_ss(a4 + off), b0, c4);
        c5 = _mm256_fmadd_ps(_mm256_broadcast_ss(a5 + off), b0, c5);
        bp += bstride;
    }
    float t[MR * NR] __attribute__((aligned(32)));
    _mm256_store_ps(t + 0 * NR, c0);
    _mm256_store_ps(t + 1 * NR, c1);
    _mm256_store_ps(t + 2 * NR, c2);
    _mm256_store_ps(t + 3 * NR, c3);
    _mm256_store_ps(t + 4 * NR, c4);
    _mm256_store_ps(t + 5 * NR, c5);
    if (nr == 8) {
        for (int r = 0; r < mr; r++) {
            float *cr = c + (ptrdiff_t)r * ldc;
            __m256 v = _mm256_load_ps(t + r * NR);
            if (add)
                v = _mm256_add_ps(v, _mm256_loadu_ps(cr));
            _mm256_storeu_ps(cr, v);
        }
        return;
    }
    store_tile(c, ldc, t, mr, nr, add);
}

static int have_avx2(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
static int have_avx2(void)
{
    return 0;
}
#endif

void nn_gemm(int M, int N, int K, const float *a, ptrdiff_t rsa, ptrdiff_t csa, const float *b,
             ptrdiff_t rsb, ptrdiff_t csb, float *c, int ldc, int accumulate, float *work)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        if (!accumulate)
            for (int i = 0; i < M; i++)
                memset(c + (ptrdiff_t)i * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    const int avx2 = have_avx2();
    /* B is used in place when its rows are contiguous and every panel is
     * 16 or (the last) 8 columns wide; otherwise panels are packed, with
     * zero padding, into 64-byte aligned workspace. */
    const int direct = avx2 && csb == 1 && N % 8 == 0;
    float *bpack = (float *)(((uintptr_t)work + 63) & ~(uintptr_t)63);
    for (int jc = 0; jc < N; jc += NN_GEMM_NC) {
        int nc = N - jc < NN_GEMM_NC ? N - jc : NN_GEMM_NC;
        for (int pc = 0; pc < K; pc += NN_GEMM_KC) {
            int kc = K - pc < NN_GEMM_KC ? K - pc : NN_GEMM_KC;
            int add = accumulate || pc > 0;
            const float *bsrc = b + (ptrdiff_t)pc * rsb + (ptrdiff_t)jc * csb;
            if (!direct)
                pack_b(bpack, bsrc, rsb, csb, kc, nc);
            for (int ic = 0; ic < M; ic += NN_GEMM_MC) {
                int mc = M - ic < NN_GEMM_MC ? M - ic : NN_GEMM_MC;
                for (int jr = 0; jr < nc; jr += NR) {
                    int nr = nc - jr < NR ? nc - jr : NR;
                    const float *bp = direct ? bsrc + jr : bpack + (ptrdiff_t)jr * kc;
                    ptrdiff_t bstride = direct ? rsb : NR;
                    for (int ir = 0; ir < mc; ir += MR) {
                        int mr = mc - ir < MR ? mc - ir : MR;
                        const float *ap = a + (ptrdiff_t)(ic + ir) * rsa + (ptrdiff_t)pc * csa;
                        float *cp = c + (ptrdiff_t)(ic + ir) * ldc + jc + jr;
#ifdef HAVE_X86_KERNEL
                        if (avx2) {
                            if (nr <= 8)
                                kernel8_avx2(kc, ap, rsa, csa, bp, bstride, cp, ldc, mr, nr, add);
                            else
                                kernel_avx2(kc, ap, rsa, csa, bp, bstride, cp, ldc, mr, nr, add);
                            continue;
                        }
#endif
                        float t[MR * NR];
                        kernel_c(kc, ap, rsa, csa, mr, bp, t);
                        store_tile(cp, ldc, t, mr, nr, add);
                    }
                }
            }
        }
    }
    (void)avx2;
}
