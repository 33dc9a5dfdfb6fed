/* Tests for ckpt: round trip, atomic replacement, and rejection of every
 * kind of damage (truncation, bit flips, bad magic, bad version, lying
 * section sizes) with a specific message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"
#include "ktest.h"

static char dir[256];

static void path_in(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
}

static void write_sample(const char *path, float scale)
{
    cJSON *h = cJSON_CreateObject();
    cJSON_AddStringToObject(h, "family", "mlp");
    float a[5] = {1 * scale, -2, 3.5f, 0, 1e-20f};
    float b[3] = {7, 8, 9};
    ckpt_section secs[2] = {{"params", a, 5}, {"optim", b, 3}};
    kiln_error err = {0};
    KT_EQ_INT(ckpt_write(path, h, secs, 2, &err), 0);
    cJSON_Delete(h);
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(*len);
    if (fread(buf, 1, *len, f) != *len)
        *len = 0;
    fclose(f);
    return buf;
}

static void test_round_trip(void)
{
    char p[300];
    path_in(p, sizeof p, "a.kiln");
    write_sample(p, 1);
    ckpt *c = NULL;
    kiln_error err = {0};
    KT_EQ_INT(ckpt_read(p, &c, &err), 0);
    if (!c)
        return;
    size_t n;
    const float *a = ckpt_section_data(c, "params", &n);
    KT_EQ_INT(n, 5);
    KT_CHECK(a && a[2] == 3.5f && a[4] == 1e-20f);
    const float *b = ckpt_section_data(c, "optim", &n);
    KT_EQ_INT(n, 3);
    KT_CHECK(b && b[2] == 9);
    KT_CHECK(ckpt_section_data(c, "missing", &n) == NULL && n == 0);
    const cJSON *fam = cJSON_GetObjectItemCaseSensitive(ckpt_header(c), "family");
    KT_CHECK(cJSON_IsString(fam) && !strcmp(fam->valuestring, "mlp"));
    ckpt_free(c);
}

static void test_replace_is_atomic(void)
{
    char p[300];
    path_in(p, sizeof p, "b.kiln");
    write_sample(p, 1);
    write_sample(p, 2);
    ckpt *c = NULL;
    kiln_error err = {0};
    KT_EQ_INT(ckpt_read(p, &c, &err), 0);
    if (c) {
        KT_CHECK(ckpt_section_data(c, "params", NULL)[0] == 2);
        ckpt_free(c);
    }
    /* No temporary file is left behind. */
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", p, (int)getpid());
    KT_CHECK(access(tmp, F_OK) != 0);
}

static void expect_bad(const unsigned char *buf, size_t len, const char *needle)
{
    ckpt *c = NULL;
    kiln_error err = {0};
    int rc = ckpt_read_mem(buf, len, "m.kiln", &c, &err);
    KT_CHECK(rc == KILN_ECORRUPT);
    KT_CHECK(c == NULL);
    KT_STR_CONTAINS(err.msg, needle);
    KT_STR_CONTAINS(err.msg, "m.kiln");
}

static void test_damage(void)
{
    char p[300];
    path_in(p, sizeof p, "c.kiln");
    write_sample(p, 1);
    size_t len;
    unsigned char *buf = slurp(p, &len);
    KT_CHECK(len > 40);

    /* every truncation is refused */
    for (size_t cut = 0; cut < len; cut += 7) {
        ckpt *c = NULL;
        kiln_error err = {0};
        KT_CHECK(ckpt_read_mem(buf, cut, "m.kiln", &c, &err) == KILN_ECORRUPT);
    }
    expect_bad(buf, 10, "too short");

    /* a flipped bit anywhere is refused (CRC) */
    for (size_t i = 0; i < len; i += 5) {
        buf[i] ^= 0x10;
        ckpt *c = NULL;
        kiln_error err = {0};
        KT_CHECK(ckpt_read_mem(buf, len, "m.kiln", &c, &err) != 0);
        buf[i] ^= 0x10;
    }
    buf[len - 10] ^= 1;
    expect_bad(buf, len, "CRC mismatch");
    buf[len - 10] ^= 1;

    unsigned char *copy = malloc(len);
    memcpy(copy, buf, len);
    copy[0] = 'X';
    expect_bad(copy, len, "bad magic");
    memcpy(copy, buf, len);
    copy[8] = 9;
    expect_bad(copy, len, "version 9");
    free(copy);
    free(buf);
}

static void test_missing_file(void)
{
    ckpt *c = NULL;
    kiln_error err = {0};
    KT_EQ_INT(ckpt_read("/nonexistent/x.kiln", &c, &err), KILN_ENOTFOUND);
    KT_STR_CONTAINS(err.msg, "/nonexistent/x.kiln");
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/kiln-test-ckpt-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    KT_RUN(test_round_trip);
    KT_RUN(test_replace_is_atomic);
    KT_RUN(test_damage);
    KT_RUN(test_missing_file);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup failed\n");
    return KT_DONE();
}
