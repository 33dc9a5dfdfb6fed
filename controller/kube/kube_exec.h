/* kube_exec: runs a client.authentication.k8s.io exec credential plugin.
 *
 * The command is spawned with posix_spawnp() from an argv array (no shell,
 * no quoting), stdin from /dev/null, stderr inherited (plugins print prompts
 * and errors there). The kubeconfig's env entries and KUBERNETES_EXEC_INFO
 * are added to the child's environment only; ours is never changed. Stdout
 * is read with a size cap and a deadline (the child is killed past either),
 * then parsed as an ExecCredential: status.token, or
 * status.clientCertificateData + clientKeyData (PEM text), and the optional
 * status.expirationTimestamp. Ownership: kube_exec_cred_release(). */
#ifndef KUBE_EXEC_H
#define KUBE_EXEC_H

#include <stddef.h>

#include "kiln_err.h"
#include "ktime.h"
#include "kube_config.h"

#define KUBE_EXEC_MAX_OUTPUT (1u << 20) /* 1 MiB of stdout at most */

typedef struct kube_exec_cred {
    char *token;
    char *cert_pem;
    char *key_pem;
    int has_expiry;
    ktime expiry;
} kube_exec_cred;

/* Runs spec and parses its output into *out (zeroed first). timeout_ms <= 0
 * means 30 s. Returns 0, KILN_EIO (spawn or read failure, non-zero exit),
 * KILN_ETIMEOUT, or KILN_EINVAL (bad output). */
int kube_exec_run(const kube_exec_spec *spec, int timeout_ms, kube_exec_cred *out, kiln_error *err);

/* Parses ExecCredential JSON (used by kube_exec_run and the fuzz target). */
int kube_exec_parse(const char *json, size_t len, kube_exec_cred *out, kiln_error *err);

void kube_exec_cred_release(kube_exec_cred *c);

#endif
