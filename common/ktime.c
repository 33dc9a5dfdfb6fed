/* ktime: RFC 3339 parse and format, UTC arithmetic without timegm/TZ. */
#include "ktime.h"

#include <stdio.h>
#include <time.h>

/* ---- calendar helpers (proleptic Gregorian, days since 1970-01-01) ---- */

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : d[m - 1];
}

/* The classic era-based conversion: exact for every year we accept and
 * independent of the C library's time zone handling. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* ---- parsing ---- */

/* Reads exactly n decimal digits at s[*i]. */
static int digits(const char *s, size_t len, size_t *i, int n, int *out)
{
    int v = 0;
    for (int k = 0; k < n; k++) {
        if (*i >= len || s[*i] < '0' || s[*i] > '9')
            return -1;
        v = v * 10 + (s[*i] - '0');
        (*i)++;
    }
    *out = v;
    return 0;
}

static int expect(const char *s, size_t len, size_t *i, char c)
{
    if (*i >= len || s[*i] != c)
        return -1;
    (*i)++;
    return 0;
}

int ktime_parse_n(const char *s, size_t len, ktime *out, kiln_error *err)
{
    if (!s || !out)
        return kiln_fail(err, KILN_EINVAL, "ktime: no input");
    size_t i = 0;
    int Y, M, D, h, mi, sec;
    if (digits(s, len, &i, 4, &Y) || expect(s, len, &i, '-') || digits(s, len, &i, 2, &M) ||
        expect(s, len, &i, '-') || digits(s, len, &i, 2, &D))
        goto bad;
    if (i >= len || (s[i] != 'T' && s[i] != 't' && s[i] != ' '))
        goto bad;
    i++;
    if (digits(s, len, &i, 2, &h) || expect(s, len, &i, ':') || digits(s, len, &i, 2, &mi) ||
        expect(s, len, &i, ':') || digits(s, len, &i, 2, &sec))
        goto bad;
    if (M < 1 || M > 12 || D < 1 || D > days_in_month(Y, M) || h > 23 || mi > 59 || sec > 59)
        return kiln_fail(err, KILN_EINVAL, "ktime: field out of range in \"%.*s\"",
                         (int)(len > 64 ? 64 : len), s);
    int32_t nsec = 0;
    if (i < len && s[i] == '.') {
        i++;
        int nd = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (nd < 9)
                nsec = nsec * 10 + (s[i] - '0');
            nd++;
            i++;
        }
        if (nd == 0)
            goto bad;
        for (int k = nd; k < 9; k++)
            nsec *= 10;
    }
    int offset_min = 0;
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < len && (s[i] == '+' || s[i] == '-')) {
        int sign = s[i] == '-' ? -1 : 1;
        int oh, om;
        i++;
        if (digits(s, len, &i, 2, &oh) || expect(s, len, &i, ':') || digits(s, len, &i, 2, &om))
            goto bad;
        if (oh > 23 || om > 59)
            goto bad;
        offset_min = sign * (oh * 60 + om);
    } else {
        goto bad;
    }
    if (i != len)
        goto bad;
    int64_t days = days_from_civil(Y, M, D);
    out->sec = days * 86400 + h * 3600 + mi * 60 + sec - (int64_t)offset_min * 60;
    out->nsec = nsec;
    return 0;
bad:
    return kiln_fail(err, KILN_EINVAL, "ktime: not an RFC 3339 time: \"%.*s\"",
                     (int)(len > 64 ? 64 : len), s);
}

int ktime_parse(const char *s, ktime *out, kiln_error *err)
{
    size_t len = 0;
    if (s)
        while (s[len])
            len++;
    return ktime_parse_n(s, len, out, err);
}

/* ---- formatting ---- */

int ktime_format(ktime t, int frac_digits, char *buf, size_t bufsz)
{
    if (frac_digits < 0)
        frac_digits = 0;
    if (frac_digits > 9)
        frac_digits = 9;
    int64_t days = t.sec / 86400, rem = t.sec % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    int32_t nsec = t.nsec;
    if (nsec < 0 || nsec >= 1000000000)
        nsec = 0;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < 0 || y > 9999)
        return KILN_EINVAL;
    char frac[12] = "";
    if (frac_digits > 0) {
        int32_t div = 1;
        for (int k = frac_digits; k < 9; k++)
            div *= 10;
        snprintf(frac, sizeof frac, ".%0*d", frac_digits, (int)(nsec / div));
    }
    int n = snprintf(buf, bufsz, "%04d-%02d-%02dT%02d:%02d:%02d%sZ", (int)y, m, d,
                     (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), frac);
    if (n < 0 || (size_t)n >= bufsz)
        return KILN_ENOMEM;
    return 0;
}

/* ---- clocks and arithmetic ---- */

ktime ktime_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ktime t = {.sec = ts.tv_sec, .nsec = (int32_t)ts.tv_nsec};
    return t;
}

int64_t ktime_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ktime_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t ktime_diff_ms(ktime a, ktime b)
{
    return (a.sec - b.sec) * 1000 + (a.nsec - b.nsec) / 1000000;
}

ktime ktime_add_ms(ktime t, int64_t ms)
{
    int64_t ns = (int64_t)t.nsec + (ms % 1000) * 1000000;
    t.sec += ms / 1000;
    if (ns < 0) {
        ns += 1000000000;
        t.sec--;
    } else if (ns >= 1000000000) {
        ns -= 1000000000;
        t.sec++;
    }
    t.nsec = (int32_t)ns;
    return t;
}

int ktime_cmp(ktime a, ktime b)
{
    if (a.sec != b.sec)
        return a.sec < b.sec ? -1 : 1;
    if (a.nsec != b.nsec)
        return a.nsec < b.nsec ? -1 : 1;
    return 0;
}
