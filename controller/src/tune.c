/* tune: choosing the next trial (see tune.h for the strategies).
 *
 * Every strategy works on copies of trial parameter objects; "tried" means
 * the same values for the keys that define a configuration (CONFIG_KEYS),
 * so a warm-started six-epoch run and a fresh six-epoch run count as one. */
#include "tune.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const CONFIG_KEYS[] = {"family",       "hiddenLayers", "activation",
                                          "dropout",      "convFilters",  "denseLayers",
                                          "epochs",       "batchSize",    "learningRate",
                                          "optimizer",    "clusters"};
#define N_CONFIG_KEYS (sizeof CONFIG_KEYS / sizeof CONFIG_KEYS[0])

#define MAX_WIDTH 1024
#define MAX_FILTERS 128
#define MAX_CONV_BLOCKS 3
#define MAX_EPOCHS 200
#define OVERFIT_GAP 0.05     /* train above validation by more than this: over-fitting */
#define BIG_GAP 0.10         /* a gap this large is over-fitting even below the goal */
#define MIN_EPOCH_GAIN 0.01  /* a warm start that gained less than this: grow capacity instead */
#define MAX_RANDOM_DRAWS 64

/* ------------------------------------------------------------ JSON helpers */

/* spec path lookup: get(spec, "tuning", "strategy") */
static const cJSON *get2(const cJSON *o, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
    return b ? cJSON_GetObjectItemCaseSensitive(x, b) : x;
}

static const char *str_or(const cJSON *v, const char *def)
{
    return cJSON_IsString(v) ? v->valuestring : def;
}

static double num_or(const cJSON *v, double def)
{
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static void set_num(cJSON *o, const char *key, double v)
{
    cJSON *old = cJSON_GetObjectItemCaseSensitive(o, key);
    if (old)
        cJSON_SetNumberValue(old, v);
    else
        cJSON_AddNumberToObject(o, key, v);
}

static void set_item(cJSON *o, const char *key, cJSON *v)
{
    if (cJSON_GetObjectItemCaseSensitive(o, key))
        cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
    else
        cJSON_AddItemToObject(o, key, v);
}

static void set_str(cJSON *o, const char *key, const char *v)
{
    set_item(o, key, cJSON_CreateString(v));
}

static int int_list(const cJSON *arr, int *out, int cap)
{
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        if (n < cap && cJSON_IsNumber(e))
            out[n++] = e->valueint;
    }
    return n;
}

static void fmt_list(const cJSON *arr, char *buf, size_t n)
{
    char *s = cJSON_PrintUnformatted(arr);
    snprintf(buf, n, "%s", s ? s : "[]");
    free(s);
}

/* ------------------------------------------------------------ objective */

static const char *objective_metric(const cJSON *spec)
{
    return str_or(get2(spec, "objective", "metric"), "accuracy");
}

static int higher_better(const char *metric)
{
    return !(strcmp(metric, "loss") == 0 || strcmp(metric, "wcss") == 0);
}

int tune_metric_value(const cJSON *spec, const cJSON *metrics, double *value)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(metrics, objective_metric(spec));
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return KILN_ENOTFOUND;
    *value = v->valuedouble;
    return 0;
}

int tune_goal_met(const cJSON *spec, double value)
{
    double goal = num_or(get2(spec, "objective", "goal"), 0.8);
    return higher_better(objective_metric(spec)) ? value >= goal : value <= goal;
}

int tune_better(const cJSON *spec, double a, double b)
{
    return higher_better(objective_metric(spec)) ? a > b : a < b;
}

/* ------------------------------------------------------------ parameters */

cJSON *tune_initial(const cJSON *spec)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(spec, "model");
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(spec, "training");
    cJSON *p = cJSON_CreateObject();
    if (!p)
        return NULL;
    cJSON_AddStringToObject(p, "family", str_or(get2(model, "family", NULL), "auto"));
    const cJSON *h = get2(model, "mlp", "hiddenLayers");
    cJSON_AddItemToObject(p, "hiddenLayers",
                          cJSON_IsArray(h) ? cJSON_Duplicate(h, 1) : cJSON_CreateIntArray((int[]){64}, 1));
    cJSON_AddStringToObject(p, "activation", str_or(get2(model, "mlp", "activation"), "relu"));
    cJSON_AddNumberToObject(p, "dropout", num_or(get2(model, "mlp", "dropout"), 0));
    const cJSON *cf = get2(model, "cnn", "convFilters");
    cJSON_AddItemToObject(p, "convFilters",
                          cJSON_IsArray(cf) ? cJSON_Duplicate(cf, 1) : cJSON_CreateIntArray((int[]){8}, 1));
    const cJSON *dl = get2(model, "cnn", "denseLayers");
    cJSON_AddItemToObject(p, "denseLayers",
                          cJSON_IsArray(dl) ? cJSON_Duplicate(dl, 1) : cJSON_CreateIntArray((int[]){64}, 1));
    cJSON_AddNumberToObject(p, "clusters", num_or(get2(model, "kmeans", "clusters"), 0));
    cJSON_AddNumberToObject(p, "epochs", num_or(get2(tr, "epochs", NULL), 3));
    cJSON_AddNumberToObject(p, "batchSize", num_or(get2(tr, "batchSize", NULL), 64));
    cJSON_AddNumberToObject(p, "learningRate", num_or(get2(tr, "learningRate", NULL), 0.001));
    cJSON_AddStringToObject(p, "optimizer", str_or(get2(tr, "optimizer", NULL), "adam"));
    cJSON_AddNumberToObject(p, "seed", num_or(get2(tr, "seed", NULL), 1));
    return p;
}

/* A trial's parameters completed with the spec's values for keys the
 * trainer did not report (it reports only the keys of the family it ran). */
static cJSON *effective_params(const cJSON *spec, const tune_trial *t)
{
    cJSON *p = tune_initial(spec);
    const cJSON *e;
    cJSON_ArrayForEach(e, t->params)
    {
        if (!strcmp(e->string, "warmStartFrom") || !strcmp(e->string, "extraEpochs"))
            continue;
        set_item(p, e->string, cJSON_Duplicate(e, 1));
    }
    /* k-means reports the k it chose as "k". */
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(t->params, "k");
    if (cJSON_IsNumber(k))
        set_num(p, "clusters", k->valuedouble);
    cJSON_DeleteItemFromObjectCaseSensitive(p, "k");
    return p;
}

static int same_config(const cJSON *a, const cJSON *b)
{
    for (size_t i = 0; i < N_CONFIG_KEYS; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(a, CONFIG_KEYS[i]);
        const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, CONFIG_KEYS[i]);
        if (!x && !y)
            continue;
        if (!x || !y || !cJSON_Compare(x, y, 1))
            return 0;
    }
    return 1;
}

static int tried(const cJSON *spec, const tune_trial *trials, int n, const cJSON *cand)
{
    for (int i = 0; i < n; i++) {
        cJSON *p = effective_params(spec, &trials[i]);
        int same = same_config(p, cand);
        cJSON_Delete(p);
        if (same)
            return 1;
    }
    return 0;
}

/* The family the trials actually ran ("auto" resolved by the trainer). */
static const char *resolved_family(const cJSON *spec, const tune_trial *trials, int n)
{
    for (int i = 0; i < n; i++) {
        const char *f = str_or(cJSON_GetObjectItemCaseSensitive(trials[i].params, "family"), NULL);
        if (trials[i].succeeded && f && strcmp(f, "auto"))
            return f;
    }
    return str_or(get2(spec, "model", "family"), "auto");
}

/* ------------------------------------------------------------ tweaks */

/* Each tweak edits p in place and describes itself in why; 0 when it
 * changed something, -1 when it cannot apply (at a limit). */
typedef int (*tweak_fn)(cJSON *p, char *why, size_t n);

static int scale_list(cJSON *p, const char *key, double f, int lo, int hi, char *why, size_t n)
{
    int v[32];
    int k = int_list(cJSON_GetObjectItemCaseSensitive(p, key), v, 32);
    if (k == 0)
        return -1;
    char before[128], after[128];
    fmt_list(cJSON_GetObjectItemCaseSensitive(p, key), before, sizeof before);
    int changed = 0;
    for (int i = 0; i < k; i++) {
        int nv = (int)lround(v[i] * f);
        nv = nv < lo ? lo : nv > hi ? hi : nv;
        changed |= nv != v[i];
        v[i] = nv;
    }
    if (!changed)
        return -1;
    set_item(p, key, cJSON_CreateIntArray(v, k));
    fmt_list(cJSON_GetObjectItemCaseSensitive(p, key), after, sizeof after);
    snprintf(why, n, "%s %s -> %s", key, before, after);
    return 0;
}

static int append_layers(cJSON *p, const char *key, int count, int grow, int cap_layers, int hi,
                         char *why, size_t n)
{
    int v[32];
    int k = int_list(cJSON_GetObjectItemCaseSensitive(p, key), v, 32);
    if (k + count > cap_layers)
        return -1;
    char before[128], after[128];
    fmt_list(cJSON_GetObjectItemCaseSensitive(p, key), before, sizeof before);
    int last = k ? v[k - 1] : 64;
    for (int i = 0; i < count; i++) {
        int w = grow ? last * 2 : last;
        v[k++] = w > hi ? hi : w;
        last = v[k - 1];
    }
    set_item(p, key, cJSON_CreateIntArray(v, k));
    fmt_list(cJSON_GetObjectItemCaseSensitive(p, key), after, sizeof after);
    snprintf(why, n, "%s %s -> %s", key, before, after);
    return 0;
}

static int t_mlp_add_layer(cJSON *p, char *w, size_t n) { return append_layers(p, "hiddenLayers", 1, 0, 8, MAX_WIDTH, w, n); }
static int t_mlp_add_two(cJSON *p, char *w, size_t n) { return append_layers(p, "hiddenLayers", 2, 0, 8, MAX_WIDTH, w, n); }
static int t_mlp_shrink(cJSON *p, char *w, size_t n) { return scale_list(p, "hiddenLayers", 0.5, 8, MAX_WIDTH, w, n); }
/* Small layers grow fourfold: they are cheap to train, and doubling from
 * 8 units takes several trials to reach a useful size. */
static int t_mlp_widen(cJSON *p, char *w, size_t n)
{
    int v[32];
    int k = int_list(cJSON_GetObjectItemCaseSensitive(p, "hiddenLayers"), v, 32);
    int widest = 0;
    for (int i = 0; i < k; i++)
        widest = v[i] > widest ? v[i] : widest;
    return scale_list(p, "hiddenLayers", widest < 64 ? 4 : 2, 8, MAX_WIDTH, w, n);
}
static int t_cnn_add_block(cJSON *p, char *w, size_t n) { return append_layers(p, "convFilters", 1, 1, MAX_CONV_BLOCKS, MAX_FILTERS, w, n); }
static int t_cnn_widen(cJSON *p, char *w, size_t n) { return scale_list(p, "convFilters", 2, 1, MAX_FILTERS, w, n); }
static int t_cnn_add_two_dense(cJSON *p, char *w, size_t n) { return append_layers(p, "denseLayers", 2, 0, 6, MAX_WIDTH, w, n); }
static int t_cnn_shrink_dense(cJSON *p, char *w, size_t n) { return scale_list(p, "denseLayers", 0.5, 8, MAX_WIDTH, w, n); }
static int t_cnn_shrink(cJSON *p, char *w, size_t n) { return scale_list(p, "convFilters", 0.5, 2, MAX_FILTERS, w, n); }

static int t_epochs_up(cJSON *p, char *w, size_t n)
{
    int e = (int)num_or(cJSON_GetObjectItemCaseSensitive(p, "epochs"), 3);
    if (e >= MAX_EPOCHS)
        return -1;
    int ne = e * 2 > MAX_EPOCHS ? MAX_EPOCHS : e * 2;
    set_num(p, "epochs", ne);
    snprintf(w, n, "epochs %d -> %d", e, ne);
    return 0;
}

static int t_epochs_down(cJSON *p, char *w, size_t n)
{
    int e = (int)num_or(cJSON_GetObjectItemCaseSensitive(p, "epochs"), 3);
    if (e <= 1)
        return -1;
    set_num(p, "epochs", e / 2);
    snprintf(w, n, "epochs %d -> %d", e, e / 2);
    return 0;
}

static int t_lr(cJSON *p, double f, char *w, size_t n)
{
    double lr = num_or(cJSON_GetObjectItemCaseSensitive(p, "learningRate"), 0.001);
    double nl = lr * f;
    if (nl < 1e-7 || nl > 1)
        return -1;
    /* Round to 3 significant digits so configurations compare cleanly. */
    char buf[32];
    snprintf(buf, sizeof buf, "%.3g", nl);
    nl = strtod(buf, NULL);
    set_num(p, "learningRate", nl);
    snprintf(w, n, "learningRate %g -> %g", lr, nl);
    return 0;
}

static int t_lr_down(cJSON *p, char *w, size_t n) { return t_lr(p, 0.3, w, n); }
static int t_lr_half(cJSON *p, char *w, size_t n) { return t_lr(p, 0.5, w, n); }
static int t_lr_tenth(cJSON *p, char *w, size_t n) { return t_lr(p, 0.1, w, n); }

static int t_dropout_up(cJSON *p, char *w, size_t n)
{
    double d = num_or(cJSON_GetObjectItemCaseSensitive(p, "dropout"), 0);
    if (d >= 0.5)
        return -1;
    double nd = d + 0.2 > 0.6 ? 0.6 : d + 0.2;
    nd = round(nd * 100) / 100;
    set_num(p, "dropout", nd);
    snprintf(w, n, "dropout %g -> %g", d, nd);
    return 0;
}

/* Logistic regression has no capacity to grow: become an MLP. */
static int t_logistic_to_mlp(cJSON *p, char *w, size_t n)
{
    if (strcmp(str_or(cJSON_GetObjectItemCaseSensitive(p, "family"), ""), "logistic"))
        return -1;
    set_str(p, "family", "mlp");
    set_item(p, "hiddenLayers", cJSON_CreateIntArray((int[]){128}, 1));
    snprintf(w, n, "family logistic -> mlp [128]");
    return 0;
}

/* ------------------------------------------------------------ ladder */

static int ladder_steps(const char *family, const tweak_fn **steps)
{
    static const tweak_fn mlp[] = {t_mlp_add_layer, t_epochs_up, t_mlp_add_two, t_mlp_shrink};
    static const tweak_fn cnn[] = {t_cnn_add_block, t_epochs_up, t_cnn_add_two_dense, t_cnn_shrink_dense};
    static const tweak_fn logistic[] = {t_epochs_up, t_lr_half};
    if (!strcmp(family, "cnn")) {
        *steps = cnn;
        return 4;
    }
    if (!strcmp(family, "logistic")) {
        *steps = logistic;
        return 2;
    }
    *steps = mlp;
    return 4;
}

static int next_ladder(const cJSON *spec, const tune_trial *trials, int n, cJSON **out, char *why,
                       size_t wn)
{
    const tweak_fn *steps;
    int ns = ladder_steps(resolved_family(spec, trials, n), &steps);
    cJSON *p = effective_params(spec, &trials[n - 1]);
    set_str(p, "family", resolved_family(spec, trials, n));
    /* Step i of the ladder follows trial i; skip steps at their limits. */
    for (int attempt = 0; attempt < 2 * ns; attempt++) {
        int step = (n - 1 + attempt) % ns;
        char w[200];
        if (steps[step](p, w, sizeof w) == 0 && !tried(spec, trials, n, p)) {
            snprintf(why, wn, "ladder step %d: %s", step + 1, w);
            *out = p;
            return 0;
        }
    }
    cJSON_Delete(p);
    return KILN_ENOTFOUND;
}

/* ------------------------------------------------------------ search spaces */

/* The space used when spec.tuning.searchSpace is empty. */
static cJSON *default_space(const char *family)
{
    const char *text;
    if (!strcmp(family, "cnn"))
        text = "{\"convFilters\":{\"values\":[[8],[16],[8,16],[16,32]]},"
               "\"denseLayers\":{\"values\":[[32],[64],[128]]},"
               "\"epochs\":{\"min\":2,\"max\":8},"
               "\"learningRate\":{\"min\":0.0003,\"max\":0.01,\"log\":true}}";
    else if (!strcmp(family, "logistic"))
        text = "{\"epochs\":{\"min\":2,\"max\":20},"
               "\"learningRate\":{\"min\":0.0001,\"max\":0.05,\"log\":true}}";
    else
        text = "{\"hiddenLayers\":{\"values\":[[32],[64],[128],[256],[128,64],[256,128]]},"
               "\"dropout\":{\"values\":[0,0.2,0.4]},"
               "\"epochs\":{\"min\":2,\"max\":12},"
               "\"learningRate\":{\"min\":0.0001,\"max\":0.01,\"log\":true}}";
    return cJSON_Parse(text);
}

static cJSON *search_space(const cJSON *spec, const char *family)
{
    const cJSON *s = get2(spec, "tuning", "searchSpace");
    if (cJSON_IsObject(s) && cJSON_GetArraySize(s) > 0)
        return cJSON_Duplicate(s, 1);
    return default_space(family);
}

static int is_int_key(const char *key)
{
    return !strcmp(key, "epochs") || !strcmp(key, "batchSize") || !strcmp(key, "clusters");
}

/* The values a key takes in a grid: its list, or min, middle and max. */
static cJSON *grid_values(const cJSON *dim)
{
    const cJSON *vals = cJSON_GetObjectItemCaseSensitive(dim, "values");
    if (cJSON_IsArray(vals))
        return cJSON_Duplicate(vals, 1);
    if (cJSON_IsArray(dim))
        return cJSON_Duplicate(dim, 1);
    double lo = num_or(cJSON_GetObjectItemCaseSensitive(dim, "min"), NAN);
    double hi = num_or(cJSON_GetObjectItemCaseSensitive(dim, "max"), NAN);
    if (!isfinite(lo) || !isfinite(hi) || hi < lo)
        return cJSON_CreateArray();
    int logscale = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(dim, "log")) && lo > 0;
    double mid = logscale ? sqrt(lo * hi) : (lo + hi) / 2;
    double v[3] = {lo, mid, hi};
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < 3; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.3g", v[i]);
        cJSON_AddItemToArray(a, cJSON_CreateNumber(strtod(buf, NULL)));
    }
    return a;
}

static double uniform01(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static cJSON *sample_dim(const char *key, const cJSON *dim, uint64_t *st)
{
    const cJSON *vals = cJSON_GetObjectItemCaseSensitive(dim, "values");
    if (!cJSON_IsArray(vals) && cJSON_IsArray(dim))
        vals = dim;
    if (cJSON_IsArray(vals)) {
        int n = cJSON_GetArraySize(vals);
        if (n == 0)
            return NULL;
        int i = (int)(uniform01(st) * n);
        return cJSON_Duplicate(cJSON_GetArrayItem(vals, i < n ? i : n - 1), 1);
    }
    double lo = num_or(cJSON_GetObjectItemCaseSensitive(dim, "min"), NAN);
    double hi = num_or(cJSON_GetObjectItemCaseSensitive(dim, "max"), NAN);
    if (!isfinite(lo) || !isfinite(hi) || hi < lo)
        return NULL;
    double u = uniform01(st), v;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(dim, "log")) && lo > 0)
        v = exp(log(lo) + u * (log(hi) - log(lo)));
    else
        v = lo + u * (hi - lo);
    if (is_int_key(key))
        v = floor(v + 0.5);
    char buf[32];
    snprintf(buf, sizeof buf, "%.3g", v);
    return cJSON_CreateNumber(strtod(buf, NULL));
}

static int next_random(const cJSON *spec, const tune_trial *trials, int n, cJSON **out, char *why,
                       size_t wn)
{
    const char *family = resolved_family(spec, trials, n);
    cJSON *space = search_space(spec, family);
    uint64_t seed = (uint64_t)num_or(get2(spec, "tuning", "seed"), 1);
    /* The stream depends on (seed, trial index) only, so a restarted
     * controller draws the same trial. */
    uint64_t st = seed * 0x100000001b3ULL + (uint64_t)n * 0x9e3779b97f4a7c15ULL;
    for (int draw = 0; draw < MAX_RANDOM_DRAWS; draw++) {
        cJSON *p = effective_params(spec, &trials[0]);
        set_str(p, "family", family);
        const cJSON *dim;
        cJSON_ArrayForEach(dim, space)
        {
            cJSON *v = sample_dim(dim->string, dim, &st);
            if (v)
                set_item(p, dim->string, v);
        }
        if (!tried(spec, trials, n, p)) {
            snprintf(why, wn, "random sample %d of the search space", n);
            cJSON_Delete(space);
            *out = p;
            return 0;
        }
        cJSON_Delete(p);
    }
    cJSON_Delete(space);
    return KILN_ENOTFOUND;
}

static int next_grid(const cJSON *spec, const tune_trial *trials, int n, cJSON **out, char *why,
                     size_t wn)
{
    const char *family = resolved_family(spec, trials, n);
    cJSON *space = search_space(spec, family);
    int dims = cJSON_GetArraySize(space);
    cJSON *values[32];
    long total = 1;
    for (int d = 0; d < dims && d < 32; d++) {
        values[d] = grid_values(cJSON_GetArrayItem(space, d));
        int k = cJSON_GetArraySize(values[d]);
        total = k > 0 && total < 1000000 ? total * k : total;
    }
    int rc = KILN_ENOTFOUND;
    /* Combination c in mixed radix, first key varying slowest. */
    for (long c = 0; c < total && rc; c++) {
        cJSON *p = effective_params(spec, &trials[0]);
        set_str(p, "family", family);
        long rest = c;
        for (int d = dims - 1; d >= 0; d--) {
            int k = cJSON_GetArraySize(values[d]);
            if (k == 0)
                continue;
            set_item(p, cJSON_GetArrayItem(space, d)->string,
                     cJSON_Duplicate(cJSON_GetArrayItem(values[d], (int)(rest % k)), 1));
            rest /= k;
        }
        if (!tried(spec, trials, n, p)) {
            snprintf(why, wn, "grid point %ld of %ld", c + 1, total);
            *out = p;
            rc = 0;
        } else {
            cJSON_Delete(p);
        }
    }
    for (int d = 0; d < dims && d < 32; d++)
        cJSON_Delete(values[d]);
    cJSON_Delete(space);
    return rc;
}

/* ------------------------------------------------------------ adaptive */

/* The training-side value of the objective (falls back to accuracy). */
static int train_value(const cJSON *spec, const tune_trial *t, double *v)
{
    return tune_metric_value(spec, t->train_metrics, v);
}

static int try_tweaks(const cJSON *spec, const tune_trial *trials, int n, const tune_trial *base,
                      const tweak_fn *tw, int ntw, const char *diagnosis, int warm_on_epochs,
                      cJSON **out, char *why, size_t wn)
{
    for (int i = 0; i < ntw; i++) {
        cJSON *p = effective_params(spec, base);
        char w[200];
        if (tw[i](p, w, sizeof w) == 0 && !tried(spec, trials, n, p)) {
            /* More epochs on an unchanged architecture continue the base
             * trial's model instead of starting over. */
            if (warm_on_epochs && tw[i] == t_epochs_up) {
                int before = (int)num_or(cJSON_GetObjectItemCaseSensitive(base->params, "epochs"), 3);
                int after = (int)num_or(cJSON_GetObjectItemCaseSensitive(p, "epochs"), 3);
                cJSON_AddNumberToObject(p, "warmStartFrom", base->index);
                cJSON_AddNumberToObject(p, "extraEpochs", after - before);
                snprintf(w + strlen(w), sizeof w - strlen(w), " (warm start from trial %d)", base->index);
            }
            snprintf(why, wn, "%s: %s", diagnosis, w);
            *out = p;
            return 0;
        }
        cJSON_Delete(p);
    }
    return KILN_ENOTFOUND;
}

/* 1 when base continued an earlier trial with more epochs and gained
 * little from them (less than MIN_EPOCH_GAIN, or less than a quarter of
 * what was left to the goal): more epochs have stopped paying, so capacity
 * comes first. */
static int epochs_stalled(const cJSON *spec, const tune_trial *trials, int n,
                          const tune_trial *base, double val, double goal)
{
    const cJSON *from = cJSON_GetObjectItemCaseSensitive(base->params, "warmStartFrom");
    if (!cJSON_IsNumber(from))
        return 0;
    for (int i = 0; i < n; i++) {
        double prev;
        if (trials[i].index != from->valueint || !trials[i].succeeded ||
            tune_metric_value(spec, trials[i].metrics, &prev) != 0)
            continue;
        int hb = higher_better(objective_metric(spec));
        double gain = hb ? val - prev : prev - val;
        double left = hb ? goal - val : val - goal;
        return gain < MIN_EPOCH_GAIN || gain < 0.25 * left;
    }
    return 0;
}

static int next_adaptive(const cJSON *spec, const tune_trial *trials, int n, cJSON **out, char *why,
                         size_t wn)
{
    const char *metric = objective_metric(spec);
    int hb = higher_better(metric);
    double goal = num_or(get2(spec, "objective", "goal"), 0.8);

    /* Rank the successful trials, best first. */
    int order[256], m = 0;
    for (int i = 0; i < n && m < 256; i++) {
        double v;
        if (trials[i].succeeded && tune_metric_value(spec, trials[i].metrics, &v) == 0)
            order[m++] = i;
    }
    for (int i = 1; i < m; i++) {
        for (int j = i; j > 0; j--) {
            double a, b;
            tune_metric_value(spec, trials[order[j]].metrics, &a);
            tune_metric_value(spec, trials[order[j - 1]].metrics, &b);
            if (!tune_better(spec, a, b))
                break;
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    }

    const tune_trial *last = &trials[n - 1];
    const char *msg = last->message ? last->message : "";
    int diverged = !last->succeeded && strstr(msg, "diverg") != NULL;
    if (diverged || m == 0) {
        /* A diverging loss lowers the learning rate of the trial that
         * diverged; with no success at all, any failure is retried slower. */
        static const tweak_fn slower[] = {t_lr_down, t_lr_tenth};
        /* A trial without a message has not finished yet (parallel
         * trials): say so rather than calling it failed. */
        const char *d = diverged            ? "diverging loss"
                        : last->message     ? "failed trial"
                                            : "no finished trial yet";
        int rc = try_tweaks(spec, trials, n, last, slower, 2, d, 0, out, why, wn);
        if (rc == 0 || m == 0)
            return rc;
    }

    const char *family = resolved_family(spec, trials, n);
    static const tweak_fn mlp_under[] = {t_epochs_up, t_mlp_widen, t_mlp_add_layer, t_lr_half};
    static const tweak_fn mlp_over[] = {t_dropout_up, t_mlp_shrink, t_epochs_down};
    static const tweak_fn cnn_under[] = {t_epochs_up, t_cnn_widen, t_cnn_add_block, t_lr_half};
    static const tweak_fn cnn_over[] = {t_dropout_up, t_cnn_shrink, t_epochs_down};
    static const tweak_fn log_under[] = {t_epochs_up, t_logistic_to_mlp, t_lr_half};
    static const tweak_fn log_over[] = {t_epochs_down, t_lr_half};
    static const tweak_fn stuck[] = {t_lr_down, t_lr_tenth};
    static const tweak_fn mlp_under_cap[] = {t_mlp_widen, t_mlp_add_layer, t_epochs_up, t_lr_half};
    static const tweak_fn cnn_under_cap[] = {t_cnn_widen, t_cnn_add_block, t_epochs_up, t_lr_half};
    static const tweak_fn log_under_cap[] = {t_logistic_to_mlp, t_epochs_up, t_lr_half};

    /* Hill-climb from the best trial; when its tweaks are used up, from the
     * next best. */
    for (int r = 0; r < m; r++) {
        const tune_trial *base = &trials[order[r]];
        double val, tr;
        tune_metric_value(spec, base->metrics, &val);
        int have_train = train_value(spec, base, &tr) == 0;
        double gap = have_train ? (hb ? tr - val : val - tr) : 0;
        char diag[200];
        const tweak_fn *tw;
        int ntw;
        /* Train barely above chance with a high loss: the optimiser is not
         * learning (a learning rate far too high or too low). */
        double tacc = num_or(cJSON_GetObjectItemCaseSensitive(base->train_metrics, "accuracy"), 1);
        if (tacc < 0.2 && num_or(cJSON_GetObjectItemCaseSensitive(base->metrics, "loss"), 0) > 2.0) {
            tw = stuck;
            ntw = 2;
            snprintf(diag, sizeof diag, "not learning (train accuracy %.3f)", tacc);
        } else if (have_train && (hb ? tr >= goal + OVERFIT_GAP : tr <= goal - OVERFIT_GAP)
                       ? gap > OVERFIT_GAP
                       : gap > BIG_GAP) {
            /* Training clears the goal with room to spare but validation
             * does not (or the gap is large whatever the level):
             * over-fitting. Training at or barely above the goal means the
             * model lacks capacity, and a small gap there is noise. */
            int lg = !strcmp(family, "logistic"), cn = !strcmp(family, "cnn");
            tw = lg ? log_over : cn ? cnn_over : mlp_over;
            ntw = lg ? 2 : 3;
            snprintf(diag, sizeof diag, "over-fitting (train %s %.4f, validation %.4f)", metric, tr, val);
        } else {
            int lg = !strcmp(family, "logistic"), cn = !strcmp(family, "cnn");
            tw = lg ? log_under : cn ? cnn_under : mlp_under;
            ntw = lg ? 3 : 4;
            if (epochs_stalled(spec, trials, n, base, val, goal)) {
                tw = lg ? log_under_cap : cn ? cnn_under_cap : mlp_under_cap;
                ntw = lg ? 3 : 4;
            }
            snprintf(diag, sizeof diag, "under-fitting (train %s %.4f, validation %.4f, goal %g)",
                     metric, have_train ? tr : val, val, goal);
        }
        if (try_tweaks(spec, trials, n, base, tw, ntw, diag, 1, out, why, wn) == 0)
            return 0;
    }
    return KILN_ENOTFOUND;
}

/* ------------------------------------------------------------ k-means */

static int next_kmeans(const cJSON *spec, const tune_trial *trials, int n, cJSON **out, char *why,
                       size_t wn)
{
    int maxk = (int)num_or(get2(get2(spec, "model", "kmeans"), "maxClusters", NULL), 12);
    int center = 0;
    for (int i = 0; i < n && !center; i++) {
        if (!trials[i].succeeded)
            continue;
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(trials[i].metrics, "k");
        if (!cJSON_IsNumber(k))
            k = cJSON_GetObjectItemCaseSensitive(trials[i].params, "k");
        if (cJSON_IsNumber(k))
            center = k->valueint;
    }
    if (center == 0)
        center = 2;
    /* k*+1, k*-1, k*+2, k*-2, ... within [1, maxClusters] */
    for (int step = 1; step <= maxk; step++) {
        for (int sign = 1; sign >= -1; sign -= 2) {
            int k = center + sign * step;
            if (k < 1 || k > maxk)
                continue;
            cJSON *p = effective_params(spec, &trials[0]);
            set_str(p, "family", "kmeans");
            set_num(p, "clusters", k);
            if (!tried(spec, trials, n, p)) {
                snprintf(why, wn, "k-means: k = %d around the elbow's k = %d", k, center);
                *out = p;
                return 0;
            }
            cJSON_Delete(p);
        }
    }
    return KILN_ENOTFOUND;
}

/* ------------------------------------------------------------ entry */

int tune_next(const cJSON *spec, const tune_trial *trials, int n_trials, cJSON **params,
              char *reason, size_t reason_len, kiln_error *err)
{
    *params = NULL;
    if (reason_len)
        reason[0] = '\0';
    if (n_trials <= 0) {
        *params = tune_initial(spec);
        snprintf(reason, reason_len, "the spec's own model");
        return *params ? 0 : kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    const char *strategy = str_or(get2(spec, "tuning", "strategy"), "adaptive");
    const char *family = resolved_family(spec, trials, n_trials);
    int rc;
    if (!strcmp(family, "kmeans"))
        rc = next_kmeans(spec, trials, n_trials, params, reason, reason_len);
    else if (!strcmp(strategy, "ladder"))
        rc = next_ladder(spec, trials, n_trials, params, reason, reason_len);
    else if (!strcmp(strategy, "random"))
        rc = next_random(spec, trials, n_trials, params, reason, reason_len);
    else if (!strcmp(strategy, "grid"))
        rc = next_grid(spec, trials, n_trials, params, reason, reason_len);
    else if (!strcmp(strategy, "adaptive"))
        rc = next_adaptive(spec, trials, n_trials, params, reason, reason_len);
    else
        return kiln_fail(err, KILN_EINVAL, "spec.tuning.strategy: unknown value '%s'", strategy);
    if (rc == KILN_ENOTFOUND)
        return kiln_fail(err, KILN_ENOTFOUND, "%s: no untried configuration left", strategy);
    return rc;
}
