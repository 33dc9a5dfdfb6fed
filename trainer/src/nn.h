/* nn: the neural-network engine: multilayer perceptrons, small CNNs (3x3
 * same-padding convolution + ReLU + 2x2 max-pool blocks, then dense layers)
 * and softmax (logistic) regression, trained with softmax cross-entropy by
 * SGD with momentum or Adam.
 *
 * Parameters live in one flat float arena (nn_params), in a fixed layer
 * order, so checkpoints are one array and the optimizer is one loop.
 * Gradients and optimizer state use parallel arenas of the same layout.
 *
 * Determinism: the same arch, seed, data order and thread count give
 * bit-identical parameters.
 *
 * Ownership: nn_new / nn_optim_new return objects freed by nn_free /
 * nn_optim_free. nn_params / nn_optim_state return borrowed pointers.
 * nn_predict may be called from several threads at once on one model. */
#ifndef KILN_NN_H
#define KILN_NN_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"
#include "rng.h"

#define NN_MAX_LAYERS 16

typedef enum { NN_MLP = 0, NN_CNN = 1, NN_LOGISTIC = 2 } nn_family;
typedef enum { NN_RELU = 0, NN_TANH = 1, NN_SIGMOID = 2 } nn_activation;

typedef struct nn_arch {
    nn_family family;
    int in_h, in_w, in_c;       /* input geometry; tabular data: d, 1, 1 */
    int n_hidden;               /* mlp: hidden layer widths */
    int hidden[NN_MAX_LAYERS];
    nn_activation activation;   /* mlp hidden activation (cnn dense layers use relu) */
    float dropout;              /* after each hidden (mlp) / dense (cnn) layer, training only */
    int n_conv;                 /* cnn: filters per conv block */
    int conv[NN_MAX_LAYERS];
    int n_dense;                /* cnn: dense layer widths after the conv blocks */
    int dense[NN_MAX_LAYERS];
    int n_classes;              /* softmax outputs, >= 2 */
} nn_arch;

typedef struct nn_model nn_model;

/* Checks the arch (positive sizes, an image big enough for its pools, ...)
 * and allocates; parameters are zero until nn_init_params. */
int nn_new(const nn_arch *a, nn_model **out, kiln_error *err);
void nn_free(nn_model *m);
const nn_arch *nn_get_arch(const nn_model *m);

/* He (relu) / Xavier (tanh, sigmoid, softmax) initialisation from r. */
void nn_init_params(nn_model *m, rng *r);
size_t nn_n_params(const nn_model *m);
float *nn_params(nn_model *m);
const float *nn_params_const(const nn_model *m);

/* Architecture <-> JSON, as stored in checkpoint headers:
 * {"family":"mlp","input":[h,w,c],"hiddenLayers":[128],"activation":"relu",
 *  "dropout":0,"convFilters":[8,16],"denseLayers":[64],"classes":10} */
cJSON *nn_arch_to_json(const nn_arch *a);
int nn_arch_from_json(const cJSON *j, nn_arch *a, kiln_error *err);

/* Optimizers. */
typedef enum { NN_SGD = 0, NN_ADAM = 1 } nn_optim_kind;
typedef struct nn_optim_params {
    nn_optim_kind kind;
    float lr;        /* learning rate */
    float momentum;  /* sgd (0.9 default) */
    float beta1, beta2, eps; /* adam (0.9, 0.999, 1e-8) */
    float weight_decay;      /* L2, 0 default */
} nn_optim_params;
typedef struct nn_optim nn_optim;
int nn_optim_new(const nn_optim_params *p, size_t n_params, nn_optim **out, kiln_error *err);
void nn_optim_free(nn_optim *o);
/* State for checkpoints: `*n` floats at `*state` (sgd: velocity; adam: m
 * then v), and the step counter. Writable, so a resume restores them. */
void nn_optim_state(nn_optim *o, float **state, size_t *n, int64_t *step);
void nn_optim_set_step(nn_optim *o, int64_t step);

/* One training step on a batch: forward, softmax cross-entropy, backward,
 * update. x is (B, in_h*in_w*in_c) already preprocessed, y class ids.
 * Dropout masks draw from r. Outputs the mean loss and the number of
 * correct argmax predictions of this batch (before the update). */
int nn_train_batch(nn_model *m, nn_optim *o, const float *x, const int32_t *y, int B, rng *r,
                   float *loss, int *n_correct);

/* Inference without dropout: probs (B, n_classes) softmax outputs. */
int nn_predict(const nn_model *m, const float *x, int B, float *probs);

/* Inference like nn_predict, in a caller-given workspace of scratch_n
 * floats, at least nn_infer_scratch(m, B) (any alignment): allocates
 * nothing, so a server thread reuses one buffer for every request. Passes
 * of fewer than four rows of a dense-only model run through a
 * matrix-vector kernel that sums in the batched kernels' order, so on CPUs
 * with AVX2/FMA an instance gets the same probabilities whatever the size
 * of its batch. KILN_EINVAL when the workspace is too small. */
size_t nn_infer_scratch(const nn_model *m, int B);
int nn_infer(const nn_model *m, const float *x, int B, float *probs, float *scratch,
             size_t scratch_n);

/* Threads for the BLAS and the engine's own kernels (>= 1). A process-wide
 * setting read at each training step; the engine's kernels do not use
 * OpenBLAS, so its thread count is left alone. */
void nn_set_threads(int n);

/* Finite-difference gradient check for tests: compares the analytic
 * gradient of the mean loss on (x, y) with central differences on up to
 * `samples` parameters (chosen from r); returns the max relative error. */
double nn_gradcheck(nn_model *m, const float *x, const int32_t *y, int B, int samples, rng *r);

/* ---- additions: testing, tuning and benchmarks ---- */

/* The thread count nn_set_threads chose (default: the online cores). */
int nn_get_threads(void);

/* Forward and backward in training mode without an update: grad (n_params
 * floats) receives the gradient of the mean loss over the batch, *loss the
 * mean loss. mask_rng: the source of the dropout masks (NULL: dropout
 * off); two calls with rngs in the same state use the same masks. */
int nn_loss_grad(nn_model *m, const float *x, const int32_t *y, int B, rng *mask_rng, float *grad,
                 float *loss);

/* The finite-difference comparison behind nn_gradcheck, against a given
 * gradient (so a test can show that a wrong one is caught). Perturbs up to
 * `samples` parameters chosen from r by +-1e-3 (and, if that disagrees, by
 * +-1e-2 and +-1e-4, keeping the best: one step may cross a ReLU or
 * max-pool kink), evaluates the loss in double with dropout masks from a
 * copy of mask_rng (NULL: off), and returns the max over the sampled
 * parameters of |g - num| / max(|g|, |num|, 1e-2). nn_gradcheck does the
 * same with the analytic gradient and, when the model has dropout, one
 * fixed mask drawn from r. */
double nn_gradcheck_grad(nn_model *m, const float *x, const int32_t *y, int B, const rng *mask_rng,
                         const float *grad, int samples, rng *r);

/* on != 0: use the plain-loop reference kernels instead of nn_gemm/im2col
 * (tests compare the two). Not thread-safe against a running step. */
void nn_set_reference(nn_model *m, int on);

#endif
