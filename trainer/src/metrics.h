/* metrics: evaluation of class probabilities against labels: accuracy,
 * macro F1, AUC (two classes: ROC AUC of class 1's probability; more
 * classes: one-vs-rest macro average) and mean cross-entropy loss. The
 * metric keys used everywhere are accuracy, f1, auc, loss, wcss,
 * silhouette and k (see metrics_is_higher_better). */
#ifndef KILN_METRICS_H
#define KILN_METRICS_H

#include <stdint.h>

typedef struct cls_metrics {
    double accuracy;
    double f1;   /* macro F1 over classes that occur in y or in the predictions */
    double auc;
    double loss; /* mean -log p(y) with p clamped at 1e-7 */
} cls_metrics;

/* probs (n, n_classes) row-stochastic; y class ids. n >= 1. */
void metrics_classification(const float *probs, const int32_t *y, int n, int n_classes,
                            cls_metrics *out);

/* 1 for metrics where larger is better (accuracy, f1, auc, silhouette),
 * 0 for loss and wcss, -1 for an unknown key. */
int metrics_is_higher_better(const char *key);

#endif
