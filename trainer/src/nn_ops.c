/* nn_ops: reference and fast layer kernels (see nn_ops.h). */
/* GCC's -O2 vectorizes only loops that need no remainder handling; these
 * element-wise loops need -O3's cost model to use SIMD (clang does at -O2). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif
#include "nn_ops.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

#include "nn_gemm.h"

/* ------------------------------------------------------------ dense */

void nn_ops_dense_forward(float *y, const float *x, const float *w, int n, int in, int out,
                          float *work)
{
    /* A few rows (the model server's single requests) go through the
     * plain loop below, which vectorizes over `out` and reads w once. */
    if (work && n >= 4) {
        nn_gemm(n, out, in, x, in, 1, w, out, 1, y, out, 0, work);
        return;
    }
    for (int r = 0; r < n; r++) {
        float *yr = y + (size_t)r * out;
        const float *xr = x + (size_t)r * in;
        for (int o = 0; o < out; o++)
            yr[o] = 0.0f;
        for (int i = 0; i < in; i++) {
            const float xi = xr[i];
            const float *wi = w + (size_t)i * out;
            for (int o = 0; o < out; o++)
                yr[o] += xi * wi[o];
        }
    }
}

void nn_ops_bias_act(float *y, const float *b, int n, int out, int act)
{
    for (int r = 0; r < n; r++) {
        float *yr = y + (size_t)r * out;
        switch (act) {
        case NN_ACT_RELU:
            for (int o = 0; o < out; o++) {
                float v = yr[o] + b[o];
                yr[o] = v > 0.0f ? v : 0.0f;
            }
            break;
        case NN_ACT_TANH:
            for (int o = 0; o < out; o++)
                yr[o] = tanhf(yr[o] + b[o]);
            break;
        case NN_ACT_SIGMOID:
            for (int o = 0; o < out; o++)
                yr[o] = 1.0f / (1.0f + expf(-(yr[o] + b[o])));
            break;
        default:
            for (int o = 0; o < out; o++)
                yr[o] += b[o];
        }
    }
}

void nn_ops_act_backward(float *dz, const float *h, size_t count, int act)
{
    switch (act) {
    case NN_ACT_RELU:
        for (size_t i = 0; i < count; i++)
            dz[i] = h[i] > 0.0f ? dz[i] : 0.0f;
        break;
    case NN_ACT_TANH:
        for (size_t i = 0; i < count; i++)
            dz[i] *= 1.0f - h[i] * h[i];
        break;
    case NN_ACT_SIGMOID:
        for (size_t i = 0; i < count; i++)
            dz[i] *= h[i] * (1.0f - h[i]);
        break;
    default:
        break;
    }
}

static void col_sums(float *db, const float *dz, int rows, int cols)
{
    for (int o = 0; o < cols; o++)
        db[o] = 0.0f;
    for (int r = 0; r < rows; r++) {
        const float *d = dz + (size_t)r * cols;
        for (int o = 0; o < cols; o++)
            db[o] += d[o];
    }
}

void nn_ops_dense_backward_params(float *dw, float *db, const float *x, const float *dz, int n,
                                  int in, int out, float *work)
{
    col_sums(db, dz, n, out);
    if (work) {
        nn_gemm(in, out, n, x, 1, in, dz, out, 1, dw, out, 0, work);
        return;
    }
    memset(dw, 0, (size_t)in * out * sizeof(float));
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * in, *d = dz + (size_t)r * out;
        for (int i = 0; i < in; i++) {
            const float xi = xr[i];
            float *wi = dw + (size_t)i * out;
            for (int o = 0; o < out; o++)
                wi[o] += xi * d[o];
        }
    }
}

void nn_ops_dense_backward_input(float *dx, const float *dz, const float *w, int n, int in, int out,
                                 float *work)
{
    if (work) {
        nn_gemm(n, in, out, dz, out, 1, w, 1, out, dx, in, 0, work);
        return;
    }
    for (int r = 0; r < n; r++) {
        const float *d = dz + (size_t)r * out;
        for (int i = 0; i < in; i++) {
            const float *wi = w + (size_t)i * out;
            float s = 0.0f;
            for (int o = 0; o < out; o++)
                s += d[o] * wi[o];
            dx[(size_t)r * in + i] = s;
        }
    }
}

/* ------------------------------------------------------------ conv 3x3 */

/* col row (r, y, x) = the 3x3 x cin patch around (y, x), zero outside.
 * In HWC order the three kx taps of one patch row are 3*c contiguous
 * floats, so inner pixels copy three runs; only border pixels test bounds. */
static void im2col(float *col, const float *x, int n, int h, int w, int c)
{
    const size_t rowlen = (size_t)9 * c, run = (size_t)3 * c;
    for (int r = 0; r < n; r++) {
        const float *img = x + (size_t)r * h * w * c;
        for (int y = 0; y < h; y++) {
            for (int xx = 0; xx < w; xx++) {
                float *dst = col + (((size_t)r * h + y) * w + xx) * rowlen;
                int inner_x = xx > 0 && xx < w - 1;
                for (int ky = 0; ky < 3; ky++, dst += run) {
                    int sy = y + ky - 1;
                    if (sy < 0 || sy >= h) {
                        memset(dst, 0, run * sizeof(float));
                        continue;
                    }
                    const float *row = img + (size_t)sy * w * c;
                    if (inner_x && c == 1) { /* first layers of grey images */
                        const float *src = row + (xx - 1);
                        dst[0] = src[0];
                        dst[1] = src[1];
                        dst[2] = src[2];
                        continue;
                    }
                    if (inner_x) {
                        memcpy(dst, row + (size_t)(xx - 1) * c, run * sizeof(float));
                        continue;
                    }
                    for (int kx = 0; kx < 3; kx++) {
                        int sx = xx + kx - 1;
                        for (int ci = 0; ci < c; ci++)
                            dst[kx * c + ci] =
                                (sx < 0 || sx >= w) ? 0.0f : row[(size_t)sx * c + ci];
                    }
                }
            }
        }
    }
}

/* The adjoint of im2col: dx = 0, then every col entry is added back to the
 * input pixel it was copied from. */
static void col2im(float *dx, const float *dcol, int n, int h, int w, int c)
{
    memset(dx, 0, (size_t)n * h * w * c * sizeof(float));
    const size_t rowlen = (size_t)9 * c, run = (size_t)3 * c;
    for (int r = 0; r < n; r++) {
        float *img = dx + (size_t)r * h * w * c;
        for (int y = 0; y < h; y++) {
            for (int xx = 0; xx < w; xx++) {
                const float *src = dcol + (((size_t)r * h + y) * w + xx) * rowlen;
                int inner_x = xx > 0 && xx < w - 1;
                for (int ky = 0; ky < 3; ky++, src += run) {
                    int sy = y + ky - 1;
                    if (sy < 0 || sy >= h)
                        continue;
                    float *row = img + (size_t)sy * w * c;
                    if (inner_x) {
                        float *d = row + (size_t)(xx - 1) * c;
                        for (size_t i = 0; i < run; i++)
                            d[i] += src[i];
                        continue;
                    }
                    for (int kx = 0; kx < 3; kx++) {
                        int sx = xx + kx - 1;
                        if (sx < 0 || sx >= w)
                            continue;
                        for (int ci = 0; ci < c; ci++)
                            row[(size_t)sx * c + ci] += src[kx * c + ci];
                    }
                }
            }
        }
    }
}

/* ------------------------------------------------------------ conv, one input channel */

/* First layers of grey images (cin == 1, cout a multiple of 8) skip
 * im2col: its 9-float rows make a GEMM with K = 9 that spends its time
 * writing and re-reading the column matrix. Eight output channels at a
 * time live in one AVX2 register; the nine taps' weights stay in
 * registers across all pixels. Interior pixels need no bounds tests. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86_CONV1 1
__attribute__((target("avx2,fma"))) static void conv1_forward_avx2(float *y, const float *x,
                                                                   const float *w, const float *b,
                                                                   int n, int h, int wd, int cout)
{
    for (int c0 = 0; c0 < cout; c0 += 8) {
        __m256 wk[9];
        for (int t = 0; t < 9; t++)
            wk[t] = _mm256_loadu_ps(w + (size_t)t * cout + c0);
        const __m256 bias = _mm256_loadu_ps(b + c0), zero = _mm256_setzero_ps();
        for (int r = 0; r < n; r++) {
            const float *img = x + (size_t)r * h * wd;
            float *out = y + (size_t)r * h * wd * cout + c0;
            for (int yy = 0; yy < h; yy++) {
                for (int xx = 0; xx < wd; xx++) {
                    __m256 acc = _mm256_setzero_ps();
                    if (yy > 0 && yy < h - 1 && xx > 0 && xx < wd - 1) {
                        const float *p = img + (size_t)(yy - 1) * wd + (xx - 1);
                        acc = _mm256_fmadd_ps(_mm256_broadcast_ss(p), wk[0], acc);
                        acc = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 1), wk[1], acc);
                        acc = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 2), wk[2], acc);
                        p += wd;
                        acc = _mm256_fmadd_ps(_mm256_broadcast_ss(p), wk[3], acc);
                        acc = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 1), wk[4], acc);
                        acc = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 2), wk[5], acc);
                        p += wd;
                        acc = _mm256_fmadd_ps(_mm256_broadcast_ss(p), wk[6], acc);
                        acc = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 1), wk[7], acc);
                        acc = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 2), wk[8], acc);
                    } else {
                        for (int t = 0; t < 9; t++) {
                            int sy = yy + t / 3 - 1, sx = xx + t % 3 - 1;
                            if (sy >= 0 && sy < h && sx >= 0 && sx < wd)
                                acc = _mm256_fmadd_ps(
                                    _mm256_broadcast_ss(img + (size_t)sy * wd + sx), wk[t], acc);
                        }
                    }
                    acc = _mm256_max_ps(_mm256_add_ps(acc, bias), zero);
                    _mm256_storeu_ps(out + ((size_t)yy * wd + xx) * cout, acc);
                }
            }
        }
    }
}

/* dw (9, cout) = sum over pixels of patch (x) dz, db = sum of dz. */
__attribute__((target("avx2,fma"))) static void conv1_backward_avx2(float *dw, float *db,
                                                                    const float *x, const float *dz,
                                                                    int n, int h, int wd, int cout)
{
    for (int c0 = 0; c0 < cout; c0 += 8) {
        __m256 g[9], gb = _mm256_setzero_ps();
        for (int t = 0; t < 9; t++)
            g[t] = _mm256_setzero_ps();
        for (int r = 0; r < n; r++) {
            const float *img = x + (size_t)r * h * wd;
            const float *d = dz + (size_t)r * h * wd * cout + c0;
            for (int yy = 0; yy < h; yy++) {
                for (int xx = 0; xx < wd; xx++) {
                    __m256 dv = _mm256_loadu_ps(d + ((size_t)yy * wd + xx) * cout);
                    gb = _mm256_add_ps(gb, dv);
                    if (yy > 0 && yy < h - 1 && xx > 0 && xx < wd - 1) {
                        const float *p = img + (size_t)(yy - 1) * wd + (xx - 1);
                        g[0] = _mm256_fmadd_ps(_mm256_broadcast_ss(p), dv, g[0]);
                        g[1] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 1), dv, g[1]);
                        g[2] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 2), dv, g[2]);
                        p += wd;
                        g[3] = _mm256_fmadd_ps(_mm256_broadcast_ss(p), dv, g[3]);
                        g[4] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 1), dv, g[4]);
                        g[5] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 2), dv, g[5]);
                        p += wd;
                        g[6] = _mm256_fmadd_ps(_mm256_broadcast_ss(p), dv, g[6]);
                        g[7] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 1), dv, g[7]);
                        g[8] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 2), dv, g[8]);
                    } else {
                        for (int t = 0; t < 9; t++) {
                            int sy = yy + t / 3 - 1, sx = xx + t % 3 - 1;
                            if (sy >= 0 && sy < h && sx >= 0 && sx < wd)
                                g[t] = _mm256_fmadd_ps(
                                    _mm256_broadcast_ss(img + (size_t)sy * wd + sx), dv, g[t]);
                        }
                    }
                }
            }
        }
        for (int t = 0; t < 9; t++)
            _mm256_storeu_ps(dw + (size_t)t * cout + c0, g[t]);
        _mm256_storeu_ps(db + c0, gb);
    }
}

static int conv1_direct(int cin, int cout)
{
    return cin == 1 && cout % 8 == 0 && __builtin_cpu_supports("avx2") &&
           __builtin_cpu_supports("fma");
}
#else
static int conv1_direct(int cin, int cout)
{
    (void)cin;
    (void)cout;
    return 0;
}
#endif

void nn_ops_conv_forward(float *y, float *col, const float *x, const float *w, const float *b,
                         int n, int h, int wd, int cin, int cout, float *work)
{
    const int rows = n * h * wd;
#ifdef HAVE_X86_CONV1
    if (work && conv1_direct(cin, cout)) {
        conv1_forward_avx2(y, x, w, b, n, h, wd, cout);
        return;
    }
#endif
    if (work) {
        im2col(col, x, n, h, wd, cin);
        nn_gemm(rows, cout, 9 * cin, col, 9 * cin, 1, w, cout, 1, y, cout, 0, work);
        nn_ops_bias_act(y, b, rows, cout, NN_ACT_RELU);
        return;
    }
    for (int r = 0; r < n; r++) {
        const float *img = x + (size_t)r * h * wd * cin;
        for (int yy = 0; yy < h; yy++) {
            for (int xx = 0; xx < wd; xx++) {
                float *o = y + (((size_t)r * h + yy) * wd + xx) * cout;
                for (int co = 0; co < cout; co++)
                    o[co] = 0.0f;
                for (int ky = 0; ky < 3; ky++) {
                    for (int kx = 0; kx < 3; kx++) {
                        int sy = yy + ky - 1, sx = xx + kx - 1;
                        if (sy < 0 || sy >= h || sx < 0 || sx >= wd)
                            continue;
                        const float *px = img + ((size_t)sy * wd + sx) * cin;
                        const float *wk = w + (size_t)(ky * 3 + kx) * cin * cout;
                        for (int ci = 0; ci < cin; ci++)
                            for (int co = 0; co < cout; co++)
                                o[co] += px[ci] * wk[(size_t)ci * cout + co];
                    }
                }
                for (int co = 0; co < cout; co++) {
                    float v = o[co] + b[co];
                    o[co] = v > 0.0f ? v : 0.0f;
                }
            }
        }
    }
}

void nn_ops_conv_backward(float *dw, float *db, float *dx, float *dcol, const float *col,
                          const float *x, const float *dz, const float *w, int n, int h, int wd,
                          int cin, int cout, float *work)
{
    const int rows = n * h * wd;
#ifdef HAVE_X86_CONV1
    if (work && !dx && conv1_direct(cin, cout)) {
        conv1_backward_avx2(dw, db, x, dz, n, h, wd, cout);
        return;
    }
#endif
    col_sums(db, dz, rows, cout);
    if (work) {
        nn_gemm(9 * cin, cout, rows, col, 1, 9 * cin, dz, cout, 1, dw, cout, 0, work);
        if (dx) {
            nn_gemm(rows, 9 * cin, cout, dz, cout, 1, w, 1, cout, dcol, 9 * cin, 0, work);
            col2im(dx, dcol, n, h, wd, cin);
        }
        return;
    }
    memset(dw, 0, (size_t)9 * cin * cout * sizeof(float));
    if (dx)
        memset(dx, 0, (size_t)n * h * wd * cin * sizeof(float));
    for (int r = 0; r < n; r++) {
        const float *img = x + (size_t)r * h * wd * cin;
        float *dimg = dx ? dx + (size_t)r * h * wd * cin : NULL;
        for (int yy = 0; yy < h; yy++) {
            for (int xx = 0; xx < wd; xx++) {
                const float *d = dz + (((size_t)r * h + yy) * wd + xx) * cout;
                for (int ky = 0; ky < 3; ky++) {
                    for (int kx = 0; kx < 3; kx++) {
                        int sy = yy + ky - 1, sx = xx + kx - 1;
                        if (sy < 0 || sy >= h || sx < 0 || sx >= wd)
                            continue;
                        size_t pix = ((size_t)sy * wd + sx) * cin;
                        size_t k0 = (size_t)(ky * 3 + kx) * cin;
                        for (int ci = 0; ci < cin; ci++) {
                            const float *wk = w + (k0 + ci) * cout;
                            float *dwk = dw + (k0 + ci) * cout;
                            float s = 0.0f;
                            for (int co = 0; co < cout; co++) {
                                dwk[co] += img[pix + ci] * d[co];
                                s += d[co] * wk[co];
                            }
                            if (dimg)
                                dimg[pix + ci] += s;
                        }
                    }
                }
            }
        }
    }
}

/* ------------------------------------------------------------ max-pool */

void nn_ops_pool_forward(float *y, const float *a, int n, int h, int w, int c)
{
    const int oh = h / 2, ow = w / 2;
    for (int r = 0; r < n; r++) {
        const float *img = a + (size_t)r * h * w * c;
        for (int oy = 0; oy < oh; oy++) {
            for (int ox = 0; ox < ow; ox++) {
                const float *p00 = img + ((size_t)(2 * oy) * w + 2 * ox) * c;
                const float *p01 = p00 + c, *p10 = p00 + (size_t)w * c, *p11 = p10 + c;
                float *o = y + (((size_t)r * oh + oy) * ow + ox) * c;
                for (int ci = 0; ci < c; ci++) {
                    float m0 = p00[ci] >= p01[ci] ? p00[ci] : p01[ci];
                    float m1 = p10[ci] >= p11[ci] ? p10[ci] : p11[ci];
                    o[ci] = m0 >= m1 ? m0 : m1;
                }
            }
        }
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86_POOL 1
/* Eight channels of one window at once (see the scalar loop below). */
__attribute__((target("avx2"))) static void pool_window8(float *da, const float *a, size_t i00,
                                                         size_t i01, size_t i10, size_t i11,
                                                         const float *d)
{
    __m256 v00 = _mm256_loadu_ps(a + i00), v01 = _mm256_loadu_ps(a + i01);
    __m256 v10 = _mm256_loadu_ps(a + i10), v11 = _mm256_loadu_ps(a + i11);
    __m256 mx = _mm256_max_ps(_mm256_max_ps(v00, v01), _mm256_max_ps(v10, v11));
    __m256 g =
        _mm256_and_ps(_mm256_loadu_ps(d), _mm256_cmp_ps(mx, _mm256_setzero_ps(), _CMP_GT_OQ));
    __m256 t00 = _mm256_cmp_ps(v00, mx, _CMP_EQ_OQ);
    __m256 t01 = _mm256_andnot_ps(t00, _mm256_cmp_ps(v01, mx, _CMP_EQ_OQ));
    __m256 taken = _mm256_or_ps(t00, t01);
    __m256 t10 = _mm256_andnot_ps(taken, _mm256_cmp_ps(v10, mx, _CMP_EQ_OQ));
    taken = _mm256_or_ps(taken, t10);
    _mm256_storeu_ps(da + i00, _mm256_and_ps(t00, g));
    _mm256_storeu_ps(da + i01, _mm256_and_ps(t01, g));
    _mm256_storeu_ps(da + i10, _mm256_and_ps(t10, g));
    _mm256_storeu_ps(da + i11, _mm256_andnot_ps(taken, g));
}
#endif

void nn_ops_pool_relu_backward(float *da, const float *dy, const float *a, int n, int h, int w,
                               int c)
{
    const int oh = h / 2, ow = w / 2;
#ifdef HAVE_X86_POOL
    const int wide = c >= 8 && __builtin_cpu_supports("avx2");
#else
    const int wide = 0;
#endif
    /* every input of a window is written below; only the row and column
     * an odd side leaves out of all windows need zeroing */
    if ((h | w) & 1)
        memset(da, 0, (size_t)n * h * w * c * sizeof(float));
    for (int r = 0; r < n; r++) {
        const size_t base = (size_t)r * h * w * c;
        for (int oy = 0; oy < oh; oy++) {
            for (int ox = 0; ox < ow; ox++) {
                const size_t i00 = base + ((size_t)(2 * oy) * w + 2 * ox) * c;
                const size_t i01 = i00 + c, i10 = i00 + (size_t)w * c, i11 = i10 + c;
                const float *d = dy + (((size_t)r * oh + oy) * ow + ox) * c;
                int ci = 0;
#ifdef HAVE_X86_POOL
                if (wide)
                    for (; ci + 8 <= c; ci += 8)
                        pool_window8(da, a, i00 + ci, i01 + ci, i10 + ci, i11 + ci, d + ci);
#endif
                (void)wide;
                for (; ci < c; ci++) {
                    /* the first maximum in the forward pass's tie order
                     * gets dy, if it is > 0 (ReLU's derivative) */
                    float v00 = a[i00 + ci], v01 = a[i01 + ci], v10 = a[i10 + ci],
                          v11 = a[i11 + ci];
                    float m0 = v00 >= v01 ? v00 : v01, m1 = v10 >= v11 ? v10 : v11;
                    float mx = m0 >= m1 ? m0 : m1;
                    float g = mx > 0.0f ? d[ci] : 0.0f;
                    int t00 = v00 == mx, t01 = !t00 && v01 == mx;
                    int t10 = !t00 && !t01 && v10 == mx, t11 = !t00 && !t01 && !t10;
                    da[i00 + ci] = t00 ? g : 0.0f;
                    da[i01 + ci] = t01 ? g : 0.0f;
                    da[i10 + ci] = t10 ? g : 0.0f;
                    da[i11 + ci] = t11 ? g : 0.0f;
                }
            }
        }
    }
}

/* ------------------------------------------------------------ softmax */

double nn_ops_softmax_xent(float *dz, int *correct, const float *z, const int32_t *y, int n, int k,
                           float scale)
{
    double loss = 0.0;
    int hits = 0;
    for (int r = 0; r < n; r++) {
        const float *zr = z + (size_t)r * k;
        float *dr = dz + (size_t)r * k;
        int arg = 0;
        for (int j = 1; j < k; j++)
            if (zr[j] > zr[arg])
                arg = j;
        const float m = zr[arg];
        double sum = 0.0;
        for (int j = 0; j < k; j++) {
            dr[j] = expf(zr[j] - m);
            sum += dr[j];
        }
        /* log-sum-exp with the max factored out: never overflows */
        loss += log(sum) + (double)m - (double)zr[y[r]];
        hits += arg == y[r];
        const float inv = (float)(1.0 / sum) * scale;
        for (int j = 0; j < k; j++)
            dr[j] *= inv;
        dr[y[r]] -= scale;
    }
    *correct += hits;
    return loss;
}

void nn_ops_softmax(float *p, const float *z, int n, int k)
{
    for (int r = 0; r < n; r++) {
        const float *zr = z + (size_t)r * k;
        float *pr = p + (size_t)r * k;
        float m = zr[0];
        for (int j = 1; j < k; j++)
            m = zr[j] > m ? zr[j] : m;
        double sum = 0.0;
        for (int j = 0; j < k; j++) {
            pr[j] = expf(zr[j] - m);
            sum += pr[j];
        }
        const float inv = (float)(1.0 / sum);
        for (int j = 0; j < k; j++)
            pr[j] *= inv;
    }
}
