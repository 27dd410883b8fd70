/* A libuv handle owned by a Lua callback (core/task.h): the one lifetime rule of every
 * binding that turns a stream of libuv events into tasks (steward.signal, steward.fswatch). */
#include <lauxlib.h>
#include <stddef.h>
#include <stdlib.h>

#include "task.h"

struct task_watch {
    int fn_ref;                /* the callback, anchored in the registry while the watch is open */
    struct task_watch **owner; /* the Lua userdata's pointer, cleared on close */
    _Alignas(max_align_t) unsigned char handle[]; /* the uv handle, handle_size bytes */
};

static void watch_closed(uv_handle_t *h)
{
    free(h->data);
}

task_watch_t *task_watch_new(lua_State *L, int fn_index, const char *mt, size_t handle_size)
{
    fn_index = fn_index < 0 ? lua_gettop(L) + fn_index + 1 : fn_index;
    luaL_checktype(L, fn_index, LUA_TFUNCTION);
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): the userdata is one pointer, to the watch */
    task_watch_t **ud = lua_newuserdata(L, sizeof *ud);
    *ud = NULL;
    luaL_getmetatable(L, mt);
    lua_setmetatable(L, -2);
    task_watch_t *w = calloc(1, sizeof *w + handle_size);
    if (!w) {
        luaL_error(L, "out of memory");
        return NULL;
    }
    lua_pushvalue(L, fn_index);
    w->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    w->owner = ud;
    *ud = w;
    return w;
}

uv_handle_t *task_watch_handle(task_watch_t *w)
{
    return (uv_handle_t *)(void *)w->handle;
}

lua_State *task_watch_callback(task_watch_t *w)
{
    lua_State *L = task_main_state();
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->fn_ref);
    return L;
}

void task_watch_close(task_watch_t *w)
{
    luaL_unref(task_main_state(), LUA_REGISTRYINDEX, w->fn_ref);
    w->fn_ref = LUA_NOREF;
    if (w->owner)
        *w->owner = NULL;
    w->owner = NULL;
    uv_close(task_watch_handle(w), watch_closed);
}

int task_watch_cancel(lua_State *L, const char *mt)
{
    task_watch_t **ud = luaL_checkudata(L, 1, mt);
    int active = *ud != NULL;
    if (*ud)
        task_watch_close(*ud);
    lua_pushboolean(L, active);
    return 1;
}
