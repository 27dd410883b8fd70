/* Durations: a number of seconds, or a string such as "250ms", "15m", "1h30m", "2d". */
#ifndef STEWARD_DURATION_H
#define STEWARD_DURATION_H

#include <lua.h>

/* 0 and *out in seconds, or -1 when s is not a duration. */
int duration_parse(const char *s, double *out);
/* Argument idx as a duration in seconds (>= 0); raises an error naming what otherwise. */
double duration_check(lua_State *L, int idx, const char *what);
/* Same, or def when the argument is nil or absent. */
double duration_opt(lua_State *L, int idx, const char *what, double def);

#endif
