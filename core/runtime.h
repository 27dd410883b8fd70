/* The runtime: one libuv loop, one LuaJIT state, the module loader, the task scheduler. */
#ifndef STEWARD_RUNTIME_H
#define STEWARD_RUNTIME_H

#include <lua.h>
#include <uv.h>

/* Creates the loop and the Lua state, opens the standard libraries, installs the loader for
 * embedded scripts (or STEWARD_LUA_PATH during development) and preloads the bindings. */
int rt_open(void);
lua_State *rt_lua(void);
uv_loop_t *rt_loop(void);
/* Runs the loop until nothing is left to do, or until rt_stop. */
void rt_run(void);
void rt_stop(void);
/* Cancels every task, runs finalizers, closes every handle and the loop. */
void rt_close(void);

/* Pushes require(name); raises on error. */
void rt_require(lua_State *L, const char *name);

#endif
