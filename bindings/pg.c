/* steward.pg.native: clients for other PostgreSQL databases (scripts/steward/pg.lua is the
 * user-facing module). A connection runs one command at a time; further calls queue behind
 * it. A pool leases idle connections to callers, opening more up to its size. The connection
 * itself is the one PostgreSQL engine (core/store/pg_conn.c: non-blocking libpq on the loop);
 * this file keeps the Lua side: results turned into Lua values (except json and timestamps,
 * which pg.lua converts), the pool, LISTEN/NOTIFY. Work that ends tasks without I/O (a broken or
 * closed connection, a notification already queued) runs from a per-connection idle handle, so no
 * task is resumed from inside another's call. */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bindings.h"
#include "duration.h"
#include "pg_conn.h"
#include "task.h"

#define DB_MT           "steward.pg.db"
#define POOL_MT         "steward.pg.pool"
#define CONNECT_TIMEOUT 10.0
#define WAIT_TIMEOUT    5.0
#define MAX_POOL        256
#define CODE_BROKEN     "08006"
#define CODE_CLOSED     "08003"
#define CODE_CONNECT    "08001"

enum cstate { S_CONNECTING, S_IDLE, S_BUSY, S_BROKEN, S_CLOSED };
enum opkind { OP_CONNECT, OP_QUERY, OP_ROLLBACK };

struct conn;
struct pool;

struct op { /* a command for a connection, or the wait for it to connect */
    task_wait_t wait;
    struct op *next;
    struct conn *c;
    enum opkind kind;
    int nparams;
    char *sql;
    char **values;
};

struct note {
    struct note *next;
    int pid;
    char *channel, *payload; /* in the same allocation */
};

struct nwait { /* a task waiting in db:notification */
    task_wait_t wait;
    struct nwait *next;
    struct conn *c;
    uv_timer_t timer;
};

struct dbud {
    struct conn *c; /* NULL once closed (or, for a lease, returned) */
};

struct conn {
    uv_loop_t *loop;
    pgc_conn_t *pc; /* NULL once broken or closed */
    enum cstate state;
    int closing;
    uv_idle_t kick;
    struct op *cur, *qhead, *qtail;
    struct note *nhead, *ntail;
    struct nwait *whead, *wtail;
    int pid;
    char err[512];
    char code[8];
    struct pool *pool; /* the pool it belongs to (a reference), or NULL */
    int leased;
    struct dbud *ud;
};

struct acq { /* a task waiting for a pool's connection */
    task_wait_t wait;
    struct acq *next;
    struct pool *p;
    uv_timer_t timer;
};

struct pool {
    uv_loop_t *loop;
    char *dsn;
    int size;
    double wait_timeout, connect_timeout;
    struct conn **conns;
    int n;
    struct acq *whead, *wtail;
    uv_idle_t kick;
    int closed, refs;
    char err[512];
};

struct poolud {
    struct pool *p;
};

static int null_ref = LUA_NOREF;

static void conn_kick(struct conn *c);
static void conn_close(struct conn *c);
static void conn_broken(struct conn *c, const char *msg, const char *code);
static void pool_put(struct conn *c);
static void pool_kick(struct pool *p);
static void pool_remove(struct conn *c);
static void pool_unref(struct pool *p);

static uint64_t to_ms(double sec)
{
    double ms = ceil(sec * 1000.0);
    return ms > 9e15 ? (uint64_t)9e15 : (uint64_t)ms;
}

static void op_free(struct op *op)
{
    if (!op)
        return;
    for (int i = 0; op->values && i < op->nparams; i++)
        free(op->values[i]);
    free(op->values);
    free(op->sql);
    free(op);
}

/* ---- connection lifetime ---- */

/* A connection with work (or a waiter) keeps the loop running; an idle one does not. */
static void conn_ref(struct conn *c)
{
    if (c->pc)
        pgc_conn_ref(c->pc, c->state == S_CONNECTING || c->cur || c->qhead || c->whead);
}

static PGconn *conn_pg(const struct conn *c)
{
    return c->pc ? pgc_conn_pg(c->pc) : NULL;
}

static void conn_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct pool *p = c->pool;
    free(c);
    if (p)
        pool_unref(p);
}

static void drop_pg(struct conn *c)
{
    if (c->pc)
        pgc_conn_close(c->pc);
    c->pc = NULL;
}

static void conn_kick_cb(uv_idle_t *h);
static void connect_done(struct conn *c, const char *err);
static void collect_notes(struct conn *c);

static void on_up(pgc_conn_t *pc, void *owner)
{
    (void)pc;
    connect_done(owner, NULL);
}

static void on_down(pgc_conn_t *pc, void *owner, const char *msg, int connecting)
{
    (void)pc;
    struct conn *c = owner;
    if (connecting || c->state == S_CONNECTING)
        connect_done(c, msg);
    else
        conn_broken(c, msg, CODE_BROKEN);
}

static void on_input(pgc_conn_t *pc, void *owner)
{
    (void)pc;
    collect_notes(owner);
}

static const pgc_events_t conn_events = {on_up, on_down, on_input};

/* Starts connecting; NULL with msg set when libpq refused at once. */
static struct conn *conn_new(uv_loop_t *loop, const char *dsn, double timeout, char *msg,
                             size_t msglen)
{
    /* ISO dates are what the timestamp conversion reads; a DSN's own options win. */
    pgc_opts_t o = {.conninfo = dsn,
                    .app = "steward",
                    .options = "-c datestyle=ISO",
                    .connect_timeout = (double)to_ms(timeout) / 1000.0};
    struct conn *c = calloc(1, sizeof *c);
    if (!c || !(c->pc = pgc_conn_new(loop, &o, &conn_events, c))) {
        free(c);
        snprintf(msg, msglen, "out of memory");
        return NULL;
    }
    c->loop = loop;
    c->state = S_CONNECTING;
    pgc_conn_ref(c->pc, 1);
    if (pgc_conn_connect(c->pc, msg, msglen) != 0) {
        pgc_conn_close(c->pc);
        free(c);
        return NULL;
    }
    uv_idle_init(loop, &c->kick);
    c->kick.data = c;
    return c;
}

static void conn_kick(struct conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->kick))
        uv_idle_start(&c->kick, conn_kick_cb);
}

/* Ends the connection: its waiters fail from the kick handler, which then closes it. */
static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->state = S_CLOSED;
    if (c->ud)
        c->ud->c = NULL;
    c->ud = NULL;
    c->leased = 0;
    drop_pg(c);
    snprintf(c->err, sizeof c->err, "SQLSTATE %s: connection closed", CODE_CLOSED);
    snprintf(c->code, sizeof c->code, "%s", CODE_CLOSED);
    conn_kick(c);
}

static void conn_broken(struct conn *c, const char *msg, const char *code)
{
    if (c->closing || c->state == S_BROKEN)
        return;
    c->state = S_BROKEN;
    drop_pg(c);
    snprintf(c->code, sizeof c->code, "%s", code ? code : CODE_BROKEN);
    snprintf(c->err, sizeof c->err, "SQLSTATE %s: connection lost: %s", c->code, msg);
    if (c->pool && !c->leased) {
        pool_remove(c);
        conn_close(c);
        return;
    }
    conn_kick(c);
}

/* Queues a ROLLBACK ahead of everything: a cancelled task may have left a transaction open
 * (or aborted) that the next caller must not inherit. */
static void queue_rollback(struct conn *c)
{
    struct op *op = calloc(1, sizeof *op);
    if (!op) {
        conn_broken(c, "out of memory", CODE_BROKEN);
        return;
    }
    op->c = c;
    op->kind = OP_ROLLBACK;
    op->next = c->qhead;
    c->qhead = op;
    if (!c->qtail)
        c->qtail = op;
    conn_kick(c);
}

/* ---- results into Lua values ---- */

/* A numeric with at most 15 significant digits survives the trip through a double; longer
 * ones (and NaN) stay strings so no digit is lost. */
static int numeric_fits(const char *s)
{
    int digits = 0, seen = 0;
    for (const char *p = s; *p; p++) {
        if (*p >= '0' && *p <= '9') {
            if (*p != '0' || seen) {
                seen = 1;
                digits++;
            }
        } else if (*p != '.' && *p != '-' && *p != '+') {
            return 0;
        }
    }
    /* trailing zeros after the point are not significant */
    const char *dot = strchr(s, '.');
    if (dot)
        for (const char *p = s + strlen(s) - 1; p > dot && *p == '0' && digits > 0; p--)
            digits--;
    return digits <= 15;
}

static void push_value(lua_State *T, const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col)) {
        lua_rawgeti(T, LUA_REGISTRYINDEX, null_ref);
        return;
    }
    const char *s = PQgetvalue(res, row, col);
    size_t n = (size_t)PQgetlength(res, row, col);
    switch (PQftype(res, col)) {
    case PGC_OID_INT2:
    case PGC_OID_INT4:
    case PGC_OID_OID:
    case PGC_OID_FLOAT4:
    case PGC_OID_FLOAT8: lua_pushnumber(T, strtod(s, NULL)); return;
    case PGC_OID_INT8: {
        long long v = strtoll(s, NULL, 10);
        if (v > (1LL << 53) || v < -(1LL << 53))
            lua_pushlstring(T, s, n);
        else
            lua_pushnumber(T, (double)v);
        return;
    }
    case PGC_OID_NUMERIC:
        if (numeric_fits(s))
            lua_pushnumber(T, strtod(s, NULL));
        else
            lua_pushlstring(T, s, n);
        return;
    case PGC_OID_BOOL: lua_pushboolean(T, s[0] == 't'); return;
    case PGC_OID_BYTEA: {
        size_t bn = 0;
        unsigned char *b = PQunescapeBytea((const unsigned char *)s, &bn);
        if (b) {
            lua_pushlstring(T, (const char *)b, bn);
            PQfreemem(b);
        } else {
            lua_pushlstring(T, s, n);
        }
        return;
    }
    default: lua_pushlstring(T, s, n);
    }
}

/* names of the columns of res whose type is one of oids (n of them), or nil */
static void push_columns_of(lua_State *T, const PGresult *res, const Oid *oids, int n)
{
    int found = 0;
    for (int c = 0; c < PQnfields(res); c++) {
        Oid t = PQftype(res, c);
        int hit = 0;
        for (int i = 0; i < n; i++)
            hit |= t == oids[i];
        if (!hit)
            continue;
        if (found++ == 0)
            lua_newtable(T);
        lua_pushstring(T, PQfname(res, c));
        lua_rawseti(T, -2, found);
    }
    if (!found)
        lua_pushnil(T);
}

/* rows (a list of row tables, with n, command, affected, columns), then the names of json
 * columns for pg.lua to decode, or nil, then those of date and timestamp columns (ISO text)
 * for pg.lua to turn into seconds since the epoch, or nil. */
static int push_rows(lua_State *T, const PGresult *res)
{
    int nrows = PQntuples(res), ncols = PQnfields(res);
    lua_createtable(T, nrows, 4);
    int rows = lua_gettop(T);
    lua_createtable(T, ncols, 0);
    for (int c = 0; c < ncols; c++) {
        lua_pushstring(T, PQfname(res, c));
        lua_rawseti(T, -2, c + 1);
    }
    lua_setfield(T, rows, "columns");
    for (int r = 0; r < nrows; r++) {
        lua_createtable(T, 0, ncols);
        for (int c = 0; c < ncols; c++) {
            push_value(T, res, r, c);
            lua_setfield(T, -2, PQfname(res, c));
        }
        lua_rawseti(T, rows, r + 1);
    }
    lua_pushinteger(T, nrows);
    lua_setfield(T, rows, "n");
    lua_pushstring(T, PQcmdStatus((PGresult *)res));
    lua_setfield(T, rows, "command");
    lua_pushnumber(T, strtod(PQcmdTuples((PGresult *)res), NULL));
    lua_setfield(T, rows, "affected");
    static const Oid json[] = {PGC_OID_JSON, PGC_OID_JSONB};
    static const Oid times[] = {PGC_OID_DATE, PGC_OID_TIMESTAMP, PGC_OID_TIMESTAMPTZ};
    push_columns_of(T, res, json, 2);
    push_columns_of(T, res, times, 3);
    return 3;
}

static int push_error(lua_State *T, const char *msg, const char *code)
{
    lua_pushnil(T);
    lua_pushstring(T, msg);
    lua_pushstring(T, code);
    return 3;
}

static int push_result_error(lua_State *T, const PGresult *res)
{
    char msg[600], full[700];
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!st)
        st = "XX000";
    pgc_result_message(res, msg, sizeof msg);
    snprintf(full, sizeof full, "SQLSTATE %s: %s", st, msg);
    return push_error(T, full, st);
}

/* ---- commands ---- */

static void on_op_done(pgc_conn_t *pc, const pgc_cmd_t *cmd, PGresult *res);

static void start_next(struct conn *c)
{
    struct op *op = c->qhead;
    c->qhead = op->next;
    if (!c->qhead)
        c->qtail = NULL;
    op->next = NULL;
    c->cur = op;
    c->state = S_BUSY;
    pgc_cmd_t cmd = {on_op_done, c, 0, 0, 0};
    if (op->kind == OP_ROLLBACK)
        pgc_send_query(c->pc, "ROLLBACK", 0, NULL, NULL, NULL, NULL, &cmd);
    else
        pgc_send_query(c->pc, op->sql, op->nparams, NULL, (const char *const *)op->values, NULL,
                       NULL, &cmd);
    conn_ref(c);
    pgc_conn_flush(c->pc); /* last: a broken connection calls conn_broken from inside */
}

/* The command in flight completed with res (NULL: no result). */
static void op_done(struct conn *c, PGresult *res)
{
    struct op *op = c->cur;
    c->cur = NULL;
    c->state = S_IDLE;
    task_t *t = op->kind == OP_ROLLBACK ? NULL : task_wake(&op->wait);
    int bad = PQstatus(conn_pg(c)) == CONNECTION_BAD;
    if (!t && !bad && op->kind == OP_QUERY && PQtransactionStatus(conn_pg(c)) != PQTRANS_IDLE &&
        (!c->pool || !c->leased))
        queue_rollback(c); /* the task that opened the transaction is gone */
    op_free(op);
    char msg[400];
    if (bad) {
        pgc_conn_message(conn_pg(c), "connection lost", msg, sizeof msg);
        conn_broken(c, msg, CODE_BROKEN);
    } else if (c->qhead) {
        conn_kick(c);
    } else if (c->pool && !c->leased) {
        pool_put(c);
    }
    if (!c->closing && c->state != S_BROKEN)
        conn_ref(c);
    if (!t) {
        if (res)
            PQclear(res);
        return;
    }
    lua_State *T = task_state(t);
    int n;
    if (res && pgc_result_ok(res))
        n = push_rows(T, res);
    else if (res || !bad)
        n = push_result_error(T, res);
    else
        n = push_error(T, c->err, c->code);
    if (res)
        PQclear(res);
    task_resume(t, n);
}

static void collect_notes(struct conn *c)
{
    PGnotify *nt;
    while (c->pc && (nt = PQnotifies(conn_pg(c)))) {
        size_t cl = strlen(nt->relname), pl = strlen(nt->extra);
        struct note *n = malloc(sizeof *n + cl + pl + 2);
        if (n) {
            n->next = NULL;
            n->pid = nt->be_pid;
            n->channel = (char *)(n + 1);
            n->payload = n->channel + cl + 1;
            memcpy(n->channel, nt->relname, cl + 1);
            memcpy(n->payload, nt->extra, pl + 1);
            if (c->ntail)
                c->ntail->next = n;
            else
                c->nhead = n;
            c->ntail = n;
        }
        PQfreemem(nt);
    }
    if (c->nhead && c->whead)
        conn_kick(c);
}

/* A command's result (the engine calls it). */
static void on_op_done(pgc_conn_t *pc, const pgc_cmd_t *cmd, PGresult *res)
{
    (void)pc;
    struct conn *c = cmd->ud;
    collect_notes(c);
    op_done(c, res);
}

static int push_db(lua_State *T, struct conn *c)
{
    struct dbud *ud = lua_newuserdata(T, sizeof *ud);
    ud->c = c;
    c->ud = ud;
    luaL_getmetatable(T, DB_MT);
    lua_setmetatable(T, -2);
    return 1;
}

/* ---- the kick handler: ends tasks without I/O, starts the next command ---- */

static void nwait_finish(struct nwait *nw);

/* Fails one waiting task of a broken or closed connection; 1 if there was one. */
static int fail_one(struct conn *c)
{
    for (;;) {
        struct op *op = c->cur;
        if (op)
            c->cur = NULL;
        else if ((op = c->qhead)) {
            c->qhead = op->next;
            if (!c->qhead)
                c->qtail = NULL;
        }
        if (!op)
            break;
        task_t *t = op->kind == OP_ROLLBACK ? NULL : task_wake(&op->wait);
        int connecting = op->kind == OP_CONNECT;
        op_free(op);
        if (!t)
            continue;
        lua_State *T = task_state(t);
        if (connecting) {
            char m[600];
            snprintf(m, sizeof m, "pg.connect: %s", c->err);
            conn_close(c); /* nobody else holds a connection that never opened */
            task_resume(t, push_error(T, m, CODE_CONNECT));
        } else {
            task_resume(t, push_error(T, c->err, c->code));
        }
        return 1;
    }
    struct nwait *nw = c->whead;
    if (!nw)
        return 0;
    c->whead = nw->next;
    if (!c->whead)
        c->wtail = NULL;
    task_t *t = task_wake(&nw->wait);
    nwait_finish(nw);
    if (t)
        task_resume(t, push_error(task_state(t), c->err, c->code));
    return 1;
}

static void push_note(lua_State *T, const struct note *n)
{
    lua_createtable(T, 0, 3);
    lua_pushstring(T, n->channel);
    lua_setfield(T, -2, "channel");
    lua_pushstring(T, n->payload);
    lua_setfield(T, -2, "payload");
    lua_pushinteger(T, n->pid);
    lua_setfield(T, -2, "pid");
}

static struct note *pop_note(struct conn *c)
{
    struct note *n = c->nhead;
    if (n) {
        c->nhead = n->next;
        if (!c->nhead)
            c->ntail = NULL;
    }
    return n;
}

static void conn_kick_cb(uv_idle_t *h)
{
    struct conn *c = h->data;
    uv_idle_stop(h);
    for (;;) { /* re-checked after each resume: the task may have closed the connection */
        if (c->closing || c->state == S_BROKEN) {
            if (fail_one(c))
                continue;
        } else if (c->whead && c->nhead) {
            struct nwait *nw = c->whead;
            c->whead = nw->next;
            if (!c->whead)
                c->wtail = NULL;
            struct note *n = pop_note(c);
            task_t *t = task_wake(&nw->wait);
            nwait_finish(nw);
            conn_ref(c);
            if (t) {
                push_note(task_state(t), n);
                free(n);
                task_resume(t, 1);
            } else {
                free(n);
            }
            continue;
        }
        break;
    }
    if (c->closing) {
        if (uv_is_closing((uv_handle_t *)&c->kick))
            return;
        struct note *n;
        while ((n = pop_note(c)))
            free(n);
        uv_close((uv_handle_t *)&c->kick, conn_handle_closed);
        return;
    }
    if (c->state == S_IDLE && !c->cur && c->qhead)
        start_next(c);
}

/* ---- connecting ---- */

static void connect_done(struct conn *c, const char *err)
{
    if (err) {
        struct pool *p = c->pool;
        snprintf(c->err, sizeof c->err, "%s", err);
        snprintf(c->code, sizeof c->code, "%s", CODE_CONNECT);
        c->state = S_BROKEN;
        drop_pg(c);
        if (p) {
            snprintf(p->err, sizeof p->err, "%s", err);
            pool_remove(c);
            conn_close(c);
            pool_kick(p);
        } else {
            conn_kick(c); /* fails the pg.connect, then the owner-less connection closes */
        }
        return;
    }
    c->state = S_IDLE;
    c->pid = PQbackendPID(conn_pg(c));
    struct op *op = c->cur;
    c->cur = NULL;
    conn_ref(c);
    if (c->pool) {
        pool_put(c);
        return;
    }
    task_t *t = op ? task_wake(&op->wait) : NULL;
    op_free(op);
    if (!t) {
        conn_close(c); /* the task that asked for it is gone */
        return;
    }
    task_resume(t, push_db(task_state(t), c));
}

static void op_cancel(task_wait_t *w);

static int l_pg_connect(lua_State *L)
{
    const char *dsn = luaL_checkstring(L, 1);
    double timeout = CONNECT_TIMEOUT;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "connect_timeout");
        timeout = duration_opt(L, -1, "pg.connect: connect_timeout", CONNECT_TIMEOUT);
        lua_pop(L, 1);
    }
    task_t *t = task_check(L, "pg.connect");
    struct op *op = calloc(1, sizeof *op);
    if (!op)
        return luaL_error(L, "pg.connect: out of memory");
    char msg[512], full[600];
    struct conn *c = conn_new(task_loop(), dsn, timeout, msg, sizeof msg);
    if (!c) {
        free(op);
        snprintf(full, sizeof full, "pg.connect: %s", msg);
        return push_error(L, full, CODE_CONNECT);
    }
    op->c = c;
    op->kind = OP_CONNECT;
    c->cur = op;
    conn_ref(c);
    return task_suspend(L, t, &op->wait, op_cancel);
}

/* ---- queries ---- */

struct cancel_req {
    uv_work_t w;
    PGcancel *pc;
};

static void cancel_work(uv_work_t *w)
{
    struct cancel_req *r = w->data;
    char buf[256];
    PQcancel(r->pc, buf, sizeof buf); /* blocking, hence the thread pool */
}

static void cancel_after(uv_work_t *w, int status)
{
    (void)status;
    struct cancel_req *r = w->data;
    PQfreeCancel(r->pc);
    free(r);
}

/* Asks the server to stop the command in flight; its results are drained and dropped. */
static void request_cancel(struct conn *c)
{
    struct cancel_req *r = calloc(1, sizeof *r);
    if (!r || !(r->pc = PQgetCancel(conn_pg(c)))) {
        free(r);
        return;
    }
    r->w.data = r;
    if (uv_queue_work(c->loop, &r->w, cancel_work, cancel_after) != 0) {
        PQfreeCancel(r->pc);
        free(r);
    }
}

/* A lease whose task is gone goes back to its pool (once its command has drained). */
static void lease_abandon(struct conn *c)
{
    if (!c->pool || !c->leased)
        return;
    if (c->ud)
        c->ud->c = NULL;
    c->ud = NULL;
    pool_put(c);
}

static void op_cancel(task_wait_t *w)
{
    struct op *op = (struct op *)w;
    struct conn *c = op->c;
    if (op->kind == OP_CONNECT) {
        if (!c->pool) {
            c->cur = NULL;
            op_free(op);
            conn_close(c);
        }
        return;
    }
    if (op == c->cur) {
        if (c->pc)
            request_cancel(c);
        lease_abandon(c);
        return; /* op_done frees it */
    }
    struct op **pp = &c->qhead, *prev = NULL;
    while (*pp && *pp != op) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = op->next;
        if (c->qtail == op)
            c->qtail = prev;
    }
    op_free(op);
    conn_ref(c);
    lease_abandon(c);
}

static struct conn *check_db(lua_State *L, const char *fname)
{
    struct dbud *ud = luaL_checkudata(L, 1, DB_MT);
    if (!ud->c)
        luaL_error(L, "%s: the connection is closed", fname);
    return ud->c;
}

static int l_db_query(lua_State *L)
{
    struct conn *c = check_db(L, "db:query");
    size_t sql_len;
    const char *sql = lua_tolstring(L, 2, &sql_len);
    if (lua_type(L, 2) != LUA_TSTRING)
        return luaL_error(L, "db:query: sql: string expected, got %s", luaL_typename(L, 2));
    int n = lua_gettop(L) - 2;
    if (n > 65535)
        return luaL_error(L, "db:query: too many parameters (%d)", n);
    for (int i = 0; i < n; i++) {
        int ty = lua_type(L, 3 + i);
        if (ty != LUA_TNIL && ty != LUA_TBOOLEAN && ty != LUA_TNUMBER && ty != LUA_TSTRING)
            return luaL_error(L,
                              "db:query: parameter %d: nil, boolean, number, string or table "
                              "expected, got %s",
                              i + 1, luaL_typename(L, 3 + i));
        if (ty == LUA_TSTRING) {
            size_t len;
            const char *s = lua_tolstring(L, 3 + i, &len);
            if (memchr(s, 0, len))
                return luaL_error(L,
                                  "db:query: parameter %d: a string with a NUL byte "
                                  "(PostgreSQL text cannot hold one)",
                                  i + 1);
        }
    }
    task_t *t = task_check(L, "db:query");
    if (c->state == S_BROKEN)
        return push_error(L, c->err, c->code);
    struct op *op = calloc(1, sizeof *op);
    int ok = op && (op->sql = malloc(sql_len + 1)) &&
             (op->values = calloc((size_t)(n ? n : 1), sizeof *op->values));
    for (int i = 0; ok && i < n; i++) {
        op->nparams = i + 1;
        char num[40];
        const char *v = NULL;
        switch (lua_type(L, 3 + i)) {
        case LUA_TBOOLEAN: v = lua_toboolean(L, 3 + i) ? "true" : "false"; break;
        case LUA_TNUMBER: {
            double d = lua_tonumber(L, 3 + i);
            if (isnan(d))
                v = "NaN";
            else if (isinf(d))
                v = d < 0 ? "-Infinity" : "Infinity";
            else if (d == floor(d) && fabs(d) < 9.2e18)
                snprintf(num, sizeof num, "%lld", (long long)d), v = num;
            else
                snprintf(num, sizeof num, "%.17g", d), v = num;
            break;
        }
        case LUA_TSTRING: v = lua_tostring(L, 3 + i); break;
        default: break;
        }
        if (v)
            ok = (op->values[i] = strdup(v)) != NULL;
    }
    if (!ok) {
        op_free(op);
        return luaL_error(L, "db:query: out of memory");
    }
    memcpy(op->sql, sql, sql_len + 1);
    op->nparams = n;
    op->c = c;
    op->kind = OP_QUERY;
    if (c->qtail)
        c->qtail->next = op;
    else
        c->qhead = op;
    c->qtail = op;
    conn_ref(c);
    conn_kick(c);
    return task_suspend(L, t, &op->wait, op_cancel);
}

/* ---- notifications ---- */

static void nwait_closed(uv_handle_t *h)
{
    free(h->data);
}

static void nwait_finish(struct nwait *nw)
{
    uv_close((uv_handle_t *)&nw->timer, nwait_closed);
}

static void nwait_unlink(struct nwait *nw)
{
    struct conn *c = nw->c;
    struct nwait **pp = &c->whead, *prev = NULL;
    while (*pp && *pp != nw) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = nw->next;
        if (c->wtail == nw)
            c->wtail = prev;
    }
    conn_ref(c);
}

static void on_nwait_timer(uv_timer_t *h)
{
    struct nwait *nw = h->data;
    nwait_unlink(nw);
    task_t *t = task_wake(&nw->wait);
    nwait_finish(nw);
    if (t) {
        lua_State *T = task_state(t);
        lua_pushnil(T);
        lua_pushliteral(T, "timeout");
        task_resume(t, 2);
    }
}

static void nwait_cancel(task_wait_t *w)
{
    struct nwait *nw = (struct nwait *)w;
    nwait_unlink(nw);
    nwait_finish(nw);
}

static int l_db_notification(lua_State *L)
{
    struct conn *c = check_db(L, "db:notification");
    double timeout = duration_opt(L, 2, "db:notification: timeout", -1);
    task_t *t = task_check(L, "db:notification");
    struct note *n = c->whead ? NULL : pop_note(c);
    if (n) { /* already here: no need to wait */
        push_note(L, n);
        free(n);
        return 1;
    }
    if (c->state == S_BROKEN)
        return push_error(L, c->err, c->code);
    struct nwait *nw = calloc(1, sizeof *nw);
    if (!nw)
        return luaL_error(L, "db:notification: out of memory");
    nw->c = c;
    uv_timer_init(c->loop, &nw->timer);
    nw->timer.data = nw;
    if (timeout >= 0) {
        uv_update_time(c->loop);
        uv_timer_start(&nw->timer, on_nwait_timer, to_ms(timeout), 0);
    }
    if (c->wtail)
        c->wtail->next = nw;
    else
        c->whead = nw;
    c->wtail = nw;
    conn_ref(c);
    if (c->nhead)
        conn_kick(c);
    return task_suspend(L, t, &nw->wait, nwait_cancel);
}

/* ---- the rest of a connection's methods ---- */

static int l_db_close(lua_State *L)
{
    struct dbud *ud = luaL_checkudata(L, 1, DB_MT);
    struct conn *c = ud->c;
    if (!c)
        return 0;
    ud->c = NULL;
    c->ud = NULL;
    if (c->pool)
        pool_put(c);
    else
        conn_close(c);
    return 0;
}

static int l_db_status(lua_State *L)
{
    struct dbud *ud = luaL_checkudata(L, 1, DB_MT);
    if (!ud->c)
        lua_pushliteral(L, "closed");
    else if (ud->c->state == S_BROKEN)
        lua_pushliteral(L, "broken");
    else
        lua_pushliteral(L, "ok");
    return 1;
}

static int l_db_backend_pid(lua_State *L)
{
    struct dbud *ud = luaL_checkudata(L, 1, DB_MT);
    if (!ud->c)
        lua_pushnil(L);
    else
        lua_pushinteger(L, ud->c->pid);
    return 1;
}

static int l_db_tostring(lua_State *L)
{
    struct dbud *ud = luaL_checkudata(L, 1, DB_MT);
    lua_pushfstring(L, "pg.db (%s, pid %d)",
                    !ud->c                     ? "closed"
                    : ud->c->state == S_BROKEN ? "broken"
                                               : "ok",
                    ud->c ? ud->c->pid : 0);
    return 1;
}

/* ---- pools ---- */

static void pool_handle_closed(uv_handle_t *h)
{
    struct pool *p = h->data;
    free(p->conns);
    free(p->dsn);
    free(p);
}

static void pool_unref(struct pool *p)
{
    if (--p->refs == 0)
        uv_close((uv_handle_t *)&p->kick, pool_handle_closed);
}

static void pool_remove(struct conn *c)
{
    struct pool *p = c->pool;
    for (int i = 0; i < p->n; i++)
        if (p->conns[i] == c) {
            p->conns[i] = p->conns[--p->n];
            return;
        }
}

static void pool_kick_cb(uv_idle_t *h);

static void pool_kick(struct pool *p)
{
    if (p->refs > 0)
        uv_idle_start(&p->kick, pool_kick_cb);
}

/* A leased connection comes back (or a new one is ready): keep it for the next caller, unless
 * it is broken, the pool is closed, or a transaction is still open on it. */
static void pool_put(struct conn *c)
{
    struct pool *p = c->pool;
    c->leased = 0;
    if (c->closing)
        return;
    if (c->state == S_BROKEN || p->closed) {
        pool_remove(c);
        conn_close(c);
        pool_kick(p);
        return;
    }
    if (c->cur || c->qhead)
        return; /* op_done puts it back once its work has drained */
    if (c->state == S_IDLE && PQtransactionStatus(conn_pg(c)) != PQTRANS_IDLE) {
        queue_rollback(c);
        return;
    }
    pool_kick(p);
}

/* An idle connection the pool can lease: its socket is read first, so one the server closed
 * while it sat idle is noticed here, not by the caller's query. */
static struct conn *pool_free_conn(struct pool *p)
{
    for (int i = 0; i < p->n; i++) {
        struct conn *c = p->conns[i];
        if (c->state != S_IDLE || c->leased || c->cur || c->qhead)
            continue;
        if (pgc_conn_check(c->pc) != 0) { /* conn_broken has removed it from the pool */
            i = -1;
            continue;
        }
        return c;
    }
    return NULL;
}

static int pool_connecting(const struct pool *p)
{
    int n = 0;
    for (int i = 0; i < p->n; i++)
        n += p->conns[i]->state == S_CONNECTING;
    return n;
}

static int pool_waiters(const struct pool *p)
{
    int n = 0;
    for (const struct acq *a = p->whead; a; a = a->next)
        n++;
    return n;
}

static int pool_grow(struct pool *p, char *msg, size_t msglen)
{
    struct conn *c = conn_new(p->loop, p->dsn, p->connect_timeout, msg, msglen);
    if (!c)
        return -1;
    c->pool = p;
    p->refs++;
    p->conns[p->n++] = c;
    conn_ref(c);
    return 0;
}

static void acq_closed(uv_handle_t *h)
{
    free(h->data);
}

static struct acq *pool_pop_waiter(struct pool *p)
{
    struct acq *a = p->whead;
    if (a) {
        p->whead = a->next;
        if (!p->whead)
            p->wtail = NULL;
        a->next = NULL;
    }
    return a;
}

static int push_lease(lua_State *T, struct conn *c)
{
    c->leased = 1;
    return push_db(T, c);
}

static void pool_kick_cb(uv_idle_t *h)
{
    struct pool *p = h->data;
    uv_idle_stop(h);
    while (p->whead) {
        char msg[600];
        const char *fail = NULL;
        struct conn *c = NULL;
        if (p->closed) {
            fail = "pg pool: the pool is closed";
        } else if (!(c = pool_free_conn(p))) {
            if (p->err[0]) { /* a connection attempt failed: tell the first waiter */
                snprintf(msg, sizeof msg, "pg pool: %s", p->err);
                p->err[0] = 0;
                fail = msg;
            } else if (p->n < p->size && pool_connecting(p) < pool_waiters(p)) {
                char m[512];
                if (pool_grow(p, m, sizeof m) == 0)
                    continue;
                snprintf(msg, sizeof msg, "pg pool: %s", m);
                fail = msg;
            } else {
                break;
            }
        }
        struct acq *a = pool_pop_waiter(p);
        task_t *t = task_wake(&a->wait);
        uv_close((uv_handle_t *)&a->timer, acq_closed);
        if (!t)
            continue;
        if (fail)
            task_resume(t, push_error(task_state(t), fail, CODE_CONNECT));
        else
            task_resume(t, push_lease(task_state(t), c));
    }
    p->err[0] = 0;
    if (p->closed) /* idle connections go now, leased ones when returned */
        for (int i = p->n - 1; i >= 0; i--)
            if (!p->conns[i]->leased) {
                struct conn *c = p->conns[i];
                pool_remove(c);
                conn_close(c);
            }
}

static void acq_unlink(struct acq *a)
{
    struct pool *p = a->p;
    struct acq **pp = &p->whead, *prev = NULL;
    while (*pp && *pp != a) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = a->next;
        if (p->wtail == a)
            p->wtail = prev;
    }
}

static void on_acq_timer(uv_timer_t *h)
{
    struct acq *a = h->data;
    struct pool *p = a->p;
    acq_unlink(a);
    task_t *t = task_wake(&a->wait);
    uv_close((uv_handle_t *)&a->timer, acq_closed);
    if (t) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "pg pool: no connection became free within wait_timeout (%gs, size %d)",
                 p->wait_timeout, p->size);
        task_resume(t, push_error(task_state(t), msg, "timeout"));
    }
}

static void acq_cancel(task_wait_t *w)
{
    struct acq *a = (struct acq *)w;
    acq_unlink(a);
    uv_close((uv_handle_t *)&a->timer, acq_closed);
}

static struct pool *check_pool(lua_State *L, const char *fname)
{
    struct poolud *ud = luaL_checkudata(L, 1, POOL_MT);
    if (!ud->p || ud->p->closed)
        luaL_error(L, "%s: the pool is closed", fname);
    return ud->p;
}

/* pool:acquire() -> a leased connection (a db whose close returns it), or nil, err, code */
static int l_pool_acquire(lua_State *L)
{
    struct pool *p = check_pool(L, "pool:acquire");
    task_t *t = task_check(L, "pool:acquire");
    if (!p->whead) {
        struct conn *c = pool_free_conn(p);
        if (c)
            return push_lease(L, c);
    }
    struct acq *a = calloc(1, sizeof *a);
    if (!a)
        return luaL_error(L, "pool:acquire: out of memory");
    a->p = p;
    uv_timer_init(p->loop, &a->timer);
    a->timer.data = a;
    uv_update_time(p->loop);
    uv_timer_start(&a->timer, on_acq_timer, to_ms(p->wait_timeout), 0);
    if (p->wtail)
        p->wtail->next = a;
    else
        p->whead = a;
    p->wtail = a;
    pool_kick(p);
    return task_suspend(L, t, &a->wait, acq_cancel);
}

static void pool_close(struct pool *p)
{
    if (p->closed)
        return;
    p->closed = 1;
    pool_kick(p);
}

static int l_pool_close(lua_State *L)
{
    struct poolud *ud = luaL_checkudata(L, 1, POOL_MT);
    if (ud->p)
        pool_close(ud->p);
    return 0;
}

static int l_pool_gc(lua_State *L)
{
    struct poolud *ud = luaL_checkudata(L, 1, POOL_MT);
    if (!ud->p)
        return 0;
    pool_close(ud->p);
    pool_unref(ud->p);
    ud->p = NULL;
    return 0;
}

static int l_pool_stats(lua_State *L)
{
    struct pool *p = check_pool(L, "pool:stats");
    int leased = 0, idle = 0;
    for (int i = 0; i < p->n; i++) {
        leased += p->conns[i]->leased;
        idle += !p->conns[i]->leased && p->conns[i]->state == S_IDLE;
    }
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, p->size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, p->n);
    lua_setfield(L, -2, "open");
    lua_pushinteger(L, leased);
    lua_setfield(L, -2, "leased");
    lua_pushinteger(L, idle);
    lua_setfield(L, -2, "idle");
    lua_pushinteger(L, pool_waiters(p));
    lua_setfield(L, -2, "waiting");
    return 1;
}

static int l_pg_pool(lua_State *L)
{
    const char *dsn = luaL_checkstring(L, 1);
    int size = 4;
    double wait = WAIT_TIMEOUT, conn_to = CONNECT_TIMEOUT;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "size");
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) < 1 ||
                lua_tonumber(L, -1) > MAX_POOL || lua_tonumber(L, -1) != lua_tointeger(L, -1))
                return luaL_error(L, "pg.pool: size: an integer from 1 to %d expected", MAX_POOL);
            size = (int)lua_tointeger(L, -1);
        }
        lua_getfield(L, 2, "wait_timeout");
        wait = duration_opt(L, -1, "pg.pool: wait_timeout", WAIT_TIMEOUT);
        lua_getfield(L, 2, "connect_timeout");
        conn_to = duration_opt(L, -1, "pg.pool: connect_timeout", CONNECT_TIMEOUT);
        lua_pop(L, 3);
    }
    struct pool *p = calloc(1, sizeof *p);
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of connection pointers */
    if (!p || !(p->dsn = strdup(dsn)) || !(p->conns = calloc((size_t)size, sizeof *p->conns))) {
        if (p)
            free(p->dsn);
        free(p);
        return luaL_error(L, "pg.pool: out of memory");
    }
    p->loop = task_loop();
    p->size = size;
    p->wait_timeout = wait;
    p->connect_timeout = conn_to;
    p->refs = 1;
    uv_idle_init(p->loop, &p->kick);
    p->kick.data = p;
    struct poolud *ud = lua_newuserdata(L, sizeof *ud);
    ud->p = p;
    luaL_getmetatable(L, POOL_MT);
    lua_setmetatable(L, -2);
    return 1;
}

/* setup(null): the value NULL columns become (steward.json.null, shared with pg.lua). */
static int l_pg_setup(lua_State *L)
{
    luaL_checkany(L, 1);
    if (null_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, null_ref);
    lua_pushvalue(L, 1);
    null_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

int luaopen_steward_pg(lua_State *L)
{
    static const luaL_Reg db_methods[] = {
        {"_query", l_db_query},  {"notification", l_db_notification}, {"close", l_db_close},
        {"status", l_db_status}, {"backend_pid", l_db_backend_pid},   {NULL, NULL}};
    static const luaL_Reg pool_methods[] = {{"acquire", l_pool_acquire},
                                            {"close", l_pool_close},
                                            {"stats", l_pool_stats},
                                            {NULL, NULL}};
    static const luaL_Reg funcs[] = {
        {"connect", l_pg_connect}, {"pool", l_pg_pool}, {"setup", l_pg_setup}, {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    int mod = lua_gettop(L);
    if (luaL_newmetatable(L, DB_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, db_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_db_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_db_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_getfield(L, -1, "__index");
    lua_setfield(L, mod, "db_methods"); /* pg.lua adds the methods written in Lua */
    lua_pop(L, 1);
    if (luaL_newmetatable(L, POOL_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, pool_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_pool_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_getfield(L, -1, "__index");
    lua_setfield(L, mod, "pool_methods");
    lua_pop(L, 1);
    return 1;
}
