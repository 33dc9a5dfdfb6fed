/* kl_sandbox: image mapping, the bwrap command line, memory cgroups and
 * process launch for kubelite's kubelet (see kl_sandbox.h). */
#include "kl_sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kl_cpu.h"
#include "kl_table.h"
#include "kl_volume.h"
#include "kl_worker.h"
#include "klog.h"
#include "ktime.h"

typedef struct image_map {
    char glob[512];
    char bin[4096];
} image_map;

typedef struct dir_listing {
    char dir[4096];
    dev_t dev;
    ino_t ino;
    struct timespec mtime;
    char *ents; /* "name\0target\0" pairs, target "" for a non-symlink; "\0" ends */
} dir_listing;

struct kl_sandbox {
    kl_api *api;
    char dir[4096];
    image_map *maps;
    size_t n_maps;
    int cg_v2;               /* the unified cgroup hierarchy is at /sys/fs/cgroup */
    kl_worker *worker;       /* NULL: its work is done on the caller's thread */
    dir_listing listings[8]; /* bind_command's, one per covered directory */
    size_t n_listings;
};

/* ---- image mapping ---- */

static int load_images(kl_sandbox *sb, const char *path, kiln_error *err)
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
        image_map *nm = realloc(sb->maps, (sb->n_maps + 1) * sizeof(*nm));
        if (!nm) {
            fclose(f);
            return KILN_ENOMEM;
        }
        sb->maps = nm;
        snprintf(nm[sb->n_maps].glob, sizeof(nm[0].glob), "%s", line);
        snprintf(nm[sb->n_maps].bin, sizeof(nm[0].bin), "%s", eq + 1);
        sb->n_maps++;
    }
    fclose(f);
    return 0;
}

static const char *image_binary(kl_sandbox *sb, const char *image)
{
    for (size_t i = 0; image && i < sb->n_maps; i++)
        if (fnmatch(sb->maps[i].glob, image, 0) == 0)
            return sb->maps[i].bin;
    return NULL;
}

/* ---- argv building ---- */

/* A growing argv. An allocation failure sets oom and spawn() refuses the
 * vector, so a command is never run with arguments missing. */
typedef struct argv_t {
    char **v;
    int n, cap;
    int oom;
} argv_t;

static void arg(argv_t *a, const char *s)
{
    if (a->oom)
        return;
    if (a->n + 2 > a->cap) {
        int nc = a->cap ? a->cap * 2 : 64;
        char **nv = realloc(a->v, (size_t)nc * sizeof(*nv));
        if (!nv) {
            a->oom = 1;
            return;
        }
        a->v = nv;
        a->cap = nc;
    }
    char *d = strdup(s ? s : "");
    if (!d) {
        a->oom = 1;
        return;
    }
    a->v[a->n++] = d;
    a->v[a->n] = NULL;
}

static void argv_free(argv_t *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
}

static const char *env_value(kl_sandbox *sb, const cJSON *pod, const kl_kpod *p, const cJSON *e,
                             char *buf, size_t n)
{
    const char *v = kl_kpod_jstr(e, "value");
    if (v)
        return v;
    const cJSON *vf = cJSON_GetObjectItemCaseSensitive(e, "valueFrom");
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(vf, "fieldRef");
    if (fr)
        return kl_volume_field_ref(pod, p, kl_kpod_jstr0(fr, "fieldPath"));
    const cJSON *cm = cJSON_GetObjectItemCaseSensitive(vf, "configMapKeyRef");
    const cJSON *sk = cJSON_GetObjectItemCaseSensitive(vf, "secretKeyRef");
    const cJSON *ref = cm ? cm : sk;
    if (ref) {
        kl_res *r = kl_api_res(sb->api, "", cm ? "configmaps" : "secrets");
        const cJSON *o =
            kl_store_get(kl_api_store(sb->api), r->rkey, p->ns, kl_kpod_jstr0(ref, "name"));
        const char *val =
            kl_kpod_jstr(cJSON_GetObjectItemCaseSensitive(o, "data"), kl_kpod_jstr0(ref, "key"));
        if (val && sk) {
            unsigned char *d = malloc(strlen(val) + 1);
            if (!d)
                return NULL;
            size_t len = kl_volume_b64dec(val, d);
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

/* The entries of a host directory bind_command covers with a tmpfs, read
 * once and again only when the directory changes: reading a directory
 * takes its lock, which every starting bwrap holds exclusively while it
 * mounts that tmpfs, at the weight of its pod (BestEffort: almost none),
 * so a read on the API server's thread could wait for hundreds of
 * milliseconds. stat() takes no lock. NULL when unreadable. */
static const char *listing(kl_sandbox *sb, const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return NULL;
    dir_listing *l = NULL;
    for (size_t i = 0; i < sb->n_listings; i++)
        if (!strcmp(sb->listings[i].dir, dir))
            l = &sb->listings[i];
    if (l && l->dev == st.st_dev && l->ino == st.st_ino && l->mtime.tv_sec == st.st_mtim.tv_sec &&
        l->mtime.tv_nsec == st.st_mtim.tv_nsec)
        return l->ents;
    if (!l) {
        if (sb->n_listings == sizeof(sb->listings) / sizeof(sb->listings[0]))
            return NULL;
        l = &sb->listings[sb->n_listings++];
        snprintf(l->dir, sizeof(l->dir), "%s", dir);
    }
    free(l->ents);
    l->ents = NULL;
    size_t len = 0, cap = 0;
    char *buf = NULL;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char path[4400], target[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        target[n > 0 ? n : 0] = '\0';
        size_t need = strlen(e->d_name) + strlen(target) + 3;
        if (len + need > cap) {
            cap = (len + need) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                closedir(d);
                return NULL;
            }
            buf = nb;
        }
        len += (size_t)sprintf(buf + len, "%s", e->d_name) + 1;
        len += (size_t)sprintf(buf + len, "%s", target) + 1;
        buf[len] = '\0';
    }
    if (d)
        closedir(d);
    if (!buf)
        buf = calloc(1, 1);
    l->ents = buf;
    l->dev = st.st_dev;
    l->ino = st.st_ino;
    l->mtime = st.st_mtim;
    return l->ents;
}

/* Where the host's directory under a command path's tmpfs stays visible. */
#define HOST_VIEW "/.kubelite-host"

/* Binds the image's binary at the container's command path. Inside the
 * read-only /usr bwrap cannot create a missing mount point (say
 * /usr/local/bin/kiln-trainer on a host without it), so the deepest
 * existing directory on that path is covered with a tmpfs and the missing
 * directories are made in it. The host's entries come back as symlinks
 * into one bind of the whole directory at HOST_VIEW: a bind per entry cost
 * bwrap a mount and a remount each, 0.2 ms of CPU apiece on every pod
 * start (3.3 ms of 10 with the 17 entries of a small /usr/local/bin). */
static void bind_command(kl_sandbox *sb, argv_t *a, const char *bin, const char *at)
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
    char view[4400];
    snprintf(view, sizeof view, "%s%s", HOST_VIEW, dir);
    arg(a, "--ro-bind");
    arg(a, dir);
    arg(a, view);
    arg(a, "--tmpfs");
    arg(a, dir);
    const char *ents = listing(sb, dir);
    for (const char *e = ents; e && *e;) {
        const char *target = e + strlen(e) + 1;
        char path[4400], seen[8900];
        snprintf(path, sizeof path, "%s/%s", dir, e);
        snprintf(seen, sizeof seen, "%s/%s", view, e);
        arg(a, "--symlink");
        arg(a, *target ? target : seen); /* a host symlink keeps its target */
        arg(a, path);
        e = target + strlen(target) + 1;
    }
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
static void expand_refs(kl_sandbox *sb, const cJSON *pod, const kl_kpod *p, const cJSON *cs,
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
                const char *name = kl_kpod_jstr(e, "name");
                if (name && strlen(name) == len && !strncmp(name, q + 2, len))
                    val = env_value(sb, pod, p, e, vbuf, sizeof vbuf);
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
static int build_argv(kl_sandbox *sb, const cJSON *pod, kl_kpod *p, const cJSON *cs, kl_kctr *c,
                      argv_t *a)
{
    char buf[4400], tl[4400];
    arg(a, "bwrap");
    if (p->cpu_cg[0]) {
        /* Holds the sandbox until it is in the pod's cgroup (spawn). */
        arg(a, "--block-fd");
        arg(a, "3");
    }
    arg(a, "--unshare-pid");
    arg(a, "--die-with-parent");
    arg(a, "--ro-bind");
    arg(a, "/usr");
    arg(a, "/usr");
    const char *links[][2] = {
        {"usr/lib", "/lib"}, {"usr/lib64", "/lib64"}, {"usr/bin", "/bin"}, {"usr/sbin", "/sbin"}};
    for (int i = 0; i < 4; i++) {
        arg(a, "--symlink");
        arg(a, links[i][0]);
        arg(a, links[i][1]);
    }
    const char *etc[] = {"/etc/passwd",          "/etc/group",         "/etc/hosts",
                         "/etc/resolv.conf",     "/etc/nsswitch.conf", "/etc/ssl",
                         "/etc/ca-certificates", "/etc/localtime",     "/etc/alternatives"};
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
    kl_kpod_term_path(p, c, tl, sizeof(tl));
    arg(a, "--bind");
    arg(a, tl);
    arg(a, "/dev/termination-log");
    const cJSON *vm;
    cJSON_ArrayForEach(vm, cJSON_GetObjectItemCaseSensitive(cs, "volumeMounts"))
    {
        int is_file;
        const char *vname = kl_kpod_jstr0(vm, "name");
        if (kl_volume_dir(sb->dir, pod, p, vname, buf, sizeof(buf), &is_file) != 0)
            return -1;
        char src[4700];
        const char *sub = kl_kpod_jstr(vm, "subPath");
        if (sub && sub[0]) {
            snprintf(src, sizeof(src), "%s/%s", buf, sub);
            struct stat sb;
            if (stat(src, &sb) != 0)
                kl_volume_mkdirs(src);
        } else {
            snprintf(src, sizeof(src), "%s", buf);
        }
        arg(a, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(vm, "readOnly")) ? "--ro-bind"
                                                                              : "--bind");
        arg(a, src);
        arg(a, kl_kpod_jstr0(vm, "mountPath"));
    }
    /* Image -> binary, bound at the container's command[0]. */
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(cs, "command");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(cs, "args");
    const char *bin = image_binary(sb, kl_kpod_jstr(cs, "image"));
    const char *cmd0 =
        cJSON_GetArraySize(cmd) ? kl_kpod_jstr0(cJSON_GetArrayItem(cmd, 0), "") : NULL;
    if (cJSON_GetArraySize(cmd))
        cmd0 = cJSON_GetArrayItem(cmd, 0)->valuestring;
    if (bin) {
        const char *at = cmd0 && cmd0[0] == '/' ? cmd0 : bin;
        if (strncmp(at, "/usr/", 5) != 0 || strcmp(at, bin) != 0)
            bind_command(sb, a, bin, at);
        if (!cmd0)
            cmd0 = bin;
    }
    if (!cmd0)
        return -1;
    const char *wd = kl_kpod_jstr(cs, "workingDir");
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
        const char *v = env_value(sb, pod, p, e, buf, sizeof(buf));
        if (!kl_kpod_jstr(e, "name") || !v)
            continue;
        arg(a, "--setenv");
        arg(a, kl_kpod_jstr(e, "name"));
        arg(a, v);
    }
    arg(a, "--");
    char ex[4400];
    if (cJSON_GetArraySize(cmd)) {
        const cJSON *x;
        cJSON_ArrayForEach(x, cmd)
        {
            expand_refs(sb, pod, p, cs, cJSON_IsString(x) ? x->valuestring : "", ex, sizeof ex);
            arg(a, ex);
        }
    } else {
        arg(a, cmd0);
    }
    const cJSON *x;
    cJSON_ArrayForEach(x, args)
    {
        expand_refs(sb, pod, p, cs, cJSON_IsString(x) ? x->valuestring : "", ex, sizeof ex);
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

/* oom_kill count of the container's cgroup (0 when unknown). */
static long cg_oom_kills(const kl_kctr *c)
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

static void cg_remove(kl_kctr *c)
{
    if (c->cg[0])
        rmdir(c->cg);
    c->cg[0] = 0;
}

/* ---- process launch ---- */

/* Forks and execs a (bwrap or nsenter) in a new session, output to logfile
 * (NULL: discarded), in the cgroup whose file cg_join it writes itself to
 * when set, else under RLIMIT_AS when a memory limit is given. Returns the
 * child's pid or -1.
 *
 * vfork, not fork: copying the page tables of this process (every pod's
 * state and the store) for each container start cost the API server more
 * CPU than anything else during a burst of pods. The child shares this
 * process's memory until it execs, so it only makes system calls on what
 * the parent prepared; signals stay blocked until their handlers are reset
 * to the default, so none of ours can run in the child. */
typedef struct spawn_ctx {
    char *const *argv;
    const char *out; /* stdout and stderr */
    int out_flags;
    const char *join; /* the cgroup file the child writes itself to, NULL: none */
    int64_t mem_limit;
    int hold_fd; /* becomes the child's fd 3 (bwrap's --block-fd), -1: none */
} spawn_ctx;

/* The child between vfork and exec. */
static _Noreturn void spawn_child(const spawn_ctx *sc)
{
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    setsid();
    int fd = open(sc->out, sc->out_flags, 0644);
    int in = open("/dev/null", O_RDONLY);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    if (in >= 0)
        dup2(in, 0);
    if (sc->hold_fd == 3)
        fcntl(3, F_SETFD, 0); /* dup2 onto itself keeps close-on-exec */
    else if (sc->hold_fd >= 0)
        dup2(sc->hold_fd, 3);
    close_range(sc->hold_fd >= 0 ? 4 : 3, ~0U, 0);
    int in_cg = 0;
    if (sc->join) {
        /* "0": the process that writes it */
        int cfd = open(sc->join, O_WRONLY | O_CLOEXEC);
        in_cg = cfd >= 0 && write(cfd, "0", 1) == 1;
        if (cfd >= 0)
            close(cfd);
    }
    if (sc->mem_limit > 0 && !in_cg) {
        struct rlimit rl = {(rlim_t)sc->mem_limit, (rlim_t)sc->mem_limit};
        setrlimit(RLIMIT_AS, &rl);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execvp(sc->argv[0], sc->argv);
    _exit(127);
}

/* The vfork in a function of its own: vfork returns twice, and the
 * compiler cannot keep the caller's arguments safe across that
 * (-Wclobbered); this one only has a pointer it never changes. */
__attribute__((noinline)) static pid_t spawn_ctx_run(const spawn_ctx *sc)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = vfork();
    if (pid == 0)
        spawn_child(sc);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return pid;
}

static pid_t spawn(argv_t *a, const char *logfile, int64_t mem_limit, const char *cg_join,
                   int hold_fd)
{
    if (!a->v || a->oom)
        return -1;
    spawn_ctx sc = {.argv = a->v,
                    .out = logfile ? logfile : "/dev/null",
                    .out_flags = logfile ? O_WRONLY | O_CREAT | O_APPEND : O_WRONLY,
                    .join = cg_join,
                    .mem_limit = mem_limit,
                    .hold_fd = hold_fd};
    return spawn_ctx_run(&sc);
}

/* The container's own session (spawn_child's setsid) is, with the
 * kernel's scheduler autogroups on, a task group that competes with this
 * server's as an equal whatever its processes' niceness: a thousand
 * BestEffort trainers would each weigh as much as the API server. The
 * group's niceness gives the group the pod's weight. Without autogroups
 * there is no file to write; without privilege the kernel allows one
 * change per 100 ms, and the processes' own niceness is what is left. */
static void set_session_nice(pid_t pid, int nice)
{
    char f[64], v[16];
    snprintf(f, sizeof(f), "/proc/%d/autogroup", (int)pid);
    snprintf(v, sizeof(v), "%d", nice);
    write_str(f, v);
}

/* A container start handed to the worker, with copies of all it needs:
 * the pod and the container records may change or go meanwhile. */
typedef struct start_arg {
    argv_t argv;
    char log[4400], term[4400];
    int64_t mem_limit;
    char mem_cg[512]; /* the memory cgroup to make, "" for none */
    char old_cg[512]; /* the previous instance's, to remove */
    int cg_v2;
    char cpu_cg[400]; /* the pod's cpu cgroup, "" when weights are niceness */
    int nice;
} start_arg;

static int make_mem_cg(const char *cg, int64_t limit, int v2)
{
    char f[600], lim[32];
    snprintf(lim, sizeof(lim), "%lld", (long long)limit);
    snprintf(f, sizeof(f), "%s/%s", cg, v2 ? "memory.max" : "memory.limit_in_bytes");
    if ((mkdir(cg, 0755) != 0 && errno != EEXIST) || write_str(f, lim) != 0) {
        rmdir(cg);
        return -1;
    }
    return 0;
}

/* On the worker: everything between a container's command line and its
 * process running in its cgroups, each step of which can block this
 * thread for milliseconds (file creation, cgroup mkdir and moves under
 * the kernel's cgroup lock, the vfork until bwrap's exec). Returns the
 * pid, or -1. */
static long start_container(void *arg)
{
    start_arg *s = arg;
    kl_volume_write_file(s->term, "", 0, 0666);
    if (s->old_cg[0])
        rmdir(s->old_cg);
    /* v1: the child moves itself alone through "tasks", without the lock
     * cgroup.procs takes (its writer waits for an RCU grace period while
     * this thread waits on the child); v2 has only cgroup.procs. */
    char join[600];
    const char *jp = NULL;
    if (s->mem_cg[0] && make_mem_cg(s->mem_cg, s->mem_limit, s->cg_v2) == 0) {
        snprintf(join, sizeof(join), "%s/%s", s->mem_cg, s->cg_v2 ? "cgroup.procs" : "tasks");
        jp = join;
    }
    /* With a cpu cgroup, bwrap waits on a pipe until it has been moved
     * there: moved by the child before its exec, the child would run at
     * the pod's weight while this thread waits on it (vfork); moved after,
     * without the wait, the container's first milliseconds would run
     * outside. bwrap is held until then, so its pid names it unless the
     * kubelet killed and reaped it first, and the kernel hands pids out in
     * increasing order. */
    int hold[2] = {-1, -1};
    if (s->cpu_cg[0] && pipe2(hold, O_CLOEXEC) != 0)
        hold[0] = hold[1] = -1; /* bwrap's read fails and it goes on */
    pid_t pid = spawn(&s->argv, s->log, s->mem_limit, jp, hold[0]);
    argv_free(&s->argv);
    if (hold[0] >= 0) {
        close(hold[0]);
        if (kl_cpu_enter(s->cpu_cg, pid) != 0)
            s->cpu_cg[0] = 0; /* no cgroup: weighed by niceness below */
        if (write(hold[1], "", 1) != 1) {
            /* bwrap is gone: its exit is reaped like any other */
        }
        close(hold[1]);
    }
    /* Set from here once the child has exec'd: lowered in the child, this
     * thread (suspended until that exec) would wait behind the very
     * containers the weight yields to. Children inherit it. A container
     * starts at this thread's niceness (kl_worker.h); in a cpu cgroup that
     * weighs only against the pod's own processes. By niceness, a pod that
     * should outrank this thread gets there only with the privilege to
     * lower it. */
    if (!s->cpu_cg[0] && pid > 0) {
        setpriority(PRIO_PGRP, (id_t)pid, s->nice); /* bwrap may have forked already */
        if (s->nice > 0)
            set_session_nice(pid, s->nice);
    }
    return pid > 0 ? pid : -1;
}

static void start_failed(kl_kctr *c, const char *reason)
{
    c->running = 0;
    c->pid = 0;
    c->exit_code = 128;
    snprintf(c->reason, sizeof(c->reason), "%s", reason);
    kl_now_str(c->finished_at, sizeof(c->finished_at), 0);
}

void kl_sandbox_start(kl_sandbox *sb, const cJSON *pod, kl_kpod *p, kl_kctr *c)
{
    const cJSON *cs = kl_kpod_spec(pod, c);
    start_arg *s = calloc(1, sizeof(*s));
    c->started = 1;
    if (!s || !cs || build_argv(sb, pod, p, cs, c, &s->argv) != 0) {
        if (s)
            argv_free(&s->argv);
        free(s);
        c->done = 1;
        start_failed(c, "ContainerCannotRun");
        return;
    }
    kl_kpod_log_path(p, c, c->restarts, s->log, sizeof(s->log));
    kl_kpod_term_path(p, c, s->term, sizeof(s->term));
    snprintf(s->old_cg, sizeof(s->old_cg), "%s", c->cg);
    c->cg[0] = 0;
    if (c->mem_limit > 0) {
        snprintf(c->cg, sizeof(c->cg), "/sys/fs/cgroup/%skubelite-%s-%s-%d",
                 sb->cg_v2 ? "" : "memory/", p->uid, c->name, c->restarts);
        snprintf(s->mem_cg, sizeof(s->mem_cg), "%s", c->cg);
    }
    s->mem_limit = c->mem_limit;
    s->cg_v2 = sb->cg_v2;
    snprintf(s->cpu_cg, sizeof(s->cpu_cg), "%s", p->cpu_cg);
    s->nice = p->nice;
    c->pid = 0;
    c->pending_sig = 0;
    c->running = 1;
    c->exit_code = 0;
    c->signal = 0;
    c->reason[0] = 0;
    kl_now_str(c->started_at, sizeof(c->started_at), 0);
    c->spawning = kl_worker_run(sb->worker, start_container, s, 1);
    if (!c->spawning) {
        /* No memory to hand it over: the instance never ran. */
        snprintf(c->cg, sizeof(c->cg), "%s", s->old_cg);
        argv_free(&s->argv);
        free(s);
        start_failed(c, "StartError");
        return;
    }
    kl_sandbox_started(c, 0); /* done at once without a worker */
}

/* On the worker, after the start it names (the queue is in order): kills
 * and reaps the process that start made. */
static long kill_started(void *arg)
{
    kl_work **h = arg;
    kl_work_wait(*h); /* at once on the worker; run here, it waits for it */
    pid_t pid = (pid_t)kl_work_result(*h);
    kl_work_release(*h);
    if (pid > 0) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return 0;
}

void kl_sandbox_abandon(kl_sandbox *sb, kl_kctr *c)
{
    if (kl_sandbox_started(c, 0))
        return; /* no start in flight: the caller's kill reaches the process */
    kl_work **h = malloc(sizeof(*h));
    if (!h) {
        kl_sandbox_started(c, 1);
        return; /* the pid is known now: the caller's kill reaches it */
    }
    *h = c->spawning;
    c->spawning = NULL;
    c->running = 0;
    c->pid = 0;
    kl_worker_run(sb->worker, kill_started, h, 0);
}

int kl_sandbox_started(kl_kctr *c, int wait)
{
    if (!c->spawning)
        return 1;
    if (wait)
        kl_work_wait(c->spawning);
    else if (!kl_work_done(c->spawning))
        return 0;
    long pid = kl_work_result(c->spawning);
    kl_work_release(c->spawning);
    c->spawning = NULL;
    if (pid <= 0) {
        /* fork failed: an exit the restart policy handles like any other */
        start_failed(c, "StartError");
        return 1;
    }
    c->pid = (pid_t)pid;
    if (c->pending_sig) {
        int sig = c->pending_sig;
        c->pending_sig = 0;
        kl_kctr_kill(c, sig);
    }
    return 1;
}

int kl_sandbox_finish(kl_kctr *c)
{
    int oom = 0;
    if (c->mem_limit > 0)
        oom = c->cg[0] ? cg_oom_kills(c) > 0
                       : (c->signal == SIGKILL || c->signal == SIGSEGV || c->signal == SIGABRT);
    cg_remove(c);
    return oom;
}

int kl_sandbox_exec_in(pid_t sandbox, const cJSON *cmd, pid_t *out)
{
    *out = 0;
    /* Enter the namespaces of the sandbox's first process (bwrap's child,
     * pid 1 of the pod), not of bwrap itself, which stays outside. */
    char f[128], buf[64] = "";
    snprintf(f, sizeof(f), "/proc/%d/task/%d/children", (int)sandbox, (int)sandbox);
    FILE *fp = fopen(f, "re");
    if (fp) {
        if (!fgets(buf, sizeof(buf), fp))
            buf[0] = 0;
        fclose(fp);
    }
    long target = strtol(buf, NULL, 10);
    if (target <= 0)
        return KILN_ENOTFOUND;
    if (!cJSON_GetArraySize(cmd))
        return KILN_EINVAL;
    argv_t a = {0};
    char t[32];
    snprintf(t, sizeof(t), "%ld", target);
    const char *pre[] = {"nsenter", "-t", t, "-m", "-p", "-r", "-w", "--"};
    for (size_t i = 0; i < sizeof(pre) / sizeof(pre[0]); i++)
        arg(&a, pre[i]);
    const cJSON *x;
    cJSON_ArrayForEach(x, cmd)
    {
        arg(&a, cJSON_IsString(x) ? x->valuestring : "");
    }
    pid_t pid = spawn(&a, NULL, 0, NULL, -1);
    argv_free(&a);
    if (pid <= 0)
        return KILN_EIO;
    *out = pid;
    return 0;
}

void kl_sandbox_prepare(kl_sandbox *sb, const cJSON *pod, kl_kpod *p)
{
    kl_volume_prepare(sb->worker, sb->dir, pod, p);
}

int kl_sandbox_ready(kl_sandbox *sb, const cJSON *pod, kl_kpod *p)
{
    return kl_volume_ready(sb->api, pod, p);
}

int kl_sandbox_new(kl_api *api, const char *data_dir, const char *images_file, kl_sandbox **out,
                   kiln_error *err)
{
    *out = NULL;
    kl_sandbox *sb = calloc(1, sizeof(*sb));
    if (!sb)
        return KILN_ENOMEM;
    sb->api = api;
    snprintf(sb->dir, sizeof(sb->dir), "%s", data_dir);
    sb->cg_v2 = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
    kiln_error werr = {0};
    if (kl_worker_new(&sb->worker, &werr) != 0)
        klog(KLOG_WARN,
             "no kubelet worker thread: pods' directories and cgroup moves are made "
             "on the API server's thread",
             KS("error", werr.msg), KEND);
    if (images_file) {
        int rc = load_images(sb, images_file, err);
        if (rc) {
            kl_sandbox_free(sb);
            return rc;
        }
    }
    *out = sb;
    return 0;
}

kl_worker *kl_sandbox_worker(kl_sandbox *sb)
{
    return sb ? sb->worker : NULL;
}

void kl_sandbox_free(kl_sandbox *sb)
{
    if (!sb)
        return;
    kl_worker_free(sb->worker);
    for (size_t i = 0; i < sb->n_listings; i++)
        free(sb->listings[i].ents);
    free(sb->maps);
    free(sb);
}
