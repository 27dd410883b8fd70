/* libFuzzer target for POST /v1/events' C path (bindings/ingest.c): arbitrary bytes as a
 * request body, with limits and a tenant taken from the first bytes. Whatever is taken must
 * be a well-formed write request (a statement per 500 events, eight parameters each, a type
 * that is a dotted name, data that is a JSON object), and reading results that hold any
 * subset of its ids must count every event once, as new or duplicate. An assertion failure
 * aborts, which the fuzzer reports; ASan catches what the arena or yajl would overrun. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "ingest.h"

/* store.c names the backends for store_open, which the fuzzer never calls. */
const struct store_ops store_sqlite_ops = {0};
const struct store_ops store_pg_ops = {0};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int make_id(void *ud, double now, char *out, size_t outlen)
{
    int *n = ud;
    (void)now;
    return snprintf(out, outlen, "gen-%d", (*n)++);
}

static int parse_time(void *ud, const char *s, size_t n, double *out)
{
    (void)ud;
    if (n == 0 || n > 12)
        return -1;
    double v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "check failed: %s\n", #c);                                             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    int ids = 0;
    struct ingest_opts o = {
        .max_depth = 1 + data[0] % 64,
        .max_values = data[1] % 4 ? 0 : 1 + data[1],
        .max_batch = 1 + data[2] % 1200,
        .tenant = data[0] & 0x80 ? "mine" : NULL,
        .tenant_len = 4,
        .now = 1700000000.5,
        .make_id = make_id,
        .parse_time = parse_time,
        .ud = &ids,
    };
    ingest_batch_t b;
    const char *why = NULL;
    enum ingest_status st = ingest_prepare((const char *)data + 3, size - 3, &o, &b, &why);
    if (st != INGEST_OK) {
        CHECK(why && *why);
        return 0;
    }
    store_req_t *req = b.req;
    CHECK(b.n >= 1 && b.n <= o.max_batch);
    CHECK(req->nstmts == (int)((b.n + 499) / 500));
    size_t params = 0;
    for (int k = 0; k < req->nstmts; k++) {
        CHECK(req->stmts[k].sql && req->stmts[k].sql_len == strlen(req->stmts[k].sql));
        params += (size_t)req->stmts[k].nparams;
    }
    CHECK(params == b.n * INGEST_NCOLS);
    for (size_t i = 0; i < b.n; i++) {
        const store_value_t *c = &b.cols[i * INGEST_NCOLS];
        CHECK(c[INGEST_ID].type == STORE_TEXT && c[INGEST_ID].len >= 1 && c[INGEST_ID].len <= 200);
        CHECK(c[INGEST_TYPE].type == STORE_TEXT && c[INGEST_TYPE].len >= 1);
        CHECK(c[INGEST_TIME].type == STORE_INT || c[INGEST_TIME].type == STORE_REAL);
        CHECK(!o.tenant || (c[INGEST_TENANT].type == STORE_TEXT && c[INGEST_TENANT].len == 4 &&
                            !memcmp(c[INGEST_TENANT].v.s, "mine", 4)));
        yajl_val d = yajl_tree_parse(c[INGEST_DATA].v.s, NULL, 0);
        CHECK(c[INGEST_DATA].v.s[c[INGEST_DATA].len] == 0 && d && YAJL_IS_OBJECT(d));
        yajl_tree_free(d);
    }
    /* RETURNING rows for the events whose index is not a multiple of 3 (by id: a repeated
     * id may come back once), backwards, as a backend could. */
    for (int k = 0; k < req->nstmts; k++) {
        store_result_t *r = &req->results[k];
        r->ncols = 2;
        size_t first = (size_t)k * 500, last = first + (size_t)req->stmts[k].nparams / INGEST_NCOLS;
        for (size_t i = last; i-- > first;) {
            if (i % 3 == 0)
                continue;
            store_value_t *row = store_result_add_row(r);
            CHECK(row);
            row[0] = b.cols[i * INGEST_NCOLS + INGEST_ID];
            row[1].type = STORE_INT;
            row[1].v.i = (int64_t)i + 1;
        }
    }
    CHECK(ingest_results(&b) == 0);
    CHECK(b.accepted + b.duplicates == b.n);
    for (size_t i = 0; i < b.n; i++)
        CHECK(b.seq[i] == 0 || (b.seq[i] >= 1 && (size_t)b.seq[i] <= b.n));
    free(b.seq);
    store_req_free(req);
    return 0;
}
