/* kl_res: the resource registry of kubelite: built-in kinds and the kinds
 * CRDs register, plus everything derived from it (both discovery forms and
 * the minimal OpenAPI v3 documents clients use for validation).
 *
 * Ownership: kl_reg_new()/kl_reg_free(). Resources are owned by the
 * registry; lookups return borrowed pointers that stay valid until the CRD
 * that made them is removed. Builders return new cJSON trees the caller
 * deletes. */
#ifndef KL_RES_H
#define KL_RES_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"

typedef struct kl_res {
    char *group;    /* "" for core */
    char *version;
    char *plural;
    char *singular;
    char *kind;
    char *list_kind;
    char *rkey;     /* storage key "group/plural" */
    int namespaced;
    int has_status;     /* status subresource */
    int has_scale;      /* scale subresource */
    int track_generation;
    int builtin;        /* strategic merge patch allowed; unconditional PUT */
    char *scale_spec;   /* ".spec.replicas" */
    char *scale_status; /* ".status.replicas" */
    char *scale_selector;
    char **short_names;
    size_t n_short;
    char **categories;
    size_t n_cat;
    cJSON *schema;        /* openAPIV3Schema (CRDs), owned; NULL for built-ins */
    cJSON *printer_cols;  /* additionalPrinterColumns (CRDs), owned */
    char *crd_name;       /* owning CRD's name, NULL for built-ins */
} kl_res;

typedef struct kl_reg kl_reg;

int kl_reg_new(kl_reg **out);
void kl_reg_free(kl_reg *reg);

/* The resource served at group/version/plural (group "" for core), or NULL. */
kl_res *kl_reg_find(kl_reg *reg, const char *group, const char *version, const char *plural);

/* Registers every served version of a CRD object (replacing earlier
 * registrations of the same CRD). Returns 0, KILN_EINVAL or KILN_ENOMEM. */
int kl_reg_add_crd(kl_reg *reg, const cJSON *crd, kiln_error *err);

/* Removes the resources of CRD `name`. */
void kl_reg_remove_crd(kl_reg *reg, const char *name);

/* Iteration over all resources. */
size_t kl_reg_count(const kl_reg *reg);
kl_res *kl_reg_at(kl_reg *reg, size_t i);

/* "apps/v1" or "v1" into buf. */
const char *kl_res_api_version(const kl_res *r, char *buf, size_t n);

/* Discovery. aggregated: the APIGroupDiscoveryList for /api (core=1) or
 * /apis (core=0); legacy: APIVersions / APIGroupList / APIGroup /
 * APIResourceList. Each returns NULL when nothing is served there. */
cJSON *kl_reg_discovery_aggregated(kl_reg *reg, int core);
cJSON *kl_reg_api_versions(kl_reg *reg, const char *server_addr);
cJSON *kl_reg_group_list(kl_reg *reg);
cJSON *kl_reg_group(kl_reg *reg, const char *group);
cJSON *kl_reg_resource_list(kl_reg *reg, const char *group, const char *version);

/* OpenAPI v3: the index and one group-version document ("api/v1",
 * "apis/apps/v1"). */
cJSON *kl_reg_openapi_index(kl_reg *reg);
cJSON *kl_reg_openapi_gv(kl_reg *reg, const char *gvpath);

#endif
