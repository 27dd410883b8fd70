/* steward.identity: who the process runs as, and becoming an unprivileged user.
 *
 * The daemon started as root gives up root before it opens the store or serves anything
 * (steward.runtime.daemon.privileges): it hands the state directory to the service user, then
 * switches groups, gid and uid, and checks that root cannot be regained. These are local
 * system calls (the password database is a local file on the machines we target) made once
 * at start-up, before the loop serves requests. */
#include <errno.h>
#include <grp.h>
#include <lauxlib.h>
#include <lua.h>
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "bindings.h"

static int push_errno(lua_State *L, const char *what)
{
    int e = errno;
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, strerror(e));
    return 2;
}

/* uid() -> the real uid, the effective uid */
static int l_identity_uid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getuid());
    lua_pushinteger(L, (lua_Integer)geteuid());
    return 2;
}

/* The account named by argument 1, or NULL with nil, err pushed (*nret = 2). */
static struct passwd *find_user(lua_State *L, const char **name, int *nret)
{
    *name = luaL_checkstring(L, 1);
    errno = 0;
    struct passwd *pw = getpwnam(*name);
    if (pw)
        return pw;
    if (errno != 0) {
        *nret = push_errno(L, "getpwnam");
    } else {
        lua_pushnil(L);
        lua_pushfstring(L, "no such user: %s", *name);
        *nret = 2;
    }
    return NULL;
}

/* lookup(name) -> {name, uid, gid, home} or nil, "no such user" */
static int l_identity_lookup(lua_State *L)
{
    const char *name;
    int nret;
    const struct passwd *pw = find_user(L, &name, &nret);
    if (!pw)
        return nret;
    lua_createtable(L, 0, 4);
    lua_pushstring(L, pw->pw_name);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, (lua_Integer)pw->pw_uid);
    lua_setfield(L, -2, "uid");
    lua_pushinteger(L, (lua_Integer)pw->pw_gid);
    lua_setfield(L, -2, "gid");
    lua_pushstring(L, pw->pw_dir ? pw->pw_dir : "");
    lua_setfield(L, -2, "home");
    return 1;
}

/* chown(path, uid, gid) -> true or nil, err. Never follows a symbolic link: a link planted
 * in the state directory must not hand another file to the service user. */
static int l_identity_chown(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer uid = luaL_checkinteger(L, 2);
    lua_Integer gid = luaL_checkinteger(L, 3);
    if (uid < 0 || gid < 0)
        return luaL_argerror(L, uid < 0 ? 2 : 3, "must not be negative");
    if (lchown(path, (uid_t)uid, (gid_t)gid) != 0)
        return push_errno(L, path);
    lua_pushboolean(L, 1);
    return 1;
}

/* become(name) -> true or nil, err: supplementary groups, gid, then uid (in that order: once
 * the uid is dropped the others can no longer change). */
static int l_identity_become(lua_State *L)
{
    const char *name;
    int nret;
    const struct passwd *pw = find_user(L, &name, &nret);
    if (!pw)
        return nret;
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    if (uid == 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "user %s is root", name);
        return 2;
    }
    if (initgroups(name, gid) != 0)
        return push_errno(L, "initgroups");
    if (setgid(gid) != 0)
        return push_errno(L, "setgid");
    if (setuid(uid) != 0)
        return push_errno(L, "setuid");
    /* A privilege drop that could be undone is no drop. */
    if (setuid(0) == 0 || getuid() != uid || geteuid() != uid) {
        lua_pushnil(L);
        lua_pushstring(L, "the uid change did not hold (root could be regained)");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* umask(mask) -> the previous mask */
static int l_identity_umask(lua_State *L)
{
    lua_Integer m = luaL_checkinteger(L, 1);
    if (m < 0 || m > 0777)
        return luaL_argerror(L, 1, "a mode from 0 to 0777 expected");
    lua_pushinteger(L, (lua_Integer)umask((mode_t)m));
    return 1;
}

int luaopen_steward_identity(lua_State *L)
{
    static const luaL_Reg funcs[] = {{"uid", l_identity_uid},       {"lookup", l_identity_lookup},
                                     {"chown", l_identity_chown},   {"become", l_identity_become},
                                     {"umask", l_identity_umask},   {NULL, NULL}};
    lua_createtable(L, 0, 5);
    luaL_register(L, NULL, funcs);
    return 1;
}
