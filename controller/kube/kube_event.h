/* kube_event: records core/v1 Events about objects (kubectl describe).
 *
 * kube_event_record() posts an Event whose involvedObject is the given
 * object, with type Normal or Warning, a CamelCase reason, a message and
 * source.component. Identical events (same object, type, reason and
 * message) are aggregated as client-go does: the first is created with
 * count 1, repeats patch count and lastTimestamp of that Event (re-created
 * if it was deleted meanwhile). A token bucket per involved object (burst
 * 25, refilling one per 5 minutes by default, as client-go's spam filter)
 * limits noisy objects without silencing the others; throttled events are
 * dropped and counted, never queued. Posting runs in the caller's thread (a
 * worker), which must tolerate one API round trip.
 * Ownership: kube_recorder_new/free; the client is borrowed. */
#ifndef KUBE_EVENT_H
#define KUBE_EVENT_H

#include <cjson/cJSON.h>

#include "kube_client.h"

typedef struct kube_recorder kube_recorder;

typedef struct kube_recorder_opts {
    const char *component; /* source.component, e.g. "kiln-controller" (copied) */
    const char *host;      /* source.host / reportingInstance; NULL: hostname */
    double qps;            /* 0 -> 1/300 */
    int burst;             /* 0 -> 25 */
} kube_recorder_opts;

int kube_recorder_new(kube_client *c, const kube_recorder_opts *o, kube_recorder **out);
void kube_recorder_free(kube_recorder *r);

/* type: "Normal" or "Warning". Returns 0 (also when dropped by the rate
 * limit), or an error from the API. */
int kube_event_record(kube_recorder *r, const cJSON *involved, const char *type, const char *reason,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

typedef struct kube_recorder_stats {
    long created, aggregated, dropped, failed;
} kube_recorder_stats;

void kube_recorder_get_stats(kube_recorder *r, kube_recorder_stats *out);

#endif
