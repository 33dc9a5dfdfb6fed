/* kl_ssa: server-side apply field ownership, close to what the API server
 * keeps in metadata.managedFields (fieldsType FieldsV1).
 *
 * Ownership is tracked per (manager, operation) at the leaves of the
 * object ("f:spec" -> "f:replicas"); lists are leaves (atomic), which is
 * coarser than the real per-key list tracking but gives the behaviours
 * clients rely on: an apply conflicts (409) when it changes a field another
 * manager owns, unless force; a re-apply that omits a field it owned
 * removes it, while fields of other managers survive; non-apply writes
 * transfer the fields they change to their manager (operation Update).
 *
 * All functions work on caller-owned trees; nothing is retained. */
#ifndef KL_SSA_H
#define KL_SSA_H

#include <cjson/cJSON.h>

#include "kiln_err.h"
#include "kl_schema.h"

/* Applies cfg as manager onto cur (NULL: create). On success *out is the
 * new object (caller deletes) with managedFields updated. On conflicts
 * returns KILN_ECONFLICT and fills conflicts with ".data.a" style field
 * names, each prefixed by the owning manager as "manager\t.field".
 * smp: merge with strategic semantics (built-in kinds). status_sub: the
 * kind has a status subresource (status is not applied here). */
int kl_ssa_apply(const cJSON *cur, const cJSON *cfg, const char *manager, int force, int smp,
                 int status_sub, const char *api_version, cJSON **out, kl_strs *conflicts,
                 kiln_error *err);

/* Records a non-apply write by manager: leaves that differ between old
 * (NULL on create) and obj move to (manager, "Update"). obj is modified in
 * place (its managedFields). A NULL or empty manager records nothing. */
void kl_ssa_track_update(const cJSON *old, cJSON *obj, const char *manager,
                         const char *api_version, int status_sub);

#endif
