/* Unit tests of the route table in core/http/http_router.c: literal and {name} segments,
 * specificity, 404 versus 405 with the allowed methods, HEAD served by GET, replacing and
 * removing routes, and the patterns it refuses. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "http_router.h"
#include "tap.h"

#define V(n) ((void *)(intptr_t)(n))

static enum http_route_result match(http_router_t *r, const char *m, const char *path,
                                    struct http_route_match *out, char *allow)
{
    return http_router_match(r, m, path, strlen(path), out, allow, 128);
}

static int param_is(const struct http_route_match *m, size_t i, const char *name, const char *value)
{
    return i < m->nparams && strcmp(m->params[i].name, name) == 0 &&
           m->params[i].value_len == strlen(value) &&
           memcmp(m->params[i].value, value, m->params[i].value_len) == 0;
}

static void count_free(void *value, void *ud)
{
    (void)value;
    (*(size_t *)ud)++;
}

int main(void)
{
    http_router_t *r = http_router_new();
    void *old;
    const char *why;
    struct http_route_match m;
    char allow[128];

    ok(http_router_add(r, "POST", "/v1/events", V(1), &old, &why) == 0 && !old,
       "add a literal route");
    ok(http_router_add(r, "POST", "/v1/dead-letters/{id}/requeue", V(2), &old, &why) == 0,
       "add a route with a parameter");
    ok(http_router_add(r, "GET", "/v1/dead-letters/{id}", V(3), &old, &why) == 0,
       "add a parameter at the end");
    ok(http_router_add(r, "GET", "/v1/dead-letters/stats", V(4), &old, &why) == 0,
       "add a literal sibling after the parameter route");
    ok(http_router_add(r, "*", "/any", V(5), &old, &why) == 0, "add an any-method route");
    ok(http_router_add(r, "DELETE", "/v1/dead-letters/{id}", V(6), &old, &why) == 0,
       "add a second method for a pattern");
    ok(http_router_count(r) == 6, "six routes");

    ok(match(r, "POST", "/v1/events", &m, allow) == HTTP_ROUTE_FOUND && m.value == V(1) &&
           m.nparams == 0,
       "literal path matches");
    ok(match(r, "POST", "/v1/dead-letters/42/requeue", &m, allow) == HTTP_ROUTE_FOUND &&
           m.value == V(2) && param_is(&m, 0, "id", "42"),
       "parameter captured");
    ok(strcmp(m.pattern, "/v1/dead-letters/{id}/requeue") == 0, "the matched pattern reported");
    ok(match(r, "GET", "/v1/dead-letters/stats", &m, allow) == HTTP_ROUTE_FOUND && m.value == V(4),
       "literal segment beats a parameter whatever the order");
    ok(match(r, "GET", "/v1/dead-letters/7", &m, allow) == HTTP_ROUTE_FOUND && m.value == V(3) &&
           param_is(&m, 0, "id", "7"),
       "parameter route still matches other values");
    ok(match(r, "DELETE", "/v1/dead-letters/stats", &m, allow) == HTTP_ROUTE_FOUND &&
           m.value == V(6),
       "a less specific route with the right method wins over a literal with the wrong one");
    ok(match(r, "HEAD", "/v1/dead-letters/7", &m, allow) == HTTP_ROUTE_FOUND && m.value == V(3),
       "HEAD is served by the GET route");
    ok(match(r, "PATCH", "/any", &m, allow) == HTTP_ROUTE_FOUND && m.value == V(5),
       "* matches any method");

    ok(match(r, "GET", "/v1/events", &m, allow) == HTTP_ROUTE_BAD_METHOD &&
           strcmp(allow, "POST") == 0,
       "path known, method not: 405 with Allow: POST (got '%s')", allow);
    ok(match(r, "PUT", "/v1/dead-letters/9", &m, allow) == HTTP_ROUTE_BAD_METHOD &&
           strcmp(allow, "GET, HEAD, DELETE") == 0,
       "Allow lists every method of the path, HEAD with GET (got '%s')", allow);
    {
        const char *path = "/v1/dead-letters/9";
        char small[10]; /* "GET, HEAD" and its NUL exactly; DELETE does not fit */
        ok(http_router_match(r, "PUT", path, strlen(path), &m, small, sizeof small) ==
                   HTTP_ROUTE_BAD_METHOD &&
               strcmp(small, "GET, HEAD") == 0,
           "a short Allow buffer keeps the whole methods that fit (got '%s')", small);
    }
    ok(match(r, "GET", "/v1/nothing", &m, allow) == HTTP_ROUTE_NOT_FOUND, "unknown path: 404");
    ok(match(r, "POST", "/v1/events/", &m, allow) == HTTP_ROUTE_NOT_FOUND,
       "a trailing slash is a different path");
    ok(match(r, "POST", "/v1/dead-letters//requeue", &m, allow) == HTTP_ROUTE_NOT_FOUND,
       "a parameter never matches an empty segment");
    ok(match(r, "GET", "", &m, allow) == HTTP_ROUTE_NOT_FOUND, "empty path: 404");
    ok(match(r, "GET", "*", &m, allow) == HTTP_ROUTE_NOT_FOUND, "asterisk-form: 404");
    {
        char deep[400] = "";
        for (int i = 0; i < 80; i++)
            strcat(deep, "/a");
        ok(match(r, "GET", deep, &m, allow) == HTTP_ROUTE_NOT_FOUND,
           "a path deeper than any pattern may be: 404");
    }

    ok(http_router_add(r, "POST", "/v1/events", V(11), &old, &why) == 0 && old == V(1),
       "adding the same method and pattern replaces the value and returns the old one");
    ok(match(r, "POST", "/v1/events", &m, allow) == HTTP_ROUTE_FOUND && m.value == V(11),
       "the replacement is used");
    ok(http_router_count(r) == 6, "replacing does not add a route");

    ok(http_router_remove(r, "GET", "/v1/dead-letters/stats", &old) == 0 && old == V(4),
       "remove returns the value");
    ok(match(r, "GET", "/v1/dead-letters/stats", &m, allow) == HTTP_ROUTE_FOUND &&
           m.value == V(3) && param_is(&m, 0, "id", "stats"),
       "after removing the literal route the parameter route takes the path");
    ok(http_router_remove(r, "GET", "/v1/dead-letters/stats", &old) == -ENOENT,
       "removing an unknown route: -ENOENT");

    static const struct {
        const char *method, *pattern;
    } bad[] = {
        {"GET", "no-slash"}, {"GET", "/a/{}"},    {"GET", "/a/{x-y}"},
        {"GET", "/a/x{y}"},  {"GET", "/{a}/{a}"}, {"GET", "/a?b"},
        {"get", "/a"},       {"", "/a"},          {"G ET", "/a"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ok(http_router_add(r, bad[i].method, bad[i].pattern, V(99), &old, &why) == -EINVAL &&
               why != NULL,
           "refuses %s %s (%s)", bad[i].method, bad[i].pattern, why ? why : "-");

    {
        char many[200] = "";
        for (int i = 0; i < 17; i++) {
            char seg[8];
            snprintf(seg, sizeof seg, "/{p%d}", i);
            strcat(many, seg);
        }
        ok(http_router_add(r, "GET", many, V(98), &old, &why) == -EINVAL,
           "more than %d parameters refused", HTTP_ROUTER_MAX_PARAMS);
    }

    http_router_t *e = http_router_new();
    ok(match(e, "GET", "/", &m, allow) == HTTP_ROUTE_NOT_FOUND, "an empty table: 404");
    ok(http_router_add(e, "GET", "/", V(1), &old, &why) == 0 &&
           match(e, "GET", "/", &m, allow) == HTTP_ROUTE_FOUND,
       "the root pattern matches /");
    http_router_free(e, NULL, NULL);

    size_t freed = 0;
    http_router_free(r, count_free, &freed);
    ok(freed == 5, "free hands every remaining value back (%zu)", freed);
    return tap_done();
}
