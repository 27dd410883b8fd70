/* Entry points of the core's Lua-facing modules, preloaded by core/runtime.c. */
#ifndef STEWARD_CORE_MODULES_H
#define STEWARD_CORE_MODULES_H

#include <lua.h>

int luaopen_steward_task(lua_State *L);         /* core/task_lua.c */
int luaopen_steward_httpd(lua_State *L);        /* core/http/httpd_lua.c */
int luaopen_steward_store_native(lua_State *L); /* core/store/store_lua.c */
int luaopen_steward_guard(lua_State *L);        /* core/guard.c */

#endif
