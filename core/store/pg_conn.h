/* libpq on the libuv loop, the parts every PostgreSQL client in steward shares (the store's
 * backend, core/store/store_pg.c, and steward.pg, bindings/pg.c): starting a connection, watching
 * its socket, stepping PQconnectPoll, pushing output after a PQsend*, collecting results, and
 * turning libpq's errors into one-line messages. Nothing here blocks. */
#ifndef STEWARD_PG_CONN_H
#define STEWARD_PG_CONN_H

#include <libpq-fe.h>
#include <stddef.h>
#include <uv.h>

/* Type OIDs (pg_type.h is a server header; these numbers are fixed). */
#define PGC_OID_BOOL        16
#define PGC_OID_BYTEA       17
#define PGC_OID_NAME        19
#define PGC_OID_INT8        20
#define PGC_OID_INT2        21
#define PGC_OID_INT4        23
#define PGC_OID_TEXT        25
#define PGC_OID_OID         26
#define PGC_OID_JSON        114
#define PGC_OID_FLOAT4      700
#define PGC_OID_FLOAT8      701
#define PGC_OID_DATE        1082
#define PGC_OID_TIMESTAMP   1114
#define PGC_OID_TIMESTAMPTZ 1184
#define PGC_OID_NUMERIC     1700
#define PGC_OID_JSONB       3802

/* A uv_poll on a connection's socket. Freed by its close callback, so its owner can drop it
 * at any time (libpq may close the socket and open another while connecting). */
typedef struct pgc_watch pgc_watch_t;

/* Watches PQsocket(c) for events, calling cb with the handle's data set to data; NULL when
 * the socket cannot be watched. */
pgc_watch_t *pgc_watch_new(uv_loop_t *loop, PGconn *c, int events, uv_poll_cb cb, void *data);
void pgc_watch_set(pgc_watch_t *w, int events);
/* Whether a watched socket keeps the loop alive. */
void pgc_watch_ref(pgc_watch_t *w, int ref);
/* Stops watching and closes the watcher (*w becomes NULL); call before PQfinish. */
void pgc_watch_drop(pgc_watch_t **w);

/* Starts a non-blocking connection to conninfo (a URI or keyword/value string; libpq's PG*
 * environment fills what it leaves out) with client_encoding UTF8 and the given
 * fallback_application_name, plus options (the "options" keyword: "-c name=value ...") when
 * not NULL; the user's own keywords win. NULL with msg set when it failed at once. */
PGconn *pgc_start(const char *conninfo, const char *app, const char *options, char *msg,
                  size_t msglen);

enum pgc_step { PGC_WAIT, PGC_DONE, PGC_FAIL };

/* Advances a connection attempt after its socket became ready (or right after pgc_start):
 * re-creates *w for what libpq waits for next. PGC_DONE: connected, non-blocking, *w watches
 * for reading. PGC_FAIL: msg set, *w dropped. */
enum pgc_step pgc_connect_step(PGconn *c, pgc_watch_t **w, uv_loop_t *loop, uv_poll_cb cb,
                               void *data, char *msg, size_t msglen);

/* After a PQsend* that returned sent: pushes the output. 0 with *want_write set when output
 * remains (watch for writing too), -1 when the connection broke (msg set). */
int pgc_flush(PGconn *c, int sent, int *want_write, char *msg, size_t msglen);

/* Reads what the socket has (PQconsumeInput); -1 when the connection broke (msg set). */
int pgc_consume(PGconn *c, char *msg, size_t msglen);

/* Collects the results of the command in flight into *acc (the first error, else the last
 * result). PGC_DONE when the command has completed (*acc is its result, possibly NULL; the
 * caller owns it), PGC_WAIT when more input is needed, PGC_FAIL when the connection broke
 * (msg set, *acc cleared). */
enum pgc_step pgc_collect(PGconn *c, PGresult **acc, char *msg, size_t msglen);

/* Discards what an idle connection received (a notice, the server's goodbye); -1 when the
 * connection is gone (msg set). */
int pgc_drain_idle(PGconn *c, char *msg, size_t msglen);

int pgc_result_ok(const PGresult *r);
/* "message (detail)" of a failed result, one line. */
void pgc_result_message(const PGresult *r, char *buf, size_t n);
/* libpq's last error on c (or fallback), one line. */
void pgc_conn_message(PGconn *c, const char *fallback, char *buf, size_t n);

#endif
