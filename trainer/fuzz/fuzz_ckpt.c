/* libFuzzer target: the checkpoint reader must reject any damaged input
 * cleanly (no crash, no leak, no read out of bounds). */
#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ckpt *c = NULL;
    kiln_error err = {0};
    if (ckpt_read_mem(data, size, "fuzz", &c, &err) == 0)
        ckpt_free(c);
    return 0;
}
