/* kiln-trainer: command-line entry point. Parses the arguments of train,
 * predict, inspect and clean, and hands serve to the model server. Exit codes:
 * 0 success, 2 bad input or bad config, 1 any other failure. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
            "  clean    --models DIR --job NAMESPACE/NAME [--report PATH]\n"
            "           deletes the job's trial directories DIR/NAMESPACE/NAME/t<N>\n"
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

/* ------------------------------------------------------------ clean */

/* A namespace or job name as Kubernetes allows them (DNS-1123 subdomain):
 * never empty, ".", "..", or anything with a slash, so the path built from
 * it cannot leave the models directory. */
static int k8s_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > 253 || s[0] == '.' || s[0] == '-' || s[len - 1] == '.' ||
        s[len - 1] == '-')
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

/* "t" followed by digits only: the name of a trial directory. */
static int trial_dir_name(const char *s)
{
    if (s[0] != 't' || !s[1])
        return 0;
    for (const char *p = s + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return 1;
}

/* Removes parent/name and everything below it without following symbolic
 * links (a link is removed, never its target) and without crossing into
 * another file system. */
static int rm_tree(int parent, const char *name, dev_t dev, int depth, long *files)
{
    if (depth > 32) {
        errno = ELOOP;
        return -1;
    }
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_dev != dev) {
        close(fd);
        errno = EXDEV;
        return -1;
    }
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        struct stat es;
        if (fstatat(fd, e->d_name, &es, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = errno == ENOENT ? 0 : -1;
            continue;
        }
        if (S_ISDIR(es.st_mode)) {
            rc = rm_tree(fd, e->d_name, dev, depth + 1, files);
        } else if (unlinkat(fd, e->d_name, 0) == 0) {
            (*files)++;
        } else if (errno != ENOENT) {
            rc = -1;
        }
    }
    closedir(d);
    if (!rc && unlinkat(parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
        rc = -1;
    return rc;
}

/* clean: the clean-up step of a deleted TrainingJob. Only the trial
 * directories t<N> directly under MODELS/NAMESPACE/NAME go (other jobs
 * sharing the volume keep their own directories), then the job's
 * directory and its namespace directory if they are left empty. A job
 * directory that does not exist is success: there is nothing to delete. */
static int cmd_clean(int argc, char **argv)
{
    const char *models = NULL, *job = NULL, *report_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            return fail_usage("clean: %s needs a value", argv[i]);
        if (!strcmp(argv[i], "--models"))
            models = argv[++i];
        else if (!strcmp(argv[i], "--job"))
            job = argv[++i];
        else if (!strcmp(argv[i], "--report"))
            report_path = argv[++i];
        else
            return fail_usage("clean: unexpected argument '%s'", argv[i]);
    }
    if (!models || !job)
        return fail_usage("clean: --models DIR and --job NAMESPACE/NAME are required%s", "");
    const char *slash = strchr(job, '/');
    if (!slash || !k8s_name_ok(job, (size_t)(slash - job)) ||
        !k8s_name_ok(slash + 1, strlen(slash + 1)))
        return fail_usage("clean: --job '%s' is not NAMESPACE/NAME", job);
    if (!report_path && access(DEFAULT_REPORT, W_OK) == 0)
        report_path = DEFAULT_REPORT;
    char ns[254], name[254];
    snprintf(ns, sizeof ns, "%.*s", (int)(slash - job), job);
    snprintf(name, sizeof name, "%s", slash + 1);

    long files = 0, dirs = 0, kept = 0;
    const char *what = NULL;
    int root = -1, nsfd = -1, jobfd = -1, rc = 0, eno = 0;
    struct stat st;
    root = open(models, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) {
        what = models;
        rc = -1;
    }
    /* Neither component may be a symbolic link out of the volume. */
    if (!rc && (nsfd = openat(root, ns, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        what = ns;
        rc = errno == ENOENT ? 1 : -1;
    }
    if (!rc && (jobfd = openat(nsfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        what = name;
        rc = errno == ENOENT ? 1 : -1;
    }
    if (!rc && fstat(jobfd, &st) != 0) {
        what = name;
        rc = -1;
    }
    DIR *d = !rc ? fdopendir(dup(jobfd)) : NULL;
    if (!rc && !d) {
        what = name;
        rc = -1;
    }
    struct dirent *e;
    while (d && !rc && (e = readdir(d)) != NULL) {
        struct stat es;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (!trial_dir_name(e->d_name) || fstatat(jobfd, e->d_name, &es, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISDIR(es.st_mode)) {
            kept++;
            continue;
        }
        if (rm_tree(jobfd, e->d_name, st.st_dev, 0, &files) != 0) {
            what = e->d_name;
            rc = -1;
        } else {
            dirs++;
        }
    }
    eno = errno;
    if (d)
        closedir(d);
    char err[2048] = "";
    if (rc < 0)
        snprintf(err, sizeof err, "%.256s/%s/%s: %.256s: %.200s", models, ns, name,
                 what ? what : "?", strerror(eno));
    if (!rc && kept == 0) {
        /* Left empty: the job's directory goes too (a failure here only
         * leaves an empty directory behind). */
        if (unlinkat(nsfd, name, AT_REMOVEDIR) != 0)
            kept += errno != ENOENT;
        (void)unlinkat(root, ns, AT_REMOVEDIR);
    }
    if (jobfd >= 0)
        close(jobfd);
    if (nsfd >= 0)
        close(nsfd);
    if (root >= 0)
        close(root);
    cJSON *report = cJSON_CreateObject();
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/%s/%s", models, ns, name);
    cJSON_AddStringToObject(report, "dir", dir);
    cJSON_AddNumberToObject(report, "removedDirs", (double)dirs);
    cJSON_AddNumberToObject(report, "removedFiles", (double)files);
    cJSON_AddNumberToObject(report, "kept", (double)kept);
    if (rc < 0)
        cJSON_AddStringToObject(report, "error", err);
    write_report(report_path, report);
    cJSON_Delete(report);
    if (rc < 0) {
        klog(KLOG_ERROR, err, KEND);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
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
    if (!strcmp(cmd, "clean"))
        return cmd_clean(argc - 1, argv + 1);
#if KILN_HAVE_SERVE
    if (!strcmp(cmd, "serve"))
        return serve_main(argc - 1, argv + 1);
#endif
    fprintf(stderr, "kiln-trainer: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
