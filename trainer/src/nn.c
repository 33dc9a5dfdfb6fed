/* nn: the model (layer list + flat parameter arena), architecture checks
 * and JSON, initialisation, the training step, inference and the gradient
 * check. The layer kernels are in nn_ops.c, the optimizers in nn_optim.c
 * and the worker threads in nn_threads.c.
 *
 * The training step is data-parallel: the batch is cut into one contiguous
 * slice of rows per thread; each thread runs forward and backward on its
 * slice into its own gradient arena; then each thread updates one range of
 * the parameters, summing the slices' gradients in slice order. Dropout
 * masks are drawn for the whole batch by the calling thread before the
 * split. So a given seed, data order and thread count always give the same
 * bits, whatever the timing. */
/* GCC's -O2 vectorizes only loops that need no remainder handling; these
 * element-wise loops need -O3's cost model to use SIMD (clang does at -O2). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif
#include "nn.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn_gemm.h"
#include "nn_ops.h"
#include "nn_optim.h"
#include "nn_threads.h"

/* ------------------------------------------------------------ types */

#define NN_MAX_THREADS 64
#define MAX_OPS        (3 * NN_MAX_LAYERS + 1)
#define MAX_DIM        65536             /* widths, filters, classes, each input side */
#define MAX_INPUT      ((size_t)1 << 24) /* floats per input row */
#define MAX_PARAMS     ((size_t)1 << 28) /* 1 GiB of float32 */
#define MAX_ACTS       ((size_t)1 << 26) /* activation floats per row, all layers */
#define PREDICT_CHUNK  64                /* rows per inference pass: bounds its scratch */
#define SLICE_ROWS     128 /* rows per training pass of a slice: bounds its workspace */

enum { OP_DENSE = 0, OP_CONV = 1, OP_POOL = 2 };

/* One layer. Per-sample sizes in floats. */
typedef struct op {
    int kind;
    int in, out;
    int h, w, cin, cout; /* conv and pool: input geometry (pool: cin == cout) */
    int act;             /* dense: NN_ACT_* */
    int dropout;         /* dense: inverted dropout after the activation */
    size_t w_off, b_off; /* dense and conv: parameter offsets */
    size_t mask_off;     /* dense with dropout: offset in the per-row mask */
} op;

/* The buffers of one batch slice (or of one inference call). Legend: n =
 * rows (at most cap), out/in = per-sample sizes of the op. */
typedef struct slice {
    int cap;
    float *mem;
    float *act[MAX_OPS]; /* (n, out) op outputs, after dropout */
    float *pre[MAX_OPS]; /* (n, out) dense+dropout: output before dropout */
    float *col[MAX_OPS]; /* (n*h*w, 9*cin) conv: im2col of the input */
    float *g0, *g1;      /* (n, max_act) ping-pong activation gradients */
    float *dcol;         /* (n*h*w, 9*cin) conv input-gradient scratch */
    float *grad;         /* (n_params) this slice's parameter gradient */
    float *gpart;        /* (n_params) one pass's gradient, when a slice takes several */
    float *work;         /* (NN_GEMM_WORK) packing space of the fast kernels */
    double loss;
    int correct;
} slice;

struct nn_model {
    nn_arch a;
    int n_ops;
    op ops[MAX_OPS];
    size_t n_params;
    float *params;       /* (n_params) */
    size_t mask_per_row; /* dropout mask floats per batch row */
    size_t max_act;      /* largest per-sample activation, input included */
    size_t max_dcol;     /* largest per-sample conv dcol (convs after the first op) */
    int ref;             /* reference kernels */
    /* training state, sized at first use and grown only for larger batches */
    nn_threads *pool;
    int n_slices;
    slice sl[NN_MAX_THREADS];
    float *mask; /* (B, mask_per_row) laid out per op: op block then rows */
    size_t mask_cap;
};

/* The engine's thread count. nn.h makes it a process-wide setting
 * (nn_set_threads); 0 means "not set: use the online cores". */
static atomic_int g_threads;

/* ------------------------------------------------------------ arch */

static const char *family_name(nn_family f)
{
    return f == NN_CNN ? "cnn" : f == NN_LOGISTIC ? "logistic" : "mlp";
}

static const char *act_name(nn_activation a)
{
    return a == NN_TANH ? "tanh" : a == NN_SIGMOID ? "sigmoid" : "relu";
}

static int add_op(nn_model *m, op o)
{
    if (m->n_ops >= MAX_OPS)
        return -1;
    m->ops[m->n_ops++] = o;
    return 0;
}

static op dense_op(int in, int out, int act, int dropout)
{
    op o = {.kind = OP_DENSE, .in = in, .out = out, .act = act, .dropout = dropout};
    return o;
}

/* Builds the op list and the parameter layout of a checked arch. */
static int build_ops(nn_model *m, kiln_error *err)
{
    const nn_arch *a = &m->a;
    int drop = a->dropout > 0.0f;
    int in = a->in_h * a->in_w * a->in_c;
    m->n_ops = 0;
    if (a->family == NN_CNN) {
        int h = a->in_h, w = a->in_w, c = a->in_c;
        for (int i = 0; i < a->n_conv; i++) {
            int f = a->conv[i];
            op cv = {.kind = OP_CONV,
                     .in = h * w * c,
                     .out = h * w * f,
                     .h = h,
                     .w = w,
                     .cin = c,
                     .cout = f,
                     .act = NN_ACT_RELU};
            op pl = {.kind = OP_POOL,
                     .in = h * w * f,
                     .out = (h / 2) * (w / 2) * f,
                     .h = h,
                     .w = w,
                     .cin = f,
                     .cout = f};
            add_op(m, cv);
            add_op(m, pl);
            h /= 2;
            w /= 2;
            c = f;
        }
        in = h * w * c;
        for (int i = 0; i < a->n_dense; i++) {
            add_op(m, dense_op(in, a->dense[i], NN_ACT_RELU, drop));
            in = a->dense[i];
        }
    } else if (a->family == NN_MLP) {
        int act = a->activation == NN_TANH      ? NN_ACT_TANH
                  : a->activation == NN_SIGMOID ? NN_ACT_SIGMOID
                                                : NN_ACT_RELU;
        for (int i = 0; i < a->n_hidden; i++) {
            add_op(m, dense_op(in, a->hidden[i], act, drop));
            in = a->hidden[i];
        }
    }
    add_op(m, dense_op(in, a->n_classes, NN_ACT_NONE, 0));

    size_t np = 0, mask = 0, acts = (size_t)a->in_h * a->in_w * a->in_c;
    m->max_act = acts;
    m->max_dcol = 0;
    for (int l = 0; l < m->n_ops; l++) {
        op *o = &m->ops[l];
        if (o->kind == OP_DENSE) {
            o->w_off = np;
            np += (size_t)o->in * o->out;
            o->b_off = np;
            np += (size_t)o->out;
            if (o->dropout) {
                o->mask_off = mask;
                mask += (size_t)o->out;
            }
        } else if (o->kind == OP_CONV) {
            o->w_off = np;
            np += (size_t)9 * o->cin * o->cout;
            o->b_off = np;
            np += (size_t)o->cout;
            if (l > 0 && (size_t)o->h * o->w * 9 * o->cin > m->max_dcol)
                m->max_dcol = (size_t)o->h * o->w * 9 * o->cin;
            acts += (size_t)o->h * o->w * 9 * o->cin; /* im2col */
        }
        acts += (size_t)o->out * (o->dropout ? 2 : 1);
        if ((size_t)o->out > m->max_act)
            m->max_act = (size_t)o->out;
        if (np > MAX_PARAMS)
            return kiln_fail(err, KILN_EINVAL, "model: more than %zu parameters", MAX_PARAMS);
        if (acts > MAX_ACTS)
            return kiln_fail(err, KILN_EINVAL, "model: activations too large (%zu floats per row)",
                             acts);
    }
    m->n_params = np;
    m->mask_per_row = mask;
    return 0;
}

static int check_widths(const char *what, int n, const int *v, int min_n, kiln_error *err)
{
    if (n < min_n || n > NN_MAX_LAYERS)
        return kiln_fail(err, KILN_EINVAL, "%s: %d layers; allowed %d to %d", what, n, min_n,
                         NN_MAX_LAYERS);
    for (int i = 0; i < n; i++)
        if (v[i] < 1 || v[i] > MAX_DIM)
            return kiln_fail(err, KILN_EINVAL, "%s[%d] = %d; allowed 1 to %d", what, i, v[i],
                             MAX_DIM);
    return 0;
}

/* Everything nn_new needs before it builds the layers. */
static int check_arch(const nn_arch *a, kiln_error *err)
{
    int rc;
    if (a->family != NN_MLP && a->family != NN_CNN && a->family != NN_LOGISTIC)
        return kiln_fail(err, KILN_EINVAL, "model: unknown family %d", (int)a->family);
    if (a->activation != NN_RELU && a->activation != NN_TANH && a->activation != NN_SIGMOID)
        return kiln_fail(err, KILN_EINVAL, "model: unknown activation %d", (int)a->activation);
    if (a->in_h < 1 || a->in_w < 1 || a->in_c < 1 || a->in_h > MAX_DIM || a->in_w > MAX_DIM ||
        a->in_c > MAX_DIM || (size_t)a->in_h * a->in_w * a->in_c > MAX_INPUT)
        return kiln_fail(err, KILN_EINVAL,
                         "model: input %dx%dx%d out of range (at most %zu values)", a->in_h,
                         a->in_w, a->in_c, MAX_INPUT);
    if (a->n_classes < 2 || a->n_classes > MAX_DIM)
        return kiln_fail(err, KILN_EINVAL, "model: %d classes; allowed 2 to %d", a->n_classes,
                         MAX_DIM);
    if (!isfinite(a->dropout) || a->dropout < 0.0f || a->dropout > 0.95f)
        return kiln_fail(err, KILN_EINVAL, "model: dropout %g; allowed 0 to 0.95",
                         (double)a->dropout);
    /* every count is checked, used or not, because nn_arch_to_json reads them */
    if ((rc = check_widths("hiddenLayers", a->n_hidden, a->hidden, 0, err)) ||
        (rc = check_widths("convFilters", a->n_conv, a->conv, a->family == NN_CNN ? 1 : 0, err)) ||
        (rc = check_widths("denseLayers", a->n_dense, a->dense, 0, err)))
        return rc;
    if (a->family == NN_CNN && ((a->in_h >> a->n_conv) < 1 || (a->in_w >> a->n_conv) < 1))
        return kiln_fail(err, KILN_EINVAL,
                         "model: a %dx%d image is too small for %d conv blocks (each halves it)",
                         a->in_h, a->in_w, a->n_conv);
    if (a->family == NN_CNN) {
        /* bound every conv's per-row sizes before build_ops does int math */
        size_t h = (size_t)a->in_h, w = (size_t)a->in_w, c = (size_t)a->in_c;
        for (int i = 0; i < a->n_conv; i++) {
            if (h * w * (size_t)a->conv[i] > MAX_ACTS || h * w * 9 * c > MAX_ACTS)
                return kiln_fail(err, KILN_EINVAL, "model: conv block %d is too large (%zux%zux%d)",
                                 i + 1, h, w, a->conv[i]);
            h /= 2;
            w /= 2;
            c = (size_t)a->conv[i];
        }
    }
    return 0;
}

cJSON *nn_arch_to_json(const nn_arch *a)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    int in[3] = {a->in_h, a->in_w, a->in_c};
    int nh = a->n_hidden < 0 ? 0 : a->n_hidden > NN_MAX_LAYERS ? NN_MAX_LAYERS : a->n_hidden;
    int nc = a->n_conv < 0 ? 0 : a->n_conv > NN_MAX_LAYERS ? NN_MAX_LAYERS : a->n_conv;
    int nd = a->n_dense < 0 ? 0 : a->n_dense > NN_MAX_LAYERS ? NN_MAX_LAYERS : a->n_dense;
    if (!cJSON_AddStringToObject(j, "family", family_name(a->family)) ||
        !cJSON_AddItemToObject(j, "input", cJSON_CreateIntArray(in, 3)) ||
        !cJSON_AddItemToObject(j, "hiddenLayers", cJSON_CreateIntArray(a->hidden, nh)) ||
        !cJSON_AddStringToObject(j, "activation", act_name(a->activation)) ||
        !cJSON_AddNumberToObject(j, "dropout", (double)a->dropout) ||
        !cJSON_AddItemToObject(j, "convFilters", cJSON_CreateIntArray(a->conv, nc)) ||
        !cJSON_AddItemToObject(j, "denseLayers", cJSON_CreateIntArray(a->dense, nd)) ||
        !cJSON_AddNumberToObject(j, "classes", a->n_classes)) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* An integral JSON number in [lo, hi]. */
static int json_int(const cJSON *v, int lo, int hi, int *out)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
        v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
        return -1;
    *out = (int)v->valuedouble;
    return 0;
}

static int json_widths(const cJSON *j, const char *key, int *n, int *v, kiln_error *err)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, key);
    *n = 0;
    if (!arr || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr))
        return kiln_fail(err, KILN_EINVAL, "arch.%s: not an array", key);
    int count = cJSON_GetArraySize(arr);
    if (count > NN_MAX_LAYERS)
        return kiln_fail(err, KILN_EINVAL, "arch.%s: %d entries; at most %d", key, count,
                         NN_MAX_LAYERS);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        if (json_int(e, 1, MAX_DIM, &v[i]))
            return kiln_fail(err, KILN_EINVAL, "arch.%s[%d]: not an integer in 1..%d", key, i,
                             MAX_DIM);
        i++;
    }
    *n = count;
    return 0;
}

int nn_arch_from_json(const cJSON *j, nn_arch *out, kiln_error *err)
{
    nn_arch a;
    memset(&a, 0, sizeof a);
    if (!cJSON_IsObject(j))
        return kiln_fail(err, KILN_EINVAL, "arch: not a JSON object");
    const cJSON *fam = cJSON_GetObjectItemCaseSensitive(j, "family");
    const char *fs = cJSON_GetStringValue(fam);
    if (!fs)
        return kiln_fail(err, KILN_EINVAL, "arch.family: missing or not a string");
    if (!strcmp(fs, "mlp"))
        a.family = NN_MLP;
    else if (!strcmp(fs, "cnn"))
        a.family = NN_CNN;
    else if (!strcmp(fs, "logistic"))
        a.family = NN_LOGISTIC;
    else
        return kiln_fail(err, KILN_EINVAL, "arch.family: \"%.40s\" is not mlp, cnn or logistic",
                         fs);

    const cJSON *in = cJSON_GetObjectItemCaseSensitive(j, "input");
    if (!cJSON_IsArray(in) || cJSON_GetArraySize(in) != 3 ||
        json_int(cJSON_GetArrayItem(in, 0), 1, MAX_DIM, &a.in_h) ||
        json_int(cJSON_GetArrayItem(in, 1), 1, MAX_DIM, &a.in_w) ||
        json_int(cJSON_GetArrayItem(in, 2), 1, MAX_DIM, &a.in_c))
        return kiln_fail(err, KILN_EINVAL, "arch.input: want [h, w, c], integers in 1..%d",
                         MAX_DIM);

    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "activation");
    if (act) {
        const char *as = cJSON_GetStringValue(act);
        if (as && !strcmp(as, "relu"))
            a.activation = NN_RELU;
        else if (as && !strcmp(as, "tanh"))
            a.activation = NN_TANH;
        else if (as && !strcmp(as, "sigmoid"))
            a.activation = NN_SIGMOID;
        else
            return kiln_fail(err, KILN_EINVAL, "arch.activation: want relu, tanh or sigmoid");
    }
    const cJSON *dr = cJSON_GetObjectItemCaseSensitive(j, "dropout");
    if (dr) {
        if (!cJSON_IsNumber(dr) || !isfinite(dr->valuedouble) || dr->valuedouble < 0 ||
            dr->valuedouble > 0.95)
            return kiln_fail(err, KILN_EINVAL, "arch.dropout: want a number in [0, 0.95]");
        a.dropout = (float)dr->valuedouble;
    }
    int rc;
    if ((rc = json_widths(j, "hiddenLayers", &a.n_hidden, a.hidden, err)) ||
        (rc = json_widths(j, "convFilters", &a.n_conv, a.conv, err)) ||
        (rc = json_widths(j, "denseLayers", &a.n_dense, a.dense, err)))
        return rc;
    if (json_int(cJSON_GetObjectItemCaseSensitive(j, "classes"), 2, MAX_DIM, &a.n_classes))
        return kiln_fail(err, KILN_EINVAL, "arch.classes: missing or not an integer in 2..%d",
                         MAX_DIM);

    /* the sizes must also make a model we are willing to allocate */
    if ((rc = check_arch(&a, err)) != 0) {
        kiln_error_prefix(err, "arch: ");
        return rc;
    }
    nn_model *probe = calloc(1, sizeof *probe);
    if (!probe)
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    probe->a = a;
    rc = build_ops(probe, err);
    free(probe);
    if (rc) {
        kiln_error_prefix(err, "arch: ");
        return rc;
    }
    *out = a;
    return 0;
}

/* ------------------------------------------------------------ model */

int nn_new(const nn_arch *a, nn_model **out, kiln_error *err)
{
    *out = NULL;
    int rc = check_arch(a, err);
    if (rc)
        return rc;
    nn_model *m = calloc(1, sizeof *m);
    if (!m)
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    m->a = *a;
    if ((rc = build_ops(m, err)) != 0) {
        free(m);
        return rc;
    }
    m->params = calloc(m->n_params, sizeof(float));
    if (!m->params) {
        size_t np = m->n_params;
        free(m);
        return kiln_fail(err, KILN_ENOMEM, "out of memory for %zu parameters", np);
    }
    *out = m;
    return 0;
}

static void slices_free(nn_model *m)
{
    for (int t = 0; t < m->n_slices; t++) {
        free(m->sl[t].mem);
        memset(&m->sl[t], 0, sizeof m->sl[t]);
    }
    m->n_slices = 0;
}

void nn_free(nn_model *m)
{
    if (!m)
        return;
    nn_threads_free(m->pool);
    slices_free(m);
    free(m->mask);
    free(m->params);
    free(m);
}

const nn_arch *nn_get_arch(const nn_model *m)
{
    return &m->a;
}

size_t nn_n_params(const nn_model *m)
{
    return m->n_params;
}

float *nn_params(nn_model *m)
{
    return m->params;
}

const float *nn_params_const(const nn_model *m)
{
    return m->params;
}

void nn_set_reference(nn_model *m, int on)
{
    m->ref = on != 0;
}

void nn_init_params(nn_model *m, rng *r)
{
    for (int l = 0; l < m->n_ops; l++) {
        const op *o = &m->ops[l];
        if (o->kind == OP_POOL)
            continue;
        size_t nw = o->b_off - o->w_off;
        double fan_in = o->kind == OP_CONV ? 9.0 * o->cin : o->in;
        double fan_out = o->kind == OP_CONV ? 9.0 * o->cout : o->out;
        /* He keeps the variance of ReLU outputs steady; Glorot suits
         * the symmetric tanh/sigmoid units and the softmax layer */
        double sd = o->act == NN_ACT_RELU ? sqrt(2.0 / fan_in) : sqrt(2.0 / (fan_in + fan_out));
        float *w = m->params + o->w_off;
        for (size_t i = 0; i < nw; i++)
            w[i] = (float)sd * rng_normal(r);
        memset(m->params + o->b_off, 0,
               (size_t)(o->kind == OP_CONV ? o->cout : o->out) * sizeof(float));
    }
}

/* ------------------------------------------------------------ threads */

void nn_set_threads(int n)
{
    if (n < 1)
        n = 1;
    if (n > NN_MAX_THREADS)
        n = NN_MAX_THREADS;
    /* The engine runs its own kernels (nn_gemm) on its own threads and
     * leaves OpenBLAS's thread count to the modules that call it. */
    atomic_store(&g_threads, n);
}

int nn_get_threads(void)
{
    int n = atomic_load(&g_threads);
    if (n > 0)
        return n;
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c < 1 ? 1 : c > NN_MAX_THREADS ? NN_MAX_THREADS : (int)c;
}

/* ------------------------------------------------------------ workspaces */

#define ALIGN_FLOATS 16 /* 64-byte sub-buffers */

static size_t round_up(size_t n)
{
    return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
}

/* Lays out (mem == NULL: only counts) the buffers of a slice of cap rows. */
static size_t slice_layout(const nn_model *m, slice *s, float *mem, int train)
{
    size_t off = 0, cap = (size_t)s->cap;
#define TAKE(ptr, count)                                                                           \
    do {                                                                                           \
        (ptr) = mem ? mem + off : NULL;                                                            \
        off += round_up(count);                                                                    \
    } while (0)
    for (int l = 0; l < m->n_ops; l++) {
        const op *o = &m->ops[l];
        TAKE(s->act[l], cap * o->out);
        if (train && o->dropout)
            TAKE(s->pre[l], cap * o->out);
        else
            s->pre[l] = NULL;
        if (o->kind == OP_CONV)
            TAKE(s->col[l], cap * o->h * o->w * 9 * o->cin);
        else
            s->col[l] = NULL;
    }
    if (train) {
        TAKE(s->g0, cap * m->max_act);
        TAKE(s->g1, cap * m->max_act);
        TAKE(s->dcol, cap * m->max_dcol);
        TAKE(s->grad, m->n_params);
        TAKE(s->gpart, m->n_params);
    }
    TAKE(s->work, NN_GEMM_WORK);
#undef TAKE
    return off;
}

static int slice_alloc(const nn_model *m, slice *s, int cap, int train)
{
    memset(s, 0, sizeof *s);
    s->cap = cap;
    size_t n = slice_layout(m, s, NULL, train);
    s->mem = aligned_alloc(64, n * sizeof(float));
    if (!s->mem)
        return KILN_ENOMEM;
    slice_layout(m, s, s->mem, train);
    return 0;
}

/* Sizes the pool, slices and masks for a batch of B rows. Allocates only
 * when the thread count changes or B grows past what was seen. */
static int ensure_train_state(nn_model *m, int B)
{
    int nt = nn_get_threads();
    if (!m->pool || nn_threads_count(m->pool) != nt) {
        nn_threads_free(m->pool);
        m->pool = NULL;
        slices_free(m);
        if (nn_threads_new(nt, &m->pool) != 0)
            return KILN_ENOMEM;
    }
    int cap = (B + nt - 1) / nt;
    if (cap > SLICE_ROWS)
        cap = SLICE_ROWS;
    if (m->n_slices != nt || m->sl[0].cap < cap) {
        slices_free(m);
        for (int t = 0; t < nt; t++) {
            if (slice_alloc(m, &m->sl[t], cap, 1) != 0) {
                m->n_slices = t;
                slices_free(m);
                return KILN_ENOMEM;
            }
            m->n_slices = t + 1;
        }
    }
    size_t need = (size_t)B * m->mask_per_row;
    if (need > m->mask_cap) {
        free(m->mask);
        m->mask = malloc(need * sizeof(float));
        m->mask_cap = m->mask ? need : 0;
        if (!m->mask)
            return KILN_ENOMEM;
    }
    return 0;
}

/* ------------------------------------------------------------ forward/backward */

/* Forward pass of rows [r0, r0 + n) of a batch of B rows; x points at row
 * r0. mask: the batch's dropout masks, NULL for inference. */
static void forward(const nn_model *m, slice *s, const float *x, int n, const float *mask, int r0,
                    int B)
{
    float *work = m->ref ? NULL : s->work;
    const float *in = x;
    for (int l = 0; l < m->n_ops; l++) {
        const op *o = &m->ops[l];
        float *out = s->act[l];
        const float *w = m->params + o->w_off, *b = m->params + o->b_off;
        if (o->kind == OP_DENSE) {
            int drop = o->dropout && mask;
            float *h = drop ? s->pre[l] : out;
            nn_ops_dense_forward(h, in, w, n, o->in, o->out, work);
            nn_ops_bias_act(h, b, n, o->out, o->act);
            if (drop) {
                const float *mk = mask + o->mask_off * B + (size_t)r0 * o->out;
                for (size_t i = 0; i < (size_t)n * o->out; i++)
                    out[i] = h[i] * mk[i];
            }
        } else if (o->kind == OP_CONV) {
            nn_ops_conv_forward(out, s->col[l], in, w, b, n, o->h, o->w, o->cin, o->cout, work);
        } else {
            nn_ops_pool_forward(out, in, n, o->h, o->w, o->cin);
        }
        in = out;
    }
}

/* Loss and backward pass of rows [r0, r0 + n) held in slice s: adds to
 * s->loss and s->correct, writes the parameter gradient to grad. */
static void backward(const nn_model *m, slice *s, float *grad, const float *x, const int32_t *y,
                     int n, const float *mask, int r0, int B)
{
    float *work = m->ref ? NULL : s->work;
    const op *last = &m->ops[m->n_ops - 1];
    float *d = s->g0, *dn = s->g1, *t;
    s->loss +=
        nn_ops_softmax_xent(d, &s->correct, s->act[m->n_ops - 1], y, n, last->out, 1.0f / (float)B);
    for (int l = m->n_ops - 1; l >= 0; l--) {
        const op *o = &m->ops[l];
        const float *in = l ? s->act[l - 1] : x;
        const float *w = m->params + o->w_off;
        float *gw = grad + o->w_off, *gb = grad + o->b_off;
        if (o->kind == OP_DENSE) {
            const float *h = s->act[l];
            if (o->dropout && mask) {
                const float *mk = mask + o->mask_off * B + (size_t)r0 * o->out;
                for (size_t i = 0; i < (size_t)n * o->out; i++)
                    d[i] *= mk[i];
                h = s->pre[l];
            }
            nn_ops_act_backward(d, h, (size_t)n * o->out, o->act);
            nn_ops_dense_backward_params(gw, gb, in, d, n, o->in, o->out, work);
            if (l > 0)
                nn_ops_dense_backward_input(dn, d, w, n, o->in, o->out, work);
        } else if (o->kind == OP_POOL) {
            /* the op before a pool is always its conv: this also applies
             * that conv's ReLU, so the conv backward gets pre-ReLU grads */
            nn_ops_pool_relu_backward(dn, d, s->act[l - 1], n, o->h, o->w, o->cin);
        } else {
            nn_ops_conv_backward(gw, gb, l > 0 ? dn : NULL, s->dcol, s->col[l], in, d, w, n, o->h,
                                 o->w, o->cin, o->cout, work);
        }
        t = d;
        d = dn;
        dn = t;
    }
}

/* ------------------------------------------------------------ training step */

typedef struct step_job {
    nn_model *m;
    nn_optim *o;
    const float *x;
    const int32_t *y;
    const float *mask; /* NULL: dropout off */
    int B;
    int active; /* slices with rows: min(threads, B) */
    const float *grads[NN_MAX_THREADS];
} step_job;

static void slice_rows(int B, int t, int n, int *r0, int *r1)
{
    *r0 = (int)((long)B * t / n);
    *r1 = (int)((long)B * (t + 1) / n);
}

static void job_forward_backward(void *arg, int tid, int nt)
{
    (void)nt;
    step_job *j = arg;
    if (tid >= j->active)
        return;
    const nn_model *m = j->m;
    slice *s = &j->m->sl[tid];
    int r0, r1;
    slice_rows(j->B, tid, j->active, &r0, &r1);
    s->loss = 0.0;
    s->correct = 0;
    /* A slice larger than its workspace runs in passes; the passes'
     * gradients are summed in order into s->grad. */
    for (int p0 = r0; p0 < r1; p0 += s->cap) {
        int n = r1 - p0 < s->cap ? r1 - p0 : s->cap;
        const float *xs = j->x + (size_t)p0 * m->ops[0].in;
        float *grad = p0 == r0 ? s->grad : s->gpart;
        forward(m, s, xs, n, j->mask, p0, j->B);
        backward(m, s, grad, xs, j->y + p0, n, j->mask, p0, j->B);
        if (grad != s->grad)
            for (size_t i = 0; i < m->n_params; i++)
                s->grad[i] += grad[i];
    }
}

static void job_update(void *arg, int tid, int nt)
{
    step_job *j = arg;
    size_t n = j->m->n_params;
    /* ranges rounded to cache lines so threads never share one */
    size_t lo = round_up(n * (size_t)tid / (size_t)nt),
           hi = round_up(n * (size_t)(tid + 1) / (size_t)nt);
    if (lo > n)
        lo = n;
    if (hi > n || tid == nt - 1)
        hi = n;
    if (lo < hi)
        nn_optim_apply(j->o, j->m->params, j->grads, j->active, lo, hi);
}

static void draw_masks(nn_model *m, int B, rng *r)
{
    float p = m->a.dropout, keep = 1.0f / (1.0f - p);
    for (int l = 0; l < m->n_ops; l++) {
        const op *o = &m->ops[l];
        if (!o->dropout)
            continue;
        float *mk = m->mask + o->mask_off * B;
        for (size_t i = 0; i < (size_t)B * o->out; i++)
            mk[i] = rng_uniform(r) < p ? 0.0f : keep;
    }
}

static int check_labels(const nn_model *m, const int32_t *y, int B)
{
    for (int i = 0; i < B; i++)
        if (y[i] < 0 || y[i] >= m->a.n_classes)
            return KILN_EINVAL;
    return 0;
}

/* Forward + backward of the whole batch over the pool; fills j. */
static int run_forward_backward(nn_model *m, step_job *j, const float *x, const int32_t *y, int B,
                                rng *mask_rng)
{
    if (B < 1 || !x || !y || check_labels(m, y, B))
        return KILN_EINVAL;
    int rc = ensure_train_state(m, B);
    if (rc)
        return rc;
    memset(j, 0, sizeof *j);
    j->m = m;
    j->x = x;
    j->y = y;
    j->B = B;
    j->active = m->n_slices < B ? m->n_slices : B;
    if (m->mask_per_row && mask_rng) {
        draw_masks(m, B, mask_rng);
        j->mask = m->mask;
    }
    nn_threads_run(m->pool, job_forward_backward, j);
    for (int t = 0; t < j->active; t++)
        j->grads[t] = m->sl[t].grad;
    return 0;
}

int nn_train_batch(nn_model *m, nn_optim *o, const float *x, const int32_t *y, int B, rng *r,
                   float *loss, int *n_correct)
{
    if (!o || nn_optim_n_params(o) != m->n_params)
        return KILN_EINVAL;
    step_job j;
    int rc = run_forward_backward(m, &j, x, y, B, r);
    if (rc)
        return rc;
    double sum = 0.0;
    int correct = 0;
    for (int t = 0; t < j.active; t++) {
        sum += m->sl[t].loss;
        correct += m->sl[t].correct;
    }
    if (loss)
        *loss = (float)(sum / B);
    if (n_correct)
        *n_correct = correct;
    j.o = o;
    nn_optim_begin_step(o);
    nn_threads_run(m->pool, job_update, &j);
    return 0;
}

/* nn_loss_grad with the mean loss in double: the gradient check divides
 * loss differences by a small step, where float rounding would dominate. */
static int loss_grad(nn_model *m, const float *x, const int32_t *y, int B, rng *mask_rng,
                     float *grad, double *loss)
{
    step_job j;
    int rc = run_forward_backward(m, &j, x, y, B, mask_rng);
    if (rc)
        return rc;
    double sum = 0.0;
    for (int t = 0; t < j.active; t++)
        sum += m->sl[t].loss;
    *loss = sum / B;
    if (grad) {
        memcpy(grad, j.grads[0], m->n_params * sizeof(float));
        for (int t = 1; t < j.active; t++)
            for (size_t i = 0; i < m->n_params; i++)
                grad[i] += j.grads[t][i];
    }
    return 0;
}

int nn_loss_grad(nn_model *m, const float *x, const int32_t *y, int B, rng *mask_rng, float *grad,
                 float *loss)
{
    double l;
    int rc = loss_grad(m, x, y, B, mask_rng, grad, &l);
    if (!rc && loss)
        *loss = (float)l;
    return rc;
}

/* ------------------------------------------------------------ inference */

int nn_predict(const nn_model *m, const float *x, int B, float *probs)
{
    if (B < 0 || (B > 0 && (!x || !probs)))
        return KILN_EINVAL;
    if (B == 0)
        return 0;
    /* Scratch of this call only: concurrent calls share nothing mutable. */
    slice s;
    int cap = B < PREDICT_CHUNK ? B : PREDICT_CHUNK;
    if (slice_alloc(m, &s, cap, 0) != 0)
        return KILN_ENOMEM;
    const int in = m->ops[0].in, k = m->a.n_classes;
    for (int r = 0; r < B; r += cap) {
        int n = B - r < cap ? B - r : cap;
        forward(m, &s, x + (size_t)r * in, n, NULL, 0, 0);
        nn_ops_softmax(probs + (size_t)r * k, s.act[m->n_ops - 1], n, k);
    }
    free(s.mem);
    return 0;
}

/* ------------------------------------------------------------ inference into caller scratch */

/* The model server runs one request's instances, or the few requests one
 * pass of its event loop completed, thousands of times a second.
 * nn_predict would allocate a slice (with gemm packing space) per call and
 * run passes below four rows through the plain loop of nn_ops. nn_infer
 * works in a caller-owned workspace and runs such passes row by row
 * through a matrix-vector kernel that sums in nn_gemm's order: per
 * NN_GEMM_KC block of inputs an FMA chain from zero, blocks added in
 * order. So an instance gets the same bits alone as inside a batch of four
 * or more (on CPUs with AVX2/FMA): a request's answer does not depend on
 * what it was batched with. Inputs that are exactly zero (ReLU outputs;
 * raw zeros when the preprocessing keeps 0 at 0) are skipped: fma(0, w, t)
 * == t for finite weights, so skipping changes no bit. */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_X86_MATVEC 1

static int have_matvec(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* The nonzero inputs of [k0, k1) as indices into nz (branch-free: image
 * pixels are zero or not at random, which a branch would mispredict). */
static int nonzero(int *nz, const float *x, int k0, int k1)
{
    int n = 0;
    for (int i = k0; i < k1; i++) {
        nz[n] = i;
        n += x[i] != 0.0f;
    }
    return n;
}

/* y (out) = x (in) . w (in, out), in nn_gemm's summation order; nz: room
 * for NN_GEMM_KC indices. */
__attribute__((target("avx2,fma"))) static void
matvec_avx2(float *y, const float *x, const float *w, int in, int out, int *nz)
{
    for (int k0 = 0; k0 < in; k0 += NN_GEMM_KC) {
        const int k1 = in - k0 < NN_GEMM_KC ? in : k0 + NN_GEMM_KC;
        const int n = nonzero(nz, x, k0, k1);
        int o = 0;
        for (; o + 64 <= out; o += 64) {
            __m256 t0 = _mm256_setzero_ps(), t1 = t0, t2 = t0, t3 = t0, t4 = t0, t5 = t0, t6 = t0,
                   t7 = t0;
            for (int j = 0; j < n; j++) {
                const int i = nz[j];
                const __m256 xi = _mm256_broadcast_ss(x + i);
                const float *wi = w + (size_t)i * out + o;
                t0 = _mm256_fmadd_ps(xi, _mm256_loadu_ps(wi), t0);
                t1 = _mm256_fmadd_ps(xi, _mm256_loadu_ps(wi + 8), t1);
                t2 = _mm256_fmadd_ps(xi, _mm256_loadu_ps(wi + 16), t2);
                t3 = _mm256_fmadd_ps(xi, _mm256_loadu_ps(wi + 24), t3);
                t4 = _mm256_fmadd_ps(xi, _mm256_loadu_ps(wi + 32), t4);
                t5 = _mm256_fmadd_ps(xi, _mm256_loadu_ps(wi + 40), t5);
                t6 = _mm256_fmadd_ps(xi, _mm256_loadu_ps(wi + 48), t6);
                t7 = _mm256_fmadd_ps(xi, _mm256_loadu_ps(wi + 56), t7);
            }
            float *yo = y + o;
            if (k0 > 0) {
                t0 = _mm256_add_ps(t0, _mm256_loadu_ps(yo));
                t1 = _mm256_add_ps(t1, _mm256_loadu_ps(yo + 8));
                t2 = _mm256_add_ps(t2, _mm256_loadu_ps(yo + 16));
                t3 = _mm256_add_ps(t3, _mm256_loadu_ps(yo + 24));
                t4 = _mm256_add_ps(t4, _mm256_loadu_ps(yo + 32));
                t5 = _mm256_add_ps(t5, _mm256_loadu_ps(yo + 40));
                t6 = _mm256_add_ps(t6, _mm256_loadu_ps(yo + 48));
                t7 = _mm256_add_ps(t7, _mm256_loadu_ps(yo + 56));
            }
            _mm256_storeu_ps(yo, t0);
            _mm256_storeu_ps(yo + 8, t1);
            _mm256_storeu_ps(yo + 16, t2);
            _mm256_storeu_ps(yo + 24, t3);
            _mm256_storeu_ps(yo + 32, t4);
            _mm256_storeu_ps(yo + 40, t5);
            _mm256_storeu_ps(yo + 48, t6);
            _mm256_storeu_ps(yo + 56, t7);
        }
        for (; o + 8 <= out; o += 8) {
            __m256 t = _mm256_setzero_ps();
            for (int j = 0; j < n; j++)
                t = _mm256_fmadd_ps(_mm256_broadcast_ss(x + nz[j]),
                                    _mm256_loadu_ps(w + (size_t)nz[j] * out + o), t);
            if (k0 > 0)
                t = _mm256_add_ps(t, _mm256_loadu_ps(y + o));
            _mm256_storeu_ps(y + o, t);
        }
        for (; o < out; o++) {
            float t = 0.0f;
            for (int j = 0; j < n; j++)
                t = fmaf(x[nz[j]], w[(size_t)nz[j] * out + o], t);
            y[o] = k0 > 0 ? t + y[o] : t;
        }
    }
}
#else
static int have_matvec(void)
{
    return 0;
}
#endif

/* Rows per pass: the batched path's chunk, so both use the same kernels
 * for the same row counts. */
static int infer_cap(int B)
{
    return B < PREDICT_CHUNK ? B : PREDICT_CHUNK;
}

/* 1 when dense layers may run through matvec_avx2: a dense-only model,
 * the fast kernels on and a CPU with AVX2/FMA. */
static int matvec_ok(const nn_model *m)
{
    if (m->ref || !have_matvec())
        return 0;
    for (int l = 0; l < m->n_ops; l++)
        if (m->ops[l].kind != OP_DENSE)
            return 0;
    return 1;
}

/* Passes of fewer than 4 rows need only the activations: no gemm packing
 * space, no im2col. */
static size_t infer_layout(const nn_model *m, slice *s, float *mem, int cap)
{
    memset(s, 0, sizeof *s);
    s->cap = cap;
    if (cap >= 4 || !matvec_ok(m))
        return slice_layout(m, s, mem, 0);
    size_t off = 0;
    for (int l = 0; l < m->n_ops; l++) {
        s->act[l] = mem ? mem + off : NULL;
        off += round_up((size_t)cap * m->ops[l].out);
    }
    return off;
}

/* n rows, one at a time, through matvec_avx2 (the first row of each op's
 * activations is the only one used). */
static void infer_rows_matvec(const nn_model *m, slice *s, const float *x, int n, float *probs)
{
#ifdef HAVE_X86_MATVEC
    const int in = m->ops[0].in, k = m->a.n_classes;
    int nz[NN_GEMM_KC];
    for (int r = 0; r < n; r++) {
        const float *h = x + (size_t)r * in;
        for (int l = 0; l < m->n_ops; l++) {
            const op *o = &m->ops[l];
            matvec_avx2(s->act[l], h, m->params + o->w_off, o->in, o->out, nz);
            nn_ops_bias_act(s->act[l], m->params + o->b_off, 1, o->out, o->act);
            h = s->act[l];
        }
        nn_ops_softmax(probs + (size_t)r * k, h, 1, k);
    }
#else
    (void)m, (void)s, (void)x, (void)n, (void)probs;
#endif
}

size_t nn_infer_scratch(const nn_model *m, int B)
{
    slice s;
    return infer_layout(m, &s, NULL, infer_cap(B > 0 ? B : 1)) + ALIGN_FLOATS;
}

int nn_infer(const nn_model *m, const float *x, int B, float *probs, float *scratch,
             size_t scratch_n)
{
    if (B < 0 || (B > 0 && (!x || !probs || !scratch)))
        return KILN_EINVAL;
    if (B == 0)
        return 0;
    if (scratch_n < nn_infer_scratch(m, B))
        return KILN_EINVAL;
    /* 64-byte sub-buffers whatever the caller's alignment */
    float *mem = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    slice s;
    const int cap = infer_cap(B), mv = matvec_ok(m);
    infer_layout(m, &s, mem, cap);
    const int in = m->ops[0].in, k = m->a.n_classes;
    for (int r = 0; r < B; r += cap) {
        int n = B - r < cap ? B - r : cap;
        /* the batched kernels below 4 rows would sum in another order */
        if (mv && n < 4) {
            infer_rows_matvec(m, &s, x + (size_t)r * in, n, probs + (size_t)r * k);
            continue;
        }
        forward(m, &s, x + (size_t)r * in, n, NULL, 0, 0);
        nn_ops_softmax(probs + (size_t)r * k, s.act[m->n_ops - 1], n, k);
    }
    return 0;
}

/* ------------------------------------------------------------ gradient check */

/* Central difference of the loss in parameter i with step eps. */
static int numeric_grad(nn_model *m, const float *x, const int32_t *y, int B, const rng *mask_rng,
                        size_t i, float eps, double *out)
{
    float p = m->params[i], up = p + eps, down = p - eps;
    double lp = 0.0, lm = 0.0;
    rng mr;
    if (mask_rng)
        mr = *mask_rng;
    m->params[i] = up;
    int rc = loss_grad(m, x, y, B, mask_rng ? &mr : NULL, NULL, &lp);
    if (mask_rng)
        mr = *mask_rng;
    m->params[i] = down;
    if (!rc)
        rc = loss_grad(m, x, y, B, mask_rng ? &mr : NULL, NULL, &lm);
    m->params[i] = p;
    /* divide by the step actually taken after float rounding */
    *out = (lp - lm) / ((double)up - (double)down);
    return rc;
}

double nn_gradcheck_grad(nn_model *m, const float *x, const int32_t *y, int B, const rng *mask_rng,
                         const float *grad, int samples, rng *r)
{
    /* Each parameter is tried with three steps and its best agreement
     * counts: a large step suffers from ReLU and max-pool kinks it crosses,
     * a small one from float rounding, and a wrong gradient disagrees at
     * every step. */
    static const float steps[3] = {1e-3f, 1e-2f, 1e-4f};
    double worst = 0.0;
    for (int s = 0; s < samples; s++) {
        size_t i = m->n_params <= 0xffffffffu ? rng_below(r, (uint32_t)m->n_params)
                                              : (size_t)(rng_next(r) % m->n_params);
        double a = grad[i], best = INFINITY;
        for (int k = 0; k < 3 && best > 1e-3; k++) {
            double num;
            if (numeric_grad(m, x, y, B, mask_rng, i, steps[k], &num) != 0)
                return INFINITY;
            double e = fabs(a - num) / fmax(fmax(fabs(a), fabs(num)), 1e-2);
            if (e < best)
                best = e;
        }
        if (!(best <= worst)) /* NaN counts as the worst */
            worst = isnan(best) ? INFINITY : best;
    }
    return worst;
}

double nn_gradcheck(nn_model *m, const float *x, const int32_t *y, int B, int samples, rng *r)
{
    float *grad = malloc(m->n_params * sizeof(float));
    if (!grad)
        return INFINITY;
    rng masks;
    rng_seed(&masks, rng_next(r));
    rng mr = masks;
    const int drop = m->mask_per_row > 0;
    double e = INFINITY, loss;
    if (loss_grad(m, x, y, B, drop ? &mr : NULL, grad, &loss) == 0)
        e = nn_gradcheck_grad(m, x, y, B, drop ? &masks : NULL, grad, samples, r);
    free(grad);
    return e;
}
