/* kstatus: the Kubernetes meta/v1 Status object, built and parsed.
 *
 * Every non-2xx reply of the API carries one:
 *   {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
 *    "message":"...","reason":"NotFound","details":{"name":..,"group":..,
 *    "kind":..,"uid":..,"retryAfterSeconds":N,"causes":[{"reason":..,
 *    "message":..,"field":..}]},"code":404}
 * The API server side (kubelite) builds them with kstatus_set*() and
 * kstatus_to_json(); the client side parses them with kstatus_parse() and
 * branches on code and reason.
 *
 * Ownership: a kstatus lives in caller storage. kstatus_init() it, fill it,
 * and kstatus_release() it; every string inside is owned by the kstatus.
 * A released kstatus is re-initialised and may be reused. */
#ifndef KSTATUS_H
#define KSTATUS_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"

typedef struct kstatus_cause {
    char *reason;  /* "FieldValueInvalid", ... (JSON "reason"; older APIs call it "type") */
    char *message; /* may be NULL */
    char *field;   /* "spec.objective.goal"; may be NULL */
} kstatus_cause;

typedef struct kstatus {
    int code;      /* the HTTP status code (0 if the body had none) */
    int success;   /* 1 for status "Success", 0 for "Failure" */
    char *reason;  /* "NotFound", "Conflict", ...; NULL when absent */
    char *message; /* NULL when absent */
    /* details; each NULL when absent */
    char *name;
    char *group;
    char *kind;
    char *uid;
    int retry_after_seconds; /* details.retryAfterSeconds, 0 when absent */
    kstatus_cause *causes;
    size_t n_causes;
} kstatus;

/* ---- life cycle ---- */

void kstatus_init(kstatus *s);
void kstatus_release(kstatus *s);

/* ---- building ---- */

/* Sets code, reason (NULL: the default reason for the code, see
 * kstatus_reason_for_code) and a printf-style message; status becomes
 * "Success" for 2xx codes and "Failure" otherwise. Replaces earlier values.
 * Returns 0 or KILN_ENOMEM. */
int kstatus_setf(kstatus *s, int code, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Sets details.name/group/kind/uid (each may be NULL to leave it unset). */
int kstatus_set_details(kstatus *s, const char *name, const char *group, const char *kind,
                        const char *uid);

/* Appends a cause; message and field may be NULL. Returns 0 or KILN_ENOMEM. */
int kstatus_add_cause(kstatus *s, const char *reason, const char *message, const char *field);

/* A new cJSON object for s (the caller frees it with cJSON_Delete), or NULL
 * when out of memory. "metadata":{} is always present, like the API's. */
cJSON *kstatus_to_json(const kstatus *s);

/* The same, printed unformatted: a malloc'd string the caller frees, or NULL. */
char *kstatus_to_string(const kstatus *s);

/* ---- parsing ---- */

/* Fills s from a parsed Status object. Unknown fields are ignored; a field
 * of the wrong JSON type is treated as absent, so a hostile body never
 * fails here except for lack of memory or a non-object input (KILN_EINVAL). */
int kstatus_from_json(kstatus *s, const cJSON *obj, kiln_error *err);

/* Parses a reply body (len bytes, need not be NUL-terminated). If the body
 * is not a Status object (an HTML error page, a proxy's text, empty), s gets
 * http_code, the default reason for it, and a message quoting the start of
 * the body, and 0 is returned: the caller always has something to show.
 * A Status body with no "code" takes http_code. */
int kstatus_parse(kstatus *s, const char *body, size_t len, int http_code, kiln_error *err);

/* ---- queries ---- */

/* The reason the API uses for an HTTP code ("NotFound" for 404, "Conflict"
 * for 409, "TooManyRequests" for 429, "InternalError" for 500, ...; ""
 * for codes without one). Static; do not free. */
const char *kstatus_reason_for_code(int code);

/* 1 if s->reason equals reason. */
int kstatus_is(const kstatus *s, const char *reason);

/* The kiln_code a caller should return for this Status: 404 ->
 * KILN_ENOTFOUND, 409 -> KILN_ECONFLICT, 400/422 -> KILN_EINVAL,
 * 504 and 408 -> KILN_ETIMEOUT, anything else non-2xx -> KILN_EAPI; 0 for 2xx. */
int kstatus_kiln_code(const kstatus *s);

/* Writes "409 Conflict: message" into err (via kiln_fail) and returns
 * kstatus_kiln_code(s). */
int kstatus_fail(const kstatus *s, kiln_error *err);

#endif
