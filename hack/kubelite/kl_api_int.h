/* kl_api_int: what the kl_api_*.c files share and nothing else includes:
 * the kl_api state, the resolved request target, small JSON and query
 * helpers (static inline, so each file keeps them private), and the
 * functions one part of the REST layer calls in another. Every function
 * here follows kl_api.h's rules: responses are filled in the kl_resp, cJSON
 * arguments are borrowed unless a comment says "takes". */
#ifndef KL_API_INT_H
#define KL_API_INT_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "klabels.h"
#include "kl_api.h"
#include "kstatus.h"

struct kl_api {
    kl_reg *reg;
    kl_store *st;
    char addr[64];
    FILE *reqlog;
    kl_faults faults;
    unsigned svc_next; /* next cluster IP host number */
    int net;           /* second octet of pod addresses */
    kl_log_fn log_fn;
    void *log_ctx;
    kl_pod_delete_fn pod_del_fn;
    void *pod_del_ctx;
    kl_kill_fn kill_fn;
    void *kill_ctx;
};

/* A resource URL resolved against the registry. */
typedef struct target {
    kl_res *res;
    char ns[254];
    char name[254];
    char sub[32];
    int has_ns, has_name;
} target;

/* ---- small helpers ---- */

static inline const char *q(const kl_req *r, const char *k)
{
    for (int i = 0; i < r->nq; i++)
        if (strcmp(r->qk[i], k) == 0)
            return r->qv[i];
    return NULL;
}

/* Go's strconv.ParseBool truth values. */
static inline int qbool(const kl_req *r, const char *k)
{
    const char *v = q(r, k);
    if (!v)
        return 0;
    return !strcmp(v, "1") || !strcmp(v, "t") || !strcmp(v, "T") || !strcmp(v, "true") ||
           !strcmp(v, "TRUE") || !strcmp(v, "True");
}

static inline const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Like jstr, but "" instead of NULL, for formatting. */
static inline const char *jstr0(const cJSON *o, const char *k)
{
    const char *s = jstr(o, k);
    return s ? s : "";
}

static inline cJSON *jobj(cJSON *o, const char *k)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsObject(v)) {
        cJSON_DeleteItemFromObjectCaseSensitive(o, k);
        v = cJSON_AddObjectToObject(o, k);
    }
    return v;
}

static inline void jset(cJSON *o, const char *k, cJSON *v)
{
    if (!o || !v) {
        cJSON_Delete(v);
        return;
    }
    if (cJSON_GetObjectItemCaseSensitive(o, k))
        cJSON_ReplaceItemInObjectCaseSensitive(o, k, v);
    else
        cJSON_AddItemToObject(o, k, v);
}

static inline void jset_str(cJSON *o, const char *k, const char *s)
{
    jset(o, k, cJSON_CreateString(s));
}

static inline cJSON *meta(const cJSON *o)
{
    return cJSON_GetObjectItemCaseSensitive(o, "metadata");
}

static inline int has_finalizers(const cJSON *obj)
{
    return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(meta(obj), "finalizers")) > 0;
}

static inline int wants_table(const kl_req *req)
{
    return req->accept && strstr(req->accept, "as=Table") != NULL;
}

static inline int dry_run(const kl_req *req)
{
    const char *d = q(req, "dryRun");
    return d && d[0];
}

/* ---- Status replies (kl_api.c) ---- */

/* "plural.group" (or "plural" for core) into buf. */
void kla_qualified(const kl_res *r, char *buf, size_t n);
void kla_not_found(kl_resp *resp, const kl_res *r, const char *name);
void kla_conflict(kl_resp *resp, const kl_res *r, const char *name);
void kla_bad_request(kl_resp *resp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 422 Invalid with the causes listed in the message. */
void kla_invalid(kl_resp *resp, const kl_res *r, const char *name, kstatus *causes);
void kla_invalid1(kl_resp *resp, const kl_res *r, const char *name, const char *reason,
                  const char *field, const char *msg);
/* Replies with obj printed (borrowed: no copy is made). */
void kla_json_of(kl_resp *resp, int code, const cJSON *obj);
/* Replies with stored, the object a write just stored: the text the store
 * printed for its log and watchers (the event of stored's resourceVersion)
 * while its history holds that event, else stored printed again. */
void kla_json_stored(kl_api *api, kl_resp *resp, int code, const cJSON *stored);
/* The request body as JSON (or decoded protobuf); NULL with resp filled. */
cJSON *kla_decode_body(const kl_req *req, kl_resp *resp);

/* ---- admission (kl_api_admit.c) ---- */

/* Kind-specific defaulting and validation; old is NULL on create. Returns 0
 * or fills resp with an error. */
int kla_admit(kl_api *api, const kl_res *r, const cJSON *old, cJSON *obj, const kl_req *req,
              kl_resp *resp);

/* ---- reads: selectors, list, watch (kl_api_list.c) ---- */

int kla_sel_match(const klabels_sel *l, const klabels_sel *f, const cJSON *obj);
/* Parses labelSelector and fieldSelector; -1 with resp filled on error. */
int kla_parse_sels(const kl_req *req, klabels_sel **l, klabels_sel **f, kl_resp *resp);
/* A copy of obj as served at r's version (caller deletes). */
cJSON *kla_as_version(const kl_res *r, const cJSON *obj);
/* Replies with obj, as a Table when the client asked for one. */
void kla_reply_obj(kl_resp *resp, int code, const kl_res *r, const cJSON *obj, const kl_req *req);
void kla_list(kl_api *api, const target *t, const kl_req *req, kl_resp *resp);
void kla_watch(kl_api *api, const target *t, const kl_req *req, kl_resp *resp);

/* ---- writes (kl_api_write.c) ---- */

void kla_get(kl_api *api, const target *t, const kl_req *req, kl_resp *resp);
void kla_create(kl_api *api, const target *t, const kl_req *req, kl_resp *resp);
void kla_update(kl_api *api, const target *t, const kl_req *req, kl_resp *resp);
void kla_patch(kl_api *api, const target *t, const kl_req *req, kl_resp *resp);

/* ---- deletion (kl_api_delete.c) ---- */

/* Removes a CRD's objects and its resources. */
void kla_crd_cleanup(kl_api *api, const cJSON *crd);
void kla_delete(kl_api *api, const target *t, const kl_req *req, kl_resp *resp);
void kla_delete_collection(kl_api *api, const target *t, const kl_req *req, kl_resp *resp);

#endif
