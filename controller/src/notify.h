/* notify: tells people that a TrainingJob reached its goal (or spent its
 * budget without it): a JSON webhook POST with retries, and an e-mail over
 * SMTP (smtp:// with STARTTLS when offered, or smtps://) through libcurl.
 * The Kubernetes Event is recorded by the reconciler, not here.
 *
 * Credentials are passed in by the caller (read from the referenced
 * Secret) and never logged or put in error messages. TLS verification is
 * always on.
 *
 * Ownership: notify_payload returns an object the caller frees with
 * cJSON_Delete; everything else is borrowed. */
#ifndef KILN_NOTIFY_H
#define KILN_NOTIFY_H

#include <cjson/cJSON.h>

#include "kiln_err.h"

typedef struct notify_event {
    const char *job;         /* TrainingJob name */
    const char *ns;          /* namespace */
    const char *outcome;     /* "GoalReached" | "GoalNotReached" */
    const char *metric;      /* objective metric key */
    double goal;
    const char *best_trial;  /* trial name, or NULL when no trial succeeded */
    double best_value;
    const cJSON *metrics;    /* best trial's metrics, or NULL */
    const char *checkpoint;  /* best trial's checkpoint, or NULL */
    int trials;              /* trials run */
} notify_event;

/* The webhook body: {"job", "namespace", "outcome", "objective": {metric,
 * goal}, "bestTrial": {name, value, metrics, checkpoint}, "trials"}. */
cJSON *notify_payload(const notify_event *ev);

typedef struct notify_retry {
    int attempts;        /* total tries (default 5) */
    int initial_ms;      /* first back-off (default 200 ms), doubled each time */
    int timeout_ms;      /* per attempt (default 10 s) */
} notify_retry;

/* POSTs the payload as application/json. 2xx is success; 408, 429 and 5xx
 * and transport errors are retried with back-off; other 4xx are final
 * (KILN_EINVAL). */
int notify_webhook(const char *url, const cJSON *payload, const notify_retry *retry,
                   kiln_error *err);

typedef struct notify_email_cfg {
    const char *smtp_url;       /* smtp://host:port or smtps://host:port */
    const char *from;
    const char *const *to;
    int n_to;
    const char *username;       /* from the Secret, or NULL */
    const char *password;       /* from the Secret, or NULL: never logged */
} notify_email_cfg;

/* Sends a plain-text message summarising the event. */
int notify_email(const notify_email_cfg *cfg, const notify_event *ev, const notify_retry *retry,
                 kiln_error *err);

#endif
