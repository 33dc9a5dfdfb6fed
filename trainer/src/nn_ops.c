/* nn_ops: reference and fast layer kernels (see nn_ops.h). */
#include "nn_ops.h"

#include <math.h>
#include <string.h>

#include <cblas.h>

#include "nn_gemm.h"

/* ------------------------------------------------------------ dense */

void nn_ops_dense_forward(float *y, const float *x, const float *w, int n, int in, int out,
                          float *work)
{
    if (work) {
        if (n == 1) /* the model server's single rows: gemv skips packing w */
            cblas_sgemv(CblasRowMajor, CblasTrans, in, out, 1.0f, w, out, x, 1, 0.0f, y, 1);
        else
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

/* col row (r, y, x) = the 3x3 x cin patch around (y, x), zero outside. */
static void im2col(float *col, const float *x, int n, int h, int w, int c)
{
    const size_t rowlen = (size_t)9 * c;
    for (int r = 0; r < n; r++) {
        const float *img = x + (size_t)r * h * w * c;
        for (int y = 0; y < h; y++) {
            for (int xx = 0; xx < w; xx++) {
                float *dst = col + (((size_t)r * h + y) * w + xx) * rowlen;
                for (int ky = 0; ky < 3; ky++) {
                    int sy = y + ky - 1;
                    for (int kx = 0; kx < 3; kx++, dst += c) {
                        int sx = xx + kx - 1;
                        if (sy < 0 || sy >= h || sx < 0 || sx >= w) {
                            for (int ci = 0; ci < c; ci++)
                                dst[ci] = 0.0f;
                        } else {
                            const float *src = img + ((size_t)sy * w + sx) * c;
                            for (int ci = 0; ci < c; ci++)
                                dst[ci] = src[ci];
                        }
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
    const size_t rowlen = (size_t)9 * c;
    for (int r = 0; r < n; r++) {
        float *img = dx + (size_t)r * h * w * c;
        for (int y = 0; y < h; y++) {
            for (int xx = 0; xx < w; xx++) {
                const float *src = dcol + (((size_t)r * h + y) * w + xx) * rowlen;
                for (int ky = 0; ky < 3; ky++) {
                    int sy = y + ky - 1;
                    for (int kx = 0; kx < 3; kx++, src += c) {
                        int sx = xx + kx - 1;
                        if (sy < 0 || sy >= h || sx < 0 || sx >= w)
                            continue;
                        float *d = img + ((size_t)sy * w + sx) * c;
                        for (int ci = 0; ci < c; ci++)
                            d[ci] += src[ci];
                    }
                }
            }
        }
    }
}

void nn_ops_conv_forward(float *y, float *col, const float *x, const float *w, const float *b, int n,
                         int h, int wd, int cin, int cout, float *work)
{
    const int rows = n * h * wd;
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

void nn_ops_pool_relu_backward(float *da, const float *dy, const float *a, int n, int h, int w,
                               int c)
{
    const int oh = h / 2, ow = w / 2;
    memset(da, 0, (size_t)n * h * w * c * sizeof(float));
    for (int r = 0; r < n; r++) {
        const size_t base = (size_t)r * h * w * c;
        for (int oy = 0; oy < oh; oy++) {
            for (int ox = 0; ox < ow; ox++) {
                const size_t i00 = base + ((size_t)(2 * oy) * w + 2 * ox) * c;
                const size_t i01 = i00 + c, i10 = i00 + (size_t)w * c, i11 = i10 + c;
                const float *d = dy + (((size_t)r * oh + oy) * ow + ox) * c;
                for (int ci = 0; ci < c; ci++) {
                    /* the same tie order as the forward pass */
                    size_t best = a[i00 + ci] >= a[i01 + ci] ? i00 : i01;
                    size_t best1 = a[i10 + ci] >= a[i11 + ci] ? i10 : i11;
                    if (!(a[best + ci] >= a[best1 + ci]))
                        best = best1;
                    if (a[best + ci] > 0.0f)
                        da[best + ci] = d[ci];
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
