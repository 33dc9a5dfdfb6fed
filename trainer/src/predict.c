/* predict: batch predictions from a file (see predict.h). */
#include "predict.h"

#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "idx.h"
#include "model.h"
#include "source.h"

#define BATCH 256

static void emit(FILE *out, const kiln_model *m, int32_t cls, const float *probs)
{
    fputs("{\"prediction\":", out);
    const char *label = model_output_label(m, cls);
    /* Labels come from the training data: escape them as JSON strings. */
    fputc('"', out);
    for (const char *p = label ? label : ""; *p; p++) {
        if (*p == '"' || *p == '\\')
            fputc('\\', out);
        if ((unsigned char)*p < 0x20)
            fprintf(out, "\\u%04x", (unsigned char)*p);
        else
            fputc(*p, out);
    }
    fprintf(out, "\",\"class\":%d", (int)cls);
    if (probs) {
        fputs(",\"probabilities\":[", out);
        for (int k = 0; k < model_n_outputs(m); k++)
            fprintf(out, "%s%.6g", k ? "," : "", (double)probs[k]);
        fputc(']', out);
    }
    fputs("}\n", out);
}

static int predict_idx(const kiln_model *m, const idx_view *v, const char *name, int with_probs,
                       FILE *out, kiln_error *err)
{
    int nin = model_n_inputs(m), nout = model_n_outputs(m);
    if (v->item_elems != (size_t)nin)
        return kiln_fail(err, KILN_EINVAL, "%s: %zu values per item, the model takes %d", name,
                         v->item_elems, nin);
    float *x = malloc((size_t)BATCH * (size_t)nin * sizeof(float));
    float *probs = with_probs ? malloc((size_t)BATCH * (size_t)nout * sizeof(float)) : NULL;
    int32_t cls[BATCH];
    int rc = 0;
    if (!x || (with_probs && !probs))
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < v->n_items; i += BATCH) {
        int b = v->n_items - i < BATCH ? (int)(v->n_items - i) : BATCH;
        for (size_t k = 0; k < (size_t)b * (size_t)nin; k++)
            x[k] = (float)idx_get(v, i * (size_t)nin + k);
        rc = model_predict(m, x, b, cls, probs, err);
        for (int k = 0; !rc && k < b; k++)
            emit(out, m, cls[k], probs ? probs + (size_t)k * (size_t)nout : NULL);
    }
    free(x);
    free(probs);
    return rc;
}

static int predict_csv(const kiln_model *m, const csv_table *t, const char *name, int with_probs,
                       FILE *out, kiln_error *err)
{
    int nout = model_n_outputs(m);
    float *probs = with_probs ? malloc((size_t)nout * sizeof(float)) : NULL;
    const char **cells = malloc((size_t)t->n_cols * sizeof(char *));
    int rc = 0;
    if (!cells || (with_probs && !probs))
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
    int first = csv_detect_header(t) ? 1 : 0;
    for (int r = first; !rc && r < t->n_rows; r++) {
        for (int c = 0; c < t->n_cols; c++)
            cells[c] = csv_cell(t, r, c);
        int32_t cls;
        rc = model_predict_cells(m, cells, t->n_cols, &cls, probs, err);
        if (rc)
            kiln_error_prefix(err, "%s: line %d: ", name, t->line[r]);
        else
            emit(out, m, cls, probs);
    }
    free(cells);
    free(probs);
    return rc;
}

int predict_file(const char *model_path, const char *input_uri, int with_probs, FILE *out,
                 kiln_error *err)
{
    kiln_model *m = NULL;
    int rc = model_load(model_path, &m, err);
    if (rc)
        return rc;
    if (with_probs && !strcmp(model_family(m), "kmeans"))
        with_probs = 0; /* clusters have no probabilities */
    source_buf buf = {0};
    char name[256];
    source_basename(input_uri, name, sizeof name);
    if ((rc = source_read(input_uri, SOURCE_MAX_BYTES, &buf, err)) == 0) {
        if (buf.len >= 4 && buf.data[0] == 0 && buf.data[1] == 0 && idx_type_name(buf.data[2])) {
            idx_view v;
            rc = idx_parse(buf.data, buf.len, name, &v, err);
            if (!rc)
                rc = predict_idx(m, &v, name, with_probs, out, err);
        } else {
            csv_table *t = NULL;
            rc = csv_parse((const char *)buf.data, buf.len, name, &t, err);
            if (!rc)
                rc = predict_csv(m, t, name, with_probs, out, err);
            csv_free(t);
        }
    }
    source_buf_release(&buf);
    model_free(m);
    fflush(out);
    return rc;
}
