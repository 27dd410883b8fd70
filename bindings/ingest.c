/* POST /v1/events' body to the store's write request, in C (ingest.h). The rules are
 * steward.runtime.events.validate's; anything they would refuse is declined, never fixed.
 *
 * yajl parses as a stream of callbacks: no tree, no allocation per value. An event's fields
 * go straight into the INSERT's parameters; its `data` is stored as the exact bytes the
 * client sent for that member (yajl tells the byte offset of each '{' and '}'), so numbers
 * keep every digit and keys their order. */
#include "ingest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "json_scan.h"

/* Rows per INSERT, as events.insert_statements: 8 parameters each stays far below both
 * backends' limits. */
#define CHUNK 500

#define TIME_MIN 0.0
#define TIME_MAX 253402300799.0

static const char SQL_HEAD[] =
    "INSERT INTO events (id, type, tenant, time, source, data, received, depth) VALUES ";
static const char SQL_TAIL[] = " ON CONFLICT (id) DO NOTHING RETURNING id, seq";

/* A dotted name: segments of [a-z0-9_-] joined by single dots (events.lua's `dotted`). */
static int dotted(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (s[i + 1] == '.')
                return 0;
        } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

static int printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 32 || s[i] == 127)
            return 0;
    return 1;
}


/* JSON number text to a double; 0 unless finite (cjson would read 1e400 as inf, which
 * steward.json then refuses to encode). */
static int finite_number(const char *s, size_t n, double *out)
{
    char buf[64];
    if (n >= sizeof buf)
        return -1; /* long numbers are rare: the reference path reads them */
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    double d = strtod(buf, &end);
    if (end != buf + n || !isfinite(d))
        return -1;
    *out = d;
    return 0;
}

enum field { F_NONE, F_ID, F_TYPE, F_TENANT, F_SOURCE, F_TIME, F_DATA };

struct parse {
    yajl_handle h;
    const struct ingest_opts *o;
    store_arena_t *arena;
    const char *body;
    const char *why;
    int nomem;
    size_t depth;    /* containers open */
    size_t ev_depth; /* depth of the current event's object (1: the root, 2: in an array) */
    int root_array;
    enum field field; /* the event member whose value comes next */
    size_t data_start;
    unsigned seen; /* bit per field set in the current event */
    store_value_t *cols;
    size_t n, cap; /* events, and cols' room in events */
};

#define SEEN(f) (1u << (f))

static int decline(struct parse *p, const char *why)
{
    p->why = why;
    return 0; /* yajl stops with yajl_status_client_canceled */
}

static store_value_t *cur(struct parse *p)
{
    return &p->cols[(p->n - 1) * INGEST_NCOLS];
}

static int set_text(struct parse *p, store_value_t *v, const char *s, size_t n)
{
    v->type = STORE_TEXT;
    v->len = n;
    v->v.s = store_arena_strdup(p->arena, s, n);
    if (!v->v.s) {
        p->nomem = 1;
        return decline(p, "out of memory");
    }
    return 1;
}

/* A scalar value of the current event's member (depth == ev_depth). */
static int member_scalar(struct parse *p, int is_null, const char *str, size_t len, int is_number)
{
    enum field f = p->field;
    p->field = F_NONE;
    store_value_t *c = cur(p);
    if (is_null) {
        if (f == F_TYPE)
            return decline(p, "type");
        return 1; /* absent: the defaults are filled at the event's end */
    }
    p->seen |= SEEN(f);
    if (is_number && f != F_TIME)
        str = NULL; /* a number where a string belongs */
    switch (f) {
    case F_TYPE:
        if (!str || len > 200 || !dotted(str, len))
            return decline(p, "type");
        return set_text(p, &c[INGEST_TYPE], str, len);
    case F_ID:
        if (!str || len < 1 || len > 200 || !printable(str, len))
            return decline(p, "id");
        return set_text(p, &c[INGEST_ID], str, len);
    case F_TENANT:
        if (!str || len > 200)
            return decline(p, "tenant");
        return set_text(p, &c[INGEST_TENANT], str, len);
    case F_SOURCE:
        if (!str || len > 500)
            return decline(p, "source");
        return set_text(p, &c[INGEST_SOURCE], str, len);
    case F_TIME: {
        double t;
        if (is_number) {
            if (finite_number(str, len, &t) != 0)
                return decline(p, "time");
        } else if (!str || p->o->parse_time(p->o->ud, str, len, &t) != 0) {
            return decline(p, "time");
        }
        if (!(t >= TIME_MIN && t <= TIME_MAX))
            return decline(p, "time");
        store_value_number(&c[INGEST_TIME], t);
        return 1;
    }
    default: return decline(p, "data"); /* data must be an object */
    }
}

/* A scalar anywhere: an event's member, inside data (numbers checked), or misplaced. */
static int scalar(struct parse *p, int is_null, const char *str, size_t len, int is_number)
{
    if (p->depth == p->ev_depth && p->n && p->field != F_NONE)
        return member_scalar(p, is_null, str, len, is_number);
    if (p->field == F_DATA && p->depth > p->ev_depth) {
        double d;
        if (is_number && finite_number(str, len, &d) != 0)
            return decline(p, "data");
        return 1;
    }
    return decline(p, "an event is not an object");
}

static int on_null(void *ctx)
{
    return scalar(ctx, 1, NULL, 0, 0);
}
static int on_boolean(void *ctx, int b)
{
    (void)b;
    return scalar(ctx, 0, NULL, 0, 0);
}
static int on_number(void *ctx, const char *s, size_t n)
{
    return scalar(ctx, 0, s, n, 1);
}
static int on_string(void *ctx, const unsigned char *s, size_t n)
{
    return scalar(ctx, 0, (const char *)s, n, 0);
}

static int new_event(struct parse *p)
{
    if (p->n == p->o->max_batch)
        return decline(p, "too many events");
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        store_value_t *c = realloc(p->cols, cap * INGEST_NCOLS * sizeof *c);
        if (!c) {
            p->nomem = 1;
            return decline(p, "out of memory");
        }
        p->cols = c;
        p->cap = cap;
    }
    p->n++;
    memset(cur(p), 0, INGEST_NCOLS * sizeof *p->cols);
    p->seen = 0;
    p->field = F_NONE;
    return 1;
}

static int on_start_map(void *ctx)
{
    struct parse *p = ctx;
    p->depth++;
    if (p->depth == 1) {
        p->ev_depth = 1;
        return new_event(p);
    }
    if (p->depth == 2 && p->root_array) {
        p->ev_depth = 2;
        return new_event(p);
    }
    if (p->depth == p->ev_depth + 1 && p->field == F_DATA) {
        p->data_start = yajl_get_bytes_consumed(p->h) - 1;
        p->seen |= SEEN(F_DATA);
        return 1;
    }
    if (p->field == F_DATA && p->depth > p->ev_depth + 1)
        return 1;
    return decline(p, "a member holds an object");
}

static int on_start_array(void *ctx)
{
    struct parse *p = ctx;
    p->depth++;
    if (p->depth == 1) {
        p->root_array = 1;
        return 1;
    }
    if (p->field == F_DATA && p->depth > p->ev_depth + 1)
        return 1;
    return decline(p, p->depth == 2 ? "an event is not an object" : "a member holds an array");
}

static int on_end_array(void *ctx)
{
    struct parse *p = ctx;
    p->depth--;
    return 1;
}

/* The event's object closed: defaults, and the checks that need every member. */
static int end_event(struct parse *p)
{
    const struct ingest_opts *o = p->o;
    store_value_t *c = cur(p);
    if (!(p->seen & SEEN(F_TYPE)))
        return decline(p, "type");
    if (!(p->seen & SEEN(F_ID))) {
        char buf[64];
        int len = o->make_id(o->ud, o->now, buf, sizeof buf);
        if (len < 1)
            return decline(p, "no id could be made");
        if (!set_text(p, &c[INGEST_ID], buf, (size_t)len))
            return 0;
    }
    if (o->tenant) { /* a tenant's token writes its tenant's events only */
        if (!(p->seen & SEEN(F_TENANT))) {
            if (!set_text(p, &c[INGEST_TENANT], o->tenant, o->tenant_len))
                return 0;
        } else if (c[INGEST_TENANT].len != o->tenant_len ||
                   memcmp(c[INGEST_TENANT].v.s, o->tenant, o->tenant_len) != 0) {
            return decline(p, "tenant");
        }
    }
    if (!(p->seen & SEEN(F_TIME)))
        store_value_number(&c[INGEST_TIME], o->now);
    if (!(p->seen & SEEN(F_DATA)) && !set_text(p, &c[INGEST_DATA], "{}", 2))
        return 0;
    store_value_number(&c[INGEST_RECEIVED], o->now);
    c[INGEST_DEPTH].type = STORE_INT;
    c[INGEST_DEPTH].v.i = 0;
    return 1;
}

static int on_end_map(void *ctx)
{
    struct parse *p = ctx;
    if (p->depth == p->ev_depth + 1 && p->field == F_DATA) { /* data's own object ends */
        size_t end = yajl_get_bytes_consumed(p->h);
        p->field = F_NONE;
        p->depth--;
        return set_text(p, &cur(p)[INGEST_DATA], p->body + p->data_start, end - p->data_start);
    }
    p->depth--;
    if (p->depth + 1 == p->ev_depth)
        return end_event(p);
    return 1;
}

static int on_map_key(void *ctx, const unsigned char *k, size_t n)
{
    struct parse *p = ctx;
    if (p->depth != p->ev_depth)
        return 1; /* a key inside data */
    static const struct {
        const char *name;
        size_t len;
        enum field f;
    } fields[] = {{"id", 2, F_ID},         {"type", 4, F_TYPE}, {"tenant", 6, F_TENANT},
                  {"source", 6, F_SOURCE}, {"time", 4, F_TIME}, {"data", 4, F_DATA}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (n == fields[i].len && memcmp(k, fields[i].name, n) == 0) {
            p->field = fields[i].f;
            return 1;
        }
    return decline(p, "unknown field");
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = on_end_map,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end_array,
};

/* Bytes the reference path reads differently: a NUL (cjson stops there) and \u escapes of
 * surrogates (cjson refuses a lone one; a pair is rare enough to leave to it). */
static int reference_only(const char *s, size_t n)
{
    if (memchr(s, 0, n))
        return 1;
    for (const char *q = s, *end = s + n; (q = memchr(q, '\\', (size_t)(end - q))) != NULL;
         q += 2) {
        if (end - q >= 4 && q[1] == 'u' && (q[2] == 'd' || q[2] == 'D') && q[3] &&
            strchr("89abcdefABCDEF", q[3]))
            return 1;
        if (end - q < 2)
            break;
    }
    return 0;
}

/* Writes "$k" (k >= 1) at p; returns the end. (sprintf cost a quarter of the whole parse.) */
static char *placeholder(char *p, size_t k)
{
    char digits[20];
    int n = 0;
    do
        digits[n++] = (char)('0' + k % 10);
    while ((k /= 10) > 0);
    *p++ = '$';
    while (n > 0)
        *p++ = digits[--n];
    return p;
}

/* "(...),(...)": rows first..first+rows-1 of a chunk, numbered from $1. */
static char *chunk_sql(store_arena_t *a, size_t rows, size_t *len)
{
    /* Each placeholder is at most "$4000," (CHUNK * 8 parameters). */
    size_t cap = sizeof SQL_HEAD + sizeof SQL_TAIL + rows * (INGEST_NCOLS * 6 + 3) + 1;
    char *sql = store_arena_alloc(a, cap);
    if (!sql)
        return NULL;
    char *p = sql;
    memcpy(p, SQL_HEAD, sizeof SQL_HEAD - 1);
    p += sizeof SQL_HEAD - 1;
    size_t k = 1;
    for (size_t r = 0; r < rows; r++) {
        if (r)
            *p++ = ',';
        *p++ = '(';
        for (int c = 0; c < INGEST_NCOLS; c++, k++) {
            if (c)
                *p++ = ',';
            p = placeholder(p, k);
        }
        *p++ = ')';
    }
    memcpy(p, SQL_TAIL, sizeof SQL_TAIL);
    p += sizeof SQL_TAIL - 1;
    *len = (size_t)(p - sql);
    return sql;
}

enum ingest_status ingest_prepare(const char *body, size_t n, const struct ingest_opts *o,
                                  ingest_batch_t *out, const char **why)
{
    memset(out, 0, sizeof *out);
    /* The same refusals, in the same order, as steward.json's decode: the reference path
     * reports them (a duplicate key, too deep, too many values). */
    struct json_scan_limits lim = {.max_depth = o->max_depth, .max_values = o->max_values};
    struct json_scan_result sr;
    if (json_scan(body, n, &lim, &sr) != JSON_SCAN_OK) {
        *why = sr.status == JSON_SCAN_NOMEM ? "out of memory" : "the JSON scan refused the body";
        return sr.status == JSON_SCAN_NOMEM ? INGEST_NOMEM : INGEST_DECLINED;
    }
    if (reference_only(body, n)) {
        *why = "a NUL byte or a surrogate escape";
        return INGEST_DECLINED;
    }
    store_req_t *req = store_req_new(STORE_WRITE, 1);
    if (!req) {
        *why = "out of memory";
        return INGEST_NOMEM;
    }
    struct parse p = {.o = o, .arena = &req->arena, .body = body};
    p.h = yajl_alloc(&callbacks, NULL, &p);
    int ok = p.h != NULL;
    if (!p.h) {
        p.nomem = 1;
        p.why = "out of memory";
    } else {
        ok = yajl_parse(p.h, (const unsigned char *)body, n) == yajl_status_ok &&
             yajl_complete_parse(p.h) == yajl_status_ok;
        yajl_free(p.h);
        if (!ok && !p.why)
            p.why = "yajl refused the body";
        if (ok && p.n == 0) {
            ok = 0;
            p.why = "not an event or a non-empty array of events";
        }
    }
    size_t count = p.n;
    size_t nchunks = ok ? (count + CHUNK - 1) / CHUNK : 0;
    store_value_t *cols = NULL;
    if (ok) {
        /* The unit's statements, now that the count is known (req has room for one). */
        store_stmt_t *stmts =
            nchunks > 1 ? store_arena_alloc(&req->arena, nchunks * sizeof *stmts) : req->stmts;
        store_result_t *results =
            nchunks > 1 ? store_arena_alloc(&req->arena, nchunks * sizeof *results) : req->results;
        cols = store_arena_alloc(&req->arena, count * INGEST_NCOLS * sizeof *cols);
        if (!stmts || !results || !cols) {
            ok = 0;
            p.nomem = 1;
        } else {
            memset(stmts, 0, nchunks * sizeof *stmts);
            memset(results, 0, nchunks * sizeof *results);
            req->stmts = stmts;
            req->results = results;
            req->nstmts = (int)nchunks;
            memcpy(cols, p.cols, count * INGEST_NCOLS * sizeof *cols);
        }
    }
    free(p.cols);
    for (size_t k = 0; k < nchunks && ok; k++) {
        size_t first = k * CHUNK, rows = count - first < CHUNK ? count - first : CHUNK;
        store_stmt_t *st = &req->stmts[k];
        st->sql = chunk_sql(&req->arena, rows, &st->sql_len);
        st->nparams = (int)(rows * INGEST_NCOLS);
        st->params = &cols[first * INGEST_NCOLS];
        if (!st->sql)
            ok = 0, p.nomem = 1;
    }
    if (!ok) {
        store_req_free(req);
        *why = p.nomem ? "out of memory" : p.why;
        return p.nomem ? INGEST_NOMEM : INGEST_DECLINED;
    }
    out->req = req;
    out->n = count;
    out->cols = cols;
    return INGEST_OK;
}

/* ---- results: which ids were new ---- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

struct slot {
    const store_value_t *id; /* NULL: empty */
    int64_t seq;
};

int ingest_results(ingest_batch_t *b)
{
    store_req_t *req = b->req;
    size_t rows = 0;
    for (int k = 0; k < req->nstmts; k++)
        rows += req->results[k].nrows;
    size_t cap = 16;
    while (cap < rows * 2)
        cap *= 2;
    struct slot *tab = calloc(cap, sizeof *tab);
    b->seq = calloc(b->n ? b->n : 1, sizeof *b->seq);
    if (!tab || !b->seq) {
        free(tab);
        return -1;
    }
    for (int k = 0; k < req->nstmts; k++) {
        const store_result_t *r = &req->results[k];
        if (r->ncols != 2)
            continue;
        for (size_t i = 0; i < r->nrows; i++) {
            const store_value_t *id = &r->cells[i * 2], *seq = &r->cells[i * 2 + 1];
            if (id->type != STORE_TEXT || seq->type != STORE_INT)
                continue;
            size_t h = (size_t)hash_bytes(id->v.s, id->len) & (cap - 1);
            while (tab[h].id)
                h = (h + 1) & (cap - 1);
            tab[h].id = id;
            tab[h].seq = seq->v.i;
        }
    }
    b->accepted = b->duplicates = 0;
    for (size_t i = 0; i < b->n; i++) {
        const store_value_t *id = &b->cols[i * INGEST_NCOLS + INGEST_ID];
        size_t h = (size_t)hash_bytes(id->v.s, id->len) & (cap - 1);
        for (; tab[h].id; h = (h + 1) & (cap - 1)) {
            if (tab[h].seq && tab[h].id->len == id->len &&
                memcmp(tab[h].id->v.s, id->v.s, id->len) == 0) {
                b->seq[i] = tab[h].seq;
                tab[h].seq = 0; /* a second copy of the id in this batch is a duplicate */
                break;
            }
        }
        if (b->seq[i])
            b->accepted++;
        else
            b->duplicates++;
    }
    free(tab);
    return 0;
}
