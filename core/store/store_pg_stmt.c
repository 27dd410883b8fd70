/* The PostgreSQL store's statements: parameters, results and error codes; see
 * store_pg_stmt.h. */
#include "store_pg_stmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_conn.h"

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

const char *pgs_code_of_state(const char *s)
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

static int64_t parse_int(const char *s)
{
    return strtoll(s, NULL, 10);
}

/* Copies a successful result into r (of req's arena); 0, or -1 when out of memory. */
int pgs_take_result(store_req_t *req, store_result_t *r, const PGresult *res)
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
            case PGC_OID_NUMERIC:
                /* A table's NUMERIC column is exact money (store.dialects' {decimal}): its text
                 * goes to decimal.new. Computed numerics (SUM, AVG) stay numbers, as before. */
                if (PQftable(res, c) != InvalidOid)
                    goto text;
                /* fall through */
            case PGC_OID_FLOAT4:
            case PGC_OID_FLOAT8:
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
            text:
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

static char sig_of(const store_value_t *v)
{
    switch (v->type) {
    case STORE_INT: return 'i';
    case STORE_REAL: return 'r';
    case STORE_BLOB: return 'b';
    default: return 'u'; /* TEXT and NULL: PostgreSQL infers the type from the context */
    }
}

char *pgs_signature(const store_stmt_t *s, char *buf)
{
    int n = s->nparams;
    char *sig = n <= PGS_INLINE ? buf : malloc((size_t)n);
    if (!sig)
        return NULL;
    for (int j = 0; j < n; j++)
        sig[j] = sig_of(&s->params[j]);
    return sig;
}

void pgs_params_free(pgs_params_t *pp)
{
    free(pp->heap);
    pp->heap = NULL;
}

int pgs_params_build(pgs_params_t *pp, const store_stmt_t *s, char *err, size_t errlen)
{
    int n = s->nparams;
    pp->n = n;
    pp->heap = NULL;
    if (n <= PGS_INLINE) {
        pp->values = pp->v_in;
        pp->lengths = pp->l_in;
        pp->formats = pp->f_in;
        pp->types = pp->t_in;
        pp->sig = pp->s_in;
        pp->num = pp->n_in;
        pp->used = pp->u_in;
    } else {
        size_t each = sizeof(char *) + 2 * sizeof(int) + sizeof(Oid) + 1 + 32 + 1;
        char *m = pp->heap = malloc((size_t)n * each);
        if (!m) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        pp->values = (const char **)(void *)m;
        m += (size_t)n * sizeof(char *);
        pp->lengths = (int *)(void *)m;
        m += (size_t)n * sizeof(int);
        pp->formats = (int *)(void *)m;
        m += (size_t)n * sizeof(int);
        pp->types = (Oid *)(void *)m;
        m += (size_t)n * sizeof(Oid);
        pp->sig = m;
        m += n;
        pp->num = m;
        m += (size_t)n * 32;
        pp->used = (unsigned char *)m;
    }
    if (n > 0) {
        memset(pp->lengths, 0, (size_t)n * sizeof(int));
        memset(pp->formats, 0, (size_t)n * sizeof(int));
        memset(pp->used, 0, (size_t)n);
    }
    int want = scan_params(s->sql, s->sql_len, pp->used, n);
    if (want != n) {
        snprintf(err, errlen, "statement expects %d parameter%s, got %d", want,
                 want == 1 ? "" : "s", n);
        return -1;
    }
    for (int j = 0; j < n; j++) {
        const store_value_t *v = &s->params[j];
        char *nb = pp->num + (size_t)j * 32;
        pp->sig[j] = sig_of(v);
        pp->values[j] = NULL;
        switch (v->type) {
        case STORE_INT:
            snprintf(nb, 32, "%lld", (long long)v->v.i);
            pp->values[j] = nb;
            pp->types[j] = PGC_OID_INT8;
            break;
        case STORE_REAL:
            if (isnan(v->v.d))
                snprintf(nb, 32, "NaN");
            else if (isinf(v->v.d))
                snprintf(nb, 32, "%sInfinity", v->v.d < 0 ? "-" : "");
            else
                snprintf(nb, 32, "%.17g", v->v.d);
            pp->values[j] = nb;
            pp->types[j] = PGC_OID_FLOAT8;
            break;
        case STORE_TEXT:
            if (memchr(v->v.s, 0, v->len)) {
                snprintf(err, errlen,
                         "parameter %d: text with a NUL byte (PostgreSQL text cannot hold one; "
                         "bind a blob)",
                         j + 1);
                return -1;
            }
            pp->values[j] = v->v.s;
            pp->types[j] =
                pp->used[j] ? 0 : PGC_OID_TEXT; /* an unreferenced unknown cannot be typed */
            break;
        case STORE_BLOB:
            pp->values[j] = v->len ? v->v.s : "";
            pp->lengths[j] = (int)v->len;
            pp->formats[j] = 1;
            pp->types[j] = PGC_OID_BYTEA;
            break;
        default: pp->types[j] = pp->used[j] ? 0 : PGC_OID_TEXT;
        }
    }
    return 0;
}

/* A cached plan whose result columns changed (ALTER TABLE under a SELECT *): re-prepare. */
int pgs_stale_plan(const PGresult *r)
{
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    return st && strcmp(st, "0A000") == 0 && msg && strstr(msg, "cached plan");
}
