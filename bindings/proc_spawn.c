/* steward.proc, long-running children: proc.spawn starts a program in a session of its own
 * (setsid) that outlives the task that spawned it and the daemon itself; proc.kill signals a
 * pid; proc.watch waits for any process to end (pidfd, so a process adopted after a restart,
 * which is not our child, can be watched too); proc.info reads /proc to tell a re-used pid
 * from the process a pid file named.
 *
 * Lifetime of a child: a malloc'd record owns the uv_process_t and stays until libuv's close
 * callback has run (after the exit) AND the Lua handle is collected, whichever comes last. A
 * handle collected while the child runs leaves the record open so the exit is still reaped
 * (no zombie). Live records are on a list, so memory of children still running at shutdown
 * stays reachable (libuv's handle walk closes them; the children themselves keep running). */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

#include "proc_priv.h"
#include "task.h"

#define CHILD_MT "steward.proc.child"

struct child {
    uv_process_t proc;
    task_wait_t wait;
    int waiting;  /* a task is suspended in h:wait() */
    int exited;   /* exit status known */
    int closed;   /* libuv's close callback has run */
    int orphaned; /* the Lua handle was collected */
    int64_t status;
    int term_signal;
    int pid;
    struct child *prev, *next;
};

struct child_ud {
    struct child *c;
};

static struct child *live; /* every record not yet freed */

static void child_unlink(struct child *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (live == c)
        live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void child_closed(uv_handle_t *h)
{
    struct child *c = h->data;
    c->closed = 1;
    if (c->orphaned) {
        child_unlink(c);
        free(c);
    }
}

static void push_status(lua_State *L, struct child *c)
{
    lua_createtable(L, 0, 2);
    /* As proc.run reports it: 128 + signal for a signalled child, so code == 0 is success. */
    lua_pushnumber(L, c->term_signal ? 128 + c->term_signal : (double)c->status);
    lua_setfield(L, -2, "code");
    if (c->term_signal) {
        lua_pushinteger(L, c->term_signal);
        lua_setfield(L, -2, "signal");
    }
}

static void on_child_exit(uv_process_t *p, int64_t status, int sig)
{
    struct child *c = p->data;
    c->exited = 1;
    c->status = status;
    c->term_signal = sig;
    uv_close((uv_handle_t *)&c->proc, child_closed);
    if (!c->waiting)
        return;
    c->waiting = 0;
    task_t *t = task_wake(&c->wait);
    if (t) {
        push_status(task_state(t), c);
        task_resume(t, 1);
    }
}

static void wait_cancel(task_wait_t *w)
{
    struct child *c = (struct child *)((char *)w - offsetof(struct child, wait));
    c->waiting = 0;
    if (!c->exited)
        uv_unref((uv_handle_t *)&c->proc);
}

/* A signal to send: as proc.run's names and numbers, plus 0 (only checks the pid exists). */
static int kill_signal_arg(lua_State *L, int idx, const char *what)
{
    if (lua_isnoneornil(L, idx))
        return SIGTERM;
    if (lua_type(L, idx) == LUA_TNUMBER && lua_tonumber(L, idx) == 0)
        return 0;
    return proc_check_signal(L, idx, what);
}

static struct child *check_child(lua_State *L)
{
    struct child_ud *ud = luaL_checkudata(L, 1, CHILD_MT);
    return ud->c;
}

static int push_errno(lua_State *L, int err, const char *what)
{
    int uverr = uv_translate_sys_error(err);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s%s%s", uv_err_name(uverr), uv_strerror(uverr), what ? ": " : "",
                    what ? what : "");
    lua_pushstring(L, uv_err_name(uverr));
    return 3;
}

/* h:wait() -> {code, signal}: suspends the task until the child exits (at once if it has). */
static int l_proc_child_wait(lua_State *L)
{
    struct child *c = check_child(L);
    if (c->exited) {
        push_status(L, c);
        return 1;
    }
    task_t *t = task_check(L, "proc child:wait");
    if (c->waiting)
        return luaL_error(L, "proc child:wait: another task is already waiting for pid %d", c->pid);
    c->waiting = 1;
    uv_ref((uv_handle_t *)&c->proc); /* a waiter keeps the loop running (steward script) */
    return task_suspend(L, t, &c->wait, wait_cancel);
}

/* h:kill([sig [, group]]) -> true | nil, err, code */
static int l_proc_child_kill(lua_State *L)
{
    struct child *c = check_child(L);
    int sig = kill_signal_arg(L, 2, "proc child:kill: signal");
    int group = lua_toboolean(L, 3);
    /* Once libuv has reaped it the pid may belong to someone else: never signal it then. */
    if (c->exited)
        return push_errno(L, ESRCH, "the process has exited");
    if (kill(group ? -c->pid : c->pid, sig) != 0)
        return push_errno(L, errno, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_proc_child_gc(lua_State *L)
{
    struct child_ud *ud = luaL_checkudata(L, 1, CHILD_MT);
    struct child *c = ud->c;
    ud->c = NULL;
    if (!c)
        return 0;
    if (c->closed) {
        child_unlink(c);
        free(c);
    } else {
        c->orphaned = 1; /* the exit (or shutdown) closes the handle, then it is freed */
    }
    return 0;
}

static int l_proc_child_index(lua_State *L)
{
    struct child *c = check_child(L);
    const char *k = lua_tostring(L, 2);
    if (k && strcmp(k, "pid") == 0) {
        lua_pushinteger(L, c->pid);
        return 1;
    }
    if (k && strcmp(k, "exited") == 0) {
        lua_pushboolean(L, c->exited);
        return 1;
    }
    luaL_getmetatable(L, CHILD_MT);
    lua_getfield(L, -1, "methods");
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static int l_proc_child_tostring(lua_State *L)
{
    struct child *c = check_child(L);
    lua_pushfstring(L, "proc child %d%s", c->pid, c->exited ? " (exited)" : "");
    return 1;
}

/* Opens a log file for append (-1 without a path); errno is kept for the caller. */
static int open_out(const char *path)
{
    if (!path)
        return -1;
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

/* proc.spawn{cmd, env, env_add, cwd, stdout = path, stderr = path} -> child | nil, err, code */
static int l_proc_spawn(lua_State *L)
{
    const char *fname = "proc.spawn";
    struct proc_opts o;
    proc_opts_check(L, fname, &o);
    /* Both checked before either file is opened, so a misuse raises with nothing open. */
    const char *paths[2] = {proc_opt_string_field(L, 1, "stdout", fname),
                            proc_opt_string_field(L, 1, "stderr", fname)};
    proc_opts_anchor(L, &o);

    /* The handle first: nothing below raises while a descriptor is open. */
    struct child_ud *ud = lua_newuserdata(L, sizeof *ud);
    ud->c = NULL;
    luaL_getmetatable(L, CHILD_MT);
    lua_setmetatable(L, -2);

    int fds[2] = {-1, -1};
    for (int i = 0; i < 2; i++) {
        fds[i] = open_out(paths[i]);
        if (paths[i] && fds[i] < 0) {
            int err = errno;
            if (i == 1 && fds[0] >= 0)
                close(fds[0]);
            return push_errno(L, err, paths[i]);
        }
    }
    struct child *c = calloc(1, sizeof *c);
    if (!c) {
        for (int i = 0; i < 2; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        lua_pushnil(L);
        lua_pushstring(L, "ENOMEM: out of memory");
        lua_pushstring(L, "ENOMEM");
        return 3;
    }

    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE; /* /dev/null */
    for (int i = 0; i < 2; i++) {
        if (fds[i] >= 0) {
            stdio[i + 1].flags = UV_INHERIT_FD;
            stdio[i + 1].data.fd = fds[i];
        } else {
            stdio[i + 1].flags = UV_IGNORE;
        }
    }
    uv_process_options_t po = {0};
    proc_spawn_options(&po, &o, stdio);
    po.exit_cb = on_child_exit;
    /* setsid: the child leads a session of its own, so neither the daemon's exit nor a signal
     * to the daemon's process group reaches it. */
    po.flags = UV_PROCESS_DETACHED;
    c->proc.data = c;
    c->next = live;
    if (live)
        live->prev = c;
    live = c;
    ud->c = c;
    proc_cloexec_all();
    int r = uv_spawn(task_loop(), &c->proc, &po);
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (r < 0) {
        /* libuv wants the handle closed even when the spawn failed; the close callback or
         * the handle's collection frees the record. */
        c->exited = 1;
        uv_close((uv_handle_t *)&c->proc, child_closed);
        return proc_push_spawn_error(L, r, &o);
    }
    c->pid = c->proc.pid;
    /* A running child does not keep the loop alive; a task waiting for it does. */
    uv_unref((uv_handle_t *)&c->proc);
    return 1;
}

static pid_t check_pid(lua_State *L, int idx, const char *fname)
{
    lua_Number n = luaL_checknumber(L, idx);
    if (n != (lua_Number)(pid_t)n || n < 1)
        luaL_argerror(L, idx, lua_pushfstring(L, "%s: pid: a positive integer expected", fname));
    return (pid_t)n;
}

/* proc.kill(pid [, sig [, group]]) -> true | nil, err, code */
static int l_proc_kill(lua_State *L)
{
    pid_t pid = check_pid(L, 1, "proc.kill");
    int sig = kill_signal_arg(L, 2, "proc.kill: signal");
    int group = lua_toboolean(L, 3);
    if (kill(group ? -pid : pid, sig) != 0)
        return push_errno(L, errno, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- watch: a pidfd becomes readable when its process ends ---- */

struct watch_op {
    task_wait_t wait;
    uv_poll_t poll;
    int fd;
};

static void watch_closed(uv_handle_t *h)
{
    struct watch_op *op = h->data;
    close(op->fd);
    free(op);
}

static void on_watch(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    struct watch_op *op = p->data;
    task_t *t = task_wake(&op->wait);
    uv_close((uv_handle_t *)&op->poll, watch_closed);
    if (t) {
        lua_pushboolean(task_state(t), 1);
        task_resume(t, 1);
    }
}

static void watch_cancel(task_wait_t *w)
{
    struct watch_op *op = (struct watch_op *)w;
    uv_close((uv_handle_t *)&op->poll, watch_closed);
}

/* proc.watch(pid) -> true once the process has ended | nil, err, code (ESRCH: no such process) */
static int l_proc_watch(lua_State *L)
{
    pid_t pid = check_pid(L, 1, "proc.watch");
    task_t *t = task_check(L, "proc.watch");
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0)
        return push_errno(L, errno, NULL);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    struct watch_op *op = malloc(sizeof *op);
    if (!op) {
        close(fd);
        return luaL_error(L, "proc.watch: out of memory");
    }
    op->fd = fd;
    int r = uv_poll_init(task_loop(), &op->poll, fd);
    if (r < 0) {
        close(fd);
        free(op);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", uv_err_name(r), uv_strerror(r));
        lua_pushstring(L, uv_err_name(r));
        return 3;
    }
    op->poll.data = op;
    r = uv_poll_start(&op->poll, UV_READABLE, on_watch);
    if (r < 0) {
        uv_close((uv_handle_t *)&op->poll, watch_closed);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", uv_err_name(r), uv_strerror(r));
        lua_pushstring(L, uv_err_name(r));
        return 3;
    }
    return task_suspend(L, t, &op->wait, watch_cancel);
}

/* ---- info: /proc/<pid>/stat and cmdline ---- */

/* Reads a small /proc file whole into buf; its length, or -1. /proc files are generated in
 * memory by the kernel: reading one does not wait for a disk. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    return (ssize_t)len;
}

/* proc.info(pid) -> {start_time, state, ppid, utime, stime, rss, cmdline = {...}} | nil (no such
 * process). utime and stime are seconds of CPU (the autoscaler's CPU rate is their delta), rss
 * bytes (statm's resident pages times the page size). */
static int l_proc_info(lua_State *L)
{
    pid_t pid = check_pid(L, 1, "proc.info");
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    ssize_t n = read_small(path, buf, sizeof buf - 1);
    if (n <= 0) {
        lua_pushnil(L);
        return 1;
    }
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: fields resume after the
     * last ')'. Then: state (3), ppid (4), ..., starttime (22, clock ticks since boot). */
    char *p = strrchr(buf, ')');
    if (!p) {
        lua_pushnil(L);
        return 1;
    }
    p++;
    char state = '?';
    long long ppid = 0;
    unsigned long long start = 0, utime = 0, stime = 0;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 3)
            state = tok[0];
        else if (field == 4)
            ppid = strtoll(tok, NULL, 10);
        else if (field == 14)
            utime = strtoull(tok, NULL, 10);
        else if (field == 15)
            stime = strtoull(tok, NULL, 10);
        else if (field == 22) {
            start = strtoull(tok, NULL, 10);
            break;
        }
    }
    if (field != 22) {
        lua_pushnil(L);
        return 1;
    }
    /* utime and stime count clock ticks (sysconf's _SC_CLK_TCK, 100 on Linux). */
    long tck = sysconf(_SC_CLK_TCK);
    if (tck <= 0)
        tck = 100;
    lua_createtable(L, 0, 7);
    lua_pushnumber(L, (lua_Number)start);
    lua_setfield(L, -2, "start_time");
    lua_pushnumber(L, (lua_Number)utime / (lua_Number)tck);
    lua_setfield(L, -2, "utime");
    lua_pushnumber(L, (lua_Number)stime / (lua_Number)tck);
    lua_setfield(L, -2, "stime");
    /* statm: size resident shared ... in pages. A process that exits in between has none:
     * rss is then absent rather than a made-up 0. */
    snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
    n = read_small(path, buf, sizeof buf - 1);
    if (n > 0) {
        buf[n] = '\0';
        unsigned long long size = 0, resident = 0;
        long page = sysconf(_SC_PAGESIZE);
        if (sscanf(buf, "%llu %llu", &size, &resident) == 2 && page > 0) {
            lua_pushnumber(L, (lua_Number)resident * (lua_Number)page);
            lua_setfield(L, -2, "rss");
        }
    }
    lua_pushlstring(L, &state, 1);
    lua_setfield(L, -2, "state");
    lua_pushnumber(L, (lua_Number)ppid);
    lua_setfield(L, -2, "ppid");
    lua_newtable(L);
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    n = read_small(path, buf, sizeof buf);
    int i = 0;
    for (ssize_t at = 0; n > 0 && at < n;) {
        size_t len = strnlen(buf + at, (size_t)(n - at));
        lua_pushlstring(L, buf + at, len);
        lua_rawseti(L, -2, ++i);
        at += (ssize_t)len + 1;
    }
    lua_setfield(L, -2, "cmdline");
    return 1;
}

void proc_spawn_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"wait", l_proc_child_wait}, {"kill", l_proc_child_kill}, {NULL, NULL}};
    static const luaL_Reg funcs[] = {{"spawn", l_proc_spawn},
                                     {"kill", l_proc_kill},
                                     {"watch", l_proc_watch},
                                     {"info", l_proc_info},
                                     {NULL, NULL}};
    if (luaL_newmetatable(L, CHILD_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "methods");
        lua_pushcfunction(L, l_proc_child_index);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_proc_child_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_proc_child_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    luaL_register(L, NULL, funcs);
}
