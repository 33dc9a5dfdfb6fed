/* Tests of the model server's inference path: nn_infer (the allocation-free
 * inference of one request or of a batch of requests) against nn_predict,
 * bit for bit where the kernels promise it, and serve_run_jobs (predictions
 * of several requests run as one batch) against serve_handle answering
 * each request alone: every response must be byte-identical. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "ktest.h"
#include "nn.h"
#include "serve_app.h"
#include "train.h"

/* 1 when nn_infer's matrix-vector kernel runs (and must match the
 * batched kernels bit for bit). */
static int exact_cpu(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* Inputs like standardized pixels, with a share of exact zeros (skipped by
 * the matrix-vector kernel) and of negative zeros. */
static void fill(float *x, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = (seed >> 16) & 1023;
        x[i] = r < 300 ? 0.0f : r < 320 ? -0.0f : (float)r / 512.0f - 1.0f;
    }
}

static int max_ulps(const float *a, const float *b, size_t n, double *worst_abs)
{
    int diff = 0;
    *worst_abs = 0;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], sizeof(float)))
            diff++;
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > *worst_abs)
            *worst_abs = d;
    }
    return diff;
}

/* A dense model whose widths exercise every part of the kernel: 64-wide
 * column blocks, an 8-wide block, a scalar tail, and inputs over more
 * than two NN_GEMM_KC blocks. */
static void test_nn_infer_mlp(void)
{
    nn_arch a = {.family = NN_MLP,
                 .in_h = 600,
                 .in_w = 1,
                 .in_c = 1,
                 .n_hidden = 2,
                 .hidden = {77, 13},
                 .activation = NN_RELU,
                 .n_classes = 5};
    nn_model *m = NULL;
    kiln_error err = {0};
    KT_EQ_INT(nn_new(&a, &m, &err), 0);
    if (!m)
        return;
    rng r;
    rng_seed(&r, 7);
    nn_init_params(m, &r);
    enum { B = 70, IN = 600, K = 5 };
    float *x = malloc(sizeof(float) * B * IN);
    float *want = malloc(sizeof(float) * B * K), *got = malloc(sizeof(float) * B * K);
    size_t ns = nn_infer_scratch(m, B);
    float *ws = malloc(ns * sizeof(float));
    KT_CHECK(x && want && got && ws);
    if (!x || !want || !got || !ws)
        goto out;
    fill(x, (size_t)B * IN, 99);

    /* rows 0..63 through nn_predict: one pass of 64 rows (batched kernels) */
    KT_EQ_INT(nn_predict(m, x, 64, want), 0);
    /* the same rows one at a time: the matrix-vector kernel */
    size_t n1 = nn_infer_scratch(m, 1);
    KT_CHECK(n1 < ns); /* one row needs no gemm packing space */
    for (int i = 0; i < 64; i++)
        KT_EQ_INT(nn_infer(m, x + (size_t)i * IN, 1, got + (size_t)i * K, ws, n1), 0);
    double worst;
    int diff = max_ulps(want, got, 64 * K, &worst);
    if (exact_cpu())
        KT_EQ_INT(diff, 0);
    KT_CHECK(worst < 1e-5);

    /* 70 rows: a pass of 64 and one of 6, all batched; rows 64..69 alone
     * must give the same bits as in that pass */
    KT_EQ_INT(nn_infer(m, x, B, got, ws, ns), 0);
    KT_EQ_INT(max_ulps(want, got, 64 * K, &worst), 0); /* same kernels as nn_predict */
    float one[K];
    for (int i = 64; i < B; i++) {
        KT_EQ_INT(nn_infer(m, x + (size_t)i * IN, 1, one, ws, n1), 0);
        diff = max_ulps(one, got + (size_t)i * K, K, &worst);
        if (exact_cpu())
            KT_EQ_INT(diff, 0);
        KT_CHECK(worst < 1e-5);
    }
    /* 66 rows: the last pass has 2 rows, which take the matrix-vector
     * kernel inside a batch too */
    KT_EQ_INT(nn_infer(m, x, 66, got, ws, ns), 0);
    for (int i = 64; i < 66; i++) {
        KT_EQ_INT(nn_infer(m, x + (size_t)i * IN, 1, one, ws, n1), 0);
        KT_EQ_INT(max_ulps(one, got + (size_t)i * K, K, &worst), 0);
    }
    /* probabilities: a distribution per row */
    for (int i = 0; i < B; i++) {
        double s = 0;
        for (int k = 0; k < K; k++)
            s += got[i * K + k];
        if (i < 66)
            KT_NEAR(s, 1.0, 1e-5);
    }
    /* a workspace one float short is refused, not overrun */
    KT_EQ_INT(nn_infer(m, x, 1, one, ws, n1 - 1), KILN_EINVAL);
    KT_EQ_INT(nn_infer(m, x, B, got, ws, ns - 1), KILN_EINVAL);
out:
    free(x);
    free(want);
    free(got);
    free(ws);
    nn_free(m);
}

/* A CNN takes the batched kernels at every size: nn_infer is nn_predict
 * in a caller's workspace. */
static void test_nn_infer_cnn(void)
{
    nn_arch a = {.family = NN_CNN,
                 .in_h = 8,
                 .in_w = 8,
                 .in_c = 1,
                 .n_conv = 1,
                 .conv = {4},
                 .n_dense = 1,
                 .dense = {16},
                 .n_classes = 3};
    nn_model *m = NULL;
    kiln_error err = {0};
    KT_EQ_INT(nn_new(&a, &m, &err), 0);
    if (!m)
        return;
    rng r;
    rng_seed(&r, 3);
    nn_init_params(m, &r);
    float x[5 * 64], want[5 * 3], got[5 * 3];
    fill(x, sizeof x / sizeof x[0], 5);
    size_t ns = nn_infer_scratch(m, 5);
    float *ws = malloc(ns * sizeof(float));
    KT_CHECK(ws != NULL);
    if (ws) {
        KT_EQ_INT(nn_predict(m, x, 5, want), 0);
        KT_EQ_INT(nn_infer(m, x, 5, got, ws, ns), 0);
        double worst;
        KT_EQ_INT(max_ulps(want, got, 15, &worst), 0);
        KT_EQ_INT(nn_predict(m, x, 1, want), 0);
        KT_EQ_INT(nn_infer(m, x, 1, got, ws, nn_infer_scratch(m, 1)), 0);
        KT_EQ_INT(max_ulps(want, got, 3, &worst), 0);
    }
    free(ws);
    nn_free(m);
}

/* ======================================================================
 * the v1 parser's fast path on long integer arrays
 * ====================================================================== */

static void flatten(const cJSON *v, float *out, int cap, int *n)
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

/* One random element: mostly pixels, sometimes the forms the fast path
 * must hand over to the general parser (7 and 8+ digits, fractions,
 * exponents, signs, null, whitespace). */
static int element(char *out, size_t n, unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    unsigned r = (*seed >> 8) % 100, v = (*seed >> 3) % 256;
    if (r < 40)
        return snprintf(out, n, "0");
    if (r < 75)
        return snprintf(out, n, "%u", v);
    if (r < 80)
        return snprintf(out, n, "%u", (*seed >> 1) % 10000000u);
    if (r < 83)
        return snprintf(out, n, "%u", 10000000u + (*seed >> 1) % 4000000000u);
    if (r < 86)
        return snprintf(out, n, "%u.%u", v, r);
    if (r < 88)
        return snprintf(out, n, "-%u", v);
    if (r < 90)
        return snprintf(out, n, "%ue2", v);
    if (r < 92)
        return snprintf(out, n, "null");
    if (r < 95)
        return snprintf(out, n, " %u ", v);
    return snprintf(out, n, "\n%u", v);
}

static void test_v1_long_arrays(void)
{
    enum { W = 300, N = 3 };
    char *body = malloc(64 * W * N + 64);
    float *want = malloc(sizeof(float) * W * N);
    KT_CHECK(body && want);
    if (!body || !want) {
        free(body);
        free(want);
        return;
    }
    serve_batch b;
    serve_batch_init(&b);
    unsigned seed = 1;
    for (int round = 0; round < 200; round++) {
        size_t len = (size_t)snprintf(body, 32, "{\"instances\":[");
        for (int i = 0; i < N; i++) {
            body[len++] = i ? ',' : '[';
            if (i)
                body[len++] = '[';
            for (int k = 0; k < W; k++) {
                if (k)
                    body[len++] = ',';
                len += (size_t)element(body + len, 32, &seed);
            }
            body[len++] = ']';
        }
        len += (size_t)snprintf(body + len, 8, "]}");
        cJSON *root = cJSON_ParseWithLength(body, len);
        KT_CHECK(root != NULL);
        int n = 0;
        flatten(cJSON_GetObjectItem(root, "instances"), want, W * N, &n);
        cJSON_Delete(root);
        KT_EQ_INT(n, W * N);
        kiln_error err = {0};
        int rc = serve_parse_v1(&b, body, len, W, &err);
        KT_EQ_INT(rc, 0);
        if (rc) {
            fprintf(stderr, "round %d: %s\n", round, err.msg);
            continue;
        }
        KT_EQ_INT(b.n, N);
        int bad = 0;
        for (int i = 0; i < W * N; i++)
            if (!(b.x[i] == want[i] || (isnan(b.x[i]) && isnan(want[i]))))
                bad++;
        KT_EQ_INT(bad, 0);

        /* a leading zero, an empty element or a wrong count anywhere in
         * the array is refused, never misread */
        size_t at = 20 + (size_t)(seed >> 4) % (len - 40);
        while (at < len - 10 && body[at] != ',')
            at++;
        if (round % 3 == 0) {
            char *t = malloc(len + 3);
            if (t) {
                memcpy(t, body, at + 1);
                memcpy(t + at + 1, "01", 2); /* ",01" then the old element */
                memcpy(t + at + 3, body + at + 1, len - at - 1);
                KT_EQ_INT(serve_parse_v1(&b, t, len + 2, W, &err), KILN_EINVAL);
                KT_EQ_INT(b.status, 400);
                free(t);
            }
        } else if (round % 3 == 1) {
            char *t = malloc(len + 1);
            if (t) {
                memcpy(t, body, at + 1);
                t[at + 1] = ','; /* ",," */
                memcpy(t + at + 2, body + at + 1, len - at - 1);
                KT_EQ_INT(serve_parse_v1(&b, t, len + 1, W, &err), KILN_EINVAL);
                KT_EQ_INT(b.status, 400);
                free(t);
            }
        } else {
            KT_EQ_INT(serve_parse_v1(&b, body, len, W - 1, &err), KILN_EINVAL);
            KT_EQ_INT(b.status, 422);
        }
    }
    serve_batch_release(&b);
    free(body);
    free(want);
}

/* ======================================================================
 * serve_run_jobs against serve_handle
 * ====================================================================== */

static char g_dir[128];

static int write_csv(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "a,b,c,d,kind\n");
    static const char *const kinds[] = {"low", "mid", "high"};
    unsigned s = 4242;
    for (int i = 0; i < 120; i++) {
        int k = i % 3;
        for (int j = 0; j < 4; j++) {
            s = s * 1103515245u + 12345u;
            fprintf(f, "%.3f,", (j == 0 ? k * 10.0 : j) + ((s >> 16) & 1023) / 1023.0 - 0.5);
        }
        fprintf(f, "%s\n", kinds[k]);
    }
    return fclose(f);
}

static int train_tiny(const char *csv, const char *out)
{
    static const char *const flags[][2] = {
        {"label", "kind"}, {"family", "mlp"}, {"hidden", "9"}, {"epochs", "2"}, {"threads", "1"}};
    train_config c;
    config_init(&c);
    kiln_error err = {0};
    int rc = config_apply_flag(&c, "data", csv, &err);
    for (size_t i = 0; i < sizeof flags / sizeof flags[0] && !rc; i++)
        rc = config_apply_flag(&c, flags[i][0], flags[i][1], &err);
    rc = rc ? rc : config_validate(&c, &err);
    cJSON *report = NULL;
    train_opts o = {.output_dir = out};
    rc = rc ? rc : train_run(&c, &o, &report, &err);
    if (rc)
        fprintf(stderr, "train: %s\n", err.msg);
    cJSON_Delete(report);
    config_release(&c);
    return rc;
}

#define NREQ 7

static void test_run_jobs(void)
{
    char csv[200], out[200], model[220];
    snprintf(csv, sizeof csv, "%s/d.csv", g_dir);
    snprintf(out, sizeof out, "%s/m", g_dir);
    snprintf(model, sizeof model, "%s/model.kiln", out);
    KT_EQ_INT(write_csv(csv), 0);
    KT_EQ_INT(train_tiny(csv, out), 0);

    serve_config cfg = {.model_path = model, .name = "tiny", .max_body = 1 << 20, .threads = 1};
    serve_app app;
    KT_EQ_INT(serve_app_init(&app, &cfg), 0);
    KT_EQ_INT(serve_holder_check(&app.holder, 1), 1);

    /* 20 instances: a job too big to be batched with its neighbours */
    char big[2048] = "{\"instances\":[";
    for (int i = 0; i < 20; i++)
        snprintf(big + strlen(big), sizeof big - strlen(big), "%s[%d.5,1,2,3]", i ? "," : "", i);
    strcat(big, "]}");
    const char *bodies[NREQ] = {
        "{\"instances\":[[0.1,1,2,3]]}",
        "{\"instances\":[[19.7,1,2,3],[10.2,1,2,3]],\"parameters\":{\"probabilities\":true}}",
        "{\"id\":\"r3\",\"inputs\":[{\"name\":\"x\",\"shape\":[2,4],\"datatype\":\"FP32\","
        "\"data\":[[5,1,2,3],[15,1,2,3]]}],\"outputs\":[{\"name\":\"probabilities\"}]}",
        "{\"instances\":[[1,2]]}", /* refused while parsing: not deferred */
        big,
        "{\"instances\":[[9,1,2,3]]}",
        "{\"instances\":[[20,1,2,3],[0,0,0,0],[7,7,7,7]],\"parameters\":{\"probabilities\":true}}",
    };
    const char *paths[NREQ] = {"/v1/models/tiny:predict", "/v1/models/tiny:predict",
                               "/v2/models/tiny/infer",   "/v1/models/tiny:predict",
                               "/v1/models/tiny:predict", "/v1/models/tiny:predict",
                               "/v1/models/tiny:predict"};

    serve_scratch s;
    serve_scratch_init(&s);
    sbuf alone[NREQ], batched[NREQ];
    serve_response ra[NREQ], rb[NREQ];
    serve_job jobs[NREQ];
    serve_job *pj[NREQ];
    serve_response *pr[NREQ];
    int npend = 0;
    for (int i = 0; i < NREQ; i++) {
        sbuf_init(&alone[i], 0);
        sbuf_init(&batched[i], 0);
        serve_job_init(&jobs[i]);
        serve_request rq = {.method = SM_POST,
                            .path = paths[i],
                            .ctype = "application/json",
                            .body = bodies[i],
                            .len = strlen(bodies[i])};
        ra[i] = (serve_response){.body = &alone[i]};
        serve_handle(&app, &s, &rq, &ra[i]);
        rb[i] = (serve_response){.body = &batched[i]};
        int d = serve_handle_defer(&app, &s, &jobs[i], &rq, &rb[i]);
        KT_EQ_INT(d, i == 3 ? 0 : 1);
        if (d) {
            pj[npend] = &jobs[i];
            pr[npend++] = &rb[i];
        }
    }
    KT_EQ_INT(ra[3].status, 422);
    KT_EQ_INT(rb[3].status, 422);
    serve_run_jobs(&app, &s, pj, pr, npend);
    for (int i = 0; i < NREQ; i++) {
        KT_CHECK(jobs[i].sm == NULL); /* references given back */
        KT_EQ_INT(rb[i].status, ra[i].status);
        KT_EQ_INT(rb[i].route, ra[i].route);
        int same = alone[i].len == batched[i].len &&
                   !memcmp(sbuf_data(&alone[i]), sbuf_data(&batched[i]), alone[i].len);
        if (!same)
            fprintf(stderr, "request %d:\n  alone   %.*s\n  batched %.*s\n", i, (int)alone[i].len,
                    sbuf_data(&alone[i]), (int)batched[i].len, sbuf_data(&batched[i]));
        KT_CHECK(same);
        if (i != 3)
            KT_EQ_INT(ra[i].status, 200);
    }
    /* the big job's answer has its 20 predictions */
    KT_CHECK(strstr(sbuf_data(&alone[4]), "\"predictions\":[") != NULL);
    int commas = 0;
    for (const char *p = sbuf_data(&alone[4]); p && *p; p++)
        commas += *p == ',';
    KT_EQ_INT(commas, 19);
    /* probabilities where asked, none elsewhere */
    KT_CHECK(strstr(sbuf_data(&alone[1]), "probabilities") != NULL);
    KT_CHECK(strstr(sbuf_data(&alone[0]), "probabilities") == NULL);
    KT_CHECK(strstr(sbuf_data(&alone[2]), "\"id\":\"r3\"") != NULL);

    for (int i = 0; i < NREQ; i++) {
        serve_job_release(&jobs[i]);
        sbuf_release(&alone[i]);
        sbuf_release(&batched[i]);
    }
    serve_scratch_release(&s);
    serve_app_release(&app);
    unlink(csv);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln-test-serve-batch.XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    KT_RUN(test_nn_infer_mlp);
    KT_RUN(test_nn_infer_cnn);
    KT_RUN(test_v1_long_arrays);
    KT_RUN(test_run_jobs);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    KT_DONE();
}
