/* libFuzzer target for steward.sqlparse (bindings/sqlparse.c over libpg_query): any bytes go
 * to parse() and scan(). Whatever parses must give statements inside the text, in order, and
 * node tables; whatever scans must give tokens inside the text, in order, each with a name; a
 * NUL byte must be refused with an error naming its offset, never read past. An assertion
 * failure aborts, which the fuzzer reports. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int luaopen_steward_json(lua_State *L);
int luaopen_steward_sqlparse(lua_State *L);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char check[] =
    "local p, s = ...\n"
    "local ok, tree, err, info = pcall(p.parse, s)\n"
    "if not ok then\n"
    "  assert(s:find('%z') and tostring(tree):find('NUL byte at offset'), tostring(tree))\n"
    "  return\n"
    "end\n"
    "if tree then\n"
    "  local last = -1\n"
    "  for _, st in ipairs(tree.stmts) do\n"
    "    assert(st.location > last and st.location >= 0, 'statements in order')\n"
    "    assert(st.len >= 0 and st.location + st.len <= #s, 'statement inside the text')\n"
    "    assert(type(st.stmt) == 'table', 'a node')\n"
    "    last = st.location\n"
    "  end\n"
    "else\n"
    "  assert(type(err) == 'string' and type(info) == 'table')\n"
    "  assert(type(info.position) == 'number' or err:find('^parse tree not decodable'), err)\n"
    "end\n"
    "local toks, terr = p.scan(s)\n"
    "if toks then\n"
    "  local prev = 0\n"
    "  for _, t in ipairs(toks) do\n"
    "    assert(t.start >= prev and t.stop >= t.start and t.stop <= #s, 'tokens in order, "
    "inside')\n"
    "    assert(type(t.token) == 'string' and #t.token > 0)\n"
    "    prev = t.stop\n"
    "  end\n"
    "else\n"
    "  assert(type(terr) == 'string')\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lua_State *L;
    static int fn_ref, mod_ref;
    if (!L) {
        L = luaL_newstate();
        luaL_openlibs(L);
        lua_getglobal(L, "package");
        lua_getfield(L, -1, "preload");
        lua_pushcfunction(L, luaopen_steward_json);
        lua_setfield(L, -2, "steward.json");
        lua_pop(L, 2);
        lua_pushcfunction(L, luaopen_steward_sqlparse);
        lua_call(L, 0, 1);
        mod_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        if (luaL_loadstring(L, check) != 0)
            abort();
        fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, mod_ref);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 2, 0, 0) != 0) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        abort();
    }
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
