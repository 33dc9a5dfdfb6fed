/* serve_route: request routing of the model server (see serve_route.h). */
#include "serve_route.h"

#include <string.h>

static const char *const route_names[SR__COUNT] = {
    [SR_V1_PREDICT] = "v1_predict", [SR_V1_MODEL] = "v1_model",
    [SR_V1_MODELS] = "v1_models",   [SR_V2_INFER] = "v2_infer",
    [SR_V2_MODEL] = "v2_model",     [SR_V2_MODEL_READY] = "v2_model_ready",
    [SR_V2_SERVER] = "v2_server",   [SR_V2_LIVE] = "v2_live",
    [SR_V2_READY] = "v2_ready",     [SR_HEALTHZ] = "healthz",
    [SR_READYZ] = "readyz",         [SR_METRICS] = "metrics",
    [SR_OTHER] = "other",
};

const char *serve_route_name(int route)
{
    return route >= 0 && route < SR__COUNT ? route_names[route] : "other";
}

int serve_method_has_body(int method)
{
    return method == SM_POST || method == SM_PUT || method == SM_PATCH;
}

static int starts(const char *s, const char *prefix)
{
    return !strncmp(s, prefix, strlen(prefix));
}

/* name is the first len bytes of s: equal to model and free of '/' */
static int name_is(const char *s, size_t len, const char *model)
{
    return len == strlen(model) && !memcmp(s, model, len);
}

static void set(serve_match *m, int route, int status, const char *why)
{
    m->route = route;
    m->status = status;
    m->why = why;
}

static void want(serve_match *m, int route, int method, int post)
{
    int ok = post ? method == SM_POST : (method == SM_GET || method == SM_HEAD);
    set(m, route, ok ? 0 : 405,
        ok     ? NULL
        : post ? "use POST on this path"
               : "use GET on this path");
}

static const char no_model[] = "no such model on this server";

static void match_v2_model(const char *rest, int method, const char *model, serve_match *m)
{
    /* rest: NAME[/versions/V][/infer|/ready] */
    const char *slash = strchr(rest, '/');
    size_t nlen = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *tail = rest + nlen;
    if (starts(tail, "/versions/")) {
        const char *v = tail + strlen("/versions/");
        const char *vend = strchr(v, '/');
        size_t vlen = vend ? (size_t)(vend - v) : strlen(v);
        if (!vlen) {
            set(m, SR_OTHER, 404, "no route for this path");
            return;
        }
        m->version = v;
        m->version_len = vlen;
        tail = v + vlen;
    }
    int route;
    if (!*tail)
        route = SR_V2_MODEL;
    else if (!strcmp(tail, "/infer"))
        route = SR_V2_INFER;
    else if (!strcmp(tail, "/ready"))
        route = SR_V2_MODEL_READY;
    else {
        set(m, SR_OTHER, 404, "no route for this path");
        return;
    }
    if (!nlen || !name_is(rest, nlen, model)) {
        set(m, route, 404, no_model);
        return;
    }
    want(m, route, method, route == SR_V2_INFER);
}

void serve_route_match(const char *path, int method, const char *model, serve_match *m)
{
    m->version = NULL;
    m->version_len = 0;
    static const struct {
        const char *path;
        int route;
    } fixed[] = {
        {"/healthz", SR_HEALTHZ},        {"/readyz", SR_READYZ},
        {"/metrics", SR_METRICS},        {"/v2", SR_V2_SERVER},
        {"/v2/health/live", SR_V2_LIVE}, {"/v2/health/ready", SR_V2_READY},
        {"/v1/models", SR_V1_MODELS},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        if (!strcmp(path, fixed[i].path)) {
            want(m, fixed[i].route, method, 0);
            return;
        }
    }
    if (starts(path, "/v1/models/")) {
        const char *rest = path + strlen("/v1/models/");
        size_t len = strlen(rest);
        static const char pred[] = ":predict";
        size_t pl = sizeof pred - 1;
        int route = SR_V1_MODEL;
        if (len > pl && !strcmp(rest + len - pl, pred)) {
            route = SR_V1_PREDICT;
            len -= pl;
        } else if (strchr(rest, ':')) {
            set(m, SR_OTHER, 404, "no route for this path (use NAME:predict)");
            return;
        }
        if (memchr(rest, '/', len)) {
            set(m, SR_OTHER, 404, "no route for this path");
            return;
        }
        if (!name_is(rest, len, model)) {
            set(m, route, 404, no_model);
            return;
        }
        want(m, route, method, route == SR_V1_PREDICT);
        return;
    }
    if (starts(path, "/v2/models/")) {
        match_v2_model(path + strlen("/v2/models/"), method, model, m);
        return;
    }
    set(m, SR_OTHER, 404, "no route for this path");
}
