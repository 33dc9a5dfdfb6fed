/* kube_config: where the API server is and how to authenticate to it.
 *
 * Sources, as client-go and controller-runtime resolve them:
 * - kubeconfig files: an explicit path, else every file in $KUBECONFIG
 *   (':'-separated, missing files skipped, merged: for clusters, users and
 *   contexts the first file defining a name wins, and the first
 *   current-context wins), else ~/.kube/config. Relative file paths in a
 *   file resolve against that file's directory. An explicit context
 *   overrides current-context.
 * - in-cluster: the service-account directory (token, ca.crt, namespace;
 *   /var/run/secrets/kubernetes.io/serviceaccount unless overridden) and
 *   KUBERNETES_SERVICE_HOST/PORT.
 * kube_config_auto() tries explicit path, $KUBECONFIG, in-cluster, then
 * ~/.kube/config (controller-runtime's order).
 *
 * Nothing secret is written to disk: *-data fields are decoded into memory
 * and handed to libcurl as blobs. Exec plugins are described here and run by
 * kube_exec. Ownership: kube_config_free() frees everything inside. */
#ifndef KUBE_CONFIG_H
#define KUBE_CONFIG_H

#include <stddef.h>

#include "kiln_err.h"

#define KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

typedef struct kube_exec_spec {
    char *api_version; /* client.authentication.k8s.io/v1 (or v1beta1) */
    char *command;     /* resolved against the kubeconfig's dir if it has a '/' */
    char **args;       /* n_args entries */
    size_t n_args;
    char **env; /* "NAME=VALUE" entries for the child only */
    size_t n_env;
} kube_exec_spec;

typedef struct kube_config {
    char *server; /* "https://host:port", no trailing '/' */
    char *context;
    char *cluster;
    char *user;
    char *namespace_; /* default namespace; "default" when unset */
    /* TLS */
    unsigned char *ca_data; /* PEM bytes or NULL */
    size_t ca_len;
    char *ca_file;
    int insecure; /* insecure-skip-tls-verify */
    char *tls_server_name;
    char *proxy_url;
    unsigned char *cert_data;
    size_t cert_len;
    char *cert_file;
    unsigned char *key_data;
    size_t key_len;
    char *key_file;
    /* credentials */
    char *token;
    char *token_file; /* re-read periodically and on 401 */
    char *username;
    char *password;
    kube_exec_spec *exec; /* NULL when the user has no exec plugin */
    int in_cluster;
} kube_config;

typedef struct kube_config_opts {
    const char *path;       /* explicit kubeconfig file, or NULL */
    const char *context;    /* explicit context, or NULL for current-context */
    const char *kubeconfig; /* overrides getenv("KUBECONFIG") when non-NULL */
    const char *home;       /* overrides getenv("HOME") when non-NULL */
    const char *sa_dir;     /* overrides KUBE_SA_DIR when non-NULL */
} kube_config_opts;

/* Loads from kubeconfig files only (explicit path, $KUBECONFIG, ~/.kube/config). */
int kube_config_load(const kube_config_opts *o, kube_config **out, kiln_error *err);

/* The in-cluster configuration; KILN_ENOTFOUND when not in a cluster. */
int kube_config_in_cluster(const char *sa_dir, kube_config **out, kiln_error *err);

/* explicit path, $KUBECONFIG, in-cluster, ~/.kube/config. */
int kube_config_auto(const kube_config_opts *o, kube_config **out, kiln_error *err);

/* Parses one kubeconfig document held in memory (dir: where relative paths
 * resolve, may be NULL). Used by the loader and the fuzz target. */
int kube_config_parse(const char *text, size_t len, const char *dir, const char *context,
                      kube_config **out, kiln_error *err);

void kube_config_free(kube_config *c);

/* Decodes standard base64 (whitespace ignored). *out is malloc'd with a
 * trailing NUL not counted in *out_len. Returns 0 or KILN_EINVAL. */
int kube_base64_decode(const char *in, unsigned char **out, size_t *out_len, kiln_error *err);

/* Reads a whole file (at most max bytes) into a malloc'd NUL-terminated
 * buffer. KILN_ENOTFOUND if missing, KILN_EINVAL if larger than max. */
int kube_read_file(const char *path, size_t max, char **out, size_t *out_len, kiln_error *err);

#endif
