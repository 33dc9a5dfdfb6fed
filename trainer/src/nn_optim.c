/* nn_optim: SGD with momentum and Adam over the flat parameter arena.
 *
 * SGD (PyTorch convention): g += wd * p; v = mu * v + g; p -= lr * v.
 * Adam: g += wd * p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 *       p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). */
/* GCC's -O2 vectorizes only loops that need no remainder handling; these
 * element-wise loops need -O3's cost model to use SIMD (clang does at -O2). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif
#include "nn_optim.h"

#include <math.h>
#include <stdlib.h>

struct nn_optim {
    nn_optim_params p;
    size_t n;
    int64_t step;
    float *state; /* sgd: v (n); adam: m (n) then v (n) */
    /* per-step constants set by nn_optim_begin_step */
    float step_size;    /* adam: lr / (1 - b1^t) */
    float inv_sqrt_bc2; /* adam: 1 / sqrt(1 - b2^t) */
};

static int bad_float(float v, float lo, float hi)
{
    return !isfinite(v) || v < lo || v > hi;
}

int nn_optim_new(const nn_optim_params *p, size_t n_params, nn_optim **out, kiln_error *err)
{
    *out = NULL;
    if (p->kind != NN_SGD && p->kind != NN_ADAM)
        return kiln_fail(err, KILN_EINVAL, "optimizer: unknown kind %d", (int)p->kind);
    if (bad_float(p->lr, 0.0f, 100.0f) || p->lr <= 0.0f)
        return kiln_fail(err, KILN_EINVAL, "learningRate must be in (0, 100], got %g",
                         (double)p->lr);
    if (bad_float(p->weight_decay, 0.0f, 1.0f))
        return kiln_fail(err, KILN_EINVAL, "weight decay must be in [0, 1], got %g",
                         (double)p->weight_decay);
    if (p->kind == NN_SGD && bad_float(p->momentum, 0.0f, 0.9999f))
        return kiln_fail(err, KILN_EINVAL, "momentum must be in [0, 1), got %g",
                         (double)p->momentum);
    if (p->kind == NN_ADAM &&
        (bad_float(p->beta1, 0.0f, 0.9999999f) || bad_float(p->beta2, 0.0f, 0.9999999f) ||
         bad_float(p->eps, 1e-30f, 1.0f)))
        return kiln_fail(err, KILN_EINVAL, "adam: betas must be in [0, 1) and eps in (0, 1]");
    if (n_params == 0 || n_params > ((size_t)1 << 30))
        return kiln_fail(err, KILN_EINVAL, "optimizer: %zu parameters is out of range", n_params);
    nn_optim *o = calloc(1, sizeof *o);
    size_t ns = p->kind == NN_ADAM ? 2 * n_params : n_params;
    if (o)
        o->state = calloc(ns, sizeof(float));
    if (!o || !o->state) {
        free(o);
        return kiln_fail(err, KILN_ENOMEM, "out of memory for optimizer state (%zu floats)", ns);
    }
    o->p = *p;
    o->n = n_params;
    *out = o;
    return 0;
}

void nn_optim_free(nn_optim *o)
{
    if (!o)
        return;
    free(o->state);
    free(o);
}

void nn_optim_state(nn_optim *o, float **state, size_t *n, int64_t *step)
{
    *state = o->state;
    *n = o->p.kind == NN_ADAM ? 2 * o->n : o->n;
    *step = o->step;
}

void nn_optim_set_step(nn_optim *o, int64_t step)
{
    o->step = step < 0 ? 0 : step;
}

size_t nn_optim_n_params(const nn_optim *o)
{
    return o->n;
}

void nn_optim_begin_step(nn_optim *o)
{
    o->step++;
    if (o->p.kind == NN_ADAM) {
        /* In double: b2^t for large t loses too much in float. */
        double t = (double)o->step;
        double bc1 = 1.0 - pow((double)o->p.beta1, t);
        double bc2 = 1.0 - pow((double)o->p.beta2, t);
        o->step_size = (float)((double)o->p.lr / bc1);
        o->inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    }
}

/* The sum of the partial gradients of element i (fixed order). */
static inline float grad_at(const float *const *grads, int n_grads, size_t i)
{
    float g = grads[0][i];
    for (int t = 1; t < n_grads; t++)
        g += grads[t][i];
    return g;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_X86_ADAM 1
/* Adam on 8 parameters at a time, the same operations in the same order
 * as the scalar loop (which finishes the tail): sqrtf and division stay
 * scalar otherwise, because errno rules keep compilers from vectorizing
 * sqrtf. Returns the first index not done. */
__attribute__((target("avx2,fma"))) static size_t
adam_avx2(nn_optim *o, float *params, const float *const *grads, int n_grads, size_t lo, size_t hi)
{
    float *m = o->state, *v = o->state + o->n;
    const __m256 b1 = _mm256_set1_ps(o->p.beta1), b2 = _mm256_set1_ps(o->p.beta2);
    const __m256 c1 = _mm256_set1_ps(1.0f - o->p.beta1), c2 = _mm256_set1_ps(1.0f - o->p.beta2);
    const __m256 eps = _mm256_set1_ps(o->p.eps), wd = _mm256_set1_ps(o->p.weight_decay);
    const __m256 ss = _mm256_set1_ps(o->step_size), ib = _mm256_set1_ps(o->inv_sqrt_bc2);
    size_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        __m256 g = _mm256_loadu_ps(grads[0] + i);
        for (int t = 1; t < n_grads; t++)
            g = _mm256_add_ps(g, _mm256_loadu_ps(grads[t] + i));
        __m256 p = _mm256_loadu_ps(params + i);
        /* mul then add, not fma: the scalar tail must round the same way */
        g = _mm256_add_ps(g, _mm256_mul_ps(wd, p));
        __m256 mi = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(c1, g));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(v + i)),
                                  _mm256_mul_ps(_mm256_mul_ps(c2, g), g));
        __m256 den = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vi), ib), eps);
        p = _mm256_sub_ps(p, _mm256_div_ps(_mm256_mul_ps(ss, mi), den));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        _mm256_storeu_ps(params + i, p);
    }
    return i;
}
#endif

void nn_optim_apply(nn_optim *o, float *restrict params, const float *const *grads, int n_grads,
                    size_t lo, size_t hi)
{
    if (hi > o->n)
        hi = o->n;
    const float wd = o->p.weight_decay;
    if (o->p.kind == NN_SGD) {
        float *restrict v = o->state;
        const float lr = o->p.lr, mu = o->p.momentum;
        for (size_t i = lo; i < hi; i++) {
            float g = grad_at(grads, n_grads, i) + wd * params[i];
            v[i] = mu * v[i] + g;
            params[i] -= lr * v[i];
        }
        return;
    }
    float *restrict m = o->state;
    float *restrict v = o->state + o->n;
    const float b1 = o->p.beta1, b2 = o->p.beta2, eps = o->p.eps;
    const float c1 = 1.0f - b1, c2 = 1.0f - b2;
    const float ss = o->step_size, ib = o->inv_sqrt_bc2;
    size_t i = lo;
#ifdef HAVE_X86_ADAM
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        i = adam_avx2(o, params, grads, n_grads, lo, hi);
#endif
    for (; i < hi; i++) {
        float g = grad_at(grads, n_grads, i) + wd * params[i];
        m[i] = b1 * m[i] + c1 * g;
        v[i] = b2 * v[i] + c2 * g * g;
        params[i] -= ss * m[i] / (sqrtf(v[i]) * ib + eps);
    }
}
