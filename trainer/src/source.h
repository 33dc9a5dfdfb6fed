/* source: gets the bytes of one data file into memory. A source is a plain
 * path, a file:// URI or an http(s):// URL (libcurl, TLS verification on,
 * redirects followed, a size cap). gzip content is recognised by its magic
 * bytes (1f 8b), never by name, and inflated with a hard size cap. It also
 * resolves names next to a source (an MNIST directory's members, the
 * labels file beside an images file).
 *
 * It does not parse anything: csv.h and idx.h read the bytes.
 *
 * Ownership: source_read and source_gunzip fill a source_buf the caller
 * empties with source_buf_release. Errors: KILN_ENOTFOUND (no such file,
 * HTTP 404/410), KILN_EINVAL (gzip stream corrupt, over the size cap,
 * unsupported scheme), KILN_ENET (transport or other HTTP failure),
 * KILN_EIO, KILN_ENOMEM, KILN_EUNSUPPORTED (an http(s) URL where libcurl
 * cannot be loaded: curl_dl.h loads it on the first URL). */
#ifndef KILN_SOURCE_H
#define KILN_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "kiln_err.h"

/* Largest file or decompressed stream Kiln reads (bytes). */
#define SOURCE_MAX_BYTES ((size_t)2 << 30)

typedef struct source_buf {
    uint8_t *data; /* owned; len bytes (+1 NUL byte so text parsers may rely on it) */
    size_t len;
} source_buf;

void source_buf_release(source_buf *b);

/* Kind of a uri: SOURCE_FILE (path or file://), SOURCE_HTTP. */
enum { SOURCE_FILE = 1, SOURCE_HTTP = 2 };

/* Classifies uri and, for files, writes the local path (file:// stripped
 * and percent-decoded) into path[cap]. */
int source_locate(const char *uri, int *kind, char *path, size_t cap, kiln_error *err);

/* Last path segment of a uri or path (query and trailing '/' ignored), for
 * messages. Writes into out[cap]. */
void source_basename(const char *uri, char *out, size_t cap);

/* 1 when the uri names a local directory, or an http(s) URL ending in '/'. */
int source_is_dir(const char *uri);

/* Reads the whole content of uri (at most max bytes) and inflates it when
 * it is gzip. */
int source_read(const char *uri, size_t max, source_buf *out, kiln_error *err);

/* 1 when the bytes start with the gzip magic. */
int source_is_gzip(const uint8_t *p, size_t len);

/* Inflates a gzip stream (one or more members) of len bytes into out,
 * at most max bytes of output. name is used in messages. */
int source_gunzip(const uint8_t *p, size_t len, size_t max, const char *name, source_buf *out,
                  kiln_error *err);

/* Joins a directory uri and a file name into out[cap] (adds '/' if needed). */
int source_join(const char *dir, const char *name, char *out, size_t cap);

/* Finds a member of the directory uri dir: the first of the NULL-ended
 * names that exists, else (local directories only) the first entry, in
 * byte order, whose name starts with prefix (prefix may be NULL). Writes
 * the member's full uri into out[cap]. Returns KILN_ENOTFOUND when there is
 * none (err untouched). */
int source_find_member(const char *dir, const char *const *names, const char *prefix, char *out,
                       size_t cap);

/* 1 when a local file or http URL exists (http: a HEAD answering < 400). */
int source_exists(const char *uri);

#endif
