/* ctrl_dash: the controller's dashboard content: the snapshot of every
 * TrainingJob that GET /dashboard/ws pushes over its WebSocket (built from
 * the informer's cached jobs), and the self-contained page GET /dashboard
 * serves (inline CSS, JS and SVG charts; no external assets). ctrl_http
 * serves both; this module does no I/O.
 *
 * Snapshot shape:
 *   {"kind":"KilnDashboard","jobs":[{"namespace","name","phase","metric",
 *    "goal","maximize","best":{"name","value"}|null,"trialCount","message",
 *    "deleting","trials":[{"name","index","phase","value"|null,"metrics",
 *    "trainMetrics","startTime","completionTime"}]}]}
 * with jobs sorted by namespace and name, so an unchanged world gives the
 * same text and a client is only sent real changes.
 *
 * Ownership: ctrl_dash_snapshot returns a new tree (cJSON_Delete); the
 * page is static. */
#ifndef KILN_CTRL_DASH_H
#define KILN_CTRL_DASH_H

#include <cjson/cJSON.h>

#include "kiln_err.h"

/* jobs: an array of TrainingJob objects (borrowed). */
int ctrl_dash_snapshot(const cJSON *jobs, cJSON **out, kiln_error *err);

/* The dashboard page (HTML, UTF-8); do not free. */
const char *ctrl_dash_page(void);

#endif
