/* Line editing for `steward repl` (docs/repl.md, "Line editing"): libedit's readline
 * interface with a persistent history, completion asked of the daemon, and a key reader
 * that also watches the admin socket and the SIGINT self-pipe while the prompt is shown. */
#ifndef STEWARD_REPL_EDIT_H
#define STEWARD_REPL_EDIT_H

struct repl_edit_hooks {
    int sock_fd; /* watched at the prompt: the daemon may end the session at any time */
    int intr_fd; /* readable after SIGINT; the editor drains it */
    /* The socket is readable: 0 to keep editing, nonzero to abandon the line. */
    int (*on_sock)(void *ud);
    /* Candidates for word: a NULL-terminated malloc'd array of malloc'd strings, or NULL. */
    char **(*complete)(void *ud, const char *word);
    void *ud;
};

enum repl_edit_status {
    REPL_EDIT_LINE,      /* *line holds the entered line (malloc'd) */
    REPL_EDIT_EOF,       /* Ctrl-D on an empty line, or stdin ended */
    REPL_EDIT_INTERRUPT, /* Ctrl-C: discard the input */
    REPL_EDIT_ABORT,     /* on_sock (or repl_edit_abort) ended the line */
};

/* history_file may be NULL (no history is kept). Returns 0, or -1 when libedit fails. */
int repl_edit_open(const struct repl_edit_hooks *hooks, const char *history_file);
enum repl_edit_status repl_edit_read(const char *prompt, char **line);
/* Adds entry (possibly several lines) as one history entry and saves the history file. */
void repl_edit_remember(const char *entry);
/* Makes the current (or next) repl_edit_read return REPL_EDIT_ABORT; for use from the
 * completion hook, which cannot end the line itself. */
void repl_edit_abort(void);
void repl_edit_close(void);

#endif
