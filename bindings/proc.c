/* steward.proc: run programs with uv_spawn (argv, no shell) and collect their exit status
 * and output without blocking the loop. One run is one op that owns the process handle,
 * its pipes and a timer; it is freed only when every handle's close callback has run and,
 * for a child killed because its task was cancelled, when the thread pool has reaped it. */
#include <errno.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "bindings.h"
#include "duration.h"
#include "proc_priv.h"
#include "task.h"

#define PROC_DEFAULT_MAX_OUTPUT ((size_t)1 << 20)
#define PROC_CHUNK              65536

struct out_buf {
    uv_pipe_t pipe;
    char *buf;
    size_t len, cap;
    int eof;
    char chunk[PROC_CHUNK];
};

struct proc_op {
    task_wait_t wait;
    uv_process_t proc;
    uv_pipe_t in;
    uv_write_t wreq;
    uv_timer_t timer;
    uv_work_t reap;
    struct out_buf out[2]; /* stdout, stderr */
    char *in_data;
    size_t in_len;
    int has_in;
    int open_handles; /* handles whose close callback has not run yet */
    int reaping;      /* the reap job is queued */
    int finished;     /* results delivered (or the task is gone): handles are closing */
    int exited, timed_out, truncated;
    int64_t exit_status;
    int term_signal;
    int pid;
    size_t max_output;
    double timeout, grace;
    int kill_signal;
    uint64_t started;
};

static void op_maybe_free(struct proc_op *op)
{
    if (op->open_handles > 0 || op->reaping)
        return;
    free(op->out[0].buf);
    free(op->out[1].buf);
    free(op->in_data);
    free(op);
}

static void on_closed(uv_handle_t *h)
{
    struct proc_op *op = h->data;
    op->open_handles--;
    op_maybe_free(op);
}

static void close_handle(struct proc_op *op, uv_handle_t *h)
{
    (void)op;
    if (!uv_is_closing(h))
        uv_close(h, on_closed);
}

/* The child was killed after its handle was closed, so libuv no longer waits for it: reap
 * it on the thread pool (waitpid blocks until SIGKILL has taken effect) so no zombie stays. */
static void reap_work(uv_work_t *w)
{
    struct proc_op *op = w->data;
    while (waitpid(op->pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

static void reap_done(uv_work_t *w, int status)
{
    (void)status;
    struct proc_op *op = w->data;
    op->reaping = 0;
    op_maybe_free(op);
}

static void close_all(struct proc_op *op)
{
    op->finished = 1;
    close_handle(op, (uv_handle_t *)&op->timer);
    close_handle(op, (uv_handle_t *)&op->out[0].pipe);
    close_handle(op, (uv_handle_t *)&op->out[1].pipe);
    if (op->has_in)
        close_handle(op, (uv_handle_t *)&op->in);
    if (!op->exited && op->pid > 0) {
        uv_process_kill(&op->proc, SIGKILL);
        op->reap.data = op;
        if (uv_queue_work(op->proc.loop, &op->reap, reap_work, reap_done) == 0)
            op->reaping = 1;
    }
    close_handle(op, (uv_handle_t *)&op->proc);
}

static void set_num(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void push_result(lua_State *L, struct proc_op *op)
{
    lua_createtable(L, 0, 9);
    /* A signalled child has no exit status; 128 + signal is the shell's convention and keeps
     * `code == 0` meaning success. */
    set_num(L, "code", op->term_signal ? 128 + op->term_signal : (double)op->exit_status);
    if (op->term_signal)
        set_num(L, "signal", op->term_signal);
    lua_pushlstring(L, op->out[0].buf ? op->out[0].buf : "", op->out[0].len);
    lua_setfield(L, -2, "stdout");
    lua_pushlstring(L, op->out[1].buf ? op->out[1].buf : "", op->out[1].len);
    lua_setfield(L, -2, "stderr");
    lua_pushboolean(L, op->timed_out);
    lua_setfield(L, -2, "timed_out");
    lua_pushboolean(L, op->truncated);
    lua_setfield(L, -2, "truncated");
    set_num(L, "duration", (double)(uv_hrtime() - op->started) / 1e9);
    set_num(L, "pid", op->pid);
}

/* Done once the child has exited and both pipes reached EOF. After a timeout the pipes are
 * not waited for: a grandchild may still hold them open. */
static void maybe_finish(struct proc_op *op)
{
    if (op->finished || !op->exited)
        return;
    if (!op->timed_out && !(op->out[0].eof && op->out[1].eof))
        return;
    task_t *t = task_wake(&op->wait);
    if (t)
        push_result(task_state(t), op);
    close_all(op);
    if (t)
        task_resume(t, 1);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    struct proc_op *op = p->data;
    op->exited = 1;
    op->exit_status = status;
    op->term_signal = sig;
    uv_timer_stop(&op->timer);
    maybe_finish(op);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct out_buf *o = (struct out_buf *)h; /* the pipe is the first member */
    *buf = uv_buf_init(o->chunk, sizeof o->chunk);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct out_buf *o = (struct out_buf *)s;
    struct proc_op *op = s->data;
    if (n < 0) {
        o->eof = 1;
        uv_read_stop(s);
        maybe_finish(op);
        return;
    }
    /* Beyond max_output the data is read (so the child never blocks on a full pipe) and
     * dropped. */
    size_t keep = (size_t)n;
    if (o->len + keep > op->max_output) {
        keep = op->max_output - o->len;
        op->truncated = 1;
    }
    if (keep == 0)
        return;
    if (o->len + keep > o->cap) {
        size_t ncap = o->cap ? o->cap : 4096;
        while (ncap < o->len + keep)
            ncap *= 2;
        if (ncap > op->max_output)
            ncap = op->max_output;
        char *nb = realloc(o->buf, ncap);
        if (!nb) { /* out of memory: treat the rest as truncated */
            op->truncated = 1;
            return;
        }
        o->buf = nb;
        o->cap = ncap;
    }
    memcpy(o->buf + o->len, o->chunk, keep);
    o->len += keep;
}

static void on_written(uv_write_t *w, int status)
{
    (void)status; /* EPIPE when the child does not read its input: not an error of the run */
    struct proc_op *op = w->data;
    close_handle(op, (uv_handle_t *)&op->in); /* EOF for the child */
}

static void on_timer(uv_timer_t *h)
{
    struct proc_op *op = h->data;
    if (op->exited)
        return;
    if (!op->timed_out) {
        op->timed_out = 1;
        uv_process_kill(&op->proc, op->kill_signal);
        if (op->kill_signal != SIGKILL) {
            double ms = op->grace * 1000.0 + 0.5;
            uv_timer_start(&op->timer, on_timer, ms > 9e15 ? (uint64_t)9e15 : (uint64_t)ms, 0);
        }
        return;
    }
    uv_process_kill(&op->proc, SIGKILL);
}

static void proc_cancel(task_wait_t *w)
{
    struct proc_op *op = (struct proc_op *)w;
    close_all(op);
}

/* Everything that can raise happens before any allocation. */
static int l_proc_run(lua_State *L)
{
    const char *fname = "proc.run";
    struct proc_opts o;
    proc_opts_check(L, fname, &o);
    lua_getfield(L, 1, "stdin");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "proc.run: stdin: string expected, got %s", luaL_typename(L, -1));
    size_t in_len = 0;
    const char *in_data = lua_tolstring(L, -1, &in_len);
    lua_pop(L, 1);
    lua_getfield(L, 1, "timeout");
    double timeout = duration_opt(L, -1, "proc.run: timeout", 0);
    lua_getfield(L, 1, "grace");
    double grace = duration_opt(L, -1, "proc.run: grace", 5);
    lua_pop(L, 2);
    int kill_signal = SIGTERM;
    lua_getfield(L, 1, "kill_signal");
    if (!lua_isnil(L, -1))
        kill_signal = proc_check_signal(L, -1, "proc.run: kill_signal");
    lua_pop(L, 1);
    size_t max_output = PROC_DEFAULT_MAX_OUTPUT;
    lua_getfield(L, 1, "max_output");
    if (!lua_isnil(L, -1)) {
        double m = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || m < 0)
            return luaL_error(L, "proc.run: max_output: non-negative number of bytes expected");
        max_output = m > 9e18 ? (size_t)-1 : (size_t)m;
    }
    lua_pop(L, 1);
    task_t *t = task_check(L, fname);

    proc_opts_anchor(L, &o);

    struct proc_op *op = calloc(1, sizeof *op);
    if (!op)
        return luaL_error(L, "proc.run: out of memory");
    if (in_data) {
        op->in_data = malloc(in_len ? in_len : 1);
        if (!op->in_data) {
            free(op);
            return luaL_error(L, "proc.run: out of memory");
        }
        memcpy(op->in_data, in_data, in_len);
        op->in_len = in_len;
        op->has_in = 1;
    }
    op->max_output = max_output;
    op->timeout = timeout;
    op->grace = grace;
    op->kill_signal = kill_signal;
    op->started = uv_hrtime();

    uv_loop_t *loop = task_loop();
    uv_timer_init(loop, &op->timer);
    op->timer.data = op;
    op->open_handles = 4;
    for (int i = 0; i < 2; i++) {
        uv_pipe_init(loop, &op->out[i].pipe, 0);
        op->out[i].pipe.data = op;
    }
    if (op->has_in) {
        uv_pipe_init(loop, &op->in, 0);
        op->in.data = op;
        op->open_handles++;
    }
    uv_stdio_container_t stdio[3];
    if (op->has_in) {
        stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
        stdio[0].data.stream = (uv_stream_t *)&op->in;
    } else {
        stdio[0].flags = UV_IGNORE; /* libuv points it at /dev/null */
    }
    for (int i = 0; i < 2; i++) {
        stdio[i + 1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        stdio[i + 1].data.stream = (uv_stream_t *)&op->out[i].pipe;
    }
    uv_process_options_t po = {0};
    proc_spawn_options(&po, &o, stdio);
    po.exit_cb = on_exit_cb;
    op->proc.data = op;
    proc_cloexec_all();
    int r = uv_spawn(loop, &op->proc, &po);
    if (r < 0) {
        /* The handles were initialised, so they are closed (and op freed) by callbacks. */
        op->exited = 1;
        close_all(op);
        return proc_push_spawn_error(L, r, &o);
    }
    op->pid = op->proc.pid;
    uv_read_start((uv_stream_t *)&op->out[0].pipe, on_alloc, on_read);
    uv_read_start((uv_stream_t *)&op->out[1].pipe, on_alloc, on_read);
    if (op->has_in) {
        if (op->in_len == 0) {
            close_handle(op, (uv_handle_t *)&op->in);
        } else {
            uv_buf_t b = uv_buf_init(op->in_data, (unsigned)op->in_len);
            op->wreq.data = op;
            if (uv_write(&op->wreq, (uv_stream_t *)&op->in, &b, 1, on_written) < 0)
                close_handle(op, (uv_handle_t *)&op->in);
        }
    }
    if (timeout > 0) {
        double ms = timeout * 1000.0 + 0.5;
        /* The loop's cached time is as old as this loop turn (and uv_spawn's fork); without
         * the update the timer would fire that much early, before `duration` reaches timeout. */
        uv_update_time(loop);
        uv_timer_start(&op->timer, on_timer, ms > 9e15 ? (uint64_t)9e15 : (uint64_t)ms, 0);
    }
    return task_suspend(L, t, &op->wait, proc_cancel);
}

int luaopen_steward_proc(lua_State *L)
{
    static const luaL_Reg funcs[] = {{"run", l_proc_run}, {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    proc_spawn_register(L); /* spawn, kill, watch, info: bindings/proc_spawn.c */
    return 1;
}
