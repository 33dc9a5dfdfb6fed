/* kiln-trainer: command-line entry point. Parses the arguments of train,
 * predict and inspect, and hands serve to the model server. Exit codes:
 * 0 success, 2 bad input or bad config, 1 any other failure. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <zlib.h>

#include "ckpt.h"
#include "config.h"
#include "klog.h"
#include "predict.h"
#include "train.h"

#if KILN_HAVE_SERVE
#include "serve.h"
#endif

#define REPORT_MAX 4096
#define DEFAULT_REPORT "/dev/termination-log"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kiln-trainer <command> [options]\n"
            "\n"
            "  train    --output DIR [--config FILE.json] [--config-json JSON] [--report PATH]\n"
            "           [--resume] [--warm-start MODEL] [--data URI] [--family F] [--epochs N] ...\n"
            "           every spec field also has a flag: --format --label --validation-split\n"
            "           --folds --max-samples --impute --scale --drop-columns --variance-threshold\n"
            "           --hidden 128,64 --activation --dropout --conv 8,16 --dense 64 --clusters\n"
            "           --max-clusters --batch-size --learning-rate --optimizer --momentum --seed\n"
            "           --patience --threads --metric --goal\n"
            "  serve    --model PATH --name NAME [--port 8080] [--address A]\n"
            "  predict  --model PATH --input FILE [--probabilities]   (CSV or IDX input)\n"
            "  inspect  PATH                                          (checkpoint as JSON)\n"
            "  version\n");
}

/* Exits 2 with one line on stderr (and the report, when it can be written). */
static int fail_usage(const char *fmt, const char *arg)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, arg);
    klog(KLOG_ERROR, msg, KEND);
    return 2;
}

static char *read_file(const char *path, kiln_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        kiln_fail(err, errno == ENOENT ? KILN_ENOTFOUND : KILN_EIO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + len, 1, cap - len - 1, f);
        len += r;
        if (r == 0)
            break;
        if (len + 1 == cap) {
            if (cap >= (16u << 20)) {
                kiln_fail(err, KILN_EINVAL, "%s: config larger than 16 MiB", path);
                free(buf);
                buf = NULL;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    else if (!err->code)
        kiln_fail(err, KILN_ENOMEM, "%s: out of memory", path);
    return buf;
}

/* Writes the report (at most 4096 bytes: the termination-message limit),
 * dropping optional parts when it would be longer. */
static void write_report(const char *path, cJSON *report)
{
    static const char *optional[] = {"cv", "trainMetrics", "params"};
    char *text = cJSON_PrintUnformatted(report);
    for (size_t i = 0; text && strlen(text) > REPORT_MAX && i < 3; i++) {
        free(text);
        cJSON_DeleteItemFromObjectCaseSensitive(report, optional[i]);
        text = cJSON_PrintUnformatted(report);
    }
    if (!text)
        return;
    if (path) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            size_t n = strlen(text);
            if (n > REPORT_MAX)
                n = REPORT_MAX;
            if (write(fd, text, n) != (ssize_t)n)
                klog(KLOG_WARN, "short write of the report", KS("path", path), KEND);
            close(fd);
        } else {
            klog(KLOG_WARN, "cannot write the report", KS("path", path), KS("error", strerror(errno)),
                 KEND);
        }
    }
    printf("%s\n", text);
    fflush(stdout);
    free(text);
}

static int cmd_train(int argc, char **argv)
{
    train_config cfg;
    config_init(&cfg);
    kiln_error err = {0};
    train_opts o = {.progress = stdout};
    const char *report_path = NULL;
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            rc = kiln_fail(&err, KILN_EINVAL, "train: unexpected argument '%s'", a);
            break;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        char key[64];
        const char *val;
        if (eq) {
            snprintf(key, sizeof key, "%.*s", (int)(eq - name), name);
            val = eq + 1;
        } else {
            snprintf(key, sizeof key, "%s", name);
            val = NULL;
        }
        if (!strcmp(key, "resume")) {
            o.resume = 1;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc) {
                rc = kiln_fail(&err, KILN_EINVAL, "--%s needs a value", key);
                break;
            }
            val = argv[++i];
        }
        if (!strcmp(key, "output")) {
            o.output_dir = val;
        } else if (!strcmp(key, "report")) {
            report_path = val;
        } else if (!strcmp(key, "warm-start")) {
            o.warm_start = val;
        } else if (!strcmp(key, "config")) {
            char *text = read_file(val, &err);
            rc = text ? config_apply_json_text(&cfg, text, val, &err) : err.code;
            free(text);
        } else if (!strcmp(key, "config-json")) {
            rc = config_apply_json_text(&cfg, val, "--config-json", &err);
        } else {
            rc = config_apply_flag(&cfg, key, val, &err);
            if (rc == KILN_ENOTFOUND)
                rc = kiln_fail(&err, KILN_EINVAL, "train: unknown option --%s", key);
        }
    }
    if (!report_path && access(DEFAULT_REPORT, W_OK) == 0)
        report_path = DEFAULT_REPORT;
    if (!rc && !o.output_dir)
        rc = kiln_fail(&err, KILN_EINVAL, "train: --output DIR is required");
    if (!rc)
        rc = config_validate(&cfg, &err);
    cJSON *report = NULL;
    if (!rc)
        rc = train_run(&cfg, &o, &report, &err);
    if (rc) {
        klog(KLOG_ERROR, err.msg[0] ? err.msg : kiln_strerror(rc), KEND);
        report = cJSON_CreateObject();
        cJSON_AddStringToObject(report, "error", err.msg[0] ? err.msg : kiln_strerror(rc));
        write_report(report_path, report);
    } else {
        write_report(report_path, report);
        klog(KLOG_INFO, "trial finished",
             KS("checkpoint", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(report, "checkpoint"))),
             KEND);
    }
    cJSON_Delete(report);
    config_release(&cfg);
    return train_exit_code(rc);
}

static int cmd_inspect(int argc, char **argv)
{
    if (argc != 2)
        return fail_usage("inspect: expected one checkpoint path%s", "");
    ckpt *c = NULL;
    kiln_error err = {0};
    int rc = ckpt_read(argv[1], &c, &err);
    if (rc) {
        klog(KLOG_ERROR, err.msg, KEND);
        return train_exit_code(rc);
    }
    cJSON *out = cJSON_Duplicate(ckpt_header(c), 1);
    char ver[16];
    snprintf(ver, sizeof ver, "%08x", ckpt_crc(c));
    cJSON_AddStringToObject(out, "version", ver);
    /* One CRC per section, so two runs can be compared weight for weight. */
    cJSON *secs = cJSON_GetObjectItemCaseSensitive(out, "sections");
    cJSON *s;
    cJSON_ArrayForEach(s, secs)
    {
        size_t n;
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "name"));
        const float *d = ckpt_section_data(c, name ? name : "", &n);
        char crc[16];
        snprintf(crc, sizeof crc, "%08lx", d ? crc32_z(0, (const Bytef *)d, n * sizeof(float)) : 0UL);
        cJSON_AddStringToObject(s, "crc32", crc);
    }
    char *text = cJSON_Print(out);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(out);
    ckpt_free(c);
    return 0;
}

static int cmd_predict(int argc, char **argv)
{
    const char *model = NULL, *input = NULL;
    int probs = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--probabilities"))
            probs = 1;
        else if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model = argv[++i];
        else if (!strcmp(argv[i], "--input") && i + 1 < argc)
            input = argv[++i];
        else
            return fail_usage("predict: unexpected argument '%s'", argv[i]);
    }
    if (!model || !input)
        return fail_usage("predict: --model PATH and --input FILE are required%s", "");
    kiln_error err = {0};
    int rc = predict_file(model, input, probs, stdout, &err);
    if (rc)
        klog(KLOG_ERROR, err.msg, KEND);
    return train_exit_code(rc);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    /* libcurl's global state is set up once, before any thread starts. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("kiln-trainer %s\n", KILN_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "train"))
        return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "inspect"))
        return cmd_inspect(argc - 1, argv + 1);
    if (!strcmp(cmd, "predict"))
        return cmd_predict(argc - 1, argv + 1);
#if KILN_HAVE_SERVE
    if (!strcmp(cmd, "serve"))
        return serve_main(argc - 1, argv + 1);
#endif
    fprintf(stderr, "kiln-trainer: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
