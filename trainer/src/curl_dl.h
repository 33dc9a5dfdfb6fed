/* curl_dl: libcurl, loaded the first time a data source is an http(s) URL.
 *
 * libcurl brings some thirty shared libraries with it (TLS, HTTP/2, IDN,
 * LDAP, Kerberos, SSH...). Loading and relocating them took 4.5 ms of the
 * 9 ms of CPU a trainer process needed before doing anything, on every
 * trial and every serving pod, while most trials read a file:// or pvc://
 * path and never open a connection. So the trainer is not linked against
 * libcurl; the one module that fetches URLs (source.c) calls it through
 * the table below, which curl_dl() fills once with dlopen/dlsym and
 * curl_global_init.
 *
 * Thread-safe: the load happens once (pthread_once); later calls return
 * the same table, or the same error. Nothing is ever unloaded. */
#ifndef KILN_CURL_DL_H
#define KILN_CURL_DL_H

#include <curl/curl.h>

#include "kiln_err.h"

/* The soname loaded: libcurl's ABI has been .so.4 since 2006. */
#define CURL_DL_SONAME "libcurl.so.4"

typedef struct curl_dl_fns {
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *c, CURLoption opt, ...);
    CURLcode (*easy_perform)(CURL *c);
    CURLcode (*easy_getinfo)(CURL *c, CURLINFO info, ...);
    void (*easy_cleanup)(CURL *c);
    const char *(*easy_strerror)(CURLcode code);
} curl_dl_fns;

/* libcurl's functions, loaded and initialised on the first call; NULL
 * with KILN_EUNSUPPORTED (a permanent error: the trainer exits 2) and the
 * loader's reason in err when libcurl is missing or lacks one of them. */
const curl_dl_fns *curl_dl(kiln_error *err);

#endif
