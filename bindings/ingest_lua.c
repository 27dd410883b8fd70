/* steward.runtime.ingest.native: POST /v1/events' fast path for the daemon (ingest.h).
 *   prepare(body, opts) -> batch | nil, why   (nil: take the reference path)
 *   commit(db, batch)   -> accepted, duplicates | nil, err, code   (suspends the task)
 *   batch:response()    -> '{"accepted":..,"duplicates":..,"ids":[..]}'
 *   batch:fresh(decode) -> the new events as Lua tables (with seq), for dispatch
 *   batch:types()       -> the new events' distinct types (whether dispatch wants them)
 * A batch owns its store request before, during and after the commit: the parameters are
 * the events' fields, read back by response() and fresh(). */
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#include "bindings.h"
#include "ingest.h"
#include "store_lua.h"
#include "task.h"

#define BATCH_MT "steward.runtime.ingest.batch"

struct lbatch {
    ingest_batch_t b;
    int inflight; /* submitted, not yet completed */
    int gone;     /* the userdata was collected while in flight: completion frees */
    int done;     /* committed: seq is filled */
};

struct commit_op {
    task_wait_t wait;
    struct lbatch *lb;
};

static void lbatch_free(struct lbatch *lb)
{
    store_req_free(lb->b.req);
    free(lb->b.seq);
    free(lb);
}

static struct lbatch *check_batch(lua_State *L, int idx, const char *fname)
{
    struct lbatch **ud = luaL_checkudata(L, idx, BATCH_MT);
    if (!*ud)
        luaL_error(L, "%s: the batch is gone", fname);
    return *ud;
}

/* ---- prepare: the Lua callbacks for ids and RFC 3339 times ---- */

struct cb_ctx {
    lua_State *L;
    int uuid_idx, time_idx; /* stack slots of the functions */
};

static int make_id(void *ud, double now, char *out, size_t outlen)
{
    struct cb_ctx *c = ud;
    lua_pushvalue(c->L, c->uuid_idx);
    lua_pushnumber(c->L, floor(now * 1000));
    if (lua_pcall(c->L, 1, 1, 0) != 0 || lua_type(c->L, -1) != LUA_TSTRING) {
        lua_pop(c->L, 1);
        return -1;
    }
    size_t n;
    const char *s = lua_tolstring(c->L, -1, &n);
    int len = n < outlen ? (int)n : -1;
    if (len > 0)
        memcpy(out, s, n + 1);
    lua_pop(c->L, 1);
    return len;
}

static int parse_time(void *ud, const char *s, size_t n, double *out)
{
    struct cb_ctx *c = ud;
    lua_pushvalue(c->L, c->time_idx);
    lua_pushlstring(c->L, s, n);
    if (lua_pcall(c->L, 1, 1, 0) != 0 || lua_type(c->L, -1) != LUA_TNUMBER) {
        lua_pop(c->L, 1);
        return -1;
    }
    *out = lua_tonumber(c->L, -1);
    lua_pop(c->L, 1);
    return 0;
}

static size_t opt_size(lua_State *L, const char *field, size_t dflt)
{
    lua_getfield(L, 2, field);
    size_t v = dflt;
    if (!lua_isnil(L, -1)) {
        lua_Number d = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || d != floor(d) || d < 1)
            luaL_error(L, "ingest.prepare: opts.%s: integer >= 1 expected", field);
        v = (size_t)d;
    }
    lua_pop(L, 1);
    return v;
}

static int l_ingest_prepare(lua_State *L)
{
    size_t n;
    const char *body = luaL_checklstring(L, 1, &n);
    luaL_checktype(L, 2, LUA_TTABLE);
    struct ingest_opts o = {0};
    o.max_depth = opt_size(L, "max_depth", 128);
    o.max_values = opt_size(L, "max_values", 0);
    o.max_batch = opt_size(L, "max_batch", 10000);
    lua_settop(L, 2);
    lua_getfield(L, 2, "now");
    if (lua_type(L, -1) != LUA_TNUMBER)
        return luaL_error(L, "ingest.prepare: opts.now: number expected");
    o.now = lua_tonumber(L, -1);
    lua_getfield(L, 2, "tenant"); /* 4: kept on the stack while o points into it */
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "ingest.prepare: opts.tenant: string expected");
        o.tenant = lua_tolstring(L, -1, &o.tenant_len);
    }
    struct cb_ctx c = {L, 5, 6};
    lua_getfield(L, 2, "uuid");
    lua_getfield(L, 2, "rfc3339");
    if (!lua_isfunction(L, 5) || !lua_isfunction(L, 6))
        return luaL_error(L, "ingest.prepare: opts.uuid and opts.rfc3339: functions expected");
    o.make_id = make_id;
    o.parse_time = parse_time;
    o.ud = &c;
    /* The userdata first, so that nothing raises between building the batch and owning it. */
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): the userdata is one pointer, to the batch */
    struct lbatch **ud = lua_newuserdata(L, sizeof *ud);
    *ud = NULL;
    luaL_getmetatable(L, BATCH_MT);
    lua_setmetatable(L, -2);
    struct lbatch *lb = calloc(1, sizeof *lb);
    if (!lb)
        return luaL_error(L, "ingest.prepare: out of memory");
    const char *why = NULL;
    enum ingest_status st = ingest_prepare(body, n, &o, &lb->b, &why);
    if (st != INGEST_OK) {
        free(lb);
        if (st == INGEST_NOMEM)
            return luaL_error(L, "ingest.prepare: out of memory");
        lua_pushnil(L);
        lua_pushstring(L, why);
        return 2;
    }
    *ud = lb;
    return 1;
}

/* ---- commit ---- */

static void commit_cancel(task_wait_t *w)
{
    (void)w; /* the write cannot be stopped: on_committed frees and resumes nothing */
}

static void on_committed(store_req_t *req)
{
    struct commit_op *op = req->ud;
    struct lbatch *lb = op->lb;
    task_t *t = task_wake(&op->wait);
    free(op);
    lb->inflight = 0;
    if (lb->gone) {
        lbatch_free(lb);
        return;
    }
    int failed = req->status != 0, nomem = 0;
    if (!failed) {
        nomem = ingest_results(&lb->b) != 0;
        lb->done = !nomem;
    }
    if (!t)
        return;
    lua_State *L = task_state(t);
    lua_pushnil(L);
    if (failed) {
        if (req->err_index > 0)
            lua_pushfstring(L, "statement %d: %s", req->err_index, req->err);
        else
            lua_pushstring(L, req->err);
        lua_pushstring(L, req->err_code);
        task_resume(t, 3);
    } else if (nomem) {
        lua_pushliteral(L, "out of memory reading the results (the events were committed)");
        lua_pushliteral(L, STORE_CODE_ERROR);
        task_resume(t, 3);
    } else {
        lua_pop(L, 1);
        lua_pushnumber(L, (lua_Number)lb->b.accepted);
        lua_pushnumber(L, (lua_Number)lb->b.duplicates);
        task_resume(t, 2);
    }
}

static int l_ingest_commit(lua_State *L)
{
    store_t *s = store_lua_check(L, 1, "ingest.commit");
    struct lbatch *lb = check_batch(L, 2, "ingest.commit");
    if (lb->inflight || lb->done)
        return luaL_error(L, "ingest.commit: batch: committed already");
    task_t *t = task_check(L, "ingest.commit");
    struct commit_op *op = calloc(1, sizeof *op);
    if (!op)
        return luaL_error(L, "ingest.commit: out of memory");
    op->lb = lb;
    lb->inflight = 1;
    lb->b.req->done = on_committed;
    lb->b.req->ud = op;
    store_submit(s, lb->b.req);
    return task_suspend(L, t, &op->wait, commit_cancel);
}

/* ---- after the commit ---- */

static int l_ingest_response(lua_State *L)
{
    struct lbatch *lb = check_batch(L, 1, "batch:response");
    if (!lb->done)
        return luaL_error(L, "batch:response: not committed");
    yajl_gen g = yajl_gen_alloc(NULL);
    if (!g)
        return luaL_error(L, "batch:response: out of memory");
    int bad = yajl_gen_map_open(g) != yajl_gen_status_ok;
    bad |= yajl_gen_string(g, (const unsigned char *)"accepted", 8) ||
           yajl_gen_integer(g, (long long)lb->b.accepted) ||
           yajl_gen_string(g, (const unsigned char *)"duplicates", 10) ||
           yajl_gen_integer(g, (long long)lb->b.duplicates) ||
           yajl_gen_string(g, (const unsigned char *)"ids", 3) || yajl_gen_array_open(g);
    for (size_t i = 0; i < lb->b.n && !bad; i++) {
        const store_value_t *id = &lb->b.cols[i * INGEST_NCOLS + INGEST_ID];
        bad = yajl_gen_string(g, (const unsigned char *)id->v.s, id->len) != yajl_gen_status_ok;
    }
    bad |= yajl_gen_array_close(g) || yajl_gen_map_close(g);
    const unsigned char *buf;
    size_t len;
    if (!bad && yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok)
        lua_pushlstring(L, (const char *)buf, len);
    else
        bad = 1;
    yajl_gen_free(g);
    if (bad)
        return luaL_error(L, "batch:response: out of memory");
    return 1;
}

static void set_text(lua_State *L, const store_value_t *v, const char *name)
{
    if (v->type == STORE_NULL)
        return;
    lua_pushlstring(L, v->v.s, v->len);
    lua_setfield(L, -2, name);
}

static int l_ingest_fresh(lua_State *L)
{
    struct lbatch *lb = check_batch(L, 1, "batch:fresh");
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (!lb->done)
        return luaL_error(L, "batch:fresh: not committed");
    lua_createtable(L, (int)lb->b.accepted, 0);
    int k = 0;
    for (size_t i = 0; i < lb->b.n; i++) {
        if (!lb->b.seq[i])
            continue;
        const store_value_t *c = &lb->b.cols[i * INGEST_NCOLS];
        lua_createtable(L, 0, 7);
        lua_pushnumber(L, (lua_Number)lb->b.seq[i]);
        lua_setfield(L, -2, "seq");
        set_text(L, &c[INGEST_ID], "id");
        set_text(L, &c[INGEST_TYPE], "type");
        set_text(L, &c[INGEST_TENANT], "tenant");
        set_text(L, &c[INGEST_SOURCE], "source");
        const store_value_t *tm = &c[INGEST_TIME];
        lua_pushnumber(L, tm->type == STORE_INT ? (lua_Number)tm->v.i : tm->v.d);
        lua_setfield(L, -2, "time");
        lua_pushvalue(L, 2); /* data: decoded from the text stored, as a replay sees it */
        lua_pushlstring(L, c[INGEST_DATA].v.s, c[INGEST_DATA].len);
        lua_call(L, 1, 1);
        lua_setfield(L, -2, "data");
        lua_rawseti(L, -2, ++k);
    }
    return 1;
}

/* The distinct types of the new events, in first-seen order (a batch has one or a few). */
static int l_ingest_types(lua_State *L)
{
    struct lbatch *lb = check_batch(L, 1, "batch:types");
    if (!lb->done)
        return luaL_error(L, "batch:types: not committed");
    lua_newtable(L);
    int k = 0;
    const store_value_t *last = NULL;
    for (size_t i = 0; i < lb->b.n; i++) {
        if (!lb->b.seq[i])
            continue;
        const store_value_t *t = &lb->b.cols[i * INGEST_NCOLS + INGEST_TYPE];
        if (last && last->len == t->len && memcmp(last->v.s, t->v.s, t->len) == 0)
            continue; /* the common case: the same type as the event before */
        last = t;
        lua_pushlstring(L, t->v.s, t->len);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3); /* seen: the table maps type -> true as well */
        int seen = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (seen) {
            lua_pop(L, 1);
            continue;
        }
        lua_pushvalue(L, -1);
        lua_pushboolean(L, 1);
        lua_rawset(L, -4);
        lua_rawseti(L, -2, ++k);
    }
    return 1;
}

static int l_ingest_gc(lua_State *L)
{
    struct lbatch **ud = luaL_checkudata(L, 1, BATCH_MT);
    struct lbatch *lb = *ud;
    *ud = NULL;
    if (!lb)
        return 0;
    if (lb->inflight)
        lb->gone = 1;
    else
        lbatch_free(lb);
    return 0;
}

int luaopen_steward_ingest(lua_State *L)
{
    static const luaL_Reg methods[] = {{"response", l_ingest_response},
                                       {"fresh", l_ingest_fresh},
                                       {"types", l_ingest_types},
                                       {NULL, NULL}};
    static const luaL_Reg funcs[] = {
        {"prepare", l_ingest_prepare}, {"commit", l_ingest_commit}, {NULL, NULL}};
    if (luaL_newmetatable(L, BATCH_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_ingest_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    return 1;
}
