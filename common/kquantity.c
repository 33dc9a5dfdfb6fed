/* kquantity: resource quantity parsing (see kquantity.h).
 * Exactness matters more than range: the number is split into an integer
 * part and up to 18 fraction digits, then scaled with overflow checks,
 * because doubles would turn "0.1" CPU into 99 milli-units. */
#include "kquantity.h"

#include <stdio.h>
#include <string.h>

#define SAT INT64_MAX

/* Multiplies with saturation (a >= 0, b >= 0). */
static int64_t mul_sat(int64_t a, int64_t b)
{
    if (a == 0 || b == 0)
        return 0;
    if (a > SAT / b)
        return SAT;
    return a * b;
}

static int64_t add_sat(int64_t a, int64_t b)
{
    return a > SAT - b ? SAT : a + b;
}

/* value = (ip + frac/10^fd) * mult * 10^exp10 / div; result rounded up. */
static int64_t scale(int64_t ip, int64_t frac, int fd, int64_t mult, int exp10, int64_t extra)
{
    /* Work in units of 10^-fd: num = (ip*10^fd + frac) * mult * extra, then
     * divide by 10^(fd - exp10) or multiply by 10^(exp10 - fd). */
    int64_t p10 = 1;
    for (int i = 0; i < fd; i++)
        p10 *= 10;
    int64_t num = add_sat(mul_sat(ip, p10), frac);
    num = mul_sat(mul_sat(num, mult), extra);
    int shift = exp10 - fd;
    if (num == SAT)
        return SAT;
    while (shift > 0) {
        num = mul_sat(num, 10);
        shift--;
    }
    while (shift < 0) {
        int64_t q = num / 10, r = num % 10;
        num = q + (r ? 1 : 0);
        shift++;
    }
    return num;
}

int kquantity_parse(const char *s, kquantity *out, kiln_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!s || !*s)
        return kiln_fail(err, KILN_EINVAL, "quantity: empty");
    const char *p = s;
    int neg = 0;
    if (*p == '+' || *p == '-') {
        neg = *p == '-';
        p++;
    }
    int64_t ip = 0, frac = 0;
    int fd = 0, digits = 0;
    while (*p >= '0' && *p <= '9') {
        ip = add_sat(mul_sat(ip, 10), *p - '0');
        p++;
        digits++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            if (fd < 18) {
                frac = frac * 10 + (*p - '0');
                fd++;
            }
            p++;
            digits++;
        }
    }
    if (!digits)
        return kiln_fail(err, KILN_EINVAL, "quantity \"%s\": expected a number", s);
    int64_t mult = 1;
    int exp10 = 0;
    if ((*p == 'e' || *p == 'E') && p[1] && p[1] != 'i') {
        p++;
        int eneg = 0;
        if (*p == '+' || *p == '-') {
            eneg = *p == '-';
            p++;
        }
        if (!(*p >= '0' && *p <= '9'))
            return kiln_fail(err, KILN_EINVAL, "quantity \"%s\": bad exponent", s);
        int e = 0;
        while (*p >= '0' && *p <= '9' && e < 1000) {
            e = e * 10 + (*p - '0');
            p++;
        }
        exp10 = eneg ? -e : e;
    } else if (*p) {
        static const struct { const char *sfx; int64_t mult; int exp10; } tab[] = {
            {"Ki", 1LL << 10, 0}, {"Mi", 1LL << 20, 0}, {"Gi", 1LL << 30, 0},
            {"Ti", 1LL << 40, 0}, {"Pi", 1LL << 50, 0}, {"Ei", 1LL << 60, 0},
            {"n", 1, -9},         {"u", 1, -6},         {"m", 1, -3},
            {"k", 1, 3},          {"M", 1, 6},          {"G", 1, 9},
            {"T", 1, 12},         {"P", 1, 15},         {"E", 1, 18},
        };
        size_t i;
        for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
            if (strcmp(p, tab[i].sfx) == 0)
                break;
        if (i == sizeof(tab) / sizeof(tab[0]))
            return kiln_fail(err, KILN_EINVAL, "quantity \"%s\": unknown suffix \"%s\"", s, p);
        mult = tab[i].mult;
        exp10 = tab[i].exp10;
        p += strlen(tab[i].sfx);
    }
    if (*p)
        return kiln_fail(err, KILN_EINVAL, "quantity \"%s\": trailing characters", s);
    if (exp10 > 40 || exp10 < -40)
        return kiln_fail(err, KILN_EINVAL, "quantity \"%s\": exponent out of range", s);
    out->value = scale(ip, frac, fd, mult, exp10, 1);
    out->milli = scale(ip, frac, fd, mult, exp10 + 3, 1);
    if (neg) {
        out->value = -out->value;
        out->milli = -out->milli;
    }
    return 0;
}

int kquantity_format_bytes(int64_t bytes, char *buf, unsigned long bufsz)
{
    static const char *sfx[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
    int i = 0;
    int64_t v = bytes;
    while (v != 0 && v % 1024 == 0 && i < 6) {
        v /= 1024;
        i++;
    }
    int n = snprintf(buf, bufsz, "%lld%s", (long long)v, sfx[i]);
    return n < 0 || (unsigned long)n >= bufsz ? KILN_ENOMEM : 0;
}
