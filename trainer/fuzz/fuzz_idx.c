/* fuzz_idx: any bytes as an IDX file (raw or gzip, inflated with a small
 * cap) through the IDX reader and the image data path: loading, a split,
 * image preprocessing, gathering and the JSON round trip. An input that
 * holds the marker "LBL:" is an images file and a labels file, split
 * there, to reach the labels checks as well. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "idx.h"
#include "source.h"

#define FUZZ_MAX (1u << 22)

static void exercise(const data_raw *raw, const data_opts *o, int fold)
{
    data_split s;
    kiln_error e = {0};
    if (data_split_make(raw, o, fold, &s, &e) != 0)
        return;
    if (s.train.n > 0) {
        float *x = malloc((size_t)s.train.d * sizeof(float));
        int32_t last = s.train.n - 1;
        if (x)
            dataset_gather(&s.train, &last, 1, x);
        free(x);
    }
    cJSON *j = preproc_to_json(s.pp);
    preproc *pp = NULL;
    if (j && preproc_from_json(j, &pp, &e) == 0 && preproc_n_inputs(pp) <= 4096) {
        int ni = preproc_n_inputs(pp), nf = preproc_n_features(pp);
        float *in = calloc((size_t)ni, sizeof(float)), *out = malloc((size_t)nf * sizeof(float));
        if (in && out)
            preproc_apply(pp, in, 1, out, &e);
        free(in);
        free(out);
    }
    preproc_free(pp);
    cJSON_Delete(j);
    data_split_release(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kiln_error e = {0};
    /* The reader alone, on the (inflated) bytes. */
    source_buf b = {0};
    const uint8_t *p = data;
    size_t n = size;
    if (source_is_gzip(data, size)) {
        if (source_gunzip(data, size, FUZZ_MAX, "fuzz.idx.gz", &b, &e) != 0)
            return 0;
        p = b.data;
        n = b.len;
    }
    idx_view v;
    kiln_error_clear(&e);
    if (idx_parse(p, n, "fuzz.idx", &v, &e) == 0 && v.n_items > 0) {
        volatile double sink = idx_get(&v, v.n_items * v.item_elems - 1);
        (void)sink;
    }
    source_buf_release(&b);

    /* The data path, with labels when the input carries them. */
    const uint8_t *lab = NULL;
    size_t lab_len = 0, img_len = size;
    for (size_t i = 0; i + 4 <= size; i++)
        if (!memcmp(data + i, "LBL:", 4)) {
            img_len = i;
            lab = data + i + 4;
            lab_len = size - i - 4;
            break;
        }
    static const char *scale[3] = {"standard", "minmax", "none"};
    data_opts o = {
        .uri = "fuzz.idx",
        .format = "idx",
        .validation_split = 0.3,
        .folds = 2,
        .max_samples = size % 4 == 0 ? 3 : 0,
        .impute = "mean",
        .scale = scale[size % 3],
        .seed = size,
    };
    data_raw *raw = NULL;
    kiln_error_clear(&e);
    if (data_load_buffers(&o, "fuzz-images", data, img_len, "fuzz-labels", lab, lab_len, FUZZ_MAX,
                          &raw, &e) == 0) {
        exercise(raw, &o, -1);
        exercise(raw, &o, 1);
        data_raw_free(raw);
    }
    return 0;
}
