/* kiln_err: the one error vocabulary of every Kiln module.
 *
 * Functions return 0 or one of the negative codes below; the human-readable
 * detail goes into a kiln_error the caller owns (like curl's error buffer).
 * Numbers are pinned: never renumber or reuse one, retire it instead.
 */
#ifndef KILN_ERR_H
#define KILN_ERR_H

#include <stddef.h>

enum kiln_code {
    KILN_OK = 0,
    KILN_EINVAL = -1,      /* bad input or bad config: the user can fix it */
    KILN_ENOMEM = -2,      /* an allocation failed or a size is out of reach */
    KILN_EIO = -3,         /* read/write/fsync failed */
    KILN_ENOTFOUND = -4,   /* a file, URL, object or key does not exist */
    KILN_ECORRUPT = -5,    /* a checksum or format check failed */
    KILN_EUNSUPPORTED = -6,/* valid but not something we implement */
    KILN_ENET = -7,        /* network or HTTP transport failure */
    KILN_EINTERNAL = -8,   /* a bug: an invariant did not hold */
    KILN_ECONFLICT = -9,   /* optimistic concurrency: re-read and retry */
    KILN_EAPI = -10,       /* the API server answered with an error Status */
    KILN_ETIMEOUT = -11,   /* a deadline passed */
    KILN_ECANCELED = -12,  /* stopped on request (signal, shutdown) */
    KILN_E_LAST = -13      /* sentinel: one past the last code */
};

#define KILN_ERRMSG_MAX 512

typedef struct kiln_error {
    int code;
    char msg[KILN_ERRMSG_MAX];
} kiln_error;

/* Records code and a printf-style message in err (which may be NULL) and
 * returns code, so callers write `return kiln_fail(err, KILN_EINVAL, ...)`.
 * The first failure wins: a message already set is not overwritten. */
int kiln_fail(kiln_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the existing message with more context ("file.csv: " + msg). */
int kiln_error_prefix(kiln_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void kiln_error_clear(kiln_error *err);

/* A short static name for a code ("invalid input", ...). */
const char *kiln_strerror(int code);

#endif
