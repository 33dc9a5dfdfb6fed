/* kube_watch: incremental newline-framed event parser and watch runner. */
#include "kube_watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube_ws.h"

/* ---- parser ---- */

void kube_watch_parser_init(kube_watch_parser *p, size_t max, kube_watch_event_fn fn, void *ud)
{
    memset(p, 0, sizeof *p);
    p->max = max ? max : (size_t)128 << 20;
    p->fn = fn;
    p->ud = ud;
}

void kube_watch_parser_release(kube_watch_parser *p)
{
    free(p->buf);
    p->buf = NULL;
    p->len = p->cap = p->scanned = 0;
}

static int type_of(const char *t)
{
    if (!strcmp(t, "ADDED"))
        return KUBE_EV_ADDED;
    if (!strcmp(t, "MODIFIED"))
        return KUBE_EV_MODIFIED;
    if (!strcmp(t, "DELETED"))
        return KUBE_EV_DELETED;
    if (!strcmp(t, "BOOKMARK"))
        return KUBE_EV_BOOKMARK;
    if (!strcmp(t, "ERROR"))
        return KUBE_EV_ERROR;
    return 0;
}

int kube_watch_parse_event(const char *data, size_t len, int *type, cJSON **obj, kiln_error *err)
{
    while (len && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    cJSON *ev = cJSON_ParseWithLength(data, len);
    if (!ev)
        return kiln_fail(err, KILN_ECORRUPT, "watch: event is not JSON (%zu bytes)", len);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(ev, "type");
    cJSON *o = cJSON_GetObjectItemCaseSensitive(ev, "object");
    int ty = cJSON_IsString(t) ? type_of(t->valuestring) : 0;
    if (!ty || !cJSON_IsObject(o)) {
        cJSON_Delete(ev);
        return kiln_fail(err, KILN_ECORRUPT, "watch: not a watch event (type or object missing)");
    }
    *obj = cJSON_DetachItemViaPointer(ev, o);
    cJSON_Delete(ev);
    *type = ty;
    return 0;
}

static int deliver(kube_watch_parser *p, const char *line, size_t n, kiln_error *err)
{
    /* blank lines (keepalive newlines) carry nothing */
    size_t i = 0;
    while (i < n && (line[i] == ' ' || line[i] == '\r' || line[i] == '\t'))
        i++;
    if (i == n)
        return 0;
    int type;
    cJSON *obj;
    int rc = kube_watch_parse_event(line, n, &type, &obj, err);
    if (rc)
        return rc;
    p->events++;
    return p->fn(p->ud, type, obj);
}

int kube_watch_parser_feed(kube_watch_parser *p, const char *data, size_t len, kiln_error *err)
{
    if (len == 0)
        return 0;
    if (p->len + len + 1 > p->cap) {
        if (p->len + len > p->max)
            return kiln_fail(err, KILN_ENOMEM, "watch: event larger than %zu bytes", p->max);
        size_t nc = p->cap ? p->cap : 16384;
        while (nc < p->len + len + 1)
            nc *= 2;
        char *nb = realloc(p->buf, nc);
        if (!nb)
            return kiln_fail(err, KILN_ENOMEM, "watch: out of memory");
        p->buf = nb;
        p->cap = nc;
    }
    memcpy(p->buf + p->len, data, len);
    p->len += len;
    size_t start = 0;
    int rc = 0;
    /* only bytes after 'scanned' are new; older ones hold no newline */
    char *nl;
    while (!rc && (nl = memchr(p->buf + p->scanned, '\n', p->len - p->scanned))) {
        size_t end = (size_t)(nl - p->buf);
        rc = deliver(p, p->buf + start, end - start, err);
        start = end + 1;
        p->scanned = start;
    }
    if (start > 0) {
        memmove(p->buf, p->buf + start, p->len - start);
        p->len -= start;
    }
    p->scanned = p->len;
    return rc;
}

int kube_watch_parser_finish(kube_watch_parser *p, kiln_error *err)
{
    int rc = 0;
    if (p->len)
        rc = deliver(p, p->buf, p->len, err);
    p->len = p->scanned = 0;
    return rc;
}

/* ---- running a watch ---- */

int kube_watch_path(const kube_resource *r, const char *ns, const kube_watch_opts *o, char **out)
{
    char *path = NULL;
    char tmo[32];
    snprintf(tmo, sizeof tmo, "%d", o->timeout_seconds);
    if (kube_path(r, ns, NULL, NULL, &path) || kube_path_query(&path, "watch", "1") ||
        (o->bookmarks && kube_path_query(&path, "allowWatchBookmarks", "true")) ||
        (o->resource_version && o->resource_version[0] &&
         kube_path_query(&path, "resourceVersion", o->resource_version)) ||
        (o->label_selector && o->label_selector[0] &&
         kube_path_query(&path, "labelSelector", o->label_selector)) ||
        (o->field_selector && o->field_selector[0] &&
         kube_path_query(&path, "fieldSelector", o->field_selector)) ||
        (o->timeout_seconds > 0 && kube_path_query(&path, "timeoutSeconds", tmo))) {
        free(path);
        return KILN_ENOMEM;
    }
    *out = path;
    return 0;
}

typedef struct feed_ctx {
    kube_watch_parser p;
    kiln_error perr;
} feed_ctx;

static int feed_cb(void *ud, const char *data, size_t len)
{
    feed_ctx *f = ud;
    return kube_watch_parser_feed(&f->p, data, len, &f->perr);
}

static int msg_cb(void *ud, const char *data, size_t len)
{
    feed_ctx *f = ud;
    int type;
    cJSON *obj;
    int rc = kube_watch_parse_event(data, len, &type, &obj, &f->perr);
    if (rc)
        return rc;
    f->p.events++;
    return f->p.fn(f->p.ud, type, obj);
}

int kube_watch_run(kube_client *c, kube_stream *s, const kube_resource *r, const char *ns,
                   const kube_watch_opts *o, kube_watch_event_fn fn, void *ud, kube_err *err)
{
    char *path;
    if (kube_watch_path(r, ns, o, &path))
        return kiln_fail(&err->e, KILN_ENOMEM, "out of memory");
    feed_ctx f;
    kube_watch_parser_init(&f.p, 0, fn, ud);
    kiln_error_clear(&f.perr);
    int rc;
    if (o->websocket) {
        rc = kube_ws_stream(c, s, path, msg_cb, &f, o->idle_ms, err);
    } else {
        rc = kube_client_stream(c, s, path, feed_cb, &f, o->idle_ms, err);
        if (rc == 0)
            rc = kube_watch_parser_finish(&f.p, &f.perr);
    }
    if (rc && f.perr.code && !err->e.code)
        err->e = f.perr;
    else if (rc && f.perr.code)
        kiln_fail(&err->e, rc, "%s", f.perr.msg);
    kube_watch_parser_release(&f.p);
    free(path);
    return rc;
}
