/* kl_svc: Endpoints controller and userspace forwarders (see kl_svc.h). */
#include "kl_svc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kl_table.h"

#define MAX_BACKENDS 64

typedef struct fwd {
    char key[300]; /* "ns/name/port" */
    char ip[32];
    int port;
    int fd;
    int stop;
    int seen;
    pthread_t th;
    char be_ip[MAX_BACKENDS][32];
    int be_port[MAX_BACKENDS];
    int n_be;
    unsigned rr;
    struct kl_svc *owner;
} fwd;

struct kl_svc {
    kl_api *api;
    pthread_mutex_t mu;
    fwd **f;
    size_t n;
};

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static cJSON *meta(const cJSON *o)
{
    return cJSON_GetObjectItemCaseSensitive(o, "metadata");
}

int kl_svc_new(kl_api *api, kl_svc **out, kiln_error *err)
{
    (void)err;
    kl_svc *s = calloc(1, sizeof(*s));
    if (!s)
        return KILN_ENOMEM;
    s->api = api;
    pthread_mutex_init(&s->mu, NULL);
    *out = s;
    return 0;
}

static void fwd_stop(fwd *f)
{
    f->stop = 1;
    pthread_join(f->th, NULL);
    close(f->fd);
    free(f);
}

void kl_svc_free(kl_svc *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        fwd_stop(s->f[i]);
    free(s->f);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- forwarding ---- */

typedef struct conn {
    int a, b;
} conn;

static void *pump(void *arg)
{
    conn *c = arg;
    char buf[32768];
    struct pollfd pf[2] = {{c->a, POLLIN, 0}, {c->b, POLLIN, 0}};
    for (;;) {
        if (poll(pf, 2, 60000) <= 0)
            break;
        int done = 0;
        for (int i = 0; i < 2 && !done; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read(pf[i].fd, buf, sizeof(buf));
            if (n <= 0) {
                done = 1;
                break;
            }
            ssize_t off = 0;
            while (off < n) {
                ssize_t w = write(pf[1 - i].fd, buf + off, (size_t)(n - off));
                if (w <= 0) {
                    done = 1;
                    break;
                }
                off += w;
            }
        }
        if (done)
            break;
    }
    close(c->a);
    close(c->b);
    free(c);
    return NULL;
}

static int dial(const char *ip, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *listener(void *arg)
{
    fwd *f = arg;
    struct pollfd pf = {f->fd, POLLIN, 0};
    while (!f->stop) {
        if (poll(&pf, 1, 200) <= 0)
            continue;
        int cfd = accept4(f->fd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0)
            continue;
        /* Round robin over the ready endpoints; a backend that refuses
         * (a pod that just went away) is skipped for the next one, as
         * kube-proxy's userspace mode does. */
        int bfd = -1;
        for (int attempt = 0; bfd < 0; attempt++) {
            char ip[32] = "";
            int port = 0;
            pthread_mutex_lock(&f->owner->mu);
            if (attempt < f->n_be) {
                unsigned i = f->rr++ % (unsigned)f->n_be;
                snprintf(ip, sizeof(ip), "%s", f->be_ip[i]);
                port = f->be_port[i];
            }
            pthread_mutex_unlock(&f->owner->mu);
            if (!port)
                break;
            bfd = dial(ip, port);
        }
        if (bfd < 0) {
            close(cfd);
            continue;
        }
        conn *c = malloc(sizeof(*c));
        pthread_t th;
        if (!c) {
            close(cfd);
            close(bfd);
            continue;
        }
        c->a = cfd;
        c->b = bfd;
        if (pthread_create(&th, NULL, pump, c) != 0) {
            close(cfd);
            close(bfd);
            free(c);
            continue;
        }
        pthread_detach(th);
    }
    return NULL;
}

static fwd *fwd_start(kl_svc *s, const char *key, const char *ip, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 128) != 0) {
        close(fd);
        return NULL;
    }
    fwd *f = calloc(1, sizeof(*f));
    if (!f) {
        close(fd);
        return NULL;
    }
    snprintf(f->key, sizeof(f->key), "%s", key);
    snprintf(f->ip, sizeof(f->ip), "%s", ip);
    f->port = port;
    f->fd = fd;
    f->owner = s;
    if (pthread_create(&f->th, NULL, listener, f) != 0) {
        close(fd);
        free(f);
        return NULL;
    }
    return f;
}

/* ---- endpoints ---- */

static int selector_matches(const cJSON *sel, const cJSON *labels)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, sel)
    {
        const char *v = jstr(labels, e->string);
        if (!cJSON_IsString(e) || !v || strcmp(v, e->valuestring) != 0)
            return 0;
    }
    return 1;
}

static int target_port(const cJSON *sp, const cJSON *pod)
{
    const cJSON *tp = cJSON_GetObjectItemCaseSensitive(sp, "targetPort");
    if (cJSON_IsNumber(tp))
        return tp->valueint;
    if (cJSON_IsString(tp)) {
        const cJSON *c, *p;
        cJSON_ArrayForEach(c, kl_table_jsonpath(pod, ".spec.containers"))
            cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(c, "ports"))
        {
            const char *n = jstr(p, "name");
            const cJSON *cp = cJSON_GetObjectItemCaseSensitive(p, "containerPort");
            if (n && !strcmp(n, tp->valuestring) && cJSON_IsNumber(cp))
                return cp->valueint;
        }
        return atoi(tp->valuestring);
    }
    const cJSON *port = cJSON_GetObjectItemCaseSensitive(sp, "port");
    return cJSON_IsNumber(port) ? port->valueint : 0;
}

void kl_svc_sync(kl_svc *s)
{
    kl_api *api = s->api;
    kl_store *st = kl_api_store(api);
    kl_res *svcr = kl_api_res(api, "", "services");
    kl_res *podr = kl_api_res(api, "", "pods");
    kl_res *epr = kl_api_res(api, "", "endpoints");
    const cJSON **svcs, **pods;
    size_t ns, np;
    if (kl_store_list(st, svcr->rkey, NULL, &svcs, &ns) != 0)
        return;
    if (kl_store_list(st, podr->rkey, NULL, &pods, &np) != 0) {
        free(svcs);
        return;
    }
    for (size_t i = 0; i < s->n; i++)
        s->f[i]->seen = 0;
    cJSON *writes = cJSON_CreateArray();
    for (size_t i = 0; i < ns; i++) {
        const cJSON *svc = svcs[i];
        const char *sns = jstr(meta(svc), "namespace"), *sname = jstr(meta(svc), "name");
        const cJSON *spec = cJSON_GetObjectItemCaseSensitive(svc, "spec");
        const cJSON *sel = cJSON_GetObjectItemCaseSensitive(spec, "selector");
        const char *cip = jstr(spec, "clusterIP");
        if (!sns || !sname || !cJSON_GetArraySize(sel))
            continue;
        cJSON *ep = cJSON_CreateObject();
        cJSON_AddStringToObject(ep, "apiVersion", "v1");
        cJSON_AddStringToObject(ep, "kind", "Endpoints");
        cJSON *md = cJSON_AddObjectToObject(ep, "metadata");
        cJSON_AddStringToObject(md, "name", sname);
        cJSON_AddStringToObject(md, "namespace", sns);
        cJSON *subsets = cJSON_AddArrayToObject(ep, "subsets");
        cJSON *ss = cJSON_CreateObject();
        cJSON *ready = cJSON_CreateArray(), *unready = cJSON_CreateArray();
        const cJSON *first = NULL;
        for (size_t j = 0; j < np; j++) {
            const cJSON *p = pods[j];
            const char *pns = jstr(meta(p), "namespace");
            const cJSON *pst = cJSON_GetObjectItemCaseSensitive(p, "status");
            const char *ip = jstr(pst, "podIP"), *ph = jstr(pst, "phase");
            if (!pns || strcmp(pns, sns) || !ip || !ip[0] ||
                !selector_matches(sel, cJSON_GetObjectItemCaseSensitive(meta(p), "labels")) ||
                (ph && (!strcmp(ph, "Succeeded") || !strcmp(ph, "Failed"))))
                continue;
            const cJSON *rc = kl_table_jsonpath(p, ".status.conditions[?(@.type==\"Ready\")].status");
            int ok = cJSON_IsString(rc) && !strcmp(rc->valuestring, "True") &&
                     !cJSON_GetObjectItemCaseSensitive(meta(p), "deletionTimestamp");
            cJSON *a = cJSON_CreateObject();
            cJSON_AddStringToObject(a, "ip", ip);
            cJSON_AddStringToObject(a, "nodeName", "kubelite");
            cJSON *tr = cJSON_AddObjectToObject(a, "targetRef");
            cJSON_AddStringToObject(tr, "kind", "Pod");
            cJSON_AddStringToObject(tr, "namespace", pns);
            cJSON_AddStringToObject(tr, "name", jstr(meta(p), "name") ? jstr(meta(p), "name") : "");
            cJSON_AddStringToObject(tr, "uid", jstr(meta(p), "uid") ? jstr(meta(p), "uid") : "");
            cJSON_AddItemToArray(ok ? ready : unready, a);
            if (!first)
                first = p;
        }
        cJSON *ports = cJSON_CreateArray();
        const cJSON *sp;
        cJSON_ArrayForEach(sp, cJSON_GetObjectItemCaseSensitive(spec, "ports"))
        {
            cJSON *x = cJSON_CreateObject();
            if (jstr(sp, "name"))
                cJSON_AddStringToObject(x, "name", jstr(sp, "name"));
            cJSON_AddNumberToObject(x, "port", first ? target_port(sp, first) : target_port(sp, NULL));
            cJSON_AddStringToObject(x, "protocol", jstr(sp, "protocol") ? jstr(sp, "protocol") : "TCP");
            cJSON_AddItemToArray(ports, x);
            /* forwarder for this service port */
            const cJSON *port = cJSON_GetObjectItemCaseSensitive(sp, "port");
            if (!cip || !cJSON_IsNumber(port))
                continue;
            char key[300];
            snprintf(key, sizeof(key), "%s/%s/%d", sns, sname, port->valueint);
            fwd *f = NULL;
            for (size_t k = 0; k < s->n; k++)
                if (!strcmp(s->f[k]->key, key) && !strcmp(s->f[k]->ip, cip))
                    f = s->f[k];
            if (!f) {
                f = fwd_start(s, key, cip, port->valueint);
                fwd **nf = f ? realloc(s->f, (s->n + 1) * sizeof(*nf)) : NULL;
                if (nf) {
                    s->f = nf;
                    s->f[s->n++] = f;
                } else if (f) {
                    fwd_stop(f);
                    f = NULL;
                }
            }
            if (!f)
                continue;
            f->seen = 1;
            pthread_mutex_lock(&s->mu);
            f->n_be = 0;
            for (size_t j = 0; j < np && f->n_be < MAX_BACKENDS; j++) {
                const cJSON *p = pods[j];
                const cJSON *pst = cJSON_GetObjectItemCaseSensitive(p, "status");
                const char *ip = jstr(pst, "podIP");
                const cJSON *rc = kl_table_jsonpath(p, ".status.conditions[?(@.type==\"Ready\")].status");
                if (!ip || strcmp(jstr(meta(p), "namespace") ? jstr(meta(p), "namespace") : "", sns) ||
                    !selector_matches(sel, cJSON_GetObjectItemCaseSensitive(meta(p), "labels")) ||
                    !cJSON_IsString(rc) || strcmp(rc->valuestring, "True") ||
                    cJSON_GetObjectItemCaseSensitive(meta(p), "deletionTimestamp"))
                    continue;
                snprintf(f->be_ip[f->n_be], sizeof(f->be_ip[0]), "%s", ip);
                f->be_port[f->n_be] = target_port(sp, p);
                f->n_be++;
            }
            pthread_mutex_unlock(&s->mu);
        }
        if (cJSON_GetArraySize(ready))
            cJSON_AddItemToObject(ss, "addresses", ready);
        else
            cJSON_Delete(ready);
        if (cJSON_GetArraySize(unready))
            cJSON_AddItemToObject(ss, "notReadyAddresses", unready);
        else
            cJSON_Delete(unready);
        cJSON_AddItemToObject(ss, "ports", ports);
        if (cJSON_GetObjectItemCaseSensitive(ss, "addresses") ||
            cJSON_GetObjectItemCaseSensitive(ss, "notReadyAddresses"))
            cJSON_AddItemToArray(subsets, ss);
        else
            cJSON_Delete(ss);
        const cJSON *cur = kl_store_get(st, epr->rkey, sns, sname);
        if (cur && cJSON_Compare(cJSON_GetObjectItemCaseSensitive(cur, "subsets"), subsets, 1)) {
            cJSON_Delete(ep);
            continue;
        }
        if (cur) {
            /* keep identity */
            const char *keys[] = {"uid", "creationTimestamp", "labels"};
            for (int k = 0; k < 3; k++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta(cur), keys[k]);
                if (v)
                    cJSON_AddItemToObject(md, keys[k], cJSON_Duplicate(v, 1));
            }
        }
        cJSON_AddItemToArray(writes, ep);
    }
    free(svcs);
    free(pods);
    cJSON *ep;
    while ((ep = cJSON_DetachItemFromArray(writes, 0)) != NULL)
        kl_api_write(api, epr, ep, NULL);
    cJSON_Delete(writes);
    size_t j = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->f[i]->seen)
            s->f[j++] = s->f[i];
        else
            fwd_stop(s->f[i]);
    }
    s->n = j;
}
