/* Unit tests for kstatus: building, printing and parsing Status objects. */
#include <stdlib.h>

#include "kstatus.h"
#include "ktest.h"

static void test_build_and_print(void)
{
    kstatus s;
    kstatus_init(&s);
    KT_EQ_INT(kstatus_setf(&s, 404, NULL, "trainingjobs.kiln.dev \"%s\" not found", "demo"), 0);
    KT_EQ_INT(kstatus_set_details(&s, "demo", "kiln.dev", "trainingjobs", NULL), 0);
    char *txt = kstatus_to_string(&s);
    KT_CHECK(txt != NULL);
    KT_STR_CONTAINS(txt, "\"kind\":\"Status\"");
    KT_STR_CONTAINS(txt, "\"metadata\":{}");
    KT_STR_CONTAINS(txt, "\"status\":\"Failure\"");
    KT_STR_CONTAINS(txt, "\"reason\":\"NotFound\"");
    KT_STR_CONTAINS(txt, "\"message\":\"trainingjobs.kiln.dev \\\"demo\\\" not found\"");
    KT_STR_CONTAINS(
        txt, "\"details\":{\"name\":\"demo\",\"group\":\"kiln.dev\",\"kind\":\"trainingjobs\"}");
    KT_STR_CONTAINS(txt, "\"code\":404");
    /* round trip */
    kstatus p;
    kstatus_init(&p);
    KT_EQ_INT(kstatus_parse(&p, txt, strlen(txt), 500, NULL), 0);
    KT_EQ_INT(p.code, 404);
    KT_EQ_INT(p.success, 0);
    KT_CHECK(kstatus_is(&p, "NotFound"));
    KT_CHECK(strcmp(p.name, "demo") == 0);
    KT_CHECK(strcmp(p.kind, "trainingjobs") == 0);
    KT_CHECK(p.uid == NULL);
    KT_EQ_INT(kstatus_kiln_code(&p), KILN_ENOTFOUND);
    free(txt);
    kstatus_release(&p);
    kstatus_release(&s);
}

static void test_causes(void)
{
    const char *body =
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
        "\"reason\":\"Invalid\",\"code\":422,\"message\":\"TrainingJob.kiln.dev \\\"demo\\\" is "
        "invalid\",\"details\":{\"name\":\"demo\",\"group\":\"kiln.dev\",\"kind\":\"TrainingJob\","
        "\"causes\":[{\"reason\":\"FieldValueInvalid\",\"message\":\"Invalid value: 1.5\","
        "\"field\":\"spec.objective.goal\"},{\"type\":\"FieldValueRequired\"},7]}}";
    kstatus s;
    kstatus_init(&s);
    KT_EQ_INT(kstatus_parse(&s, body, strlen(body), 422, NULL), 0);
    KT_EQ_INT(s.code, 422);
    KT_EQ_INT(s.n_causes, 2);
    if (s.n_causes == 2) {
        KT_CHECK(strcmp(s.causes[0].reason, "FieldValueInvalid") == 0);
        KT_CHECK(strcmp(s.causes[0].field, "spec.objective.goal") == 0);
        KT_CHECK(strcmp(s.causes[1].reason, "FieldValueRequired") == 0);
        KT_CHECK(s.causes[1].field == NULL);
    }
    KT_EQ_INT(kstatus_kiln_code(&s), KILN_EINVAL);
    kiln_error e = {0};
    KT_EQ_INT(kstatus_fail(&s, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "422 Invalid");
    /* rebuild with causes and retryAfter and compare */
    kstatus b;
    kstatus_init(&b);
    KT_EQ_INT(kstatus_setf(&b, 429, NULL, "slow down"), 0);
    b.retry_after_seconds = 3;
    KT_EQ_INT(kstatus_add_cause(&b, "FieldValueInvalid", NULL, "spec.x"), 0);
    char *txt = kstatus_to_string(&b);
    KT_STR_CONTAINS(txt, "\"retryAfterSeconds\":3");
    KT_STR_CONTAINS(txt, "\"causes\":[{\"reason\":\"FieldValueInvalid\",\"field\":\"spec.x\"}]");
    KT_STR_CONTAINS(txt, "\"reason\":\"TooManyRequests\"");
    kstatus r;
    kstatus_init(&r);
    KT_EQ_INT(kstatus_parse(&r, txt, strlen(txt), 200, NULL), 0);
    KT_EQ_INT(r.retry_after_seconds, 3);
    KT_EQ_INT(r.code, 429);
    free(txt);
    kstatus_release(&r);
    kstatus_release(&b);
    kstatus_release(&s);
}

static void test_not_a_status(void)
{
    kstatus s;
    kstatus_init(&s);
    const char *html = "<html>502 Bad Gateway\n</html>";
    KT_EQ_INT(kstatus_parse(&s, html, strlen(html), 502, NULL), 0);
    KT_EQ_INT(s.code, 502);
    KT_STR_CONTAINS(s.message, "502 Bad Gateway");
    KT_EQ_INT(kstatus_kiln_code(&s), KILN_EAPI);
    KT_EQ_INT(kstatus_parse(&s, NULL, 0, 503, NULL), 0);
    KT_CHECK(kstatus_is(&s, "ServiceUnavailable"));
    KT_STR_CONTAINS(s.message, "no body");
    /* a Status without code takes the HTTP one, and without reason the default */
    const char *bare = "{\"kind\":\"Status\",\"message\":\"x\"}";
    KT_EQ_INT(kstatus_parse(&s, bare, strlen(bare), 409, NULL), 0);
    KT_EQ_INT(s.code, 409);
    KT_CHECK(kstatus_is(&s, "Conflict"));
    KT_EQ_INT(kstatus_kiln_code(&s), KILN_ECONFLICT);
    /* wrong types are ignored, not fatal */
    const char *odd = "{\"kind\":\"Status\",\"code\":\"x\",\"reason\":5,\"details\":[1]}";
    KT_EQ_INT(kstatus_parse(&s, odd, strlen(odd), 500, NULL), 0);
    KT_EQ_INT(s.code, 500);
    KT_CHECK(kstatus_is(&s, "InternalError"));
    /* success */
    const char *ok = "{\"kind\":\"Status\",\"status\":\"Success\",\"code\":200}";
    KT_EQ_INT(kstatus_parse(&s, ok, strlen(ok), 200, NULL), 0);
    KT_EQ_INT(s.success, 1);
    KT_EQ_INT(kstatus_kiln_code(&s), 0);
    kstatus_release(&s);
    KT_EQ_INT(kstatus_from_json(&s, NULL, NULL), KILN_EINVAL);
}

int main(void)
{
    KT_RUN(test_build_and_print);
    KT_RUN(test_causes);
    KT_RUN(test_not_a_status);
    return KT_DONE();
}
