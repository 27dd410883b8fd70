/* What bindings/proc.c (proc.run) and bindings/proc_spawn.c (proc.spawn and friends) share
 * (bindings/proc_common.c): the options both take, the child's argv and environment, the
 * uv_spawn options and the answer to a failed spawn. */
#ifndef STEWARD_PROC_PRIV_H
#define STEWARD_PROC_PRIV_H

#include <lua.h>
#include <uv.h>

/* cmd, env, env_add and cwd of the options table at index 1. argv and envp (NULL: the
 * daemon's environment) point into Lua strings and userdata anchored on the stack, which
 * uv_spawn copies; they stay NULL until proc_opts_anchor. */
struct proc_opts {
    int argc, cmd, has_env, has_add;
    const char *cwd;
    char **argv, **envp;
};

/* Checks the options table at index 1 (raising an error that names fname and the field),
 * drops anything above it and leaves cmd pushed. */
void proc_opts_check(lua_State *L, const char *fname, struct proc_opts *o);
/* Builds argv and envp on the stack; raises nothing on the user's input. */
void proc_opts_anchor(lua_State *L, struct proc_opts *o);
/* file, args, env, cwd and the three stdio containers of a spawn of o. */
void proc_spawn_options(uv_process_options_t *po, const struct proc_opts *o,
                        uv_stdio_container_t stdio[3]);
/* Pushes nil, "<NAME>: <message>: <program>[ (or cwd <dir>)]", "<NAME>" for uv_spawn's error r;
 * returns 3. */
int proc_push_spawn_error(lua_State *L, int r, const struct proc_opts *o);

int proc_check_signal(lua_State *L, int idx, const char *what);
const char *proc_opt_string_field(lua_State *L, int tbl, const char *field, const char *fname);
void proc_cloexec_all(void);
/* Adds spawn, kill, watch and info to the steward.proc table on top of the stack. */
void proc_spawn_register(lua_State *L);

#endif
