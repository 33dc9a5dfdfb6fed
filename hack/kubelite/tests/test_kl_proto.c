/* Unit tests for kl_proto: a hand-encoded Secret and DeleteOptions. */
#include <stdlib.h>

#include "kl_proto.h"
#include "ktest.h"

/* Appends a length-delimited field. */
static size_t ld(unsigned char *o, int num, const void *p, size_t n)
{
    o[0] = (unsigned char)(num << 3 | 2);
    o[1] = (unsigned char)n;
    memcpy(o + 2, p, n);
    return n + 2;
}

static void test_secret(void)
{
    unsigned char meta[64], entry[32], raw[256], tm[64], body[512];
    size_t m = 0, e = 0, r = 0, t = 0, b = 0;
    m += ld(meta + m, 1, "rel", 3);
    m += ld(meta + m, 3, "", 0); /* empty namespace means unset */
    unsigned char lab[32];
    size_t l = ld(lab, 1, "owner", 5);
    l += ld(lab + l, 2, "helm", 4);
    m += ld(meta + m, 11, lab, l);
    e += ld(entry + e, 1, "k", 1);
    e += ld(entry + e, 2, "hi", 2);
    r += ld(raw + r, 1, meta, m);
    r += ld(raw + r, 2, entry, e);
    r += ld(raw + r, 3, "helm.sh/release.v1", 18);
    t += ld(tm + t, 1, "v1", 2);
    t += ld(tm + t, 2, "Secret", 6);
    memcpy(body, "k8s\0", 4);
    b = 4;
    b += ld(body + b, 1, tm, t);
    b += ld(body + b, 2, raw, r);
    cJSON *o = NULL;
    KT_EQ_INT(kl_proto_decode(body, b, &o, NULL), 0);
    char *s = cJSON_PrintUnformatted(o);
    KT_CHECK(s && !strcmp(s, "{\"kind\":\"Secret\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"rel\","
                             "\"labels\":{\"owner\":\"helm\"}},\"data\":{\"k\":\"aGk=\"},\"type\":\"helm.sh/release.v1\"}"));
    free(s);
    cJSON_Delete(o);
    /* truncated input is rejected, never read past the end */
    KT_EQ_INT(kl_proto_decode(body, b - 3, &o, NULL), KILN_EINVAL);
}

static void test_delete_options(void)
{
    unsigned char tm[64], body[128];
    size_t t = 0, b = 0;
    t += ld(tm + t, 1, "v1", 2);
    t += ld(tm + t, 2, "DeleteOptions", 13);
    unsigned char raw[32];
    size_t r = ld(raw, 4, "Foreground", 10);
    memcpy(body, "k8s\0", 4);
    b = 4;
    b += ld(body + b, 1, tm, t);
    b += ld(body + b, 2, raw, r);
    cJSON *o = NULL;
    KT_EQ_INT(kl_proto_decode(body, b, &o, NULL), 0);
    KT_CHECK(!strcmp(cJSON_GetObjectItem(o, "propagationPolicy")->valuestring, "Foreground"));
    cJSON_Delete(o);
    t = ld(tm, 1, "apps/v1", 7);
    t += ld(tm + t, 2, "Deployment", 10);
    b = 4 + ld(body + 4, 1, tm, t);
    kiln_error err = {0};
    KT_EQ_INT(kl_proto_decode(body, b, &o, &err), KILN_EUNSUPPORTED);
    KT_CHECK(strstr(err.msg, "Deployment") != NULL);
}

int main(void)
{
    KT_RUN(test_secret);
    KT_RUN(test_delete_options);
    return KT_DONE();
}
