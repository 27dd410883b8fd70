/* libFuzzer target for steward.json: decode arbitrary bytes; whatever decodes must encode,
 * and what that encodes must decode again (the empty-array walk in bindings/json.c runs on
 * every input holding "[" ... "]"). The pre-scan (bindings/json_scan.c) runs on every input
 * too, also directly with limits taken from the input: it must stay inside the text, and
 * it must never call malformed what cjson accepts (decode would then refuse valid JSON with
 * "invalid JSON at byte offset") -- except text with a NUL byte, where cjson stops reading
 * (it takes "5\0garbage" for 5) and the refusal is right. An assertion failure aborts, which the
 * fuzzer reports. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_scan.h"

int luaopen_steward_json(lua_State *L);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char check[] =
    "local json, s = ...\n"
    "local v, err = json.decode(s)\n"
    "if v == nil then\n"
    "  assert(type(err) == 'string' and #err > 0)\n"
    "  assert(not err:find('^invalid JSON at byte offset') or s:find('%z'), 'the scan refused what "
    "cjson took')\n"
    "  return\n"
    "end\n"
    "local t, eerr = json.encode(v)\n"
    "if t == nil then\n"
    "  assert(eerr:find('NaN or Inf') or eerr:find('nesting') or eerr:find('marker'), eerr)\n"
    "  return\n"
    "end\n"
    "local v2, derr = json.decode(t)\n"
    "assert(v2 ~= nil, 'what encode wrote must decode: ' .. tostring(derr))\n"
    "assert(json.encode(v2) ~= nil, 'and encode again')\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2) {
        struct json_scan_limits lim = {data[0] % 8, data[1] % 16};
        struct json_scan_result r;
        enum json_scan_status st = json_scan((const char *)data + 2, size - 2, &lim, &r);
        if (st > JSON_SCAN_NOMEM || r.offset > size - 2 || r.key_len < strlen(r.key))
            abort();
    }
    static lua_State *L;
    static int fn_ref, json_ref;
    if (!L) {
        L = luaL_newstate();
        luaL_openlibs(L);
        luaopen_steward_json(L);
        json_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        if (luaL_loadstring(L, check) != 0)
            abort();
        fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, json_ref);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 2, 0, 0) != 0) {
        fprintf(stderr, "json round trip failed: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
