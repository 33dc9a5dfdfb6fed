/* Tests for notify: the webhook is delivered (and retried after a 500, not
 * after a 404) to a loopback HTTP receiver, and the e-mail reaches a
 * loopback SMTP server with its credentials, which never appear in logs or
 * error messages. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "ktest.h"
#include "notify.h"

/* ------------------------------------------------------------ servers */

typedef struct server {
    int fd, port;
    pthread_t thread;
    int codes[8];      /* HTTP: status to answer, request by request */
    int n_codes;
    int requests;
    char body[4096];   /* last HTTP body, or the SMTP transcript */
    size_t body_len;
    const char *smtp_password; /* SMTP: the AUTH PLAIN password to accept */
} server;

static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 8) ||
        getsockname(fd, (struct sockaddr *)&a, &len))
        return -1;
    *port = ntohs(a.sin_port);
    return fd;
}

static void *http_main(void *arg)
{
    server *s = arg;
    for (int i = 0; i < s->n_codes; i++) {
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            break;
        char buf[8192];
        size_t got = 0;
        char *end = NULL;
        while (!end && got < sizeof buf - 1) {
            ssize_t r = read(c, buf + got, sizeof buf - 1 - got);
            if (r <= 0)
                break;
            got += (size_t)r;
            buf[got] = '\0';
            end = strstr(buf, "\r\n\r\n");
        }
        size_t clen = 0;
        const char *cl = strcasestr(buf, "content-length:");
        if (cl)
            clen = strtoul(cl + 15, NULL, 10);
        size_t have = end ? got - (size_t)(end + 4 - buf) : 0;
        while (end && have < clen && got < sizeof buf - 1) {
            ssize_t r = read(c, buf + got, sizeof buf - 1 - got);
            if (r <= 0)
                break;
            got += (size_t)r;
            have += (size_t)r;
        }
        if (end) {
            s->body_len = have < sizeof s->body - 1 ? have : sizeof s->body - 1;
            memcpy(s->body, end + 4, s->body_len);
            s->body[s->body_len] = '\0';
        }
        s->requests++;
        char resp[128];
        int n = snprintf(resp, sizeof resp, "HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                         s->codes[i]);
        if (write(c, resp, (size_t)n) < 0)
            perror("write");
        close(c);
    }
    return NULL;
}

static int read_line(int c, char *buf, size_t n)
{
    size_t k = 0;
    while (k < n - 1) {
        ssize_t r = read(c, buf + k, 1);
        if (r <= 0)
            return -1;
        if (buf[k++] == '\n')
            break;
    }
    buf[k] = '\0';
    return (int)k;
}

static void say(int c, const char *text)
{
    if (write(c, text, strlen(text)) < 0)
        perror("write");
}

static void *smtp_main(void *arg)
{
    server *s = arg;
    int c = accept(s->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    say(c, "220 kiln-test ESMTP\r\n");
    char line[1024];
    int in_data = 0;
    while (read_line(c, line, sizeof line) > 0) {
        if (in_data) {
            if (!strcmp(line, ".\r\n")) {
                in_data = 0;
                say(c, "250 queued\r\n");
                continue;
            }
            size_t l = strlen(line);
            if (s->body_len + l < sizeof s->body) {
                memcpy(s->body + s->body_len, line, l);
                s->body_len += l;
                s->body[s->body_len] = '\0';
            }
            continue;
        }
        if (!strncasecmp(line, "EHLO", 4)) {
            say(c, "250-kiln-test\r\n250 AUTH PLAIN\r\n");
        } else if (!strncasecmp(line, "AUTH PLAIN", 10)) {
            /* \0user\0password in base64, on the AUTH line or after a 334. */
            if (strlen(line) <= 12) {
                say(c, "334 \r\n");
                if (read_line(c, line, sizeof line) <= 0)
                    break;
            }
            char expect[128], b64[256];
            int n = snprintf(expect, sizeof expect, "%cmailer%c%s", 0, 0, s->smtp_password);
            EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)expect, n);
            say(c, strstr(line, b64) ? "235 ok\r\n" : "535 authentication failed\r\n");
        } else if (!strncasecmp(line, "MAIL FROM", 9) || !strncasecmp(line, "RCPT TO", 7)) {
            say(c, "250 ok\r\n");
            size_t l = strlen(line);
            if (s->body_len + l < sizeof s->body) {
                memcpy(s->body + s->body_len, line, l);
                s->body_len += l;
                s->body[s->body_len] = '\0';
            }
        } else if (!strncasecmp(line, "DATA", 4)) {
            in_data = 1;
            say(c, "354 go on\r\n");
        } else if (!strncasecmp(line, "QUIT", 4)) {
            say(c, "221 bye\r\n");
            break;
        } else {
            say(c, "500 what\r\n");
        }
    }
    s->requests++;
    close(c);
    return NULL;
}

static void start(server *s, void *(*fn)(void *))
{
    s->fd = listen_loopback(&s->port);
    pthread_create(&s->thread, NULL, fn, s);
}

static void stop(server *s)
{
    shutdown(s->fd, SHUT_RDWR);
    pthread_join(s->thread, NULL);
    close(s->fd);
}

/* ------------------------------------------------------------ tests */

static notify_event sample_event(cJSON *metrics)
{
    notify_event ev = {.job = "fashion", .ns = "ml", .outcome = "GoalReached", .metric = "accuracy",
                       .goal = 0.85, .best_trial = "fashion-t3", .best_value = 0.871,
                       .metrics = metrics, .checkpoint = "/models/t3/model.kiln", .trials = 4};
    return ev;
}

static void test_webhook_retries_then_delivers(void)
{
    server s = {.codes = {500, 503, 200}, .n_codes = 3};
    start(&s, http_main);
    cJSON *metrics = cJSON_Parse("{\"accuracy\":0.871,\"loss\":0.36}");
    notify_event ev = sample_event(metrics);
    cJSON *payload = notify_payload(&ev);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hooks/SECRET-TOKEN", s.port);
    notify_retry r = {.attempts = 5, .initial_ms = 10, .timeout_ms = 5000};
    kiln_error err = {0};
    KT_EQ_INT(notify_webhook(url, payload, &r, &err), 0);
    stop(&s);
    KT_EQ_INT(s.requests, 3);
    cJSON *got = cJSON_Parse(s.body);
    KT_CHECK(got != NULL);
    KT_CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(got, "job")), "fashion"));
    KT_CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(got, "outcome")), "GoalReached"));
    const cJSON *best = cJSON_GetObjectItem(got, "bestTrial");
    KT_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(best, "metrics"), "accuracy")),
            0.871, 1e-9);
    KT_CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(best, "checkpoint")), "/models/t3/model.kiln"));
    cJSON_Delete(got);
    cJSON_Delete(payload);
    cJSON_Delete(metrics);
}

static void test_webhook_4xx_is_final_and_redacted(void)
{
    server s = {.codes = {404, 200}, .n_codes = 2};
    start(&s, http_main);
    cJSON *payload = cJSON_Parse("{}");
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hooks/SECRET-TOKEN", s.port);
    notify_retry r = {.attempts = 5, .initial_ms = 10, .timeout_ms = 5000};
    kiln_error err = {0};
    KT_EQ_INT(notify_webhook(url, payload, &r, &err), KILN_EINVAL);
    KT_STR_CONTAINS(err.msg, "HTTP 404");
    KT_CHECK(strstr(err.msg, "SECRET-TOKEN") == NULL);
    KT_EQ_INT(s.requests, 1);
    /* unblock the server's second accept */
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_perform(h);
    curl_easy_cleanup(h);
    stop(&s);
    cJSON_Delete(payload);
}

static void test_email_delivered_with_credentials(void)
{
    server s = {.smtp_password = "pa55-w0rd"};
    start(&s, smtp_main);
    char url[128];
    snprintf(url, sizeof url, "smtp://127.0.0.1:%d", s.port);
    const char *to[] = {"Ops <ops@example.com>", "ml@example.com"};
    notify_email_cfg cfg = {.smtp_url = url, .from = "kiln@example.com", .to = to, .n_to = 2,
                            .username = "mailer", .password = "pa55-w0rd"};
    cJSON *metrics = cJSON_Parse("{\"accuracy\":0.871}");
    notify_event ev = sample_event(metrics);
    notify_retry r = {.attempts = 1, .timeout_ms = 5000};
    kiln_error err = {0};
    KT_EQ_INT(notify_email(&cfg, &ev, &r, &err), 0);
    stop(&s);
    KT_STR_CONTAINS(s.body, "RCPT TO:<ops@example.com>");
    KT_STR_CONTAINS(s.body, "RCPT TO:<ml@example.com>");
    KT_STR_CONTAINS(s.body, "Subject: [kiln] TrainingJob ml/fashion GoalReached");
    KT_STR_CONTAINS(s.body, "Best trial: fashion-t3 with accuracy = 0.8710");
    cJSON_Delete(metrics);
}

static void test_email_bad_password_never_logged(void)
{
    server s = {.smtp_password = "right-one"};
    start(&s, smtp_main);
    char url[128];
    snprintf(url, sizeof url, "smtp://127.0.0.1:%d", s.port);
    const char *to[] = {"ml@example.com"};
    notify_email_cfg cfg = {.smtp_url = url, .from = "kiln@example.com", .to = to, .n_to = 1,
                            .username = "mailer", .password = "hunter2-secret"};
    notify_event ev = sample_event(NULL);
    notify_retry r = {.attempts = 1, .timeout_ms = 5000};
    kiln_error err = {0};
    /* capture stderr (the logs) during the call */
    char path[] = "/tmp/kiln-notify-log-XXXXXX";
    int fd = mkstemp(path);
    int saved = dup(2);
    dup2(fd, 2);
    int rc = notify_email(&cfg, &ev, &r, &err);
    dup2(saved, 2);
    close(saved);
    stop(&s);
    KT_CHECK(rc != 0);
    KT_CHECK(strstr(err.msg, "hunter2") == NULL);
    char logbuf[8192] = {0};
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, logbuf, sizeof logbuf - 1);
    close(fd);
    unlink(path);
    KT_CHECK(n > 0);
    KT_STR_CONTAINS(logbuf, "e-mail delivery failed");
    KT_CHECK(strstr(logbuf, "hunter2") == NULL);
}

static void test_email_rejects_header_injection(void)
{
    const char *to[] = {"a@example.com\r\nBcc: evil@example.com"};
    notify_email_cfg cfg = {.smtp_url = "smtp://127.0.0.1:1", .from = "kiln@example.com", .to = to, .n_to = 1};
    notify_event ev = sample_event(NULL);
    kiln_error err = {0};
    KT_EQ_INT(notify_email(&cfg, &ev, NULL, &err), KILN_EINVAL);
    KT_STR_CONTAINS(err.msg, "to[0]");
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    KT_RUN(test_webhook_retries_then_delivers);
    KT_RUN(test_webhook_4xx_is_final_and_redacted);
    KT_RUN(test_email_delivered_with_credentials);
    KT_RUN(test_email_bad_password_never_logged);
    KT_RUN(test_email_rejects_header_injection);
    curl_global_cleanup();
    return KT_DONE();
}
