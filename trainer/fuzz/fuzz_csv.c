/* fuzz_csv: any bytes through the CSV reader, then through the whole CSV
 * data path: loading (header, label, column types, categories), a split,
 * preprocessing fit and apply, and the preprocessing JSON round trip.
 * Options vary with the input length so one corpus covers them. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "dataset.h"

static void round_trip(const data_split *s, const csv_table *t)
{
    cJSON *j = preproc_to_json(s->pp);
    char *txt = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON *back = txt ? cJSON_Parse(txt) : NULL;
    preproc *pp = NULL;
    kiln_error e = {0};
    if (back && preproc_from_json(back, &pp, &e) == 0) {
        int nf = preproc_n_features(pp);
        float *out = malloc((size_t)nf * sizeof(float));
        const char **cells = malloc((size_t)t->n_cols * sizeof *cells);
        if (out && cells) {
            int r = t->n_rows - 1;
            for (int c = 0; c < t->n_cols; c++)
                cells[c] = csv_cell(t, r, c);
            kiln_error_clear(&e);
            preproc_apply_cells(pp, cells, t->n_cols, out, &e);
        }
        free(out);
        free(cells);
    }
    preproc_free(pp);
    cJSON_Delete(back);
    free(txt);
    cJSON_Delete(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kiln_error e = {0};
    csv_table *t = NULL;
    if (csv_parse((const char *)data, size, "fuzz.csv", &t, &e) != 0)
        return 0;
    csv_detect_header(t);
    char last[64] = "";
    snprintf(last, sizeof last, "%s", csv_cell(t, 0, t->n_cols - 1));
    static const char *impute[3] = {"mean", "median", "drop"};
    static const char *scale[3] = {"standard", "minmax", "none"};
    const char *drops[1] = {csv_cell(t, 0, 0)};
    data_opts o = {
        .uri = "fuzz.csv",
        .format = "csv",
        .label = size % 3 == 0   ? NULL
                 : size % 3 == 1 ? "0"
                                 : last,
        .validation_split = 0.25,
        .folds = 2,
        .impute = impute[size % 5 % 3],
        .scale = scale[size % 7 % 3],
        .drop_columns = drops,
        .n_drop_columns = size % 11 == 0 && t->n_cols > 2,
        .variance_threshold = size % 13 == 0 ? 0.1 : 0,
        .seed = size,
    };
    data_raw *raw = NULL;
    kiln_error_clear(&e);
    if (data_load_buffers(&o, "fuzz.csv", data, size, NULL, NULL, 0, 1 << 20, &raw, &e) == 0) {
        for (int fold = -1; fold < 1; fold++) {
            data_split s;
            kiln_error_clear(&e);
            if (data_split_make(raw, &o, fold, &s, &e) == 0) {
                if (s.train.n > 0) {
                    float *x = malloc((size_t)s.train.d * sizeof(float));
                    if (x)
                        dataset_gather(&s.train, NULL, 1, x);
                    free(x);
                }
                round_trip(&s, t);
                data_split_release(&s);
            }
        }
        data_raw_free(raw);
    }
    csv_free(t);
    return 0;
}
