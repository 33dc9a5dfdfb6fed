/* Tests for config: defaults, JSON and flags, and one clear error per kind
 * of mistake (unknown field, wrong type, unknown enum, out of range). */
#include <string.h>

#include "config.h"
#include "ktest.h"

static void test_defaults(void)
{
    train_config c;
    config_init(&c);
    KT_EQ_INT(c.epochs, 3);
    KT_EQ_INT(c.batch_size, 64);
    KT_NEAR(c.learning_rate, 0.001, 1e-12);
    KT_CHECK(!strcmp(c.optimizer, "adam"));
    KT_CHECK(!strcmp(c.family, "auto"));
    KT_EQ_INT(c.n_hidden, 1);
    KT_EQ_INT(c.hidden[0], 64);
    KT_EQ_INT(c.max_clusters, 12);
    KT_NEAR(c.validation_split, 0.2, 1e-12);
    KT_NEAR(c.goal, 0.8, 1e-12);
    kiln_error err = {0};
    KT_EQ_INT(config_validate(&c, &err), KILN_EINVAL); /* no data.uri */
    KT_STR_CONTAINS(err.msg, "data.uri");
    config_release(&c);
}

static void test_json_spec(void)
{
    train_config c;
    config_init(&c);
    kiln_error err = {0};
    const char *spec =
        "{\"data\":{\"uri\":\"file:///d\",\"label\":3,\"preprocessing\":{\"scale\":\"minmax\","
        "\"dropColumns\":[\"id\",\"name\"]}},"
        "\"model\":{\"family\":\"mlp\",\"mlp\":{\"hiddenLayers\":[128,32],\"dropout\":0.25}},"
        "\"training\":{\"epochs\":5,\"seed\":42},\"objective\":{\"metric\":\"f1\",\"goal\":0.9},"
        "\"tuning\":{\"maxTrials\":8}}";
    KT_EQ_INT(config_apply_json_text(&c, spec, "cfg", &err), 0);
    KT_CHECK(!strcmp(c.uri, "file:///d"));
    KT_CHECK(!strcmp(c.label, "3"));
    KT_CHECK(!strcmp(c.scale, "minmax"));
    KT_EQ_INT(c.n_drop_columns, 2);
    KT_CHECK(c.n_drop_columns == 2 && !strcmp(c.drop_columns[1], "name"));
    KT_EQ_INT(c.n_hidden, 2);
    KT_EQ_INT(c.hidden[1], 32);
    KT_NEAR(c.dropout, 0.25, 1e-12);
    KT_EQ_INT(c.epochs, 5);
    KT_EQ_INT(c.seed, 42);
    KT_CHECK(!strcmp(c.metric, "f1") && c.metric_given);
    KT_EQ_INT(config_validate(&c, &err), 0);

    /* round trip through config_to_json */
    cJSON *j = config_to_json(&c);
    train_config d;
    config_init(&d);
    KT_EQ_INT(config_apply_json(&d, j, &err), 0);
    cJSON *k = config_to_json(&d);
    KT_CHECK(cJSON_Compare(j, k, 1));
    cJSON_Delete(j);
    cJSON_Delete(k);
    config_release(&d);
    config_release(&c);
}

static void test_flags(void)
{
    train_config c;
    config_init(&c);
    kiln_error err = {0};
    KT_EQ_INT(config_apply_flag(&c, "hidden", "256,128,10", &err), 0);
    KT_EQ_INT(c.n_hidden, 3);
    KT_EQ_INT(c.hidden[2], 10);
    KT_EQ_INT(config_apply_flag(&c, "epochs", "7", &err), 0);
    KT_EQ_INT(c.epochs, 7);
    KT_EQ_INT(config_apply_flag(&c, "no-such-flag", "1", &err), KILN_ENOTFOUND);
    KT_EQ_INT(config_apply_flag(&c, "epochs", "seven", &err), KILN_EINVAL);
    KT_STR_CONTAINS(err.msg, "training.epochs: 'seven' is not a number");
    config_release(&c);
}

static void expect_error(const char *json, const char *needle)
{
    train_config c;
    config_init(&c);
    kiln_error err = {0};
    int rc = config_apply_json_text(&c, json, "cfg.json", &err);
    KT_EQ_INT(rc, KILN_EINVAL);
    KT_STR_CONTAINS(err.msg, needle);
    config_release(&c);
}

static void test_errors(void)
{
    expect_error("{\"model\":{\"family\":\"transformer\"}}",
                 "model.family: unknown value 'transformer'");
    expect_error("{\"training\":{\"epochs\":-3}}", "training.epochs: -3 is out of range");
    expect_error("{\"training\":{\"epocs\":3}}", "training.epocs: unknown field");
    expect_error("{\"training\":{\"epochs\":\"3\"}}", "training.epochs: expected a number");
    expect_error("{\"training\":{\"epochs\":2.5}}", "not a whole number");
    expect_error("{\"model\":{\"mlp\":{\"hiddenLayers\":[64,0]}}}", "hiddenLayers[1]");
    expect_error("{\"data\":{\"uri\":\"x\"", "malformed JSON");
    expect_error("[1,2]", "expected a JSON object");
    expect_error("{\"weird\":{}}", "unknown key 'weird'");

    train_config c;
    config_init(&c);
    kiln_error err = {0};
    KT_EQ_INT(config_apply_json_text(&c, "{\"data\":{\"uri\":\"/x\"},\"objective\":{\"goal\":1.5}}",
                                     "cfg", &err), 0);
    KT_EQ_INT(config_validate(&c, &err), KILN_EINVAL);
    KT_STR_CONTAINS(err.msg, "objective.goal: 1.5 must be within [0, 1]");
    config_release(&c);
}

int main(void)
{
    KT_RUN(test_defaults);
    KT_RUN(test_json_spec);
    KT_RUN(test_flags);
    KT_RUN(test_errors);
    return KT_DONE();
}
