/* The libcurl multi interface on the libuv loop, for steward.http: libcurl says which sockets
 * to watch (one uv_poll each) and when to wake it (one uv_timer); we call
 * curl_multi_socket_action from those callbacks and hand finished transfers back to their
 * operation. One multi handle per runtime, so connections are kept alive and reused. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "http_multi.h"

#define SENTINEL_MT "steward.http.multi"

struct sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct sock *prev, *next;
};

static struct {
    CURLM *multi;
    uv_timer_t *timer;
    /* Polls and the timer are unref'd: idle keep-alive connections must not keep the loop
     * alive. This handle is ref'd exactly while a transfer is in flight. */
    uv_async_t *busy;
    struct sock *socks;
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
        M.socks = s->next;
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
static void check_done(void)
{
    CURLMsg *msg;
    int left;
    while (M.multi && (msg = curl_multi_info_read(M.multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        http_xfer_t *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(M.multi, easy);
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
    int running;
    curl_multi_socket_action(M.multi, s->fd, flags, &running);
    check_done();
}

static void on_timer(uv_timer_t *h)
{
    (void)h;
    int running;
    curl_multi_socket_action(M.multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done();
}

/* CURLMOPT_SOCKETFUNCTION: libcurl wants fd watched for `what`, or forgotten. */
static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    (void)userp;
    struct sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            sock_close(s);
            curl_multi_assign(M.multi, fd, NULL);
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
        s->poll.data = s;
        uv_unref((uv_handle_t *)&s->poll);
        s->next = M.socks;
        if (M.socks)
            M.socks->prev = s;
        M.socks = s;
        curl_multi_assign(M.multi, fd, s);
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
    (void)userp;
    if (timeout_ms < 0)
        uv_timer_stop(M.timer);
    else
        uv_timer_start(M.timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* Runs when the Lua state closes (after every task was cancelled): drops what is left and
 * closes the handles; their close callbacks free them on the runtime's last loop run. */
static int sentinel_gc(lua_State *L)
{
    (void)L;
    if (!M.multi)
        return 0;
    while (M.xfers) {
        http_xfer_t *x = M.xfers;
        curl_multi_remove_handle(M.multi, x->easy);
        xfer_unlink(x);
        x->release(x);
    }
    /* The polls go first, while their sockets are still open; libcurl then closes its
     * cached connections without calling back into handles that are gone. */
    while (M.socks) {
        uv_poll_stop(&M.socks->poll);
        sock_close(M.socks);
    }
    curl_multi_setopt(M.multi, CURLMOPT_SOCKETFUNCTION, NULL);
    curl_multi_setopt(M.multi, CURLMOPT_TIMERFUNCTION, NULL);
    curl_multi_cleanup(M.multi);
    uv_close((uv_handle_t *)M.timer, free_handle);
    uv_close((uv_handle_t *)M.busy, free_handle);
    memset(&M, 0, sizeof M);
    curl_global_cleanup();
    return 0;
}

static void on_busy(uv_async_t *h)
{
    (void)h;
}

static int multi_open(lua_State *L)
{
    if (M.multi)
        return 0;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    M.timer = malloc(sizeof *M.timer);
    M.busy = malloc(sizeof *M.busy);
    M.multi = curl_multi_init();
    if (!M.timer || !M.busy || !M.multi) {
        free(M.timer);
        free(M.busy);
        if (M.multi)
            curl_multi_cleanup(M.multi);
        memset(&M, 0, sizeof M);
        curl_global_cleanup();
        return -1;
    }
    uv_timer_init(task_loop(), M.timer);
    uv_unref((uv_handle_t *)M.timer);
    uv_async_init(task_loop(), M.busy, on_busy);
    uv_unref((uv_handle_t *)M.busy);
    curl_multi_setopt(M.multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(M.multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    /* The sentinel lives in the registry until lua_close; its __gc tears the multi down. */
    lua_newuserdata(L, 1);
    if (luaL_newmetatable(L, SENTINEL_MT)) {
        lua_pushcfunction(L, sentinel_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, SENTINEL_MT);
    return 0;
}

int http_xfer_init(lua_State *L, http_xfer_t *x)
{
    /* The multi handle first: it owns the curl_global_init that curl_easy_init relies on. */
    if (multi_open(L) != 0)
        return -1;
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
    curl_multi_remove_handle(M.multi, x->easy);
    xfer_unlink(x);
    x->release(x);
}

int http_xfer_suspend(lua_State *L, task_t *t, http_xfer_t *x, const char *fname)
{
    CURLMcode mc = curl_multi_add_handle(M.multi, x->easy);
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
