/* steward.unix: framed unix-domain socket streams (the admin socket). Being written. */
#include <lauxlib.h>

#include "bindings.h"

int luaopen_steward_unix(lua_State *L)
{
    lua_newtable(L);
    return 1;
}
