/* Shared helpers for the kiln_kube unit tests (header-only). */
#ifndef KT_UTIL_H
#define KT_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kube_client.h"

/* A kube_config pointing at http://127.0.0.1:port. */
static inline kube_config *kt_config(int port)
{
    kube_config *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->server = malloc(64);
    c->namespace_ = strdup("default");
    if (c->server)
        snprintf(c->server, 64, "http://127.0.0.1:%d", port);
    return c;
}

/* A fresh temporary directory (mkdtemp), path into buf. */
static inline int kt_tmpdir(char *buf, size_t n)
{
    snprintf(buf, n, "/tmp/kiln-kube-test-XXXXXX");
    return mkdtemp(buf) ? 0 : -1;
}

static inline int kt_write(const char *dir, const char *name, const char *text)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static inline void kt_rmtree(const char *dir)
{
    char cmd[1200];
    if (strncmp(dir, "/tmp/kiln-kube-test-", 20) != 0)
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

#endif
