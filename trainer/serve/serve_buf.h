/* serve_buf: a growable byte buffer for request and response bodies.
 *
 * A buffer may keep `head` spare bytes in front of its content so the HTTP
 * layer can put the response headers (and libwebsockets' LWS_PRE) right
 * before the body and send both with one write. Buffers are reused across
 * requests on a keep-alive connection, so the hot path allocates only when
 * a body is larger than any before it.
 *
 * Ownership: sbuf_init/sbuf_release on caller storage. Appends return 0 or
 * KILN_ENOMEM (the buffer is unchanged on failure). */
#ifndef KILN_SERVE_BUF_H
#define KILN_SERVE_BUF_H

#include <stddef.h>

typedef struct sbuf {
    char *mem;   /* allocation: head spare bytes, then content */
    size_t head; /* bytes kept in front of the content */
    size_t len;  /* content bytes */
    size_t cap;  /* content capacity (excluding head) */
} sbuf;

void sbuf_init(sbuf *b, size_t head);
void sbuf_release(sbuf *b);
/* Empties the buffer, keeping its memory. */
static inline void sbuf_reset(sbuf *b)
{
    b->len = 0;
}
/* Content start (NULL before the first append). */
static inline char *sbuf_data(const sbuf *b)
{
    return b->mem ? b->mem + b->head : NULL;
}
/* Makes room for `more` bytes after the content. */
int sbuf_reserve(sbuf *b, size_t more);
int sbuf_append(sbuf *b, const void *p, size_t n);
int sbuf_puts(sbuf *b, const char *s);
int sbuf_putc(sbuf *b, char c);
int sbuf_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included. */
int sbuf_json_str(sbuf *b, const char *s);
/* Appends a float as a short JSON number (null when not finite). */
int sbuf_json_float(sbuf *b, float v);
/* Appends a decimal integer. */
int sbuf_int(sbuf *b, long long v);

#endif
