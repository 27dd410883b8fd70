/* The ingest path of POST /v1/events in C: a request body (one event object or an array of
 * them) becomes the store's write request — validated, its INSERT statements' parameters in
 * the request's arena — without a Lua table per event. Jansson parses; json_scan refuses
 * duplicate keys and bounds depth and size first, exactly as steward.json's decode does.
 *
 * The C path only ever accepts: a body it cannot take whole (bad JSON, an invalid event, a
 * tenant token writing another tenant's event, too many events) is declined, and the caller
 * runs the reference path (cjson and steward.runtime.events.validate), whose answers name
 * each bad item's index, field and reason. So the two can never disagree on a message, and
 * the C rules need only be as strict as the Lua ones (tests/lua/ingest_spec.lua compares
 * them). Fuzzed by tests/fuzz/ingest_fuzz.c. */
#ifndef STEWARD_INGEST_H
#define STEWARD_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* The columns of one event, as bound to the INSERT (see ingest.c's INSERT_ROW). */
enum {
    INGEST_ID,
    INGEST_TYPE,
    INGEST_TENANT,
    INGEST_TIME,
    INGEST_SOURCE,
    INGEST_DATA,
    INGEST_RECEIVED,
    INGEST_DEPTH,
    INGEST_NCOLS
};

struct ingest_opts {
    size_t max_depth;   /* limits.max_json_depth */
    size_t max_values;  /* limits.max_json_values; 0: no limit */
    size_t max_batch;   /* limits.max_batch */
    const char *tenant; /* a tenant-scoped token's tenant, else NULL */
    size_t tenant_len;
    double now; /* time and received of events that carry no time */
    /* A fresh id (UUIDv7 of now) into out (NUL-terminated); its length, or -1. */
    int (*make_id)(void *ud, double now, char *out, size_t outlen);
    /* An RFC 3339 string to seconds; 0, or -1 when it is not one. */
    int (*parse_time)(void *ud, const char *s, size_t n, double *out);
    void *ud;
};

typedef struct ingest_batch {
    store_req_t *req;    /* the write unit: chunked multi-row INSERT ... RETURNING id, seq */
    size_t n;            /* events */
    store_value_t *cols; /* n * INGEST_NCOLS, in req's arena (the statements' parameters) */
    int64_t *seq;        /* n, after ingest_results: the new row's seq, 0 for a duplicate */
    size_t accepted, duplicates;
} ingest_batch_t;

enum ingest_status {
    INGEST_OK = 0,
    INGEST_DECLINED, /* not taken whole: the reference path answers (why says what it saw) */
    INGEST_NOMEM,
};

/* Builds *out from body[0..n). INGEST_OK: out->req is the caller's (store_submit or
 * store_req_free). Otherwise nothing is allocated and *why names the reason (static). */
enum ingest_status ingest_prepare(const char *body, size_t n, const struct ingest_opts *opts,
                                  ingest_batch_t *out, const char **why);

/* After out->req completed without error: fills seq, accepted, duplicates from the
 * RETURNING rows (a second copy of an id in one batch is a duplicate). 0, or -1 (no memory). */
int ingest_results(ingest_batch_t *b);

#endif
