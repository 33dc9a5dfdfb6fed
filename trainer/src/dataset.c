/* dataset: loading CSV and IDX data and making preprocessed train/validation
 * splits (see dataset.h). */
#include "dataset.h"

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "csv.h"
#include "idx.h"
#include "rng.h"
#include "source.h"

enum { RAW_TABLE = 1, RAW_IMAGE = 2 };

/* A set of rows as read: the training data, or the data's own test set. */
typedef struct part {
    int n;
    const uint8_t *xu8; /* byte images (n, d), pointing into buf */
    float *xf;          /* (n, d): table cells (values or category codes, NaN
                           missing) or non-byte images; owned */
    double *yv;         /* (n) label values of IDX labels, owned (load time only) */
    int32_t *y;         /* (n) class index, or NULL; owned */
    source_buf buf;     /* owns the bytes xu8 points into */
} part;

struct data_raw {
    char name[256]; /* the data file (or directory) name for messages */
    int kind;       /* RAW_TABLE | RAW_IMAGE */
    int d;          /* pixels per image, or table input columns */
    int h, w, c;
    part train, test;
    int has_test;
    int n_classes;
    char **class_names;
    /* Tables: one entry per input column (file columns minus the label). */
    char **names;
    uint8_t *categorical, *dropped;
    int *n_cats;
    char ***cats;  /* sorted dictionaries of each categorical column */
    int label_pos; /* the label's position among the file's columns, or -1 */
};

/* ------------------------------------------------------------ small helpers */

static void part_release(part *p)
{
    free(p->xf);
    free(p->yv);
    free(p->y);
    source_buf_release(&p->buf);
    memset(p, 0, sizeof *p);
}

static void free_strings(char **s, int n)
{
    if (!s)
        return;
    for (int i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

void data_raw_free(data_raw *raw)
{
    if (!raw)
        return;
    part_release(&raw->train);
    part_release(&raw->test);
    free_strings(raw->class_names, raw->n_classes);
    if (raw->cats && raw->n_cats)
        for (int i = 0; i < raw->d; i++)
            free_strings(raw->cats[i], raw->n_cats[i]);
    free(raw->cats);
    free(raw->n_cats);
    free_strings(raw->names, raw->d);
    free(raw->categorical);
    free(raw->dropped);
    free(raw);
}

int data_raw_rows(const data_raw *raw)
{
    return raw->train.n;
}

int data_raw_has_test_set(const data_raw *raw)
{
    return raw->has_test;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

static int is_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

/* Shortest text that reads back as the same double ("3" for 3.0). */
static void double_text(double v, char *buf, size_t cap)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* "a, b, class" for messages, cut short to fit. */
static void list_names(char *const *names, int n, int skip, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i == skip)
            continue;
        int w = snprintf(out + o, cap - o, "%s%s", o ? ", " : "", names[i]);
        if (w < 0 || (size_t)w >= cap - o) {
            /* Cut: end with "..." inside the buffer. */
            if (cap >= 4)
                memcpy(out + cap - 4, "...", 4);
            return;
        }
        o += (size_t)w;
    }
}

/* ------------------------------------------------------------ classes */

typedef struct label_ref {
    const char *s;
    double v;
} label_ref;

static int cmp_label_num(const void *a, const void *b)
{
    const label_ref *x = a, *y = b;
    if (x->v != y->v)
        return x->v < y->v ? -1 : 1;
    return strcmp(x->s, y->s);
}

static int cmp_label_str(const void *a, const void *b)
{
    return strcmp(((const label_ref *)a)->s, ((const label_ref *)b)->s);
}

/* Distinct label strings sorted (numerically when all are numbers, else
 * by bytes) -> raw->class_names, and y[i] = class of labels[i]. */
static int make_classes(data_raw *raw, const char *const *labels, int n, int32_t *y,
                        kiln_error *err)
{
    label_ref *refs = malloc((size_t)(n > 0 ? n : 1) * sizeof *refs);
    if (!refs)
        return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", raw->name);
    int numeric = 1;
    for (int i = 0; i < n; i++) {
        refs[i].s = labels[i];
        if (numeric && !csv_cell_number(labels[i], &refs[i].v))
            numeric = 0;
    }
    if (!numeric)
        for (int i = 0; i < n; i++)
            refs[i].v = 0;
    int (*cmp)(const void *, const void *) = numeric ? cmp_label_num : cmp_label_str;
    label_ref *sorted = malloc((size_t)(n > 0 ? n : 1) * sizeof *sorted);
    if (!sorted) {
        free(refs);
        return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", raw->name);
    }
    memcpy(sorted, refs, (size_t)n * sizeof *refs);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp);
    int k = 0;
    for (int i = 0; i < n; i++)
        if (k == 0 || strcmp(sorted[k - 1].s, sorted[i].s))
            sorted[k++] = sorted[i];
    raw->class_names = calloc((size_t)(k > 0 ? k : 1), sizeof *raw->class_names);
    int rc = 0;
    if (!raw->class_names)
        rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", raw->name);
    for (int i = 0; !rc && i < k; i++) {
        raw->class_names[i] = strdup(sorted[i].s);
        if (!raw->class_names[i])
            rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", raw->name);
        raw->n_classes = i + 1;
    }
    for (int i = 0; !rc && i < n; i++) {
        label_ref *hit = bsearch(&refs[i], sorted, (size_t)k, sizeof *sorted, cmp);
        y[i] = hit ? (int32_t)(hit - sorted) : 0;
    }
    free(refs);
    free(sorted);
    return rc;
}

/* ------------------------------------------------------------ CSV */

static int find_column(char *const *names, int n, const char *want)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], want))
            return i;
    return -1;
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int load_csv(const data_opts *o, const char *buf, size_t len, data_raw *raw, kiln_error *err)
{
    const char *name = raw->name;
    csv_table *t = NULL;
    int rc = csv_parse(buf, len, name, &t, err);
    if (rc)
        return rc;
    int nc = t->n_cols;
    char **cols = calloc((size_t)nc, sizeof *cols);
    const char **lab = NULL;
    const char **tmp = NULL;
    int32_t *keep = NULL;
    if (!cols) {
        rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", name);
        goto done;
    }
    /* Header: the label named in the first row settles it; else guess. */
    const char *label = o->label && *o->label ? o->label : NULL;
    int header = 0;
    if (label)
        for (int c = 0; c < nc && !header; c++)
            header = !strcmp(csv_cell(t, 0, c), label);
    if (!header)
        header = csv_detect_header(t);
    for (int c = 0; c < nc; c++) {
        char tmpname[24];
        snprintf(tmpname, sizeof tmpname, "c%d", c);
        cols[c] = strdup(header ? csv_cell(t, 0, c) : tmpname);
        if (!cols[c]) {
            rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", name);
            goto done;
        }
    }
    char list[300];
    int lc = -1;
    if (label) {
        lc = find_column(cols, nc, label);
        if (lc < 0 && is_digits(label)) {
            long v = strtol(label, NULL, 10);
            if (strlen(label) > 9 || v >= nc) {
                rc = kiln_fail(err, KILN_EINVAL,
                               "%s: label column index %s is out of range (the file has %d "
                               "columns, numbered from 0)",
                               name, label, nc);
                goto done;
            }
            lc = (int)v;
        }
        if (lc < 0) {
            list_names(cols, nc, -1, list, sizeof list);
            if (header)
                rc = kiln_fail(err, KILN_EINVAL, "%s: label column '%s' not found (columns: %s)",
                               name, label, list);
            else
                rc = kiln_fail(err, KILN_EINVAL,
                               "%s: label column '%s' not found: the file has no header row; give "
                               "the label as a 0-based column index (0 to %d)",
                               name, label, nc - 1);
            goto done;
        }
    }
    /* Inputs: every file column but the label. */
    int ni = nc - (lc >= 0);
    if (ni < 1) {
        rc = kiln_fail(err, KILN_EINVAL, "%s: the label is the only column; no inputs left", name);
        goto done;
    }
    raw->d = ni;
    raw->label_pos = lc;
    raw->names = calloc((size_t)ni, sizeof *raw->names);
    raw->categorical = calloc((size_t)ni, 1);
    raw->dropped = calloc((size_t)ni, 1);
    raw->n_cats = calloc((size_t)ni, sizeof *raw->n_cats);
    raw->cats = calloc((size_t)ni, sizeof *raw->cats);
    if (!raw->names || !raw->categorical || !raw->dropped || !raw->n_cats || !raw->cats) {
        rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", name);
        goto done;
    }
    for (int c = 0, i = 0; c < nc; c++)
        if (c != lc) {
            raw->names[i++] = cols[c];
            cols[c] = NULL;
        }
    for (int k = 0; k < o->n_drop_columns; k++) {
        const char *dn = o->drop_columns[k];
        if (!dn)
            continue;
        if (lc >= 0 && !strcmp(dn, cols[lc])) {
            rc = kiln_fail(err, KILN_EINVAL,
                           "%s: dropColumns names '%s', which is the label column", name, dn);
            goto done;
        }
        int hit = 0;
        for (int i = 0; i < ni; i++)
            if (!strcmp(raw->names[i], dn)) {
                raw->dropped[i] = 1;
                hit = 1;
            }
        if (!hit) {
            list_names(raw->names, ni, -1, list, sizeof list);
            rc = kiln_fail(err, KILN_EINVAL, "%s: dropColumns: column '%s' not found (columns: %s)",
                           name, dn, list);
            goto done;
        }
    }
    int drop_missing = o->impute && !strcmp(o->impute, "drop");
    int first = header ? 1 : 0;
    int avail = t->n_rows - first;
    if (avail < 1) {
        rc = kiln_fail(err, KILN_EINVAL, "%s: no data rows (only a header row)", name);
        goto done;
    }
    /* Rows kept: with impute=drop, rows missing a used cell are skipped;
     * then at most max_samples. */
    keep = malloc((size_t)avail * sizeof *keep);
    if (!keep) {
        rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", name);
        goto done;
    }
    int n = 0;
    for (int r = first; r < t->n_rows; r++) {
        if (o->max_samples > 0 && n >= o->max_samples)
            break;
        int miss = 0;
        for (int c = 0, i = 0; c < nc && !miss; c++) {
            if (c == lc) {
                if (csv_cell_missing(csv_cell(t, r, c))) {
                    if (!drop_missing) {
                        rc =
                            kiln_fail(err, KILN_EINVAL,
                                      "%s: row %d (line %d): the label '%s' is missing (fix it, or "
                                      "use impute: drop to skip such rows)",
                                      name, r + 1, t->line[r], cols[lc]);
                        goto done;
                    }
                    miss = 1;
                }
                continue;
            }
            if (drop_missing && !raw->dropped[i] && csv_cell_missing(csv_cell(t, r, c)))
                miss = 1;
            i++;
        }
        if (!miss)
            keep[n++] = r;
    }
    if (n < 1) {
        rc = kiln_fail(err, KILN_EINVAL,
                       "%s: no rows left after dropping the %d rows with missing cells (impute: "
                       "drop)",
                       name, avail);
        goto done;
    }
    raw->train.n = n;
    raw->train.xf = malloc((size_t)n * (size_t)ni * sizeof(float));
    tmp = malloc((size_t)n * sizeof *tmp);
    if (!raw->train.xf || !tmp) {
        rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory for %d rows x %d columns", name, n, ni);
        goto done;
    }
    for (int c = 0, i = 0; c < nc; c++) {
        if (c == lc)
            continue;
        float *col = raw->train.xf + i;
        size_t stride = (size_t)ni;
        if (raw->dropped[i]) {
            for (int k = 0; k < n; k++)
                col[(size_t)k * stride] = NAN;
            i++;
            continue;
        }
        /* A column with any non-numeric text is categorical. */
        int text = 0;
        double v;
        for (int k = 0; k < n && !text; k++) {
            const char *s = csv_cell(t, keep[k], c);
            text = !csv_cell_missing(s) && !csv_cell_number(s, &v);
        }
        if (!text) {
            for (int k = 0; k < n; k++) {
                const char *s = csv_cell(t, keep[k], c);
                if (csv_cell_missing(s)) {
                    col[(size_t)k * stride] = NAN;
                    continue;
                }
                csv_cell_number(s, &v);
                if (fabs(v) > FLT_MAX) {
                    rc = kiln_fail(err, KILN_EINVAL,
                                   "%s: row %d, column '%s': %s is out of the float range", name,
                                   keep[k] + 1, raw->names[i], s);
                    goto done;
                }
                col[(size_t)k * stride] = (float)v;
            }
            i++;
            continue;
        }
        raw->categorical[i] = 1;
        int m = 0;
        for (int k = 0; k < n; k++) {
            const char *s = csv_cell(t, keep[k], c);
            if (!csv_cell_missing(s))
                tmp[m++] = s;
        }
        qsort(tmp, (size_t)m, sizeof *tmp, cmp_cstr);
        int u = 0;
        for (int k = 0; k < m; k++)
            if (u == 0 || strcmp(tmp[u - 1], tmp[k]))
                tmp[u++] = tmp[k];
        /* Codes are stored as floats: keep them exact. */
        if (u > (1 << 24)) {
            rc = kiln_fail(err, KILN_EINVAL, "%s: column '%s' has too many distinct values", name,
                           raw->names[i]);
            goto done;
        }
        raw->cats[i] = calloc((size_t)(u > 0 ? u : 1), sizeof **raw->cats);
        if (!raw->cats[i]) {
            rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", name);
            goto done;
        }
        for (int k = 0; k < u; k++) {
            raw->cats[i][k] = strdup(tmp[k]);
            if (!raw->cats[i][k]) {
                rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", name);
                goto done;
            }
            raw->n_cats[i] = k + 1;
        }
        for (int k = 0; k < n; k++) {
            const char *s = csv_cell(t, keep[k], c);
            if (csv_cell_missing(s)) {
                col[(size_t)k * stride] = NAN;
                continue;
            }
            char **hit = bsearch(&s, raw->cats[i], (size_t)u, sizeof *raw->cats[i], cmp_cstr);
            col[(size_t)k * stride] = hit ? (float)(hit - raw->cats[i]) : NAN;
        }
        i++;
    }
    if (lc >= 0) {
        lab = malloc((size_t)n * sizeof *lab);
        raw->train.y = malloc((size_t)n * sizeof *raw->train.y);
        if (!lab || !raw->train.y) {
            rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", name);
            goto done;
        }
        for (int k = 0; k < n; k++)
            lab[k] = csv_cell(t, keep[k], lc);
        rc = make_classes(raw, lab, n, raw->train.y, err);
    }
done:
    free(lab);
    free(tmp);
    free(keep);
    free_strings(cols, nc);
    csv_free(t);
    return rc;
}

/* ------------------------------------------------------------ IDX */

/* Reads an IDX images (or rank-1/2 table) file that buf holds; takes buf.
 * Sets the geometry on the first call and checks it on the second (test). */
static int load_idx_part(data_raw *raw, const char *name, source_buf *buf, part *p, int is_test,
                         kiln_error *err)
{
    idx_view v;
    int rc = idx_parse(buf->data, buf->len, name, &v, err);
    if (rc)
        return rc;
    if (v.rank > 4)
        return kiln_fail(err, KILN_EINVAL,
                         "%s: rank %d data is not supported (expected rank 2 for a table, 3 "
                         "(n, h, w) or 4 (n, h, w, c) for images)",
                         name, v.rank);
    if (v.n_items == 0)
        return kiln_fail(err, KILN_EINVAL, "%s: the header says 0 items", name);
    if (v.n_items > INT32_MAX || v.item_elems > INT32_MAX / 2)
        return kiln_fail(err, KILN_EINVAL, "%s: %zu items of %zu values is more than Kiln handles",
                         name, v.n_items, v.item_elems);
    int kind = v.rank >= 3 ? RAW_IMAGE : RAW_TABLE;
    int h = v.rank >= 3 ? (int)v.dims[1] : 0, w = v.rank >= 3 ? (int)v.dims[2] : 0;
    int c = v.rank == 4 ? (int)v.dims[3] : 1;
    int d = (int)v.item_elems;
    if (!is_test) {
        raw->kind = kind;
        raw->d = d;
        raw->h = h;
        raw->w = w;
        raw->c = c;
    } else if (kind != raw->kind || d != raw->d || h != raw->h || w != raw->w || c != raw->c) {
        return kiln_fail(err, KILN_EINVAL,
                         "%s: test items have shape %dx%dx%d (%d values) but the training items "
                         "have %dx%dx%d (%d values)",
                         name, h, w, c, d, raw->h, raw->w, raw->c, raw->d);
    }
    p->n = (int)v.n_items;
    size_t total = v.n_items * v.item_elems;
    if (kind == RAW_IMAGE && v.type == IDX_U8) {
        /* Bytes stay where they are: the buffer becomes the part's. */
        p->xu8 = v.data;
        p->buf = *buf;
        buf->data = NULL;
        buf->len = 0;
        return 0;
    }
    p->xf = malloc(total * sizeof(float));
    if (!p->xf)
        return kiln_fail(err, KILN_ENOMEM, "%s: out of memory for %zu values", name, total);
    for (size_t i = 0; i < total; i++) {
        double x = idx_get(&v, i);
        int missing_ok = kind == RAW_TABLE && isnan(x);
        if (!missing_ok && (!isfinite(x) || fabs(x) > FLT_MAX))
            return kiln_fail(err, KILN_EINVAL,
                             "%s: item %zu holds a value that is not a finite float (at byte "
                             "offset %zu)",
                             name, i / v.item_elems, v.header_len + i * v.elem_size);
        p->xf[i] = (float)x;
    }
    source_buf_release(buf);
    return 0;
}

/* Reads a labels file for a part of n items; takes buf. */
static int load_idx_labels(const char *name, source_buf *buf, part *p, const char *images_name,
                           kiln_error *err)
{
    idx_view v;
    int rc = idx_parse(buf->data, buf->len, name, &v, err);
    if (rc)
        return rc;
    if (v.rank > 2 || v.item_elems != 1)
        return kiln_fail(err, KILN_EINVAL,
                         "%s: labels must be a rank-1 IDX file (one value per item), found rank %d",
                         name, v.rank);
    if (v.n_items != (size_t)p->n)
        return kiln_fail(err, KILN_EINVAL, "%s: %zu labels for %d images (%s)", name, v.n_items,
                         p->n, images_name);
    p->yv = malloc((size_t)(p->n > 0 ? p->n : 1) * sizeof *p->yv);
    if (!p->yv)
        return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", name);
    for (int i = 0; i < p->n; i++) {
        p->yv[i] = idx_get(&v, (size_t)i);
        if (!isfinite(p->yv[i]))
            return kiln_fail(err, KILN_EINVAL,
                             "%s: label %d is not a finite number (byte offset %zu)", name, i,
                             v.header_len + (size_t)i * v.elem_size);
    }
    source_buf_release(buf);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Classes from the label values of the training and test parts. */
static int idx_classes(data_raw *raw, kiln_error *err)
{
    if (!raw->train.yv)
        return 0;
    size_t n = (size_t)raw->train.n + (raw->test.yv ? (size_t)raw->test.n : 0);
    double *all = malloc(n * sizeof *all);
    if (!all)
        return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", raw->name);
    memcpy(all, raw->train.yv, (size_t)raw->train.n * sizeof *all);
    if (raw->test.yv)
        memcpy(all + raw->train.n, raw->test.yv, (size_t)raw->test.n * sizeof *all);
    qsort(all, n, sizeof *all, cmp_double);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || all[k - 1] != all[i])
            all[k++] = all[i];
    int rc = 0;
    raw->class_names = calloc(k, sizeof *raw->class_names);
    if (!raw->class_names)
        rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", raw->name);
    for (size_t i = 0; !rc && i < k; i++) {
        char t[40];
        double_text(all[i], t, sizeof t);
        raw->class_names[i] = strdup(t);
        if (!raw->class_names[i])
            rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", raw->name);
        else
            raw->n_classes = (int)i + 1;
    }
    part *parts[2] = {&raw->train, &raw->test};
    for (int q = 0; q < 2 && !rc; q++) {
        part *p = parts[q];
        if (!p->yv)
            continue;
        p->y = malloc((size_t)p->n * sizeof *p->y);
        if (!p->y) {
            rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", raw->name);
            break;
        }
        for (int i = 0; i < p->n; i++) {
            double *hit = bsearch(&p->yv[i], all, k, sizeof *all, cmp_double);
            p->y[i] = hit ? (int32_t)(hit - all) : 0;
        }
        free(p->yv);
        p->yv = NULL;
    }
    free(all);
    return rc;
}

/* Table inputs for rank-1/2 IDX: all numeric, named c<i>. */
static int idx_table_columns(data_raw *raw, kiln_error *err)
{
    int ni = raw->d;
    raw->label_pos = -1;
    raw->names = calloc((size_t)ni, sizeof *raw->names);
    raw->categorical = calloc((size_t)ni, 1);
    raw->dropped = calloc((size_t)ni, 1);
    raw->n_cats = calloc((size_t)ni, sizeof *raw->n_cats);
    raw->cats = calloc((size_t)ni, sizeof *raw->cats);
    if (!raw->names || !raw->categorical || !raw->dropped || !raw->n_cats || !raw->cats)
        return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", raw->name);
    for (int i = 0; i < ni; i++) {
        char t[24];
        snprintf(t, sizeof t, "c%d", i);
        raw->names[i] = strdup(t);
        if (!raw->names[i])
            return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", raw->name);
    }
    return 0;
}

static void apply_max_samples(data_raw *raw, int max_samples)
{
    if (max_samples > 0 && raw->train.n > max_samples)
        raw->train.n = max_samples;
}

/* Finishes an IDX load once the parts are read. */
static int idx_finish(data_raw *raw, const data_opts *o, kiln_error *err)
{
    if (!!raw->train.yv != !!raw->test.yv && raw->has_test)
        return kiln_fail(err, KILN_EINVAL,
                         "%s: labels exist for only one of the training and test images",
                         raw->name);
    apply_max_samples(raw, o->max_samples);
    int rc = idx_classes(raw, err);
    if (!rc && raw->kind == RAW_TABLE)
        rc = idx_table_columns(raw, err);
    return rc;
}

/* The labels file next to an images file: "-images-" -> "-labels-" in the
 * name (and "idx3"/"idx4" -> "idx1"), with or without ".gz". */
static int sibling_labels(const char *uri, char *out, size_t cap)
{
    char base[256];
    source_basename(uri, base, sizeof base);
    const char *hit = strstr(base, "-images-");
    if (!hit)
        hit = strstr(base, "-images.");
    size_t ulen = strlen(uri), blen = strlen(base);
    if (!hit || blen > ulen || strcmp(uri + ulen - blen, base) || ulen + 4 >= 4096)
        return KILN_ENOTFOUND;
    size_t at = ulen - blen + (size_t)(hit - base);
    char cand[4][4096];
    memcpy(cand[0], uri, ulen + 1);
    memcpy(cand[0] + at, "-labels", 7);
    memcpy(cand[1], cand[0], ulen + 1);
    char *r = strstr(cand[1] + at, "idx3");
    if (!r)
        r = strstr(cand[1] + at, "idx4");
    if (r)
        r[3] = '1';
    int nc = 2;
    for (int i = 0; i < 2; i++) {
        /* The same name with ".gz" toggled. */
        size_t l = strlen(cand[i]);
        if (l > 3 && !strcmp(cand[i] + l - 3, ".gz")) {
            memcpy(cand[nc], cand[i], l - 3);
            cand[nc][l - 3] = '\0';
        } else {
            memcpy(cand[nc], cand[i], l);
            memcpy(cand[nc] + l, ".gz", 4);
        }
        nc++;
    }
    static const int order[4] = {1, 3, 0, 2};
    for (int k = 0; k < 4; k++) {
        const char *c = cand[order[k]];
        if (source_exists(c)) {
            size_t l = strlen(c);
            if (l >= cap)
                return KILN_ENOTFOUND;
            memcpy(out, c, l + 1);
            return 0;
        }
    }
    return KILN_ENOTFOUND;
}

static int read_idx_file(data_raw *raw, const char *uri, part *p, int is_test, kiln_error *err)
{
    source_buf b = {0};
    char name[256];
    source_basename(uri, name, sizeof name);
    int rc = source_read(uri, SOURCE_MAX_BYTES, &b, err);
    if (!rc)
        rc = load_idx_part(raw, name, &b, p, is_test, err);
    source_buf_release(&b);
    return rc;
}

static int read_idx_labels(const char *uri, part *p, const char *images, kiln_error *err)
{
    source_buf b = {0};
    char name[256], iname[256];
    source_basename(uri, name, sizeof name);
    source_basename(images, iname, sizeof iname);
    int rc = source_read(uri, SOURCE_MAX_BYTES, &b, err);
    if (!rc)
        rc = load_idx_labels(name, &b, p, iname, err);
    source_buf_release(&b);
    return rc;
}

static int load_idx_dir(const data_opts *o, data_raw *raw, kiln_error *err)
{
    static const char *const tr_img[] = {"train-images-idx3-ubyte.gz", "train-images-idx3-ubyte",
                                         NULL};
    static const char *const tr_lab[] = {"train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte",
                                         NULL};
    static const char *const te_img[] = {"t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte",
                                         NULL};
    static const char *const te_lab[] = {"t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte",
                                         NULL};
    char ti[4096], tl[4096], ei[4096], el[4096];
    if (source_find_member(o->uri, tr_img, "train-images", ti, sizeof ti) != 0)
        return kiln_fail(err, KILN_ENOTFOUND,
                         "%s: no train-images-idx3-ubyte[.gz] in this directory (expected the "
                         "MNIST layout: train-images, train-labels, t10k-images, t10k-labels)",
                         o->uri);
    int have_tl = source_find_member(o->uri, tr_lab, "train-labels", tl, sizeof tl) == 0;
    int have_ei = source_find_member(o->uri, te_img, "t10k-images", ei, sizeof ei) == 0;
    int have_el = have_ei && source_find_member(o->uri, te_lab, "t10k-labels", el, sizeof el) == 0;
    if (have_ei && have_tl != have_el)
        return kiln_fail(err, KILN_EINVAL, "%s: %s is present but %s is missing", o->uri,
                         have_tl ? "train-labels" : "t10k-labels",
                         have_tl ? "t10k-labels" : "train-labels");
    int rc = read_idx_file(raw, ti, &raw->train, 0, err);
    if (!rc && have_tl)
        rc = read_idx_labels(tl, &raw->train, ti, err);
    if (!rc && have_ei) {
        raw->has_test = 1;
        rc = read_idx_file(raw, ei, &raw->test, 1, err);
        if (!rc && have_el)
            rc = read_idx_labels(el, &raw->test, ei, err);
    }
    if (!rc)
        rc = idx_finish(raw, o, err);
    return rc;
}

static int load_idx_single(const data_opts *o, data_raw *raw, source_buf *buf, kiln_error *err)
{
    int rc = load_idx_part(raw, raw->name, buf, &raw->train, 0, err);
    char lab[4096];
    if (!rc && sibling_labels(o->uri, lab, sizeof lab) == 0)
        rc = read_idx_labels(lab, &raw->train, o->uri, err);
    if (!rc)
        rc = idx_finish(raw, o, err);
    return rc;
}

/* ------------------------------------------------------------ loading */

static int looks_like_idx(const uint8_t *p, size_t len)
{
    return len >= 4 && p[0] == 0 && p[1] == 0 && idx_type_name(p[2]) && p[3] >= 1;
}

/* An HTML page (a directory listing, a login or error page) where data
 * was expected. */
static int looks_like_html(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len && isspace(p[i]))
        i++;
    return (len - i >= 9 && !strncasecmp((const char *)p + i, "<!doctype", 9)) ||
           (len - i >= 5 && !strncasecmp((const char *)p + i, "<html", 5));
}

/* "csv", "idx", or NULL when the name does not tell. */
static const char *format_from_name(const char *uri)
{
    char base[256];
    source_basename(uri, base, sizeof base);
    if (ends_with(base, ".csv") || ends_with(base, ".csv.gz") || ends_with(base, ".txt") ||
        ends_with(base, ".txt.gz"))
        return "csv";
    for (char *s = base; *s; s++)
        *s = (char)tolower((unsigned char)*s);
    if (strstr(base, "idx") || strstr(base, "ubyte"))
        return "idx";
    return NULL;
}

static int check_format(const char *f, kiln_error *err)
{
    if (f && *f && strcmp(f, "csv") && strcmp(f, "idx"))
        return kiln_fail(err, KILN_EINVAL, "data.format: '%s' is not idx or csv", f);
    return 0;
}

static data_raw *raw_new(const char *name)
{
    data_raw *raw = calloc(1, sizeof *raw);
    if (raw) {
        snprintf(raw->name, sizeof raw->name, "%s", name);
        raw->label_pos = -1;
    }
    return raw;
}

int data_load(const data_opts *o, data_raw **out, kiln_error *err)
{
    *out = NULL;
    if (!o->uri || !*o->uri)
        return kiln_fail(err, KILN_EINVAL, "data.uri is empty");
    int rc = check_format(o->format, err);
    if (rc)
        return rc;
    char name[256];
    source_basename(o->uri, name, sizeof name);
    data_raw *raw = raw_new(name);
    if (!raw)
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    const char *fmt = o->format && *o->format ? o->format : NULL;
    if (source_is_dir(o->uri)) {
        if (fmt && !strcmp(fmt, "csv")) {
            rc =
                kiln_fail(err, KILN_EINVAL, "%s: format csv needs a file, not a directory", o->uri);
        } else {
            raw->kind = RAW_IMAGE;
            rc = load_idx_dir(o, raw, err);
        }
    } else {
        if (!fmt)
            fmt = format_from_name(o->uri);
        source_buf b = {0};
        rc = source_read(o->uri, SOURCE_MAX_BYTES, &b, err);
        if (!rc && !fmt)
            fmt = looks_like_idx(b.data, b.len) ? "idx" : "csv";
        if (!rc && looks_like_html(b.data, b.len))
            rc = kiln_fail(err, KILN_EINVAL,
                           "%s: this is an HTML page, not CSV or IDX data (an MNIST directory "
                           "over HTTP needs a URL ending in '/')",
                           name);
        if (!rc && !strcmp(fmt, "csv")) {
            raw->kind = RAW_TABLE;
            rc = load_csv(o, (const char *)b.data, b.len, raw, err);
        } else if (!rc) {
            rc = load_idx_single(o, raw, &b, err);
        }
        source_buf_release(&b);
    }
    if (rc) {
        data_raw_free(raw);
        return rc;
    }
    *out = raw;
    return 0;
}

/* Copies (or inflates) a caller's buffer into an owned one. */
static int own_bytes(const char *name, const void *p, size_t len, size_t max, source_buf *b,
                     kiln_error *err)
{
    if (source_is_gzip(p, len))
        return source_gunzip(p, len, max, name, b, err);
    if (len > max)
        return kiln_fail(err, KILN_EINVAL, "%s: %zu bytes is more than the %zu-byte limit", name,
                         len, max);
    b->data = malloc(len + 1);
    if (!b->data)
        return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", name);
    if (len)
        memcpy(b->data, p, len);
    b->data[len] = 0;
    b->len = len;
    return 0;
}

int data_load_buffers(const data_opts *o, const char *name, const void *buf, size_t len,
                      const char *labels_name, const void *labels, size_t labels_len, size_t max,
                      data_raw **out, kiln_error *err)
{
    *out = NULL;
    int rc = check_format(o->format, err);
    if (rc)
        return rc;
    data_raw *raw = raw_new(name);
    if (!raw)
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    source_buf b = {0}, lb = {0};
    rc = own_bytes(name, buf, len, max, &b, err);
    const char *fmt = o->format && *o->format ? o->format : NULL;
    if (!rc && !fmt)
        fmt = looks_like_idx(b.data, b.len) ? "idx" : "csv";
    if (!rc && !strcmp(fmt, "csv")) {
        raw->kind = RAW_TABLE;
        rc = load_csv(o, (const char *)b.data, b.len, raw, err);
    } else if (!rc) {
        rc = load_idx_part(raw, name, &b, &raw->train, 0, err);
        if (!rc && labels) {
            const char *ln = labels_name ? labels_name : "labels";
            rc = own_bytes(ln, labels, labels_len, max, &lb, err);
            if (!rc)
                rc = load_idx_labels(ln, &lb, &raw->train, name, err);
        }
        if (!rc)
            rc = idx_finish(raw, o, err);
    }
    source_buf_release(&b);
    source_buf_release(&lb);
    if (rc) {
        data_raw_free(raw);
        return rc;
    }
    *out = raw;
    return 0;
}

/* ------------------------------------------------------------ splits */

void data_split_release(data_split *s)
{
    if (!s)
        return;
    dataset *ds[2] = {&s->train, &s->val};
    for (int i = 0; i < 2; i++) {
        free(ds[i]->x);
        free(ds[i]->y);
        free(ds[i]->rows);
    }
    preproc_free(s->pp);
    free_strings(s->class_names, s->n_classes);
    memset(s, 0, sizeof *s);
}

void dataset_gather(const dataset *ds, const int32_t *idx, int n, float *out)
{
    size_t d = (size_t)ds->d;
    if (ds->x) {
        for (int i = 0; i < n; i++) {
            int r = idx ? idx[i] : i;
            memcpy(out + (size_t)i * d, ds->x + (size_t)r * d, d * sizeof(float));
        }
        return;
    }
    float lut[256];
    for (int v = 0; v < 256; v++)
        lut[v] = preproc_affine((float)v, ds->scale, ds->shift);
    for (int i = 0; i < n; i++) {
        int r = idx ? idx[i] : i;
        int src = ds->rows ? ds->rows[r] : r;
        const uint8_t *p = ds->xu8 + (size_t)src * d;
        float *o = out + (size_t)i * d;
        for (size_t j = 0; j < d; j++)
            o[j] = lut[p[j]];
    }
}

/* Rows of the training part usable by this split (impute=drop drops rows
 * with a missing used cell; data_load already did when given the same
 * option). */
static int eligible_rows(const data_raw *raw, const data_opts *o, int32_t **out, int *n,
                         kiln_error *err)
{
    int total = raw->train.n;
    int32_t *r = malloc((size_t)(total > 0 ? total : 1) * sizeof *r);
    if (!r)
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    int drop = raw->kind == RAW_TABLE && o->impute && !strcmp(o->impute, "drop");
    int k = 0;
    for (int i = 0; i < total; i++) {
        int miss = 0;
        if (drop) {
            const float *row = raw->train.xf + (size_t)i * (size_t)raw->d;
            for (int j = 0; j < raw->d && !miss; j++)
                miss = !raw->dropped[j] && isnan(row[j]);
        }
        if (!miss)
            r[k++] = i;
    }
    *out = r;
    *n = k;
    return 0;
}

/* Groups rows by class (class order, rows ascending inside) and shuffles
 * each group with rng: the common first step of both split kinds. starts
 * gets n_groups + 1 offsets into the reordered rows. */
static int group_and_shuffle(const data_raw *raw, const int32_t *rows, int n, rng *g,
                             int32_t *grouped, int *starts, int n_groups)
{
    if (n_groups == 1) {
        memcpy(grouped, rows, (size_t)n * sizeof *rows);
        starts[0] = 0;
        starts[1] = n;
    } else {
        memset(starts, 0, (size_t)(n_groups + 1) * sizeof *starts);
        for (int i = 0; i < n; i++)
            starts[raw->train.y[rows[i]] + 1]++;
        for (int c = 0; c < n_groups; c++)
            starts[c + 1] += starts[c];
        int *fill = malloc((size_t)n_groups * sizeof *fill);
        if (!fill)
            return KILN_ENOMEM;
        memcpy(fill, starts, (size_t)n_groups * sizeof *fill);
        for (int i = 0; i < n; i++)
            grouped[fill[raw->train.y[rows[i]]]++] = rows[i];
        free(fill);
    }
    for (int c = 0; c < n_groups; c++)
        rng_shuffle(g, grouped + starts[c], starts[c + 1] - starts[c]);
    return 0;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Splits rows into tr/va (both ascending): hold-out (fold < 0) or fold. */
static int assign_rows(const data_raw *raw, const data_opts *o, int fold, const int32_t *rows,
                       int n, int32_t *tr, int *ntr, int32_t *va, int *nva, kiln_error *err)
{
    int groups = raw->train.y && raw->n_classes > 0 ? raw->n_classes : 1;
    int32_t *grouped = malloc((size_t)n * sizeof *grouped);
    int *starts = malloc((size_t)(groups + 1) * sizeof *starts);
    int *quota = calloc((size_t)groups, sizeof *quota);
    double *frac = calloc((size_t)groups, sizeof *frac);
    uint8_t *is_val = calloc((size_t)raw->train.n + 1, 1);
    int rc = 0;
    rng g;
    rng_seed(&g, o->seed);
    if (!grouped || !starts || !quota || !frac || !is_val ||
        group_and_shuffle(raw, rows, n, &g, grouped, starts, groups) != 0) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory making the split");
        goto done;
    }
    if (fold >= 0) {
        /* Round-robin over the class-ordered shuffled rows: every fold gets
         * each class in proportion and the sizes differ by at most one. */
        for (int j = 0; j < n; j++)
            if (j % o->folds == fold)
                is_val[grouped[j]] = 1;
    } else {
        double vs = o->validation_split;
        int total = (int)floor(vs * n + 0.5);
        if (total >= n)
            total = n - 1;
        /* Largest-remainder allocation of the hold-out over the classes. */
        int given = 0;
        for (int c = 0; c < groups; c++) {
            double want = vs * (starts[c + 1] - starts[c]);
            quota[c] = (int)floor(want);
            frac[c] = want - quota[c];
            given += quota[c];
        }
        while (given < total) {
            int best = -1;
            for (int c = 0; c < groups; c++)
                if (quota[c] < starts[c + 1] - starts[c] && (best < 0 || frac[c] > frac[best]))
                    best = c;
            if (best < 0)
                break;
            quota[best]++;
            frac[best] = -1;
            given++;
        }
        while (given > total) {
            for (int c = groups - 1; c >= 0 && given > total; c--)
                if (quota[c] > 0) {
                    quota[c]--;
                    given--;
                }
        }
        for (int c = 0; c < groups; c++)
            for (int k = 0; k < quota[c]; k++)
                is_val[grouped[starts[c] + k]] = 1;
    }
    *ntr = *nva = 0;
    for (int i = 0; i < n; i++) {
        if (is_val[rows[i]])
            va[(*nva)++] = rows[i];
        else
            tr[(*ntr)++] = rows[i];
    }
    qsort(tr, (size_t)*ntr, sizeof *tr, cmp_i32);
    qsort(va, (size_t)*nva, sizeof *va, cmp_i32);
done:
    free(grouped);
    free(starts);
    free(quota);
    free(frac);
    free(is_val);
    return rc;
}

/* Fills ds with rows[0..n) (NULL: all of p) of part p, preprocessed. */
static int fill_dataset(const data_raw *raw, const part *p, const int32_t *rows, int n,
                        const preproc *pp, dataset *ds, kiln_error *err)
{
    ds->n = n;
    ds->d = preproc_n_features(pp);
    ds->scale = 1;
    ds->shift = 0;
    if (p->y) {
        ds->y = malloc((size_t)(n > 0 ? n : 1) * sizeof *ds->y);
        if (!ds->y)
            return kiln_fail(err, KILN_ENOMEM, "out of memory");
        for (int i = 0; i < n; i++)
            ds->y[i] = p->y[rows ? rows[i] : i];
    }
    if (n == 0)
        return 0;
    if (raw->kind == RAW_IMAGE) {
        float a, b;
        preproc_image_affine(pp, &a, &b);
        if (p->xu8) {
            ds->xu8 = p->xu8;
            ds->scale = a;
            ds->shift = b;
            if (rows) {
                ds->rows = malloc((size_t)n * sizeof *ds->rows);
                if (!ds->rows)
                    return kiln_fail(err, KILN_ENOMEM, "out of memory");
                memcpy(ds->rows, rows, (size_t)n * sizeof *rows);
            }
            return 0;
        }
        size_t d = (size_t)raw->d;
        ds->x = malloc((size_t)n * d * sizeof(float));
        if (!ds->x)
            return kiln_fail(err, KILN_ENOMEM, "out of memory for %d images", n);
        for (int i = 0; i < n; i++) {
            const float *src = p->xf + (size_t)(rows ? rows[i] : i) * d;
            for (size_t j = 0; j < d; j++)
                ds->x[(size_t)i * d + j] = preproc_affine(src[j], a, b);
        }
        return 0;
    }
    ds->x = malloc((size_t)n * (size_t)ds->d * sizeof(float));
    if (!ds->x)
        return kiln_fail(err, KILN_ENOMEM, "out of memory for %d rows x %d features", n, ds->d);
    return preproc_apply_coded(pp, p->xf, rows, n, ds->x, err);
}

int data_split_make(const data_raw *raw, const data_opts *o, int fold, data_split *out,
                    kiln_error *err)
{
    memset(out, 0, sizeof *out);
    if (fold >= 0 && (o->folds < 2 || fold >= o->folds))
        return kiln_fail(err, KILN_EINVAL, "fold %d is out of range for folds=%d", fold, o->folds);
    if (fold < 0 && !raw->has_test && !(o->validation_split >= 0 && o->validation_split < 1))
        return kiln_fail(err, KILN_EINVAL, "validationSplit %g is not in [0, 1)",
                         o->validation_split);
    int32_t *rows = NULL, *tr = NULL, *va = NULL;
    int n = 0, ntr = 0, nva = 0;
    int rc = eligible_rows(raw, o, &rows, &n, err);
    if (rc)
        return rc;
    if (n < 1) {
        rc = kiln_fail(err, KILN_EINVAL, "%s: no rows left after dropping rows with missing cells",
                       raw->name);
        goto fail;
    }
    int use_test = fold < 0 && raw->has_test;
    if (fold >= 0 && n < o->folds) {
        rc =
            kiln_fail(err, KILN_EINVAL, "%s: %d rows cannot make %d folds", raw->name, n, o->folds);
        goto fail;
    }
    if (!use_test) {
        tr = malloc((size_t)n * sizeof *tr);
        va = malloc((size_t)n * sizeof *va);
        if (!tr || !va) {
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
            goto fail;
        }
        rc = assign_rows(raw, o, fold, rows, n, tr, &ntr, va, &nva, err);
        if (rc)
            goto fail;
    } else {
        tr = rows;
        ntr = n;
        rows = NULL;
    }
    if (ntr < 1) {
        rc = kiln_fail(err, KILN_EINVAL, "%s: no training rows left after the split", raw->name);
        goto fail;
    }
    /* Identity row lists need no copy. */
    int tr_identity = ntr == raw->train.n && tr[ntr - 1] == ntr - 1;
    if (raw->kind == RAW_IMAGE) {
        rc = preproc_fit_image(raw->h, raw->w, raw->c, raw->train.xu8, raw->train.xf, tr, ntr,
                               o->scale ? o->scale : "standard", &out->pp, err);
    } else {
        preproc_table_spec spec = {
            .n_inputs = raw->d,
            .names = (const char *const *)raw->names,
            .categorical = raw->categorical,
            .dropped = raw->dropped,
            .n_cats = raw->n_cats,
            .cats = (const char *const *const *)raw->cats,
            .label_pos = raw->label_pos,
            .source = raw->name,
        };
        rc = preproc_fit_table(&spec, raw->train.xf, tr, ntr, o->impute ? o->impute : "mean",
                               o->scale ? o->scale : "standard", o->variance_threshold, &out->pp,
                               err);
    }
    if (rc)
        goto fail;
    rc = fill_dataset(raw, &raw->train, tr_identity ? NULL : tr, ntr, out->pp, &out->train, err);
    if (!rc && use_test)
        rc = fill_dataset(raw, &raw->test, NULL, raw->test.n, out->pp, &out->val, err);
    else if (!rc)
        rc = fill_dataset(raw, &raw->train, va, nva, out->pp, &out->val, err);
    if (rc)
        goto fail;
    if (raw->n_classes > 0) {
        out->class_names = calloc((size_t)raw->n_classes, sizeof *out->class_names);
        if (!out->class_names) {
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
            goto fail;
        }
        for (int i = 0; i < raw->n_classes; i++) {
            out->class_names[i] = strdup(raw->class_names[i]);
            if (!out->class_names[i]) {
                rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
                goto fail;
            }
            out->n_classes = i + 1;
        }
    }
    out->is_image = raw->kind == RAW_IMAGE;
    if (out->is_image) {
        out->h = raw->h;
        out->w = raw->w;
        out->c = raw->c;
    }
    out->has_test_set = use_test;
    free(rows);
    free(tr);
    free(va);
    return 0;
fail:
    free(rows);
    free(tr);
    free(va);
    data_split_release(out);
    return rc;
}
