/* steward.sqlparse: PostgreSQL's own parser, through Debian's libpg_query (the parser of
 * PostgreSQL 15 compiled as a library), for the migration checks of steward.deploy.migrations.
 *
 *   parse(sql)  -> {version =, stmts = { {stmt = node, location =, len =}, ... }}
 *                  | nil, err, {position =, message =} (no position when the tree is
 *                    not JSON-able, e.g. a string literal that is not UTF-8)
 *   scan(sql)   -> { {start =, stop =, token =, keyword =}, ... } | nil, err, {position =}
 *
 * parse decodes pg_query_parse's JSON with steward.json, so node tables look exactly like
 * libpg_query's JSON (`{CreateStmt = {relation = {...}, tableElts = {...}}}`). location and
 * len are byte offsets of each statement (0-based, as libpg_query gives them: a statement
 * starts right after the previous ';', so its text may begin with blanks and comments).
 * scan returns every token, comments included -- the parser drops comments, and the
 * "-- squawk-ignore" directives live in them; start and stop are 0-based byte offsets,
 * stop exclusive. error positions are libpg_query's cursorpos: 1-based, in characters.
 *
 * A large migration takes seconds (1 MB of SQL: a quarter second in the parser, an 11 MB
 * JSON tree, a second to decode it whole), so inside a task neither step may hold the loop:
 * the parser (or the scanner, and the unpacking of its tokens) runs on libuv's thread pool
 * together with a yajl pass that finds where each statement's JSON starts and ends, and the
 * loop then builds the Lua tables a slice at a time (SLICE_BYTES of JSON, SLICE_TOKENS
 * tokens), yielding the task between slices. Outside a task (a plain lua_State, a C call
 * that cannot yield) the same steps run at once on the calling thread. */
#include <lauxlib.h>
#include <lua.h>
#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <yajl/yajl_parse.h>

#include "bindings.h"
#include "task.h"

#define BOX_MT       "steward.sqlparse.result"
#define SLICE_BYTES  ((size_t)128 << 10) /* of statement JSON per slice: ~10 ms to decode */
#define SLICE_TOKENS 20000
/* steward.json's depth limit, less the two levels (the root object, the stmts array) above
 * each statement: a statement is refused exactly when the whole tree would have been. */
#define STMT_MAX_DEPTH (128 - 2)

/* Upvalues of the slice functions: steward.json's decode, its options for one statement. */
#define UV_DECODE      lua_upvalueindex(1)
#define UV_DECODE_OPTS lua_upvalueindex(2)

/* Where each statement's JSON object lies in the parse tree's text. */
struct span {
    size_t start, end;
};

/* libpg_query's results live in a userdata box from the moment they reach Lua: building the
 * Lua answer allocates, an allocation can raise (a policy's memory budget), and the box's
 * __gc then frees what the raise skipped -- as it does when the task is cancelled between
 * two slices. Until then (on the thread pool) the job below owns them. */
struct result_box {
    int is_scan, async;
    int has_parse, has_scan;
    PgQueryParseResult parse;
    PgQueryScanResult scan;
    PgQuery__ScanResult *tokens;
    struct span *spans;
    size_t nspans, next; /* statements or tokens already handed to Lua */
    size_t sql_len;
    const char *split_err; /* static text: the work failed (JSON not splittable, job failed) */
};

static void box_release(struct result_box *b)
{
    if (b->has_parse)
        pg_query_free_parse_result(b->parse);
    if (b->has_scan)
        pg_query_free_scan_result(b->scan);
    if (b->tokens)
        pg_query__scan_result__free_unpacked(b->tokens, NULL);
    free(b->spans);
    b->has_parse = b->has_scan = 0;
    b->tokens = NULL;
    b->spans = NULL;
    b->nspans = 0;
}

static int box_gc(lua_State *L)
{
    box_release(luaL_checkudata(L, 1, BOX_MT));
    return 0;
}

/* Pushes a box that takes over *from's results. */
static struct result_box *push_box(lua_State *L, const struct result_box *from)
{
    struct result_box *b = lua_newuserdata(L, sizeof *b);
    *b = *from;
    luaL_getmetatable(L, BOX_MT);
    lua_setmetatable(L, -2);
    return b;
}

/* ---- the work: on the thread pool inside a task, on the caller's thread outside ---- */

/* libpg_query keeps its memory contexts in thread-local variables, set up by the first call
 * on each thread and freed by a pthread key destructor when the thread exits (libuv's pool
 * threads exit at process exit). That first call also writes the key into a static shared by
 * all threads, so first calls are serialised. pg_query_exit() is not for us: in this version
 * it leaves the thread's contexts NULL while still marked initialised, and the key's
 * destructor would free them a second time. */
static uv_once_t init_once = UV_ONCE_INIT;
static uv_mutex_t init_lock;
static _Thread_local int thread_ready;

static void init_lock_create(void)
{
    if (uv_mutex_init(&init_lock) != 0)
        abort();
}

static void thread_init(void)
{
    if (thread_ready)
        return;
    uv_once(&init_once, init_lock_create);
    uv_mutex_lock(&init_lock);
    pg_query_init();
    uv_mutex_unlock(&init_lock);
    thread_ready = 1;
}

struct split {
    yajl_handle h;
    size_t depth;
    struct result_box *b;
    size_t cap;
    int nomem;
};

/* The tree is {"version": n, "stmts": [ {...}, ... ]}: each object opened at depth 3 is
 * one statement. Inside a callback yajl's bytes consumed stand just past the brace. */
static int split_start_map(void *ctx)
{
    struct split *s = ctx;
    if (++s->depth != 3)
        return 1;
    struct result_box *b = s->b;
    if (b->nspans == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        struct span *n = realloc(b->spans, cap * sizeof *n);
        if (!n) {
            s->nomem = 1;
            return 0;
        }
        b->spans = n;
        s->cap = cap;
    }
    b->spans[b->nspans].start = yajl_get_bytes_consumed(s->h) - 1;
    return 1;
}

static int split_end_map(void *ctx)
{
    struct split *s = ctx;
    if (s->depth-- == 3)
        s->b->spans[s->b->nspans++].end = yajl_get_bytes_consumed(s->h);
    return 1;
}

static int split_start_array(void *ctx)
{
    ((struct split *)ctx)->depth++;
    return 1;
}

static int split_end_array(void *ctx)
{
    ((struct split *)ctx)->depth--;
    return 1;
}

static void split_tree(struct result_box *b)
{
    static const yajl_callbacks cb = {.yajl_start_map = split_start_map,
                                      .yajl_end_map = split_end_map,
                                      .yajl_start_array = split_start_array,
                                      .yajl_end_array = split_end_array};
    struct split s = {.b = b};
    s.h = yajl_alloc(&cb, NULL, &s);
    if (!s.h) {
        b->split_err = "out of memory";
        return;
    }
    /* Strings are cjson's to judge (a literal that is not UTF-8 is refused there, with the
     * statement it sits in); this pass only needs the structure. */
    yajl_config(s.h, yajl_dont_validate_strings, 1);
    const char *tree = b->parse.parse_tree;
    yajl_status st = yajl_parse(s.h, (const unsigned char *)tree, strlen(tree));
    if (st == yajl_status_ok)
        st = yajl_complete_parse(s.h);
    yajl_free(s.h);
    if (st != yajl_status_ok)
        b->split_err = s.nomem ? "out of memory" : "libpg_query's JSON is malformed";
}

static void run(struct result_box *b, const char *sql)
{
    thread_init();
    if (b->is_scan) {
        b->scan = pg_query_scan(sql);
        b->has_scan = 1;
        if (!b->scan.error)
            b->tokens = pg_query__scan_result__unpack(NULL, b->scan.pbuf.len,
                                                      (const uint8_t *)b->scan.pbuf.data);
    } else {
        b->parse = pg_query_parse(sql);
        b->has_parse = 1;
        if (!b->parse.error)
            split_tree(b);
    }
}

/* One parse or scan on the thread pool. It owns a copy of the SQL and the results until the
 * after-work callback, which runs whether or not the task is still there. */
struct job {
    task_wait_t wait;
    uv_work_t work;
    char *sql;
    struct result_box res;
};

static void job_work(uv_work_t *w)
{
    struct job *j = w->data;
    run(&j->res, j->sql);
}

static void job_after(uv_work_t *w, int status)
{
    struct job *j = w->data;
    task_t *t = task_wake(&j->wait);
    if (t) {
        /* Only a cancelled task's job is cancelled; should libuv fail one anyway, the task
         * still gets an answer. */
        if (status != 0)
            j->res.split_err = uv_strerror(status);
        push_box(task_state(t), &j->res);
        free(j->sql);
        free(j);
        task_resume(t, 1);
        return;
    }
    box_release(&j->res); /* the task is gone (cancelled while queued or running) */
    free(j->sql);
    free(j);
}

static void job_cancel(task_wait_t *w)
{
    /* A job no thread has picked up yet is dropped; a running one finishes. Either way
     * job_after runs and frees it. */
    struct job *j = (struct job *)w;
    uv_cancel((uv_req_t *)&j->work);
}

/* ---- Lua side ---- */

/* The argument as a C string; PostgreSQL's parser reads up to the first NUL, so a NUL inside
 * would silently hide the rest of the migration from the checks. */
static const char *check_sql(lua_State *L, size_t *len)
{
    const char *sql = luaL_checklstring(L, 1, len);
    const char *nul = memchr(sql, '\0', *len);
    if (nul)
        luaL_argerror(L, 1,
                      lua_pushfstring(L, "SQL holds a NUL byte at offset %d", (int)(nul - sql)));
    return sql;
}

/* The running task when L may suspend here, else NULL (the synchronous path). */
static task_t *yieldable_task(lua_State *L)
{
    task_t *t = task_current();
    if (!t || task_state(t) != L || !lua_isyieldable(L))
        return NULL;
    return t;
}

/* start(sql) -> box; in a task, after the work on the thread pool. */
static int start(lua_State *L, int is_scan, const char *fname)
{
    size_t len;
    const char *sql = check_sql(L, &len);
    task_t *t = yieldable_task(L);
    if (!t) {
        struct result_box r = {.is_scan = is_scan, .sql_len = len};
        struct result_box *b = push_box(L, &r);
        run(b, sql);
        return 1;
    }
    t = task_check(L, fname); /* raises if the task is being cancelled */
    struct job *j = calloc(1, sizeof *j);
    char *copy = malloc(len + 1);
    if (!j || !copy) {
        free(j);
        free(copy);
        return luaL_error(L, "%s: out of memory", fname);
    }
    memcpy(copy, sql, len + 1);
    j->sql = copy;
    j->res.is_scan = is_scan;
    j->res.async = 1;
    j->res.sql_len = len;
    j->work.data = j;
    int rc = uv_queue_work(task_loop(), &j->work, job_work, job_after);
    if (rc < 0) {
        free(copy);
        free(j);
        return luaL_error(L, "%s: %s", fname, uv_strerror(rc));
    }
    return task_suspend(L, t, &j->wait, job_cancel);
}

static int l_sqlparse_parse_start(lua_State *L)
{
    return start(L, 0, "sqlparse.parse");
}

static int l_sqlparse_scan_start(lua_State *L)
{
    return start(L, 1, "sqlparse.scan");
}

/* false, message, {position, message}; the box is released after the strings are copied. */
static int push_pg_error(lua_State *L, struct result_box *b, const PgQueryError *e)
{
    lua_pushboolean(L, 0);
    lua_pushstring(L, e->message ? e->message : "syntax error");
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, e->cursorpos);
    lua_setfield(L, -2, "position");
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "message");
    box_release(b);
    return 3;
}

/* false, "parse tree not decodable: why", {message}: no position is known. */
static int push_undecodable(lua_State *L, struct result_box *b, const char *why)
{
    why = lua_pushfstring(L, "parse tree not decodable: %s", why);
    box_release(b);
    lua_pushboolean(L, 0);
    lua_pushstring(L, why);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, why);
    lua_setfield(L, -2, "message");
    return 3;
}

/* What a slice returns when more remains: nothing, after yielding the task once, so every
 * other ready task and the loop's I/O run between two slices. */
static int more(lua_State *L, struct result_box *b)
{
    task_t *t = b->async ? yieldable_task(L) : NULL;
    if (!t)
        return 0;
    return task_defer(L, task_check(L, b->is_scan ? "sqlparse.scan" : "sqlparse.parse"));
}

/* Decodes statements into out.stmts until SLICE_BYTES of their JSON are done. */
static int slice_parse(lua_State *L, struct result_box *b)
{
    if (b->split_err)
        return push_undecodable(L, b, b->split_err);
    if (b->parse.error)
        return push_pg_error(L, b, b->parse.error);
    lua_getfield(L, 2, "stmts");
    size_t done = 0;
    while (b->next < b->nspans && done < SLICE_BYTES) {
        const struct span *sp = &b->spans[b->next];
        lua_pushvalue(L, UV_DECODE);
        lua_pushlstring(L, b->parse.parse_tree + sp->start, sp->end - sp->start);
        lua_pushvalue(L, UV_DECODE_OPTS);
        lua_call(L, 2, 2);
        if (lua_isnil(L, -2))
            /* e.g. bytes that are not UTF-8 inside a string literal: PostgreSQL's parser
             * keeps them, JSON cannot carry them; or nesting past the depth limit. */
            return push_undecodable(L, b, lua_tostring(L, -1));
        lua_pop(L, 1);
        /* pg_query's JSON omits zero fields: stmt_location of the first statement, stmt_len
         * of a last statement without ';' (it runs to the end). Fill both in, under plain
         * names. */
        lua_getfield(L, -1, "stmt_location");
        lua_Integer loc = lua_tointeger(L, -1);
        lua_getfield(L, -2, "stmt_len");
        lua_Integer slen = lua_isnumber(L, -1) ? lua_tointeger(L, -1) : 0;
        lua_pop(L, 2);
        if (slen == 0 || loc + slen > (lua_Integer)b->sql_len)
            slen = (lua_Integer)b->sql_len - loc;
        lua_pushinteger(L, loc);
        lua_setfield(L, -2, "location");
        lua_pushinteger(L, slen);
        lua_setfield(L, -2, "len");
        lua_rawseti(L, -2, (int)++b->next);
        done += sp->end - sp->start;
    }
    lua_pop(L, 1);
    if (b->next < b->nspans)
        return more(L, b);
    box_release(b);
    lua_pushboolean(L, 1);
    return 1;
}

/* Appends up to SLICE_TOKENS tokens to out. */
static int slice_scan(lua_State *L, struct result_box *b)
{
    if (b->split_err)
        return push_undecodable(L, b, b->split_err);
    if (b->scan.error)
        return push_pg_error(L, b, b->scan.error);
    if (!b->tokens) {
        box_release(b);
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "scan result not decodable");
        return 2;
    }
    const PgQuery__ScanResult *scan = b->tokens;
    size_t stop = b->next + SLICE_TOKENS < scan->n_tokens ? b->next + SLICE_TOKENS : scan->n_tokens;
    for (size_t i = b->next; i < stop; i++) {
        const PgQuery__ScanToken *t = scan->tokens[i];
        const ProtobufCEnumValue *tok =
            protobuf_c_enum_descriptor_get_value(&pg_query__token__descriptor, t->token);
        const ProtobufCEnumValue *kw = protobuf_c_enum_descriptor_get_value(
            &pg_query__keyword_kind__descriptor, t->keyword_kind);
        lua_createtable(L, 0, 4);
        lua_pushinteger(L, t->start);
        lua_setfield(L, -2, "start");
        lua_pushinteger(L, t->end);
        lua_setfield(L, -2, "stop");
        lua_pushstring(L, tok ? tok->name : "UNKNOWN");
        lua_setfield(L, -2, "token");
        lua_pushstring(L, kw ? kw->name : "NO_KEYWORD");
        lua_setfield(L, -2, "keyword");
        lua_rawseti(L, 2, (int)i + 1);
        b->next = i + 1;
    }
    if (b->next < scan->n_tokens)
        return more(L, b);
    box_release(b);
    lua_pushboolean(L, 1);
    return 1;
}

/* slice(box, out) -> true (done) | nothing (more to do) | false, err [, info] */
static int l_sqlparse_slice(lua_State *L)
{
    struct result_box *b = luaL_checkudata(L, 1, BOX_MT);
    luaL_checktype(L, 2, LUA_TTABLE);
    return b->is_scan ? slice_scan(L, b) : slice_parse(L, b);
}

/* The two public functions: start, then slices until done. The names of the locals are the
 * names an argument error reports ("bad argument #1 to 'parse'"). */
static const char driver[] = "local parse_start, scan_start, slice, version = ...\n"
                             "local function finish(box, out)\n"
                             "  local done, err, info\n"
                             "  repeat done, err, info = slice(box, out) until done ~= nil\n"
                             "  if not done then return nil, err, info end\n"
                             "  return out\n"
                             "end\n"
                             "return {\n"
                             "  parse = function(sql)\n"
                             "    local parse = parse_start\n"
                             "    local box = parse(sql)\n"
                             "    return finish(box, {version = version, stmts = {}})\n"
                             "  end,\n"
                             "  scan = function(sql)\n"
                             "    local scan = scan_start\n"
                             "    local box = scan(sql)\n"
                             "    return finish(box, {})\n"
                             "  end,\n"
                             "}\n";

int luaopen_steward_sqlparse(lua_State *L)
{
    if (luaL_loadbuffer(L, driver, sizeof driver - 1, "=steward.sqlparse") != 0)
        return lua_error(L);
    if (luaL_newmetatable(L, BOX_MT)) {
        lua_pushcfunction(L, box_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_sqlparse_parse_start);
    lua_pushcfunction(L, l_sqlparse_scan_start);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "steward.json");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "decode");
    lua_remove(L, -2);
    lua_createtable(L, 0, 1);
    lua_pushinteger(L, STMT_MAX_DEPTH);
    lua_setfield(L, -2, "max_depth");
    lua_pushcclosure(L, l_sqlparse_slice, 2);
    lua_pushinteger(L, PG_VERSION_NUM);
    lua_call(L, 4, 1);
    lua_pushliteral(L, PG_VERSION);
    lua_setfield(L, -2, "pg_version");
    return 1;
}
