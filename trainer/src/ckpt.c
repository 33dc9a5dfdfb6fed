/* ckpt: reading and writing Kiln checkpoint files (format in ckpt.h). */
#include "ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#define FIXED_HEADER 24
#define MAX_HEADER_JSON (1u << 20) /* a header is architecture + preprocessing: 1 MiB is ample */

struct ckpt {
    cJSON *header;
    int nsec;
    struct {
        char name[32];
        float *data;
        size_t count;
    } sec[CKPT_MAX_SECTIONS];
    uint32_t crc;
};

/* ---------------------------------------------------------------- writing */

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static int write_all(int fd, const void *buf, size_t len, uLong *crc)
{
    const unsigned char *p = buf;
    if (crc)
        *crc = crc32_z(*crc, p, len);
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int ckpt_write(const char *path, const cJSON *header, const ckpt_section *secs, int nsecs,
               kiln_error *err)
{
    if (nsecs < 0 || nsecs > CKPT_MAX_SECTIONS)
        return kiln_fail(err, KILN_EINTERNAL, "%s: %d sections (max %d)", path, nsecs,
                         CKPT_MAX_SECTIONS);
    cJSON *h = cJSON_Duplicate(header, 1);
    if (!h)
        return kiln_fail(err, KILN_ENOMEM, "%s: cannot copy header", path);
    cJSON_DeleteItemFromObjectCaseSensitive(h, "sections");
    cJSON *arr = cJSON_AddArrayToObject(h, "sections");
    for (int i = 0; arr && i < nsecs; i++) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "name", secs[i].name);
        cJSON_AddNumberToObject(s, "count", (double)secs[i].count);
        cJSON_AddItemToArray(arr, s);
    }
    char *json = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!json)
        return kiln_fail(err, KILN_ENOMEM, "%s: cannot serialise header", path);
    size_t hlen = strlen(json);

    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp) {
        free(json);
        return kiln_fail(err, KILN_EINVAL, "%s: path too long", path);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(json);
        return kiln_fail(err, KILN_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    unsigned char fixed[FIXED_HEADER];
    memcpy(fixed, CKPT_MAGIC, 8);
    put_u32(fixed + 8, CKPT_VERSION);
    put_u32(fixed + 12, 0);
    put_u64(fixed + 16, hlen);
    uLong crc = crc32_z(0L, Z_NULL, 0);
    int bad = write_all(fd, fixed, sizeof fixed, &crc) || write_all(fd, json, hlen, &crc);
    free(json);
    /* Floats are written as stored: the engine only targets little-endian hosts. */
    for (int i = 0; !bad && i < nsecs; i++)
        bad = write_all(fd, secs[i].data, secs[i].count * sizeof(float), &crc);
    unsigned char tail[4];
    put_u32(tail, (uint32_t)crc);
    if (!bad)
        bad = write_all(fd, tail, 4, NULL);
    if (!bad)
        bad = fsync(fd);
    int saved = errno;
    if (close(fd) != 0 && !bad) {
        bad = 1;
        saved = errno;
    }
    if (bad) {
        unlink(tmp);
        return kiln_fail(err, KILN_EIO, "%s: write failed: %s", tmp, strerror(saved));
    }
    if (rename(tmp, path) != 0) {
        saved = errno;
        unlink(tmp);
        return kiln_fail(err, KILN_EIO, "%s: rename failed: %s", path, strerror(saved));
    }
    if (fsync_dir_of(path) != 0)
        return kiln_fail(err, KILN_EIO, "%s: cannot fsync directory: %s", path, strerror(errno));
    return 0;
}

/* ---------------------------------------------------------------- reading */

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

void ckpt_free(ckpt *c)
{
    if (!c)
        return;
    cJSON_Delete(c->header);
    for (int i = 0; i < c->nsec; i++)
        free(c->sec[i].data);
    free(c);
}

int ckpt_read_mem(const void *buf, size_t len, const char *what, ckpt **out, kiln_error *err)
{
    const unsigned char *p = buf;
    *out = NULL;
    if (len < FIXED_HEADER + 4)
        return kiln_fail(err, KILN_ECORRUPT, "%s: %zu bytes, too short for a checkpoint (at least %d)",
                         what, len, FIXED_HEADER + 4);
    if (memcmp(p, CKPT_MAGIC, 8) != 0)
        return kiln_fail(err, KILN_ECORRUPT, "%s: not a Kiln checkpoint (bad magic at byte 0)", what);
    uint32_t version = get_u32(p + 8);
    if (version != CKPT_VERSION)
        return kiln_fail(err, KILN_ECORRUPT, "%s: checkpoint format version %u, expected %u", what,
                         version, CKPT_VERSION);
    uint32_t want = get_u32(p + len - 4);
    uint32_t got = (uint32_t)crc32_z(crc32_z(0L, Z_NULL, 0), p, len - 4);
    if (want != got)
        return kiln_fail(err, KILN_ECORRUPT,
                         "%s: CRC mismatch (stored %08x, computed %08x): the file is corrupt or truncated",
                         what, want, got);
    uint64_t hlen = get_u64(p + 16);
    if (hlen == 0 || hlen > MAX_HEADER_JSON || hlen > len - FIXED_HEADER - 4)
        return kiln_fail(err, KILN_ECORRUPT, "%s: header length %llu does not fit the %zu-byte file",
                         what, (unsigned long long)hlen, len);

    ckpt *c = calloc(1, sizeof *c);
    if (!c)
        return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", what);
    c->crc = want;
    c->header = cJSON_ParseWithLength((const char *)p + FIXED_HEADER, (size_t)hlen);
    int rc = 0;
    if (!c->header || !cJSON_IsObject(c->header)) {
        rc = kiln_fail(err, KILN_ECORRUPT, "%s: header at byte %d is not a JSON object", what,
                       FIXED_HEADER);
        goto fail;
    }
    const cJSON *secs = cJSON_GetObjectItemCaseSensitive(c->header, "sections");
    if (!cJSON_IsArray(secs) || cJSON_GetArraySize(secs) > CKPT_MAX_SECTIONS) {
        rc = kiln_fail(err, KILN_ECORRUPT, "%s: header has no valid \"sections\" list", what);
        goto fail;
    }
    size_t off = FIXED_HEADER + (size_t)hlen, end = len - 4;
    const cJSON *s;
    cJSON_ArrayForEach(s, secs)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(s, "name");
        const cJSON *count = cJSON_GetObjectItemCaseSensitive(s, "count");
        if (!cJSON_IsString(name) || strlen(name->valuestring) >= sizeof c->sec[0].name ||
            !cJSON_IsNumber(count) || count->valuedouble < 0 ||
            count->valuedouble != (double)(size_t)count->valuedouble) {
            rc = kiln_fail(err, KILN_ECORRUPT, "%s: section %d is malformed", what, c->nsec);
            goto fail;
        }
        size_t n = (size_t)count->valuedouble;
        if (n > (end - off) / sizeof(float)) {
            rc = kiln_fail(err, KILN_ECORRUPT,
                           "%s: section '%s' claims %zu floats at byte %zu but only %zu bytes remain",
                           what, name->valuestring, n, off, end - off);
            goto fail;
        }
        int i = c->nsec;
        snprintf(c->sec[i].name, sizeof c->sec[i].name, "%s", name->valuestring);
        c->sec[i].count = n;
        c->sec[i].data = malloc(n ? n * sizeof(float) : 1);
        if (!c->sec[i].data) {
            rc = kiln_fail(err, KILN_ENOMEM, "%s: out of memory for %zu floats", what, n);
            goto fail;
        }
        memcpy(c->sec[i].data, p + off, n * sizeof(float));
        c->nsec++;
        off += n * sizeof(float);
    }
    if (off != end) {
        rc = kiln_fail(err, KILN_ECORRUPT, "%s: %zu unexpected bytes after the last section", what,
                       end - off);
        goto fail;
    }
    *out = c;
    return 0;
fail:
    ckpt_free(c);
    return rc;
}

int ckpt_read(const char *path, ckpt **out, kiln_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kiln_fail(err, errno == ENOENT ? KILN_ENOTFOUND : KILN_EIO, "%s: %s", path,
                         strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return kiln_fail(err, KILN_EINVAL, "%s: not a regular file", path);
    }
    size_t len = (size_t)st.st_size;
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        return kiln_fail(err, KILN_ENOMEM, "%s: cannot hold %zu bytes", path, len);
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    int rc = ckpt_read_mem(buf, got, path, out, err);
    free(buf);
    return rc;
}

const cJSON *ckpt_header(const ckpt *c)
{
    return c->header;
}

const float *ckpt_section_data(const ckpt *c, const char *name, size_t *count)
{
    for (int i = 0; i < c->nsec; i++) {
        if (!strcmp(c->sec[i].name, name)) {
            if (count)
                *count = c->sec[i].count;
            return c->sec[i].data;
        }
    }
    if (count)
        *count = 0;
    return NULL;
}

uint32_t ckpt_crc(const ckpt *c)
{
    return c->crc;
}
