/* Tests for tune: each strategy's choice on synthetic trial histories
 * (under-fitting near and far from the goal, learning curves that rise or
 * flatten, over-fitting by gap or with more epochs, unstable and diverging
 * training), determinism, and that no configuration is ever tried twice. */
#include <stdlib.h>
#include <string.h>

#include "ktest.h"
#include "tune.h"

static cJSON *spec_with(const char *strategy, const char *family, double goal)
{
    char buf[512];
    snprintf(buf, sizeof buf,
             "{\"data\":{\"uri\":\"file:///"
             "d\"},\"model\":{\"family\":\"%s\",\"mlp\":{\"hiddenLayers\":[32]}},"
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
    tune_trial tr = {
        .index = index, .params = params, .succeeded = 1, .metrics = m, .train_metrics = t};
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

/* A trial whose training metrics also carry a loss. */
static tune_trial trial_loss(int index, cJSON *params, double train_acc, double val_acc,
                             double train_loss)
{
    tune_trial t = trial(index, params, train_acc, val_acc);
    cJSON_AddNumberToObject((cJSON *)t.train_metrics, "loss", train_loss);
    return t;
}

/* The params of a warm start from trial `from` as the controller records
 * them: the total epochs, the source and the extra epochs. */
static cJSON *warm_params(const cJSON *spec, int from, int epochs, int extra)
{
    cJSON *p = tune_initial(spec);
    cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(p, "epochs"), epochs);
    cJSON_AddNumberToObject(p, "warmStartFrom", from);
    cJSON_AddNumberToObject(p, "extraEpochs", extra);
    return p;
}

static void test_adaptive_underfit_warm_starts_more_epochs(void)
{
    /* Near the goal (error 0.17 against the goal's 0.15) without a learning
     * curve: more epochs first, warm-started. */
    cJSON *spec = spec_with("adaptive", "mlp", 0.85);
    tune_trial t[1] = {trial(0, tune_initial(spec), 0.84, 0.83)};
    cJSON *p = NULL;
    char why[256];
    kiln_error err = {0};
    KT_EQ_INT(tune_next(spec, t, 1, &p, why, sizeof why, &err), 0);
    KT_EQ_INT((int)num(p, "epochs"), 4);
    KT_EQ_INT((int)num(p, "warmStartFrom"), 0);
    KT_EQ_INT((int)num(p, "extraEpochs"), 2);
    KT_EQ_INT(list_at(p, "hiddenLayers", 0), 32);
    KT_STR_CONTAINS(why, "under-fitting");
    cJSON_Delete(p);
    free_pool();
    cJSON_Delete(spec);
}

static void test_adaptive_far_grows_capacity_and_epochs(void)
{
    /* Error 0.30 against the goal's 0.10: a ratio of 3, so one trial widens
     * and multiplies epochs by 3^2 = 9, capped at 8; a fresh run, since the
     * architecture changed. */
    cJSON *spec = spec_with("adaptive", "mlp", 0.9);
    tune_trial t[1] = {trial(0, tune_initial(spec), 0.71, 0.70)};
    cJSON *p = NULL;
    char why[256];
    kiln_error err = {0};
    KT_EQ_INT(tune_next(spec, t, 1, &p, why, sizeof why, &err), 0);
    KT_EQ_INT(list_at(p, "hiddenLayers", 0), 128);
    KT_EQ_INT((int)num(p, "epochs"), 16);
    KT_CHECK(cJSON_GetObjectItemCaseSensitive(p, "warmStartFrom") == NULL);
    KT_STR_CONTAINS(why, "error 3.0x");

    /* A ratio of 1.8 (0.18 against 0.10): epochs times 1.8^2 -> 4. */
    tune_trial u[1] = {trial(0, tune_initial(spec), 0.83, 0.82)};
    cJSON *q = NULL;
    KT_EQ_INT(tune_next(spec, u, 1, &q, why, sizeof why, &err), 0);
    KT_EQ_INT(list_at(q, "hiddenLayers", 0), 128);
    KT_EQ_INT((int)num(q, "epochs"), 8);

    /* Lower-is-better objectives measure the distance the same way: loss
     * 0.9 for a goal of 0.3 is far. */
    cJSON *ls = cJSON_Parse(
        "{\"model\":{\"family\":\"mlp\",\"mlp\":{\"hiddenLayers\":[32]}},"
        "\"training\":{\"epochs\":2},\"objective\":{\"metric\":\"loss\",\"goal\":0.3}}");
    cJSON *m = cJSON_Parse("{\"loss\":0.9,\"accuracy\":0.7}");
    cJSON *tm = cJSON_Parse("{\"loss\":0.88,\"accuracy\":0.71}");
    cJSON *lp = tune_initial(ls);
    tune_trial v = {.index = 0, .params = lp, .succeeded = 1, .metrics = m, .train_metrics = tm};
    cJSON *r = NULL;
    KT_EQ_INT(tune_next(ls, &v, 1, &r, why, sizeof why, &err), 0);
    KT_EQ_INT(list_at(r, "hiddenLayers", 0), 128);
    KT_EQ_INT((int)num(r, "epochs"), 16);
    cJSON_Delete(r);
    cJSON_Delete(lp);
    cJSON_Delete(m);
    cJSON_Delete(tm);
    cJSON_Delete(ls);
    cJSON_Delete(q);
    cJSON_Delete(p);
    free_pool();
    cJSON_Delete(spec);
}

static void test_adaptive_curve_sizes_more_epochs(void)
{
    /* 0.80 at 2 epochs, 0.82 at 4: +0.02 per doubling. Gains shrinking by
     * 0.7 per doubling give 0.014, 0.0238, 0.0335 after 1, 2, 3 more
     * doublings: 0.01 to go takes one (8 epochs), 0.03 takes three (32). */
    cJSON *spec = spec_with("adaptive", "mlp", 0.83);
    cJSON *a = tune_initial(spec);
    tune_trial t[2] = {trial(0, a, 0.81, 0.80), trial(1, warm_params(spec, 0, 4, 2), 0.83, 0.82)};
    cJSON *p = NULL;
    char why[256];
    kiln_error err = {0};
    KT_EQ_INT(tune_next(spec, t, 2, &p, why, sizeof why, &err), 0);
    KT_EQ_INT((int)num(p, "epochs"), 8);
    KT_EQ_INT((int)num(p, "warmStartFrom"), 1);
    KT_EQ_INT((int)num(p, "extraEpochs"), 4);
    KT_STR_CONTAINS(why, "more epochs reach the goal");
    cJSON_Delete(p);
    cJSON_Delete(spec);

    spec = spec_with("adaptive", "mlp", 0.85);
    KT_EQ_INT(tune_next(spec, t, 2, &p, why, sizeof why, &err), 0);
    KT_EQ_INT((int)num(p, "epochs"), 32);
    KT_EQ_INT((int)num(p, "extraEpochs"), 28);
    cJSON_Delete(p);
    cJSON_Delete(spec);

    /* 0.05 to go is beyond three doublings: the curve flattens first, so
     * capacity grows at the base's epochs. */
    spec = spec_with("adaptive", "mlp", 0.87);
    KT_EQ_INT(tune_next(spec, t, 2, &p, why, sizeof why, &err), 0);
    KT_EQ_INT(list_at(p, "hiddenLayers", 0), 128);
    KT_EQ_INT((int)num(p, "epochs"), 4);
    KT_CHECK(cJSON_GetObjectItemCaseSensitive(p, "warmStartFrom") == NULL);
    KT_STR_CONTAINS(why, "flattens");
    cJSON_Delete(p);
    free_pool();
    cJSON_Delete(spec);
}

static void test_adaptive_curve_decay_from_two_steps(void)
{
    /* 0.70 -> 0.78 -> 0.80 at 1, 2, 4 epochs: the gain per doubling fell
     * from 0.08 to 0.02, so later ones shrink by 0.25 and three more
     * doublings add under 0.007: 0.02 to go needs capacity. With one step
     * (the default shrink, 0.7) the same 0.02 would call for epochs. */
    cJSON *spec = spec_with("adaptive", "mlp", 0.82);
    cJSON *a = tune_initial(spec);
    cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(a, "epochs"), 1);
    tune_trial t[3] = {trial(0, a, 0.71, 0.70), trial(1, warm_params(spec, 0, 2, 1), 0.79, 0.78),
                       trial(2, warm_params(spec, 1, 4, 2), 0.81, 0.80)};
    cJSON *p = NULL;
    char why[256];
    kiln_error err = {0};
    KT_EQ_INT(tune_next(spec, t, 3, &p, why, sizeof why, &err), 0);
    KT_EQ_INT(list_at(p, "hiddenLayers", 0), 128);
    KT_EQ_INT((int)num(p, "epochs"), 4);
    KT_STR_CONTAINS(why, "flattens");
    cJSON_Delete(p);

    /* Only the last two points: epochs. */
    tune_trial u[2] = {t[1], t[2]};
    u[0].params = tune_initial(spec); /* 2 epochs, no earlier trial */
    pool[npool++] = (cJSON *)u[0].params;
    KT_EQ_INT(tune_next(spec, u, 2, &p, why, sizeof why, &err), 0);
    KT_EQ_INT((int)num(p, "warmStartFrom"), 2);
    KT_EQ_INT((int)num(p, "epochs"), 16);
    cJSON_Delete(p);
    free_pool();
    cJSON_Delete(spec);
}

static void test_adaptive_moderate_gap_on_rising_curve_is_not_overfitting(void)
{
    /* Train 0.94, validation 0.865 for a goal of 0.88: a 7.5-point gap, but
     * validation still gains 0.025 per doubling of epochs: more epochs. */
    cJSON *spec = spec_with("adaptive", "mlp", 0.88);
    tune_trial t[2] = {trial(0, tune_initial(spec), 0.90, 0.84),
                       trial(1, warm_params(spec, 0, 4, 2), 0.94, 0.865)};
    cJSON *p = NULL;
    char why[256];
    kiln_error err = {0};
    KT_EQ_INT(tune_next(spec, t, 2, &p, why, sizeof why, &err), 0);
    KT_STR_CONTAINS(why, "under-fitting");
    KT_EQ_INT((int)num(p, "warmStartFrom"), 1);
    KT_EQ_INT((int)num(p, "epochs"), 8);
    cJSON_Delete(p);

    /* The same gap on a flat curve (+0.002 per doubling) is over-fitting. */
    tune_trial u[2] = {trial(0, tune_initial(spec), 0.90, 0.863),
                       trial(1, warm_params(spec, 0, 4, 2), 0.94, 0.865)};
    KT_EQ_INT(tune_next(spec, u, 2, &p, why, sizeof why, &err), 0);
    KT_STR_CONTAINS(why, "over-fitting");
    KT_NEAR(num(p, "dropout"), 0.2, 1e-9);
    KT_EQ_INT((int)num(p, "epochs"), 4);
    cJSON_Delete(p);
    free_pool();
    cJSON_Delete(spec);
}

static void test_adaptive_validation_falls_with_more_epochs(void)
{
    /* 4 epochs: validation 0.84 (train 0.86); 8 epochs: validation 0.82
     * while train rose to 0.90. The best trial is the shorter one, its gap
     * is small, but its continuation shows the extra epochs over-fit. */
    cJSON *spec = spec_with("adaptive", "mlp", 0.86);
    cJSON *a = tune_initial(spec);
    cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(a, "epochs"), 4);
    tune_trial t[2] = {trial(0, a, 0.86, 0.84), trial(1, warm_params(spec, 0, 8, 4), 0.90, 0.82)};
    cJSON *p = NULL;
    char why[256];
    kiln_error err = {0};
    KT_EQ_INT(tune_next(spec, t, 2, &p, why, sizeof why, &err), 0);
    KT_STR_CONTAINS(why, "over-fitting with more epochs");
    KT_NEAR(num(p, "dropout"), 0.2, 1e-9);
    KT_EQ_INT((int)num(p, "epochs"), 4);

    /* A fall within noise (0.005) is not over-fitting, but the curve
     * flattened at 4 epochs: capacity grows. */
    tune_trial u[2] = {trial(0, cJSON_Duplicate(a, 1), 0.86, 0.84),
                       trial(1, warm_params(spec, 0, 8, 4), 0.87, 0.835)};
    cJSON *q = NULL;
    KT_EQ_INT(tune_next(spec, u, 2, &q, why, sizeof why, &err), 0);
    KT_STR_CONTAINS(why, "under-fitting");
    KT_STR_CONTAINS(why, "flattens");
    KT_EQ_INT(list_at(q, "hiddenLayers", 0), 128);
    KT_EQ_INT((int)num(q, "epochs"), 4);
    cJSON_Delete(q);
    cJSON_Delete(p);
    free_pool();
    cJSON_Delete(spec);
}

static void test_adaptive_training_loss_rising_lowers_lr(void)
{
    /* Four more epochs raised the training loss from 0.50 to 0.60: the
     * steps overshoot, so the learning rate halves (same epochs, fresh). */
    cJSON *spec = spec_with("adaptive", "mlp", 0.9);
    tune_trial t[2] = {trial_loss(0, tune_initial(spec), 0.80, 0.80, 0.50),
                       trial_loss(1, warm_params(spec, 0, 4, 2), 0.81, 0.81, 0.60)};
    cJSON *p = NULL;
    char why[256];
    kiln_error err = {0};
    KT_EQ_INT(tune_next(spec, t, 2, &p, why, sizeof why, &err), 0);
    KT_STR_CONTAINS(why, "unstable training");
    KT_NEAR(num(p, "learningRate"), 0.0005, 1e-12);
    KT_EQ_INT((int)num(p, "epochs"), 4);
    KT_CHECK(cJSON_GetObjectItemCaseSensitive(p, "warmStartFrom") == NULL);
    cJSON_Delete(p);

    /* Falling training loss: no such diagnosis. */
    tune_trial u[2] = {trial_loss(0, tune_initial(spec), 0.80, 0.80, 0.50),
                       trial_loss(1, warm_params(spec, 0, 4, 2), 0.81, 0.81, 0.45)};
    KT_EQ_INT(tune_next(spec, u, 2, &p, why, sizeof why, &err), 0);
    KT_CHECK(strstr(why, "unstable") == NULL);
    cJSON_Delete(p);
    free_pool();
    cJSON_Delete(spec);
}

static void test_adaptive_capacity_when_epochs_tried(void)
{
    /* Near the goal, more epochs come first; that configuration exists
     * already (trial 1), so the best trial widens instead (fourfold while
     * the layer is under 64 units), at its own epochs. */
    cJSON *spec = spec_with("adaptive", "mlp", 0.86);
    cJSON *a = tune_initial(spec);
    cJSON *b = tune_initial(spec);
    cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(b, "epochs"), 4);
    tune_trial t[2] = {trial(0, a, 0.85, 0.84), trial(1, b, 0.80, 0.79)};
    cJSON *p = NULL;
    char why[256];
    kiln_error err = {0};
    KT_EQ_INT(tune_next(spec, t, 2, &p, why, sizeof why, &err), 0);
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
    /* a doubling of epochs gained 0.005 with 0.195 to go: the curve
     * flattens far below the goal, so capacity grows */
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
    tune_trial t = {.index = 0,
                    .params = params,
                    .succeeded = 0,
                    .message =
                        "training diverged at epoch 1 (loss is nan); lower training.learningRate"};
    cJSON *p = NULL;
    char why[256];
    kiln_error err = {0};
    KT_EQ_INT(tune_next(spec, &t, 1, &p, why, sizeof why, &err), 0);
    KT_NEAR(num(p, "learningRate"), 0.03, 1e-9);
    KT_STR_CONTAINS(why, "diverging");

    /* A model stuck at chance with a high loss also lowers the rate. */
    cJSON *m = cJSON_Parse("{\"accuracy\":0.1,\"loss\":2.3}");
    cJSON *tm = cJSON_Parse("{\"accuracy\":0.1,\"loss\":2.3}");
    tune_trial s = {
        .index = 0, .params = params, .succeeded = 1, .metrics = m, .train_metrics = tm};
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
                            "hiddenLayers [32,32] -> [32,32,32,32]",
                            "hiddenLayers [32,32,32,32] -> [16,16,16,16]"};
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
                              "\"searchSpace\":{\"epochs\":{\"values\":[1,2]},\"hiddenLayers\":{"
                              "\"values\":[[8],[16]]}}}}");
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
    KT_RUN(test_adaptive_far_grows_capacity_and_epochs);
    KT_RUN(test_adaptive_curve_sizes_more_epochs);
    KT_RUN(test_adaptive_curve_decay_from_two_steps);
    KT_RUN(test_adaptive_moderate_gap_on_rising_curve_is_not_overfitting);
    KT_RUN(test_adaptive_validation_falls_with_more_epochs);
    KT_RUN(test_adaptive_training_loss_rising_lowers_lr);
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
