/* The PostgreSQL backend of store.h: a pool of connections of the one PostgreSQL engine
 * (core/store/pg_conn.c: libpq, non-blocking on the loop, pipeline mode, reconnection). Reads
 * take any free connection, one statement each; writes are group-committed as in the SQLite
 * backend: one write group at a time takes every unit queued so far into BEGIN ... COMMIT,
 * each unit in its own savepoint, so units commit in submission order and many tasks share
 * one commit. A group's commands go out in one pipeline: one round trip for all its units,
 * one more for COMMIT; see docs/internals-store.md. The statements themselves (parameters,
 * results, error codes) are core/store/store_pg_stmt.c. */
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_conn.h"
#include "store.h"
#include "store_pg_stmt.h"

#define DEFAULT_POOL      4
#define DEFAULT_TIMEOUT   5000 /* ms a request may wait for a free connection */
#define GROUP_MAX_STMTS   4096 /* statements per write transaction, so one commit stays short */
#define CACHE_SLOTS       512  /* prepared statements per connection (open addressing) */
#define CACHE_MAX         256
#define BACKOFF_MIN_MS    100
#define BACKOFF_MAX_MS    5000
#define CONNECT_TIMEOUT   10.0 /* seconds for one connection attempt */
#define CLOSE_NOW_SECONDS 30.0

/* ---- queues ---- */

struct qnode { /* in the request's arena: lives exactly as long as the request */
    store_req_t *req;
    uint64_t deadline; /* uv_now ms */
    uint64_t seq;
    struct qnode *next;
};

struct queue {
    struct qnode *head, *tail;
    size_t n;
};

static void q_push(struct queue *q, struct qnode *n)
{
    n->next = NULL;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    q->n++;
}

static struct qnode *q_pop(struct queue *q)
{
    struct qnode *n = q->head;
    if (n) {
        q->head = n->next;
        if (!q->head)
            q->tail = NULL;
        q->n--;
        n->next = NULL;
    }
    return n;
}

/* ---- connections ---- */

struct cached {
    char *sql; /* sql, then NUL, then the parameter signature */
    size_t len, siglen;
    uint64_t hash;
    unsigned id; /* the statement's name is "s<id>" */
};

enum cstate { C_DOWN, C_SETUP, C_IDLE, C_BUSY };

/* What a round of the pipeline (commands up to a sync) was for. */
enum phase { P_NONE, P_SETUP, P_READ, P_UNITS, P_COMMIT, P_ROLLBACK };

/* What a command was; a and b of its pgc_cmd_t are the unit and the statement. */
enum tag {
    T_SETUP,
    T_BEGIN,
    T_SAVEPOINT,
    T_DEALLOC,
    T_PREPARE,
    T_STMT,
    T_RELEASE,
    T_ROLLBACK_TO,
    T_RELEASE_FAILED,
    T_ROLLBACK,
    T_COMMIT,
    T_SYNC,
};

struct pg;

struct conn {
    struct pg *p;
    pgc_conn_t *c;
    enum cstate state;
    /* the work in progress */
    int writing;
    store_req_t **units;
    int nunits, ucap;
    enum phase phase;
    int fail_u;       /* the unit whose statement failed in this round, or -1 */
    int fail_stale;   /* ... on a stale plan: it may run once more */
    int retry_u;      /* the unit already re-run after a stale plan, or -1 */
    int restart;      /* roll back, then run the single-unit group again */
    int group_failed; /* a savepoint command failed: the transaction is lost */
    int safe;         /* units in savepoints (after the first attempt of the group failed) */
    uint64_t stmts;
    double t0;
    /* prepared statements */
    struct cached *slots;
    int ncached;
    unsigned next_id;
    int dealloc_pending; /* a plan went stale: DEALLOCATE ALL before the next statement */
};

struct pg {
    store_t base;
    char *conninfo; /* for libpq: the URI or keyword/value string, steward's options removed */
    int pool_size;
    uint64_t pool_timeout_ms;
    struct conn *conns;
    struct queue reads, writes;
    uint64_t seq;
    int writer_busy; /* a write group is running (one at a time keeps units in order) */
    int reads_in_flight;
    store_req_t *d_head, *d_tail; /* completed, for the kick handler to deliver */
    uv_idle_t kick;
    uv_timer_t qtimer; /* pool_timeout of the oldest queued request */
    int handles;       /* open handles of this struct; freed when the last has closed */
    int opened, open_reported, closing, released;
    char last_err[512];
    store_stats_t st;
    store_open_fn open_cb;
    void *open_ud;
    store_closed_fn close_cb;
    void *close_ud;
};

static double now_s(void)
{
    return (double)uv_hrtime() / 1e9;
}

static uint64_t hash_bytes(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) /* FNV-1a */
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* The slot for (sql, sig): a hit has ->sql set; a miss is the empty slot to fill. */
static struct cached *cache_find(struct conn *k, const char *sql, size_t len, const char *sig,
                                 size_t siglen, uint64_t *hash)
{
    uint64_t h = hash_bytes(hash_bytes(1469598103934665603ULL, sql, len), sig, siglen);
    *hash = h;
    size_t i = (size_t)(h % CACHE_SLOTS);
    for (;;) {
        struct cached *e = &k->slots[i];
        if (!e->sql)
            return e;
        if (e->hash == h && e->len == len && e->siglen == siglen && memcmp(e->sql, sql, len) == 0 &&
            memcmp(e->sql + len + 1, sig, siglen) == 0)
            return e;
        i = (i + 1) % CACHE_SLOTS;
    }
}

/* ---- forward declarations ---- */

static void kick(struct pg *p);
static void maybe_release(struct pg *p);
static void on_cmd(pgc_conn_t *c, const pgc_cmd_t *cmd, PGresult *res);
static void send_round(struct conn *k);

/* ---- completion ---- */

static void complete(struct pg *p, store_req_t *req)
{
    req->next = NULL;
    if (p->d_tail)
        p->d_tail->next = req;
    else
        p->d_head = req;
    p->d_tail = req;
    kick(p);
}

static int conns_up(const struct pg *p)
{
    int n = 0;
    for (int i = 0; i < p->pool_size; i++)
        n += p->conns[i].state == C_IDLE || p->conns[i].state == C_BUSY;
    return n;
}

static void fail_queue(struct pg *p, struct queue *q, const char *code, const char *msg)
{
    struct qnode *n;
    while ((n = q_pop(q))) {
        if (q == &p->writes)
            p->st.queue_depth--;
        store_req_fail(n->req, 0, code, msg);
        complete(p, n->req);
    }
}

/* A request pending (or the open, or a close) keeps the loop running; an idle pool does not. */
static void conn_ref(struct conn *k)
{
    struct pg *p = k->p;
    pgc_conn_ref(k->c, k->state == C_BUSY || (!p->open_reported && k == &p->conns[0]));
}

/* ---- sending ---- */

static void send_cmd(struct conn *k, enum tag tag, int u, int i, const char *sql)
{
    pgc_cmd_t cmd = {on_cmd, k, tag, u, i};
    pgc_send_query(k->c, sql, 0, NULL, NULL, NULL, NULL, &cmd);
}

static void send_sync(struct conn *k, enum phase ph)
{
    pgc_cmd_t cmd = {on_cmd, k, T_SYNC, 0, 0};
    k->phase = ph;
    pgc_send_sync(k->c, &cmd);
}

/* Ends a round: the sync, then the output pushed. Last step of every sender: a broken
 * connection is handled inside (conn_down). */
static void end_round(struct conn *k, enum phase ph)
{
    send_sync(k, ph);
    conn_ref(k);
    pgc_conn_flush(k->c);
}

/* ---- the prepared statement cache ---- */

static void cache_clear(struct conn *k)
{
    if (!k->slots)
        return;
    for (int i = 0; i < CACHE_SLOTS; i++) {
        free(k->slots[i].sql);
        memset(&k->slots[i], 0, sizeof k->slots[i]);
    }
    k->ncached = 0;
}

/* Drops the cache entry of statement i of unit u (its prepare failed or never ran). */
static void cache_forget(struct conn *k, int u, int i)
{
    store_stmt_t *s = &k->units[u]->stmts[i];
    char sigbuf[PGS_INLINE];
    char *sig = pgs_signature(s, sigbuf);
    if (!sig) { /* cannot rebuild the key: forget everything */
        k->dealloc_pending = 1;
        return;
    }
    uint64_t h;
    struct cached *e = cache_find(k, s->sql, s->sql_len, sig, (size_t)s->nparams, &h);
    if (sig != sigbuf)
        free(sig);
    if (!e->sql)
        return;
    /* Removing from open addressing would break probe chains: re-insert the rest of the run. */
    free(e->sql);
    memset(e, 0, sizeof *e);
    k->ncached--;
    size_t j = (size_t)(e - k->slots);
    for (j = (j + 1) % CACHE_SLOTS; k->slots[j].sql; j = (j + 1) % CACHE_SLOTS) {
        struct cached moved = k->slots[j];
        memset(&k->slots[j], 0, sizeof k->slots[j]);
        size_t d = (size_t)(moved.hash % CACHE_SLOTS);
        while (k->slots[d].sql)
            d = (d + 1) % CACHE_SLOTS;
        k->slots[d] = moved;
    }
}

/* ---- units and statements ---- */

static void fail_ok_units(struct conn *k, const char *code, const char *msg)
{
    for (int u = 0; u < k->nunits; u++)
        if (k->units[u]->status == 0) {
            store_req_reset_results(k->units[u]);
            store_req_fail(k->units[u], 0, code, msg);
        }
}

static void unit_reset(store_req_t *req)
{
    store_req_reset_results(req);
    req->status = 0;
    req->err = NULL;
    req->err_code = NULL;
    req->err_index = 0;
}

/* Sends statement i of unit u (preparing it first on a cache miss); -1 with err set when it
 * cannot be sent (its parameters are wrong): nothing was sent then. */
static int send_stmt(struct conn *k, int u, int i, char *err, size_t errlen)
{
    store_stmt_t *s = &k->units[u]->stmts[i];
    pgs_params_t pp;
    if (pgs_params_build(&pp, s, err, errlen) != 0) {
        pgs_params_free(&pp);
        return -1;
    }
    int n = s->nparams;
    if (k->dealloc_pending || k->ncached >= CACHE_MAX) {
        /* Statement names grow, so a DEALLOCATE the server skips (the pipeline aborted)
         * leaves nothing a new name could collide with. */
        send_cmd(k, T_DEALLOC, u, i, "DEALLOCATE ALL");
        cache_clear(k);
        k->dealloc_pending = 0;
    }
    uint64_t h;
    struct cached *e = cache_find(k, s->sql, s->sql_len, pp.sig, (size_t)n, &h);
    char name[24];
    if (!e->sql) {
        if (!(e->sql = malloc(s->sql_len + 1 + (size_t)n))) {
            pgs_params_free(&pp);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        memcpy(e->sql, s->sql, s->sql_len);
        e->sql[s->sql_len] = 0;
        memcpy(e->sql + s->sql_len + 1, pp.sig, (size_t)n);
        e->len = s->sql_len;
        e->siglen = (size_t)n;
        e->hash = h;
        e->id = ++k->next_id;
        k->ncached++;
        snprintf(name, sizeof name, "s%u", e->id);
        pgc_cmd_t pc = {on_cmd, k, T_PREPARE, u, i};
        pgc_send_prepare(k->c, name, e->sql, n, pp.types, &pc);
    } else {
        snprintf(name, sizeof name, "s%u", e->id);
    }
    pgc_cmd_t cmd = {on_cmd, k, T_STMT, u, i};
    pgc_send_prepared(k->c, name, n, pp.values, pp.lengths, pp.formats, &cmd);
    k->stmts++;
    pgs_params_free(&pp);
    return 0;
}

/* Whether every statement of req can be sent (checked before any is, so that a unit refused
 * here has nothing to undo). */
static int unit_valid(store_req_t *req)
{
    char err[200];
    for (int i = 0; i < req->nstmts; i++) {
        pgs_params_t pp;
        int rc = pgs_params_build(&pp, &req->stmts[i], err, sizeof err);
        pgs_params_free(&pp);
        if (rc != 0) {
            store_req_reset_results(req);
            store_req_fail(req, i + 1, STORE_CODE_ERROR, err);
            return 0;
        }
    }
    return 1;
}

/* Sends units from..n-1 that have not failed into the current round; in safe mode each in its
 * savepoint. */
static void send_units(struct conn *k, int from)
{
    int sp = k->safe && k->nunits > 1;
    for (int u = from; u < k->nunits; u++) {
        store_req_t *req = k->units[u];
        if (req->status != 0 || !unit_valid(req))
            continue;
        if (sp)
            send_cmd(k, T_SAVEPOINT, u, 0, "SAVEPOINT unit");
        char err[200];
        for (int i = 0; i < req->nstmts; i++)
            if (send_stmt(k, u, i, err, sizeof err) != 0) { /* out of memory only */
                k->group_failed = 1;
                fail_ok_units(k, STORE_CODE_ERROR, err);
                return;
            }
        if (sp)
            send_cmd(k, T_RELEASE, u, 0, "RELEASE SAVEPOINT unit");
    }
}

/* ---- finishing work ---- */

static void finish_work(struct conn *k)
{
    struct pg *p = k->p;
    double dt = now_s() - k->t0;
    if (k->writing) {
        for (int u = 0; u < k->nunits; u++) {
            p->st.units++;
            p->st.failed_units += k->units[u]->status != 0;
        }
        p->st.statements += k->stmts;
        p->st.last_batch_units = (uint64_t)k->nunits;
        if ((uint64_t)k->nunits > p->st.max_batch_units)
            p->st.max_batch_units = (uint64_t)k->nunits;
        p->st.commit_seconds_total += dt;
        p->writer_busy = 0;
    } else if (k->nunits) {
        p->st.reads++;
        p->st.failed_reads += k->units[0]->status != 0;
        p->st.read_seconds_total += dt;
        p->reads_in_flight--;
    }
    for (int u = 0; u < k->nunits; u++)
        complete(p, k->units[u]);
    k->nunits = 0;
    k->writing = 0;
    k->phase = P_NONE;
}

static void work_done(struct conn *k)
{
    finish_work(k);
    k->state = C_IDLE;
    conn_ref(k);
    kick(k->p);
}

/* ---- connecting ---- */

static void report_open(struct pg *p, const char *err)
{
    p->open_reported = 1;
    if (err) { /* the store was never handed out: release it quietly */
        char copy[512];
        snprintf(copy, sizeof copy, "postgres: %s", err);
        p->closing = 1;
        maybe_release(p);
        p->open_cb(NULL, copy, p->open_ud);
        return;
    }
    conn_ref(&p->conns[0]);
    char msg[400];
    for (int i = 1; i < p->pool_size; i++)
        if (pgc_conn_connect(p->conns[i].c, msg, sizeof msg) != 0)
            snprintf(p->last_err, sizeof p->last_err, "%s", msg);
    p->open_cb(&p->base, NULL, p->open_ud);
}

static void conn_ready(struct conn *k)
{
    struct pg *p = k->p;
    k->state = C_IDLE;
    k->phase = P_NONE;
    conn_ref(k);
    if (!p->open_reported)
        report_open(p, NULL);
    kick(p);
}

static void on_up(pgc_conn_t *c, void *owner)
{
    (void)c;
    struct conn *k = owner;
    /* Reads run as single statements in implicit transactions; making those read-only costs
     * nothing here, while writes say BEGIN READ WRITE. */
    k->state = C_SETUP;
    k->group_failed = 0;
    send_cmd(k, T_SETUP, 0, 0, "SET default_transaction_read_only = on");
    end_round(k, P_SETUP);
}

/* The connection failed: fail its work and, with nothing up, everything queued. The engine
 * reconnects after a backoff. */
static void on_down(pgc_conn_t *c, void *owner, const char *why, int connecting)
{
    (void)c;
    struct conn *k = owner;
    struct pg *p = k->p;
    int had_work = k->state == C_BUSY;
    int was_up = k->state == C_IDLE || k->state == C_BUSY;
    k->state = C_DOWN;
    cache_clear(k);
    k->dealloc_pending = 0;
    snprintf(p->last_err, sizeof p->last_err, "%s", why);
    if ((connecting || !was_up) && !p->open_reported) {
        report_open(p, why);
        return;
    }
    if (had_work) {
        char msg[700];
        if (!k->writing)
            snprintf(msg, sizeof msg, "database connection lost: %s", why);
        else if (k->phase == P_COMMIT)
            snprintf(msg, sizeof msg,
                     "database connection lost during COMMIT: the outcome of the unit is "
                     "unknown (%s)",
                     why);
        else
            snprintf(msg, sizeof msg, "database connection lost: the unit was not committed (%s)",
                     why);
        fail_ok_units(k, STORE_CODE_UNAVAILABLE, msg);
        finish_work(k);
    }
    if (conns_up(p) == 0) {
        char msg[700];
        snprintf(msg, sizeof msg, "database unavailable: %s", why);
        fail_queue(p, &p->reads, STORE_CODE_UNAVAILABLE, msg);
        fail_queue(p, &p->writes, STORE_CODE_UNAVAILABLE, msg);
    }
    kick(p);
}

static const pgc_events_t conn_events = {on_up, on_down, NULL};

/* ---- results ---- */

/* A command of the round failed with res (not merely skipped after an earlier failure). */
static void unit_failed(struct conn *k, int u, int i, const PGresult *res, const char *code,
                        const char *msg)
{
    store_req_t *req = k->units[u];
    store_req_reset_results(req);
    store_req_fail(req, i + 1, code, msg);
    k->fail_u = u;
    k->fail_stale = res && pgs_stale_plan(res);
    if (k->fail_stale)
        k->dealloc_pending = 1;
}

/* A savepoint command failed: the transaction cannot go on; the units that had succeeded in it
 * fail too. */
static void group_lost(struct conn *k, const char *code, const char *msg)
{
    fail_ok_units(k, code, msg);
    k->group_failed = 1;
}

static void on_result(struct conn *k, const pgc_cmd_t *cmd, PGresult *res)
{
    struct pg *p = k->p;
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_PIPELINE_ABORTED) { /* skipped after an earlier failure of the round */
        if (cmd->tag == T_PREPARE)
            cache_forget(k, cmd->a, cmd->b);
        return;
    }
    int ok = pgc_result_ok(res);
    char msg[600];
    const char *code = NULL;
    if (!ok) {
        pgc_result_message(res, msg, sizeof msg);
        code = pgs_code_of_state(res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL);
    }
    switch (cmd->tag) {
    case T_SETUP:
        if (!ok) {
            k->group_failed = 1;
            snprintf(p->last_err, sizeof p->last_err, "%.500s", msg);
        }
        return;
    case T_BEGIN:
    case T_SAVEPOINT:
    case T_RELEASE:
        if (!ok)
            group_lost(k, code, msg);
        return;
    case T_DEALLOC:
    case T_PREPARE:
        if (!ok) {
            if (cmd->tag == T_PREPARE)
                cache_forget(k, cmd->a, cmd->b);
            unit_failed(k, cmd->a, cmd->b, res, code, msg);
        }
        return;
    case T_STMT: {
        store_req_t *req = k->units[cmd->a];
        if (!ok) {
            unit_failed(k, cmd->a, cmd->b, res, code, msg);
            return;
        }
        if (req->status != 0) /* its unit already failed (out of memory) */
            return;
        if (pgs_take_result(req, &req->results[cmd->b], res) != 0) {
            if (k->writing)
                group_lost(k, STORE_CODE_ERROR, "out of memory");
            else
                unit_failed(k, cmd->a, cmd->b, NULL, STORE_CODE_ERROR, "out of memory");
        }
        return;
    }
    case T_ROLLBACK_TO:
    case T_RELEASE_FAILED:
        if (!ok)
            group_lost(k, STORE_CODE_ERROR, "rolling back a failed unit failed");
        return;
    case T_COMMIT:
        if (!ok) {
            char m2[700];
            snprintf(m2, sizeof m2, "commit failed: %s", msg);
            fail_ok_units(k, code, m2);
        } else {
            p->st.commits++;
        }
        return;
    default: return;
    }
}

/* A round ended (its sync came back): decide the next one, or finish. */
static void round_done(struct conn *k)
{
    switch (k->phase) {
    case P_SETUP:
        if (k->group_failed) {
            char msg[600];
            snprintf(msg, sizeof msg, "%s", k->p->last_err);
            k->group_failed = 0;
            pgc_conn_fail(k->c, msg);
            return;
        }
        conn_ready(k);
        return;
    case P_READ:
        if (k->fail_u >= 0 && k->fail_stale && k->retry_u < 0) {
            k->retry_u = 0; /* a stale plan: prepared afresh, run once more */
            unit_reset(k->units[0]);
            send_round(k);
            return;
        }
        work_done(k);
        return;
    case P_UNITS:
        if (!k->safe && (k->group_failed || k->fail_u >= 0)) {
            /* The first attempt ran without savepoints and something failed: nothing after the
             * failure ran and the transaction is lost. Run the group again, each unit in its
             * savepoint, so that a failing unit fails alone. */
            k->safe = 1;
            for (int u = 0; u < k->nunits; u++)
                unit_reset(k->units[u]);
            k->fail_u = -1;
            k->fail_stale = 0;
            k->group_failed = 0;
            send_cmd(k, T_ROLLBACK, 0, 0, "ROLLBACK");
            send_cmd(k, T_BEGIN, 0, 0, "BEGIN READ WRITE");
            send_units(k, 0);
            end_round(k, P_UNITS);
        } else if (k->group_failed) {
            send_cmd(k, T_ROLLBACK, 0, 0, "ROLLBACK");
            end_round(k, P_ROLLBACK);
        } else if (k->fail_u >= 0 && k->nunits > 1) {
            /* Nothing after the failed statement ran: undo its unit, send the rest again. */
            int u = k->fail_u, from = u + 1;
            if (k->fail_stale && k->retry_u != u) {
                k->retry_u = u;
                unit_reset(k->units[u]);
                from = u;
            }
            k->fail_u = -1;
            send_cmd(k, T_ROLLBACK_TO, u, 0, "ROLLBACK TO SAVEPOINT unit");
            send_cmd(k, T_RELEASE_FAILED, u, 0, "RELEASE SAVEPOINT unit");
            send_units(k, from);
            end_round(k, P_UNITS);
        } else if (k->fail_u >= 0) {
            k->restart = k->fail_stale && k->retry_u < 0;
            send_cmd(k, T_ROLLBACK, 0, 0, "ROLLBACK");
            end_round(k, P_ROLLBACK);
        } else {
            send_cmd(k, T_COMMIT, 0, 0, "COMMIT");
            end_round(k, P_COMMIT);
        }
        return;
    case P_ROLLBACK:
        if (k->restart) {
            k->restart = 0;
            k->retry_u = 0;
            unit_reset(k->units[0]);
            send_round(k);
            return;
        }
        work_done(k);
        return;
    case P_COMMIT: work_done(k); return;
    default: return;
    }
}

/* An error that ends the session (severity FATAL or PANIC). */
static int fatal(const PGresult *res)
{
    const char *sev = res ? PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED) : NULL;
    return sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0);
}

static void on_cmd(pgc_conn_t *c, const pgc_cmd_t *cmd, PGresult *res)
{
    struct conn *k = cmd->ud;
    if (PQstatus(pgc_conn_pg(c)) == CONNECTION_BAD || fatal(res)) {
        /* The server's last word ("terminating connection ..."): the connection is lost, and
         * with it the whole work, not this one statement. In pipeline mode such a result
         * arrives before libpq has seen the socket close. */
        char msg[600];
        if (res && !pgc_result_ok(res))
            pgc_result_message(res, msg, sizeof msg);
        else
            pgc_conn_message(pgc_conn_pg(c), "connection lost", msg, sizeof msg);
        if (res)
            PQclear(res);
        pgc_conn_fail(c, msg);
        return;
    }
    if (cmd->tag == T_SYNC) {
        if (res)
            PQclear(res);
        round_done(k);
        return;
    }
    on_result(k, cmd, res);
    if (res)
        PQclear(res);
}

/* The first round of the work on k: a read, or BEGIN and every unit. */
static void send_round(struct conn *k)
{
    k->fail_u = -1;
    k->fail_stale = 0;
    k->group_failed = 0;
    if (!k->writing) {
        store_req_t *req = k->units[0];
        char err[200];
        if (send_stmt(k, 0, 0, err, sizeof err) != 0) {
            store_req_reset_results(req);
            store_req_fail(req, 1, STORE_CODE_ERROR, err);
        }
        end_round(k, P_READ);
        return;
    }
    send_cmd(k, T_BEGIN, 0, 0, "BEGIN READ WRITE");
    send_units(k, 0);
    end_round(k, P_UNITS);
}

/* ---- dispatch ---- */

static int grow_units(struct conn *k, int n)
{
    if (n <= k->ucap)
        return 0;
    int cap = n > 64 ? n : 64;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of request pointers */
    store_req_t **u = realloc(k->units, (size_t)cap * sizeof *u);
    if (!u)
        return -1;
    k->units = u;
    k->ucap = cap;
    return 0;
}

static void start_work(struct conn *k, int writing)
{
    k->writing = writing;
    /* Optimistic: most groups have no failing unit, and SAVEPOINT / RELEASE cost two commands
     * and a subtransaction per unit (past 64 per transaction, PostgreSQL's subtransaction
     * cache overflows and every snapshot taken meanwhile gets slower). A group of one unit
     * needs none anyway. */
    k->safe = k->nunits <= 1;
    k->retry_u = -1;
    k->restart = 0;
    k->stmts = 0;
    k->t0 = now_s();
    k->state = C_BUSY;
    send_round(k);
}

static void start_read(struct conn *k)
{
    struct pg *p = k->p;
    if (grow_units(k, 1) != 0)
        return;
    struct qnode *n = q_pop(&p->reads);
    k->units[0] = n->req;
    k->nunits = 1;
    p->reads_in_flight++;
    start_work(k, 0);
}

static void start_writes(struct conn *k)
{
    struct pg *p = k->p;
    size_t nst = 0;
    int n = 0;
    for (struct qnode *q = p->writes.head; q; q = q->next) {
        if (n > 0 && nst + (size_t)q->req->nstmts > GROUP_MAX_STMTS)
            break;
        nst += (size_t)q->req->nstmts;
        n++;
    }
    if (grow_units(k, n) != 0)
        return;
    for (int i = 0; i < n; i++)
        k->units[i] = q_pop(&p->writes)->req;
    p->st.queue_depth -= (uint64_t)n;
    k->nunits = n;
    p->writer_busy = 1;
    start_work(k, 1);
}

static void on_qtimer(uv_timer_t *t);

static void arm_qtimer(struct pg *p)
{
    uint64_t d = UINT64_MAX;
    if (p->reads.head)
        d = p->reads.head->deadline;
    if (p->writes.head && p->writes.head->deadline < d)
        d = p->writes.head->deadline;
    if (d == UINT64_MAX || p->released) {
        uv_timer_stop(&p->qtimer);
        return;
    }
    uint64_t now = uv_now(p->base.loop);
    uv_timer_start(&p->qtimer, on_qtimer, d > now ? d - now : 0, 0);
}

static void on_qtimer(uv_timer_t *t)
{
    struct pg *p = t->data;
    uint64_t now = uv_now(p->base.loop);
    char msg[200];
    snprintf(msg, sizeof msg,
             "no database connection became free within pool_timeout (%.3gs, pool_size=%d)",
             (double)p->pool_timeout_ms / 1000.0, p->pool_size);
    struct queue *qs[2] = {&p->reads, &p->writes};
    for (int i = 0; i < 2; i++)
        while (qs[i]->head && qs[i]->head->deadline <= now) {
            struct qnode *n = q_pop(qs[i]);
            if (qs[i] == &p->writes)
                p->st.queue_depth--;
            store_req_fail(n->req, 0, STORE_CODE_BUSY, msg);
            if (qs[i] == &p->reads) {
                p->st.reads++;
                p->st.failed_reads++;
            } else {
                p->st.units++;
                p->st.failed_units++;
            }
            complete(p, n->req);
        }
    arm_qtimer(p);
}

static void dispatch(struct pg *p)
{
    for (int i = 0; i < p->pool_size; i++) {
        struct conn *k = &p->conns[i];
        if (k->state != C_IDLE)
            continue;
        int w = p->writes.head && !p->writer_busy;
        int r = p->reads.head != NULL;
        if (w && (!r || p->writes.head->seq < p->reads.head->seq))
            start_writes(k);
        else if (r)
            start_read(k);
        else
            break;
    }
    arm_qtimer(p);
}

static void deliver(struct pg *p)
{
    store_req_t *r = p->d_head;
    p->d_head = p->d_tail = NULL;
    while (r) {
        store_req_t *next = r->next;
        r->next = NULL;
        r->done(r);
        r = next;
    }
}

static void on_kick(uv_idle_t *h)
{
    struct pg *p = h->data;
    uv_idle_stop(h);
    dispatch(p);
    deliver(p);
    maybe_release(p);
}

static void kick(struct pg *p)
{
    if (!p->released)
        uv_idle_start(&p->kick, on_kick);
}

/* ---- release ---- */

static void handle_closed(uv_handle_t *h)
{
    struct pg *p = h->data;
    if (--p->handles > 0)
        return;
    store_closed_fn cb = p->close_cb;
    void *ud = p->close_ud;
    for (int i = 0; i < p->pool_size; i++) {
        cache_clear(&p->conns[i]);
        free(p->conns[i].slots);
        free(p->conns[i].units);
    }
    free(p->conns);
    free(p->conninfo);
    free(p);
    if (cb)
        cb(ud);
}

static int busy(const struct pg *p)
{
    for (int i = 0; i < p->pool_size; i++)
        if (p->conns[i].state == C_BUSY)
            return 1;
    return p->reads.head || p->writes.head || p->d_head;
}

/* Once closing and nothing is left to do: disconnect and close every handle. */
static void maybe_release(struct pg *p)
{
    if (!p->closing || p->released || busy(p))
        return;
    p->released = 1;
    for (int i = 0; i < p->pool_size; i++) {
        struct conn *k = &p->conns[i];
        if (k->c)
            pgc_conn_close(k->c);
        k->c = NULL;
        k->state = C_DOWN;
    }
    uv_close((uv_handle_t *)&p->kick, handle_closed);
    uv_close((uv_handle_t *)&p->qtimer, handle_closed);
}

/* ---- the ops ---- */

static void fail_now(struct pg *p, store_req_t *req, const char *code, const char *msg)
{
    store_req_fail(req, 0, code, msg);
    complete(p, req);
}

static void pg_submit(store_t *s, store_req_t *req)
{
    struct pg *p = (struct pg *)s;
    req->next = NULL;
    if (p->closing || req->nstmts < 1) {
        fail_now(p, req, p->closing ? STORE_CODE_CLOSED : STORE_CODE_ERROR,
                 p->closing ? "store is closed" : "no statement");
        return;
    }
    if (conns_up(p) == 0) {
        char msg[600];
        snprintf(msg, sizeof msg, "database unavailable: %s",
                 p->last_err[0] ? p->last_err : "no connection");
        if (req->kind == STORE_READ) {
            p->st.reads++;
            p->st.failed_reads++;
        } else {
            p->st.units++;
            p->st.failed_units++;
        }
        fail_now(p, req, STORE_CODE_UNAVAILABLE, msg);
        return;
    }
    struct qnode *n = store_arena_alloc(&req->arena, sizeof *n);
    if (!n) {
        fail_now(p, req, STORE_CODE_ERROR, "out of memory");
        return;
    }
    n->req = req;
    n->seq = ++p->seq;
    n->deadline = uv_now(s->loop) + p->pool_timeout_ms;
    if (req->kind == STORE_READ) {
        q_push(&p->reads, n);
    } else {
        q_push(&p->writes, n);
        p->st.queue_depth++;
    }
    kick(p);
}

static void pg_close(store_t *s, store_closed_fn cb, void *ud)
{
    struct pg *p = (struct pg *)s;
    if (p->closing)
        return;
    p->closing = 1;
    p->close_cb = cb;
    p->close_ud = ud;
    for (int i = 0; i < p->pool_size; i++) /* no more reconnects */
        if (p->conns[i].c)
            pgc_conn_stop_reconnect(p->conns[i].c);
    kick(p); /* keeps the loop alive until released */
}

/* Blocking: drives the connections with poll(2) until every submitted request is done. */
static void pg_close_now(store_t *s)
{
    struct pg *p = (struct pg *)s;
    if (p->released)
        return;
    p->closing = 1;
    for (int i = 0; i < p->pool_size; i++)
        if (p->conns[i].c)
            pgc_conn_stop_reconnect(p->conns[i].c);
    double deadline = now_s() + CLOSE_NOW_SECONDS;
    while (busy(p) && now_s() < deadline) {
        dispatch(p);
        deliver(p);
        struct pollfd fds[PGS_MAX_POOL];
        struct conn *ks[PGS_MAX_POOL];
        int n = 0;
        for (int i = 0; i < p->pool_size; i++) {
            struct conn *k = &p->conns[i];
            if (k->state != C_BUSY || pgc_conn_socket(k->c) < 0)
                continue;
            fds[n].fd = pgc_conn_socket(k->c);
            fds[n].events = (short)(POLLIN | (pgc_conn_wants_write(k->c) ? POLLOUT : 0));
            fds[n].revents = 0;
            ks[n++] = k;
        }
        if (n == 0) {
            if (!p->d_head) { /* queued, but no connection can take it */
                fail_queue(p, &p->reads, STORE_CODE_CLOSED, "store closed");
                fail_queue(p, &p->writes, STORE_CODE_CLOSED, "store closed");
            }
            continue;
        }
        if (poll(fds, (nfds_t)n, 1000) <= 0)
            continue;
        for (int i = 0; i < n; i++)
            if (fds[i].revents && ks[i]->state == C_BUSY)
                pgc_conn_io(ks[i]->c, (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0,
                            (fds[i].revents & POLLOUT) != 0);
    }
    for (int i = 0; i < p->pool_size; i++)
        if (p->conns[i].state == C_BUSY) {
            fail_ok_units(&p->conns[i], STORE_CODE_CLOSED, "store closed before the request ended");
            finish_work(&p->conns[i]);
            p->conns[i].state = C_IDLE;
        }
    fail_queue(p, &p->reads, STORE_CODE_CLOSED, "store closed");
    fail_queue(p, &p->writes, STORE_CODE_CLOSED, "store closed");
    deliver(p);
    maybe_release(p);
}

static void pg_stats(store_t *s, store_stats_t *out)
{
    struct pg *p = (struct pg *)s;
    *out = p->st;
    out->reads_in_flight = (uint64_t)p->reads_in_flight;
}

static store_t *pg_open(uv_loop_t *loop, const char *target, store_open_fn cb, void *ud, char *err,
                        size_t errlen)
{
    /* store_open strips the scheme "postgres"; the URL as libpq wants it is rebuilt. */
    char url[2048];
    snprintf(url, sizeof url, "postgres%s", target);
    if (strlen(target) + 9 > sizeof url) {
        snprintf(err, errlen, "postgres: URL too long");
        return NULL;
    }
    struct pg *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->pool_size = DEFAULT_POOL;
    p->pool_timeout_ms = DEFAULT_TIMEOUT;
    if (pgs_parse_url(url, &p->conninfo, &p->pool_size, &p->pool_timeout_ms, err, errlen) != 0) {
        free(p);
        return NULL;
    }
    pgc_opts_t o = {.conninfo = p->conninfo,
                    .app = "steward",
                    .pipeline = 1,
                    .connect_timeout = CONNECT_TIMEOUT,
                    .reconnect = 1,
                    .backoff_min_ms = BACKOFF_MIN_MS,
                    .backoff_max_ms = BACKOFF_MAX_MS};
    p->conns = calloc((size_t)p->pool_size, sizeof *p->conns);
    int ok = p->conns != NULL;
    for (int i = 0; ok && i < p->pool_size; i++) {
        struct conn *k = &p->conns[i];
        k->p = p;
        ok = (k->slots = calloc(CACHE_SLOTS, sizeof *k->slots)) != NULL &&
             (k->c = pgc_conn_new(loop, &o, &conn_events, k)) != NULL;
    }
    if (!ok) {
        for (int i = 0; p->conns && i < p->pool_size; i++) {
            free(p->conns[i].slots);
            if (p->conns[i].c)
                pgc_conn_close(p->conns[i].c);
        }
        free(p->conns);
        free(p->conninfo);
        free(p);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->base.ops = &store_pg_ops;
    p->base.loop = loop;
    p->open_cb = cb;
    p->open_ud = ud;
    uv_idle_init(loop, &p->kick);
    p->kick.data = p;
    uv_timer_init(loop, &p->qtimer);
    p->qtimer.data = p;
    uv_unref((uv_handle_t *)&p->qtimer); /* queued requests hold the loop through their conns */
    p->handles = 2;
    /* The first connection is started here so that a malformed URL fails at once. */
    struct conn *k0 = &p->conns[0];
    conn_ref(k0);
    char msg[400];
    if (pgc_conn_connect(k0->c, msg, sizeof msg) != 0) {
        snprintf(err, errlen, "postgres: %s", msg);
        p->open_reported = 1;
        p->closing = 1;
        maybe_release(p); /* frees p from the close callbacks; nobody is told */
        return NULL;
    }
    return &p->base;
}

const struct store_ops store_pg_ops = {
    .name = "postgres",
    .scheme = "postgres",
    .open = pg_open,
    .submit = pg_submit,
    .close = pg_close,
    .close_now = pg_close_now,
    .stats = pg_stats,
};
