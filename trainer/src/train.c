/* train: one trial from data to final checkpoint (see train.h).
 *
 * The loop is written to be read top to bottom, like llm.c's: load data,
 * build the model, then for each epoch shuffle, run the batches, evaluate,
 * write an epoch checkpoint that holds everything a resumed run needs to
 * continue bit for bit (parameters, optimizer state, step, RNG state,
 * early-stopping state), and print a progress line. */
#include "train.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "dataset.h"
#include "kmeans.h"
#include "klog.h"
#include "metrics.h"
#include "nn.h"
#include "rng.h"

#define EVAL_BATCH 256
#define TRAIN_EVAL_MAX 10000   /* training metrics on at most this many samples */
#define SILHOUETTE_MAX 2000
#define ELBOW_SAMPLE 10000   /* rows the elbow search looks at */
#define KMEANS_MAX_ITER 300
#define KMEANS_TOL 1e-4

/* What one fit produced: metrics on the validation part and on (a sample
 * of) the training part, and how long and how many epochs it ran. */
typedef struct fit_result {
    cJSON *metrics;       /* owned */
    cJSON *train_metrics; /* owned */
    cJSON *params;        /* owned: effective parameters */
    int epochs;
    char checkpoint[PATH_MAX];
} fit_result;

static void fit_result_release(fit_result *r)
{
    cJSON_Delete(r->metrics);
    cJSON_Delete(r->train_metrics);
    cJSON_Delete(r->params);
    memset(r, 0, sizeof *r);
}

/* Metrics are reported with 6 significant digits: more is noise, and
 * shorter numbers keep the report far below the 4096-byte limit. */
static double round6(double v)
{
    if (!isfinite(v) || v == 0)
        return v;
    char buf[32];
    snprintf(buf, sizeof buf, "%.6g", v);
    return strtod(buf, NULL);
}

static cJSON *num6(double v)
{
    return cJSON_CreateNumber(round6(v));
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int train_exit_code(int rc)
{
    switch (rc) {
    case 0: return 0;
    case KILN_EINVAL:
    case KILN_ENOTFOUND:
    case KILN_ECORRUPT:
    case KILN_EUNSUPPORTED: return 2;
    default: return 1;
    }
}

/* ------------------------------------------------------------ helpers */

static int mkdir_p(const char *dir, kiln_error *err)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return kiln_fail(err, KILN_EINVAL, "--output: path too long");
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return kiln_fail(err, KILN_EIO, "%s: cannot create: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return kiln_fail(err, KILN_EIO, "%s: cannot create: %s", buf, strerror(errno));
    return 0;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The newest epoch-NNNN.kiln in dir, or 0 when there is none. */
static int newest_epoch(const char *dir, char *path, size_t n)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int best = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int ep;
        char tail[8];
        if (sscanf(e->d_name, "epoch-%d.%7s", &ep, tail) == 2 && !strcmp(tail, "kiln") && ep > best)
            best = ep;
    }
    closedir(d);
    if (best)
        snprintf(path, n, "%s/epoch-%04d.kiln", dir, best);
    return best;
}

static void remove_epochs_before(const char *dir, int keep)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int ep;
        char tail[8];
        if (sscanf(e->d_name, "epoch-%d.%7s", &ep, tail) == 2 && !strcmp(tail, "kiln") && ep < keep) {
            char p[PATH_MAX];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    closedir(d);
}

static cJSON *rng_to_json(const rng *r)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < 4; i++) {
        char buf[24];
        snprintf(buf, sizeof buf, "%016llx", (unsigned long long)r->s[i]);
        cJSON_AddItemToArray(a, cJSON_CreateString(buf));
    }
    return a;
}

static int rng_from_json(const cJSON *a, rng *r)
{
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        const cJSON *e = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsString(e))
            return -1;
        char *end;
        r->s[i] = strtoull(e->valuestring, &end, 16);
        if (*end)
            return -1;
    }
    return 0;
}

/* JSON equality of two configs, as a resume check. */
static int same_json(const cJSON *a, const cJSON *b)
{
    return a && b && cJSON_Compare(a, b, 1);
}

static cJSON *classes_json(const data_split *s)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < s->n_classes; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(s->class_names[i]));
    return a;
}

/* Fields every checkpoint header of this trial shares. */
static cJSON *base_header(const char *family, const train_config *cfg, const data_split *s)
{
    cJSON *h = cJSON_CreateObject();
    if (!h)
        return NULL;
    cJSON_AddStringToObject(h, "family", family);
    cJSON_AddStringToObject(h, "kilnVersion", KILN_VERSION);
    cJSON_AddItemToObject(h, "preprocessing", preproc_to_json(s->pp));
    cJSON_AddItemToObject(h, "classes", classes_json(s));
    if (s->is_image) {
        int g[3] = {s->h, s->w, s->c};
        cJSON_AddItemToObject(h, "image", cJSON_CreateIntArray(g, 3));
    }
    cJSON_AddItemToObject(h, "config", config_to_json(cfg));
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(h, "created", ts);
    return h;
}

static void add_cls_metrics(cJSON *obj, const cls_metrics *m, int n_classes)
{
    cJSON_AddItemToObject(obj, "accuracy", num6(m->accuracy));
    cJSON_AddItemToObject(obj, "f1", num6(m->f1));
    if (n_classes >= 2)
        cJSON_AddItemToObject(obj, "auc", num6(m->auc));
    cJSON_AddItemToObject(obj, "loss", num6(m->loss));
}

/* ------------------------------------------------------------ neural nets */

/* Probabilities for the first n rows of ds, in batches. */
static int evaluate(const nn_model *m, const dataset *ds, int n, int n_classes, cls_metrics *out,
                    kiln_error *err)
{
    float *x = malloc((size_t)EVAL_BATCH * (size_t)ds->d * sizeof(float));
    float *probs = malloc((size_t)n * (size_t)n_classes * sizeof(float));
    int32_t *idx = malloc((size_t)EVAL_BATCH * sizeof(int32_t));
    int rc = 0;
    if (!x || !probs || !idx) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory for evaluation");
        goto done;
    }
    for (int i = 0; i < n && !rc; i += EVAL_BATCH) {
        int b = n - i < EVAL_BATCH ? n - i : EVAL_BATCH;
        for (int k = 0; k < b; k++)
            idx[k] = i + k;
        dataset_gather(ds, idx, b, x);
        rc = nn_predict(m, x, b, probs + (size_t)i * (size_t)n_classes);
    }
    if (rc)
        rc = kiln_fail(err, rc, "inference failed during evaluation");
    else
        metrics_classification(probs, ds->y, n, n_classes, out);
done:
    free(x);
    free(probs);
    free(idx);
    return rc;
}

static int build_arch(const train_config *cfg, const char *family, const data_split *s,
                      nn_arch *a, kiln_error *err)
{
    memset(a, 0, sizeof *a);
    a->n_classes = s->n_classes;
    if (s->n_classes < 2)
        return kiln_fail(err, KILN_EINVAL, "data: %d distinct label value(s); a classifier needs at least 2",
                         s->n_classes);
    a->activation = !strcmp(cfg->activation, "tanh")      ? NN_TANH
                    : !strcmp(cfg->activation, "sigmoid") ? NN_SIGMOID
                                                          : NN_RELU;
    a->dropout = (float)cfg->dropout;
    if (!strcmp(family, "cnn")) {
        if (!s->is_image)
            return kiln_fail(err, KILN_EINVAL,
                             "model.family: cnn needs image data (IDX images); this data is tabular");
        a->family = NN_CNN;
        a->in_h = s->h;
        a->in_w = s->w;
        a->in_c = s->c;
        a->n_conv = cfg->n_conv;
        memcpy(a->conv, cfg->conv, sizeof a->conv);
        a->n_dense = cfg->n_dense;
        memcpy(a->dense, cfg->dense, sizeof a->dense);
    } else {
        a->family = !strcmp(family, "logistic") ? NN_LOGISTIC : NN_MLP;
        a->in_h = s->train.d;
        a->in_w = 1;
        a->in_c = 1;
        if (a->family == NN_MLP) {
            a->n_hidden = cfg->n_hidden;
            memcpy(a->hidden, cfg->hidden, sizeof a->hidden);
        }
    }
    return 0;
}

static cJSON *nn_params_json(const train_config *cfg, const char *family)
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "family", family);
    if (!strcmp(family, "mlp")) {
        cJSON_AddItemToObject(p, "hiddenLayers", cJSON_CreateIntArray(cfg->hidden, cfg->n_hidden));
        cJSON_AddStringToObject(p, "activation", cfg->activation);
        cJSON_AddNumberToObject(p, "dropout", cfg->dropout);
    } else if (!strcmp(family, "cnn")) {
        cJSON_AddItemToObject(p, "convFilters", cJSON_CreateIntArray(cfg->conv, cfg->n_conv));
        cJSON_AddItemToObject(p, "denseLayers", cJSON_CreateIntArray(cfg->dense, cfg->n_dense));
        cJSON_AddNumberToObject(p, "dropout", cfg->dropout);
    }
    cJSON_AddNumberToObject(p, "epochs", cfg->epochs);
    cJSON_AddNumberToObject(p, "batchSize", cfg->batch_size);
    cJSON_AddNumberToObject(p, "learningRate", cfg->learning_rate);
    cJSON_AddStringToObject(p, "optimizer", cfg->optimizer);
    cJSON_AddNumberToObject(p, "seed", (double)cfg->seed);
    return p;
}

/* Copies parameters from a model file of the same architecture. */
static int warm_start(nn_model *m, const char *path, kiln_error *err)
{
    ckpt *ck = NULL;
    int rc = ckpt_read(path, &ck, err);
    if (rc)
        return kiln_error_prefix(err, "--warm-start: ");
    nn_arch theirs;
    rc = nn_arch_from_json(cJSON_GetObjectItemCaseSensitive(ckpt_header(ck), "arch"), &theirs, err);
    cJSON *a = nn_arch_to_json(nn_get_arch(m));
    cJSON *b = rc ? NULL : nn_arch_to_json(&theirs);
    size_t count = 0;
    const float *p = ckpt_section_data(ck, "params", &count);
    if (!rc && (!same_json(a, b) || !p || count != nn_n_params(m)))
        rc = kiln_fail(err, KILN_EINVAL,
                       "--warm-start %s: its architecture differs from this trial's; warm starts "
                       "need the same architecture", path);
    if (!rc)
        memcpy(nn_params(m), p, count * sizeof(float));
    cJSON_Delete(a);
    cJSON_Delete(b);
    ckpt_free(ck);
    return rc;
}

typedef struct nn_state {
    nn_model *m;
    nn_optim *opt;
    rng r;              /* shuffles and dropout */
    int epoch;          /* epochs completed */
    double best;        /* early stopping: best validation accuracy */
    int best_epoch, bad_epochs;
    float *best_params; /* when patience > 0 */
    cJSON *history;     /* progress lines so far */
} nn_state;

static int save_epoch(const char *dir, const cJSON *base, nn_state *st, kiln_error *err)
{
    cJSON *h = cJSON_Duplicate(base, 1);
    if (!h)
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    cJSON_AddStringToObject(h, "kind", "epoch");
    cJSON_AddNumberToObject(h, "epoch", st->epoch);
    cJSON_AddItemToObject(h, "arch", nn_arch_to_json(nn_get_arch(st->m)));
    cJSON_AddItemToObject(h, "rng", rng_to_json(&st->r));
    float *ostate;
    size_t on;
    int64_t step;
    nn_optim_state(st->opt, &ostate, &on, &step);
    cJSON_AddNumberToObject(h, "step", (double)step);
    cJSON_AddNumberToObject(h, "bestAccuracy", st->best);
    cJSON_AddNumberToObject(h, "bestEpoch", st->best_epoch);
    cJSON_AddNumberToObject(h, "badEpochs", st->bad_epochs);
    cJSON_AddItemToObject(h, "history", cJSON_Duplicate(st->history, 1));
    ckpt_section secs[3] = {
        {"params", nn_params(st->m), nn_n_params(st->m)},
        {"optim", ostate, on},
        {"best", st->best_params, st->best_params ? nn_n_params(st->m) : 0},
    };
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/epoch-%04d.kiln", dir, st->epoch);
    int rc = ckpt_write(path, h, secs, st->best_params ? 3 : 2, err);
    cJSON_Delete(h);
    if (rc == 0)
        remove_epochs_before(dir, st->epoch);
    return rc;
}

static int load_epoch(const char *path, const cJSON *base, nn_state *st, kiln_error *err)
{
    ckpt *ck = NULL;
    int rc = ckpt_read(path, &ck, err);
    if (rc)
        return kiln_error_prefix(err, "--resume: ");
    const cJSON *h = ckpt_header(ck);
    cJSON *arch = nn_arch_to_json(nn_get_arch(st->m));
    const cJSON *ep = cJSON_GetObjectItemCaseSensitive(h, "epoch");
    const cJSON *stepj = cJSON_GetObjectItemCaseSensitive(h, "step");
    size_t pn = 0, on = 0, bn = 0;
    const float *p = ckpt_section_data(ck, "params", &pn);
    const float *o = ckpt_section_data(ck, "optim", &on);
    const float *b = ckpt_section_data(ck, "best", &bn);
    float *ostate;
    size_t want_on;
    int64_t step;
    nn_optim_state(st->opt, &ostate, &want_on, &step);
    if (!same_json(cJSON_GetObjectItemCaseSensitive(h, "config"),
                   cJSON_GetObjectItemCaseSensitive(base, "config"))) {
        rc = kiln_fail(err, KILN_EINVAL,
                       "--resume: %s was written by a different trial configuration", path);
    } else if (!same_json(cJSON_GetObjectItemCaseSensitive(h, "arch"), arch) || !p ||
               pn != nn_n_params(st->m) || !o || on != want_on || !cJSON_IsNumber(ep) ||
               !cJSON_IsNumber(stepj) || rng_from_json(cJSON_GetObjectItemCaseSensitive(h, "rng"), &st->r)) {
        rc = kiln_fail(err, KILN_ECORRUPT, "--resume: %s does not match this trial's model", path);
    } else {
        memcpy(nn_params(st->m), p, pn * sizeof(float));
        memcpy(ostate, o, on * sizeof(float));
        nn_optim_set_step(st->opt, (int64_t)stepj->valuedouble);
        st->epoch = ep->valueint;
        st->best = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(h, "bestAccuracy"));
        st->best_epoch = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(h, "bestEpoch"));
        st->bad_epochs = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(h, "badEpochs"));
        if (st->best_params && b && bn == pn)
            memcpy(st->best_params, b, bn * sizeof(float));
        const cJSON *hist = cJSON_GetObjectItemCaseSensitive(h, "history");
        if (cJSON_IsArray(hist)) {
            cJSON_Delete(st->history);
            st->history = cJSON_Duplicate(hist, 1);
        }
    }
    cJSON_Delete(arch);
    ckpt_free(ck);
    return rc;
}

/* Trains one network on split s. dir == NULL: no checkpoints (a CV fold). */
static int fit_nn(const train_config *cfg, const train_opts *o, const char *family,
                  const data_split *s, const char *dir, int fold, fit_result *res, kiln_error *err)
{
    nn_arch arch;
    int rc = build_arch(cfg, family, s, &arch, err);
    if (rc)
        return rc;
    nn_state st = {0};
    st.best = -1;
    st.history = cJSON_CreateArray();
    float *xb = NULL;
    int32_t *yb = NULL, *order = NULL;
    cJSON *base = NULL;
    if ((rc = nn_new(&arch, &st.m, err)) != 0)
        goto done;
    rng init;
    rng_seed(&init, cfg->seed * 2 + 1);
    nn_init_params(st.m, &init);
    rng_seed(&st.r, cfg->seed);
    nn_optim_params op = {
        .kind = !strcmp(cfg->optimizer, "sgd") ? NN_SGD : NN_ADAM,
        .lr = (float)cfg->learning_rate,
        .momentum = (float)cfg->momentum,
        .beta1 = 0.9f,
        .beta2 = 0.999f,
        .eps = 1e-8f,
    };
    if ((rc = nn_optim_new(&op, nn_n_params(st.m), &st.opt, err)) != 0)
        goto done;
    size_t np = nn_n_params(st.m);
    if (cfg->patience > 0) {
        st.best_params = malloc(np * sizeof(float));
        if (!st.best_params) {
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
            goto done;
        }
    }
    base = base_header(family, cfg, s);
    if (!base) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
        goto done;
    }
    char resume_path[PATH_MAX];
    if (dir && o->resume && newest_epoch(dir, resume_path, sizeof resume_path) > 0) {
        if ((rc = load_epoch(resume_path, base, &st, err)) != 0)
            goto done;
        klog(KLOG_INFO, "resuming", KS("checkpoint", resume_path), KI("epoch", st.epoch), KEND);
    } else if (o->warm_start) {
        if ((rc = warm_start(st.m, o->warm_start, err)) != 0)
            goto done;
        klog(KLOG_INFO, "warm start", KS("from", o->warm_start), KEND);
    }

    const dataset *tr = &s->train;
    int B = cfg->batch_size < tr->n ? cfg->batch_size : tr->n;
    xb = malloc((size_t)B * (size_t)tr->d * sizeof(float));
    yb = malloc((size_t)B * sizeof(int32_t));
    order = malloc((size_t)tr->n * sizeof(int32_t));
    if (!xb || !yb || !order) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory for batches");
        goto done;
    }
    const char *fault = getenv("KILN_FAULT_KILL_AT_EPOCH");
    int kill_at_epoch = fault ? (int)strtol(fault, NULL, 10) : 0;
    int stopped_early = 0;
    while (st.epoch < cfg->epochs && !stopped_early) {
        double t0 = now_seconds();
        for (int i = 0; i < tr->n; i++)
            order[i] = i;
        rng_shuffle(&st.r, order, tr->n);
        double loss_sum = 0;
        long correct = 0;
        for (int i = 0; i < tr->n; i += B) {
            int b = tr->n - i < B ? tr->n - i : B;
            dataset_gather(tr, order + i, b, xb);
            for (int k = 0; k < b; k++)
                yb[k] = tr->y[order[i + k]];
            float loss;
            int nc;
            if ((rc = nn_train_batch(st.m, st.opt, xb, yb, b, &st.r, &loss, &nc)) != 0) {
                rc = kiln_fail(err, rc, "training step failed at epoch %d", st.epoch + 1);
                goto done;
            }
            loss_sum += (double)loss * b;
            correct += nc;
        }
        double seconds = now_seconds() - t0;
        st.epoch++;
        double loss = loss_sum / tr->n;
        if (!isfinite(loss)) {
            rc = kiln_fail(err, KILN_EINVAL,
                           "training diverged at epoch %d (loss is %g); lower training.learningRate",
                           st.epoch, loss);
            goto done;
        }
        cls_metrics vm;
        if ((rc = evaluate(st.m, &s->val, s->val.n, s->n_classes, &vm, err)) != 0)
            goto done;
        cJSON *line = cJSON_CreateObject();
        if (fold >= 0)
            cJSON_AddNumberToObject(line, "fold", fold);
        cJSON_AddNumberToObject(line, "epoch", st.epoch);
        cJSON_AddItemToObject(line, "loss", num6(loss));
        cJSON_AddItemToObject(line, "trainAccuracy", num6((double)correct / tr->n));
        cJSON_AddItemToObject(line, "valAccuracy", num6(vm.accuracy));
        cJSON_AddItemToObject(line, "valLoss", num6(vm.loss));
        cJSON_AddItemToObject(line, "seconds", num6(seconds));
        cJSON_AddItemToArray(st.history, line);

        if (vm.accuracy > st.best) {
            st.best = vm.accuracy;
            st.best_epoch = st.epoch;
            st.bad_epochs = 0;
            if (st.best_params)
                memcpy(st.best_params, nn_params(st.m), np * sizeof(float));
        } else if (cfg->patience > 0 && ++st.bad_epochs >= cfg->patience) {
            klog(KLOG_INFO, "early stopping", KI("epoch", st.epoch), KI("bestEpoch", st.best_epoch),
                 KEND);
            stopped_early = 1;
        }
        if (dir && (rc = save_epoch(dir, base, &st, err)) != 0)
            goto done;
        /* The progress line comes after the epoch checkpoint, so an epoch
         * announced is an epoch a killed run resumes after. */
        char *text = cJSON_PrintUnformatted(line);
        if (text && o->progress) {
            fprintf(o->progress, "%s\n", text);
            fflush(o->progress);
        }
        free(text);
        if (dir && kill_at_epoch == st.epoch) {
            /* Fault injection for the resume tests: die as a killed pod would. */
            fflush(NULL);
            raise(SIGKILL);
        }
    }
    if (st.best_params && st.best_epoch > 0)
        memcpy(nn_params(st.m), st.best_params, np * sizeof(float));

    cls_metrics vm, tm;
    int ntr = tr->n < TRAIN_EVAL_MAX ? tr->n : TRAIN_EVAL_MAX;
    if ((rc = evaluate(st.m, &s->val, s->val.n, s->n_classes, &vm, err)) != 0 ||
        (rc = evaluate(st.m, tr, ntr, s->n_classes, &tm, err)) != 0)
        goto done;
    res->metrics = cJSON_CreateObject();
    add_cls_metrics(res->metrics, &vm, s->n_classes);
    res->train_metrics = cJSON_CreateObject();
    add_cls_metrics(res->train_metrics, &tm, s->n_classes);
    res->params = nn_params_json(cfg, family);
    res->epochs = st.epoch;

    if (dir) {
        cJSON *h = cJSON_Duplicate(base, 1);
        cJSON_AddStringToObject(h, "kind", "model");
        cJSON_AddItemToObject(h, "arch", nn_arch_to_json(nn_get_arch(st.m)));
        cJSON_AddItemToObject(h, "metrics", cJSON_Duplicate(res->metrics, 1));
        cJSON_AddItemToObject(h, "trainMetrics", cJSON_Duplicate(res->train_metrics, 1));
        cJSON_AddItemToObject(h, "params", cJSON_Duplicate(res->params, 1));
        cJSON_AddNumberToObject(h, "epochs", st.epoch);
        ckpt_section sec = {"params", nn_params(st.m), np};
        snprintf(res->checkpoint, sizeof res->checkpoint, "%s/model.kiln", dir);
        rc = ckpt_write(res->checkpoint, h, &sec, 1, err);
        cJSON_Delete(h);
    }
done:
    free(xb);
    free(yb);
    free(order);
    free(st.best_params);
    cJSON_Delete(st.history);
    cJSON_Delete(base);
    nn_optim_free(st.opt);
    nn_free(st.m);
    return rc;
}

/* ------------------------------------------------------------ k-means */

static int fit_kmeans(const train_config *cfg, const data_split *s, const char *dir,
                      fit_result *res, kiln_error *err)
{
    const dataset *tr = &s->train, *va = &s->val;
    int d = tr->d;
    float *x = malloc((size_t)tr->n * (size_t)d * sizeof(float));
    float *xv = malloc(((size_t)va->n + 1) * (size_t)d * sizeof(float));
    int32_t *lab = malloc(((size_t)va->n + 1) * sizeof(int32_t));
    double *curve = calloc((size_t)cfg->max_clusters + 1, sizeof(double));
    kmeans_result km = {0};
    int rc = 0;
    if (!x || !xv || !lab || !curve) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory for %d x %d samples", tr->n, d);
        goto done;
    }
    dataset_gather(tr, NULL, tr->n, x);
    dataset_gather(va, NULL, va->n, xv);
    rng r;
    rng_seed(&r, cfg->seed);
    int k = cfg->clusters;
    cJSON *curve_json = NULL;
    if (k == 0) {
        /* The elbow fits every k from 1 to maxClusters several times: on a
         * large set a seeded sample finds the same bend at a fraction of
         * the cost, and the chosen k is then fitted on all the data. */
        int maxk = cfg->max_clusters < tr->n ? cfg->max_clusters : tr->n;
        int ns = tr->n < ELBOW_SAMPLE ? tr->n : ELBOW_SAMPLE;
        float *xs = x;
        if (ns < tr->n) {
            int32_t *pick = malloc((size_t)tr->n * sizeof(int32_t));
            xs = malloc((size_t)ns * (size_t)d * sizeof(float));
            if (!pick || !xs) {
                free(pick);
                free(xs);
                rc = kiln_fail(err, KILN_ENOMEM, "out of memory for the elbow sample");
                goto done;
            }
            for (int i = 0; i < tr->n; i++)
                pick[i] = i;
            rng_shuffle(&r, pick, tr->n);
            for (int i = 0; i < ns; i++)
                memcpy(xs + (size_t)i * (size_t)d, x + (size_t)pick[i] * (size_t)d, (size_t)d * sizeof(float));
            free(pick);
        }
        rc = kmeans_elbow(xs, ns, d, maxk, KMEANS_MAX_ITER, KMEANS_TOL, &r, &k, curve, err);
        if (xs != x)
            free(xs);
        if (rc)
            goto done;
        curve_json = cJSON_CreateDoubleArray(curve, maxk);
        rng_seed(&r, cfg->seed);
    }
    if (k > tr->n) {
        rc = kiln_fail(err, KILN_EINVAL, "model.kmeans.clusters: %d clusters for %d samples", k, tr->n);
        goto done;
    }
    if ((rc = kmeans_fit(x, tr->n, d, k, KMEANS_MAX_ITER, KMEANS_TOL, &r, &km, err)) != 0)
        goto done;
    double vw = 0;
    double sil = 0;
    if (va->n > 0) {
        kmeans_assign(km.centroids, k, d, xv, va->n, lab, &vw);
        sil = kmeans_silhouette(xv, va->n, d, lab, k, SILHOUETTE_MAX, &r);
    }
    res->metrics = cJSON_CreateObject();
    cJSON_AddItemToObject(res->metrics, "wcss", num6(vw));
    cJSON_AddItemToObject(res->metrics, "silhouette", num6(sil));
    cJSON_AddNumberToObject(res->metrics, "k", k);
    res->train_metrics = cJSON_CreateObject();
    cJSON_AddItemToObject(res->train_metrics, "wcss", num6(km.wcss));
    cJSON_AddNumberToObject(res->train_metrics, "k", k);
    res->params = cJSON_CreateObject();
    cJSON_AddStringToObject(res->params, "family", "kmeans");
    cJSON_AddNumberToObject(res->params, "k", k);
    cJSON_AddNumberToObject(res->params, "maxClusters", cfg->max_clusters);
    cJSON_AddNumberToObject(res->params, "seed", (double)cfg->seed);
    res->epochs = km.iterations;
    if (dir) {
        cJSON *h = base_header("kmeans", cfg, s);
        cJSON_AddStringToObject(h, "kind", "model");
        cJSON_AddNumberToObject(h, "k", k);
        if (curve_json)
            cJSON_AddItemToObject(h, "wcssCurve", cJSON_Duplicate(curve_json, 1));
        cJSON_AddItemToObject(h, "metrics", cJSON_Duplicate(res->metrics, 1));
        cJSON_AddItemToObject(h, "trainMetrics", cJSON_Duplicate(res->train_metrics, 1));
        cJSON_AddItemToObject(h, "params", cJSON_Duplicate(res->params, 1));
        ckpt_section sec = {"centroids", km.centroids, (size_t)k * (size_t)d};
        snprintf(res->checkpoint, sizeof res->checkpoint, "%s/model.kiln", dir);
        rc = ckpt_write(res->checkpoint, h, &sec, 1, err);
        cJSON_Delete(h);
    }
    cJSON_Delete(curve_json);
done:
    kmeans_result_release(&km);
    free(x);
    free(xv);
    free(lab);
    free(curve);
    return rc;
}

/* ------------------------------------------------------------ the trial */

static const char *resolve_family(const train_config *cfg, const data_split *s, kiln_error *err)
{
    const char *f = cfg->family;
    if (!strcmp(f, "auto"))
        return s->n_classes == 0 ? "kmeans" : s->is_image ? "cnn" : "mlp";
    if (!strcmp(f, "cnn") && !s->is_image) {
        kiln_fail(err, KILN_EINVAL,
                  "model.family: cnn needs image data (IDX images); this data is tabular");
        return NULL;
    }
    if (strcmp(f, "kmeans") && s->n_classes == 0) {
        kiln_fail(err, KILN_EINVAL,
                  "model.family: %s needs labels; set data.label to the label column", f);
        return NULL;
    }
    return f;
}

static int fit(const train_config *cfg, const train_opts *o, const char *family,
               const data_split *s, const char *dir, int fold, fit_result *res, kiln_error *err)
{
    if (!strcmp(family, "kmeans"))
        return fit_kmeans(cfg, s, dir, res, err);
    return fit_nn(cfg, o, family, s, dir, fold, res, err);
}

/* Adds mean and standard deviation across folds for every metric key. */
static cJSON *cv_summary(cJSON **fold_metrics, int folds)
{
    cJSON *mean = cJSON_CreateObject(), *sd = cJSON_CreateObject();
    const cJSON *key;
    cJSON_ArrayForEach(key, fold_metrics[0])
    {
        double sum = 0, sq = 0;
        for (int f = 0; f < folds; f++) {
            double v = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(fold_metrics[f], key->string));
            sum += v;
            sq += v * v;
        }
        double m = sum / folds;
        double var = sq / folds - m * m;
        cJSON_AddItemToObject(mean, key->string, num6(m));
        cJSON_AddItemToObject(sd, key->string, num6(var > 0 ? sqrt(var) : 0));
    }
    cJSON *cv = cJSON_CreateObject();
    cJSON_AddNumberToObject(cv, "folds", folds);
    cJSON_AddItemToObject(cv, "mean", mean);
    cJSON_AddItemToObject(cv, "std", sd);
    return cv;
}

int train_run(const train_config *cfg, const train_opts *o, cJSON **report, kiln_error *err)
{
    *report = NULL;
    double t0 = now_seconds();
    char dir[PATH_MAX];
    if (!realpath(o->output_dir, dir)) {
        int rc = mkdir_p(o->output_dir, err);
        if (rc)
            return rc;
        if (!realpath(o->output_dir, dir))
            return kiln_fail(err, KILN_EIO, "%s: %s", o->output_dir, strerror(errno));
    }
    char final_path[PATH_MAX];
    if (snprintf(final_path, sizeof final_path, "%s/model.kiln", dir) >= (int)sizeof final_path)
        return kiln_fail(err, KILN_EINVAL, "--output: path too long");
    if (file_exists(final_path) && !o->resume)
        return kiln_fail(err, KILN_EINVAL,
                         "%s already holds a finished model; use a new --output directory or --resume",
                         dir);

    int threads = cfg->threads > 0 ? cfg->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    nn_set_threads(threads < 1 ? 1 : threads);

    data_opts dopt = {
        .uri = cfg->uri,
        .format = cfg->format,
        .label = cfg->label,
        .validation_split = cfg->validation_split,
        .folds = cfg->folds,
        .max_samples = cfg->max_samples,
        .impute = cfg->impute,
        .scale = cfg->scale,
        .drop_columns = (const char *const *)cfg->drop_columns,
        .n_drop_columns = cfg->n_drop_columns,
        .variance_threshold = cfg->variance_threshold,
        .seed = cfg->seed,
    };
    data_raw *raw = NULL;
    int rc = data_load(&dopt, &raw, err);
    if (rc)
        return rc;

    fit_result res = {0};
    cJSON *cv = NULL;
    data_split s = {0};
    if ((rc = data_split_make(raw, &dopt, -1, &s, err)) != 0)
        goto done;
    const char *family = resolve_family(cfg, &s, err);
    if (!family) {
        rc = KILN_EINVAL;
        goto done;
    }
    if (s.train.n == 0 || s.val.n == 0) {
        rc = kiln_fail(err, KILN_EINVAL,
                       "data: %d training and %d validation samples; both parts need at least one "
                       "(add rows or change data.validationSplit)", s.train.n, s.val.n);
        goto done;
    }
    if (cfg->metric_given) {
        int unsup = !strcmp(family, "kmeans");
        int km_metric = !strcmp(cfg->metric, "wcss") || !strcmp(cfg->metric, "silhouette");
        if (unsup != km_metric) {
            rc = kiln_fail(err, KILN_EINVAL, "objective.metric: %s does not apply to a %s model%s",
                           cfg->metric, family,
                           unsup ? " (use wcss or silhouette)" : " (use accuracy, f1, auc or loss)");
            goto done;
        }
    }
    klog(KLOG_INFO, "training", KS("family", family), KI("trainSamples", s.train.n),
         KI("valSamples", s.val.n), KI("features", s.train.d), KI("classes", s.n_classes),
         KI("threads", threads), KEND);

    if (cfg->folds > 1) {
        cJSON *fm[100] = {0};
        for (int f = 0; f < cfg->folds && !rc; f++) {
            data_split fs = {0};
            fit_result fr = {0};
            rc = data_split_make(raw, &dopt, f, &fs, err);
            if (!rc)
                rc = fit(cfg, o, family, &fs, NULL, f, &fr, err);
            if (!rc)
                fm[f] = cJSON_Duplicate(fr.metrics, 1);
            fit_result_release(&fr);
            data_split_release(&fs);
        }
        if (!rc)
            cv = cv_summary(fm, cfg->folds);
        for (int f = 0; f < cfg->folds; f++)
            cJSON_Delete(fm[f]);
        if (rc)
            goto done;
    }
    if ((rc = fit(cfg, o, family, &s, dir, -1, &res, err)) != 0)
        goto done;

    cJSON *r = cJSON_CreateObject();
    /* With cross-validation, the fold means are the metrics that matter;
     * the final model (trained on the regular split) is what is kept. */
    cJSON_AddItemToObject(r, "metrics",
                          cJSON_Duplicate(cv ? cJSON_GetObjectItemCaseSensitive(cv, "mean") : res.metrics, 1));
    cJSON_AddItemToObject(r, "trainMetrics", cJSON_Duplicate(res.train_metrics, 1));
    cJSON_AddNumberToObject(r, "epochs", res.epochs);
    cJSON_AddItemToObject(r, "params", cJSON_Duplicate(res.params, 1));
    cJSON_AddStringToObject(r, "checkpoint", res.checkpoint);
    cJSON_AddItemToObject(r, "seconds", num6(now_seconds() - t0));
    if (cv) {
        cJSON_AddItemToObject(r, "cv", cv);
        cv = NULL;
    }
    *report = r;
done:
    cJSON_Delete(cv);
    fit_result_release(&res);
    data_split_release(&s);
    data_raw_free(raw);
    return rc;
}
