/* libFuzzer target: the model server's request parsing. The first byte
 * picks the parser (v1 JSON, v2 JSON, CSV body, or the routing of a path)
 * and the instance width; the rest is the body. Every input must be
 * accepted or refused with a 4xx and a message, never crash or leak, and
 * an accepted batch must be written back as a response. A v1 body the
 * hand parser accepts must also be valid JSON to cJSON with the same
 * numbers in the same order (a differential check of the fast path). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "serve_buf.h"
#include "serve_infer.h"
#include "serve_route.h"

static void flatten(const cJSON *v, float *out, size_t cap, size_t *n)
{
    if (cJSON_IsArray(v)) {
        for (const cJSON *e = v->child; e; e = e->next)
            flatten(e, out, cap, n);
        return;
    }
    if (*n < cap)
        out[*n] = cJSON_IsNull(v) ? NAN : (float)v->valuedouble;
    (*n)++;
}

static void check_v1(const char *body, size_t len, const serve_batch *b)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root)
        abort(); /* the hand parser accepted invalid JSON */
    const cJSON *inst = cJSON_GetObjectItemCaseSensitive(root, "instances");
    if (!inst)
        inst = cJSON_GetObjectItemCaseSensitive(root, "inputs");
    size_t want = (size_t)b->n * (size_t)b->n_inputs, n = 0;
    float *ref = calloc(want ? want : 1, sizeof *ref);
    if (!inst || !ref)
        abort();
    flatten(inst, ref, want, &n);
    if (n != want)
        abort();
    for (size_t i = 0; i < want; i++) {
        float a = b->x[i], r = ref[i];
        if (isnan(a) != isnan(r) || (!isnan(a) && fabsf(a - r) > 1e-6f * fabsf(r)))
            abort();
    }
    free(ref);
    cJSON_Delete(root);
}

static void write_back(const serve_batch *b, int n_out)
{
    static const char *const json[] = {"\"a\"", "\"b\"", "\"c\""};
    static const size_t len[] = {3, 3, 3};
    serve_labels l = {.n = 3, .numeric = 0, .json = json, .json_len = len};
    int32_t *cls = calloc((size_t)b->n, sizeof *cls);
    float *probs = calloc((size_t)b->n * (size_t)n_out, sizeof *probs);
    if (cls && probs) {
        for (int i = 0; i < b->n; i++)
            cls[i] = (int32_t)(i % 4); /* 3 is out of range: written as a number */
        sbuf o;
        sbuf_init(&o, 64);
        serve_write_v1(&o, &l, cls, b->want_probs ? probs : NULL, b->n, n_out);
        sbuf_reset(&o);
        serve_write_v2(&o, "m", "v", b->id, &l, cls, probs, b->n, n_out);
        sbuf_release(&o);
    }
    free(cls);
    free(probs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] & 3;
    int n_inputs = 1 + ((data[0] >> 2) & 7);
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    kiln_error err = {0};
    if (mode == 0 || mode == 1) {
        serve_batch b;
        serve_batch_init(&b);
        int rc = mode == 0 ? serve_parse_v1(&b, body, len, n_inputs, &err)
                           : serve_parse_v2(&b, body, len, n_inputs, &err);
        if (rc == 0) {
            if (b.n < 1 || b.n_inputs != n_inputs)
                abort();
            if (mode == 0)
                check_v1(body, len, &b);
            write_back(&b, 3);
        } else if (b.status < 400 || b.status > 499 || !err.msg[0]) {
            abort();
        }
        serve_batch_release(&b);
    } else if (mode == 2) {
        serve_csv c;
        serve_csv_init(&c);
        int rc = serve_parse_csv(&c, body, len, &err);
        if (rc == 0) {
            if (c.nrows < 1)
                abort();
            for (int r = 0; r < c.nrows; r++)
                for (int k = c.row_off[r]; k < c.row_off[r + 1]; k++)
                    if (!c.cells[k] || strlen(c.cells[k]) > len)
                        abort();
        } else if (c.status < 400 || c.status > 499) {
            abort();
        }
        serve_csv_release(&c);
    } else {
        char *path = malloc(len + 1);
        if (!path)
            return 0;
        memcpy(path, body, len);
        path[len] = '\0';
        serve_match m;
        serve_route_match(path, n_inputs & 7, "m", &m);
        if (m.route < 0 || m.route >= SR__COUNT || (m.status && !m.why))
            abort();
        free(path);
    }
    return 0;
}
