/* libFuzzer target: ExecCredential parsing (exec plugin output). */
#include <stddef.h>
#include <stdint.h>

#include "kube_exec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kube_exec_cred c;
    if (kube_exec_parse((const char *)data, size, &c, NULL) == 0)
        kube_exec_cred_release(&c);
    return 0;
}
