/* What proc.run (bindings/proc.c) and proc.spawn (bindings/proc_spawn.c) share: the checks of
 * the options both take (cmd, env, env_add, cwd), the child's argv and environment built from
 * them, the uv_spawn options and the error a failed spawn answers. Everything that can raise
 * happens in proc_opts_check, before the caller allocates anything. */
#include <dirent.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proc_priv.h"

extern char **environ;

static const struct {
    const char *name;
    int sig;
} signals[] = {{"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT},   {"HUP", SIGHUP},
               {"QUIT", SIGQUIT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {NULL, 0}};

int proc_check_signal(lua_State *L, int idx, const char *what)
{
    if (lua_type(L, idx) == LUA_TNUMBER) {
        int s = (int)lua_tointeger(L, idx);
        if (s > 0 && s < 65)
            return s;
    } else if (lua_type(L, idx) == LUA_TSTRING) {
        const char *s = lua_tostring(L, idx);
        if (strncmp(s, "SIG", 3) == 0)
            s += 3;
        for (int i = 0; signals[i].name; i++)
            if (strcmp(s, signals[i].name) == 0)
                return signals[i].sig;
    }
    return luaL_error(L, "%s: signal number or name (\"TERM\", \"KILL\", ...) expected", what);
}

const char *proc_opt_string_field(lua_State *L, int tbl, const char *field, const char *fname)
{
    lua_getfield(L, tbl, field);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "%s: %s: string expected, got %s", fname, field, luaL_typename(L, -1));
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 1); /* still referenced by the options table */
    return s;
}

/* Checks t[field] is nil or a table of string keys to string values. */
static int check_env_table(lua_State *L, int tbl, const char *field, const char *fname)
{
    lua_getfield(L, tbl, field);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (!lua_istable(L, -1))
        luaL_error(L, "%s: %s: table expected, got %s", fname, field, luaL_typename(L, -1));
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) != LUA_TSTRING || !*lua_tostring(L, -2) ||
            strchr(lua_tostring(L, -2), '='))
            luaL_error(L, "%s: %s: keys must be variable names (strings without '=')", fname,
                       field);
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "%s: %s.%s: string expected, got %s", fname, field, lua_tostring(L, -2),
                       luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 1;
}

/* Adds opts[field] (a table of name = value) to the map at index map as "K=V" strings. */
static void add_env_table(lua_State *L, int opts, const char *field, int map)
{
    lua_getfield(L, opts, field);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pushvalue(L, -2);
        lua_pushfstring(L, "%s=%s", lua_tostring(L, -3), lua_tostring(L, -2));
        lua_rawset(L, map);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Pushes a table of "K=V" strings: base (env, or the parent's environment) overlaid with
 * env_add. The strings stay alive on the stack until uv_spawn has copied them. */
static void build_env(lua_State *L, int opts, int has_env, int has_add)
{
    lua_newtable(L); /* name -> "K=V" */
    int map = lua_gettop(L);
    if (has_env) {
        add_env_table(L, opts, "env", map);
    } else {
        for (char **e = environ; *e; e++) {
            const char *eq = strchr(*e, '=');
            if (!eq)
                continue;
            lua_pushlstring(L, *e, (size_t)(eq - *e));
            lua_pushstring(L, *e);
            lua_rawset(L, map);
        }
    }
    if (has_add)
        add_env_table(L, opts, "env_add", map);
}

/* A child gets stdin, stdout and stderr and nothing else: every other descriptor of the
 * daemon (its store, sockets, a library's wakeup pipe opened without O_CLOEXEC) is marked
 * close-on-exec before the spawn, so a policy's process cannot inherit it. The pipes libuv
 * makes for the child's stdio are dup2'ed onto 0-2 in the child, which clears the flag there. */
void proc_cloexec_all(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    int self = dirfd(d);
    const struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (*end != '\0' || fd <= 2 || fd == self)
            continue;
        int flags = fcntl((int)fd, F_GETFD);
        if (flags >= 0 && !(flags & FD_CLOEXEC))
            fcntl((int)fd, F_SETFD, flags | FD_CLOEXEC);
    }
    closedir(d);
}

/* Checks opts.cmd is a non-empty array of strings; pushes it and returns its length. */
static int check_cmd(lua_State *L, int opts, const char *fname)
{
    lua_getfield(L, opts, "cmd");
    int cmd = lua_gettop(L);
    if (!lua_istable(L, cmd))
        return luaL_error(L, "%s: cmd: array of strings expected, got %s", fname,
                          luaL_typename(L, cmd));
    int argc = (int)lua_objlen(L, cmd);
    if (argc < 1)
        return luaL_error(L, "%s: cmd: must name a program (cmd[1])", fname);
    for (int i = 1; i <= argc; i++) {
        lua_rawgeti(L, cmd, i);
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "%s: cmd[%d]: string expected, got %s", fname, i,
                              luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    return argc;
}

/* A NULL-terminated argv in a userdata left on the stack; the strings are the cmd table's. */
static char **child_argv(lua_State *L, int cmd, int argc)
{
    char **argv = lua_newuserdata(L, sizeof(char *) * (size_t)(argc + 1));
    for (int i = 1; i <= argc; i++) {
        lua_rawgeti(L, cmd, i);
        argv[i - 1] = (char *)lua_tostring(L, -1);
        lua_pop(L, 1); /* still referenced by cmd */
    }
    argv[argc] = NULL;
    return argv;
}

/* The child's environment (NULL: the parent's), anchored on the stack like child_argv's. */
static char **child_envp(lua_State *L, int opts, int has_env, int has_add)
{
    if (!has_env && !has_add)
        return NULL;
    build_env(L, opts, has_env, has_add);
    int map = lua_gettop(L);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, map)) {
        n++;
        lua_pop(L, 1);
    }
    char **envp = lua_newuserdata(L, sizeof(char *) * (n + 1));
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, map)) {
        envp[i++] = (char *)lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    envp[i] = NULL;
    return envp;
}

void proc_opts_check(lua_State *L, const char *fname, struct proc_opts *o)
{
    if (!lua_istable(L, 1))
        luaL_error(L, "%s: options table expected, got %s", fname, luaL_typename(L, 1));
    lua_settop(L, 1);
    o->argc = check_cmd(L, 1, fname);
    o->cmd = lua_gettop(L);
    o->has_env = check_env_table(L, 1, "env", fname);
    o->has_add = check_env_table(L, 1, "env_add", fname);
    o->cwd = proc_opt_string_field(L, 1, "cwd", fname);
    o->argv = NULL;
    o->envp = NULL;
}

void proc_opts_anchor(lua_State *L, struct proc_opts *o)
{
    o->argv = child_argv(L, o->cmd, o->argc);
    o->envp = child_envp(L, 1, o->has_env, o->has_add);
}

void proc_spawn_options(uv_process_options_t *po, const struct proc_opts *o,
                        uv_stdio_container_t stdio[3])
{
    po->file = o->argv[0];
    po->args = o->argv;
    po->env = o->envp;
    po->cwd = o->cwd;
    po->stdio_count = 3;
    po->stdio = stdio;
}

int proc_push_spawn_error(lua_State *L, int r, const struct proc_opts *o)
{
    lua_pushnil(L);
    /* ENOENT names the program, but a missing cwd fails the same way: say so. */
    if (o->cwd && r == UV_ENOENT)
        lua_pushfstring(L, "%s: %s: %s (or cwd %s)", uv_err_name(r), uv_strerror(r), o->argv[0],
                        o->cwd);
    else
        lua_pushfstring(L, "%s: %s: %s", uv_err_name(r), uv_strerror(r), o->argv[0]);
    lua_pushstring(L, uv_err_name(r));
    return 3;
}
