/* The one PostgreSQL connection engine (libpq on libuv), shared by the store's backend and
 * steward.pg: see pg_conn.h. */
#include "pg_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A uv_poll on a connection's socket. Freed by its close callback, so it can be dropped at any
 * time (libpq may close the socket and open another while connecting). */
typedef struct pgc_watch {
    uv_poll_t h;
    uv_poll_cb cb;
} pgc_watch_t;

enum pgc_step { PGC_WAIT, PGC_DONE, PGC_FAIL };

static void watch_closed(uv_handle_t *h)
{
    free(h);
}

static pgc_watch_t *pgc_watch_new(uv_loop_t *loop, PGconn *c, int events, uv_poll_cb cb, void *data)
{
    int fd = PQsocket(c);
    if (fd < 0)
        return NULL;
    pgc_watch_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    if (uv_poll_init(loop, &w->h, fd) != 0) {
        free(w);
        return NULL;
    }
    w->h.data = data;
    w->cb = cb;
    uv_poll_start(&w->h, events, cb);
    return w;
}

static void pgc_watch_set(pgc_watch_t *w, int events)
{
    if (w)
        uv_poll_start(&w->h, events, w->cb);
}

static void pgc_watch_ref(pgc_watch_t *w, int ref)
{
    if (!w)
        return;
    if (ref)
        uv_ref((uv_handle_t *)&w->h);
    else
        uv_unref((uv_handle_t *)&w->h);
}

static void pgc_watch_drop(pgc_watch_t **w)
{
    if (!*w)
        return;
    uv_poll_stop(&(*w)->h);
    (*w)->h.data = NULL;
    uv_close((uv_handle_t *)&(*w)->h, watch_closed);
    *w = NULL;
}

void pgc_conn_message(PGconn *c, const char *fallback, char *buf, size_t n)
{
    const char *m = c ? PQerrorMessage(c) : NULL;
    const char *src = m && *m ? m : fallback;
    size_t l = 0;
    for (; *src && l + 1 < n; src++) { /* one line: whitespace runs become one space */
        char ch = (*src == '\n' || *src == '\t') ? ' ' : *src;
        if (ch == ' ' && (l == 0 || buf[l - 1] == ' '))
            continue;
        buf[l++] = ch;
    }
    buf[l] = 0;
    while (l > 0 && buf[l - 1] == ' ')
        buf[--l] = 0;
}

void pgc_result_message(const PGresult *r, char *buf, size_t n)
{
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) : NULL;
    if (!msg)
        msg = r ? PQresultErrorMessage(r) : "";
    if (!msg || !*msg)
        msg = "unknown error";
    if (detail)
        snprintf(buf, n, "%s (%s)", msg, detail);
    else
        snprintf(buf, n, "%s", msg);
    size_t l = strlen(buf);
    while (l > 0 && (buf[l - 1] == '\n' || buf[l - 1] == ' '))
        buf[--l] = 0;
}

int pgc_result_ok(const PGresult *r)
{
    ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK || s == PGRES_EMPTY_QUERY;
}

static void silent_notice(void *arg, const char *message)
{
    (void)arg; /* NOTICEs ("relation already exists, skipping") are not errors: drop them */
    (void)message;
}

/* Starts a non-blocking connection to conninfo (a URI or keyword/value string; libpq's PG*
 * environment fills what it leaves out) with client_encoding UTF8 and the given
 * fallback_application_name, plus options (the "options" keyword: "-c name=value ...") when
 * not NULL; the user's own keywords win. NULL with msg set when it failed at once. */
static PGconn *pgc_start(const char *conninfo, const char *app, const char *options, char *msg,
                         size_t msglen)
{
    /* Ours first: a later keyword (the user's, in dbname's expansion) overrides them. */
    const char *kw[5], *val[5];
    int i = 0;
    kw[i] = "client_encoding", val[i++] = "UTF8";
    kw[i] = "fallback_application_name", val[i++] = app;
    if (options)
        kw[i] = "options", val[i++] = options;
    kw[i] = "dbname", val[i++] = conninfo;
    kw[i] = NULL, val[i] = NULL;
    PGconn *c = PQconnectStartParams(kw, val, 1);
    if (!c) {
        snprintf(msg, msglen, "out of memory");
        return NULL;
    }
    if (PQstatus(c) == CONNECTION_BAD) {
        pgc_conn_message(c, "cannot connect", msg, msglen);
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, silent_notice, NULL);
    return c;
}

/* Advances a connection attempt after its socket became ready: re-creates *w for what libpq
 * waits for next. PGC_DONE: connected, non-blocking, *w watches for reading. */
static enum pgc_step pgc_connect_step(PGconn *c, pgc_watch_t **w, uv_loop_t *loop, uv_poll_cb cb,
                                      void *data, char *msg, size_t msglen)
{
    pgc_watch_drop(w); /* PQconnectPoll may close the socket and open another */
    PostgresPollingStatusType st = PQconnectPoll(c);
    switch (st) {
    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING:
        *w = pgc_watch_new(loop, c, st == PGRES_POLLING_READING ? UV_READABLE : UV_WRITABLE, cb,
                           data);
        if (!*w) {
            snprintf(msg, msglen, "cannot watch the connection's socket");
            return PGC_FAIL;
        }
        return PGC_WAIT;
    case PGRES_POLLING_OK:
        if (PQsetnonblocking(c, 1) != 0 || !(*w = pgc_watch_new(loop, c, UV_READABLE, cb, data))) {
            pgc_conn_message(c, "cannot set up the connection", msg, msglen);
            return PGC_FAIL;
        }
        return PGC_DONE;
    default: pgc_conn_message(c, "cannot connect", msg, msglen); return PGC_FAIL;
    }
}

static int pgc_flush(PGconn *c, int sent, int *want_write, char *msg, size_t msglen)
{
    int f = sent ? PQflush(c) : -1;
    if (f < 0) {
        pgc_conn_message(c, "cannot send", msg, msglen);
        return -1;
    }
    *want_write = f == 1;
    return 0;
}

static int pgc_consume(PGconn *c, char *msg, size_t msglen)
{
    if (!PQconsumeInput(c)) {
        pgc_conn_message(c, "connection lost", msg, msglen);
        return -1;
    }
    return 0;
}

static int pgc_drain_idle(PGconn *c, char *msg, size_t msglen)
{
    PGresult *r;
    while (!PQisBusy(c) && (r = PQgetResult(c)))
        PQclear(r);
    if (PQstatus(c) == CONNECTION_BAD) {
        pgc_conn_message(c, "connection lost", msg, msglen);
        return -1;
    }
    return 0;
}

/* ---- the connection object ---- */

enum pstate { PS_DOWN, PS_CONNECTING, PS_UP, PS_CLOSED };

struct pending {
    pgc_cmd_t cmd;
    int sync;
};

struct pgc_conn {
    uv_loop_t *loop;
    pgc_opts_t o;
    char *conninfo, *app, *options;
    const pgc_events_t *ev;
    void *owner;
    PGconn *pg;
    pgc_watch_t *w;
    enum pstate state;
    int want_write, ref, broken_send;
    uint64_t backoff_ms;
    uv_timer_t timer; /* the connect deadline, or the next attempt */
    /* commands in flight, oldest first: a ring */
    struct pending *ring;
    size_t cap, head, n;
    PGresult *acc; /* the head command's result so far */
};

static void conn_poll_cb(uv_poll_t *h, int status, int events);
static void conn_timer_cb(uv_timer_t *t);

static void conn_freed(uv_handle_t *h)
{
    pgc_conn_t *c = h->data;
    free(c->ring);
    free(c->conninfo);
    free(c->app);
    free(c->options);
    free(c);
}

static char *dup_or_null(const char *s, int *ok)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *ok = 0;
    return d;
}

pgc_conn_t *pgc_conn_new(uv_loop_t *loop, const pgc_opts_t *o, const pgc_events_t *ev, void *owner)
{
    pgc_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    int ok = 1;
    c->conninfo = dup_or_null(o->conninfo, &ok);
    c->app = dup_or_null(o->app ? o->app : "steward", &ok);
    c->options = dup_or_null(o->options, &ok);
    if (!ok) {
        free(c->conninfo);
        free(c->app);
        free(c->options);
        free(c);
        return NULL;
    }
    c->loop = loop;
    c->o = *o;
    c->o.conninfo = c->conninfo;
    c->o.app = c->app;
    c->o.options = c->options;
    c->ev = ev;
    c->owner = owner;
    c->backoff_ms = o->backoff_min_ms;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    uv_unref((uv_handle_t *)&c->timer); /* the socket's watcher holds the loop, not the timer */
    return c;
}

int pgc_conn_is_up(const pgc_conn_t *c)
{
    return c->state == PS_UP;
}

PGconn *pgc_conn_pg(const pgc_conn_t *c)
{
    return c->pg;
}

size_t pgc_conn_in_flight(const pgc_conn_t *c)
{
    return c->n;
}

int pgc_conn_socket(const pgc_conn_t *c)
{
    return c->pg ? PQsocket(c->pg) : -1;
}

int pgc_conn_wants_write(const pgc_conn_t *c)
{
    return c->want_write;
}

void pgc_conn_ref(pgc_conn_t *c, int ref)
{
    c->ref = ref;
    pgc_watch_ref(c->w, ref);
}

static void watch_events(pgc_conn_t *c)
{
    pgc_watch_set(c->w, UV_READABLE | (c->want_write ? UV_WRITABLE : 0));
    pgc_watch_ref(c->w, c->ref);
}

/* Drops the libpq connection and everything in flight on it. */
static void conn_drop(pgc_conn_t *c)
{
    pgc_watch_drop(&c->w);
    if (c->acc)
        PQclear(c->acc);
    c->acc = NULL;
    if (c->pg)
        PQfinish(c->pg);
    c->pg = NULL;
    c->n = c->head = 0;
    c->want_write = c->broken_send = 0;
}

static void schedule_attempt(pgc_conn_t *c)
{
    if (!c->o.reconnect || c->state == PS_CLOSED)
        return;
    uint64_t ms = c->backoff_ms ? c->backoff_ms : 100;
    uv_timer_start(&c->timer, conn_timer_cb, ms, 0);
    c->backoff_ms = ms * 2;
    if (c->o.backoff_max_ms && c->backoff_ms > c->o.backoff_max_ms)
        c->backoff_ms = c->o.backoff_max_ms;
}

/* The connection failed (or an attempt did): tell the owner, then try again if asked. */
static void conn_down(pgc_conn_t *c, const char *msg)
{
    if (c->state == PS_CLOSED || c->state == PS_DOWN)
        return;
    int connecting = c->state == PS_CONNECTING;
    char copy[512];
    snprintf(copy, sizeof copy, "%s", msg);
    uv_timer_stop(&c->timer);
    conn_drop(c);
    c->state = PS_DOWN;
    schedule_attempt(c);
    c->ev->down(c, c->owner, copy, connecting);
}

static void conn_up(pgc_conn_t *c)
{
    uv_timer_stop(&c->timer);
    if (c->o.pipeline && PQenterPipelineMode(c->pg) != 1) {
        char msg[400];
        pgc_conn_message(c->pg, "cannot enter pipeline mode", msg, sizeof msg);
        conn_down(c, msg);
        return;
    }
    c->state = PS_UP;
    c->backoff_ms = c->o.backoff_min_ms;
    watch_events(c);
    c->ev->up(c, c->owner);
}

int pgc_conn_connect(pgc_conn_t *c, char *msg, size_t msglen)
{
    if (c->state == PS_CLOSED || c->state == PS_CONNECTING || c->state == PS_UP)
        return 0;
    if (!(c->pg = pgc_start(c->conninfo, c->app, c->options, msg, msglen)))
        return -1;
    if (!(c->w = pgc_watch_new(c->loop, c->pg, UV_WRITABLE, conn_poll_cb, c))) {
        PQfinish(c->pg);
        c->pg = NULL;
        snprintf(msg, msglen, "cannot watch the connection's socket");
        return -1;
    }
    pgc_watch_ref(c->w, c->ref);
    c->state = PS_CONNECTING;
    double ms = c->o.connect_timeout > 0 ? c->o.connect_timeout * 1000.0 : 10000.0;
    uv_update_time(c->loop);
    uv_timer_start(&c->timer, conn_timer_cb, (uint64_t)(ms + 0.999), 0);
    return 0;
}

static void conn_timer_cb(uv_timer_t *t)
{
    pgc_conn_t *c = t->data;
    if (c->state == PS_CONNECTING) {
        conn_down(c, "timeout connecting to the database");
    } else if (c->state == PS_DOWN) {
        char msg[400];
        if (pgc_conn_connect(c, msg, sizeof msg) != 0) {
            c->state = PS_CONNECTING; /* so that conn_down reports a failed attempt */
            conn_down(c, msg);
        }
    }
}

void pgc_conn_fail(pgc_conn_t *c, const char *msg)
{
    conn_down(c, msg);
}

void pgc_conn_stop_reconnect(pgc_conn_t *c)
{
    c->o.reconnect = 0;
    if (c->state == PS_DOWN)
        uv_timer_stop(&c->timer);
}

void pgc_conn_close(pgc_conn_t *c)
{
    if (c->state == PS_CLOSED)
        return;
    c->state = PS_CLOSED;
    conn_drop(c);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_freed);
}

/* ---- commands ---- */

static int push_pending(pgc_conn_t *c, const pgc_cmd_t *cmd, int sync)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        struct pending *r = malloc(cap * sizeof *r);
        if (!r)
            return -1;
        for (size_t i = 0; i < c->n; i++)
            r[i] = c->ring[(c->head + i) % c->cap];
        free(c->ring);
        c->ring = r;
        c->cap = cap;
        c->head = 0;
    }
    struct pending *p = &c->ring[(c->head + c->n) % c->cap];
    p->cmd = *cmd;
    p->sync = sync;
    c->n++;
    return 0;
}

/* After a PQsend*: the command is in flight, or the connection is marked broken. */
static int sent(pgc_conn_t *c, int ok, const pgc_cmd_t *cmd, int sync)
{
    if (c->state != PS_UP || !ok || push_pending(c, cmd, sync) != 0) {
        c->broken_send = 1;
        return -1;
    }
    return 0;
}

int pgc_send_query(pgc_conn_t *c, const char *sql, int n, const Oid *types,
                   const char *const *values, const int *lengths, const int *formats,
                   const pgc_cmd_t *cmd)
{
    int ok = c->state == PS_UP &&
             PQsendQueryParams(c->pg, sql, n, types, values, lengths, formats, 0) == 1;
    return sent(c, ok, cmd, 0);
}

int pgc_send_prepare(pgc_conn_t *c, const char *name, const char *sql, int n, const Oid *types,
                     const pgc_cmd_t *cmd)
{
    int ok = c->state == PS_UP && PQsendPrepare(c->pg, name, sql, n, types) == 1;
    return sent(c, ok, cmd, 0);
}

int pgc_send_prepared(pgc_conn_t *c, const char *name, int n, const char *const *values,
                      const int *lengths, const int *formats, const pgc_cmd_t *cmd)
{
    int ok =
        c->state == PS_UP && PQsendQueryPrepared(c->pg, name, n, values, lengths, formats, 0) == 1;
    return sent(c, ok, cmd, 0);
}

int pgc_send_sync(pgc_conn_t *c, const pgc_cmd_t *cmd)
{
    int ok = c->state == PS_UP && c->o.pipeline && PQpipelineSync(c->pg) == 1;
    return sent(c, ok, cmd, 1);
}

int pgc_conn_flush(pgc_conn_t *c)
{
    if (c->state != PS_UP)
        return -1;
    char msg[400];
    if (c->broken_send) {
        pgc_conn_message(c->pg, "cannot send", msg, sizeof msg);
        conn_down(c, msg);
        return -1;
    }
    if (pgc_flush(c->pg, 1, &c->want_write, msg, sizeof msg) != 0) {
        conn_down(c, msg);
        return -1;
    }
    watch_events(c);
    return 0;
}

/* Hands results to the commands they answer, oldest first. */
static void deliver_results(pgc_conn_t *c)
{
    while (c->state == PS_UP && c->n > 0 && !PQisBusy(c->pg)) {
        struct pending *p = &c->ring[c->head];
        PGresult *r = PQgetResult(c->pg);
        if (p->sync) {
            if (!r)
                break; /* between commands: the sync's result is still to come */
            if (PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
                PQclear(r); /* nothing else can come before a sync: a protocol slip */
                conn_down(c, "unexpected result before a pipeline sync");
                return;
            }
        } else if (r) {
            /* keep the first error, else the last result */
            if (c->acc && !pgc_result_ok(c->acc)) {
                PQclear(r);
            } else {
                if (c->acc)
                    PQclear(c->acc);
                c->acc = r;
            }
            continue;
        } else {
            r = c->acc;
            c->acc = NULL;
        }
        pgc_cmd_t cmd = p->cmd;
        c->head = (c->head + 1) % c->cap;
        if (--c->n == 0 && c->cap > 1024) { /* after a huge group: give the memory back */
            free(c->ring);
            c->ring = NULL;
            c->cap = c->head = 0;
        }
        cmd.done(c, &cmd, r);
    }
}

void pgc_conn_io(pgc_conn_t *c, int readable, int writable)
{
    char msg[400];
    if (c->state != PS_UP)
        return;
    if (writable && c->want_write) {
        if (pgc_flush(c->pg, 1, &c->want_write, msg, sizeof msg) != 0) {
            conn_down(c, msg);
            return;
        }
        watch_events(c);
    }
    if (!readable)
        return;
    if (pgc_consume(c->pg, msg, sizeof msg) != 0) {
        conn_down(c, msg);
        return;
    }
    if (c->ev->input) {
        c->ev->input(c, c->owner);
        if (c->state != PS_UP)
            return;
    }
    if (c->n > 0)
        deliver_results(c);
    if (c->state != PS_UP)
        return;
    if (c->n == 0 && pgc_drain_idle(c->pg, msg, sizeof msg) != 0) {
        conn_down(c, msg); /* nothing asked: a notice, or the server saying goodbye */
        return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        pgc_conn_message(c->pg, "connection lost", msg, sizeof msg);
        conn_down(c, msg);
    }
}

int pgc_conn_check(pgc_conn_t *c)
{
    if (c->state != PS_UP)
        return -1;
    char msg[400];
    if (pgc_consume(c->pg, msg, sizeof msg) != 0 ||
        (c->n == 0 && pgc_drain_idle(c->pg, msg, sizeof msg) != 0)) {
        conn_down(c, msg);
        return -1;
    }
    return 0;
}

static void conn_poll_cb(uv_poll_t *h, int status, int events)
{
    pgc_conn_t *c = h->data;
    if (!c)
        return;
    char msg[400];
    if (c->state == PS_CONNECTING) {
        switch (pgc_connect_step(c->pg, &c->w, c->loop, conn_poll_cb, c, msg, sizeof msg)) {
        case PGC_WAIT: pgc_watch_ref(c->w, c->ref); return;
        case PGC_DONE: conn_up(c); return;
        default: conn_down(c, msg); return;
        }
    }
    if (status < 0) {
        conn_down(c, uv_strerror(status));
        return;
    }
    pgc_conn_io(c, (events & UV_READABLE) != 0, (events & UV_WRITABLE) != 0);
}
