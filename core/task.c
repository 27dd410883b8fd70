/* The task scheduler: coroutines anchored in the registry, suspended on one pending
 * operation at a time, resumed from libuv callbacks, cancelled safely. */
#include "task.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

enum task_state { T_RUNNING, T_WAITING, T_READY, T_DONE };

#define POOL_MAX 256

struct task {
    lua_State *co;
    int co_ref;     /* registry reference: a suspended coroutine is never collected */
    int handle_ref; /* registry reference to the Lua handle, or LUA_NOREF */
    uint64_t id;
    char *name;
    enum task_state state;
    task_wait_t *wait; /* the pending operation while T_WAITING */
    int cancel_requested;
    const char *cancel_reason;
    uv_timer_t *timeout;
    task_done_fn done;
    void *ud;
    int quiet;
    int *alive;               /* cleared when the task ends, for task_spawn's caller */
    task_switch_fn on_switch; /* see task_set_switch */
    void *switch_ud;
    task_t *prev, *next;             /* every live task */
    task_t *ready_prev, *ready_next; /* run on the next loop iteration */
};

static struct {
    lua_State *L;
    uv_loop_t *loop;
    task_t *live;
    size_t nlive;
    uint64_t next_id;
    task_t *current;
    task_t *ready_head, *ready_tail;
    uv_idle_t ready_idle; /* active only while the ready queue is non-empty */
    int shutting_down;
    /* Coroutines of ended tasks, reset for reuse (as OpenResty pools them): a new task
     * then costs no allocation and the GC has less to trace. */
    struct {
        lua_State *co;
        int ref;
    } pool[POOL_MAX];
    int npool;
} S;

static void finish(task_t *t, enum task_status st, const char *reason);

uv_loop_t *task_loop(void)
{
    return S.loop;
}
lua_State *task_main_state(void)
{
    return S.L;
}
size_t task_count(void)
{
    return S.nlive;
}
task_t *task_current(void)
{
    return S.current;
}
uint64_t task_id(const task_t *t)
{
    return t->id;
}
const char *task_name(const task_t *t)
{
    return t->name ? t->name : "task";
}
lua_State *task_state(task_t *t)
{
    return t->co;
}

static void ready_remove(task_t *t)
{
    if (t->ready_prev)
        t->ready_prev->ready_next = t->ready_next;
    else
        S.ready_head = t->ready_next;
    if (t->ready_next)
        t->ready_next->ready_prev = t->ready_prev;
    else
        S.ready_tail = t->ready_prev;
    t->ready_prev = t->ready_next = NULL;
    if (!S.ready_head)
        uv_idle_stop(&S.ready_idle);
}

static void on_ready(uv_idle_t *h)
{
    (void)h;
    /* Only the tasks queued before this pass run now, so a task that defers in a loop
     * still lets the loop poll for I/O between its turns. */
    task_t *last = S.ready_tail;
    while (S.ready_head) {
        task_t *t = S.ready_head;
        int was_last = t == last;
        ready_remove(t);
        t->state = T_WAITING;
        task_resume(t, 0);
        if (was_last)
            break;
    }
}

static void ready_push(task_t *t)
{
    t->state = T_READY;
    t->ready_next = NULL;
    t->ready_prev = S.ready_tail;
    if (S.ready_tail)
        S.ready_tail->ready_next = t;
    else
        S.ready_head = t;
    S.ready_tail = t;
    if (!uv_is_active((uv_handle_t *)&S.ready_idle))
        uv_idle_start(&S.ready_idle, on_ready);
}

void task_init(lua_State *L, uv_loop_t *loop)
{
    memset(&S, 0, sizeof S);
    S.L = L;
    S.loop = loop;
    S.next_id = 1;
    uv_idle_init(loop, &S.ready_idle);
}

static void on_timeout(uv_timer_t *h)
{
    task_t *t = h->data;
    task_cancel(t, "timeout");
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

task_t *task_spawn(lua_State *L, int nargs, const struct task_opts *opts)
{
    static const struct task_opts none;
    if (!opts)
        opts = &none;
    luaL_checktype(L, -nargs - 1, LUA_TFUNCTION);
    if (S.shutting_down)
        luaL_error(L, "task.spawn: the runtime is shutting down");
    task_t *t = calloc(1, sizeof *t);
    if (!t) {
        luaL_error(L, "task.spawn: out of memory");
        return NULL; /* not reached: luaL_error raises (lauxlib.h does not say noreturn) */
    }
    if (S.npool > 0) {
        S.npool--;
        t->co = S.pool[S.npool].co;
        t->co_ref = S.pool[S.npool].ref;
    } else {
        t->co = lua_newthread(L);
        t->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_xmove(L, t->co, nargs + 1);
    t->id = S.next_id++;
    t->name = opts->name ? strdup(opts->name) : NULL;
    t->done = opts->done;
    t->ud = opts->ud;
    t->quiet = opts->quiet;
    t->handle_ref = LUA_NOREF;
    t->state = T_WAITING;
    t->next = S.live;
    if (S.live)
        S.live->prev = t;
    S.live = t;
    S.nlive++;
    if (opts->timeout > 0) {
        t->timeout = malloc(sizeof *t->timeout);
        if (t->timeout) {
            uv_timer_init(S.loop, t->timeout);
            t->timeout->data = t;
            uint64_t ms = (uint64_t)(opts->timeout * 1000.0 + 0.5);
            uv_timer_start(t->timeout, on_timeout, ms ? ms : 1, 0);
        }
    }
    if (opts->want_handle) {
        task_handle_push(L, t);
        lua_pushvalue(L, -1);
        t->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    int alive = 1;
    t->alive = &alive;
    task_resume(t, nargs);
    if (!alive)
        return NULL;
    t->alive = NULL;
    return t;
}

task_t *task_check(lua_State *L, const char *fname)
{
    task_t *t = S.current;
    /* One chain, so no check reads t unless t is the running task (luaL_error raises, but
     * lauxlib.h does not declare it noreturn). */
    if (!t || t->co != L)
        luaL_error(L,
                   "%s: must be called from inside a task (this code runs in the main chunk or "
                   "in a plain coroutine; start one with steward.task.spawn)",
                   fname);
    else if (!lua_isyieldable(L))
        luaL_error(L,
                   "%s: cannot suspend here: the call is inside a C function that cannot yield "
                   "(a module's top-level code during require, a metamethod, or a "
                   "table.sort/string.gsub callback); call it from a function that runs later",
                   fname);
    else if (t->cancel_requested)
        luaL_error(L, "%s: task cancelled (%s)", fname, t->cancel_reason);
    return t;
}

int task_suspend(lua_State *L, task_t *t, task_wait_t *w, task_cancel_fn cancel)
{
    w->task = t;
    w->cancel = cancel;
    t->wait = w;
    t->state = T_WAITING;
    return lua_yield(L, 0);
}

int task_defer(lua_State *L, task_t *t)
{
    ready_push(t);
    return lua_yield(L, 0);
}

task_t *task_wake(task_wait_t *w)
{
    task_t *t = w->task;
    if (t) {
        t->wait = NULL;
        w->task = NULL;
    }
    return t;
}

static void cancel_now(task_t *t, const char *reason)
{
    if (t->state == T_WAITING && t->wait) {
        task_wait_t *w = t->wait;
        t->wait = NULL;
        w->task = NULL;
        if (w->cancel)
            w->cancel(w);
    } else if (t->state == T_READY) {
        ready_remove(t);
    }
    finish(t, TASK_CANCELLED, reason);
}

void task_cancel(task_t *t, const char *reason)
{
    if (!reason)
        reason = "cancelled";
    if (t->state == T_DONE)
        return;
    if (t->state == T_RUNNING) {
        /* A running coroutine cannot be stopped from outside; it ends when it next
         * suspends, and task_check refuses to start new operations meanwhile. */
        t->cancel_requested = 1;
        t->cancel_reason = reason;
        return;
    }
    cancel_now(t, reason);
}

void task_cancel_all(const char *reason)
{
    S.shutting_down = 1;
    for (;;) {
        task_t *t = S.live;
        while (t && t->state == T_RUNNING)
            t = t->next;
        if (!t)
            break;
        task_cancel(t, reason);
    }
}

void task_set_switch(task_t *t, task_switch_fn fn, void *ud)
{
    t->on_switch = fn;
    t->switch_ud = ud;
}

void task_resume(task_t *t, int nargs)
{
    task_t *prev = S.current;
    t->state = T_RUNNING;
    S.current = t;
    if (t->on_switch)
        t->on_switch(t, 1, t->switch_ud);
    int rc = lua_resume(t->co, nargs);
    if (t->on_switch)
        t->on_switch(t, 0, t->switch_ud);
    S.current = prev;
    if (rc == LUA_YIELD) {
        if (t->state == T_RUNNING) {
            /* coroutine.yield() at the task's own level: a cooperative yield. */
            lua_settop(t->co, 0);
            ready_push(t);
        }
        if (t->cancel_requested)
            cancel_now(t, t->cancel_reason);
        return;
    }
    if (rc == 0) {
        finish(t, TASK_OK, NULL);
        return;
    }
    /* The coroutine is dead but its frames remain, so the traceback shows where it failed. */
    const char *msg = lua_tostring(t->co, -1);
    if (!msg)
        msg = luaL_typename(t->co, -1);
    if (rc == LUA_ERRMEM)
        msg = "not enough memory";
    luaL_traceback(t->co, t->co, msg, 0);
    finish(t, TASK_ERROR, NULL);
}

static void finish(task_t *t, enum task_status st, const char *reason)
{
    t->state = T_DONE;
    if (t->alive)
        *t->alive = 0;
    if (t->prev)
        t->prev->next = t->next;
    else
        S.live = t->next;
    if (t->next)
        t->next->prev = t->prev;
    S.nlive--;
    if (t->timeout) {
        uv_close((uv_handle_t *)t->timeout, free_handle);
        t->timeout = NULL;
    }
    char idbuf[24];
    snprintf(idbuf, sizeof idbuf, "%llu", (unsigned long long)t->id);
    if (st == TASK_ERROR && !t->quiet)
        log_error("task failed", "task", idbuf, "name", task_name(t), "error",
                  lua_tostring(t->co, -1));
    else if (st == TASK_CANCELLED)
        log_debug("task cancelled", "task", idbuf, "name", task_name(t), "reason", reason);
    if (t->on_switch) {
        task_switch_fn fn = t->on_switch;
        t->on_switch = NULL;
        fn(t, -1, t->switch_ud);
    }
    if (t->done)
        t->done(t, st, t->ud);
    int handle_ref = t->handle_ref;
    lua_State *co = t->co;
    int co_ref = t->co_ref;
    if (handle_ref != LUA_NOREF)
        task_handle_finish(co, handle_ref, t, st, reason); /* may resume joiners */
    /* Only a coroutine that ended (not one cancelled while suspended: its frames are still
     * live) goes back to the pool. */
    if (st != TASK_CANCELLED && S.npool < POOL_MAX && !S.shutting_down) {
        lua_resetthread(S.L, co);
        S.pool[S.npool].co = co;
        S.pool[S.npool].ref = co_ref;
        S.npool++;
    } else {
        luaL_unref(co, LUA_REGISTRYINDEX, co_ref);
    }
    free(t->name);
    free(t);
}
