/* steward.unix: framed unix-domain socket streams, the transport of the daemon's admin socket
 * (core/repl/frame.h). A server listens on a socket file created with its final mode; each
 * connection decodes frames as bytes arrive and buffers a bounded number for conn:read();
 * conn:write() queues a frame and makes the writing task wait while too much is unwritten.
 * A connection opened with {raw = true} carries plain bytes instead (line protocols such as
 * HAProxy's runtime API): read returns the bytes as they arrive, write sends them as given.
 * Handles are owned by their C structs, freed in libuv's close callback; the Lua userdata
 * only points at them and clears that pointer when the handle closes. */
#include <errno.h>
#include <grp.h>
#include <lauxlib.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "bindings.h"
#include "frame.h"
#include "log.h"
#include "task.h"

#define SERVER_MT "steward.unix.server"
#define CONN_MT   "steward.unix.conn"

#define DEFAULT_MAX_FRAME ((size_t)1 << 20)
#define DEFAULT_BACKLOG   64
/* Reading pauses while more than this is decoded but not yet taken by conn:read(), so a
 * client that floods the socket is held back by the kernel's buffers, not our memory. */
#define READ_MAX_FRAMES 16
#define READ_MAX_BYTES  ((size_t)4 << 20)
/* conn:write() makes its task wait while more than this is queued and unwritten. */
#define WRITE_HIGH ((size_t)1 << 20)
#define READ_CHUNK 65536

#define SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

#define CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- connections ---- */

struct rframe {
    struct rframe *next;
    frame_t f;
};

struct wwaiter {
    task_wait_t wait; /* first: the cancel function casts back */
    struct wwaiter *next, *prev;
    struct conn *c;
};

struct conn {
    uv_pipe_t pipe;
    struct conn **owner; /* the Lua userdata's pointer, cleared on close */
    frame_decoder_t dec;
    struct rframe *head, *tail; /* decoded, not yet read */
    size_t nframes, nbytes;
    task_wait_t rwait;
    int rwaiting; /* a task waits in conn:read() */
    int reading;  /* uv_read_start is in effect */
    int eof;      /* the peer closed (or reset) the stream: no more frames */
    int broken;   /* a write failed */
    int closing;
    int raw;                        /* plain bytes, no frames */
    char rerr[128];                 /* "malformed frame: ..." once the decoder failed */
    struct wwaiter *wfirst, *wlast; /* tasks waiting for the write queue to drain */
    /* unix.connect */
    uv_connect_t creq;
    task_wait_t cwait;
    char *path;
    char chunk[READ_CHUNK];
};

struct wreq {
    uv_write_t req;
    struct conn *c;
    unsigned char hdr[FRAME_HEADER];
    char data[];
};

static void push_os_error(lua_State *L, int err, const char *path)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s: %s", uv_err_name(err), uv_strerror(err), path);
    lua_pushstring(L, uv_err_name(err));
}

static int push_closed(lua_State *L)
{
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
}

static void conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    free(c->path);
    free(c);
}

static struct conn *conn_alloc(size_t max_frame)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    uv_pipe_init(task_loop(), &c->pipe, 0);
    c->pipe.data = c;
    /* Like a signal watch, an open conn or server alone does not keep a script alive: only a
     * task waiting in read or accept (and unwritten data) does. */
    uv_unref((uv_handle_t *)&c->pipe);
    frame_decoder_init(&c->dec, max_frame);
    return c;
}

static void free_frames(struct conn *c)
{
    while (c->head) {
        struct rframe *r = c->head;
        c->head = r->next;
        free(r->f.payload);
        free(r);
    }
    c->tail = NULL;
    c->nframes = c->nbytes = 0;
}

static void stop_reading(struct conn *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->pipe);
        c->reading = 0;
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct conn *c = h->data;
    *buf = uv_buf_init(c->chunk, sizeof c->chunk);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void maybe_start_reading(struct conn *c)
{
    if (c->reading || c->closing || c->eof || c->rerr[0] || c->nframes > READ_MAX_FRAMES ||
        c->nbytes > READ_MAX_BYTES)
        return;
    if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) == 0)
        c->reading = 1;
    else
        c->eof = 1;
}

/* Pushes what conn:read() returns when it need not wait: the next frame, the decoder's error
 * (after the frames decoded before it) or "closed". */
static int push_read_result(lua_State *L, struct conn *c)
{
    if (c->closing)
        return push_closed(L);
    if (c->head) {
        struct rframe *r = c->head;
        c->head = r->next;
        if (!c->head)
            c->tail = NULL;
        c->nframes--;
        c->nbytes -= r->f.len;
        char type = (char)r->f.type;
        int n = 1;
        if (!c->raw) {
            lua_pushlstring(L, &type, 1);
            n = 2;
        }
        lua_pushlstring(L, r->f.payload, r->f.len);
        free(r->f.payload);
        free(r);
        maybe_start_reading(c);
        return n;
    }
    if (c->rerr[0]) {
        lua_pushnil(L);
        lua_pushstring(L, c->rerr);
        return 2;
    }
    return push_closed(L);
}

static void wake_reader(struct conn *c)
{
    if (!c->rwaiting || !(c->head || c->eof || c->rerr[0] || c->closing))
        return;
    c->rwaiting = 0;
    uv_unref((uv_handle_t *)&c->pipe);
    task_t *t = task_wake(&c->rwait);
    if (!t)
        return;
    int n = push_read_result(task_state(t), c);
    task_resume(t, n);
}

static void read_cancel(task_wait_t *w)
{
    struct conn *c = CONTAINER(w, struct conn, rwait);
    c->rwaiting = 0;
    uv_unref((uv_handle_t *)&c->pipe);
}

/* Wakes the tasks waiting in conn:write(): with true once the queue is short enough, with
 * nil, "closed" when the conn is gone. One at a time: a woken task may write again (refilling
 * the queue) or close the conn before the next is considered. */
static void wake_writers(struct conn *c)
{
    for (;;) {
        struct wwaiter *ww = c->wfirst;
        if (!ww)
            return;
        int failed = c->closing || c->broken;
        if (!failed && uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > WRITE_HIGH)
            return;
        c->wfirst = ww->next;
        if (c->wfirst)
            c->wfirst->prev = NULL;
        else
            c->wlast = NULL;
        task_t *t = task_wake(&ww->wait);
        free(ww);
        if (!t)
            continue;
        if (failed) {
            task_resume(t, push_closed(task_state(t)));
        } else {
            lua_pushboolean(task_state(t), 1);
            task_resume(t, 1);
        }
    }
}

static void write_cancel(task_wait_t *w)
{
    struct wwaiter *ww = (struct wwaiter *)w;
    struct conn *c = ww->c;
    if (ww->prev)
        ww->prev->next = ww->next;
    else
        c->wfirst = ww->next;
    if (ww->next)
        ww->next->prev = ww->prev;
    else
        c->wlast = ww->prev;
    free(ww);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->owner)
        *c->owner = NULL;
    c->owner = NULL;
    free_frames(c);
    frame_decoder_free(&c->dec);
    /* Pending writes are completed (UV_ECANCELED) before conn_closed frees c. (A handle the
     * runtime's shutdown walk already closed cannot be closed twice.) */
    if (!uv_is_closing((uv_handle_t *)&c->pipe))
        uv_close((uv_handle_t *)&c->pipe, conn_closed);
    wake_reader(c);
    wake_writers(c);
}

/* A raw conn keeps each chunk read as one entry of the frame list (type 0). */
static void queue_raw(struct conn *c, const char *p, size_t n)
{
    struct rframe *r = malloc(sizeof *r);
    char *copy = r ? malloc(n) : NULL;
    if (!copy) {
        free(r);
        snprintf(c->rerr, sizeof c->rerr, "out of memory");
        return;
    }
    memcpy(copy, p, n);
    r->next = NULL;
    r->f.type = 0;
    r->f.len = (uint32_t)n;
    r->f.payload = copy;
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->nframes++;
    c->nbytes += n;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct conn *c = st->data;
    if (nread > 0 && c->raw) {
        queue_raw(c, c->chunk, (size_t)nread);
        if (c->rerr[0] || c->nframes > READ_MAX_FRAMES || c->nbytes > READ_MAX_BYTES)
            stop_reading(c);
    } else if (nread > 0) {
        const char *p = c->chunk;
        size_t n = (size_t)nread;
        while (n > 0) {
            frame_t f;
            size_t used = 0;
            int rc = frame_decode(&c->dec, p, n, &used, &f);
            if (rc < 0) {
                snprintf(c->rerr, sizeof c->rerr, "malformed frame: %s", c->dec.err);
                break;
            }
            p += used;
            n -= used;
            if (rc == 0)
                break;
            struct rframe *r = malloc(sizeof *r);
            if (!r) {
                free(f.payload);
                snprintf(c->rerr, sizeof c->rerr, "malformed frame: out of memory");
                break;
            }
            r->next = NULL;
            r->f = f;
            if (c->tail)
                c->tail->next = r;
            else
                c->head = r;
            c->tail = r;
            c->nframes++;
            c->nbytes += f.len;
        }
        if (c->rerr[0] || c->nframes > READ_MAX_FRAMES || c->nbytes > READ_MAX_BYTES)
            stop_reading(c);
    } else if (nread < 0) {
        /* EOF or a reset: either way the peer is gone. */
        c->eof = 1;
        stop_reading(c);
    }
    wake_reader(c);
}

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct conn *c = w->c;
    free(w);
    if (status < 0)
        c->broken = 1;
    wake_writers(c);
}

/* Wraps c in a new userdata on L. */
static void conn_push(lua_State *L, struct conn *c)
{
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): the userdata is one pointer, to the conn */
    struct conn **ud = lua_newuserdata(L, sizeof *ud);
    *ud = c;
    c->owner = ud;
    luaL_getmetatable(L, CONN_MT);
    lua_setmetatable(L, -2);
}

static struct conn *check_conn(lua_State *L)
{
    return *(struct conn **)luaL_checkudata(L, 1, CONN_MT);
}

static int l_unix_conn_read(lua_State *L)
{
    struct conn *c = check_conn(L);
    task_t *t = task_check(L, "conn:read");
    if (!c)
        return push_closed(L);
    if (c->rwaiting)
        return luaL_error(L, "conn:read: another task is already reading");
    if (c->head || c->eof || c->rerr[0])
        return push_read_result(L, c);
    c->rwaiting = 1;
    uv_ref((uv_handle_t *)&c->pipe);
    return task_suspend(L, t, &c->rwait, read_cancel);
}

/* 1 when L is the running task's own coroutine and may suspend here (task_check without the
 * error: outside a task, conn:write only queues). */
static int can_suspend(lua_State *L)
{
    task_t *t = task_current();
    return t && task_state(t) == L && lua_isyieldable(L);
}

static int l_unix_conn_write(lua_State *L)
{
    struct conn *c = check_conn(L);
    size_t tlen = 1, len;
    const char *type = "", *payload;
    if (c && c->raw) {
        payload = luaL_checklstring(L, 2, &len);
    } else {
        type = luaL_checklstring(L, 2, &tlen);
        if (tlen != 1 || !frame_type_valid((unsigned char)type[0]))
            return luaL_argerror(L, 2, "frame type expected (one of H E J C I G O R X M L B)");
        payload = luaL_optlstring(L, 3, "", &len);
    }
    if (!c || c->closing || c->broken)
        return push_closed(L);
    if (len > FRAME_MAX_PAYLOAD) {
        lua_pushnil(L);
        lua_pushfstring(L, "payload of %f bytes is over the frame limit of %d bytes", (double)len,
                        (int)FRAME_MAX_PAYLOAD);
        return 2;
    }
    struct wreq *w = malloc(sizeof *w + len);
    if (!w)
        return luaL_error(L, "conn:write: out of memory");
    w->c = c;
    frame_header(w->hdr, (unsigned char)type[0], (uint32_t)len);
    memcpy(w->data, payload, len);
    uv_buf_t bufs[2] = {uv_buf_init((char *)w->hdr, FRAME_HEADER),
                        uv_buf_init(w->data, (unsigned)len)};
    uv_buf_t *b = c->raw ? bufs + 1 : bufs;
    int rc = uv_write(&w->req, (uv_stream_t *)&c->pipe, b, c->raw ? 1 : (len ? 2 : 1), on_written);
    if (rc != 0) {
        free(w);
        c->broken = 1;
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        lua_pushstring(L, uv_err_name(rc));
        return 3;
    }
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > WRITE_HIGH && can_suspend(L)) {
        task_t *t = task_check(L, "conn:write"); /* raises if the task is being cancelled */
        struct wwaiter *ww = calloc(1, sizeof *ww);
        if (!ww)
            return luaL_error(L, "conn:write: out of memory");
        ww->c = c;
        ww->prev = c->wlast;
        if (c->wlast)
            c->wlast->next = ww;
        else
            c->wfirst = ww;
        c->wlast = ww;
        return task_suspend(L, t, &ww->wait, write_cancel);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_unix_conn_peer(lua_State *L)
{
    struct conn *c = check_conn(L);
    if (!c)
        return push_closed(L);
    uv_os_fd_t fd;
    int rc = uv_fileno((uv_handle_t *)&c->pipe, &fd);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "conn:peer: %s", uv_strerror(rc));
        lua_pushstring(L, uv_err_name(rc));
        return 3;
    }
    struct ucred cr;
    socklen_t crlen = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0) {
        int e = -errno;
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s: SO_PEERCRED", uv_err_name(e), uv_strerror(e));
        lua_pushstring(L, uv_err_name(e));
        return 3;
    }
    lua_createtable(L, 0, 3);
    lua_pushnumber(L, (double)cr.uid);
    lua_setfield(L, -2, "uid");
    lua_pushnumber(L, (double)cr.gid);
    lua_setfield(L, -2, "gid");
    lua_pushnumber(L, (double)cr.pid);
    lua_setfield(L, -2, "pid");
    return 1;
}

static int l_unix_conn_close(lua_State *L)
{
    struct conn *c = check_conn(L);
    if (c)
        conn_close(c);
    return 0;
}

static int l_unix_conn_tostring(lua_State *L)
{
    struct conn *c = check_conn(L);
    lua_pushfstring(L, "unix.conn (%s)", c ? "open" : "closed");
    return 1;
}

/* ---- connect ---- */

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    task_t *t = task_wake(&c->cwait);
    if (!t) { /* the task was cancelled: nobody wants the conn */
        conn_close(c);
        return;
    }
    lua_State *T = task_state(t);
    if (status < 0) {
        push_os_error(T, status, c->path);
        conn_close(c);
        task_resume(t, 3);
        return;
    }
    conn_push(T, c);
    maybe_start_reading(c);
    task_resume(t, 1);
}

static void connect_cancel(task_wait_t *w)
{
    (void)w; /* a connect cannot be stopped: on_connect sees no task and closes the conn */
}

static int opt_raw(lua_State *L, int opts)
{
    if (!lua_istable(L, opts))
        return 0;
    lua_getfield(L, opts, "raw");
    int raw = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return raw;
}

static size_t opt_max_frame(lua_State *L, int opts, const char *fname)
{
    size_t max = DEFAULT_MAX_FRAME;
    if (lua_isnoneornil(L, opts))
        return max;
    luaL_checktype(L, opts, LUA_TTABLE);
    lua_getfield(L, opts, "max_frame");
    if (!lua_isnil(L, -1)) {
        double m = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || m < 1 || m > FRAME_MAX_PAYLOAD)
            luaL_error(L, "%s: max_frame: number of bytes from 1 to %d expected", fname,
                       (int)FRAME_MAX_PAYLOAD);
        max = (size_t)m;
    }
    lua_pop(L, 1);
    return max;
}

static const char *check_path(lua_State *L, const char *fname)
{
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    if (len == 0 || strlen(path) != len)
        luaL_argerror(L, 1, "non-empty path without NUL bytes expected");
    (void)fname;
    return path;
}

static int push_too_long(lua_State *L, const char *path)
{
    lua_pushnil(L);
    lua_pushfstring(L, "ENAMETOOLONG: path too long for a unix socket (at most %d bytes): %s",
                    (int)SUN_PATH_MAX, path);
    lua_pushliteral(L, "ENAMETOOLONG");
    return 3;
}

static int l_unix_connect(lua_State *L)
{
    const char *path = check_path(L, "unix.connect");
    size_t max = opt_max_frame(L, 2, "unix.connect");
    int raw = opt_raw(L, 2);
    task_t *t = task_check(L, "unix.connect");
    /* libuv would silently truncate a longer path and connect somewhere else. */
    if (strlen(path) > SUN_PATH_MAX)
        return push_too_long(L, path);
    struct conn *c = conn_alloc(max);
    char *p = c ? strdup(path) : NULL;
    if (!p) {
        if (c)
            conn_close(c);
        return luaL_error(L, "unix.connect: out of memory");
    }
    c->path = p;
    c->raw = raw;
    c->creq.data = c;
    uv_pipe_connect(&c->creq, &c->pipe, path, on_connect);
    return task_suspend(L, t, &c->cwait, connect_cancel);
}

/* ---- servers ---- */

struct server {
    uv_pipe_t pipe;
    struct server_ud *owner;
    size_t max_frame;
    int raw; /* accepted conns carry plain bytes */
    task_wait_t await;
    int awaiting; /* a task waits in server:accept() */
    int pending;  /* libuv holds an accepted connection for uv_accept */
    int closing;
    dev_t dev;
    ino_t ino;
    char path[];
};

struct server_ud {
    struct server *s;
    char path[SUN_PATH_MAX + 1]; /* kept for server:path() after close */
};

static void server_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Pushes the next connection (or nil, err) onto L, taking the one libuv holds. */
static int accept_one(lua_State *L, struct server *s)
{
    s->pending = 0;
    struct conn *c = conn_alloc(s->max_frame);
    if (!c) {
        lua_pushnil(L);
        lua_pushliteral(L, "server:accept: out of memory");
        return 2;
    }
    c->raw = s->raw;
    int rc = uv_accept((uv_stream_t *)&s->pipe, (uv_stream_t *)&c->pipe);
    if (rc != 0) {
        conn_close(c);
        push_os_error(L, rc, s->path);
        return 3;
    }
    conn_push(L, c);
    maybe_start_reading(c);
    return 1;
}

/* libuv calls this once per connection and then stops accepting until uv_accept takes it, so
 * connections that arrive while nobody waits in accept() queue up, in order, in the kernel's
 * listen backlog (bounded by opts.backlog) rather than in our memory. */
static void on_connection(uv_stream_t *st, int status)
{
    struct server *s = st->data;
    if (s->closing)
        return;
    if (status < 0) {
        log_warn("unix: accept failed", "path", s->path, "error", uv_strerror(status));
        return;
    }
    s->pending = 1;
    if (!s->awaiting)
        return;
    s->awaiting = 0;
    uv_unref((uv_handle_t *)&s->pipe);
    task_t *t = task_wake(&s->await);
    if (!t)
        return;
    int n = accept_one(task_state(t), s);
    task_resume(t, n);
}

static void accept_cancel(task_wait_t *w)
{
    struct server *s = CONTAINER(w, struct server, await);
    s->awaiting = 0;
    uv_unref((uv_handle_t *)&s->pipe);
}

static void server_close(struct server *s)
{
    if (s->closing)
        return;
    s->closing = 1;
    if (s->owner)
        s->owner->s = NULL;
    s->owner = NULL;
    /* libuv unlinks the path it bound when the handle closes. Only our own socket file may
     * go: if someone removed it and another daemon created a new one there meanwhile, libuv
     * is told to forget the name (pipe_fname is libuv's strdup, freed as it would free it). */
    struct stat st;
    if (s->pipe.pipe_fname &&
        !(lstat(s->path, &st) == 0 && st.st_ino == s->ino && st.st_dev == s->dev)) {
        free((void *)s->pipe.pipe_fname);
        s->pipe.pipe_fname = NULL;
    }
    uv_close((uv_handle_t *)&s->pipe, server_closed);
    if (s->awaiting) {
        s->awaiting = 0;
        uv_unref((uv_handle_t *)&s->pipe);
        task_t *t = task_wake(&s->await);
        if (t)
            task_resume(t, push_closed(task_state(t)));
    }
}

static struct server_ud *check_server(lua_State *L)
{
    return luaL_checkudata(L, 1, SERVER_MT);
}

static int l_unix_server_accept(lua_State *L)
{
    struct server *s = check_server(L)->s;
    task_t *t = task_check(L, "server:accept");
    if (!s)
        return push_closed(L);
    if (s->awaiting)
        return luaL_error(L, "server:accept: another task is already accepting");
    if (s->pending)
        return accept_one(L, s);
    s->awaiting = 1;
    uv_ref((uv_handle_t *)&s->pipe);
    return task_suspend(L, t, &s->await, accept_cancel);
}

static int l_unix_server_path(lua_State *L)
{
    lua_pushstring(L, check_server(L)->path);
    return 1;
}

static int l_unix_server_close(lua_State *L)
{
    struct server_ud *ud = check_server(L);
    if (ud->s)
        server_close(ud->s);
    return 0;
}

static int l_unix_server_tostring(lua_State *L)
{
    struct server_ud *ud = check_server(L);
    lua_pushfstring(L, "unix.server (%s%s)", ud->path, ud->s ? "" : ", closed");
    return 1;
}

/* 1 when a listener accepts connections at path, 0 when nobody does (ECONNREFUSED: a stale
 * file left by a daemon that died), or -errno. A non-blocking connect to a unix socket
 * completes (or fails) at once, so this does not block the loop. */
static int probe_listener(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, path, strlen(path));
    int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    int e = rc == 0 ? 0 : errno;
    close(fd);
    if (rc == 0 || e == EAGAIN || e == EINPROGRESS) /* EAGAIN: alive, its backlog is full */
        return 1;
    if (e == ECONNREFUSED)
        return 0;
    return -e;
}

static int resolve_group(lua_State *L, int idx, gid_t *gid)
{
    if (lua_type(L, idx) == LUA_TNUMBER) {
        double g = lua_tonumber(L, idx);
        if (g < 0 || g > 4294967294.0 || g != (double)(gid_t)g)
            luaL_error(L, "unix.listen: group: group name or gid expected");
        *gid = (gid_t)g;
        return 0;
    }
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "unix.listen: group: group name or gid expected, got %s",
                   luaL_typename(L, idx));
    struct group gr, *res = NULL;
    char buf[4096];
    int e = getgrnam_r(lua_tostring(L, idx), &gr, buf, sizeof buf, &res);
    if (e != 0 || !res)
        return -1;
    *gid = res->gr_gid;
    return 0;
}

/* Once bound, the handle's close also removes the socket file (libuv does). */
static int listen_fail(lua_State *L, struct server *s, int err, const char *path)
{
    s->closing = 1;
    uv_close((uv_handle_t *)&s->pipe, server_closed);
    push_os_error(L, err, path);
    return 3;
}

static int l_unix_listen(lua_State *L)
{
    const char *path = check_path(L, "unix.listen");
    int mode = 0600, backlog = DEFAULT_BACKLOG, has_group = 0;
    gid_t gid = 0;
    size_t max_frame = opt_max_frame(L, 2, "unix.listen");
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "mode");
        if (!lua_isnil(L, -1)) {
            double m = lua_tonumber(L, -1);
            if (lua_type(L, -1) != LUA_TNUMBER || m < 0 || m > 0777 || m != (double)(int)m)
                return luaL_error(L, "unix.listen: mode: permission bits (0 to 511, e.g. 384 "
                                     "for 0600) expected");
            mode = (int)m;
        }
        lua_getfield(L, 2, "backlog");
        if (!lua_isnil(L, -1)) {
            double b = lua_tonumber(L, -1);
            if (lua_type(L, -1) != LUA_TNUMBER || b < 1 || b > 65535)
                return luaL_error(L, "unix.listen: backlog: number from 1 to 65535 expected");
            backlog = (int)b;
        }
        lua_getfield(L, 2, "group");
        if (!lua_isnil(L, -1)) {
            has_group = 1;
            if (resolve_group(L, -1, &gid) != 0) {
                lua_pushnil(L);
                lua_pushfstring(L, "unix.listen: unknown group '%s' for %s", lua_tostring(L, -2),
                                path);
                lua_pushliteral(L, "ENOENT");
                return 3;
            }
        }
        lua_pop(L, 3);
    }
    if (strlen(path) > SUN_PATH_MAX)
        return push_too_long(L, path);

    /* Socket setup is a handful of metadata calls on a local path (lstat, unlink, bind,
     * chown, chmod), done once at startup like libuv's own bind: done inline, not on the
     * thread pool, so listen() needs no task. */
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            lua_pushnil(L);
            lua_pushfstring(L, "%s exists and is not a socket", path);
            lua_pushliteral(L, "EEXIST");
            return 3;
        }
        int live = probe_listener(path);
        if (live == 1) {
            lua_pushnil(L);
            lua_pushfstring(L, "address in use: %s (another daemon is listening)", path);
            lua_pushliteral(L, "EADDRINUSE");
            return 3;
        }
        if (live < 0) {
            push_os_error(L, live, path);
            return 3;
        }
        if (unlink(path) != 0 && errno != ENOENT) { /* stale: its daemon is gone */
            push_os_error(L, -errno, path);
            return 3;
        }
    } else if (errno != ENOENT) {
        push_os_error(L, -errno, path);
        return 3;
    }

    struct server_ud *ud = lua_newuserdata(L, sizeof *ud);
    ud->s = NULL;
    snprintf(ud->path, sizeof ud->path, "%s", path);
    luaL_getmetatable(L, SERVER_MT);
    lua_setmetatable(L, -2);
    size_t plen = strlen(path);
    struct server *s = calloc(1, sizeof *s + plen + 1);
    if (!s)
        return luaL_error(L, "unix.listen: out of memory");
    memcpy(s->path, path, plen + 1);
    s->max_frame = max_frame;
    s->raw = opt_raw(L, 2);
    uv_pipe_init(task_loop(), &s->pipe, 0);
    s->pipe.data = s;
    uv_unref((uv_handle_t *)&s->pipe); /* referenced only while a task waits in accept */

    /* bind() creates the socket file with 0777 & ~umask, and Linux has no way to set a unix
     * socket's file mode before bind (fchmod on the fd does not reach the file), so a chmod
     * afterwards would leave a window in which anyone allowed by the default umask could
     * connect -- and keep that connection. So the file is born with at most the owner's bits
     * of the mode, then gets its group, then the exact mode. The group and other bits are
     * always masked here because the umask is process-wide: files that thread-pool workers
     * create meanwhile may come out stricter than usual, never looser. */
    mode_t old = umask(077 | (0777 & ~(mode_t)mode));
    int rc = uv_pipe_bind(&s->pipe, path);
    umask(old);
    if (rc == UV_EACCES) {
        /* libuv reports a missing directory as EACCES; say what is really wrong. */
        const char *slash = strrchr(path, '/');
        if (slash && slash != path) {
            char dir[SUN_PATH_MAX + 1];
            snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
            if (lstat(dir, &st) != 0 && errno == ENOENT)
                rc = UV_ENOENT;
        }
    }
    if (rc != 0)
        return listen_fail(L, s, rc, path);
    if (has_group && chown(path, (uid_t)-1, gid) != 0)
        return listen_fail(L, s, -errno, path);
    if (chmod(path, (mode_t)mode) != 0)
        return listen_fail(L, s, -errno, path);
    if (lstat(path, &st) == 0) {
        s->dev = st.st_dev;
        s->ino = st.st_ino;
    }
    rc = uv_listen((uv_stream_t *)&s->pipe, backlog, on_connection);
    if (rc != 0)
        return listen_fail(L, s, rc, path);
    s->owner = ud;
    ud->s = s;
    return 1;
}

/* A server or conn whose userdata is collected closes (its memory goes in the close
 * callback, once libuv is done with the handle). */
static int l_unix_server_gc(lua_State *L)
{
    struct server_ud *ud = check_server(L);
    if (ud->s)
        server_close(ud->s);
    return 0;
}

static int l_unix_conn_gc(lua_State *L)
{
    struct conn *c = check_conn(L);
    if (c)
        conn_close(c);
    return 0;
}

int luaopen_steward_unix(lua_State *L)
{
    static const luaL_Reg server_methods[] = {{"accept", l_unix_server_accept},
                                              {"path", l_unix_server_path},
                                              {"close", l_unix_server_close},
                                              {NULL, NULL}};
    static const luaL_Reg conn_methods[] = {{"read", l_unix_conn_read},
                                            {"write", l_unix_conn_write},
                                            {"peer", l_unix_conn_peer},
                                            {"close", l_unix_conn_close},
                                            {NULL, NULL}};
    static const luaL_Reg funcs[] = {
        {"listen", l_unix_listen}, {"connect", l_unix_connect}, {NULL, NULL}};
    if (luaL_newmetatable(L, SERVER_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, server_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_unix_server_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_unix_server_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, CONN_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, conn_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_unix_conn_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_unix_conn_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    return 1;
}
