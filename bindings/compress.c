/* steward.compress: zstd files through Debian's libzstd, streamed in bounded memory, with
 * the SHA-256 of the compressed bytes (OpenSSL) computed on the way, for steward.archive.
 *
 *   w = compress.writer(path [, {level = 3}])  -> writer | nil, err
 *   w:write(data)                              -> true | nil, err
 *   w:close()                                  -> {bytes =, raw =, sha256 =} | nil, err
 *   w:abort()                                  -> removes the partial file
 *   r = compress.reader(path [, {chunk = N}])  -> reader | nil, err
 *   r:read()                                   -> next chunk of data | nil at the end | nil, err
 *   r:sha256()                                 -> hex digest of the file once read to its end
 *   r:close()
 *
 * A writer writes <path>.part; close() ends the frame, fsyncs the file, renames it to path and
 * fsyncs the directory, so once close() returns the file is durable under its final name and a
 * crash before that leaves only a .part (never a half file under the final name). Frames carry
 * zstd's content checksum, so a flipped byte is found by the decoder even where the caller
 * keeps no digest. Errors from the reader name the file: a corrupt or truncated archive is an
 * answer, never a crash.
 *
 * Every step that touches the disk or compresses runs as a job on libuv's thread pool inside
 * a task (the loop never blocks), and at once on the calling thread outside a task (steward
 * script, specs). The Lua userdata points to a malloc'd state: a job in flight owns it until
 * its after-work callback, so a cancelled task or a collected userdata never frees memory a
 * pool thread still uses. */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include <zstd.h>

#include "bindings.h"
#include "task.h"

#define WRITER_MT     "steward.compress.writer"
#define READER_MT     "steward.compress.reader"
#define DEFAULT_CHUNK ((size_t)256 << 10) /* decompressed bytes per read() */
#define MAX_CHUNK     ((size_t)16 << 20)
/* The decoder's window limit: our writer's levels use at most 2^22 (level 19 would use
 * more; we cap the level). A hostile frame asking for a larger window is refused instead of
 * allocating up to zstd's default limit. */
#define WINDOW_LOG_MAX 24
#define MAX_LEVEL      9
#define ERR_LEN        512

enum kind { W_OPEN, W_WRITE, W_CLOSE, R_OPEN, R_READ };

struct zstate {
    int is_writer;
    int fd;
    char *path, *part;
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    EVP_MD_CTX *md;
    unsigned char *buf; /* writer: compressed output; reader: compressed input */
    size_t cap, in_pos, in_len;
    size_t chunk;
    int level;
    uint64_t bytes, raw;
    int busy, orphan, closed, failed, file_eof, eof, got_input;
    size_t last_ret;
    char digest[2 * EVP_MAX_MD_SIZE + 1];
};

struct zjob {
    task_wait_t wait;
    uv_work_t work;
    enum kind kind;
    struct zstate *s;
    char *data; /* write: a copy of the caller's bytes; read: the chunk produced */
    size_t len;
    int rc; /* 0 ok, -1 error (err set) */
    char err[ERR_LEN];
};

static void state_free(struct zstate *s)
{
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    if (s->is_writer && !s->closed && s->part)
        unlink(s->part); /* an abandoned writer leaves nothing behind */
    ZSTD_freeCCtx(s->cctx);
    ZSTD_freeDCtx(s->dctx);
    EVP_MD_CTX_free(s->md);
    free(s->buf);
    free(s->path);
    free(s->part);
    free(s);
}

static int fail(struct zjob *j, const char *what, const char *detail)
{
    snprintf(j->err, sizeof j->err, "%s: %s%s%s", j->s->path, what, detail ? ": " : "",
             detail ? detail : "");
    j->rc = -1;
    return -1;
}

static int fail_errno(struct zjob *j, const char *what)
{
    return fail(j, what, strerror(errno));
}

static void hex_digest(struct zstate *s)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(s->md, d, &n) != 1)
        n = 0;
    for (unsigned int i = 0; i < n; i++)
        snprintf(s->digest + 2 * i, 3, "%02x", d[i]);
    s->digest[2 * n] = 0;
}

/* ---- the work: on a pool thread inside a task, on the caller's thread outside ---- */

static int write_all(struct zjob *j, const unsigned char *p, size_t n)
{
    struct zstate *s = j->s;
    while (n > 0) {
        ssize_t w = write(s->fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return fail_errno(j, "write");
        }
        EVP_DigestUpdate(s->md, p, (size_t)w);
        s->bytes += (uint64_t)w;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int do_w_open(struct zjob *j)
{
    struct zstate *s = j->s;
    s->cctx = ZSTD_createCCtx();
    s->md = EVP_MD_CTX_new();
    s->cap = ZSTD_CStreamOutSize();
    s->buf = malloc(s->cap);
    if (!s->cctx || !s->md || !s->buf)
        return fail(j, "out of memory", NULL);
    if (ZSTD_isError(ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_compressionLevel, s->level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_checksumFlag, 1)))
        return fail(j, "zstd parameters refused", NULL);
    if (EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1)
        return fail(j, "sha256 unavailable", NULL);
    s->fd = open(s->part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (s->fd < 0)
        return fail_errno(j, "open");
    return 0;
}

/* Feeds data (or, with end set, the end of the frame) through the compressor to the file. */
static int compress_feed(struct zjob *j, const char *data, size_t len, int end)
{
    struct zstate *s = j->s;
    ZSTD_inBuffer in = {data, len, 0};
    for (;;) {
        ZSTD_outBuffer out = {s->buf, s->cap, 0};
        size_t left = ZSTD_compressStream2(s->cctx, &out, &in, end ? ZSTD_e_end : ZSTD_e_continue);
        if (ZSTD_isError(left))
            return fail(j, "zstd", ZSTD_getErrorName(left));
        if (out.pos > 0 && write_all(j, s->buf, out.pos) < 0)
            return -1;
        if (end ? left == 0 : in.pos == in.size)
            return 0;
    }
}

static int sync_dir(struct zjob *j)
{
    char *dir = strdup(j->s->path);
    if (!dir)
        return fail(j, "out of memory", NULL);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = 0;
    else if (slash)
        *slash = 0;
    int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (dfd < 0)
        return fail_errno(j, "open directory");
    int r = fsync(dfd);
    close(dfd);
    return r < 0 ? fail_errno(j, "fsync directory") : 0;
}

static int do_w_close(struct zjob *j)
{
    struct zstate *s = j->s;
    if (compress_feed(j, NULL, 0, 1) < 0)
        return -1;
    if (fsync(s->fd) < 0)
        return fail_errno(j, "fsync");
    int r = close(s->fd);
    s->fd = -1;
    if (r < 0)
        return fail_errno(j, "close");
    if (rename(s->part, s->path) < 0)
        return fail_errno(j, "rename");
    s->closed = 1;
    hex_digest(s);
    return sync_dir(j);
}

static int do_r_open(struct zjob *j)
{
    struct zstate *s = j->s;
    s->dctx = ZSTD_createDCtx();
    s->md = EVP_MD_CTX_new();
    s->cap = ZSTD_DStreamInSize();
    s->buf = malloc(s->cap);
    if (!s->dctx || !s->md || !s->buf)
        return fail(j, "out of memory", NULL);
    if (ZSTD_isError(ZSTD_DCtx_setParameter(s->dctx, ZSTD_d_windowLogMax, WINDOW_LOG_MAX)))
        return fail(j, "zstd parameters refused", NULL);
    if (EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1)
        return fail(j, "sha256 unavailable", NULL);
    s->fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0)
        return fail_errno(j, "open");
    return 0;
}

/* One chunk of decompressed data into j->data (j->len == 0 and s->eof at a clean end). */
static int do_r_read(struct zjob *j)
{
    struct zstate *s = j->s;
    j->data = malloc(s->chunk);
    if (!j->data)
        return fail(j, "out of memory", NULL);
    ZSTD_outBuffer out = {j->data, s->chunk, 0};
    while (out.pos < out.size) {
        if (s->in_pos == s->in_len && !s->file_eof) {
            ssize_t n = read(s->fd, s->buf, s->cap);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return fail_errno(j, "read");
            }
            if (n == 0) {
                s->file_eof = 1;
            } else {
                EVP_DigestUpdate(s->md, s->buf, (size_t)n);
                s->in_pos = 0;
                s->in_len = (size_t)n;
                s->got_input = 1;
            }
        }
        ZSTD_inBuffer in = {s->buf, s->in_len, s->in_pos};
        size_t before = out.pos;
        size_t ret = ZSTD_decompressStream(s->dctx, &out, &in);
        if (ZSTD_isError(ret))
            return fail(j, "corrupt archive (zstd)", ZSTD_getErrorName(ret));
        int progressed = in.pos > s->in_pos || out.pos > before;
        s->in_pos = in.pos;
        if (progressed)
            s->last_ret = ret;
        if (!progressed && s->in_pos == s->in_len && s->file_eof) {
            /* Nothing more comes: a clean end only after a whole frame. */
            if (!s->got_input)
                return fail(j, "truncated archive", "empty file, no zstd frame");
            if (s->last_ret != 0)
                return fail(j, "truncated archive", "the zstd frame ends early");
            s->eof = 1;
            hex_digest(s);
            break;
        }
    }
    j->len = out.pos;
    s->raw += out.pos;
    return 0;
}

static void job_run(struct zjob *j)
{
    j->rc = 0;
    switch (j->kind) {
    case W_OPEN: do_w_open(j); break;
    case W_WRITE:
        if (compress_feed(j, j->data, j->len, 0) == 0)
            j->s->raw += j->len;
        break;
    case W_CLOSE: do_w_close(j); break;
    case R_OPEN: do_r_open(j); break;
    case R_READ: do_r_read(j); break;
    }
    if (j->rc < 0)
        j->s->failed = 1;
}

static void job_free(struct zjob *j)
{
    free(j->data);
    free(j);
}

/* ---- results towards Lua ---- */

static void push_state(lua_State *L, struct zstate *s)
{
    struct zstate **box = lua_newuserdata(L, sizeof(struct zstate *));
    *box = s;
    luaL_getmetatable(L, s->is_writer ? WRITER_MT : READER_MT);
    lua_setmetatable(L, -2);
}

/* Pushes the results of a finished job; the job's state is no longer busy. For the open jobs
 * the state goes to Lua in a userdata on success, and is freed on failure. */
static int push_results(lua_State *L, struct zjob *j)
{
    struct zstate *s = j->s;
    s->busy = 0;
    if (j->rc < 0) {
        lua_pushnil(L);
        lua_pushstring(L, j->err);
        if (j->kind == W_OPEN || j->kind == R_OPEN)
            state_free(s);
        return 2;
    }
    switch (j->kind) {
    case W_OPEN:
    case R_OPEN: push_state(L, s); return 1;
    case W_WRITE: lua_pushboolean(L, 1); return 1;
    case W_CLOSE:
        lua_createtable(L, 0, 3);
        lua_pushnumber(L, (lua_Number)s->bytes);
        lua_setfield(L, -2, "bytes");
        lua_pushnumber(L, (lua_Number)s->raw);
        lua_setfield(L, -2, "raw");
        lua_pushstring(L, s->digest);
        lua_setfield(L, -2, "sha256");
        return 1;
    case R_READ:
        if (j->len == 0 && s->eof) {
            lua_pushnil(L);
            return 1;
        }
        lua_pushlstring(L, j->data, j->len);
        return 1;
    }
    return 0;
}

static void job_after(uv_work_t *w, int status)
{
    struct zjob *j = w->data;
    struct zstate *s = j->s;
    if (status == UV_ECANCELED) {
        j->rc = -1;
        snprintf(j->err, sizeof j->err, "%s: cancelled", s->path);
        s->failed = 1;
    }
    task_t *t = task_wake(&j->wait);
    if (t) {
        int n = push_results(task_state(t), j);
        job_free(j);
        task_resume(t, n);
        return;
    }
    /* The task is gone. An open job's state never reached Lua; another's userdata may have
     * been collected meanwhile (orphan): either way nobody else will free it. */
    s->busy = 0;
    if (j->kind == W_OPEN || j->kind == R_OPEN || s->orphan)
        state_free(s);
    job_free(j);
}

static void job_work(uv_work_t *w)
{
    job_run(w->data);
}

static void job_cancel(task_wait_t *w)
{
    struct zjob *j = (struct zjob *)w;
    uv_cancel((uv_req_t *)&j->work); /* job_after runs either way and cleans up */
}

/* The running task when L may suspend here, else NULL (the synchronous path). */
static task_t *yieldable_task(lua_State *L)
{
    task_t *t = task_current();
    if (!t || task_state(t) != L || !lua_isyieldable(L))
        return NULL;
    return t;
}

/* Runs j: on the pool inside a task (results when the task resumes), else here and now. */
static int submit(lua_State *L, struct zjob *j, const char *fname)
{
    j->s->busy = 1;
    j->work.data = j;
    if (!yieldable_task(L)) {
        job_run(j);
        int n = push_results(L, j);
        job_free(j);
        return n;
    }
    task_t *t = task_check(L, fname);
    int rc = uv_queue_work(task_loop(), &j->work, job_work, job_after);
    if (rc < 0) {
        j->s->busy = 0;
        if (j->kind == W_OPEN || j->kind == R_OPEN)
            state_free(j->s);
        job_free(j);
        return luaL_error(L, "%s: %s", fname, uv_strerror(rc));
    }
    return task_suspend(L, t, &j->wait, job_cancel);
}

static struct zjob *job_new(lua_State *L, struct zstate *s, enum kind kind, const char *fname)
{
    struct zjob *j = calloc(1, sizeof *j);
    if (!j) {
        luaL_error(L, "%s: out of memory", fname);
        return NULL; /* not reached: luaL_error raises */
    }
    j->kind = kind;
    j->s = s;
    return j;
}

/* ---- Lua side ---- */

static const char *check_path(lua_State *L, const char *fname)
{
    if (lua_type(L, 1) != LUA_TSTRING)
        luaL_error(L, "%s: path: string expected, got %s", fname, luaL_typename(L, 1));
    const char *p = lua_tostring(L, 1);
    if (!*p)
        luaL_error(L, "%s: path: must not be empty", fname);
    return p;
}

static lua_Number opt_field(lua_State *L, const char *fname, const char *key, lua_Number def)
{
    if (lua_isnoneornil(L, 2))
        return def;
    if (!lua_istable(L, 2))
        luaL_error(L, "%s: options: table expected, got %s", fname, luaL_typename(L, 2));
    lua_getfield(L, 2, key);
    lua_Number v = def;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "%s: %s: number expected, got %s", fname, key, luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

static struct zstate *state_new(lua_State *L, const char *path, int is_writer, const char *fname)
{
    struct zstate *s = calloc(1, sizeof *s);
    size_t n = strlen(path);
    if (s) {
        s->fd = -1;
        s->is_writer = is_writer;
        s->path = strdup(path);
        if (is_writer && (s->part = malloc(n + 6)) != NULL)
            snprintf(s->part, n + 6, "%s.part", path);
    }
    if (!s || !s->path || (is_writer && !s->part)) {
        state_free(s);
        luaL_error(L, "%s: out of memory", fname);
        return NULL; /* not reached: luaL_error raises */
    }
    return s;
}

static int l_compress_writer(lua_State *L)
{
    const char *path = check_path(L, "compress.writer");
    lua_Number level = opt_field(L, "compress.writer", "level", 3);
    if (level != (int)level || level < 1 || level > MAX_LEVEL)
        return luaL_error(L, "compress.writer: level: integer from 1 to %d expected", MAX_LEVEL);
    struct zstate *s = state_new(L, path, 1, "compress.writer");
    s->level = (int)level;
    struct zjob *j = calloc(1, sizeof *j);
    if (!j) {
        state_free(s);
        return luaL_error(L, "compress.writer: out of memory");
    }
    j->kind = W_OPEN;
    j->s = s;
    return submit(L, j, "compress.writer");
}

static int l_compress_reader(lua_State *L)
{
    const char *path = check_path(L, "compress.reader");
    lua_Number chunk = opt_field(L, "compress.reader", "chunk", (lua_Number)DEFAULT_CHUNK);
    if (chunk != (lua_Number)(size_t)chunk || chunk < 1 || chunk > (lua_Number)MAX_CHUNK)
        return luaL_error(L, "compress.reader: chunk: integer from 1 to %d expected",
                          (int)MAX_CHUNK);
    struct zstate *s = state_new(L, path, 0, "compress.reader");
    s->chunk = (size_t)chunk;
    struct zjob *j = calloc(1, sizeof *j);
    if (!j) {
        state_free(s);
        return luaL_error(L, "compress.reader: out of memory");
    }
    j->kind = R_OPEN;
    j->s = s;
    return submit(L, j, "compress.reader");
}

/* The state behind a userdata, checked usable for fname. */
static struct zstate *check_state(lua_State *L, const char *mt, const char *fname)
{
    struct zstate **box = luaL_checkudata(L, 1, mt);
    struct zstate *s = *box;
    if (!s || s->closed) {
        luaL_error(L, "%s: already closed", fname);
        return NULL; /* not reached: luaL_error raises */
    }
    if (s->busy)
        luaL_error(L, "%s: another operation on this file is in progress", fname);
    return s;
}

static int l_compress_write(lua_State *L)
{
    struct zstate *s = check_state(L, WRITER_MT, "writer:write");
    if (lua_type(L, 2) != LUA_TSTRING)
        return luaL_error(L, "writer:write: data: string expected, got %s", luaL_typename(L, 2));
    if (s->failed)
        return lua_pushnil(L), lua_pushfstring(L, "%s: an earlier write failed", s->path), 2;
    size_t len;
    const char *data = lua_tolstring(L, 2, &len);
    struct zjob *j = job_new(L, s, W_WRITE, "writer:write");
    j->data = malloc(len ? len : 1);
    if (!j->data) {
        job_free(j);
        return luaL_error(L, "writer:write: out of memory");
    }
    memcpy(j->data, data, len);
    j->len = len;
    return submit(L, j, "writer:write");
}

static int l_compress_close_writer(lua_State *L)
{
    struct zstate *s = check_state(L, WRITER_MT, "writer:close");
    if (s->failed)
        return lua_pushnil(L), lua_pushfstring(L, "%s: an earlier write failed", s->path), 2;
    return submit(L, job_new(L, s, W_CLOSE, "writer:close"), "writer:close");
}

/* Drops the partial file now (the state goes when the userdata is collected). */
static int l_compress_abort(lua_State *L)
{
    struct zstate **box = luaL_checkudata(L, 1, WRITER_MT);
    struct zstate *s = *box;
    if (s && s->busy)
        return luaL_error(L, "writer:abort: another operation on this file is in progress");
    if (s) {
        *box = NULL;
        state_free(s);
    }
    return 0;
}

static int l_compress_read(lua_State *L)
{
    struct zstate *s = check_state(L, READER_MT, "reader:read");
    if (s->eof)
        return lua_pushnil(L), 1;
    if (s->failed)
        return lua_pushnil(L), lua_pushfstring(L, "%s: an earlier read failed", s->path), 2;
    return submit(L, job_new(L, s, R_READ, "reader:read"), "reader:read");
}

static int l_compress_sha256(lua_State *L)
{
    struct zstate **box = luaL_checkudata(L, 1, READER_MT);
    struct zstate *s = *box;
    if (!s || !s->eof)
        return lua_pushnil(L), lua_pushstring(L, "reader:sha256: the file is not read to its end"),
               2;
    lua_pushstring(L, s->digest);
    return 1;
}

/* __gc and reader:close(): frees now, or hands the state to the job still using it. */
static int l_compress_gc(lua_State *L)
{
    struct zstate **box = lua_touserdata(L, 1);
    struct zstate *s = box ? *box : NULL;
    if (!s)
        return 0;
    *box = NULL;
    if (s->busy)
        s->orphan = 1;
    else
        state_free(s);
    return 0;
}

static void make_mt(lua_State *L, const char *name, const luaL_Reg *methods)
{
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_compress_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}

int luaopen_steward_compress(lua_State *L)
{
    static const luaL_Reg writer_methods[] = {{"write", l_compress_write},
                                              {"close", l_compress_close_writer},
                                              {"abort", l_compress_abort},
                                              {NULL, NULL}};
    static const luaL_Reg reader_methods[] = {{"read", l_compress_read},
                                              {"sha256", l_compress_sha256},
                                              {"close", l_compress_gc},
                                              {NULL, NULL}};
    make_mt(L, WRITER_MT, writer_methods);
    make_mt(L, READER_MT, reader_methods);
    static const luaL_Reg fns[] = {
        {"writer", l_compress_writer}, {"reader", l_compress_reader}, {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    lua_pushstring(L, ZSTD_versionString());
    lua_setfield(L, -2, "zstd_version");
    return 1;
}
