/* The one PostgreSQL connection engine of steward, shared by the store's backend
 * (core/store/store_pg.c) and steward.pg (bindings/pg.c): a libpq connection on the libuv loop
 * (pgc_conn_t) that connects and, if asked, reconnects with backoff, sends commands (one at a
 * time, or many in pipeline mode with sync points), matches each result back to the command
 * that asked for it, and tells its owner when the connection is up or down. Plus the small
 * pieces both need: one-line error messages and type OIDs. Nothing here blocks. */
#ifndef STEWARD_PG_CONN_H
#define STEWARD_PG_CONN_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
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

int pgc_result_ok(const PGresult *r);
/* "message (detail)" of a failed result, one line. */
void pgc_result_message(const PGresult *r, char *buf, size_t n);
/* libpq's last error on c (or fallback), one line. */
void pgc_conn_message(PGconn *c, const char *fallback, char *buf, size_t n);

/* ---- the connection object ---- */

typedef struct pgc_conn pgc_conn_t;

/* What a command was sent for, handed back with its result. The owner encodes its own
 * meaning in tag, a and b. */
typedef struct pgc_cmd pgc_cmd_t;
typedef void (*pgc_done_fn)(pgc_conn_t *c, const pgc_cmd_t *cmd, PGresult *res);
struct pgc_cmd {
    pgc_done_fn done; /* res: the first error, else the last result (the callee PQclears it);
                         a sync point's is PGRES_PIPELINE_SYNC */
    void *ud;
    int tag, a, b;
};

typedef struct pgc_events {
    /* Connected (again): non-blocking, in pipeline mode if asked, nothing in flight. */
    void (*up)(pgc_conn_t *c, void *owner);
    /* A connection attempt failed (connecting = 1) or the connection was lost: the commands
     * in flight are dropped without their callbacks, the owner fails the work they carried.
     * With reconnection on, the next attempt is already scheduled. */
    void (*down)(pgc_conn_t *c, void *owner, const char *msg, int connecting);
    /* Input was read (notifications are in PQnotifies); may be NULL. */
    void (*input)(pgc_conn_t *c, void *owner);
} pgc_events_t;

typedef struct pgc_opts {
    const char *conninfo, *app, *options; /* as for pgc_start */
    int pipeline;                         /* pipeline mode: many commands in flight */
    double connect_timeout;               /* seconds for one connection attempt */
    int reconnect;                        /* reconnect after a loss or a failed attempt */
    uint64_t backoff_min_ms, backoff_max_ms;
} pgc_opts_t;

/* A connection (not yet connecting); NULL when out of memory. */
pgc_conn_t *pgc_conn_new(uv_loop_t *loop, const pgc_opts_t *o, const pgc_events_t *ev, void *owner);
/* Starts connecting; -1 with msg set when libpq refused at once (no callback then). */
int pgc_conn_connect(pgc_conn_t *c, char *msg, size_t msglen);
/* Disconnects and frees the connection (later, from its handles' close callbacks); commands in
 * flight are dropped without their callbacks. Safe inside a callback of c. */
void pgc_conn_close(pgc_conn_t *c);
/* Drops the connection as lost (an owner's own check failed): down is called. */
void pgc_conn_fail(pgc_conn_t *c, const char *msg);
/* Stops reconnecting (a closing owner); a scheduled attempt is cancelled. */
void pgc_conn_stop_reconnect(pgc_conn_t *c);

int pgc_conn_is_up(const pgc_conn_t *c);
PGconn *pgc_conn_pg(const pgc_conn_t *c);
/* Commands sent whose results have not all come back (sync points included). */
size_t pgc_conn_in_flight(const pgc_conn_t *c);
/* Whether the connection's socket keeps the loop alive (its work does; an idle one not). */
void pgc_conn_ref(pgc_conn_t *c, int ref);

/* Sending. Each returns 0, or -1 when libpq refused (the connection is broken: the next
 * pgc_conn_flush reports it through down). Every command accepted gets exactly one done call,
 * unless the connection goes down first. Outside pipeline mode one command at a time. */
int pgc_send_query(pgc_conn_t *c, const char *sql, int n, const Oid *types,
                   const char *const *values, const int *lengths, const int *formats,
                   const pgc_cmd_t *cmd);
int pgc_send_prepare(pgc_conn_t *c, const char *name, const char *sql, int n, const Oid *types,
                     const pgc_cmd_t *cmd);
int pgc_send_prepared(pgc_conn_t *c, const char *name, int n, const char *const *values,
                      const int *lengths, const int *formats, const pgc_cmd_t *cmd);
/* Pipeline mode: a sync point (ends the pipeline's implicit transaction; after an error the
 * server skips the commands up to it, their results PGRES_PIPELINE_ABORTED). */
int pgc_send_sync(pgc_conn_t *c, const pgc_cmd_t *cmd);
/* Pushes what was sent; -1 when the connection broke (down has been called). Call it once
 * after a batch of sends, as the owner's last step (down may run inside it). */
int pgc_conn_flush(pgc_conn_t *c);

/* Reads and handles what the socket has: for a poll(2) loop (close_now). */
void pgc_conn_io(pgc_conn_t *c, int readable, int writable);
int pgc_conn_socket(const pgc_conn_t *c);
int pgc_conn_wants_write(const pgc_conn_t *c);
/* An idle connection about to be used: reads its socket so that one the server closed is
 * noticed now (down is called); -1 then. */
int pgc_conn_check(pgc_conn_t *c);

#endif
