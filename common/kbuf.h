/* kbuf: a growable NUL-terminated byte buffer for building paths, JSON
 * lines and text pages. An allocation failure sets oom and turns every
 * later append into a no-op, so callers check once at the end.
 *
 * Ownership: caller storage, zero-initialised (kbuf b = {0}); kbuf_release
 * frees the bytes, or the caller takes b.p and frees it. */
#ifndef KBUF_H
#define KBUF_H

#include <stddef.h>

typedef struct kbuf {
    char *p;    /* NUL-terminated once anything was added; NULL before */
    size_t len; /* bytes, without the NUL */
    size_t cap;
    int oom;
} kbuf;

void kbuf_add(kbuf *b, const char *s, size_t n);
void kbuf_str(kbuf *b, const char *s);
void kbuf_printf(kbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kbuf_release(kbuf *b);

#endif
