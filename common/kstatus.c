/* kstatus: build and parse the meta/v1 Status object. */
#include "kstatus.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

static int dup_into(char **dst, const char *src)
{
    char *c = NULL;
    if (src) {
        size_t n = strlen(src);
        c = malloc(n + 1);
        if (!c)
            return KILN_ENOMEM;
        memcpy(c, src, n + 1);
    }
    free(*dst);
    *dst = c;
    return 0;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jint(const cJSON *o, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < -2147483648.0 || v->valuedouble > 2147483647.0)
        return dflt;
    return (int)v->valuedouble;
}

/* ---- life cycle ---- */

void kstatus_init(kstatus *s)
{
    memset(s, 0, sizeof *s);
}

void kstatus_release(kstatus *s)
{
    if (!s)
        return;
    free(s->reason);
    free(s->message);
    free(s->name);
    free(s->group);
    free(s->kind);
    free(s->uid);
    for (size_t i = 0; i < s->n_causes; i++) {
        free(s->causes[i].reason);
        free(s->causes[i].message);
        free(s->causes[i].field);
    }
    free(s->causes);
    kstatus_init(s);
}

/* ---- building ---- */

int kstatus_setf(kstatus *s, int code, const char *reason, const char *fmt, ...)
{
    char *msg = NULL;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return KILN_EINVAL;
        msg = malloc((size_t)n + 1);
        if (!msg)
            return KILN_ENOMEM;
        va_start(ap, fmt);
        vsnprintf(msg, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    if (dup_into(&s->reason, reason ? reason : kstatus_reason_for_code(code))) {
        free(msg);
        return KILN_ENOMEM;
    }
    free(s->message);
    s->message = msg;
    s->code = code;
    s->success = code >= 200 && code < 300;
    return 0;
}

int kstatus_set_details(kstatus *s, const char *name, const char *group, const char *kind,
                        const char *uid)
{
    if ((name && dup_into(&s->name, name)) || (group && dup_into(&s->group, group)) ||
        (kind && dup_into(&s->kind, kind)) || (uid && dup_into(&s->uid, uid)))
        return KILN_ENOMEM;
    return 0;
}

int kstatus_add_cause(kstatus *s, const char *reason, const char *message, const char *field)
{
    kstatus_cause *nc = realloc(s->causes, (s->n_causes + 1) * sizeof *nc);
    if (!nc)
        return KILN_ENOMEM;
    s->causes = nc;
    kstatus_cause *c = &nc[s->n_causes];
    memset(c, 0, sizeof *c);
    if (dup_into(&c->reason, reason) || dup_into(&c->message, message) ||
        dup_into(&c->field, field)) {
        free(c->reason);
        free(c->message);
        free(c->field);
        return KILN_ENOMEM;
    }
    s->n_causes++;
    return 0;
}

/* cJSON_Add*ToObject return NULL on failure; collect that into one flag. */
static void add_str(cJSON *o, const char *k, const char *v, int *bad)
{
    if (v && !cJSON_AddStringToObject(o, k, v))
        *bad = 1;
}

cJSON *kstatus_to_json(const kstatus *s)
{
    int bad = 0;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    add_str(o, "kind", "Status", &bad);
    add_str(o, "apiVersion", "v1", &bad);
    if (!cJSON_AddObjectToObject(o, "metadata"))
        bad = 1;
    add_str(o, "status", s->success ? "Success" : "Failure", &bad);
    add_str(o, "message", s->message, &bad);
    if (s->reason && s->reason[0])
        add_str(o, "reason", s->reason, &bad);
    if (s->name || s->group || s->kind || s->uid || s->retry_after_seconds > 0 || s->n_causes) {
        cJSON *d = cJSON_AddObjectToObject(o, "details");
        if (!d) {
            bad = 1;
        } else {
            add_str(d, "name", s->name, &bad);
            add_str(d, "group", s->group, &bad);
            add_str(d, "kind", s->kind, &bad);
            add_str(d, "uid", s->uid, &bad);
            if (s->n_causes) {
                cJSON *arr = cJSON_AddArrayToObject(d, "causes");
                for (size_t i = 0; arr && i < s->n_causes; i++) {
                    cJSON *c = cJSON_CreateObject();
                    if (!c || !cJSON_AddItemToArray(arr, c)) {
                        cJSON_Delete(c);
                        bad = 1;
                        break;
                    }
                    add_str(c, "reason", s->causes[i].reason, &bad);
                    add_str(c, "message", s->causes[i].message, &bad);
                    add_str(c, "field", s->causes[i].field, &bad);
                }
                if (!arr)
                    bad = 1;
            }
            if (s->retry_after_seconds > 0 &&
                !cJSON_AddNumberToObject(d, "retryAfterSeconds", s->retry_after_seconds))
                bad = 1;
        }
    }
    if (!cJSON_AddNumberToObject(o, "code", s->code))
        bad = 1;
    if (bad) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

char *kstatus_to_string(const kstatus *s)
{
    cJSON *o = kstatus_to_json(s);
    if (!o)
        return NULL;
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return txt;
}

/* ---- parsing ---- */

int kstatus_from_json(kstatus *s, const cJSON *obj, kiln_error *err)
{
    if (!cJSON_IsObject(obj))
        return kiln_fail(err, KILN_EINVAL, "status: not a JSON object");
    kstatus_release(s);
    const char *st = jstr(obj, "status");
    s->code = jint(obj, "code", 0);
    s->success = st ? strcmp(st, "Success") == 0 : (s->code >= 200 && s->code < 300);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(obj, "details");
    if (dup_into(&s->reason, jstr(obj, "reason")) || dup_into(&s->message, jstr(obj, "message")))
        goto oom;
    if (cJSON_IsObject(d)) {
        if (dup_into(&s->name, jstr(d, "name")) || dup_into(&s->group, jstr(d, "group")) ||
            dup_into(&s->kind, jstr(d, "kind")) || dup_into(&s->uid, jstr(d, "uid")))
            goto oom;
        s->retry_after_seconds = jint(d, "retryAfterSeconds", 0);
        if (s->retry_after_seconds < 0)
            s->retry_after_seconds = 0;
        const cJSON *causes = cJSON_GetObjectItemCaseSensitive(d, "causes");
        if (!cJSON_IsArray(causes))
            causes = NULL;
        const cJSON *c;
        cJSON_ArrayForEach(c, causes)
        {
            if (!cJSON_IsObject(c))
                continue;
            const char *r = jstr(c, "reason");
            if (!r)
                r = jstr(c, "type");
            if (kstatus_add_cause(s, r, jstr(c, "message"), jstr(c, "field")))
                goto oom;
        }
    }
    return 0;
oom:
    kstatus_release(s);
    return kiln_fail(err, KILN_ENOMEM, "status: out of memory");
}

int kstatus_parse(kstatus *s, const char *body, size_t len, int http_code, kiln_error *err)
{
    kstatus_release(s);
    cJSON *root = body && len ? cJSON_ParseWithLength(body, len) : NULL;
    const char *kind = root ? jstr(root, "kind") : NULL;
    if (root && kind && strcmp(kind, "Status") == 0) {
        int rc = kstatus_from_json(s, root, err);
        cJSON_Delete(root);
        if (rc)
            return rc;
        if (s->code == 0)
            s->code = http_code;
        if (!s->reason && dup_into(&s->reason, kstatus_reason_for_code(s->code)))
            return kiln_fail(err, KILN_ENOMEM, "status: out of memory");
        return 0;
    }
    cJSON_Delete(root);
    /* Not a Status: quote a printable prefix of the body so the caller can
     * still tell a proxy error page from an empty reply. */
    char quoted[161];
    size_t q = 0;
    for (size_t i = 0; body && i < len && q < sizeof quoted - 1; i++) {
        unsigned char ch = (unsigned char)body[i];
        quoted[q++] = ch >= 0x20 && ch < 0x7f ? (char)ch : ' ';
    }
    quoted[q] = '\0';
    int rc = q ? kstatus_setf(s, http_code, NULL, "HTTP %d: %s", http_code, quoted)
               : kstatus_setf(s, http_code, NULL, "HTTP %d with no body", http_code);
    if (rc)
        return kiln_fail(err, KILN_ENOMEM, "status: out of memory");
    return 0;
}

/* ---- queries ---- */

const char *kstatus_reason_for_code(int code)
{
    switch (code) {
    case 400:
        return "BadRequest";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "NotFound";
    case 405:
        return "MethodNotAllowed";
    case 406:
        return "NotAcceptable";
    case 409:
        return "Conflict";
    case 410:
        return "Expired";
    case 413:
        return "RequestEntityTooLarge";
    case 415:
        return "UnsupportedMediaType";
    case 422:
        return "Invalid";
    case 429:
        return "TooManyRequests";
    case 500:
        return "InternalError";
    case 503:
        return "ServiceUnavailable";
    case 504:
        return "Timeout";
    default:
        return "";
    }
}

int kstatus_is(const kstatus *s, const char *reason)
{
    return s && s->reason && reason && strcmp(s->reason, reason) == 0;
}

int kstatus_kiln_code(const kstatus *s)
{
    if (s->code >= 200 && s->code < 300)
        return 0;
    switch (s->code) {
    case 404:
        return KILN_ENOTFOUND;
    case 409:
        return KILN_ECONFLICT;
    case 400:
    case 422:
        return KILN_EINVAL;
    case 408:
    case 504:
        return KILN_ETIMEOUT;
    default:
        return KILN_EAPI;
    }
}

int kstatus_fail(const kstatus *s, kiln_error *err)
{
    int code = kstatus_kiln_code(s);
    if (code == 0)
        return 0;
    return kiln_fail(err, code, "%d %s: %s", s->code, s->reason ? s->reason : "",
                     s->message ? s->message : "(no message)");
}
