/* The libcurl multi interface on the libuv loop, for steward.http: libcurl says which sockets
 * to watch (one uv_poll each) and when to wake it (one uv_timer); we call
 * curl_multi_socket_action from those callbacks and hand finished transfers back to their
 * operation. A pool is one multi handle with its connection limits: requests that ask for the
 * same limits share it, so connections are kept alive and reused, and a burst of requests to
 * one host waits in libcurl's queue for a free connection instead of opening hundreds at once
 * (which overflows a slow server's accept queue). Few pools exist: MAX_POOLS per runtime. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "http_multi.h"

#define SENTINEL_MT "steward.http.multi"

#define MAX_POOLS 8

struct sock {
    uv_poll_t poll;
    curl_socket_t fd;
    http_pool_t *pool;
    struct sock *prev, *next;
};

struct http_pool {
    CURLM *multi;
    uv_timer_t *timer;
    long max_host, max_total;
    struct sock *socks;
};

static struct {
    int curl_ready; /* curl_global_init done; undone when the sentinel goes */
    http_pool_t pools[MAX_POOLS];
    int npools;
    /* Polls and timers are unref'd: idle keep-alive connections must not keep the loop
     * alive. This handle is ref'd exactly while a transfer is in flight. */
    uv_async_t *busy;
    http_xfer_t *xfers;
    size_t nxfers;
} M;

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void sock_close(struct sock *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        s->pool->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_close((uv_handle_t *)&s->poll, free_handle);
}

static void xfer_unlink(http_xfer_t *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        M.xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
    if (--M.nxfers == 0 && M.busy)
        uv_unref((uv_handle_t *)M.busy);
}

/* Hands every finished transfer back to its operation. Runs only from loop callbacks, after
 * curl_multi_socket_action returned, so operations may add or remove handles freely. */
static void check_done(http_pool_t *p)
{
    CURLMsg *msg;
    int left;
    while (p->multi && (msg = curl_multi_info_read(p->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        http_xfer_t *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(p->multi, easy);
        xfer_unlink(x);
        x->finish(x, rc);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sock *s = h->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    http_pool_t *p = s->pool; /* s may be freed inside socket_action */
    int running;
    curl_multi_socket_action(p->multi, s->fd, flags, &running);
    check_done(p);
}

static void on_timer(uv_timer_t *h)
{
    http_pool_t *p = h->data;
    int running;
    curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(p);
}

/* CURLMOPT_SOCKETFUNCTION: libcurl wants fd watched for `what`, or forgotten. */
static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    http_pool_t *p = userp;
    struct sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            sock_close(s);
            curl_multi_assign(p->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        if (uv_poll_init_socket(task_loop(), &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->fd = fd;
        s->pool = p;
        s->poll.data = s;
        uv_unref((uv_handle_t *)&s->poll);
        s->next = p->socks;
        if (p->socks)
            p->socks->prev = s;
        p->socks = s;
        curl_multi_assign(p->multi, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: never call socket_action from here; a 0 ms timer runs it on the
 * next loop iteration instead. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    http_pool_t *p = userp;
    if (timeout_ms < 0)
        uv_timer_stop(p->timer);
    else
        uv_timer_start(p->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static void pool_close(http_pool_t *p)
{
    /* The polls go first, while their sockets are still open; libcurl then closes its
     * cached connections without calling back into handles that are gone. */
    while (p->socks) {
        uv_poll_stop(&p->socks->poll);
        sock_close(p->socks);
    }
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, NULL);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, NULL);
    curl_multi_cleanup(p->multi);
    uv_close((uv_handle_t *)p->timer, free_handle);
}

/* Runs when the Lua state closes (after every task was cancelled): drops what is left and
 * closes the handles; their close callbacks free them on the runtime's last loop run. */
static int sentinel_gc(lua_State *L)
{
    (void)L;
    if (!M.curl_ready)
        return 0;
    while (M.xfers) {
        http_xfer_t *x = M.xfers;
        curl_multi_remove_handle(x->pool->multi, x->easy);
        xfer_unlink(x);
        x->release(x);
    }
    for (int i = 0; i < M.npools; i++)
        pool_close(&M.pools[i]);
    uv_close((uv_handle_t *)M.busy, free_handle);
    memset(&M, 0, sizeof M);
    curl_global_cleanup();
    return 0;
}

static void on_busy(uv_async_t *h)
{
    (void)h;
}

/* curl_global_init, the busy handle and the sentinel, once per runtime. 0 or -1. */
static int runtime_open(lua_State *L)
{
    if (M.curl_ready)
        return 0;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    M.busy = malloc(sizeof *M.busy);
    if (!M.busy) {
        curl_global_cleanup();
        return -1;
    }
    uv_async_init(task_loop(), M.busy, on_busy);
    uv_unref((uv_handle_t *)M.busy);
    M.curl_ready = 1;
    /* The sentinel lives in the registry until lua_close; its __gc tears the pools down. */
    lua_newuserdata(L, 1);
    if (luaL_newmetatable(L, SENTINEL_MT)) {
        lua_pushcfunction(L, sentinel_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, SENTINEL_MT);
    return 0;
}

http_pool_t *http_pool_get(lua_State *L, long max_host, long max_total, const char *fname)
{
    if (runtime_open(L) != 0)
        luaL_error(L, "%s: cannot initialise libcurl", fname);
    for (int i = 0; i < M.npools; i++)
        if (M.pools[i].max_host == max_host && M.pools[i].max_total == max_total)
            return &M.pools[i];
    if (M.npools == MAX_POOLS)
        luaL_error(L,
                   "%s: max_host_connections, max_total_connections: at most %d different "
                   "combinations per runtime (each is a pool of connections)",
                   fname, MAX_POOLS);
    http_pool_t *p = &M.pools[M.npools];
    p->timer = malloc(sizeof *p->timer);
    p->multi = curl_multi_init();
    if (!p->timer || !p->multi) {
        free(p->timer);
        if (p->multi)
            curl_multi_cleanup(p->multi);
        memset(p, 0, sizeof *p);
        luaL_error(L, "%s: cannot create a libcurl multi handle", fname);
    }
    M.npools++;
    p->max_host = max_host;
    p->max_total = max_total;
    uv_timer_init(task_loop(), p->timer);
    uv_unref((uv_handle_t *)p->timer);
    p->timer->data = p;
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p);
    /* Transfers over the limits wait in libcurl's queue for a connection to come free. */
    curl_multi_setopt(p->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host);
    curl_multi_setopt(p->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_total);
    return p;
}

int http_xfer_init(http_xfer_t *x, http_pool_t *pool)
{
    x->pool = pool;
    x->easy = curl_easy_init();
    if (!x->easy)
        return -1;
    x->errbuf[0] = 0;
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (char *)x);
    curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
    return 0;
}

static void xfer_cancel(task_wait_t *w)
{
    http_xfer_t *x = (http_xfer_t *)w;
    curl_multi_remove_handle(x->pool->multi, x->easy);
    xfer_unlink(x);
    x->release(x);
}

int http_xfer_suspend(lua_State *L, task_t *t, http_xfer_t *x, const char *fname)
{
    CURLMcode mc = curl_multi_add_handle(x->pool->multi, x->easy);
    if (mc != CURLM_OK) {
        x->release(x);
        return luaL_error(L, "%s: %s", fname, curl_multi_strerror(mc));
    }
    x->prev = NULL;
    x->next = M.xfers;
    if (M.xfers)
        M.xfers->prev = x;
    M.xfers = x;
    if (M.nxfers++ == 0)
        uv_ref((uv_handle_t *)M.busy);
    return task_suspend(L, t, &x->wait, xfer_cancel);
}

static const char *error_kind(CURLcode rc)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_COULDNT_CONNECT: return "connect";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return "resolve";
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_USE_SSL_FAILED: return "tls";
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_WEIRD_SERVER_REPLY: return "io";
    case CURLE_TOO_MANY_REDIRECTS: return "redirects";
    case CURLE_LOGIN_DENIED: return "auth";
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT: return "url";
    default: return "curl";
    }
}

int http_xfer_push_error(lua_State *L, http_xfer_t *x, CURLcode rc)
{
    lua_pushnil(L);
    if (x->errbuf[0]) {
        size_t n = strlen(x->errbuf);
        if (x->errbuf[n - 1] == '\n')
            x->errbuf[n - 1] = 0;
        lua_pushfstring(L, "%s: %s (%s)", x->what, curl_easy_strerror(rc), x->errbuf);
    } else {
        lua_pushfstring(L, "%s: %s", x->what, curl_easy_strerror(rc));
    }
    lua_pushstring(L, error_kind(rc));
    return 3;
}

const char *http_opt_string(lua_State *L, int idx, const char *field, const char *fname)
{
    lua_getfield(L, idx, field);
    const char *s = NULL;
    if (lua_type(L, -1) == LUA_TSTRING)
        s = lua_tostring(L, -1);
    else if (!lua_isnil(L, -1))
        luaL_error(L, "%s: %s: string expected, got %s", fname, field, luaL_typename(L, -1));
    lua_pop(L, 1); /* the string stays alive: the options table still holds it */
    return s;
}
