/* steward.fswatch: watch one directory for changes (libuv's uv_fs_event, inotify on Linux)
 * and run a Lua function as a new task for each change. Used for policy hot reload. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bindings.h"
#include "task.h"

#define WATCH_MT "steward.fswatch.watch"

struct watch {
    uv_fs_event_t h;
    int fn_ref;
    struct watch **owner; /* the Lua userdata's pointer, cleared on close */
};

static void watch_closed(uv_handle_t *h)
{
    free(h->data);
}

static void watch_close(struct watch *w)
{
    luaL_unref(task_main_state(), LUA_REGISTRYINDEX, w->fn_ref);
    if (w->owner)
        *w->owner = NULL;
    uv_close((uv_handle_t *)&w->h, watch_closed);
}

static void on_change(uv_fs_event_t *h, const char *filename, int events, int status)
{
    struct watch *w = h->data;
    lua_State *L = task_main_state();
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->fn_ref);
    if (status < 0) {
        lua_pushnil(L);
        lua_pushstring(L, uv_strerror(status));
    } else {
        lua_pushstring(L, filename ? filename : "");
        lua_pushstring(L, (events & UV_RENAME) ? "rename" : "change");
    }
    struct task_opts opts = {.name = "fswatch"};
    task_spawn(L, 2, &opts);
}

/* watch(dir, fn) -> watch, or nil, err. fn(filename, "change"|"rename") runs as a task;
 * fn(nil, err) when the watch fails. */
static int l_fswatch_watch(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): the userdata is one pointer, to the watch */
    struct watch **ud = lua_newuserdata(L, sizeof *ud);
    *ud = NULL;
    luaL_getmetatable(L, WATCH_MT);
    lua_setmetatable(L, -2);
    struct watch *w = calloc(1, sizeof *w);
    if (!w)
        return luaL_error(L, "fswatch.watch: out of memory");
    lua_pushvalue(L, 2);
    w->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    uv_fs_event_init(task_loop(), &w->h);
    w->h.data = w;
    int rc = uv_fs_event_start(&w->h, on_change, dir, 0);
    if (rc != 0) {
        watch_close(w);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s: %s", uv_err_name(rc), uv_strerror(rc), dir);
        return 2;
    }
    uv_unref((uv_handle_t *)&w->h); /* a watch alone does not keep a script alive */
    w->owner = ud;
    *ud = w;
    return 1;
}

static int l_fswatch_cancel(lua_State *L)
{
    struct watch **ud = luaL_checkudata(L, 1, WATCH_MT);
    int active = *ud != NULL;
    if (*ud)
        watch_close(*ud);
    lua_pushboolean(L, active);
    return 1;
}

int luaopen_steward_fswatch(lua_State *L)
{
    static const luaL_Reg methods[] = {{"cancel", l_fswatch_cancel}, {NULL, NULL}};
    if (luaL_newmetatable(L, WATCH_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_fswatch_cancel);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_fswatch_watch);
    lua_setfield(L, -2, "watch");
    return 1;
}
