/* Unit tests for kube_obj metadata helpers and kube_map. */
#include <stdlib.h>

#include "ktest.h"
#include "kube_map.h"
#include "kube_obj.h"

static void test_meta(void)
{
    cJSON *o = cJSON_Parse("{\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\",\"namespace\":\"ns\","
                           "\"uid\":\"u1\",\"resourceVersion\":\"9\",\"generation\":4}}");
    KT_CHECK(strcmp(kube_obj_name(o), "p") == 0);
    KT_CHECK(strcmp(kube_obj_uid(o), "u1") == 0);
    KT_EQ_INT(kube_obj_generation(o), 4);
    char *k = kube_obj_key(o);
    KT_CHECK(k && strcmp(k, "ns/p") == 0);
    free(k);
    char ns[8], name[16];
    KT_EQ_INT(kube_key_split("ns/p", ns, sizeof ns, name, sizeof name), 0);
    KT_CHECK(!strcmp(ns, "ns") && !strcmp(name, "p"));
    KT_EQ_INT(kube_key_split("clusterwide", ns, sizeof ns, name, sizeof name), 0);
    KT_CHECK(!strcmp(ns, "") && !strcmp(name, "clusterwide"));
    KT_EQ_INT(kube_key_split("waytoolongnamespace/p", ns, sizeof ns, name, sizeof name),
              KILN_EINVAL);
    KT_EQ_INT(kube_key_split("ns/", ns, sizeof ns, name, sizeof name), KILN_EINVAL);
    KT_EQ_INT(kube_obj_set_label(o, "app", "kiln"), 0);
    KT_CHECK(strcmp(kube_obj_label(o, "app"), "kiln") == 0);
    KT_EQ_INT(kube_obj_set_label(o, "app", NULL), 0);
    KT_CHECK(kube_obj_label(o, "app") == NULL);
    KT_EQ_INT(kube_obj_set_annotation(o, "kiln.dev/retrain", "2"), 0);
    KT_CHECK(strcmp(kube_obj_annotation(o, "kiln.dev/retrain"), "2") == 0);
    KT_EQ_INT(kube_obj_add_finalizer(o, "kiln.dev/cleanup"), 1);
    KT_EQ_INT(kube_obj_add_finalizer(o, "kiln.dev/cleanup"), 0);
    KT_CHECK(kube_obj_has_finalizer(o, "kiln.dev/cleanup"));
    KT_EQ_INT(kube_obj_remove_finalizer(o, "kiln.dev/cleanup"), 1);
    KT_EQ_INT(kube_obj_remove_finalizer(o, "kiln.dev/cleanup"), 0);
    KT_EQ_INT(kube_obj_set_owner(o, "kiln.dev/v1alpha1", "TrainingJob", "demo", "o-1", 1), 0);
    KT_EQ_INT(kube_obj_set_owner(o, "kiln.dev/v1alpha1", "TrainingJob", "demo", "o-1", 1), 0);
    KT_EQ_INT(cJSON_GetArraySize(kube_obj_path(o, "metadata.ownerReferences")), 1);
    KT_CHECK(strcmp(kube_obj_controller_uid(o), "o-1") == 0);
    KT_CHECK(kube_obj_owned_by(o, "o-1"));
    KT_CHECK(!kube_obj_owned_by(o, "o-2"));
    cJSON_Delete(o);
}

static void test_conditions(void)
{
    cJSON *o = cJSON_Parse("{\"metadata\":{\"name\":\"j\"}}");
    ktime t1 = {.sec = 1795344325}, t2 = {.sec = 1795344999};
    KT_EQ_INT(kube_obj_set_condition(o, "Ready", "False", "Training", "trial 1", 3, t1), 1);
    const cJSON *c = kube_obj_condition(o, "Ready");
    KT_CHECK(strcmp(cJSON_GetObjectItem(c, "lastTransitionTime")->valuestring,
                    "2026-11-22T10:45:25Z") == 0);
    /* identical: no change */
    KT_EQ_INT(kube_obj_set_condition(o, "Ready", "False", "Training", "trial 1", 3, t2), 0);
    /* message changes but status does not: lastTransitionTime stays */
    KT_EQ_INT(kube_obj_set_condition(o, "Ready", "False", "Training", "trial 2", 3, t2), 1);
    c = kube_obj_condition(o, "Ready");
    KT_CHECK(strcmp(cJSON_GetObjectItem(c, "lastTransitionTime")->valuestring,
                    "2026-11-22T10:45:25Z") == 0);
    KT_CHECK(strcmp(cJSON_GetObjectItem(c, "message")->valuestring, "trial 2") == 0);
    /* status flips: lastTransitionTime moves */
    KT_EQ_INT(kube_obj_set_condition(o, "Ready", "True", "GoalReached", "done", 4, t2), 1);
    c = kube_obj_condition(o, "Ready");
    KT_CHECK(strcmp(cJSON_GetObjectItem(c, "lastTransitionTime")->valuestring,
                    "2026-11-22T10:56:39Z") == 0);
    KT_EQ_INT(cJSON_GetObjectItem(c, "observedGeneration")->valuedouble, 4);
    KT_EQ_INT(kube_obj_set_condition(o, "Serving", "True", "Up", "", -1, t2), 1);
    KT_EQ_INT(cJSON_GetArraySize(kube_obj_path(o, "status.conditions")), 2);
    KT_CHECK(cJSON_GetObjectItem(kube_obj_condition(o, "Serving"), "observedGeneration") == NULL);
    cJSON_Delete(o);
}

static int count_cb(const char *k, void *v, void *ud)
{
    (void)k;
    (void)v;
    (*(int *)ud)++;
    return 0;
}

static void test_map(void)
{
    kube_map *m;
    KT_EQ_INT(kube_map_new(free, &m), 0);
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "ns/obj-%d", i);
        int *v = malloc(sizeof *v);
        *v = i;
        KT_EQ_INT(kube_map_put(m, key, v), 0);
    }
    KT_EQ_INT(kube_map_len(m), 1000);
    int bad = 0;
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "ns/obj-%d", i);
        int *v = kube_map_get(m, key);
        if (!v || *v != i)
            bad++;
    }
    KT_EQ_INT(bad, 0);
    int *nv = malloc(sizeof *nv);
    *nv = -1;
    KT_EQ_INT(kube_map_put(m, "ns/obj-5", nv), 0); /* replace frees the old value */
    KT_EQ_INT(*(int *)kube_map_get(m, "ns/obj-5"), -1);
    KT_EQ_INT(kube_map_del(m, "ns/obj-7"), 1);
    KT_EQ_INT(kube_map_del(m, "ns/obj-7"), 0);
    int *t = kube_map_take(m, "ns/obj-8");
    KT_CHECK(t && *t == 8);
    free(t);
    int n = 0;
    kube_map_foreach(m, count_cb, &n);
    KT_EQ_INT(n, 998);
    kube_map_free(m);
}

int main(void)
{
    KT_RUN(test_meta);
    KT_RUN(test_conditions);
    KT_RUN(test_map);
    return KT_DONE();
}
