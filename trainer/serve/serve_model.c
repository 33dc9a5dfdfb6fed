/* serve_model: reference-counted served model and hot reload (see
 * serve_model.h). */
#include "serve_model.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "klog.h"
#include "serve_buf.h"

/* ======================================================================
 * serve_model
 * ====================================================================== */

/* "0", "7", "-3", "12": plain integers are written as JSON numbers */
static int plain_int(const char *s)
{
    const char *p = s;
    if (*p == '-')
        p++;
    if (!*p || strlen(p) > 15 || (*p == '0' && p[1]))
        return 0;
    for (; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return !(s[0] == '-' && s[1] == '0');
}

static void wrap_free(serve_model *sm)
{
    if (!sm)
        return;
    if (sm->label_json)
        for (int i = 0; i < sm->n_outputs; i++)
            free(sm->label_json[i]);
    free(sm->label_json);
    free(sm->label_len);
    free(sm->input_names);
    free(sm->path);
    model_free(sm->m);
    free(sm);
}

int serve_model_wrap(kiln_model *m, const char *path, serve_model **out)
{
    *out = NULL;
    serve_model *sm = calloc(1, sizeof *sm);
    if (!sm)
        return KILN_ENOMEM;
    sm->n_inputs = model_n_inputs(m);
    sm->n_outputs = model_n_outputs(m);
    sm->has_probs = strcmp(model_family(m), "kmeans") != 0;
    snprintf(sm->version, sizeof sm->version, "%s", model_version(m));
    sm->path = strdup(path);
    int n = sm->n_outputs > 0 ? sm->n_outputs : 0;
    sm->label_json = calloc((size_t)n + 1, sizeof *sm->label_json);
    sm->label_len = calloc((size_t)n + 1, sizeof *sm->label_len);
    if (!sm->path || !sm->label_json || !sm->label_len) {
        wrap_free(sm);
        return KILN_ENOMEM;
    }
    int numeric = 1;
    for (int i = 0; i < n; i++) {
        const char *l = model_output_label(m, i);
        if (!l || !plain_int(l))
            numeric = 0;
    }
    for (int i = 0; i < n; i++) {
        const char *l = model_output_label(m, i);
        char num[24];
        if (!l) {
            snprintf(num, sizeof num, "%d", i);
            l = num;
        }
        sbuf b;
        sbuf_init(&b, 0);
        int rc = numeric ? sbuf_puts(&b, l) : sbuf_json_str(&b, l);
        if (rc) {
            sbuf_release(&b);
            wrap_free(sm);
            return KILN_ENOMEM;
        }
        sm->label_json[i] = sbuf_data(&b); /* head is 0: the allocation itself */
        sm->label_len[i] = b.len;
    }
    /* "preprocessing": {"kind": "table", "inputs": [{"name": ...}, ...]} */
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(model_header(m), "preprocessing");
    const cJSON *ins = cJSON_GetObjectItemCaseSensitive(pp, "inputs");
    int nin = cJSON_IsArray(ins) ? cJSON_GetArraySize(ins) : 0;
    if (nin > 0 && (sm->input_names = calloc((size_t)nin, sizeof *sm->input_names)) != NULL) {
        for (const cJSON *e = ins->child; e; e = e->next) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
            if (cJSON_IsString(nm) && sm->n_input_names < nin)
                sm->input_names[sm->n_input_names++] = nm->valuestring;
        }
    }
    sm->labels.n = n;
    sm->labels.numeric = numeric;
    sm->labels.json = (const char *const *)sm->label_json;
    sm->labels.json_len = sm->label_len;
    atomic_init(&sm->refs, 1);
    sm->m = m;
    *out = sm;
    return 0;
}

void serve_model_put(serve_model *sm)
{
    if (sm && atomic_fetch_sub_explicit(&sm->refs, 1, memory_order_acq_rel) == 1)
        wrap_free(sm);
}

/* ======================================================================
 * holder
 * ====================================================================== */

int serve_holder_init(serve_holder *h, const char *path, serve_metrics *metrics)
{
    memset(h, 0, sizeof *h);
    h->path = strdup(path);
    if (!h->path)
        return KILN_ENOMEM;
    h->metrics = metrics;
    if (pthread_mutex_init(&h->mu, NULL)) {
        free(h->path);
        return KILN_EINTERNAL;
    }
    return 0;
}

void serve_holder_release(serve_holder *h)
{
    serve_model_put(h->cur);
    h->cur = NULL;
    pthread_mutex_destroy(&h->mu);
    free(h->path);
    h->path = NULL;
}

serve_model *serve_holder_get(serve_holder *h)
{
    pthread_mutex_lock(&h->mu);
    serve_model *sm = h->cur;
    if (sm)
        atomic_fetch_add_explicit(&sm->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&h->mu);
    return sm;
}

static int same_file(const serve_holder *h, const struct stat *st)
{
    return h->seen && h->dev == st->st_dev && h->ino == st->st_ino && h->size == st->st_size &&
           h->mtime.tv_sec == st->st_mtim.tv_sec && h->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

int serve_holder_check(serve_holder *h, int force)
{
    struct stat st;
    if (stat(h->path, &st)) {
        if (!h->missing_logged) {
            klog(KLOG_WARN, "model file not found; waiting for it", KS("path", h->path),
                 KS("error", strerror(errno)), KEND);
            h->missing_logged = 1;
        }
        return 0;
    }
    h->missing_logged = 0;
    if (!force && same_file(h, &st))
        return 0;
    h->seen = 1;
    h->dev = st.st_dev;
    h->ino = st.st_ino;
    h->size = st.st_size;
    h->mtime = st.st_mtim;

    /* Resolve first so the path we report is the file we actually read,
     * even if a symlink moves again while we load. */
    char real[PATH_MAX];
    const char *file = realpath(h->path, real) ? real : h->path;
    kiln_error err = {0};
    kiln_model *m = NULL;
    int rc = model_load(file, &m, &err);
    if (rc) {
        serve_metrics_reload(h->metrics, 0);
        klog(KLOG_ERROR, "model refused; the current model keeps serving", KS("path", file),
             KS("error", err.msg), KS("current", h->cur ? h->cur->version : ""), KEND);
        return rc;
    }
    serve_model *sm = NULL;
    if ((rc = serve_model_wrap(m, file, &sm)) != 0) {
        model_free(m);
        serve_metrics_reload(h->metrics, 0);
        klog(KLOG_ERROR, "model refused: out of memory", KS("path", file), KEND);
        return rc;
    }
    serve_model *old = h->cur; /* only this thread writes cur */
    if (old && !strcmp(old->version, sm->version) && !strcmp(old->path, sm->path)) {
        klog(KLOG_INFO, "model unchanged", KS("path", file), KS("version", old->version), KEND);
        serve_model_put(sm);
        return 0;
    }
    if (old && old->n_inputs != sm->n_inputs)
        klog(KLOG_WARN, "model input shape changed", KI("old_inputs", old->n_inputs),
             KI("new_inputs", sm->n_inputs), KS("path", file), KEND);
    pthread_mutex_lock(&h->mu);
    h->cur = sm;
    pthread_mutex_unlock(&h->mu);
    serve_metrics_reload(h->metrics, 1);
    klog(KLOG_INFO, old ? "model reloaded" : "model loaded", KS("path", file),
         KS("version", sm->version), KS("previous", old ? old->version : ""),
         KS("family", model_family(sm->m)), KI("inputs", sm->n_inputs),
         KI("outputs", sm->n_outputs), KEND);
    serve_model_put(old);
    return 1;
}
