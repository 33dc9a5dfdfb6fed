/* kl_pki: the data directory's credentials: a CA and a serving certificate
 * (IP SAN 127.0.0.1, DNS localhost) made by the openssl tool on first
 * start, a client certificate signed by the same CA, a random bearer
 * token, and the kubeconfig (mode 0600) that points clients at them.
 * Existing files are reused, so a restarted kubelite keeps its identity. */
#ifndef KL_PKI_H
#define KL_PKI_H

#include <stddef.h>

#include "kiln_err.h"

/* Creates DIR/pki/{ca,server,client}.{crt,key} when missing. */
int kl_pki_ensure(const char *dir, kiln_error *err);

/* Reads or creates DIR/token (64 hex characters) into buf. */
int kl_pki_token(const char *dir, char *buf, size_t n, kiln_error *err);

/* This data dir's loopback network: a random second octet in 1..126 chosen
 * on first start and kept in DIR/net, so concurrent kubelites do not hand
 * out the same pod and service addresses. Returns it or a negative code. */
int kl_pki_net_octet(const char *dir, kiln_error *err);

/* Writes DIR/kubeconfig atomically with mode 0600. tls=0 writes an http
 * server URL and no CA. */
int kl_pki_kubeconfig(const char *dir, const char *host, int port, int tls, const char *token,
                      kiln_error *err);

#endif
