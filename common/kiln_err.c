/* kiln_err: error codes and the caller-owned error message buffer. */
#include "kiln_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int kiln_fail(kiln_error *err, int code, const char *fmt, ...)
{
    if (err && err->code == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int kiln_error_prefix(kiln_error *err, const char *fmt, ...)
{
    if (!err)
        return 0;
    char prefix[KILN_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Build into a larger buffer, then truncate to the message size. */
    char joined[2 * KILN_ERRMSG_MAX];
    snprintf(joined, sizeof joined, "%s%s", prefix, err->msg);
    memcpy(err->msg, joined, KILN_ERRMSG_MAX - 1);
    err->msg[KILN_ERRMSG_MAX - 1] = '\0';
    return err->code;
}

void kiln_error_clear(kiln_error *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}

const char *kiln_strerror(int code)
{
    switch (code) {
    case KILN_OK: return "ok";
    case KILN_EINVAL: return "invalid input";
    case KILN_ENOMEM: return "out of memory";
    case KILN_EIO: return "i/o error";
    case KILN_ENOTFOUND: return "not found";
    case KILN_ECORRUPT: return "corrupt data";
    case KILN_EUNSUPPORTED: return "unsupported";
    case KILN_ENET: return "network error";
    case KILN_EINTERNAL: return "internal error";
    case KILN_ECONFLICT: return "conflict";
    case KILN_EAPI: return "api error";
    case KILN_ETIMEOUT: return "timed out";
    case KILN_ECANCELED: return "canceled";
    default: return "unknown error";
    }
}
