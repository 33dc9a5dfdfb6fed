/* Unit tests for kube_client over TLS against the fake server: CA and
 * client certificate as in-memory blobs, verification on by default,
 * insecure-skip-tls-verify, tls-server-name, the bearer token on https,
 * and a WebSocket watch over TLS. */
#include <curl/curl.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <stdlib.h>

#include "fakeapi.h"
#include "kt_util.h"
#include "ktest.h"
#include "kube_api.h"
#include "kube_obj.h"
#include "kube_watch.h"

static char last_auth[256];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void handler(void *ud, const fake_req *r, fake_conn *c)
{
    (void)ud;
    pthread_mutex_lock(&mu);
    snprintf(last_auth, sizeof last_auth, "%s", r->auth);
    pthread_mutex_unlock(&mu);
    if (r->ws_key[0]) {
        fake_ws_accept(c, r);
        const char *ev = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"w\"}}}\n";
        fake_ws_text(c, ev, strlen(ev));
        fake_ws_close(c);
        fake_sleep_ms(50);
        return;
    }
    fake_reply(c, 200, NULL, "{\"metadata\":{\"name\":\"tls-ok\"}}");
}

static fake_pki pki;

static kube_config *tls_config(const char *host, int port, int with_ca, int with_client)
{
    kube_config *c = calloc(1, sizeof *c);
    c->server = malloc(128);
    snprintf(c->server, 128, "https://%s:%d", host, port);
    c->namespace_ = strdup("default");
    if (with_ca) {
        c->ca_data = (unsigned char *)strdup(pki.ca_pem);
        c->ca_len = strlen(pki.ca_pem);
    }
    if (with_client) {
        c->cert_data = (unsigned char *)strdup(pki.client_cert);
        c->cert_len = strlen(pki.client_cert);
        c->key_data = (unsigned char *)strdup(pki.client_key);
        c->key_len = strlen(pki.client_key);
    }
    c->token = strdup("tls-token");
    return c;
}

static int get_ok(kube_config *cfg, kube_err *err)
{
    kube_client_opts o = {.max_retries = -1};
    kube_client *c = NULL;
    if (kube_client_new(cfg, &o, &c, NULL))
        return -100;
    cJSON *obj = NULL;
    int rc = kube_get(c, &kube_res_configmaps, "default", "x", &obj, err);
    if (rc == 0 && (!obj || strcmp(kube_obj_name(obj), "tls-ok") != 0))
        rc = -101;
    cJSON_Delete(obj);
    kube_client_free(c);
    return rc;
}

static int ws_events;
static int on_ws(void *ud, int type, cJSON *obj)
{
    (void)ud;
    if (type == KUBE_EV_ADDED && strcmp(kube_obj_name(obj), "w") == 0)
        ws_events++;
    cJSON_Delete(obj);
    return 0;
}

static void test_tls(void)
{
    fake_server *mtls = NULL, *plain = NULL;
    KT_EQ_INT(fake_start_tls(handler, NULL, &pki, 1, &mtls), 0);
    KT_EQ_INT(fake_start_tls(handler, NULL, &pki, 0, &plain), 0);
    kube_err err;
    kube_err_init(&err);
    /* CA + client certificate from memory, server demands the certificate */
    KT_EQ_INT(get_ok(tls_config("localhost", fake_port(mtls), 1, 1), &err), 0);
    pthread_mutex_lock(&mu);
    KT_CHECK(strcmp(last_auth, "Bearer tls-token") == 0);
    pthread_mutex_unlock(&mu);
    kube_err_release(&err);
    /* no client certificate: the handshake is refused */
    KT_EQ_INT(get_ok(tls_config("localhost", fake_port(mtls), 1, 0), &err), KILN_ENET);
    kube_err_release(&err);
    /* no CA: verification is on by default and fails */
    KT_EQ_INT(get_ok(tls_config("localhost", fake_port(plain), 0, 0), &err), KILN_ENET);
    kube_err_release(&err);
    /* ... unless the kubeconfig says insecure-skip-tls-verify */
    kube_config *ic = tls_config("localhost", fake_port(plain), 0, 0);
    ic->insecure = 1;
    KT_EQ_INT(get_ok(ic, &err), 0);
    kube_err_release(&err);
    /* the certificate names api.internal and localhost, not 127.0.0.1 */
    KT_EQ_INT(get_ok(tls_config("127.0.0.1", fake_port(plain), 1, 0), &err), KILN_ENET);
    kube_err_release(&err);
    kube_config *sn = tls_config("127.0.0.1", fake_port(plain), 1, 0);
    sn->tls_server_name = strdup("api.internal");
    KT_EQ_INT(get_ok(sn, &err), 0);
    kube_err_release(&err);
    /* WebSocket watch over TLS with the CA and client certificate from memory */
    kube_client *c = NULL;
    KT_EQ_INT(kube_client_new(tls_config("localhost", fake_port(mtls), 1, 1), NULL, &c, NULL), 0);
    kube_stream *s;
    KT_EQ_INT(kube_stream_new(&s), 0);
    kube_watch_opts wo = {.websocket = 1};
    ws_events = 0;
    KT_EQ_INT(kube_watch_run(c, s, &kube_res_configmaps, "default", &wo, on_ws, NULL, &err), 0);
    KT_EQ_INT(ws_events, 1);
    pthread_mutex_lock(&mu);
    KT_CHECK(strcmp(last_auth, "Bearer tls-token") == 0);
    pthread_mutex_unlock(&mu);
    kube_err_release(&err);
    kube_stream_free(s);
    kube_client_free(c);
    fake_stop(mtls);
    fake_stop(plain);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    lws_set_log_level(LLL_ERR, NULL);
    if (fake_make_pki(&pki, "DNS:localhost,DNS:api.internal") != 0)
        return 1;
    KT_RUN(test_tls);
    fake_pki_free(&pki);
    curl_global_cleanup();
    return KT_DONE();
}
