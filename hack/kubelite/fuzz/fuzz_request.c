/* libFuzzer target: whole API requests (method, path, query, content type
 * and body taken from the input) against an in-memory kubelite API, so
 * path routing, selectors, patches, schemas and tables see hostile input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kl_api.h"

static kl_api *api;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!api) {
        kl_api_opts o = {0};
        o.history = 64;
        if (kl_api_new(&o, &api, NULL) != 0)
            return 0;
        /* A CRD so custom-resource paths exist. */
        const char *crd = "{\"apiVersion\":\"apiextensions.k8s.io/v1\",\"kind\":\"CustomResourceDefinition\","
                          "\"metadata\":{\"name\":\"ws.f.dev\"},\"spec\":{\"group\":\"f.dev\",\"scope\":\"Namespaced\","
                          "\"names\":{\"plural\":\"ws\",\"kind\":\"W\"},\"versions\":[{\"name\":\"v1\",\"served\":true,"
                          "\"storage\":true,\"subresources\":{\"status\":{}},\"schema\":{\"openAPIV3Schema\":{\"type\":\"object\","
                          "\"properties\":{\"spec\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"maximum\":5}}}}}}}]}}";
        kl_req r;
        memset(&r, 0, sizeof(r));
        r.method = "POST";
        r.path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
        r.content_type = "application/json";
        r.body = crd;
        r.body_len = strlen(crd);
        kl_resp resp;
        kl_api_handle(api, &r, &resp);
        kl_resp_release(&resp);
    }
    /* Layout: method byte, then "path\nquery\ncontent-type\n" then body. */
    if (size < 2)
        return 0;
    static const char *methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    char *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 2] = 0;
    char *fields[3] = {buf, NULL, NULL};
    char *p = buf;
    for (int i = 1; i < 3 && p; i++) {
        p = strchr(p, '\n');
        if (p) {
            *p++ = 0;
            fields[i] = p;
        }
    }
    char *body = NULL;
    if (fields[2]) {
        body = strchr(fields[2], '\n');
        if (body)
            *body++ = 0;
    }
    kl_req r;
    memset(&r, 0, sizeof(r));
    r.method = methods[data[0] % 5];
    r.path = fields[0];
    char *q = fields[1];
    while (q && *q && r.nq < KL_MAX_QUERY) {
        char *amp = strchr(q, '&');
        if (amp)
            *amp = 0;
        char *eq = strchr(q, '=');
        if (eq)
            *eq = 0;
        r.qk[r.nq] = q;
        r.qv[r.nq] = eq ? eq + 1 : "";
        r.nq++;
        q = amp ? amp + 1 : NULL;
    }
    r.content_type = fields[2];
    r.accept = (data[0] & 8) ? "application/json;as=Table;v=v1;g=meta.k8s.io" : "application/json";
    r.body = body;
    r.body_len = body ? strlen(body) : 0;
    kl_resp resp;
    kl_api_handle(api, &r, &resp);
    if (resp.watch) {
        char *out = NULL;
        size_t len = 0;
        kl_api_watch_poll(api, resp.watch, &out, &len);
        free(out);
    }
    kl_resp_release(&resp);
    free(buf);
    return 0;
}
