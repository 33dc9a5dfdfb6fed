/* kjson_patch: JSON merge patch (RFC 7386) and JSON patch (RFC 6902) on
 * cJSON trees, as the Kubernetes API applies them.
 *
 * Both functions work in place on *doc and may replace the root (a merge
 * patch that is not an object replaces the whole document), so *doc is
 * reassigned. On failure *doc is left in an unspecified but valid state:
 * callers patch a copy and keep the original until success.
 * The patch itself is only read. */
#ifndef KJSON_PATCH_H
#define KJSON_PATCH_H

#include <cjson/cJSON.h>

#include "kiln_err.h"

/* RFC 7386: objects merge recursively, null deletes a member, anything else
 * replaces. Returns 0 or KILN_ENOMEM. */
int kjson_merge_patch(cJSON **doc, const cJSON *patch, kiln_error *err);

/* RFC 6902: ops is an array of {op, path, value|from}. Returns 0;
 * KILN_EINVAL when the patch is malformed (not an array, unknown op, bad
 * pointer syntax, missing value): the API answers 400; KILN_ECONFLICT when a
 * well-formed operation cannot be applied (failed test, missing target):
 * the API answers 422; KILN_ENOMEM. */
int kjson_patch_apply(cJSON **doc, const cJSON *ops, kiln_error *err);

/* Resolves an RFC 6901 pointer ("" is the root, "/a/0/b", ~0 and ~1
 * escapes). Returns the borrowed node or NULL. */
cJSON *kjson_pointer_get(cJSON *doc, const char *ptr);

/* Creates a merge patch that turns `from` into `to` (both objects):
 * changed members, null for removed members. Returns a new tree or NULL
 * when out of memory. */
cJSON *kjson_merge_diff(const cJSON *from, const cJSON *to);

#endif
