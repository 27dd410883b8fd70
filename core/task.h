/* Tasks: every unit of work is a Lua coroutine driven by the libuv loop.
 *
 * The one shape every async binding uses (see docs/internals.md):
 *
 *     static int l_x_op(lua_State *L) {
 *         task_t *t = task_check(L, "x.op");          // raises unless L may yield here
 *         struct op *op = ...; start the operation on task_loop();
 *         return task_suspend(L, t, &op->wait, op_cancel);
 *     }
 *     static void on_complete(...) {                  // libuv / libcurl callback
 *         task_t *t = task_wake(&op->wait);            // NULL when the task was cancelled
 *         if (t) { push results on task_state(t); task_resume(t, nresults); }
 *         release op (or keep it, if the cancel function left that to this callback)
 *     }
 *     static void op_cancel(task_wait_t *w) {         // the task is gone: stop the operation;
 *         ...                                         // the op must never touch the task again
 *     }
 *
 * A completion callback must never run synchronously inside the binding, before
 * task_suspend returns. */
#ifndef STEWARD_TASK_H
#define STEWARD_TASK_H

#include <lua.h>
#include <stdint.h>
#include <uv.h>

typedef struct task task_t;
typedef struct task_wait task_wait_t;
typedef void (*task_cancel_fn)(task_wait_t *w);

struct task_wait {
    task_t *task;          /* the suspended task; NULL once woken or cancelled */
    task_cancel_fn cancel; /* called (with task already NULL) when the task is cancelled */
};

enum task_status { TASK_OK = 0, TASK_ERROR, TASK_CANCELLED };

/* Called when a task ends. On TASK_OK its results are on task_state(t) from index 1 to the
 * top; on TASK_ERROR the error value (with traceback) is on top. */
typedef void (*task_done_fn)(task_t *t, enum task_status status, void *ud);

struct task_opts {
    const char *name;  /* for logs; copied */
    double timeout;    /* seconds; 0 = none. Expiry cancels the task with "timeout" */
    task_done_fn done; /* optional */
    void *ud;
    int want_handle; /* push a steward.task handle onto the spawning state */
    int quiet;       /* do not log an uncaught error (the owner reports it) */
};

void task_init(lua_State *L, uv_loop_t *loop);
/* Cancels every live task (shutdown). */
void task_cancel_all(const char *reason);
uv_loop_t *task_loop(void);
lua_State *task_main_state(void);
size_t task_count(void);
task_t *task_current(void);
uint64_t task_id(const task_t *t);
const char *task_name(const task_t *t);
lua_State *task_state(task_t *t);

/* Pops a function and its nargs arguments from L, starts them as a new task and runs it
 * until it first suspends or ends. Returns the task, or NULL if it has already ended (its
 * done callback has run). With opts->want_handle, a handle is pushed onto L. */
task_t *task_spawn(lua_State *L, int nargs, const struct task_opts *opts);

/* Raises a Lua error naming fname unless the running code is a task that may yield here. */
task_t *task_check(lua_State *L, const char *fname);
/* Suspends the current task on w; returns lua_yield's value: `return task_suspend(...)`. */
int task_suspend(lua_State *L, task_t *t, task_wait_t *w, task_cancel_fn cancel);
/* Suspends the current task until the next loop iteration (cooperative yield). */
int task_defer(lua_State *L, task_t *t);
/* Detaches the task from w and returns it, or NULL if it was cancelled meanwhile. */
task_t *task_wake(task_wait_t *w);
/* Resumes t with nargs values pushed on task_state(t). t may be freed when this returns. */
void task_resume(task_t *t, int nargs);
/* Called just before each resume of t (running = 1) and just after it yields or ends
 * (running = 0), so per-run state that must follow the task, not the loop (the CPU and memory
 * budgets of core/guard.c), can be armed and disarmed; and with running = -1 when t ends
 * while it is still set (cancelled, timed out), so that state can be released at once, not
 * when the GC finds it. One per task; NULL clears it. */
typedef void (*task_switch_fn)(task_t *t, int running, void *ud);
void task_set_switch(task_t *t, task_switch_fn fn, void *ud);
/* Cancels t: a suspended task's pending operation is cancelled and the task ends at once;
 * a running one ends when it next suspends. */
void task_cancel(task_t *t, const char *reason);

/* A libuv handle owned by a Lua callback (core/task_watch.c): signal and file watches. The
 * Lua side holds a userdata of metatable `mt` naming the watch; the watch holds a registry
 * reference to the callback, which each event runs as a new task. Cancelling the watch, or
 * collecting its userdata, closes the handle; libuv's close callback frees the memory, so a
 * handle libuv still owns is never freed early.
 *   w = task_watch_new(L, fn_index, mt, sizeof(uv_signal_t));  (pushes the userdata)
 *   uv_signal_init(task_loop(), task_watch_handle(w)); task_watch_handle(w)->data = w;
 *   rc = uv_signal_start(...); if (rc) task_watch_close(w);
 *   on each event: lua_State *L = task_watch_callback(w); push args; task_spawn(L, n, &opts); */
typedef struct task_watch task_watch_t;
task_watch_t *task_watch_new(lua_State *L, int fn_index, const char *mt, size_t handle_size);
uv_handle_t *task_watch_handle(task_watch_t *w);
lua_State *task_watch_callback(task_watch_t *w);
void task_watch_close(task_watch_t *w);
/* For the userdata's :cancel() and __gc: closes it if still open; pushes whether it was. */
int task_watch_cancel(lua_State *L, const char *mt);

/* steward.task, the Lua-facing API (core/task_lua.c). */
int luaopen_steward_task(lua_State *L);
/* Internal to core/task*.c: the handle type and the end-of-task hook. */
void task_handle_push(lua_State *L, task_t *t);
void task_handle_finish(lua_State *L, int handle_ref, task_t *t, enum task_status st,
                        const char *reason);

#endif
