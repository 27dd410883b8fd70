/* `steward repl` and `steward eval`: attach to the daemon's admin socket, speak the frames of
 * core/repl/frame.h, print what comes back (docs/repl.md). Ctrl-C reaches the daemon as an 'I'
 * frame through a self-pipe, so a running eval is cancelled rather than the client killed. */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "repl_client.h"
#include "repl_edit.h"
#include "runtime.h"

#define GREETING_TIMEOUT_MS 10000
#define COMPLETE_TIMEOUT_MS 5000
#define INTR_GIVE_UP        3 /* unanswered Ctrl-Cs in one eval before the client detaches */

static const char hint_line[] = "type help() for the incident helpers, Ctrl-D to leave\n";

struct client {
    const char *path;
    int fd;
    frame_decoder_t dec;
    char in[8192]; /* bytes read from the socket, not yet decoded */
    size_t in_off, in_len;
    int color;      /* ANSI colour on our own output (errors in red) */
    int readonly;   /* the greeting said role=readonly */
    int width;      /* the width last sent in 'H' */
    int at_prompt;  /* libedit owns the terminal: hold messages until it gives it back */
    char err[1024]; /* a held message */
};

static int intr_pipe[2] = {-1, -1};

static void on_sigint(int sig)
{
    (void)sig;
    int saved = errno;
    char b = 1;
    ssize_t r = write(intr_pipe[1], &b, 1); /* a full pipe already says "interrupted" */
    (void)r;
    errno = saved;
}

/* No SA_RESTART: a blocking poll() returns EINTR, and the pipe byte tells which Ctrl-C. */
static int install_sigint(void)
{
    if (intr_pipe[0] < 0 && pipe2(intr_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGINT, &sa, NULL);
}

/* Number of Ctrl-Cs since the last call. */
static int drain_intr(void)
{
    char buf[64];
    ssize_t n;
    int count = 0;
    while ((n = read(intr_pipe[0], buf, sizeof buf)) > 0)
        count += (int)n;
    return count;
}

static void report(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Error messages go to stderr now, or once libedit has restored the terminal. */
static void report(struct client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start is right above */
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    if (!c->at_prompt) {
        fflush(stdout);
        fprintf(stderr, "steward: %s\n", c->err);
        c->err[0] = 0;
    }
}

static int term_width(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *cols = getenv("COLUMNS");
    int n = cols ? atoi(cols) : 0;
    return n > 0 ? n : 80;
}

static int color_wanted(void)
{
    const char *nc = getenv("NO_COLOR"); /* no-color.org: set and non-empty */
    return isatty(STDOUT_FILENO) && !(nc && nc[0]);
}

static int send_all(struct client *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            report(c, "connection to %s lost: %s", c->path, strerror(errno));
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_frame(struct client *c, unsigned char type, const char *payload, size_t len)
{
    if (len > FRAME_MAX_PAYLOAD) {
        report(c, "the chunk is too large (%zu bytes; the limit is %u)", len,
               (unsigned)FRAME_MAX_PAYLOAD);
        return -1;
    }
    unsigned char hdr[FRAME_HEADER];
    frame_header(hdr, type, (uint32_t)len);
    if (send_all(c, (const char *)hdr, sizeof hdr) != 0)
        return -1;
    return len ? send_all(c, payload, len) : 0;
}

/* A frame from the bytes already read: 1, 0 when more are needed, -1 malformed. */
static int take_frame(struct client *c, frame_t *f)
{
    if (c->in_off == c->in_len)
        return 0;
    size_t used = 0;
    int r = frame_decode(&c->dec, c->in + c->in_off, c->in_len - c->in_off, &used, f);
    if (r < 0) {
        report(c, "bad frame from the daemon: %s", c->dec.err);
        return -1;
    }
    if (r == 0)
        used = c->in_len - c->in_off;
    c->in_off += used;
    return r;
}

/* One read from the socket: 1, or -1 (reported) on EOF or error. */
static int fill(struct client *c)
{
    for (;;) {
        ssize_t n = read(c->fd, c->in, sizeof c->in);
        if (n > 0) {
            c->in_off = 0;
            c->in_len = (size_t)n;
            return 1;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            report(c, "the daemon closed the connection");
        else
            report(c, "connection to %s lost: %s", c->path, strerror(errno));
        return -1;
    }
}

enum intr_mode {
    INTR_SEND,   /* each Ctrl-C sends an 'I' (an eval is running) */
    INTR_RETURN, /* a Ctrl-C ends the wait */
    INTR_LEAVE,  /* not watched: the prompt sees it afterwards */
};

enum { WAIT_FAIL = -1, WAIT_TIMEOUT = 0, WAIT_FRAME = 1, WAIT_INTR = 2 };

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for the next frame (timeout_ms < 0: no limit). */
static int next_frame(struct client *c, frame_t *f, int timeout_ms, enum intr_mode mode)
{
    long long deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : 0;
    int unanswered = 0;
    for (;;) {
        int r = take_frame(c, f);
        if (r != 0)
            return r > 0 ? WAIT_FRAME : WAIT_FAIL;
        struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN},
                              {.fd = intr_pipe[0], .events = POLLIN}};
        int wait = -1;
        if (timeout_ms >= 0) {
            long long left = deadline - now_ms();
            if (left <= 0)
                return WAIT_TIMEOUT;
            wait = (int)left;
        }
        int n = poll(p, mode == INTR_LEAVE ? 1 : 2, wait);
        if (n < 0 && errno != EINTR) {
            report(c, "poll: %s", strerror(errno));
            return WAIT_FAIL;
        }
        if (n <= 0)
            continue;
        if (mode != INTR_LEAVE && p[1].revents) {
            int count = drain_intr();
            if (mode == INTR_RETURN && count > 0)
                return WAIT_INTR;
            /* The terminal echoed "^C": what the daemon sends next starts on a fresh line. */
            if (count > 0 && isatty(STDIN_FILENO) && isatty(STDOUT_FILENO)) {
                fputc('\n', stdout);
                fflush(stdout);
            }
            for (int i = 0; i < count; i++) {
                if (send_frame(c, 'I', "", 0) != 0)
                    return WAIT_FAIL;
                /* Each Ctrl-C is an 'I'; a daemon that ignores several is stuck, and Ctrl-C
                 * must still get the user out. */
                if (++unanswered >= INTR_GIVE_UP) {
                    report(c, "the daemon did not answer the interrupt; detaching");
                    return WAIT_FAIL;
                }
            }
        }
        if (p[0].revents && fill(c) < 0)
            return WAIT_FAIL;
    }
}

/* Prints text, ending it with a newline unless it is empty or has one. */
static void print_text(FILE *out, const char *p, size_t n, const char *pre, const char *post)
{
    if (n == 0)
        return;
    fputs(pre, out);
    fwrite(p, 1, n, out);
    fputs(post, out);
    if (p[n - 1] != '\n')
        fputc('\n', out);
    fflush(out);
}

enum eval_end { EVAL_RESULT, EVAL_ERROR, EVAL_MORE, EVAL_FATAL };

/* Sends one chunk and prints the replies until the eval ends. */
static enum eval_end run_eval(struct client *c, unsigned char type, const char *chunk, size_t len)
{
    if (send_frame(c, type, chunk, len) != 0)
        return EVAL_FATAL;
    for (;;) {
        frame_t f;
        if (next_frame(c, &f, -1, INTR_SEND) != WAIT_FRAME)
            return EVAL_FATAL;
        enum eval_end end = EVAL_FATAL;
        int done = 1;
        switch (f.type) {
        case 'O':
            fwrite(f.payload, 1, f.len, stdout);
            fflush(stdout);
            done = 0;
            break;
        case 'R':
            print_text(stdout, f.payload, f.len, "", "");
            end = EVAL_RESULT;
            break;
        case 'X':
            fflush(stdout);
            print_text(stderr, f.payload, f.len, c->color ? "\033[31m" : "",
                       c->color ? "\033[0m" : "");
            end = EVAL_ERROR;
            break;
        case 'M': end = EVAL_MORE; break;
        case 'B': report(c, "session ended by the daemon: %s", f.payload); break;
        default: done = 0; /* a late 'L' or a stray frame: not part of this eval */
        }
        free(f.payload);
        if (done)
            return end;
    }
}

static int connect_socket(struct client *c)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(c->path) >= sizeof sa.sun_path) {
        report(c, "cannot connect to %s: the path is too long (at most %zu bytes)", c->path,
               sizeof sa.sun_path - 1);
        return -1;
    }
    memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        report(c, "cannot connect to %s: %s (is the daemon running? `make run` starts it)", c->path,
               strerror(errno));
        return -1;
    }
    return 0;
}

/* Connects, reads the greeting (banner returned malloc'd in *banner when not NULL) and
 * sends 'H'. Returns 0, or -1 with the problem reported. */
static int attach(struct client *c, const char *client_name, int hello_color, char **banner)
{
    frame_decoder_init(&c->dec, 0);
    if (connect_socket(c) != 0)
        return -1;
    frame_t f;
    int r = next_frame(c, &f, GREETING_TIMEOUT_MS, INTR_RETURN);
    if (r == WAIT_TIMEOUT)
        report(c, "no greeting from %s within %d s", c->path, GREETING_TIMEOUT_MS / 1000);
    else if (r == WAIT_INTR)
        report(c, "interrupted");
    if (r != WAIT_FRAME)
        return -1;
    if (f.type != 'G') {
        if (f.type == 'B')
            report(c, "refused: %s", f.payload);
        else
            report(c, "unexpected first frame '%c' from %s", f.type, c->path);
        free(f.payload);
        return -1;
    }
    char *save = NULL;
    char *line = strtok_r(f.payload, "\n", &save);
    if (banner)
        *banner = strdup(line ? line : "");
    while ((line = strtok_r(NULL, "\n", &save)))
        if (strcmp(line, "role=readonly") == 0)
            c->readonly = 1;
    free(f.payload);
    char hello[128];
    c->width = term_width();
    int n = snprintf(hello, sizeof hello, "color=%d\nwidth=%d\nclient=%s", hello_color, c->width,
                     client_name);
    return send_frame(c, 'H', hello, (size_t)n);
}

static void detach(struct client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    frame_decoder_free(&c->dec);
}

/* The config's admin_socket, through steward.runtime.config (the daemon reads the same keys). */
static char *socket_from_config(const char *file)
{
    static const char chunk[] =
        "local file, required = ...\n"
        "local cfg, err = require('steward.runtime.config').load({file = file, required = required})\n"
        "if not cfg then return nil, err end\n"
        "return cfg.admin_socket\n";
    if (rt_open() != 0) {
        fprintf(stderr, "steward: cannot create the runtime\n");
        return NULL;
    }
    lua_State *L = rt_lua();
    char *path = NULL;
    const char *err = "config: no admin_socket";
    if (luaL_loadbuffer(L, chunk, sizeof chunk - 1, "=repl_config") != 0) {
        err = lua_tostring(L, -1);
    } else {
        lua_pushstring(L, file ? file : "steward.lua");
        lua_pushboolean(L, file != NULL);
        int failed = lua_pcall(L, 2, 2, 0) != 0;
        if (!failed && lua_isstring(L, -2))
            path = strdup(lua_tostring(L, -2));
        else if (failed || lua_isstring(L, -1))
            err = lua_tostring(L, -1);
    }
    if (!path)
        fprintf(stderr, "steward: %s\n", err ? err : "config: cannot be loaded");
    rt_close();
    return path;
}

struct opts {
    const char *socket, *config, *code;
    int json;
};

/* [--socket PATH] [-c FILE] [--json] [CODE]; returns 0, or the usage error's exit code. */
static int parse_opts(int argc, char **argv, struct opts *o, int is_eval, repl_usage_fn usage)
{
    const char *cmd = is_eval ? "eval" : "repl";
    char msg[300];
    int opts_done = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!opts_done && a[0] == '-' && a[1]) {
            if (strcmp(a, "--") == 0) {
                opts_done = 1;
            } else if (strcmp(a, "--socket") == 0 || strcmp(a, "-c") == 0 ||
                       strcmp(a, "--config") == 0) {
                if (i + 1 >= argc) {
                    snprintf(msg, sizeof msg, "%s: %s needs a value", cmd, a);
                    return usage(msg);
                }
                *(strcmp(a, "--socket") == 0 ? &o->socket : &o->config) = argv[++i];
            } else if (is_eval && strcmp(a, "--json") == 0) {
                o->json = 1;
            } else if (is_eval && strcmp(a, "--local") == 0) {
                return usage("eval: --local comes first and takes only CODE: "
                             "steward eval --local CODE | -");
            } else {
                snprintf(msg, sizeof msg, "%s: unknown flag '%s'", cmd, a);
                return usage(msg);
            }
            continue;
        }
        if (!is_eval || o->code) {
            snprintf(msg, sizeof msg, "%s: unexpected argument '%s'", cmd, a);
            return usage(msg);
        }
        o->code = a;
    }
    if (is_eval && !o->code)
        return usage("eval: one CODE argument expected (or - to read stdin)");
    return 0;
}

static char *resolve_socket(const struct opts *o)
{
    if (o->socket)
        return strdup(o->socket);
    const char *env = getenv("STEWARD_SOCKET");
    if (env && env[0])
        return strdup(env);
    return socket_from_config(o->config);
}

static char *read_all(int fd, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf)
            return NULL;
        if (cap - n < 2) {
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                return NULL;
            }
            buf = p;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

int repl_eval_main(int argc, char **argv, repl_usage_fn usage)
{
    struct opts o = {0};
    int rc = parse_opts(argc, argv, &o, 1, usage);
    if (rc != 0)
        return rc;
    size_t len = strlen(o.code);
    char *code = strcmp(o.code, "-") == 0 ? read_all(STDIN_FILENO, &len) : strdup(o.code);
    if (!code) {
        fprintf(stderr, "steward: eval: cannot read the code: %s\n", strerror(errno));
        return 1;
    }
    struct client c = {.fd = -1};
    char *path = resolve_socket(&o);
    c.path = path;
    rc = 1;
    if (path && install_sigint() == 0 && attach(&c, "steward-eval", 0, NULL) == 0) {
        switch (run_eval(&c, o.json ? 'J' : 'E', code, len)) {
        case EVAL_RESULT: rc = 0; break;
        case EVAL_MORE: report(&c, "eval: incomplete chunk"); break;
        default: break;
        }
    }
    detach(&c);
    free(path);
    free(code);
    return rc;
}

/* At the prompt the socket only ever brings the end of the session ('B') or EOF. */
static int on_sock_at_prompt(void *ud)
{
    struct client *c = ud;
    if (fill(c) < 0)
        return 1;
    frame_t f;
    int r;
    while ((r = take_frame(c, &f)) == 1) {
        int bye = f.type == 'B';
        if (bye)
            report(c, "session ended by the daemon: %s", f.payload);
        free(f.payload);
        if (bye)
            return 1;
    }
    return r < 0;
}

static char **split_lines(char *s)
{
    size_t n = 1;
    for (char *p = s; *p; p++)
        n += *p == '\n';
    char **v = calloc(n + 1, sizeof *v);
    if (!v)
        return NULL;
    size_t i = 0;
    char *save = NULL;
    for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        if ((v[i] = strdup(line)))
            i++;
    return v;
}

static char **complete_word(void *ud, const char *word)
{
    struct client *c = ud;
    if (send_frame(c, 'C', word, strlen(word)) != 0) {
        repl_edit_abort();
        return NULL;
    }
    for (;;) {
        frame_t f;
        int r = next_frame(c, &f, COMPLETE_TIMEOUT_MS, INTR_LEAVE);
        if (r == WAIT_TIMEOUT)
            return NULL; /* a slow daemon costs a completion, not the session */
        if (r != WAIT_FRAME) {
            repl_edit_abort();
            return NULL;
        }
        char **v = NULL;
        if (f.type == 'L') {
            v = split_lines(f.payload);
        } else if (f.type == 'B') {
            report(c, "session ended by the daemon: %s", f.payload);
            repl_edit_abort();
        }
        int done = f.type == 'L' || f.type == 'B';
        free(f.payload);
        if (done)
            return v;
    }
}

static char *history_path(void)
{
    const char *home = getenv("HOME");
    if (!home || !home[0])
        return NULL;
    size_t n = strlen(home) + sizeof "/.steward_history";
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/.steward_history", home);
    return p;
}

static int is_blank(const char *s)
{
    return s[strspn(s, " \t\r\n")] == 0;
}

/* chunk + "\n" + line (or a copy of line); frees chunk. */
static char *append_line(char *chunk, const char *line)
{
    size_t a = chunk ? strlen(chunk) + 1 : 0, b = strlen(line);
    char *s = malloc(a + b + 1);
    if (s) {
        if (chunk) {
            memcpy(s, chunk, a - 1);
            s[a - 1] = '\n';
        }
        memcpy(s + a, line, b + 1);
    }
    free(chunk);
    return s;
}

/* A resized terminal is announced before the next eval, so results are laid out for it. */
static int update_width(struct client *c)
{
    int w = term_width();
    if (w == c->width)
        return 0;
    c->width = w;
    char hello[32];
    int n = snprintf(hello, sizeof hello, "width=%d", w);
    return send_frame(c, 'H', hello, (size_t)n);
}

static int repl_loop(struct client *c)
{
    char *chunk = NULL;
    int rc = 0;
    for (;;) {
        const char *prompt = chunk ? "   >> " : c->readonly ? "steward(ro)> " : "steward> ";
        char *line;
        c->at_prompt = 1;
        enum repl_edit_status st = repl_edit_read(prompt, &line);
        c->at_prompt = 0;
        if (st == REPL_EDIT_EOF) {
            putchar('\n');
            break;
        }
        if (st == REPL_EDIT_INTERRUPT) {
            /* Ctrl-C at the prompt drops the input, a pending multi-line chunk included. */
            putchar('\n');
            free(chunk);
            chunk = NULL;
            continue;
        }
        if (st == REPL_EDIT_ABORT) {
            fprintf(stderr, "\nsteward: %s\n", c->err[0] ? c->err : "the session ended");
            rc = 1;
            break;
        }
        if (!chunk && is_blank(line)) {
            free(line);
            continue;
        }
        chunk = append_line(chunk, line);
        free(line);
        if (!chunk) {
            fprintf(stderr, "steward: out of memory\n");
            rc = 1;
            break;
        }
        enum eval_end end =
            update_width(c) != 0 ? EVAL_FATAL : run_eval(c, 'E', chunk, strlen(chunk));
        if (end == EVAL_MORE)
            continue;
        repl_edit_remember(chunk);
        free(chunk);
        chunk = NULL;
        if (end == EVAL_FATAL) {
            rc = 1;
            break;
        }
    }
    free(chunk);
    return rc;
}

int repl_main(int argc, char **argv, repl_usage_fn usage)
{
    struct opts o = {0};
    int rc = parse_opts(argc, argv, &o, 0, usage);
    if (rc != 0)
        return rc;
    setlocale(LC_CTYPE, ""); /* libedit decodes and shows non-ASCII input by the locale */
    struct client c = {.fd = -1, .color = color_wanted()};
    char *path = resolve_socket(&o), *banner = NULL;
    c.path = path;
    if (!path || install_sigint() != 0 || attach(&c, "steward-repl", c.color, &banner) != 0) {
        detach(&c);
        free(path);
        free(banner);
        return 1;
    }
    printf("%s\n%s", banner, hint_line);
    fflush(stdout);
    free(banner);
    char *hist = history_path();
    struct repl_edit_hooks hooks = {.sock_fd = c.fd,
                                    .intr_fd = intr_pipe[0],
                                    .on_sock = on_sock_at_prompt,
                                    .complete = complete_word,
                                    .ud = &c};
    if (repl_edit_open(&hooks, hist) != 0) {
        fprintf(stderr, "steward: cannot initialise line editing\n");
        rc = 1;
    } else {
        rc = repl_loop(&c);
    }
    repl_edit_close();
    free(hist);
    detach(&c);
    free(path);
    return rc;
}
