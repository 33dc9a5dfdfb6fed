/* kl_pki: certificates, token and kubeconfig (see kl_pki.h). The openssl
 * command is run with an argv array (no shell). */
#include "kl_pki.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kl_proto.h"

extern char **environ;

static int run(char *const argv[], kiln_error *err)
{
    pid_t pid;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return kiln_fail(err, KILN_EIO, "cannot run %s: %s", argv[0], strerror(rc));
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return kiln_fail(err, KILN_EIO, "waitpid: %s", strerror(errno));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return kiln_fail(err, KILN_EIO, "%s %s failed", argv[0], argv[1]);
    return 0;
}

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static int sign(const char *d, const char *name, const char *cn, const char *ext,
                kiln_error *err)
{
    char key[4200], csr[4200], crt[4200], ca[4200], cakey[4200], extf[4200];
    snprintf(key, sizeof(key), "%s/%s.key", d, name);
    snprintf(csr, sizeof(csr), "%s/%s.csr", d, name);
    snprintf(crt, sizeof(crt), "%s/%s.crt", d, name);
    snprintf(ca, sizeof(ca), "%s/ca.crt", d);
    snprintf(cakey, sizeof(cakey), "%s/ca.key", d);
    snprintf(extf, sizeof(extf), "%s/%s.ext", d, name);
    FILE *f = fopen(extf, "we");
    if (!f)
        return kiln_fail(err, KILN_EIO, "%s: %s", extf, strerror(errno));
    fprintf(f, "%s\n", ext);
    fclose(f);
    char subj[256];
    snprintf(subj, sizeof(subj), "/CN=%s", cn);
    char *a1[] = {"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr, "-subj",
                  subj, NULL};
    int rc = run(a1, err);
    char *a2[] = {"openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", cakey,
                  "-CAcreateserial", "-out", crt, "-days", "3650", "-extfile", extf, NULL};
    if (!rc)
        rc = run(a2, err);
    unlink(csr);
    unlink(extf);
    chmod(key, 0600);
    return rc;
}

int kl_pki_ensure(const char *dir, kiln_error *err)
{
    char d[4096], ca[4200], cakey[4200], p[4200];
    snprintf(d, sizeof(d), "%s/pki", dir);
    if (mkdir(d, 0700) != 0 && errno != EEXIST)
        return kiln_fail(err, KILN_EIO, "mkdir %s: %s", d, strerror(errno));
    snprintf(ca, sizeof(ca), "%s/ca.crt", d);
    snprintf(cakey, sizeof(cakey), "%s/ca.key", d);
    int rc = 0;
    if (!exists(ca) || !exists(cakey)) {
        char *a[] = {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                     "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", cakey, "-out", ca,
                     "-days", "3650", "-subj", "/CN=kubelite-ca", "-addext",
                     "basicConstraints=critical,CA:TRUE", "-addext",
                     "keyUsage=critical,keyCertSign,cRLSign,digitalSignature", NULL};
        rc = run(a, err);
        chmod(cakey, 0600);
    }
    snprintf(p, sizeof(p), "%s/server.crt", d);
    if (!rc && !exists(p))
        rc = sign(d, "server", "kubelite",
                  "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
                  "keyUsage=critical,digitalSignature,keyEncipherment",
                  err);
    snprintf(p, sizeof(p), "%s/client.crt", d);
    if (!rc && !exists(p))
        rc = sign(d, "client", "kubelite-admin",
                  "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature", err);
    return rc;
}

int kl_pki_token(const char *dir, char *buf, size_t n, kiln_error *err)
{
    char p[4200];
    snprintf(p, sizeof(p), "%s/token", dir);
    FILE *f = fopen(p, "re");
    if (f) {
        char *ok = fgets(buf, (int)n, f);
        fclose(f);
        if (ok) {
            buf[strcspn(buf, "\r\n")] = 0;
            if (strlen(buf) >= 32)
                return 0;
        }
    }
    unsigned char r[32];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        return kiln_fail(err, KILN_EIO, "getrandom failed");
    if (n < 65)
        return kiln_fail(err, KILN_EINVAL, "token buffer too small");
    for (int i = 0; i < 32; i++)
        snprintf(buf + 2 * i, 3, "%02x", r[i]);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return kiln_fail(err, KILN_EIO, "%s: %s", p, strerror(errno));
    int ok = write(fd, buf, 64) == 64 && fsync(fd) == 0;
    close(fd);
    return ok ? 0 : kiln_fail(err, KILN_EIO, "%s: write failed", p);
}

static char *file_b64(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    unsigned char buf[16384];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    return kl_base64(buf, n);
}

int kl_pki_kubeconfig(const char *dir, const char *host, int port, int tls, const char *token,
                      kiln_error *err)
{
    char p[4200], tmp[4200], ca[4200], cc[4200], ck[4200];
    snprintf(p, sizeof(p), "%s/kubeconfig", dir);
    snprintf(tmp, sizeof(tmp), "%s/kubeconfig.tmp", dir);
    snprintf(ca, sizeof(ca), "%s/pki/ca.crt", dir);
    snprintf(cc, sizeof(cc), "%s/pki/client.crt", dir);
    snprintf(ck, sizeof(ck), "%s/pki/client.key", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return kiln_fail(err, KILN_EIO, "%s: %s", tmp, strerror(errno));
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return kiln_fail(err, KILN_EIO, "fdopen failed");
    }
    fprintf(f, "apiVersion: v1\nkind: Config\nclusters:\n- name: kubelite\n  cluster:\n");
    fprintf(f, "    server: %s://%s:%d\n", tls ? "https" : "http", host, port);
    if (tls) {
        char *b = file_b64(ca);
        if (b)
            fprintf(f, "    certificate-authority-data: %s\n", b);
        free(b);
    }
    fprintf(f, "users:\n- name: kubelite\n  user:\n    token: %s\n", token);
    fprintf(f, "contexts:\n- name: kubelite\n  context:\n    cluster: kubelite\n"
               "    user: kubelite\n    namespace: default\ncurrent-context: kubelite\n");
    int ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    fclose(f);
    (void)cc;
    (void)ck;
    if (!ok || rename(tmp, p) != 0)
        return kiln_fail(err, KILN_EIO, "cannot write %s", p);
    return 0;
}

int kl_pki_net_octet(const char *dir, kiln_error *err)
{
    char p[4200];
    snprintf(p, sizeof(p), "%s/net", dir);
    FILE *f = fopen(p, "re");
    int v = 0;
    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = 0;
        fclose(f);
        if (v >= 1 && v <= 126)
            return v;
    }
    unsigned char r;
    if (getrandom(&r, 1, 0) != 1)
        r = 7;
    v = 1 + r % 126;
    char buf[16];
    int n = snprintf(buf, sizeof(buf), "%d\n", v);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return kiln_fail(err, KILN_EIO, "%s: %s", p, strerror(errno));
    int ok = write(fd, buf, (size_t)n) == n && fsync(fd) == 0;
    close(fd);
    return ok ? v : kiln_fail(err, KILN_EIO, "%s: write failed", p);
}
