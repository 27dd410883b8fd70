/* Private to steward.http: one libcurl multi handle per runtime, driven by the libuv loop,
 * and the transfer record that every HTTP request and SMTP send suspends its task on. */
#ifndef STEWARD_HTTP_MULTI_H
#define STEWARD_HTTP_MULTI_H

#include <curl/curl.h>
#include <lua.h>

#include "task.h"

/* Connection limits of the pool a request gives none for (docs/lua-api/http.md). */
#define HTTP_DEFAULT_MAX_HOST  8L
#define HTTP_DEFAULT_MAX_TOTAL 64L

typedef struct http_xfer http_xfer_t;
/* A multi handle and its connection limits; transfers asking for the same limits share it. */
typedef struct http_pool http_pool_t;

struct http_xfer {
    task_wait_t wait; /* first member: the task's cancel function is handed &wait */
    CURL *easy;
    http_pool_t *pool;
    /* The transfer ended (rc from libcurl); the easy handle is already out of the multi.
     * Wakes the task if it is still there, then frees everything. */
    void (*finish)(http_xfer_t *x, CURLcode rc);
    /* Frees everything without touching the task (cancelled, or runtime shutdown). */
    void (*release)(http_xfer_t *x);
    char errbuf[CURL_ERROR_SIZE];
    const char *what; /* "GET https://..." for error messages; owned by the operation */
    http_xfer_t *prev, *next;
};

/* The pool with these limits (0 = no limit), made on first use. Raises a Lua error naming
 * fname when there are too many different pools or libcurl cannot be set up. */
http_pool_t *http_pool_get(lua_State *L, long max_host, long max_total, const char *fname);
/* Creates x->easy with the options every transfer shares (no signals, error buffer,
 * private pointer), for `pool` (from http_pool_get, which also ran curl_global_init).
 * 0 or -1. */
int http_xfer_init(http_xfer_t *x, http_pool_t *pool);
/* Adds x to the multi handle and suspends the task on it; on failure raises a Lua error
 * after calling x->release. */
int http_xfer_suspend(lua_State *L, task_t *t, http_xfer_t *x, const char *fname);
/* Pushes nil, "<what>: <libcurl's reason>", kind; returns 3. */
int http_xfer_push_error(lua_State *L, http_xfer_t *x, CURLcode rc);

/* Reads an optional string field of the options table at idx, raising on a wrong type. */
const char *http_opt_string(lua_State *L, int idx, const char *field, const char *fname);

/* steward.http.send_mail (bindings/http_mail.c). */
int l_http_send_mail(lua_State *L);

#endif
