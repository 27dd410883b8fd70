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
 * Both run on the calling thread: parsing a migration takes microseconds, and libpg_query
 * keeps its memory in per-thread contexts that another thread would have to set up. */
#include <lauxlib.h>
#include <lua.h>
#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <string.h>

#include "bindings.h"

/* Upvalues: steward.json's decode, and the metatable of result boxes. */
#define UV_DECODE lua_upvalueindex(1)
#define UV_BOX_MT lua_upvalueindex(2)

/* libpg_query's results live in a userdata box from the moment they exist: building the Lua
 * answer allocates, an allocation can raise (a policy's memory budget), and the box's __gc
 * then frees what the raise skipped. Each function frees its result itself as soon as it is
 * done with it; the collector only sees boxes emptied already, except after such a raise. */
struct result_box {
    int has_parse, has_scan;
    PgQueryParseResult parse;
    PgQueryScanResult scan;
    PgQuery__ScanResult *tokens;
};

static void box_release(struct result_box *b)
{
    if (b->has_parse)
        pg_query_free_parse_result(b->parse);
    if (b->has_scan)
        pg_query_free_scan_result(b->scan);
    if (b->tokens)
        pg_query__scan_result__free_unpacked(b->tokens, NULL);
    b->has_parse = b->has_scan = 0;
    b->tokens = NULL;
}

static int box_gc(lua_State *L)
{
    box_release(lua_touserdata(L, 1));
    return 0;
}

static struct result_box *new_box(lua_State *L)
{
    struct result_box *b = lua_newuserdata(L, sizeof *b);
    memset(b, 0, sizeof *b);
    lua_pushvalue(L, UV_BOX_MT);
    lua_setmetatable(L, -2);
    return b;
}

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

/* nil, message, {position, message}; the box is released after the strings are copied. */
static int push_pg_error(lua_State *L, struct result_box *b, const PgQueryError *e)
{
    lua_pushnil(L);
    lua_pushstring(L, e->message ? e->message : "syntax error");
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, e->cursorpos);
    lua_setfield(L, -2, "position");
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "message");
    box_release(b);
    return 3;
}

/* parse(sql) */
static int l_sqlparse_parse(lua_State *L)
{
    size_t len;
    const char *sql = check_sql(L, &len);
    struct result_box *b = new_box(L);
    b->parse = pg_query_parse(sql);
    b->has_parse = 1;
    if (b->parse.error)
        return push_pg_error(L, b, b->parse.error);
    lua_pushvalue(L, UV_DECODE);
    lua_pushstring(L, b->parse.parse_tree);
    box_release(b);
    /* A tree deeper than steward.json's depth limit is refused by decode (nil, err): that
     * is the answer for SQL nested beyond what a migration holds. */
    lua_call(L, 1, 2);
    if (lua_isnil(L, -2)) {
        /* e.g. bytes that are not UTF-8 inside a string literal: PostgreSQL's parser keeps
         * them, JSON cannot carry them. No position is known. */
        const char *why = lua_pushfstring(L, "parse tree not decodable: %s", lua_tostring(L, -1));
        lua_pushnil(L);
        lua_pushstring(L, why);
        lua_createtable(L, 0, 1);
        lua_pushstring(L, why);
        lua_setfield(L, -2, "message");
        return 3;
    }
    lua_pop(L, 1);
    /* pg_query's JSON omits zero fields: stmt_location of the first statement, stmt_len of
     * a last statement without ';' (it runs to the end). Fill both in, under plain names. */
    lua_getfield(L, -1, "stmts");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "stmts");
    }
    int n = (int)lua_objlen(L, -1);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        lua_getfield(L, -1, "stmt_location");
        lua_Integer loc = lua_tointeger(L, -1);
        lua_getfield(L, -2, "stmt_len");
        lua_Integer slen = lua_isnumber(L, -1) ? lua_tointeger(L, -1) : 0;
        lua_pop(L, 2);
        if (slen == 0 || loc + slen > (lua_Integer)len)
            slen = (lua_Integer)len - loc;
        lua_pushinteger(L, loc);
        lua_setfield(L, -2, "location");
        lua_pushinteger(L, slen);
        lua_setfield(L, -2, "len");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 1;
}

/* scan(sql) */
static int l_sqlparse_scan(lua_State *L)
{
    size_t len;
    const char *sql = check_sql(L, &len);
    struct result_box *b = new_box(L);
    b->scan = pg_query_scan(sql);
    b->has_scan = 1;
    if (b->scan.error)
        return push_pg_error(L, b, b->scan.error);
    b->tokens =
        pg_query__scan_result__unpack(NULL, b->scan.pbuf.len, (const uint8_t *)b->scan.pbuf.data);
    if (!b->tokens) {
        box_release(b);
        lua_pushnil(L);
        lua_pushliteral(L, "scan result not decodable");
        return 2;
    }
    const PgQuery__ScanResult *scan = b->tokens;
    lua_createtable(L, (int)scan->n_tokens, 0);
    for (size_t i = 0; i < scan->n_tokens; i++) {
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
        lua_rawseti(L, -2, (int)i + 1);
    }
    box_release(b);
    return 1;
}

int luaopen_steward_sqlparse(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"parse", l_sqlparse_parse}, {"scan", l_sqlparse_scan}, {NULL, NULL}};
    lua_getglobal(L, "require");
    lua_pushliteral(L, "steward.json");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "decode");
    lua_remove(L, -2);
    lua_createtable(L, 0, 1); /* the boxes' metatable */
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
    lua_newtable(L);
    for (const luaL_Reg *f = funcs; f->name; f++) {
        lua_pushvalue(L, -3);
        lua_pushvalue(L, -3);
        lua_pushcclosure(L, f->func, 2);
        lua_setfield(L, -2, f->name);
    }
    lua_pushliteral(L, PG_VERSION);
    lua_setfield(L, -2, "pg_version");
    lua_replace(L, -3);
    lua_pop(L, 1);
    return 1;
}
