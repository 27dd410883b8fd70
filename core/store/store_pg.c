/* The PostgreSQL backend of store.h: libpq, entirely non-blocking on the loop thread. A pool
 * of connections, each driven by a uv_poll on its socket (PQconnectPoll, PQsendPrepare /
 * PQsendQueryPrepared, PQflush, PQconsumeInput). Reads take any free connection, one
 * statement each; writes are group-committed as in the SQLite backend: one write group at a
 * time takes every unit queued so far into BEGIN ... COMMIT, each unit in its own savepoint,
 * so units commit in submission order and many tasks share one commit. Lost connections are
 * re-opened in the background; see docs/internals-store.md. */
#include <libpq-fe.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"
#include "pg_conn.h"
#include "store.h"

#define DEFAULT_POOL      4
#define MAX_POOL          64
#define DEFAULT_TIMEOUT   5000 /* ms a request may wait for a free connection */
#define GROUP_MAX_STMTS   4096 /* statements per write transaction, so one commit stays short */
#define CACHE_SLOTS       512  /* prepared statements per connection (open addressing) */
#define CACHE_MAX         256
#define BACKOFF_MIN_MS    100
#define BACKOFF_MAX_MS    5000
#define CONNECT_TIMEOUT   10000 /* ms for one connection attempt */
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

enum cstate { C_DOWN, C_CONNECTING, C_SETUP, C_IDLE, C_BUSY };

enum phase {
    P_NONE,
    P_SETUP,
    P_BEGIN,
    P_SAVEPOINT,
    P_DEALLOC,
    P_PREPARE,
    P_STMT,
    P_RELEASE,
    P_ROLLBACK_TO,
    P_RELEASE_FAILED,
    P_ROLLBACK,
    P_COMMIT,
};

struct pg;

struct conn {
    struct pg *p;
    PGconn *pg;
    enum cstate state;
    pgc_watch_t *w;
    int want_write;
    uv_timer_t timer; /* reconnect backoff, or the connect deadline */
    uint64_t backoff_ms;
    /* the work in progress */
    int writing;
    store_req_t **units;
    int nunits, ucap;
    int u, i; /* current unit and statement */
    enum phase phase;
    int retried;      /* the current unit/read was re-run once after a stale plan */
    int restart;      /* roll back, then run the single-unit group again */
    int group_failed; /* a savepoint command failed: the transaction is lost */
    uint64_t stmts;
    double t0;
    PGresult *res; /* the result of the command in flight, so far */
    /* prepared statements */
    struct cached *slots;
    int ncached;
    unsigned next_id;
    int dealloc_pending; /* a plan went stale: DEALLOCATE ALL at the next safe point */
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

/* ---- the SQL text: which $n it uses ---- */

static int ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           (unsigned char)c >= 0x80;
}

/* The highest $n in sql, outside strings, quoted identifiers, dollar quotes and comments;
 * used[n-1] set for each n seen (used may be NULL). A statement given more parameters than
 * it names is an error on every backend, and PostgreSQL would accept typed extras. */
static int scan_params(const char *sql, size_t len, unsigned char *used, int nused)
{
    int max = 0;
    for (size_t i = 0; i < len; i++) {
        char c = sql[i];
        if (c == '\'' || c == '"') {
            int esc = c == '\'' && i > 0 && (sql[i - 1] == 'E' || sql[i - 1] == 'e') &&
                      (i < 2 || !ident_char(sql[i - 2]));
            for (i++; i < len && sql[i] != c; i++)
                if (esc && sql[i] == '\\')
                    i++;
        } else if (c == '-' && i + 1 < len && sql[i + 1] == '-') {
            while (i < len && sql[i] != '\n')
                i++;
        } else if (c == '/' && i + 1 < len && sql[i + 1] == '*') {
            for (i += 2; i + 1 < len && !(sql[i] == '*' && sql[i + 1] == '/'); i++) {
            }
            i++;
        } else if (c == '$' && (i == 0 || !ident_char(sql[i - 1]))) {
            if (i + 1 < len && sql[i + 1] >= '0' && sql[i + 1] <= '9') {
                int n = 0;
                size_t k = i + 1;
                for (; k < len && sql[k] >= '0' && sql[k] <= '9' && n < 100000; k++)
                    n = n * 10 + (sql[k] - '0');
                if (n > max)
                    max = n;
                if (used && n >= 1 && n <= nused)
                    used[n - 1] = 1;
                i = k - 1;
                continue;
            }
            /* a dollar quote: $tag$ ... $tag$ */
            size_t k = i + 1;
            while (k < len && ident_char(sql[k]) && !(sql[k] >= '0' && sql[k] <= '9' && k == i + 1))
                k++;
            if (k >= len || sql[k] != '$')
                continue;
            size_t taglen = k - i + 1;
            const char *tag = sql + i;
            size_t j = k + 1;
            while (j + taglen <= len && memcmp(sql + j, tag, taglen) != 0)
                j++;
            i = j + taglen <= len ? j + taglen - 1 : len;
        }
    }
    return max;
}

/* ---- errors ---- */

static const char *code_of_state(const char *s)
{
    if (!s)
        return STORE_CODE_ERROR;
    if (strcmp(s, "23505") == 0)
        return STORE_CODE_UNIQUE;
    if (strcmp(s, "23503") == 0)
        return STORE_CODE_FOREIGN_KEY;
    if (strcmp(s, "23502") == 0)
        return STORE_CODE_NOT_NULL;
    if (strcmp(s, "23514") == 0)
        return STORE_CODE_CHECK;
    if (strncmp(s, "23", 2) == 0)
        return STORE_CODE_CONSTRAINT;
    if (strncmp(s, "08", 2) == 0 || strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 ||
        strcmp(s, "57P03") == 0)
        return STORE_CODE_UNAVAILABLE;
    if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0 || strcmp(s, "55P03") == 0)
        return STORE_CODE_BUSY;
    return STORE_CODE_ERROR;
}

/* ---- forward declarations ---- */

static void kick(struct pg *p);
static void conn_io(struct conn *k, int readable, int writable);
static void conn_broken(struct conn *k, const char *why);
static void connect_step(struct conn *k);
static void stmt_start(struct conn *k);
static void unit_start(struct conn *k);
static void maybe_release(struct pg *p);

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

/* ---- the socket watcher ---- */

static void on_poll(uv_poll_t *h, int status, int events);

/* A request pending (or the open, or a close) keeps the loop running; an idle pool does not. */
static void watch_ref(struct conn *k)
{
    if (!k->w)
        return;
    struct pg *p = k->p;
    int ref = k->state == C_BUSY || (!p->open_reported && k == &p->conns[0]);
    pgc_watch_ref(k->w, ref);
}

/* Stops watching before libpq may close (or replace) the socket: libuv must forget the fd
 * while it is still ours. */
static void watch_drop(struct conn *k)
{
    pgc_watch_drop(&k->w);
}

static int watch_new(struct conn *k, int events)
{
    if (!(k->w = pgc_watch_new(k->p->base.loop, k->pg, events, on_poll, k)))
        return -1;
    watch_ref(k);
    return 0;
}

static void watch_set(struct conn *k, int events)
{
    pgc_watch_set(k->w, events);
    watch_ref(k);
}

/* After a PQsend*: push the output; 0, or -1 when the connection broke (handled). */
static int after_send(struct conn *k, int sent)
{
    char msg[300];
    if (pgc_flush(k->pg, sent, &k->want_write, msg, sizeof msg) != 0) {
        conn_broken(k, msg);
        return -1;
    }
    watch_set(k, UV_READABLE | (k->want_write ? UV_WRITABLE : 0));
    return 0;
}

static void send_simple(struct conn *k, enum phase ph, const char *sql)
{
    k->phase = ph;
    after_send(k, PQsendQueryParams(k->pg, sql, 0, NULL, NULL, NULL, NULL, 0));
}

/* ---- connecting ---- */

static void on_conn_timer(uv_timer_t *t);

static void schedule_retry(struct conn *k)
{
    struct pg *p = k->p;
    if (p->closing || p->released)
        return;
    if (k->backoff_ms < BACKOFF_MIN_MS)
        k->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_start(&k->timer, on_conn_timer, k->backoff_ms, 0);
    k->backoff_ms *= 2;
    if (k->backoff_ms > BACKOFF_MAX_MS)
        k->backoff_ms = BACKOFF_MAX_MS;
}

static void report_open(struct pg *p, const char *err);

static void connect_failed(struct conn *k, const char *msg)
{
    struct pg *p = k->p;
    watch_drop(k);
    if (k->pg)
        PQfinish(k->pg);
    k->pg = NULL;
    k->state = C_DOWN;
    uv_timer_stop(&k->timer);
    snprintf(p->last_err, sizeof p->last_err, "%s", msg);
    if (!p->open_reported) {
        report_open(p, msg);
        return;
    }
    schedule_retry(k);
}

/* Starts a connection attempt; NULL with msg set when it failed at once. */
static PGconn *start_conn(const struct pg *p, char *msg, size_t msglen)
{
    return pgc_start(p->conninfo, "steward", NULL, msg, msglen);
}

static void conn_connect(struct conn *k)
{
    char msg[400];
    if (!(k->pg = start_conn(k->p, msg, sizeof msg))) {
        connect_failed(k, msg);
        return;
    }
    k->state = C_CONNECTING;
    if (watch_new(k, UV_WRITABLE) != 0) {
        connect_failed(k, "cannot watch the connection's socket");
        return;
    }
    uv_timer_start(&k->timer, on_conn_timer, CONNECT_TIMEOUT, 0);
}

static void on_conn_timer(uv_timer_t *t)
{
    struct conn *k = t->data;
    if (k->state == C_DOWN)
        conn_connect(k);
    else if (k->state == C_CONNECTING || k->state == C_SETUP)
        connect_failed(k, "timeout connecting to the database");
}

static void connect_step(struct conn *k)
{
    char msg[400];
    switch (pgc_connect_step(k->pg, &k->w, k->p->base.loop, on_poll, k, msg, sizeof msg)) {
    case PGC_WAIT: watch_ref(k); return;
    case PGC_DONE:
        watch_ref(k);
        /* Reads run as single statements in implicit transactions; making those read-only
         * costs nothing here, while writes say BEGIN READ WRITE. */
        k->state = C_SETUP;
        send_simple(k, P_SETUP, "SET default_transaction_read_only = on");
        return;
    default: connect_failed(k, msg);
    }
}

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
    watch_ref(&p->conns[0]);
    for (int i = 1; i < p->pool_size; i++)
        conn_connect(&p->conns[i]);
    p->open_cb(&p->base, NULL, p->open_ud);
}

static void conn_ready(struct conn *k)
{
    struct pg *p = k->p;
    uv_timer_stop(&k->timer);
    k->state = C_IDLE;
    k->backoff_ms = BACKOFF_MIN_MS;
    k->phase = P_NONE;
    watch_set(k, UV_READABLE); /* an idle connection still notices the server going away */
    if (!p->open_reported)
        report_open(p, NULL);
    kick(p);
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

static void fail_ok_units(struct conn *k, const char *code, const char *msg)
{
    for (int u = 0; u < k->nunits; u++)
        if (k->units[u]->status == 0) {
            store_req_reset_results(k->units[u]);
            store_req_fail(k->units[u], 0, code, msg);
        }
}

/* ---- lost connections ---- */

static void conn_broken(struct conn *k, const char *why)
{
    struct pg *p = k->p;
    if (k->state == C_CONNECTING || k->state == C_SETUP) {
        connect_failed(k, why);
        return;
    }
    int had_work = k->state == C_BUSY;
    watch_drop(k);
    if (k->res)
        PQclear(k->res);
    k->res = NULL;
    PQfinish(k->pg);
    k->pg = NULL;
    cache_clear(k);
    k->dealloc_pending = 0;
    k->state = C_DOWN;
    snprintf(p->last_err, sizeof p->last_err, "%s", why);
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
    schedule_retry(k);
    kick(p);
}

/* ---- running statements ---- */

static int64_t parse_int(const char *s)
{
    return strtoll(s, NULL, 10);
}

/* Copies a successful result into r (of req's arena); 0, or -1 when out of memory. */
static int take_result(store_req_t *req, store_result_t *r, const PGresult *res)
{
    int ncols = PQnfields(res);
    int nrows = PQntuples(res);
    r->ncols = ncols;
    if (ncols > 0) {
        r->cols = store_arena_alloc(&req->arena, (size_t)ncols * sizeof *r->cols);
        if (!r->cols)
            return -1;
        for (int c = 0; c < ncols; c++) {
            const char *name = PQfname(res, c);
            if (!(r->cols[c] = store_arena_strdup(&req->arena, name, strlen(name))))
                return -1;
        }
    }
    int id_col = -1;
    for (int row = 0; row < nrows; row++) {
        store_value_t *cells = store_result_add_row(r);
        if (!cells && ncols > 0)
            return -1;
        for (int c = 0; c < ncols; c++) {
            store_value_t *v = &cells[c];
            memset(v, 0, sizeof *v);
            if (PQgetisnull(res, row, c))
                continue;
            const char *s = PQgetvalue(res, row, c);
            size_t n = (size_t)PQgetlength(res, row, c);
            switch (PQftype(res, c)) {
            case PGC_OID_INT2:
            case PGC_OID_INT4:
            case PGC_OID_INT8:
            case PGC_OID_OID:
                v->type = STORE_INT;
                v->v.i = parse_int(s);
                break;
            case PGC_OID_FLOAT4:
            case PGC_OID_FLOAT8:
            case PGC_OID_NUMERIC:
                v->type = STORE_REAL;
                v->v.d = strtod(s, NULL);
                break;
            case PGC_OID_BOOL:
                v->type = STORE_INT;
                v->v.i = s[0] == 't';
                break;
            case PGC_OID_BYTEA: {
                size_t bn = 0;
                unsigned char *b = PQunescapeBytea((const unsigned char *)s, &bn);
                if (!b)
                    return -1;
                v->type = STORE_BLOB;
                v->len = bn;
                v->v.s = store_arena_strdup(&req->arena, (const char *)b, bn);
                PQfreemem(b);
                if (!v->v.s)
                    return -1;
                break;
            }
            default:
                v->type = STORE_TEXT;
                v->len = n;
                if (!(v->v.s = store_arena_strdup(&req->arena, s, n)))
                    return -1;
            }
        }
    }
    const char *tag = PQcmdStatus((PGresult *)res);
    int insert = strncmp(tag, "INSERT ", 7) == 0;
    if (insert || strncmp(tag, "UPDATE ", 7) == 0 || strncmp(tag, "DELETE ", 7) == 0 ||
        strncmp(tag, "MERGE ", 6) == 0)
        r->changes = parse_int(PQcmdTuples((PGresult *)res));
    /* PostgreSQL has no rowid: an INSERT that returns an integer "id" column reports it. */
    for (int c = 0; insert && c < ncols; c++)
        if (strcmp(r->cols[c], "id") == 0)
            id_col = c;
    if (id_col >= 0 && r->nrows > 0) {
        const store_value_t *v = &r->cells[(r->nrows - 1) * (size_t)ncols + (size_t)id_col];
        if (v->type == STORE_INT) {
            r->last_id = v->v.i;
            r->has_last_id = 1;
        }
    }
    return 0;
}

static store_req_t *cur_req(struct conn *k)
{
    return k->units[k->u];
}

static char sig_of(const store_value_t *v)
{
    switch (v->type) {
    case STORE_INT: return 'i';
    case STORE_REAL: return 'r';
    case STORE_BLOB: return 'b';
    default: return 'u'; /* TEXT and NULL: PostgreSQL infers the type from the context */
    }
}

/* A statement failed with msg: record it on the request and go on as the work demands. */
static void stmt_failed(struct conn *k, const char *code, const char *msg)
{
    store_req_t *req = cur_req(k);
    store_req_reset_results(req);
    store_req_fail(req, k->i + 1, code, msg);
    if (!k->writing) {
        finish_work(k);
        k->state = C_IDLE;
        watch_set(k, UV_READABLE);
        kick(k->p);
    } else if (k->nunits > 1) {
        send_simple(k, P_ROLLBACK_TO, "ROLLBACK TO SAVEPOINT unit");
    } else {
        send_simple(k, P_ROLLBACK, "ROLLBACK");
    }
}

/* Sends statement k->i of the current request, preparing it first on a cache miss. */
static void stmt_start(struct conn *k)
{
    store_req_t *req = cur_req(k);
    if (k->i >= req->nstmts) {
        if (!k->writing) {
            finish_work(k);
            k->state = C_IDLE;
            watch_set(k, UV_READABLE);
            kick(k->p);
        } else if (k->nunits > 1) {
            send_simple(k, P_RELEASE, "RELEASE SAVEPOINT unit");
        } else {
            k->u++;
            unit_start(k);
        }
        return;
    }
    if (k->dealloc_pending || k->ncached >= CACHE_MAX) {
        send_simple(k, P_DEALLOC, "DEALLOCATE ALL");
        return;
    }
    store_stmt_t *s = &req->stmts[k->i];
    int n = s->nparams;
    char err[200];
    char sigbuf[64] = {0};
    char *sig = n <= (int)sizeof sigbuf ? sigbuf : malloc((size_t)n);
    const char **values = calloc((size_t)(n ? n : 1), sizeof *values);
    int *lengths = calloc((size_t)(n ? n : 1), sizeof *lengths);
    int *formats = calloc((size_t)(n ? n : 1), sizeof *formats);
    char *numbuf = malloc((size_t)(n ? n : 1) * 32);
    unsigned char *used = calloc((size_t)(n ? n : 1), 1);
    Oid *types = calloc((size_t)(n ? n : 1), sizeof *types);
    int ok = sig && values && lengths && formats && numbuf && used && types;
    if (!ok) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    int want = scan_params(s->sql, s->sql_len, used, n);
    if (want != n) {
        snprintf(err, sizeof err, "statement expects %d parameter%s, got %d", want,
                 want == 1 ? "" : "s", n);
        ok = 0;
        goto fail;
    }
    for (int j = 0; j < n; j++) {
        const store_value_t *v = &s->params[j];
        char *nb = numbuf + (size_t)j * 32;
        sig[j] = sig_of(v);
        switch (v->type) {
        case STORE_INT:
            snprintf(nb, 32, "%lld", (long long)v->v.i);
            values[j] = nb;
            types[j] = PGC_OID_INT8;
            break;
        case STORE_REAL:
            if (isnan(v->v.d))
                snprintf(nb, 32, "NaN");
            else if (isinf(v->v.d))
                snprintf(nb, 32, "%sInfinity", v->v.d < 0 ? "-" : "");
            else
                snprintf(nb, 32, "%.17g", v->v.d);
            values[j] = nb;
            types[j] = PGC_OID_FLOAT8;
            break;
        case STORE_TEXT:
            if (memchr(v->v.s, 0, v->len)) {
                snprintf(err, sizeof err,
                         "parameter %d: text with a NUL byte (PostgreSQL text cannot hold one; "
                         "bind a blob)",
                         j + 1);
                ok = 0;
                goto fail;
            }
            values[j] = v->v.s;
            types[j] = used[j] ? 0 : 25; /* an unreferenced unknown cannot be typed */
            break;
        case STORE_BLOB:
            values[j] = v->len ? v->v.s : "";
            lengths[j] = (int)v->len;
            formats[j] = 1;
            types[j] = PGC_OID_BYTEA;
            break;
        default: types[j] = used[j] ? 0 : 25;
        }
    }
    uint64_t h;
    struct cached *e = cache_find(k, s->sql, s->sql_len, sig, (size_t)n, &h);
    char name[24];
    int sent = 0;
    if (e->sql) {
        snprintf(name, sizeof name, "s%u", e->id);
        k->phase = P_STMT;
        sent = PQsendQueryPrepared(k->pg, name, n, values, lengths, formats, 0);
    } else {
        /* fill the slot now (the name must be known); a failed prepare empties it again */
        e->sql = malloc(s->sql_len + 1 + (size_t)n);
        if (!e->sql) {
            snprintf(err, sizeof err, "out of memory");
            ok = 0;
            goto fail;
        }
        memcpy(e->sql, s->sql, s->sql_len);
        e->sql[s->sql_len] = 0;
        memcpy(e->sql + s->sql_len + 1, sig, (size_t)n);
        e->len = s->sql_len;
        e->siglen = (size_t)n;
        e->hash = h;
        e->id = ++k->next_id;
        k->ncached++;
        snprintf(name, sizeof name, "s%u", e->id);
        k->phase = P_PREPARE;
        sent = PQsendPrepare(k->pg, name, s->sql, n, types);
    }
fail:
    if (sig != sigbuf)
        free(sig);
    free(values);
    free(lengths);
    free(formats);
    free(numbuf);
    free(used);
    free(types);
    if (!ok) {
        stmt_failed(k, STORE_CODE_ERROR, err);
        return;
    }
    if (k->phase == P_STMT)
        k->stmts++;
    after_send(k, sent);
}

/* Drops the cache entry of the statement in flight (its prepare failed). */
static void cache_forget_current(struct conn *k)
{
    store_stmt_t *s = &cur_req(k)->stmts[k->i];
    char sigbuf[64] = {0};
    int n = s->nparams;
    char *sig = n <= (int)sizeof sigbuf ? sigbuf : malloc((size_t)n);
    if (!sig) { /* cannot rebuild the key: forget everything */
        k->dealloc_pending = 1;
        return;
    }
    for (int j = 0; j < n; j++)
        sig[j] = sig_of(&s->params[j]);
    uint64_t h;
    struct cached *e = cache_find(k, s->sql, s->sql_len, sig, (size_t)n, &h);
    if (sig != sigbuf)
        free(sig);
    if (!e->sql)
        return;
    /* Removing from open addressing would break probe chains: re-insert the rest of the run. */
    free(e->sql);
    memset(e, 0, sizeof *e);
    k->ncached--;
    size_t i = (size_t)(e - k->slots);
    for (i = (i + 1) % CACHE_SLOTS; k->slots[i].sql; i = (i + 1) % CACHE_SLOTS) {
        struct cached moved = k->slots[i];
        memset(&k->slots[i], 0, sizeof k->slots[i]);
        size_t j = (size_t)(moved.hash % CACHE_SLOTS);
        while (k->slots[j].sql)
            j = (j + 1) % CACHE_SLOTS;
        k->slots[j] = moved;
    }
}

static void unit_start(struct conn *k)
{
    if (k->group_failed || k->u >= k->nunits) {
        if (k->group_failed)
            send_simple(k, P_ROLLBACK, "ROLLBACK");
        else
            send_simple(k, P_COMMIT, "COMMIT");
        return;
    }
    k->i = 0;
    if (k->nunits > 1)
        send_simple(k, P_SAVEPOINT, "SAVEPOINT unit");
    else
        stmt_start(k);
}

/* A cached plan whose result columns changed (ALTER TABLE under a SELECT *): re-prepare. */
static int stale_plan(const PGresult *r)
{
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    return st && strcmp(st, "0A000") == 0 && msg && strstr(msg, "cached plan");
}

/* The command in flight has completed with res (NULL: no result at all). */
/* Undoing a failed unit's savepoint failed: the group's transaction cannot go on; the units
 * that had succeeded in it fail too, and the next unit starts over. */
static void rollback_failed(struct conn *k)
{
    fail_ok_units(k, STORE_CODE_ERROR, "rolling back a failed unit failed");
    k->group_failed = 1;
    unit_start(k);
}

static void command_done(struct conn *k, PGresult *res)
{
    struct pg *p = k->p;
    char msg[600];
    int ok = pgc_result_ok(res);
    if (!ok)
        pgc_result_message(res, msg, sizeof msg);
    const char *code =
        ok ? NULL : code_of_state(res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL);
    if (PQstatus(k->pg) == CONNECTION_BAD) {
        if (ok || !res)
            pgc_conn_message(k->pg, "connection lost", msg, sizeof msg);
        if (res)
            PQclear(res);
        conn_broken(k, msg);
        return;
    }
    switch (k->phase) {
    case P_SETUP:
        if (res)
            PQclear(res);
        if (!ok) {
            connect_failed(k, msg);
            return;
        }
        conn_ready(k);
        return;
    case P_BEGIN:
        if (!ok) {
            fail_ok_units(k, code, msg);
            break; /* finish below */
        }
        PQclear(res);
        k->u = 0;
        unit_start(k);
        return;
    case P_SAVEPOINT:
    case P_RELEASE:
        if (!ok) {
            fail_ok_units(k, code, msg);
            k->group_failed = 1;
            PQclear(res);
            unit_start(k);
            return;
        }
        PQclear(res);
        if (k->phase == P_SAVEPOINT) {
            stmt_start(k);
        } else {
            k->retried = 0;
            k->u++;
            unit_start(k);
        }
        return;
    case P_DEALLOC:
        if (res)
            PQclear(res);
        if (!ok) { /* only in a healthy state, so this is the statement's failure */
            stmt_failed(k, code, msg);
            return;
        }
        cache_clear(k);
        k->dealloc_pending = 0;
        stmt_start(k);
        return;
    case P_PREPARE:
        if (!ok) {
            cache_forget_current(k);
            if (res)
                PQclear(res);
            stmt_failed(k, code, msg);
            return;
        }
        PQclear(res);
        stmt_start(k); /* now a hit */
        return;
    case P_STMT: {
        store_req_t *req = cur_req(k);
        if (!ok) {
            int stale = res && stale_plan(res);
            if (res)
                PQclear(res);
            if (stale) {
                k->dealloc_pending = 1;
                if (!k->retried) {
                    k->retried = 1;
                    if (!k->writing) { /* no transaction: just run it again */
                        stmt_start(k);
                        return;
                    }
                    if (k->nunits == 1)
                        k->restart = 1;
                }
            }
            stmt_failed(k, code, msg);
            return;
        }
        if (take_result(req, &req->results[k->i], res) != 0) {
            PQclear(res);
            stmt_failed(k, STORE_CODE_ERROR, "out of memory");
            return;
        }
        PQclear(res);
        k->i++;
        stmt_start(k);
        return;
    }
    case P_ROLLBACK_TO:
        if (res)
            PQclear(res);
        if (!ok) {
            rollback_failed(k);
            return;
        }
        send_simple(k, P_RELEASE_FAILED, "RELEASE SAVEPOINT unit");
        return;
    case P_RELEASE_FAILED:
        if (res)
            PQclear(res);
        if (!ok) {
            rollback_failed(k);
            return;
        }
        if (k->retried == 1 && k->dealloc_pending && cur_req(k)->err_index > 0) {
            /* the unit failed on a stale plan: run it once more, freshly prepared */
            k->retried = 2;
            store_req_t *req = cur_req(k);
            req->status = 0;
            req->err = NULL;
            req->err_code = NULL;
            req->err_index = 0;
            unit_start(k);
            return;
        }
        k->retried = 0;
        k->u++;
        unit_start(k);
        return;
    case P_ROLLBACK:
        if (res)
            PQclear(res);
        res = NULL;
        if (k->restart && ok) {
            k->restart = 0;
            k->retried = 2;
            store_req_t *req = k->units[0];
            store_req_reset_results(req);
            req->status = 0;
            req->err = NULL;
            req->err_code = NULL;
            req->err_index = 0;
            send_simple(k, P_BEGIN, "BEGIN READ WRITE");
            return;
        }
        break;
    case P_COMMIT:
        if (!ok) {
            char m2[700];
            snprintf(m2, sizeof m2, "commit failed: %s", msg);
            fail_ok_units(k, code, m2);
        } else {
            p->st.commits++;
        }
        break;
    default: break;
    }
    if (res)
        PQclear(res);
    finish_work(k);
    k->state = C_IDLE;
    watch_set(k, UV_READABLE);
    kick(p);
}

/* ---- I/O ---- */

static void conn_io(struct conn *k, int readable, int writable)
{
    char msg[400];
    if (writable && k->want_write) {
        if (pgc_flush(k->pg, 1, &k->want_write, msg, sizeof msg) != 0) {
            conn_broken(k, msg);
            return;
        }
        watch_set(k, UV_READABLE | (k->want_write ? UV_WRITABLE : 0));
    }
    if (!readable)
        return;
    if (pgc_consume(k->pg, msg, sizeof msg) != 0) {
        conn_broken(k, msg);
        return;
    }
    if (k->state == C_IDLE) { /* nothing asked: a notice, or the server saying goodbye */
        if (pgc_drain_idle(k->pg, msg, sizeof msg) != 0)
            conn_broken(k, msg);
        return;
    }
    switch (pgc_collect(k->pg, &k->res, msg, sizeof msg)) {
    case PGC_DONE: {
        PGresult *res = k->res;
        k->res = NULL;
        command_done(k, res);
        return;
    }
    case PGC_FAIL: conn_broken(k, msg); return;
    default: return;
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct conn *k = h->data;
    if (!k)
        return;
    if (k->state == C_CONNECTING) {
        connect_step(k);
        return;
    }
    if (status < 0) {
        conn_broken(k, uv_strerror(status));
        return;
    }
    conn_io(k, (events & UV_READABLE) != 0, (events & UV_WRITABLE) != 0);
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

static void start_read(struct conn *k)
{
    struct pg *p = k->p;
    if (grow_units(k, 1) != 0)
        return;
    struct qnode *n = q_pop(&p->reads);
    k->units[0] = n->req;
    k->nunits = 1;
    k->writing = 0;
    k->u = k->i = 0;
    k->retried = k->restart = k->group_failed = 0;
    k->stmts = 0;
    k->t0 = now_s();
    k->state = C_BUSY;
    p->reads_in_flight++;
    stmt_start(k);
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
    k->writing = 1;
    k->u = k->i = 0;
    k->retried = k->restart = k->group_failed = 0;
    k->stmts = 0;
    k->t0 = now_s();
    k->state = C_BUSY;
    p->writer_busy = 1;
    send_simple(k, P_BEGIN, "BEGIN READ WRITE");
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
        watch_drop(k);
        if (k->res)
            PQclear(k->res);
        k->res = NULL;
        if (k->pg)
            PQfinish(k->pg);
        k->pg = NULL;
        k->state = C_DOWN;
        k->timer.data = p; /* handle_closed counts the store's handles */
        uv_close((uv_handle_t *)&k->timer, handle_closed);
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
        uv_timer_stop(&p->conns[i].timer);
    kick(p); /* keeps the loop alive until released */
}

/* Blocking: drives the connections with poll(2) until every submitted request is done. */
static void pg_close_now(store_t *s)
{
    struct pg *p = (struct pg *)s;
    if (p->released)
        return;
    p->closing = 1;
    double deadline = now_s() + CLOSE_NOW_SECONDS;
    while (busy(p) && now_s() < deadline) {
        dispatch(p);
        deliver(p);
        struct pollfd fds[MAX_POOL];
        struct conn *ks[MAX_POOL];
        int n = 0;
        for (int i = 0; i < p->pool_size; i++) {
            struct conn *k = &p->conns[i];
            if (k->state != C_BUSY || !k->pg)
                continue;
            fds[n].fd = PQsocket(k->pg);
            fds[n].events = (short)(POLLIN | (k->want_write ? POLLOUT : 0));
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
                conn_io(ks[i], (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0,
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

/* ---- the URL ---- */

static int take_option(struct pg *p, const char *key, size_t klen, const char *val, size_t vlen,
                       char *err, size_t errlen)
{
    char v[64];
    if (vlen >= sizeof v)
        vlen = sizeof v - 1;
    memcpy(v, val, vlen);
    v[vlen] = 0;
    if (klen == 9 && memcmp(key, "pool_size", 9) == 0) {
        char *end;
        long n = strtol(v, &end, 10);
        if (!*v || *end || n < 1 || n > MAX_POOL) {
            snprintf(err, errlen, "postgres: pool_size: an integer from 1 to %d expected, got '%s'",
                     MAX_POOL, v);
            return -1;
        }
        p->pool_size = (int)n;
        return 0;
    }
    double d;
    if (duration_parse(v, &d) != 0 || d < 0 || d > 86400) {
        snprintf(err, errlen,
                 "postgres: pool_timeout: a duration expected (5, \"250ms\"), got '%s'", v);
        return -1;
    }
    p->pool_timeout_ms = (uint64_t)(d * 1000.0 + 0.5);
    return 0;
}

static int is_ours(const char *s, size_t n, size_t *klen)
{
    if (n >= 10 && memcmp(s, "pool_size=", 10) == 0) {
        *klen = 9;
        return 1;
    }
    if (n >= 13 && memcmp(s, "pool_timeout=", 13) == 0) {
        *klen = 12;
        return 1;
    }
    return 0;
}

/* url: the whole URL. Splits steward's options (pool_size, pool_timeout) from libpq's. */
static int parse_url(struct pg *p, const char *url, char *err, size_t errlen)
{
    size_t len = strlen(url);
    char *out = malloc(len + 1);
    if (!out) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t o = 0;
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        const char *qm = strchr(url, '?');
        size_t base = qm ? (size_t)(qm - url) : len;
        memcpy(out, url, base);
        o = base;
        int first = 1;
        for (const char *s = qm ? qm + 1 : NULL; s && *s;) {
            const char *amp = strchr(s, '&');
            size_t n = amp ? (size_t)(amp - s) : strlen(s);
            size_t klen;
            if (is_ours(s, n, &klen)) {
                if (take_option(p, s, klen, s + klen + 1, n - klen - 1, err, errlen) != 0) {
                    free(out);
                    return -1;
                }
            } else if (n) {
                out[o++] = first ? '?' : '&';
                memcpy(out + o, s, n);
                o += n;
                first = 0;
            }
            s = amp ? amp + 1 : NULL;
        }
    } else if (strncmp(url, "postgres:", 9) == 0) {
        /* keyword/value conninfo: drop our keywords (unquoted values) where a keyword starts */
        const char *s = url + 9;
        while (*s) {
            size_t klen;
            int at_start = o == 0 || out[o - 1] == ' ' || out[o - 1] == '\t';
            if (at_start && is_ours(s, strlen(s), &klen)) {
                const char *v = s + klen + 1;
                size_t vlen = strcspn(v, " \t");
                if (take_option(p, s, klen, v, vlen, err, errlen) != 0) {
                    free(out);
                    return -1;
                }
                s = v + vlen;
                while (*s == ' ' || *s == '\t')
                    s++;
                continue;
            }
            out[o++] = *s++;
        }
    } else {
        free(out);
        snprintf(err, errlen,
                 "postgres: URL postgres://..., postgresql://... or postgres:KEYWORD=VALUE ... "
                 "expected");
        return -1;
    }
    out[o] = 0;
    p->conninfo = out;
    return 0;
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
    if (parse_url(p, url, err, errlen) != 0) {
        free(p);
        return NULL;
    }
    p->conns = calloc((size_t)p->pool_size, sizeof *p->conns);
    int ok = p->conns != NULL;
    for (int i = 0; ok && i < p->pool_size; i++)
        ok = (p->conns[i].slots = calloc(CACHE_SLOTS, sizeof *p->conns[i].slots)) != NULL;
    if (!ok) {
        for (int i = 0; p->conns && i < p->pool_size; i++)
            free(p->conns[i].slots);
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
    p->handles = 2 + p->pool_size;
    for (int i = 0; i < p->pool_size; i++) {
        struct conn *k = &p->conns[i];
        k->p = p;
        k->backoff_ms = BACKOFF_MIN_MS;
        uv_timer_init(loop, &k->timer);
        k->timer.data = k;
        uv_unref((uv_handle_t *)&k->timer);
    }
    /* The first connection is started here so that a malformed URL fails at once. */
    struct conn *k0 = &p->conns[0];
    char msg[400];
    if (!(k0->pg = start_conn(p, msg, sizeof msg)) || (k0->state = C_CONNECTING, 0) ||
        watch_new(k0, UV_WRITABLE) != 0) {
        snprintf(err, errlen, "postgres: %s",
                 k0->pg ? "cannot watch the connection's socket" : msg);
        if (k0->pg)
            PQfinish(k0->pg);
        k0->pg = NULL;
        k0->state = C_DOWN;
        p->open_reported = 1;
        p->closing = 1;
        maybe_release(p); /* frees p from the close callbacks; nobody is told */
        return NULL;
    }
    uv_timer_start(&k0->timer, on_conn_timer, CONNECT_TIMEOUT, 0);
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
