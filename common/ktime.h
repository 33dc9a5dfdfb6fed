/* ktime: RFC 3339 timestamps the way the Kubernetes API reads and writes them.
 *
 * Parsing accepts every RFC 3339 form clients send: 'T' or 't' (or a space)
 * between date and time, optional fractional seconds of any length (kept to
 * nanoseconds, extra digits truncated), and 'Z'/'z' or a numeric offset
 * (+hh:mm / -hh:mm). The result is normalised to UTC.
 * Formatting always writes UTC with 'Z': 0 fraction digits for metav1.Time
 * ("2026-11-22T10:45:25Z"), 6 for MicroTime (Lease and events.k8s.io times),
 * 3 or 9 when asked. Leap seconds (":60") are rejected, as Go's parser does.
 * No heap allocation, no global state, no dependence on the TZ variable. */
#ifndef KTIME_H
#define KTIME_H

#include <stddef.h>
#include <stdint.h>

#include "kiln_err.h"

/* A point in time: seconds since the Unix epoch (UTC) plus nanoseconds in
 * [0, 1e9). Plain value type; copy freely. */
typedef struct ktime {
    int64_t sec;
    int32_t nsec;
} ktime;

/* Enough for "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ" and its NUL. */
#define KTIME_BUFSZ 40

/* Parses s (NUL-terminated) into *out. Returns 0, or KILN_EINVAL with the
 * reason in err. Years 0000-9999 only. */
int ktime_parse(const char *s, ktime *out, kiln_error *err);

/* Same, for a string of length len that need not be NUL-terminated. */
int ktime_parse_n(const char *s, size_t len, ktime *out, kiln_error *err);

/* Writes t as UTC with frac_digits (0..9, clamped) fraction digits into buf
 * (at least KTIME_BUFSZ bytes is always enough). Fraction digits are
 * truncated, never rounded, so formatting never moves a time forward.
 * Returns 0, KILN_EINVAL if the year falls outside 0000-9999, or
 * KILN_ENOMEM if buf is too small. */
int ktime_format(ktime t, int frac_digits, char *buf, size_t bufsz);

/* The wall clock now (CLOCK_REALTIME). */
ktime ktime_now(void);

/* A monotonic clock in milliseconds, for timeouts and lease observation:
 * never jumps when the wall clock is set. */
int64_t ktime_mono_ms(void);
/* The same clock in microseconds, for latencies. */
int64_t ktime_mono_us(void);

/* a - b in milliseconds (negative when a is earlier). */
int64_t ktime_diff_ms(ktime a, ktime b);

/* t plus ms milliseconds (ms may be negative). */
ktime ktime_add_ms(ktime t, int64_t ms);

/* -1, 0 or 1 as a is before, equal to or after b. */
int ktime_cmp(ktime a, ktime b);

#endif
