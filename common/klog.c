/* klog: JSON-lines logging on stderr. */
#include "klog.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* -1: not read from the environment yet. A process-wide setting, as the
 * log destination itself is. */
static atomic_int min_level = -1;

void klog_set_level(int level)
{
    atomic_store(&min_level, level);
}

static int current_level(void)
{
    int l = atomic_load(&min_level);
    if (l >= 0)
        return l;
    const char *e = getenv("KILN_LOG_LEVEL");
    l = KLOG_INFO;
    if (e) {
        if (!strcasecmp(e, "debug")) l = KLOG_DEBUG;
        else if (!strcasecmp(e, "warn")) l = KLOG_WARN;
        else if (!strcasecmp(e, "error")) l = KLOG_ERROR;
    }
    atomic_store(&min_level, l);
    return l;
}

typedef struct {
    char buf[4096];
    size_t len;
} line;

static void put(line *l, const char *s, size_t n)
{
    if (l->len + n >= sizeof l->buf - 2) /* keep room for "}\n" */
        n = sizeof l->buf - 2 - l->len - 1;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void putf(line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(line *l, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(l, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void put_str(line *l, const char *s)
{
    put(l, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': put(l, "\\\"", 2); break;
        case '\\': put(l, "\\\\", 2); break;
        case '\n': put(l, "\\n", 2); break;
        case '\r': put(l, "\\r", 2); break;
        case '\t': put(l, "\\t", 2); break;
        default:
            if (*p < 0x20)
                putf(l, "\\u%04x", *p);
            else
                put(l, (const char *)p, 1);
        }
    }
    put(l, "\"", 1);
}

void klog(int level, const char *msg, ...)
{
    if (level < current_level())
        return;
    static const char *names[] = {"debug", "info", "warn", "error"};
    line l = {.len = 0};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    putf(&l, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"msg\":",
         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
         ts.tv_nsec / 1000000, names[level < 0 ? 0 : level > 3 ? 3 : level]);
    put_str(&l, msg);

    va_list ap;
    va_start(ap, msg);
    for (;;) {
        int type = va_arg(ap, int);
        if (type == 0)
            break;
        const char *key = va_arg(ap, const char *);
        put(&l, ",", 1);
        put_str(&l, key);
        put(&l, ":", 1);
        switch (type) {
        case 's': put_str(&l, va_arg(ap, const char *)); break;
        case 'i': putf(&l, "%lld", (long long)va_arg(ap, int64_t)); break;
        case 'f': {
            double v = va_arg(ap, double);
            if (v != v || v > 1e308 || v < -1e308)
                put(&l, "null", 4);
            else
                putf(&l, "%.6g", v);
            break;
        }
        case 'b': {
            int b = va_arg(ap, int);
            put(&l, b ? "true" : "false", b ? 4 : 5);
            break;
        }
        case 'j': {
            const char *j = va_arg(ap, const char *);
            put(&l, j ? j : "null", strlen(j ? j : "null"));
            break;
        }
        default: va_end(ap); goto done;
        }
    }
    va_end(ap);
done:
    l.buf[l.len++] = '}';
    l.buf[l.len++] = '\n';
    ssize_t w = write(STDERR_FILENO, l.buf, l.len);
    (void)w;
}

void klog_line(int level, const char *source, const char *line)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", line ? line : "");
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    klog(level, source, KS("line", buf), KEND);
}
