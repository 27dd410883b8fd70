/* The libpq-on-libuv plumbing shared by the store's PostgreSQL backend and steward.pg: see
 * pg_conn.h. */
#include "pg_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pgc_watch {
    uv_poll_t h;
    uv_poll_cb cb;
};

static void watch_closed(uv_handle_t *h)
{
    free(h);
}

pgc_watch_t *pgc_watch_new(uv_loop_t *loop, PGconn *c, int events, uv_poll_cb cb, void *data)
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

void pgc_watch_set(pgc_watch_t *w, int events)
{
    if (w)
        uv_poll_start(&w->h, events, w->cb);
}

void pgc_watch_ref(pgc_watch_t *w, int ref)
{
    if (!w)
        return;
    if (ref)
        uv_ref((uv_handle_t *)&w->h);
    else
        uv_unref((uv_handle_t *)&w->h);
}

void pgc_watch_drop(pgc_watch_t **w)
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

PGconn *pgc_start(const char *conninfo, const char *app, const char *options, char *msg,
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

enum pgc_step pgc_connect_step(PGconn *c, pgc_watch_t **w, uv_loop_t *loop, uv_poll_cb cb,
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

int pgc_flush(PGconn *c, int sent, int *want_write, char *msg, size_t msglen)
{
    int f = sent ? PQflush(c) : -1;
    if (f < 0) {
        pgc_conn_message(c, "cannot send", msg, msglen);
        return -1;
    }
    *want_write = f == 1;
    return 0;
}

int pgc_consume(PGconn *c, char *msg, size_t msglen)
{
    if (!PQconsumeInput(c)) {
        pgc_conn_message(c, "connection lost", msg, msglen);
        return -1;
    }
    return 0;
}

enum pgc_step pgc_collect(PGconn *c, PGresult **acc, char *msg, size_t msglen)
{
    while (!PQisBusy(c)) {
        PGresult *r = PQgetResult(c);
        if (!r)
            return PGC_DONE;
        /* keep the first error, else the last result */
        if (*acc && !pgc_result_ok(*acc)) {
            PQclear(r);
        } else {
            if (*acc)
                PQclear(*acc);
            *acc = r;
        }
    }
    if (PQstatus(c) == CONNECTION_BAD) {
        pgc_conn_message(c, "connection lost", msg, msglen);
        if (*acc)
            PQclear(*acc);
        *acc = NULL;
        return PGC_FAIL;
    }
    return PGC_WAIT;
}

int pgc_drain_idle(PGconn *c, char *msg, size_t msglen)
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
