/* Unit tests for kube_config (merged kubeconfigs, *-data forms, contexts,
 * in-cluster), kube_yaml and kube_exec (plugin scripts). */
#include <stdlib.h>

#include "kt_util.h"
#include "ktest.h"
#include "kube_config.h"
#include "kube_exec.h"
#include "kube_yaml.h"

static char dir[256];

static const char *file_a = "apiVersion: v1\nkind: Config\ncurrent-context: ctx-a\n"
                            "clusters:\n"
                            "- name: c1\n  cluster:\n    server: https://a.example:6443/\n    "
                            "certificate-authority: ca.pem\n"
                            "users:\n"
                            "- name: u1\n  user:\n    token: tok-a\n"
                            "- name: u3\n  user:\n    exec:\n      command: bin/plugin\n      "
                            "args: [get-token, \"--x=1\"]\n"
                            "      env:\n      - {name: A, value: \"1\"}\n"
                            "contexts:\n"
                            "- name: ctx-a\n  context: {cluster: c1, user: u1, namespace: team-a}\n"
                            "- name: ctx-shared\n  context: {cluster: c1, user: u1}\n"
                            "- name: ctx-exec\n  context: {cluster: c1, user: u3}\n";

/* "CERT" and "KEY" base64-encoded, the first split over lines */
static const char *file_b =
    "apiVersion: v1\nkind: Config\ncurrent-context: ctx-b\n"
    "clusters:\n"
    "- name: c1\n  cluster:\n    server: https://must-lose.example\n"
    "- name: c2\n  cluster:\n    server: https://b.example\n    insecure-skip-tls-verify: true\n"
    "    tls-server-name: api.internal\n    proxy-url: http://proxy:3128\n"
    "    certificate-authority-data: Q0EtREFUQQ==\n"
    "users:\n"
    "- name: u2\n  user:\n    client-certificate-data: |\n      Q0VS\n      VA==\n"
    "    client-key-data: S0VZ\n"
    "contexts:\n"
    "- name: ctx-b\n  context: {cluster: c2, user: u2}\n"
    "- name: ctx-shared\n  context: {cluster: c2, user: u2}\n";

static void test_merge(void)
{
    kt_write(dir, "a", file_a);
    kt_write(dir, "b", file_b);
    char env[1024];
    snprintf(env, sizeof env, "%s/a:%s/missing::%s/b", dir, dir, dir);
    kube_config_opts o = {.kubeconfig = env};
    kube_config *c = NULL;
    kiln_error e = {0};
    KT_EQ_INT(kube_config_load(&o, &c, &e), 0);
    if (!c) {
        fprintf(stderr, "%s\n", e.msg);
        return;
    }
    KT_CHECK(strcmp(c->context, "ctx-a") == 0); /* first current-context wins */
    KT_CHECK(strcmp(c->server, "https://a.example:6443") == 0);
    KT_CHECK(strcmp(c->namespace_, "team-a") == 0);
    KT_CHECK(strcmp(c->token, "tok-a") == 0);
    char want[512];
    snprintf(want, sizeof want, "%s/ca.pem", dir);
    KT_CHECK(c->ca_file && strcmp(c->ca_file, want) == 0);
    KT_EQ_INT(c->insecure, 0);
    kube_config_free(c);
    /* explicit context from the second file, *-data decoded in memory */
    o.context = "ctx-b";
    KT_EQ_INT(kube_config_load(&o, &c, &e), 0);
    KT_CHECK(strcmp(c->server, "https://b.example") == 0);
    KT_EQ_INT(c->insecure, 1);
    KT_CHECK(strcmp(c->tls_server_name, "api.internal") == 0);
    KT_CHECK(strcmp(c->proxy_url, "http://proxy:3128") == 0);
    KT_EQ_INT(c->cert_len, 4);
    KT_CHECK(memcmp(c->cert_data, "CERT", 4) == 0);
    KT_CHECK(c->key_len == 3 && memcmp(c->key_data, "KEY", 3) == 0);
    KT_CHECK(c->ca_len == 7 && memcmp(c->ca_data, "CA-DATA", 7) == 0);
    KT_CHECK(strcmp(c->namespace_, "default") == 0);
    kube_config_free(c);
    /* a name defined in both files: the first file's entry wins */
    o.context = "ctx-shared";
    KT_EQ_INT(kube_config_load(&o, &c, &e), 0);
    KT_CHECK(strcmp(c->server, "https://a.example:6443") == 0);
    kube_config_free(c);
    /* exec plugin description, relative command resolved */
    o.context = "ctx-exec";
    KT_EQ_INT(kube_config_load(&o, &c, &e), 0);
    KT_CHECK(c->exec != NULL);
    if (c->exec) {
        snprintf(want, sizeof want, "%s/bin/plugin", dir);
        KT_CHECK(strcmp(c->exec->command, want) == 0);
        KT_EQ_INT(c->exec->n_args, 2);
        KT_CHECK(strcmp(c->exec->args[1], "--x=1") == 0);
        KT_EQ_INT(c->exec->n_env, 1);
        KT_CHECK(strcmp(c->exec->env[0], "A=1") == 0);
        KT_CHECK(strcmp(c->exec->api_version, "client.authentication.k8s.io/v1") == 0);
    }
    kube_config_free(c);
    o.context = "nope";
    kiln_error_clear(&e);
    KT_EQ_INT(kube_config_load(&o, &c, &e), KILN_ENOTFOUND);
    KT_STR_CONTAINS(e.msg, "nope");
    /* explicit path beats KUBECONFIG; a missing explicit file is an error */
    char path[512];
    snprintf(path, sizeof path, "%s/b", dir);
    kube_config_opts po = {.path = path, .kubeconfig = env};
    KT_EQ_INT(kube_config_load(&po, &c, &e), 0);
    KT_CHECK(strcmp(c->context, "ctx-b") == 0);
    kube_config_free(c);
    snprintf(path, sizeof path, "%s/none", dir);
    KT_EQ_INT(kube_config_load(&po, &c, NULL), KILN_ENOTFOUND);
    /* ~/.kube/config */
    char kd[512];
    snprintf(kd, sizeof kd, "%s/.kube", dir);
    KT_EQ_INT(mkdir(kd, 0700), 0);
    kt_write(kd, "config", file_b);
    kube_config_opts ho = {.kubeconfig = "", .home = dir};
    KT_EQ_INT(kube_config_load(&ho, &c, &e), 0);
    KT_CHECK(strcmp(c->context, "ctx-b") == 0);
    kube_config_free(c);
}

static void test_bad_configs(void)
{
    static const char *bad[] = {
        "- just\n- a list\n",
        "current-context: x\ncontexts:\n- name: x\n  context: {cluster: c}\n"
        "clusters:\n- name: c\n  cluster: {server: ftp://x}\n",
        "current-context: x\ncontexts:\n- name: x\n  context: {cluster: c}\n"
        "clusters:\n- name: c\n  cluster: {certificate-authority-data: \"@@@\", server: "
        "https://x}\n",
        "current-context: x\ncontexts:\n- name: x\n  context: &a {cluster: c}\n",
        "current-context: x\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n"
        "clusters:\n- name: c\n  cluster: {server: https://x}\n"
        "users:\n- name: u\n  user: {client-certificate-data: Q0VSVA==}\n",
        "a: [unclosed\n",
        "current-context: x\ncurrent-context: y\n",
        "contexts:\n- name: x\n  context: {cluster: c}\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kube_config *c = NULL;
        kiln_error e = {0};
        int rc = kube_config_parse(bad[i], strlen(bad[i]), NULL, NULL, &c, &e);
        if (rc == 0)
            fprintf(stderr, "accepted bad config %zu\n", i);
        KT_CHECK(rc < 0);
        KT_CHECK(c == NULL);
        KT_CHECK(e.msg[0] != '\0');
    }
}

static void test_yaml_types(void)
{
    cJSON *j = NULL;
    const char *y = "a: 1\nb: \"1\"\nc: true\nd: ~\ne: [x, 2.5]\nf: 0x1z\n";
    KT_EQ_INT(kube_yaml_parse(y, strlen(y), 0, &j, NULL), 0);
    KT_CHECK(cJSON_IsNumber(cJSON_GetObjectItem(j, "a")));
    KT_CHECK(cJSON_IsString(cJSON_GetObjectItem(j, "b")));
    KT_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "c")));
    KT_CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "d")));
    KT_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "e")), 2);
    KT_CHECK(cJSON_IsString(cJSON_GetObjectItem(j, "f")));
    cJSON_Delete(j);
    KT_EQ_INT(kube_yaml_parse(y, strlen(y), KUBE_YAML_STRINGS, &j, NULL), 0);
    KT_CHECK(cJSON_IsString(cJSON_GetObjectItem(j, "a")));
    KT_CHECK(kube_yaml_bool(j, "c", 0) == 1);
    cJSON_Delete(j);
    /* deep nesting is refused, not a stack overflow */
    char deep[400];
    memset(deep, '[', 200);
    deep[200] = '\0';
    kiln_error e = {0};
    KT_EQ_INT(kube_yaml_parse(deep, 200, 0, &j, &e), KILN_EINVAL);
}

static void test_in_cluster(void)
{
    char sa[512];
    snprintf(sa, sizeof sa, "%s/sa", dir);
    KT_EQ_INT(mkdir(sa, 0700), 0);
    kt_write(sa, "token", "sa-token\n");
    kt_write(sa, "ca.crt", "-----BEGIN CERTIFICATE-----\n");
    kt_write(sa, "namespace", "kiln-system\n");
    unsetenv("KUBERNETES_SERVICE_HOST");
    kube_config *c = NULL;
    KT_EQ_INT(kube_config_in_cluster(sa, &c, NULL), KILN_ENOTFOUND);
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    kiln_error e = {0};
    KT_EQ_INT(kube_config_in_cluster(sa, &c, &e), 0);
    if (c) {
        KT_CHECK(strcmp(c->server, "https://10.96.0.1:443") == 0);
        KT_CHECK(strcmp(c->namespace_, "kiln-system") == 0);
        KT_CHECK(c->ca_len == 28);
        KT_CHECK(c->token == NULL && strstr(c->token_file, "/sa/token") != NULL);
        KT_EQ_INT(c->in_cluster, 1);
        kube_config_free(c);
    }
    /* auto: no explicit path and no KUBECONFIG -> in-cluster */
    kube_config_opts o = {.kubeconfig = "", .sa_dir = sa, .home = "/nonexistent"};
    KT_EQ_INT(kube_config_auto(&o, &c, &e), 0);
    KT_CHECK(c && c->in_cluster);
    kube_config_free(c);
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    KT_EQ_INT(kube_config_in_cluster(sa, &c, &e), 0);
    KT_CHECK(c && strcmp(c->server, "https://[fd00::1]:443") == 0);
    kube_config_free(c);
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
}

static kube_exec_spec *spec_for(const char *script_name)
{
    static char cmd[512];
    static kube_exec_spec s;
    snprintf(cmd, sizeof cmd, "%s/%s", dir, script_name);
    memset(&s, 0, sizeof s);
    s.command = cmd;
    return &s;
}

static void script(const char *name, const char *body)
{
    kt_write(dir, name, body);
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    chmod(p, 0700);
}

static void test_exec(void)
{
    script("ok.sh",
           "#!/bin/sh\nn=$(printf '%s' \"$KUBERNETES_EXEC_INFO\" | grep -c ExecCredential)\n"
           "printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":"
           "\"ExecCredential\",\"status\":{\"token\":\"t-%s\",\"expirationTimestamp\":"
           "\"2030-01-02T03:04:05+01:00\"}}' \"$n\"\n");
    kube_exec_cred cred;
    kiln_error e = {0};
    KT_EQ_INT(kube_exec_run(spec_for("ok.sh"), 5000, &cred, &e), 0);
    KT_CHECK(cred.token && strcmp(cred.token, "t-1") == 0); /* KUBERNETES_EXEC_INFO was set */
    KT_EQ_INT(cred.has_expiry, 1);
    KT_EQ_INT(cred.expiry.sec, 1893549845LL);
    kube_exec_cred_release(&cred);
    script("cert.sh", "#!/bin/sh\necho '{\"kind\":\"ExecCredential\",\"status\":{"
                      "\"clientCertificateData\":\"-----BEGIN CERTIFICATE-----\","
                      "\"clientKeyData\":\"-----BEGIN PRIVATE KEY-----\"}}'\n");
    KT_EQ_INT(kube_exec_run(spec_for("cert.sh"), 5000, &cred, &e), 0);
    KT_CHECK(cred.cert_pem && cred.key_pem && !cred.token && !cred.has_expiry);
    kube_exec_cred_release(&cred);
    script("fail.sh", "#!/bin/sh\necho nope >&2\nexit 3\n");
    kiln_error_clear(&e);
    KT_EQ_INT(kube_exec_run(spec_for("fail.sh"), 5000, &cred, &e), KILN_EIO);
    KT_STR_CONTAINS(e.msg, "status 3");
    script("big.sh", "#!/bin/sh\nhead -c 3000000 /dev/zero\n");
    kiln_error_clear(&e);
    KT_EQ_INT(kube_exec_run(spec_for("big.sh"), 5000, &cred, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "larger than");
    script("slow.sh", "#!/bin/sh\nexec sleep 5\n");
    kiln_error_clear(&e);
    int64_t t0 = ktime_mono_ms();
    KT_EQ_INT(kube_exec_run(spec_for("slow.sh"), 200, &cred, &e), KILN_ETIMEOUT);
    KT_CHECK(ktime_mono_ms() - t0 < 4500); /* killed before sleep 5 ends */
    script("notoken.sh", "#!/bin/sh\necho '{\"kind\":\"ExecCredential\",\"status\":{}}'\n");
    KT_EQ_INT(kube_exec_run(spec_for("notoken.sh"), 5000, &cred, NULL), KILN_EINVAL);
    KT_EQ_INT(kube_exec_run(spec_for("does-not-exist"), 5000, &cred, NULL), KILN_EIO);
}

static void test_base64(void)
{
    unsigned char *o;
    size_t n;
    KT_EQ_INT(kube_base64_decode("aGVsbG8gd29ybGQ=", &o, &n, NULL), 0);
    KT_CHECK(n == 11 && memcmp(o, "hello world", 11) == 0);
    free(o);
    KT_EQ_INT(kube_base64_decode("aGVs\nbG8=", &o, &n, NULL), 0);
    KT_CHECK(n == 5 && memcmp(o, "hello", 5) == 0);
    free(o);
    KT_EQ_INT(kube_base64_decode("a", &o, &n, NULL), KILN_EINVAL);
    KT_EQ_INT(kube_base64_decode("aGVs=bG8", &o, &n, NULL), KILN_EINVAL);
    KT_EQ_INT(kube_base64_decode("a*Vs", &o, &n, NULL), KILN_EINVAL);
}

int main(void)
{
    if (kt_tmpdir(dir, sizeof dir))
        return 1;
    KT_RUN(test_merge);
    KT_RUN(test_bad_configs);
    KT_RUN(test_yaml_types);
    KT_RUN(test_in_cluster);
    KT_RUN(test_exec);
    KT_RUN(test_base64);
    kt_rmtree(dir);
    return KT_DONE();
}
