/* Unit tests for kl_smp: strategic merge patch on pod-like documents. */
#include <stdlib.h>

#include "kl_smp.h"
#include "ktest.h"

static int check(const char *doc, const char *patch, const char *want)
{
    cJSON *d = cJSON_Parse(doc), *p = cJSON_Parse(patch), *w = cJSON_Parse(want);
    int rc = kl_smp_apply(&d, p, NULL);
    if (rc == 0 && !cJSON_Compare(d, w, 1)) {
        char *s = cJSON_PrintUnformatted(d);
        fprintf(stderr, "got %s\nwant %s\n", s, want);
        free(s);
        rc = 99;
    }
    cJSON_Delete(d);
    cJSON_Delete(p);
    cJSON_Delete(w);
    return rc;
}

static void test_maps_and_lists(void)
{
    KT_EQ_INT(check("{\"data\":{\"a\":\"1\",\"b\":\"2\"}}", "{\"data\":{\"a\":\"3\",\"b\":null}}",
                    "{\"data\":{\"a\":\"3\"}}"),
              0);
    /* containers merge by name; env merges by name inside */
    KT_EQ_INT(check("{\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"x\",\"env\":[{\"name\":\"E\",\"value\":\"1\"}]},{\"name\":\"b\",\"image\":\"y\"}]}}",
                    "{\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"z\",\"env\":[{\"name\":\"F\",\"value\":\"2\"}]}]}}",
                    "{\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"z\",\"env\":[{\"name\":\"E\",\"value\":\"1\"},{\"name\":\"F\",\"value\":\"2\"}]},{\"name\":\"b\",\"image\":\"y\"}]}}"),
              0);
    /* plain lists are replaced */
    KT_EQ_INT(check("{\"spec\":{\"args\":[\"a\",\"b\"]}}", "{\"spec\":{\"args\":[\"c\"]}}",
                    "{\"spec\":{\"args\":[\"c\"]}}"),
              0);
    /* $patch: delete in a keyed list */
    KT_EQ_INT(check("{\"c\":{\"containers\":[{\"name\":\"a\"},{\"name\":\"b\"}]}}",
                    "{\"c\":{\"containers\":[{\"name\":\"a\",\"$patch\":\"delete\"}]}}",
                    "{\"c\":{\"containers\":[{\"name\":\"b\"}]}}"),
              0);
    /* finalizers merge as a set, $deleteFromPrimitiveList removes */
    KT_EQ_INT(check("{\"metadata\":{\"finalizers\":[\"a\"]}}",
                    "{\"metadata\":{\"finalizers\":[\"a\",\"b\"]}}",
                    "{\"metadata\":{\"finalizers\":[\"a\",\"b\"]}}"),
              0);
    KT_EQ_INT(check("{\"metadata\":{\"finalizers\":[\"a\",\"b\"]}}",
                    "{\"metadata\":{\"$deleteFromPrimitiveList/finalizers\":[\"a\"]}}",
                    "{\"metadata\":{\"finalizers\":[\"b\"]}}"),
              0);
    /* service ports merge on port; $retainKeys */
    KT_EQ_INT(check("{\"ports\":[{\"port\":80,\"name\":\"h\"}]}", "{\"ports\":[{\"port\":81}]}",
                    "{\"ports\":[{\"port\":80,\"name\":\"h\"},{\"port\":81}]}"),
              0);
    KT_EQ_INT(check("{\"strategy\":{\"type\":\"RollingUpdate\",\"rollingUpdate\":{\"maxSurge\":1}}}",
                    "{\"strategy\":{\"$retainKeys\":[\"type\"],\"type\":\"Recreate\"}}",
                    "{\"strategy\":{\"type\":\"Recreate\"}}"),
              0);
    KT_EQ_INT(check("{\"a\":{\"b\":1}}", "{\"a\":{\"$patch\":\"replace\",\"c\":2}}",
                    "{\"a\":{\"c\":2}}"),
              0);
    cJSON *d = cJSON_Parse("{}"), *p = cJSON_Parse("[1]");
    KT_EQ_INT(kl_smp_apply(&d, p, NULL), KILN_EINVAL);
    cJSON_Delete(d);
    cJSON_Delete(p);
}

int main(void)
{
    KT_RUN(test_maps_and_lists);
    return KT_DONE();
}
