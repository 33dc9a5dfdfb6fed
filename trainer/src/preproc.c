/* preproc: fitting, applying and (de)serializing the raw-input -> feature
 * transformation (see preproc.h). */
#include "preproc.h"

#include <float.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"

/* Bounds for what preproc_from_json accepts, so a corrupt checkpoint
 * cannot make us allocate absurd amounts. */
#define PP_MAX_INPUTS       100000
#define PP_MAX_FEATURES     4000000
#define PP_MAX_IMAGE_PIXELS (1 << 24)

enum { IN_NUMERIC = 0, IN_CATEGORICAL = 1, IN_DROPPED = 2 };

typedef struct pp_input {
    char *name;
    int kind;   /* IN_* */
    float fill; /* numeric: value for missing cells */
    int n_cats; /* categorical: categories seen in training, sorted */
    char **cats;
    int32_t *code_map; /* fit-time only: dictionary code -> category index or -1 */
    int n_codes;
} pp_input;

typedef struct pp_feature {
    int input;      /* index into inputs */
    int cat;        /* category index, or -1 for a numeric input */
    float sub, mul; /* feature = (value - sub) * mul */
} pp_feature;

struct preproc {
    int image; /* 1: one global affine map over pixels */
    int h, w, c;
    int n_inputs, n_features;
    pp_input *in;     /* (n_inputs), tables only */
    pp_feature *feat; /* (n_features), tables only */
    int label_pos;    /* -1 or position of the label in a full row */
    char impute[8];
    char scale[10];
    double variance_threshold;
    float a, b;            /* images: feature = pixel * a + b */
    char *pixel_names_buf; /* images: "pixel0\0pixel1\0..." (n_inputs names) */
};

/* ------------------------------------------------------------ helpers */

static size_t pixel_name_offset(size_t i);

static int valid_scale(const char *s)
{
    return s && (!strcmp(s, "standard") || !strcmp(s, "minmax") || !strcmp(s, "none"));
}

static int valid_impute(const char *s)
{
    return s && (!strcmp(s, "mean") || !strcmp(s, "median") || !strcmp(s, "drop"));
}

void preproc_free(preproc *pp)
{
    if (!pp)
        return;
    if (pp->in) {
        for (int i = 0; i < pp->n_inputs; i++) {
            pp_input *in = &pp->in[i];
            free(in->name);
            if (in->cats)
                for (int k = 0; k < in->n_cats; k++)
                    free(in->cats[k]);
            free(in->cats);
            free(in->code_map);
        }
    }
    free(pp->in);
    free(pp->feat);
    free(pp->pixel_names_buf);
    free(pp);
}

int preproc_n_inputs(const preproc *pp)
{
    return pp->n_inputs;
}

int preproc_n_features(const preproc *pp)
{
    return pp->n_features;
}

const char *preproc_input_name(const preproc *pp, int i)
{
    if (i < 0 || i >= pp->n_inputs)
        return NULL;
    return pp->image ? pp->pixel_names_buf + pixel_name_offset((size_t)i) : pp->in[i].name;
}

int preproc_image_affine(const preproc *pp, float *scale, float *shift)
{
    if (!pp->image)
        return 0;
    *scale = pp->a;
    *shift = pp->b;
    return 1;
}

/* Byte offset of "pixel<i>" in the packed names buffer: the names are
 * stored back to back, each NUL-terminated, so the offset follows from the
 * number of digits of the names before it (no pointer per pixel). */
static size_t pixel_name_offset(size_t i)
{
    size_t total = 0, start = 0, end = 10;
    for (size_t digits = 1;; digits++, start = end, end *= 10) {
        size_t per = sizeof "pixel" + digits;
        if (i < end)
            return total + (i - start) * per;
        total += (end - start) * per;
    }
}

static int make_pixel_names(preproc *pp)
{
    size_t n = (size_t)pp->n_inputs;
    pp->pixel_names_buf = malloc(pixel_name_offset(n));
    if (!pp->pixel_names_buf)
        return KILN_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        size_t off = pixel_name_offset(i);
        snprintf(pp->pixel_names_buf + off, pixel_name_offset(i + 1) - off, "pixel%u", (unsigned)i);
    }
    return 0;
}

/* Shortest text that reads back as the same float ("3" for 3.0), so a
 * category given as a number matches the category written as text. */
static void float_text(float v, char *buf, size_t cap)
{
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v)
            return;
    }
}

static int find_cat(const pp_input *in, const char *s)
{
    int lo = 0, hi = in->n_cats - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int r = strcmp(in->cats[mid], s);
        if (r == 0)
            return mid;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* The features of one row whose inputs are resolved: num[i] (numeric,
 * already filled) or cat[i] (category index, -1 for none). */
static void emit(const preproc *pp, const float *num, const int32_t *cat, float *out)
{
    for (int k = 0; k < pp->n_features; k++) {
        const pp_feature *f = &pp->feat[k];
        float v = f->cat < 0 ? num[f->input] : (cat[f->input] == f->cat ? 1.0f : 0.0f);
        out[k] = (v - f->sub) * f->mul;
    }
}

/* ------------------------------------------------------------ fitting */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static preproc *table_new(int n_inputs)
{
    preproc *pp = calloc(1, sizeof *pp);
    if (!pp)
        return NULL;
    pp->n_inputs = n_inputs;
    pp->label_pos = -1;
    pp->in = calloc((size_t)n_inputs, sizeof *pp->in);
    if (!pp->in) {
        free(pp);
        return NULL;
    }
    return pp;
}

typedef struct feat_stats {
    double mean, var, min, max;
} feat_stats;

int preproc_fit_table(const preproc_table_spec *s, const float *x, const int32_t *rows, int n,
                      const char *impute, const char *scale, double variance_threshold,
                      preproc **out, kiln_error *err)
{
    *out = NULL;
    const char *src = s->source ? s->source : "data";
    if (!valid_impute(impute))
        return kiln_fail(err, KILN_EINVAL, "preprocessing.impute: '%s' is not mean, median or drop",
                         impute ? impute : "");
    if (!valid_scale(scale))
        return kiln_fail(err, KILN_EINVAL,
                         "preprocessing.scale: '%s' is not standard, minmax or none",
                         scale ? scale : "");
    if (!(variance_threshold >= 0) || !isfinite(variance_threshold))
        return kiln_fail(err, KILN_EINVAL, "preprocessing.varianceThreshold: must be >= 0");
    if (n < 1)
        return kiln_fail(err, KILN_EINVAL, "%s: no training rows to fit preprocessing on", src);
    if (s->n_inputs < 1 || s->n_inputs > PP_MAX_INPUTS)
        return kiln_fail(err, KILN_EINVAL, "%s: %d input columns (expected 1 to %d)", src,
                         s->n_inputs, PP_MAX_INPUTS);
    size_t ni = (size_t)s->n_inputs;
    preproc *pp = table_new(s->n_inputs);
    double *vals = malloc((size_t)n * sizeof *vals);
    int32_t *counts = NULL;
    feat_stats *st = NULL;
    int rc = 0;
    if (!pp || !vals) {
        rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory fitting preprocessing", src);
        goto fail;
    }
    pp->label_pos = s->label_pos;
    snprintf(pp->impute, sizeof pp->impute, "%s", impute);
    snprintf(pp->scale, sizeof pp->scale, "%s", scale);
    pp->variance_threshold = variance_threshold;

    /* Inputs: fill values and the categories present in the training rows. */
    size_t n_feat_all = 0;
    for (size_t i = 0; i < ni; i++) {
        pp_input *in = &pp->in[i];
        in->name = strdup(s->names[i] ? s->names[i] : "");
        if (!in->name) {
            rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", src);
            goto fail;
        }
        if (s->dropped && s->dropped[i]) {
            in->kind = IN_DROPPED;
            continue;
        }
        if (s->categorical && s->categorical[i]) {
            in->kind = IN_CATEGORICAL;
            int nc = s->n_cats[i];
            in->n_codes = nc;
            in->code_map = malloc((size_t)(nc > 0 ? nc : 1) * sizeof *in->code_map);
            counts = calloc((size_t)(nc > 0 ? nc : 1), sizeof *counts);
            if (!in->code_map || !counts) {
                rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", src);
                goto fail;
            }
            for (int r = 0; r < n; r++) {
                float v = x[(size_t)(rows ? rows[r] : r) * ni + i];
                if (!isnan(v) && v >= 0 && v < (float)nc)
                    counts[(int)v]++;
            }
            int used = 0;
            for (int k = 0; k < nc; k++)
                used += counts[k] > 0;
            if (used > PREPROC_MAX_CATEGORIES) {
                rc = kiln_fail(
                    err, KILN_EINVAL,
                    "%s: column '%s' has %d distinct text values in the training part "
                    "(limit %d); drop it (dropColumns) if it is an id, or make it numeric",
                    src, in->name, used, PREPROC_MAX_CATEGORIES);
                goto fail;
            }
            in->cats = calloc((size_t)(used > 0 ? used : 1), sizeof *in->cats);
            if (!in->cats) {
                rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", src);
                goto fail;
            }
            for (int k = 0; k < nc; k++) {
                in->code_map[k] = -1;
                if (!counts[k])
                    continue;
                in->code_map[k] = in->n_cats;
                in->cats[in->n_cats] = strdup(s->cats[i][k]);
                if (!in->cats[in->n_cats]) {
                    rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", src);
                    goto fail;
                }
                in->n_cats++;
            }
            free(counts);
            counts = NULL;
            n_feat_all += (size_t)in->n_cats;
            continue;
        }
        in->kind = IN_NUMERIC;
        size_t cnt = 0;
        double sum = 0;
        for (int r = 0; r < n; r++) {
            float v = x[(size_t)(rows ? rows[r] : r) * ni + i];
            if (!isnan(v)) {
                vals[cnt++] = v;
                sum += v;
            }
        }
        if (cnt == 0) {
            rc = kiln_fail(err, KILN_EINVAL,
                           "%s: column '%s' has no values in the training part (every cell is "
                           "missing), so impute=%s has nothing to use; drop it with dropColumns",
                           src, in->name, impute);
            goto fail;
        }
        if (!strcmp(impute, "median")) {
            qsort(vals, cnt, sizeof *vals, cmp_double);
            in->fill = (float)(cnt % 2 ? vals[cnt / 2] : (vals[cnt / 2 - 1] + vals[cnt / 2]) / 2);
        } else {
            in->fill = (float)(sum / (double)cnt);
        }
        n_feat_all++;
    }
    if (n_feat_all == 0) {
        rc = kiln_fail(err, KILN_EINVAL, "%s: no feature columns left (all dropped or empty)", src);
        goto fail;
    }
    if (n_feat_all > PP_MAX_FEATURES) {
        rc = kiln_fail(err, KILN_EINVAL, "%s: %zu features is more than the limit of %d", src,
                       n_feat_all, PP_MAX_FEATURES);
        goto fail;
    }

    /* Candidate features and their training statistics. */
    pp->feat = calloc(n_feat_all, sizeof *pp->feat);
    st = calloc(n_feat_all, sizeof *st);
    if (!pp->feat || !st) {
        rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", src);
        goto fail;
    }
    size_t nf = 0;
    for (size_t i = 0; i < ni; i++) {
        pp_input *in = &pp->in[i];
        if (in->kind == IN_NUMERIC) {
            double sum = 0, mn = INFINITY, mx = -INFINITY;
            for (int r = 0; r < n; r++) {
                float v = x[(size_t)(rows ? rows[r] : r) * ni + i];
                if (isnan(v))
                    v = in->fill;
                vals[r] = v;
                sum += v;
                mn = v < mn ? v : mn;
                mx = v > mx ? v : mx;
            }
            double mean = sum / n, ss = 0;
            for (int r = 0; r < n; r++)
                ss += (vals[r] - mean) * (vals[r] - mean);
            st[nf] = (feat_stats){mean, ss / n, mn, mx};
            pp->feat[nf++] = (pp_feature){(int)i, -1, 0, 1};
        } else if (in->kind == IN_CATEGORICAL) {
            size_t base = nf;
            for (int k = 0; k < in->n_cats; k++)
                pp->feat[nf++] = (pp_feature){(int)i, k, 0, 1};
            int32_t *cnt = calloc((size_t)(in->n_cats > 0 ? in->n_cats : 1), sizeof *cnt);
            if (!cnt) {
                rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", src);
                goto fail;
            }
            for (int r = 0; r < n; r++) {
                float v = x[(size_t)(rows ? rows[r] : r) * ni + i];
                if (!isnan(v) && v >= 0 && v < (float)in->n_codes && in->code_map[(int)v] >= 0)
                    cnt[in->code_map[(int)v]]++;
            }
            for (int k = 0; k < in->n_cats; k++) {
                double p = (double)cnt[k] / n;
                st[base + (size_t)k] =
                    (feat_stats){p, p * (1 - p), cnt[k] < n ? 0.0 : 1.0, cnt[k] > 0 ? 1.0 : 0.0};
            }
            free(cnt);
        }
    }

    /* Variance selection, then scaling of what is kept. */
    size_t kept = 0;
    double best_var = 0;
    for (size_t k = 0; k < nf; k++) {
        if (st[k].var > best_var)
            best_var = st[k].var;
        if (variance_threshold > 0 && !(st[k].var > variance_threshold))
            continue;
        pp_feature f = pp->feat[k];
        if (!strcmp(scale, "standard")) {
            double sd = sqrt(st[k].var);
            f.sub = (float)st[k].mean;
            f.mul = sd > 0 ? (float)(1.0 / sd) : 1.0f;
        } else if (!strcmp(scale, "minmax")) {
            double range = st[k].max - st[k].min;
            f.sub = (float)st[k].min;
            f.mul = range > 0 ? (float)(1.0 / range) : 1.0f;
        }
        if (!isfinite(f.mul) || !isfinite(f.sub)) {
            rc = kiln_fail(err, KILN_EINVAL,
                           "%s: column '%s' has values too large or too close together to scale",
                           src, pp->in[f.input].name);
            goto fail;
        }
        pp->feat[kept++] = f;
    }
    if (kept == 0) {
        rc = kiln_fail(err, KILN_EINVAL,
                       "%s: varianceThreshold %g removes every feature (the largest training "
                       "variance is %g)",
                       src, variance_threshold, best_var);
        goto fail;
    }
    pp->n_features = (int)kept;
    free(vals);
    free(st);
    *out = pp;
    return 0;
fail:
    free(vals);
    free(counts);
    free(st);
    preproc_free(pp);
    return rc;
}

int preproc_apply_coded(const preproc *pp, const float *x, const int32_t *rows, int n, float *out,
                        kiln_error *err)
{
    if (pp->image)
        return kiln_fail(err, KILN_EINTERNAL, "preproc_apply_coded on an image preproc");
    size_t ni = (size_t)pp->n_inputs;
    float *num = malloc(ni * sizeof *num);
    int32_t *cat = malloc(ni * sizeof *cat);
    if (!num || !cat) {
        free(num);
        free(cat);
        return kiln_fail(err, KILN_ENOMEM, "out of memory applying preprocessing");
    }
    for (int r = 0; r < n; r++) {
        const float *row = x + (size_t)(rows ? rows[r] : r) * ni;
        for (size_t i = 0; i < ni; i++) {
            const pp_input *in = &pp->in[i];
            float v = row[i];
            num[i] = 0;
            cat[i] = -1;
            if (in->kind == IN_NUMERIC)
                num[i] = isnan(v) ? in->fill : v;
            else if (in->kind == IN_CATEGORICAL && !isnan(v) && v >= 0 && v < (float)in->n_codes &&
                     in->code_map)
                cat[i] = in->code_map[(int)v];
        }
        emit(pp, num, cat, out + (size_t)r * (size_t)pp->n_features);
    }
    free(num);
    free(cat);
    return 0;
}

/* An image preproc: one global affine map over h*w*c pixels. Used by the
 * fit and by the JSON reader, so both build the same object. */
static int image_new(int h, int w, int c, float a, float b, const char *scale, preproc **out,
                     kiln_error *err)
{
    preproc *pp = calloc(1, sizeof *pp);
    if (!pp)
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    pp->image = 1;
    pp->h = h;
    pp->w = w;
    pp->c = c;
    pp->n_inputs = pp->n_features = h * w * c;
    pp->label_pos = -1;
    pp->a = a;
    pp->b = b;
    snprintf(pp->scale, sizeof pp->scale, "%s", scale);
    snprintf(pp->impute, sizeof pp->impute, "mean");
    if (make_pixel_names(pp) != 0) {
        preproc_free(pp);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    *out = pp;
    return 0;
}

int preproc_fit_image(int h, int w, int c, const uint8_t *xu8, const float *xf, const int32_t *rows,
                      int n, const char *scale, preproc **out, kiln_error *err)
{
    *out = NULL;
    if (!valid_scale(scale))
        return kiln_fail(err, KILN_EINVAL,
                         "preprocessing.scale: '%s' is not standard, minmax or none",
                         scale ? scale : "");
    if (h < 1 || w < 1 || c < 1 || (int64_t)h * w * c > PP_MAX_IMAGE_PIXELS)
        return kiln_fail(err, KILN_EINVAL, "image geometry %dx%dx%d is out of range", h, w, c);
    if (n < 1)
        return kiln_fail(err, KILN_EINVAL, "no training images to fit preprocessing on");
    size_t d = (size_t)h * (size_t)w * (size_t)c;
    double mean = 0, sd = 0, mn = 0, mx = 0;
    if (xu8) {
        /* Exact integer sums over bytes: fast, and independent of order. */
        uint64_t sum = 0, sum2 = 0;
        uint64_t hist[256] = {0};
        for (int r = 0; r < n; r++) {
            const uint8_t *p = xu8 + (size_t)(rows ? rows[r] : r) * d;
            for (size_t j = 0; j < d; j++)
                hist[p[j]]++;
        }
        int lo = 255, hi = 0;
        for (int v = 0; v < 256; v++) {
            if (!hist[v])
                continue;
            sum += hist[v] * (uint64_t)v;
            sum2 += hist[v] * (uint64_t)v * (uint64_t)v;
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        double cnt = (double)n * (double)d;
        mean = (double)sum / cnt;
        double var = (double)sum2 / cnt - mean * mean;
        sd = var > 0 ? sqrt(var) : 0;
        mn = lo;
        mx = hi;
    } else {
        double sum = 0;
        mn = INFINITY;
        mx = -INFINITY;
        for (int r = 0; r < n; r++) {
            const float *p = xf + (size_t)(rows ? rows[r] : r) * d;
            for (size_t j = 0; j < d; j++) {
                sum += p[j];
                mn = p[j] < mn ? p[j] : mn;
                mx = p[j] > mx ? p[j] : mx;
            }
        }
        double cnt = (double)n * (double)d;
        mean = sum / cnt;
        double ss = 0;
        for (int r = 0; r < n; r++) {
            const float *p = xf + (size_t)(rows ? rows[r] : r) * d;
            for (size_t j = 0; j < d; j++)
                ss += (p[j] - mean) * (p[j] - mean);
        }
        sd = sqrt(ss / cnt);
    }
    float a = 1, b = 0;
    if (!strcmp(scale, "standard") && sd > 0) {
        a = (float)(1.0 / sd);
        b = (float)(-mean / sd);
    } else if (!strcmp(scale, "standard")) {
        b = (float)-mean;
    } else if (!strcmp(scale, "minmax")) {
        double range = mx - mn;
        a = range > 0 ? (float)(1.0 / range) : 1.0f;
        b = range > 0 ? (float)(-mn / range) : (float)-mn;
    }
    if (!isfinite(a) || !isfinite(b))
        return kiln_fail(err, KILN_EINVAL, "image pixel values are too large to scale");
    b += 0.0f; /* -0 -> 0, so the JSON reads "0" */
    return image_new(h, w, c, a, b, scale, out, err);
}

/* ------------------------------------------------------------ applying */

int preproc_apply(const preproc *pp, const float *raw, int n, float *out, kiln_error *err)
{
    size_t ni = (size_t)pp->n_inputs;
    if (pp->image) {
        /* Scale first and look for a non-finite pixel after: a loop without
         * an early exit vectorises, and this runs on every served request. */
        size_t total = (size_t)n * ni, k = 0;
        int finite = 1;
#if defined(__AVX2__)
        /* The same multiply then add as preproc_affine, eight at a time;
         * a pixel is not finite when its exponent bits are all ones. */
        const __m256 va = _mm256_set1_ps(pp->a), vb = _mm256_set1_ps(pp->b);
        const __m256i expo = _mm256_set1_epi32(0x7f800000);
        __m256i inf = _mm256_setzero_si256();
        for (; k + 8 <= total; k += 8) {
            __m256 v = _mm256_loadu_ps(raw + k);
            __m256i e = _mm256_and_si256(_mm256_castps_si256(v), expo);
            inf = _mm256_or_si256(inf, _mm256_cmpeq_epi32(e, expo));
            _mm256_storeu_ps(out + k, _mm256_add_ps(_mm256_mul_ps(v, va), vb));
        }
        finite = _mm256_testz_si256(inf, inf);
#endif
        for (; k < total; k++) {
            float p = raw[k];
            finite &= fabsf(p) <= FLT_MAX;
            out[k] = preproc_affine(p, pp->a, pp->b);
        }
        if (finite)
            return 0;
        for (size_t k = 0; k < total; k++)
            if (!isfinite(raw[k]))
                return kiln_fail(err, KILN_EINVAL, "instance %zu: pixel%zu is not a finite number",
                                 k / ni, k % ni);
        return 0;
    }
    float *num = malloc(ni * sizeof *num);
    int32_t *cat = malloc(ni * sizeof *cat);
    if (!num || !cat) {
        free(num);
        free(cat);
        return kiln_fail(err, KILN_ENOMEM, "out of memory applying preprocessing");
    }
    int rc = 0;
    for (int r = 0; r < n && !rc; r++) {
        const float *row = raw + (size_t)r * ni;
        for (size_t i = 0; i < ni; i++) {
            const pp_input *in = &pp->in[i];
            float v = row[i];
            num[i] = 0;
            cat[i] = -1;
            if (in->kind == IN_NUMERIC) {
                if (isinf(v)) {
                    rc = kiln_fail(err, KILN_EINVAL, "instance %d: column '%s' is not finite", r,
                                   in->name);
                    break;
                }
                num[i] = isnan(v) ? in->fill : v;
            } else if (in->kind == IN_CATEGORICAL && isfinite(v)) {
                char buf[32];
                float_text(v, buf, sizeof buf);
                cat[i] = find_cat(in, buf);
            }
        }
        if (!rc)
            emit(pp, num, cat, out + (size_t)r * (size_t)pp->n_features);
    }
    free(num);
    free(cat);
    return rc;
}

int preproc_apply_cells(const preproc *pp, const char *const *cells, int ncells, float *out,
                        kiln_error *err)
{
    int ni = pp->n_inputs;
    int with_label = pp->label_pos >= 0 && ncells == ni + 1;
    if (ncells != ni && !with_label)
        return kiln_fail(err, KILN_EINVAL, "%d values given, expected %d%s", ncells, ni,
                         pp->label_pos >= 0 ? " (or one more with the label column)" : "");
    if (pp->image) {
        for (int j = 0; j < ni; j++) {
            double v;
            if (!cells[j] || !csv_cell_number(cells[j], &v) || fabs(v) > FLT_MAX)
                return kiln_fail(err, KILN_EINVAL, "pixel%d: '%s' is not a number", j,
                                 cells[j] ? cells[j] : "");
            out[j] = preproc_affine((float)v, pp->a, pp->b);
        }
        return 0;
    }
    float *num = malloc((size_t)ni * sizeof *num);
    int32_t *cat = malloc((size_t)ni * sizeof *cat);
    if (!num || !cat) {
        free(num);
        free(cat);
        return kiln_fail(err, KILN_ENOMEM, "out of memory applying preprocessing");
    }
    int rc = 0;
    for (int i = 0; i < ni; i++) {
        int cell = with_label && i >= pp->label_pos ? i + 1 : i;
        const char *s = cells[cell] ? cells[cell] : "";
        const pp_input *in = &pp->in[i];
        num[i] = 0;
        cat[i] = -1;
        if (in->kind == IN_NUMERIC) {
            double v;
            if (csv_cell_missing(s))
                num[i] = in->fill;
            else if (csv_cell_number(s, &v) && fabs(v) <= FLT_MAX)
                num[i] = (float)v;
            else {
                rc = kiln_fail(err, KILN_EINVAL, "column '%s': '%.64s' is not a number", in->name,
                               s);
                break;
            }
        } else if (in->kind == IN_CATEGORICAL && !csv_cell_missing(s)) {
            cat[i] = find_cat(in, s);
        }
    }
    if (!rc)
        emit(pp, num, cat, out);
    free(num);
    free(cat);
    return rc;
}

/* ------------------------------------------------------------ JSON */

/* Floats go out as doubles: cJSON prints a double so it reads back
 * exactly, and float -> double -> float is the identity. */
static cJSON *num(float v)
{
    return cJSON_CreateNumber((double)v);
}

cJSON *preproc_to_json(const preproc *pp)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    int ok = 1;
    if (pp->image) {
        ok &= cJSON_AddStringToObject(j, "kind", "image") != NULL;
        ok &= cJSON_AddNumberToObject(j, "h", pp->h) != NULL;
        ok &= cJSON_AddNumberToObject(j, "w", pp->w) != NULL;
        ok &= cJSON_AddNumberToObject(j, "c", pp->c) != NULL;
        ok &= cJSON_AddStringToObject(j, "scale", pp->scale) != NULL;
        ok &= cJSON_AddItemToObject(j, "a", num(pp->a));
        ok &= cJSON_AddItemToObject(j, "b", num(pp->b));
        if (!ok) {
            cJSON_Delete(j);
            return NULL;
        }
        return j;
    }
    ok &= cJSON_AddStringToObject(j, "kind", "table") != NULL;
    ok &= cJSON_AddStringToObject(j, "impute", pp->impute) != NULL;
    ok &= cJSON_AddStringToObject(j, "scale", pp->scale) != NULL;
    ok &= cJSON_AddNumberToObject(j, "varianceThreshold", pp->variance_threshold) != NULL;
    ok &= cJSON_AddNumberToObject(j, "labelPosition", pp->label_pos) != NULL;
    cJSON *ins = cJSON_AddArrayToObject(j, "inputs");
    cJSON *fs = cJSON_AddArrayToObject(j, "features");
    ok &= ins && fs;
    for (int i = 0; ok && i < pp->n_inputs; i++) {
        const pp_input *in = &pp->in[i];
        cJSON *o = cJSON_CreateObject();
        ok &= o && cJSON_AddItemToArray(ins, o);
        if (!ok)
            break;
        ok &= cJSON_AddStringToObject(o, "name", in->name) != NULL;
        if (in->kind == IN_NUMERIC) {
            ok &= cJSON_AddStringToObject(o, "type", "numeric") != NULL;
            ok &= cJSON_AddItemToObject(o, "fill", num(in->fill));
        } else if (in->kind == IN_CATEGORICAL) {
            ok &= cJSON_AddStringToObject(o, "type", "categorical") != NULL;
            cJSON *c = cJSON_AddArrayToObject(o, "categories");
            ok &= c != NULL;
            for (int k = 0; ok && k < in->n_cats; k++) {
                cJSON *sv = cJSON_CreateString(in->cats[k]);
                ok &= sv && cJSON_AddItemToArray(c, sv);
            }
        } else {
            ok &= cJSON_AddStringToObject(o, "type", "dropped") != NULL;
        }
    }
    for (int k = 0; ok && k < pp->n_features; k++) {
        const pp_feature *f = &pp->feat[k];
        cJSON *o = cJSON_CreateObject();
        ok &= o && cJSON_AddItemToArray(fs, o);
        if (!ok)
            break;
        ok &= cJSON_AddNumberToObject(o, "input", f->input) != NULL;
        if (f->cat >= 0)
            ok &= cJSON_AddNumberToObject(o, "category", f->cat) != NULL;
        ok &= cJSON_AddItemToObject(o, "sub", num(f->sub));
        ok &= cJSON_AddItemToObject(o, "mul", num(f->mul));
    }
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

static int get_int(const cJSON *o, const char *key, int lo, int hi, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    if (!(d >= lo && d <= hi) || d != floor(d))
        return 0;
    *out = (int)d;
    return 1;
}

static int get_float(const cJSON *o, const char *key, float *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > FLT_MAX)
        return 0;
    *out = (float)v->valuedouble;
    return 1;
}

static const char *get_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

static int image_from_json(const cJSON *j, preproc **out, kiln_error *err)
{
    int h, w, c;
    float a, b;
    const char *scale = get_str(j, "scale");
    if (!get_int(j, "h", 1, PP_MAX_IMAGE_PIXELS, &h) ||
        !get_int(j, "w", 1, PP_MAX_IMAGE_PIXELS, &w) ||
        !get_int(j, "c", 1, PP_MAX_IMAGE_PIXELS, &c) || (int64_t)h * w * c > PP_MAX_IMAGE_PIXELS)
        return kiln_fail(err, KILN_EINVAL,
                         "image h, w, c must be positive integers (at most %d pixels)",
                         PP_MAX_IMAGE_PIXELS);
    if (!get_float(j, "a", &a) || !get_float(j, "b", &b))
        return kiln_fail(err, KILN_EINVAL, "image a and b must be finite numbers");
    if (!valid_scale(scale))
        return kiln_fail(err, KILN_EINVAL, "image scale must be standard, minmax or none");
    return image_new(h, w, c, a, b, scale, out, err);
}

static int table_from_json(const cJSON *j, preproc **out, kiln_error *err)
{
    const char *impute = get_str(j, "impute"), *scale = get_str(j, "scale");
    const cJSON *vt = cJSON_GetObjectItemCaseSensitive(j, "varianceThreshold");
    const cJSON *ins = cJSON_GetObjectItemCaseSensitive(j, "inputs");
    const cJSON *fs = cJSON_GetObjectItemCaseSensitive(j, "features");
    if (!valid_impute(impute))
        return kiln_fail(err, KILN_EINVAL, "impute must be mean, median or drop");
    if (!valid_scale(scale))
        return kiln_fail(err, KILN_EINVAL, "scale must be standard, minmax or none");
    if (!cJSON_IsNumber(vt) || !(vt->valuedouble >= 0) || !isfinite(vt->valuedouble))
        return kiln_fail(err, KILN_EINVAL, "varianceThreshold must be a number >= 0");
    if (!cJSON_IsArray(ins) || !cJSON_IsArray(fs))
        return kiln_fail(err, KILN_EINVAL, "inputs and features must be arrays");
    int ni = cJSON_GetArraySize(ins), nf = cJSON_GetArraySize(fs);
    if (ni < 1 || ni > PP_MAX_INPUTS)
        return kiln_fail(err, KILN_EINVAL, "inputs: %d entries, expected 1 to %d", ni,
                         PP_MAX_INPUTS);
    if (nf < 1 || nf > PP_MAX_FEATURES)
        return kiln_fail(err, KILN_EINVAL, "features: %d entries, expected 1 to %d", nf,
                         PP_MAX_FEATURES);
    int label_pos;
    if (!get_int(j, "labelPosition", -1, ni, &label_pos))
        return kiln_fail(err, KILN_EINVAL, "labelPosition must be an integer from -1 to %d", ni);
    preproc *pp = table_new(ni);
    if (!pp)
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    pp->label_pos = label_pos;
    snprintf(pp->impute, sizeof pp->impute, "%s", impute);
    snprintf(pp->scale, sizeof pp->scale, "%s", scale);
    pp->variance_threshold = vt->valuedouble;
    int rc = 0, i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, ins)
    {
        pp_input *in = &pp->in[i];
        const char *name = get_str(e, "name"), *type = get_str(e, "type");
        if (!name || !type) {
            rc = kiln_fail(err, KILN_EINVAL, "inputs[%d]: needs a string name and type", i);
            goto fail;
        }
        in->name = strdup(name);
        if (!in->name) {
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
            goto fail;
        }
        if (!strcmp(type, "numeric")) {
            in->kind = IN_NUMERIC;
            if (!get_float(e, "fill", &in->fill)) {
                rc = kiln_fail(err, KILN_EINVAL, "inputs[%d]: fill must be a finite number", i);
                goto fail;
            }
        } else if (!strcmp(type, "categorical")) {
            in->kind = IN_CATEGORICAL;
            const cJSON *cats = cJSON_GetObjectItemCaseSensitive(e, "categories");
            int nc = cJSON_IsArray(cats) ? cJSON_GetArraySize(cats) : -1;
            if (nc < 0 || nc > PREPROC_MAX_CATEGORIES) {
                rc = kiln_fail(err, KILN_EINVAL,
                               "inputs[%d]: categories must be an array of at most %d strings", i,
                               PREPROC_MAX_CATEGORIES);
                goto fail;
            }
            in->cats = calloc((size_t)(nc > 0 ? nc : 1), sizeof *in->cats);
            if (!in->cats) {
                rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
                goto fail;
            }
            const cJSON *c;
            cJSON_ArrayForEach(c, cats)
            {
                if (!cJSON_IsString(c) || !c->valuestring) {
                    rc = kiln_fail(err, KILN_EINVAL, "inputs[%d]: categories must be strings", i);
                    goto fail;
                }
                /* Lookups are binary searches: insist on strictly sorted. */
                if (in->n_cats > 0 && strcmp(in->cats[in->n_cats - 1], c->valuestring) >= 0) {
                    rc = kiln_fail(err, KILN_EINVAL,
                                   "inputs[%d]: categories must be sorted and distinct", i);
                    goto fail;
                }
                in->cats[in->n_cats] = strdup(c->valuestring);
                if (!in->cats[in->n_cats]) {
                    rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
                    goto fail;
                }
                in->n_cats++;
            }
        } else if (!strcmp(type, "dropped")) {
            in->kind = IN_DROPPED;
        } else {
            rc = kiln_fail(err, KILN_EINVAL,
                           "inputs[%d]: type '%.32s' is not numeric, categorical or dropped", i,
                           type);
            goto fail;
        }
        i++;
    }
    pp->feat = calloc((size_t)nf, sizeof *pp->feat);
    if (!pp->feat) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
        goto fail;
    }
    int k = 0;
    cJSON_ArrayForEach(e, fs)
    {
        pp_feature *f = &pp->feat[k];
        if (!get_int(e, "input", 0, ni - 1, &f->input) || pp->in[f->input].kind == IN_DROPPED) {
            rc = kiln_fail(err, KILN_EINVAL, "features[%d]: input must index a kept input", k);
            goto fail;
        }
        const pp_input *in = &pp->in[f->input];
        f->cat = -1;
        if (in->kind == IN_CATEGORICAL) {
            if (!get_int(e, "category", 0, in->n_cats - 1, &f->cat)) {
                rc = kiln_fail(err, KILN_EINVAL,
                               "features[%d]: category must index the input's categories", k);
                goto fail;
            }
        } else if (cJSON_GetObjectItemCaseSensitive(e, "category")) {
            rc = kiln_fail(err, KILN_EINVAL, "features[%d]: a numeric input has no category", k);
            goto fail;
        }
        if (!get_float(e, "sub", &f->sub) || !get_float(e, "mul", &f->mul)) {
            rc = kiln_fail(err, KILN_EINVAL, "features[%d]: sub and mul must be finite numbers", k);
            goto fail;
        }
        k++;
    }
    pp->n_features = nf;
    *out = pp;
    return 0;
fail:
    /* Inputs past i were never filled; preproc_free handles zeroed ones. */
    preproc_free(pp);
    return rc;
}

int preproc_from_json(const cJSON *j, preproc **out, kiln_error *err)
{
    *out = NULL;
    if (!cJSON_IsObject(j))
        return kiln_fail(err, KILN_EINVAL, "preprocessing must be a JSON object");
    const char *kind = get_str(j, "kind");
    if (kind && !strcmp(kind, "image"))
        return image_from_json(j, out, err);
    if (kind && !strcmp(kind, "table"))
        return table_from_json(j, out, err);
    return kiln_fail(err, KILN_EINVAL, "preprocessing kind must be \"table\" or \"image\"");
}
