/* Parses durations the way operators write them in config and policies. */
#include "duration.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static double unit_seconds(const char *u, size_t n)
{
    static const struct {
        const char *name;
        double sec;
    } units[] = {{"ns", 1e-9}, {"us", 1e-6}, {"ms", 1e-3}, {"s", 1},
                 {"m", 60},    {"h", 3600},  {"d", 86400}, {"w", 604800}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strlen(units[i].name) == n && strncmp(units[i].name, u, n) == 0)
            return units[i].sec;
    return -1;
}

int duration_parse(const char *s, double *out)
{
    double total = 0;
    const char *p = s;
    if (!*p)
        return -1;
    while (*p) {
        if (!(*p >= '0' && *p <= '9') && *p != '.')
            return -1;
        char *end;
        double v = strtod(p, &end);
        if (end == p || !isfinite(v))
            return -1;
        const char *u = end;
        while ((*end >= 'a' && *end <= 'z'))
            end++;
        double mult = unit_seconds(u, (size_t)(end - u));
        if (mult < 0)
            return -1; /* a bare number inside a string is ambiguous: require a unit */
        total += v * mult;
        p = end;
    }
    *out = total;
    return 0;
}

double duration_check(lua_State *L, int idx, const char *what)
{
    double sec;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        sec = lua_tonumber(L, idx);
        if (!isfinite(sec) || sec < 0)
            return luaL_error(L, "%s: duration must be a finite number of seconds >= 0", what);
        return sec;
    }
    if (lua_type(L, idx) == LUA_TSTRING) {
        const char *s = lua_tostring(L, idx);
        if (duration_parse(s, &sec) == 0)
            return sec;
        return luaL_error(L,
                          "%s: bad duration '%s' (expected seconds, or e.g. \"250ms\", \"15m\", "
                          "\"1h30m\")",
                          what, s);
    }
    return luaL_error(L,
                      "%s: duration expected (number of seconds or string such as \"15m\"), "
                      "got %s",
                      what, luaL_typename(L, idx));
}

double duration_opt(lua_State *L, int idx, const char *what, double def)
{
    if (lua_isnoneornil(L, idx))
        return def;
    return duration_check(L, idx, what);
}
