/* kubelite: a local, single-process Kubernetes control plane for Kiln's
 * development, tests and quickstart.
 *
 *   kubelite --data-dir DIR [--listen 127.0.0.1:PORT] [--insecure-http]
 *            [--images FILE] [--history N] [--no-kubelet] [--no-fsync]
 *
 * Writes DIR/kubeconfig once the server listens; logs requests to
 * DIR/requests.log. SIGTERM/SIGINT stop it cleanly. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kl_api.h"
#include "kl_ctrl.h"
#include "kl_kubelet.h"
#include "kl_pki.h"
#include "kl_server.h"
#include "klog.h"

static volatile int g_stop; /* set by the signal handler only */

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: kubelite --data-dir DIR [--listen 127.0.0.1:PORT] [--insecure-http]\n"
                    "                [--images FILE] [--history N] [--no-kubelet] [--no-fsync]\n");
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *listen = "127.0.0.1:0", *images = NULL;
    int insecure = 0, kubelet = 1, nosync = 0;
    long history = 10000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data-dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--listen") && i + 1 < argc)
            listen = argv[++i];
        else if (!strcmp(argv[i], "--images") && i + 1 < argc)
            images = argv[++i];
        else if (!strcmp(argv[i], "--history") && i + 1 < argc)
            history = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--insecure-http"))
            insecure = 1;
        else if (!strcmp(argv[i], "--no-kubelet"))
            kubelet = 0;
        else if (!strcmp(argv[i], "--no-fsync"))
            nosync = 1;
        else {
            usage();
            return 2;
        }
    }
    if (!dir) {
        usage();
        return 2;
    }
    char host[64] = "127.0.0.1";
    int port = 0;
    const char *colon = strrchr(listen, ':');
    if (colon) {
        snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
        port = atoi(colon + 1);
    }
    if (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "localhost") != 0 && insecure) {
        fprintf(stderr, "kubelite: --insecure-http is for loopback only\n");
        return 2;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "kubelite: mkdir %s: %s\n", dir, strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    kiln_error err = {0};
    char token[128] = "";
    char cert[4200], key[4200], ca[4200];
    snprintf(cert, sizeof(cert), "%s/pki/server.crt", dir);
    snprintf(key, sizeof(key), "%s/pki/server.key", dir);
    snprintf(ca, sizeof(ca), "%s/pki/ca.crt", dir);
    if (kl_pki_token(dir, token, sizeof(token), &err) != 0 ||
        (!insecure && kl_pki_ensure(dir, &err) != 0)) {
        fprintf(stderr, "kubelite: %s\n", err.msg);
        return 1;
    }
    int net = kl_pki_net_octet(dir, &err);
    if (net < 0) {
        fprintf(stderr, "kubelite: %s\n", err.msg);
        return 1;
    }
    kl_api_opts ao = {.data_dir = dir, .server_addr = listen, .history = (size_t)history,
                      .log_requests = 1, .net_octet = net};
    kl_api *api = NULL;
    if (kl_api_new(&ao, &api, &err) != 0) {
        fprintf(stderr, "kubelite: %s\n", err.msg);
        return 1;
    }
    if (nosync)
        kl_store_set_sync(kl_api_store(api), 0);
    kl_server_opts so = {.listen_host = host, .port = port, .insecure = insecure,
                         .cert_path = cert, .key_path = key, .ca_path = ca, .token = token};
    kl_server *srv = NULL;
    if (kl_server_new(&so, api, &srv, &err) != 0) {
        fprintf(stderr, "kubelite: %s\n", err.msg);
        kl_api_free(api);
        return 1;
    }
    char addr[96];
    snprintf(addr, sizeof(addr), "%s:%d", host, kl_server_port(srv));
    kl_api_set_addr(api, addr);
    kl_ctrl *ctrl = NULL;
    kl_kubelet *kb = NULL;
    if (kl_ctrl_new(api, &ctrl, &err) != 0) {
        fprintf(stderr, "kubelite: %s\n", err.msg);
        return 1;
    }
    kl_server_add_tick(srv, kl_ctrl_tick, ctrl);
    if (kubelet) {
        if (kl_kubelet_new(api, dir, images, &kb, &err) != 0) {
            fprintf(stderr, "kubelite: kubelet: %s\n", err.msg);
            return 1;
        }
        kl_server_add_tick(srv, kl_kubelet_tick, kb);
    }
    if (kl_pki_kubeconfig(dir, host, kl_server_port(srv), !insecure, token, &err) != 0) {
        fprintf(stderr, "kubelite: %s\n", err.msg);
        return 1;
    }
    /* Installed after the server and kubelet exist: library set-up must not
     * replace them, and a signal before this point just ends the process. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    klog(KLOG_INFO, "kubelite listening", KS("address", addr), KB("tls", !insecure),
         KS("dataDir", dir), KEND);
    kl_server_run(srv, &g_stop);
    klog(KLOG_INFO, "kubelite stopping", KEND);
    kl_kubelet_free(kb);
    kl_server_free(srv);
    kl_ctrl_free(ctrl);
    kl_api_free(api);
    return 0;
}
