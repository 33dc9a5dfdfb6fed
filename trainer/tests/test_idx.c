/* Unit tests for idx (header checks, element types, big-endian values) and
 * source's gzip inflation (multi-member, corrupt, truncated, size cap). */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "idx.h"
#include "ktest.h"
#include "source.h"

/* An IDX header for type and dims into buf; returns its length. */
static size_t header(uint8_t *buf, int type, int rank, const uint32_t *dims)
{
    buf[0] = buf[1] = 0;
    buf[2] = (uint8_t)type;
    buf[3] = (uint8_t)rank;
    for (int i = 0; i < rank; i++) {
        buf[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
        buf[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
        buf[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
        buf[7 + 4 * i] = (uint8_t)dims[i];
    }
    return 4 + 4 * (size_t)rank;
}

static void test_valid_u8(void)
{
    uint8_t buf[64];
    uint32_t dims[3] = {2, 2, 3};
    size_t h = header(buf, IDX_U8, 3, dims);
    for (int i = 0; i < 12; i++)
        buf[h + i] = (uint8_t)(i * 20);
    idx_view v;
    kiln_error e = {0};
    KT_EQ_INT(idx_parse(buf, h + 12, "images.idx", &v, &e), 0);
    KT_EQ_INT(v.rank, 3);
    KT_EQ_INT(v.n_items, 2);
    KT_EQ_INT(v.item_elems, 6);
    KT_EQ_INT(v.header_len, 16);
    KT_NEAR(idx_get(&v, 11), 220, 0);
}

static void test_types_big_endian(void)
{
    uint8_t buf[64];
    uint32_t dims[1] = {2};
    idx_view v;
    kiln_error e = {0};
    size_t h = header(buf, IDX_I8, 1, dims);
    buf[h] = 0xff;
    buf[h + 1] = 0x7f;
    KT_EQ_INT(idx_parse(buf, h + 2, "x", &v, &e), 0);
    KT_NEAR(idx_get(&v, 0), -1, 0);
    KT_NEAR(idx_get(&v, 1), 127, 0);

    h = header(buf, IDX_I16, 1, dims);
    memcpy(buf + h, "\xff\xfe\x01\x00", 4);
    KT_EQ_INT(idx_parse(buf, h + 4, "x", &v, &e), 0);
    KT_NEAR(idx_get(&v, 0), -2, 0);
    KT_NEAR(idx_get(&v, 1), 256, 0);

    h = header(buf, IDX_I32, 1, dims);
    memcpy(buf + h, "\x80\x00\x00\x00\x00\x01\x00\x01", 8);
    KT_EQ_INT(idx_parse(buf, h + 8, "x", &v, &e), 0);
    KT_NEAR(idx_get(&v, 0), -2147483648.0, 0);
    KT_NEAR(idx_get(&v, 1), 65537, 0);

    h = header(buf, IDX_F32, 1, dims);
    memcpy(buf + h, "\x3f\xc0\x00\x00\xc0\x20\x00\x00", 8); /* 1.5, -2.5 */
    KT_EQ_INT(idx_parse(buf, h + 8, "x", &v, &e), 0);
    KT_NEAR(idx_get(&v, 0), 1.5, 0);
    KT_NEAR(idx_get(&v, 1), -2.5, 0);

    h = header(buf, IDX_F64, 1, dims);
    memcpy(buf + h, "\x40\x09\x21\xfb\x54\x44\x2d\x18\xbf\xf0\x00\x00\x00\x00\x00\x00", 16);
    KT_EQ_INT(idx_parse(buf, h + 16, "x", &v, &e), 0);
    KT_NEAR(idx_get(&v, 0), 3.141592653589793, 0);
    KT_NEAR(idx_get(&v, 1), -1, 0);
}

static void test_bad_headers(void)
{
    uint8_t buf[64] = {0};
    idx_view v;
    kiln_error e = {0};
    KT_EQ_INT(idx_parse(buf, 0, "images.idx", &v, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "images.idx: the file is empty");

    kiln_error_clear(&e);
    memcpy(buf, "\x1f\x8b\x08\x00", 4);
    KT_EQ_INT(idx_parse(buf, 16, "images.idx", &v, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "wrong magic");

    kiln_error_clear(&e);
    memcpy(buf, "\x00\x00\x07\x01", 4);
    KT_EQ_INT(idx_parse(buf, 16, "images.idx", &v, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "element type 0x07");

    kiln_error_clear(&e);
    uint32_t dims[3] = {1000000000u, 28, 28};
    size_t h = header(buf, IDX_U8, 3, dims);
    KT_EQ_INT(idx_parse(buf, 10, "images.idx", &v, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "truncated IDX header");

    /* The header claims far more than is there: no allocation, a message. */
    uint8_t *big = calloc(1, h + 7840);
    memcpy(big, buf, h);
    kiln_error_clear(&e);
    KT_EQ_INT(idx_parse(big, h + 7840, "images.idx", &v, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg,
                    "images.idx: header claims 1000000000 items of 784 bytes but the file holds "
                    "7840 bytes");
    /* Truncated data: 10 items claimed, 9.5 present. */
    dims[0] = 10;
    header(big, IDX_U8, 3, dims);
    kiln_error_clear(&e);
    KT_EQ_INT(idx_parse(big, h + 7840 - 392, "images.idx", &v, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "header claims 10 items of 784 bytes");
    /* Huge inner dimensions must not overflow. */
    uint32_t huge[4] = {1, 0xffffffffu, 0xffffffffu, 0xffffffffu};
    h = header(big, IDX_F64, 4, huge);
    kiln_error_clear(&e);
    KT_EQ_INT(idx_parse(big, h + 64, "images.idx", &v, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "header claims items of");
    free(big);
}

/* gzip-compresses src into a malloc'd buffer. */
static uint8_t *gz(const uint8_t *src, size_t n, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    size_t cap = deflateBound(&z, n) + 32;
    uint8_t *out = malloc(cap);
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    deflate(&z, Z_FINISH);
    *out_len = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

static void test_gzip(void)
{
    uint8_t data[5000];
    for (int i = 0; i < 5000; i++)
        data[i] = (uint8_t)(i * 7 % 251);
    size_t n1, n2;
    uint8_t *a = gz(data, 3000, &n1);
    uint8_t *b = gz(data + 3000, 2000, &n2);
    uint8_t *both = malloc(n1 + n2);
    memcpy(both, a, n1);
    memcpy(both + n1, b, n2);
    source_buf out = {0};
    kiln_error e = {0};
    KT_EQ_INT(source_gunzip(both, n1 + n2, 1 << 20, "x.gz", &out, &e), 0);
    KT_EQ_INT(out.len, 5000);
    KT_CHECK(out.data && !memcmp(out.data, data, 5000));
    source_buf_release(&out);

    /* Truncated stream. */
    kiln_error_clear(&e);
    KT_EQ_INT(source_gunzip(a, n1 - 9, 1 << 20, "x.gz", &out, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "x.gz: corrupt gzip data");
    KT_CHECK(out.data == NULL);

    /* Flipped bytes in the deflate data. */
    uint8_t *bad = malloc(n1);
    memcpy(bad, a, n1);
    for (size_t i = 12; i < n1 - 8; i += 3)
        bad[i] ^= 0x5a;
    kiln_error_clear(&e);
    KT_EQ_INT(source_gunzip(bad, n1, 1 << 20, "x.gz", &out, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "x.gz: corrupt gzip data");

    /* Trailing garbage. */
    uint8_t *trail = malloc(n1 + 4);
    memcpy(trail, a, n1);
    memcpy(trail + n1, "junk", 4);
    kiln_error_clear(&e);
    KT_EQ_INT(source_gunzip(trail, n1 + 4, 1 << 20, "x.gz", &out, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "4 unexpected bytes after the stream end");

    /* A size cap: 3000 bytes do not fit in 2999. */
    kiln_error_clear(&e);
    KT_EQ_INT(source_gunzip(a, n1, 2999, "x.gz", &out, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "size limit");
    KT_EQ_INT(source_gunzip(a, n1, 3000, "x.gz", &out, &e), 0);
    KT_EQ_INT(out.len, 3000);
    source_buf_release(&out);

    /* A bomb: 8 MB of zeros with a tiny cap stops early. */
    uint8_t *zeros = calloc(1, 8 << 20);
    size_t nz;
    uint8_t *bomb = gz(zeros, 8 << 20, &nz);
    kiln_error_clear(&e);
    KT_EQ_INT(source_gunzip(bomb, nz, 65536, "bomb.gz", &out, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "bomb.gz: gzip data inflates to more than 65536 bytes");
    free(zeros);
    free(bomb);
    free(a);
    free(b);
    free(both);
    free(bad);
    free(trail);
}

static void test_uri_helpers(void)
{
    char p[256];
    int kind;
    kiln_error e = {0};
    KT_EQ_INT(source_locate("file:///tmp/a%20b.csv", &kind, p, sizeof p, &e), 0);
    KT_EQ_INT(kind, SOURCE_FILE);
    KT_CHECK(!strcmp(p, "/tmp/a b.csv"));
    KT_EQ_INT(source_locate("https://example.com/x.csv", &kind, p, sizeof p, &e), 0);
    KT_EQ_INT(kind, SOURCE_HTTP);
    KT_EQ_INT(source_locate("s3://bucket/x", &kind, p, sizeof p, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "unsupported URI scheme");
    kiln_error_clear(&e);
    KT_EQ_INT(source_locate("file://relative/x", &kind, p, sizeof p, &e), KILN_EINVAL);
    source_basename("http://h/dir/train.csv.gz?x=1", p, sizeof p);
    KT_CHECK(!strcmp(p, "train.csv.gz"));
    source_basename("/usr/share/datasets/fashion-mnist/", p, sizeof p);
    KT_CHECK(!strcmp(p, "fashion-mnist"));
    kiln_error_clear(&e);
    source_buf b = {0};
    KT_EQ_INT(source_read("/nonexistent/kiln/data.csv", 100, &b, &e), KILN_ENOTFOUND);
    KT_STR_CONTAINS(e.msg, "/nonexistent/kiln/data.csv: no such file");
}

int main(void)
{
    KT_RUN(test_valid_u8);
    KT_RUN(test_types_big_endian);
    KT_RUN(test_bad_headers);
    KT_RUN(test_gzip);
    KT_RUN(test_uri_helpers);
    return KT_DONE();
}
