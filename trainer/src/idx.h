/* idx: reads the IDX binary format (the MNIST files): a 4-byte magic
 * (0, 0, element type, rank), rank big-endian uint32 dimensions, then the
 * elements, big-endian. Types: 0x08 unsigned byte, 0x09 signed byte, 0x0B
 * int16, 0x0C int32, 0x0D float32, 0x0E float64. Any rank from 1 to 255.
 *
 * idx_parse validates the header against the bytes actually present
 * before anything is sized from it, and does not copy: the returned view
 * points into the caller's buffer (which must outlive it). gzip is handled
 * by the caller (source.h). */
#ifndef KILN_IDX_H
#define KILN_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "kiln_err.h"

enum {
    IDX_U8 = 0x08,
    IDX_I8 = 0x09,
    IDX_I16 = 0x0B,
    IDX_I32 = 0x0C,
    IDX_F32 = 0x0D,
    IDX_F64 = 0x0E,
};

typedef struct idx_view {
    int type;            /* IDX_U8 ... */
    int rank;            /* 1..255 */
    uint32_t dims[255];  /* (rank) */
    size_t elem_size;    /* bytes per element */
    size_t n_items;      /* dims[0] */
    size_t item_elems;   /* product of dims[1..rank) (1 for rank 1) */
    const uint8_t *data; /* n_items * item_elems elements, big-endian; borrowed */
    size_t header_len;   /* 4 + 4 * rank */
} idx_view;

/* Parses buf[len] (already inflated). name is used in messages. */
int idx_parse(const uint8_t *buf, size_t len, const char *name, idx_view *out, kiln_error *err);

/* Element i (flat index) as a double. */
double idx_get(const idx_view *v, size_t i);

/* Name of an element type ("unsigned byte", ...), or NULL if unknown. */
const char *idx_type_name(int type);

#endif
