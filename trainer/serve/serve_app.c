/* serve_app: transport-independent request handling (see serve_app.h). */
#include "serve_app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "klog.h"

#ifndef KILN_VERSION
#define KILN_VERSION "dev"
#endif

static const char CT_JSON[] = "application/json";
static const char CT_TEXT[] = "text/plain; version=0.0.4; charset=utf-8";

/* ======================================================================
 * setup
 * ====================================================================== */

int serve_app_init(serve_app *app, const serve_config *cfg)
{
    memset(app, 0, sizeof *app);
    app->cfg = *cfg;
    serve_metrics_init(&app->metrics);
    atomic_init(&app->stopping, 0);
    return serve_holder_init(&app->holder, cfg->model_path, &app->metrics);
}

void serve_app_release(serve_app *app)
{
    serve_holder_release(&app->holder);
}

void serve_job_init(serve_job *j)
{
    j->sm = NULL;
    j->v2 = 0;
    serve_batch_init(&j->batch);
}

void serve_job_release(serve_job *j)
{
    serve_model_put(j->sm);
    serve_batch_release(&j->batch);
    j->sm = NULL;
}

void serve_scratch_init(serve_scratch *s)
{
    memset(s, 0, sizeof *s);
    serve_job_init(&s->job);
    serve_csv_init(&s->csv);
}

void serve_scratch_release(serve_scratch *s)
{
    serve_job_release(&s->job);
    serve_csv_release(&s->csv);
    free(s->cls);
    free(s->probs);
    free(s->ws);
    free(s->x);
    memset(s, 0, sizeof *s);
}

/* Workspace for model_predict_ws; it stops growing at 64 instances. */
static int ws_room(serve_scratch *s, const kiln_model *m, int n)
{
    size_t need = model_ws_floats(m, n);
    if (need <= s->ws_cap)
        return 0;
    float *w = realloc(s->ws, need * sizeof *w);
    if (!w)
        return KILN_ENOMEM;
    s->ws = w;
    s->ws_cap = need;
    return 0;
}

static int scratch_room(serve_scratch *s, int n, int n_out)
{
    size_t nc = (size_t)n, np = (size_t)n * (size_t)(n_out > 0 ? n_out : 1);
    if (nc > s->cls_cap) {
        int32_t *c = realloc(s->cls, nc * sizeof *c);
        if (!c)
            return KILN_ENOMEM;
        s->cls = c;
        s->cls_cap = nc;
    }
    if (np > s->probs_cap) {
        float *p = realloc(s->probs, np * sizeof *p);
        if (!p)
            return KILN_ENOMEM;
        s->probs = p;
        s->probs_cap = np;
    }
    return 0;
}

/* ======================================================================
 * helpers
 * ====================================================================== */

const char *serve_status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

void serve_error(serve_response *rs, int status, const char *msg)
{
    sbuf_reset(rs->body);
    rs->status = status;
    rs->ctype = CT_JSON;
    if (serve_write_error(rs->body, msg)) {
        sbuf_reset(rs->body);
        rs->status = 500;
        /* a fixed body needs no allocation beyond what the buffer has */
        sbuf_puts(rs->body, "{\"error\":\"out of memory\"}");
    }
}

static void ok_json(serve_response *rs, int rc)
{
    if (rc)
        serve_error(rs, 500, "out of memory");
    else {
        rs->status = 200;
        rs->ctype = CT_JSON;
    }
}

enum body_kind { BODY_JSON, BODY_CSV, BODY_OTHER };

static int media_is(const char *ct, const char *type)
{
    size_t n = strlen(type);
    return !strncasecmp(ct, type, n) && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static enum body_kind body_kind(const char *ct)
{
    while (ct && (*ct == ' ' || *ct == '\t'))
        ct++;
    if (!ct || !*ct)
        return BODY_JSON;
    if (media_is(ct, "text/csv") || media_is(ct, "application/csv"))
        return BODY_CSV;
    /* curl -d sends form-urlencoded and many clients say text/plain for a
     * JSON body: both are read as JSON. */
    if (media_is(ct, "application/json") || media_is(ct, "text/plain") ||
        media_is(ct, "application/x-www-form-urlencoded") || media_is(ct, "*/*"))
        return BODY_JSON;
    const char *semi = strchr(ct, ';');
    size_t n = semi ? (size_t)(semi - ct) : strlen(ct);
    if (n >= 5 && !strncasecmp(ct + n - 5, "+json", 5))
        return BODY_JSON;
    return BODY_OTHER;
}

static int query_flag(const char *q, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = q; p && *p;) {
        if (!strncmp(p, name, n) && p[n] == '=')
            return !strncmp(p + n + 1, "true", 4) || p[n + 1] == '1';
        p = strchr(p, '&');
        if (p)
            p++;
    }
    return 0;
}

/* ======================================================================
 * inference
 * ====================================================================== */

/* Parses a JSON prediction into job; 1: pending (job->sm holds sm's
 * reference), 0: rs holds the error. */
static int parse_json(serve_model *sm, serve_job *job, const serve_request *rq, serve_response *rs,
                      int v2)
{
    kiln_error err = {0};
    serve_batch *b = &job->batch;
    int rc = v2 ? serve_parse_v2(b, rq->body, rq->len, sm->n_inputs, &err)
                : serve_parse_v1(b, rq->body, rq->len, sm->n_inputs, &err);
    if (rc) {
        serve_error(rs, b->status, err.msg);
        return 0;
    }
    if (b->want_probs && !sm->has_probs) {
        serve_error(rs, 422, "this model (kmeans) gives no probabilities");
        return 0;
    }
    job->sm = sm;
    job->v2 = v2;
    return 1;
}

static int grow_x(serve_scratch *s, size_t floats)
{
    if (floats <= s->x_cap)
        return 0;
    float *x = realloc(s->x, floats * sizeof *x);
    if (!x)
        return KILN_ENOMEM;
    s->x = x;
    s->x_cap = floats;
    return 0;
}

/* Jobs of at most SMALL_JOB instances are batched with their neighbours,
 * up to BATCH_ROWS instances (the engine's pass size): bigger jobs are
 * batches already and run alone, from their own buffer. */
#define SMALL_JOB  16
#define BATCH_ROWS 64

/* Inference of jobs[0..n) (same model, rows instances in all) and their
 * responses; the jobs' model references are dropped. */
static void run_group(serve_app *app, serve_scratch *s, serve_job *const *jobs,
                      serve_response *const *rss, int n, int rows)
{
    serve_model *sm = jobs[0]->sm;
    const size_t nin = (size_t)sm->n_inputs, nout = (size_t)sm->n_outputs;
    kiln_error err = {0};
    int status = 0;
    const char *why = NULL;
    const float *x = jobs[0]->batch.x;
    if (n > 1) {
        if (grow_x(s, (size_t)rows * nin)) {
            status = 413, why = "too many instances";
        } else {
            size_t off = 0;
            for (int i = 0; i < n; i++) {
                size_t k = (size_t)jobs[i]->batch.n * nin;
                memcpy(s->x + off, jobs[i]->batch.x, k * sizeof(float));
                off += k;
            }
            x = s->x;
        }
    }
    if (!status && (scratch_room(s, rows, sm->n_outputs) || ws_room(s, sm->m, rows)))
        status = 413, why = "too many instances";
    float *probs = sm->has_probs ? s->probs : NULL;
    if (!status) {
        int rc = model_predict_ws(sm->m, x, rows, s->cls, probs, s->ws, s->ws_cap, &err);
        if (rc)
            status = rc == KILN_EINVAL ? 422 : 500, why = err.msg;
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        serve_job *j = jobs[i];
        serve_response *rs = rss[i];
        const serve_batch *b = &j->batch;
        if (status) {
            serve_error(rs, status, why);
        } else {
            const float *p = b->want_probs ? probs + off * nout : NULL;
            sbuf_reset(rs->body);
            int rc =
                j->v2 ? serve_write_v2(rs->body, app->cfg.name, sm->version, b->id, &sm->labels,
                                       s->cls + off, p, b->n, sm->n_outputs)
                      : serve_write_v1(rs->body, &sm->labels, s->cls + off, p, b->n, sm->n_outputs);
            ok_json(rs, rc);
        }
        off += (size_t)b->n;
        serve_model_put(j->sm);
        j->sm = NULL;
    }
}

void serve_run_jobs(serve_app *app, serve_scratch *s, serve_job *const *jobs,
                    serve_response *const *rs, int n)
{
    for (int i = 0; i < n;) {
        serve_model *sm = jobs[i]->sm;
        int rows = jobs[i]->batch.n, end = i + 1;
        if (rows <= SMALL_JOB)
            while (end < n && jobs[end]->sm == sm && jobs[end]->batch.n <= SMALL_JOB &&
                   rows + jobs[end]->batch.n <= BATCH_ROWS)
                rows += jobs[end++]->batch.n;
        run_group(app, s, jobs + i, rs + i, end - i, rows);
        i = end;
    }
}

static void predict_csv(serve_scratch *s, serve_model *sm, const serve_request *rq,
                        serve_response *rs)
{
    kiln_error err = {0};
    serve_csv *c = &s->csv;
    c->names = (const char *const *)sm->input_names;
    c->nnames = sm->n_input_names;
    if (serve_parse_csv(c, rq->body, rq->len, &err)) {
        serve_error(rs, c->status, err.msg);
        return;
    }
    int want_probs = query_flag(rq->query, "probabilities");
    if (want_probs && !sm->has_probs) {
        serve_error(rs, 422, "this model (kmeans) gives no probabilities");
        return;
    }
    if (scratch_room(s, c->nrows, sm->n_outputs)) {
        serve_error(rs, 413, "too many rows");
        return;
    }
    for (int r = 0; r < c->nrows; r++) {
        int n = c->row_off[r + 1] - c->row_off[r];
        const char *const *cells = c->cells + c->row_off[r];
        float *p = want_probs ? s->probs + (size_t)r * (size_t)sm->n_outputs : NULL;
        kiln_error e = {0};
        if (n != sm->n_inputs && n != sm->n_inputs + 1) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "CSV row %d has %d cells; the model takes %d (or %d with the label)",
                     r + 1 + c->header, n, sm->n_inputs, sm->n_inputs + 1);
            serve_error(rs, 422, msg);
            return;
        }
        int rc = model_predict_cells(sm->m, cells, n, &s->cls[r], p, &e);
        if (rc) {
            char msg[KILN_ERRMSG_MAX + 32];
            snprintf(msg, sizeof msg, "CSV row %d: %s", r + 1 + c->header, e.msg);
            serve_error(rs, rc == KILN_EINVAL ? 422 : 500, msg);
            return;
        }
    }
    sbuf_reset(rs->body);
    ok_json(rs, serve_write_v1(rs->body, &sm->labels, s->cls, want_probs ? s->probs : NULL,
                               c->nrows, sm->n_outputs));
}

/* ======================================================================
 * metadata
 * ====================================================================== */

static void model_v1(serve_app *app, serve_model *sm, serve_response *rs)
{
    sbuf *o = rs->body;
    sbuf_reset(o);
    int rc = sbuf_puts(o, "{\"name\":");
    rc = rc ? rc : sbuf_json_str(o, app->cfg.name);
    rc = rc ? rc : sbuf_puts(o, ",\"ready\":true,\"version\":");
    rc = rc ? rc : sbuf_json_str(o, sm->version);
    rc = rc ? rc : sbuf_puts(o, ",\"checkpoint\":");
    rc = rc ? rc : sbuf_json_str(o, sm->path);
    rc = rc ? rc : sbuf_puts(o, ",\"family\":");
    rc = rc ? rc : sbuf_json_str(o, model_family(sm->m));
    rc = rc ? rc : sbuf_puts(o, ",\"inputs\":");
    rc = rc ? rc : sbuf_int(o, sm->n_inputs);
    rc = rc ? rc : sbuf_puts(o, ",\"outputs\":");
    rc = rc ? rc : sbuf_int(o, sm->n_outputs);
    rc = rc ? rc : sbuf_putc(o, '}');
    ok_json(rs, rc);
}

static void model_v2(serve_app *app, serve_model *sm, serve_response *rs)
{
    sbuf *o = rs->body;
    sbuf_reset(o);
    int h, w, c;
    int img = model_is_image(sm->m, &h, &w, &c);
    int rc = sbuf_puts(o, "{\"name\":");
    rc = rc ? rc : sbuf_json_str(o, app->cfg.name);
    rc = rc ? rc : sbuf_puts(o, ",\"versions\":[");
    rc = rc ? rc : sbuf_json_str(o, sm->version);
    rc = rc ? rc
            : sbuf_puts(o, "],\"platform\":\"kiln\",\"inputs\":[{\"name\":\"input\","
                           "\"datatype\":\"FP32\",\"shape\":[-1,");
    if (img)
        rc = rc ? rc : sbuf_printf(o, "%d,%d,%d", h, w, c);
    else
        rc = rc ? rc : sbuf_int(o, sm->n_inputs);
    rc = rc ? rc : sbuf_puts(o, "]}],\"outputs\":[{\"name\":\"predictions\",\"datatype\":");
    rc = rc ? rc : sbuf_puts(o, sm->labels.numeric ? "\"INT64\"" : "\"BYTES\"");
    rc = rc ? rc : sbuf_puts(o, ",\"shape\":[-1]}");
    if (sm->has_probs)
        rc = rc ? rc
                : sbuf_printf(o,
                              ",{\"name\":\"probabilities\",\"datatype\":\"FP32\","
                              "\"shape\":[-1,%d]}",
                              sm->n_outputs);
    rc = rc ? rc : sbuf_puts(o, "],\"parameters\":{\"family\":");
    rc = rc ? rc : sbuf_json_str(o, model_family(sm->m));
    rc = rc ? rc : sbuf_puts(o, ",\"labels\":[");
    for (int i = 0; i < sm->labels.n && !rc; i++) {
        if (i)
            rc = sbuf_putc(o, ',');
        rc = rc ? rc : sbuf_append(o, sm->labels.json[i], sm->labels.json_len[i]);
    }
    rc = rc ? rc : sbuf_puts(o, "]}}");
    ok_json(rs, rc);
}

static void ready_body(serve_response *rs, const char *name, int ready)
{
    sbuf *o = rs->body;
    sbuf_reset(o);
    int rc = 0;
    if (name) {
        rc = sbuf_puts(o, "{\"name\":");
        rc = rc ? rc : sbuf_json_str(o, name);
        rc = rc ? rc : sbuf_puts(o, ready ? ",\"ready\":true}" : ",\"ready\":false}");
    } else {
        rc = sbuf_puts(o, ready ? "{\"ready\":true}" : "{\"ready\":false}");
    }
    ok_json(rs, rc);
    if (!rc && !ready)
        rs->status = 503;
}

/* ======================================================================
 * dispatch
 * ====================================================================== */

void serve_handle(serve_app *app, serve_scratch *s, const serve_request *rq, serve_response *rs)
{
    serve_job *job = &s->job;
    if (serve_handle_defer(app, s, job, rq, rs))
        serve_run_jobs(app, s, &job, &rs, 1);
}

int serve_handle_defer(serve_app *app, serve_scratch *s, serve_job *job, const serve_request *rq,
                       serve_response *rs)
{
    serve_match mt;
    serve_route_match(rq->path, rq->method, app->cfg.name, &mt);
    rs->route = mt.route;
    if (mt.status) {
        serve_error(rs, mt.status, mt.why);
        return 0;
    }
    int stopping = atomic_load_explicit(&app->stopping, memory_order_relaxed);
    switch (mt.route) {
    case SR_HEALTHZ:
    case SR_V2_LIVE:
        sbuf_reset(rs->body);
        ok_json(rs, sbuf_puts(rs->body,
                              mt.route == SR_HEALTHZ ? "{\"status\":\"ok\"}" : "{\"live\":true}"));
        return 0;
    case SR_V1_MODELS:
        sbuf_reset(rs->body);
        {
            int rc = sbuf_puts(rs->body, "{\"models\":[");
            rc = rc ? rc : sbuf_json_str(rs->body, app->cfg.name);
            ok_json(rs, rc ? rc : sbuf_puts(rs->body, "]}"));
        }
        return 0;
    case SR_V2_SERVER:
        sbuf_reset(rs->body);
        ok_json(rs, sbuf_puts(rs->body, "{\"name\":\"kiln\",\"version\":\"" KILN_VERSION
                                        "\",\"extensions\":[]}"));
        return 0;
    case SR_METRICS: {
        serve_model *sm = serve_holder_get(&app->holder);
        sbuf_reset(rs->body);
        int rc =
            serve_metrics_render(&app->metrics, app->cfg.name, sm ? sm->version : NULL, rs->body);
        serve_model_put(sm);
        ok_json(rs, rc);
        if (rs->status == 200)
            rs->ctype = CT_TEXT;
        return 0;
    }
    default:
        break;
    }

    serve_model *sm = serve_holder_get(&app->holder);
    switch (mt.route) {
    case SR_READYZ:
    case SR_V2_READY:
        ready_body(rs, NULL, sm && !stopping);
        break;
    case SR_V2_MODEL_READY:
        ready_body(rs, app->cfg.name, sm && !stopping);
        break;
    default:
        if (!sm) {
            serve_error(rs, 503, "no model is loaded yet");
            break;
        }
        if (mt.version && (mt.version_len != strlen(sm->version) ||
                           memcmp(mt.version, sm->version, mt.version_len))) {
            serve_error(rs, 404, "no such model version on this server");
            break;
        }
        if (mt.route == SR_V1_MODEL) {
            model_v1(app, sm, rs);
        } else if (mt.route == SR_V2_MODEL) {
            model_v2(app, sm, rs);
        } else {
            enum body_kind k = body_kind(rq->ctype);
            if (k == BODY_OTHER || (k == BODY_CSV && mt.route == SR_V2_INFER))
                serve_error(rs, 415,
                            mt.route == SR_V2_INFER ? "send application/json"
                                                    : "send application/json or text/csv");
            else if (k == BODY_CSV)
                predict_csv(s, sm, rq, rs);
            else if (parse_json(sm, job, rq, rs, mt.route == SR_V2_INFER))
                return 1; /* the job holds sm's reference now */
        }
        break;
    }
    serve_model_put(sm);
    return 0;
}
