/* notify: webhook and e-mail announcements of a job's outcome (see notify.h). */
#include "notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "klog.h"

#define MAX_EMAIL 16384

static void retry_defaults(const notify_retry *in, notify_retry *out)
{
    out->attempts = in && in->attempts > 0 ? in->attempts : 5;
    out->initial_ms = in && in->initial_ms > 0 ? in->initial_ms : 200;
    out->timeout_ms = in && in->timeout_ms > 0 ? in->timeout_ms : 10000;
}

/* A webhook URL's path and query often hold its secret token (chat
 * services work that way): logs and messages show scheme and host only. */
static void redact_url(const char *url, char *out, size_t n)
{
    const char *sep = strstr(url, "://");
    size_t scheme = sep ? (size_t)(sep + 3 - url) : 0;
    const char *p = url + scheme;
    size_t host = strcspn(p, "/?#");
    const char *at = memchr(p, '@', host); /* user:password@host */
    if (at) {
        host -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    snprintf(out, n, "%.*s%.*s/...", (int)scheme, url, (int)host, p);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

cJSON *notify_payload(const notify_event *ev)
{
    cJSON *p = cJSON_CreateObject();
    if (!p)
        return NULL;
    cJSON_AddStringToObject(p, "job", ev->job);
    cJSON_AddStringToObject(p, "namespace", ev->ns ? ev->ns : "default");
    cJSON_AddStringToObject(p, "outcome", ev->outcome);
    cJSON *obj = cJSON_AddObjectToObject(p, "objective");
    cJSON_AddStringToObject(obj, "metric", ev->metric);
    cJSON_AddNumberToObject(obj, "goal", ev->goal);
    if (ev->best_trial) {
        cJSON *b = cJSON_AddObjectToObject(p, "bestTrial");
        cJSON_AddStringToObject(b, "name", ev->best_trial);
        cJSON_AddNumberToObject(b, "value", ev->best_value);
        if (ev->metrics)
            cJSON_AddItemToObject(b, "metrics", cJSON_Duplicate(ev->metrics, 1));
        if (ev->checkpoint)
            cJSON_AddStringToObject(b, "checkpoint", ev->checkpoint);
    } else {
        cJSON_AddNullToObject(p, "bestTrial");
    }
    cJSON_AddNumberToObject(p, "trials", ev->trials);
    return p;
}

/* Discards a response body. */
static size_t sink(char *ptr, size_t size, size_t n, void *ud)
{
    (void)ptr;
    (void)ud;
    return size * n;
}

int notify_webhook(const char *url, const cJSON *payload, const notify_retry *retry_in,
                   kiln_error *err)
{
    notify_retry retry;
    retry_defaults(retry_in, &retry);
    char *body = cJSON_PrintUnformatted(payload);
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    if (!body || !h || !hdr) {
        free(body);
        curl_easy_cleanup(h);
        curl_slist_free_all(hdr);
        return kiln_fail(err, KILN_ENOMEM, "webhook: out of memory");
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "kiln-controller/" KILN_CTRL_VERSION);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)retry.timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)retry.timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    char shown[256];
    redact_url(url, shown, sizeof shown);
    int rc = KILN_ENET;
    int delay = retry.initial_ms;
    for (int attempt = 1; attempt <= retry.attempts; attempt++) {
        CURLcode cc = curl_easy_perform(h);
        long code = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        if (cc == CURLE_OK && code >= 200 && code < 300) {
            rc = 0;
            break;
        }
        int retryable = cc != CURLE_OK || code == 408 || code == 429 || code >= 500;
        kiln_error_clear(err);
        if (cc != CURLE_OK)
            rc = kiln_fail(err, KILN_ENET, "webhook %s: %s", shown, curl_easy_strerror(cc));
        else
            rc = kiln_fail(err, retryable ? KILN_ENET : KILN_EINVAL, "webhook %s: HTTP %ld", shown,
                           code);
        klog(KLOG_WARN, "webhook delivery failed", KS("url", shown), KI("attempt", attempt),
             KI("status", code), KS("error", err ? err->msg : ""), KEND);
        if (!retryable || attempt == retry.attempts)
            break;
        sleep_ms(delay);
        delay *= 2;
    }
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    free(body);
    return rc;
}

/* ------------------------------------------------------------ e-mail */

typedef struct upload {
    const char *data;
    size_t len, off;
} upload;

static size_t read_upload(char *ptr, size_t size, size_t n, void *ud)
{
    upload *u = ud;
    size_t room = size * n, left = u->len - u->off;
    size_t k = left < room ? left : room;
    memcpy(ptr, u->data + u->off, k);
    u->off += k;
    return k;
}

/* Header values come from the spec: refuse line breaks (header injection). */
static int header_safe(const char *s)
{
    return s && !strpbrk(s, "\r\n");
}

static int format_email(const notify_email_cfg *cfg, const notify_event *ev, char *buf, size_t n)
{
    char date[64];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    char to[2048] = "";
    for (int i = 0; i < cfg->n_to; i++) {
        size_t l = strlen(to);
        snprintf(to + l, sizeof to - l, "%s%s", i ? ", " : "", cfg->to[i]);
    }
    const char *verb = strcmp(ev->outcome, "GoalReached") == 0 ? "reached its goal"
                                                               : "spent its budget without reaching its goal";
    char best[512];
    if (ev->best_trial)
        snprintf(best, sizeof best, "Best trial: %s with %s = %.4f\r\nCheckpoint: %s\r\n",
                 ev->best_trial, ev->metric, ev->best_value, ev->checkpoint ? ev->checkpoint : "-");
    else
        snprintf(best, sizeof best, "No trial succeeded.\r\n");
    int w = snprintf(buf, n,
                     "Date: %s\r\n"
                     "From: %s\r\n"
                     "To: %s\r\n"
                     "Subject: [kiln] TrainingJob %s/%s %s\r\n"
                     "MIME-Version: 1.0\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "\r\n"
                     "TrainingJob %s in namespace %s %s.\r\n"
                     "Objective: %s, goal %g. Trials run: %d.\r\n"
                     "%s",
                     date, cfg->from, to, ev->ns ? ev->ns : "default", ev->job, ev->outcome, ev->job,
                     ev->ns ? ev->ns : "default", verb, ev->metric, ev->goal, ev->trials, best);
    return w > 0 && (size_t)w < n ? w : -1;
}

int notify_email(const notify_email_cfg *cfg, const notify_event *ev, const notify_retry *retry_in,
                 kiln_error *err)
{
    if (!cfg->smtp_url || (strncmp(cfg->smtp_url, "smtp://", 7) && strncmp(cfg->smtp_url, "smtps://", 8)))
        return kiln_fail(err, KILN_EINVAL, "notify.email.smtpUrl: expected smtp:// or smtps://");
    if (!header_safe(cfg->from) || cfg->n_to < 1)
        return kiln_fail(err, KILN_EINVAL, "notify.email: a from address and at least one recipient are required");
    for (int i = 0; i < cfg->n_to; i++)
        if (!header_safe(cfg->to[i]))
            return kiln_fail(err, KILN_EINVAL, "notify.email.to[%d]: not a valid address", i);
    if (!header_safe(ev->job) || (ev->ns && !header_safe(ev->ns)))
        return kiln_fail(err, KILN_EINVAL, "notify.email: job name with a line break");
    notify_retry retry;
    retry_defaults(retry_in, &retry);
    char *msg = malloc(MAX_EMAIL);
    if (!msg)
        return kiln_fail(err, KILN_ENOMEM, "e-mail: out of memory");
    int len = format_email(cfg, ev, msg, MAX_EMAIL);
    if (len < 0) {
        free(msg);
        return kiln_fail(err, KILN_EINVAL, "e-mail: message too long");
    }
    CURL *h = curl_easy_init();
    struct curl_slist *rcpt = NULL;
    for (int i = 0; i < cfg->n_to; i++) {
        /* The envelope wants the bare address: "Name <a@b>" -> "<a@b>". */
        const char *lt = strchr(cfg->to[i], '<');
        struct curl_slist *next = curl_slist_append(rcpt, lt ? lt : cfg->to[i]);
        if (!next)
            break;
        rcpt = next;
    }
    int rc = KILN_ENET;
    if (!h || !rcpt) {
        rc = kiln_fail(err, KILN_ENOMEM, "e-mail: out of memory");
        goto done;
    }
    const char *lt = strchr(cfg->from, '<');
    curl_easy_setopt(h, CURLOPT_URL, cfg->smtp_url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(h, CURLOPT_MAIL_FROM, lt ? lt : cfg->from);
    curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt);
    /* STARTTLS when the server offers it on smtp://; smtps:// is TLS from the start. */
    curl_easy_setopt(h, CURLOPT_USE_SSL, (long)CURLUSESSL_TRY);
    if (cfg->username)
        curl_easy_setopt(h, CURLOPT_USERNAME, cfg->username);
    if (cfg->password)
        curl_easy_setopt(h, CURLOPT_PASSWORD, cfg->password);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, read_upload);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)retry.timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    char shown[256];
    redact_url(cfg->smtp_url, shown, sizeof shown);
    int delay = retry.initial_ms;
    for (int attempt = 1; attempt <= retry.attempts; attempt++) {
        upload u = {msg, (size_t)len, 0};
        curl_easy_setopt(h, CURLOPT_READDATA, &u);
        CURLcode cc = curl_easy_perform(h);
        if (cc == CURLE_OK) {
            rc = 0;
            break;
        }
        /* curl's messages name the server and the SMTP reply, never the password. */
        kiln_error_clear(err);
        int final = cc == CURLE_LOGIN_DENIED || cc == CURLE_SEND_FAIL_REWIND || cc == CURLE_UNSUPPORTED_PROTOCOL;
        rc = kiln_fail(err, final ? KILN_EINVAL : KILN_ENET, "e-mail via %s: %s", shown,
                       curl_easy_strerror(cc));
        klog(KLOG_WARN, "e-mail delivery failed", KS("server", shown), KI("attempt", attempt),
             KS("error", curl_easy_strerror(cc)), KEND);
        if (final || attempt == retry.attempts)
            break;
        sleep_ms(delay);
        delay *= 2;
    }
done:
    curl_slist_free_all(rcpt);
    curl_easy_cleanup(h);
    free(msg);
    return rc;
}
