/* Durability under group commit: a kubelite API server (kl_api +
 * kl_server, in a child process) takes creates from many concurrent
 * keep-alive connections and is SIGKILLed while writes are still in
 * flight. Every create answered 201 must be in the store reopened from the
 * data dir.
 *
 * A SIGKILL alone keeps what reached the page cache, so it cannot tell an
 * fsync'd write from a written one. The test therefore also wraps
 * fdatasync(): each successful call publishes (in memory shared with the
 * parent) how many bytes of the log it covered, and every 201 must name a
 * record inside that durable prefix when it arrives. The log is zero-filled
 * ahead of its records, so the prefix ends at the last whole line before
 * the zeros, not at the file's size. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include "kl_api.h"
#include "kl_server.h"
#include "kl_store.h"
#include "ktest.h"

#define CONNS 24
#define PER_CONN 40
#define KILL_AFTER 500 /* acknowledged creates before the SIGKILL */

/* Bytes of the log covered by a finished fdatasync (shared with the
 * child); the test's counter, not server state. */
static uint64_t *g_synced;

/* End of the records in the log open as fd: the log is zero-filled ahead
 * of them, so its size says nothing. Scans from the last durable end to
 * the first NUL and returns the end of the last whole line before it; 0
 * for any other file. */
static uint64_t log_end(int fd)
{
    char link[64], path[512];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    if (n <= 0)
        return 0;
    path[n] = 0;
    size_t pl = (size_t)n;
    if (pl < 10 || strcmp(path + pl - 10, "/store.wal") != 0)
        return 0;
    int rfd = open(path, O_RDONLY | O_CLOEXEC);
    if (rfd < 0)
        return 0;
    uint64_t at = __atomic_load_n(g_synced, __ATOMIC_SEQ_CST), end = at;
    char buf[65536];
    ssize_t got;
    while ((got = pread(rfd, buf, sizeof(buf), (off_t)at)) > 0) {
        ssize_t i = 0;
        for (; i < got && buf[i]; i++)
            if (buf[i] == '\n')
                end = at + (uint64_t)i + 1;
        if (i < got)
            break;
        at += (uint64_t)got;
    }
    close(rfd);
    return end;
}

/* Replaces libc's fdatasync for the code linked into this test. Whatever
 * was written before the call is covered by it. */
int fdatasync(int fd)
{
    uint64_t end = g_synced ? log_end(fd) : 0;
    int rc = (int)syscall(SYS_fdatasync, fd);
    if (rc == 0 && end) {
        uint64_t cur = __atomic_load_n(g_synced, __ATOMIC_SEQ_CST);
        while (cur < end && !__atomic_compare_exchange_n(g_synced, &cur, end, 0,
                                                         __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        }
    }
    return rc;
}

/* 1 if the record of name lies in the first n bytes of the log. */
static int in_durable_prefix(const char *dir, const char *name, uint64_t n)
{
    char p[300], pat[80];
    snprintf(p, sizeof(p), "%s/store.wal", dir);
    snprintf(pat, sizeof(pat), "\t%s\t", name);
    FILE *f = fopen(p, "r");
    if (!f)
        return 0;
    char *buf = malloc(n + 1);
    size_t got = buf ? fread(buf, 1, n, f) : 0;
    fclose(f);
    if (!buf)
        return 0;
    buf[got] = 0;
    int ok = strstr(buf, pat) != NULL;
    free(buf);
    return ok;
}

static void child(const char *dir, int wfd)
{
    kiln_error err = {0};
    kl_api_opts ao = {.data_dir = dir, .server_addr = "127.0.0.1", .history = 1000};
    kl_api *api = NULL;
    kl_server *srv = NULL;
    kl_server_opts so = {.listen_host = "127.0.0.1", .port = 0, .insecure = 1};
    if (kl_api_new(&ao, &api, &err) != 0 || kl_server_new(&so, api, &srv, &err) != 0) {
        fprintf(stderr, "server: %s\n", err.msg);
        _exit(2);
    }
    int port = kl_server_port(srv);
    if (write(wfd, &port, sizeof(port)) != (ssize_t)sizeof(port))
        _exit(2);
    close(wfd);
    volatile int stop = 0;
    kl_server_run(srv, &stop);
    _exit(0);
}

typedef struct conn {
    int fd;
    int sent, acked;
    char in[8192];
    size_t in_len;
    int busy;
} conn;

static int send_create(conn *c, int ci)
{
    char body[256], req[512];
    int bl = snprintf(body, sizeof(body),
                      "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":"
                      "\"c%d-%d\"},\"data\":{\"k\":\"v\"}}",
                      ci, c->sent);
    int rl = snprintf(req, sizeof(req),
                      "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
                      "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                      bl, body);
    if (write(c->fd, req, (size_t)rl) != rl)
        return -1;
    c->busy = 1;
    c->in_len = 0;
    return 0;
}

/* 1 when a whole response is buffered (*code set), 0 if not yet. */
static int parse_resp(conn *c, int *code)
{
    c->in[c->in_len] = 0;
    char *end = strstr(c->in, "\r\n\r\n");
    if (!end)
        return 0;
    const char *cl = strcasestr(c->in, "content-length:");
    size_t blen = cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0;
    if (c->in_len < (size_t)(end + 4 - c->in) + blen)
        return 0;
    *code = atoi(c->in + 9);
    return 1;
}

static void test_acked_writes_survive_sigkill(void)
{
    char dir[] = "/tmp/kl_durable_test.XXXXXX";
    KT_CHECK(mkdtemp(dir) != NULL);
    g_synced = mmap(NULL, sizeof(*g_synced), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                    -1, 0);
    KT_CHECK(g_synced != MAP_FAILED);
    *g_synced = 0;
    int pfd[2];
    KT_EQ_INT(pipe(pfd), 0);
    pid_t pid = fork();
    KT_CHECK(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        child(dir, pfd[1]);
    }
    close(pfd[1]);
    int port = 0;
    KT_EQ_INT(read(pfd[0], &port, sizeof(port)), (long)sizeof(port));
    close(pfd[0]);

    static conn cs[CONNS];
    struct pollfd pf[CONNS];
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < CONNS; i++) {
        memset(&cs[i], 0, sizeof(cs[i]));
        cs[i].fd = socket(AF_INET, SOCK_STREAM, 0);
        KT_EQ_INT(connect(cs[i].fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        KT_EQ_INT(send_create(&cs[i], i), 0);
    }
    int acked = 0, bad = 0, early = 0;
    while (acked < KILL_AFTER && !bad) {
        for (int i = 0; i < CONNS; i++)
            pf[i] = (struct pollfd){.fd = cs[i].fd, .events = POLLIN};
        int n = poll(pf, CONNS, 10000);
        if (n <= 0) {
            bad = 1;
            break;
        }
        for (int i = 0; i < CONNS && acked < KILL_AFTER; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP)))
                continue;
            conn *c = &cs[i];
            ssize_t r = read(c->fd, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len);
            if (r <= 0) {
                bad = 1;
                break;
            }
            c->in_len += (size_t)r;
            int code;
            if (!parse_resp(c, &code))
                continue;
            if (code != 201) {
                fprintf(stderr, "create answered %d\n", code);
                bad = 1;
                break;
            }
            char name[64];
            snprintf(name, sizeof(name), "c%d-%d", i, c->sent);
            if (!in_durable_prefix(dir, name, __atomic_load_n(g_synced, __ATOMIC_SEQ_CST))) {
                fprintf(stderr, "create %s answered before an fdatasync covered it\n", name);
                early++;
            }
            c->acked++;
            c->sent++;
            acked++;
            c->busy = 0;
            if (c->sent < PER_CONN && send_create(c, i) != 0)
                bad = 1;
        }
    }
    /* Creates are still in flight on most connections: kill now. */
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    KT_CHECK(!bad);
    KT_EQ_INT(early, 0);
    KT_EQ_INT(acked, KILL_AFTER);
    int in_flight = 0;
    for (int i = 0; i < CONNS; i++) {
        in_flight += cs[i].busy;
        close(cs[i].fd);
    }
    KT_CHECK(in_flight > 0); /* the kill really raced with writes */

    kl_store *st = NULL;
    KT_EQ_INT(kl_store_open(dir, 10, &st, NULL), 0);
    int missing = 0;
    for (int i = 0; st && i < CONNS; i++)
        for (int j = 0; j < cs[i].acked; j++) {
            char name[64];
            snprintf(name, sizeof(name), "c%d-%d", i, j);
            const cJSON *o = kl_store_get(st, "/configmaps", "default", name);
            if (!o || !cJSON_GetObjectItem(cJSON_GetObjectItem(o, "data"), "k")) {
                fprintf(stderr, "acknowledged create %s lost\n", name);
                missing++;
            }
        }
    KT_EQ_INT(missing, 0);
    const cJSON **items;
    size_t n = 0;
    if (st && kl_store_list(st, "/configmaps", "default", &items, &n) == 0)
        free(items);
    KT_CHECK(n >= (size_t)acked);
    kl_store_free(st);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    KT_EQ_INT(system(cmd), 0);
    munmap(g_synced, sizeof(*g_synced));
    g_synced = NULL;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    KT_RUN(test_acked_writes_survive_sigkill);
    return KT_DONE();
}
