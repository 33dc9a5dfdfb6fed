/* Unit tests for kjson_patch: RFC 7386 merge patch and RFC 6902 JSON patch. */
#include <stdlib.h>

#include "kjson_patch.h"
#include "ktest.h"

/* Applies a merge or JSON patch and compares to the expected document.
 * Returns the patch's return code. */
static int check(int json_patch, const char *doc, const char *patch, const char *want)
{
    cJSON *d = cJSON_Parse(doc), *p = cJSON_Parse(patch);
    kiln_error err = {0};
    int rc = json_patch ? kjson_patch_apply(&d, p, &err) : kjson_merge_patch(&d, p, &err);
    if (rc == 0 && want) {
        cJSON *w = cJSON_Parse(want);
        if (!cJSON_Compare(d, w, 1)) {
            char *got = cJSON_PrintUnformatted(d);
            fprintf(stderr, "got %s want %s\n", got, want);
            free(got);
            rc = 99;
        }
        cJSON_Delete(w);
    }
    cJSON_Delete(d);
    cJSON_Delete(p);
    return rc;
}

static void test_merge(void)
{
    KT_EQ_INT(check(0, "{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"), 0);
    KT_EQ_INT(check(0, "{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"), 0);
    KT_EQ_INT(check(0, "{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"), 0);
    KT_EQ_INT(check(0, "{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"), 0);
    KT_EQ_INT(check(0, "{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}",
                    "{\"a\":{\"b\":\"d\"}}"),
              0);
    KT_EQ_INT(check(0, "{\"a\":\"foo\"}", "\"bar\"", "\"bar\""), 0);
    KT_EQ_INT(check(0, "{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}"), 0);
    KT_EQ_INT(check(0, "{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}"), 0);
    KT_EQ_INT(check(0, "{\"s\":{\"n\":3}}", "{\"s\":{\"n\":3.5}}", "{\"s\":{\"n\":3.5}}"), 0);
}

static void test_json_patch(void)
{
    const char *doc = "{\"spec\":{\"replicas\":1,\"list\":[1,2,3]},\"m\":{\"a/b\":1,\"t~\":2}}";
    KT_EQ_INT(check(1, doc, "[{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":3}]",
                    "{\"spec\":{\"replicas\":3,\"list\":[1,2,3]},\"m\":{\"a/b\":1,\"t~\":2}}"),
              0);
    KT_EQ_INT(check(1, doc, "[{\"op\":\"add\",\"path\":\"/spec/list/1\",\"value\":9}]",
                    "{\"spec\":{\"replicas\":1,\"list\":[1,9,2,3]},\"m\":{\"a/b\":1,\"t~\":2}}"),
              0);
    KT_EQ_INT(check(1, doc, "[{\"op\":\"add\",\"path\":\"/spec/list/-\",\"value\":4}]",
                    "{\"spec\":{\"replicas\":1,\"list\":[1,2,3,4]},\"m\":{\"a/b\":1,\"t~\":2}}"),
              0);
    KT_EQ_INT(check(1, doc, "[{\"op\":\"remove\",\"path\":\"/m/a~1b\"},{\"op\":\"remove\",\"path\":\"/m/t~0\"}]",
                    "{\"spec\":{\"replicas\":1,\"list\":[1,2,3]},\"m\":{}}"),
              0);
    KT_EQ_INT(check(1, doc, "[{\"op\":\"move\",\"from\":\"/spec/replicas\",\"path\":\"/r\"}]",
                    "{\"spec\":{\"list\":[1,2,3]},\"m\":{\"a/b\":1,\"t~\":2},\"r\":1}"),
              0);
    KT_EQ_INT(check(1, doc, "[{\"op\":\"copy\",\"from\":\"/spec/list/0\",\"path\":\"/spec/list/0\"}]",
                    "{\"spec\":{\"replicas\":1,\"list\":[1,1,2,3]},\"m\":{\"a/b\":1,\"t~\":2}}"),
              0);
    KT_EQ_INT(check(1, doc, "[{\"op\":\"test\",\"path\":\"/spec/replicas\",\"value\":1}]", doc), 0);
    /* failures */
    KT_EQ_INT(check(1, doc, "[{\"op\":\"test\",\"path\":\"/spec/replicas\",\"value\":2}]", NULL),
              KILN_ECONFLICT);
    KT_EQ_INT(check(1, doc, "[{\"op\":\"replace\",\"path\":\"/spec/nope\",\"value\":2}]", NULL),
              KILN_ECONFLICT);
    KT_EQ_INT(check(1, doc, "[{\"op\":\"remove\",\"path\":\"/x/y\"}]", NULL), KILN_ECONFLICT);
    KT_EQ_INT(check(1, doc, "[{\"op\":\"frob\",\"path\":\"/a\"}]", NULL), KILN_EINVAL);
    KT_EQ_INT(check(1, doc, "{\"op\":\"add\"}", NULL), KILN_EINVAL);
    KT_EQ_INT(check(1, doc, "[{\"op\":\"add\",\"path\":\"/a\"}]", NULL), KILN_EINVAL);
}

static void test_pointer_and_diff(void)
{
    cJSON *d = cJSON_Parse("{\"a\":{\"b\":[10,20]}}");
    cJSON *n = kjson_pointer_get(d, "/a/b/1");
    KT_CHECK(n && n->valueint == 20);
    KT_CHECK(kjson_pointer_get(d, "/a/b/2") == NULL);
    KT_CHECK(kjson_pointer_get(d, "/a/b/01") == NULL);
    KT_CHECK(kjson_pointer_get(d, "") == d);
    cJSON *to = cJSON_Parse("{\"a\":{\"b\":[10,20],\"c\":1}}");
    cJSON *from = cJSON_Parse("{\"a\":{\"b\":[10,20]},\"x\":1}");
    cJSON *diff = kjson_merge_diff(from, to);
    char *s = cJSON_PrintUnformatted(diff);
    KT_CHECK(s && strcmp(s, "{\"x\":null,\"a\":{\"c\":1}}") == 0);
    free(s);
    cJSON_Delete(diff);
    cJSON_Delete(from);
    cJSON_Delete(to);
    cJSON_Delete(d);
}

int main(void)
{
    KT_RUN(test_merge);
    KT_RUN(test_json_patch);
    KT_RUN(test_pointer_and_diff);
    return KT_DONE();
}
