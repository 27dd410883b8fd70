/* `steward repl` and `steward eval`: the client side of the daemon's admin socket
 * (docs/repl.md). A separate process from the daemon, so its I/O is plain blocking I/O. */
#ifndef STEWARD_REPL_CLIENT_H
#define STEWARD_REPL_CLIENT_H

/* Prints "steward: problem" and the usage; returns the exit code for a usage error. */
typedef int (*repl_usage_fn)(const char *problem);

/* steward repl [--socket PATH] [-c FILE]; argv holds the arguments after "repl".
 * Returns the exit code. */
int repl_main(int argc, char **argv, repl_usage_fn usage);

/* steward eval [--socket PATH] [-c FILE] [--json] CODE | -; argv holds the arguments after
 * "eval". Returns the exit code. */
int repl_eval_main(int argc, char **argv, repl_usage_fn usage);

#endif
