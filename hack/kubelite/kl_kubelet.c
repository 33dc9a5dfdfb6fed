/* kl_kubelet: the process-based kubelet (see kl_kubelet.h).
 *
 * Per pod: a directory DATA/pods/<uid>/ holding volumes, logs and
 * termination-message files; per container one bwrap child. Everything
 * runs in the tick: start what should run, reap what exited (waitpid
 * WNOHANG), apply the restart policy with back-off, run readiness probes,
 * and write pod status when it changes. Back-off starts at 1 s and doubles
 * up to 60 s (a real kubelet starts at 10 s; tests need it shorter). */
#include "kl_kubelet.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kl_proto.h"
#include "kl_svc.h"
#include "kl_table.h"
#include "kquantity.h"
#include "ktime.h"

#define MAX_CTR 16

typedef struct ctr {
    char name[128];
    pid_t pid;
    int started;      /* ever started */
    int running;
    int done;         /* terminated and will not restart */
    int restarts;
    int exit_code, signal;
    char reason[32];
    char started_at[KTIME_BUFSZ], finished_at[KTIME_BUFSZ];
    cJSON *last_state; /* previous termination, owned */
    int64_t next_start_ms;
    int backoff_ms;
    int ready;
    int64_t next_probe_ms;
    int64_t mem_limit;
    char cg[512];   /* memory cgroup of the running instance, "" if none */
} ctr;

typedef struct kpod {
    char uid[64], ns[254], name[254];
    char ip[32];
    char dir[4096];
    char start_time[KTIME_BUFSZ];
    int n;
    ctr c[MAX_CTR];
    int64_t deadline_ms;   /* activeDeadlineSeconds, 0: none */
    int deadline_hit;
    int64_t kill_at_ms;    /* graceful deletion: SIGKILL at */
    int terminating;
    int gone;              /* removed from the store */
} kpod;

typedef struct image_map {
    char glob[512];
    char bin[4096];
} image_map;

struct kl_kubelet {
    kl_api *api;
    char dir[4096];
    image_map *maps;
    size_t n_maps;
    kpod **pods;
    size_t n_pods;
    unsigned ip_next;
    int64_t last_node_ms;
    kl_svc *svc;
};

static cJSON *meta(const cJSON *o)
{
    return cJSON_GetObjectItemCaseSensitive(o, "metadata");
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const char *jstr0(const cJSON *o, const char *k)
{
    const char *s = jstr(o, k);
    return s ? s : "";
}

static kl_res *pods_res(kl_kubelet *k)
{
    return kl_api_res(k->api, "", "pods");
}

/* ---- image mapping ---- */

static int load_images(kl_kubelet *k, const char *path, kiln_error *err)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return kiln_fail(err, KILN_ENOTFOUND, "images file %s: %s", path, strerror(errno));
    char line[5000];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *eq = strchr(line, '=');
        if (!line[0] || line[0] == '#' || !eq)
            continue;
        *eq = 0;
        image_map *nm = realloc(k->maps, (k->n_maps + 1) * sizeof(*nm));
        if (!nm) {
            fclose(f);
            return KILN_ENOMEM;
        }
        k->maps = nm;
        snprintf(nm[k->n_maps].glob, sizeof(nm[0].glob), "%s", line);
        snprintf(nm[k->n_maps].bin, sizeof(nm[0].bin), "%s", eq + 1);
        k->n_maps++;
    }
    fclose(f);
    return 0;
}

static const char *image_binary(kl_kubelet *k, const char *image)
{
    for (size_t i = 0; image && i < k->n_maps; i++)
        if (fnmatch(k->maps[i].glob, image, 0) == 0)
            return k->maps[i].bin;
    return NULL;
}

/* ---- node ---- */

static void ensure_node(kl_kubelet *k)
{
    int64_t now = ktime_mono_ms();
    kl_res *nr = kl_api_res(k->api, "", "nodes");
    const cJSON *cur = kl_store_get(kl_api_store(k->api), nr->rkey, "", "kubelite");
    if (cur && now - k->last_node_ms < 30000)
        return;
    k->last_node_ms = now;
    cJSON *n = cur ? cJSON_Duplicate(cur, 1) : cJSON_CreateObject();
    if (!cur) {
        cJSON_AddStringToObject(n, "apiVersion", "v1");
        cJSON_AddStringToObject(n, "kind", "Node");
        cJSON *md = cJSON_AddObjectToObject(n, "metadata");
        cJSON_AddStringToObject(md, "name", "kubelite");
        cJSON *l = cJSON_AddObjectToObject(md, "labels");
        cJSON_AddStringToObject(l, "kubernetes.io/hostname", "kubelite");
        cJSON_AddStringToObject(l, "kubernetes.io/os", "linux");
    }
    cJSON_DeleteItemFromObjectCaseSensitive(n, "status");
    cJSON *st = cJSON_AddObjectToObject(n, "status");
    char mem[32], cpus[16];
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    snprintf(mem, sizeof(mem), "%lldKi", (long long)pages * psz / 1024);
    snprintf(cpus, sizeof(cpus), "%ld", sysconf(_SC_NPROCESSORS_ONLN));
    const char *kinds[] = {"capacity", "allocatable"};
    for (int i = 0; i < 2; i++) {
        cJSON *c = cJSON_AddObjectToObject(st, kinds[i]);
        cJSON_AddStringToObject(c, "cpu", cpus);
        cJSON_AddStringToObject(c, "memory", mem);
        cJSON_AddStringToObject(c, "pods", "110");
        cJSON_AddStringToObject(c, "ephemeral-storage", "10Gi");
    }
    char t[KTIME_BUFSZ];
    kl_now_str(t, sizeof(t), 0);
    cJSON *conds = cJSON_AddArrayToObject(st, "conditions");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "type", "Ready");
    cJSON_AddStringToObject(c, "status", "True");
    cJSON_AddStringToObject(c, "reason", "KubeletReady");
    cJSON_AddStringToObject(c, "message", "kubelite kubelet is posting ready status");
    cJSON_AddStringToObject(c, "lastHeartbeatTime", t);
    cJSON_AddStringToObject(c, "lastTransitionTime", t);
    cJSON_AddItemToArray(conds, c);
    cJSON *addr = cJSON_AddArrayToObject(st, "addresses");
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "type", "InternalIP");
    cJSON_AddStringToObject(a, "address", "127.0.0.1");
    cJSON_AddItemToArray(addr, a);
    cJSON *ni = cJSON_AddObjectToObject(st, "nodeInfo");
    cJSON_AddStringToObject(ni, "kubeletVersion", "v1.32.0-kubelite");
    cJSON_AddStringToObject(ni, "operatingSystem", "linux");
    cJSON_AddStringToObject(ni, "architecture", "amd64");
    cJSON_AddStringToObject(ni, "containerRuntimeVersion", "bwrap");
    kl_api_write(k->api, nr, n, NULL);
}

/* ---- pod table ---- */

static kpod *find_pod(kl_kubelet *k, const char *uid)
{
    for (size_t i = 0; i < k->n_pods; i++)
        if (!strcmp(k->pods[i]->uid, uid))
            return k->pods[i];
    return NULL;
}

static kpod *find_pod_name(kl_kubelet *k, const char *ns, const char *name)
{
    for (size_t i = 0; i < k->n_pods; i++)
        if (!strcmp(k->pods[i]->ns, ns) && !strcmp(k->pods[i]->name, name))
            return k->pods[i];
    return NULL;
}

static ctr *find_ctr(kpod *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->c[i].name, name))
            return &p->c[i];
    return NULL;
}

static void log_path(const kpod *p, const ctr *c, int restart, char *buf, size_t n)
{
    snprintf(buf, n, "%s/logs/%s-%d.log", p->dir, c->name, restart);
}

static int mkdirs(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *s = tmp + 1; *s; s++) {
        if (*s == '/') {
            *s = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            *s = '/';
        }
    }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static int write_file(const char *path, const char *data, size_t n, int mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    int ok = write(fd, data, n) == (ssize_t)n;
    close(fd);
    return ok ? 0 : -1;
}

static size_t b64dec(const char *in, unsigned char *out)
{
    static int T[256];
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
static void project(kl_kubelet *k, const char *ns, const cJSON *src, const char *plural,
                    const char *name_key, const char *dir, int secret)
{
    kl_res *r = kl_api_res(k->api, "", plural);
    const char *name = jstr(src, name_key);
    const cJSON *obj = name ? kl_store_get(kl_api_store(k->api), r->rkey, ns, name) : NULL;
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
            cJSON_ArrayForEach(it, items) if (!strcmp(jstr0(it, "key"), e->string)) fname = jstr(it, "path");
            if (!fname)
                continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, fname);
        char *slash = strrchr(path, '/');
        if (slash) {
            *slash = 0;
            mkdirs(path);
            *slash = '/';
        }
        if (secret) {
            size_t len = strlen(e->valuestring);
            unsigned char *buf = malloc(len + 1);
            if (buf) {
                size_t n = b64dec(e->valuestring, buf);
                write_file(path, (const char *)buf, n, 0644);
                free(buf);
            }
        } else {
            write_file(path, e->valuestring, strlen(e->valuestring), 0644);
        }
    }
}

static const char *field_ref(const cJSON *pod, const kpod *p, const char *path)
{
    if (!strcmp(path, "status.podIP") || !strcmp(path, "status.hostIP"))
        return !strcmp(path, "status.podIP") ? p->ip : "127.0.0.1";
    char jp[300];
    snprintf(jp, sizeof(jp), ".%s", path);
    if (!strncmp(path, "metadata.labels['", 17) || !strncmp(path, "metadata.annotations['", 22)) {
        const char *q = strchr(path, '\'');
        char key[256];
        if (q && sscanf(q + 1, "%255[^']", key) == 1) {
            const cJSON *m = cJSON_GetObjectItemCaseSensitive(
                meta(pod), path[9] == 'l' ? "labels" : "annotations");
            return jstr(m, key);
        }
        return NULL;
    }
    const cJSON *v = kl_table_jsonpath(pod, jp);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Volumes: returns the host directory for a volume name. */
static int volume_dir(kl_kubelet *k, const cJSON *pod, const kpod *p, const char *vname,
                      char *out, size_t n, int *is_file)
{
    *is_file = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, kl_table_jsonpath(pod, ".spec.volumes"))
    {
        if (strcmp(jstr0(v, "name"), vname) != 0)
            continue;
        const cJSON *hp = cJSON_GetObjectItemCaseSensitive(v, "hostPath");
        const cJSON *pvc = cJSON_GetObjectItemCaseSensitive(v, "persistentVolumeClaim");
        if (hp) {
            snprintf(out, n, "%s", jstr0(hp, "path"));
            const char *type = jstr(hp, "type");
            if (type && (!strcmp(type, "DirectoryOrCreate")))
                mkdirs(out);
            struct stat sb;
            if (stat(out, &sb) == 0 && !S_ISDIR(sb.st_mode))
                *is_file = 1;
            return stat(out, &sb) == 0 ? 0 : -1;
        }
        if (pvc) {
            snprintf(out, n, "%s/volumes/%s/%s", k->dir, p->ns, jstr0(pvc, "claimName"));
            return mkdirs(out);
        }
        snprintf(out, n, "%s/vol/%s", p->dir, vname);
        return 0; /* emptyDir, configMap, secret, downwardAPI: prepared at pod setup */
    }
    return -1;
}

static void setup_volumes(kl_kubelet *k, const cJSON *pod, kpod *p)
{
    const cJSON *v;
    char d[4400];
    cJSON_ArrayForEach(v, kl_table_jsonpath(pod, ".spec.volumes"))
    {
        snprintf(d, sizeof(d), "%s/vol/%s", p->dir, jstr0(v, "name"));
        if (cJSON_GetObjectItemCaseSensitive(v, "hostPath") ||
            cJSON_GetObjectItemCaseSensitive(v, "persistentVolumeClaim"))
            continue;
        mkdirs(d);
        const cJSON *cm = cJSON_GetObjectItemCaseSensitive(v, "configMap");
        const cJSON *sec = cJSON_GetObjectItemCaseSensitive(v, "secret");
        const cJSON *dw = cJSON_GetObjectItemCaseSensitive(v, "downwardAPI");
        if (cm)
            project(k, p->ns, cm, "configmaps", "name", d, 0);
        if (sec)
            project(k, p->ns, sec, "secrets", "secretName", d, 1);
        if (dw) {
            const cJSON *it;
            cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(dw, "items"))
            {
                const char *fp = jstr(cJSON_GetObjectItemCaseSensitive(it, "fieldRef"), "fieldPath");
                const char *val = fp ? field_ref(pod, p, fp) : NULL;
                char path[4700];
                snprintf(path, sizeof(path), "%s/%s", d, jstr0(it, "path"));
                if (val)
                    write_file(path, val, strlen(val), 0644);
            }
        }
    }
}

/* ---- argv building ---- */

typedef struct argv_t {
    char **v;
    int n, cap;
} argv_t;

static void arg(argv_t *a, const char *s)
{
    if (a->n + 2 > a->cap) {
        int nc = a->cap ? a->cap * 2 : 64;
        char **nv = realloc(a->v, (size_t)nc * sizeof(*nv));
        if (!nv)
            return;
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = strdup(s ? s : "");
    a->v[a->n] = NULL;
}

static void argv_free(argv_t *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
}

static const char *env_value(kl_kubelet *k, const cJSON *pod, const kpod *p, const cJSON *e,
                             char *buf, size_t n)
{
    const char *v = jstr(e, "value");
    if (v)
        return v;
    const cJSON *vf = cJSON_GetObjectItemCaseSensitive(e, "valueFrom");
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(vf, "fieldRef");
    if (fr)
        return field_ref(pod, p, jstr0(fr, "fieldPath"));
    const cJSON *cm = cJSON_GetObjectItemCaseSensitive(vf, "configMapKeyRef");
    const cJSON *sk = cJSON_GetObjectItemCaseSensitive(vf, "secretKeyRef");
    const cJSON *ref = cm ? cm : sk;
    if (ref) {
        kl_res *r = kl_api_res(k->api, "", cm ? "configmaps" : "secrets");
        const cJSON *o = kl_store_get(kl_api_store(k->api), r->rkey, p->ns, jstr0(ref, "name"));
        const char *val = jstr(cJSON_GetObjectItemCaseSensitive(o, "data"), jstr0(ref, "key"));
        if (val && sk) {
            unsigned char *d = malloc(strlen(val) + 1);
            if (!d)
                return NULL;
            size_t len = b64dec(val, d);
            snprintf(buf, n, "%.*s", (int)len, (const char *)d);
            free(d);
            return buf;
        }
        return val;
    }
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(vf, "resourceFieldRef");
    if (rf) {
        snprintf(buf, n, "0");
        return buf;
    }
    return NULL;
}

/* Binds the image's binary at the container's command path. Inside the
 * read-only /usr bwrap cannot create a missing mount point (say
 * /usr/local/bin/kiln-trainer on a host without it), so the deepest
 * existing directory on that path is covered with a tmpfs, the host's
 * entries in it are bound back one by one, and the missing directories are
 * made in the tmpfs. */
static void bind_command(argv_t *a, const char *bin, const char *at)
{
    struct stat st;
    if (strncmp(at, "/usr/", 5) != 0 || lstat(at, &st) == 0) {
        arg(a, "--ro-bind");
        arg(a, bin);
        arg(a, at);
        return;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", at);
    char *slash = strrchr(dir, '/');
    *slash = '\0';
    while (strlen(dir) > 4 && stat(dir, &st) != 0) /* deepest existing ancestor, at most /usr */
        *strrchr(dir, '/') = '\0';
    arg(a, "--tmpfs");
    arg(a, dir);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char path[4400], target[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            arg(a, "--symlink");
            arg(a, target);
        } else {
            arg(a, "--ro-bind-try");
            arg(a, path);
        }
        arg(a, path);
    }
    if (d)
        closedir(d);
    /* directories between the tmpfs and the binary */
    size_t base = strlen(dir);
    char sub[4096];
    snprintf(sub, sizeof sub, "%s", at);
    for (char *q = sub + base + 1; (q = strchr(q, '/')) != NULL; q++) {
        *q = '\0';
        arg(a, "--dir");
        arg(a, sub);
        *q = '/';
    }
    arg(a, "--ro-bind");
    arg(a, bin);
    arg(a, at);
}

/* Expands $(VAR) in a command or argument from the container's env, as a
 * kubelet does: $$ is a literal $, and a reference to an unknown variable
 * stays as written. */
static void expand_refs(kl_kubelet *k, const cJSON *pod, const kpod *p, const cJSON *cs,
                        const char *in, char *out, size_t n)
{
    size_t o = 0;
    for (const char *q = in; *q && o + 1 < n;) {
        if (q[0] == '$' && q[1] == '$') {
            out[o++] = '$';
            q += 2;
            continue;
        }
        const char *close = q[0] == '$' && q[1] == '(' ? strchr(q + 2, ')') : NULL;
        if (close) {
            size_t len = (size_t)(close - (q + 2));
            const char *val = NULL;
            char vbuf[4096];
            const cJSON *e;
            cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(cs, "env"))
            {
                const char *name = jstr(e, "name");
                if (name && strlen(name) == len && !strncmp(name, q + 2, len))
                    val = env_value(k, pod, p, e, vbuf, sizeof vbuf);
            }
            if (val) {
                size_t vl = strlen(val);
                if (o + vl >= n)
                    vl = n - o - 1;
                memcpy(out + o, val, vl);
                o += vl;
                q = close + 1;
                continue;
            }
        }
        out[o++] = *q++;
    }
    out[o] = '\0';
}

/* Builds the bwrap command line for container spec cs of pod. */
static int build_argv(kl_kubelet *k, const cJSON *pod, kpod *p, const cJSON *cs, ctr *c,
                      const cJSON *override_cmd, argv_t *a)
{
    char buf[4400], tl[4400];
    arg(a, "bwrap");
    arg(a, "--unshare-pid");
    arg(a, "--die-with-parent");
    arg(a, "--ro-bind");
    arg(a, "/usr");
    arg(a, "/usr");
    const char *links[][2] = {{"usr/lib", "/lib"}, {"usr/lib64", "/lib64"}, {"usr/bin", "/bin"},
                              {"usr/sbin", "/sbin"}};
    for (int i = 0; i < 4; i++) {
        arg(a, "--symlink");
        arg(a, links[i][0]);
        arg(a, links[i][1]);
    }
    const char *etc[] = {"/etc/passwd", "/etc/group", "/etc/hosts", "/etc/resolv.conf",
                         "/etc/nsswitch.conf", "/etc/ssl", "/etc/ca-certificates", "/etc/localtime",
                         "/etc/alternatives"};
    for (int i = 0; i < 9; i++) {
        arg(a, "--ro-bind-try");
        arg(a, etc[i]);
        arg(a, etc[i]);
    }
    arg(a, "--proc");
    arg(a, "/proc");
    arg(a, "--dev");
    arg(a, "/dev");
    arg(a, "--tmpfs");
    arg(a, "/tmp");
    snprintf(tl, sizeof(tl), "%s/term/%s", p->dir, c->name);
    arg(a, "--bind");
    arg(a, tl);
    arg(a, "/dev/termination-log");
    const cJSON *vm;
    cJSON_ArrayForEach(vm, cJSON_GetObjectItemCaseSensitive(cs, "volumeMounts"))
    {
        int is_file;
        if (volume_dir(k, pod, p, jstr0(vm, "name"), buf, sizeof(buf), &is_file) != 0)
            return -1;
        char src[4700];
        const char *sub = jstr(vm, "subPath");
        if (sub && sub[0]) {
            snprintf(src, sizeof(src), "%s/%s", buf, sub);
            struct stat sb;
            if (stat(src, &sb) != 0)
                mkdirs(src);
        } else {
            snprintf(src, sizeof(src), "%s", buf);
        }
        arg(a, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(vm, "readOnly")) ? "--ro-bind" : "--bind");
        arg(a, src);
        arg(a, jstr0(vm, "mountPath"));
    }
    /* Image -> binary, bound at the container's command[0]. */
    const cJSON *cmd = override_cmd ? override_cmd : cJSON_GetObjectItemCaseSensitive(cs, "command");
    const cJSON *args = override_cmd ? NULL : cJSON_GetObjectItemCaseSensitive(cs, "args");
    const char *bin = image_binary(k, jstr(cs, "image"));
    const char *cmd0 = cJSON_GetArraySize(cmd) ? jstr0(cJSON_GetArrayItem(cmd, 0), "") : NULL;
    if (cJSON_GetArraySize(cmd))
        cmd0 = cJSON_GetArrayItem(cmd, 0)->valuestring;
    if (bin && !override_cmd) {
        const char *at = cmd0 && cmd0[0] == '/' ? cmd0 : bin;
        if (strncmp(at, "/usr/", 5) != 0 || strcmp(at, bin) != 0)
            bind_command(a, bin, at);
        if (!cmd0)
            cmd0 = bin;
    }
    if (!cmd0)
        return -1;
    const char *wd = jstr(cs, "workingDir");
    arg(a, "--chdir");
    arg(a, wd && wd[0] ? wd : "/");
    if (wd && wd[0]) {
        arg(a, "--dir");
        arg(a, wd);
    }
    arg(a, "--clearenv");
    arg(a, "--setenv");
    arg(a, "PATH");
    arg(a, "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    arg(a, "--setenv");
    arg(a, "HOSTNAME");
    arg(a, p->name);
    arg(a, "--setenv");
    arg(a, "HOME");
    arg(a, "/tmp");
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(cs, "env"))
    {
        const char *v = env_value(k, pod, p, e, buf, sizeof(buf));
        if (!jstr(e, "name") || !v)
            continue;
        arg(a, "--setenv");
        arg(a, jstr(e, "name"));
        arg(a, v);
    }
    arg(a, "--");
    char ex[4400];
    if (cJSON_GetArraySize(cmd)) {
        const cJSON *x;
        cJSON_ArrayForEach(x, cmd)
        {
            expand_refs(k, pod, p, cs, cJSON_IsString(x) ? x->valuestring : "", ex, sizeof ex);
            arg(a, ex);
        }
    } else {
        arg(a, cmd0);
    }
    const cJSON *x;
    cJSON_ArrayForEach(x, args)
    {
        expand_refs(k, pod, p, cs, cJSON_IsString(x) ? x->valuestring : "", ex, sizeof ex);
        arg(a, ex);
    }
    return 0;
}

/* ---- memory limits ----
 * A container with a memory limit gets its own memory cgroup (v2 when the
 * unified hierarchy is mounted at /sys/fs/cgroup, else the v1 memory
 * controller); the kernel's OOM killer then enforces the limit and the
 * cgroup's oom_kill counter tells OOMKilled apart from other SIGKILLs.
 * Without a writable cgroup, RLIMIT_AS is the fallback (allocations fail
 * instead of an OOM kill). */

static int write_str(const char *path, const char *v)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, v, strlen(v));
    close(fd);
    return n == (ssize_t)strlen(v) ? 0 : -1;
}

static int cg_create(const kpod *p, ctr *c)
{
    struct stat sb;
    int v2 = stat("/sys/fs/cgroup/cgroup.controllers", &sb) == 0;
    char lim[32];
    snprintf(lim, sizeof(lim), "%lld", (long long)c->mem_limit);
    if (v2)
        snprintf(c->cg, sizeof(c->cg), "/sys/fs/cgroup/kubelite-%s-%s-%d", p->uid, c->name, c->restarts);
    else
        snprintf(c->cg, sizeof(c->cg), "/sys/fs/cgroup/memory/kubelite-%s-%s-%d", p->uid, c->name,
                 c->restarts);
    char f[600];
    snprintf(f, sizeof(f), "%s/%s", c->cg, v2 ? "memory.max" : "memory.limit_in_bytes");
    if ((mkdir(c->cg, 0755) != 0 && errno != EEXIST) || write_str(f, lim) != 0) {
        rmdir(c->cg);
        c->cg[0] = 0;
        return -1;
    }
    return 0;
}

/* oom_kill count of the container's cgroup (0 when unknown). */
static long cg_oom_kills(const ctr *c)
{
    if (!c->cg[0])
        return 0;
    char f[600], line[128];
    snprintf(f, sizeof(f), "%s/memory.oom_control", c->cg);
    FILE *fp = fopen(f, "re");
    if (!fp) {
        snprintf(f, sizeof(f), "%s/memory.events", c->cg);
        fp = fopen(f, "re");
    }
    long n = 0;
    while (fp && fgets(line, sizeof(line), fp))
        if (sscanf(line, "oom_kill %ld", &n) == 1)
            break;
    if (fp)
        fclose(fp);
    return n;
}

static void cg_remove(ctr *c)
{
    if (c->cg[0])
        rmdir(c->cg);
    c->cg[0] = 0;
}

static pid_t spawn_cg(argv_t *a, const char *logfile, int64_t mem_limit, const char *cg);

static pid_t spawn(argv_t *a, const char *logfile, int64_t mem_limit)
{
    return spawn_cg(a, logfile, mem_limit, NULL);
}

static pid_t spawn_cg(argv_t *a, const char *logfile, int64_t mem_limit, const char *cg)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* child */
    setsid();
    int fd = logfile ? open(logfile, O_WRONLY | O_CREAT | O_APPEND, 0644) : open("/dev/null", O_WRONLY);
    int in = open("/dev/null", O_RDONLY);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    if (in >= 0)
        dup2(in, 0);
    for (int i = 3; i < 1024; i++)
        close(i);
    if (cg && cg[0]) {
        char f[600], pid[32];
        snprintf(f, sizeof(f), "%s/cgroup.procs", cg);
        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        if (write_str(f, pid) != 0)
            cg = NULL;
    }
    if (mem_limit > 0 && !(cg && cg[0])) {
        struct rlimit rl = {(rlim_t)mem_limit, (rlim_t)mem_limit};
        setrlimit(RLIMIT_AS, &rl);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    execvp(a->v[0], a->v);
    _exit(127);
}

static const cJSON *ctr_spec(const cJSON *pod, const char *name)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, kl_table_jsonpath(pod, ".spec.containers"))
        if (!strcmp(jstr0(c, "name"), name)) return c;
    return NULL;
}

static void start_ctr(kl_kubelet *k, const cJSON *pod, kpod *p, ctr *c)
{
    const cJSON *cs = ctr_spec(pod, c->name);
    argv_t a = {0};
    char lp[4400], tl[4400];
    snprintf(tl, sizeof(tl), "%s/term/%s", p->dir, c->name);
    write_file(tl, "", 0, 0666);
    if (!cs || build_argv(k, pod, p, cs, c, NULL, &a) != 0) {
        argv_free(&a);
        c->running = 0;
        c->done = 1;
        c->started = 1;
        c->exit_code = 128;
        snprintf(c->reason, sizeof(c->reason), "ContainerCannotRun");
        return;
    }
    log_path(p, c, c->restarts, lp, sizeof(lp));
    cg_remove(c);
    if (c->mem_limit > 0)
        cg_create(p, c);
    c->pid = spawn_cg(&a, lp, c->mem_limit, c->cg);
    argv_free(&a);
    c->started = 1;
    c->running = c->pid > 0;
    c->exit_code = 0;
    c->signal = 0;
    c->reason[0] = 0;
    kl_now_str(c->started_at, sizeof(c->started_at), 0);
    c->next_probe_ms = ktime_mono_ms() + 200;
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(cs, "readinessProbe");
    c->ready = rp ? 0 : 1;
    const cJSON *ids = kl_table_jsonpath(rp, ".initialDelaySeconds");
    if (cJSON_IsNumber(ids))
        c->next_probe_ms = ktime_mono_ms() + (int64_t)(ids->valuedouble * 1000);
}

static kpod *add_pod(kl_kubelet *k, const cJSON *pod)
{
    kpod *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    kpod **np = realloc(k->pods, (k->n_pods + 1) * sizeof(*np));
    if (!np) {
        free(p);
        return NULL;
    }
    k->pods = np;
    k->pods[k->n_pods++] = p;
    snprintf(p->uid, sizeof(p->uid), "%s", jstr0(meta(pod), "uid"));
    snprintf(p->ns, sizeof(p->ns), "%s", jstr0(meta(pod), "namespace"));
    snprintf(p->name, sizeof(p->name), "%s", jstr0(meta(pod), "name"));
    snprintf(p->dir, sizeof(p->dir), "%s/pods/%s", k->dir, p->uid);
    const char *ip = jstr(cJSON_GetObjectItemCaseSensitive(pod, "status"), "podIP");
    if (ip && ip[0]) {
        snprintf(p->ip, sizeof(p->ip), "%s", ip);
    } else {
        unsigned n = k->ip_next++;
        snprintf(p->ip, sizeof(p->ip), "127.%d.%u.%u", kl_api_net_octet(k->api), 1 + (n / 250) % 250,
                 n % 250 + 2);
    }
    kl_now_str(p->start_time, sizeof(p->start_time), 0);
    char d[4400];
    snprintf(d, sizeof(d), "%s/logs", p->dir);
    mkdirs(d);
    snprintf(d, sizeof(d), "%s/term", p->dir);
    mkdirs(d);
    const cJSON *ads = kl_table_jsonpath(pod, ".spec.activeDeadlineSeconds");
    if (cJSON_IsNumber(ads))
        p->deadline_ms = ktime_mono_ms() + (int64_t)(ads->valuedouble * 1000);
    const cJSON *c;
    cJSON_ArrayForEach(c, kl_table_jsonpath(pod, ".spec.containers"))
    {
        if (p->n == MAX_CTR)
            break;
        ctr *x = &p->c[p->n++];
        snprintf(x->name, sizeof(x->name), "%s", jstr0(c, "name"));
        x->backoff_ms = 1000;
        const char *ml = jstr(kl_table_jsonpath(c, ".resources.limits"), "memory");
        kquantity q;
        if (ml && kquantity_parse(ml, &q, NULL) == 0)
            x->mem_limit = q.value;
    }
    setup_volumes(k, pod, p);
    return p;
}

static void kill_pod(kpod *p, int sig)
{
    for (int i = 0; i < p->n; i++)
        if (p->c[i].running && p->c[i].pid > 0)
            kill(-p->c[i].pid, sig), kill(p->c[i].pid, sig);
}

static void free_pod(kpod *p)
{
    for (int i = 0; i < p->n; i++) {
        cJSON_Delete(p->c[i].last_state);
        cg_remove(&p->c[i]);
    }
    free(p);
}

/* ---- probes ---- */

static int tcp_ok(const char *ip, int port, const char *http_path)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    int ok = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EINPROGRESS) {
        struct pollfd pf = {fd, POLLOUT, 0};
        int err = 0;
        socklen_t el = sizeof(err);
        if (poll(&pf, 1, 300) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 &&
            err == 0) {
            ok = 1;
            if (http_path) {
                char req[600];
                int n = snprintf(req, sizeof(req),
                                 "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: kube-probe/1.32\r\n\r\n",
                                 http_path, ip);
                ok = 0;
                if (write(fd, req, (size_t)n) == n) {
                    pf.events = POLLIN;
                    char resp[64] = "";
                    if (poll(&pf, 1, 500) == 1 && read(fd, resp, sizeof(resp) - 1) > 12) {
                        int code = atoi(resp + 9);
                        ok = code >= 200 && code < 400;
                    }
                }
            }
        }
    }
    close(fd);
    return ok;
}

static int probe_port(const cJSON *cs, const cJSON *port)
{
    if (cJSON_IsNumber(port))
        return port->valueint;
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(cs, "ports"))
    {
        if (cJSON_IsString(port) && !strcmp(jstr0(p, "name"), port->valuestring))
            return (int)kl_table_jsonpath(p, ".containerPort")->valuedouble;
    }
    return cJSON_IsString(port) ? atoi(port->valuestring) : 0;
}

static void run_probe(kl_kubelet *k, const cJSON *pod, kpod *p, ctr *c)
{
    (void)k;
    const cJSON *cs = ctr_spec(pod, c->name);
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(cs, "readinessProbe");
    if (!rp || !c->running)
        return;
    int64_t now = ktime_mono_ms();
    if (now < c->next_probe_ms)
        return;
    const cJSON *per = cJSON_GetObjectItemCaseSensitive(rp, "periodSeconds");
    c->next_probe_ms = now + (cJSON_IsNumber(per) ? (int64_t)(per->valuedouble * 1000) : 10000);
    const cJSON *hg = cJSON_GetObjectItemCaseSensitive(rp, "httpGet");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(rp, "tcpSocket");
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(rp, "exec");
    if (hg) {
        const char *path = jstr(hg, "path");
        c->ready = tcp_ok(p->ip, probe_port(cs, cJSON_GetObjectItemCaseSensitive(hg, "port")),
                          path ? path : "/");
    } else if (ts) {
        c->ready = tcp_ok(p->ip, probe_port(cs, cJSON_GetObjectItemCaseSensitive(ts, "port")), NULL);
    } else if (ex) {
        /* Exec probes run inside the container: enter the namespaces of the
         * sandbox's first process (bwrap's child, pid 1 of the pod). */
        char f[128], buf[64] = "";
        snprintf(f, sizeof(f), "/proc/%d/task/%d/children", (int)c->pid, (int)c->pid);
        FILE *fp = fopen(f, "re");
        if (fp) {
            if (!fgets(buf, sizeof(buf), fp))
                buf[0] = 0;
            fclose(fp);
        }
        int target = atoi(buf);
        const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(ex, "command");
        if (target <= 0 || !cJSON_GetArraySize(cmd)) {
            c->ready = 0;
            return;
        }
        argv_t a = {0};
        char t[32];
        snprintf(t, sizeof(t), "%d", target);
        arg(&a, "nsenter");
        arg(&a, "-t");
        arg(&a, t);
        arg(&a, "-m");
        arg(&a, "-p");
        arg(&a, "-r");
        arg(&a, "-w");
        arg(&a, "--");
        const cJSON *x;
        cJSON_ArrayForEach(x, cmd) arg(&a, cJSON_IsString(x) ? x->valuestring : "");
        pid_t pid = spawn(&a, NULL, 0);
        int st = 0;
        int64_t end = ktime_mono_ms() + 1000;
        pid_t w = 0;
        while (pid > 0 && (w = waitpid(pid, &st, WNOHANG)) == 0 && ktime_mono_ms() < end)
            usleep(2000);
        if (w == 0 && pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
        }
        c->ready = w == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
        argv_free(&a);
    }
}

/* ---- status ---- */

static cJSON *terminated_json(const kpod *p, const ctr *c)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "exitCode", c->exit_code);
    if (c->signal)
        cJSON_AddNumberToObject(t, "signal", c->signal);
    cJSON_AddStringToObject(t, "reason", c->reason[0] ? c->reason : (c->exit_code ? "Error" : "Completed"));
    char tl[4400];
    snprintf(tl, sizeof(tl), "%s/term/%s", p->dir, c->name);
    FILE *f = fopen(tl, "re");
    if (f) {
        char msg[4097];
        size_t n = fread(msg, 1, 4096, f);
        msg[n] = 0;
        fclose(f);
        if (n)
            cJSON_AddStringToObject(t, "message", msg);
    }
    cJSON_AddStringToObject(t, "startedAt", c->started_at);
    cJSON_AddStringToObject(t, "finishedAt", c->finished_at);
    char id[400];
    snprintf(id, sizeof(id), "kubelite://%s-%s-%d", p->uid, c->name, c->restarts);
    cJSON_AddStringToObject(t, "containerID", id);
    return t;
}

static cJSON *cond(const char *type, int ok, const char *t, const cJSON *old)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "type", type);
    cJSON_AddStringToObject(c, "status", ok ? "True" : "False");
    const cJSON *oc;
    const char *ltt = t;
    cJSON_ArrayForEach(oc, old) if (!strcmp(jstr0(oc, "type"), type) &&
                                    !strcmp(jstr0(oc, "status"), ok ? "True" : "False") &&
                                    jstr(oc, "lastTransitionTime")) ltt = jstr(oc, "lastTransitionTime");
    cJSON_AddNullToObject(c, "lastProbeTime");
    cJSON_AddStringToObject(c, "lastTransitionTime", ltt);
    return c;
}

static void write_status(kl_kubelet *k, const cJSON *pod, kpod *p)
{
    cJSON *st = cJSON_CreateObject();
    const cJSON *old = cJSON_GetObjectItemCaseSensitive(pod, "status");
    int running = 0, all_done = 1, failed = 0, ready_all = 1, any_started = 0;
    cJSON *css = cJSON_CreateArray();
    for (int i = 0; i < p->n; i++) {
        ctr *c = &p->c[i];
        const cJSON *cs = ctr_spec(pod, c->name);
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", c->name);
        cJSON *state = cJSON_AddObjectToObject(x, "state");
        cJSON_AddItemToObject(x, "lastState", c->last_state ? cJSON_Duplicate(c->last_state, 1) : cJSON_CreateObject());
        int ready = c->running && c->ready && !p->terminating;
        cJSON_AddBoolToObject(x, "ready", ready);
        cJSON_AddNumberToObject(x, "restartCount", c->restarts);
        cJSON_AddStringToObject(x, "image", jstr0(cs, "image"));
        cJSON_AddStringToObject(x, "imageID", "");
        char id[400];
        snprintf(id, sizeof(id), "kubelite://%s-%s-%d", p->uid, c->name, c->restarts);
        cJSON_AddStringToObject(x, "containerID", id);
        cJSON_AddBoolToObject(x, "started", c->running);
        if (c->running) {
            cJSON *r = cJSON_AddObjectToObject(state, "running");
            cJSON_AddStringToObject(r, "startedAt", c->started_at);
            running++;
            all_done = 0;
        } else if (c->done) {
            cJSON_AddItemToObject(state, "terminated", terminated_json(p, c));
            failed |= c->exit_code != 0 || c->reason[0];
        } else {
            cJSON *w = cJSON_AddObjectToObject(state, "waiting");
            cJSON_AddStringToObject(w, "reason", c->started ? "CrashLoopBackOff" : "ContainerCreating");
            if (c->started) {
                char m[300];
                snprintf(m, sizeof(m), "back-off %ds restarting failed container=%s pod=%s",
                         c->backoff_ms / 1000, c->name, p->name);
                cJSON_AddStringToObject(w, "message", m);
            }
            all_done = 0;
        }
        any_started |= c->started;
        ready_all &= ready;
        cJSON_AddItemToArray(css, x);
    }
    const char *phase = "Pending";
    if (p->deadline_hit)
        phase = "Failed";
    else if (all_done && p->n)
        phase = failed ? "Failed" : "Succeeded";
    else if (any_started)
        phase = "Running";
    cJSON_AddStringToObject(st, "phase", phase);
    if (p->deadline_hit) {
        cJSON_AddStringToObject(st, "reason", "DeadlineExceeded");
        cJSON_AddStringToObject(st, "message", "Pod was active on the node longer than the specified deadline");
    }
    const cJSON *oc = cJSON_GetObjectItemCaseSensitive(old, "conditions");
    char t[KTIME_BUFSZ];
    kl_now_str(t, sizeof(t), 0);
    cJSON *conds = cJSON_AddArrayToObject(st, "conditions");
    int ready = ready_all && running == p->n && !all_done;
    cJSON_AddItemToArray(conds, cond("Initialized", 1, t, oc));
    cJSON_AddItemToArray(conds, cond("Ready", ready, t, oc));
    cJSON_AddItemToArray(conds, cond("ContainersReady", ready, t, oc));
    cJSON_AddItemToArray(conds, cond("PodScheduled", 1, t, oc));
    cJSON_AddStringToObject(st, "hostIP", "127.0.0.1");
    cJSON *hips = cJSON_AddArrayToObject(st, "hostIPs");
    cJSON *hip = cJSON_CreateObject();
    cJSON_AddStringToObject(hip, "ip", "127.0.0.1");
    cJSON_AddItemToArray(hips, hip);
    cJSON_AddStringToObject(st, "podIP", p->ip);
    cJSON *ips = cJSON_AddArrayToObject(st, "podIPs");
    cJSON *ip = cJSON_CreateObject();
    cJSON_AddStringToObject(ip, "ip", p->ip);
    cJSON_AddItemToArray(ips, ip);
    cJSON_AddStringToObject(st, "startTime", p->start_time);
    cJSON_AddStringToObject(st, "qosClass", "BestEffort");
    cJSON_AddItemToObject(st, "containerStatuses", css);
    if (old && cJSON_Compare(old, st, 1)) {
        cJSON_Delete(st);
        return;
    }
    cJSON *n = cJSON_Duplicate(pod, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(n, "status");
    cJSON_AddItemToObject(n, "status", st);
    kl_api_write(k->api, pods_res(k), n, NULL);
}

/* ---- the loop ---- */

static void reap(kpod *p)
{
    for (int i = 0; i < p->n; i++) {
        ctr *c = &p->c[i];
        if (!c->running || c->pid <= 0)
            continue;
        int st;
        pid_t w = waitpid(c->pid, &st, WNOHANG);
        if (w != c->pid)
            continue;
        c->running = 0;
        kl_now_str(c->finished_at, sizeof(c->finished_at), 0);
        if (WIFEXITED(st)) {
            c->exit_code = WEXITSTATUS(st);
            /* bwrap reports a child killed by a signal as 128+n. */
            if (c->exit_code > 128 && c->exit_code < 160)
                c->signal = c->exit_code - 128;
        } else if (WIFSIGNALED(st)) {
            c->signal = WTERMSIG(st);
            c->exit_code = 128 + c->signal;
        }
        c->reason[0] = 0;
        if (c->mem_limit > 0 && (c->cg[0] ? cg_oom_kills(c) > 0
                                          : (c->signal == SIGKILL || c->signal == SIGSEGV ||
                                             c->signal == SIGABRT)))
            snprintf(c->reason, sizeof(c->reason), "OOMKilled");
        cg_remove(c);
        if (p->deadline_hit)
            snprintf(c->reason, sizeof(c->reason), "DeadlineExceeded");
    }
}

static void sync_pod(kl_kubelet *k, const cJSON *pod, kpod *p)
{
    reap(p);
    int64_t now = ktime_mono_ms();
    const char *policy = jstr(kl_table_jsonpath(pod, ".spec"), "restartPolicy");
    policy = policy ? policy : "Always";
    if (p->deadline_ms && now >= p->deadline_ms && !p->deadline_hit) {
        p->deadline_hit = 1;
        kill_pod(p, SIGKILL);
    }
    for (int i = 0; i < p->n; i++) {
        ctr *c = &p->c[i];
        if (c->running) {
            run_probe(k, pod, p, c);
            continue;
        }
        if (c->done || p->terminating || p->deadline_hit) {
            if (!c->running && c->started && !c->done) {
                c->done = 1;
            }
            continue;
        }
        if (!c->started) {
            start_ctr(k, pod, p, c);
            continue;
        }
        /* exited: restart policy */
        int again = !strcmp(policy, "Always") || (!strcmp(policy, "OnFailure") && c->exit_code != 0);
        if (!again) {
            c->done = 1;
            continue;
        }
        if (!c->next_start_ms) {
            cJSON_Delete(c->last_state);
            c->last_state = cJSON_CreateObject();
            cJSON_AddItemToObject(c->last_state, "terminated", terminated_json(p, c));
            c->next_start_ms = now + c->backoff_ms;
            continue;
        }
        if (now >= c->next_start_ms) {
            c->next_start_ms = 0;
            c->restarts++;
            c->backoff_ms = c->backoff_ms * 2 > 60000 ? 60000 : c->backoff_ms * 2;
            start_ctr(k, pod, p, c);
        }
    }
    write_status(k, pod, p);
}

static int pod_del_handler(void *ctx, const char *ns, const char *name, int64_t grace)
{
    kl_kubelet *k = ctx;
    kpod *p = find_pod_name(k, ns, name);
    if (!p)
        return 0;
    int any = 0;
    for (int i = 0; i < p->n; i++)
        any |= p->c[i].running;
    if (!any)
        return 0;
    kl_res *r = pods_res(k);
    const cJSON *cur = kl_store_get(kl_api_store(k->api), r->rkey, ns, name);
    if (!cur)
        return 0;
    cJSON *n = cJSON_Duplicate(cur, 1);
    cJSON *md = meta(n);
    if (!cJSON_GetObjectItemCaseSensitive(md, "deletionTimestamp")) {
        char t[KTIME_BUFSZ];
        kl_now_str(t, sizeof(t), 0);
        cJSON_AddStringToObject(md, "deletionTimestamp", t);
        cJSON_AddNumberToObject(md, "deletionGracePeriodSeconds", (double)grace);
    }
    kl_api_write(k->api, r, n, NULL);
    if (!p->terminating) {
        p->terminating = 1;
        p->kill_at_ms = ktime_mono_ms() + grace * 1000;
        kill_pod(p, SIGTERM);
    }
    return 1;
}

static int kill_handler(void *ctx, const char *ns, const char *name)
{
    kl_kubelet *k = ctx;
    kpod *p = find_pod_name(k, ns, name);
    if (!p)
        return -1;
    kill_pod(p, SIGKILL);
    return 0;
}

/* ---- logs ---- */

typedef struct logctx {
    kl_kubelet *k;
    char uid[64], ctr[128];
    int restart;
    int fd;
    int follow;
    int64_t limit; /* bytes left, -1: no limit */
} logctx;

static long log_read(void *ctx, char *buf, size_t n)
{
    logctx *l = ctx;
    if (l->limit == 0)
        return -1;
    if (l->limit > 0 && (int64_t)n > l->limit)
        n = (size_t)l->limit;
    ssize_t r = read(l->fd, buf, n);
    if (r > 0) {
        if (l->limit > 0)
            l->limit -= r;
        return r;
    }
    if (!l->follow)
        return -1;
    kpod *p = find_pod(l->k, l->uid);
    ctr *c = p ? find_ctr(p, l->ctr) : NULL;
    if (c && c->running && c->restarts == l->restart)
        return 0;
    /* The container ended: drain what is left, then end. */
    r = read(l->fd, buf, n);
    return r > 0 ? r : -1;
}

static void log_close(void *ctx)
{
    logctx *l = ctx;
    if (l->fd >= 0)
        close(l->fd);
    free(l);
}

static const char *qget(const kl_req *req, const char *k)
{
    for (int i = 0; i < req->nq; i++)
        if (!strcmp(req->qk[i], k))
            return req->qv[i];
    return NULL;
}

static int qtrue(const kl_req *req, const char *k)
{
    const char *v = qget(req, k);
    return v && (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "True") || !strcmp(v, "t"));
}

static void log_handler(void *ctx, const char *ns, const char *name, const kl_req *req,
                        kl_resp *resp)
{
    kl_kubelet *k = ctx;
    kpod *p = find_pod_name(k, ns, name);
    const char *cname = qget(req, "container");
    if (p && !cname) {
        if (p->n != 1) {
            kl_api_status(resp, 400, "BadRequest", NULL, NULL, NULL,
                          "a container name must be specified for pod %s", name);
            return;
        }
        cname = p->c[0].name;
    }
    ctr *c = p ? find_ctr(p, cname) : NULL;
    if (p && !c) {
        kl_api_status(resp, 400, "BadRequest", NULL, NULL, NULL,
                      "container %s is not valid for pod %s", cname, name);
        return;
    }
    if (!c || !c->started) {
        kl_api_status(resp, 400, "BadRequest", NULL, NULL, NULL,
                      "container \"%s\" in pod \"%s\" is waiting to start: ContainerCreating",
                      cname ? cname : "", name);
        return;
    }
    int prev = qtrue(req, "previous");
    if (prev && c->restarts == 0) {
        kl_api_status(resp, 400, "BadRequest", NULL, NULL, NULL,
                      "previous terminated container \"%s\" in pod \"%s\" not found", cname, name);
        return;
    }
    int restart = prev ? c->restarts - 1 : c->restarts;
    char lp[4400];
    log_path(p, c, restart, lp, sizeof(lp));
    int fd = open(lp, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    const char *tl = qget(req, "tailLines");
    if (tl) {
        long want = strtol(tl, NULL, 10);
        off_t size = lseek(fd, 0, SEEK_END);
        off_t pos = size;
        long lines = 0;
        char ch;
        /* Walk back over want newlines (ignoring a final one). */
        while (pos > 0) {
            if (pread(fd, &ch, 1, pos - 1) != 1)
                break;
            if (ch == '\n' && pos != size && ++lines >= want)
                break;
            pos--;
        }
        if (want <= 0)
            pos = size;
        lseek(fd, pos, SEEK_SET);
    }
    logctx *l = calloc(1, sizeof(*l));
    kl_log_stream *s = calloc(1, sizeof(*s));
    if (!l || !s) {
        free(l);
        free(s);
        close(fd);
        kl_api_status(resp, 500, "InternalError", NULL, NULL, NULL, "out of memory");
        return;
    }
    l->k = k;
    snprintf(l->uid, sizeof(l->uid), "%s", p->uid);
    snprintf(l->ctr, sizeof(l->ctr), "%s", c->name);
    l->restart = restart;
    l->fd = fd;
    l->follow = qtrue(req, "follow") && !prev;
    const char *lb = qget(req, "limitBytes");
    l->limit = lb ? strtoll(lb, NULL, 10) : -1;
    s->read = log_read;
    s->close = log_close;
    s->ctx = l;
    resp->code = 200;
    resp->ctype = "text/plain";
    resp->logs = s;
}

/* ---- API ---- */

int kl_kubelet_new(kl_api *api, const char *data_dir, const char *images_file,
                   kl_kubelet **out, kiln_error *err)
{
    *out = NULL;
    kl_kubelet *k = calloc(1, sizeof(*k));
    if (!k)
        return KILN_ENOMEM;
    k->api = api;
    snprintf(k->dir, sizeof(k->dir), "%s", data_dir);
    k->ip_next = 0;
    if (images_file) {
        int rc = load_images(k, images_file, err);
        if (rc) {
            free(k);
            return rc;
        }
    }
    /* Pod IPs already handed out stay reserved. */
    const cJSON **pods;
    size_t n;
    kl_res *r = kl_api_res(api, "", "pods");
    if (kl_store_list(kl_api_store(api), r->rkey, NULL, &pods, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            unsigned a, b, c, d;
            const char *ip = jstr(cJSON_GetObjectItemCaseSensitive(pods[i], "status"), "podIP");
            if (ip && sscanf(ip, "%u.%u.%u.%u", &a, &b, &c, &d) == 4 && c >= 1 && d >= 2) {
                unsigned idx = (c - 1) * 250 + (d - 2);
                if (idx + 1 > k->ip_next)
                    k->ip_next = idx + 1;
            }
        }
        free(pods);
    }
    if (kl_svc_new(api, &k->svc, err) != 0) {
        free(k->maps);
        free(k);
        return KILN_ENOMEM;
    }
    kl_api_set_log_handler(api, log_handler, k);
    kl_api_set_pod_delete_handler(api, pod_del_handler, k);
    kl_api_set_kill_handler(api, kill_handler, k);
    *out = k;
    return 0;
}

void kl_kubelet_free(kl_kubelet *k)
{
    if (!k)
        return;
    for (size_t i = 0; i < k->n_pods; i++) {
        kill_pod(k->pods[i], SIGKILL);
        for (int j = 0; j < k->pods[i]->n; j++)
            if (k->pods[i]->c[j].running)
                waitpid(k->pods[i]->c[j].pid, NULL, 0);
        free_pod(k->pods[i]);
    }
    free(k->pods);
    free(k->maps);
    kl_svc_free(k->svc);
    kl_api_set_log_handler(k->api, NULL, NULL);
    kl_api_set_pod_delete_handler(k->api, NULL, NULL);
    kl_api_set_kill_handler(k->api, NULL, NULL);
    free(k);
}

void kl_kubelet_tick(void *ctx)
{
    kl_kubelet *k = ctx;
    ensure_node(k);
    kl_store *st = kl_api_store(k->api);
    kl_res *r = pods_res(k);
    const cJSON **pods;
    size_t n;
    if (kl_store_list(st, r->rkey, NULL, &pods, &n) != 0)
        return;
    /* Copy identities first: status writes invalidate the borrowed list. */
    typedef struct {
        char ns[254], name[254], uid[64];
    } key;
    key *keys = n ? malloc(n * sizeof(*keys)) : NULL;
    size_t nk = 0;
    for (size_t i = 0; keys && i < n; i++) {
        if (strcmp(jstr0(kl_table_jsonpath(pods[i], ".spec"), "nodeName"), "kubelite") != 0)
            continue;
        snprintf(keys[nk].ns, sizeof(keys[0].ns), "%s", jstr0(meta(pods[i]), "namespace"));
        snprintf(keys[nk].name, sizeof(keys[0].name), "%s", jstr0(meta(pods[i]), "name"));
        snprintf(keys[nk].uid, sizeof(keys[0].uid), "%s", jstr0(meta(pods[i]), "uid"));
        nk++;
    }
    free(pods);
    for (size_t i = 0; i < k->n_pods; i++)
        k->pods[i]->gone = 1;
    for (size_t i = 0; i < nk; i++) {
        const cJSON *pod = kl_store_get(st, r->rkey, keys[i].ns, keys[i].name);
        if (!pod)
            continue;
        kpod *p = find_pod(k, keys[i].uid);
        if (!p) {
            const char *ph = jstr(cJSON_GetObjectItemCaseSensitive(pod, "status"), "phase");
            /* Terminal pods from before a restart are not run again. */
            if (ph && (!strcmp(ph, "Succeeded") || !strcmp(ph, "Failed")))
                continue;
            p = add_pod(k, pod);
            if (!p)
                continue;
        }
        p->gone = 0;
        if (!p->terminating && cJSON_GetObjectItemCaseSensitive(meta(pod), "deletionTimestamp")) {
            const cJSON *g = kl_table_jsonpath(pod, ".metadata.deletionGracePeriodSeconds");
            p->terminating = 1;
            p->kill_at_ms = ktime_mono_ms() + (cJSON_IsNumber(g) ? (int64_t)g->valuedouble * 1000 : 0);
            kill_pod(p, SIGTERM);
        }
        sync_pod(k, pod, p);
        if (p->terminating) {
            int any = 0;
            for (int j = 0; j < p->n; j++)
                any |= p->c[j].running;
            if (any && ktime_mono_ms() >= p->kill_at_ms)
                kill_pod(p, SIGKILL);
            const cJSON *cur = kl_store_get(st, r->rkey, keys[i].ns, keys[i].name);
            if (!any && cur && cJSON_GetObjectItemCaseSensitive(meta(cur), "deletionTimestamp") &&
                cJSON_GetArraySize(kl_table_jsonpath(cur, ".metadata.finalizers")) == 0)
                kl_store_del(st, r->rkey, keys[i].ns, keys[i].name, NULL);
        }
    }
    free(keys);
    /* Pods removed from the store: stop their processes. */
    size_t j = 0;
    for (size_t i = 0; i < k->n_pods; i++) {
        kpod *p = k->pods[i];
        if (p->gone) {
            kill_pod(p, SIGKILL);
            for (int c = 0; c < p->n; c++)
                if (p->c[c].running)
                    waitpid(p->c[c].pid, NULL, 0);
            free_pod(p);
        } else {
            k->pods[j++] = p;
        }
    }
    k->n_pods = j;
    kl_svc_sync(k->svc);
}
