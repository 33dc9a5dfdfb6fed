/* libFuzzer target: the incremental watch-stream parser. The input is fed
 * in pieces whose sizes come from the data itself, so chunk boundaries land
 * everywhere; every delivered event must be a JSON object. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "kube_watch.h"

static int on_event(void *ud, int type, cJSON *obj)
{
    long *n = ud;
    if (type < KUBE_EV_ADDED || type > KUBE_EV_ERROR || !cJSON_IsObject(obj))
        abort();
    (*n)++;
    cJSON_Delete(obj);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    long n = 0;
    kube_watch_parser p;
    kube_watch_parser_init(&p, 1 << 16, on_event, &n);
    size_t off = 0, step = size ? (size_t)(data[0] % 17) + 1 : 1;
    int rc = 0;
    while (off < size && rc == 0) {
        size_t len = size - off < step ? size - off : step;
        rc = kube_watch_parser_feed(&p, (const char *)data + off, len, NULL);
        off += len;
        step = (step * 7 + 3) % 31 + 1;
    }
    if (rc == 0)
        kube_watch_parser_finish(&p, NULL);
    kube_watch_parser_release(&p);
    return 0;
}
