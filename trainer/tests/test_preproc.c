/* Unit tests for preproc: fitting (impute, one-hot, variance selection,
 * scaling), the three apply paths agreeing, apply-time errors, and the
 * JSON round trip and its validation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ktest.h"
#include "preproc.h"

/* Columns: a (numeric, one missing), color (categorical: blue, green,
 * red in the data dictionary), k (constant 5), id (dropped). */
static const char *names[4] = {"a", "color", "k", "id"};
static const uint8_t cat[4] = {0, 1, 0, 0};
static const uint8_t drop[4] = {0, 0, 0, 1};
static const int ncats[4] = {0, 3, 0, 0};
static const char *color_dict[3] = {"blue", "green", "red"};
static const char *const *dicts[4] = {NULL, color_dict, NULL, NULL};

/* 5 rows; color code 1 (green) only in row 4, which is not a training row
 * in the tests that pass rows {0,1,2,3}. */
static const float X[5 * 4] = {
    1,   0,   5, 100, /* blue */
    2,   2,   5, 101, /* red */
    NAN, 2,   5, 102, /* red */
    7,   NAN, 5, 103, /* missing color */
    4,   1,   5, 104, /* green */
};

static preproc_table_spec spec(void)
{
    preproc_table_spec s = {
        .n_inputs = 4,
        .names = names,
        .categorical = cat,
        .dropped = drop,
        .n_cats = ncats,
        .cats = dicts,
        .label_pos = 2,
        .source = "data.csv",
    };
    return s;
}

static preproc *fit(const char *impute, const char *scale, double vt, kiln_error *e)
{
    preproc_table_spec s = spec();
    static const int32_t rows[4] = {0, 1, 2, 3};
    preproc *pp = NULL;
    kiln_error_clear(e);
    preproc_fit_table(&s, X, rows, 4, impute, scale, vt, &pp, e);
    return pp;
}

static void test_fit_none_mean(void)
{
    kiln_error e = {0};
    preproc *pp = fit("mean", "none", 0, &e);
    KT_CHECK(pp != NULL);
    if (!pp)
        return;
    KT_EQ_INT(preproc_n_inputs(pp), 4);
    /* a, blue, red (green unseen in training), k; id dropped. */
    KT_EQ_INT(preproc_n_features(pp), 4);
    KT_CHECK(!strcmp(preproc_input_name(pp, 1), "color"));
    float out[5 * 4];
    KT_EQ_INT(preproc_apply_coded(pp, X, NULL, 5, out, &e), 0);
    /* Row 2: a missing -> mean of 1, 2, 7 = 10/3. */
    KT_NEAR(out[2 * 4 + 0], 10.0f / 3.0f, 1e-6);
    KT_NEAR(out[2 * 4 + 1], 0, 0);
    KT_NEAR(out[2 * 4 + 2], 1, 0);
    KT_NEAR(out[2 * 4 + 3], 5, 0);
    /* Row 3: missing color -> all zeros. Row 4: green is unknown -> zeros. */
    KT_NEAR(out[3 * 4 + 1] + out[3 * 4 + 2], 0, 0);
    KT_NEAR(out[4 * 4 + 1] + out[4 * 4 + 2], 0, 0);
    KT_NEAR(out[0 * 4 + 1], 1, 0);
    preproc_free(pp);
}

static void test_median_standard_variance(void)
{
    kiln_error e = {0};
    preproc *pp = fit("median", "standard", 0.0, &e);
    KT_CHECK(pp != NULL);
    if (!pp)
        return;
    float out[5 * 4];
    KT_EQ_INT(preproc_apply_coded(pp, X, NULL, 5, out, &e), 0);
    /* a over training rows with the median 2 filled: 1, 2, 2, 7. */
    double mean = 3, sd = sqrt(((4.0 + 1 + 1 + 16) / 4));
    KT_NEAR(out[0], (1 - mean) / sd, 1e-6);
    KT_NEAR(out[2 * 4], (2 - mean) / sd, 1e-6);
    /* The constant column stays (threshold 0 is off) and maps to 0. */
    KT_NEAR(out[3], 0, 0);
    preproc_free(pp);

    /* Threshold 0.2 drops k (variance 0) and keeps the rest; blue (p=.25,
     * var .1875) goes too. */
    pp = fit("mean", "minmax", 0.2, &e);
    KT_CHECK(pp != NULL);
    if (!pp)
        return;
    KT_EQ_INT(preproc_n_features(pp), 2);
    KT_EQ_INT(preproc_apply_coded(pp, X, NULL, 5, out, &e), 0);
    /* a in [1, 7] -> (a - 1) / 6. */
    KT_NEAR(out[0], 0, 0);
    KT_NEAR(out[2], 1.0 / 6, 1e-6);
    KT_NEAR(out[6], 1, 1e-6);
    preproc_free(pp);

    /* A threshold above every variance is an error that says so. */
    pp = fit("mean", "none", 1e9, &e);
    KT_CHECK(pp == NULL);
    KT_EQ_INT(e.code, KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "removes every feature");
}

static void test_all_missing_column(void)
{
    float x[3 * 1] = {NAN, NAN, NAN};
    const char *n1[1] = {"empty"};
    preproc_table_spec s = {.n_inputs = 1, .names = n1, .label_pos = -1, .source = "data.csv"};
    preproc *pp = NULL;
    kiln_error e = {0};
    KT_EQ_INT(preproc_fit_table(&s, x, NULL, 3, "mean", "standard", 0, &pp, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "data.csv: column 'empty' has no values in the training part");
    KT_STR_CONTAINS(e.msg, "impute=mean has nothing to use");
    KT_CHECK(pp == NULL);
}

static void test_apply_paths_agree(void)
{
    kiln_error e = {0};
    preproc *pp = fit("mean", "standard", 0, &e);
    KT_CHECK(pp != NULL);
    if (!pp)
        return;
    int nf = preproc_n_features(pp);
    float coded[4], viacells[4], viacells_label[4], viaraw[4];
    KT_EQ_INT(preproc_apply_coded(pp, X + 4, NULL, 1, coded, &e), 0);
    const char *cells[4] = {"2", "red", "5", "whatever"};
    KT_EQ_INT(preproc_apply_cells(pp, cells, 4, viacells, &e), 0);
    /* The label sits at position 2 of a full row and is skipped. */
    const char *cells5[5] = {"2", "red", "LABEL", "5", "x"};
    KT_EQ_INT(preproc_apply_cells(pp, cells5, 5, viacells_label, &e), 0);
    for (int k = 0; k < nf; k++) {
        KT_CHECK(coded[k] == viacells[k]);
        KT_CHECK(coded[k] == viacells_label[k]);
    }
    /* Missing cells and unknown categories. */
    const char *miss[4] = {"NA", "purple", "", "zz"};
    float a[4], b[4];
    KT_EQ_INT(preproc_apply_cells(pp, miss, 4, a, &e), 0);
    float rawrow[4] = {NAN, NAN, NAN, 0};
    KT_EQ_INT(preproc_apply(pp, rawrow, 1, b, &e), 0);
    for (int k = 0; k < nf; k++)
        KT_CHECK(a[k] == b[k]);
    /* Numeric text in a numeric column is an error naming the column. */
    const char *bad[4] = {"1", "red", "five", "1"};
    kiln_error_clear(&e);
    KT_EQ_INT(preproc_apply_cells(pp, bad, 4, viaraw, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "column 'k': 'five' is not a number");
    kiln_error_clear(&e);
    KT_EQ_INT(preproc_apply_cells(pp, bad, 3, viaraw, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "3 values given, expected 4");
    preproc_free(pp);
}

static void test_numeric_category_text(void)
{
    /* A categorical column whose categories include numbers: 3.0 given as
     * a float matches the text "3". */
    const char *n1[1] = {"grade"};
    const uint8_t c1[1] = {1};
    const int k1[1] = {3};
    const char *dict[3] = {"0.5", "3", "x"};
    const char *const *d1[1] = {dict};
    preproc_table_spec s = {.n_inputs = 1,
                            .names = n1,
                            .categorical = c1,
                            .n_cats = k1,
                            .cats = d1,
                            .label_pos = -1,
                            .source = "d.csv"};
    float x[3] = {0, 1, 2};
    preproc *pp = NULL;
    kiln_error e = {0};
    KT_EQ_INT(preproc_fit_table(&s, x, NULL, 3, "mean", "none", 0, &pp, &e), 0);
    if (!pp)
        return;
    float raw[2] = {3.0f, 0.5f}, out[6];
    KT_EQ_INT(preproc_apply(pp, raw, 2, out, &e), 0);
    KT_NEAR(out[0], 0, 0);
    KT_NEAR(out[1], 1, 0);
    KT_NEAR(out[3], 1, 0);
    preproc_free(pp);
}

/* JSON text of pp, printed. */
static char *text(const preproc *pp)
{
    cJSON *j = preproc_to_json(pp);
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    return s;
}

static void test_json_round_trip(void)
{
    kiln_error e = {0};
    preproc *pp = fit("median", "standard", 0.01, &e);
    KT_CHECK(pp != NULL);
    if (!pp)
        return;
    char *s1 = text(pp);
    cJSON *parsed = cJSON_Parse(s1);
    preproc *back = NULL;
    KT_EQ_INT(preproc_from_json(parsed, &back, &e), 0);
    KT_CHECK(back != NULL);
    if (back) {
        char *s2 = text(back);
        KT_CHECK(s2 && !strcmp(s1, s2));
        free(s2);
        KT_EQ_INT(preproc_n_features(back), preproc_n_features(pp));
        const char *cells[4] = {"1.1", "blue", "3", ""};
        float a[8], b[8];
        KT_EQ_INT(preproc_apply_cells(pp, cells, 4, a, &e), 0);
        KT_EQ_INT(preproc_apply_cells(back, cells, 4, b, &e), 0);
        KT_CHECK(!memcmp(a, b, (size_t)preproc_n_features(pp) * sizeof(float)));
    }
    cJSON_Delete(parsed);
    free(s1);
    preproc_free(back);
    preproc_free(pp);
}

static void test_image(void)
{
    uint8_t px[2 * 4] = {0, 10, 20, 30, 40, 50, 60, 255};
    preproc *pp = NULL;
    kiln_error e = {0};
    KT_EQ_INT(preproc_fit_image(2, 2, 1, px, NULL, NULL, 2, "minmax", &pp, &e), 0);
    if (!pp)
        return;
    float a, b;
    KT_CHECK(preproc_image_affine(pp, &a, &b));
    KT_NEAR(a, 1.0 / 255, 1e-9);
    KT_NEAR(b, 0, 0);
    KT_CHECK(!strcmp(preproc_input_name(pp, 3), "pixel3"));
    float raw[4] = {0, 255, 51, 102}, out[4];
    KT_EQ_INT(preproc_apply(pp, raw, 1, out, &e), 0);
    KT_NEAR(out[1], 1, 1e-6);
    KT_NEAR(out[2], 0.2, 1e-6);
    raw[0] = NAN;
    KT_EQ_INT(preproc_apply(pp, raw, 1, out, &e), KILN_EINVAL);
    preproc_free(pp);

    /* Standard: over rows {1} only -> pixels 40, 50, 60, 255. */
    int32_t rows[1] = {1};
    KT_EQ_INT(preproc_fit_image(2, 2, 1, px, NULL, rows, 1, "standard", &pp, &e), 0);
    if (!pp)
        return;
    preproc_image_affine(pp, &a, &b);
    double m = (40 + 50 + 60 + 255) / 4.0;
    double var =
        ((40 - m) * (40 - m) + (50 - m) * (50 - m) + (60 - m) * (60 - m) + (255 - m) * (255 - m)) /
        4;
    KT_NEAR(a, 1 / sqrt(var), 1e-7);
    KT_NEAR(b, -m / sqrt(var), 1e-6);
    char *s1 = text(pp);
    cJSON *j = cJSON_Parse(s1);
    preproc *back = NULL;
    KT_EQ_INT(preproc_from_json(j, &back, &e), 0);
    float a2 = 0, b2 = 0;
    if (back)
        preproc_image_affine(back, &a2, &b2);
    KT_CHECK(a2 == a && b2 == b);
    cJSON_Delete(j);
    free(s1);
    preproc_free(back);
    preproc_free(pp);
}

static int rejects(const char *json)
{
    cJSON *j = cJSON_Parse(json);
    preproc *pp = NULL;
    kiln_error e = {0};
    int rc = preproc_from_json(j, &pp, &e);
    int ok = rc == KILN_EINVAL && pp == NULL && e.msg[0];
    if (!ok)
        fprintf(stderr, "not rejected: %s (rc %d)\n", json, rc);
    preproc_free(pp);
    cJSON_Delete(j);
    return ok;
}

static void test_json_validation(void)
{
    KT_CHECK(rejects("null"));
    KT_CHECK(rejects("[]"));
    KT_CHECK(rejects("{\"kind\":\"tree\"}"));
    KT_CHECK(
        rejects("{\"kind\":\"image\",\"h\":0,\"w\":1,\"c\":1,\"scale\":\"none\",\"a\":1,\"b\":0}"));
    KT_CHECK(rejects("{\"kind\":\"image\",\"h\":100000,\"w\":100000,\"c\":3,\"scale\":\"none\","
                     "\"a\":1,\"b\":0}"));
    KT_CHECK(rejects(
        "{\"kind\":\"image\",\"h\":2,\"w\":2,\"c\":1,\"scale\":\"none\",\"a\":1e300,\"b\":0}"));
    KT_CHECK(rejects(
        "{\"kind\":\"image\",\"h\":2.5,\"w\":2,\"c\":1,\"scale\":\"none\",\"a\":1,\"b\":0}"));
    const char *head = "{\"kind\":\"table\",\"impute\":\"mean\",\"scale\":\"none\","
                       "\"varianceThreshold\":0,\"labelPosition\":-1,";
    char buf[1024];
#define T(rest) (snprintf(buf, sizeof buf, "%s%s", head, rest), rejects(buf))
    KT_CHECK(T("\"inputs\":[],\"features\":[]}"));
    KT_CHECK(T("\"inputs\":[{\"name\":\"a\",\"type\":\"numeric\"}],\"features\":[{\"input\":0,"
               "\"sub\":0,\"mul\":1}]}"));
    KT_CHECK(T("\"inputs\":[{\"name\":\"a\",\"type\":\"numeric\",\"fill\":1}],\"features\":[{"
               "\"input\":1,\"sub\":0,\"mul\":1}]}"));
    KT_CHECK(T("\"inputs\":[{\"name\":\"a\",\"type\":\"dropped\"}],\"features\":[{\"input\":0,"
               "\"sub\":0,\"mul\":1}]}"));
    KT_CHECK(T("\"inputs\":[{\"name\":\"a\",\"type\":\"categorical\",\"categories\":[\"b\",\"a\"]}]"
               ",\"features\":[{\"input\":0,\"category\":0,\"sub\":0,\"mul\":1}]}"));
    KT_CHECK(T("\"inputs\":[{\"name\":\"a\",\"type\":\"categorical\",\"categories\":[\"a\"]}],"
               "\"features\":[{\"input\":0,\"category\":1,\"sub\":0,\"mul\":1}]}"));
    KT_CHECK(T("\"inputs\":[{\"name\":\"a\",\"type\":\"categorical\",\"categories\":[1]}],"
               "\"features\":[{\"input\":0,\"category\":0,\"sub\":0,\"mul\":1}]}"));
    KT_CHECK(T("\"inputs\":[{\"name\":\"a\",\"type\":\"numeric\",\"fill\":1}],\"features\":[{"
               "\"input\":0,\"sub\":\"x\",\"mul\":1}]}"));
    KT_CHECK(T("\"inputs\":[{\"name\":\"a\",\"type\":\"numeric\",\"fill\":1}],\"features\":[{"
               "\"input\":0,\"category\":0,\"sub\":0,\"mul\":1}]}"));
    KT_CHECK(T("\"inputs\":[{\"type\":\"numeric\",\"fill\":1}],\"features\":[{\"input\":0,\"sub\":"
               "0,\"mul\":1}]}"));
    KT_CHECK(T("\"inputs\":{},\"features\":[]}"));
#undef T
    /* And the smallest valid table is accepted. */
    snprintf(buf, sizeof buf, "%s%s", head,
             "\"inputs\":[{\"name\":\"a\",\"type\":\"numeric\",\"fill\":1}],\"features\":[{"
             "\"input\":0,\"sub\":0,\"mul\":1}]}");
    cJSON *j = cJSON_Parse(buf);
    preproc *pp = NULL;
    kiln_error e = {0};
    KT_EQ_INT(preproc_from_json(j, &pp, &e), 0);
    preproc_free(pp);
    cJSON_Delete(j);
}

int main(void)
{
    KT_RUN(test_fit_none_mean);
    KT_RUN(test_median_standard_variance);
    KT_RUN(test_all_missing_column);
    KT_RUN(test_apply_paths_agree);
    KT_RUN(test_numeric_category_text);
    KT_RUN(test_json_round_trip);
    KT_RUN(test_image);
    KT_RUN(test_json_validation);
    return KT_DONE();
}
