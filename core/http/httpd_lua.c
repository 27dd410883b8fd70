/* steward.httpd: the HTTP server for Lua. Routers (core/http/http_router.c) hold handler
 * functions; httpd.listen runs the server of core/http/http_server.h and starts each request's
 * handler as a task, whose results become the answer; srv:wait_closed lets a task await
 * the end of a graceful close. */
#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_modules.h"
#include "duration.h"
#include "http_router.h"
#include "http_server.h"
#include "log.h"
#include "task.h"

#define ROUTER_MT "steward.httpd.router"
#define SERVER_MT "steward.httpd.server"

/* ---- helpers ---- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Pushes s percent-decoded; plus: '+' means space (query strings). Bad escapes stay. */
static void push_decoded(lua_State *L, const char *s, size_t n, int plus)
{
    if (!memchr(s, '%', n) && !(plus && memchr(s, '+', n))) {
        lua_pushlstring(L, s, n);
        return;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    /* luaL_addlstring, not luaL_addchar: that macro expands lauxlib's LUAL_BUFFERSIZE
     * (BUFSIZ > 16384 ? 8192 : BUFSIZ), whose equal arms bugprone-branch-clone flags. */
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else if (plus && c == '+') {
            c = ' ';
        }
        luaL_addlstring(&b, &c, 1);
    }
    luaL_pushresult(&b);
}

/* Sets t[key] = value on the table at idx, turning repeats into an array. */
static void add_query_pair(lua_State *L, int tbl)
{
    /* stack: key, value */
    lua_pushvalue(L, -2);
    lua_rawget(L, tbl);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_rawset(L, tbl);
        return;
    }
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_createtable(L, 2, 0);
        lua_insert(L, -2);
        lua_rawseti(L, -2, 1);
        lua_pushvalue(L, -3);
        lua_pushvalue(L, -2);
        lua_rawset(L, tbl); /* t[key] = {old} */
    }
    /* stack: key, value, array */
    lua_insert(L, -2);
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
    lua_pop(L, 2);
}

static int l_httpd_parse_query(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_newtable(L);
    int tbl = lua_gettop(L);
    size_t i = 0;
    if (n && s[0] == '?')
        i = 1;
    while (i < n) {
        const char *amp = memchr(s + i, '&', n - i);
        size_t end = amp ? (size_t)(amp - s) : n;
        if (end > i) {
            const char *eq = memchr(s + i, '=', end - i);
            size_t kend = eq ? (size_t)(eq - s) : end;
            if (kend > i) {
                push_decoded(L, s + i, kend - i, 1);
                if (eq)
                    push_decoded(L, eq + 1, end - kend - 1, 1);
                else
                    lua_pushboolean(L, 1);
                add_query_pair(L, tbl);
            }
        }
        i = end + 1;
    }
    return 1;
}

/* ---- router ---- */

struct lrouter {
    http_router_t *r; /* NULL once collected */
};

static struct lrouter *check_router(lua_State *L, int idx)
{
    struct lrouter *lr = luaL_checkudata(L, idx, ROUTER_MT);
    if (!lr->r)
        luaL_error(L, "httpd.router: router is closed");
    return lr;
}

static void unref_value(void *value, void *ud)
{
    luaL_unref((lua_State *)ud, LUA_REGISTRYINDEX, (int)(intptr_t)value);
}

static int l_httpd_router(lua_State *L)
{
    struct lrouter *lr = lua_newuserdata(L, sizeof *lr);
    lr->r = http_router_new();
    if (!lr->r)
        return luaL_error(L, "httpd.router: out of memory");
    luaL_getmetatable(L, ROUTER_MT);
    lua_setmetatable(L, -2);
    return 1;
}

/* The method argument at idx, upper-cased into buf. */
static const char *check_method(lua_State *L, int idx, char *buf, size_t cap, const char *fn)
{
    size_t n;
    const char *m = luaL_checklstring(L, idx, &n);
    if (n == 0 || n >= cap)
        luaL_error(L, "%s: method: a method name such as \"GET\" expected", fn);
    for (size_t i = 0; i <= n; i++)
        buf[i] = (m[i] >= 'a' && m[i] <= 'z') ? (char)(m[i] - 32) : m[i];
    return buf;
}

static int l_httpd_router_add(lua_State *L)
{
    struct lrouter *lr = check_router(L, 1);
    char mbuf[40];
    const char *method = check_method(L, 2, mbuf, sizeof mbuf, "router:add");
    const char *pattern = luaL_checkstring(L, 3);
    luaL_checktype(L, 4, LUA_TFUNCTION);
    lua_pushvalue(L, 4);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    void *old;
    const char *why;
    int rc = http_router_add(lr->r, method, pattern, (void *)(intptr_t)ref, &old, &why);
    if (rc != 0) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return luaL_error(L, "router:add: %s: %s", rc == -ENOMEM ? "route" : "pattern", why);
    }
    if (old)
        luaL_unref(L, LUA_REGISTRYINDEX, (int)(intptr_t)old);
    lua_settop(L, 1);
    return 1;
}

static int l_httpd_router_remove(lua_State *L)
{
    struct lrouter *lr = check_router(L, 1);
    char mbuf[40];
    const char *method = check_method(L, 2, mbuf, sizeof mbuf, "router:remove");
    const char *pattern = luaL_checkstring(L, 3);
    void *old;
    int rc = http_router_remove(lr->r, method, pattern, &old);
    if (rc == 0)
        luaL_unref(L, LUA_REGISTRYINDEX, (int)(intptr_t)old);
    lua_pushboolean(L, rc == 0);
    return 1;
}

static int l_httpd_router_routes(lua_State *L)
{
    struct lrouter *lr = check_router(L, 1);
    size_t n = http_router_count(lr->r);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        const char *m, *p;
        void *v;
        http_router_get(lr->r, i, &m, &p, &v);
        lua_createtable(L, 0, 2);
        lua_pushstring(L, m);
        lua_setfield(L, -2, "method");
        lua_pushstring(L, p);
        lua_setfield(L, -2, "pattern");
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

static void push_params(lua_State *L, const struct http_route_match *m)
{
    lua_createtable(L, 0, (int)m->nparams);
    for (size_t i = 0; i < m->nparams; i++) {
        push_decoded(L, m->params[i].value, m->params[i].value_len, 0);
        lua_setfield(L, -2, m->params[i].name);
    }
}

/* router:match(method, path) -> handler, params, pattern | nil, 404 | nil, 405, allow */
static int l_httpd_router_match(lua_State *L)
{
    struct lrouter *lr = check_router(L, 1);
    char mbuf[40];
    const char *method = check_method(L, 2, mbuf, sizeof mbuf, "router:match");
    size_t plen;
    const char *path = luaL_checklstring(L, 3, &plen);
    struct http_route_match m;
    char allow[256];
    switch (http_router_match(lr->r, method, path, plen, &m, allow, sizeof allow)) {
    case HTTP_ROUTE_FOUND:
        lua_rawgeti(L, LUA_REGISTRYINDEX, (int)(intptr_t)m.value);
        push_params(L, &m);
        lua_pushstring(L, m.pattern);
        return 3;
    case HTTP_ROUTE_BAD_METHOD:
        lua_pushnil(L);
        lua_pushinteger(L, 405);
        lua_pushstring(L, allow);
        return 3;
    default:
        lua_pushnil(L);
        lua_pushinteger(L, 404);
        return 2;
    }
}

static int l_httpd_router_gc(lua_State *L)
{
    struct lrouter *lr = luaL_checkudata(L, 1, ROUTER_MT);
    http_router_free(lr->r, unref_value, L);
    lr->r = NULL;
    return 0;
}

/* ---- server ---- */

struct closed_wait;

struct lsrv {
    http_server_t s;
    int handler_ref; /* a router userdata or a function */
    int admit_ref;   /* the admit function, or LUA_NOREF */
    int is_router;
    int self_ref; /* anchors the Lua object while the server runs */
    int gc, in_gc;
    /* Handler tasks not yet ended. A handler outlives its connection (its answer is then
     * dropped), so the struct stays until the last one ends, even after __gc. */
    size_t inflight;
    struct closed_wait *waiters; /* tasks in srv:wait_closed */
};

/* The handler task's done callback holds this, not the connection: it may be gone. */
struct handler_ctx {
    struct lsrv *ls;
    http_slot_t *slot;
};

static void lsrv_settled(struct lsrv *ls);
static struct lsrv *check_server(lua_State *L, int idx);

static void respond_500(http_slot_t *slot, const char *code, const char *message,
                        const char *details)
{
    http_slot_error(slot, 500, code, message, details, NULL);
}

/* The handler's results (status, headers, body) on co's stack from index 1. */
static void respond_from(http_slot_t *slot, lua_State *co, const char *tname)
{
    const char *bad = NULL;
    int status = 0;
    if (lua_type(co, 1) == LUA_TNUMBER) {
        lua_Number n = lua_tonumber(co, 1);
        status = (int)n;
        if ((lua_Number)status != n || status < 100 || status > 599)
            bad = "status must be an integer from 100 to 599";
    } else {
        bad = "the handler must return a status (number), headers (table) and body (string)";
    }
    int ht = lua_type(co, 2);
    if (!bad && ht != LUA_TNIL && ht != LUA_TNONE && ht != LUA_TTABLE)
        bad = "headers must be a table";
    int bt = lua_type(co, 3);
    if (!bad && bt != LUA_TNIL && bt != LUA_TNONE && bt != LUA_TSTRING)
        bad = "body must be a string";
    static struct http_buf head; /* reused: one answer is built at a time */
    if (!bad) {
        http_head_start(&head, status);
        if (ht == LUA_TTABLE) {
            lua_pushnil(co);
            while (!bad && lua_next(co, 2)) {
                size_t nl, vl;
                if (lua_type(co, -2) != LUA_TSTRING) {
                    bad = "header names must be strings";
                } else if (lua_type(co, -1) == LUA_TTABLE) {
                    /* A list of values: one header line each (Set-Cookie). */
                    const char *name = lua_tolstring(co, -2, &nl);
                    for (int i = 1; !bad; i++) {
                        lua_rawgeti(co, -1, i);
                        if (lua_isnil(co, -1)) {
                            lua_pop(co, 1);
                            break;
                        }
                        lua_pushvalue(co, -1);
                        const char *v = lua_tolstring(co, -1, &vl);
                        if (!v || http_head_add(&head, name, nl, v, vl) != 0)
                            bad = "header values must be strings without CR or LF";
                        lua_pop(co, 2);
                    }
                } else {
                    const char *name = lua_tolstring(co, -2, &nl);
                    lua_pushvalue(co, -1);
                    const char *v = lua_tolstring(co, -1, &vl);
                    if (!v || http_head_add(&head, name, nl, v, vl) != 0)
                        bad = "header names must be tokens and values strings without CR or LF";
                    lua_pop(co, 1);
                }
                lua_pop(co, 1);
            }
        }
    }
    if (bad) {
        log_error("http handler returned a bad answer", "task", tname, "problem", bad);
        struct http_buf d = {0};
        http_buf_append(&d, "{\"problem\":", 11);
        http_json_string(&d, bad, strlen(bad));
        http_buf_append(&d, "}", 1);
        http_buf_append(&d, "", 1);
        respond_500(slot, "bad_handler_result", "the request handler returned a bad answer",
                    d.data);
        http_buf_free(&d);
        return;
    }
    size_t blen = 0;
    const char *body = bt == LUA_TSTRING ? lua_tolstring(co, 3, &blen) : "";
    http_slot_respond(slot, status, &head, body, blen);
}

static void on_handler_done(task_t *t, enum task_status st, void *ud)
{
    struct handler_ctx *hc = ud;
    struct lsrv *ls = hc->ls;
    http_slot_t *slot = hc->slot;
    free(hc);
    char details[64];
    snprintf(details, sizeof details, "{\"task\":%llu}", (unsigned long long)task_id(t));
    if (st == TASK_OK)
        respond_from(slot, task_state(t), task_name(t));
    else if (st == TASK_ERROR) /* the scheduler has logged the error and its traceback */
        respond_500(slot, "handler_error", "the request handler failed", details);
    else
        http_slot_error(slot, 503, "handler_cancelled", "the request handler was cancelled",
                        details, NULL);
    ls->inflight--;
    lsrv_settled(ls);
}

struct dispatch_ctx {
    struct lsrv *ls;
    http_slot_t *slot;
    const struct http_request *req;
    int answered; /* the slot was answered or handed to a task */
};

static void push_request(lua_State *L, const struct http_request *req)
{
    lua_createtable(L, 0, 9);
    lua_pushstring(L, req->method);
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, req->path, req->path_len);
    lua_setfield(L, -2, "path");
    lua_pushlstring(L, req->query, req->query_len);
    lua_setfield(L, -2, "query");
    lua_pushlstring(L, req->body, req->body_len);
    lua_setfield(L, -2, "body");
    lua_pushstring(L, req->remote);
    lua_setfield(L, -2, "remote");
    lua_pushstring(L, req->http_minor == 0 ? "1.0" : "1.1");
    lua_setfield(L, -2, "http_version");
    lua_createtable(L, 0, (int)req->nheaders);
    int ht = lua_gettop(L);
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        lua_pushlstring(L, h->name, h->name_len);
        lua_pushvalue(L, -1);
        lua_rawget(L, ht);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushlstring(L, h->value, h->value_len);
        } else {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, h->value, h->value_len);
            lua_concat(L, 3);
        }
        lua_rawset(L, ht);
    }
    lua_setfield(L, -2, "headers");
}

static int dispatch_protected(lua_State *L)
{
    struct dispatch_ctx *ctx = lua_touserdata(L, 1);
    const struct http_request *req = ctx->req;
    struct lsrv *ls = ctx->ls;
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ls->handler_ref); /* 1: router or function */
    push_request(L, req);                               /* 2 */
    if (ls->is_router) {
        struct lrouter *lr = lua_touserdata(L, 1);
        struct http_route_match m;
        char allow[256];
        enum http_route_result r = lr && lr->r
                                       ? http_router_match(lr->r, req->method, req->path,
                                                           req->path_len, &m, allow, sizeof allow)
                                       : HTTP_ROUTE_NOT_FOUND;
        if (r == HTTP_ROUTE_FOUND) {
            push_params(L, &m);
            lua_setfield(L, 2, "params");
            lua_rawgeti(L, LUA_REGISTRYINDEX, (int)(intptr_t)m.value);
            lua_replace(L, 1);
        } else {
            char details[320];
            ctx->answered = 1;
            if (r == HTTP_ROUTE_BAD_METHOD) {
                char hdr[280];
                snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
                struct http_buf d = {0};
                http_buf_append(&d, "{\"method\":", 10);
                http_json_string(&d, req->method, strlen(req->method));
                http_buf_append(&d, ",\"allow\":", 9);
                http_json_string(&d, allow, strlen(allow));
                http_buf_append(&d, "}", 2);
                http_slot_error(ctx->slot, 405, "method_not_allowed",
                                "the path does not accept this method", d.data, hdr);
                http_buf_free(&d);
            } else {
                snprintf(details, sizeof details, "{\"method\":\"%s\"}", req->method);
                http_slot_error(ctx->slot, 404, "not_found", "no route matches the path", details,
                                NULL);
            }
            return 0;
        }
    } else {
        lua_newtable(L);
        lua_setfield(L, 2, "params");
    }
    char name[160];
    int pl = req->path_len > 100 ? 100 : (int)req->path_len;
    snprintf(name, sizeof name, "http %s %.*s", req->method, pl, req->path);
    struct handler_ctx *hc = malloc(sizeof *hc);
    if (!hc)
        return luaL_error(L, "out of memory");
    hc->ls = ls;
    hc->slot = ctx->slot;
    struct task_opts opts = {.name = name, .done = on_handler_done, .ud = hc};
    ctx->answered = 1;
    ls->inflight++;
    task_spawn(L, 1, &opts);
    return 0;
}

static void lsrv_dispatch(http_server_t *s, http_slot_t *slot, const struct http_request *req,
                          void *ud)
{
    (void)s;
    struct lsrv *ls = ud;
    if (ls->gc) {
        http_slot_error(slot, 503, "shutting_down", "the server is shutting down", NULL, NULL);
        return;
    }
    lua_State *L = task_main_state();
    int top = lua_gettop(L);
    struct dispatch_ctx ctx = {ls, slot, req, 0};
    lua_pushcfunction(L, dispatch_protected);
    lua_pushlightuserdata(L, &ctx);
    if (lua_pcall(L, 1, 0, 0) != 0) {
        const char *msg = lua_tostring(L, -1);
        log_error("http dispatch failed", "error", msg ? msg : "?");
        if (!ctx.answered)
            http_slot_error(slot, 503, "unavailable", "the server cannot run the handler", NULL,
                            NULL);
    }
    lua_settop(L, top);
}

/* ---- admission: a request's head before its body is read ---- */

struct admit_ctx {
    struct lsrv *ls;
    const struct http_request *head;
};

static int admit_protected(lua_State *L)
{
    struct admit_ctx *ctx = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->ls->admit_ref);
    push_request(L, ctx->head);
    lua_newtable(L);
    lua_setfield(L, -2, "params");
    lua_call(L, 1, 4);
    return 4;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* The Lua admit function's results: nil admits; status, code, message [, headers]
 * refuse. An error refuses too (500): a check that cannot run must not let bodies in. */
static int lsrv_admit(http_server_t *s, const struct http_request *head, void *ud,
                      struct http_refusal *out)
{
    (void)s;
    struct lsrv *ls = ud;
    if (ls->admit_ref == LUA_NOREF || ls->gc)
        return 0;
    lua_State *L = task_main_state();
    int top = lua_gettop(L);
    struct admit_ctx ctx = {ls, head};
    lua_pushcfunction(L, admit_protected);
    lua_pushlightuserdata(L, &ctx);
    if (lua_pcall(L, 1, 4, 0) != 0) {
        const char *msg = lua_tostring(L, -1);
        log_error("http admit function failed", "error", msg ? msg : "?");
        out->status = 500;
        copy_str(out->code, sizeof out->code, "admit_error");
        copy_str(out->message, sizeof out->message, "the request could not be checked");
        lua_settop(L, top);
        return -1;
    }
    int base = top + 1;
    if (lua_isnil(L, base)) {
        lua_settop(L, top);
        return 0;
    }
    lua_Number st = lua_tonumber(L, base);
    out->status = lua_type(L, base) == LUA_TNUMBER && st >= 400 && st <= 599 ? (int)st : 500;
    copy_str(out->code, sizeof out->code, lua_tostring(L, base + 1));
    copy_str(out->message, sizeof out->message, lua_tostring(L, base + 2));
    if (lua_istable(L, base + 3)) {
        struct http_buf h = {0};
        lua_pushnil(L);
        while (lua_next(L, base + 3)) {
            size_t nl, vl;
            const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &nl) : NULL;
            const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vl) : NULL;
            if (name && v)
                http_head_add(&h, name, nl, v, vl); /* a bad line is skipped */
            lua_pop(L, 1);
        }
        if (h.len && h.len < sizeof out->extra_header) {
            memcpy(out->extra_header, h.data, h.len);
            out->extra_header[h.len] = '\0';
        }
        http_buf_free(&h);
    }
    lua_settop(L, top);
    return -1;
}

static void lsrv_free(struct lsrv *ls)
{
    free(ls);
}

static void lsrv_closed(http_server_t *s, void *ud)
{
    (void)s;
    struct lsrv *ls = ud;
    if (ls->gc) {
        lsrv_settled(ls);
        return;
    }
    /* Nothing left to serve: the Lua object may be collected once unreachable. */
    luaL_unref(task_main_state(), LUA_REGISTRYINDEX, ls->self_ref);
    ls->self_ref = LUA_NOREF;
    lsrv_settled(ls);
}

/* ---- srv:wait_closed ---- */

struct closed_wait {
    task_wait_t wait; /* first: the cancel function casts back */
    uv_timer_t timer; /* the timeout, or a 0 ms wake-up once the server has settled */
    struct lsrv *ls;
    struct closed_wait *prev, *next;
    int anchor_ref; /* the server's Lua object: no __gc while a task waits on it */
    int settled;
};

static int lsrv_is_settled(const struct lsrv *ls)
{
    return ls->s.closed_notified && ls->inflight == 0;
}

static void wait_unlink(struct closed_wait *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        w->ls->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    luaL_unref(task_main_state(), LUA_REGISTRYINDEX, w->anchor_ref);
    w->anchor_ref = LUA_NOREF;
}

static void wait_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_wait_timer(uv_timer_t *h)
{
    struct closed_wait *w = h->data;
    int settled = w->settled;
    wait_unlink(w);
    uv_close((uv_handle_t *)&w->timer, wait_timer_closed);
    task_t *t = task_wake(&w->wait);
    if (!t)
        return;
    lua_State *co = task_state(t);
    if (settled) {
        lua_pushboolean(co, 1);
        task_resume(t, 1);
    } else {
        lua_pushnil(co);
        lua_pushliteral(co, "timeout");
        task_resume(t, 2);
    }
}

static void wait_cancel(task_wait_t *tw)
{
    struct closed_wait *w = (struct closed_wait *)tw;
    wait_unlink(w);
    uv_close((uv_handle_t *)&w->timer, wait_timer_closed);
}

/* Called whenever the server may have settled: wakes the waiters (from a fresh loop turn,
 * never inside a handler's done callback or a Lua call), or frees a collected server. */
static void lsrv_settled(struct lsrv *ls)
{
    if (!lsrv_is_settled(ls))
        return;
    if (ls->gc) {
        if (!ls->in_gc)
            lsrv_free(ls);
        return;
    }
    for (struct closed_wait *w = ls->waiters; w; w = w->next) {
        if (!w->settled) {
            w->settled = 1;
            uv_timer_start(&w->timer, on_wait_timer, 0, 0);
        }
    }
}

/* srv:wait_closed([timeout]) -> true | nil, "timeout" */
static int l_httpd_server_wait_closed(lua_State *L)
{
    struct lsrv *ls = check_server(L, 1);
    double sec = duration_opt(L, 2, "srv:wait_closed: timeout", -1.0);
    task_t *t = task_check(L, "srv:wait_closed");
    if (lsrv_is_settled(ls)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    struct closed_wait *w = calloc(1, sizeof *w);
    if (!w)
        return luaL_error(L, "srv:wait_closed: out of memory");
    uv_timer_init(task_loop(), &w->timer);
    w->timer.data = w;
    w->ls = ls;
    lua_pushvalue(L, 1);
    w->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    w->next = ls->waiters;
    if (w->next)
        w->next->prev = w;
    ls->waiters = w;
    if (sec >= 0) {
        double ms = ceil(sec * 1000.0);
        uv_timer_start(&w->timer, on_wait_timer, ms > 9e15 ? (uint64_t)9e15 : (uint64_t)ms, 0);
    }
    return task_suspend(L, t, &w->wait, wait_cancel);
}

static struct lsrv *check_server(lua_State *L, int idx)
{
    struct lsrv **p = luaL_checkudata(L, idx, SERVER_MT);
    if (!*p)
        luaL_error(L, "httpd server: already collected");
    return *p;
}

static size_t opt_size(lua_State *L, int tbl, const char *key, size_t def, size_t min)
{
    lua_getfield(L, tbl, key);
    size_t v = def;
    if (!lua_isnil(L, -1)) {
        lua_Number n = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || n != (lua_Number)(uint64_t)n || n < (lua_Number)min)
            luaL_error(L, "httpd.listen: limits.%s: integer >= %d expected", key, (int)min);
        v = (size_t)n;
    }
    lua_pop(L, 1);
    return v;
}

static uint64_t opt_ms(lua_State *L, int tbl, const char *key, uint64_t def)
{
    char what[64];
    snprintf(what, sizeof what, "httpd.listen: limits.%s", key);
    lua_getfield(L, tbl, key);
    double sec = duration_opt(L, -1, what, (double)def / 1000.0);
    lua_pop(L, 1);
    uint64_t ms = (uint64_t)(sec * 1000.0 + 0.5);
    return ms ? ms : 1;
}

static void check_limits(lua_State *L, int tbl, struct http_limits *l)
{
    static const char *const known[] = {"max_header_bytes",
                                        "max_body_bytes",
                                        "max_connections",
                                        "header_timeout",
                                        "body_timeout",
                                        "idle_timeout",
                                        "max_pipelined",
                                        "max_body_bytes_in_flight",
                                        NULL};
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        int ok = 0;
        if (lua_type(L, -2) == LUA_TSTRING)
            for (int i = 0; known[i]; i++)
                ok |= strcmp(known[i], lua_tostring(L, -2)) == 0;
        if (!ok)
            luaL_error(L, "httpd.listen: limits: unknown field '%s'",
                       lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?");
        lua_pop(L, 1);
    }
    l->max_header_bytes = opt_size(L, tbl, "max_header_bytes", l->max_header_bytes, 256);
    l->max_body_bytes = opt_size(L, tbl, "max_body_bytes", l->max_body_bytes, 0);
    l->max_connections = opt_size(L, tbl, "max_connections", l->max_connections, 1);
    l->max_pipelined = opt_size(L, tbl, "max_pipelined", l->max_pipelined, 1);
    l->max_body_bytes_in_flight =
        opt_size(L, tbl, "max_body_bytes_in_flight", l->max_body_bytes_in_flight, 1);
    l->header_timeout_ms = opt_ms(L, tbl, "header_timeout", l->header_timeout_ms);
    l->body_timeout_ms = opt_ms(L, tbl, "body_timeout", l->body_timeout_ms);
    l->idle_timeout_ms = opt_ms(L, tbl, "idle_timeout", l->idle_timeout_ms);
}

static int l_httpd_listen(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "host");
    const char *host = lua_isnil(L, -1) ? "127.0.0.1" : lua_tostring(L, -1);
    if (!host || lua_type(L, -1) == LUA_TNUMBER)
        return luaL_error(L, "httpd.listen: host: string expected");
    lua_getfield(L, 1, "port");
    lua_Number pn = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || pn != (int)pn || pn < 0 || pn > 65535)
        return luaL_error(L, "httpd.listen: port: integer from 0 to 65535 expected");
    int port = (int)pn;
    lua_getfield(L, 1, "handler");
    int is_router = luaL_testudata(L, -1, ROUTER_MT) != NULL;
    if (!is_router && lua_type(L, -1) != LUA_TFUNCTION)
        return luaL_error(L, "httpd.listen: handler: router or function expected");
    int handler = lua_gettop(L);
    struct http_limits limits;
    http_limits_default(&limits);
    lua_getfield(L, 1, "limits");
    if (lua_type(L, -1) == LUA_TTABLE)
        check_limits(L, lua_gettop(L), &limits);
    else if (!lua_isnil(L, -1))
        return luaL_error(L, "httpd.listen: limits: table expected");
    if (limits.max_body_bytes_in_flight < limits.max_body_bytes)
        return luaL_error(L,
                          "httpd.listen: limits.max_body_bytes_in_flight: at least "
                          "max_body_bytes (%d) expected, or no body that large could be read",
                          (int)limits.max_body_bytes);
    lua_getfield(L, 1, "admit");
    int admit = lua_gettop(L);
    if (!lua_isnil(L, admit) && lua_type(L, admit) != LUA_TFUNCTION)
        return luaL_error(L, "httpd.listen: admit: function expected");

    /* NOLINTNEXTLINE(bugprone-sizeof-expression): the userdata is one pointer, to the server */
    struct lsrv **p = lua_newuserdata(L, sizeof *p);
    *p = NULL;
    luaL_getmetatable(L, SERVER_MT);
    lua_setmetatable(L, -2);
    struct lsrv *ls = calloc(1, sizeof *ls);
    if (!ls)
        return luaL_error(L, "httpd.listen: out of memory");
    http_server_init(&ls->s, &limits, lsrv_dispatch, ls);
    ls->s.on_closed = lsrv_closed;
    ls->admit_ref = LUA_NOREF;
    if (!lua_isnil(L, admit)) {
        lua_pushvalue(L, admit);
        ls->admit_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        ls->s.admit = lsrv_admit;
    }
    ls->is_router = is_router;
    ls->self_ref = LUA_NOREF;
    lua_pushvalue(L, handler);
    ls->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    *p = ls;
    lua_getfield(L, 1, "reuseport"); /* worker processes: docs/operations.md */
    int shared = lua_toboolean(L, -1);
    lua_pop(L, 1);
    const char *what;
    int rc = shared ? http_server_listen_shared(&ls->s, task_loop(), host, port, &what)
                    : http_server_listen(&ls->s, task_loop(), host, port, &what);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s: %s %s:%d", uv_err_name(rc), uv_strerror(rc), what, host, port);
        lua_pushstring(L, uv_err_name(rc));
        return 3; /* the userdata's __gc frees ls */
    }
    lua_pushvalue(L, -1);
    ls->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

static int l_httpd_server_port(lua_State *L)
{
    struct lsrv *ls = check_server(L, 1);
    lua_pushinteger(L, http_server_port(&ls->s));
    return 1;
}

static int l_httpd_server_close(lua_State *L)
{
    struct lsrv *ls = check_server(L, 1);
    http_server_close(&ls->s);
    return 0;
}

static int l_httpd_server_closed(lua_State *L)
{
    struct lsrv *ls = check_server(L, 1);
    lua_pushboolean(L, ls->s.closed_notified);
    return 1;
}

static void set_u64(lua_State *L, const char *k, uint64_t v)
{
    lua_pushnumber(L, (lua_Number)v);
    lua_setfield(L, -2, k);
}

static int l_httpd_server_stats(lua_State *L)
{
    struct lsrv *ls = check_server(L, 1);
    const struct http_stats *st = &ls->s.stats;
    lua_createtable(L, 0, 12);
    set_u64(L, "connections_open", ls->s.nconns);
    set_u64(L, "connections_accepted", st->accepted);
    set_u64(L, "connections_rejected", st->rejected);
    set_u64(L, "requests", st->requests);
    set_u64(L, "parse_errors", st->parse_errors);
    set_u64(L, "timeouts", st->timeouts);
    set_u64(L, "too_large", st->too_large);
    set_u64(L, "dropped", st->dropped);
    set_u64(L, "refused", st->refused);
    set_u64(L, "over_budget", st->over_budget);
    set_u64(L, "body_bytes_in_flight", ls->s.body_bytes_in_flight);
    lua_createtable(L, 0, 5);
    static const char *const cls[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int i = 0; i < 5; i++)
        set_u64(L, cls[i], st->responses[i + 1]);
    lua_setfield(L, -2, "responses");
    lua_pushboolean(L, ls->s.closing);
    lua_setfield(L, -2, "closing");
    return 1;
}

static int l_httpd_server_gc(lua_State *L)
{
    struct lsrv **p = luaL_checkudata(L, 1, SERVER_MT);
    struct lsrv *ls = *p;
    if (!ls)
        return 0;
    *p = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, ls->handler_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ls->admit_ref);
    ls->admit_ref = LUA_NOREF;
    ls->gc = ls->in_gc = 1;
    http_server_abort(&ls->s);
    ls->in_gc = 0;
    if (lsrv_is_settled(ls))
        lsrv_free(ls);
    return 0;
}

int luaopen_steward_httpd(lua_State *L)
{
    static const luaL_Reg router_methods[] = {{"add", l_httpd_router_add},
                                              {"remove", l_httpd_router_remove},
                                              {"routes", l_httpd_router_routes},
                                              {"match", l_httpd_router_match},
                                              {NULL, NULL}};
    static const luaL_Reg server_methods[] = {{"port", l_httpd_server_port},
                                              {"close", l_httpd_server_close},
                                              {"closed", l_httpd_server_closed},
                                              {"stats", l_httpd_server_stats},
                                              {"wait_closed", l_httpd_server_wait_closed},
                                              {NULL, NULL}};
    static const luaL_Reg funcs[] = {{"router", l_httpd_router},
                                     {"listen", l_httpd_listen},
                                     {"parse_query", l_httpd_parse_query},
                                     {NULL, NULL}};
    if (luaL_newmetatable(L, ROUTER_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, router_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_httpd_router_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, SERVER_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, server_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_httpd_server_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    return 1;
}
