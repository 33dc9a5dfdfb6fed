/* Unit tests for kl_probe: defaults and thresholds, tcpSocket checks
 * against a real listener (by number and by named port), httpGet status
 * codes and the request sent, timeoutSeconds, initialDelaySeconds, and an
 * exec check on a container without a process. Time is passed in, so
 * timeouts are tested without sleeping. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kl_probe.h"
#include "ktest.h"
#include "ktime.h"

static cJSON *js(const char *s)
{
    cJSON *o = cJSON_Parse(s);
    if (!o) {
        fprintf(stderr, "bad test JSON: %s\n", s);
        exit(2);
    }
    return o;
}

/* A listening socket on 127.0.0.1 (port in *port), or -1. */
static int listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 4) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

/* Steps p until a result or 2 s of real time pass. */
static int run_until_result(kl_probe *s, const cJSON *probe, const cJSON *cs)
{
    int64_t end = ktime_mono_ms() + 2000;
    int r = KL_PROBE_PENDING;
    while (r == KL_PROBE_PENDING && ktime_mono_ms() < end) {
        r = kl_probe_step(s, probe, cs, "127.0.0.1", 0, ktime_mono_ms());
        if (r == KL_PROBE_PENDING)
            usleep(1000);
    }
    return r;
}

static void test_params(void)
{
    kl_probe_params pp;
    kl_probe_params_of(NULL, 0, &pp);
    KT_EQ_INT(pp.initial_delay_ms, 0);
    KT_EQ_INT(pp.period_ms, 10000);
    KT_EQ_INT(pp.timeout_ms, 1000);
    KT_EQ_INT(pp.success_threshold, 1);
    KT_EQ_INT(pp.failure_threshold, 3);
    KT_EQ_INT(pp.grace_s, -1);
    cJSON *p = js("{\"initialDelaySeconds\":7,\"periodSeconds\":2,\"timeoutSeconds\":4,"
                  "\"successThreshold\":3,\"failureThreshold\":5,\"terminationGracePeriodSeconds\":0}");
    kl_probe_params_of(p, 0, &pp);
    KT_EQ_INT(pp.initial_delay_ms, 7000);
    KT_EQ_INT(pp.period_ms, 2000);
    KT_EQ_INT(pp.timeout_ms, 4000);
    KT_EQ_INT(pp.success_threshold, 3);
    KT_EQ_INT(pp.failure_threshold, 5);
    KT_EQ_INT(pp.grace_s, 0);
    /* liveness and startup probes: successThreshold is always 1 */
    kl_probe_params_of(p, 1, &pp);
    KT_EQ_INT(pp.success_threshold, 1);
    cJSON_Delete(p);
    /* zero period or threshold: the defaults, as the API server would set */
    p = js("{\"periodSeconds\":0,\"failureThreshold\":0}");
    kl_probe_params_of(p, 0, &pp);
    KT_EQ_INT(pp.period_ms, 10000);
    KT_EQ_INT(pp.failure_threshold, 3);
    cJSON_Delete(p);
}

static void test_tcp(void)
{
    int port;
    int lfd = listener(&port);
    KT_CHECK(lfd >= 0);
    char spec[200];
    snprintf(spec, sizeof(spec), "{\"tcpSocket\":{\"port\":%d},\"periodSeconds\":1}", port);
    cJSON *probe = js(spec);
    kl_probe s;
    kl_probe_init(&s);
    kl_probe_arm(&s, probe, ktime_mono_ms());
    KT_EQ_INT(run_until_result(&s, probe, NULL), KL_PROBE_SUCCESS);
    KT_EQ_INT(s.successes, 1);
    KT_EQ_INT(s.failures, 0);
    /* the next check waits for periodSeconds */
    KT_EQ_INT(kl_probe_step(&s, probe, NULL, "127.0.0.1", 0, ktime_mono_ms()), KL_PROBE_PENDING);
    KT_CHECK(!s.active);
    /* by container port name */
    cJSON *cs = js("{\"ports\":[{\"name\":\"other\",\"containerPort\":1},{\"name\":\"web\",\"containerPort\":0}]}");
    cJSON_SetNumberValue(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(cs, "ports"), 1), "containerPort"),
                         port);
    cJSON *named = js("{\"tcpSocket\":{\"port\":\"web\"}}");
    kl_probe_arm(&s, named, ktime_mono_ms());
    KT_EQ_INT(run_until_result(&s, named, cs), KL_PROBE_SUCCESS);
    /* nothing listens any more: consecutive failures count up */
    close(lfd);
    kl_probe_arm(&s, probe, ktime_mono_ms());
    KT_EQ_INT(run_until_result(&s, probe, NULL), KL_PROBE_FAILURE);
    KT_CHECK(strstr(s.detail, "Connection refused") != NULL);
    KT_EQ_INT(kl_probe_step(&s, probe, NULL, "127.0.0.1", 0, ktime_mono_ms() + 1000), KL_PROBE_FAILURE);
    KT_EQ_INT(s.failures, 2);
    KT_EQ_INT(s.successes, 0);
    kl_probe_cancel(&s);
    cJSON_Delete(probe);
    cJSON_Delete(named);
    cJSON_Delete(cs);
}

/* One httpGet check answered with status line resp (NULL: never answer;
 * then the check is driven past its timeout). The request is copied to
 * req. Returns the result. */
static char last_detail[160]; /* the failed check's detail, test-only */

static int http_check(const char *resp, char *req, size_t req_n)
{
    int port;
    int lfd = listener(&port);
    if (lfd < 0)
        return -1;
    char spec[200];
    snprintf(spec, sizeof(spec), "{\"httpGet\":{\"path\":\"/healthz\",\"port\":%d},\"timeoutSeconds\":2}",
             port);
    cJSON *probe = js(spec);
    kl_probe s;
    kl_probe_init(&s);
    int64_t t0 = ktime_mono_ms();
    kl_probe_arm(&s, probe, t0);
    int r = kl_probe_step(&s, probe, NULL, "127.0.0.1", 0, t0);
    int cfd = -1;
    req[0] = 0;
    size_t got = 0;
    for (int i = 0; i < 2000 && r == KL_PROBE_PENDING; i++) {
        struct pollfd pf = {cfd < 0 ? lfd : cfd, POLLIN, 0};
        if (poll(&pf, 1, 1) == 1) {
            if (cfd < 0) {
                cfd = accept(lfd, NULL, NULL);
            } else if (got < req_n - 1) {
                ssize_t n = read(cfd, req + got, req_n - 1 - got);
                if (n > 0) {
                    got += (size_t)n;
                    req[got] = 0;
                }
                if (strstr(req, "\r\n\r\n") && resp) {
                    if (write(cfd, resp, strlen(resp)) < 0)
                        break;
                    close(cfd);
                    cfd = -2; /* answered */
                }
            }
        }
        /* without an answer, time moves on past timeoutSeconds */
        int64_t now = resp ? ktime_mono_ms() : t0 + (i > 50 ? 2500 : 0);
        r = kl_probe_step(&s, probe, NULL, "127.0.0.1", 0, now);
    }
    if (cfd >= 0)
        close(cfd);
    close(lfd);
    snprintf(last_detail, sizeof(last_detail), "%s", s.detail);
    kl_probe_cancel(&s);
    cJSON_Delete(probe);
    return r;
}

static void test_http(void)
{
    char req[1024];
    KT_EQ_INT(http_check("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", req, sizeof(req)), KL_PROBE_SUCCESS);
    KT_CHECK(!strncmp(req, "GET /healthz HTTP/1.0\r\n", 23));
    KT_CHECK(strstr(req, "User-Agent: kube-probe/") != NULL);
    KT_EQ_INT(http_check("HTTP/1.1 302 Found\r\n\r\n", req, sizeof(req)), KL_PROBE_SUCCESS);
    KT_EQ_INT(http_check("HTTP/1.1 404 Not Found\r\n\r\n", req, sizeof(req)), KL_PROBE_FAILURE);
    KT_EQ_INT(http_check("HTTP/1.1 500 Oops\r\n\r\n", req, sizeof(req)), KL_PROBE_FAILURE);
    KT_CHECK(!strcmp(last_detail, "HTTP probe failed with statuscode: 500"));
    KT_EQ_INT(http_check("garbage that is not http\r\n\r\n", req, sizeof(req)), KL_PROBE_FAILURE);
    /* a server that never answers fails after timeoutSeconds */
    KT_EQ_INT(http_check(NULL, req, sizeof(req)), KL_PROBE_FAILURE);
    KT_CHECK(!strcmp(last_detail, "timed out after 2s"));
}

static void test_initial_delay_and_exec(void)
{
    cJSON *probe = js("{\"exec\":{\"command\":[\"/bin/true\"]},\"initialDelaySeconds\":5}");
    kl_probe s;
    kl_probe_init(&s);
    kl_probe_arm(&s, probe, 1000);
    KT_EQ_INT(kl_probe_step(&s, probe, NULL, "127.0.0.1", getpid(), 5999), KL_PROBE_PENDING);
    KT_CHECK(!s.active);
    /* due now; this process has no child to enter, long after the start */
    KT_EQ_INT(kl_probe_step(&s, probe, NULL, "127.0.0.1", getpid(), 6000), KL_PROBE_FAILURE);
    KT_EQ_INT(s.failures, 1);
    KT_CHECK(!strcmp(s.detail, "cannot run the command in the container"));
    /* soon after a start that is a sandbox still being set up: the check
     * is retried on the next step and no failure counts, until the grace
     * period is over */
    cJSON *now_probe = js("{\"exec\":{\"command\":[\"/bin/true\"]}}");
    kl_probe_arm(&s, now_probe, 1000);
    KT_EQ_INT(kl_probe_step(&s, now_probe, NULL, "127.0.0.1", getpid(), 1500), KL_PROBE_PENDING);
    KT_EQ_INT(s.failures, 0);
    KT_EQ_INT(kl_probe_step(&s, now_probe, NULL, "127.0.0.1", getpid(), 3001), KL_PROBE_FAILURE);
    KT_EQ_INT(s.failures, 1);
    cJSON_Delete(now_probe);
    KT_CHECK(!strcmp(s.detail, "cannot run the command in the container"));
    /* re-arming at a container restart clears the counters */
    kl_probe_arm(&s, probe, 7000);
    KT_EQ_INT(s.failures, 0);
    KT_EQ_INT(s.next_ms, 12000);
    kl_probe_cancel(&s);
    cJSON_Delete(probe);
}

int main(void)
{
    KT_RUN(test_params);
    KT_RUN(test_tcp);
    KT_RUN(test_http);
    KT_RUN(test_initial_delay_and_exec);
    return KT_DONE();
}
