/* nn_optim: the engine-internal side of the optimizers declared in nn.h
 * (SGD with momentum, Adam with bias correction). The public API
 * (nn_optim_new, nn_optim_state, ...) lives in nn.h; this header adds the
 * update used by the training step, which may run on disjoint parameter
 * ranges from several threads at once. */
#ifndef KILN_NN_OPTIM_H
#define KILN_NN_OPTIM_H

#include <stddef.h>

#include "nn.h"

/* Starts one update: increments the step counter and computes the
 * per-step constants (Adam's bias corrections). Call once per batch,
 * before any nn_optim_apply of that batch. */
void nn_optim_begin_step(nn_optim *o);

/* Updates params[lo, hi): the gradient of parameter i is the sum of
 * grads[0][i] + grads[1][i] + ... (n_grads partial gradients, added in
 * that order so the result does not depend on timing). Ranges of
 * concurrent calls must not overlap. */
void nn_optim_apply(nn_optim *o, float *params, const float *const *grads, int n_grads, size_t lo,
                    size_t hi);

/* The parameter count the optimizer was created for. */
size_t nn_optim_n_params(const nn_optim *o);

#endif
