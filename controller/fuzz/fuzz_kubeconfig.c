/* libFuzzer target: kubeconfig parsing (libyaml -> cJSON -> kube_config). */
#include <stddef.h>
#include <stdint.h>

#include "kube_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kube_config *c = NULL;
    kiln_error e = {0};
    /* the first byte picks between current-context and an explicit one */
    const char *ctx = size && (data[0] & 1) ? "dev" : NULL;
    if (kube_config_parse((const char *)data, size, "/tmp", ctx, &c, &e) == 0)
        kube_config_free(c);
    return 0;
}
