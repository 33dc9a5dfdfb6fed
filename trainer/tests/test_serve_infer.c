/* Unit tests of the model server's payload parsing, routing and metrics
 * (serve_infer, serve_route, serve_metrics, serve_buf): no model, no
 * sockets. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ktest.h"
#include "serve_buf.h"
#include "serve_infer.h"
#include "serve_metrics.h"
#include "serve_route.h"

static int v1(serve_batch *b, const char *s, int n_inputs)
{
    kiln_error err = {0};
    return serve_parse_v1(b, s, strlen(s), n_inputs, &err);
}

static int v2(serve_batch *b, const char *s, int n_inputs)
{
    kiln_error err = {0};
    return serve_parse_v2(b, s, strlen(s), n_inputs, &err);
}

static void test_v1_numbers(void)
{
    serve_batch b;
    serve_batch_init(&b);
    KT_EQ_INT(v1(&b, " {\"instances\" : [[1, -2.5, 3e2, 0.000123], [255,0,1E-3,-0]] } ", 4), 0);
    KT_EQ_INT(b.n, 2);
    KT_NEAR(b.x[0], 1, 0);
    KT_NEAR(b.x[1], -2.5, 0);
    KT_NEAR(b.x[2], 300, 0);
    KT_NEAR(b.x[3], 0.000123, 1e-10);
    KT_NEAR(b.x[4], 255, 0);
    KT_NEAR(b.x[6], 0.001, 1e-10);
    KT_EQ_INT(b.want_probs, 0);
    /* long mantissas and large exponents take the slow path */
    KT_EQ_INT(v1(&b, "{\"instances\":[[3.14159265358979323846264338327950288, 1e30]]}", 2), 0);
    KT_NEAR(b.x[0], 3.14159265f, 1e-6);
    KT_NEAR(b.x[1] / 1e30, 1.0, 1e-6);
    /* every integer 0..255 parses exactly, as do their tenths */
    char buf[64];
    for (int i = 0; i < 256; i++) {
        snprintf(buf, sizeof buf, "{\"instances\":[[%d,%d.%d]]}", i, i, i % 10);
        KT_EQ_INT(v1(&b, buf, 2), 0);
        KT_NEAR(b.x[0], i, 0);
        KT_NEAR(b.x[1], i + (i % 10) / 10.0, 1e-4);
    }
    serve_batch_release(&b);
}

static void test_v1_shapes_and_params(void)
{
    serve_batch b;
    serve_batch_init(&b);
    /* nested (2, 2, 1) image flattened row-major, null is missing (NaN) */
    KT_EQ_INT(
        v1(&b,
           "{\"parameters\":{\"probabilities\":true},\"instances\":[[[[1],[2]],[[3],[null]]]],"
           "\"other\":{\"x\":[1,\"a\\\"b\",true,null]}}",
           4),
        0);
    KT_EQ_INT(b.n, 1);
    KT_EQ_INT(b.want_probs, 1);
    KT_NEAR(b.x[2], 3, 0);
    KT_CHECK(isnan(b.x[3]));
    /* "inputs" is accepted as a synonym */
    KT_EQ_INT(v1(&b, "{\"inputs\":[[1,2]]}", 2), 0);
    KT_EQ_INT(b.n, 1);
    serve_batch_release(&b);
}

static void test_v1_errors(void)
{
    serve_batch b;
    serve_batch_init(&b);
    static const struct {
        const char *body;
        int status;
    } cases[] = {
        {"", 400},
        {"[]", 400},
        {"{", 400},
        {"{\"instances\":[[1,2,3]]", 400},
        {"{\"instances\":[[1,2,3]]} x", 400},
        {"{\"instances\":[[1,2]]}", 422},
        {"{\"instances\":[[1,2,3,4]]}", 422},
        {"{\"instances\":[]}", 400},
        {"{\"instances\":[[1,2,\"x\"]]}", 422},
        {"{\"instances\":[[1,2,true]]}", 422},
        {"{\"instances\":[{\"a\":1}]}", 422},
        {"{\"instances\":[[1,2,01]]}", 400},
        {"{\"instances\":[[1,2,1e99]]}", 422},
        {"{\"instances\":[[1,2,-]]}", 400},
        {"{\"instances\":[[1,2,3]],\"parameters\":{\"probabilities\":\"yes\"}}", 400},
        {"{\"instances\":5}", 400},
        {"{\"nothing\":1}", 400},
        {"{\"instances\":[[1,2,3]],\"instances\":[[1,2,3]]}", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kiln_error err = {0};
        int rc = serve_parse_v1(&b, cases[i].body, strlen(cases[i].body), 3, &err);
        if (rc != KILN_EINVAL || b.status != cases[i].status)
            fprintf(stderr, "case %zu: %s -> rc %d status %d (%s)\n", i, cases[i].body, rc,
                    b.status, err.msg);
        KT_EQ_INT(rc, KILN_EINVAL);
        KT_EQ_INT(b.status, cases[i].status);
        KT_CHECK(err.msg[0] != '\0');
    }
    /* deep nesting is refused, not a stack overflow */
    char deep[4096];
    size_t k = 0;
    k += (size_t)snprintf(deep, sizeof deep, "{\"instances\":[");
    for (int i = 0; i < 1000; i++)
        deep[k++] = '[';
    deep[k] = '\0';
    KT_EQ_INT(v1(&b, deep, 3), KILN_EINVAL);
    serve_batch_release(&b);
}

static void test_v2(void)
{
    serve_batch b;
    serve_batch_init(&b);
    KT_EQ_INT(v2(&b,
                 "{\"id\":\"r1\",\"inputs\":[{\"name\":\"x\",\"shape\":[2,3],\"datatype\":\"FP32\","
                 "\"data\":[1,2,3,4,5,6.5]}]}",
                 3),
              0);
    KT_EQ_INT(b.n, 2);
    KT_NEAR(b.x[5], 6.5, 0);
    KT_CHECK(!strcmp(b.id, "r1"));
    KT_EQ_INT(b.want_probs, 0);
    /* nested data, a (1, 2, 2, 1) image, probabilities asked through outputs */
    KT_EQ_INT(v2(&b,
                 "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,2,2,1],\"datatype\":\"UINT8\","
                 "\"data\":[[[[0],[255]],[[7],[9]]]]}],\"outputs\":[{\"name\":\"probabilities\"}]}",
                 4),
              0);
    KT_EQ_INT(b.n, 1);
    KT_NEAR(b.x[1], 255, 0);
    KT_EQ_INT(b.want_probs, 1);
    /* rank-1 shape of n_inputs is one instance */
    KT_EQ_INT(
        v2(&b,
           "{\"inputs\":[{\"name\":\"x\",\"shape\":[3],\"datatype\":\"INT64\",\"data\":[1,2,3]}]}",
           3),
        0);
    KT_EQ_INT(b.n, 1);
    static const struct {
        const char *body;
        int status;
    } bad[] = {
        {"{", 400},
        {"{\"inputs\":[]}", 400},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,3],\"datatype\":\"BYTES\",\"data\":[1,2,3]}]}",
         422},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,3],\"datatype\":\"UINT8\",\"data\":[1,2,300]}]"
         "}",
         422},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,3],\"datatype\":\"INT32\",\"data\":[1,2,2.5]}]"
         "}",
         422},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}",
         422},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[2,3],\"datatype\":\"FP32\",\"data\":[1,2,3]}]}",
         422},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,3],\"datatype\":\"FP32\",\"data\":[1,\"a\",3]}]"
         "}",
         422},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[100000000,3],\"datatype\":\"FP32\",\"data\":[1]}]"
         "}",
         422},
        {"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"data\":[1,2,3]}]}", 400},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,3],\"datatype\":\"FP32\",\"data\":[1,2,3]}],"
         "\"outputs\":[{\"name\":\"nope\"}]}",
         422},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = v2(&b, bad[i].body, 3);
        if (rc != KILN_EINVAL || b.status != bad[i].status)
            fprintf(stderr, "v2 case %zu: rc %d status %d\n", i, rc, b.status);
        KT_EQ_INT(rc, KILN_EINVAL);
        KT_EQ_INT(b.status, bad[i].status);
    }
    serve_batch_release(&b);
}

static void test_csv(void)
{
    serve_csv c;
    serve_csv_init(&c);
    kiln_error err = {0};
    const char *t = "a,b,\"c, d\"\r\n1,2,3\n\n\"4\", 5 ,\"x\"\"y\"\n";
    KT_EQ_INT(serve_parse_csv(&c, t, strlen(t), &err), 0);
    KT_EQ_INT(c.header, 1);
    KT_EQ_INT(c.nrows, 2);
    KT_EQ_INT(c.row_off[1] - c.row_off[0], 3);
    KT_CHECK(!strcmp(c.cells[c.row_off[1] + 0], "4"));
    KT_CHECK(!strcmp(c.cells[c.row_off[1] + 1], "5"));
    KT_CHECK(!strcmp(c.cells[c.row_off[1] + 2], "x\"y"));
    /* no header: the first row has numbers; missing cells kept empty */
    t = "1,,NA\n2,3,4";
    KT_EQ_INT(serve_parse_csv(&c, t, strlen(t), &err), 0);
    KT_EQ_INT(c.header, 0);
    KT_EQ_INT(c.nrows, 2);
    KT_CHECK(!strcmp(c.cells[1], ""));
    KT_CHECK(!strcmp(c.cells[5], "4"));
    /* with the training column names, text-only rows are data unless they
     * name a column */
    static const char *const names[] = {"sex", "town"};
    c.names = names;
    c.nnames = 2;
    t = "male,paris\n";
    KT_EQ_INT(serve_parse_csv(&c, t, strlen(t), &err), 0);
    KT_EQ_INT(c.header, 0);
    KT_EQ_INT(c.nrows, 1);
    t = "sex,town\nfemale,lyon\n";
    KT_EQ_INT(serve_parse_csv(&c, t, strlen(t), &err), 0);
    KT_EQ_INT(c.header, 1);
    KT_EQ_INT(c.nrows, 1);
    KT_CHECK(!strcmp(c.cells[0], "female"));
    c.names = NULL;
    c.nnames = 0;
    /* header only, unterminated quote, NUL */
    t = "a,b\n";
    KT_EQ_INT(serve_parse_csv(&c, t, strlen(t), &err), KILN_EINVAL);
    t = "1,\"2\n";
    KT_EQ_INT(serve_parse_csv(&c, t, strlen(t), &err), KILN_EINVAL);
    KT_EQ_INT(serve_parse_csv(&c, "1,\0002", 4, &err), KILN_EINVAL);
    KT_CHECK(serve_is_number("-1.5e3") && serve_is_number(".5") && !serve_is_number("x1") &&
             !serve_is_number("") && !serve_is_number("1x"));
    serve_csv_release(&c);
}

static void test_writers(void)
{
    const char *json[] = {"\"a\"", "\"b\\\"\""};
    size_t len[] = {3, 5};
    serve_labels l = {.n = 2, .numeric = 0, .json = json, .json_len = len};
    int32_t cls[] = {1, 0};
    float probs[] = {0.25f, 0.75f, 1, 0};
    sbuf o;
    sbuf_init(&o, 16);
    KT_EQ_INT(serve_write_v1(&o, &l, cls, probs, 2, 2), 0);
    KT_CHECK(!strcmp(sbuf_data(&o),
                     "{\"predictions\":[\"b\\\"\",\"a\"],\"probabilities\":[[0.25,0.75],[1,0]]}"));
    sbuf_reset(&o);
    KT_EQ_INT(serve_write_v2(&o, "m", "v1", "id7", &l, cls, NULL, 2, 2), 0);
    KT_STR_CONTAINS(sbuf_data(&o), "\"model_version\":\"v1\"");
    KT_STR_CONTAINS(sbuf_data(&o), "\"shape\":[2],\"datatype\":\"BYTES\"");
    KT_STR_CONTAINS(sbuf_data(&o), "\"id\":\"id7\"");
    sbuf_reset(&o);
    KT_EQ_INT(serve_write_error(&o, "bad \"x\"\n"), 0);
    KT_CHECK(!strcmp(sbuf_data(&o), "{\"error\":\"bad \\\"x\\\"\\n\"}"));
    KT_EQ_INT(o.head, 16);
    sbuf_release(&o);
}

static void test_route(void)
{
    serve_match m;
    serve_route_match("/v1/models/fm:predict", SM_POST, "fm", &m);
    KT_EQ_INT(m.route, SR_V1_PREDICT);
    KT_EQ_INT(m.status, 0);
    serve_route_match("/v1/models/fm:predict", SM_GET, "fm", &m);
    KT_EQ_INT(m.status, 405);
    serve_route_match("/v1/models/other:predict", SM_POST, "fm", &m);
    KT_EQ_INT(m.status, 404);
    KT_EQ_INT(m.route, SR_V1_PREDICT);
    serve_route_match("/v1/models/fm", SM_GET, "fm", &m);
    KT_EQ_INT(m.route, SR_V1_MODEL);
    serve_route_match("/v2/models/fm/versions/abc/infer", SM_POST, "fm", &m);
    KT_EQ_INT(m.route, SR_V2_INFER);
    KT_EQ_INT(m.status, 0);
    KT_EQ_INT(m.version_len, 3);
    serve_route_match("/v2/models/fm/ready", SM_GET, "fm", &m);
    KT_EQ_INT(m.route, SR_V2_MODEL_READY);
    serve_route_match("/v2/models/fm/explain", SM_POST, "fm", &m);
    KT_EQ_INT(m.status, 404);
    serve_route_match("/metrics", SM_POST, "fm", &m);
    KT_EQ_INT(m.status, 405);
    serve_route_match("/", SM_GET, "fm", &m);
    KT_EQ_INT(m.route, SR_OTHER);
    KT_EQ_INT(m.status, 404);
}

static void test_metrics(void)
{
    serve_metrics *m = malloc(sizeof *m);
    KT_CHECK(m != NULL);
    if (!m)
        return;
    serve_metrics_init(m);
    for (int i = 0; i < 7; i++)
        serve_metrics_observe(m, SR_V1_PREDICT, 200, 300000); /* 0.3 ms */
    serve_metrics_observe(m, SR_V1_PREDICT, 422, 20000000);
    serve_metrics_reload(m, 0);
    sbuf o;
    sbuf_init(&o, 0);
    KT_EQ_INT(serve_metrics_render(m, "fm", "0a1b2c3d", &o), 0);
    const char *t = sbuf_data(&o);
    KT_STR_CONTAINS(t, "kiln_serve_requests_total{route=\"v1_predict\",code=\"200\"} 7\n");
    KT_STR_CONTAINS(t, "kiln_serve_requests_total{route=\"v1_predict\",code=\"422\"} 1\n");
    KT_STR_CONTAINS(
        t, "kiln_serve_request_duration_seconds_bucket{route=\"v1_predict\",le=\"0.00025\"} 0\n");
    KT_STR_CONTAINS(
        t, "kiln_serve_request_duration_seconds_bucket{route=\"v1_predict\",le=\"0.0005\"} 7\n");
    KT_STR_CONTAINS(
        t, "kiln_serve_request_duration_seconds_bucket{route=\"v1_predict\",le=\"0.025\"} 8\n");
    KT_STR_CONTAINS(t, "kiln_serve_request_duration_seconds_count{route=\"v1_predict\"} 8\n");
    KT_STR_CONTAINS(t,
                    "kiln_serve_request_duration_seconds_sum{route=\"v1_predict\"} 0.022100000\n");
    KT_STR_CONTAINS(t, "kiln_serve_model_reloads_total{result=\"failure\"} 1\n");
    KT_STR_CONTAINS(t, "kiln_serve_model_info{model=\"fm\",version=\"0a1b2c3d\"} 1\n");
    sbuf_release(&o);
    free(m);
}

int main(void)
{
    KT_RUN(test_v1_numbers);
    KT_RUN(test_v1_shapes_and_params);
    KT_RUN(test_v1_errors);
    KT_RUN(test_v2);
    KT_RUN(test_csv);
    KT_RUN(test_writers);
    KT_RUN(test_route);
    KT_RUN(test_metrics);
    return KT_DONE();
}
