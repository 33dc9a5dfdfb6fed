/* kl_schema: OpenAPI v3 structural schemas of CRDs applied to custom
 * objects: pruning of unknown fields, defaulting and validation, with the
 * field paths and messages the real API server reports.
 *
 * The schema is the CRD version's openAPIV3Schema; the object is the whole
 * custom resource (apiVersion, kind and metadata are never pruned or
 * validated here). Causes go into a caller-owned kstatus; unknown field
 * paths into a caller-owned string list freed with kl_schema_strs_free(). */
#ifndef KL_SCHEMA_H
#define KL_SCHEMA_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "kstatus.h"

typedef struct kl_strs {
    char **v;
    size_t n;
} kl_strs;

void kl_schema_strs_free(kl_strs *s);

/* Removes fields the schema does not know (recording "spec.foo" style
 * paths in unknown, which may be NULL), then applies defaults. */
int kl_schema_prune_default(const cJSON *schema, cJSON *obj, kl_strs *unknown);

/* Validates obj; each violation is added as a cause to st. Returns the
 * number of violations (0 when valid) or KILN_ENOMEM. */
int kl_schema_validate(const cJSON *schema, const cJSON *obj, kstatus *st);

#endif
