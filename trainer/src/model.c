/* model: a trained model loaded for inference (see model.h). */
#include "model.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "kmeans.h"
#include "nn.h"
#include "preproc.h"

struct kiln_model {
    cJSON *header;       /* owned copy of the checkpoint header */
    char family[16];
    nn_model *nn;        /* mlp, cnn, logistic */
    float *centroids;    /* kmeans: (k, d) */
    int k;
    preproc *pp;
    int n_inputs, n_features, n_outputs;
    char **labels;       /* n_outputs strings */
    int is_image, h, w, c;
    char version[16];
};

void model_free(kiln_model *m)
{
    if (!m)
        return;
    cJSON_Delete(m->header);
    nn_free(m->nn);
    free(m->centroids);
    preproc_free(m->pp);
    if (m->labels)
        for (int i = 0; i < m->n_outputs; i++)
            free(m->labels[i]);
    free(m->labels);
    free(m);
}

static int load_labels(kiln_model *m, const cJSON *classes, const char *path, kiln_error *err)
{
    m->labels = calloc((size_t)m->n_outputs, sizeof *m->labels);
    if (!m->labels)
        return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", path);
    for (int i = 0; i < m->n_outputs; i++) {
        const cJSON *e = cJSON_IsArray(classes) ? cJSON_GetArrayItem(classes, i) : NULL;
        char buf[32];
        const char *s = cJSON_IsString(e) ? e->valuestring : NULL;
        if (!s) {
            snprintf(buf, sizeof buf, "%d", i);
            s = buf;
        }
        m->labels[i] = strdup(s);
        if (!m->labels[i])
            return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", path);
    }
    return 0;
}

int model_load(const char *path, kiln_model **out, kiln_error *err)
{
    *out = NULL;
    ckpt *ck = NULL;
    int rc = ckpt_read(path, &ck, err);
    if (rc)
        return rc;
    kiln_model *m = calloc(1, sizeof *m);
    if (!m) {
        ckpt_free(ck);
        return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", path);
    }
    m->header = cJSON_Duplicate(ckpt_header(ck), 1);
    snprintf(m->version, sizeof m->version, "%08x", ckpt_crc(ck));
    const cJSON *h = m->header;
    const cJSON *fam = cJSON_GetObjectItemCaseSensitive(h, "family");
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(h, "preprocessing");
    const cJSON *classes = cJSON_GetObjectItemCaseSensitive(h, "classes");
    if (!cJSON_IsString(fam) || strlen(fam->valuestring) >= sizeof m->family) {
        rc = kiln_fail(err, KILN_ECORRUPT, "%s: header has no model family", path);
        goto fail;
    }
    snprintf(m->family, sizeof m->family, "%s", fam->valuestring);
    if ((rc = preproc_from_json(pp, &m->pp, err)) != 0) {
        kiln_error_prefix(err, "%s: preprocessing: ", path);
        goto fail;
    }
    m->n_inputs = preproc_n_inputs(m->pp);
    m->n_features = preproc_n_features(m->pp);

    const cJSON *img = cJSON_GetObjectItemCaseSensitive(h, "image");
    if (cJSON_IsArray(img) && cJSON_GetArraySize(img) == 3) {
        m->is_image = 1;
        m->h = cJSON_GetArrayItem(img, 0)->valueint;
        m->w = cJSON_GetArrayItem(img, 1)->valueint;
        m->c = cJSON_GetArrayItem(img, 2)->valueint;
    }

    if (!strcmp(m->family, "kmeans")) {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(h, "k");
        size_t count;
        const float *cent = ckpt_section_data(ck, "centroids", &count);
        if (!cJSON_IsNumber(k) || k->valueint < 1 || !cent || m->n_features < 1 ||
            count != (size_t)k->valueint * (size_t)m->n_features) {
            rc = kiln_fail(err, KILN_ECORRUPT, "%s: centroids do not match k and the feature count",
                           path);
            goto fail;
        }
        m->k = k->valueint;
        m->n_outputs = m->k;
        m->centroids = malloc(count * sizeof(float));
        if (!m->centroids) {
            rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", path);
            goto fail;
        }
        memcpy(m->centroids, cent, count * sizeof(float));
    } else {
        nn_arch arch;
        if ((rc = nn_arch_from_json(cJSON_GetObjectItemCaseSensitive(h, "arch"), &arch, err)) != 0) {
            kiln_error_prefix(err, "%s: arch: ", path);
            rc = KILN_ECORRUPT;
            goto fail;
        }
        if (arch.in_h * arch.in_w * arch.in_c != m->n_features) {
            rc = kiln_fail(err, KILN_ECORRUPT,
                           "%s: the network takes %d inputs but preprocessing gives %d", path,
                           arch.in_h * arch.in_w * arch.in_c, m->n_features);
            goto fail;
        }
        if ((rc = nn_new(&arch, &m->nn, err)) != 0)
            goto fail;
        size_t count;
        const float *params = ckpt_section_data(ck, "params", &count);
        if (!params || count != nn_n_params(m->nn)) {
            rc = kiln_fail(err, KILN_ECORRUPT, "%s: %zu parameters stored, the network has %zu",
                           path, params ? count : 0, nn_n_params(m->nn));
            goto fail;
        }
        memcpy(nn_params(m->nn), params, count * sizeof(float));
        m->n_outputs = arch.n_classes;
    }
    if ((rc = load_labels(m, classes, path, err)) != 0)
        goto fail;
    ckpt_free(ck);
    *out = m;
    return 0;
fail:
    ckpt_free(ck);
    model_free(m);
    return rc ? rc : KILN_ECORRUPT;
}

const char *model_family(const kiln_model *m) { return m->family; }
int model_n_inputs(const kiln_model *m) { return m->n_inputs; }
int model_n_outputs(const kiln_model *m) { return m->n_outputs; }
const char *model_version(const kiln_model *m) { return m->version; }
const cJSON *model_header(const kiln_model *m) { return m->header; }

const char *model_output_label(const kiln_model *m, int i)
{
    return (i >= 0 && i < m->n_outputs) ? m->labels[i] : NULL;
}

int model_is_image(const kiln_model *m, int *h, int *w, int *c)
{
    if (h) *h = m->h;
    if (w) *w = m->w;
    if (c) *c = m->c;
    return m->is_image;
}

/* ======================================================================
 * inference
 *
 * Rows go through in passes of at most WS_ROWS, so the workspace a call
 * needs is bounded whatever the batch: the features of one pass, their
 * probabilities (when the caller wants none) and nn_infer's scratch.
 * ====================================================================== */

#define WS_ROWS 64
#define WS_PAD  16 /* floats between sub-buffers: 64-byte alignment */

static size_t pad(size_t n)
{
    return (n + WS_PAD - 1) / WS_PAD * WS_PAD;
}

size_t model_ws_floats(const kiln_model *m, int n)
{
    int rows = n < 1 ? 1 : n < WS_ROWS ? n : WS_ROWS;
    size_t f = WS_PAD + pad((size_t)rows * (size_t)m->n_features);
    if (m->nn)
        f += pad((size_t)rows * (size_t)m->n_outputs) + nn_infer_scratch(m->nn, rows);
    return f;
}

/* One pass: features (n <= WS_ROWS rows) -> classes and probabilities;
 * rest: the workspace after the features. */
static int predict_features(const kiln_model *m, const float *feat, int n, int32_t *classes,
                            float *probs, float *rest, size_t rest_n, kiln_error *err)
{
    if (m->centroids) {
        if (probs)
            return kiln_fail(err, KILN_EINVAL, "k-means models give clusters, not probabilities");
        kmeans_assign(m->centroids, m->k, m->n_features, feat, n, classes, NULL);
        return 0;
    }
    size_t np = pad((size_t)n * (size_t)m->n_outputs);
    float *p = probs ? probs : rest;
    int rc = nn_infer(m->nn, feat, n, p, rest + np, rest_n - np);
    if (rc == 0 && classes) {
        for (int i = 0; i < n; i++) {
            const float *row = p + (size_t)i * (size_t)m->n_outputs;
            int best = 0;
            for (int k = 1; k < m->n_outputs; k++)
                if (row[k] > row[best])
                    best = k;
            classes[i] = best;
        }
    }
    return rc ? kiln_fail(err, rc, "inference failed") : 0;
}

int model_predict_ws(const kiln_model *m, const float *raw, int n, int32_t *classes, float *probs,
                     float *ws, size_t ws_n, kiln_error *err)
{
    if (n <= 0)
        return kiln_fail(err, KILN_EINVAL, "no instances");
    if (!ws || ws_n < model_ws_floats(m, n))
        return kiln_fail(err, KILN_EINVAL, "inference workspace too small");
    float *feat = (float *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
    int rows = n < WS_ROWS ? n : WS_ROWS;
    size_t nf = pad((size_t)rows * (size_t)m->n_features);
    float *rest = feat + nf;
    size_t rest_n = ws_n - (size_t)(rest - ws);
    for (int r = 0; r < n; r += rows) {
        int k = n - r < rows ? n - r : rows;
        int rc = preproc_apply(m->pp, raw + (size_t)r * (size_t)m->n_inputs, k, feat, err);
        if (rc == 0)
            rc = predict_features(m, feat, k, classes ? classes + r : NULL,
                                  probs ? probs + (size_t)r * (size_t)m->n_outputs : NULL, rest,
                                  rest_n, err);
        if (rc)
            return rc;
    }
    return 0;
}

int model_predict(const kiln_model *m, const float *raw, int n, int32_t *classes, float *probs,
                  kiln_error *err)
{
    if (n <= 0)
        return kiln_fail(err, KILN_EINVAL, "no instances");
    size_t need = model_ws_floats(m, n);
    float *ws = malloc(need * sizeof(float));
    if (!ws)
        return kiln_fail(err, KILN_ENOMEM, "out of memory for %d instances", n);
    int rc = model_predict_ws(m, raw, n, classes, probs, ws, need, err);
    free(ws);
    return rc;
}

int model_predict_cells(const kiln_model *m, const char *const *cells, int ncells, int32_t *cls,
                        float *probs, kiln_error *err)
{
    float stackbuf[4096];
    size_t need = model_ws_floats(m, 1);
    float *ws =
        need <= sizeof stackbuf / sizeof stackbuf[0] ? stackbuf : malloc(need * sizeof(float));
    if (!ws)
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    float *feat = (float *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
    float *rest = feat + pad((size_t)m->n_features);
    int rc = preproc_apply_cells(m->pp, cells, ncells, feat, err);
    if (rc == 0)
        rc = predict_features(m, feat, 1, cls, probs, rest, need - (size_t)(rest - ws), err);
    if (ws != stackbuf)
        free(ws);
    return rc;
}
