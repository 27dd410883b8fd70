/* The HTTP route table. Routes are few (tens), so matching is a linear scan over
 * pre-split patterns; specificity is a bitmask (one bit per literal segment, first
 * segment highest) so "/x/stats" beats "/x/{id}" whatever the insertion order. */
#include "http_router.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define MAX_SEGMENTS 64

struct segment {
    char *text; /* literal text, or the parameter name */
    size_t len;
    int param;
};

struct route {
    char *method;
    char *pattern;
    void *value;
    struct segment *segs;
    size_t nsegs;
    uint64_t literal_mask;
};

struct http_router {
    struct route *routes;
    size_t n, cap;
};

http_router_t *http_router_new(void)
{
    return calloc(1, sizeof(http_router_t));
}

static void route_clear(struct route *rt)
{
    for (size_t i = 0; i < rt->nsegs; i++)
        free(rt->segs[i].text);
    free(rt->segs);
    free(rt->method);
    free(rt->pattern);
}

void http_router_free(http_router_t *r, void (*free_value)(void *, void *), void *ud)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        if (free_value)
            free_value(r->routes[i].value, ud);
        route_clear(&r->routes[i]);
    }
    free(r->routes);
    free(r);
}

static int valid_method(const char *m)
{
    if (strcmp(m, "*") == 0)
        return 1;
    if (!*m || strlen(m) > 32)
        return 0;
    for (const char *p = m; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '_'))
            return 0;
    return 1;
}

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Splits pattern into rt->segs; returns NULL or why it is invalid. */
static const char *parse_pattern(struct route *rt, const char *pattern)
{
    if (pattern[0] != '/')
        return "pattern must start with /";
    if (strchr(pattern, '?') || strchr(pattern, '#'))
        return "pattern must not contain ? or #";
    size_t nsegs = 1;
    for (const char *p = pattern + 1; *p; p++)
        nsegs += *p == '/';
    if (nsegs > MAX_SEGMENTS)
        return "pattern has too many segments";
    rt->segs = calloc(nsegs, sizeof *rt->segs);
    if (!rt->segs)
        return "out of memory";
    const char *p = pattern + 1;
    size_t nparams = 0;
    for (size_t i = 0; i < nsegs; i++) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        struct segment *s = &rt->segs[i];
        rt->nsegs = i + 1;
        if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
            s->param = 1;
            p++;
            len -= 2;
            if (len == 0)
                return "empty parameter name";
            for (size_t k = 0; k < len; k++)
                if (!name_char(p[k]))
                    return "parameter names use letters, digits and _";
            if (++nparams > HTTP_ROUTER_MAX_PARAMS)
                return "too many parameters";
            for (size_t k = 0; k < i; k++)
                if (rt->segs[k].param && rt->segs[k].len == len &&
                    memcmp(rt->segs[k].text, p, len) == 0)
                    return "duplicate parameter name";
        } else {
            if (memchr(p, '{', len) || memchr(p, '}', len))
                return "{ and } only around a whole segment";
            rt->literal_mask |= (uint64_t)1 << (MAX_SEGMENTS - 1 - i);
        }
        s->text = strndup(p, len);
        if (!s->text)
            return "out of memory";
        s->len = len;
        p += len + (s->param ? 1 : 0) + 1; /* the closing brace, the slash */
    }
    return NULL;
}

static ssize_t find_route(const http_router_t *r, const char *method, const char *pattern)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->routes[i].method, method) == 0 && strcmp(r->routes[i].pattern, pattern) == 0)
            return (ssize_t)i;
    return -1;
}

int http_router_add(http_router_t *r, const char *method, const char *pattern, void *value,
                    void **old, const char **why)
{
    *old = NULL;
    *why = NULL;
    if (!valid_method(method)) {
        *why = "method must be an upper-case token or *";
        return -EINVAL;
    }
    struct route rt = {0};
    const char *bad = parse_pattern(&rt, pattern);
    if (bad) {
        route_clear(&rt);
        *why = bad;
        return strcmp(bad, "out of memory") == 0 ? -ENOMEM : -EINVAL;
    }
    ssize_t at = find_route(r, method, pattern);
    if (at >= 0) {
        *old = r->routes[at].value;
        r->routes[at].value = value;
        route_clear(&rt);
        return 0;
    }
    rt.method = strdup(method);
    rt.pattern = strdup(pattern);
    if (!rt.method || !rt.pattern)
        goto nomem;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        struct route *nr = realloc(r->routes, cap * sizeof *nr);
        if (!nr)
            goto nomem;
        r->routes = nr;
        r->cap = cap;
    }
    rt.value = value;
    r->routes[r->n++] = rt;
    return 0;
nomem:
    route_clear(&rt);
    *why = "out of memory";
    return -ENOMEM;
}

int http_router_remove(http_router_t *r, const char *method, const char *pattern, void **old)
{
    *old = NULL;
    ssize_t at = find_route(r, method, pattern);
    if (at < 0)
        return -ENOENT;
    *old = r->routes[at].value;
    route_clear(&r->routes[at]);
    memmove(&r->routes[at], &r->routes[at + 1], (r->n - (size_t)at - 1) * sizeof *r->routes);
    r->n--;
    return 0;
}

size_t http_router_count(const http_router_t *r)
{
    return r->n;
}

int http_router_get(const http_router_t *r, size_t i, const char **method, const char **pattern,
                    void **value)
{
    if (i >= r->n)
        return -1;
    *method = r->routes[i].method;
    *pattern = r->routes[i].pattern;
    *value = r->routes[i].value;
    return 0;
}

struct path_segs {
    const char *p[MAX_SEGMENTS];
    size_t len[MAX_SEGMENTS];
    size_t n;
};

/* 0, or -1 when the path has more segments than any pattern may. */
static int split_path(const char *path, size_t len, struct path_segs *ps)
{
    ps->n = 0;
    if (len == 0 || path[0] != '/')
        return -1;
    size_t start = 1;
    for (size_t i = 1; i <= len; i++) {
        if (i == len || path[i] == '/') {
            if (ps->n == MAX_SEGMENTS)
                return -1;
            ps->p[ps->n] = path + start;
            ps->len[ps->n] = i - start;
            ps->n++;
            start = i + 1;
        }
    }
    return 0;
}

static int path_matches(const struct route *rt, const struct path_segs *ps)
{
    if (rt->nsegs != ps->n)
        return 0;
    for (size_t i = 0; i < ps->n; i++) {
        const struct segment *s = &rt->segs[i];
        if (s->param) {
            if (ps->len[i] == 0)
                return 0;
        } else if (s->len != ps->len[i] || memcmp(s->text, ps->p[i], s->len) != 0) {
            return 0;
        }
    }
    return 1;
}

/* 3 exact method, 2 GET serving HEAD, 1 any-method route, 0 no. */
static int method_rank(const char *route_method, const char *method)
{
    if (strcmp(route_method, method) == 0)
        return 3;
    if (strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0)
        return 2;
    if (strcmp(route_method, "*") == 0)
        return 1;
    return 0;
}

static void allow_add(char *allow, size_t cap, const char *m)
{
    size_t used = strlen(allow), ml = strlen(m);
    /* Already listed? Compare whole entries only. */
    for (const char *p = allow; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == ml && memcmp(p, m, ml) == 0)
            return;
        p = e ? e + 2 : p + l;
    }
    if (used + ml + 3 > cap)
        return;
    snprintf(allow + used, cap - used, "%s%s", used ? ", " : "", m);
}

enum http_route_result http_router_match(const http_router_t *r, const char *method,
                                         const char *path, size_t path_len,
                                         struct http_route_match *m, char *allow, size_t allow_cap)
{
    struct path_segs ps;
    m->value = NULL;
    m->pattern = NULL;
    m->nparams = 0;
    if (allow && allow_cap)
        allow[0] = 0;
    if (split_path(path, path_len, &ps) != 0)
        return HTTP_ROUTE_NOT_FOUND;
    const struct route *best = NULL;
    int best_rank = 0, path_seen = 0;
    for (size_t i = 0; i < r->n; i++) {
        const struct route *rt = &r->routes[i];
        if (!path_matches(rt, &ps))
            continue;
        path_seen = 1;
        int rank = method_rank(rt->method, method);
        if (!rank)
            continue;
        if (!best || rt->literal_mask > best->literal_mask ||
            (rt->literal_mask == best->literal_mask && rank > best_rank)) {
            best = rt;
            best_rank = rank;
        }
    }
    if (best) {
        m->value = best->value;
        m->pattern = best->pattern;
        for (size_t i = 0; i < ps.n; i++) { /* path_matches: best->nsegs == ps.n */
            if (!best->segs[i].param)
                continue;
            struct http_route_param *p = &m->params[m->nparams++];
            p->name = best->segs[i].text;
            p->value = ps.p[i];
            p->value_len = ps.len[i];
        }
        return HTTP_ROUTE_FOUND;
    }
    if (!path_seen)
        return HTTP_ROUTE_NOT_FOUND;
    if (allow && allow_cap) {
        for (size_t i = 0; i < r->n; i++) {
            if (!path_matches(&r->routes[i], &ps))
                continue;
            allow_add(allow, allow_cap, r->routes[i].method);
            if (strcmp(r->routes[i].method, "GET") == 0)
                allow_add(allow, allow_cap, "HEAD");
        }
    }
    return HTTP_ROUTE_BAD_METHOD;
}
