/* The steward command: parses the command line and runs one subcommand. */
#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "registry.h"
#include "repl_client.h"
#include "runtime.h"
#include "supervisor.h"
#include "task.h"
#include "version.h"

/* The commands: one entry per usage line, in the order `steward help` lists them. A command
 * with several forms (eval, policy) has one entry per form; `module` names the Lua module whose
 * main(args) runs it, NULL for the commands main() runs itself. `steward help` and every
 * `steward CMD --help` print from this table, so a new command is one entry here. */
static const struct command {
    const char *name, *args, *does, *module;
} commands[] = {
    {"run", "[-c FILE]", "the daemon: HTTP API, policies, store (default -c steward.lua)", NULL},
    {"script", "FILE [ARGS...]", "run a Lua script as a task, with every binding", NULL},
    {"repl", "[--socket PATH] [-c FILE]",
     "attach a live Lua REPL to the running daemon (its admin socket)", NULL},
    {"eval", "[--socket PATH] [-c FILE] [--json] CODE | -",
     "run a Lua chunk (or stdin) in the running daemon, print the results", NULL},
    {"eval", "--local CODE | -", "run a Lua chunk (or stdin) in this process and print its results",
     NULL},
    {"test", "[--filter PATTERN] [PATHS...]",
     "run the *_spec.lua policy specs under PATHS (default policies); TAP",
     "steward.runtime.testing.runner"},
    {"check", "[-c FILE] [--policies DIR]",
     "load the config and validate every policy; exit 1 on any problem", "steward.runtime.testing.check"},
    {"status", "[-c FILE]", "is the running daemon ready: store, policies, dead letters",
     "steward.runtime.cli_admin"},
    {"reload", "[-c FILE]", "ask the running daemon to reload its policies", "steward.runtime.cli_admin"},
    {"policy", "list [-c FILE]", "the running daemon's policies: version, loaded at, last error",
     "steward.runtime.cli_admin"},
    {"policy", "show NAME [-c FILE]", "one policy: file, events, versions, last error",
     "steward.runtime.cli_admin"},
    {"policy", "rollback NAME [VERSION] [-c FILE]",
     "restore a policy's previous (or given) version in the daemon", "steward.runtime.cli_admin"},
    {"decide", "NAME JSON | - [-c FILE]",
     "ask the running daemon for a decision of policy NAME on the JSON input (- reads stdin)",
     "steward.runtime.cli_admin"},
    {"audit", "[-c FILE] [--limit N] [--since TIME|DURATION] [--uid UID] [--session ID] [--json]",
     "list the audit log (every change: who, what, target, outcome)", "steward.runtime.cli_admin"},
    {"audit", "verify [--from ID] [--pubkey PEM] [-c FILE]",
     "check the audit log's hash chain and signed checkpoints", "steward.runtime.cli_admin"},
    {"audit", "export [--since TIME] [--from ID] [-o FILE] [-c FILE]",
     "the chain as JSON lines an auditor verifies with openssl (docs/audit.md)", "steward.runtime.cli_admin"},
    {"audit", "checkpoint | pubkey [-c FILE]", "sign the chain's head now | print the public key",
     "steward.runtime.cli_admin"},
    {"migrations", "check [--json] [--exclude RULES] [--pg-version V] FILE...",
     "lint SQL migrations with squawk's rules; exit 1 on a violation", "steward.runtime.cli_migrations"},
    {"migrations", "compatible [--json] FILE...",
     "can the previous release run on the migrated schema; exit 1 when not",
     "steward.runtime.cli_migrations"},
    {"migrations", "measure --db URL [--json] [--template] FILE",
     "the locks each statement takes, on a scratch copy of that database's schema",
     "steward.runtime.cli_migrations"},
    {"archive", "list | verify [FILE] [-c FILE] [--dir DIR] [--json]",
     "the archive files of old events and decisions; verify checks their digests",
     "steward.archive.cli"},
    {"archive", "cat FILE [-c FILE] [--dir DIR]", "one archive file's records as JSON lines",
     "steward.archive.cli"},
    {"tenants", "verify-export FILE [--pubkey PEM]... [-c FILE]",
     "check a tenant's offboarding archive against the daemon's signing key",
     "steward.tenants.offboard_cli"},
    {"config", "show [-c FILE] [--json]", "print the effective configuration, secrets shown as ***",
     "steward.runtime.cli"},
    {"load",
     "--target URL (--rate N --duration D | --shape SPEC | --replay FILE) [--max-rate N] [--json] ...",
     "open-loop load at a bounded rate against a loopback target; latency report (docs/scaling/load.md)",
     "steward.runtime.cli"},
    {"version", "", "print the versions of steward and its libraries", NULL},
    {"help", "[COMMAND]", "this text, or one command's usage", NULL},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const char env_text[] =
    "environment:\n"
    "  STEWARD_LUA_PATH       load steward.* modules from this directory (development)\n"
    "  STEWARD_LOG_LEVEL      debug | info | warn | error | off (default info)\n"
    "  STEWARD_LOG_FORMAT     logfmt | json (default logfmt)\n"
    "  STEWARD_SOCKET         the admin socket for repl and eval (else the config's admin_socket)\n"
    "\n"
    "docs: docs/cli.md\n";

static void print_entry(FILE *out, const struct command *c)
{
    char line[160];
    snprintf(line, sizeof line, "%s%s%s", c->name, *c->args ? " " : "", c->args);
    if (strlen(line) <= 22)
        fprintf(out, "  %-22s %s\n", line, c->does);
    else
        fprintf(out, "  %s\n  %-22s %s\n", line, "", c->does);
}

static void print_usage(FILE *out)
{
    fputs("usage: steward <command> [arguments]\n\ncommands:\n", out);
    for (size_t i = 0; i < NCOMMANDS; i++)
        print_entry(out, &commands[i]);
    fputs("\n", out);
    fputs(env_text, out);
}

/* steward CMD --help: every form of CMD, on stdout. 0, or -1 if there is no such command. */
static int print_command_usage(const char *cmd)
{
    int found = 0;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(commands[i].name, cmd) != 0)
            continue;
        printf("%s steward %s%s%s\n", found ? "      " : "usage:", commands[i].name,
               *commands[i].args ? " " : "", commands[i].args);
        found = 1;
    }
    if (!found)
        return -1;
    puts("");
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, cmd) == 0)
            printf("  %s%s%s\n      %s\n", commands[i].name, *commands[i].args ? " " : "",
                   commands[i].args, commands[i].does);
    printf("\ndocs: docs/cli.md\n");
    return 0;
}

static int usage(const char *problem)
{
    if (problem)
        fprintf(stderr, "steward: %s\n\n", problem);
    print_usage(stderr);
    return 2;
}

static int is_help_flag(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* Whether the arguments of cmd ask for its usage: --help or -h anywhere before "--", except
 * for script, whose arguments after FILE belong to the script. */
static int wants_help(const char *cmd, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return 0;
        if (is_help_flag(argv[i]))
            return 1;
        if (strcmp(cmd, "script") == 0)
            return 0;
    }
    return 0;
}

struct main_run {
    int status;     /* exit code of the main task */
    int use_result; /* a number the main function returns is the exit code (test, check) */
};

static void on_main_done(task_t *t, enum task_status st, void *ud)
{
    struct main_run *r = ud;
    if (st == TASK_OK) {
        lua_State *res = task_state(t);
        r->status = r->use_result && lua_gettop(res) >= 1 && lua_type(res, 1) == LUA_TNUMBER
                        ? (int)lua_tointeger(res, 1)
                        : 0;
        return;
    }
    r->status = 1;
    lua_State *co = task_state(t);
    fprintf(stderr, "steward: %s\n",
            st == TASK_ERROR && lua_tostring(co, -1) ? lua_tostring(co, -1) : "cancelled");
}

/* Runs fn (with nargs arguments on top of L) as the main task, then the loop until it is
 * empty; returns the exit code. */
static int run_main_task(lua_State *L, int nargs, const char *name, int use_result)
{
    struct main_run r = {.use_result = use_result};
    struct task_opts opts = {.name = name, .done = on_main_done, .ud = &r, .quiet = 1};
    task_spawn(L, nargs, &opts);
    rt_run();
    return r.status;
}

static int cmd_script(int argc, char **argv)
{
    if (argc < 1)
        return usage("script: FILE expected");
    lua_State *L = rt_lua();
    /* arg, as the lua interpreter sets it: arg[0] is the script, arg[1..] its arguments. */
    lua_createtable(L, argc, 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_setglobal(L, "arg");
    if (luaL_loadfile(L, argv[0]) != 0) {
        fprintf(stderr, "steward: %s\n", lua_tostring(L, -1));
        return 1;
    }
    for (int i = 1; i < argc; i++)
        lua_pushstring(L, argv[i]);
    return run_main_task(L, argc - 1, argv[0], 0);
}

static char *read_stdin(void)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, stdin)) > 0) {
        len += n;
        if (cap - len < 2) {
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                return NULL;
            }
            buf = p;
            cap *= 2;
        }
    }
    buf[len] = 0;
    return buf;
}

static int cmd_eval(int argc, char **argv)
{
    if (argc != 1)
        return usage("eval: one CODE argument expected (or - to read stdin)");
    char *code = strcmp(argv[0], "-") == 0 ? read_stdin() : strdup(argv[0]);
    if (!code) {
        fprintf(stderr, "steward: eval: cannot read the code\n");
        return 1;
    }
    lua_State *L = rt_lua();
    rt_require(L, "steward.runtime.cli");
    lua_getfield(L, -1, "eval");
    lua_remove(L, -2);
    lua_pushstring(L, code);
    free(code);
    return run_main_task(L, 1, "eval", 0);
}

/* What daemon.main returns when this process is to supervise worker processes: the number
 * of workers and the HTTP address they share (steward.runtime.daemon, docs/operations.md). */
struct run_result {
    struct main_run r;
    int workers, port;
    char host[256];
};

static void on_run_done(task_t *t, enum task_status st, void *ud)
{
    struct run_result *rr = ud;
    on_main_done(t, st, &rr->r);
    lua_State *res = task_state(t);
    if (st == TASK_OK && lua_gettop(res) >= 3 && lua_type(res, 1) == LUA_TNUMBER) {
        rr->workers = (int)lua_tointeger(res, 1);
        snprintf(rr->host, sizeof rr->host, "%s", lua_tostring(res, 2) ? lua_tostring(res, 2) : "");
        rr->port = (int)lua_tointeger(res, 3);
    }
}

static int cmd_run(int argc, char **argv, char **full_argv)
{
    const char *file = NULL;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            file = argv[++i];
        } else {
            char msg[300];
            snprintf(msg, sizeof msg, "run: unknown argument '%s'", argv[i]);
            return usage(msg);
        }
    }
    /* The second stage of a supervisor: this binary exec'ed by the first (below). */
    const char *sup = getenv("STEWARD_SUPERVISE");
    if (sup && !getenv("STEWARD_WORKER")) {
        struct supervisor_opts so = {.argv = full_argv};
        char host[256];
        if (sscanf(sup, "%d %255s %d", &so.workers, host, &so.port) != 3) {
            fprintf(stderr, "steward: STEWARD_SUPERVISE: expected \"WORKERS HOST PORT\"\n");
            return 2;
        }
        so.host = host;
        unsetenv("STEWARD_SUPERVISE");
        return supervisor_run(&so);
    }
    if (rt_open() != 0) {
        fprintf(stderr, "steward: cannot create the runtime\n");
        return 1;
    }
    lua_State *L = rt_lua();
    rt_require(L, "steward.runtime.daemon");
    lua_getfield(L, -1, "main");
    lua_remove(L, -2);
    lua_createtable(L, 0, 2);
    if (file) {
        lua_pushstring(L, file);
        lua_setfield(L, -2, "config");
    }
    struct run_result rr = {0};
    struct task_opts opts = {.name = "daemon", .done = on_run_done, .ud = &rr, .quiet = 1};
    task_spawn(L, 1, &opts);
    rt_run();
    rt_close();
    if (rr.r.status != 0 || rr.workers < 2)
        return rr.r.status;
    /* The start-up ran here (privileges, store, token); the workers run the daemon. The
     * supervisor starts afresh, by exec in this process (same pid): the runtime left threads
     * behind (libuv's pool), and a thread that does not block SIGCHLD would swallow it. */
    char spec[400];
    snprintf(spec, sizeof spec, "%d %s %d", rr.workers, rr.host, rr.port);
    if (setenv("STEWARD_SUPERVISE", spec, 1) != 0) {
        perror("steward: setenv");
        return 1;
    }
    execv("/proc/self/exe", full_argv);
    fprintf(stderr, "steward: cannot exec the supervisor (/proc/self/exe): %s\n", strerror(errno));
    return 1;
}

/* steward test / steward check: the Lua side (steward.runtime.testing.*) parses the arguments and
 * returns the exit code, so its main function gets them as a list. */
static int cmd_lua_main(const char *module, const char *name, int argc, char **argv)
{
    lua_State *L = rt_lua();
    rt_require(L, module);
    lua_getfield(L, -1, "main");
    lua_remove(L, -2);
    lua_createtable(L, argc, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return run_main_task(L, 1, name, 1);
}

static void print_version(const char *lib, const char *version, void *ud)
{
    (void)ud;
    printf("%-9s %s\n", lib, version);
}

static int cmd_version(void)
{
    printf("%-9s %s\n", "steward", STEWARD_VERSION);
    bindings_versions(print_version, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage("a command is needed");
    const char *cmd = argv[1];
    if (is_help_flag(cmd) || (strcmp(cmd, "help") == 0 && argc == 2)) {
        print_usage(stdout);
        return 0;
    }
    if (wants_help(cmd, argc - 2, argv + 2) && print_command_usage(cmd) == 0)
        return 0;
    if (strcmp(cmd, "help") == 0) {
        if (argc > 3 || print_command_usage(argv[2]) != 0) {
            char msg[256];
            snprintf(msg, sizeof msg, "help: unknown command '%s'", argv[2]);
            return usage(msg);
        }
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        if (argc > 2)
            return usage("version takes no arguments");
        return cmd_version();
    }
    int is_script = strcmp(cmd, "script") == 0, is_eval = strcmp(cmd, "eval") == 0;
    int is_run = strcmp(cmd, "run") == 0;
    /* Commands whose Lua main(args) returns the exit code. */
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(cmd, commands[i].name) != 0 || !commands[i].module)
            continue;
        if (rt_open() != 0) {
            fprintf(stderr, "steward: cannot create the runtime\n");
            return 1;
        }
        /* cli_admin and cli serve several commands: they get the command name first. */
        int first = strcmp(commands[i].module, "steward.runtime.cli_admin") == 0 ||
                            strcmp(commands[i].module, "steward.runtime.cli") == 0
                        ? 1
                        : 2;
        int rc = cmd_lua_main(commands[i].module, cmd, argc - first, argv + first);
        rt_close();
        return rc;
    }
    if (is_run) {
        return cmd_run(argc - 2, argv + 2, argv);
    }
    if (strcmp(cmd, "repl") == 0)
        return repl_main(argc - 2, argv + 2, usage);
    /* steward eval talks to the daemon; --local keeps the in-process evaluation. */
    if (is_eval && !(argc > 2 && strcmp(argv[2], "--local") == 0))
        return repl_eval_main(argc - 2, argv + 2, usage);
    if (is_eval) {
        argv++;
        argc--;
    }
    if (!is_script && !is_eval) {
        char msg[256];
        snprintf(msg, sizeof msg, "unknown command '%s'", cmd);
        return usage(msg);
    }
    if (argc > 2 && argv[2][0] == '-' && argv[2][1] && strcmp(argv[2], "--") != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s: unknown flag '%s'", cmd, argv[2]);
        return usage(msg);
    }
    int first = argc > 2 && strcmp(argv[2], "--") == 0 ? 3 : 2;
    if (rt_open() != 0) {
        fprintf(stderr, "steward: cannot create the runtime\n");
        return 1;
    }
    int rc =
        is_script ? cmd_script(argc - first, argv + first) : cmd_eval(argc - first, argv + first);
    rt_close();
    return rc;
}
