/* The SQLite backend of store.h. One writer thread owns the only read-write connection and
 * group-commits: it takes every unit queued so far, runs them in one BEGIN IMMEDIATE ...
 * COMMIT (one fsync for all of them), each unit inside its own savepoint so a failing unit
 * is rolled back and reported alone, then hands the results to the loop with uv_async_send.
 * Reads run on the store's own reader threads (at most `readers`, started when reads queue
 * up), each with its read-only connection; WAL lets them read while the writer writes. They
 * are not libuv's thread pool on purpose: that pool is shared with steward.fs, and a few
 * fs.read of a FIFO or a hung NFS path would otherwise hold every thread and freeze every
 * store read (GET /v1/events, the REPL, /readyz's probe) while the daemon looked alive.
 * The loop thread runs no SQLite statement and never fsyncs. A connection idle for a second
 * gives its statement and page caches back (give_back). */
#include <errno.h>
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

#define GROUP_MAX_STMTS 4096 /* statements per transaction, so one commit stays short */
#define CACHE_SLOTS     512  /* prepared statements per connection (open addressing) */
#define CACHE_MAX       256
#define READERS_MAX     64 /* the readers=N option's bound */
/* A connection idle this long gives its caches back (see give_back). Under load it never is;
 * after an idle second, re-preparing the few statements of the next request costs far less
 * than the memory kept for them (the migrations' DDL alone holds a fifth of it). */
#define IDLE_RELEASE_NS (1000ULL * 1000 * 1000)

/* ---- connections and their prepared-statement cache ---- */

struct cached {
    char *sql;
    size_t len;
    uint64_t hash;
    sqlite3_stmt *st;
    int *map;     /* map[i] = 0-based parameter for SQLite's parameter i+1 */
    int nmap;     /* sqlite3_bind_parameter_count */
    int nwanted;  /* highest $n referenced */
    int readonly; /* sqlite3_stmt_readonly */
};

struct conn {
    sqlite3 *db;
    struct cached *slots; /* CACHE_SLOTS */
    int ncached;
};

static uint64_t hash_sql(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static void cache_clear(struct conn *c)
{
    for (int i = 0; i < CACHE_SLOTS; i++) {
        struct cached *e = &c->slots[i];
        if (!e->sql)
            continue;
        sqlite3_finalize(e->st);
        free(e->sql);
        free(e->map);
        memset(e, 0, sizeof *e);
    }
    c->ncached = 0;
}

/* An idle connection's prepared statements and page cache back to malloc, and malloc's free
 * pages back to the kernel (free alone keeps them, dirty, in the thread's arena): about half
 * of an idle daemon's SQLite memory. Nothing is open on c: the next use prepares again. */
static void give_back(struct conn *c)
{
    cache_clear(c);
    sqlite3_db_release_memory(c->db);
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

static void conn_close(struct conn *c)
{
    if (!c)
        return;
    if (c->slots) {
        cache_clear(c);
        free(c->slots);
    }
    sqlite3_close_v2(c->db);
    free(c);
}

/* The SQL of every backend numbers parameters $1, $2, ...; SQLite sees "$1" as a parameter
 * named "$1", so each of its parameters is mapped to a position once, when prepared. */
static int build_map(struct cached *e, char *err, size_t errlen)
{
    e->nmap = sqlite3_bind_parameter_count(e->st);
    e->nwanted = 0;
    if (e->nmap == 0)
        return 0;
    e->map = malloc((size_t)e->nmap * sizeof *e->map);
    if (!e->map) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 1; i <= e->nmap; i++) {
        const char *name = sqlite3_bind_parameter_name(e->st, i);
        long pos = i;
        if (name) {
            char *end;
            errno = 0;
            pos = (name[0] == '$' || name[0] == '?') ? strtol(name + 1, &end, 10) : -1;
            if (pos < 1 || pos > 65535 || *end || errno) {
                snprintf(err, errlen, "parameter %s: only $1, $2, ... are supported", name);
                return -1;
            }
        }
        e->map[i - 1] = (int)pos - 1;
        if (pos > e->nwanted)
            e->nwanted = (int)pos;
    }
    return 0;
}

static int only_space(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != ';')
            return 0;
    return 1;
}

/* SQLite looks parameter names up in a list, so a statement with N named ("$7") or numbered
 * ("?7") parameters costs N^2 string comparisons to prepare — most of the time of a
 * 2,000-parameter multi-row INSERT. Plain "?" parameters cost nothing: when the statement
 * uses $1, $2, ... each once and in order, they become "?"; otherwise "?n", still
 * positional. Strings, quoted identifiers and comments are left alone. *max_param gets the
 * highest n seen. */
static int skip_quoted(const char *sql, size_t len, size_t i)
{
    char c = sql[i];
    if (c == '\'' || c == '"') {
        for (i++; i < len && sql[i] != c; i++) {
        }
        return (int)i;
    }
    if (c == '-' && i + 1 < len && sql[i + 1] == '-') {
        while (i < len && sql[i] != '\n')
            i++;
        return (int)i;
    }
    if (c == '/' && i + 1 < len && sql[i + 1] == '*') {
        for (i += 2; i + 1 < len && !(sql[i] == '*' && sql[i + 1] == '/'); i++) {
        }
        return (int)(i + 1);
    }
    return -1;
}

static char *positional_sql(const char *sql, size_t len, int *max_param)
{
    /* First pass: are the parameters exactly $1, $2, ... in order? */
    int expect = 1, sequential = 1;
    *max_param = 0;
    for (size_t i = 0; i < len; i++) {
        int q = skip_quoted(sql, len, i);
        if (q >= 0) {
            i = (size_t)q;
            continue;
        }
        if (sql[i] == '$' && i + 1 < len && sql[i + 1] >= '0' && sql[i + 1] <= '9') {
            int n = 0;
            size_t k = i + 1;
            for (; k < len && sql[k] >= '0' && sql[k] <= '9' && n < 100000; k++)
                n = n * 10 + (sql[k] - '0');
            if (n != expect)
                sequential = 0;
            expect = n + 1;
            if (n > *max_param)
                *max_param = n;
            i = k - 1;
        }
    }
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int q = skip_quoted(sql, len, i);
        if (q >= 0) {
            size_t end = (size_t)q < len ? (size_t)q : len - 1;
            memcpy(out + o, sql + i, end - i + 1);
            o += end - i + 1;
            i = end;
            continue;
        }
        if (sql[i] == '$' && i + 1 < len && sql[i + 1] >= '0' && sql[i + 1] <= '9') {
            out[o++] = '?';
            if (sequential) /* drop the number: an anonymous parameter takes the next slot */
                while (i + 1 < len && sql[i + 1] >= '0' && sql[i + 1] <= '9')
                    i++;
            continue;
        }
        out[o++] = sql[i];
    }
    out[o] = 0;
    return out;
}

/* The cached statement for sql, preparing it on a miss; NULL with err set on failure. */
static struct cached *prepare(struct conn *c, const char *sql, size_t len, char *err, size_t errlen)
{
    uint64_t h = hash_sql(sql, len);
    size_t i = (size_t)(h % CACHE_SLOTS);
    for (;;) {
        struct cached *e = &c->slots[i];
        if (!e->sql)
            break;
        if (e->hash == h && e->len == len && memcmp(e->sql, sql, len) == 0)
            return e;
        i = (i + 1) % CACHE_SLOTS;
    }
    if (c->ncached >= CACHE_MAX) { /* a full cache is a rare workload; start over */
        cache_clear(c);
        i = (size_t)(h % CACHE_SLOTS);
    }
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int max_param = 0;
    char *psql = positional_sql(sql, len, &max_param);
    if (!psql) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (sqlite3_prepare_v3(c->db, psql, -1, SQLITE_PREPARE_PERSISTENT, &st, &tail) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(c->db));
        free(psql);
        return NULL;
    }
    if (!st) {
        snprintf(err, errlen, "empty statement");
        free(psql);
        return NULL;
    }
    if (tail && !only_space(tail)) {
        sqlite3_finalize(st);
        free(psql);
        snprintf(err, errlen, "one statement per call expected (use batch for several)");
        return NULL;
    }
    free(psql);
    struct cached e = {.len = len, .hash = h, .st = st, .readonly = sqlite3_stmt_readonly(st)};
    int positional = max_param > 0 && sqlite3_bind_parameter_count(st) == max_param;
    int failed = 0;
    if (positional) {
        /* Every parameter is ?n: SQLite's parameter i is $i. */
        e.nmap = e.nwanted = max_param;
        e.map = malloc((size_t)max_param * sizeof *e.map);
        if (!e.map) {
            snprintf(err, errlen, "out of memory");
            failed = 1;
        } else {
            for (int k = 0; k < max_param; k++)
                e.map[k] = k;
        }
    } else {
        failed = build_map(&e, err, errlen) != 0; /* sets err */
    }
    if (!failed && !(e.sql = malloc(len + 1))) {
        snprintf(err, errlen, "out of memory");
        failed = 1;
    }
    if (failed) {
        sqlite3_finalize(st);
        free(e.map);
        return NULL;
    }
    memcpy(e.sql, sql, len);
    e.sql[len] = 0;
    while (c->slots[i].sql)
        i = (i + 1) % CACHE_SLOTS;
    c->slots[i] = e;
    c->ncached++;
    return &c->slots[i];
}

static const char *code_of(int rc)
{
    switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_ROWID: return STORE_CODE_UNIQUE;
    case SQLITE_CONSTRAINT_FOREIGNKEY: return STORE_CODE_FOREIGN_KEY;
    case SQLITE_CONSTRAINT_NOTNULL: return STORE_CODE_NOT_NULL;
    case SQLITE_CONSTRAINT_CHECK: return STORE_CODE_CHECK;
    }
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT: return STORE_CODE_CONSTRAINT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return STORE_CODE_BUSY;
    }
    return STORE_CODE_ERROR;
}

/* Runs statement i of req on c into req->results[i]; 0, or -1 with the request failed. */
static int run_stmt(struct conn *c, store_req_t *req, int i)
{
    store_stmt_t *s = &req->stmts[i];
    store_result_t *r = &req->results[i];
    char err[512] = "";
    struct cached *e = prepare(c, s->sql, s->sql_len, err, sizeof err);
    if (!e) {
        store_req_fail(req, i + 1, STORE_CODE_ERROR, err);
        return -1;
    }
    if (s->nparams != e->nwanted) {
        snprintf(err, sizeof err, "statement expects %d parameter%s, got %d", e->nwanted,
                 e->nwanted == 1 ? "" : "s", s->nparams);
        store_req_fail(req, i + 1, STORE_CODE_ERROR, err);
        return -1;
    }
    sqlite3_stmt *st = e->st;
    for (int k = 0; k < e->nmap; k++) {
        const store_value_t *v = &s->params[e->map[k]];
        int rc;
        switch (v->type) {
        case STORE_INT: rc = sqlite3_bind_int64(st, k + 1, v->v.i); break;
        case STORE_REAL: rc = sqlite3_bind_double(st, k + 1, v->v.d); break;
        case STORE_TEXT:
            rc = sqlite3_bind_text64(st, k + 1, v->v.s, v->len, SQLITE_STATIC, SQLITE_UTF8);
            break;
        case STORE_BLOB: rc = sqlite3_bind_blob64(st, k + 1, v->v.s, v->len, SQLITE_STATIC); break;
        default: rc = sqlite3_bind_null(st, k + 1);
        }
        if (rc != SQLITE_OK) {
            store_req_fail(req, i + 1, code_of(rc), sqlite3_errmsg(c->db));
            sqlite3_clear_bindings(st);
            return -1;
        }
    }
    int64_t total0 = sqlite3_total_changes64(c->db);
    int64_t rowid0 = sqlite3_last_insert_rowid(c->db);
    int ncols = sqlite3_column_count(st), rc;
    r->ncols = ncols;
    if (ncols > 0) {
        r->cols = store_arena_alloc(&req->arena, (size_t)ncols * sizeof *r->cols);
        for (int k = 0; r->cols && k < ncols; k++) {
            const char *name = sqlite3_column_name(st, k);
            r->cols[k] =
                store_arena_strdup(&req->arena, name ? name : "?", name ? strlen(name) : 1);
            if (!r->cols[k])
                r->cols = NULL;
        }
        if (!r->cols)
            goto oom;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_value_t *row = store_result_add_row(r);
        if (!row)
            goto oom;
        for (int k = 0; k < ncols; k++) {
            store_value_t *v = &row[k];
            memset(v, 0, sizeof *v);
            switch (sqlite3_column_type(st, k)) {
            case SQLITE_INTEGER:
                v->type = STORE_INT;
                v->v.i = sqlite3_column_int64(st, k);
                break;
            case SQLITE_FLOAT:
                v->type = STORE_REAL;
                v->v.d = sqlite3_column_double(st, k);
                break;
            case SQLITE_TEXT:
            case SQLITE_BLOB: {
                int blob = sqlite3_column_type(st, k) == SQLITE_BLOB;
                const void *p = blob ? sqlite3_column_blob(st, k) : sqlite3_column_text(st, k);
                size_t n = (size_t)sqlite3_column_bytes(st, k);
                v->type = blob ? STORE_BLOB : STORE_TEXT;
                v->len = n;
                v->v.s = store_arena_strdup(&req->arena, p ? p : "", p ? n : 0);
                if (!v->v.s)
                    goto oom;
                break;
            }
            default: v->type = STORE_NULL;
            }
        }
    }
    if (rc != SQLITE_DONE) {
        store_req_fail(req, i + 1, code_of(sqlite3_extended_errcode(c->db)), sqlite3_errmsg(c->db));
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return -1;
    }
    r->changes = sqlite3_total_changes64(c->db) != total0 ? sqlite3_changes64(c->db) : 0;
    int64_t rowid = sqlite3_last_insert_rowid(c->db);
    if (rowid != rowid0) {
        r->last_id = rowid;
        r->has_last_id = 1;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st); /* the bound bytes belong to req, which is about to go */
    return 0;
oom:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    store_req_fail(req, i + 1, STORE_CODE_ERROR, "out of memory");
    return -1;
}

/* A one-off statement without results (BEGIN, COMMIT, SAVEPOINT ...), from the cache. */
static int simple(struct conn *c, const char *sql, char *err, size_t errlen)
{
    struct cached *e = prepare(c, sql, strlen(sql), err, errlen);
    if (!e)
        return -1;
    int rc = sqlite3_step(e->st);
    sqlite3_reset(e->st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(c->db));
        return -1;
    }
    return 0;
}

/* ---- the store ---- */

struct sq {
    store_t base;
    char *path;
    int sync; /* PRAGMA synchronous: 0 off, 1 normal, 2 full */
    int busy_ms;
    int max_readers;
    int temp; /* sqlite::memory: is a private file removed at close */
    uv_async_t async;
    uv_thread_t writer;
    int writer_started;
    uv_mutex_t mu;
    uv_cond_t cv;  /* the writer waits on it */
    uv_cond_t rcv; /* idle readers wait on it */
    /* under mu */
    store_req_t *q_head, *q_tail; /* units for the writer */
    store_req_t *r_head, *r_tail; /* reads for the readers */
    int r_len;                    /* reads on that queue */
    store_req_t *d_head, *d_tail; /* completed requests for the loop */
    int stop, writer_exited, open_done;
    char open_err[1200];
    uv_thread_t readers[READERS_MAX];
    int nreaders;     /* reader threads started (the loop thread starts them) */
    int idle_readers; /* of those, waiting for a read */
    store_stats_t st;
    /* loop thread only */
    int open_reported, closing, close_started, released, refs;
    int holds; /* open + requests not yet delivered: the async handle keeps the loop alive */
    store_open_fn open_cb;
    void *open_ud;
    store_closed_fn close_cb;
    void *close_ud;
};

/* Appends the requests head..last (linked by next) to the completed list the loop drains.
 * Called with q->mu held; the caller wakes the loop (uv_async_send) after unlocking. */
static void done_append_locked(struct sq *q, store_req_t *head, store_req_t *last)
{
    if (q->d_tail)
        q->d_tail->next = head;
    else
        q->d_head = head;
    q->d_tail = last;
}

static double now_s(void)
{
    return (double)uv_hrtime() / 1e9;
}

static void sq_unref(struct sq *q)
{
    if (--q->refs > 0)
        return;
    uv_mutex_destroy(&q->mu);
    uv_cond_destroy(&q->cv);
    uv_cond_destroy(&q->rcv);
    free(q->path);
    free(q);
}

/* The store holds event payloads, decision inputs and notification history: a new
 * database file is created 0600 whatever the umask, and SQLite gives its -wal and -shm
 * files the database file's mode. */
static void create_private(const char *path)
{
    if (path[0] == '\0' || strcmp(path, ":memory:") == 0 || strncmp(path, "file:", 5) == 0)
        return;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
}

/* Another process holds the lock (worker processes share the file, docs/operations.md).
 * SQLite's own handler sleeps 1, 2, 5, 10, ... 100 ms between tries, far longer than another
 * worker's group commit holds the lock; short sleeps first keep a waiting commit from idling
 * behind it. Runs on the store's threads only, never the loop's. ud: the timeout in ms. */
static int busy_wait(void *ud, int tries)
{
    int limit_ms = (int)(intptr_t)ud;
    /* 100 tries of 100 us (10 ms), then 1 ms each */
    long waited_us = tries < 100 ? (long)tries * 100 : 10000 + (long)(tries - 100) * 1000;
    if (waited_us >= (long)limit_ms * 1000)
        return 0;
    struct timespec ts = {0, tries < 100 ? 100000 : 1000000};
    nanosleep(&ts, NULL);
    return 1;
}

static struct conn *conn_open(struct sq *q, int readonly, char *err, size_t errlen)
{
    struct conn *c = calloc(1, sizeof *c);
    if (c)
        c->slots = calloc(CACHE_SLOTS, sizeof *c->slots);
    if (!c || !c->slots) {
        free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                SQLITE_OPEN_NOMUTEX;
    if (!readonly)
        create_private(q->path);
    if (sqlite3_open_v2(q->path, &c->db, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", q->path, c->db ? sqlite3_errmsg(c->db) : "out of memory");
        conn_close(c);
        return NULL;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_handler(c->db, busy_wait, (void *)(intptr_t)q->busy_ms);
    if (readonly) /* the writer, closing last, checkpoints; readers never fsync */
        sqlite3_db_config(c->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
    return c;
}

/* Opens the writer's connection and makes the database WAL; on the writer thread. */
static struct conn *writer_open(struct sq *q, char *err, size_t errlen)
{
    if (q->temp) {
        const char *dir = getenv("TMPDIR");
        char tmpl[1024];
        snprintf(tmpl, sizeof tmpl, "%s/steward-store-XXXXXX", dir && *dir ? dir : "/tmp");
        int fd = mkstemp(tmpl);
        if (fd < 0) {
            snprintf(err, errlen, "%s: %s", tmpl, strerror(errno));
            return NULL;
        }
        close(fd);
        char *p = strdup(tmpl);
        if (!p) {
            unlink(tmpl);
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        free(q->path);
        q->path = p;
    }
    struct conn *c = conn_open(q, 0, err, errlen);
    if (!c)
        return NULL;
    static const char *const sync_names[] = {"OFF", "NORMAL", "FULL"};
    char pragmas[256];
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA foreign_keys=ON;",
             sync_names[q->sync]);
    char *msg = NULL;
    if (sqlite3_exec(c->db, pragmas, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", q->path, msg ? msg : "cannot set up the database");
        sqlite3_free(msg);
        conn_close(c);
        return NULL;
    }
    return c;
}

static void fail_all(store_req_t **units, int n, const char *msg)
{
    for (int u = 0; u < n; u++)
        if (units[u]->status == 0) {
            store_req_reset_results(units[u]);
            store_req_fail(units[u], 0, STORE_CODE_ERROR, msg);
        }
}

/* One transaction for units[0..n): each unit in a savepoint; a failed unit is rolled back
 * alone. If a failure ended the whole transaction (SQLite does on some errors, and on
 * RAISE(ROLLBACK)), the group is run again without the failed unit. */
static int run_group(struct conn *c, store_req_t **units, int n, uint64_t *stmts)
{
    char err[512];
again:
    if (simple(c, "BEGIN IMMEDIATE", err, sizeof err) != 0) {
        fail_all(units, n, err);
        return 0;
    }
    for (int u = 0; u < n; u++) {
        store_req_t *req = units[u];
        if (req->status != 0)
            continue;
        int sp = req->nstmts > 1;
        if (sp && simple(c, "SAVEPOINT unit", err, sizeof err) != 0) {
            store_req_fail(req, 0, STORE_CODE_ERROR, err);
            continue;
        }
        int failed = 0;
        for (int i = 0; i < req->nstmts && !failed; i++) {
            (*stmts)++;
            failed = run_stmt(c, req, i) != 0;
        }
        if (!failed) {
            if (sp && simple(c, "RELEASE unit", err, sizeof err) != 0)
                store_req_fail(req, 0, STORE_CODE_ERROR, err);
            continue;
        }
        store_req_reset_results(req);
        if (sqlite3_get_autocommit(c->db)) { /* the transaction is gone: redo the others */
            for (int k = 0; k < n; k++)
                if (units[k]->status == 0)
                    store_req_reset_results(units[k]);
            goto again;
        }
        if (sp && (simple(c, "ROLLBACK TO unit", err, sizeof err) != 0 ||
                   simple(c, "RELEASE unit", err, sizeof err) != 0)) {
            simple(c, "ROLLBACK", err, sizeof err);
            fail_all(units, n, "rolling back a failed unit failed");
            return 0;
        }
    }
    if (simple(c, "COMMIT", err, sizeof err) != 0) {
        char msg[600];
        snprintf(msg, sizeof msg, "commit failed: %s", err);
        if (!sqlite3_get_autocommit(c->db))
            simple(c, "ROLLBACK", err, sizeof err);
        fail_all(units, n, msg);
        return 0;
    }
    return 1;
}

static void writer_main(void *arg)
{
    struct sq *q = arg;
    char err[1200] = "";
    struct conn *c = writer_open(q, err, sizeof err);
    uv_mutex_lock(&q->mu);
    q->open_done = 1;
    if (!c) {
        snprintf(q->open_err, sizeof q->open_err, "%s", err);
        q->writer_exited = 1;
    }
    uv_mutex_unlock(&q->mu);
    uv_async_send(&q->async);
    if (!c)
        return;
    store_req_t **units = NULL;
    size_t cap = 0;
    int used = 1; /* since the last give_back: the open, then the migrations */
    for (;;) {
        uv_mutex_lock(&q->mu);
        while (!q->q_head && !q->stop) {
            if (!used) {
                uv_cond_wait(&q->cv, &q->mu);
            } else if (uv_cond_timedwait(&q->cv, &q->mu, IDLE_RELEASE_NS) == UV_ETIMEDOUT &&
                       !q->q_head && !q->stop) {
                uv_mutex_unlock(&q->mu);
                give_back(c);
                uv_mutex_lock(&q->mu);
                q->st.idle_releases++;
                used = 0;
            }
        }
        if (!q->q_head) {
            uv_mutex_unlock(&q->mu);
            break;
        }
        /* Take everything queued so far, up to a bounded transaction; the first unit goes
         * even when it alone is larger. */
        store_req_t *head = q->q_head, *last = head, *r = head->next;
        size_t n = 1, nst = (size_t)head->nstmts;
        while (r && nst + (size_t)r->nstmts <= GROUP_MAX_STMTS) {
            nst += (size_t)r->nstmts;
            n++;
            last = r;
            r = r->next;
        }
        q->q_head = r;
        if (!r)
            q->q_tail = NULL;
        last->next = NULL;
        q->st.queue_depth -= n;
        uv_mutex_unlock(&q->mu);

        if (n > cap) {
            size_t ncap = n > 64 ? n : 64;
            /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of request pointers */
            store_req_t **p = realloc(units, ncap * sizeof *p);
            if (!p) { /* cannot even list them: fail each, alone */
                for (r = head; r; r = r->next)
                    store_req_fail(r, 0, STORE_CODE_ERROR, "out of memory");
                n = 0;
            } else {
                units = p;
                cap = ncap;
            }
        }
        size_t i = 0;
        for (r = head; r && i < n; r = r->next)
            units[i++] = r;
        double t0 = now_s();
        uint64_t stmts = 0;
        int committed = n ? run_group(c, units, (int)n, &stmts) : 0;
        double dt = now_s() - t0;

        uv_mutex_lock(&q->mu);
        for (r = head; r; r = r->next) {
            q->st.units++;
            q->st.failed_units += r->status != 0;
        }
        q->st.commits += (uint64_t)committed;
        q->st.statements += stmts;
        q->st.last_batch_units = n;
        if (n > q->st.max_batch_units)
            q->st.max_batch_units = n;
        q->st.commit_seconds_total += dt;
        done_append_locked(q, head, last);
        uv_mutex_unlock(&q->mu);
        uv_async_send(&q->async);
        used = 1;
    }
    free(units);
    /* Readers finish their queue and close first, so the writer is the last connection: its
     * close checkpoints. No reader starts after stop (submit refuses once closing). */
    uv_mutex_lock(&q->mu);
    int nreaders = q->nreaders;
    uv_mutex_unlock(&q->mu);
    for (int i = 0; i < nreaders; i++)
        uv_thread_join(&q->readers[i]);
    conn_close(c);
    if (q->temp) {
        char p[1100];
        unlink(q->path);
        snprintf(p, sizeof p, "%s-wal", q->path);
        unlink(p);
        snprintf(p, sizeof p, "%s-shm", q->path);
        unlink(p);
    }
    uv_mutex_lock(&q->mu);
    q->writer_exited = 1;
    uv_mutex_unlock(&q->mu);
    uv_async_send(&q->async);
}

/* ---- loop side ---- */

/* An idle store must not keep the loop (and a finished script) running: the async handle is
 * referenced only while something is pending. */
static void hold(struct sq *q)
{
    if (q->holds++ == 0)
        uv_ref((uv_handle_t *)&q->async);
}

static void unhold(struct sq *q)
{
    if (--q->holds == 0)
        uv_unref((uv_handle_t *)&q->async);
}

static void async_closed(uv_handle_t *h)
{
    struct sq *q = h->data;
    store_closed_fn cb = q->close_cb;
    void *ud = q->close_ud;
    sq_unref(q);
    if (cb)
        cb(ud);
}

static void deliver(struct sq *q)
{
    uv_mutex_lock(&q->mu);
    store_req_t *r = q->d_head;
    q->d_head = q->d_tail = NULL;
    uv_mutex_unlock(&q->mu);
    while (r) {
        store_req_t *next = r->next;
        r->next = NULL;
        unhold(q);
        r->done(r);
        r = next;
    }
}

static void release(struct sq *q)
{
    if (q->released)
        return;
    q->released = 1;
    uv_thread_join(&q->writer);
    deliver(q);
    uv_close((uv_handle_t *)&q->async, async_closed);
}

static void on_async(uv_async_t *h)
{
    struct sq *q = h->data;
    uv_mutex_lock(&q->mu);
    int opened = q->open_done, exited = q->writer_exited;
    uv_mutex_unlock(&q->mu);
    if (opened && !q->open_reported) {
        q->open_reported = 1;
        unhold(q);
        int failed = q->open_err[0] != 0;
        if (failed) { /* the store was never handed out: release it quietly */
            q->closing = 1;
            release(q);
        }
        q->open_cb(failed ? NULL : &q->base, failed ? q->open_err : NULL, q->open_ud);
        if (failed)
            return;
    }
    deliver(q);
    if (exited && q->close_started)
        release(q);
}

static void stop_writer(struct sq *q)
{
    q->close_started = 1;
    uv_mutex_lock(&q->mu);
    q->stop = 1;
    uv_cond_signal(&q->cv);
    uv_cond_broadcast(&q->rcv);
    uv_mutex_unlock(&q->mu);
}

/* ---- reads on the store's reader threads ---- */

/* Runs one read on c (opened on first use); the results go back to the loop. */
static void read_one(struct sq *q, struct conn **c, store_req_t *req)
{
    char err[256];
    double t0 = now_s();
    if (!*c && !(*c = conn_open(q, 1, err, sizeof err)))
        store_req_fail(req, 0, STORE_CODE_ERROR, err);
    for (int i = 0; *c && i < req->nstmts; i++)
        if (run_stmt(*c, req, i) != 0)
            break;
    if (*c && !sqlite3_get_autocommit((*c)->db)) /* a read left a transaction open: end it */
        simple(*c, "ROLLBACK", err, sizeof err);
    double dt = now_s() - t0;
    uv_mutex_lock(&q->mu);
    q->st.reads++;
    q->st.failed_reads += req->status != 0;
    q->st.read_seconds_total += dt;
    q->st.reads_in_flight--;
    done_append_locked(q, req, req);
    uv_mutex_unlock(&q->mu);
    uv_async_send(&q->async);
}

/* A reader keeps its connection (and its prepared statements) for the store's lifetime; at
 * stop it finishes the reads already queued, then closes it (no checkpoint, no fsync). */
static void reader_main(void *arg)
{
    struct sq *q = arg;
    struct conn *c = NULL;
    int used = 0; /* since the last give_back */
    uv_mutex_lock(&q->mu);
    for (;;) {
        while (!q->r_head && !q->stop) {
            q->idle_readers++;
            int timed_out = 0;
            if (!used)
                uv_cond_wait(&q->rcv, &q->mu);
            else
                timed_out = uv_cond_timedwait(&q->rcv, &q->mu, IDLE_RELEASE_NS) == UV_ETIMEDOUT;
            q->idle_readers--;
            if (timed_out && !q->r_head && !q->stop) { /* not idle while it gives back */
                uv_mutex_unlock(&q->mu);
                give_back(c);
                uv_mutex_lock(&q->mu);
                q->st.idle_releases++;
                used = 0;
            }
        }
        store_req_t *req = q->r_head;
        if (!req)
            break;
        q->r_head = req->next;
        q->r_len--;
        if (!q->r_head)
            q->r_tail = NULL;
        req->next = NULL;
        uv_mutex_unlock(&q->mu);
        read_one(q, &c, req);
        used = c != NULL;
        uv_mutex_lock(&q->mu);
    }
    uv_mutex_unlock(&q->mu);
    conn_close(c);
}

/* Queues a read; starts a reader when the idle ones (signalled or not, each takes one read)
 * are fewer than the queued reads and the bound allows. On the loop thread. */
static int queue_read(struct sq *q, store_req_t *req)
{
    uv_mutex_lock(&q->mu);
    if (q->r_len + 1 > q->idle_readers && q->nreaders < q->max_readers) {
        if (uv_thread_create(&q->readers[q->nreaders], reader_main, q) == 0)
            q->nreaders++;
        else if (q->nreaders == 0) { /* nobody could ever run it */
            uv_mutex_unlock(&q->mu);
            return -1;
        }
    }
    if (q->r_tail)
        q->r_tail->next = req;
    else
        q->r_head = req;
    q->r_tail = req;
    q->r_len++;
    q->st.reads_in_flight++;
    uv_cond_signal(&q->rcv);
    uv_mutex_unlock(&q->mu);
    return 0;
}

/* ---- the ops ---- */

/* Posts a failed request back through the loop, so done never runs inside submit. */
static void fail_later(struct sq *q, store_req_t *req, const char *code, const char *msg)
{
    store_req_fail(req, 0, code, msg);
    hold(q);
    uv_mutex_lock(&q->mu);
    done_append_locked(q, req, req);
    uv_mutex_unlock(&q->mu);
    uv_async_send(&q->async);
}

static void sq_submit(store_t *s, store_req_t *req)
{
    struct sq *q = (struct sq *)s;
    req->next = NULL;
    if (q->closing || req->nstmts < 1) {
        fail_later(q, req, q->closing ? STORE_CODE_CLOSED : STORE_CODE_ERROR,
                   q->closing ? "store is closed" : "no statement");
        return;
    }
    if (req->kind == STORE_READ) {
        if (queue_read(q, req) != 0)
            fail_later(q, req, STORE_CODE_ERROR, "cannot start a reader thread");
        else
            hold(q);
        return;
    }
    hold(q);
    uv_mutex_lock(&q->mu);
    if (q->q_tail)
        q->q_tail->next = req;
    else
        q->q_head = req;
    q->q_tail = req;
    q->st.queue_depth++;
    uv_cond_signal(&q->cv);
    uv_mutex_unlock(&q->mu);
}

static void sq_close(store_t *s, store_closed_fn cb, void *ud)
{
    struct sq *q = (struct sq *)s;
    if (q->closing)
        return;
    q->closing = 1;
    q->close_cb = cb;
    q->close_ud = ud;
    hold(q);        /* until the writer has exited */
    stop_writer(q); /* readers drain their queue, the writer its own, then both exit */
}

static void sq_close_now(store_t *s)
{
    struct sq *q = (struct sq *)s;
    if (q->released)
        return;
    q->closing = 1;
    stop_writer(q);
    release(q); /* joins the writer: queued units are committed first */
}

static void sq_stats(store_t *s, store_stats_t *out)
{
    struct sq *q = (struct sq *)s;
    uv_mutex_lock(&q->mu);
    *out = q->st;
    uv_mutex_unlock(&q->mu);
}

/* target: PATH or :memory:, then ?synchronous=full|normal&busy_timeout=MS&readers=N */
static int parse_target(struct sq *q, const char *target, char *err, size_t errlen)
{
    if (strncmp(target, "//", 2) == 0)
        target += 2;
    const char *qm = strchr(target, '?');
    size_t plen = qm ? (size_t)(qm - target) : strlen(target);
    if (plen == 0) {
        snprintf(err, errlen, "sqlite: a path or :memory: expected");
        return -1;
    }
    q->path = strndup(target, plen);
    if (!q->path) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    q->temp = strcmp(q->path, ":memory:") == 0;
    q->sync = q->temp ? 0 : 2;
    q->busy_ms = 5000;
    q->max_readers = 4;
    for (const char *p = qm ? qm + 1 : NULL; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        char opt[128];
        if (n >= sizeof opt) {
            snprintf(err, errlen, "sqlite: option too long");
            return -1;
        }
        memcpy(opt, p, n);
        opt[n] = 0;
        char *eq = strchr(opt, '=');
        const char *val = eq ? eq + 1 : "";
        if (eq)
            *eq = 0;
        char *end;
        long num = strtol(val, &end, 10);
        int isnum = *val && !*end && num >= 0 && num <= 3600000;
        if (strcmp(opt, "synchronous") == 0 &&
            (strcmp(val, "full") == 0 || strcmp(val, "normal") == 0))
            q->sync = val[0] == 'f' ? 2 : 1;
        else if (strcmp(opt, "busy_timeout") == 0 && isnum)
            q->busy_ms = (int)num;
        else if (strcmp(opt, "readers") == 0 && isnum && num >= 1 && num <= 64)
            q->max_readers = (int)num;
        else {
            snprintf(err, errlen,
                     "sqlite: bad option '%s' (synchronous=full|normal, busy_timeout=MS, "
                     "readers=N)",
                     opt);
            return -1;
        }
        p = amp ? amp + 1 : NULL;
    }
    return 0;
}

static store_t *sq_open(uv_loop_t *loop, const char *target, store_open_fn cb, void *ud, char *err,
                        size_t errlen)
{
    struct sq *q = calloc(1, sizeof *q);
    if (!q) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (parse_target(q, target, err, errlen) != 0) {
        free(q->path);
        free(q);
        return NULL;
    }
    q->base.ops = &store_sqlite_ops;
    q->base.loop = loop;
    q->open_cb = cb;
    q->open_ud = ud;
    q->refs = 1; /* the async handle */
    uv_mutex_init(&q->mu);
    uv_cond_init(&q->cv);
    uv_cond_init(&q->rcv);
    uv_async_init(loop, &q->async, on_async);
    q->async.data = q;
    uv_unref((uv_handle_t *)&q->async);
    hold(q); /* until the open is reported */
    if (uv_thread_create(&q->writer, writer_main, q) != 0) {
        snprintf(err, errlen, "sqlite: cannot start the writer thread");
        q->released = 1;
        uv_close((uv_handle_t *)&q->async, async_closed);
        return NULL;
    }
    return &q->base;
}

const struct store_ops store_sqlite_ops = {
    .name = "sqlite",
    .scheme = "sqlite:",
    .open = sq_open,
    .submit = sq_submit,
    .close = sq_close,
    .close_now = sq_close_now,
    .stats = sq_stats,
};
