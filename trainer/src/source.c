/* source: data file bytes from a path, file:// or http(s):// (see source.h). */
#include "source.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "curl_dl.h"

/* deflate never expands more than 1032:1, so a gzip member's real output is
 * bounded by its compressed size; the trailer's ISIZE is only a hint. */
#define DEFLATE_MAX_RATIO 1032u

/* ------------------------------------------------------------ helpers */

void source_buf_release(source_buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int is_http(const char *uri)
{
    return starts_with(uri, "http://") || starts_with(uri, "https://");
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int source_locate(const char *uri, int *kind, char *path, size_t cap, kiln_error *err)
{
    if (!uri || !*uri)
        return kiln_fail(err, KILN_EINVAL, "data.uri is empty");
    if (is_http(uri)) {
        *kind = SOURCE_HTTP;
        if (cap)
            path[0] = '\0';
        return 0;
    }
    *kind = SOURCE_FILE;
    const char *p = uri;
    int decode = 0;
    if (starts_with(uri, "file://")) {
        p = uri + 7;
        if (starts_with(p, "localhost/"))
            p += 9;
        if (*p != '/')
            return kiln_fail(err, KILN_EINVAL,
                             "%s: a file:// URI needs an absolute path (file:///abs/path)", uri);
        decode = 1;
    } else if (starts_with(uri, "pvc://")) {
        return kiln_fail(err, KILN_EINVAL,
                         "%s: pvc:// URIs are mounted into trainer pods by the controller (at "
                         "/data/CLAIM); outside a cluster give the path instead",
                         uri);
    } else if (strstr(uri, "://")) {
        return kiln_fail(err, KILN_EINVAL,
                         "%s: unsupported URI scheme (use a path, file://, http:// or https://)",
                         uri);
    }
    size_t o = 0;
    for (size_t i = 0; p[i]; i++) {
        char c = p[i];
        if (decode && c == '%') {
            int hi = hexval(p[i + 1]), lo = hi >= 0 ? hexval(p[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return kiln_fail(err, KILN_EINVAL, "%s: bad percent-escape in file URI", uri);
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= cap)
            return kiln_fail(err, KILN_EINVAL, "%s: path too long", uri);
        path[o++] = c;
    }
    path[o] = '\0';
    return 0;
}

void source_basename(const char *uri, char *out, size_t cap)
{
    if (!cap)
        return;
    size_t end = strcspn(uri, "?#");
    if (!is_http(uri))
        end = strlen(uri);
    while (end > 1 && uri[end - 1] == '/')
        end--;
    size_t start = end;
    while (start > 0 && uri[start - 1] != '/')
        start--;
    size_t n = end - start;
    if (n == 0) {
        snprintf(out, cap, "%s", uri);
        return;
    }
    if (n >= cap)
        n = cap - 1;
    memcpy(out, uri + start, n);
    out[n] = '\0';
}

int source_is_dir(const char *uri)
{
    char path[4096];
    int kind;
    if (source_locate(uri, &kind, path, sizeof path, NULL) != 0)
        return 0;
    if (kind == SOURCE_HTTP) {
        size_t end = strcspn(uri, "?#");
        return end > 0 && uri[end - 1] == '/';
    }
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int source_join(const char *dir, const char *name, char *out, size_t cap)
{
    size_t n = strlen(dir);
    const char *slash = (n > 0 && dir[n - 1] == '/') ? "" : "/";
    int w = snprintf(out, cap, "%s%s%s", dir, slash, name);
    return (w < 0 || (size_t)w >= cap) ? KILN_EINVAL : 0;
}

/* ------------------------------------------------------------ gzip */

int source_is_gzip(const uint8_t *p, size_t len)
{
    return len >= 2 && p[0] == 0x1f && p[1] == 0x8b;
}

static int grow(source_buf *b, size_t *cap, size_t want, size_t max)
{
    /* One byte past max is enough to notice an overflow. */
    if (want > max + 1)
        want = max + 1;
    if (want <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 65536;
    while (nc < want)
        nc = nc > max / 2 ? max + 1 : nc * 2;
    if (nc > max + 1)
        nc = max + 1;
    uint8_t *d = realloc(b->data, nc + 1);
    if (!d)
        return KILN_ENOMEM;
    b->data = d;
    *cap = nc;
    return 0;
}

int source_gunzip(const uint8_t *p, size_t len, size_t max, const char *name, source_buf *out,
                  kiln_error *err)
{
    out->data = NULL;
    out->len = 0;
    if (!source_is_gzip(p, len))
        return kiln_fail(err, KILN_EINVAL, "%s: not a gzip stream", name);
    /* Size hint from the trailer, bounded by what the input can expand to
     * and by the cap; the buffer still grows if the hint is short. */
    size_t hint = 0;
    if (len >= 18) {
        const uint8_t *t = p + len - 4;
        hint = (size_t)t[0] | (size_t)t[1] << 8 | (size_t)t[2] << 16 | (size_t)t[3] << 24;
        size_t bound = len <= SIZE_MAX / DEFLATE_MAX_RATIO ? len * DEFLATE_MAX_RATIO : SIZE_MAX;
        if (hint > bound)
            hint = bound;
        if (hint > max)
            hint = max;
    }
    size_t cap = 0;
    /* A little spare room lets inflate see the end marker in the same pass. */
    int rc = grow(out, &cap, hint ? hint + 64 : 65536, max);
    if (rc)
        return kiln_fail(err, rc, "%s: out of memory inflating gzip data", name);

    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK) {
        source_buf_release(out);
        return kiln_fail(err, KILN_ENOMEM, "%s: cannot start gzip decoder", name);
    }
    size_t in_off = 0;
    for (;;) {
        size_t in_left = len - in_off;
        z.next_in = (Bytef *)(p + in_off);
        z.avail_in = in_left > UINT32_MAX ? UINT32_MAX : (uInt)in_left;
        if (out->len == cap) {
            if (cap > max) {
                rc = kiln_fail(err, KILN_EINVAL,
                               "%s: gzip data inflates to more than %zu bytes (the size limit)",
                               name, max);
                break;
            }
            rc = grow(out, &cap, cap + 1, max);
            if (rc) {
                rc = kiln_fail(err, rc, "%s: out of memory inflating gzip data", name);
                break;
            }
        }
        size_t room = cap - out->len;
        z.next_out = out->data + out->len;
        z.avail_out = room > UINT32_MAX ? UINT32_MAX : (uInt)room;
        uInt before_out = z.avail_out;
        uInt before_in = z.avail_in;
        int zr = inflate(&z, Z_NO_FLUSH);
        out->len += before_out - z.avail_out;
        in_off += before_in - z.avail_in;
        if (out->len > max) {
            rc = kiln_fail(err, KILN_EINVAL,
                           "%s: gzip data inflates to more than %zu bytes (the size limit)", name,
                           max);
            break;
        }
        if (zr == Z_STREAM_END) {
            if (in_off == len)
                break;
            /* Another member may follow (concatenated gzip files). */
            if (!source_is_gzip(p + in_off, len - in_off)) {
                rc = kiln_fail(err, KILN_EINVAL,
                               "%s: corrupt gzip data: %zu unexpected bytes after the stream end "
                               "at byte offset %zu",
                               name, len - in_off, in_off);
                break;
            }
            inflateReset(&z);
            continue;
        }
        if (zr == Z_BUF_ERROR && z.avail_in == 0 && in_off == len) {
            rc = kiln_fail(err, KILN_EINVAL,
                           "%s: corrupt gzip data: the stream is truncated (ends at byte %zu "
                           "before its end marker)",
                           name, len);
            break;
        }
        if (zr == Z_MEM_ERROR) {
            rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory inflating gzip data", name);
            break;
        }
        if (zr != Z_OK && zr != Z_BUF_ERROR) {
            rc = kiln_fail(err, KILN_EINVAL, "%s: corrupt gzip data near byte offset %zu (%s)",
                           name, in_off, z.msg ? z.msg : "inflate failed");
            break;
        }
    }
    inflateEnd(&z);
    if (rc) {
        source_buf_release(out);
        return rc;
    }
    /* Give back an over-long hint's tail. */
    uint8_t *d = realloc(out->data, out->len + 1);
    if (d)
        out->data = d;
    out->data[out->len] = 0;
    return 0;
}

/* ------------------------------------------------------------ local files */

static int read_file(const char *uri, const char *path, size_t max, source_buf *out,
                     kiln_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            return kiln_fail(err, KILN_ENOTFOUND, "%s: no such file", uri);
        return kiln_fail(err, e == EACCES ? KILN_EINVAL : KILN_EIO, "%s: cannot open: %s", uri,
                         strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return kiln_fail(err, KILN_EINVAL, "%s: not a regular file", uri);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return kiln_fail(err, KILN_EINVAL,
                         "%s: the file holds %lld bytes, more than the %zu-byte limit", uri,
                         (long long)st.st_size, max);
    }
    size_t n = (size_t)st.st_size;
    out->data = malloc(n + 1);
    if (!out->data) {
        close(fd);
        return kiln_fail(err, KILN_ENOMEM, "%s: out of memory for %zu bytes", uri, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, out->data + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            source_buf_release(out);
            return kiln_fail(err, KILN_EIO, "%s: read failed at byte %zu: %s", uri, got,
                             e ? strerror(e) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    close(fd);
    out->len = n;
    out->data[n] = 0;
    return 0;
}

/* ------------------------------------------------------------ http */

typedef struct fetch {
    source_buf *b;
    size_t cap;
    size_t max;
    int too_big;
} fetch;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    fetch *f = ud;
    size_t n = size * nmemb;
    if (n > f->max - f->b->len) {
        f->too_big = 1;
        return 0;
    }
    if (grow(f->b, &f->cap, f->b->len + n, f->max) != 0)
        return 0;
    memcpy(f->b->data + f->b->len, ptr, n);
    f->b->len += n;
    return n;
}

static int http_get(const char *url, size_t max, int head_only, source_buf *out, long *status_out,
                    kiln_error *err)
{
    const curl_dl_fns *cu = curl_dl(err);
    if (!cu) {
        kiln_error_prefix(err, "%s: ", url);
        return KILN_EUNSUPPORTED;
    }
    CURL *c = cu->easy_init();
    if (!c)
        return kiln_fail(err, KILN_ENOMEM, "%s: cannot create an HTTP client", url);
    char ebuf[CURL_ERROR_SIZE] = "";
    fetch f = {.b = out, .max = max};
    cu->easy_setopt(c, CURLOPT_URL, url);
    cu->easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    cu->easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    cu->easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    cu->easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    cu->easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    /* A stalled transfer (under 1 KiB/s for a minute) fails instead of hanging. */
    cu->easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    cu->easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    if (!head_only)
        cu->easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
    cu->easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    cu->easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    cu->easy_setopt(c, CURLOPT_USERAGENT, "kiln-trainer/" KILN_VERSION);
    if (head_only)
        cu->easy_setopt(c, CURLOPT_NOBODY, 1L);
    else {
        cu->easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        cu->easy_setopt(c, CURLOPT_WRITEDATA, &f);
    }
    CURLcode cr = cu->easy_perform(c);
    long status = 0;
    cu->easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status_out)
        *status_out = status;
    cu->easy_cleanup(c);
    int rc = 0;
    if (f.too_big || cr == CURLE_FILESIZE_EXCEEDED)
        rc = kiln_fail(err, KILN_EINVAL, "%s: the download is larger than the %zu-byte limit", url,
                       max);
    else if (cr != CURLE_OK)
        rc = kiln_fail(err, KILN_ENET, "%s: %s", url, ebuf[0] ? ebuf : cu->easy_strerror(cr));
    else if (status == 404 || status == 410)
        rc = kiln_fail(err, KILN_ENOTFOUND, "%s: HTTP %ld (not found)", url, status);
    else if (status >= 400)
        rc = kiln_fail(err, KILN_ENET, "%s: HTTP %ld", url, status);
    if (rc) {
        source_buf_release(out);
        return rc;
    }
    if (!out->data && !head_only) {
        out->data = malloc(1);
        if (!out->data)
            return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", url);
    }
    if (out->data)
        out->data[out->len] = 0;
    return 0;
}

/* ------------------------------------------------------------ API */

int source_read(const char *uri, size_t max, source_buf *out, kiln_error *err)
{
    out->data = NULL;
    out->len = 0;
    char path[4096];
    int kind;
    int rc = source_locate(uri, &kind, path, sizeof path, err);
    if (rc)
        return rc;
    source_buf raw = {0};
    rc = kind == SOURCE_HTTP ? http_get(uri, max, 0, &raw, NULL, err)
                             : read_file(uri, path, max, &raw, err);
    if (rc)
        return rc;
    if (!source_is_gzip(raw.data, raw.len)) {
        *out = raw;
        return 0;
    }
    char name[256];
    source_basename(uri, name, sizeof name);
    rc = source_gunzip(raw.data, raw.len, max, name, out, err);
    source_buf_release(&raw);
    return rc;
}

int source_exists(const char *uri)
{
    char path[4096];
    int kind;
    if (source_locate(uri, &kind, path, sizeof path, NULL) != 0)
        return 0;
    if (kind == SOURCE_HTTP) {
        source_buf b = {0};
        long status = 0;
        int rc = http_get(uri, 1, 1, &b, &status, NULL);
        source_buf_release(&b);
        /* A server that refuses HEAD may still serve GET: let GET decide. */
        return rc == 0 || status == 405 || status == 501;
    }
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int source_find_member(const char *dir, const char *const *names, const char *prefix, char *out,
                       size_t cap)
{
    for (int i = 0; names && names[i]; i++) {
        if (source_join(dir, names[i], out, cap) == 0 && source_exists(out))
            return 0;
    }
    char path[4096];
    int kind;
    if (!prefix || source_locate(dir, &kind, path, sizeof path, NULL) != 0 || kind != SOURCE_FILE)
        return KILN_ENOTFOUND;
    DIR *d = opendir(path);
    if (!d)
        return KILN_ENOTFOUND;
    /* Pick the smallest matching name so the choice never depends on
     * directory order. */
    char *best = NULL;
    for (;;) {
        struct dirent *e = readdir(d);
        if (!e)
            break;
        if (!starts_with(e->d_name, prefix))
            continue;
        char *name = e->d_name;
        if (!best || cmp_str(&name, &best) < 0) {
            char *dup = strdup(name);
            if (!dup)
                break;
            free(best);
            best = dup;
        }
    }
    closedir(d);
    int rc = KILN_ENOTFOUND;
    if (best && source_join(dir, best, out, cap) == 0 && source_exists(out))
        rc = 0;
    free(best);
    return rc;
}
