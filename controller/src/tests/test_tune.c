/* Tests for tune: each strategy's choice on synthetic trial histories
 * (under-fitting, over-fitting, diverging), determinism, and that no
 * configuration is ever tried twice. */
#include <stdlib.h>
#include <string.h>

#include "ktest.h"
#include "tune.h"

static cJSON *spec_with(const char *strategy, const char *family, double goal)
{
    char buf[512];
    snprintf(buf, sizeof buf,
             "{\"data\":{\"uri\":\"file:///d\"},\"model\":{\"family\":\"%s\",\"mlp\":{\"hiddenLayers\":[32]}},"
             "\"training\":{\"epochs\":2},\"objective\":{\"metric\":\"accuracy\",\"goal\":%g},"
             "\"tuning\":{\"strategy\":\"%s\",\"maxTrials\":8,\"seed\":3}}",
             family, goal, strategy);
    return cJSON_Parse(buf);
}

/* Trial record with the given params and accuracies; the JSON is kept in
 * pool so the borrowed pointers stay valid for the test. */
static cJSON *pool[64];
static int npool;

static tune_trial trial(int index, cJSON *params, double train_acc, double val_acc)
{
    cJSON *m = cJSON_CreateObject(), *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(m, "accuracy", val_acc);
    cJSON_AddNumberToObject(m, "loss", 0.5);
    cJSON_AddNumberToObject(t, "accuracy", train_acc);
    pool[npool++] = params;
    pool[npool++] = m;
    pool[npool++] = t;
    tune_trial tr = {.index = index, .params = params, .succeeded = 1, .metrics = m, .train_metrics = t};
    return tr;
}

static void free_pool(void)
{
    while (npool > 0)
        cJSON_Delete(pool[--npool]);
}

static int list_at(const cJSON *p, const char *key, int i)
{
    const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(p, key), i);
    return e ? e->valueint : -1;
}

static double num(const cJSON *p, const char *key)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(p, key);
    return e ? e->valuedouble : -1;
}

static void test_initial(void)
{
    cJSON *spec = spec_with("adaptive", "mlp", 0.9);
    cJSON *p = NULL;
    char why[256];
    kiln_error err = {0};
    KT_EQ_INT(tune_next(spec, NULL, 0, &p, why, sizeof why, &err), 0);
    KT_EQ_INT(list_at(p, "hiddenLayers", 0), 32);
    KT_EQ_INT((int)num(p, "epochs"), 2);
    KT_NEAR(num(p, "learningRate"), 0.001, 1e-12);
    cJSON_Delete(p);
    cJSON_Delete(spec);
}

static void test_adaptive_underfit_warm_starts_more_epochs(void)
{
    cJSON *spec = spec_with("adaptive", "mlp", 0.9);
    tune_trial t[1] = {trial(0, tune_initial(spec), 0.82, 0.81)};
    cJSON *p = NULL;
    char why[256];
    kiln_error err = {0};
    KT_EQ_INT(tune_next(spec, t, 1, &p, why, sizeof why, &err), 0);
    KT_EQ_INT((int)num(p, "epochs"), 4);
    KT_EQ_INT((int)num(p, "warmStartFrom"), 0);
    KT_EQ_INT((int)num(p, "extraEpochs"), 2);
    KT_EQ_INT(list_at(p, "hiddenLayers", 0), 32);
    KT_STR_CONTAINS(why, "under-fitting");

    /* After the epochs tweak was tried, capacity grows. */
    tune_trial t2[2] = {t[0], trial(1, p, 0.84, 0.83)};
    cJSON *q = NULL;
    KT_EQ_INT(tune_next(spec, t2, 2, &q, why, sizeof why, &err), 0);
    /* best is trial 1 (0.83): its next under-fitting tweak is more epochs again */
    KT_EQ_INT((int)num(q, "epochs"), 8);
    KT_EQ_INT((int)num(q, "warmStartFrom"), 1);
    cJSON_Delete(q);
    free_pool();
    cJSON_Delete(spec);
}

static void test_adaptive_capacity_when_epochs_tried(void)
{
    cJSON *spec = spec_with("adaptive", "mlp", 0.9);
    cJSON *a = tune_initial(spec);
    cJSON *b = tune_initial(spec);
    cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(b, "epochs"), 4);
    tune_trial t[2] = {trial(0, a, 0.85, 0.84), trial(1, b, 0.80, 0.79)};
    cJSON *p = NULL;
    char why[256];
    kiln_error err = {0};
    KT_EQ_INT(tune_next(spec, t, 2, &p, why, sizeof why, &err), 0);
    /* the 4-epoch configuration exists, so the best (trial 0) widens
     * (fourfold while the layer is under 64 units) */
    KT_EQ_INT(list_at(p, "hiddenLayers", 0), 128);
    KT_EQ_INT((int)num(p, "epochs"), 2);
    KT_CHECK(cJSON_GetObjectItemCaseSensitive(p, "warmStartFrom") == NULL);
    KT_STR_CONTAINS(why, "hiddenLayers [32] -> [128]");
    cJSON_Delete(p);
    free_pool();
    cJSON_Delete(spec);
}

static void test_adaptive_grows_capacity_when_epochs_stall(void)
{
    cJSON *spec = spec_with("adaptive", "mlp", 0.9);
    cJSON *a = tune_initial(spec);
    cJSON *b = tune_initial(spec);
    cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(b, "epochs"), 4);
    cJSON_AddNumberToObject(b, "warmStartFrom", 0);
    cJSON_AddNumberToObject(b, "extraEpochs", 2);
    /* four more epochs gained 0.005: more epochs have stopped paying */
    tune_trial t[2] = {trial(0, a, 0.71, 0.700), trial(1, b, 0.715, 0.705)};
    cJSON *p = NULL;
    char why[256];
    kiln_error err = {0};
    KT_EQ_INT(tune_next(spec, t, 2, &p, why, sizeof why, &err), 0);
    KT_EQ_INT(list_at(p, "hiddenLayers", 0), 128);
    KT_EQ_INT((int)num(p, "epochs"), 4);
    KT_STR_CONTAINS(why, "under-fitting");

    /* a small gap below the goal is noise, not over-fitting */
    tune_trial u[1] = {trial(0, tune_initial(spec), 0.49, 0.46)};
    cJSON *q = NULL;
    KT_EQ_INT(tune_next(spec, u, 1, &q, why, sizeof why, &err), 0);
    KT_STR_CONTAINS(why, "under-fitting");
    cJSON_Delete(q);
    cJSON_Delete(p);
    free_pool();
    cJSON_Delete(spec);
}

static void test_adaptive_overfit_adds_dropout(void)
{
    cJSON *spec = spec_with("adaptive", "mlp", 0.9);
    tune_trial t[1] = {trial(0, tune_initial(spec), 0.97, 0.85)};
    cJSON *p = NULL;
    char why[256];
    kiln_error err = {0};
    KT_EQ_INT(tune_next(spec, t, 1, &p, why, sizeof why, &err), 0);
    KT_NEAR(num(p, "dropout"), 0.2, 1e-9);
    KT_STR_CONTAINS(why, "over-fitting");
    cJSON_Delete(p);
    free_pool();
    cJSON_Delete(spec);
}

static void test_adaptive_diverging_lowers_lr(void)
{
    cJSON *spec = spec_with("adaptive", "mlp", 0.9);
    cJSON *params = tune_initial(spec);
    cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(params, "learningRate"), 0.1);
    tune_trial t = {.index = 0, .params = params, .succeeded = 0,
                    .message = "training diverged at epoch 1 (loss is nan); lower training.learningRate"};
    cJSON *p = NULL;
    char why[256];
    kiln_error err = {0};
    KT_EQ_INT(tune_next(spec, &t, 1, &p, why, sizeof why, &err), 0);
    KT_NEAR(num(p, "learningRate"), 0.03, 1e-9);
    KT_STR_CONTAINS(why, "diverging");

    /* A model stuck at chance with a high loss also lowers the rate. */
    cJSON *m = cJSON_Parse("{\"accuracy\":0.1,\"loss\":2.3}");
    cJSON *tm = cJSON_Parse("{\"accuracy\":0.1,\"loss\":2.3}");
    tune_trial s = {.index = 0, .params = params, .succeeded = 1, .metrics = m, .train_metrics = tm};
    cJSON *q = NULL;
    KT_EQ_INT(tune_next(spec, &s, 1, &q, why, sizeof why, &err), 0);
    KT_NEAR(num(q, "learningRate"), 0.03, 1e-9);
    KT_STR_CONTAINS(why, "not learning");
    cJSON_Delete(q);
    cJSON_Delete(m);
    cJSON_Delete(tm);
    cJSON_Delete(p);
    cJSON_Delete(params);
    cJSON_Delete(spec);
}

/* Runs a strategy for n trials on a flat synthetic response and checks
 * that no configuration repeats. */
static void run_no_repeats(const char *strategy, int n)
{
    cJSON *spec = spec_with(strategy, "mlp", 0.99);
    tune_trial t[32];
    for (int i = 0; i < n; i++) {
        cJSON *p = NULL;
        char why[256];
        kiln_error err = {0};
        int rc = tune_next(spec, t, i, &p, why, sizeof why, &err);
        if (rc) {
            KT_EQ_INT(rc, KILN_ENOTFOUND);
            break;
        }
        t[i] = trial(i, p, 0.80 + 0.001 * i, 0.79 + 0.001 * i);
        for (int j = 0; j < i; j++) {
            const char *keys[] = {"hiddenLayers", "epochs", "learningRate", "dropout"};
            int same = 1;
            for (int k = 0; k < 4; k++)
                same &= cJSON_Compare(cJSON_GetObjectItemCaseSensitive(t[j].params, keys[k]),
                                      cJSON_GetObjectItemCaseSensitive(p, keys[k]), 1);
            if (same)
                fprintf(stderr, "%s: trial %d repeats trial %d\n", strategy, i, j);
            KT_CHECK(!same);
        }
    }
    free_pool();
    cJSON_Delete(spec);
}

static void test_no_repeats(void)
{
    run_no_repeats("adaptive", 12);
    run_no_repeats("ladder", 12);
    run_no_repeats("random", 12);
    run_no_repeats("grid", 12);
}

static void test_ladder_sequence(void)
{
    cJSON *spec = spec_with("ladder", "mlp", 0.99);
    tune_trial t[5];
    t[0] = trial(0, tune_initial(spec), 0.8, 0.8);
    const char *expect[] = {"hiddenLayers [32] -> [32,32]", "epochs 2 -> 4",
                            "hiddenLayers [32,32] -> [32,32,32,32]", "hiddenLayers [32,32,32,32] -> [16,16,16,16]"};
    for (int i = 1; i < 5; i++) {
        cJSON *p = NULL;
        char why[256];
        kiln_error err = {0};
        KT_EQ_INT(tune_next(spec, t, i, &p, why, sizeof why, &err), 0);
        KT_STR_CONTAINS(why, expect[i - 1]);
        t[i] = trial(i, p, 0.8, 0.8);
    }
    free_pool();
    cJSON_Delete(spec);
}

static void test_random_is_reproducible(void)
{
    cJSON *spec = spec_with("random", "mlp", 0.99);
    tune_trial t[1] = {trial(0, tune_initial(spec), 0.8, 0.8)};
    cJSON *a = NULL, *b = NULL;
    char why[256];
    kiln_error err = {0};
    KT_EQ_INT(tune_next(spec, t, 1, &a, why, sizeof why, &err), 0);
    KT_EQ_INT(tune_next(spec, t, 1, &b, why, sizeof why, &err), 0);
    KT_CHECK(cJSON_Compare(a, b, 1));
    double lr = num(a, "learningRate");
    KT_CHECK(lr >= 0.0001 && lr <= 0.01);
    cJSON_Delete(a);
    cJSON_Delete(b);
    free_pool();
    cJSON_Delete(spec);
}

static void test_grid_user_space(void)
{
    cJSON *spec = cJSON_Parse("{\"model\":{\"family\":\"mlp\"},\"tuning\":{\"strategy\":\"grid\","
                              "\"searchSpace\":{\"epochs\":{\"values\":[1,2]},\"hiddenLayers\":{\"values\":[[8],[16]]}}}}");
    tune_trial t[8];
    t[0] = trial(0, tune_initial(spec), 0.5, 0.5); /* epochs 3, [64]: not a grid point */
    int n = 1;
    for (;;) {
        cJSON *p = NULL;
        char why[256];
        kiln_error err = {0};
        if (tune_next(spec, t, n, &p, why, sizeof why, &err) != 0)
            break;
        t[n] = trial(n, p, 0.5, 0.5);
        n++;
    }
    KT_EQ_INT(n, 5); /* the base trial plus the 4 grid points, then exhausted */
    KT_EQ_INT((int)num(t[1].params, "epochs"), 1);
    KT_EQ_INT(list_at(t[1].params, "hiddenLayers", 0), 8);
    KT_EQ_INT(list_at(t[2].params, "hiddenLayers", 0), 16);
    free_pool();
    cJSON_Delete(spec);
}

static void test_kmeans_around_elbow(void)
{
    cJSON *spec = cJSON_Parse("{\"model\":{\"family\":\"kmeans\",\"kmeans\":{\"maxClusters\":6}},"
                              "\"objective\":{\"metric\":\"silhouette\",\"goal\":0.9}}");
    cJSON *p0 = cJSON_Parse("{\"family\":\"kmeans\",\"k\":4}");
    cJSON *m = cJSON_Parse("{\"k\":4,\"silhouette\":0.5,\"wcss\":10}");
    tune_trial t[6] = {{.index = 0, .params = p0, .succeeded = 1, .metrics = m}};
    int ks[] = {5, 3, 6, 2, 1};
    for (int i = 1; i < 6; i++) {
        cJSON *p = NULL;
        char why[256];
        kiln_error err = {0};
        KT_EQ_INT(tune_next(spec, t, i, &p, why, sizeof why, &err), 0);
        KT_EQ_INT((int)num(p, "clusters"), ks[i - 1]);
        t[i] = (tune_trial){.index = i, .params = p, .succeeded = 1, .metrics = m};
        pool[npool++] = p;
    }
    cJSON *p = NULL;
    char why[256];
    kiln_error err = {0};
    KT_EQ_INT(tune_next(spec, t, 6, &p, why, sizeof why, &err), KILN_ENOTFOUND);
    free_pool();
    cJSON_Delete(p0);
    cJSON_Delete(m);
    cJSON_Delete(spec);
}

static void test_goal(void)
{
    cJSON *acc = cJSON_Parse("{\"objective\":{\"metric\":\"accuracy\",\"goal\":0.8}}");
    cJSON *loss = cJSON_Parse("{\"objective\":{\"metric\":\"loss\",\"goal\":0.3}}");
    KT_CHECK(tune_goal_met(acc, 0.8));
    KT_CHECK(!tune_goal_met(acc, 0.79));
    KT_CHECK(tune_goal_met(loss, 0.29));
    KT_CHECK(!tune_goal_met(loss, 0.31));
    KT_CHECK(tune_better(loss, 0.2, 0.3));
    KT_CHECK(tune_better(acc, 0.3, 0.2));
    cJSON_Delete(acc);
    cJSON_Delete(loss);
}

int main(void)
{
    KT_RUN(test_initial);
    KT_RUN(test_adaptive_underfit_warm_starts_more_epochs);
    KT_RUN(test_adaptive_capacity_when_epochs_tried);
    KT_RUN(test_adaptive_grows_capacity_when_epochs_stall);
    KT_RUN(test_adaptive_overfit_adds_dropout);
    KT_RUN(test_adaptive_diverging_lowers_lr);
    KT_RUN(test_no_repeats);
    KT_RUN(test_ladder_sequence);
    KT_RUN(test_random_is_reproducible);
    KT_RUN(test_grid_user_space);
    KT_RUN(test_kmeans_around_elbow);
    KT_RUN(test_goal);
    return KT_DONE();
}
