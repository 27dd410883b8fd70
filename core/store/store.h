/* The store interface: a backend-neutral, asynchronous SQL API. A caller on the loop thread
 * builds a request (one statement to read, or a unit of statements to write atomically),
 * submits it, and gets it back on the loop thread, completed, through req->done. Backends
 * (core/store/store_sqlite.c, core/store/store_pg.c) sit behind struct store_ops and do their blocking
 * or network work off the loop or non-blocking on it. See docs/internals-store.md. */
#ifndef STEWARD_STORE_H
#define STEWARD_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* ---- memory: a request owns one arena; everything it points to lives there ---- */

typedef struct store_arena {
    struct store_chunk *head;
} store_arena_t;

void *store_arena_alloc(store_arena_t *a, size_t n);                 /* NULL when out of memory */
char *store_arena_strdup(store_arena_t *a, const char *s, size_t n); /* NUL-terminated copy */
void store_arena_free(store_arena_t *a);

/* ---- values ---- */

enum store_vtype { STORE_NULL = 0, STORE_INT, STORE_REAL, STORE_TEXT, STORE_BLOB };

typedef struct store_value {
    enum store_vtype type;
    size_t len; /* TEXT and BLOB */
    union {
        int64_t i;
        double d;
        const char *s; /* TEXT and BLOB bytes (TEXT is also NUL-terminated) */
    } v;
} store_value_t;

/* A number as a value: INT when integral and exact as a double, else REAL. Every number bound
 * from Lua is typed so, and C-built rows (bindings/ingest.c) must compare equal to those. */
void store_value_number(store_value_t *v, double d);

typedef struct store_stmt {
    const char *sql; /* parameters are $1, $2, ... on every backend */
    size_t sql_len;
    int nparams;
    store_value_t *params;
} store_stmt_t;

typedef struct store_result {
    int64_t changes;
    int64_t last_id; /* valid when has_last_id */
    int has_last_id;
    int ncols;
    const char **cols; /* ncols names */
    size_t nrows;
    store_value_t *cells; /* nrows * ncols, row-major; malloc'd (freed by store_req_free) */
    size_t cap;           /* allocated cells */
} store_result_t;

/* ---- requests ---- */

enum store_kind {
    STORE_READ,  /* one statement on a read connection; may run concurrently with writes */
    STORE_WRITE, /* a unit: all statements commit together or none does */
};

typedef struct store_req store_req_t;
typedef void (*store_done_fn)(store_req_t *req);

struct store_req {
    enum store_kind kind;
    int nstmts;
    store_stmt_t *stmts;     /* nstmts, in the arena */
    store_result_t *results; /* nstmts, in the arena; filled when status == 0 */
    int status;              /* 0, or -1 with err set */
    int err_index;           /* 1-based statement that failed; 0 = the unit as a whole */
    const char *err;         /* the backend's message (in the arena, or static) */
    const char *err_code;    /* a portable class, static: see store_code_* below */
    store_done_fn done;      /* called once, on the loop thread; the callee frees req */
    void *ud;
    store_req_t *next; /* the backend's queue link */
    store_arena_t arena;
};

/* Portable error classes (PostgreSQL's condition names, so callers test one vocabulary). */
#define STORE_CODE_UNIQUE      "unique_violation"
#define STORE_CODE_FOREIGN_KEY "foreign_key_violation"
#define STORE_CODE_NOT_NULL    "not_null_violation"
#define STORE_CODE_CHECK       "check_violation"
#define STORE_CODE_CONSTRAINT  "integrity_constraint_violation"
#define STORE_CODE_BUSY        "busy"
#define STORE_CODE_CLOSED      "closed"
#define STORE_CODE_ERROR       "error"
/* The database cannot be reached (a lost connection, a server shutting down): retry later. */
#define STORE_CODE_UNAVAILABLE "unavailable"

/* A request with nstmts zeroed statements (and zeroed results); NULL when out of memory. */
store_req_t *store_req_new(enum store_kind kind, int nstmts);
void store_req_free(store_req_t *req);
/* Sets status -1 and a copy of msg (of the statement index, 0 for the unit). */
void store_req_fail(store_req_t *req, int index, const char *code, const char *msg);
/* Frees rows of every result and zeroes them (a backend retrying a unit). */
void store_req_reset_results(store_req_t *req);
/* Appends a row to r (ncols set) and returns its cells, or NULL when out of memory. */
store_value_t *store_result_add_row(store_result_t *r);

/* ---- stores ---- */

typedef struct store store_t;

typedef struct store_stats {
    uint64_t commits; /* transactions committed */
    uint64_t units;   /* write units completed (ok or failed) */
    uint64_t failed_units;
    uint64_t statements;       /* statements run by the writer */
    uint64_t last_batch_units; /* units in the last transaction */
    uint64_t max_batch_units;
    uint64_t queue_depth; /* units waiting for the writer */
    uint64_t reads;
    uint64_t failed_reads;
    uint64_t reads_in_flight;
    double commit_seconds_total; /* writer time from BEGIN to the end of COMMIT (fsync) */
    double read_seconds_total;
    uint64_t idle_releases; /* times an idle connection gave its caches back (SQLite) */
} store_stats_t;

typedef void (*store_open_fn)(store_t *s, const char *err, void *ud);
typedef void (*store_closed_fn)(void *ud);

struct store_ops {
    const char *name;   /* "sqlite" */
    const char *scheme; /* URL prefix, "sqlite:" */
    /* Starts opening target (the URL after the scheme). Returns a store and later calls cb
     * on the loop thread (the store is usable only then), or returns NULL with err set. */
    store_t *(*open)(uv_loop_t *loop, const char *target, store_open_fn cb, void *ud, char *err,
                     size_t errlen);
    /* Takes req; req->done runs later on the loop thread, never inside submit. */
    void (*submit)(store_t *s, store_req_t *req);
    /* Completes every submitted request, then releases the store and calls cb (if any) on
     * the loop thread. Nothing may be submitted afterwards. */
    void (*close)(store_t *s, store_closed_fn cb, void *ud);
    /* The same, blocking the loop thread until writes are committed (finalizers only). */
    void (*close_now)(store_t *s);
    void (*stats)(store_t *s, store_stats_t *out);
};

struct store {
    const struct store_ops *ops;
    uv_loop_t *loop;
};

/* Opens url ("sqlite:path?opt=v", "sqlite::memory:", "postgres://...") with the backend of
 * its scheme; see store_ops.open. */
store_t *store_open(uv_loop_t *loop, const char *url, store_open_fn cb, void *ud, char *err,
                    size_t errlen);

static inline const char *store_backend(const store_t *s)
{
    return s->ops->name;
}
static inline void store_submit(store_t *s, store_req_t *req)
{
    s->ops->submit(s, req);
}
static inline void store_close(store_t *s, store_closed_fn cb, void *ud)
{
    s->ops->close(s, cb, ud);
}
static inline void store_close_now(store_t *s)
{
    s->ops->close_now(s);
}
static inline void store_get_stats(store_t *s, store_stats_t *out)
{
    s->ops->stats(s, out);
}

extern const struct store_ops store_sqlite_ops;
extern const struct store_ops store_pg_ops; /* postgres://, postgresql://, postgres:k=v ... */

#endif
