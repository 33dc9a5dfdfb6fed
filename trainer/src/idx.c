/* idx: IDX (MNIST) format reader (see idx.h). */
#include "idx.h"

#include <string.h>

const char *idx_type_name(int type)
{
    switch (type) {
    case IDX_U8:
        return "unsigned byte";
    case IDX_I8:
        return "signed byte";
    case IDX_I16:
        return "int16";
    case IDX_I32:
        return "int32";
    case IDX_F32:
        return "float32";
    case IDX_F64:
        return "float64";
    default:
        return NULL;
    }
}

static size_t type_size(int type)
{
    switch (type) {
    case IDX_U8:
    case IDX_I8:
        return 1;
    case IDX_I16:
        return 2;
    case IDX_I32:
    case IDX_F32:
        return 4;
    case IDX_F64:
        return 8;
    default:
        return 0;
    }
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int idx_parse(const uint8_t *buf, size_t len, const char *name, idx_view *out, kiln_error *err)
{
    memset(out, 0, sizeof *out);
    if (len == 0)
        return kiln_fail(err, KILN_EINVAL, "%s: the file is empty (expected an IDX header)", name);
    if (len < 4)
        return kiln_fail(err, KILN_EINVAL,
                         "%s: truncated IDX header: %zu bytes, expected at least 4", name, len);
    if (buf[0] != 0 || buf[1] != 0)
        return kiln_fail(err, KILN_EINVAL,
                         "%s: wrong magic: bytes %02x %02x %02x %02x, expected 00 00 TYPE RANK "
                         "(is this an IDX file?)",
                         name, buf[0], buf[1], buf[2], buf[3]);
    int type = buf[2];
    size_t es = type_size(type);
    if (!es)
        return kiln_fail(err, KILN_EINVAL,
                         "%s: unknown IDX element type 0x%02x at byte 2 (expected 08, 09, 0b, 0c, "
                         "0d or 0e)",
                         name, (unsigned)type);
    int rank = buf[3];
    if (rank == 0)
        return kiln_fail(err, KILN_EINVAL, "%s: IDX rank 0 at byte 3, expected at least 1", name);
    size_t hl = 4 + 4 * (size_t)rank;
    if (len < hl)
        return kiln_fail(
            err, KILN_EINVAL,
            "%s: truncated IDX header: rank %d needs %zu header bytes, the file holds %zu", name,
            rank, hl, len);
    out->type = type;
    out->rank = rank;
    out->elem_size = es;
    out->header_len = hl;
    for (int i = 0; i < rank; i++)
        out->dims[i] = be32(buf + 4 + 4 * i);
    size_t avail = len - hl;
    /* Item size first, bounded by what is there, so nothing overflows. */
    size_t item = es;
    for (int i = 1; i < rank; i++) {
        if (out->dims[i] == 0)
            return kiln_fail(err, KILN_EINVAL, "%s: IDX dimension %d is 0", name, i);
        if (item > avail / out->dims[i]) {
            /* Unreachable size: report it without an overflowing product. */
            double claim = (double)es;
            for (int k = 1; k < rank; k++)
                claim *= out->dims[k];
            return kiln_fail(err, KILN_EINVAL,
                             "%s: header claims items of %.0f bytes but the file holds %zu bytes "
                             "after the header",
                             name, claim, avail);
        }
        item *= out->dims[i];
    }
    size_t n = out->dims[0];
    if (n > avail / item || n * item != avail) {
        if (n > avail / item)
            return kiln_fail(
                err, KILN_EINVAL,
                "%s: header claims %zu items of %zu bytes but the file holds %zu bytes", name, n,
                item, avail);
        return kiln_fail(err, KILN_EINVAL,
                         "%s: header claims %zu items of %zu bytes (%zu bytes) but the file holds "
                         "%zu bytes after the header",
                         name, n, item, n * item, avail);
    }
    out->n_items = n;
    out->item_elems = item / es;
    out->data = buf + hl;
    return 0;
}

double idx_get(const idx_view *v, size_t i)
{
    const uint8_t *p = v->data + i * v->elem_size;
    switch (v->type) {
    case IDX_U8:
        return p[0];
    case IDX_I8:
        return (int8_t)p[0];
    case IDX_I16:
        return (int16_t)(uint16_t)((unsigned)p[0] << 8 | p[1]);
    case IDX_I32:
        return (int32_t)be32(p);
    case IDX_F32: {
        uint32_t u = be32(p);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    case IDX_F64: {
        uint64_t u = (uint64_t)be32(p) << 32 | be32(p + 4);
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    default:
        return 0;
    }
}
