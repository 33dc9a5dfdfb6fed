/* kl_table: meta.k8s.io/v1 Table output for `kubectl get`: columns per
 * built-in kind, CRD additionalPrinterColumns evaluated with a small
 * JSONPath subset, Age as a human duration.
 *
 * Returns new cJSON trees the caller deletes. */
#ifndef KL_TABLE_H
#define KL_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "kl_res.h"

/* A Table of objs. with_cols adds columnDefinitions (watch events carry
 * them only in the first event). include_object: "Object", "None" or
 * anything else for PartialObjectMetadata. now_sec: wall clock for ages. */
cJSON *kl_table_build(const kl_res *r, const cJSON *const *objs, size_t n, int with_cols,
                      const char *include_object, int64_t now_sec);

/* Kubernetes' short human duration ("5s", "3m20s", "2d4h", "<invalid>"). */
void kl_table_duration(int64_t seconds, char *buf, size_t n);

/* Evaluates a simple JSONPath (".a.b[0].c", ".conds[?(@.type==\"Ready\")].status")
 * against obj; the borrowed node or NULL. */
const cJSON *kl_table_jsonpath(const cJSON *obj, const char *path);

#endif
