/* steward.signal: run a Lua function as a new task when the process receives a signal
 * (SIGTERM, SIGINT, SIGHUP, ...), through libuv's signal handles. */
#include <lauxlib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bindings.h"
#include "task.h"

#define SIGNAL_MT "steward.signal.watch"

static const struct {
    const char *name;
    int num;
} signals[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"TERM", SIGTERM},  {"USR1", SIGUSR1},
               {"USR2", SIGUSR2}, {"QUIT", SIGQUIT}, {"WINCH", SIGWINCH}};

struct watch {
    uv_signal_t h;
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

static void on_signal(uv_signal_t *h, int signum)
{
    struct watch *w = h->data;
    lua_State *L = task_main_state();
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->fn_ref);
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
        if (signals[i].num == signum)
            lua_pushstring(L, signals[i].name);
    struct task_opts opts = {.name = "signal"};
    task_spawn(L, 1, &opts);
}

static int l_signal_on(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (strncmp(name, "SIG", 3) == 0)
        name += 3;
    int num = 0;
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
        if (strcmp(signals[i].name, name) == 0)
            num = signals[i].num;
    if (!num)
        return luaL_argerror(L, 1, "expected HUP, INT, TERM, USR1, USR2, QUIT or WINCH");
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): the userdata is one pointer, to the watch */
    struct watch **ud = lua_newuserdata(L, sizeof *ud);
    *ud = NULL;
    luaL_getmetatable(L, SIGNAL_MT);
    lua_setmetatable(L, -2);
    struct watch *w = calloc(1, sizeof *w);
    if (!w)
        return luaL_error(L, "signal.on: out of memory");
    lua_pushvalue(L, 2);
    w->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    uv_signal_init(task_loop(), &w->h);
    w->h.data = w;
    int rc = uv_signal_start(&w->h, on_signal, num);
    if (rc != 0) {
        watch_close(w);
        lua_pushnil(L);
        lua_pushfstring(L, "signal.on: %s", uv_strerror(rc));
        return 2;
    }
    /* A watcher alone must not keep the process alive (a script would never end). */
    uv_unref((uv_handle_t *)&w->h);
    w->owner = ud;
    *ud = w;
    return 1;
}

static int l_signal_cancel(lua_State *L)
{
    struct watch **ud = luaL_checkudata(L, 1, SIGNAL_MT);
    int active = *ud != NULL;
    if (*ud)
        watch_close(*ud);
    lua_pushboolean(L, active);
    return 1;
}

/* A watcher whose handle is collected stops watching. */
static int l_signal_gc(lua_State *L)
{
    struct watch **ud = luaL_checkudata(L, 1, SIGNAL_MT);
    if (*ud)
        watch_close(*ud);
    return 0;
}

int luaopen_steward_signal(lua_State *L)
{
    static const luaL_Reg methods[] = {{"cancel", l_signal_cancel}, {NULL, NULL}};
    if (luaL_newmetatable(L, SIGNAL_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_signal_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_signal_on);
    lua_setfield(L, -2, "on");
    return 1;
}
