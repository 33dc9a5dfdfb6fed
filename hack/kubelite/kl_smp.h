/* kl_smp: strategic merge patch for the built-in kinds, driven by a table
 * of merge keys instead of Go struct tags.
 *
 * Maps merge recursively, null deletes, lists are replaced except the
 * merge-keyed lists (containers, env, volumes, ports, conditions, ...)
 * which merge element by element on their key; `finalizers` merges as a
 * set. Directives: $patch (replace/delete/merge), $retainKeys,
 * $deleteFromPrimitiveList/<list>, $setElementOrder/<list> (ignored).
 * Works in place on *doc (reassigned); the patch is only read. */
#ifndef KL_SMP_H
#define KL_SMP_H

#include <cjson/cJSON.h>

#include "kiln_err.h"

/* Returns 0, KILN_EINVAL (patch is not an object) or KILN_ENOMEM. */
int kl_smp_apply(cJSON **doc, const cJSON *patch, kiln_error *err);

/* The merge key for a list field name given a sample element (NULL when the
 * list is replaced wholesale); "" means a set of primitives. */
const char *kl_smp_merge_key(const char *field, const cJSON *sample);

#endif
