/* steward.http: placeholder while the binding is being written. */
#include <lua.h>
#include "bindings.h"

int luaopen_steward_http(lua_State *L)
{
    lua_newtable(L);
    return 1;
}
