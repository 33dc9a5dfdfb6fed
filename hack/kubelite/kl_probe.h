/* kl_probe: one container probe (startupProbe, livenessProbe or
 * readinessProbe) as a small state machine that never blocks the service
 * thread: a check starts when it is due (initialDelaySeconds, then every
 * periodSeconds), runs in the background (an exec child entered into the
 * container's namespaces, or a non-blocking TCP connect and HTTP GET to the
 * pod IP), and ends as a success, a failure, or a failure after
 * timeoutSeconds. Consecutive successes and failures are counted; what a
 * threshold means (ready, restart, kill) is the caller's decision.
 *
 * Defaults are Kubernetes': initialDelaySeconds 0, periodSeconds 10,
 * timeoutSeconds 1, successThreshold 1, failureThreshold 3.
 * Ownership: a kl_probe is caller storage; kl_probe_init() before first
 * use, kl_probe_cancel() ends a check in flight (kills its child, closes
 * its socket) and must run before the storage goes away. */
#ifndef KL_PROBE_H
#define KL_PROBE_H

#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

/* What kl_probe_step() reports. */
enum kl_probe_result {
    KL_PROBE_PENDING = 0, /* no check finished in this step */
    KL_PROBE_SUCCESS = 1,
    KL_PROBE_FAILURE = 2,
};

typedef struct kl_probe_params {
    int64_t initial_delay_ms, period_ms, timeout_ms;
    int success_threshold, failure_threshold;
    int64_t grace_s; /* probe-level terminationGracePeriodSeconds, -1 unset */
} kl_probe_params;

typedef struct kl_probe {
    int64_t next_ms;         /* when the next check starts */
    int successes, failures; /* consecutive results */
    int active;              /* a check is in flight */
    pid_t pid;               /* exec check: the child, else 0 */
    int fd;                  /* tcp/http check: the socket, else -1 */
    int sent;                /* http: request written */
    int http;                /* the check is an httpGet */
    struct ssl_st *tls;      /* httpGet with scheme HTTPS: the session, else NULL */
    int tls_ready;           /* the TLS handshake is done */
    short want;              /* the poll events the socket waits for */
    int64_t armed_ms;        /* when the container (re)started */
    int64_t started_ms;      /* when the check in flight started */
    int64_t deadline_ms;     /* the check fails when still running then */
    char resp[32];           /* http: start of the status line */
    size_t got;
    char detail[160];        /* why the last check failed */
} kl_probe;

/* Reads probe's timing fields into *out, applying the defaults (and the
 * rule that successThreshold is 1 for liveness and startup probes when
 * one_success is set). probe may be NULL (all defaults). */
void kl_probe_params_of(const cJSON *probe, int one_success, kl_probe_params *out);

void kl_probe_init(kl_probe *s);

/* Resets counters and schedules the first check initialDelaySeconds after
 * now; cancels a check in flight. Call when the container (re)starts. */
void kl_probe_arm(kl_probe *s, const cJSON *probe, int64_t now);

/* Ends a check in flight, if any. */
void kl_probe_cancel(kl_probe *s);

/* Advances the probe: finishes a check that completed or timed out, or
 * starts one when due. cs is the container spec (named ports), ip the pod
 * IP, sandbox the pid of the container's bwrap process (exec checks run in
 * its namespaces). Updates the consecutive counters and returns an enum
 * kl_probe_result. */
int kl_probe_step(kl_probe *s, const cJSON *probe, const cJSON *cs, const char *ip, pid_t sandbox,
                  int64_t now);

#endif
