/* kube_exec: exec credential plugins via posix_spawn, capped stdout. */
#include "kube_exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

extern char **environ;

void kube_exec_cred_release(kube_exec_cred *c)
{
    if (!c)
        return;
    if (c->token)
        memset(c->token, 0, strlen(c->token));
    if (c->key_pem)
        memset(c->key_pem, 0, strlen(c->key_pem));
    free(c->token);
    free(c->cert_pem);
    free(c->key_pem);
    memset(c, 0, sizeof *c);
}

int kube_exec_parse(const char *json, size_t len, kube_exec_cred *out, kiln_error *err)
{
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return kiln_fail(err, KILN_EINVAL, "exec plugin: output is not JSON");
    int rc = 0;
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(root, "kind");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "status");
    if (!cJSON_IsString(kind) || strcmp(kind->valuestring, "ExecCredential") != 0 ||
        !cJSON_IsObject(st)) {
        rc = kiln_fail(err, KILN_EINVAL,
                       "exec plugin: output is not an ExecCredential with a status");
        goto out;
    }
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(st, "token");
    const cJSON *cert = cJSON_GetObjectItemCaseSensitive(st, "clientCertificateData");
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(st, "clientKeyData");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(st, "expirationTimestamp");
    if (cJSON_IsString(tok) && tok->valuestring[0] && !(out->token = strdup(tok->valuestring)))
        goto oom;
    if (cJSON_IsString(cert) && cert->valuestring[0] &&
        !(out->cert_pem = strdup(cert->valuestring)))
        goto oom;
    if (cJSON_IsString(key) && key->valuestring[0] && !(out->key_pem = strdup(key->valuestring)))
        goto oom;
    if (!out->token && !(out->cert_pem && out->key_pem)) {
        rc = kiln_fail(err, KILN_EINVAL,
                       "exec plugin: status has neither a token nor a client certificate and key");
        goto out;
    }
    if ((out->cert_pem != NULL) != (out->key_pem != NULL)) {
        rc = kiln_fail(err, KILN_EINVAL,
                       "exec plugin: client certificate and key must come together");
        goto out;
    }
    if (cJSON_IsString(exp) && exp->valuestring[0]) {
        if ((rc = ktime_parse(exp->valuestring, &out->expiry, err))) {
            kiln_error_prefix(err, "exec plugin expirationTimestamp: ");
            goto out;
        }
        out->has_expiry = 1;
    }
out:
    cJSON_Delete(root);
    if (rc)
        kube_exec_cred_release(out);
    return rc;
oom:
    rc = kiln_fail(err, KILN_ENOMEM, "exec plugin: out of memory");
    goto out;
}

/* environ + the spec's entries (which override same-named ones) +
 * KUBERNETES_EXEC_INFO. The strings are borrowed; only the array is new. */
static char **child_env(const kube_exec_spec *spec, char *info)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = calloc(n + spec->n_env + 2, sizeof *env);
    if (!env)
        return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t kl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int overridden = strncmp(environ[i], "KUBERNETES_EXEC_INFO=", 21) == 0;
        for (size_t j = 0; j < spec->n_env && !overridden; j++)
            if (strncmp(spec->env[j], environ[i], kl) == 0 && spec->env[j][kl] == '=')
                overridden = 1;
        if (!overridden)
            env[w++] = environ[i];
    }
    for (size_t j = 0; j < spec->n_env; j++)
        env[w++] = spec->env[j];
    env[w++] = info;
    env[w] = NULL;
    return env;
}

int kube_exec_run(const kube_exec_spec *spec, int timeout_ms, kube_exec_cred *out, kiln_error *err)
{
    memset(out, 0, sizeof *out);
    if (!spec || !spec->command)
        return kiln_fail(err, KILN_EINVAL, "exec plugin: no command");
    if (timeout_ms <= 0)
        timeout_ms = 30000;
    char info[256];
    snprintf(info, sizeof info,
             "KUBERNETES_EXEC_INFO={\"apiVersion\":\"%s\",\"kind\":\"ExecCredential\","
             "\"spec\":{\"interactive\":false}}",
             spec->api_version ? spec->api_version : "client.authentication.k8s.io/v1");
    char **argv = calloc(spec->n_args + 2, sizeof *argv);
    char **envp = child_env(spec, info);
    char *buf = malloc(KUBE_EXEC_MAX_OUTPUT + 1);
    int pipefd[2] = {-1, -1};
    int rc = 0, spawned = 0;
    pid_t pid = -1;
    posix_spawn_file_actions_t fa;
    int fa_ok = 0;
    if (!argv || !envp || !buf) {
        rc = kiln_fail(err, KILN_ENOMEM, "exec plugin: out of memory");
        goto out;
    }
    argv[0] = spec->command;
    for (size_t i = 0; i < spec->n_args; i++)
        argv[i + 1] = spec->args[i];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        rc = kiln_fail(err, KILN_EIO, "exec plugin: pipe: %s", strerror(errno));
        goto out;
    }
    if (posix_spawn_file_actions_init(&fa) != 0) {
        rc = kiln_fail(err, KILN_ENOMEM, "exec plugin: out of memory");
        goto out;
    }
    fa_ok = 1;
    if (posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO) ||
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0)) {
        rc = kiln_fail(err, KILN_ENOMEM, "exec plugin: out of memory");
        goto out;
    }
    int se = posix_spawnp(&pid, spec->command, &fa, NULL, argv, envp);
    if (se != 0) {
        rc = kiln_fail(err, KILN_EIO, "exec plugin %s: %s", spec->command, strerror(se));
        goto out;
    }
    spawned = 1;
    close(pipefd[1]);
    pipefd[1] = -1;
    size_t len = 0;
    int64_t deadline = ktime_mono_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - ktime_mono_ms();
        if (left <= 0) {
            rc = kiln_fail(err, KILN_ETIMEOUT, "exec plugin %s: no answer within %d ms",
                           spec->command, timeout_ms);
            break;
        }
        struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
        int pr = poll(&pfd, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        ssize_t r = read(pipefd[0], buf + len, KUBE_EXEC_MAX_OUTPUT + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len > KUBE_EXEC_MAX_OUTPUT) {
            rc = kiln_fail(err, KILN_EINVAL, "exec plugin %s: output larger than %u bytes",
                           spec->command, KUBE_EXEC_MAX_OUTPUT);
            break;
        }
    }
    if (rc)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    spawned = 0;
    if (!rc && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        rc = kiln_fail(err, KILN_EIO, "exec plugin %s: exited with status %d", spec->command,
                       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    if (!rc)
        rc = kube_exec_parse(buf, len, out, err);
out:
    if (spawned) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    if (buf) {
        memset(buf, 0, KUBE_EXEC_MAX_OUTPUT + 1);
        free(buf);
    }
    free(argv);
    free(envp);
    return rc;
}
