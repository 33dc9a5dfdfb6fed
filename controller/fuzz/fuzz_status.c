/* libFuzzer target: Status parsing of API error bodies, and printing the
 * result back (kstatus in kiln_common). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "kstatus.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kstatus s;
    kstatus_init(&s);
    int code = size ? 400 + data[0] % 200 : 500;
    if (kstatus_parse(&s, (const char *)data, size, code, NULL) == 0) {
        if (s.code == 0)
            abort(); /* a parsed Status always carries a code */
        char *txt = kstatus_to_string(&s);
        free(txt);
    }
    kstatus_release(&s);
    return 0;
}
