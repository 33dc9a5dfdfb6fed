/* kl_volume: a pod's directories and volumes on the host (see
 * kl_volume.h). */
#include "kl_volume.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kl_table.h"

int kl_volume_mkdirs(const char *path)
{
    /* Only the missing components, deepest existing one first: each
     * mkdir takes its parent directory's lock, and the top ones (/, /tmp)
     * are shared with every process on the machine. */
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    if (errno != ENOENT)
        return -1;
    char parent[4096];
    snprintf(parent, sizeof(parent), "%s", path);
    char *slash = strrchr(parent, '/');
    if (!slash || slash == parent)
        return -1;
    *slash = 0;
    if (kl_volume_mkdirs(parent) != 0)
        return -1;
    return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

int kl_volume_write_file(const char *path, const char *data, size_t n, int mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    int ok = write(fd, data, n) == (ssize_t)n;
    close(fd);
    return ok ? 0 : -1;
}

size_t kl_volume_b64dec(const char *in, unsigned char *out)
{
    int T[256];
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 256; i++)
        T[i] = -1;
    for (int i = 0; i < 64; i++)
        T[(unsigned char)A[i]] = i;
    size_t n = 0;
    unsigned v = 0;
    int bits = 0;
    for (const char *p = in; *p; p++) {
        int d = T[(unsigned char)*p];
        if (d < 0)
            continue;
        v = (v << 6) | (unsigned)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(v >> bits);
        }
    }
    return n;
}

/* Projects a configMap/secret volume's keys as files into dir. */
static void project(kl_api *api, const char *ns, const cJSON *src, const char *plural,
                    const char *name_key, const char *dir, int secret)
{
    kl_res *r = kl_api_res(api, "", plural);
    const char *name = kl_kpod_jstr(src, name_key);
    const cJSON *obj = name ? kl_store_get(kl_api_store(api), r->rkey, ns, name) : NULL;
    if (!obj)
        return;
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(src, "items");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(obj, "data");
    const cJSON *e;
    char path[4400];
    cJSON_ArrayForEach(e, data)
    {
        if (!cJSON_IsString(e))
            continue;
        const char *fname = e->string;
        if (cJSON_GetArraySize(items)) {
            const cJSON *it;
            fname = NULL;
            cJSON_ArrayForEach(it, items) if (!strcmp(kl_kpod_jstr0(it, "key"), e->string)) fname =
                kl_kpod_jstr(it, "path");
            if (!fname)
                continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, fname);
        char *slash = strrchr(path, '/');
        if (slash) {
            *slash = 0;
            kl_volume_mkdirs(path);
            *slash = '/';
        }
        if (secret) {
            size_t len = strlen(e->valuestring);
            unsigned char *buf = malloc(len + 1);
            if (buf) {
                size_t n = kl_volume_b64dec(e->valuestring, buf);
                kl_volume_write_file(path, (const char *)buf, n, 0644);
                free(buf);
            }
        } else {
            kl_volume_write_file(path, e->valuestring, strlen(e->valuestring), 0644);
        }
    }
}

const char *kl_volume_field_ref(const cJSON *pod, const kl_kpod *p, const char *path)
{
    if (!strcmp(path, "status.podIP") || !strcmp(path, "status.hostIP"))
        return !strcmp(path, "status.podIP") ? p->ip : "127.0.0.1";
    char jp[300];
    snprintf(jp, sizeof(jp), ".%s", path);
    if (!strncmp(path, "metadata.labels['", 17) || !strncmp(path, "metadata.annotations['", 22)) {
        const char *q = strchr(path, '\'');
        char key[256];
        if (q && sscanf(q + 1, "%255[^']", key) == 1) {
            const cJSON *m =
                cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(pod, "metadata"),
                                                 path[9] == 'l' ? "labels" : "annotations");
            return kl_kpod_jstr(m, key);
        }
        return NULL;
    }
    const cJSON *v = kl_table_jsonpath(pod, jp);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Where a volume lives on the host; no file-system calls. */
enum vol_kind { VOL_NONE, VOL_HOST, VOL_HOST_CREATE, VOL_CLAIM, VOL_POD };

static enum vol_kind volume_path(const char *data_dir, const cJSON *pod, const kl_kpod *p,
                                 const char *vname, char *out, size_t n)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, kl_table_jsonpath(pod, ".spec.volumes"))
    {
        if (strcmp(kl_kpod_jstr0(v, "name"), vname) != 0)
            continue;
        const cJSON *hp = cJSON_GetObjectItemCaseSensitive(v, "hostPath");
        const cJSON *pvc = cJSON_GetObjectItemCaseSensitive(v, "persistentVolumeClaim");
        if (hp) {
            snprintf(out, n, "%s", kl_kpod_jstr0(hp, "path"));
            const char *type = kl_kpod_jstr(hp, "type");
            return type && !strcmp(type, "DirectoryOrCreate") ? VOL_HOST_CREATE : VOL_HOST;
        }
        if (pvc) {
            snprintf(out, n, "%s/volumes/%s/%s", data_dir, p->ns, kl_kpod_jstr0(pvc, "claimName"));
            return VOL_CLAIM;
        }
        /* emptyDir, configMap, secret, downwardAPI: filled at pod setup */
        snprintf(out, n, "%s/vol/%s", p->dir, vname);
        return VOL_POD;
    }
    return VOL_NONE;
}

/* Volumes: returns the host directory for a volume name. The directories
 * were made when the pod was prepared; a claim's is made again if it was
 * removed since. */
int kl_volume_dir(const char *data_dir, const cJSON *pod, const kl_kpod *p, const char *vname,
                  char *out, size_t n, int *is_file)
{
    *is_file = 0;
    struct stat st;
    switch (volume_path(data_dir, pod, p, vname, out, n)) {
    case VOL_NONE:
        return -1;
    case VOL_HOST_CREATE:
        kl_volume_mkdirs(out);
        /* fall through */
    case VOL_HOST:
        if (stat(out, &st) != 0)
            return -1;
        *is_file = !S_ISDIR(st.st_mode);
        return 0;
    case VOL_CLAIM:
        /* stat first: mkdir locks the parent, where the worker may be
         * making another claim's directory */
        return stat(out, &st) == 0 ? 0 : kl_volume_mkdirs(out);
    case VOL_POD:
        return 0;
    }
    return -1;
}

/* Calls fn with every directory the pod needs before a container starts:
 * its logs and termination messages, its own volumes, its claims'
 * directories, hostPath directories to create and subPaths. */
static void each_dir(const char *data_dir, const cJSON *pod, const kl_kpod *p,
                     void (*fn)(void *ctx, const char *dir), void *ctx)
{
    char d[4400];
    snprintf(d, sizeof(d), "%s/logs", p->dir);
    fn(ctx, d);
    snprintf(d, sizeof(d), "%s/term", p->dir);
    fn(ctx, d);
    const cJSON *v;
    cJSON_ArrayForEach(v, kl_table_jsonpath(pod, ".spec.volumes"))
    {
        enum vol_kind k = volume_path(data_dir, pod, p, kl_kpod_jstr0(v, "name"), d, sizeof(d));
        if (k == VOL_POD || k == VOL_CLAIM || k == VOL_HOST_CREATE)
            fn(ctx, d);
    }
    const char *lists[] = {".spec.initContainers", ".spec.containers"};
    for (size_t i = 0; i < 2; i++) {
        const cJSON *cs, *vm;
        cJSON_ArrayForEach(cs, kl_table_jsonpath(pod, lists[i]))
        {
            cJSON_ArrayForEach(vm, cJSON_GetObjectItemCaseSensitive(cs, "volumeMounts"))
            {
                const char *sub = kl_kpod_jstr(vm, "subPath");
                if (!sub || !sub[0] ||
                    volume_path(data_dir, pod, p, kl_kpod_jstr0(vm, "name"), d, sizeof(d)) ==
                        VOL_NONE)
                    continue;
                size_t len = strlen(d);
                snprintf(d + len, sizeof(d) - len, "/%s", sub);
                fn(ctx, d);
            }
        }
    }
}

/* The directories as one buffer of NUL-terminated paths, for the worker. */
typedef struct dir_list {
    char *buf;
    size_t len, cap;
    int oom;
} dir_list;

static void dir_list_add(void *ctx, const char *dir)
{
    dir_list *l = ctx;
    size_t n = strlen(dir) + 1;
    if (l->oom)
        return;
    if (l->len + n + 1 > l->cap) {
        size_t cap = (l->len + n + 1) * 2;
        char *b = realloc(l->buf, cap);
        if (!b) {
            l->oom = 1;
            return;
        }
        l->buf = b;
        l->cap = cap;
    }
    memcpy(l->buf + l->len, dir, n);
    l->len += n;
    l->buf[l->len] = 0; /* an empty path ends the list */
}

static void mkdirs_cb(void *ctx, const char *dir)
{
    (void)ctx;
    kl_volume_mkdirs(dir);
}

/* On the worker: makes every directory of a dir_list buffer. */
static long make_dirs(void *arg)
{
    for (const char *d = arg; *d; d += strlen(d) + 1)
        kl_volume_mkdirs(d);
    return 0;
}

/* Fills the pod's configMap, secret and downwardAPI volumes (their
 * directories exist). */
static void fill_volumes(kl_api *api, const cJSON *pod, kl_kpod *p)
{
    const cJSON *v;
    char d[4400];
    cJSON_ArrayForEach(v, kl_table_jsonpath(pod, ".spec.volumes"))
    {
        snprintf(d, sizeof(d), "%s/vol/%s", p->dir, kl_kpod_jstr0(v, "name"));
        const cJSON *cm = cJSON_GetObjectItemCaseSensitive(v, "configMap");
        const cJSON *sec = cJSON_GetObjectItemCaseSensitive(v, "secret");
        const cJSON *dw = cJSON_GetObjectItemCaseSensitive(v, "downwardAPI");
        if (cm)
            project(api, p->ns, cm, "configmaps", "name", d, 0);
        if (sec)
            project(api, p->ns, sec, "secrets", "secretName", d, 1);
        if (dw) {
            const cJSON *it;
            cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(dw, "items"))
            {
                const char *fp =
                    kl_kpod_jstr(cJSON_GetObjectItemCaseSensitive(it, "fieldRef"), "fieldPath");
                const char *val = fp ? kl_volume_field_ref(pod, p, fp) : NULL;
                char path[4700];
                snprintf(path, sizeof(path), "%s/%s", d, kl_kpod_jstr0(it, "path"));
                if (val)
                    kl_volume_write_file(path, val, strlen(val), 0644);
            }
        }
    }
}

void kl_volume_prepare(kl_worker *w, const char *data_dir, const cJSON *pod, kl_kpod *p)
{
    dir_list l = {0};
    each_dir(data_dir, pod, p, dir_list_add, &l);
    p->dirs = l.oom ? NULL : kl_worker_run(w, make_dirs, l.buf, 1);
    if (!p->dirs) {
        /* No memory to hand them over: made here (a NULL handle is done). */
        free(l.buf);
        each_dir(data_dir, pod, p, mkdirs_cb, NULL);
    }
}

int kl_volume_ready(kl_api *api, const cJSON *pod, kl_kpod *p)
{
    if (p->dirs_ready)
        return 1;
    if (!kl_work_done(p->dirs))
        return 0;
    kl_work_release(p->dirs);
    p->dirs = NULL;
    fill_volumes(api, pod, p);
    p->dirs_ready = 1;
    return 1;
}
