/* placeholder while the module is being written */
#include "core_modules.h"

int luaopen_steward_httpd(lua_State *L)
{
    lua_newtable(L);
    return 1;
}
