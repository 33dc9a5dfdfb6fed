/* kube_yaml: YAML (and therefore JSON) text to a cJSON tree, via libyaml.
 *
 * Mappings become objects, sequences arrays. Scalars become strings, except
 * plain (unquoted) scalars that read as null, true/false or an integer or
 * float, which become JSON null, booleans and numbers, so a kubeconfig's
 * `insecure-skip-tls-verify: true` and a quoted "true" both work with the
 * kube_yaml_bool() reader. Only the first document is read. Aliases and
 * anchors are rejected (no billion-laughs expansion), as are nesting deeper
 * than 64 levels and duplicate keys (the later one would silently win).
 * The caller owns the returned tree (cJSON_Delete). */
#ifndef KUBE_YAML_H
#define KUBE_YAML_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"

/* flags for kube_yaml_parse */
#define KUBE_YAML_STRINGS 1 /* keep every non-null scalar a string (kubeconfig) */

/* Parses len bytes into *out (an empty document gives a JSON null).
 * Returns 0, KILN_EINVAL with line/column in err, or KILN_ENOMEM. */
int kube_yaml_parse(const char *text, size_t len, int flags, cJSON **out, kiln_error *err);

/* A string member of obj, or NULL (also for non-strings). */
const char *kube_yaml_str(const cJSON *obj, const char *key);

/* A boolean member: JSON true/false or the strings true/false in any case;
 * dflt when absent or anything else. */
int kube_yaml_bool(const cJSON *obj, const char *key, int dflt);

#endif
