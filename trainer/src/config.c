/* config: parses and validates the trial configuration (see config.h).
 *
 * The fields are one table: JSON path, flag name, type, range or enum, and
 * where the value goes. Parsing JSON, parsing flags, and printing the
 * config back all walk that table, so they cannot drift apart. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum ftype { F_STR, F_INT, F_DBL, F_U64, F_INTLIST, F_STRLIST, F_LABEL };

typedef struct field {
    const char *section;   /* "data", "model", "training", "objective" */
    const char *sub;       /* nested object inside the section, or NULL */
    const char *key;       /* JSON key */
    const char *flag;      /* command-line flag */
    enum ftype type;
    size_t off;            /* offset of the value in train_config */
    size_t count_off;      /* lists: offset of the element count */
    double min, max;       /* numbers and list elements: inclusive range */
    const char *enums;     /* strings: allowed values separated by '|', or NULL */
} field;

#define OFF(f) offsetof(train_config, f)
#define NOCOUNT 0

static const field fields[] = {
    {"data", NULL, "uri", "data", F_STR, OFF(uri), NOCOUNT, 0, 0, NULL},
    {"data", NULL, "format", "format", F_STR, OFF(format), NOCOUNT, 0, 0, "idx|csv"},
    {"data", NULL, "label", "label", F_LABEL, OFF(label), NOCOUNT, 0, 0, NULL},
    {"data", NULL, "validationSplit", "validation-split", F_DBL, OFF(validation_split), NOCOUNT,
     0.0, 0.9, NULL},
    {"data", NULL, "folds", "folds", F_INT, OFF(folds), NOCOUNT, 0, 100, NULL},
    {"data", NULL, "maxSamples", "max-samples", F_INT, OFF(max_samples), NOCOUNT, 0, 2e9, NULL},
    {"data", "preprocessing", "impute", "impute", F_STR, OFF(impute), NOCOUNT, 0, 0,
     "mean|median|drop"},
    {"data", "preprocessing", "scale", "scale", F_STR, OFF(scale), NOCOUNT, 0, 0,
     "standard|minmax|none"},
    {"data", "preprocessing", "dropColumns", "drop-columns", F_STRLIST, OFF(drop_columns),
     OFF(n_drop_columns), 0, CONFIG_MAX_LIST, NULL},
    {"data", "preprocessing", "varianceThreshold", "variance-threshold", F_DBL,
     OFF(variance_threshold), NOCOUNT, 0, 1e30, NULL},
    {"model", NULL, "family", "family", F_STR, OFF(family), NOCOUNT, 0, 0,
     "auto|mlp|cnn|kmeans|logistic"},
    {"model", "mlp", "hiddenLayers", "hidden", F_INTLIST, OFF(hidden), OFF(n_hidden), 1, 65536,
     NULL},
    {"model", "mlp", "activation", "activation", F_STR, OFF(activation), NOCOUNT, 0, 0,
     "relu|tanh|sigmoid"},
    {"model", "mlp", "dropout", "dropout", F_DBL, OFF(dropout), NOCOUNT, 0, 0.95, NULL},
    {"model", "cnn", "convFilters", "conv", F_INTLIST, OFF(conv), OFF(n_conv), 1, 1024, NULL},
    {"model", "cnn", "denseLayers", "dense", F_INTLIST, OFF(dense), OFF(n_dense), 1, 65536, NULL},
    {"model", "kmeans", "clusters", "clusters", F_INT, OFF(clusters), NOCOUNT, 0, 1000, NULL},
    {"model", "kmeans", "maxClusters", "max-clusters", F_INT, OFF(max_clusters), NOCOUNT, 1, 1000,
     NULL},
    {"training", NULL, "epochs", "epochs", F_INT, OFF(epochs), NOCOUNT, 1, 100000, NULL},
    {"training", NULL, "batchSize", "batch-size", F_INT, OFF(batch_size), NOCOUNT, 1, 65536, NULL},
    {"training", NULL, "learningRate", "learning-rate", F_DBL, OFF(learning_rate), NOCOUNT, 1e-12,
     100, NULL},
    {"training", NULL, "optimizer", "optimizer", F_STR, OFF(optimizer), NOCOUNT, 0, 0, "adam|sgd"},
    {"training", NULL, "momentum", "momentum", F_DBL, OFF(momentum), NOCOUNT, 0, 0.9999, NULL},
    {"training", NULL, "seed", "seed", F_U64, OFF(seed), NOCOUNT, 0, 9007199254740991.0, NULL},
    {"training", NULL, "patience", "patience", F_INT, OFF(patience), NOCOUNT, 0, 100000, NULL},
    {"training", NULL, "threads", "threads", F_INT, OFF(threads), NOCOUNT, 0, 256, NULL},
    {"objective", NULL, "metric", "metric", F_STR, OFF(metric), NOCOUNT, 0, 0,
     "accuracy|f1|auc|loss|wcss|silhouette"},
    {"objective", NULL, "goal", "goal", F_DBL, OFF(goal), NOCOUNT, -1e300, 1e300, NULL},
};
#define NFIELDS (sizeof fields / sizeof fields[0])

static const char *sections[] = {"data", "model", "training", "objective"};
/* Spec keys that belong to the controller, not the trainer: accepted and ignored. */
static const char *ignored_sections[] = {"tuning", "trainer", "storage", "serving", "notify"};

/* ------------------------------------------------------------ init/free */

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

void config_init(train_config *c)
{
    memset(c, 0, sizeof *c);
    c->validation_split = 0.2;
    c->impute = xstrdup("mean");
    c->scale = xstrdup("standard");
    c->family = xstrdup("auto");
    c->n_hidden = 1;
    c->hidden[0] = 64;
    c->activation = xstrdup("relu");
    c->n_conv = 1;
    c->conv[0] = 8;
    c->n_dense = 1;
    c->dense[0] = 64;
    c->max_clusters = 12;
    c->epochs = 3;
    c->batch_size = 64;
    c->learning_rate = 0.001;
    c->optimizer = xstrdup("adam");
    c->momentum = 0.9;
    c->seed = 1;
    c->metric = xstrdup("accuracy");
    c->goal = 0.8;
}

void config_release(train_config *c)
{
    free(c->uri);
    free(c->format);
    free(c->label);
    free(c->impute);
    free(c->scale);
    for (int i = 0; i < c->n_drop_columns; i++)
        free(c->drop_columns[i]);
    free(c->family);
    free(c->activation);
    free(c->optimizer);
    free(c->metric);
    memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------ setters */

static void path_of(const field *f, char *buf, size_t n)
{
    if (f->sub)
        snprintf(buf, n, "%s.%s.%s", f->section, f->sub, f->key);
    else
        snprintf(buf, n, "%s.%s", f->section, f->key);
}

static int in_enum(const char *enums, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = enums; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, v, n))
            return 1;
        if (!bar)
            break;
        p = bar + 1;
    }
    return 0;
}

static int set_str(train_config *c, const field *f, const char *v, kiln_error *err)
{
    char path[96];
    path_of(f, path, sizeof path);
    if (f->enums && !in_enum(f->enums, v))
        return kiln_fail(err, KILN_EINVAL, "%s: unknown value '%s' (expected one of %s)", path, v,
                         f->enums);
    char **slot = (char **)((char *)c + f->off);
    char *dup = strdup(v);
    if (!dup)
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    free(*slot);
    *slot = dup;
    if (f->off == OFF(metric))
        c->metric_given = 1;
    return 0;
}

static int check_range(const field *f, double v, kiln_error *err)
{
    char path[96];
    path_of(f, path, sizeof path);
    if (!isfinite(v) || v < f->min || v > f->max)
        return kiln_fail(err, KILN_EINVAL, "%s: %g is out of range [%g, %g]", path, v, f->min,
                         f->max);
    if ((f->type == F_INT || f->type == F_U64 || f->type == F_INTLIST) && v != floor(v))
        return kiln_fail(err, KILN_EINVAL, "%s: %g is not a whole number", path, v);
    return 0;
}

static int set_number(train_config *c, const field *f, double v, kiln_error *err)
{
    int rc = check_range(f, v, err);
    if (rc)
        return rc;
    char *base = (char *)c + f->off;
    if (f->type == F_INT)
        *(int *)base = (int)v;
    else if (f->type == F_U64)
        *(uint64_t *)base = (uint64_t)v;
    else
        *(double *)base = v;
    return 0;
}

static int parse_double(const field *f, const char *s, double *out, kiln_error *err)
{
    char path[96];
    path_of(f, path, sizeof path);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno)
        return kiln_fail(err, KILN_EINVAL, "%s: '%s' is not a number", path, s);
    *out = v;
    return 0;
}

/* ------------------------------------------------------------ JSON */

static int apply_field_json(train_config *c, const field *f, const cJSON *v, kiln_error *err)
{
    char path[96];
    path_of(f, path, sizeof path);
    switch (f->type) {
    case F_STR:
        if (cJSON_IsNull(v))
            return 0;
        if (!cJSON_IsString(v))
            return kiln_fail(err, KILN_EINVAL, "%s: expected a string", path);
        return set_str(c, f, v->valuestring, err);
    case F_LABEL: {
        char buf[32];
        if (cJSON_IsNull(v))
            return 0;
        if (cJSON_IsNumber(v)) {
            if (v->valuedouble < 0 || v->valuedouble != floor(v->valuedouble) || v->valuedouble > 1e6)
                return kiln_fail(err, KILN_EINVAL, "%s: column index %g is not a whole number >= 0",
                                 path, v->valuedouble);
            snprintf(buf, sizeof buf, "%d", (int)v->valuedouble);
            return set_str(c, f, buf, err);
        }
        if (!cJSON_IsString(v))
            return kiln_fail(err, KILN_EINVAL, "%s: expected a column name or index", path);
        return set_str(c, f, v->valuestring, err);
    }
    case F_INT:
    case F_DBL:
    case F_U64:
        if (!cJSON_IsNumber(v))
            return kiln_fail(err, KILN_EINVAL, "%s: expected a number", path);
        return set_number(c, f, v->valuedouble, err);
    case F_INTLIST:
    case F_STRLIST: {
        if (!cJSON_IsArray(v))
            return kiln_fail(err, KILN_EINVAL, "%s: expected a list", path);
        int n = cJSON_GetArraySize(v);
        int cap = f->type == F_INTLIST ? NN_MAX_LAYERS : CONFIG_MAX_LIST;
        if (n > cap)
            return kiln_fail(err, KILN_EINVAL, "%s: %d entries, at most %d", path, n, cap);
        if (f->type == F_INTLIST && f->off != OFF(dense) && n == 0 && f->off != OFF(hidden))
            return kiln_fail(err, KILN_EINVAL, "%s: needs at least one entry", path);
        int *count = (int *)((char *)c + f->count_off);
        if (f->type == F_STRLIST) {
            char **slots = (char **)((char *)c + f->off);
            for (int i = 0; i < *count; i++)
                free(slots[i]);
            *count = 0;
        }
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, v)
        {
            if (f->type == F_INTLIST) {
                if (!cJSON_IsNumber(e))
                    return kiln_fail(err, KILN_EINVAL, "%s[%d]: expected a number", path, i);
                int rc = check_range(f, e->valuedouble, err);
                if (rc)
                    return kiln_error_prefix(err, "%s[%d]: ", path, i);
                ((int *)((char *)c + f->off))[i] = (int)e->valuedouble;
            } else {
                if (!cJSON_IsString(e))
                    return kiln_fail(err, KILN_EINVAL, "%s[%d]: expected a string", path, i);
                char **slots = (char **)((char *)c + f->off);
                slots[i] = strdup(e->valuestring);
                if (!slots[i])
                    return kiln_fail(err, KILN_ENOMEM, "out of memory");
                *count = i + 1;
            }
            i++;
        }
        *count = n;
        return 0;
    }
    }
    return kiln_fail(err, KILN_EINTERNAL, "%s: bad field type", path);
}

/* Finds the field for section/sub/key. */
static const field *find_field(const char *section, const char *sub, const char *key)
{
    for (size_t i = 0; i < NFIELDS; i++) {
        const field *f = &fields[i];
        if (strcmp(f->section, section) || strcmp(f->key, key))
            continue;
        if ((f->sub == NULL) != (sub == NULL) || (sub && strcmp(f->sub, sub)))
            continue;
        return f;
    }
    return NULL;
}

static int is_sub(const char *section, const char *key)
{
    for (size_t i = 0; i < NFIELDS; i++)
        if (fields[i].sub && !strcmp(fields[i].section, section) && !strcmp(fields[i].sub, key))
            return 1;
    return 0;
}

static int apply_object(train_config *c, const char *section, const char *sub, const cJSON *obj,
                        kiln_error *err)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, obj)
    {
        if (!sub && is_sub(section, item->string)) {
            if (cJSON_IsNull(item))
                continue;
            if (!cJSON_IsObject(item))
                return kiln_fail(err, KILN_EINVAL, "%s.%s: expected an object", section,
                                 item->string);
            int rc = apply_object(c, section, item->string, item, err);
            if (rc)
                return rc;
            continue;
        }
        const field *f = find_field(section, sub, item->string);
        if (!f) {
            if (sub)
                return kiln_fail(err, KILN_EINVAL, "%s.%s.%s: unknown field", section, sub,
                                 item->string);
            return kiln_fail(err, KILN_EINVAL, "%s.%s: unknown field", section, item->string);
        }
        int rc = apply_field_json(c, f, item, err);
        if (rc)
            return rc;
    }
    return 0;
}

int config_apply_json(train_config *c, const cJSON *spec, kiln_error *err)
{
    if (!cJSON_IsObject(spec))
        return kiln_fail(err, KILN_EINVAL, "config: expected a JSON object");
    const cJSON *item;
    cJSON_ArrayForEach(item, spec)
    {
        int known = 0;
        for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
            if (!strcmp(item->string, sections[i]))
                known = 1;
        if (!known) {
            for (size_t i = 0; i < sizeof ignored_sections / sizeof ignored_sections[0]; i++)
                if (!strcmp(item->string, ignored_sections[i]))
                    known = 2;
            if (known == 2)
                continue;
            return kiln_fail(err, KILN_EINVAL,
                             "config: unknown key '%s' (expected data, model, training, objective)",
                             item->string);
        }
        if (cJSON_IsNull(item))
            continue;
        if (!cJSON_IsObject(item))
            return kiln_fail(err, KILN_EINVAL, "%s: expected an object", item->string);
        int rc = apply_object(c, item->string, NULL, item, err);
        if (rc)
            return rc;
    }
    return 0;
}

int config_apply_json_text(train_config *c, const char *text, const char *what, kiln_error *err)
{
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(text, &end, 1);
    if (!j) {
        size_t off = end ? (size_t)(end - text) : 0;
        return kiln_fail(err, KILN_EINVAL, "%s: malformed JSON at byte %zu", what, off);
    }
    int rc = config_apply_json(c, j, err);
    cJSON_Delete(j);
    if (rc)
        kiln_error_prefix(err, "%s: ", what);
    return rc;
}

/* ------------------------------------------------------------ flags */

int config_apply_flag(train_config *c, const char *name, const char *value, kiln_error *err)
{
    const field *f = NULL;
    for (size_t i = 0; i < NFIELDS && !f; i++)
        if (!strcmp(fields[i].flag, name))
            f = &fields[i];
    if (!f)
        return KILN_ENOTFOUND;
    if (!value)
        return kiln_fail(err, KILN_EINVAL, "--%s needs a value", name);
    double v;
    int rc;
    switch (f->type) {
    case F_STR:
    case F_LABEL:
        return set_str(c, f, value, err);
    case F_INT:
    case F_DBL:
    case F_U64:
        rc = parse_double(f, value, &v, err);
        return rc ? rc : set_number(c, f, v, err);
    case F_INTLIST:
    case F_STRLIST: {
        /* "128,64" -> a JSON list, parsed by the JSON path for the same checks. */
        cJSON *arr = cJSON_CreateArray();
        char *copy = strdup(value);
        if (!arr || !copy) {
            cJSON_Delete(arr);
            free(copy);
            return kiln_fail(err, KILN_ENOMEM, "out of memory");
        }
        rc = 0;
        char *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
            if (f->type == F_STRLIST) {
                cJSON_AddItemToArray(arr, cJSON_CreateString(tok));
            } else if ((rc = parse_double(f, tok, &v, err)) == 0) {
                cJSON_AddItemToArray(arr, cJSON_CreateNumber(v));
            }
        }
        if (!rc)
            rc = apply_field_json(c, f, arr, err);
        cJSON_Delete(arr);
        free(copy);
        return rc;
    }
    }
    return kiln_fail(err, KILN_EINTERNAL, "bad field type");
}

/* ------------------------------------------------------------ validate */

int config_validate(const train_config *c, kiln_error *err)
{
    if (!c->uri || !*c->uri)
        return kiln_fail(err, KILN_EINVAL, "data.uri: required (a path, file:// or http(s):// URL)");
    if (c->folds == 1)
        return kiln_fail(err, KILN_EINVAL, "data.folds: 1 is not a cross-validation; use 0 or >= 2");
    if (c->clusters > c->max_clusters && c->clusters != 0)
        return kiln_fail(err, KILN_EINVAL, "model.kmeans.clusters: %d exceeds maxClusters %d",
                         c->clusters, c->max_clusters);
    int acc_like = !strcmp(c->metric, "accuracy") || !strcmp(c->metric, "f1") ||
                   !strcmp(c->metric, "auc");
    if (acc_like && (c->goal < 0 || c->goal > 1))
        return kiln_fail(err, KILN_EINVAL, "objective.goal: %g must be within [0, 1] for %s",
                         c->goal, c->metric);
    if (!strcmp(c->metric, "silhouette") && (c->goal < -1 || c->goal > 1))
        return kiln_fail(err, KILN_EINVAL, "objective.goal: %g must be within [-1, 1] for silhouette",
                         c->goal);
    if ((!strcmp(c->metric, "loss") || !strcmp(c->metric, "wcss")) && c->goal < 0)
        return kiln_fail(err, KILN_EINVAL, "objective.goal: %g must be >= 0 for %s", c->goal,
                         c->metric);
    return 0;
}

/* ------------------------------------------------------------ output */

static cJSON *section_obj(cJSON *root, const field *f)
{
    cJSON *s = cJSON_GetObjectItemCaseSensitive(root, f->section);
    if (!s)
        s = cJSON_AddObjectToObject(root, f->section);
    if (f->sub && s) {
        cJSON *sub = cJSON_GetObjectItemCaseSensitive(s, f->sub);
        if (!sub)
            sub = cJSON_AddObjectToObject(s, f->sub);
        return sub;
    }
    return s;
}

cJSON *config_to_json(const train_config *c)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    for (size_t i = 0; i < NFIELDS; i++) {
        const field *f = &fields[i];
        cJSON *obj = section_obj(root, f);
        if (!obj)
            continue;
        const char *base = (const char *)c + f->off;
        switch (f->type) {
        case F_STR:
        case F_LABEL: {
            const char *s = *(char *const *)base;
            if (s)
                cJSON_AddStringToObject(obj, f->key, s);
            break;
        }
        case F_INT: cJSON_AddNumberToObject(obj, f->key, *(const int *)base); break;
        case F_U64: cJSON_AddNumberToObject(obj, f->key, (double)*(const uint64_t *)base); break;
        case F_DBL: cJSON_AddNumberToObject(obj, f->key, *(const double *)base); break;
        case F_INTLIST: {
            int n = *(const int *)((const char *)c + f->count_off);
            cJSON_AddItemToObject(obj, f->key, cJSON_CreateIntArray((const int *)base, n));
            break;
        }
        case F_STRLIST: {
            int n = *(const int *)((const char *)c + f->count_off);
            cJSON *arr = cJSON_AddArrayToObject(obj, f->key);
            for (int k = 0; arr && k < n; k++)
                cJSON_AddItemToArray(arr, cJSON_CreateString(((char *const *)base)[k]));
            break;
        }
        }
    }
    return root;
}
