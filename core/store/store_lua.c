/* steward.runtime.store.native: the SQL-level store API for Lua (open, query, exec, batch, stats,
 * close) over core/store/store.h. Every call that talks to the database suspends the calling task;
 * the request carries copies of the SQL and parameters, so the backend never touches Lua. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "core_modules.h"
#include "store.h"
#include "store_lua.h"
#include "task.h"

#define DB_MT   "steward.runtime.store.db"
#define BLOB_MT "steward.runtime.store.blob"

/* The userdata points at a handle that outlives it while an asynchronous close is still
 * running (the close completion must not touch collected userdata). */
struct dbh {
    store_t *s;  /* NULL once closed */
    int closing; /* db:close() was called */
    int gone;    /* the userdata was collected; the close completion frees this */
};

struct blob {
    size_t len;
    char data[];
};

struct op {
    task_wait_t wait;
    int batch;
    struct dbh *h;
};

/* The operations cannot be stopped once submitted: their completion frees them and resumes
 * nothing (task_wake returns NULL). A cancelled task's write still commits. */
static void op_cancel(task_wait_t *w)
{
    (void)w;
}

static struct dbh *check_db(lua_State *L, const char *fname)
{
    struct dbh **ud = luaL_checkudata(L, 1, DB_MT);
    struct dbh *h = *ud;
    if (!h || !h->s || h->closing)
        luaL_error(L, "%s: the store is closed", fname);
    return h;
}

store_t *store_lua_check(lua_State *L, int idx, const char *fname)
{
    struct dbh **ud = luaL_checkudata(L, idx, DB_MT);
    struct dbh *h = *ud;
    if (!h || !h->s || h->closing)
        luaL_error(L, "%s: the store is closed", fname);
    return h->s;
}

/* ---- Lua values -> store values ---- */

/* Converts the value at idx; NULL, or a message naming the problem. */
static const char *to_value(lua_State *L, int idx, store_req_t *req, store_value_t *v)
{
    memset(v, 0, sizeof *v);
    switch (lua_type(L, idx)) {
    case LUA_TNONE:
    case LUA_TNIL: return NULL;
    case LUA_TBOOLEAN:
        v->type = STORE_INT;
        v->v.i = lua_toboolean(L, idx);
        return NULL;
    case LUA_TNUMBER: {
        store_value_number(v, lua_tonumber(L, idx));
        return NULL;
    }
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        v->type = STORE_TEXT;
        v->len = n;
        v->v.s = store_arena_strdup(&req->arena, s, n);
        return v->v.s ? NULL : "out of memory";
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) /* json.null */
            return NULL;
        break;
    case LUA_TUSERDATA:
        if (lua_getmetatable(L, idx)) {
            luaL_getmetatable(L, BLOB_MT);
            int is_blob = lua_rawequal(L, -1, -2);
            lua_pop(L, 2);
            if (is_blob) {
                const struct blob *b = lua_touserdata(L, idx);
                v->type = STORE_BLOB;
                v->len = b->len;
                v->v.s = store_arena_strdup(&req->arena, b->data, b->len);
                return v->v.s ? NULL : "out of memory";
            }
        }
        break;
    }
    return "nil, boolean, number, string, native.blob or null expected";
}

/* Fills st from the SQL at sql_idx and n parameters from first; 0, or -1 with *why and
 * *bad (0 = the SQL, k = parameter k). prev_sql lets a batch share one copy of its SQL. */
static int fill_stmt(lua_State *L, store_req_t *req, store_stmt_t *st, int sql_idx, int first,
                     int n, const char **why, int *bad, const char **prev_lua,
                     const char **prev_copy)
{
    if (lua_type(L, sql_idx) != LUA_TSTRING) {
        *why = "string expected";
        *bad = 0;
        return -1;
    }
    size_t len;
    const char *sql = lua_tolstring(L, sql_idx, &len);
    if (prev_lua && *prev_lua == sql) {
        st->sql = *prev_copy; /* interned: the same Lua string as the previous statement */
    } else {
        st->sql = store_arena_strdup(&req->arena, sql, len);
        if (prev_lua) {
            *prev_lua = sql;
            *prev_copy = st->sql;
        }
    }
    st->sql_len = len;
    st->nparams = n;
    st->params = n ? store_arena_alloc(&req->arena, (size_t)n * sizeof *st->params) : NULL;
    if (!st->sql || (n && !st->params)) {
        *why = "out of memory";
        *bad = 0;
        return -1;
    }
    for (int k = 0; k < n; k++) {
        if ((*why = to_value(L, first + k, req, &st->params[k])) != NULL) {
            *bad = k + 1;
            return -1;
        }
    }
    return 0;
}

/* ---- store values -> Lua ---- */

static void push_value(lua_State *L, const store_value_t *v)
{
    switch (v->type) {
    case STORE_INT: lua_pushnumber(L, (lua_Number)v->v.i); break;
    case STORE_REAL: lua_pushnumber(L, v->v.d); break;
    case STORE_TEXT:
    case STORE_BLOB: lua_pushlstring(L, v->v.s, v->len); break;
    default: lua_pushnil(L);
    }
}

/* An array of rows, each a table keyed by column name; NULL columns are absent. */
static void push_rows(lua_State *L, const store_result_t *r)
{
    lua_createtable(L, r->nrows > 1000000 ? 1000000 : (int)r->nrows, 0);
    if (r->nrows == 0 || r->ncols == 0)
        return;
    luaL_checkstack(L, r->ncols + 4, "store: too many columns");
    int rows = lua_gettop(L);
    for (int k = 0; k < r->ncols; k++)
        lua_pushstring(L, r->cols[k]);
    const store_value_t *cell = r->cells;
    for (size_t i = 0; i < r->nrows; i++) {
        lua_createtable(L, 0, r->ncols);
        for (int k = 0; k < r->ncols; k++, cell++) {
            if (cell->type == STORE_NULL)
                continue;
            lua_pushvalue(L, rows + 1 + k);
            push_value(L, cell);
            lua_rawset(L, -3);
        }
        lua_rawseti(L, rows, (int)i + 1);
    }
    lua_settop(L, rows);
}

static void push_result(lua_State *L, const store_result_t *r)
{
    lua_createtable(L, 0, 3);
    lua_pushnumber(L, (lua_Number)r->changes);
    lua_setfield(L, -2, "changes");
    if (r->has_last_id) {
        lua_pushnumber(L, (lua_Number)r->last_id);
        lua_setfield(L, -2, "last_id");
    }
    push_rows(L, r);
    lua_setfield(L, -2, "rows");
}

static int push_error(lua_State *L, const store_req_t *req, int batch)
{
    lua_pushnil(L);
    if (batch && req->err_index > 0)
        lua_pushfstring(L, "statement %d: %s", req->err_index, req->err);
    else
        lua_pushstring(L, req->err);
    lua_pushstring(L, req->err_code);
    return 3;
}

static void on_req_done(store_req_t *req)
{
    struct op *op = req->ud;
    task_t *t = task_wake(&op->wait);
    int n = 0;
    if (t) {
        lua_State *L = task_state(t);
        if (req->status != 0) {
            n = push_error(L, req, op->batch);
        } else if (req->kind == STORE_READ) {
            push_rows(L, &req->results[0]);
            n = 1;
        } else if (op->batch) {
            lua_createtable(L, req->nstmts, 0);
            for (int i = 0; i < req->nstmts; i++) {
                push_result(L, &req->results[i]);
                lua_rawseti(L, -2, i + 1);
            }
            n = 1;
        } else {
            push_result(L, &req->results[0]);
            n = 1;
        }
    }
    store_req_free(req);
    free(op);
    if (t)
        task_resume(t, n);
}

static int submit(lua_State *L, task_t *t, struct dbh *h, store_req_t *req, int batch)
{
    struct op *op = calloc(1, sizeof *op);
    if (!op) {
        store_req_free(req);
        return luaL_error(L, "store: out of memory");
    }
    op->batch = batch;
    op->h = h;
    req->done = on_req_done;
    req->ud = op;
    store_submit(h->s, req);
    return task_suspend(L, t, &op->wait, op_cancel);
}

/* query(sql, ...) and exec(sql, ...): one statement, its parameters after it. */
static int one_stmt(lua_State *L, enum store_kind kind, const char *fname)
{
    struct dbh *h = check_db(L, fname);
    int n = lua_gettop(L) - 2;
    if (n < 0)
        n = 0;
    const char *why;
    int bad;
    if (lua_type(L, 2) != LUA_TSTRING)
        return luaL_error(L, "%s: sql: string expected, got %s", fname, luaL_typename(L, 2));
    task_t *t = task_check(L, fname);
    store_req_t *req = store_req_new(kind, 1);
    if (!req)
        return luaL_error(L, "%s: out of memory", fname);
    if (fill_stmt(L, req, &req->stmts[0], 2, 3, n, &why, &bad, NULL, NULL) != 0) {
        store_req_free(req);
        if (bad)
            return luaL_error(L, "%s: parameter %d: %s, got %s", fname, bad, why,
                              luaL_typename(L, 2 + bad));
        return luaL_error(L, "%s: %s", fname, why);
    }
    return submit(L, t, h, req, 0);
}

static int l_store_query(lua_State *L)
{
    return one_stmt(L, STORE_READ, "db:query");
}
static int l_store_exec(lua_State *L)
{
    return one_stmt(L, STORE_WRITE, "db:exec");
}

static int l_store_batch(lua_State *L)
{
    struct dbh *h = check_db(L, "db:batch");
    luaL_checktype(L, 2, LUA_TTABLE);
    int count = (int)lua_objlen(L, 2);
    if (count < 1)
        return luaL_error(L, "db:batch: statements: a non-empty array expected");
    for (int i = 1; i <= count; i++) { /* misuse raises before anything is allocated */
        lua_rawgeti(L, 2, i);
        if (!lua_istable(L, -1))
            return luaL_error(L, "db:batch: statement %d: table {sql, params...} expected, got %s",
                              i, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    task_t *t = task_check(L, "db:batch");
    store_req_t *req = store_req_new(STORE_WRITE, count);
    if (!req)
        return luaL_error(L, "db:batch: out of memory");
    const char *prev_lua = NULL, *prev_copy = NULL;
    for (int i = 1; i <= count; i++) {
        lua_rawgeti(L, 2, i);
        int tbl = lua_gettop(L);
        lua_getfield(L, tbl, "n"); /* n = count keeps trailing nil parameters */
        int n = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) - 1 : (int)lua_objlen(L, tbl) - 1;
        lua_pop(L, 1);
        if (n < 0)
            n = 0;
        luaL_checkstack(L, n + 2, "db:batch: too many parameters");
        for (int k = 1; k <= n + 1; k++)
            lua_rawgeti(L, tbl, k);
        const char *why;
        int bad;
        int rc = fill_stmt(L, req, &req->stmts[i - 1], tbl + 1, tbl + 2, n, &why, &bad, &prev_lua,
                           &prev_copy);
        if (rc != 0) {
            const char *type = luaL_typename(L, tbl + 1 + bad);
            store_req_free(req);
            if (bad)
                return luaL_error(L, "db:batch: statement %d: parameter %d: %s, got %s", i, bad,
                                  why, type);
            return luaL_error(L, "db:batch: statement %d: sql: %s, got %s", i, why, type);
        }
        lua_settop(L, tbl - 1);
    }
    return submit(L, t, h, req, 1);
}

/* ---- open / close / stats ---- */

struct open_op {
    task_wait_t wait;
};

static void push_db(lua_State *L, store_t *s)
{
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): the userdata is one pointer, to the handle */
    struct dbh **ud = lua_newuserdata(L, sizeof *ud);
    *ud = NULL;
    luaL_getmetatable(L, DB_MT);
    lua_setmetatable(L, -2);
    struct dbh *h = calloc(1, sizeof *h);
    if (!h) {
        store_close(s, NULL, NULL);
        luaL_error(L, "store: out of memory");
        return;
    }
    h->s = s;
    *ud = h;
}

static void on_open(store_t *s, const char *err, void *ud)
{
    struct open_op *op = ud;
    task_t *t = task_wake(&op->wait);
    free(op);
    if (!t) { /* nobody wants it any more */
        if (s)
            store_close(s, NULL, NULL);
        return;
    }
    lua_State *L = task_state(t);
    if (s) {
        push_db(L, s);
        task_resume(t, 1);
    } else {
        lua_pushnil(L);
        lua_pushstring(L, err);
        task_resume(t, 2);
    }
}

static int l_store_open(lua_State *L)
{
    const char *url = luaL_checkstring(L, 1);
    task_t *t = task_check(L, "native.open");
    struct open_op *op = calloc(1, sizeof *op);
    if (!op)
        return luaL_error(L, "native.open: out of memory");
    char err[512];
    if (!store_open(task_loop(), url, on_open, op, err, sizeof err)) {
        free(op);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return task_suspend(L, t, &op->wait, op_cancel);
}

struct close_op {
    task_wait_t wait;
    struct dbh *h;
};

static void on_closed(void *ud)
{
    struct close_op *op = ud;
    struct dbh *h = op->h;
    task_t *t = task_wake(&op->wait);
    free(op);
    h->s = NULL;
    if (h->gone)
        free(h);
    if (t) {
        lua_pushboolean(task_state(t), 1);
        task_resume(t, 1);
    }
}

static int l_store_close(lua_State *L)
{
    struct dbh **ud = luaL_checkudata(L, 1, DB_MT);
    struct dbh *h = *ud;
    if (!h || !h->s || h->closing) {
        lua_pushboolean(L, 1);
        return 1;
    }
    task_t *t = task_check(L, "db:close");
    struct close_op *op = calloc(1, sizeof *op);
    if (!op)
        return luaL_error(L, "db:close: out of memory");
    op->h = h;
    h->closing = 1;
    store_close(h->s, on_closed, op);
    return task_suspend(L, t, &op->wait, op_cancel);
}

/* A store collected without db:close() is closed here, blocking until its queued writes
 * are committed: a finalizer cannot wait for the loop. */
static int l_store_gc(lua_State *L)
{
    struct dbh **ud = luaL_checkudata(L, 1, DB_MT);
    struct dbh *h = *ud;
    *ud = NULL;
    if (!h)
        return 0;
    if (!h->s) {
        free(h);
    } else if (h->closing) {
        h->gone = 1; /* on_closed frees h */
        store_close_now(h->s);
    } else {
        store_close_now(h->s);
        free(h);
    }
    return 0;
}

static int l_store_backend(lua_State *L)
{
    struct dbh **ud = luaL_checkudata(L, 1, DB_MT);
    lua_pushstring(L, *ud && (*ud)->s ? store_backend((*ud)->s) : "closed");
    return 1;
}

static int l_store_stats(lua_State *L)
{
    struct dbh *h = check_db(L, "db:stats");
    store_stats_t st;
    store_get_stats(h->s, &st);
    lua_createtable(L, 0, 13);
#define F(name)                                                                                    \
    lua_pushnumber(L, (lua_Number)st.name);                                                        \
    lua_setfield(L, -2, #name)
    F(commits);
    F(units);
    F(failed_units);
    F(statements);
    F(last_batch_units);
    F(max_batch_units);
    F(queue_depth);
    F(reads);
    F(failed_reads);
    F(reads_in_flight);
    F(commit_seconds_total);
    F(read_seconds_total);
    F(idle_releases);
#undef F
    return 1;
}

static int l_store_tostring(lua_State *L)
{
    struct dbh **ud = luaL_checkudata(L, 1, DB_MT);
    if (*ud && (*ud)->s && !(*ud)->closing)
        lua_pushfstring(L, "store (%s): %p", store_backend((*ud)->s), (void *)*ud);
    else
        lua_pushstring(L, "store (closed)");
    return 1;
}

static int l_store_blob(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    struct blob *b = lua_newuserdata(L, sizeof *b + n + 1);
    b->len = n;
    memcpy(b->data, s, n);
    b->data[n] = 0;
    luaL_getmetatable(L, BLOB_MT);
    lua_setmetatable(L, -2);
    return 1;
}

int luaopen_steward_store_native(lua_State *L)
{
    static const luaL_Reg methods[] = {{"query", l_store_query},
                                       {"exec", l_store_exec},
                                       {"batch", l_store_batch},
                                       {"stats", l_store_stats},
                                       {"close", l_store_close},
                                       {"backend", l_store_backend},
                                       {NULL, NULL}};
    static const luaL_Reg funcs[] = {{"open", l_store_open}, {"blob", l_store_blob}, {NULL, NULL}};
    if (luaL_newmetatable(L, DB_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_store_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_store_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    luaL_newmetatable(L, BLOB_MT);
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    lua_pushlightuserdata(L, NULL); /* the same value as steward.json's null */
    lua_setfield(L, -2, "null");
    return 1;
}
