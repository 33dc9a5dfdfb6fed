/* kube_config: kubeconfig (merged, libyaml) and in-cluster configuration. */
#include "kube_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "klog.h"
#include "kube_yaml.h"

#define MAX_FILES      32
#define MAX_KUBECONFIG (4u << 20) /* 4 MiB: far above any real kubeconfig */

/* ---- small helpers ---- */

/* Joins dir and a relative path; absolute paths and NULL dir pass through. */
static char *resolve(const char *dir, const char *path)
{
    if (!path || !path[0])
        return NULL;
    if (path[0] == '/' || !dir || !dir[0])
        return strdup(path);
    size_t n = strlen(dir) + strlen(path) + 2;
    char *r = malloc(n);
    if (r)
        snprintf(r, n, "%s/%s", dir, path);
    return r;
}

int kube_base64_decode(const char *in, unsigned char **out, size_t *out_len, kiln_error *err)
{
    size_t n = strlen(in);
    unsigned char *o = malloc(n / 4 * 3 + 4);
    if (!o)
        return kiln_fail(err, KILN_ENOMEM, "base64: out of memory");
    unsigned int acc = 0;
    int bits = 0, pad = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)in[i];
        int v;
        if (ch >= 'A' && ch <= 'Z')
            v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z')
            v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9')
            v = ch - '0' + 52;
        else if (ch == '+')
            v = 62;
        else if (ch == '/')
            v = 63;
        else if (ch == '=') {
            pad++;
            continue;
        } else if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')
            continue;
        else {
            free(o);
            return kiln_fail(err, KILN_EINVAL, "base64: invalid character at offset %zu", i);
        }
        if (pad) {
            free(o);
            return kiln_fail(err, KILN_EINVAL, "base64: data after padding");
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[w++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits >= 6 || pad > 2) {
        free(o);
        return kiln_fail(err, KILN_EINVAL, "base64: truncated input");
    }
    o[w] = '\0';
    *out = o;
    *out_len = w;
    return 0;
}

int kube_read_file(const char *path, size_t max, char **out, size_t *out_len, kiln_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return kiln_fail(err, errno == ENOENT ? KILN_ENOTFOUND : KILN_EIO, "%s: %s", path,
                         strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > max + 1) {
                free(buf);
                fclose(f);
                return kiln_fail(err, KILN_EINVAL, "%s: larger than %zu bytes", path, max);
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + len, 1, cap - len - 1, f);
        len += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return kiln_fail(err, KILN_EIO, "%s: read error", path);
    }
    if (len > max) {
        free(buf);
        return kiln_fail(err, KILN_EINVAL, "%s: larger than %zu bytes", path, max);
    }
    buf[len] = '\0';
    *out = buf;
    if (out_len)
        *out_len = len;
    return 0;
}

/* ---- merged view over several parsed files ---- */

typedef struct merged {
    cJSON *docs[MAX_FILES];
    char *dirs[MAX_FILES];
    int n;
} merged;

static void merged_release(merged *m)
{
    for (int i = 0; i < m->n; i++) {
        cJSON_Delete(m->docs[i]);
        free(m->dirs[i]);
    }
    m->n = 0;
}

/* The first file defining list[name] wins (client-go's merge order). */
static const cJSON *find_named(const merged *m, const char *list, const char *inner,
                               const char *name, const char **dir)
{
    for (int i = 0; i < m->n; i++) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(m->docs[i], list);
        if (!cJSON_IsArray(arr))
            continue;
        const cJSON *it;
        cJSON_ArrayForEach(it, arr)
        {
            const char *n = kube_yaml_str(it, "name");
            if (n && strcmp(n, name) == 0) {
                const cJSON *body = cJSON_GetObjectItemCaseSensitive(it, inner);
                *dir = m->dirs[i];
                return cJSON_IsObject(body) ? body : NULL;
            }
        }
    }
    return NULL;
}

static int set_str(char **dst, const char *v, kiln_error *err)
{
    if (!v || !v[0])
        return 0;
    *dst = strdup(v);
    return *dst ? 0 : kiln_fail(err, KILN_ENOMEM, "kubeconfig: out of memory");
}

static int set_path(char **dst, const char *dir, const char *v, kiln_error *err)
{
    if (!v || !v[0])
        return 0;
    *dst = resolve(dir, v);
    return *dst ? 0 : kiln_fail(err, KILN_ENOMEM, "kubeconfig: out of memory");
}

static int set_b64(unsigned char **dst, size_t *len, const char *v, const char *what,
                   kiln_error *err)
{
    if (!v || !v[0])
        return 0;
    int rc = kube_base64_decode(v, dst, len, err);
    if (rc)
        kiln_error_prefix(err, "kubeconfig %s: ", what);
    return rc;
}

static int parse_exec(const cJSON *e, const char *dir, kube_exec_spec **out, kiln_error *err)
{
    const char *cmd = kube_yaml_str(e, "command");
    if (!cmd || !cmd[0])
        return kiln_fail(err, KILN_EINVAL, "kubeconfig: exec plugin without a command");
    kube_exec_spec *x = calloc(1, sizeof *x);
    if (!x)
        return kiln_fail(err, KILN_ENOMEM, "kubeconfig: out of memory");
    *out = x;
    const char *av = kube_yaml_str(e, "apiVersion");
    if (set_str(&x->api_version, av ? av : "client.authentication.k8s.io/v1", err))
        return KILN_ENOMEM;
    /* client-go resolves only commands that are paths, not bare names */
    if (strchr(cmd, '/') ? set_path(&x->command, dir, cmd, err) : set_str(&x->command, cmd, err))
        return KILN_ENOMEM;
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(e, "args");
    int na = cJSON_IsArray(args) ? cJSON_GetArraySize(args) : 0;
    if (na > 0) {
        x->args = calloc((size_t)na, sizeof *x->args);
        if (!x->args)
            return kiln_fail(err, KILN_ENOMEM, "kubeconfig: out of memory");
        const cJSON *a;
        cJSON_ArrayForEach(a, args)
        {
            if (!cJSON_IsString(a))
                return kiln_fail(err, KILN_EINVAL, "kubeconfig: exec args must be strings");
            if (!(x->args[x->n_args++] = strdup(a->valuestring)))
                return kiln_fail(err, KILN_ENOMEM, "kubeconfig: out of memory");
        }
    }
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(e, "env");
    int ne = cJSON_IsArray(env) ? cJSON_GetArraySize(env) : 0;
    if (ne > 0) {
        x->env = calloc((size_t)ne, sizeof *x->env);
        if (!x->env)
            return kiln_fail(err, KILN_ENOMEM, "kubeconfig: out of memory");
        const cJSON *v;
        cJSON_ArrayForEach(v, env)
        {
            const char *n = kube_yaml_str(v, "name"), *val = kube_yaml_str(v, "value");
            if (!n || !n[0] || strchr(n, '='))
                return kiln_fail(err, KILN_EINVAL,
                                 "kubeconfig: exec env entry without a valid name");
            size_t l = strlen(n) + (val ? strlen(val) : 0) + 2;
            char *kv = malloc(l);
            if (!kv)
                return kiln_fail(err, KILN_ENOMEM, "kubeconfig: out of memory");
            snprintf(kv, l, "%s=%s", n, val ? val : "");
            x->env[x->n_env++] = kv;
        }
    }
    return 0;
}

static int build(const merged *m, const char *ctx_override, kube_config **out, kiln_error *err)
{
    const char *ctx_name = ctx_override;
    for (int i = 0; !ctx_name && i < m->n; i++) {
        const char *cc = kube_yaml_str(m->docs[i], "current-context");
        if (cc && cc[0])
            ctx_name = cc;
    }
    if (!ctx_name)
        return kiln_fail(err, KILN_EINVAL, "kubeconfig: no current-context and no context given");
    const char *cdir, *udir, *kdir;
    const cJSON *ctx = find_named(m, "contexts", "context", ctx_name, &cdir);
    if (!ctx)
        return kiln_fail(err, KILN_ENOTFOUND, "kubeconfig: context \"%.128s\" not found", ctx_name);
    const char *cl_name = kube_yaml_str(ctx, "cluster");
    const char *us_name = kube_yaml_str(ctx, "user");
    if (!cl_name)
        return kiln_fail(err, KILN_EINVAL, "kubeconfig: context \"%.128s\" names no cluster",
                         ctx_name);
    const cJSON *cl = find_named(m, "clusters", "cluster", cl_name, &kdir);
    if (!cl)
        return kiln_fail(err, KILN_ENOTFOUND, "kubeconfig: cluster \"%.128s\" not found", cl_name);
    const cJSON *us = us_name && us_name[0] ? find_named(m, "users", "user", us_name, &udir) : NULL;
    if (us_name && us_name[0] && !us)
        return kiln_fail(err, KILN_ENOTFOUND, "kubeconfig: user \"%.128s\" not found", us_name);
    const char *server = kube_yaml_str(cl, "server");
    if (!server || !server[0])
        return kiln_fail(err, KILN_EINVAL, "kubeconfig: cluster \"%.128s\" has no server", cl_name);
    if (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0)
        return kiln_fail(err, KILN_EINVAL, "kubeconfig: server \"%.128s\" is not an http(s) URL",
                         server);

    kube_config *c = calloc(1, sizeof *c);
    if (!c)
        return kiln_fail(err, KILN_ENOMEM, "kubeconfig: out of memory");
    int rc = 0;
    const char *ns = kube_yaml_str(ctx, "namespace");
    if ((rc = set_str(&c->server, server, err)) || (rc = set_str(&c->context, ctx_name, err)) ||
        (rc = set_str(&c->cluster, cl_name, err)) || (rc = set_str(&c->user, us_name, err)) ||
        (rc = set_str(&c->namespace_, ns && ns[0] ? ns : "default", err)))
        goto fail;
    size_t sl = strlen(c->server);
    while (sl > 0 && c->server[sl - 1] == '/')
        c->server[--sl] = '\0';
    c->insecure = kube_yaml_bool(cl, "insecure-skip-tls-verify", 0);
    if ((rc = set_b64(&c->ca_data, &c->ca_len, kube_yaml_str(cl, "certificate-authority-data"),
                      "certificate-authority-data", err)) ||
        (rc = set_path(&c->ca_file, kdir, kube_yaml_str(cl, "certificate-authority"), err)) ||
        (rc = set_str(&c->tls_server_name, kube_yaml_str(cl, "tls-server-name"), err)) ||
        (rc = set_str(&c->proxy_url, kube_yaml_str(cl, "proxy-url"), err)))
        goto fail;
    if (us) {
        if ((rc = set_b64(&c->cert_data, &c->cert_len, kube_yaml_str(us, "client-certificate-data"),
                          "client-certificate-data", err)) ||
            (rc = set_b64(&c->key_data, &c->key_len, kube_yaml_str(us, "client-key-data"),
                          "client-key-data", err)) ||
            (rc = set_path(&c->cert_file, udir, kube_yaml_str(us, "client-certificate"), err)) ||
            (rc = set_path(&c->key_file, udir, kube_yaml_str(us, "client-key"), err)) ||
            (rc = set_str(&c->token, kube_yaml_str(us, "token"), err)) ||
            (rc = set_path(&c->token_file, udir, kube_yaml_str(us, "tokenFile"), err)) ||
            (rc = set_str(&c->username, kube_yaml_str(us, "username"), err)) ||
            (rc = set_str(&c->password, kube_yaml_str(us, "password"), err)))
            goto fail;
        const cJSON *ex = cJSON_GetObjectItemCaseSensitive(us, "exec");
        if (cJSON_IsObject(ex) && (rc = parse_exec(ex, udir, &c->exec, err)))
            goto fail;
        if (cJSON_GetObjectItemCaseSensitive(us, "auth-provider"))
            klog(KLOG_WARN, "kubeconfig: auth-provider is not supported, ignored",
                 KS("user", us_name), KEND);
    }
    if ((c->cert_data || c->cert_file) != (c->key_data || c->key_file)) {
        rc = kiln_fail(err, KILN_EINVAL,
                       "kubeconfig: user \"%.128s\" has a client certificate "
                       "without a key or a key without a certificate",
                       us_name ? us_name : "");
        goto fail;
    }
    *out = c;
    return 0;
fail:
    kube_config_free(c);
    return rc;
}

static int add_doc(merged *m, const char *text, size_t len, const char *dir, const char *what,
                   kiln_error *err)
{
    if (m->n >= MAX_FILES)
        return kiln_fail(err, KILN_EINVAL, "kubeconfig: more than %d files", MAX_FILES);
    cJSON *doc;
    int rc = kube_yaml_parse(text, len, KUBE_YAML_STRINGS, &doc, err);
    if (rc) {
        kiln_error_prefix(err, "%s: ", what);
        return rc;
    }
    if (cJSON_IsNull(doc)) { /* an empty file merges as nothing */
        cJSON_Delete(doc);
        return 0;
    }
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return kiln_fail(err, KILN_EINVAL, "%s: kubeconfig is not a mapping", what);
    }
    m->dirs[m->n] = strdup(dir ? dir : "");
    if (!m->dirs[m->n]) {
        cJSON_Delete(doc);
        return kiln_fail(err, KILN_ENOMEM, "kubeconfig: out of memory");
    }
    m->docs[m->n++] = doc;
    return 0;
}

int kube_config_parse(const char *text, size_t len, const char *dir, const char *context,
                      kube_config **out, kiln_error *err)
{
    merged m = {.n = 0};
    int rc = add_doc(&m, text, len, dir, "kubeconfig", err);
    if (!rc)
        rc = build(&m, context, out, err);
    merged_release(&m);
    return rc;
}

/* Reads and parses path; missing files are skipped when optional. */
static int add_file(merged *m, const char *path, int optional, kiln_error *err)
{
    char *text;
    size_t len;
    kiln_error e2 = {0};
    int rc = kube_read_file(path, MAX_KUBECONFIG, &text, &len, &e2);
    if (rc == KILN_ENOTFOUND && optional)
        return 0;
    if (rc)
        return kiln_fail(err, rc, "%s", e2.msg);
    char *dir = strdup(path);
    if (!dir) {
        free(text);
        return kiln_fail(err, KILN_ENOMEM, "kubeconfig: out of memory");
    }
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        dir[0] = '\0';
    rc = add_doc(m, text, len, dir, path, err);
    free(dir);
    free(text);
    return rc;
}

int kube_config_load(const kube_config_opts *o, kube_config **out, kiln_error *err)
{
    kube_config_opts none = {0};
    if (!o)
        o = &none;
    merged m = {.n = 0};
    int rc = 0;
    const char *env = o->kubeconfig ? o->kubeconfig : getenv("KUBECONFIG");
    if (o->path && o->path[0]) {
        rc = add_file(&m, o->path, 0, err);
    } else if (env && env[0]) {
        char *list = strdup(env);
        if (!list)
            return kiln_fail(err, KILN_ENOMEM, "kubeconfig: out of memory");
        /* ':'-separated; empty entries are skipped, as client-go does */
        for (char *p = list; p && !rc;) {
            char *colon = strchr(p, ':');
            if (colon)
                *colon = '\0';
            if (p[0])
                rc = add_file(&m, p, 1, err);
            p = colon ? colon + 1 : NULL;
        }
        free(list);
        if (!rc && m.n == 0)
            rc = kiln_fail(err, KILN_ENOTFOUND, "kubeconfig: no file in KUBECONFIG exists");
    } else {
        const char *home = o->home ? o->home : getenv("HOME");
        if (!home)
            return kiln_fail(err, KILN_ENOTFOUND, "kubeconfig: HOME is not set");
        char path[4096];
        int n = snprintf(path, sizeof path, "%s/.kube/config", home);
        if (n < 0 || (size_t)n >= sizeof path)
            return kiln_fail(err, KILN_EINVAL, "kubeconfig: HOME is too long");
        rc = add_file(&m, path, 0, err);
    }
    if (!rc)
        rc = build(&m, o->context, out, err);
    merged_release(&m);
    return rc;
}

/* ---- in-cluster ---- */

int kube_config_in_cluster(const char *sa_dir, kube_config **out, kiln_error *err)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!sa_dir)
        sa_dir = KUBE_SA_DIR;
    if (!host || !host[0] || !port || !port[0])
        return kiln_fail(err, KILN_ENOTFOUND,
                         "in-cluster: KUBERNETES_SERVICE_HOST/PORT are not set");
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/token", sa_dir);
    if (n < 0 || (size_t)n >= sizeof path)
        return kiln_fail(err, KILN_EINVAL, "in-cluster: directory name too long");
    struct stat st;
    if (stat(path, &st) != 0)
        return kiln_fail(err, KILN_ENOTFOUND, "in-cluster: %s: %s", path, strerror(errno));
    kube_config *c = calloc(1, sizeof *c);
    if (!c)
        return kiln_fail(err, KILN_ENOMEM, "in-cluster: out of memory");
    c->in_cluster = 1;
    int rc = 0;
    size_t sl = strlen(host) + strlen(port) + 16;
    c->server = malloc(sl);
    c->token_file = strdup(path);
    if (!c->server || !c->token_file) {
        rc = kiln_fail(err, KILN_ENOMEM, "in-cluster: out of memory");
        goto fail;
    }
    /* an IPv6 service address needs brackets in the URL */
    snprintf(c->server, sl, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host, port);
    /* read the token once now so a missing or unreadable one fails early */
    char *tok = NULL;
    if ((rc = kube_read_file(path, 1 << 20, &tok, NULL, err)))
        goto fail;
    free(tok);
    snprintf(path, sizeof path, "%s/ca.crt", sa_dir);
    char *ca = NULL;
    size_t ca_len = 0;
    rc = kube_read_file(path, 1 << 20, &ca, &ca_len, err);
    if (rc && rc != KILN_ENOTFOUND)
        goto fail;
    c->ca_data = (unsigned char *)ca;
    c->ca_len = ca_len;
    rc = 0;
    snprintf(path, sizeof path, "%s/namespace", sa_dir);
    char *ns = NULL;
    if (kube_read_file(path, 4096, &ns, NULL, NULL) == 0) {
        size_t l = strlen(ns);
        while (l && (ns[l - 1] == '\n' || ns[l - 1] == ' ' || ns[l - 1] == '\r'))
            ns[--l] = '\0';
    }
    if (ns && ns[0]) {
        c->namespace_ = ns;
    } else {
        free(ns);
        c->namespace_ = strdup("default");
    }
    if (!c->namespace_) {
        rc = kiln_fail(err, KILN_ENOMEM, "in-cluster: out of memory");
        goto fail;
    }
    *out = c;
    return 0;
fail:
    kube_config_free(c);
    return rc;
}

int kube_config_auto(const kube_config_opts *o, kube_config **out, kiln_error *err)
{
    kube_config_opts none = {0};
    if (!o)
        o = &none;
    const char *env = o->kubeconfig ? o->kubeconfig : getenv("KUBECONFIG");
    if ((o->path && o->path[0]) || (env && env[0]))
        return kube_config_load(o, out, err);
    int rc = kube_config_in_cluster(o->sa_dir, out, err);
    if (rc != KILN_ENOTFOUND)
        return rc;
    kiln_error_clear(err);
    return kube_config_load(o, out, err);
}

void kube_config_free(kube_config *c)
{
    if (!c)
        return;
    free(c->server);
    free(c->context);
    free(c->cluster);
    free(c->user);
    free(c->namespace_);
    free(c->ca_data);
    free(c->ca_file);
    free(c->tls_server_name);
    free(c->proxy_url);
    free(c->cert_data);
    free(c->cert_file);
    free(c->key_data);
    free(c->key_file);
    if (c->token)
        memset(c->token, 0, strlen(c->token));
    free(c->token);
    free(c->token_file);
    free(c->username);
    if (c->password)
        memset(c->password, 0, strlen(c->password));
    free(c->password);
    if (c->exec) {
        free(c->exec->api_version);
        free(c->exec->command);
        for (size_t i = 0; i < c->exec->n_args; i++)
            free(c->exec->args[i]);
        free(c->exec->args);
        for (size_t i = 0; i < c->exec->n_env; i++)
            free(c->exec->env[i]);
        free(c->exec->env);
        free(c->exec);
    }
    free(c);
}
