/* metrics: classification metrics from class probabilities (accuracy,
 * macro F1, rank-based ROC AUC, cross-entropy) and the direction of every
 * metric key the trainer reports. */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

typedef struct scored {
    float score;
    int pos;
} scored;

static int cmp_scored(const void *a, const void *b)
{
    float x = ((const scored *)a)->score, y = ((const scored *)b)->score;
    return (x > y) - (x < y);
}

/* Predicted class: the largest probability, the lowest index on ties. */
static int argmax_row(const float *p, int n_classes)
{
    int best = 0;
    for (int c = 1; c < n_classes; c++)
        if (p[c] > p[best])
            best = c;
    return best;
}

/* ROC AUC of column c against "y == c", as the Mann-Whitney statistic:
 * the probability that a random positive scores above a random negative,
 * ties counting one half, computed from ranks where tied scores share
 * their average rank. Returns -1 when positives or negatives are missing
 * (the AUC is undefined; the caller reports 0.5, "no information"). A NaN
 * score ranks lowest, so the sort order stays well defined. */
static double auc_one_vs_rest(const float *probs, const int32_t *y, int n, int n_classes, int c,
                              scored *buf)
{
    int64_t npos = 0;
    for (int i = 0; i < n; i++) {
        float v = probs[(size_t)i * n_classes + c];
        buf[i].score = isnan(v) ? -INFINITY : v;
        buf[i].pos = y[i] == c;
        npos += buf[i].pos;
    }
    int64_t nneg = n - npos;
    if (npos == 0 || nneg == 0)
        return -1;
    qsort(buf, (size_t)n, sizeof *buf, cmp_scored);
    double rank_sum = 0; /* sum of the (1-based) ranks of the positives */
    for (int i = 0; i < n;) {
        int j = i;
        int64_t pos_in_tie = 0;
        while (j < n && buf[j].score == buf[i].score) {
            pos_in_tie += buf[j].pos;
            j++;
        }
        double avg_rank = (double)(i + 1 + j) / 2.0; /* ranks i+1 .. j */
        rank_sum += avg_rank * (double)pos_in_tie;
        i = j;
    }
    double u = rank_sum - (double)npos * (double)(npos + 1) / 2.0;
    return u / ((double)npos * (double)nneg);
}

/* ------------------------------------------------------------ API */

void metrics_classification(const float *probs, const int32_t *y, int n, int n_classes,
                            cls_metrics *out)
{
    memset(out, 0, sizeof *out);
    out->auc = 0.5;
    if (!probs || !y || n < 1 || n_classes < 1)
        return;
    int64_t *tp = calloc((size_t)n_classes, sizeof(int64_t));
    int64_t *fp = calloc((size_t)n_classes, sizeof(int64_t));
    int64_t *fn = calloc((size_t)n_classes, sizeof(int64_t));
    scored *buf = malloc((size_t)n * sizeof(scored));
    int64_t correct = 0;
    double loss = 0;
    for (int i = 0; i < n; i++) {
        const float *p = probs + (size_t)i * n_classes;
        int pred = argmax_row(p, n_classes);
        int yi = y[i];
        int valid = yi >= 0 && yi < n_classes;
        double py = valid ? p[yi] : 0.0;
        if (!(py >= 1e-7)) /* also catches NaN */
            py = 1e-7;
        if (py > 1)
            py = 1;
        loss -= log(py);
        if (pred == yi) {
            correct++;
            if (tp)
                tp[pred]++;
        } else if (tp && fp && fn) {
            fp[pred]++;
            if (valid)
                fn[yi]++;
        }
    }
    out->accuracy = (double)correct / n;
    out->loss = loss / n;
    if (tp && fp && fn) {
        /* A class counts when it occurs in y or in the predictions, i.e.
         * when tp + fp + fn > 0; its F1 is 2tp / (2tp + fp + fn). */
        double f1_sum = 0;
        int present = 0;
        for (int c = 0; c < n_classes; c++) {
            int64_t den = 2 * tp[c] + fp[c] + fn[c];
            if (den == 0)
                continue;
            f1_sum += 2.0 * (double)tp[c] / (double)den;
            present++;
        }
        out->f1 = present ? f1_sum / present : 0;
    } else {
        out->f1 = NAN;
    }
    if (n_classes == 2 && buf) {
        double a = auc_one_vs_rest(probs, y, n, n_classes, 1, buf);
        out->auc = a >= 0 ? a : 0.5;
    } else if (n_classes > 2 && buf) {
        /* Macro one-vs-rest over the classes with both positives and
         * negatives; the others have no defined AUC. */
        double sum = 0;
        int used = 0;
        for (int c = 0; c < n_classes; c++) {
            double a = auc_one_vs_rest(probs, y, n, n_classes, c, buf);
            if (a >= 0) {
                sum += a;
                used++;
            }
        }
        out->auc = used ? sum / used : 0.5;
    } else if (n_classes >= 2) {
        out->auc = NAN; /* out of memory */
    }
    free(tp);
    free(fp);
    free(fn);
    free(buf);
}

int metrics_is_higher_better(const char *key)
{
    static const char *const higher[] = {"accuracy", "f1", "auc", "silhouette"};
    static const char *const lower[] = {"loss", "wcss"};
    if (!key)
        return -1;
    for (size_t i = 0; i < sizeof higher / sizeof *higher; i++)
        if (!strcmp(key, higher[i]))
            return 1;
    for (size_t i = 0; i < sizeof lower / sizeof *lower; i++)
        if (!strcmp(key, lower[i]))
            return 0;
    return -1;
}
