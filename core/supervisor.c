/* The worker supervisor: the parent process of `steward run` when workers = N > 1.
 *
 * It serves nothing and holds no Lua state: the daemon's start-up (configuration, privilege
 * drop, store migrations, admin token) ran before, in this process, which then exec'ed itself
 * with STEWARD_SUPERVISE set, so the supervisor is one thread with nothing left over. Each
 * worker is this binary exec'ed afresh with the same arguments and STEWARD_WORKER=i in its
 * environment (a fork of a process with a loop and threads would inherit their state; an
 * exec starts clean). The workers bind the one HTTP address with SO_REUSEPORT and share the
 * store; who handles which key, and who does the singleton duties, the store's leases decide
 * (steward.runtime.cluster).
 *
 * Why the pieces are as they are:
 *  - PR_SET_PDEATHSIG(SIGTERM), set in the child between fork and exec: when the parent dies,
 *    even by SIGKILL, every worker drains and exits, so nothing keeps serving unsupervised.
 *    getppid() is checked after the prctl: a parent that died before it leaves us reparented.
 *  - Signals are blocked and read from a signalfd: no handler runs at an arbitrary point, and
 *    the child restores the mask before exec (a blocked mask survives exec).
 *  - A pipe per worker: the worker writes one byte once it serves (steward.runtime.daemon).
 *    SIGHUP goes only to workers that said so, because SIGHUP's default action kills a
 *    process that has not installed its reload watch yet. A worker that dies before it ever
 *    served while no worker of this run has served means the configuration or the policies
 *    are broken: restarting cannot help, so the supervisor stops with its status.
 *  - With port 0 the port is picked here on a socket that binds but never listens (it joins
 *    no accept queue), held for the whole run, so restarted workers get the same port. */
#include "supervisor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define MAX_WORKERS 256
#define QUICK_DEATH_S 10.0 /* a worker that lived less than this is restarted with a backoff */
#define MAX_BACKOFF_S 30.0

extern char **environ;

struct worker {
    pid_t pid;       /* 0: not running */
    int ready_fd;    /* read end of its ready pipe, -1 once read or closed */
    int ready;       /* it said it serves */
    int fails;       /* quick deaths in a row */
    int spawns;      /* how many times this worker was started */
    double started;  /* monotonic seconds */
    double restart_at; /* 0: no restart pending */
};

struct sup {
    const struct supervisor_opts *o;
    char exe[PATH_MAX];
    char listen[300];
    struct worker w[MAX_WORKERS];
    sigset_t old_mask;
    int served;   /* some worker of this run has served */
    int stopping; /* the signal that stops us, else 0 */
    int status;   /* exit code */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The port for port 0: bound (SO_REUSEPORT, as the workers' sockets) and never listened on. */
static int reserve_port(const char *host, int *port, int *fd_out)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (strchr(host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return -1;
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return -1;
        len = sizeof *a;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0 ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return 0;
}

/* The variables the supervisor sets for its workers (a stale one is not passed on). */
static int own_var(const char *e)
{
    return strncmp(e, "STEWARD_WORKER", 14) == 0 || strncmp(e, "STEWARD_SUPERVISE=", 18) == 0;
}

/* The worker's environment: ours without STEWARD_WORKER*, plus its index, the count, the
 * address, its ready pipe and how many times this index was started (1 at first). Built before fork (no malloc between fork and exec). */
static char **worker_env(struct sup *s, int idx, int ready_fd)
{
    size_t n = 0;
    for (char **e = environ; *e; e++)
        n++;
    char **env = calloc(n + 6, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (char **e = environ; *e; e++)
        if (!own_var(*e))
            env[k++] = *e;
    char buf[5][400];
    snprintf(buf[0], sizeof buf[0], "STEWARD_WORKER=%d", idx + 1);
    snprintf(buf[1], sizeof buf[1], "STEWARD_WORKERS=%d", s->o->workers);
    snprintf(buf[2], sizeof buf[2], "STEWARD_WORKER_LISTEN=%s", s->listen);
    snprintf(buf[3], sizeof buf[3], "STEWARD_WORKER_READY_FD=%d", ready_fd);
    snprintf(buf[4], sizeof buf[4], "STEWARD_WORKER_SPAWN=%d", s->w[idx].spawns + 1);
    for (int i = 0; i < 5; i++) {
        env[k] = strdup(buf[i]);
        if (!env[k]) {
            while (i-- > 0)
                free(env[--k]);
            free(env);
            return NULL;
        }
        k++;
    }
    env[k] = NULL;
    return env;
}

static void free_env(char **env)
{
    size_t base = 0;
    for (char **e = environ; *e; e++)
        if (!own_var(*e))
            base++;
    for (char **e = env + base; *e; e++)
        free(*e);
    free(env);
}

static void log_worker(enum log_level lv, const char *msg, int idx, pid_t pid, const char *k,
                       const char *v)
{
    char si[16], sp[16];
    snprintf(si, sizeof si, "%d", idx + 1);
    snprintf(sp, sizeof sp, "%d", (int)pid);
    log_write(lv, msg, "worker", si, "pid", sp, k, v, (const char *)0);
}

static int spawn(struct sup *s, int idx)
{
    struct worker *w = &s->w[idx];
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        log_error("cannot start a worker", "error", strerror(errno));
        return -1;
    }
    char **env = worker_env(s, idx, p[1]);
    if (!env) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* Only async-signal-safe calls from here to exec. */
        sigprocmask(SIG_SETMASK, &s->old_mask, NULL);
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
            _exit(1);
        int fl = fcntl(p[1], F_GETFD);
        if (fl < 0 || fcntl(p[1], F_SETFD, fl & ~FD_CLOEXEC) != 0)
            _exit(1);
        execve(s->exe, s->o->argv, env);
        _exit(127);
    }
    int err = errno;
    free_env(env);
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        log_error("cannot start a worker", "error", strerror(err));
        return -1;
    }
    w->pid = pid;
    w->spawns++;
    w->ready_fd = p[0];
    w->ready = 0;
    w->started = now_s();
    w->restart_at = 0;
    log_worker(LOG_INFO, "worker started", idx, pid, NULL, NULL);
    return 0;
}

static void signal_all(struct sup *s, int sig, int only_ready)
{
    for (int i = 0; i < s->o->workers; i++)
        if (s->w[i].pid > 0 && (!only_ready || s->w[i].ready))
            kill(s->w[i].pid, sig);
}

static void stop_all(struct sup *s, int sig)
{
    if (s->stopping)
        return;
    s->stopping = sig;
    for (int i = 0; i < s->o->workers; i++)
        s->w[i].restart_at = 0;
    signal_all(s, sig, 0);
}

static void worker_exited(struct sup *s, int idx, int wstatus)
{
    struct worker *w = &s->w[idx];
    char how[64];
    int code = 1;
    if (WIFEXITED(wstatus)) {
        code = WEXITSTATUS(wstatus);
        snprintf(how, sizeof how, "exit %d", code);
    } else {
        snprintf(how, sizeof how, "signal %d", WTERMSIG(wstatus));
    }
    pid_t pid = w->pid;
    w->pid = 0;
    if (w->ready_fd >= 0) {
        close(w->ready_fd);
        w->ready_fd = -1;
    }
    if (s->stopping) {
        if (code != 0 && s->status == 0)
            s->status = code;
        log_worker(LOG_INFO, "worker stopped", idx, pid, "status", how);
        return;
    }
    if (!w->ready && !s->served) {
        log_worker(LOG_ERROR, "worker failed at start-up; stopping (see its log above)", idx, pid,
                   "status", how);
        s->status = code ? code : 1;
        stop_all(s, SIGTERM);
        return;
    }
    double lived = now_s() - w->started, delay = 0;
    if (!w->ready || lived < QUICK_DEATH_S) {
        delay = w->fails < 5 ? (double)(1 << w->fails) : MAX_BACKOFF_S;
        if (delay > MAX_BACKOFF_S)
            delay = MAX_BACKOFF_S;
        w->fails++;
    } else {
        w->fails = 0;
    }
    char d[32];
    snprintf(d, sizeof d, "%.0fs", delay);
    log_worker(LOG_WARN, "worker died; restarting it", idx, pid, "status", how);
    log_worker(LOG_INFO, "worker restart scheduled", idx, pid, "in", d);
    w->restart_at = now_s() + delay;
}

static void reap(struct sup *s)
{
    int wstatus;
    pid_t pid;
    while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0)
        for (int i = 0; i < s->o->workers; i++)
            if (s->w[i].pid == pid)
                worker_exited(s, i, wstatus);
}

static int running(const struct sup *s)
{
    for (int i = 0; i < s->o->workers; i++)
        if (s->w[i].pid > 0)
            return 1;
    return 0;
}

static void on_signal(struct sup *s, int sfd)
{
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        int sig = (int)si.ssi_signo;
        if (sig == SIGCHLD) {
            reap(s);
        } else if (sig == SIGHUP) {
            log_info("SIGHUP: passed on to the workers");
            signal_all(s, SIGHUP, 1);
        } else if (!s->stopping) {
            log_info("stopping", "signal", sig == SIGINT ? "INT" : "TERM");
            stop_all(s, sig);
        } else {
            signal_all(s, sig, 0); /* a second TERM: passed on too */
        }
    }
}

static void on_ready(struct sup *s, int idx)
{
    struct worker *w = &s->w[idx];
    char c;
    ssize_t n = read(w->ready_fd, &c, 1);
    if (n == 1) {
        w->ready = 1;
        s->served = 1;
        log_worker(LOG_INFO, "worker serving", idx, w->pid, "listen", s->listen);
    }
    if (n == 1 || n == 0) { /* 0: it died first; SIGCHLD tells */
        close(w->ready_fd);
        w->ready_fd = -1;
    }
}

int supervisor_run(const struct supervisor_opts *o)
{
    static struct sup s; /* large (the exe path, the worker table); one per process */
    memset(&s, 0, sizeof s);
    s.o = o;
    if (o->workers < 2 || o->workers > MAX_WORKERS) {
        fprintf(stderr, "steward: workers: expected 2 to %d worker processes\n", MAX_WORKERS);
        return 2;
    }
    ssize_t n = readlink("/proc/self/exe", s.exe, sizeof s.exe - 1);
    if (n <= 0) {
        fprintf(stderr, "steward: cannot find this binary (/proc/self/exe): %s\n", strerror(errno));
        return 1;
    }
    s.exe[n] = 0;
    int port = o->port, hold = -1;
    if (port == 0 && reserve_port(o->host, &port, &hold) != 0) {
        fprintf(stderr, "steward: cannot pick a port on %s: %s\n", o->host, strerror(errno));
        return 1;
    }
    snprintf(s.listen, sizeof s.listen, strchr(o->host, ':') ? "[%s]:%d" : "%s:%d", o->host, port);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, &s.old_mask);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) {
        fprintf(stderr, "steward: signalfd: %s\n", strerror(errno));
        return 1;
    }
    char sn[16];
    snprintf(sn, sizeof sn, "%d", o->workers);
    log_info("supervisor", "workers", sn, "listen", s.listen);
    for (int i = 0; i < o->workers; i++) {
        s.w[i].ready_fd = -1;
        if (spawn(&s, i) != 0) {
            s.status = 1;
            stop_all(&s, SIGTERM);
            break;
        }
    }
    while (running(&s) || (!s.stopping)) {
        struct pollfd pfd[MAX_WORKERS + 1];
        int idx[MAX_WORKERS + 1], np = 0;
        pfd[np].fd = sfd;
        pfd[np].events = POLLIN;
        idx[np++] = -1;
        double next = 0;
        for (int i = 0; i < o->workers; i++) {
            if (s.w[i].ready_fd >= 0) {
                pfd[np].fd = s.w[i].ready_fd;
                pfd[np].events = POLLIN;
                idx[np++] = i;
            }
            if (s.w[i].restart_at > 0 && (next == 0 || s.w[i].restart_at < next))
                next = s.w[i].restart_at;
        }
        int timeout = -1;
        if (next > 0) {
            double d = next - now_s();
            timeout = d <= 0 ? 0 : (int)(d * 1000) + 1;
        }
        int r = poll(pfd, (nfds_t)np, timeout);
        if (r < 0 && errno != EINTR)
            break;
        for (int k = 0; r > 0 && k < np; k++) {
            if (!pfd[k].revents)
                continue;
            if (idx[k] < 0)
                on_signal(&s, sfd);
            else if (s.w[idx[k]].ready_fd == pfd[k].fd)
                on_ready(&s, idx[k]);
        }
        double t = now_s();
        for (int i = 0; i < o->workers && !s.stopping; i++) {
            if (s.w[i].restart_at > 0 && s.w[i].restart_at <= t && s.w[i].pid == 0 &&
                spawn(&s, i) != 0)
                s.w[i].restart_at = t + 1; /* fork failed (memory, process limit): try again */
        }
    }
    close(sfd);
    if (hold >= 0)
        close(hold);
    sigprocmask(SIG_SETMASK, &s.old_mask, NULL);
    log_info("stopped");
    return s.status;
}
