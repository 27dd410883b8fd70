/* The store interface's shared half: request and arena memory, and opening a store by URL
 * with the backend that owns the URL's scheme. */
#include "store.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ---- */

struct store_chunk {
    struct store_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

#define ARENA_CHUNK 4096

void *store_arena_alloc(store_arena_t *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct store_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->used = 0;
        c->cap = cap;
        /* A large one-off block goes behind the current chunk so the rest of it stays usable. */
        if (a->head && n > ARENA_CHUNK) {
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

char *store_arena_strdup(store_arena_t *a, const char *s, size_t n)
{
    char *p = store_arena_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

void store_arena_free(store_arena_t *a)
{
    struct store_chunk *c = a->head;
    while (c) {
        struct store_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

/* ---- requests ---- */

store_req_t *store_req_new(enum store_kind kind, int nstmts)
{
    store_req_t *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->kind = kind;
    req->nstmts = nstmts;
    size_t n = nstmts > 0 ? (size_t)nstmts : 1;
    req->stmts = store_arena_alloc(&req->arena, n * sizeof *req->stmts);
    req->results = store_arena_alloc(&req->arena, n * sizeof *req->results);
    if (!req->stmts || !req->results) {
        store_arena_free(&req->arena);
        free(req);
        return NULL;
    }
    memset(req->stmts, 0, n * sizeof *req->stmts);
    memset(req->results, 0, n * sizeof *req->results);
    return req;
}

void store_req_reset_results(store_req_t *req)
{
    for (int i = 0; i < req->nstmts; i++) {
        free(req->results[i].cells);
        memset(&req->results[i], 0, sizeof req->results[i]);
    }
}

void store_req_free(store_req_t *req)
{
    if (!req)
        return;
    store_req_reset_results(req);
    store_arena_free(&req->arena);
    free(req);
}

void store_req_fail(store_req_t *req, int index, const char *code, const char *msg)
{
    req->status = -1;
    req->err_index = index;
    req->err_code = code ? code : STORE_CODE_ERROR;
    const char *copy = store_arena_strdup(&req->arena, msg, strlen(msg));
    req->err = copy ? copy : "out of memory";
}

store_value_t *store_result_add_row(store_result_t *r)
{
    size_t need = (r->nrows + 1) * (size_t)r->ncols;
    if (r->ncols == 0) {
        r->nrows++;
        return r->cells; /* a row of no columns: nothing to store */
    }
    if (need > r->cap) {
        size_t cap = r->cap ? r->cap * 2 : (size_t)r->ncols * 8;
        while (cap < need)
            cap *= 2;
        store_value_t *p = realloc(r->cells, cap * sizeof *p);
        if (!p)
            return NULL;
        r->cells = p;
        r->cap = cap;
    }
    store_value_t *row = r->cells + r->nrows * (size_t)r->ncols;
    r->nrows++;
    return row;
}

/* ---- opening by URL ---- */

static const struct store_ops *const backends[] = {&store_sqlite_ops, &store_pg_ops, NULL};

store_t *store_open(uv_loop_t *loop, const char *url, store_open_fn cb, void *ud, char *err,
                    size_t errlen)
{
    for (const struct store_ops *const *b = backends; *b; b++) {
        size_t n = strlen((*b)->scheme);
        if (strncmp(url, (*b)->scheme, n) == 0)
            return (*b)->open(loop, url + n, cb, ud, err, errlen);
    }
    snprintf(err, errlen, "unsupported store URL '%s' (expected sqlite:PATH or postgres://...)",
             url);
    return NULL;
}

void store_value_number(store_value_t *v, double d)
{
    if (d == floor(d) && fabs(d) <= 9007199254740992.0) {
        v->type = STORE_INT;
        v->v.i = (int64_t)d;
    } else {
        v->type = STORE_REAL;
        v->v.d = d;
    }
}
