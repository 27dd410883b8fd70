/* Owns the loop and the Lua state, and finds modules: steward's own Lua code comes from
 * the copy embedded in the binary, or from STEWARD_LUA_PATH when a developer sets it. */
#include "runtime.h"

#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_modules.h"
#include "embedded.h"
#include "guard.h"
#include "log.h"
#include "registry.h"
#include "task.h"
#include "version.h"

static uv_loop_t loop;
static lua_State *L_main;
static int stopping;

lua_State *rt_lua(void)
{
    return L_main;
}
uv_loop_t *rt_loop(void)
{
    return &loop;
}

static int load_from_dir(lua_State *L, const char *dir, const char *name)
{
    char rel[512];
    size_t n = strlen(name);
    if (n >= sizeof rel - 16)
        return 0;
    for (size_t i = 0; i <= n; i++)
        rel[i] = name[i] == '.' ? '/' : name[i];
    static const char *const suffixes[] = {".lua", "/init.lua"};
    for (int i = 0; i < 2; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s%s", dir, rel, suffixes[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        fclose(f);
        if (luaL_loadfile(L, path) != 0)
            return lua_error(L);
        return 1;
    }
    return 0;
}

/* package.loaders entry: STEWARD_LUA_PATH first (development), then the embedded copy. */
static int searcher(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *dev = getenv("STEWARD_LUA_PATH");
    if (dev && *dev && load_from_dir(L, dev, name))
        return 1;
    for (const struct embedded_script *s = embedded_scripts; s->module; s++) {
        if (strcmp(s->module, name) != 0)
            continue;
        char chunk[512];
        snprintf(chunk, sizeof chunk, "@%s", s->path);
        if (luaL_loadbuffer(L, s->source, s->len, chunk) != 0)
            return lua_error(L);
        return 1;
    }
    lua_pushfstring(L, "\n\tno embedded module '%s'", name);
    return 1;
}

static void install_searcher(lua_State *L)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaders");
    int n = (int)lua_objlen(L, -1);
    for (int i = n; i >= 2; i--) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, searcher);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 2);
}

int rt_open(void)
{
    signal(SIGPIPE, SIG_IGN);
    log_init();
    if (uv_loop_init(&loop) != 0)
        return -1;
    /* LuaJIT's allocator behind the guard's, so a policy run is held to its memory budget. */
    L_main = guard_newstate();
    if (!L_main)
        return -1;
    luaL_openlibs(L_main);
    install_searcher(L_main);
    bindings_preload(L_main);
    task_init(L_main, &loop);
    /* The core's own Lua-facing modules (bindings come from bindings/registry.c). */
    static const luaL_Reg core_modules[] = {{"steward.task", luaopen_steward_task},
                                            {"steward.httpd", luaopen_steward_httpd},
                                            {"steward.runtime.store.native", luaopen_steward_store_native},
                                            {"steward.runtime.guard", luaopen_steward_guard},
                                            {NULL, NULL}};
    lua_getglobal(L_main, "package");
    lua_getfield(L_main, -1, "preload");
    for (const luaL_Reg *m = core_modules; m->name; m++) {
        lua_pushcfunction(L_main, m->func);
        lua_setfield(L_main, -2, m->name);
    }
    /* steward.build: what this binary is (the REPL's status() and greeting show it). */
    lua_getfield(L_main, -2, "loaded");
    lua_createtable(L_main, 0, 1);
    lua_pushstring(L_main, STEWARD_VERSION);
    lua_setfield(L_main, -2, "version");
    lua_setfield(L_main, -2, "steward.build");
    lua_pop(L_main, 3);
    return 0;
}

void rt_run(void)
{
    stopping = 0;
    while (!stopping && uv_run(&loop, UV_RUN_DEFAULT) != 0 && !stopping) {
    }
}

void rt_stop(void)
{
    stopping = 1;
    uv_stop(&loop);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void rt_close(void)
{
    if (!L_main)
        return;
    task_cancel_all("shutdown");
    /* Finalizers of binding userdata close their libuv handles, so the loop goes last. */
    guard_close(L_main);
    L_main = NULL;
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_walk(&loop, close_walk, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        log_warn("event loop closed with handles still open");
}

void rt_require(lua_State *L, const char *name)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
}
