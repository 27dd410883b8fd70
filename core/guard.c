/* steward.runtime.guard: runs policy code under a CPU budget and a memory budget.
 *
 * CPU. LuaJIT's hooks never fire inside compiled traces, so policy code runs interpreted
 * (the sandbox switches the JIT off for its chunks) and, while a guarded run is current, a
 * count hook fires every GUARD_COUNT bytecodes and compares a monotonic clock with the run's
 * deadline. The deadline is "budget after the task was last resumed": time a handler spends
 * suspended on I/O is not counted. Once the budget is spent the hook fires on every
 * instruction and raises again, so a pcall inside the policy cannot swallow the stop; only
 * guard.run's own frame is spared. LuaJIT keeps one hook for the whole VM (not one per
 * coroutine), so the hook is set when a guarded run is entered or its task resumed, and
 * cleared (or handed back to the run it interrupted) when the task yields or the run ends
 * (task_set_switch). Coroutines a policy creates run under the same hook.
 *
 * Slicing inside a policy's own coroutines. The hook can only yield the coroutine it fires
 * in, and a coroutine the policy made must not be suspended under its resumer's nose. So the
 * sandbox adopts every coroutine a policy creates (guard.adopt) and resumes it through a
 * wrapper: the hook yields an adopted coroutine (no values: LuaJIT's hook yields carry none)
 * and notes it; the wrapper sees guard.preempted(co), calls guard.pause() to yield its own
 * coroutine in turn (up to the task, which defers behind the loop's other work, its budget
 * kept), then resumes the coroutine. Code inside a C call (a string.gsub or table.sort
 * callback) cannot yield at all, nor can a turn handed up through a resume made inside one:
 * such code may run limits.policy_stall without yielding, then it is stopped at its next Lua
 * instruction (guard.configure{stall}), so it cannot hold the loop for a whole CPU budget.
 * (The runtime's controls, guard.adopt/preempted/pause among them, are in guard_ctl.c.)
 *
 * Memory. guard_alloc is the state's allocator, a wrapper around a base allocator: glibc's
 * realloc/free by default, or with STEWARD_LUA_ALLOC=luajit LuaJIT's own (lj_alloc, a dlmalloc
 * arena made for Lua's many small, short-lived objects: about a tenth less CPU per decide).
 * That one is not the default because it keeps what it once held: its segments merge, a few
 * live objects pin them, and it never gives back free pages inside them, so after a memory
 * bomb the process stays at the bomb's peak (reused, not returned) where glibc's malloc_trim
 * returns to the baseline. guard_newstate makes such a state with luaL_newstate, takes its
 * allocator with lua_getallocf and puts guard_alloc in front (lua_setallocf only swaps the
 * global state's two fields; guard_alloc passes LuaJIT's calls through with their own
 * semantics, refusing only growth); guard_close hands the allocator back before lua_close,
 * which destroys the arena only when it finds LuaJIT's own function. Under AddressSanitizer
 * the base is always realloc/free, so overflows of Lua-owned buffers stay visible. While a
 * run is current guard_alloc adds allocations and subtracts frees, and refuses an allocation that
 * would take the net growth past the budget (LuaJIT raises "not enough memory"); the hook then
 * stops the run as above. After the refusal a little slack is granted so the error and its
 * unwinding can allocate. Runs together are held to a total (guard.configure{memory_total}): a
 * ceiling on the whole heap while policy code allocates. Not a sum of the runs' counts: garbage one
 * run made and the collector freed outside any run would stay in that sum, and concurrent runs
 * would trip it with memory nobody holds. The heap's size is exact; near the ceiling the hook
 * collects, so what is left is live. An allocation past it fails the run making it (if that run has
 * grown by more than CEILING_SPARE: a bystander's small allocation goes through), and a run
 * does not start while the heap is over it. A run that ends after a spike (stopped for memory, or
 * past half its budget) triggers a full collection and hands free pages back to the system, so a
 * burst of memory bombs does not leave the heap at its peak (with lj_alloc, only its large blocks
 * and wholly free segments go back).
 *
 * The Lua side of run() is a few lines (pcall must be the Lua one: LuaJIT cannot yield
 * across lua_pcall from C, and a handler may do I/O inside the run). */
#include "guard.h"

#include <lauxlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core_modules.h"
#include "duration.h"
#include "guard_run.h"
#include "log.h"
#include "task.h"

#define GUARD_COUNT    1000        /* bytecodes between clock reads */
#define SLICE_NS       10000000u   /* a run computing this long yields to the loop */
#define MEM_SLACK      (1 << 20)   /* granted after a refusal, for the error's own needs */
#define CEILING_SPARE  (1 << 20)   /* growth a run may have past the heap's ceiling */
#define DEFAULT_CPU    1.0         /* seconds */
#define DEFAULT_MEMORY (64u << 20) /* bytes */
#define DEFAULT_STALL  200000000u  /* ns a run unable to yield may compute (0.2 s) */
#define RUN_MT         "steward.runtime.guard.run"

struct guard_run *guard_active;
int guard_adopted_ref = LUA_NOREF;
lua_State *guard_hook_yielded;
struct guard_total guard_total = {0, 0, 0, DEFAULT_STALL};
static int wrapper_ref = LUA_NOREF;

static void hook(lua_State *L, lua_Debug *ar);

void guard_set_hook(struct guard_run *r)
{
    lua_sethook(r->L, hook, LUA_MASKCOUNT, r->fast ? 1 : GUARD_COUNT);
}

static void arm(struct guard_run *r)
{
    uint64_t now = uv_hrtime();
    if (r->preempted) {
        r->deadline = r->deadline == UINT64_MAX ? UINT64_MAX : now + r->remaining;
        r->preempted = 0;
    } else {
        r->deadline = r->cpu_ns ? now + r->cpu_ns : UINT64_MAX;
    }
    r->slice_end = now + SLICE_NS;
    r->handed_off = 0;
    r->prev = guard_active;
    guard_active = r;
    r->armed = 1;
    guard_set_hook(r);
}

static void disarm(struct guard_run *r)
{
    if (!r->armed)
        return;
    r->armed = 0;
    /* Runs nest strictly (a task resumed inside another ends its turn first), so r is on
     * top; unlink it from wherever it is all the same. */
    struct guard_run **pp = &guard_active;
    while (*pp && *pp != r)
        pp = &(*pp)->prev;
    if (*pp)
        *pp = r->prev;
    r->prev = NULL;
    guard_hook_yielded = NULL; /* a preemption is taken by its resumer before the task yields */
    if (guard_active)
        guard_set_hook(guard_active);
    else
        lua_sethook(r->L, NULL, 0, 0);
}

static void retire(lua_State *L, struct guard_run *r);

static void on_switch(task_t *t, int running, void *ud)
{
    (void)t;
    struct guard_run *r = ud;
    if (running > 0) {
        arm(r);
    } else {
        disarm(r);
        if (running < 0) { /* the task ended inside the run (cancelled, timed out) */
            r->task = NULL;
            retire(task_main_state(), r);
        }
    }
}

static const char *trip_message(const struct guard_run *r, char *buf, size_t n)
{
    if (r->tripped == TRIP_STOP)
        snprintf(buf, n, "%s", r->stop_msg);
    else if (r->tripped == TRIP_MEM)
        snprintf(buf, n, "memory budget exceeded (%lld bytes)", (long long)r->memory);
    else if (r->tripped == TRIP_TOTAL)
        snprintf(buf, n,
                 "policy memory total exceeded (the heap is at %lld bytes, the ceiling for all "
                 "running policies together, limits.policy_memory_total)",
                 (long long)guard_total.budget);
    else if (r->tripped == TRIP_STALL)
        snprintf(buf, n,
                 "cpu stall limit exceeded (%g s without yielding to the loop, inside a C call "
                 "such as a string.gsub or table.sort callback; limits.policy_stall)",
                 (double)guard_total.stall_ns / 1e9);
    else if (r->cpu * 10 == (double)(long long)(r->cpu * 10))
        snprintf(buf, n, "cpu budget exceeded (%.1f s)", r->cpu);
    else
        snprintf(buf, n, "cpu budget exceeded (%g s)", r->cpu);
    return buf;
}

int guard_is_adopted(lua_State *L)
{
    if (guard_adopted_ref == LUA_NOREF)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, guard_adopted_ref);
    lua_pushthread(L);
    lua_rawget(L, -2);
    int yes = lua_toboolean(L, -1);
    lua_pop(L, 2);
    return yes;
}

static void hook(lua_State *L, lua_Debug *ar)
{
    struct guard_run *r = guard_active;
    if (!r)
        return;
    if (!r->tripped) {
        if (r->memory && r->mem_net - r->gc_at > r->memory / 4 && r->mem_net > r->memory / 2) {
            /* Garbage counts until the collector frees it: collect before the budget is
             * reached, so a handler that churns without growing is not stopped. */
            lua_gc(L, LUA_GCCOLLECT, 0);
            r->gc_at = r->mem_net;
        }
        if (guard_total.budget && guard_total.heap > guard_total.budget / 4 * 3 &&
            guard_total.heap - guard_total.gc_at > guard_total.budget / 8) {
            lua_gc(L, LUA_GCCOLLECT, 0); /* the same, near the ceiling for all runs */
            guard_total.gc_at = guard_total.heap;
        }
        uint64_t now = uv_hrtime();
        if (now < r->deadline) {
            /* Time slicing: a run that computes for SLICE_NS gives the loop a turn (HTTP,
             * timers, other tasks) and continues on the next iteration, its budget as it
             * was. The task's own coroutine yields to the scheduler; a coroutine the policy
             * made yields to its resumer, the sandbox's wrapper, which passes the turn on.
             * Code that cannot yield (inside a C call) gets the stall allowance, no more. */
            if (now < r->slice_end || !r->task)
                return;
            int yieldable = lua_isyieldable(L);
            if (yieldable && task_state(r->task) == L) {
                r->remaining = r->deadline == UINT64_MAX ? 0 : r->deadline - now;
                r->preempted = 1;
                lua_yield(L, 0);
                return;
            }
            if (yieldable && !r->handed_off && guard_is_adopted(L)) {
                /* Once per turn: if the turn does not reach the task (a resume inside a C
                 * call), the next hook finds handed_off still set and the stall rule holds. */
                r->handed_off = 1;
                guard_hook_yielded = L;
                lua_yield(L, 0);
                return;
            }
            if (!guard_total.stall_ns || now + SLICE_NS - r->slice_end < guard_total.stall_ns)
                return;
            r->tripped = TRIP_STALL;
        } else {
            r->tripped = TRIP_CPU;
        }
    }
    if (!r->fast) {
        r->fast = 1;
        guard_set_hook(r);
    }
    /* guard.run's own frame goes on, to report. */
    if (lua_getstack(L, 0, ar) && lua_getinfo(L, "f", ar)) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, wrapper_ref);
        int mine = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (mine)
            return;
    }
    char msg[256];
    lua_pushstring(L, trip_message(r, msg, sizeof msg));
    lua_error(L);
}

/* Net growth while r is current counts for r. */
static void account(struct guard_run *r, int64_t delta)
{
    r->mem_net += delta;
    if (r->mem_net > r->mem_peak)
        r->mem_peak = r->mem_net;
}

#if defined(__SANITIZE_ADDRESS__)
#define GUARD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GUARD_ASAN 1
#endif
#endif

/* The allocator guard_alloc stands in front of, and its ud (LuaJIT's arena, or none). */
static lua_Alloc base_alloc;
static void *base_ud;
static const char *base_name = "system";

static void *sys_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, nsize);
}

lua_State *guard_newstate(void)
{
    const char *want = getenv("STEWARD_LUA_ALLOC");
    if (want && *want && strcmp(want, "system") != 0 && strcmp(want, "luajit") != 0) {
        fprintf(stderr, "steward: STEWARD_LUA_ALLOC = \"%s\": expected \"system\" or \"luajit\"\n",
                want);
        return NULL;
    }
    base_alloc = sys_alloc;
    base_ud = NULL;
    base_name = "system";
#ifndef GUARD_ASAN
    if (want && strcmp(want, "luajit") == 0) {
        lua_State *L = luaL_newstate();
        if (!L)
            return NULL;
        base_alloc = lua_getallocf(L, &base_ud);
        base_name = "luajit";
        lua_setallocf(L, guard_alloc, NULL);
        return L;
    }
#endif
    return lua_newstate(guard_alloc, NULL);
}

void guard_close(lua_State *L)
{
    lua_setallocf(L, base_alloc, base_ud);
    lua_close(L);
}

void *guard_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    struct guard_run *r = guard_active;
    if (!ptr)
        osize = 0;
    if (nsize == 0) {
        base_alloc(base_ud, ptr, osize, 0);
        guard_total.heap -= (int64_t)osize;
        if (r)
            account(r, -(int64_t)osize);
        return NULL;
    }
    if (r && nsize > osize) {
        int64_t grow = (int64_t)(nsize - osize), slack = r->tripped ? MEM_SLACK : 0;
        if (r->memory && r->mem_net + grow > r->memory + slack) {
            if (!r->tripped)
                r->tripped = TRIP_MEM;
            return NULL;
        }
        /* Only a run that has grown by more than a little: at the ceiling, the run that
         * fills the heap is stopped, not a bystander doing a small allocation. */
        if (guard_total.budget && !r->no_ceiling && r->mem_net + grow > CEILING_SPARE &&
            guard_total.heap + grow > guard_total.budget + slack) {
            if (!r->tripped)
                r->tripped = TRIP_TOTAL;
            return NULL;
        }
    }
    void *p = base_alloc(base_ud, ptr, osize, nsize);
    if (p) {
        guard_total.heap += (int64_t)nsize - (int64_t)osize;
        if (r)
            account(r, (int64_t)nsize - (int64_t)osize);
    }
    return p;
}

/* The run is over (finished, or its task ended inside it): its context table goes; once. */
static void retire(lua_State *L, struct guard_run *r)
{
    if (r->retired)
        return;
    r->retired = 1;
    if (r->ctx_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, r->ctx_ref);
        r->ctx_ref = LUA_NOREF;
    }
}

static int run_gc(lua_State *L)
{
    struct guard_run *r = luaL_checkudata(L, 1, RUN_MT);
    disarm(r); /* only if the task was abandoned in a way that skipped the yield */
    retire(L, r);
    return 0;
}

/* begin(opts, fn) -> run | nil, err, "memory": arms the budgets for the code guard.run is about to
 * call. */
static int l_guard_begin(lua_State *L)
{
    if (!lua_isnoneornil(L, 1))
        luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    double cpu = DEFAULT_CPU, memory = (double)DEFAULT_MEMORY;
    const char *name = "policy";
    int ceiling = 1;
    if (lua_istable(L, 1)) {
        lua_getfield(L, 1, "cpu");
        if (!lua_isnil(L, -1))
            cpu = duration_check(L, lua_gettop(L), "guard.run: cpu");
        lua_getfield(L, 1, "memory");
        if (!lua_isnil(L, -1)) {
            if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) < 0)
                luaL_error(L, "guard.run: memory: number of bytes expected");
            memory = lua_tonumber(L, -1);
        }
        lua_getfield(L, 1, "name");
        if (!lua_isnil(L, -1)) {
            if (!lua_isstring(L, -1))
                luaL_error(L, "guard.run: name: string expected");
            name = lua_tostring(L, -1);
        }
        /* The REPL's runs are spared the heap's ceiling: an operator must be able to look
         * into a daemon whose heap is full. */
        lua_getfield(L, 1, "heap_ceiling");
        ceiling = lua_isnil(L, -1) || lua_toboolean(L, -1);
    }
    task_t *t = task_current();
    if (t && task_state(t) != L)
        t = NULL;
    if (!t && lua_pushthread(L) != 1)
        luaL_error(L, "guard.run: must be called from a task or the main chunk, not from "
                      "inside a plain coroutine");
    if (guard_active && guard_active->task == t && guard_active->L == L)
        luaL_error(L, "guard.run: already inside a guarded run");
    if (ceiling && guard_total.budget && guard_total.heap >= guard_total.budget)
        lua_gc(L, LUA_GCCOLLECT, 0); /* what is left is live */
    if (ceiling && guard_total.budget && guard_total.heap >= guard_total.budget) {
        /* The heap is full: this run could only fail later, mid-way. */
        char msg[256];
        struct guard_run probe = {.tripped = TRIP_TOTAL};
        lua_pushnil(L);
        lua_pushstring(L, trip_message(&probe, msg, sizeof msg));
        lua_pushliteral(L, "memory");
        return 3;
    }
    struct guard_run *r = lua_newuserdata(L, sizeof *r);
    memset(r, 0, sizeof *r);
    r->ctx_ref = LUA_NOREF;
    r->no_ceiling = !ceiling;
    luaL_getmetatable(L, RUN_MT);
    lua_setmetatable(L, -2);
    r->cpu = cpu;
    r->cpu_ns = (uint64_t)(cpu * 1e9);
    r->memory = (int64_t)memory;
    r->task = t;
    r->L = L;
    snprintf(r->name, sizeof r->name, "%s", name);
    if (t)
        task_set_switch(t, on_switch, r);
    arm(r);
    return 1;
}

/* finish(run, ok, ...) -> true, results... | false, err [, "cpu"|"memory"]; err a string. */
static int l_guard_finish(lua_State *L)
{
    struct guard_run *r = luaL_checkudata(L, 1, RUN_MT);
    if (!lua_toboolean(L, 2) && lua_type(L, 3) != LUA_TSTRING) {
        /* An error object's __tostring is policy code: call it while the budgets still
         * hold, so the caller gets a plain string and never runs it unguarded. */
        lua_settop(L, 3);
        lua_getglobal(L, "tostring");
        lua_pushvalue(L, 3);
        if (lua_pcall(L, 1, 1, 0) != 0 || lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 3));
        }
        lua_replace(L, 3);
    }
    disarm(r);
    if (r->task)
        task_set_switch(r->task, NULL, NULL);
    r->done = 1;
    retire(L, r);
    if (r->tripped == TRIP_MEM || r->tripped == TRIP_TOTAL ||
        (r->memory && r->mem_peak > r->memory / 2)) {
        /* After a spike: collect now rather than when the next allocations get round to it,
         * and give the freed pages back, so an idle daemon does not sit at its peak. */
        lua_gc(L, LUA_GCCOLLECT, 0);
#ifdef __GLIBC__
        malloc_trim(0);
#endif
    }
    if (r->tripped) {
        char msg[256];
        trip_message(r, msg, sizeof msg);
        char peak[24];
        snprintf(peak, sizeof peak, "%lld", (long long)r->mem_peak);
        log_warn("guarded run stopped", "name", r->name, "error", msg, "memory_peak", peak);
        lua_settop(L, 0);
        lua_pushboolean(L, 0);
        lua_pushstring(L, msg);
        if (r->tripped == TRIP_STOP)
            lua_pushstring(L, r->stop_kind);
        else
            lua_pushstring(L,
                           r->tripped == TRIP_MEM || r->tripped == TRIP_TOTAL ? "memory" : "cpu");
        return 3;
    }
    lua_remove(L, 1);
    return lua_gettop(L);
}

static const char wrapper_src[] =
    "local begin, finish, pcall, xpcall, traceback = ...\n"
    "return function(opts, fn, ...)\n"
    "  local run, err, kind = begin(opts, fn)\n"
    "  if not run then return false, err, kind end\n"
    "  if opts and opts.traceback then return finish(run, xpcall(fn, traceback, ...)) end\n"
    "  return finish(run, pcall(fn, ...))\n"
    "end\n";

int luaopen_steward_guard(lua_State *L)
{
    if (luaL_newmetatable(L, RUN_MT)) {
        lua_pushcfunction(L, run_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    if (wrapper_ref == LUA_NOREF) {
        if (luaL_loadbuffer(L, wrapper_src, sizeof wrapper_src - 1, "=steward.runtime.guard") != 0)
            return lua_error(L);
        lua_pushcfunction(L, l_guard_begin);
        lua_pushcfunction(L, l_guard_finish);
        lua_getglobal(L, "pcall");
        lua_getglobal(L, "xpcall");
        lua_getglobal(L, "debug");
        lua_getfield(L, -1, "traceback");
        lua_remove(L, -2);
        lua_call(L, 5, 1);
        wrapper_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, wrapper_ref);
    lua_setfield(L, -2, "run");
    guard_ctl_register(L);
    lua_pushnumber(L, DEFAULT_CPU);
    lua_setfield(L, -2, "DEFAULT_CPU");
    lua_pushnumber(L, (lua_Number)DEFAULT_MEMORY);
    lua_setfield(L, -2, "DEFAULT_MEMORY");
    lua_pushstring(L, base_name);
    lua_setfield(L, -2, "ALLOCATOR");
    return 1;
}
