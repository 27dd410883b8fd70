/* Unit tests of the task machinery in core/task.c: suspend and resume, anchoring against
 * the GC, cancellation of a pending operation, timeouts, errors, and misuse. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "tap.h"
#include "task.h"

/* A fake operation that a test completes or cancels by hand. */
struct fake_op {
    task_wait_t wait;
    int cancelled;
};
static struct fake_op *pending;
static int ops_freed;

static void fake_cancel(task_wait_t *w)
{
    struct fake_op *op = (struct fake_op *)w;
    op->cancelled = 1; /* the owner (the test) frees it, as a libuv close callback would */
}

static int l_fake_wait(lua_State *L)
{
    task_t *t = task_check(L, "fake.wait");
    struct fake_op *op = calloc(1, sizeof *op);
    pending = op;
    return task_suspend(L, t, &op->wait, fake_cancel);
}

/* Completes the pending operation with one value, as a callback would. */
static int complete(const char *value)
{
    struct fake_op *op = pending;
    pending = NULL;
    task_t *t = task_wake(&op->wait);
    int resumed = 0;
    if (t) {
        lua_pushstring(task_state(t), value);
        task_resume(t, 1);
        resumed = 1;
    }
    free(op);
    ops_freed++;
    return resumed;
}

struct done_rec {
    int calls;
    enum task_status status;
    char result[256];
};

static void on_done(task_t *t, enum task_status st, void *ud)
{
    struct done_rec *r = ud;
    r->calls++;
    r->status = st;
    lua_State *co = task_state(t);
    const char *s = lua_tostring(co, -1);
    snprintf(r->result, sizeof r->result, "%s", s ? s : "");
}

static void spawn_code(const char *code, struct done_rec *rec, double timeout)
{
    lua_State *L = rt_lua();
    if (luaL_loadstring(L, code) != 0) {
        printf("# compile: %s\n", lua_tostring(L, -1));
        exit(1);
    }
    struct task_opts o = {.done = on_done, .ud = rec, .timeout = timeout, .quiet = 1};
    task_spawn(L, 0, &o);
}

int main(void)
{
    if (rt_open() != 0)
        return 1;
    lua_State *L = rt_lua();
    lua_pushcfunction(L, l_fake_wait);
    lua_setglobal(L, "fake_wait");

    /* 1. suspend, survive a full GC while suspended, resume with a value */
    struct done_rec r1 = {0};
    spawn_code("local v = fake_wait(); return 'got ' .. v", &r1, 0);
    ok(pending != NULL && r1.calls == 0, "a task suspends on its operation");
    ok(task_count() == 1, "the suspended task is live");
    lua_gc(L, LUA_GCCOLLECT, 0);
    lua_gc(L, LUA_GCCOLLECT, 0);
    ok(complete("x") == 1, "the operation's completion resumes the task after a full GC");
    ok(r1.calls == 1 && r1.status == TASK_OK && strcmp(r1.result, "got x") == 0,
       "the task ends with its result (%s)", r1.result);
    ok(task_count() == 0, "an ended task is released");

    /* 2. cancel while suspended: the cancel function runs, a late completion is ignored */
    struct done_rec r2 = {0};
    spawn_code("fake_wait(); error('must not resume')", &r2, 0);
    struct fake_op *op = pending;
    task_cancel_all("test"); /* the runtime is shutting down after this: a fresh one follows */
    ok(op->cancelled == 1, "cancel calls the pending operation's cancel function");
    ok(r2.calls == 1 && r2.status == TASK_CANCELLED, "the cancelled task ends as cancelled");
    ok(complete("late") == 0, "a completion after cancel does not resume the task");
    ok(task_count() == 0, "no task is left");

    rt_close();

    /* A fresh runtime for the tests that need spawning after a cancel-all. */
    if (rt_open() != 0)
        return 1;
    L = rt_lua();
    lua_pushcfunction(L, l_fake_wait);
    lua_setglobal(L, "fake_wait");

    /* 3. a timeout cancels a suspended task */
    struct done_rec r3 = {0};
    spawn_code("fake_wait()", &r3, 0.01);
    struct fake_op *op3 = pending;
    rt_run();
    ok(r3.calls == 1 && r3.status == TASK_CANCELLED, "a task past its timeout is cancelled");
    ok(op3->cancelled == 1, "the timeout cancels the pending operation");
    complete("late");

    /* 4. an error in a task ends that task only */
    struct done_rec r4 = {0};
    spawn_code("local x = nil; return x.field", &r4, 0);
    ok(r4.calls == 1 && r4.status == TASK_ERROR, "an error ends the task as failed");
    ok(strstr(r4.result, "attempt to index") && strstr(r4.result, "stack traceback"),
       "the error carries a traceback");
    struct done_rec r5 = {0};
    spawn_code("return 'still running'", &r5, 0);
    ok(r5.status == TASK_OK && strcmp(r5.result, "still running") == 0,
       "the runtime keeps running tasks after an error");

    /* 5. misuse: yielding outside a task, and inside a plain coroutine */
    int rc = luaL_dostring(L, "fake_wait()");
    ok(rc != 0 && strstr(lua_tostring(L, -1), "must be called from inside a task"),
       "yielding from the main chunk is refused with a clear error");
    lua_pop(L, 1);
    struct done_rec r6 = {0};
    spawn_code("local ok, err = pcall(coroutine.wrap(function() fake_wait() end)); return err", &r6,
               0);
    ok(r6.status == TASK_OK && strstr(r6.result, "must be called from inside a task"),
       "yielding from a plain coroutine inside a task is refused");
    struct done_rec r7 = {0};
    spawn_code("local ok, err = pcall(table.sort, {3, 2, 1}, function(a, b) fake_wait() end)"
               " return err",
               &r7, 0);
    ok(r7.status == TASK_OK && strstr(r7.result, "cannot suspend here"),
       "yielding across a C call boundary names the cause");

    /* 6. many tasks: spawn, suspend, complete in order */
    int n = 1000, done_ok = 0;
    struct done_rec *recs = calloc((size_t)n, sizeof *recs);
    struct fake_op **ops = calloc((size_t)n, sizeof *ops);
    for (int i = 0; i < n; i++) {
        spawn_code("return fake_wait()", &recs[i], 0);
        ops[i] = pending;
    }
    ok(task_count() == (size_t)n, "%d tasks suspended at once", n);
    for (int i = 0; i < n; i++) {
        pending = ops[i];
        complete("v");
    }
    for (int i = 0; i < n; i++)
        done_ok += recs[i].status == TASK_OK && strcmp(recs[i].result, "v") == 0;
    ok(done_ok == n && task_count() == 0, "all %d resumed and released", n);
    free(recs);
    free(ops);

    rt_close();
    return tap_done();
}
