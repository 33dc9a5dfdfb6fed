/* ctrl: the running controller: informers on TrainingJobs and their pods,
 * a work queue of job keys, and the reconcile step that computes a plan
 * with tj_plan and carries it out through the API (the only place that
 * writes). Leader election gates the workers: they run only while this
 * replica holds the Lease, and stop at once when it is lost.
 *
 * Ownership: ctrl_new returns an object freed by ctrl_free after
 * ctrl_stop; the client is borrowed and must outlive it. */
#ifndef KILN_CTRL_H
#define KILN_CTRL_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"
#include "kube_client.h"

typedef struct ctrl_opts {
    const char *ns;              /* namespace to watch; NULL: all */
    int workers;                 /* reconcile threads (2) */
    const char *trainer_image;   /* default trainer image; NULL: the CRD default */
    int leader_elect;            /* 1: take the Lease before reconciling */
    const char *lease_ns;        /* Lease namespace */
    const char *lease_name;      /* "kiln-controller" */
    int websocket_watches;       /* watch over WebSocket instead of chunked HTTP */
    int progress_events;         /* 1: post every trial's Normal events, not only outcomes */
} ctrl_opts;

typedef struct ctrl ctrl;

int ctrl_new(kube_client *c, const ctrl_opts *o, ctrl **out, kiln_error *err);
/* Starts informers (and the elector); workers start once the caches have
 * synced and, with leader election, once the Lease is held. */
int ctrl_start(ctrl *c, kiln_error *err);
void ctrl_stop(ctrl *c);
void ctrl_free(ctrl *c);

/* 1 when the caches have synced (readiness). */
int ctrl_ready(ctrl *c);
/* 1 while reconciling (leader, or no election). */
int ctrl_leading(ctrl *c);

/* Every cached TrainingJob as a new array (*out, cJSON_Delete) for the
 * dashboard. 0 or KILN_ENOMEM. */
int ctrl_list_jobs(ctrl *c, cJSON **out);

/* Prometheus text exposition of the controller's metrics into a malloc'd
 * string. */
char *ctrl_metrics_text(ctrl *c);

#endif
