/* kl_proto: decoding of the Kubernetes protobuf envelope ("k8s\0" +
 * runtime.Unknown) for the few kinds real clients send that way: v1 Secret
 * and DeleteOptions (helm), ConfigMap and Namespace (kubectl create ...),
 * apps/v1 Deployment (kubectl create deployment) and v1 Pod (client-go
 * typed clients). Deployments and pods are decoded through per-message
 * field tables covering the fields kubelite acts on (metadata, replicas,
 * selector, strategy, template, PodSpec with containers, init containers,
 * ports, env, resources, volume mounts, probes, volumes); other fields are
 * skipped. The result is the JSON object the same request would have
 * carried. Replies are never protobuf. */
#ifndef KL_PROTO_H
#define KL_PROTO_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"

/* Decodes body into a new JSON object (*out, caller deletes). Returns 0,
 * KILN_EINVAL (malformed), KILN_EUNSUPPORTED (a kind we do not decode; the
 * kind is named in err) or KILN_ENOMEM. */
int kl_proto_decode(const unsigned char *body, size_t len, cJSON **out, kiln_error *err);

/* Standard base64 of n bytes: a malloc'd NUL-terminated string or NULL. */
char *kl_base64(const unsigned char *p, size_t n);

#endif
