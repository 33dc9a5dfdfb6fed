/* Unit tests for kl_proto: hand-encoded Secret, DeleteOptions and Pod, and
 * the Deployment body kubectl sends. */
#include <stdlib.h>

#include "kl_proto.h"
#include "ktest.h"

static size_t put_varint(unsigned char *o, size_t v)
{
    size_t i = 0;
    for (; v >= 0x80; v >>= 7)
        o[i++] = (unsigned char)(v | 0x80);
    o[i++] = (unsigned char)v;
    return i;
}

/* Appends a length-delimited field (key and length as varints). */
static size_t ld(unsigned char *o, int num, const void *p, size_t n)
{
    size_t h = put_varint(o, (size_t)num << 3 | 2);
    h += put_varint(o + h, n);
    memcpy(o + h, p, n);
    return h + n;
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
    t = ld(tm, 1, "coordination.k8s.io/v1", 22);
    t += ld(tm + t, 2, "Lease", 5);
    b = 4 + ld(body + 4, 1, tm, t);
    kiln_error err = {0};
    KT_EQ_INT(kl_proto_decode(body, b, &o, &err), KILN_EUNSUPPORTED);
    KT_CHECK(strstr(err.msg, "Lease") != NULL);
}

/* The body kubectl v1.32 POSTs for
 * `kubectl create deployment d2 --image=busybox -- /bin/sh -c 'sleep 30'`,
 * captured from kubectl -v=9 against kubelite. */
static const unsigned char kubectl_deployment[] = {
    0x6b, 0x38, 0x73, 0x00, 0x0a, 0x15, 0x0a, 0x07, 0x61, 0x70, 0x70, 0x73,
    0x2f, 0x76, 0x31, 0x12, 0x0a, 0x44, 0x65, 0x70, 0x6c, 0x6f, 0x79, 0x6d,
    0x65, 0x6e, 0x74, 0x12, 0xc3, 0x01, 0x0a, 0x1d, 0x0a, 0x02, 0x64, 0x32,
    0x12, 0x00, 0x1a, 0x00, 0x22, 0x00, 0x2a, 0x00, 0x32, 0x00, 0x38, 0x00,
    0x42, 0x00, 0x5a, 0x09, 0x0a, 0x03, 0x61, 0x70, 0x70, 0x12, 0x02, 0x64,
    0x32, 0x12, 0x93, 0x01, 0x08, 0x01, 0x12, 0x0b, 0x0a, 0x09, 0x0a, 0x03,
    0x61, 0x70, 0x70, 0x12, 0x02, 0x64, 0x32, 0x1a, 0x7a, 0x0a, 0x1b, 0x0a,
    0x00, 0x12, 0x00, 0x1a, 0x00, 0x22, 0x00, 0x2a, 0x00, 0x32, 0x00, 0x38,
    0x00, 0x42, 0x00, 0x5a, 0x09, 0x0a, 0x03, 0x61, 0x70, 0x70, 0x12, 0x02,
    0x64, 0x32, 0x12, 0x5b, 0x12, 0x3d, 0x0a, 0x07, 0x62, 0x75, 0x73, 0x79,
    0x62, 0x6f, 0x78, 0x12, 0x07, 0x62, 0x75, 0x73, 0x79, 0x62, 0x6f, 0x78,
    0x1a, 0x07, 0x2f, 0x62, 0x69, 0x6e, 0x2f, 0x73, 0x68, 0x1a, 0x02, 0x2d,
    0x63, 0x1a, 0x08, 0x73, 0x6c, 0x65, 0x65, 0x70, 0x20, 0x33, 0x30, 0x2a,
    0x00, 0x42, 0x00, 0x6a, 0x00, 0x72, 0x00, 0x80, 0x01, 0x00, 0x88, 0x01,
    0x00, 0x90, 0x01, 0x00, 0xa2, 0x01, 0x00, 0x1a, 0x00, 0x32, 0x00, 0x42,
    0x00, 0x4a, 0x00, 0x52, 0x00, 0x58, 0x00, 0x60, 0x00, 0x68, 0x00, 0x82,
    0x01, 0x00, 0x8a, 0x01, 0x00, 0x9a, 0x01, 0x00, 0xc2, 0x01, 0x00, 0x22,
    0x02, 0x0a, 0x00, 0x28, 0x00, 0x38, 0x00, 0x1a, 0x0c, 0x08, 0x00, 0x10,
    0x00, 0x18, 0x00, 0x20, 0x00, 0x28, 0x00, 0x38, 0x00, 0x1a, 0x00, 0x22,
    0x00,
};

static const char *jp_str(const cJSON *o, const char *path)
{
    /* a tiny dotted-path walk with numeric indexes, enough for the checks */
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    const cJSON *cur = o;
    for (char *tok = buf, *end; cur && tok; tok = end) {
        end = strchr(tok, '.');
        if (end)
            *end++ = 0;
        cur = (*tok >= '0' && *tok <= '9') ? cJSON_GetArrayItem(cur, atoi(tok))
                                           : cJSON_GetObjectItemCaseSensitive(cur, tok);
    }
    return cJSON_IsString(cur) ? cur->valuestring : NULL;
}

static double jp_num(const cJSON *o, const char *path, const char *last)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    const cJSON *cur = o;
    for (char *tok = buf, *end; cur && tok; tok = end) {
        end = strchr(tok, '.');
        if (end)
            *end++ = 0;
        cur = (*tok >= '0' && *tok <= '9') ? cJSON_GetArrayItem(cur, atoi(tok))
                                           : cJSON_GetObjectItemCaseSensitive(cur, tok);
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cur, last);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static int str_is(const char *got, const char *want)
{
    return got && !strcmp(got, want);
}

static void test_deployment_from_kubectl(void)
{
    cJSON *o = NULL;
    KT_EQ_INT(kl_proto_decode(kubectl_deployment, sizeof(kubectl_deployment), &o, NULL), 0);
    KT_CHECK(str_is(jp_str(o, "kind"), "Deployment"));
    KT_CHECK(str_is(jp_str(o, "apiVersion"), "apps/v1"));
    KT_CHECK(str_is(jp_str(o, "metadata.name"), "d2"));
    KT_CHECK(str_is(jp_str(o, "metadata.labels.app"), "d2"));
    /* Go writes empty strings for unset fields: they must not appear */
    KT_CHECK(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(o, "metadata"), "namespace") == NULL);
    KT_EQ_INT(jp_num(o, "spec", "replicas"), 1);
    KT_CHECK(str_is(jp_str(o, "spec.selector.matchLabels.app"), "d2"));
    KT_CHECK(str_is(jp_str(o, "spec.template.metadata.labels.app"), "d2"));
    KT_CHECK(str_is(jp_str(o, "spec.template.spec.containers.0.name"), "busybox"));
    KT_CHECK(str_is(jp_str(o, "spec.template.spec.containers.0.image"), "busybox"));
    KT_CHECK(str_is(jp_str(o, "spec.template.spec.containers.0.command.0"), "/bin/sh"));
    KT_CHECK(str_is(jp_str(o, "spec.template.spec.containers.0.command.1"), "-c"));
    KT_CHECK(str_is(jp_str(o, "spec.template.spec.containers.0.command.2"), "sleep 30"));
    KT_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(
                  cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(
                      cJSON_GetObjectItem(o, "spec"), "template"), "spec"), "containers"), 0), "command")),
              3);
    /* zero-valued non-pointer fields (stdin, tty, minReadySeconds) are unset */
    KT_CHECK(jp_num(o, "spec", "minReadySeconds") == -1);
    KT_CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(
                 cJSON_GetObjectItem(cJSON_GetObjectItem(o, "spec"), "template"), "spec"), "containers"), 0),
                                 "stdin") == NULL);
    cJSON_Delete(o);
    /* every truncation is rejected without reading past the end */
    for (size_t n = 4; n < sizeof(kubectl_deployment); n += 7) {
        int rc = kl_proto_decode(kubectl_deployment, n, &o, NULL);
        /* a cut inside the kind name leaves a kind we do not decode */
        KT_CHECK(rc == KILN_EINVAL || rc == KILN_EUNSUPPORTED || rc == 0);
        if (rc == 0)
            cJSON_Delete(o);
    }
}

/* A Pod with the container fields the kubelet acts on: a port, env,
 * a memory limit (Quantity map), an httpGet liveness probe with a numeric
 * port and a tcpSocket readiness probe with a named one (IntOrString). */
static void test_pod_fields(void)
{
    unsigned char port[16], env[32], qty[16], lim[32], res[40], ios[8], ios2[16], http[32],
        hand[40], live[48], tcp[24], tcph[32], ready[40], ctr[300], spec[320], raw[400], tm[32],
        body[480], meta[16];
    size_t n;
    size_t pn = 0;
    pn += ld(port + pn, 1, "http", 4);
    port[pn++] = 3 << 3; /* containerPort 8080 as a varint */
    port[pn++] = 0x90;
    port[pn++] = 0x3f;
    size_t en = ld(env, 1, "MODE", 4);
    en += ld(env + en, 2, "fast", 4);
    size_t qn = ld(qty, 1, "64Mi", 4);
    size_t ln = ld(lim, 1, "memory", 6);
    ln += ld(lim + ln, 2, qty, qn);
    size_t rn = ld(res, 1, lim, ln);
    size_t in = 0;
    ios[in++] = 1 << 3; /* type 0: int */
    ios[in++] = 0;
    ios[in++] = 2 << 3;
    ios[in++] = 0x90;
    ios[in++] = 0x3f;
    size_t hn = ld(http, 1, "/h", 2);
    hn += ld(http + hn, 2, ios, in);
    size_t han = ld(hand, 2, http, hn);
    size_t lvn = ld(live, 1, hand, han);
    live[lvn++] = 4 << 3; /* periodSeconds 1 */
    live[lvn++] = 1;
    live[lvn++] = 2 << 3; /* initialDelaySeconds 0: unset */
    live[lvn++] = 0;
    size_t i2 = 0;
    ios2[i2++] = 1 << 3; /* type 1: string */
    ios2[i2++] = 1;
    i2 += ld(ios2 + i2, 3, "http", 4);
    size_t tn = ld(tcp, 1, ios2, i2);
    size_t thn = ld(tcph, 3, tcp, tn);
    size_t rdn = ld(ready, 1, tcph, thn);
    n = 0;
    n += ld(ctr + n, 1, "c", 1);
    n += ld(ctr + n, 2, "busybox", 7);
    n += ld(ctr + n, 6, port, pn);
    n += ld(ctr + n, 7, env, en);
    n += ld(ctr + n, 8, res, rn);
    n += ld(ctr + n, 10, live, lvn);
    n += ld(ctr + n, 11, ready, rdn);
    size_t sn = ld(spec, 20, ctr, n); /* as an init container */
    sn += ld(spec + sn, 2, ctr, n);
    sn += ld(spec + sn, 3, "Never", 5);
    size_t mn = ld(meta, 1, "p", 1);
    size_t wn = ld(raw, 1, meta, mn);
    wn += ld(raw + wn, 2, spec, sn);
    size_t mt = ld(tm, 1, "v1", 2);
    mt += ld(tm + mt, 2, "Pod", 3);
    memcpy(body, "k8s\0", 4);
    size_t b = 4 + ld(body + 4, 1, tm, mt);
    b += ld(body + b, 2, raw, wn);
    cJSON *o = NULL;
    KT_EQ_INT(kl_proto_decode(body, b, &o, NULL), 0);
    KT_CHECK(str_is(jp_str(o, "spec.restartPolicy"), "Never"));
    const char *c0[] = {"spec.containers.0", "spec.initContainers.0"};
    for (int i = 0; i < 2; i++) {
        char p[128];
        snprintf(p, sizeof(p), "%s.ports.0", c0[i]);
        KT_EQ_INT(jp_num(o, p, "containerPort"), 8080);
        KT_CHECK(jp_num(o, p, "hostPort") == -1);
        snprintf(p, sizeof(p), "%s.env.0.value", c0[i]);
        KT_CHECK(str_is(jp_str(o, p), "fast"));
        snprintf(p, sizeof(p), "%s.resources.limits.memory", c0[i]);
        KT_CHECK(str_is(jp_str(o, p), "64Mi"));
        snprintf(p, sizeof(p), "%s.livenessProbe.httpGet", c0[i]);
        KT_EQ_INT(jp_num(o, p, "port"), 8080);
        snprintf(p, sizeof(p), "%s.livenessProbe.httpGet.path", c0[i]);
        KT_CHECK(str_is(jp_str(o, p), "/h"));
        snprintf(p, sizeof(p), "%s.livenessProbe", c0[i]);
        KT_EQ_INT(jp_num(o, p, "periodSeconds"), 1);
        KT_CHECK(jp_num(o, p, "initialDelaySeconds") == -1);
        snprintf(p, sizeof(p), "%s.readinessProbe.tcpSocket.port", c0[i]);
        KT_CHECK(str_is(jp_str(o, p), "http"));
    }
    cJSON_Delete(o);
    /* a known field with the wrong wire type is malformed */
    unsigned char bad[64];
    size_t bn = 4 + ld(bad + 4, 1, tm, mt);
    memcpy(bad, "k8s\0", 4);
    unsigned char badspec[4] = {3 << 3, 1}; /* restartPolicy as a varint */
    unsigned char badraw[8];
    size_t brn = ld(badraw, 2, badspec, 2);
    bn += ld(bad + bn, 2, badraw, brn);
    KT_EQ_INT(kl_proto_decode(bad, bn, &o, NULL), KILN_EINVAL);
}

int main(void)
{
    KT_RUN(test_secret);
    KT_RUN(test_delete_options);
    KT_RUN(test_deployment_from_kubectl);
    KT_RUN(test_pod_fields);
    return KT_DONE();
}
