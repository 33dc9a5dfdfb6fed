/* serve: `kiln-trainer serve`, the model server's command line, signal
 * handling and reload loop. The main thread owns the signal pipe, the
 * inotify watch on the model's directory and a periodic stat of the model
 * file; the service threads of serve_http answer requests.
 *
 *   SIGHUP           re-check the model file now and load it even if it
 *                    looks unchanged
 *   SIGTERM/SIGINT   stop accepting, finish the requests in flight, exit 0 */
#include "serve.h"

#include <errno.h>
#include <time.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cblas.h>

#include "klog.h"
#include "serve_app.h"
#include "serve_http.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: kiln-trainer serve --model PATH --name NAME [options]\n"
               "  --model PATH       checkpoint to serve (a symlink such as latest is followed;\n"
               "                     a newer file at PATH is loaded without dropping requests)\n"
               "  --name NAME        model name in the URLs (/v1/models/NAME:predict)\n"
               "  --port N           listen port (default 8080; 0 picks a free one)\n"
               "  --address A        listen address (default $POD_IP, else 0.0.0.0)\n"
               "  --max-body BYTES   largest request body (default 16777216)\n"
               "  --threads N        service threads (default: online CPUs)\n"
               "  --timeout S        seconds a client has to send headers and body (default 10)\n"
               "  --grace S          seconds to finish requests on SIGTERM (default 30)\n"
               "  --drain S          on SIGTERM, first answer not-ready on /readyz but keep serving\n"
               "                     for S seconds, while load balancers take the pod out (default 0)\n"
               "  --poll-ms MS       periodic check of the model file (default 1000)\n");
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Model names appear in URL paths and metric labels. */
static int name_ok(const char *s)
{
    if (!*s || strlen(s) > 128)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return 0;
    return 1;
}

static int parse_args(int argc, char **argv, serve_config *cfg)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    const char *pod_ip = getenv("POD_IP");
    *cfg = (serve_config){
        .address = pod_ip && *pod_ip ? pod_ip : "0.0.0.0",
        .port = 8080,
        .max_body = 16u << 20,
        .threads = cpus > 0 ? (int)(cpus < 64 ? cpus : 64) : 1,
        .timeout_s = 10,
        .grace_s = 30,
        .poll_ms = 1000,
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        char opt[32];
        const char *eq = strchr(a, '=');
        if (!strncmp(a, "--", 2) && eq && (size_t)(eq - a) < sizeof opt) {
            memcpy(opt, a, (size_t)(eq - a));
            opt[eq - a] = '\0';
            a = opt;
            v = eq + 1;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!v) {
            if (i + 1 >= argc) {
                fprintf(stderr, "kiln-trainer serve: %s needs a value\n", a);
                return -1;
            }
            v = argv[++i];
        }
        long n;
        if (!strcmp(a, "--model"))
            cfg->model_path = v;
        else if (!strcmp(a, "--name"))
            cfg->name = v;
        else if (!strcmp(a, "--address"))
            cfg->address = v;
        else if (!strcmp(a, "--port") && !parse_long(v, 0, 65535, &n))
            cfg->port = (int)n;
        else if (!strcmp(a, "--max-body") && !parse_long(v, 1, 1L << 40, &n))
            cfg->max_body = (size_t)n;
        else if (!strcmp(a, "--threads") && !parse_long(v, 1, 64, &n))
            cfg->threads = (int)n;
        else if (!strcmp(a, "--timeout") && !parse_long(v, 1, 3600, &n))
            cfg->timeout_s = (int)n;
        else if (!strcmp(a, "--grace") && !parse_long(v, 0, 3600, &n))
            cfg->grace_s = (int)n;
        else if (!strcmp(a, "--drain") && !parse_long(v, 0, 3600, &n))
            cfg->drain_s = (int)n;
        else if (!strcmp(a, "--poll-ms") && !parse_long(v, 10, 3600000, &n))
            cfg->poll_ms = (int)n;
        else {
            fprintf(stderr, "kiln-trainer serve: bad option or value: %s %s\n", a, v);
            return -1;
        }
    }
    if (!cfg->model_path || !cfg->name) {
        fprintf(stderr, "kiln-trainer serve: --model and --name are required\n");
        return -1;
    }
    if (!name_ok(cfg->name)) {
        fprintf(stderr,
                "kiln-trainer serve: --name may hold only letters, digits, '-', '_', '.'\n");
        return -1;
    }
    return 0;
}

/* ======================================================================
 * file watch
 * ====================================================================== */

typedef struct watch {
    int fd;
    int wd[2];
    char dir[2][PATH_MAX];
} watch;

static void dir_of(const char *path, char *out, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, n, ".");
    else if (slash == path)
        snprintf(out, n, "/");
    else
        snprintf(out, n, "%.*s", (int)(slash - path), path);
}

/* Watches the directory of --model (where a new file or symlink appears)
 * and the directory of the file it resolves to. */
static void watch_update(watch *w, const char *path)
{
    if (w->fd < 0)
        return;
    char want[2][PATH_MAX], real[PATH_MAX];
    dir_of(path, want[0], sizeof want[0]);
    if (realpath(path, real))
        dir_of(real, want[1], sizeof want[1]);
    else
        snprintf(want[1], sizeof want[1], "%s", want[0]);
    for (int i = 0; i < 2; i++) {
        if (w->wd[i] >= 0 && !strcmp(w->dir[i], want[i]))
            continue;
        if (w->wd[i] >= 0)
            inotify_rm_watch(w->fd, w->wd[i]);
        w->wd[i] = inotify_add_watch(w->fd, want[i],
                                     IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE |
                                         IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF);
        snprintf(w->dir[i], sizeof w->dir[i], "%s", want[i]);
    }
}

static void watch_drain(watch *w)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    while (read(w->fd, buf, sizeof buf) > 0) {
    }
}

/* ======================================================================
 * signals
 * ====================================================================== */

/* Write end of the self-pipe. The one piece of file-scope state: a signal
 * handler can reach nothing else. (libwebsockets waits with the signal
 * mask cleared, so blocking signals and reading a signalfd is not enough:
 * a service thread may take the signal.) */
static int sig_pipe_w = -1;

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(sig_pipe_w, &b, 1) < 0) {
        /* the pipe is full: a wake-up is already pending */
    }
    errno = saved;
}

static int signals_setup(int *read_fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK))
        return -1;
    sig_pipe_w = p[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    *read_fd = p[0];
    return 0;
}

static void signals_teardown(int read_fd)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    close(read_fd);
    close(sig_pipe_w);
    sig_pipe_w = -1;
}

/* ======================================================================
 * main
 * ====================================================================== */

int serve_main(int argc, char **argv)
{
    serve_config cfg;
    if (parse_args(argc, argv, &cfg)) {
        usage(stderr);
        return 2;
    }
    /* The service threads are the parallelism: BLAS threads would only
     * compete with them for the same cores. */
    openblas_set_num_threads(1);

    int sfd = -1;
    if (signals_setup(&sfd)) {
        klog(KLOG_ERROR, "cannot set up signal handling", KS("error", strerror(errno)), KEND);
        return 1;
    }

    serve_app *app = calloc(1, sizeof *app);
    if (!app || serve_app_init(app, &cfg)) {
        klog(KLOG_ERROR, "out of memory", KEND);
        free(app);
        signals_teardown(sfd);
        return 1;
    }
    serve_holder_check(&app->holder, 1);

    watch w = {.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC), .wd = {-1, -1}};
    if (w.fd < 0)
        klog(KLOG_WARN, "inotify unavailable; relying on the periodic check",
             KS("error", strerror(errno)), KEND);
    watch_update(&w, cfg.model_path);

    serve_http *http = NULL;
    kiln_error err = {0};
    int port = 0;
    if (serve_http_start(app, &http, &port, &err)) {
        klog(KLOG_ERROR, "cannot start the server", KS("error", err.msg), KEND);
        if (w.fd >= 0)
            close(w.fd);
        signals_teardown(sfd);
        serve_app_release(app);
        free(app);
        return 1;
    }
    klog(KLOG_INFO, "serving", KS("name", cfg.name), KS("address", cfg.address), KI("port", port),
         KI("threads", cfg.threads), KS("model", cfg.model_path), KEND);

    for (;;) {
        struct pollfd pf[2] = {{.fd = sfd, .events = POLLIN}, {.fd = w.fd, .events = POLLIN}};
        int n = poll(pf, w.fd >= 0 ? 2 : 1, cfg.poll_ms);
        if (n < 0 && errno != EINTR)
            break;
        int force = 0, stop = 0;
        if (n > 0 && (pf[0].revents & POLLIN)) {
            unsigned char sig[16];
            ssize_t k;
            while ((k = read(sfd, sig, sizeof sig)) > 0) {
                for (ssize_t i = 0; i < k; i++) {
                    if (sig[i] == SIGHUP)
                        force = 1;
                    else
                        stop = 1;
                }
            }
        }
        if (stop) {
            klog(KLOG_INFO, "stopping: finishing requests in flight", KEND);
            break;
        }
        if (w.fd >= 0 && n > 0 && (pf[1].revents & POLLIN))
            watch_drain(&w);
        if (force)
            klog(KLOG_INFO, "SIGHUP: re-checking the model file", KS("path", cfg.model_path), KEND);
        if (serve_holder_check(&app->holder, force) > 0)
            watch_update(&w, cfg.model_path);
    }

    atomic_store(&app->stopping, 1);
    if (cfg.drain_s > 0) {
        /* Not ready from now on; new connections are still answered
         * until endpoints and load balancers have dropped this server. */
        klog(KLOG_INFO, "draining", KI("seconds", cfg.drain_s), KEND);
        struct timespec ts = {cfg.drain_s, 0};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    serve_http_stop(http);
    int left = serve_http_join(http);
    serve_http_free(http);
    if (left)
        klog(KLOG_WARN, "stopped with requests unanswered after the grace period",
             KI("requests", left), KEND);
    else
        klog(KLOG_INFO, "stopped", KEND);
    if (w.fd >= 0)
        close(w.fd);
    signals_teardown(sfd);
    serve_app_release(app);
    free(app);
    return left ? 1 : 0;
}
