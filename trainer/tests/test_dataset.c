/* Unit tests for dataset: CSV and IDX loading from files, directories,
 * file:// and http:// URIs, gzip, the error catalogue, splits (test set,
 * stratified hold-out, k-fold, determinism) and a slice of Fashion-MNIST. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "dataset.h"
#include "ktest.h"
#include "source.h"

static char tmpdir[256];

/* ------------------------------------------------------------ fixtures */

static const char *path_of(const char *name)
{
    static char p[4][512];
    static int slot;
    slot = (slot + 1) % 4;
    snprintf(p[slot], sizeof p[slot], "%s/%s", tmpdir, name);
    return p[slot];
}

static void write_file(const char *name, const void *data, size_t n)
{
    FILE *f = fopen(path_of(name), "wb");
    if (!f)
        return;
    fwrite(data, 1, n, f);
    fclose(f);
}

static void write_text(const char *name, const char *text)
{
    write_file(name, text, strlen(text));
}

static void write_gz(const char *name, const void *data, size_t n)
{
    gzFile g = gzopen(path_of(name), "wb");
    if (!g)
        return;
    gzwrite(g, data, (unsigned)n);
    gzclose(g);
}

/* IDX bytes: header + payload into a malloc'd buffer. */
static uint8_t *idx_bytes(int type, int rank, const uint32_t *dims, const void *payload,
                          size_t plen, size_t *len)
{
    size_t h = 4 + 4 * (size_t)rank;
    uint8_t *b = malloc(h + plen + 1);
    b[0] = b[1] = 0;
    b[2] = (uint8_t)type;
    b[3] = (uint8_t)rank;
    for (int i = 0; i < rank; i++) {
        b[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
        b[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
        b[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
        b[7 + 4 * i] = (uint8_t)dims[i];
    }
    if (plen)
        memcpy(b + h, payload, plen);
    *len = h + plen;
    return b;
}

/* n images of h x w bytes (pixel = (i * 31 + j) % 256) and labels i % k. */
static void write_mnist(const char *prefix, int n, int h, int w, int k, int gz, int nlabels)
{
    size_t d = (size_t)h * (size_t)w;
    uint8_t *px = malloc((size_t)n * d), *lab = malloc((size_t)nlabels + 1);
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++)
            px[(size_t)i * d + j] = (uint8_t)((i * 31 + (int)j) % 256);
    for (int i = 0; i < nlabels; i++)
        lab[i] = (uint8_t)(i % k);
    uint32_t idims[3] = {(uint32_t)n, (uint32_t)h, (uint32_t)w}, ldims[1] = {(uint32_t)nlabels};
    size_t il, ll;
    uint8_t *ib = idx_bytes(0x08, 3, idims, px, (size_t)n * d, &il);
    uint8_t *lb = idx_bytes(0x08, 1, ldims, lab, (size_t)nlabels, &ll);
    char in[256], ln[256];
    snprintf(in, sizeof in, "%s-images-idx3-ubyte%s", prefix, gz ? ".gz" : "");
    snprintf(ln, sizeof ln, "%s-labels-idx1-ubyte%s", prefix, gz ? ".gz" : "");
    if (gz) {
        write_gz(in, ib, il);
        write_gz(ln, lb, ll);
    } else {
        write_file(in, ib, il);
        write_file(ln, lb, ll);
    }
    free(px);
    free(lab);
    free(ib);
    free(lb);
}

static data_opts opts(const char *uri)
{
    data_opts o = {
        .uri = uri,
        .validation_split = 0.2,
        .impute = "mean",
        .scale = "standard",
        .seed = 7,
    };
    return o;
}

/* Loads uri; returns the code, and the message in e. */
static int load(const data_opts *o, data_raw **raw, kiln_error *e)
{
    kiln_error_clear(e);
    *raw = NULL;
    return data_load(o, raw, e);
}

/* ------------------------------------------------------------ CSV */

static void test_csv_basic(void)
{
    /* 20 rows, 2 classes (a: 12 rows, b: 8 rows), a string column. */
    char text[4096] = "x,\"col, quoted\",kind,label\r\n";
    for (int i = 0; i < 20; i++) {
        char line[128];
        snprintf(line, sizeof line, "%d,%s,%s,%s\r\n", i, i % 5 == 0 ? "NA" : "1.5",
                 i % 3 == 0 ? "red" : (i % 3 == 1 ? "blue" : "\"gr\"\"een\""), i < 12 ? "a" : "b");
        strcat(text, line);
    }
    write_text("basic.csv", text);
    data_opts o = opts(path_of("basic.csv"));
    o.label = "label";
    data_raw *raw;
    kiln_error e;
    KT_EQ_INT(load(&o, &raw, &e), 0);
    if (!raw) {
        fprintf(stderr, "%s\n", e.msg);
        return;
    }
    KT_EQ_INT(data_raw_rows(raw), 20);
    data_split s;
    KT_EQ_INT(data_split_make(raw, &o, -1, &s, &e), 0);
    KT_EQ_INT(s.n_classes, 2);
    KT_CHECK(!strcmp(s.class_names[0], "a") && !strcmp(s.class_names[1], "b"));
    KT_EQ_INT(s.train.n, 16);
    KT_EQ_INT(s.val.n, 4);
    /* x, col, and 3 one-hot columns (blue, gr"een, red). */
    KT_EQ_INT(s.train.d, 5);
    KT_EQ_INT(preproc_n_inputs(s.pp), 3);
    KT_CHECK(!strcmp(preproc_input_name(s.pp, 1), "col, quoted"));
    KT_CHECK(s.train.x != NULL && s.train.xu8 == NULL);
    KT_CHECK(!s.is_image && !s.has_test_set);
    /* Stratified: 12 a -> 2.4, 8 b -> 1.6 held out; 4 total, 2 and 2. */
    int va = 0;
    for (int i = 0; i < s.val.n; i++)
        va += s.val.y[i] == 0;
    KT_EQ_INT(va, 2);
    /* Standard scaling fitted on train: train column means are ~0. */
    for (int k = 0; k < s.train.d; k++) {
        double m = 0;
        for (int i = 0; i < s.train.n; i++)
            m += s.train.x[(size_t)i * (size_t)s.train.d + (size_t)k];
        KT_NEAR(m / s.train.n, 0, 1e-5);
    }
    /* Every train and val row is exactly one file row, with its label:
     * the file's cells through preproc_apply_cells give the same features. */
    float feat[20][5];
    for (int i = 0; i < 20; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        const char *cells[4] = {num, i % 5 == 0 ? "NA" : "1.5",
                                i % 3 == 0 ? "red" : (i % 3 == 1 ? "blue" : "gr\"een"),
                                i < 12 ? "a" : "b"};
        KT_EQ_INT(preproc_apply_cells(s.pp, cells, 4, feat[i], &e), 0);
    }
    int used[20] = {0};
    const dataset *parts[2] = {&s.train, &s.val};
    for (int p = 0; p < 2; p++) {
        float *g = malloc((size_t)parts[p]->n * 5 * sizeof(float));
        dataset_gather(parts[p], NULL, parts[p]->n, g);
        for (int r = 0; r < parts[p]->n; r++) {
            int hit = -1;
            for (int i = 0; i < 20; i++)
                if (!memcmp(g + r * 5, feat[i], sizeof feat[i]))
                    hit = i;
            KT_CHECK(hit >= 0);
            if (hit >= 0) {
                used[hit]++;
                KT_EQ_INT(parts[p]->y[r], hit < 12 ? 0 : 1);
            }
        }
        free(g);
    }
    for (int i = 0; i < 20; i++)
        KT_EQ_INT(used[i], 1);

    /* Same seed: identical split; another seed: a different one. */
    data_split s2, s3;
    KT_EQ_INT(data_split_make(raw, &o, -1, &s2, &e), 0);
    KT_CHECK(s2.val.n == s.val.n &&
             !memcmp(s2.val.x, s.val.x, (size_t)s.val.n * (size_t)s.val.d * sizeof(float)));
    o.seed = 8;
    KT_EQ_INT(data_split_make(raw, &o, -1, &s3, &e), 0);
    int differs = s3.val.n != s.val.n ||
                  memcmp(s3.val.x, s.val.x, (size_t)s.val.n * (size_t)s.val.d * sizeof(float));
    KT_CHECK(differs);
    data_split_release(&s);
    data_split_release(&s2);
    data_split_release(&s3);
    data_raw_free(raw);
}

static void test_csv_kfold(void)
{
    char text[8192] = "f,g,y\n";
    for (int i = 0; i < 30; i++) {
        char line[64];
        snprintf(line, sizeof line, "%d,%d,%d\n", i, i * i % 7,
                 i % 3 == 0 ? 10 : (i % 3 == 1 ? 2 : 9));
        strcat(text, line);
    }
    write_text("kfold.csv", text);
    data_opts o = opts(path_of("kfold.csv"));
    o.label = "2"; /* by index */
    o.folds = 3;
    o.scale = "none";
    data_raw *raw;
    kiln_error e;
    KT_EQ_INT(load(&o, &raw, &e), 0);
    if (!raw)
        return;
    int seen[30] = {0};
    for (int f = 0; f < 3; f++) {
        data_split s;
        KT_EQ_INT(data_split_make(raw, &o, f, &s, &e), 0);
        /* Classes sort numerically: 2, 9, 10. */
        KT_EQ_INT(s.n_classes, 3);
        KT_CHECK(!strcmp(s.class_names[0], "2") && !strcmp(s.class_names[1], "9") &&
                 !strcmp(s.class_names[2], "10"));
        KT_EQ_INT(s.val.n, 10);
        KT_EQ_INT(s.train.n, 20);
        int per[3] = {0};
        for (int i = 0; i < s.val.n; i++) {
            int f0 = (int)s.val.x[(size_t)i * 2];
            seen[f0]++;
            per[s.val.y[i]]++;
        }
        KT_CHECK(per[0] >= 3 && per[1] >= 3 && per[2] >= 3);
        data_split_release(&s);
    }
    for (int i = 0; i < 30; i++)
        KT_EQ_INT(seen[i], 1);
    data_split s;
    kiln_error_clear(&e);
    KT_EQ_INT(data_split_make(raw, &o, 3, &s, &e), KILN_EINVAL);
    data_raw_free(raw);
}

static void test_csv_errors(void)
{
    data_raw *raw;
    kiln_error e;
    write_text("data.csv", "a,b,class\n1,2,x\n3,4,y\n");
    data_opts o = opts(path_of("data.csv"));
    o.label = "clas";
    KT_EQ_INT(load(&o, &raw, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "data.csv: label column 'clas' not found (columns: a, b, class)");
    o.label = "7";
    KT_EQ_INT(load(&o, &raw, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "label column index 7 is out of range");

    write_text("ragged.csv", "a,b,c,d,e\n1,2,3,4,5\n1,2,3,4,5\n1,2,3\n");
    o = opts(path_of("ragged.csv"));
    KT_EQ_INT(load(&o, &raw, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "ragged.csv: row 4 has 3 fields, expected 5");

    write_text("empty.csv", "");
    o = opts(path_of("empty.csv"));
    KT_EQ_INT(load(&o, &raw, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "empty.csv: the file is empty");

    write_text("header-only.csv", "a,b\n");
    o = opts(path_of("header-only.csv"));
    KT_EQ_INT(load(&o, &raw, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "no data rows");

    o = opts(path_of("missing.csv"));
    KT_EQ_INT(load(&o, &raw, &e), KILN_ENOTFOUND);
    KT_STR_CONTAINS(e.msg, "missing.csv: no such file");

    /* All-NaN column: impute has nothing to use, and says so. */
    write_text("nan.csv", "a,b,y\n1,NA,p\n2,nan,q\n3,,p\n4,NaN,q\n5,NA,p\n");
    o = opts(path_of("nan.csv"));
    o.label = "y";
    KT_EQ_INT(load(&o, &raw, &e), 0);
    if (raw) {
        data_split s;
        kiln_error_clear(&e);
        KT_EQ_INT(data_split_make(raw, &o, -1, &s, &e), KILN_EINVAL);
        KT_STR_CONTAINS(e.msg, "nan.csv: column 'b' has no values in the training part");
        data_raw_free(raw);
    }
    /* Dropping that column fixes it; dropping an unknown column fails. */
    const char *drops[1] = {"b"};
    o.drop_columns = drops;
    o.n_drop_columns = 1;
    KT_EQ_INT(load(&o, &raw, &e), 0);
    if (raw) {
        data_split s;
        KT_EQ_INT(data_split_make(raw, &o, -1, &s, &e), 0);
        KT_EQ_INT(s.train.d, 1);
        KT_EQ_INT(preproc_n_inputs(s.pp), 2);
        data_split_release(&s);
        data_raw_free(raw);
    }
    const char *bad_drop[1] = {"zz"};
    o.drop_columns = bad_drop;
    KT_EQ_INT(load(&o, &raw, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "dropColumns: column 'zz' not found (columns: a, b)");

    /* A missing label is named with its row. */
    write_text("nolabel.csv", "a,y\n1,p\n2,\n");
    o = opts(path_of("nolabel.csv"));
    o.label = "y";
    KT_EQ_INT(load(&o, &raw, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "row 3");
    KT_EQ_INT(load(&(data_opts){.uri = path_of("nolabel.csv"), .format = "parquet"}, &raw, &e),
              KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "data.format: 'parquet'");
}

static void test_csv_impute_drop_and_unlabelled(void)
{
    write_text("drop.csv", "a;b;y\n1;2;u\n;3;v\n4;NA;u\n5;6;v\n7;8;u\n9;10;v\n");
    data_opts o = opts(path_of("drop.csv"));
    o.label = "y";
    o.impute = "drop";
    o.validation_split = 0;
    o.scale = "none";
    data_raw *raw;
    kiln_error e;
    KT_EQ_INT(load(&o, &raw, &e), 0);
    if (!raw)
        return;
    KT_EQ_INT(data_raw_rows(raw), 4);
    data_split s;
    KT_EQ_INT(data_split_make(raw, &o, -1, &s, &e), 0);
    KT_EQ_INT(s.train.n, 4);
    KT_EQ_INT(s.val.n, 0);
    KT_NEAR(s.train.x[2], 5, 0);
    data_split_release(&s);
    data_raw_free(raw);

    /* No label: unlabelled, every column an input; max_samples cuts. */
    write_text("unl.csv", "1,2\n3,4\n5,6\n7,8\n9,10\n");
    o = opts(path_of("unl.csv"));
    o.max_samples = 4;
    o.validation_split = 0.25;
    KT_EQ_INT(load(&o, &raw, &e), 0);
    if (!raw)
        return;
    KT_EQ_INT(data_raw_rows(raw), 4);
    KT_EQ_INT(data_split_make(raw, &o, -1, &s, &e), 0);
    KT_EQ_INT(s.n_classes, 0);
    KT_CHECK(s.train.y == NULL);
    KT_EQ_INT(s.train.n, 3);
    KT_EQ_INT(s.val.n, 1);
    KT_CHECK(!strcmp(preproc_input_name(s.pp, 1), "c1"));
    data_split_release(&s);
    data_raw_free(raw);
}

static void test_csv_gzip_and_file_uri(void)
{
    const char *zipped = "h,y\n1,a\n2,b\n3,a\n4,b\n";
    write_gz("zipped.csv.gz", zipped, strlen(zipped));
    char uri[600];
    snprintf(uri, sizeof uri, "file://%s", path_of("zipped.csv.gz"));
    data_opts o = opts(uri);
    o.label = "y";
    data_raw *raw;
    kiln_error e;
    KT_EQ_INT(load(&o, &raw, &e), 0);
    if (raw)
        KT_EQ_INT(data_raw_rows(raw), 4);
    data_raw_free(raw);

    /* A corrupt gzip body: EINVAL naming the file. */
    size_t n = 0;
    uint8_t bad[64] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff};
    n = 30;
    write_file("corrupt.csv.gz", bad, n);
    o = opts(path_of("corrupt.csv.gz"));
    KT_EQ_INT(load(&o, &raw, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "corrupt.csv.gz: corrupt gzip data");
}

/* ------------------------------------------------------------ IDX */

static void test_idx_dir(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/mn", tmpdir);
    mkdir(dir, 0755);
    write_mnist("mn/train", 50, 4, 3, 5, 1, 50);
    write_mnist("mn/t10k", 10, 4, 3, 5, 1, 10);
    data_opts o = opts(dir);
    data_raw *raw;
    kiln_error e;
    KT_EQ_INT(load(&o, &raw, &e), 0);
    if (!raw) {
        fprintf(stderr, "%s\n", e.msg);
        return;
    }
    KT_EQ_INT(data_raw_rows(raw), 50);
    KT_CHECK(data_raw_has_test_set(raw));
    data_split s;
    KT_EQ_INT(data_split_make(raw, &o, -1, &s, &e), 0);
    KT_CHECK(s.is_image && s.has_test_set);
    KT_EQ_INT(s.h, 4);
    KT_EQ_INT(s.w, 3);
    KT_EQ_INT(s.c, 1);
    KT_EQ_INT(s.train.n, 50);
    KT_EQ_INT(s.val.n, 10);
    KT_EQ_INT(s.n_classes, 5);
    KT_CHECK(!strcmp(s.class_names[4], "4"));
    KT_CHECK(s.train.xu8 != NULL && s.train.x == NULL);
    KT_EQ_INT(s.val.y[7], 2);
    /* Features are pixel * scale + shift, equal to preproc_apply's. */
    float g[12], a[12], rawpx[12];
    int32_t idx[1] = {7};
    dataset_gather(&s.val, idx, 1, g);
    for (int j = 0; j < 12; j++)
        rawpx[j] = (float)((7 * 31 + j) % 256);
    KT_EQ_INT(preproc_apply(s.pp, rawpx, 1, a, &e), 0);
    KT_CHECK(!memcmp(g, a, sizeof g));
    data_split_release(&s);

    /* Hold-out and folds ignore the test set. */
    o.folds = 5;
    KT_EQ_INT(data_split_make(raw, &o, 2, &s, &e), 0);
    KT_EQ_INT(s.val.n, 10);
    KT_EQ_INT(s.train.n, 40);
    KT_CHECK(!s.has_test_set);
    KT_CHECK(s.train.rows != NULL);
    dataset_gather(&s.val, idx, 1, g);
    int src = s.val.rows[7];
    KT_NEAR(g[0], (float)((src * 31) % 256) * s.val.scale + s.val.shift, 1e-6);
    data_split_release(&s);
    data_raw_free(raw);

    /* max_samples keeps the first N training images and the whole test set. */
    o.max_samples = 20;
    KT_EQ_INT(load(&o, &raw, &e), 0);
    if (raw) {
        KT_EQ_INT(data_raw_rows(raw), 20);
        KT_EQ_INT(data_split_make(raw, &o, -1, &s, &e), 0);
        KT_EQ_INT(s.val.n, 10);
        data_split_release(&s);
        data_raw_free(raw);
    }
}

static void test_idx_errors(void)
{
    data_raw *raw;
    kiln_error e;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/bad", tmpdir);
    mkdir(dir, 0755);
    write_mnist("bad/train", 100, 2, 2, 3, 0, 7);
    data_opts o = opts(dir);
    KT_EQ_INT(load(&o, &raw, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "train-labels-idx1-ubyte: 7 labels for 100 images");

    /* A single images file with its -labels- sibling. */
    write_mnist("single", 30, 2, 2, 3, 0, 30);
    o = opts(path_of("single-images-idx3-ubyte"));
    KT_EQ_INT(load(&o, &raw, &e), 0);
    if (raw) {
        data_split s;
        KT_EQ_INT(data_split_make(raw, &o, -1, &s, &e), 0);
        KT_EQ_INT(s.n_classes, 3);
        KT_EQ_INT(s.train.n, 24);
        KT_EQ_INT(s.val.n, 6);
        data_split_release(&s);
        data_raw_free(raw);
    }

    uint32_t dims[3] = {1000000000u, 28, 28};
    uint8_t px[7840] = {0};
    size_t n;
    uint8_t *b = idx_bytes(0x08, 3, dims, px, sizeof px, &n);
    write_file("images.idx", b, n);
    free(b);
    o = opts(path_of("images.idx"));
    KT_EQ_INT(load(&o, &raw, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg,
                    "images.idx: header claims 1000000000 items of 784 bytes but the file holds "
                    "7840 bytes");

    write_file("empty-idx3-ubyte", "", 0);
    o = opts(path_of("empty-idx3-ubyte"));
    KT_EQ_INT(load(&o, &raw, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "empty-idx3-ubyte: the file is empty");

    write_file("magic-idx3-ubyte", "\x01\x02\x08\x03\x00\x00", 6);
    o = opts(path_of("magic-idx3-ubyte"));
    KT_EQ_INT(load(&o, &raw, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "wrong magic");

    dims[0] = 10;
    b = idx_bytes(0x08, 3, dims, px, 784 * 9 + 5, &n);
    write_gz("trunc-idx3-ubyte.gz", b, n);
    free(b);
    o = opts(path_of("trunc-idx3-ubyte.gz"));
    KT_EQ_INT(load(&o, &raw, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "trunc-idx3-ubyte.gz: header claims 10 items of 784 bytes");

    snprintf(dir, sizeof dir, "%s/nothing", tmpdir);
    mkdir(dir, 0755);
    o = opts(dir);
    KT_EQ_INT(load(&o, &raw, &e), KILN_ENOTFOUND);
    KT_STR_CONTAINS(e.msg, "no train-images-idx3-ubyte");
}

static void test_idx_types(void)
{
    /* Float rank-4 images (n, h, w, c) are materialized as floats. */
    float vals[3 * 2 * 2 * 3];
    uint8_t be[sizeof vals];
    for (int i = 0; i < 36; i++) {
        vals[i] = (float)i * 0.5f - 3;
        uint32_t u;
        memcpy(&u, &vals[i], 4);
        be[4 * i] = (uint8_t)(u >> 24);
        be[4 * i + 1] = (uint8_t)(u >> 16);
        be[4 * i + 2] = (uint8_t)(u >> 8);
        be[4 * i + 3] = (uint8_t)u;
    }
    uint32_t dims[4] = {3, 2, 2, 3};
    size_t n;
    uint8_t *b = idx_bytes(0x0D, 4, dims, be, sizeof be, &n);
    data_opts o = opts("mem");
    o.scale = "minmax";
    o.validation_split = 0;
    data_raw *raw = NULL;
    kiln_error e = {0};
    KT_EQ_INT(data_load_buffers(&o, "f.idx", b, n, NULL, NULL, 0, 1 << 20, &raw, &e), 0);
    free(b);
    if (raw) {
        data_split s;
        KT_EQ_INT(data_split_make(raw, &o, -1, &s, &e), 0);
        KT_CHECK(s.is_image);
        KT_EQ_INT(s.c, 3);
        KT_EQ_INT(s.n_classes, 0);
        KT_CHECK(s.train.x != NULL);
        KT_NEAR(s.train.x[0], 0, 1e-7);
        KT_NEAR(s.train.x[35], 1, 1e-6);
        data_split_release(&s);
        data_raw_free(raw);
    }
    /* Rank 2 int16 is a table with numeric columns c0, c1, and labels. */
    uint8_t t[8] = {0, 1, 0xff, 0xff, 0, 3, 0, 4};
    uint32_t d2[2] = {2, 2}, dl[1] = {2};
    uint8_t lab[2] = {1, 0};
    uint8_t *tb = idx_bytes(0x0B, 2, d2, t, 8, &n);
    size_t ln;
    uint8_t *lb = idx_bytes(0x08, 1, dl, lab, 2, &ln);
    o.scale = "none";
    KT_EQ_INT(data_load_buffers(&o, "t.idx", tb, n, "l.idx", lb, ln, 1 << 20, &raw, &e), 0);
    if (raw) {
        data_split s;
        KT_EQ_INT(data_split_make(raw, &o, -1, &s, &e), 0);
        KT_CHECK(!s.is_image);
        KT_EQ_INT(s.train.d, 2);
        KT_NEAR(s.train.x[1], -1, 0);
        KT_EQ_INT(s.train.y[0], 1);
        KT_CHECK(!strcmp(preproc_input_name(s.pp, 0), "c0"));
        data_split_release(&s);
        data_raw_free(raw);
    }
    /* Labels count differing from rows in the buffer path too. */
    dl[0] = 1;
    free(lb);
    lb = idx_bytes(0x08, 1, dl, lab, 1, &ln);
    kiln_error_clear(&e);
    KT_EQ_INT(data_load_buffers(&o, "t.idx", tb, n, "l.idx", lb, ln, 1 << 20, &raw, &e),
              KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "l.idx: 1 labels for 2 images");
    free(tb);
    free(lb);
}

/* The first 300 Fashion-MNIST images and labels, read through zlib only
 * as far as needed, become a small MNIST directory. */
static void test_fashion_mnist_slice(void)
{
    const char *base = "/usr/share/datasets/fashion-mnist";
    char ip[512], lp[512];
    snprintf(ip, sizeof ip, "%s/train-images-idx3-ubyte.gz", base);
    snprintf(lp, sizeof lp, "%s/train-labels-idx1-ubyte.gz", base);
    gzFile gi = gzopen(ip, "rb"), gl = gzopen(lp, "rb");
    KT_CHECK(gi && gl);
    if (!gi || !gl)
        return;
    enum { N = 300 };
    static uint8_t img[16 + N * 784], lab[8 + N];
    KT_EQ_INT(gzread(gi, img, sizeof img), (int)sizeof img);
    KT_EQ_INT(gzread(gl, lab, sizeof lab), (int)sizeof lab);
    gzclose(gi);
    gzclose(gl);
    img[4] = lab[4] = 0;
    img[5] = lab[5] = 0;
    img[6] = lab[6] = N >> 8;
    img[7] = lab[7] = N & 0xff;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/fm", tmpdir);
    mkdir(dir, 0755);
    write_gz("fm/train-images-idx3-ubyte.gz", img, sizeof img);
    write_file("fm/train-labels-idx1-ubyte", lab, sizeof lab);
    data_opts o = opts(dir);
    data_raw *raw;
    kiln_error e;
    KT_EQ_INT(load(&o, &raw, &e), 0);
    if (!raw)
        return;
    data_split s;
    KT_EQ_INT(data_split_make(raw, &o, -1, &s, &e), 0);
    KT_CHECK(!s.has_test_set);
    KT_EQ_INT(s.train.n + s.val.n, N);
    KT_EQ_INT(s.val.n, 60);
    KT_EQ_INT(s.n_classes, 10);
    KT_EQ_INT(s.h, 28);
    /* Standard scaling over the training pixels: mean 0, std 1. */
    double sum = 0, sum2 = 0;
    float *x = malloc((size_t)s.train.n * 784 * sizeof(float));
    dataset_gather(&s.train, NULL, s.train.n, x);
    for (size_t i = 0; i < (size_t)s.train.n * 784; i++) {
        sum += x[i];
        sum2 += (double)x[i] * x[i];
    }
    double cnt = (double)s.train.n * 784;
    KT_NEAR(sum / cnt, 0, 1e-4);
    KT_NEAR(sum2 / cnt, 1, 1e-3);
    /* Labels follow the rows: train row i is file row rows[i]. */
    int r = s.train.rows ? s.train.rows[5] : 5;
    KT_EQ_INT(s.train.y[5], lab[8 + r]);
    KT_NEAR(x[5 * 784 + 400], img[16 + r * 784 + 400] * s.train.scale + s.train.shift, 1e-6);
    free(x);
    data_split_release(&s);
    data_raw_free(raw);
}

/* ------------------------------------------------------------ http */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int wait_port(int port)
{
    for (int i = 0; i < 100; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            return 1;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static void test_http(void)
{
    const char *py = "/usr/bin/python3";
    KT_CHECK(access(py, X_OK) == 0);
    if (access(py, X_OK) != 0)
        return;
    int port = free_port();
    KT_CHECK(port > 0);
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/www", tmpdir);
    mkdir(dir, 0755);
    const char *dcsv = "a,y\n1,p\n2,q\n3,p\n4,q\n5,p\n";
    write_text("www/d.csv", dcsv);
    mkdir(path_of("www/mn"), 0755);
    write_mnist("www/mn/train", 20, 2, 2, 2, 1, 20);
    write_mnist("www/mn/t10k", 6, 2, 2, 2, 0, 6);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execl(py, py, "-m", "http.server", portstr, "--bind", "127.0.0.1", "--directory", dir,
              (char *)NULL);
        _exit(127);
    }
    KT_CHECK(pid > 0);
    if (pid <= 0)
        return;
    KT_CHECK(wait_port(port));
    char uri[256];
    data_raw *raw;
    kiln_error e;
    snprintf(uri, sizeof uri, "http://127.0.0.1:%d/d.csv", port);
    data_opts o = opts(uri);
    o.label = "y";
    KT_EQ_INT(load(&o, &raw, &e), 0);
    if (raw)
        KT_EQ_INT(data_raw_rows(raw), 5);
    data_raw_free(raw);

    snprintf(uri, sizeof uri, "http://127.0.0.1:%d/nope.csv", port);
    o.uri = uri;
    KT_EQ_INT(load(&o, &raw, &e), KILN_ENOTFOUND);
    KT_STR_CONTAINS(e.msg, "nope.csv: HTTP 404");

    /* The MNIST layout over HTTP: a URL ending in '/'. */
    snprintf(uri, sizeof uri, "http://127.0.0.1:%d/mn/", port);
    o = opts(uri);
    KT_EQ_INT(load(&o, &raw, &e), 0);
    if (raw) {
        KT_EQ_INT(data_raw_rows(raw), 20);
        KT_CHECK(data_raw_has_test_set(raw));
        data_raw_free(raw);
    } else {
        fprintf(stderr, "%s\n", e.msg);
    }

    /* The size cap holds for downloads. */
    snprintf(uri, sizeof uri, "http://127.0.0.1:%d/d.csv", port);
    source_buf b = {0};
    kiln_error_clear(&e);
    KT_EQ_INT(source_read(uri, 10, &b, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "larger than the 10-byte limit");
    KT_CHECK(b.data == NULL);
    kiln_error_clear(&e);
    KT_EQ_INT(source_read(uri, 100, &b, &e), 0);
    KT_EQ_INT(b.len, strlen(dcsv));
    KT_CHECK(b.data && !memcmp(b.data, dcsv, strlen(dcsv)));
    source_buf_release(&b);

    /* https to a plain-HTTP server: the TLS handshake fails, clearly. */
    snprintf(uri, sizeof uri, "https://127.0.0.1:%d/d.csv", port);
    o = opts(uri);
    KT_EQ_INT(load(&o, &raw, &e), KILN_ENET);
    KT_STR_CONTAINS(e.msg, "https://127.0.0.1:");

    /* Without the '/', the server answers with a page, not data. */
    snprintf(uri, sizeof uri, "http://127.0.0.1:%d/mn", port);
    o = opts(uri);
    KT_EQ_INT(load(&o, &raw, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "mn: this is an HTML page");

    /* Nothing listens on port 1: a transport error. */
    o = opts("http://127.0.0.1:1/x.csv");
    KT_EQ_INT(load(&o, &raw, &e), KILN_ENET);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

/* An HTTPS server with a self-signed certificate: the download must fail
 * certificate verification (it is on, and Kiln never turns it off). */
static void test_https_verifies(void)
{
    const char *py = "/usr/bin/python3", *ossl = "/usr/bin/openssl";
    KT_CHECK(access(py, X_OK) == 0 && access(ossl, X_OK) == 0);
    if (access(py, X_OK) != 0 || access(ossl, X_OK) != 0)
        return;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s req -x509 -newkey rsa:2048 -nodes -keyout '%s/key.pem' -out '%s/cert.pem' "
             "-days 1 -subj /CN=127.0.0.1 >/dev/null 2>&1",
             ossl, tmpdir, tmpdir);
    KT_EQ_INT(system(cmd), 0);
    write_text("tls.csv", "a,b\n1,2\n");
    int port = free_port();
    char script[1024];
    snprintf(script, sizeof script,
             "import http.server, ssl, functools\n"
             "h = functools.partial(http.server.SimpleHTTPRequestHandler, directory='%s')\n"
             "s = http.server.HTTPServer(('127.0.0.1', %d), h)\n"
             "c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
             "c.load_cert_chain('%s/cert.pem', '%s/key.pem')\n"
             "s.socket = c.wrap_socket(s.socket, server_side=True)\n"
             "s.serve_forever()\n",
             tmpdir, port, tmpdir, tmpdir);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execl(py, py, "-c", script, (char *)NULL);
        _exit(127);
    }
    KT_CHECK(pid > 0);
    if (pid <= 0)
        return;
    KT_CHECK(wait_port(port));
    char uri[256];
    snprintf(uri, sizeof uri, "https://127.0.0.1:%d/tls.csv", port);
    data_opts o = opts(uri);
    data_raw *raw;
    kiln_error e;
    KT_EQ_INT(load(&o, &raw, &e), KILN_ENET);
    KT_STR_CONTAINS(e.msg, "certificate");
    data_raw_free(raw);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kiln-test-dataset-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    KT_RUN(test_csv_basic);
    KT_RUN(test_csv_kfold);
    KT_RUN(test_csv_errors);
    KT_RUN(test_csv_impute_drop_and_unlabelled);
    KT_RUN(test_csv_gzip_and_file_uri);
    KT_RUN(test_idx_dir);
    KT_RUN(test_idx_errors);
    KT_RUN(test_idx_types);
    KT_RUN(test_fashion_mnist_slice);
    KT_RUN(test_http);
    KT_RUN(test_https_verifies);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    curl_global_cleanup();
    return KT_DONE();
}
