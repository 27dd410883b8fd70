/* libedit glue for `steward repl`: prompt, history file, Ctrl-R, completion through the
 * daemon, and a key reader that keeps watching the socket and the SIGINT self-pipe. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#include <editline/readline.h>

#include "repl_edit.h"

#define HISTORY_MAX 1000

static struct {
    struct repl_edit_hooks hooks;
    char *history_file;
    char *last_entry;          /* the newest entry, so a repeated command is kept once */
    enum repl_edit_status why; /* why the key reader reported end of input */
    int abort_pending;         /* set by repl_edit_abort */
    char **cands;              /* completion candidates being handed to libedit */
    size_t cand_next;
} ed;

/* libedit's readline() gives us no way to wait on anything but the terminal, so the key
 * reader is ours: it polls the terminal, the self-pipe and the socket. Returning EOF ends the
 * line; ed.why tells repl_edit_read whether it was Ctrl-D, Ctrl-C or the daemon. Keys are
 * decoded to wide characters here, as libedit's own reader does, so non-ASCII input works. */
static int edit_getc(FILE *in)
{
    int fd = fileno(in);
    mbstate_t st;
    memset(&st, 0, sizeof st);
    for (;;) {
        if (ed.abort_pending) {
            ed.why = REPL_EDIT_ABORT;
            return EOF;
        }
        struct pollfd p[3] = {{.fd = fd, .events = POLLIN},
                              {.fd = ed.hooks.intr_fd, .events = POLLIN},
                              {.fd = ed.hooks.sock_fd, .events = POLLIN}};
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            return EOF;
        }
        if (p[1].revents) {
            char drain[64];
            while (read(ed.hooks.intr_fd, drain, sizeof drain) > 0)
                ;
            ed.why = REPL_EDIT_INTERRUPT;
            return EOF;
        }
        if (p[2].revents && ed.hooks.on_sock && ed.hooks.on_sock(ed.hooks.ud) != 0) {
            ed.why = REPL_EDIT_ABORT;
            return EOF;
        }
        if (!p[0].revents)
            continue;
        char c;
        ssize_t n = read(fd, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return EOF;
        wchar_t wc;
        size_t k = mbrtowc(&wc, &c, 1, &st);
        if (k == (size_t)-2)
            continue; /* the middle of a multibyte character */
        if (k == (size_t)-1) {
            memset(&st, 0, sizeof st);
            return (unsigned char)c;
        }
        return (int)wc;
    }
}

static char *cand_generator(const char *text, int state)
{
    (void)text;
    if (state == 0)
        ed.cand_next = 0;
    if (!ed.cands || !ed.cands[ed.cand_next])
        return NULL;
    return strdup(ed.cands[ed.cand_next++]);
}

static void free_cands(void)
{
    if (!ed.cands)
        return;
    for (size_t i = 0; ed.cands[i]; i++)
        free(ed.cands[i]);
    free(ed.cands);
    ed.cands = NULL;
}

static char **edit_complete(const char *text, int start, int end)
{
    (void)start;
    (void)end;
    /* The daemon is the only source of candidates: no fallback to file names, and no space
     * after a completed word, so "events." can go on to "events.tail". */
    rl_attempted_completion_over = 1;
    rl_completion_append_character = '\0';
    if (!ed.hooks.complete)
        return NULL;
    ed.cands = ed.hooks.complete(ed.hooks.ud, text);
    if (!ed.cands || !ed.cands[0]) {
        free_cands();
        return NULL;
    }
    char **matches = rl_completion_matches(text, cand_generator);
    free_cands();
    return matches;
}

int repl_edit_open(const struct repl_edit_hooks *hooks, const char *history_file)
{
    ed.hooks = *hooks;
    ed.history_file = history_file ? strdup(history_file) : NULL;
    rl_readline_name = "steward"; /* for "steward:" lines in ~/.editrc */
    rl_getc_function = edit_getc; /* read by rl_initialize, so set first */
    rl_attempted_completion_function = edit_complete;
    /* Lua names: "events.tail", "obj:method" are one word. */
    rl_basic_word_break_characters = " \t\n\"'`@$><=;|&{}()[],+-*/%^~#";
    rl_completion_append_character = '\0';
    if (rl_initialize() != 0)
        return -1;
    /* libedit's readline mode binds ^R already; bound again so an ~/.editrc switching to vi
     * mode keeps the search. */
    rl_parse_and_bind("bind ^R em-inc-search-prev");
    using_history();
    stifle_history(HISTORY_MAX);
    if (ed.history_file)
        read_history(ed.history_file); /* a missing file is a first session */
    return 0;
}

enum repl_edit_status repl_edit_read(const char *prompt, char **line)
{
    *line = NULL;
    ed.why = REPL_EDIT_EOF;
    char *s = readline(prompt);
    if (ed.why != REPL_EDIT_EOF) {
        /* Without a terminal libedit returns what was read before the interruption. */
        free(s);
        ed.abort_pending = 0;
        return ed.why;
    }
    if (!s)
        return REPL_EDIT_EOF;
    *line = s;
    return REPL_EDIT_LINE;
}

/* write_history rewrites the file; writing a temporary and renaming it means a crash mid-write
 * leaves the previous history, never a truncated one. (libedit's append_history writes the
 * entries unencoded, so a multi-line entry would come back as several.) */
static void save_history(void)
{
    if (!ed.history_file)
        return;
    size_t n = strlen(ed.history_file) + 8;
    char *tmp = malloc(n);
    if (!tmp)
        return;
    snprintf(tmp, n, "%s.tmp", ed.history_file);
    if (write_history(tmp) == 0)
        rename(tmp, ed.history_file);
    else
        unlink(tmp);
    free(tmp);
}

void repl_edit_remember(const char *entry)
{
    if (!entry[0] || (ed.last_entry && strcmp(ed.last_entry, entry) == 0))
        return;
    add_history(entry);
    free(ed.last_entry);
    ed.last_entry = strdup(entry);
    save_history();
}

void repl_edit_abort(void)
{
    ed.abort_pending = 1;
}

void repl_edit_close(void)
{
    clear_history();
    free(ed.history_file);
    free(ed.last_entry);
    ed.history_file = NULL;
    ed.last_entry = NULL;
}
