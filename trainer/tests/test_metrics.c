/* Tests for metrics: accuracy, macro F1, ROC AUC (ties, one-vs-rest),
 * cross-entropy and metric directions, each against values worked out by
 * hand in the comments. */
#include <math.h>
#include <stdint.h>

#include "ktest.h"
#include "metrics.h"

/* Binary: class 1's probability is the score.
 *   y:      1    1    1    0    0
 *   score: .8   .4   .4   .4   .1
 * Positive/negative pairs: .8 beats .4 and .1 (2); each .4 positive ties
 * the .4 negative (1/2) and beats .1 (1): 2 + 1.5 + 1.5 = 5 of 6 pairs.
 * Predictions (argmax, ties to class 0): 1, 0, 0, 0, 0 -> 3/5 correct. */
static void test_binary_auc_with_ties(void)
{
    float p[] = {.2f, .8f, .6f, .4f, .6f, .4f, .6f, .4f, .9f, .1f};
    int32_t y[] = {1, 1, 1, 0, 0};
    cls_metrics m;
    metrics_classification(p, y, 5, 2, &m);
    KT_NEAR(m.auc, 5.0 / 6.0, 1e-12);
    KT_NEAR(m.accuracy, 3.0 / 5.0, 1e-12);
    /* F1: class 0 tp 2 fp 2 fn 0 -> 4/6; class 1 tp 1 fp 0 fn 2 -> 2/4. */
    KT_NEAR(m.f1, (4.0 / 6.0 + 0.5) / 2, 1e-12);
    /* loss: p(y) is .8, .4, .4, .6, .9 */
    KT_NEAR(m.loss, -(log(.8) + 2 * log(.4) + log(.6) + log(.9)) / 5, 1e-6);
}

static void test_binary_auc_extremes(void)
{
    float sep[] = {.9f, .1f, .8f, .2f, .3f, .7f, .1f, .9f};
    int32_t y[] = {0, 0, 1, 1};
    cls_metrics m;
    metrics_classification(sep, y, 4, 2, &m);
    KT_NEAR(m.auc, 1.0, 1e-12);
    KT_NEAR(m.accuracy, 1.0, 1e-12);
    KT_NEAR(m.f1, 1.0, 1e-12);
    int32_t flipped[] = {1, 1, 0, 0};
    metrics_classification(sep, flipped, 4, 2, &m);
    KT_NEAR(m.auc, 0.0, 1e-12);
    KT_NEAR(m.accuracy, 0.0, 1e-12);
    /* All scores equal: every pair is a tie. */
    float flat[] = {.5f, .5f, .5f, .5f, .5f, .5f};
    int32_t y3[] = {0, 1, 1};
    metrics_classification(flat, y3, 3, 2, &m);
    KT_NEAR(m.auc, 0.5, 1e-12);
    /* One class only: AUC undefined, reported as 0.5. */
    int32_t ones[] = {1, 1, 1};
    metrics_classification(flat, ones, 3, 2, &m);
    KT_NEAR(m.auc, 0.5, 1e-12);
}

/* Three classes (a fourth column that never occurs in y):
 *   row  p0   p1   p2   p3   y  argmax
 *   0   .70  .20  .10  0    0  0
 *   1   .30  .40  .30  0    1  1
 *   2   .45  .30  .25  0    2  0
 *   3   .50  .30  .20  0    1  0
 *   4   .10  .30  .60  0    2  2
 * OvR AUC: class 0: pos {.7} beats all 4 negatives -> 1.
 *          class 1: pos {.4, .3} vs neg {.2, .3, .3}: .4 -> 3,
 *                   .3 -> 1 + .5 + .5 = 2; 5/6.
 *          class 2: pos {.25, .6} vs neg {.1, .3, .2}: .25 -> 2, .6 -> 3;
 *                   5/6.
 *          class 3: no positives, left out.
 * Macro: (1 + 5/6 + 5/6) / 3 = 8/9. Accuracy 3/5.
 * F1: class 0 tp 1 fp 2 fn 0 -> 2/4; class 1 tp 1 fp 0 fn 1 -> 2/3;
 *     class 2 tp 1 fp 0 fn 1 -> 2/3; class 3 absent. Macro (1/2 + 4/3) / 3. */
static void test_multiclass(void)
{
    float p[] = {
        .70f, .20f, .10f, 0, /* row 0 */
        .30f, .40f, .30f, 0, /* row 1 */
        .45f, .30f, .25f, 0, /* row 2 */
        .50f, .30f, .20f, 0, /* row 3 */
        .10f, .30f, .60f, 0, /* row 4 */
    };
    int32_t y[] = {0, 1, 2, 1, 2};
    cls_metrics m;
    metrics_classification(p, y, 5, 4, &m);
    KT_NEAR(m.auc, 8.0 / 9.0, 1e-12);
    KT_NEAR(m.accuracy, 0.6, 1e-12);
    KT_NEAR(m.f1, (0.5 + 4.0 / 3.0) / 3.0, 1e-12);
    KT_NEAR(m.loss, -(log(.7) + log(.4) + log(.25) + log(.3) + log(.6)) / 5, 1e-6);
}

/* F1 counts a class that is predicted but never true (F1 0) and skips one
 * that is neither.
 *   y:    0 0 0 1 1 2 2
 *   pred: 0 0 1 1 2 2 3       (n_classes 5; class 4 never appears)
 * class 0: tp 2 fp 0 fn 1 -> 4/5; class 1: tp 1 fp 1 fn 1 -> 1/2;
 * class 2: tp 1 fp 1 fn 1 -> 1/2; class 3: tp 0 fp 1 fn 0 -> 0.
 * Macro over 4 classes: 1.8 / 4 = 0.45. Accuracy 4/7. */
static void test_macro_f1_presence(void)
{
    int32_t y[] = {0, 0, 0, 1, 1, 2, 2};
    int32_t pred[] = {0, 0, 1, 1, 2, 2, 3};
    float p[7 * 5] = {0};
    for (int i = 0; i < 7; i++)
        p[i * 5 + pred[i]] = 1;
    cls_metrics m;
    metrics_classification(p, y, 7, 5, &m);
    KT_NEAR(m.f1, 0.45, 1e-12);
    KT_NEAR(m.accuracy, 4.0 / 7.0, 1e-12);
    /* Wrong rows give p(y) = 0, clamped at 1e-7: 3 of 7 rows cost -log 1e-7. */
    KT_NEAR(m.loss, -3 * log(1e-7) / 7, 1e-6);
}

static void test_directions(void)
{
    KT_EQ_INT(metrics_is_higher_better("accuracy"), 1);
    KT_EQ_INT(metrics_is_higher_better("f1"), 1);
    KT_EQ_INT(metrics_is_higher_better("auc"), 1);
    KT_EQ_INT(metrics_is_higher_better("silhouette"), 1);
    KT_EQ_INT(metrics_is_higher_better("loss"), 0);
    KT_EQ_INT(metrics_is_higher_better("wcss"), 0);
    KT_EQ_INT(metrics_is_higher_better("Accuracy"), -1);
    KT_EQ_INT(metrics_is_higher_better("precision"), -1);
    KT_EQ_INT(metrics_is_higher_better(""), -1);
    KT_EQ_INT(metrics_is_higher_better(NULL), -1);
}

int main(void)
{
    KT_RUN(test_binary_auc_with_ties);
    KT_RUN(test_binary_auc_extremes);
    KT_RUN(test_multiclass);
    KT_RUN(test_macro_f1_presence);
    KT_RUN(test_directions);
    return KT_DONE();
}
