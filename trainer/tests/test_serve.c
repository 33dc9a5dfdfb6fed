/* End-to-end tests of `kiln-trainer serve`: tiny models are trained with
 * the engine (train_run, what `kiln-trainer train` runs) from a generated
 * CSV, the server runs as a child process on a free loopback port, and
 * libcurl is the client (a raw socket only where a client must misbehave
 * on purpose: a stalled body).
 *
 * Covers every route's success shape (answers checked against
 * model_predict on the same checkpoint), each bad-input case (status and
 * JSON error, the server still answering afterwards), exact metric
 * counts, hot reload under load (valid, corrupt and different-shape files;
 * no failed request), and SIGTERM with a request in flight. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "config.h"
#include "ktest.h"
#include "model.h"
#include "train.h"

extern char **environ;

#define NAME "tiny"

static char g_dir[256];
static char g_model_a[300], g_model_b[300], g_model_c[300], g_latest[300];

/* ======================================================================
 * helpers
 * ====================================================================== */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int run(char *const argv[])
{
    pid_t pid;
    if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ))
        return -1;
    int st;
    if (waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(fd, (struct sockaddr *)&a, &l)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

typedef struct resp {
    long status;
    char *body;
    size_t len;
} resp;

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    resp *r = ud;
    char *b = realloc(r->body, r->len + sz * n + 1);
    if (!b)
        return 0;
    memcpy(b + r->len, p, sz * n);
    r->len += sz * n;
    b[r->len] = '\0';
    r->body = b;
    return sz * n;
}

/* One request on handle h (reused: keep-alive). Returns 0 when an HTTP
 * answer came back, whatever its status. */
static int g_expect; /* send "Expect: 100-continue" with bodies (test_bad_inputs) */

static int http(CURL *h, int port, const char *method, const char *path, const char *ctype,
                const char *body, size_t len, resp *r)
{
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    free(r->body);
    memset(r, 0, sizeof *r);
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    struct curl_slist *hd = NULL;
    hd = curl_slist_append(hd, g_expect ? "Expect: 100-continue" : "Expect:");
    if (ctype) {
        char ct[128];
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        hd = curl_slist_append(hd, ct);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(hd);
    if (rc != CURLE_OK)
        return -1;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    if (!r->body)
        r->body = calloc(1, 1);
    return 0;
}

static int get(CURL *h, int port, const char *path, resp *r)
{
    return http(h, port, "GET", path, NULL, NULL, 0, r);
}

static int post(CURL *h, int port, const char *path, const char *ctype, const char *body, resp *r)
{
    return http(h, port, "POST", path, ctype, body, strlen(body), r);
}

/* The value of one sample in a Prometheus text page, or -1. */
static double metric(const char *page, const char *sample)
{
    size_t n = strlen(sample);
    for (const char *p = page; p && *p;) {
        if (!strncmp(p, sample, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

static double scrape(CURL *h, int port, const char *sample)
{
    resp r = {0};
    double v = -1;
    if (!get(h, port, "/metrics", &r) && r.status == 200)
        v = metric(r.body, sample);
    free(r.body);
    return v;
}

/* JSON error bodies: {"error": "<non-empty>"} */
static int is_json_error(const char *body)
{
    cJSON *j = cJSON_Parse(body);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    int ok = cJSON_IsString(e) && e->valuestring[0];
    cJSON_Delete(j);
    return ok;
}

typedef struct server {
    pid_t pid;
    int port;
} server;

static int start_server(server *s, const char *model, const char *extra1, const char *extra2)
{
    s->port = free_port();
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    char *argv[20];
    int a = 0;
    argv[a++] = (char *)KILN_TRAINER_BIN;
    argv[a++] = "serve";
    argv[a++] = "--model";
    argv[a++] = (char *)model;
    argv[a++] = "--name";
    argv[a++] = NAME;
    argv[a++] = "--port";
    argv[a++] = port;
    argv[a++] = "--address";
    argv[a++] = "127.0.0.1";
    argv[a++] = "--threads";
    argv[a++] = "2";
    argv[a++] = "--poll-ms";
    argv[a++] = "100";
    if (extra1)
        argv[a++] = (char *)extra1;
    if (extra2)
        argv[a++] = (char *)extra2;
    argv[a] = NULL;
    if (posix_spawn(&s->pid, argv[0], NULL, NULL, argv, environ))
        return -1;
    /* up when /readyz answers at all; ready when it answers 200 (a server
     * started before its model file exists answers 503) */
    int want = access(model, F_OK) == 0 ? 200 : 503;
    CURL *h = curl_easy_init();
    resp r = {0};
    int ok = 0;
    for (double t0 = now_s(); now_s() - t0 < 30 && !ok;) {
        if (!get(h, s->port, "/readyz", &r) && r.status == want)
            ok = 1;
        else
            sleep_ms(50);
    }
    free(r.body);
    curl_easy_cleanup(h);
    return ok ? 0 : -1;
}

/* Sends sig and returns the exit code (or -1 when killed by a signal). */
static int stop_server(server *s, int sig)
{
    kill(s->pid, sig);
    int st;
    if (waitpid(s->pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A small labelled CSV: nf numeric features, three string classes that
 * are separable by the first feature. */
static int write_csv(const char *path, int nf)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    for (int j = 0; j < nf; j++)
        fprintf(f, "f%d,", j);
    fprintf(f, "kind\n");
    static const char *const kinds[] = {"low", "mid", "high"};
    unsigned s = 12345;
    for (int i = 0; i < 150; i++) {
        int k = i % 3;
        for (int j = 0; j < nf; j++) {
            s = s * 1103515245u + 12345u;
            double noise = ((s >> 16) & 1023) / 1023.0 - 0.5;
            fprintf(f, "%.3f,", (j == 0 ? k * 10.0 : j) + noise);
        }
        fprintf(f, "%s\n", kinds[k]);
    }
    return fclose(f);
}

/* Trains in-process through the engine's API (the same code path as
 * `kiln-trainer train`). */
static int train(const char *csv, const char *out, const char *hidden)
{
    static const char *const flags[][2] = {
        {"label", "kind"}, {"family", "mlp"}, {"epochs", "3"}, {"threads", "1"}};
    train_config c;
    config_init(&c);
    kiln_error err = {0};
    int rc = config_apply_flag(&c, "data", csv, &err);
    for (size_t i = 0; i < sizeof flags / sizeof flags[0] && !rc; i++)
        rc = config_apply_flag(&c, flags[i][0], flags[i][1], &err);
    rc = rc ? rc : config_apply_flag(&c, "hidden", hidden, &err);
    rc = rc ? rc : config_validate(&c, &err);
    cJSON *report = NULL;
    train_opts o = {.output_dir = out};
    rc = rc ? rc : train_run(&c, &o, &report, &err);
    if (rc)
        fprintf(stderr, "train %s: %s\n", out, err.msg);
    cJSON_Delete(report);
    config_release(&c);
    return rc;
}

static int copy_file(const char *from, const char *to, long flip_at, long truncate_to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    int rc = -1;
    if (a && b) {
        int c;
        long i = 0;
        rc = 0;
        while ((c = fgetc(a)) != EOF && (truncate_to < 0 || i < truncate_to)) {
            if (i == flip_at)
                c ^= 0x5a;
            fputc(c, b);
            i++;
        }
    }
    if (a)
        fclose(a);
    if (b && fclose(b))
        rc = -1;
    return rc;
}

/* Points g_latest at target atomically (new symlink renamed over). */
static int point_latest(const char *target)
{
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp", g_latest);
    unlink(tmp);
    if (symlink(target, tmp))
        return -1;
    return rename(tmp, g_latest);
}

/* ======================================================================
 * setup
 * ====================================================================== */

static int setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln-test-serve.XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    char csv4[300], csv3[300], out[300];
    snprintf(csv4, sizeof csv4, "%s/four.csv", g_dir);
    snprintf(csv3, sizeof csv3, "%s/three.csv", g_dir);
    if (write_csv(csv4, 4) || write_csv(csv3, 3))
        return -1;
    struct {
        const char *csv, *hidden, *sub;
        char *dst;
    } m[] = {{csv4, "8", "a", g_model_a}, {csv4, "5", "b", g_model_b}, {csv3, "6", "c", g_model_c}};
    for (int i = 0; i < 3; i++) {
        snprintf(out, sizeof out, "%s/%s", g_dir, m[i].sub);
        if (train(m[i].csv, out, m[i].hidden)) {
            fprintf(stderr, "training %s failed\n", out);
            return -1;
        }
        snprintf(m[i].dst, 300, "%s/model.kiln", out);
    }
    snprintf(g_latest, sizeof g_latest, "%s/latest", g_dir);
    return point_latest(g_model_a);
}

static void teardown(void)
{
    char *argv[] = {"/bin/rm", "-rf", g_dir, NULL};
    if (g_dir[0])
        run(argv);
}

/* ======================================================================
 * tests
 * ====================================================================== */

static server g_srv;

static const char *const rows[] = {"[0.1, 1, 2, 3]", "[10.2, 1, 2, 3]", "[19.7, 1, 2, 3]"};
static const float rows_f[3][4] = {{0.1f, 1, 2, 3}, {10.2f, 1, 2, 3}, {19.7f, 1, 2, 3}};

/* What the served model must answer for rows, from the checkpoint itself. */
static void expected(const char *path, char labels[3][64])
{
    kiln_model *m = NULL;
    kiln_error err = {0};
    KT_EQ_INT(model_load(path, &m, &err), 0);
    if (!m)
        return;
    int32_t cls[3];
    KT_EQ_INT(model_predict(m, &rows_f[0][0], 3, cls, NULL, &err), 0);
    for (int i = 0; i < 3; i++)
        snprintf(labels[i], 64, "%s", model_output_label(m, cls[i]));
    model_free(m);
}

static void check_predictions(const cJSON *arr, char labels[3][64], int n)
{
    KT_CHECK(cJSON_IsArray(arr));
    KT_EQ_INT(cJSON_GetArraySize(arr), n);
    for (int i = 0; i < n && i < cJSON_GetArraySize(arr); i++) {
        const cJSON *p = cJSON_GetArrayItem(arr, i);
        char got[64];
        if (cJSON_IsString(p))
            snprintf(got, sizeof got, "%s", p->valuestring);
        else
            snprintf(got, sizeof got, "%d", p->valueint);
        if (strcmp(got, labels[i]))
            fprintf(stderr, "prediction %d: got %s, want %s\n", i, got, labels[i]);
        KT_CHECK(!strcmp(got, labels[i]));
    }
}

static void test_routes(void)
{
    CURL *h = curl_easy_init();
    resp r = {0};
    char want[3][64];
    expected(g_model_a, want);

    KT_EQ_INT(get(h, g_srv.port, "/healthz", &r), 0);
    KT_EQ_INT(r.status, 200);
    KT_EQ_INT(get(h, g_srv.port, "/readyz", &r), 0);
    KT_EQ_INT(r.status, 200);
    KT_EQ_INT(get(h, g_srv.port, "/v2/health/live", &r), 0);
    KT_EQ_INT(r.status, 200);
    KT_EQ_INT(get(h, g_srv.port, "/v2/health/ready", &r), 0);
    KT_EQ_INT(r.status, 200);
    KT_EQ_INT(get(h, g_srv.port, "/v2/models/" NAME "/ready", &r), 0);
    KT_EQ_INT(r.status, 200);

    /* GET /v1/models/NAME */
    KT_EQ_INT(get(h, g_srv.port, "/v1/models/" NAME, &r), 0);
    KT_EQ_INT(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    KT_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "ready")));
    const cJSON *ver = cJSON_GetObjectItem(j, "version");
    const cJSON *ck = cJSON_GetObjectItem(j, "checkpoint");
    KT_CHECK(cJSON_IsString(ver) && strlen(ver->valuestring) == 8);
    KT_CHECK(cJSON_IsString(ck) && strstr(ck->valuestring, "/a/model.kiln"));
    KT_CHECK(!strcmp(cJSON_GetObjectItem(j, "name")->valuestring, NAME));
    char version[32] = "";
    if (cJSON_IsString(ver))
        snprintf(version, sizeof version, "%s", ver->valuestring);
    cJSON_Delete(j);

    /* v1 predict, with probabilities */
    char body[512];
    snprintf(body, sizeof body,
             "{\"instances\": [%s, %s, %s], \"parameters\": {\"probabilities\": true}}", rows[0],
             rows[1], rows[2]);
    KT_EQ_INT(post(h, g_srv.port, "/v1/models/" NAME ":predict", "application/json", body, &r), 0);
    KT_EQ_INT(r.status, 200);
    j = cJSON_Parse(r.body);
    check_predictions(cJSON_GetObjectItem(j, "predictions"), want, 3);
    const cJSON *pr = cJSON_GetObjectItem(j, "probabilities");
    KT_EQ_INT(cJSON_GetArraySize(pr), 3);
    for (int i = 0; i < cJSON_GetArraySize(pr); i++) {
        const cJSON *row = cJSON_GetArrayItem(pr, i);
        double s = 0;
        for (const cJSON *e = row ? row->child : NULL; e; e = e->next)
            s += e->valuedouble;
        KT_EQ_INT(cJSON_GetArraySize(row), 3);
        KT_NEAR(s, 1.0, 1e-3);
    }
    cJSON_Delete(j);

    /* v2 infer, nested data */
    snprintf(body, sizeof body,
             "{\"id\":\"q1\",\"inputs\":[{\"name\":\"x\",\"shape\":[3,4],\"datatype\":\"FP32\","
             "\"data\":[%s,%s,%s]}]}",
             rows[0], rows[1], rows[2]);
    KT_EQ_INT(post(h, g_srv.port, "/v2/models/" NAME "/infer", "application/json", body, &r), 0);
    KT_EQ_INT(r.status, 200);
    j = cJSON_Parse(r.body);
    KT_CHECK(!strcmp(cJSON_GetObjectItem(j, "model_name")->valuestring, NAME));
    KT_CHECK(!strcmp(cJSON_GetObjectItem(j, "model_version")->valuestring, version));
    KT_CHECK(!strcmp(cJSON_GetObjectItem(j, "id")->valuestring, "q1"));
    const cJSON *o0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "outputs"), 0);
    KT_CHECK(!strcmp(cJSON_GetObjectItem(o0, "name")->valuestring, "predictions"));
    KT_CHECK(!strcmp(cJSON_GetObjectItem(o0, "datatype")->valuestring, "BYTES"));
    KT_EQ_INT(cJSON_GetArrayItem(cJSON_GetObjectItem(o0, "shape"), 0)->valueint, 3);
    check_predictions(cJSON_GetObjectItem(o0, "data"), want, 3);
    cJSON_Delete(j);

    /* v2 metadata */
    KT_EQ_INT(get(h, g_srv.port, "/v2/models/" NAME, &r), 0);
    KT_EQ_INT(r.status, 200);
    j = cJSON_Parse(r.body);
    KT_CHECK(!strcmp(cJSON_GetObjectItem(j, "platform")->valuestring, "kiln"));
    KT_CHECK(
        !strcmp(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "versions"), 0)->valuestring, version));
    const cJSON *in0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "inputs"), 0);
    KT_EQ_INT(cJSON_GetArrayItem(cJSON_GetObjectItem(in0, "shape"), 1)->valueint, 4);
    cJSON_Delete(j);

    /* CSV with a header and the label column still in place */
    snprintf(body, sizeof body, "f0,f1,f2,f3,kind\n0.1,1,2,3,x\n10.2,1,2,3,y\n19.7,1,2,3,z\n");
    KT_EQ_INT(post(h, g_srv.port, "/v1/models/" NAME ":predict", "text/csv", body, &r), 0);
    KT_EQ_INT(r.status, 200);
    j = cJSON_Parse(r.body);
    check_predictions(cJSON_GetObjectItem(j, "predictions"), want, 3);
    cJSON_Delete(j);
    /* and without a header or label */
    KT_EQ_INT(post(h, g_srv.port, "/v1/models/" NAME ":predict", "text/csv", "0.1,1,2,3\n", &r), 0);
    KT_EQ_INT(r.status, 200);
    j = cJSON_Parse(r.body);
    check_predictions(cJSON_GetObjectItem(j, "predictions"), want, 1);
    cJSON_Delete(j);

    KT_EQ_INT(get(h, g_srv.port, "/metrics", &r), 0);
    KT_EQ_INT(r.status, 200);
    char info[128];
    snprintf(info, sizeof info, "kiln_serve_model_info{model=\"%s\",version=\"%s\"}", NAME,
             version);
    KT_NEAR(metric(r.body, info), 1, 0);
    free(r.body);
    curl_easy_cleanup(h);
}

static void test_bad_inputs(void)
{
    CURL *h = curl_easy_init();
    resp r = {0};
    static const struct {
        const char *method, *path, *ctype, *body;
        int status;
    } cases[] = {
        {"POST", "/v1/models/" NAME ":predict", "application/json", "{\"instances\": [[1,2,3]]}",
         422},
        {"POST", "/v1/models/" NAME ":predict", "application/json",
         "{\"instances\": [[1,2,3,\"x\"]]}", 422},
        {"POST", "/v1/models/" NAME ":predict", "application/json", "{\"instances\": [[1,2,3,4]",
         400},
        {"POST", "/v1/models/" NAME ":predict", "application/json", "not json", 400},
        {"POST", "/v1/models/" NAME ":predict", "text/csv", "1,2,abc,4\n", 422},
        {"POST", "/v1/models/" NAME ":predict", "text/csv", "1,2,4\n", 422},
        {"POST", "/v1/models/" NAME ":predict", "application/xml", "<x/>", 415},
        {"POST", "/v1/models/nope:predict", "application/json", "{\"instances\": [[1,2,3,4]]}",
         404},
        {"GET", "/v1/models/" NAME ":predict", NULL, NULL, 405},
        {"GET", "/v1/models/nope", NULL, NULL, 404},
        {"GET", "/no/such/path", NULL, NULL, 404},
        {"DELETE", "/v2/models/" NAME, NULL, NULL, 405},
        {"POST", "/v2/models/" NAME "/infer", "application/json",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"BYTES\",\"data\":[1,2,3,4]}]"
         "}",
         422},
        {"POST", "/v2/models/" NAME "/infer", "application/json",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,5],\"datatype\":\"FP32\",\"data\":[1,2,3,4,5]}]"
         "}",
         422},
        {"POST", "/v2/models/" NAME "/versions/00000000/infer", "application/json",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}",
         404},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = http(h, g_srv.port, cases[i].method, cases[i].path, cases[i].ctype, cases[i].body,
                      cases[i].body ? strlen(cases[i].body) : 0, &r);
        KT_EQ_INT(rc, 0);
        if (r.status != cases[i].status)
            fprintf(stderr, "case %zu (%s %s): %ld %s\n", i, cases[i].method, cases[i].path,
                    r.status, r.body);
        KT_EQ_INT(r.status, cases[i].status);
        KT_CHECK(is_json_error(r.body));
        /* still up, still answering */
        KT_EQ_INT(post(h, g_srv.port, "/v1/models/" NAME ":predict", NULL,
                       "{\"instances\": [[1,2,3,4]]}", &r),
                  0);
        KT_EQ_INT(r.status, 200);
    }

    /* a body over --max-body (64 KiB in this server) */
    size_t big = 100000;
    char *b = malloc(big + 1);
    KT_CHECK(b != NULL);
    if (b) {
        memset(b, ' ', big);
        memcpy(b, "{\"instances\":[[1,2,3,4]]}", 25);
        b[big] = '\0';
        KT_EQ_INT(http(h, g_srv.port, "POST", "/v1/models/" NAME ":predict", "application/json", b,
                       big, &r),
                  0);
        KT_EQ_INT(r.status, 413);
        KT_CHECK(is_json_error(r.body));
        /* the same with Expect: 100-continue is refused before the body is
         * sent; a body within the limit is invited (100) and answered at
         * once rather than after the client's wait for the 100 */
        g_expect = 1;
        KT_EQ_INT(http(h, g_srv.port, "POST", "/v1/models/" NAME ":predict", "application/json", b,
                       big, &r),
                  0);
        KT_EQ_INT(r.status, 413);
        KT_CHECK(is_json_error(r.body));
        double t = now_s();
        KT_EQ_INT(http(h, g_srv.port, "POST", "/v1/models/" NAME ":predict", "application/json", b,
                       30000, &r),
                  0);
        KT_EQ_INT(r.status, 200);
        KT_CHECK(now_s() - t < 0.9);
        g_expect = 0;
        free(b);
    }

    /* slowloris: a client that sends half a body and stalls, and one that
     * sends part of its headers and stalls, each get 408 after --timeout
     * (2 s here) while other clients are served normally meanwhile */
    static const char *const slow[] = {
        "POST /v1/models/" NAME ":predict HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inst",
        "POST /v1/models/" NAME ":predict HTTP/1.1\r\nHost: x\r\nContent-Ty",
    };
    int fds[2];
    for (int i = 0; i < 2; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)g_srv.port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        KT_EQ_INT(connect(fds[i], (struct sockaddr *)&a, sizeof a), 0);
        KT_EQ_INT(send(fds[i], slow[i], strlen(slow[i]), 0), (long)strlen(slow[i]));
    }
    double t0 = now_s();
    for (int i = 0; i < 5; i++) {
        KT_EQ_INT(post(h, g_srv.port, "/v1/models/" NAME ":predict", NULL,
                       "{\"instances\": [[1,2,3,4]]}", &r),
                  0);
        KT_EQ_INT(r.status, 200);
    }
    KT_CHECK(now_s() - t0 < 1.0);
    for (int i = 0; i < 2; i++) {
        struct timeval tv = {10, 0};
        setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char buf[1024];
        ssize_t n = recv(fds[i], buf, sizeof buf - 1, 0);
        KT_CHECK(n > 0);
        buf[n > 0 ? n : 0] = '\0';
        KT_STR_CONTAINS(buf, "HTTP/1.1 408");
        KT_STR_CONTAINS(buf, "{\"error\":");
        close(fds[i]);
    }

    KT_EQ_INT(get(h, g_srv.port, "/healthz", &r), 0);
    KT_EQ_INT(r.status, 200);
    free(r.body);
    curl_easy_cleanup(h);
}

static void test_metric_counts(void)
{
    CURL *h = curl_easy_init();
    resp r = {0};
    const char *cnt = "kiln_serve_requests_total{route=\"v1_predict\",code=\"200\"}";
    const char *hist = "kiln_serve_request_duration_seconds_count{route=\"v1_predict\"}";
    const char *bad = "kiln_serve_requests_total{route=\"v1_predict\",code=\"422\"}";
    double c0 = scrape(h, g_srv.port, cnt), h0 = scrape(h, g_srv.port, hist);
    double b0 = scrape(h, g_srv.port, bad);
    KT_CHECK(c0 >= 0 && h0 >= 0);
    const int N = 37;
    for (int i = 0; i < N; i++) {
        KT_EQ_INT(post(h, g_srv.port, "/v1/models/" NAME ":predict", NULL,
                       "{\"instances\": [[1,2,3,4]]}", &r),
                  0);
        KT_EQ_INT(r.status, 200);
    }
    for (int i = 0; i < 3; i++)
        post(h, g_srv.port, "/v1/models/" NAME ":predict", NULL, "{\"instances\": [[1]]}", &r);
    KT_NEAR(scrape(h, g_srv.port, cnt) - c0, N, 0);
    KT_NEAR(scrape(h, g_srv.port, hist) - h0, N + 3, 0);
    KT_NEAR(scrape(h, g_srv.port, bad) - (b0 < 0 ? 0 : b0), 3, 0);
    KT_NEAR(scrape(h, g_srv.port, "kiln_serve_inflight_requests"), 1, 0); /* the scrape itself */
    free(r.body);
    curl_easy_cleanup(h);
}

/* ---- hot reload under load */

static atomic_int g_stop_client, g_sent, g_failed;

static void *client_main(void *arg)
{
    int port = *(int *)arg;
    CURL *h = curl_easy_init();
    resp r = {0};
    while (!atomic_load(&g_stop_client)) {
        int rc = post(h, port, "/v1/models/" NAME ":predict", "application/json",
                      "{\"instances\": [[10.2, 1, 2, 3]]}", &r);
        atomic_fetch_add(&g_sent, 1);
        if (rc || r.status != 200) {
            fprintf(stderr, "client: rc %d status %ld %s\n", rc, r.status, r.body ? r.body : "");
            atomic_fetch_add(&g_failed, 1);
        }
    }
    free(r.body);
    curl_easy_cleanup(h);
    return NULL;
}

static int current_version(CURL *h, char *out, size_t n)
{
    resp r = {0};
    int ok = -1;
    if (!get(h, g_srv.port, "/v1/models/" NAME, &r) && r.status == 200) {
        cJSON *j = cJSON_Parse(r.body);
        const cJSON *v = cJSON_GetObjectItem(j, "version");
        if (cJSON_IsString(v)) {
            snprintf(out, n, "%s", v->valuestring);
            ok = 0;
        }
        cJSON_Delete(j);
    }
    free(r.body);
    return ok;
}

static void test_hot_reload(void)
{
    char bad1[320], bad2[320];
    snprintf(bad1, sizeof bad1, "%s/bitflip.kiln", g_dir);
    snprintf(bad2, sizeof bad2, "%s/truncated.kiln", g_dir);
    KT_EQ_INT(copy_file(g_model_a, bad1, 100, -1), 0);
    KT_EQ_INT(copy_file(g_model_b, bad2, -1, 200), 0);

    CURL *h = curl_easy_init();
    char ver_a[32] = "", ver_b[32] = "", cur[32] = "";
    KT_EQ_INT(current_version(h, ver_a, sizeof ver_a), 0);
    const char *fail = "kiln_serve_model_reloads_total{result=\"failure\"}";

    pthread_t th;
    atomic_store(&g_stop_client, 0);
    atomic_store(&g_sent, 0);
    atomic_store(&g_failed, 0);
    pthread_create(&th, NULL, client_main, &g_srv.port);

    const char *serving = g_model_a;
    int valid_swaps = 0, corrupt_swaps = 0;
    for (int i = 0; i < 20; i++) {
        if (i % 3 == 1) {
            /* a corrupt file: refused, counted, the old model keeps serving */
            double f0 = scrape(h, g_srv.port, fail);
            KT_EQ_INT(point_latest(i % 2 ? bad1 : bad2), 0);
            double t0 = now_s();
            while (scrape(h, g_srv.port, fail) <= f0 && now_s() - t0 < 10)
                sleep_ms(20);
            KT_NEAR(scrape(h, g_srv.port, fail), f0 + 1, 0);
            KT_EQ_INT(current_version(h, cur, sizeof cur), 0);
            KT_CHECK(!strcmp(cur, serving == g_model_a ? ver_a : ver_b));
            corrupt_swaps++;
        } else {
            /* a valid file, alternately of the other hidden size */
            const char *next = serving == g_model_a ? g_model_b : g_model_a;
            KT_EQ_INT(point_latest(next), 0);
            double t0 = now_s();
            char before[32];
            snprintf(before, sizeof before, "%s", serving == g_model_a ? ver_a : ver_b);
            while (!current_version(h, cur, sizeof cur) && !strcmp(cur, before) &&
                   now_s() - t0 < 10)
                sleep_ms(20);
            KT_CHECK(strcmp(cur, before) != 0);
            if (next == g_model_b && !ver_b[0])
                snprintf(ver_b, sizeof ver_b, "%s", cur);
            KT_CHECK(!strcmp(cur, next == g_model_a ? ver_a : ver_b));
            serving = next;
            valid_swaps++;
        }
    }
    atomic_store(&g_stop_client, 1);
    pthread_join(th, NULL);
    fprintf(stderr, "hot reload: %d valid, %d corrupt swaps, %d requests, %d failed\n", valid_swaps,
            corrupt_swaps, atomic_load(&g_sent), atomic_load(&g_failed));
    KT_EQ_INT(valid_swaps + corrupt_swaps, 20);
    KT_CHECK(strcmp(ver_a, ver_b) != 0);
    KT_EQ_INT(atomic_load(&g_failed), 0);
    KT_CHECK(atomic_load(&g_sent) > 20);

    /* a valid model with another input count is accepted (and logged):
     * requests must now have 3 values */
    KT_EQ_INT(point_latest(g_model_c), 0);
    resp r = {0};
    double t0 = now_s();
    int n_inputs = 0;
    while (now_s() - t0 < 10 && n_inputs != 3) {
        if (!get(h, g_srv.port, "/v1/models/" NAME, &r) && r.status == 200) {
            cJSON *j = cJSON_Parse(r.body);
            n_inputs =
                cJSON_GetObjectItem(j, "inputs") ? cJSON_GetObjectItem(j, "inputs")->valueint : 0;
            cJSON_Delete(j);
        }
        sleep_ms(20);
    }
    KT_EQ_INT(n_inputs, 3);
    KT_EQ_INT(post(h, g_srv.port, "/v1/models/" NAME ":predict", NULL,
                   "{\"instances\": [[1,2,3,4]]}", &r),
              0);
    KT_EQ_INT(r.status, 422);
    KT_EQ_INT(
        post(h, g_srv.port, "/v1/models/" NAME ":predict", NULL, "{\"instances\": [[1,2,3]]}", &r),
        0);
    KT_EQ_INT(r.status, 200);
    /* back to A for whoever runs next */
    KT_EQ_INT(point_latest(g_model_a), 0);
    t0 = now_s();
    while (!current_version(h, cur, sizeof cur) && strcmp(cur, ver_a) && now_s() - t0 < 10)
        sleep_ms(20);
    KT_CHECK(!strcmp(cur, ver_a));
    free(r.body);
    curl_easy_cleanup(h);
}

/* A server started before its model exists is live but not ready, says
 * so with JSON errors, and becomes ready when the file appears. */
static void test_wait_for_model(void)
{
    char path[320];
    snprintf(path, sizeof path, "%s/later.kiln", g_dir);
    server s;
    KT_EQ_INT(start_server(&s, path, NULL, NULL), 0);
    CURL *h = curl_easy_init();
    resp r = {0};
    KT_EQ_INT(get(h, s.port, "/healthz", &r), 0);
    KT_EQ_INT(r.status, 200);
    KT_EQ_INT(get(h, s.port, "/readyz", &r), 0);
    KT_EQ_INT(r.status, 503);
    KT_EQ_INT(
        post(h, s.port, "/v1/models/" NAME ":predict", NULL, "{\"instances\": [[1,2,3,4]]}", &r),
        0);
    KT_EQ_INT(r.status, 503);
    KT_CHECK(is_json_error(r.body));
    KT_EQ_INT(symlink(g_model_a, path), 0);
    double t0 = now_s();
    while (now_s() - t0 < 10 && !(get(h, s.port, "/readyz", &r) == 0 && r.status == 200))
        sleep_ms(20);
    KT_EQ_INT(r.status, 200);
    KT_EQ_INT(
        post(h, s.port, "/v1/models/" NAME ":predict", NULL, "{\"instances\": [[1,2,3,4]]}", &r),
        0);
    KT_EQ_INT(r.status, 200);
    KT_EQ_INT(stop_server(&s, SIGINT), 0);
    free(r.body);
    curl_easy_cleanup(h);
}

/* An idle server stops on SIGTERM with exit code 0. */
static void test_clean_stop(void)
{
    KT_EQ_INT(stop_server(&g_srv, SIGTERM), 0);
}

/* During the drain after SIGTERM the server still answers, reports not
 * ready, and ends every connection after its answer, so a keep-alive
 * client reconnects (through the Service, to a pod that stays) instead of
 * reusing a connection the stop would cut. */
static void test_drain_closes_connections(void)
{
    server s;
    KT_EQ_INT(start_server(&s, g_model_a, "--drain=1", NULL), 0);
    CURL *h = curl_easy_init();
    resp r = {0};
    long conns = -1;
    KT_EQ_INT(get(h, s.port, "/v1/models/" NAME, &r), 0);
    KT_EQ_INT(r.status, 200);
    KT_EQ_INT(get(h, s.port, "/v1/models/" NAME, &r), 0);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &conns);
    KT_EQ_INT(conns, 0); /* kept alive before the signal */
    kill(s.pid, SIGTERM);
    sleep_ms(200);
    KT_EQ_INT(get(h, s.port, "/readyz", &r), 0);
    KT_EQ_INT(r.status, 503);
    KT_EQ_INT(get(h, s.port, "/v1/models/" NAME, &r), 0);
    KT_EQ_INT(r.status, 200);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &conns);
    KT_EQ_INT(conns, 1); /* the answer before ended its connection */
    int st;
    KT_EQ_INT(waitpid(s.pid, &st, 0), s.pid);
    KT_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    free(r.body);
    curl_easy_cleanup(h);
}

/* ---- SIGTERM with a request in flight */

typedef struct upload {
    const char *body;
    size_t len, off;
    int calls;
    pid_t pid;
} upload;

/* Hands curl the body in two halves; before the second, the server gets
 * SIGTERM, so the request is in flight (headers and half a body read)
 * when the signal lands. */
static size_t on_read(char *buf, size_t sz, size_t n, void *ud)
{
    upload *u = ud;
    size_t room = sz * n, want = u->len - u->off;
    if (u->calls++ == 0)
        want = u->len / 2;
    else if (u->off < u->len && u->calls == 2) {
        kill(u->pid, SIGTERM);
        sleep_ms(400);
    }
    if (want > room)
        want = room;
    memcpy(buf, u->body + u->off, want);
    u->off += want;
    return want;
}

static void test_sigterm_in_flight(void)
{
    server s;
    KT_EQ_INT(start_server(&s, g_model_a, NULL, NULL), 0);
    const char *body = "{\"instances\": [[10.2, 1, 2, 3], [0.1, 1, 2, 3]]}";
    upload u = {.body = body, .len = strlen(body), .pid = s.pid};
    resp r = {0};
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/models/" NAME ":predict", s.port);
    CURL *h = curl_easy_init();
    struct curl_slist *hd = curl_slist_append(NULL, "Expect:");
    hd = curl_slist_append(hd, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)u.len);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(h, CURLOPT_READDATA, &u);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
    CURLcode rc = curl_easy_perform(h);
    KT_EQ_INT(rc, CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    KT_EQ_INT(r.status, 200);
    KT_STR_CONTAINS(r.body, "\"predictions\":[");
    KT_CHECK(u.calls >= 2);
    int st;
    KT_EQ_INT(waitpid(s.pid, &st, 0), s.pid);
    KT_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    curl_slist_free_all(hd);
    free(r.body);
    curl_easy_cleanup(h);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);
    if (setup()) {
        fprintf(stderr, "setup failed\n");
        teardown();
        return 1;
    }
    if (start_server(&g_srv, g_latest, "--max-body=65536", "--timeout=2")) {
        fprintf(stderr, "the server did not come up\n");
        teardown();
        return 1;
    }
    KT_RUN(test_routes);
    KT_RUN(test_bad_inputs);
    KT_RUN(test_metric_counts);
    KT_RUN(test_hot_reload);
    KT_RUN(test_clean_stop);
    KT_RUN(test_wait_for_model);
    KT_RUN(test_sigterm_in_flight);
    KT_RUN(test_drain_closes_connections);
    teardown();
    curl_global_cleanup();
    return KT_DONE();
}
