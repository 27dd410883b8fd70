/* steward.fswatch: watch one directory for changes (libuv's uv_fs_event, inotify on Linux)
 * and run a Lua function as a new task for each change. Used for policy hot reload. The
 * handle's lifetime is core/task.h's task_watch. */
#include <lauxlib.h>
#include <uv.h>

#include "bindings.h"
#include "task.h"

#define WATCH_MT "steward.fswatch.watch"

static void on_change(uv_fs_event_t *h, const char *filename, int events, int status)
{
    lua_State *L = task_watch_callback(h->data);
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
    task_watch_t *w = task_watch_new(L, 2, WATCH_MT, sizeof(uv_fs_event_t));
    uv_fs_event_t *h = (uv_fs_event_t *)task_watch_handle(w);
    uv_fs_event_init(task_loop(), h);
    h->data = w;
    int rc = uv_fs_event_start(h, on_change, dir, 0);
    if (rc != 0) {
        task_watch_close(w);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s: %s", uv_err_name(rc), uv_strerror(rc), dir);
        return 2;
    }
    uv_unref((uv_handle_t *)h); /* a watch alone does not keep a script alive */
    return 1;
}

static int l_fswatch_cancel(lua_State *L)
{
    return task_watch_cancel(L, WATCH_MT);
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
