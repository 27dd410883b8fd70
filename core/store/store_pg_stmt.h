/* The PostgreSQL store's pure parts (core/store/store_pg.c runs the I/O): the parameters of a
 * store_stmt_t as libpq takes them, the results copied into a request, error codes by
 * SQLSTATE (store_pg_stmt.c), and the store's URL (store_pg_url.c). No I/O. */
#ifndef STEWARD_STORE_PG_STMT_H
#define STEWARD_STORE_PG_STMT_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define PGS_INLINE 16 /* parameters held without an allocation */

/* One statement's parameters for PQsendQueryPrepared / PQsendPrepare. */
typedef struct pgs_params {
    int n;
    const char **values;
    int *lengths, *formats;
    Oid *types;
    char *sig; /* one letter per parameter: the prepared statement's type signature */
    char *num; /* text of numbers, 32 bytes each */
    unsigned char *used;
    void *heap; /* one allocation when n > PGS_INLINE */
    const char *v_in[PGS_INLINE];
    int l_in[PGS_INLINE], f_in[PGS_INLINE];
    Oid t_in[PGS_INLINE];
    char s_in[PGS_INLINE], n_in[PGS_INLINE * 32];
    unsigned char u_in[PGS_INLINE];
} pgs_params_t;

/* Builds s's parameters; 0, or -1 with err set (a wrong number of parameters, a NUL byte in
 * text, out of memory). pgs_params_free in both cases. */
int pgs_params_build(pgs_params_t *pp, const store_stmt_t *s, char *err, size_t errlen);
void pgs_params_free(pgs_params_t *pp);

/* Only the signature of s (for finding its cache entry); NULL when out of memory. The caller
 * frees it unless it is buf (at least PGS_INLINE bytes). */
char *pgs_signature(const store_stmt_t *s, char *buf);

/* Copies a successful result into r (of req's arena); 0, or -1 when out of memory. */
int pgs_take_result(store_req_t *req, store_result_t *r, const PGresult *res);

/* The store's portable error code of a SQLSTATE. */
const char *pgs_code_of_state(const char *s);

/* A cached plan whose result columns changed (ALTER TABLE under a SELECT *). */
int pgs_stale_plan(const PGresult *r);

/* The store's URL (core/store/store_pg_url.c): *conninfo (malloc'd) is what libpq gets,
 * steward's options pool_size and pool_timeout are taken out into the given variables (left
 * as they are when absent); -1 with err set on a bad option or form. */
#define PGS_MAX_POOL 64
int pgs_parse_url(const char *url, char **conninfo, int *pool_size, uint64_t *pool_timeout_ms,
                  char *err, size_t errlen);

#endif
