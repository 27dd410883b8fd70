/* The parent of `steward run` with workers = N > 1: starts N worker processes, restarts one
 * that dies, passes signals on, and takes them all down with it (docs/operations.md). */
#ifndef STEWARD_SUPERVISOR_H
#define STEWARD_SUPERVISOR_H

struct supervisor_opts {
    int workers;       /* how many worker processes */
    const char *host;  /* the HTTP address every worker binds with SO_REUSEPORT */
    int port;          /* 0: one port is picked here, kept for every worker (and restarts) */
    char **argv;       /* the command line each worker runs (argv[0] is replaced by the binary) */
};

/* Runs until SIGTERM/SIGINT has stopped every worker, or a worker fails before it ever served
 * (its configuration or policies are broken: restarting cannot help). Returns the exit code. */
int supervisor_run(const struct supervisor_opts *o);

#endif
