/* steward.log: structured log records from Lua, through the same writer as the C core. */
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bindings.h"
#include "log.h"

#define MAX_FIELDS 64

/* Renders a field value: strings as they are, other scalars with tostring, tables as
 * "table" (log the fields you need, not whole structures). *literal is set for a finite number
 * or a boolean, which a JSON record writes unquoted; inf and nan have no JSON form and stay
 * strings. */
static const char *field_value(lua_State *L, int idx, unsigned char *literal)
{
    *literal = 0;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: return lua_tostring(L, idx);
    case LUA_TNUMBER:
        *literal = (unsigned char)isfinite(lua_tonumber(L, idx));
        return lua_tostring(L, idx);
    case LUA_TBOOLEAN: *literal = 1; return lua_toboolean(L, idx) ? "true" : "false";
    case LUA_TNIL: return "nil";
    default: {
        lua_getglobal(L, "tostring");
        lua_pushvalue(L, idx);
        lua_call(L, 1, 1);
        lua_replace(L, idx);
        return lua_tostring(L, idx);
    }
    }
}

/* log.<level>(msg [, fields]): fields is a table of key = value, written sorted by key. */
static int log_at(lua_State *L, enum log_level level)
{
    const char *msg = luaL_checkstring(L, 1);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    if (!log_enabled(level))
        return 0;
    lua_settop(L, 2);
    const char *keys[MAX_FIELDS], *values[MAX_FIELDS];
    unsigned char literal[MAX_FIELDS];
    size_t n = 0;
    if (lua_istable(L, 2)) {
        /* Collect the string keys, sort them, then read the values in that order. */
        lua_newtable(L); /* 3: keys */
        lua_pushnil(L);
        while (lua_next(L, 2)) {
            lua_pop(L, 1);
            if (lua_type(L, -1) == LUA_TSTRING) {
                lua_pushvalue(L, -1);
                lua_rawseti(L, 3, (int)lua_objlen(L, 3) + 1);
            }
        }
        lua_getglobal(L, "table");
        lua_getfield(L, -1, "sort");
        lua_remove(L, -2);
        lua_pushvalue(L, 3);
        lua_call(L, 1, 0);
        int nk = (int)lua_objlen(L, 3);
        luaL_checkstack(L, 2 * nk + 4, "log fields");
        for (int i = 1; i <= nk && n < MAX_FIELDS; i++) {
            lua_rawgeti(L, 3, i);
            keys[n] = lua_tostring(L, -1);
            lua_pushvalue(L, -1);
            lua_rawget(L, 2);
            values[n] = field_value(L, lua_gettop(L), &literal[n]);
            n++;
        }
    }
    log_writev(level, msg, n, keys, values, literal);
    return 0;
}

static int l_log_debug(lua_State *L)
{
    return log_at(L, LOG_DEBUG);
}
static int l_log_info(lua_State *L)
{
    return log_at(L, LOG_INFO);
}
static int l_log_warn(lua_State *L)
{
    return log_at(L, LOG_WARN);
}
static int l_log_error(lua_State *L)
{
    return log_at(L, LOG_ERROR);
}

static int l_log_enabled(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    int level = (int)log_level_parse(name);
    if (level < 0)
        return luaL_argerror(L, 1, "level must be debug, info, warn or error");
    lua_pushboolean(L, log_enabled((enum log_level)level));
    return 1;
}

static int l_log_set_level(lua_State *L)
{
    int level = (int)log_level_parse(luaL_checkstring(L, 1));
    if (level < 0)
        return luaL_argerror(L, 1, "level must be debug, info, warn, error or off");
    log_set_level((enum log_level)level);
    return 0;
}

int luaopen_steward_log(lua_State *L)
{
    static const luaL_Reg funcs[] = {{"debug", l_log_debug},
                                     {"info", l_log_info},
                                     {"warn", l_log_warn},
                                     {"error", l_log_error},
                                     {"enabled", l_log_enabled},
                                     {"set_level", l_log_set_level},
                                     {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    return 1;
}
