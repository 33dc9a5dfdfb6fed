/* Tests for tj_spec: defaults applied when the API server applied none,
 * mistyped members falling back to defaults, and the cross-field rules
 * (the CRD's CEL expressions and the trainer's own) on valid and invalid
 * specs. */
#include <string.h>

#include "ktest.h"
#include "tj_spec.h"

static cJSON *job(const char *spec)
{
    char buf[2048];
    snprintf(buf, sizeof buf,
             "{\"metadata\":{\"name\":\"j\",\"generation\":4,"
             "\"annotations\":{\"kiln.dev/retrain\":\"r1\"}},\"spec\":%s}",
             spec);
    return cJSON_Parse(buf);
}

static void test_defaults(void)
{
    cJSON *j = job("{\"data\":{\"uri\":\"file:///d\"},\"tuning\":{\"maxTrials\":\"many\"}}");
    tj_spec s;
    kiln_error err = {0};
    KT_EQ_INT(tj_spec_read(j, NULL, &s, &err), 0);
    KT_CHECK(!strcmp(s.ns, "default"));
    KT_EQ_INT(s.generation, 4);
    KT_CHECK(s.retrain && !strcmp(s.retrain, "r1"));
    KT_CHECK(!strcmp(s.metric, "accuracy"));
    KT_NEAR(s.goal, 0.8, 1e-12);
    KT_CHECK(!strcmp(s.family, "auto"));
    KT_EQ_INT(s.max_trials, 8); /* mistyped: the default */
    KT_EQ_INT(s.parallelism, 1);
    KT_EQ_INT(s.max_failed, 3);
    KT_EQ_INT(s.on_goal_finish, 0);
    KT_CHECK(!strcmp(s.image, TJ_DEFAULT_IMAGE));
    KT_EQ_INT(s.active_deadline_s, 3600);
    KT_EQ_INT(s.backoff_limit, 2);
    KT_EQ_INT(s.ttl_s, 600);
    KT_CHECK(s.storage_volume == NULL);
    KT_CHECK(!strcmp(s.storage_size, "1Gi"));
    KT_EQ_INT(s.serving_enabled, 1);
    KT_EQ_INT(s.serving_port, 8080);
    /* ...but the check names the mistyped member. */
    KT_EQ_INT(tj_spec_check(&s, &err), KILN_EINVAL);
    KT_STR_CONTAINS(err.msg, "spec.tuning.maxTrials");
    cJSON_Delete(j);
}

static void test_valid_specs(void)
{
    static const char *const ok[] = {
        "{\"data\":{\"uri\":\"file:///usr/share/datasets/fashion-mnist\"}}",
        "{\"data\":{\"uri\":\"pvc://data/"
        "x.csv\",\"label\":\"y\"},\"model\":{\"family\":\"kmeans\"},"
        "\"objective\":{\"metric\":\"silhouette\",\"goal\":0.5}}",
        "{\"data\":{\"uri\":\"https://example.com/"
        "d.csv\"},\"objective\":{\"metric\":\"loss\",\"goal\":0.3},"
        "\"tuning\":{\"maxTrials\":4,\"parallelism\":4,\"onGoal\":\"finish\"},"
        "\"storage\":{\"volume\":{\"emptyDir\":{}}}}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        cJSON *j = job(ok[i]);
        tj_spec s;
        kiln_error err = {0};
        KT_EQ_INT(tj_spec_read(j, NULL, &s, &err), 0);
        int rc = tj_spec_check(&s, &err);
        if (rc)
            fprintf(stderr, "spec %zu: %s\n", i, err.msg);
        KT_EQ_INT(rc, 0);
        cJSON_Delete(j);
    }
}

static void test_names(void)
{
    cJSON *j = cJSON_Parse(
        "{\"metadata\":{\"name\":\"a-very-long-training-job-name-that-goes-on-and-on-past-"
        "the-label-limit\"},\"spec\":{\"data\":{\"uri\":\"/d\"}}}");
    tj_spec s;
    kiln_error err = {0};
    KT_EQ_INT(tj_spec_read(j, NULL, &s, &err), 0);
    KT_EQ_INT(tj_spec_check(&s, &err), KILN_EINVAL);
    KT_STR_CONTAINS(err.msg, "63");
    cJSON_Delete(j);
    j = cJSON_Parse("{\"metadata\":{\"name\":\"my.job\"},\"spec\":{\"data\":{\"uri\":\"/d\"}}}");
    kiln_error_clear(&err);
    tj_spec_read(j, NULL, &s, &err);
    KT_EQ_INT(tj_spec_check(&s, &err), KILN_EINVAL); /* the Service needs a DNS-1035 label */
    cJSON_Delete(j);
    j = cJSON_Parse("{\"metadata\":{\"name\":\"my.job\"},\"spec\":{\"data\":{\"uri\":\"/d\"},"
                    "\"serving\":{\"enabled\":false}}}");
    kiln_error_clear(&err);
    tj_spec_read(j, NULL, &s, &err);
    KT_EQ_INT(tj_spec_check(&s, &err), 0);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"spec\":{}}");
    KT_EQ_INT(tj_spec_read(j, NULL, &s, &err), KILN_EINVAL);
    cJSON_Delete(j);
}

int main(void)
{
    KT_RUN(test_defaults);
    KT_RUN(test_valid_specs);
    KT_RUN(test_names);
    return KT_DONE();
}
