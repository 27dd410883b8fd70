/* Unit tests of the store interface (core/store/store.h) with the SQLite backend, driven from a
 * bare libuv loop: opening by URL, completion never inside submit, write units and their
 * savepoints, reads on the store's own threads (not libuv's pool, which a hung fs call can
 * fill), group commit of queued units, close flushing the queue. */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "store.h"
#include "tap.h"

static uv_loop_t loop;
static store_t *opened;
static char open_err[256];
static int open_calls, closed_calls, done_calls, in_submit;
static int done_inside_submit;

static void on_open(store_t *s, const char *err, void *ud)
{
    (void)ud;
    open_calls++;
    opened = s;
    snprintf(open_err, sizeof open_err, "%s", err ? err : "");
}

static void on_closed(void *ud)
{
    (void)ud;
    closed_calls++;
}

/* Completed requests are kept for inspection, freed at the end. */
static store_req_t *done_list[64];

static void on_done(store_req_t *req)
{
    if (in_submit)
        done_inside_submit = 1;
    done_list[done_calls++] = req;
}

static void set_stmt(store_req_t *req, int i, const char *sql, int nparams)
{
    req->stmts[i].sql = sql;
    req->stmts[i].sql_len = strlen(sql);
    req->stmts[i].nparams = nparams;
    req->stmts[i].params =
        nparams ? store_arena_alloc(&req->arena, (size_t)nparams * sizeof(store_value_t)) : NULL;
    if (nparams)
        memset(req->stmts[i].params, 0, (size_t)nparams * sizeof(store_value_t));
}

static store_req_t *submit1(store_t *s, enum store_kind kind, const char *sql, int64_t param)
{
    store_req_t *req = store_req_new(kind, 1);
    set_stmt(req, 0, sql, param >= 0 ? 1 : 0);
    if (param >= 0) {
        req->stmts[0].params[0].type = STORE_INT;
        req->stmts[0].params[0].v.i = param;
    }
    req->done = on_done;
    in_submit = 1;
    store_submit(s, req);
    in_submit = 0;
    return req;
}

static void run_until(int *counter, int want)
{
    while (*counter < want && uv_run(&loop, UV_RUN_ONCE)) {
    }
}

/* A pool job that blocks until the gate opens: a hung fs.read, as far as libuv knows. */
static uv_mutex_t gate_mu;
static uv_cond_t gate_cv;
static int gate_open, gate_waiting, gate_done;
static int read_done_while_gated = -1;
static uv_work_t gate_jobs[4];
static uv_timer_t gate_deadline;

static void gate_work(uv_work_t *w)
{
    (void)w;
    uv_mutex_lock(&gate_mu);
    gate_waiting++;
    uv_cond_broadcast(&gate_cv);
    while (!gate_open)
        uv_cond_wait(&gate_cv, &gate_mu);
    uv_mutex_unlock(&gate_mu);
}

static void gate_after(uv_work_t *w, int status)
{
    (void)w;
    (void)status;
    gate_done++;
}

static void open_gate(void)
{
    uv_mutex_lock(&gate_mu);
    gate_open = 1;
    uv_cond_broadcast(&gate_cv);
    uv_mutex_unlock(&gate_mu);
}

/* The bound of the test, not a measurement: a read stuck behind the gate fails it. */
static void on_gate_deadline(uv_timer_t *t)
{
    (void)t;
    open_gate();
}

static void on_gated_read(store_req_t *req)
{
    uv_mutex_lock(&gate_mu);
    read_done_while_gated = !gate_open;
    uv_mutex_unlock(&gate_mu);
    on_done(req);
}

static void free_done(void)
{
    for (int i = 0; i < done_calls; i++)
        store_req_free(done_list[i]);
    done_calls = 0;
}

int main(void)
{
    setenv("UV_THREADPOOL_SIZE", "4", 1); /* the pool the gate fills below */
    uv_mutex_init(&gate_mu);
    uv_cond_init(&gate_cv);
    uv_loop_init(&loop);
    char err[256];

    ok(!store_open(&loop, "postgres://x/y?pool_size=0", on_open, NULL, err, sizeof err) &&
           strstr(err, "pool_size") != NULL,
       "postgres:// goes to its backend, which refuses a bad option at once");
    ok(!store_open(&loop, "mysql://x", on_open, NULL, err, sizeof err) && strstr(err, "mysql"),
       "an unknown scheme is refused naming the URL");
    ok(!store_open(&loop, "sqlite::memory:?nope=1", on_open, NULL, err, sizeof err) &&
           strstr(err, "nope"),
       "an unknown option is refused naming it");

    /* A path that cannot be opened fails later, through the callback. */
    store_t *bad =
        store_open(&loop, "sqlite:/nonexistent-dir/x.db", on_open, NULL, err, sizeof err);
    ok(bad != NULL, "opening starts");
    run_until(&open_calls, 1);
    ok(opened == NULL && open_err[0], "an unopenable file fails in the callback: %s", open_err);

    store_t *s = store_open(&loop, "sqlite::memory:", on_open, NULL, err, sizeof err);
    run_until(&open_calls, 2);
    ok(s && opened == s && !open_err[0], "sqlite::memory: opens");
    ok(strcmp(store_backend(s), "sqlite") == 0, "the backend is sqlite");

    submit1(s, STORE_WRITE, "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)", -1);
    ok(done_calls == 0 && !done_inside_submit, "done never runs inside submit");
    run_until(&done_calls, 1);
    ok(done_list[0]->status == 0, "a write completes");
    free_done();

    /* Ten units queued while the writer is busy with a slow one: they share a transaction,
     * and one of them fails alone. */
    submit1(s, STORE_WRITE,
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 500000) "
            "SELECT COUNT(*) FROM c",
            -1);
    for (int i = 1; i <= 10; i++) {
        if (i == 5) {
            store_req_t *req = store_req_new(STORE_WRITE, 2);
            set_stmt(req, 0, "INSERT INTO t (id, v) VALUES (100, 1)", 0);
            set_stmt(req, 1, "INSERT INTO t (id, v) VALUES (1, 1)", 0); /* duplicate of unit 1 */
            req->done = on_done;
            store_submit(s, req);
        } else {
            submit1(s, STORE_WRITE, "INSERT INTO t (id, v) VALUES ($1, 0)", i);
        }
    }
    run_until(&done_calls, 11);
    int oks = -1; /* the slow unit */
    store_req_t *failed = NULL;
    for (int i = 0; i < done_calls; i++) {
        if (done_list[i]->status == 0)
            oks++;
        else
            failed = done_list[i];
    }
    ok(oks == 9, "nine units commit");
    ok(failed && failed->err_index == 2 && strcmp(failed->err_code, STORE_CODE_UNIQUE) == 0,
       "the failing unit reports statement 2 and unique_violation: %s", failed ? failed->err : "?");
    free_done();

    store_stats_t st;
    store_get_stats(s, &st);
    ok(st.units >= 12 && st.failed_units == 1, "stats count units (%llu) and failures",
       (unsigned long long)st.units);
    ok(st.max_batch_units > 1, "queued units were group-committed (max %llu per commit)",
       (unsigned long long)st.max_batch_units);

    store_req_t *r = submit1(s, STORE_READ, "SELECT COUNT(*) AS n, SUM(v) AS s FROM t", -1);
    run_until(&done_calls, 1);
    ok(r->status == 0 && r->results[0].nrows == 1 && r->results[0].ncols == 2 &&
           strcmp(r->results[0].cols[0], "n") == 0,
       "a read returns its row and column names");
    ok(r->results[0].cells[0].type == STORE_INT && r->results[0].cells[0].v.i == 9,
       "the failing unit's first statement was rolled back (9 rows)");
    free_done();

    r = submit1(s, STORE_READ, "SELECT v FROM t WHERE id = $1", -1);
    run_until(&done_calls, 1);
    ok(r->status == -1 && strstr(r->err, "parameter"), "a missing parameter is an error: %s",
       r->err);
    free_done();

    /* Every thread of libuv's pool blocked (four fs.read of a FIFO): reads still complete. */
    for (int i = 0; i < 4; i++)
        uv_queue_work(&loop, &gate_jobs[i], gate_work, gate_after);
    uv_mutex_lock(&gate_mu);
    while (gate_waiting < 4)
        uv_cond_wait(&gate_cv, &gate_mu);
    uv_mutex_unlock(&gate_mu);
    uv_timer_init(&loop, &gate_deadline);
    uv_timer_start(&gate_deadline, on_gate_deadline, 30000, 0);
    r = store_req_new(STORE_READ, 1);
    set_stmt(r, 0, "SELECT COUNT(*) FROM t", 0);
    r->done = on_gated_read;
    store_submit(s, r);
    run_until(&done_calls, 1);
    ok(read_done_while_gated == 1 && r->status == 0,
       "a read completes while every thread of libuv's pool is blocked");
    open_gate();
    run_until(&gate_done, 4);
    uv_close((uv_handle_t *)&gate_deadline, NULL);
    free_done();

    /* Units queued right before close are committed before the close callback. */
    for (int i = 20; i < 30; i++)
        submit1(s, STORE_WRITE, "INSERT INTO t (id, v) VALUES ($1, 2)", i);
    store_close(s, on_closed, NULL);
    run_until(&closed_calls, 1);
    int committed = 0;
    for (int i = 0; i < done_calls; i++)
        committed += done_list[i]->status == 0;
    ok(closed_calls == 1 && committed == 10, "close completes queued writes first (%d)", committed);
    free_done();

    uv_run(&loop, UV_RUN_DEFAULT);
    ok(uv_loop_close(&loop) == 0, "no handle is left open");
    return tap_done();
}
