/* steward.signal: run a Lua function as a new task when the process receives a signal
 * (SIGTERM, SIGINT, SIGHUP, ...), through libuv's signal handles. The handle's lifetime is
 * core/task.h's task_watch. */
#include <lauxlib.h>
#include <signal.h>
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

static void on_signal(uv_signal_t *h, int signum)
{
    lua_State *L = task_watch_callback(h->data);
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
    task_watch_t *w = task_watch_new(L, 2, SIGNAL_MT, sizeof(uv_signal_t));
    uv_signal_t *h = (uv_signal_t *)task_watch_handle(w);
    uv_signal_init(task_loop(), h);
    h->data = w;
    int rc = uv_signal_start(h, on_signal, num);
    if (rc != 0) {
        task_watch_close(w);
        lua_pushnil(L);
        lua_pushfstring(L, "signal.on: %s", uv_strerror(rc));
        return 2;
    }
    /* A watcher alone must not keep the process alive (a script would never end). */
    uv_unref((uv_handle_t *)h);
    return 1;
}

/* :cancel(), and __gc: a watcher whose handle is collected stops watching. */
static int l_signal_cancel(lua_State *L)
{
    return task_watch_cancel(L, SIGNAL_MT);
}

int luaopen_steward_signal(lua_State *L)
{
    static const luaL_Reg methods[] = {{"cancel", l_signal_cancel}, {NULL, NULL}};
    if (luaL_newmetatable(L, SIGNAL_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_signal_cancel);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_signal_on);
    lua_setfield(L, -2, "on");
    return 1;
}
