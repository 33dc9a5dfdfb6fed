/* serve_buf: growable byte buffer (see serve_buf.h). */
#include "serve_buf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_err.h"

void sbuf_init(sbuf *b, size_t head)
{
    b->mem = NULL;
    b->head = head;
    b->len = 0;
    b->cap = 0;
}

void sbuf_release(sbuf *b)
{
    free(b->mem);
    b->mem = NULL;
    b->len = 0;
    b->cap = 0;
}

int sbuf_reserve(sbuf *b, size_t more)
{
    if (b->mem && b->cap - b->len >= more)
        return 0;
    if (more > ((size_t)1 << 40) - b->len)
        return KILN_ENOMEM;
    size_t need = b->len + more;
    size_t ncap = b->cap ? b->cap : 1024;
    while (ncap < need)
        ncap *= 2;
    char *m = realloc(b->mem, b->head + ncap + 1);
    if (!m)
        return KILN_ENOMEM;
    b->mem = m;
    b->cap = ncap;
    return 0;
}

int sbuf_append(sbuf *b, const void *p, size_t n)
{
    if (sbuf_reserve(b, n))
        return KILN_ENOMEM;
    if (n)
        memcpy(b->mem + b->head + b->len, p, n);
    b->len += n;
    b->mem[b->head + b->len] = '\0'; /* room kept by the +1 in reserve */
    return 0;
}

int sbuf_puts(sbuf *b, const char *s)
{
    return sbuf_append(b, s, strlen(s));
}

int sbuf_putc(sbuf *b, char c)
{
    return sbuf_append(b, &c, 1);
}

int sbuf_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return KILN_EINVAL;
    if ((size_t)n < sizeof tmp)
        return sbuf_append(b, tmp, (size_t)n);
    if (sbuf_reserve(b, (size_t)n + 1))
        return KILN_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->mem + b->head + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int sbuf_json_str(sbuf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    if (sbuf_putc(b, '"'))
        return KILN_ENOMEM;
    const char *run = s;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p >= 0x20 && *p != '"' && *p != '\\')
            continue;
        if (sbuf_append(b, run, (size_t)((const char *)p - run)))
            return KILN_ENOMEM;
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (*p) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            n = 6;
        }
        if (sbuf_append(b, esc, n))
            return KILN_ENOMEM;
        run = (const char *)p + 1;
    }
    if (sbuf_puts(b, run))
        return KILN_ENOMEM;
    return sbuf_putc(b, '"');
}

int sbuf_json_float(sbuf *b, float v)
{
    if (!isfinite(v))
        return sbuf_append(b, "null", 4);
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%.6g", (double)v);
    return sbuf_append(b, tmp, (size_t)n);
}

int sbuf_int(sbuf *b, long long v)
{
    char tmp[24];
    char *e = tmp + sizeof tmp, *p = e;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return sbuf_append(b, p, (size_t)(e - p));
}
