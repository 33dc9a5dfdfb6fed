/* Unit tests for klabels: selector grammar and matching. */
#include <stdlib.h>

#include "klabels.h"
#include "ktest.h"

static int match(const char *sel, const char *labels_json)
{
    klabels_sel *s = NULL;
    kiln_error err = {0};
    if (klabels_parse(sel, KLABELS_LABEL, &s, &err) != 0)
        return -1;
    cJSON *l = cJSON_Parse(labels_json);
    int m = klabels_match_labels(s, l);
    cJSON_Delete(l);
    klabels_free(s);
    return m;
}

static void test_equality(void)
{
    KT_EQ_INT(match("app=kiln", "{\"app\":\"kiln\"}"), 1);
    KT_EQ_INT(match("app==kiln", "{\"app\":\"kiln\"}"), 1);
    KT_EQ_INT(match("app=kiln", "{\"app\":\"web\"}"), 0);
    KT_EQ_INT(match("app!=kiln", "{\"app\":\"web\"}"), 1);
    KT_EQ_INT(match("app!=kiln", "{}"), 1);
    KT_EQ_INT(match("app=kiln,tier=db", "{\"app\":\"kiln\",\"tier\":\"db\"}"), 1);
    KT_EQ_INT(match("app=kiln, tier=db", "{\"app\":\"kiln\",\"tier\":\"web\"}"), 0);
    KT_EQ_INT(match("", "{\"app\":\"kiln\"}"), 1);
}

static void test_set_based(void)
{
    KT_EQ_INT(match("env in (prod, dev)", "{\"env\":\"dev\"}"), 1);
    KT_EQ_INT(match("env in (prod,dev)", "{\"env\":\"qa\"}"), 0);
    KT_EQ_INT(match("env notin (prod)", "{\"env\":\"qa\"}"), 1);
    KT_EQ_INT(match("env notin (prod)", "{}"), 1);
    KT_EQ_INT(match("env", "{\"env\":\"x\"}"), 1);
    KT_EQ_INT(match("env", "{}"), 0);
    KT_EQ_INT(match("!env", "{}"), 1);
    KT_EQ_INT(match("!env", "{\"env\":\"x\"}"), 0);
    KT_EQ_INT(match("n>3", "{\"n\":\"5\"}"), 1);
    KT_EQ_INT(match("n<3", "{\"n\":\"5\"}"), 0);
}

static void test_errors(void)
{
    KT_EQ_INT(match("app=kiln,", "{}"), -1);
    KT_EQ_INT(match("env in prod", "{}"), -1);
    KT_EQ_INT(match("env in (a", "{}"), -1);
    KT_EQ_INT(match("=x", "{}"), -1);
    klabels_sel *s = NULL;
    kiln_error err = {0};
    KT_EQ_INT(klabels_parse("metadata.name", KLABELS_FIELD, &s, &err), KILN_EINVAL);
}

static const char *fields(void *ctx, const char *key)
{
    (void)ctx;
    if (strcmp(key, "metadata.name") == 0)
        return "demo";
    if (strcmp(key, "metadata.namespace") == 0)
        return "default";
    return NULL;
}

static void test_fields(void)
{
    klabels_sel *s = NULL;
    kiln_error err = {0};
    KT_EQ_INT(klabels_parse("metadata.name=demo,metadata.namespace!=kube-system", KLABELS_FIELD,
                            &s, &err),
              0);
    KT_EQ_INT(klabels_count(s), 2);
    KT_EQ_INT(klabels_match(s, fields, NULL), 1);
    KT_CHECK(klabels_exact(s, "metadata.name") == NULL);
    klabels_free(s);
    KT_EQ_INT(klabels_parse("metadata.name=other", KLABELS_FIELD, &s, &err), 0);
    KT_EQ_INT(klabels_match(s, fields, NULL), 0);
    KT_CHECK(strcmp(klabels_exact(s, "metadata.name"), "other") == 0);
    klabels_free(s);
}

int main(void)
{
    KT_RUN(test_equality);
    KT_RUN(test_set_based);
    KT_RUN(test_errors);
    KT_RUN(test_fields);
    return KT_DONE();
}
