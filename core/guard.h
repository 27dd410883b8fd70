/* The guard: per-run CPU and memory budgets for policy code (steward.runtime.guard, core/guard.c). */
#ifndef STEWARD_GUARD_H
#define STEWARD_GUARD_H

#include <stddef.h>

#include <lua.h>

/* The main Lua state (core/runtime.c), guard_alloc its allocator in front of glibc's or, with
 * STEWARD_LUA_ALLOC=luajit, LuaJIT's own; NULL when out of memory or that variable is neither
 * (the reason on stderr). guard_close closes it (the base allocator handed back first, so
 * lua_close destroys LuaJIT's arena). */
lua_State *guard_newstate(void);
void guard_close(lua_State *L);

/* The Lua state's allocator: the base one's calls passed through, and while a guarded run
 * is current, the accounting of its net heap growth against its memory budget. Frees and
 * shrinks never fail. */
void *guard_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

#endif
