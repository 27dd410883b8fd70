/* Entry points of the bindings, one per file in bindings/. */
#ifndef STEWARD_BINDINGS_H
#define STEWARD_BINDINGS_H

#include <lua.h>

int luaopen_steward_time(lua_State *L);
int luaopen_steward_pg(lua_State *L);
int luaopen_steward_json(lua_State *L);
int luaopen_steward_log(lua_State *L);
int luaopen_steward_http(lua_State *L);
int luaopen_steward_crypto(lua_State *L);
int luaopen_steward_fs(lua_State *L);
int luaopen_steward_proc(lua_State *L);
int luaopen_steward_signal(lua_State *L);
int luaopen_steward_fswatch(lua_State *L);
int luaopen_steward_unix(lua_State *L);
int luaopen_steward_identity(lua_State *L);
int luaopen_steward_ingest(lua_State *L); /* steward.runtime.ingest.native */
int luaopen_steward_sqlparse(lua_State *L);
int luaopen_steward_compress(lua_State *L);
int luaopen_steward_decimal(lua_State *L);

#endif
