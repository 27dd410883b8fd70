/* steward.time: clocks, sleep, and timers that start tasks. sleep is the reference shape
 * of an async binding: check the context, start the operation, suspend the task; the
 * callback wakes it; the cancel function makes a cancelled task's operation safe. */
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>
#include <uv.h>

#include "bindings.h"
#include "duration.h"
#include "task.h"

#define TIMER_MT "steward.time.timer"

static uint64_t to_ms(double sec)
{
    double ms = ceil(sec * 1000.0);
    return ms > 9e15 ? (uint64_t)9e15 : (uint64_t)ms;
}

static int l_time_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    return 1;
}

static int l_time_monotonic(lua_State *L)
{
    lua_pushnumber(L, (double)uv_hrtime() / 1e9);
    return 1;
}

static int l_time_parse_duration(lua_State *L)
{
    double sec;
    if (lua_type(L, 1) == LUA_TNUMBER) {
        sec = lua_tonumber(L, 1);
        if (isfinite(sec) && sec >= 0) {
            lua_pushnumber(L, sec);
            return 1;
        }
    } else if (lua_type(L, 1) == LUA_TSTRING && duration_parse(lua_tostring(L, 1), &sec) == 0) {
        lua_pushnumber(L, sec);
        return 1;
    }
    lua_pushnil(L);
    if (lua_type(L, 1) == LUA_TSTRING)
        lua_pushfstring(L, "bad duration '%s' (expected e.g. \"250ms\", \"15m\", \"1h30m\")",
                        lua_tostring(L, 1));
    else
        lua_pushfstring(L, "duration expected, got %s", luaL_typename(L, 1));
    return 2;
}

/* ---- sleep ---- */

struct sleep_op {
    task_wait_t wait;
    uv_timer_t timer;
};

static void sleep_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_sleep(uv_timer_t *h)
{
    struct sleep_op *op = h->data;
    task_t *t = task_wake(&op->wait);
    uv_close((uv_handle_t *)&op->timer, sleep_closed);
    if (t)
        task_resume(t, 0);
}

static void sleep_cancel(task_wait_t *w)
{
    struct sleep_op *op = (struct sleep_op *)w;
    uv_close((uv_handle_t *)&op->timer, sleep_closed);
}

static int l_time_sleep(lua_State *L)
{
    double sec = duration_check(L, 1, "time.sleep");
    task_t *t = task_check(L, "time.sleep");
    if (sec == 0)
        return task_defer(L, t); /* yield to the loop: other tasks and I/O run first */
    struct sleep_op *op = malloc(sizeof *op);
    if (!op)
        return luaL_error(L, "time.sleep: out of memory");
    uv_timer_init(task_loop(), &op->timer);
    op->timer.data = op;
    /* The loop's clock is cached per iteration; without a refresh a sleep started late in
     * an iteration would end early. */
    uv_update_time(task_loop());
    uv_timer_start(&op->timer, on_sleep, to_ms(sec), 0);
    return task_suspend(L, t, &op->wait, sleep_cancel);
}

/* ---- after / every ---- */

struct timer {
    uv_timer_t h;
    int call_ref; /* registry: {fn, args..., n = nargs} */
    int self_ref; /* registry: the Lua handle, while the timer is armed */
    int repeat;
    int closed;
    int busy; /* an every() run is still going: the next tick is skipped */
    struct timer_ud *ud;
};

struct timer_ud {
    struct timer *t;
};

static void timer_closed(uv_handle_t *h)
{
    struct timer *tm = h->data;
    tm->closed = 2;
    if (!tm->busy)
        free(tm);
}

static void timer_release(struct timer *tm)
{
    if (tm->closed)
        return;
    tm->closed = 1;
    lua_State *L = task_main_state();
    luaL_unref(L, LUA_REGISTRYINDEX, tm->call_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, tm->self_ref);
    if (tm->ud)
        tm->ud->t = NULL;
    tm->ud = NULL;
    uv_close((uv_handle_t *)&tm->h, timer_closed);
}

static void run_done(task_t *t, enum task_status st, void *ud)
{
    (void)t;
    (void)st;
    struct timer *tm = ud;
    tm->busy = 0;
    if (tm->closed == 2)
        free(tm);
}

static void on_timer(uv_timer_t *h)
{
    struct timer *tm = h->data;
    if (tm->busy)
        return;
    lua_State *L = task_main_state();
    lua_rawgeti(L, LUA_REGISTRYINDEX, tm->call_ref);
    int tbl = lua_gettop(L);
    lua_getfield(L, tbl, "n");
    int n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, n + 2, "time timer arguments");
    for (int i = 1; i <= n + 1; i++)
        lua_rawgeti(L, tbl, i);
    lua_remove(L, tbl);
    struct task_opts opts = {.name = tm->repeat ? "time.every" : "time.after"};
    if (tm->repeat) {
        tm->busy = 1;
        opts.done = run_done;
        opts.ud = tm;
    } else {
        timer_release(tm); /* a one-shot timer is spent before its task runs */
    }
    task_spawn(L, n, &opts);
}

static int start_timer(lua_State *L, int repeat, const char *fname)
{
    double sec = duration_check(L, 1, fname);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (repeat && sec <= 0)
        return luaL_error(L, "%s: interval must be > 0", fname);
    int nargs = lua_gettop(L) - 2;
    lua_createtable(L, nargs + 1, 1);
    for (int i = 0; i <= nargs; i++) {
        lua_pushvalue(L, 2 + i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushinteger(L, nargs);
    lua_setfield(L, -2, "n");
    struct timer *tm = calloc(1, sizeof *tm);
    if (!tm)
        return luaL_error(L, "%s: out of memory", fname);
    tm->call_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    tm->repeat = repeat;
    struct timer_ud *ud = lua_newuserdata(L, sizeof *ud);
    ud->t = tm;
    tm->ud = ud;
    luaL_getmetatable(L, TIMER_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    tm->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    uv_timer_init(task_loop(), &tm->h);
    tm->h.data = tm;
    uint64_t ms = to_ms(sec);
    uv_update_time(task_loop());
    uv_timer_start(&tm->h, on_timer, ms, repeat ? (ms ? ms : 1) : 0);
    return 1;
}

static int l_time_after(lua_State *L)
{
    return start_timer(L, 0, "time.after");
}
static int l_time_every(lua_State *L)
{
    return start_timer(L, 1, "time.every");
}

static int l_time_cancel(lua_State *L)
{
    struct timer_ud *ud = luaL_checkudata(L, 1, TIMER_MT);
    int pending = ud->t != NULL;
    if (ud->t)
        timer_release(ud->t);
    lua_pushboolean(L, pending);
    return 1;
}

static int l_time_pending(lua_State *L)
{
    struct timer_ud *ud = luaL_checkudata(L, 1, TIMER_MT);
    lua_pushboolean(L, ud->t != NULL);
    return 1;
}

int luaopen_steward_time(lua_State *L)
{
    static const luaL_Reg timer_methods[] = {
        {"cancel", l_time_cancel}, {"pending", l_time_pending}, {NULL, NULL}};
    static const luaL_Reg funcs[] = {{"now", l_time_now},
                                     {"monotonic", l_time_monotonic},
                                     {"sleep", l_time_sleep},
                                     {"after", l_time_after},
                                     {"every", l_time_every},
                                     {"parse_duration", l_time_parse_duration},
                                     {NULL, NULL}};
    if (luaL_newmetatable(L, TIMER_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, timer_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    return 1;
}
