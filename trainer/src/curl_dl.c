/* curl_dl: libcurl, loaded on first use (see curl_dl.h). */
#include "curl_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static curl_dl_fns fns;
static atomic_int loaded;
static char why[KILN_ERRMSG_MAX];

/* dlsym's result for a function, as the pointer type of dst. */
#define LOOKUP(h, dst, name)                                                                       \
    do {                                                                                           \
        void *p_ = dlsym(h, name);                                                                 \
        if (!p_) {                                                                                 \
            snprintf(why, sizeof why, "%s has no %s", CURL_DL_SONAME, name);                       \
            return;                                                                                \
        }                                                                                          \
        memcpy(&(dst), &p_, sizeof p_);                                                            \
    } while (0)

static void load(void)
{
    /* RTLD_LOCAL: libcurl's dependencies (OpenSSL among them) stay out of
     * the global namespace, so they cannot interpose on anything else. */
    void *h = dlopen(CURL_DL_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(why, sizeof why, "%s", e ? e : CURL_DL_SONAME ": cannot be loaded");
        return;
    }
    CURLcode (*global_init)(long flags);
    LOOKUP(h, global_init, "curl_global_init");
    LOOKUP(h, fns.easy_init, "curl_easy_init");
    LOOKUP(h, fns.easy_setopt, "curl_easy_setopt");
    LOOKUP(h, fns.easy_perform, "curl_easy_perform");
    LOOKUP(h, fns.easy_getinfo, "curl_easy_getinfo");
    LOOKUP(h, fns.easy_cleanup, "curl_easy_cleanup");
    LOOKUP(h, fns.easy_strerror, "curl_easy_strerror");
    CURLcode rc = global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        snprintf(why, sizeof why, "curl_global_init: %s", fns.easy_strerror(rc));
        return;
    }
    atomic_store(&loaded, 1);
}

const curl_dl_fns *curl_dl(kiln_error *err)
{
    pthread_once(&once, load);
    if (atomic_load(&loaded))
        return &fns;
    kiln_fail(err, KILN_EUNSUPPORTED, "http(s) data needs libcurl, which cannot be used here: %s",
              why);
    return NULL;
}
