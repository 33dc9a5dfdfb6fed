/* kiln-controller: the operator's entry point. Parses the flags, loads the
 * cluster configuration (kubeconfig or in-cluster), starts the health and
 * metrics endpoints and the controller, and shuts everything down in order
 * on SIGTERM/SIGINT (releasing the Lease so a successor takes over at
 * once). Exit codes: 0 after a signal, 1 on a failure or a lost Lease, 2
 * for bad flags. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "ctrl.h"
#include "ctrl_http.h"
#include "klog.h"
#include "kube_client.h"
#include "kube_config.h"

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kiln-controller [flags]\n"
            "  --kubeconfig PATH                 kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)\n"
            "  --context NAME                    kubeconfig context\n"
            "  --namespace NS                    watch only this namespace (default: all)\n"
            "  --workers N                       reconcile threads (default 32)\n"
            "  --qps Q --burst B                 client rate limit (default 2000 / 4000)\n"
            "  --leader-elect                    take the coordination.k8s.io Lease first\n"
            "  --leader-election-namespace NS    Lease namespace (default: $POD_NAMESPACE, else kiln-system)\n"
            "  --metrics-bind-address ADDR       HOST:PORT for /metrics, /dashboard and\n"
            "                                    /dashboard/ws, 0 to disable (default :8080)\n"
            "  --health-probe-bind-address ADDR  HOST:PORT for /healthz and /readyz (default :8081)\n"
            "  --trainer-image IMAGE             default trainer image\n"
            "  --watch-websocket                 watch over WebSocket instead of chunked HTTP\n"
            "  --progress-events                 also post each trial's progress events (SearchStarted,\n"
            "                                    TrialCreated, TrialSucceeded); default: logged only;\n"
            "                                    Events for warnings, new best trials and outcomes\n");
}

int main(int argc, char **argv)
{
    const char *kubeconfig = NULL, *context = NULL;
    const char *metrics = ":8080", *health = ":8081";
    /* A reconcile spends its time waiting on API round trips (for a new
     * job: its first pod, with its claim alongside), so it takes some
     * thirty workers to keep up with a thousand jobs applied at once; and
     * those need about five writes each within seconds, which a 50 QPS
     * bucket would spread over minutes (the API server's own priority and
     * fairness protects it from a burst). */
    ctrl_opts o = {.workers = 32, .lease_name = "kiln-controller"};
    double qps = 2000;
    int burst = 4000;
    /* glibc gives each thread that allocates an arena of its own (up to
     * eight per core); the workers' short-lived JSON would then hold a
     * few hundred kilobytes of free memory per worker. Two arenas are
     * plenty for threads that mostly wait. */
    mallopt(M_ARENA_MAX, 2);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--leader-elect")) {
            o.leader_elect = 1;
            takes = 0;
        } else if (!strcmp(a, "--watch-websocket")) {
            o.websocket_watches = 1;
            takes = 0;
        } else if (!strcmp(a, "--progress-events")) {
            o.progress_events = 1;
            takes = 0;
        } else if (!v) {
            fprintf(stderr, "kiln-controller: %s needs a value\n", a);
            return 2;
        } else if (!strcmp(a, "--kubeconfig")) {
            kubeconfig = v;
        } else if (!strcmp(a, "--context")) {
            context = v;
        } else if (!strcmp(a, "--namespace")) {
            o.ns = v;
        } else if (!strcmp(a, "--workers")) {
            o.workers = (int)strtol(v, NULL, 10);
        } else if (!strcmp(a, "--qps")) {
            qps = strtod(v, NULL);
        } else if (!strcmp(a, "--burst")) {
            burst = (int)strtol(v, NULL, 10);
        } else if (!strcmp(a, "--leader-election-namespace")) {
            o.lease_ns = v;
        } else if (!strcmp(a, "--metrics-bind-address")) {
            metrics = v;
        } else if (!strcmp(a, "--health-probe-bind-address")) {
            health = v;
        } else if (!strcmp(a, "--trainer-image")) {
            o.trainer_image = v;
        } else {
            fprintf(stderr, "kiln-controller: unknown flag %s\n", a);
            usage(stderr);
            return 2;
        }
        i += takes;
    }
    if (o.workers < 1 || o.workers > 64 || qps <= 0 || burst < 1) {
        fprintf(stderr, "kiln-controller: --workers must be 1..64, --qps > 0, --burst >= 1\n");
        return 2;
    }
    if (!o.lease_ns)
        o.lease_ns = getenv("POD_NAMESPACE") ? getenv("POD_NAMESPACE") : "kiln-system";

    /* Global set-up before any thread starts. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    kiln_error err = {0};
    kube_config *cfg = NULL;
    kube_config_opts co = {.path = kubeconfig, .context = context};
    if (kube_config_auto(&co, &cfg, &err) != 0) {
        klog(KLOG_ERROR, "cannot load the cluster configuration", KS("error", err.msg), KEND);
        return 1;
    }
    kube_client_opts copts = {.qps = qps, .burst = burst, .user_agent = "kiln-controller/" KILN_CTRL_VERSION};
    kube_client *client = NULL;
    ctrl *c = NULL;
    ctrl_http *http = NULL;
    int rc = 1, mport = 0, hport = 0;
    /* The client takes the configuration, even when it fails. */
    int crc = kube_client_new(cfg, &copts, &client, &err);
    cfg = NULL;
    if (crc != 0 || ctrl_new(client, &o, &c, &err) != 0 ||
        ctrl_http_start(c, metrics, health, &http, &mport, &hport, &err) != 0) {
        klog(KLOG_ERROR, "cannot start", KS("error", err.msg), KEND);
        goto out;
    }
    klog(KLOG_INFO, "starting", KS("version", KILN_CTRL_VERSION), KS("namespace", o.ns ? o.ns : "*"),
         KB("leaderElect", o.leader_elect), KI("metricsPort", mport), KI("healthPort", hport), KEND);
    if (ctrl_start(c, &err) != 0) {
        klog(KLOG_ERROR, "cannot start the controller", KS("error", err.msg), KEND);
        goto out;
    }
    int was_leading = 0;
    while (!got_signal) {
        usleep(100 * 1000);
        int leading = ctrl_leading(c);
        if (was_leading && !leading && o.leader_elect) {
            klog(KLOG_ERROR, "leader election lost; exiting", KEND);
            goto out;
        }
        was_leading = leading;
    }
    klog(KLOG_INFO, "shutting down", KI("signal", got_signal), KEND);
    rc = 0;
out:
    ctrl_stop(c);
    ctrl_http_stop(http);
    ctrl_free(c);
    kube_client_free(client);
    curl_global_cleanup();
    return rc;
}
