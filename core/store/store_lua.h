/* For C modules that submit their own requests to a store opened from Lua
 * (steward.runtime.store.native's db handles). */
#ifndef STEWARD_STORE_LUA_H
#define STEWARD_STORE_LUA_H

#include <lua.h>

#include "store.h"

/* The open store of the db handle at idx; raises (naming fname) unless it is one. */
store_t *store_lua_check(lua_State *L, int idx, const char *fname);

#endif
