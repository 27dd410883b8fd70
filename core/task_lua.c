/* steward.task: spawn tasks from Lua, join them, cancel them. A handle keeps a task's
 * results once it ends; joiners wait on the handle. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"
#include "task.h"

#define HANDLE_MT "steward.task.handle"

enum { H_RUNNING = -1 };

struct join_op {
    task_wait_t wait;
    struct task_handle *h;
    struct join_op *prev, *next;
};

struct task_handle {
    task_t *task; /* NULL once the task has ended */
    int status;   /* H_RUNNING or an enum task_status */
    uint64_t id;
    struct join_op *joiners;
};

void task_handle_push(lua_State *L, task_t *t)
{
    struct task_handle *h = lua_newuserdata(L, sizeof *h);
    memset(h, 0, sizeof *h);
    h->task = t;
    h->status = H_RUNNING;
    h->id = task_id(t);
    luaL_getmetatable(L, HANDLE_MT);
    lua_setmetatable(L, -2);
    lua_newtable(L); /* a userdata's default environment is the globals: never write there */
    lua_setfenv(L, -2);
}

static void join_unlink(struct join_op *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        j->h->joiners = j->next;
    if (j->next)
        j->next->prev = j->prev;
}

/* Pushes what join returns, from the results table on top of L (popped). */
static int push_join_results(lua_State *L, int status)
{
    int tbl = lua_gettop(L);
    if (status == TASK_OK) {
        lua_getfield(L, tbl, "n");
        int n = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        luaL_checkstack(L, n + 1, "task.join: too many results");
        lua_pushboolean(L, 1);
        for (int i = 1; i <= n; i++)
            lua_rawgeti(L, tbl, i);
        lua_remove(L, tbl);
        return n + 1;
    }
    lua_pushboolean(L, 0);
    lua_getfield(L, tbl, "err");
    lua_remove(L, tbl);
    return 2;
}

void task_handle_finish(lua_State *co, int handle_ref, task_t *t, enum task_status st,
                        const char *reason)
{
    (void)t;
    int top = lua_gettop(co);
    luaL_checkstack(co, 8, "task results");
    lua_rawgeti(co, LUA_REGISTRYINDEX, handle_ref);
    struct task_handle *h = lua_touserdata(co, -1);
    luaL_unref(co, LUA_REGISTRYINDEX, handle_ref);
    h->task = NULL;
    h->status = (int)st;
    lua_createtable(co, st == TASK_OK ? top : 0, 1);
    if (st == TASK_OK) {
        for (int i = 1; i <= top; i++) {
            lua_pushvalue(co, i);
            lua_rawseti(co, -2, i);
        }
        lua_pushinteger(co, top);
        lua_setfield(co, -2, "n");
    } else {
        if (st == TASK_ERROR)
            lua_pushvalue(co, top);
        else
            lua_pushstring(co, reason ? reason : "cancelled");
        lua_setfield(co, -2, "err");
    }
    lua_pushvalue(co, -1);
    lua_setfenv(co, -3);
    /* Take the joiners first: a resumed joiner may join again and must find the result. */
    struct join_op *j = h->joiners;
    h->joiners = NULL;
    while (j) {
        struct join_op *next = j->next;
        task_t *jt = task_wake(&j->wait);
        free(j);
        if (jt) {
            lua_State *jl = task_state(jt);
            lua_pushvalue(co, -1);
            lua_xmove(co, jl, 1);
            task_resume(jt, push_join_results(jl, (int)st));
        }
        j = next;
    }
    lua_settop(co, top);
}

static struct task_handle *check_handle(lua_State *L)
{
    return luaL_checkudata(L, 1, HANDLE_MT);
}

static void join_cancel(task_wait_t *w)
{
    struct join_op *j = (struct join_op *)w;
    join_unlink(j);
    free(j);
}

static int l_task_join(lua_State *L)
{
    struct task_handle *h = check_handle(L);
    if (!h->task) {
        lua_getfenv(L, 1);
        return push_join_results(L, h->status);
    }
    task_t *t = task_check(L, "task.join");
    if (h->task == t)
        return luaL_error(L, "task.join: a task cannot join itself");
    struct join_op *j = calloc(1, sizeof *j);
    if (!j)
        return luaL_error(L, "task.join: out of memory");
    j->h = h;
    j->next = h->joiners;
    if (h->joiners)
        h->joiners->prev = j;
    h->joiners = j;
    return task_suspend(L, t, &j->wait, join_cancel);
}

static int l_task_cancel(lua_State *L)
{
    struct task_handle *h = check_handle(L);
    const char *reason = luaL_optstring(L, 2, "cancelled");
    if (!h->task) {
        lua_pushboolean(L, 0);
        return 1;
    }
    /* The reason must outlive this call: keep it in the registry-anchored handle. */
    lua_getfenv(L, 1);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "reason");
    task_cancel(h->task, strcmp(reason, "cancelled") == 0 ? "cancelled" : reason);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_task_status(lua_State *L)
{
    struct task_handle *h = check_handle(L);
    static const char *const names[] = {"ok", "error", "cancelled"};
    lua_pushstring(L, h->task ? "running" : names[h->status]);
    return 1;
}

static int l_task_id(lua_State *L)
{
    struct task_handle *h = check_handle(L);
    lua_pushnumber(L, (lua_Number)h->id);
    return 1;
}

static int l_task_tostring(lua_State *L)
{
    struct task_handle *h = check_handle(L);
    lua_pushfstring(L, "task(%d)", (int)h->id);
    return 1;
}

static int l_task_spawn(lua_State *L)
{
    struct task_opts opts = {.want_handle = 1};
    int fn = 1;
    if (lua_istable(L, 1)) {
        fn = 2;
        lua_getfield(L, 1, "name");
        if (!lua_isnil(L, -1) && !lua_isstring(L, -1))
            return luaL_error(L, "task.spawn: name: string expected");
        opts.name = lua_tostring(L, -1);
        lua_getfield(L, 1, "timeout");
        opts.timeout = duration_opt(L, -1, "task.spawn: timeout", 0);
        lua_pop(L, 1); /* keep name on the stack: opts.name points into it */
    }
    luaL_checktype(L, fn, LUA_TFUNCTION);
    int nargs = lua_gettop(L) - fn;
    lua_pushvalue(L, fn);
    lua_insert(L, fn + 1);
    /* stack: [opts] fn fn args...: spawn pops the copy and args */
    task_spawn(L, nargs, &opts);
    return 1;
}

static int l_task_yield(lua_State *L)
{
    task_t *t = task_check(L, "task.yield");
    return task_defer(L, t);
}

static int l_task_current(lua_State *L)
{
    task_t *t = task_current();
    if (t && task_state(t) == L)
        lua_pushnumber(L, (lua_Number)task_id(t));
    else
        lua_pushnil(L);
    return 1;
}

static int l_task_count(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)task_count());
    return 1;
}

int luaopen_steward_task(lua_State *L)
{
    static const luaL_Reg handle_methods[] = {{"join", l_task_join},
                                              {"cancel", l_task_cancel},
                                              {"status", l_task_status},
                                              {"id", l_task_id},
                                              {NULL, NULL}};
    static const luaL_Reg funcs[] = {{"spawn", l_task_spawn},
                                     {"yield", l_task_yield},
                                     {"current", l_task_current},
                                     {"count", l_task_count},
                                     {NULL, NULL}};
    if (luaL_newmetatable(L, HANDLE_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, handle_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_task_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    return 1;
}
