/* klog: structured logs, one JSON object per line on stderr.
 *
 *   klog(KLOG_INFO, "trial finished", KS("job", name), KI("trial", 3),
 *        KF("accuracy", 0.87), KEND);
 *
 * Each line carries ts (RFC 3339, UTC, milliseconds), level and msg, then
 * the fields in order. Strings are JSON-escaped. Lines are written with one
 * write(2) so concurrent threads never interleave. Never pass a secret. */
#ifndef KLOG_H
#define KLOG_H

#include <stdint.h>

enum klog_level { KLOG_DEBUG = 0, KLOG_INFO = 1, KLOG_WARN = 2, KLOG_ERROR = 3 };

#define KS(k, v) 's', (const char *)(k), (const char *)(v)
#define KI(k, v) 'i', (const char *)(k), (int64_t)(v)
#define KF(k, v) 'f', (const char *)(k), (double)(v)
#define KB(k, v) 'b', (const char *)(k), (int)(v)
#define KJ(k, v) 'j', (const char *)(k), (const char *)(v) /* raw JSON value */
#define KEND 0

void klog(int level, const char *msg, ...);

/* Logs a line another library printed (trailing line breaks dropped) as
 * {"msg": source, "line": ...}; the log callbacks of libwebsockets use it. */
void klog_line(int level, const char *source, const char *line);

/* Messages below this level are dropped (default KLOG_INFO; the environment
 * variable KILN_LOG_LEVEL=debug|info|warn|error sets it at first use). */
void klog_set_level(int level);

#endif
