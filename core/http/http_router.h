/* The HTTP route table: method + path patterns with literal and {name} segments, mapped
 * to an opaque value (the Lua module stores a registry reference there). */
#ifndef STEWARD_HTTP_ROUTER_H
#define STEWARD_HTTP_ROUTER_H

#include <stddef.h>

#define HTTP_ROUTER_MAX_PARAMS 16

typedef struct http_router http_router_t;

enum http_route_result { HTTP_ROUTE_FOUND = 0, HTTP_ROUTE_NOT_FOUND, HTTP_ROUTE_BAD_METHOD };

struct http_route_param {
    const char *name;  /* NUL-terminated, owned by the router */
    const char *value; /* points into the matched path (not decoded, not terminated) */
    size_t value_len;
};

struct http_route_match {
    void *value;
    const char *pattern; /* the route that matched, owned by the router */
    size_t nparams;
    struct http_route_param params[HTTP_ROUTER_MAX_PARAMS];
};

http_router_t *http_router_new(void);
/* Calls free_value (when not NULL) on every route's value, then frees the table. */
void http_router_free(http_router_t *r, void (*free_value)(void *value, void *ud), void *ud);

/* Adds or replaces a route. method is an upper-case token or "*" (any method); pattern
 * starts with "/" and its segments are literal or {name} (letters, digits, _). Returns 0,
 * with *old set to the value replaced (or NULL); -EINVAL with *why set for a bad method or
 * pattern; -ENOMEM. */
int http_router_add(http_router_t *r, const char *method, const char *pattern, void *value,
                    void **old, const char **why);
/* Removes a route; 0 with *old set to its value, or -ENOENT. */
int http_router_remove(http_router_t *r, const char *method, const char *pattern, void **old);
size_t http_router_count(const http_router_t *r);
/* The i-th route (insertion order): its method, pattern and value; -1 past the end. */
int http_router_get(const http_router_t *r, size_t i, const char **method, const char **pattern,
                    void **value);

/* Finds the most specific route for (method, path): the one whose first differing segment
 * is literal wins over a {name} one. HEAD falls back to GET routes. On
 * HTTP_ROUTE_BAD_METHOD, allow (when not NULL) receives the comma-separated methods the
 * path accepts (truncated to allow_cap). */
enum http_route_result http_router_match(const http_router_t *r, const char *method,
                                         const char *path, size_t path_len,
                                         struct http_route_match *m, char *allow, size_t allow_cap);

#endif
