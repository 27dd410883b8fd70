/* The PostgreSQL store's URL: steward's own options (pool_size, pool_timeout) taken out of a
 * postgres:// URI or a postgres: keyword/value string, the rest left for libpq. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"
#include "store_pg_stmt.h"

struct opts {
    int *pool_size;
    uint64_t *pool_timeout_ms;
};

static int take_option(struct opts *p, const char *key, size_t klen, const char *val, size_t vlen,
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
        if (!*v || *end || n < 1 || n > PGS_MAX_POOL) {
            snprintf(err, errlen, "postgres: pool_size: an integer from 1 to %d expected, got '%s'",
                     PGS_MAX_POOL, v);
            return -1;
        }
        *p->pool_size = (int)n;
        return 0;
    }
    double d;
    if (duration_parse(v, &d) != 0 || d < 0 || d > 86400) {
        snprintf(err, errlen,
                 "postgres: pool_timeout: a duration expected (5, \"250ms\"), got '%s'", v);
        return -1;
    }
    *p->pool_timeout_ms = (uint64_t)(d * 1000.0 + 0.5);
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

int pgs_parse_url(const char *url, char **conninfo, int *pool_size, uint64_t *pool_timeout_ms,
                  char *err, size_t errlen)
{
    struct opts mine = {pool_size, pool_timeout_ms};
    struct opts *p = &mine;
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
    *conninfo = out;
    return 0;
}
