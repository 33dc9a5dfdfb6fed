/* Unit tests for kl_schema: pruning, defaulting and validation messages. */
#include <stdlib.h>

#include "kl_schema.h"
#include "ktest.h"

static const char *SCHEMA =
    "{\"type\":\"object\",\"properties\":{\"spec\":{\"type\":\"object\",\"required\":[\"model\"],"
    "\"properties\":{\"model\":{\"type\":\"string\",\"enum\":[\"mlp\",\"cnn\"]},"
    "\"goal\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1},"
    "\"name\":{\"type\":\"string\",\"pattern\":\"^[a-z]+$\"},"
    "\"epochs\":{\"type\":\"integer\",\"default\":3},"
    "\"extra\":{\"type\":\"object\",\"x-kubernetes-preserve-unknown-fields\":true},"
    "\"opts\":{\"type\":\"object\",\"default\":{},\"properties\":{\"lr\":{\"type\":\"number\",\"default\":0.1}}}}},"
    "\"status\":{\"type\":\"object\",\"properties\":{\"phase\":{\"type\":\"string\"}}}}}";

static void test_prune_default(void)
{
    cJSON *schema = cJSON_Parse(SCHEMA);
    cJSON *obj = cJSON_Parse("{\"apiVersion\":\"kiln.dev/v1\",\"kind\":\"T\",\"metadata\":{\"name\":\"x\"},"
                             "\"spec\":{\"model\":\"mlp\",\"foo\":1,\"extra\":{\"any\":{\"x\":1}}},\"bogus\":2}");
    kl_strs unk = {0};
    KT_EQ_INT(kl_schema_prune_default(schema, obj, &unk), 0);
    KT_EQ_INT(unk.n, 2);
    /* object order: spec is walked before bogus */
    KT_CHECK(unk.n == 2 && strcmp(unk.v[0], "spec.foo") == 0 && strcmp(unk.v[1], "bogus") == 0);
    cJSON *spec = cJSON_GetObjectItem(obj, "spec");
    KT_CHECK(cJSON_GetObjectItem(spec, "foo") == NULL);
    KT_EQ_INT(cJSON_GetObjectItem(spec, "epochs")->valueint, 3);
    KT_NEAR(cJSON_GetObjectItem(cJSON_GetObjectItem(spec, "opts"), "lr")->valuedouble, 0.1, 1e-12);
    KT_CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(spec, "extra"), "any"), "x"));
    kl_schema_strs_free(&unk);
    cJSON_Delete(obj);
    cJSON_Delete(schema);
}

static void test_validate(void)
{
    cJSON *schema = cJSON_Parse(SCHEMA);
    cJSON *obj = cJSON_Parse("{\"spec\":{\"goal\":1.5,\"name\":\"AB\",\"epochs\":\"x\"}}");
    kstatus st;
    kstatus_init(&st);
    KT_EQ_INT(kl_schema_validate(schema, obj, &st), 4);
    KT_EQ_INT(st.n_causes, 4);
    int saw_req = 0, saw_max = 0, saw_pat = 0, saw_type = 0;
    for (size_t i = 0; i < st.n_causes; i++) {
        kstatus_cause *c = &st.causes[i];
        if (!strcmp(c->reason, "FieldValueRequired") && !strcmp(c->field, "spec.model"))
            saw_req = 1;
        if (!strcmp(c->field, "spec.goal") &&
            !strcmp(c->message, "Invalid value: 1.5: spec.goal in body should be less than or equal to 1"))
            saw_max = 1;
        if (!strcmp(c->field, "spec.name") && strstr(c->message, "should match '^[a-z]+$'"))
            saw_pat = 1;
        if (!strcmp(c->reason, "FieldValueTypeInvalid") &&
            !strcmp(c->message, "Invalid value: \"x\": spec.epochs in body must be of type integer: \"string\""))
            saw_type = 1;
    }
    KT_CHECK(saw_req && saw_max && saw_pat && saw_type);
    kstatus_release(&st);
    cJSON_Delete(obj);
    obj = cJSON_Parse("{\"spec\":{\"model\":\"rnn\"}}");
    kstatus_init(&st);
    KT_EQ_INT(kl_schema_validate(schema, obj, &st), 1);
    KT_CHECK(st.n_causes == 1 && !strcmp(st.causes[0].message,
                                         "Unsupported value: \"rnn\": supported values: \"mlp\", \"cnn\""));
    kstatus_release(&st);
    cJSON_Delete(obj);
    obj = cJSON_Parse("{\"spec\":{\"model\":\"cnn\",\"goal\":0.5,\"epochs\":2}}");
    kstatus_init(&st);
    KT_EQ_INT(kl_schema_validate(schema, obj, &st), 0);
    kstatus_release(&st);
    cJSON_Delete(obj);
    cJSON_Delete(schema);
}

int main(void)
{
    KT_RUN(test_prune_default);
    KT_RUN(test_validate);
    return KT_DONE();
}
