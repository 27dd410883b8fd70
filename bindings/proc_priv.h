/* What bindings/proc.c (proc.run) and bindings/proc_spawn.c (proc.spawn and friends) share:
 * argument checks and the child's argv and environment. */
#ifndef STEWARD_PROC_PRIV_H
#define STEWARD_PROC_PRIV_H

#include <lua.h>

int proc_check_signal(lua_State *L, int idx, const char *what);
const char *proc_opt_string_field(lua_State *L, int tbl, const char *field, const char *fname);
int proc_check_env_table(lua_State *L, int tbl, const char *field, const char *fname);
void proc_build_env(lua_State *L, int opts, int has_env, int has_add);
int proc_check_cmd(lua_State *L, int opts, const char *fname);
char **proc_argv(lua_State *L, int cmd, int argc);
char **proc_envp(lua_State *L, int opts, int has_env, int has_add);
void proc_cloexec_all(void);
/* Adds spawn, kill, watch and info to the steward.proc table on top of the stack. */
void proc_spawn_register(lua_State *L);

#endif
