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

static const char *const CONFIG_KEYS[] = {"family",       "hiddenLayers", "activation", "dropout",
                                          "convFilters",  "denseLayers",  "epochs",     "batchSize",
                                          "learningRate", "optimizer",    "clusters"};
#define N_CONFIG_KEYS (sizeof CONFIG_KEYS / sizeof CONFIG_KEYS[0])

#define MAX_WIDTH        1024
#define MAX_FILTERS      128
#define MAX_CONV_BLOCKS  3
#define MAX_EPOCHS       200
#define OVERFIT_GAP      0.05 /* train above validation by more than this: over-fitting */
#define BIG_GAP          0.10 /* a gap this large is over-fitting even below the goal */
#define MIN_EPOCH_GAIN   0.01 /* validation lost more than this with more epochs: over-fitting */
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
                          cJSON_IsArray(h) ? cJSON_Duplicate(h, 1)
                                           : cJSON_CreateIntArray((int[]){64}, 1));
    cJSON_AddStringToObject(p, "activation", str_or(get2(model, "mlp", "activation"), "relu"));
    cJSON_AddNumberToObject(p, "dropout", num_or(get2(model, "mlp", "dropout"), 0));
    const cJSON *cf = get2(model, "cnn", "convFilters");
    cJSON_AddItemToObject(p, "convFilters",
                          cJSON_IsArray(cf) ? cJSON_Duplicate(cf, 1)
                                            : cJSON_CreateIntArray((int[]){8}, 1));
    const cJSON *dl = get2(model, "cnn", "denseLayers");
    cJSON_AddItemToObject(p, "denseLayers",
                          cJSON_IsArray(dl) ? cJSON_Duplicate(dl, 1)
                                            : cJSON_CreateIntArray((int[]){64}, 1));
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

static int t_mlp_add_layer(cJSON *p, char *w, size_t n)
{
    return append_layers(p, "hiddenLayers", 1, 0, 8, MAX_WIDTH, w, n);
}
static int t_mlp_add_two(cJSON *p, char *w, size_t n)
{
    return append_layers(p, "hiddenLayers", 2, 0, 8, MAX_WIDTH, w, n);
}
static int t_mlp_shrink(cJSON *p, char *w, size_t n)
{
    return scale_list(p, "hiddenLayers", 0.5, 8, MAX_WIDTH, w, n);
}
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
static int t_cnn_add_block(cJSON *p, char *w, size_t n)
{
    return append_layers(p, "convFilters", 1, 1, MAX_CONV_BLOCKS, MAX_FILTERS, w, n);
}
static int t_cnn_widen(cJSON *p, char *w, size_t n)
{
    return scale_list(p, "convFilters", 2, 1, MAX_FILTERS, w, n);
}
static int t_cnn_add_two_dense(cJSON *p, char *w, size_t n)
{
    return append_layers(p, "denseLayers", 2, 0, 6, MAX_WIDTH, w, n);
}
static int t_cnn_shrink_dense(cJSON *p, char *w, size_t n)
{
    return scale_list(p, "denseLayers", 0.5, 8, MAX_WIDTH, w, n);
}
static int t_cnn_shrink(cJSON *p, char *w, size_t n)
{
    return scale_list(p, "convFilters", 0.5, 2, MAX_FILTERS, w, n);
}

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

static int t_lr_down(cJSON *p, char *w, size_t n)
{
    return t_lr(p, 0.3, w, n);
}
static int t_lr_half(cJSON *p, char *w, size_t n)
{
    return t_lr(p, 0.5, w, n);
}
static int t_lr_tenth(cJSON *p, char *w, size_t n)
{
    return t_lr(p, 0.1, w, n);
}

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
    static const tweak_fn cnn[] = {t_cnn_add_block, t_epochs_up, t_cnn_add_two_dense,
                                   t_cnn_shrink_dense};
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

/* How adaptive reads a history. The base is the best trial so far (then
 * the next best when the base's moves are used up). Its siblings are the
 * trials of the same configuration but for epochs (a warm-start chain, or
 * fresh runs of other lengths): their validation values against
 * log2(epochs) are the base's learning curve. The distance to the goal is
 * an error ratio, the base's error over the goal's (1 - value for
 * accuracy-like metrics, the value itself for loss): 2 means the error
 * must halve. */

#define FAR_RATIO     1.5 /* this far from the goal, one trial changes capacity and epochs */
#define MAX_EPOCH_MUL 8   /* one trial multiplies epochs by at most this */
/* Gains per doubling of epochs shrink by this ratio when only one gain is
 * known: error falling as epochs^-1/2, a common shape of learning curves. */
#define CURVE_DECAY   0.7
#define MAX_DOUBLINGS 3    /* epochs are worth it only if the curve reaches the goal in this many */
#define LOSS_RISE     0.02 /* training loss up by more than this fraction: unstable training */

typedef struct curve {
    int points;          /* siblings used: 0 (no curve), 1 or 2 */
    double gain;         /* validation gain per doubling of epochs, latest step */
    double decay;        /* latest gain over the one before (CURVE_DECAY with one step) */
    int has_longer;      /* a longer sibling exists */
    double longer_val;   /* the nearest longer sibling's validation value */
    double longer_train; /* its training value, NAN when unknown */
    int loss_rose;       /* more epochs ended with a higher training loss */
} curve;

static double epochs_of(const cJSON *params)
{
    return num_or(cJSON_GetObjectItemCaseSensitive(params, "epochs"), 3);
}

/* Signed so that positive is better, for either direction of metric. */
static double improvement(int hb, double from, double to)
{
    return hb ? to - from : from - to;
}

static double error_ratio(const cJSON *spec, double val, double goal)
{
    if (higher_better(objective_metric(spec))) {
        /* Accuracy-like metrics live in [0, 1]. */
        if (goal >= 1)
            return val >= 1 ? 1 : INFINITY;
        return (1 - val) / (1 - goal);
    }
    if (goal <= 0)
        return val <= 0 ? 1 : INFINITY;
    return val / goal;
}

/* The smallest power of two >= x, within [lo, hi]. */
static int pow2_within(double x, int lo, int hi)
{
    int m = lo;
    while (m < hi && m < x)
        m *= 2;
    return m;
}

static double train_loss(const tune_trial *t)
{
    return num_or(cJSON_GetObjectItemCaseSensitive(t->train_metrics, "loss"), NAN);
}

/* The base's learning curve from its siblings (see above). */
static void read_curve(const cJSON *spec, const tune_trial *trials, int n, const tune_trial *base,
                       curve *c)
{
    int hb = higher_better(objective_metric(spec));
    memset(c, 0, sizeof *c);
    c->decay = CURVE_DECAY;
    cJSON *pb = effective_params(spec, base);
    double eb = epochs_of(pb), vb = 0;
    tune_metric_value(spec, base->metrics, &vb);
    cJSON_DeleteItemFromObjectCaseSensitive(pb, "epochs");
    /* the two nearest shorter siblings (e1 > e2) and the nearest longer one */
    const tune_trial *s1 = NULL, *s2 = NULL, *lg = NULL;
    double e1 = 0, e2 = 0, el = 0, v1 = 0, v2 = 0;
    for (int i = 0; i < n; i++) {
        const tune_trial *t = &trials[i];
        double v;
        if (t == base || !t->succeeded || tune_metric_value(spec, t->metrics, &v) != 0)
            continue;
        cJSON *p = effective_params(spec, t);
        double e = epochs_of(p);
        cJSON_DeleteItemFromObjectCaseSensitive(p, "epochs");
        int same = same_config(p, pb);
        cJSON_Delete(p);
        if (!same || e <= 0 || e == eb)
            continue;
        if (e < eb && e > e1) {
            s2 = s1, e2 = e1, v2 = v1;
            s1 = t, e1 = e, v1 = v;
        } else if (e < eb && e > e2) {
            s2 = t, e2 = e, v2 = v;
        } else if (e > eb && (!lg || e < el)) {
            lg = t, el = e;
            c->longer_val = v;
        }
    }
    cJSON_Delete(pb);
    if (s1) {
        c->points = s2 ? 2 : 1;
        c->gain = improvement(hb, v1, vb) / log2(eb / e1);
        if (s2) {
            double g0 = improvement(hb, v2, v1) / log2(e1 / e2);
            if (g0 > 0 && c->gain > 0) {
                double d = c->gain / g0;
                c->decay = d < 0.2 ? 0.2 : d > 0.9 ? 0.9 : d;
            }
        }
        double l1 = train_loss(s1), lb = train_loss(base);
        if (lb > l1 * (1 + LOSS_RISE))
            c->loss_rose = 1;
    }
    if (lg) {
        /* The base continued (or rerun) for longer is the latest evidence:
         * when that did not improve on it, the curve has flattened at the
         * base whatever the earlier steps gained. */
        double gl = improvement(hb, vb, c->longer_val) / log2(el / eb);
        if (c->points == 0 || gl < c->gain) {
            c->points = c->points ? c->points : 1;
            c->gain = gl;
            c->decay = CURVE_DECAY;
        }
        c->has_longer = 1;
        if (tune_metric_value(spec, lg->train_metrics, &c->longer_train) != 0)
            c->longer_train = NAN;
        double ll = train_loss(lg), lb = train_loss(base);
        if (ll > lb * (1 + LOSS_RISE))
            c->loss_rose = 1;
    }
}

/* The doublings of epochs after which the curve is expected to cover
 * left, each gaining decay times the one before; 0 when more than
 * MAX_DOUBLINGS would be needed or the curve does not rise. */
static int doublings_to_goal(const curve *c, double left)
{
    double g = c->gain, sum = 0;
    if (c->points == 0 || !(g > 0))
        return 0;
    for (int k = 1; k <= MAX_DOUBLINGS; k++) {
        g *= c->decay;
        sum += g;
        if (sum >= left)
            return k;
    }
    return 0;
}

static int t_epochs_times(cJSON *p, int mul, char *w, size_t n)
{
    int e = (int)epochs_of(p);
    if (e >= MAX_EPOCHS || mul < 2)
        return -1;
    long ne = (long)e * mul;
    ne = ne > MAX_EPOCHS ? MAX_EPOCHS : ne;
    set_num(p, "epochs", (double)ne);
    snprintf(w, n, "epochs %d -> %ld", e, ne);
    return 0;
}

/* One candidate: an optional tweak, then epochs times epochs_mul (1:
 * unchanged). Epochs alone on the base's architecture warm-start from the
 * base's checkpoint: only the extra epochs run. */
typedef struct move {
    tweak_fn tw;
    int epochs_mul;
} move;

static int try_moves(const cJSON *spec, const tune_trial *trials, int n, const tune_trial *base,
                     const move *mv, int nmv, const char *diagnosis, cJSON **out, char *why,
                     size_t wn)
{
    for (int i = 0; i < nmv; i++) {
        cJSON *p = effective_params(spec, base);
        int before = (int)epochs_of(p);
        char w[300] = "";
        int ok = !mv[i].tw || mv[i].tw(p, w, sizeof w) == 0;
        if (ok && mv[i].epochs_mul > 1) {
            size_t k = strlen(w);
            if (k)
                snprintf(w + k, sizeof w - k, ", ");
            k = strlen(w);
            ok = t_epochs_times(p, mv[i].epochs_mul, w + k, sizeof w - k) == 0;
        }
        if (ok && !tried(spec, trials, n, p)) {
            if (!mv[i].tw && mv[i].epochs_mul > 1) {
                cJSON_AddNumberToObject(p, "warmStartFrom", base->index);
                cJSON_AddNumberToObject(p, "extraEpochs", (int)epochs_of(p) - before);
                size_t k = strlen(w);
                snprintf(w + k, sizeof w - k, " (warm start from trial %d)", base->index);
            }
            snprintf(why, wn, "%s: %s", diagnosis, w);
            *out = p;
            return 0;
        }
        cJSON_Delete(p);
    }
    return KILN_ENOTFOUND;
}

static int try_tweaks(const cJSON *spec, const tune_trial *trials, int n, const tune_trial *base,
                      const tweak_fn *tw, int ntw, const char *diagnosis, cJSON **out, char *why,
                      size_t wn)
{
    move mv[8];
    for (int i = 0; i < ntw && i < 8; i++)
        mv[i] = (move){tw[i], 1};
    return try_moves(spec, trials, n, base, mv, ntw < 8 ? ntw : 8, diagnosis, out, why, wn);
}

/* The family's capacity tweaks, most useful first. */
static int capacity_tweaks(const char *family, tweak_fn *out)
{
    if (!strcmp(family, "logistic")) {
        out[0] = t_logistic_to_mlp;
        return 1;
    }
    if (!strcmp(family, "cnn")) {
        out[0] = t_cnn_widen;
        out[1] = t_cnn_add_block;
        return 2;
    }
    out[0] = t_mlp_widen;
    out[1] = t_mlp_add_layer;
    return 2;
}

/* Under-fitting: more epochs or more capacity, sized by the distance to
 * the goal.
 *  - With a learning curve, more epochs when the curve, its gains
 *    shrinking, reaches the goal within MAX_DOUBLINGS doublings (as many
 *    as it needs), capacity otherwise: the curve has flattened.
 *  - Without one and far from the goal (error ratio >= FAR_RATIO), one
 *    trial grows capacity and epochs together: one change at a time would
 *    spend a trial per step of a long way.
 *  - Without one and near the goal, more epochs first: warm-started, they
 *    cost only the extra epochs, and they draw the curve.
 * Without a curve, epochs grow by the error ratio squared (the error
 * falling as epochs^-1/2, as CURVE_DECAY assumes), rounded up to a power of
 * two, at least 2 and at most MAX_EPOCH_MUL. */
static int next_underfit(const cJSON *spec, const tune_trial *trials, int n, const tune_trial *base,
                         const char *family, const char *head, const curve *c, double val,
                         double goal, cJSON **out, char *why, size_t wn)
{
    int hb = higher_better(objective_metric(spec));
    double left = improvement(hb, val, goal);
    double ratio = error_ratio(spec, val, goal);
    tweak_fn cap[2];
    int ncap = capacity_tweaks(family, cap);
    move mv[12];
    int nm = 0;
    char diag[300];
    int k = doublings_to_goal(c, left);
    int mul = pow2_within(ratio * ratio, 2, MAX_EPOCH_MUL);
    if (c->points > 0) {
        snprintf(diag, sizeof diag, "%s; %+.4f per doubling of epochs, %s", head, c->gain,
                 k ? "more epochs reach the goal" : "the curve flattens before the goal");
        if (k)
            mv[nm++] = (move){NULL, 1 << k};
        for (int i = 0; i < ncap; i++)
            mv[nm++] = (move){cap[i], 1};
        if (!k)
            mv[nm++] = (move){NULL, 2};
    } else if (ratio >= FAR_RATIO) {
        snprintf(diag, sizeof diag, "%s; error %.1fx the goal's", head, ratio);
        for (int i = 0; i < ncap; i++)
            mv[nm++] = (move){cap[i], mul};
        for (int i = 0; i < ncap; i++)
            mv[nm++] = (move){cap[i], 1};
        mv[nm++] = (move){NULL, mul};
    } else {
        snprintf(diag, sizeof diag, "%s", head);
        mv[nm++] = (move){NULL, mul};
        for (int i = 0; i < ncap; i++)
            mv[nm++] = (move){cap[i], 1};
    }
    mv[nm++] = (move){t_lr_half, 1};
    return try_moves(spec, trials, n, base, mv, nm, diag, out, why, wn);
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
        const char *d = diverged        ? "diverging loss"
                        : last->message ? "failed trial"
                                        : "no finished trial yet";
        int rc = try_tweaks(spec, trials, n, last, slower, 2, d, out, why, wn);
        if (rc == 0 || m == 0)
            return rc;
    }

    const char *family = resolved_family(spec, trials, n);
    int lg = !strcmp(family, "logistic"), cn = !strcmp(family, "cnn");
    static const tweak_fn mlp_over[] = {t_dropout_up, t_mlp_shrink, t_epochs_down};
    static const tweak_fn cnn_over[] = {t_dropout_up, t_cnn_shrink, t_epochs_down};
    static const tweak_fn log_over[] = {t_epochs_down, t_lr_half};
    static const tweak_fn stuck[] = {t_lr_down, t_lr_tenth};
    static const tweak_fn unstable[] = {t_lr_half, t_lr_down};

    /* Hill-climb from the best trial; when its moves are used up, from the
     * next best. */
    for (int r = 0; r < m; r++) {
        const tune_trial *base = &trials[order[r]];
        double val, tr;
        tune_metric_value(spec, base->metrics, &val);
        int have_train = tune_metric_value(spec, base->train_metrics, &tr) == 0;
        double gap = have_train ? improvement(hb, val, tr) : 0;
        curve c;
        read_curve(spec, trials, n, base, &c);
        char diag[300];
        int rc;
        /* Train barely above chance with a high loss: the optimiser is not
         * learning (a learning rate far too high or too low). */
        double tacc = num_or(cJSON_GetObjectItemCaseSensitive(base->train_metrics, "accuracy"), 1);
        double btl = train_loss(base);
        /* Over-fitting: a large gap whatever the level, or training
         * clearing the goal with room to spare while validation stays below
         * it and its curve flattens before the goal. A moderate gap on a
         * curve still rising (or not yet drawn) is ordinary
         * generalisation: more epochs decide, below. Training at or barely
         * above the goal means the model lacks capacity. */
        int clears = have_train && improvement(hb, goal, tr) >= OVERFIT_GAP;
        int flat = c.points > 0 && doublings_to_goal(&c, improvement(hb, val, goal)) == 0;
        int overfit = have_train && (gap > BIG_GAP || (gap > OVERFIT_GAP && clears && flat));
        if (tacc < 0.2 &&
            num_or(cJSON_GetObjectItemCaseSensitive(base->metrics, "loss"), 0) > 2.0) {
            snprintf(diag, sizeof diag, "not learning (train accuracy %.3f)", tacc);
            rc = try_tweaks(spec, trials, n, base, stuck, 2, diag, out, why, wn);
        } else if (c.loss_rose) {
            /* More epochs of the same model ended with a higher training
             * loss: the steps overshoot, a noisy curve rather than a
             * capacity or data problem. */
            snprintf(diag, sizeof diag,
                     "unstable training (training loss rose with more epochs from %.4f)", btl);
            rc = try_tweaks(spec, trials, n, base, unstable, 2, diag, out, why, wn);
        } else if (overfit) {
            snprintf(diag, sizeof diag, "over-fitting (train %s %.4f, validation %.4f)", metric, tr,
                     val);
            rc = try_tweaks(spec, trials, n, base,
                            lg   ? log_over
                            : cn ? cnn_over
                                 : mlp_over,
                            lg ? 2 : 3, diag, out, why, wn);
        } else if (c.has_longer && have_train &&
                   improvement(hb, c.longer_val, val) > MIN_EPOCH_GAIN &&
                   isfinite(c.longer_train) && improvement(hb, tr, c.longer_train) > 0) {
            /* Training longer fitted the training set better but lost
             * validation: the extra epochs over-fit, whatever the gap at
             * the base's own length. */
            snprintf(
                diag, sizeof diag,
                "over-fitting with more epochs (validation %.4f -> %.4f while training improved)",
                val, c.longer_val);
            rc = try_tweaks(spec, trials, n, base,
                            lg   ? log_over
                            : cn ? cnn_over
                                 : mlp_over,
                            lg ? 2 : 3, diag, out, why, wn);
        } else {
            char head[200];
            snprintf(head, sizeof head, "under-fitting (train %s %.4f, validation %.4f, goal %g)",
                     metric, have_train ? tr : val, val, goal);
            rc = next_underfit(spec, trials, n, base, family, head, &c, val, goal, out, why, wn);
        }
        if (rc == 0)
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
