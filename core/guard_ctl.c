/* steward.runtime.guard's controls for the runtime (core/guard.c holds the budgets themselves): which
 * run is current, its private context, stopping it for a limit of the runtime's own
 * (steward.runtime.policy.emit), the sandbox's side of slicing a policy's coroutines (adopt,
 * preempted, pause: see guard.c's header), and the daemon-wide settings. */
#include <lauxlib.h>
#include <stdio.h>
#include <uv.h>

#include "duration.h"
#include "guard_run.h"
#include "task.h"

/* covered() -> whether the code running now is inside a guarded run of its own task (a task
 * started from inside a run is not: it outlives its turn there). */
static int l_guard_covered(lua_State *L)
{
    lua_pushboolean(L, guard_active && guard_active->task == task_current());
    return 1;
}

/* current() -> {name, cpu, memory, memory_used} of the run executing now, or nil. */
static int l_guard_current(lua_State *L)
{
    struct guard_run *r = guard_active;
    if (!r)
        return 0;
    lua_createtable(L, 0, 4);
    lua_pushstring(L, r->name);
    lua_setfield(L, -2, "name");
    lua_pushnumber(L, r->cpu);
    lua_setfield(L, -2, "cpu");
    lua_pushnumber(L, (lua_Number)r->memory);
    lua_setfield(L, -2, "memory");
    lua_pushnumber(L, (lua_Number)r->mem_net);
    lua_setfield(L, -2, "memory_used");
    return 1;
}

/* context() -> a table private to the run executing now (for the runtime: what a run has
 * emitted, what caused it), or nil outside a run of the current task. Freed with the run. */
static int l_guard_context(lua_State *L)
{
    struct guard_run *r = guard_active;
    if (!r || r->task != task_current() || r->retired)
        return 0;
    if (r->ctx_ref == LUA_NOREF) {
        lua_newtable(L);
        r->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ctx_ref);
    return 1;
}

/* stop(msg [, kind]): ends the current run of this task as a budget does (pcall cannot
 * swallow it): for a limit the runtime enforces (steward.runtime.policy.emit). guard.run returns
 * false, msg, kind (default "error"). Returns whether there was such a run. */
static int l_guard_stop(lua_State *L)
{
    const char *msg = luaL_checkstring(L, 1);
    const char *kind = luaL_optstring(L, 2, "error");
    struct guard_run *r = guard_active;
    if (!r || r->task != task_current() || r->retired) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (!r->tripped) {
        snprintf(r->stop_msg, sizeof r->stop_msg, "%s", msg);
        snprintf(r->stop_kind, sizeof r->stop_kind, "%s", kind);
        r->tripped = TRIP_STOP;
        r->fast = 1;
        guard_set_hook(r);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* adopt(co) -> co: co is a coroutine a policy made, resumed through the sandbox's wrapper,
 * which the hook may therefore yield to slice a long computation. */
static int l_guard_adopt(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTHREAD);
    lua_rawgeti(L, LUA_REGISTRYINDEX, guard_adopted_ref);
    lua_pushvalue(L, 1);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_settop(L, 1);
    return 1;
}

/* preempted(co) -> whether co's last yield was the hook's (taken: a second call says no). */
static int l_guard_preempted(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTHREAD);
    int yes = guard_hook_yielded && lua_tothread(L, 1) == guard_hook_yielded;
    if (yes)
        guard_hook_yielded = NULL;
    lua_pushboolean(L, yes);
    return 1;
}

/* pause(): passes a preempted coroutine's turn on: the task defers behind the loop's other
 * work (its budget kept, as when the hook yields it), an adopted coroutine yields to its own
 * resumer; where neither may yield, it returns and the stall allowance runs on. */
static int l_guard_pause(lua_State *L)
{
    struct guard_run *r = guard_active;
    if (!r || !r->task || r->task != task_current() || r->tripped || !lua_isyieldable(L))
        return 0;
    if (task_state(r->task) == L) {
        uint64_t now = uv_hrtime();
        r->remaining = r->deadline == UINT64_MAX ? 0 : (r->deadline > now ? r->deadline - now : 0);
        r->preempted = 1;
        return task_defer(L, r->task);
    }
    if (!guard_is_adopted(L))
        return 0;
    guard_hook_yielded = L;
    return lua_yield(L, 0);
}

/* configure{memory_total = bytes (0: none), stall = duration (0: none)}: daemon-wide. */
static int l_guard_configure(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "memory_total");
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) < 0)
            luaL_error(L, "guard.configure: memory_total: number of bytes expected");
        guard_total.budget = (int64_t)lua_tonumber(L, -1);
    }
    lua_getfield(L, 1, "stall");
    if (!lua_isnil(L, -1))
        guard_total.stall_ns =
            (uint64_t)(duration_check(L, lua_gettop(L), "guard.configure: stall") * 1e9);
    return 0;
}

/* stats() -> {memory_total, heap, stall}: heap is the Lua heap's size in bytes */
static int l_guard_stats(lua_State *L)
{
    lua_createtable(L, 0, 3);
    lua_pushnumber(L, (lua_Number)guard_total.budget);
    lua_setfield(L, -2, "memory_total");
    lua_pushnumber(L, (lua_Number)guard_total.heap);
    lua_setfield(L, -2, "heap");
    lua_pushnumber(L, (lua_Number)guard_total.stall_ns / 1e9);
    lua_setfield(L, -2, "stall");
    return 1;
}

void guard_ctl_register(lua_State *L)
{
    if (guard_adopted_ref == LUA_NOREF) {
        lua_newtable(L);
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        guard_adopted_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    static const luaL_Reg fns[] = {{"covered", l_guard_covered}, {"current", l_guard_current},
                                   {"context", l_guard_context}, {"stop", l_guard_stop},
                                   {"adopt", l_guard_adopt},     {"preempted", l_guard_preempted},
                                   {"pause", l_guard_pause},     {"configure", l_guard_configure},
                                   {"stats", l_guard_stats},     {NULL, NULL}};
    luaL_register(L, NULL, fns);
}
