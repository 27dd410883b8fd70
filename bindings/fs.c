/* steward.fs: asynchronous filesystem operations. Each call becomes one job on libuv's
 * thread pool (uv_queue_work) that runs the uv_fs_* steps synchronously there, so compound
 * operations (write_atomic's write + fsync + rename + directory fsync, mkdir -p, recursive
 * remove) need no callback chains and never block the loop thread. The job owns copies of
 * everything it needs: a cancelled task leaves the job running, and the after-work callback
 * frees it without touching Lua. */
#include <fcntl.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "bindings.h"
#include "task.h"

#define FS_DEFAULT_MAX ((size_t)64 << 20) /* read's default size limit: 64 MiB */

enum fs_kind {
    FS_READ,
    FS_WRITE,
    FS_WRITE_ATOMIC,
    FS_STAT,
    FS_LSTAT,
    FS_EXISTS,
    FS_LIST,
    FS_MKDIR,
    FS_REMOVE,
    FS_RENAME
};

struct fs_entry {
    char *name;
    const char *type;
};

struct fs_op {
    task_wait_t wait;
    uv_work_t work;
    enum fs_kind kind;
    char *path, *path2;
    char *data; /* write: input; read: output */
    size_t len, max;
    int mode, has_mode;
    int flag; /* append / parents / recursive */
    int err;  /* 0 or a libuv error code */
    char *err_path;
    const char *err_msg; /* overrides uv_strerror when set */
    uv_stat_t st;
    int exists;
    struct fs_entry *ents;
    size_t nents, cap;
};

/* ---- worker side: runs on the thread pool, never touches Lua or the loop ---- */

static int fail(struct fs_op *op, int err, const char *path)
{
    if (!op->err) {
        op->err = err;
        free(op->err_path);
        op->err_path = strdup(path);
    }
    return err;
}

static const char *type_name(uint64_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "link";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    case S_IFCHR: return "char";
    case S_IFBLK: return "block";
    default: return "unknown";
    }
}

static const char *dirent_type_name(uv_dirent_type_t t)
{
    switch (t) {
    case UV_DIRENT_FILE: return "file";
    case UV_DIRENT_DIR: return "directory";
    case UV_DIRENT_LINK: return "link";
    case UV_DIRENT_FIFO: return "fifo";
    case UV_DIRENT_SOCKET: return "socket";
    case UV_DIRENT_CHAR: return "char";
    case UV_DIRENT_BLOCK: return "block";
    default: return NULL;
    }
}

/* stat or lstat into *st; 0 or a libuv error. */
static int do_stat(const char *path, int follow, uv_stat_t *st)
{
    uv_fs_t req;
    int r = follow ? uv_fs_stat(NULL, &req, path, NULL) : uv_fs_lstat(NULL, &req, path, NULL);
    if (r == 0)
        *st = req.statbuf;
    uv_fs_req_cleanup(&req);
    return r;
}

static int do_close(uv_file fd)
{
    uv_fs_t req;
    int r = uv_fs_close(NULL, &req, fd, NULL);
    uv_fs_req_cleanup(&req);
    return r;
}

static int do_fsync(uv_file fd)
{
    uv_fs_t req;
    int r = uv_fs_fsync(NULL, &req, fd, NULL);
    uv_fs_req_cleanup(&req);
    return r;
}

static int do_unlink(const char *path)
{
    uv_fs_t req;
    int r = uv_fs_unlink(NULL, &req, path, NULL);
    uv_fs_req_cleanup(&req);
    return r;
}

static int do_rmdir(const char *path)
{
    uv_fs_t req;
    int r = uv_fs_rmdir(NULL, &req, path, NULL);
    uv_fs_req_cleanup(&req);
    return r;
}

static int do_mkdir(const char *path, int mode)
{
    uv_fs_t req;
    int r = uv_fs_mkdir(NULL, &req, path, mode, NULL);
    uv_fs_req_cleanup(&req);
    return r;
}

static int write_all(uv_file fd, const char *data, size_t len)
{
    while (len > 0) {
        uv_fs_t req;
        uv_buf_t buf = uv_buf_init((char *)data, len > (1u << 30) ? (1u << 30) : (unsigned)len);
        int r = uv_fs_write(NULL, &req, fd, &buf, 1, -1, NULL);
        uv_fs_req_cleanup(&req);
        if (r < 0)
            return r;
        data += r;
        len -= (size_t)r;
    }
    return 0;
}

static void work_read(struct fs_op *op)
{
    uv_fs_t req;
    int fd = uv_fs_open(NULL, &req, op->path, O_RDONLY, 0, NULL);
    uv_fs_req_cleanup(&req);
    if (fd < 0) {
        fail(op, fd, op->path);
        return;
    }
    uv_fs_t sreq;
    int r = uv_fs_fstat(NULL, &sreq, fd, NULL);
    uv_stat_t st = sreq.statbuf;
    uv_fs_req_cleanup(&sreq);
    if (r < 0) {
        fail(op, r, op->path);
        goto out;
    }
    if (st.st_size > op->max) {
        op->err_msg = "file larger than the max option";
        fail(op, UV_EFBIG, op->path);
        goto out;
    }
    /* Files in /proc report size 0: read until EOF, growing as needed, still within max. */
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fail(op, UV_ENOMEM, op->path);
        goto out;
    }
    for (;;) {
        if (len == cap) {
            size_t ncap = cap * 2 < 4096 ? 4096 : cap * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                fail(op, UV_ENOMEM, op->path);
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        uv_buf_t b =
            uv_buf_init(buf + len, (unsigned)((cap - len) > (1u << 30) ? (1u << 30) : cap - len));
        r = uv_fs_read(NULL, &req, fd, &b, 1, -1, NULL);
        uv_fs_req_cleanup(&req);
        if (r < 0) {
            free(buf);
            fail(op, r, op->path);
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > op->max) {
            free(buf);
            op->err_msg = "file larger than the max option";
            fail(op, UV_EFBIG, op->path);
            goto out;
        }
    }
    op->data = buf;
    op->len = len;
out:
    do_close(fd);
}

static void work_write(struct fs_op *op)
{
    uv_fs_t req;
    int flags = O_WRONLY | O_CREAT | (op->flag ? O_APPEND : O_TRUNC);
    int fd = uv_fs_open(NULL, &req, op->path, flags, op->has_mode ? op->mode : 0644, NULL);
    uv_fs_req_cleanup(&req);
    if (fd < 0) {
        fail(op, fd, op->path);
        return;
    }
    int r = write_all(fd, op->data, op->len);
    int rc = do_close(fd);
    if (r < 0 || rc < 0)
        fail(op, r < 0 ? r : rc, op->path);
}

static void work_write_atomic(struct fs_op *op)
{
    /* The temp file sits next to the target so the rename stays within one filesystem. */
    size_t n = strlen(op->path);
    const char *slash = strrchr(op->path, '/');
    size_t dirlen = slash ? (size_t)(slash - op->path) : 0;
    const char *base = slash ? slash + 1 : op->path;
    char *tmpl = malloc(n + 32), *dir = malloc(dirlen + 2);
    if (!tmpl || !dir) {
        free(tmpl);
        free(dir);
        fail(op, UV_ENOMEM, op->path);
        return;
    }
    if (slash) /* "/x" lives in "/", not in "" */
        snprintf(dir, dirlen + 2, "%.*s", (int)(dirlen ? dirlen : 1), op->path);
    else
        snprintf(dir, dirlen + 2, ".");
    snprintf(tmpl, n + 32, "%.*s%s.%s.tmp-XXXXXX", (int)dirlen, op->path, slash ? "/" : "", base);

    uv_fs_t req;
    int fd = uv_fs_mkstemp(NULL, &req, tmpl, NULL);
    char *tmp = fd >= 0 ? strdup(req.path) : NULL;
    uv_fs_req_cleanup(&req);
    if (fd < 0 || !tmp) {
        if (fd >= 0)
            do_close(fd);
        fail(op, fd < 0 ? fd : UV_ENOMEM, op->path);
        goto done;
    }
    /* mkstemp creates 0600: give the file the requested mode, else the target's, else 0644. */
    int mode = 0644;
    uv_stat_t st = {0};
    if (op->has_mode)
        mode = op->mode;
    else if (do_stat(op->path, 1, &st) == 0)
        mode = (int)(st.st_mode & 07777);
    int r = uv_fs_fchmod(NULL, &req, fd, mode, NULL);
    uv_fs_req_cleanup(&req);
    if (r == 0)
        r = write_all(fd, op->data, op->len);
    if (r == 0)
        r = do_fsync(fd);
    int rc = do_close(fd);
    if (r == 0)
        r = rc;
    if (r == 0) {
        r = uv_fs_rename(NULL, &req, tmp, op->path, NULL);
        uv_fs_req_cleanup(&req);
    }
    if (r < 0) {
        do_unlink(tmp);
        fail(op, r, op->path);
        goto done;
    }
    /* The rename is durable only once the directory entry is on disk. */
    int dfd = uv_fs_open(NULL, &req, dir, O_RDONLY | O_DIRECTORY, 0, NULL);
    uv_fs_req_cleanup(&req);
    if (dfd < 0) {
        fail(op, dfd, dir);
        goto done;
    }
    r = do_fsync(dfd);
    do_close(dfd);
    if (r < 0)
        fail(op, r, dir);
done:
    free(tmp);
    free(tmpl);
    free(dir);
}

static int ent_cmp(const void *a, const void *b)
{
    return strcmp(((const struct fs_entry *)a)->name, ((const struct fs_entry *)b)->name);
}

static void work_list(struct fs_op *op)
{
    uv_fs_t req;
    int r = uv_fs_scandir(NULL, &req, op->path, 0, NULL);
    if (r < 0) {
        uv_fs_req_cleanup(&req);
        fail(op, r, op->path);
        return;
    }
    uv_dirent_t d;
    size_t plen = strlen(op->path);
    while (uv_fs_scandir_next(&req, &d) != UV_EOF) {
        if (op->nents == op->cap) {
            size_t ncap = op->cap ? op->cap * 2 : 16;
            struct fs_entry *ne = realloc(op->ents, ncap * sizeof *ne);
            if (!ne)
                break;
            op->ents = ne;
            op->cap = ncap;
        }
        char *name = strdup(d.name);
        if (!name)
            break;
        const char *type = dirent_type_name(d.type);
        if (!type) { /* the filesystem did not say: ask lstat */
            char *full = malloc(plen + strlen(name) + 2);
            uv_stat_t st = {0};
            if (full) {
                sprintf(full, "%s/%s", op->path, name);
                type = do_stat(full, 0, &st) == 0 ? type_name(st.st_mode) : "unknown";
                free(full);
            } else {
                type = "unknown";
            }
        }
        op->ents[op->nents].name = name;
        op->ents[op->nents].type = type;
        op->nents++;
    }
    uv_fs_req_cleanup(&req);
    if (op->nents)
        qsort(op->ents, op->nents, sizeof *op->ents, ent_cmp);
}

static void work_mkdir(struct fs_op *op)
{
    int mode = op->has_mode ? op->mode : 0755;
    if (!op->flag) {
        int r = do_mkdir(op->path, mode);
        if (r < 0)
            fail(op, r, op->path);
        return;
    }
    /* mkdir -p: create each missing prefix; existing directories are fine. */
    char *p = strdup(op->path);
    if (!p) {
        fail(op, UV_ENOMEM, op->path);
        return;
    }
    size_t n = strlen(p);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != 0)
            continue;
        if (p[i - 1] == '/')
            continue;
        char c = p[i];
        p[i] = 0;
        int r = do_mkdir(p, mode);
        if (r == UV_EEXIST) {
            uv_stat_t st = {0};
            r = do_stat(p, 1, &st);
            if (r == 0 && (st.st_mode & S_IFMT) != S_IFDIR)
                r = UV_ENOTDIR;
        }
        if (r < 0) {
            fail(op, r, p);
            break;
        }
        p[i] = c;
    }
    free(p);
}

/* Removes path and, when it is a real directory (lstat: a symlink is removed as a link,
 * never followed), everything below it. */
static int remove_tree(struct fs_op *op, const char *path)
{
    uv_stat_t st = {0};
    int r = do_stat(path, 0, &st);
    if (r < 0)
        return fail(op, r, path);
    if ((st.st_mode & S_IFMT) != S_IFDIR) {
        r = do_unlink(path);
        return r < 0 ? fail(op, r, path) : 0;
    }
    uv_fs_t req;
    r = uv_fs_scandir(NULL, &req, path, 0, NULL);
    if (r < 0) {
        uv_fs_req_cleanup(&req);
        return fail(op, r, path);
    }
    uv_dirent_t d;
    size_t plen = strlen(path);
    while (r >= 0 && uv_fs_scandir_next(&req, &d) != UV_EOF) {
        char *child = malloc(plen + strlen(d.name) + 2);
        if (!child) {
            r = fail(op, UV_ENOMEM, path);
            break;
        }
        sprintf(child, "%s/%s", path, d.name);
        r = remove_tree(op, child);
        free(child);
    }
    uv_fs_req_cleanup(&req);
    if (r < 0)
        return r;
    r = do_rmdir(path);
    return r < 0 ? fail(op, r, path) : 0;
}

static void work_remove(struct fs_op *op)
{
    if (op->flag) {
        remove_tree(op, op->path);
        return;
    }
    uv_stat_t st = {0};
    int r = do_stat(op->path, 0, &st);
    if (r == 0)
        r = (st.st_mode & S_IFMT) == S_IFDIR ? do_rmdir(op->path) : do_unlink(op->path);
    if (r < 0)
        fail(op, r, op->path);
}

static void fs_work(uv_work_t *w)
{
    struct fs_op *op = w->data;
    int r;
    uv_fs_t req;
    switch (op->kind) {
    case FS_READ: work_read(op); break;
    case FS_WRITE: work_write(op); break;
    case FS_WRITE_ATOMIC: work_write_atomic(op); break;
    case FS_STAT:
    case FS_LSTAT:
        r = do_stat(op->path, op->kind == FS_STAT, &op->st);
        if (r < 0)
            fail(op, r, op->path);
        break;
    case FS_EXISTS:
        r = do_stat(op->path, 1, &op->st);
        op->exists = r == 0;
        if (r < 0 && r != UV_ENOENT && r != UV_ENOTDIR)
            fail(op, r, op->path);
        break;
    case FS_LIST: work_list(op); break;
    case FS_MKDIR: work_mkdir(op); break;
    case FS_REMOVE: work_remove(op); break;
    case FS_RENAME:
        r = uv_fs_rename(NULL, &req, op->path, op->path2, NULL);
        uv_fs_req_cleanup(&req);
        if (r < 0)
            fail(op, r, op->path);
        break;
    }
}

/* ---- loop side ---- */

static void op_free(struct fs_op *op)
{
    for (size_t i = 0; i < op->nents; i++)
        free(op->ents[i].name);
    free(op->ents);
    free(op->path);
    free(op->path2);
    free(op->data);
    free(op->err_path);
    free(op);
}

static void set_number(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static double ts(uv_timespec_t t)
{
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void push_stat(lua_State *L, const uv_stat_t *st)
{
    lua_createtable(L, 0, 12);
    lua_pushstring(L, type_name(st->st_mode));
    lua_setfield(L, -2, "type");
    set_number(L, "size", (double)st->st_size);
    set_number(L, "mode", (double)(st->st_mode & 07777));
    set_number(L, "mtime", ts(st->st_mtim));
    set_number(L, "ctime", ts(st->st_ctim));
    set_number(L, "atime", ts(st->st_atim));
    set_number(L, "uid", (double)st->st_uid);
    set_number(L, "gid", (double)st->st_gid);
    set_number(L, "nlink", (double)st->st_nlink);
    set_number(L, "ino", (double)st->st_ino);
    set_number(L, "dev", (double)st->st_dev);
    set_number(L, "blocks", (double)st->st_blocks);
}

/* Pushes the results of a finished op; returns how many. */
static int push_results(lua_State *L, struct fs_op *op, int status)
{
    int err = status < 0 ? status : op->err;
    if (err) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s: %s", uv_err_name(err),
                        op->err_msg ? op->err_msg : uv_strerror(err),
                        op->err_path ? op->err_path : op->path);
        lua_pushstring(L, uv_err_name(err));
        return 3;
    }
    switch (op->kind) {
    case FS_READ: lua_pushlstring(L, op->data ? op->data : "", op->len); break;
    case FS_STAT:
    case FS_LSTAT: push_stat(L, &op->st); break;
    case FS_EXISTS: lua_pushboolean(L, op->exists); break;
    case FS_LIST:
        lua_createtable(L, (int)op->nents, 0);
        for (size_t i = 0; i < op->nents; i++) {
            lua_createtable(L, 0, 2);
            lua_pushstring(L, op->ents[i].name);
            lua_setfield(L, -2, "name");
            lua_pushstring(L, op->ents[i].type);
            lua_setfield(L, -2, "type");
            lua_rawseti(L, -2, (int)i + 1);
        }
        break;
    default: lua_pushboolean(L, 1); break;
    }
    return 1;
}

static void fs_after(uv_work_t *w, int status)
{
    struct fs_op *op = w->data;
    task_t *t = task_wake(&op->wait);
    if (t) {
        int n = push_results(task_state(t), op, status);
        op_free(op);
        task_resume(t, n);
        return;
    }
    op_free(op); /* the task is gone: nobody to tell */
}

static void fs_cancel(task_wait_t *w)
{
    /* A job not yet picked up by a thread is dropped; a running one finishes and fs_after
     * frees it. Either way fs_after runs and owns the cleanup. */
    struct fs_op *op = (struct fs_op *)w;
    uv_cancel((uv_req_t *)&op->work);
}

/* ---- Lua side ---- */

static const char *check_path(lua_State *L, int idx, const char *fname, const char *what)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "%s: %s: string expected, got %s", fname, what, luaL_typename(L, idx));
    const char *s = lua_tostring(L, idx);
    if (!*s)
        luaL_error(L, "%s: %s: must not be empty", fname, what);
    return s;
}

static void check_opts(lua_State *L, int idx, const char *fname)
{
    if (!lua_isnoneornil(L, idx) && !lua_istable(L, idx))
        luaL_error(L, "%s: options: table expected, got %s", fname, luaL_typename(L, idx));
}

static int opt_bool(lua_State *L, int idx, const char *field, const char *fname)
{
    if (!lua_istable(L, idx))
        return 0;
    lua_getfield(L, idx, field);
    int t = lua_type(L, -1);
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        luaL_error(L, "%s: %s: boolean expected, got %s", fname, field, lua_typename(L, t));
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* A non-negative integer option; returns 0 when absent. */
static int opt_number(lua_State *L, int idx, const char *field, const char *fname, double *out)
{
    if (!lua_istable(L, idx))
        return 0;
    lua_getfield(L, idx, field);
    int t = lua_type(L, -1);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    double v = lua_tonumber(L, -1);
    if (t != LUA_TNUMBER || !(v >= 0 && v <= 9e15) || v != (double)(int64_t)v)
        luaL_error(L, "%s: %s: non-negative integer expected", fname, field);
    lua_pop(L, 1);
    *out = v;
    return 1;
}

static int opt_mode(lua_State *L, int idx, const char *fname, int *mode)
{
    double v;
    if (!opt_number(L, idx, "mode", fname, &v))
        return 0;
    if (v > 07777)
        return luaL_error(
            L, "%s: mode: permission bits expected (e.g. 420 or tonumber(\"644\", 8))", fname);
    *mode = (int)v;
    return 1;
}

/* NULL when out of memory; the caller raises (after freeing what it owns). */
static struct fs_op *op_new(enum fs_kind kind, const char *path)
{
    struct fs_op *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->path = strdup(path);
    if (!op->path) {
        free(op);
        return NULL;
    }
    op->kind = kind;
    op->work.data = op;
    return op;
}

static int submit(lua_State *L, task_t *t, struct fs_op *op, const char *fname)
{
    int r = uv_queue_work(task_loop(), &op->work, fs_work, fs_after);
    if (r < 0) {
        op_free(op);
        return luaL_error(L, "%s: %s", fname, uv_strerror(r));
    }
    return task_suspend(L, t, &op->wait, fs_cancel);
}

static int simple(lua_State *L, enum fs_kind kind, const char *fname)
{
    const char *path = check_path(L, 1, fname, "path");
    task_t *t = task_check(L, fname);
    struct fs_op *op = op_new(kind, path);
    if (!op)
        return luaL_error(L, "%s: out of memory", fname);
    return submit(L, t, op, fname);
}

static int l_fs_read(lua_State *L)
{
    const char *path = check_path(L, 1, "fs.read", "path");
    check_opts(L, 2, "fs.read");
    double max = (double)FS_DEFAULT_MAX;
    opt_number(L, 2, "max", "fs.read", &max);
    task_t *t = task_check(L, "fs.read");
    struct fs_op *op = op_new(FS_READ, path);
    if (!op)
        return luaL_error(L, "fs.read: out of memory");
    op->max = max > 9e18 ? (size_t)-1 : (size_t)max;
    return submit(L, t, op, "fs.read");
}

static int do_write(lua_State *L, enum fs_kind kind, const char *fname)
{
    const char *path = check_path(L, 1, fname, "path");
    if (lua_type(L, 2) != LUA_TSTRING)
        return luaL_error(L, "%s: data: string expected, got %s", fname, luaL_typename(L, 2));
    size_t len;
    const char *data = lua_tolstring(L, 2, &len);
    check_opts(L, 3, fname);
    int mode = 0;
    int has_mode = opt_mode(L, 3, fname, &mode);
    int append = kind == FS_WRITE ? opt_bool(L, 3, "append", fname) : 0;
    task_t *t = task_check(L, fname);
    struct fs_op *op = op_new(kind, path);
    if (!op)
        return luaL_error(L, "%s: out of memory", fname);
    op->data = malloc(len ? len : 1);
    if (!op->data) {
        op_free(op);
        return luaL_error(L, "%s: out of memory", fname);
    }
    memcpy(op->data, data, len);
    op->len = len;
    op->mode = mode;
    op->has_mode = has_mode;
    op->flag = append;
    return submit(L, t, op, fname);
}

static int l_fs_write(lua_State *L)
{
    return do_write(L, FS_WRITE, "fs.write");
}
static int l_fs_write_atomic(lua_State *L)
{
    return do_write(L, FS_WRITE_ATOMIC, "fs.write_atomic");
}
static int l_fs_stat(lua_State *L)
{
    return simple(L, FS_STAT, "fs.stat");
}
static int l_fs_lstat(lua_State *L)
{
    return simple(L, FS_LSTAT, "fs.lstat");
}
static int l_fs_exists(lua_State *L)
{
    return simple(L, FS_EXISTS, "fs.exists");
}
static int l_fs_list(lua_State *L)
{
    return simple(L, FS_LIST, "fs.list");
}

static int l_fs_mkdir(lua_State *L)
{
    const char *path = check_path(L, 1, "fs.mkdir", "path");
    check_opts(L, 2, "fs.mkdir");
    int mode = 0;
    int has_mode = opt_mode(L, 2, "fs.mkdir", &mode);
    int parents = opt_bool(L, 2, "parents", "fs.mkdir");
    task_t *t = task_check(L, "fs.mkdir");
    struct fs_op *op = op_new(FS_MKDIR, path);
    if (!op)
        return luaL_error(L, "fs.mkdir: out of memory");
    op->mode = mode;
    op->has_mode = has_mode;
    op->flag = parents;
    return submit(L, t, op, "fs.mkdir");
}

static int l_fs_remove(lua_State *L)
{
    const char *path = check_path(L, 1, "fs.remove", "path");
    check_opts(L, 2, "fs.remove");
    int recursive = opt_bool(L, 2, "recursive", "fs.remove");
    task_t *t = task_check(L, "fs.remove");
    struct fs_op *op = op_new(FS_REMOVE, path);
    if (!op)
        return luaL_error(L, "fs.remove: out of memory");
    op->flag = recursive;
    return submit(L, t, op, "fs.remove");
}

static int l_fs_rename(lua_State *L)
{
    const char *from = check_path(L, 1, "fs.rename", "from");
    const char *to = check_path(L, 2, "fs.rename", "to");
    task_t *t = task_check(L, "fs.rename");
    struct fs_op *op = op_new(FS_RENAME, from);
    if (!op)
        return luaL_error(L, "fs.rename: out of memory");
    op->path2 = strdup(to);
    if (!op->path2) {
        op_free(op);
        return luaL_error(L, "fs.rename: out of memory");
    }
    return submit(L, t, op, "fs.rename");
}

int luaopen_steward_fs(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"read", l_fs_read},     {"write", l_fs_write}, {"write_atomic", l_fs_write_atomic},
        {"stat", l_fs_stat},     {"lstat", l_fs_lstat}, {"exists", l_fs_exists},
        {"list", l_fs_list},     {"mkdir", l_fs_mkdir}, {"remove", l_fs_remove},
        {"rename", l_fs_rename}, {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    return 1;
}
