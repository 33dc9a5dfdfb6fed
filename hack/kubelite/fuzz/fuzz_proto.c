/* libFuzzer target: the protobuf request decoder must reject any input
 * without crashing or reading out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "kl_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *o = NULL;
    if (kl_proto_decode(data, size, &o, NULL) == 0)
        cJSON_Delete(o);
    return 0;
}
