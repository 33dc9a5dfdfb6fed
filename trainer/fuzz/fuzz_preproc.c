/* fuzz_preproc: any bytes as the preprocessing JSON of a checkpoint.
 * preproc_from_json must reject what is invalid without crashing; what it
 * accepts must apply cleanly and serialize back to the same JSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "preproc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    cJSON *j = cJSON_Parse(text);
    free(text);
    preproc *pp = NULL;
    kiln_error e = {0};
    if (j && preproc_from_json(j, &pp, &e) == 0) {
        int ni = preproc_n_inputs(pp), nf = preproc_n_features(pp);
        /* Keep each run small: huge (valid) images are not interesting. */
        if (ni <= 65536 && nf <= 65536) {
            float *in = calloc((size_t)ni, sizeof(float));
            float *out = malloc((size_t)nf * sizeof(float));
            const char **cells = malloc((size_t)ni * sizeof *cells);
            if (in && out && cells) {
                preproc_apply(pp, in, 1, out, &e);
                for (int i = 0; i < ni; i++)
                    cells[i] = i % 2 ? "1.5" : "NA";
                kiln_error_clear(&e);
                preproc_apply_cells(pp, cells, ni, out, &e);
                for (int i = 0; i < ni; i++)
                    (void)preproc_input_name(pp, i);
            }
            free(in);
            free(out);
            free(cells);
        }
        cJSON *back = preproc_to_json(pp);
        preproc *again = NULL;
        kiln_error_clear(&e);
        if (!back || preproc_from_json(back, &again, &e) != 0)
            abort(); /* what was accepted must serialize to something valid */
        preproc_free(again);
        cJSON_Delete(back);
    }
    preproc_free(pp);
    cJSON_Delete(j);
    return 0;
}
