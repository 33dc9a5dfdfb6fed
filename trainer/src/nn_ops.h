/* nn_ops: the layer kernels of the engine, each in two versions: a plain
 * reference (simple loops, the readable definition, used by tests and by
 * nn_set_reference) and a fast one (the engine's SGEMM nn_gemm with im2col
 * for the 3x3 convolutions, AVX2 kernels for one-channel convolutions and
 * max-pool backward, scalar fallbacks without AVX2). A non-NULL `work`
 * (NN_GEMM_WORK floats, private to the calling thread) selects the fast
 * version, NULL the reference. All kernels work on n rows of a batch slice
 * and are pure functions of their arguments, so several threads may run
 * them at once on different buffers. *
 * Shapes (row-major, per batch row r):
 *   dense:  x (n, in), w (in, out), b (out), y (n, out)
 *   conv:   x (n, h, w, cin) HWC, w (3, 3, cin, cout) = (9*cin, cout),
 *           b (cout), y (n, h, w, cout); same padding, stride 1, ReLU
 *   pool:   a (n, h, w, c) -> y (n, h/2, w/2, c), 2x2 max, stride 2
 * Backward kernels write (=) their parameter gradients instead of
 * accumulating: in one training step each parameter block is written by
 * exactly one kernel call per batch slice, so no zeroing pass is needed. */
#ifndef KILN_NN_OPS_H
#define KILN_NN_OPS_H

#include <stddef.h>
#include <stdint.h>

enum { NN_ACT_NONE = 0, NN_ACT_RELU = 1, NN_ACT_TANH = 2, NN_ACT_SIGMOID = 3 };

/* y = x w (no bias). */
void nn_ops_dense_forward(float *y, const float *x, const float *w, int n, int in, int out,
                          float *work);
/* y = act(y + b) row by row, in place. */
void nn_ops_bias_act(float *y, const float *b, int n, int out, int act);
/* dz *= act'(h), where h = act(z) is the layer's output. */
void nn_ops_act_backward(float *dz, const float *h, size_t count, int act);
/* dw = x^T dz, db = column sums of dz. */
void nn_ops_dense_backward_params(float *dw, float *db, const float *x, const float *dz, int n,
                                  int in, int out, float *work);
/* dx = dz w^T. */
void nn_ops_dense_backward_input(float *dx, const float *dz, const float *w, int n, int in, int out,
                                 float *work);

/* Conv + bias + ReLU. col (n*h*w, 9*cin) receives the im2col matrix (fast
 * path only; the backward pass reuses it). */
void nn_ops_conv_forward(float *y, float *col, const float *x, const float *w, const float *b,
                         int n, int h, int wd, int cin, int cout, float *work);
/* dz is the gradient w.r.t. the pre-ReLU output (already masked). Writes
 * dw, db, and dx when dx != NULL (dcol: (n*h*w, 9*cin) scratch, fast
 * path). col is the forward im2col matrix (fast) and x the input (ref,
 * and the fast path's direct kernels for one input channel, which leave
 * col unused). */
void nn_ops_conv_backward(float *dw, float *db, float *dx, float *dcol, const float *col,
                          const float *x, const float *dz, const float *w, int n, int h, int wd,
                          int cin, int cout, float *work);

void nn_ops_pool_forward(float *y, const float *a, int n, int h, int w, int c);
/* da = gradient w.r.t. the conv's pre-ReLU output: dy routed to the first
 * maximum of each window where that maximum is > 0, zero elsewhere. */
void nn_ops_pool_relu_backward(float *da, const float *dy, const float *a, int n, int h, int w,
                               int c);

/* Softmax cross-entropy on logits z (n, k): returns the summed loss,
 * counts argmax hits in *correct, and writes dz = (softmax - onehot) * scale. */
double nn_ops_softmax_xent(float *dz, int *correct, const float *z, const int32_t *y, int n, int k,
                           float scale);
/* Row-wise softmax, numerically stable (max subtracted). */
void nn_ops_softmax(float *p, const float *z, int n, int k);

#endif
