/* steward.http: HTTP requests that suspend the calling task while libcurl's multi interface
 * (bindings/http_multi.c) runs the transfer on the loop. The response is gathered in C and
 * turned into Lua values only when the task is woken, so a cancelled request never touches
 * Lua. SMTP lives in bindings/http_mail.c. */
#include <ctype.h>
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bindings.h"
#include "duration.h"
#include "http_multi.h"
#include "version.h"

#define DEFAULT_TIMEOUT         30.0
#define DEFAULT_CONNECT_TIMEOUT 10.0
#define DEFAULT_MAX_BODY        (64.0 * 1024 * 1024)
#define DEFAULT_MAX_REDIRECTS   5L

struct req {
    http_xfer_t x;
    struct curl_slist *headers;
    char *what; /* "METHOD url" */
    char *body; /* the request body (libcurl reads it from here) */
    char *resp;
    size_t resp_len, resp_cap;
    curl_off_t max_body;
    long max_host;
    int too_big;
    int started; /* a connection was ready and the request went out (CURLOPT_PREREQFUNCTION) */
};

static void req_release(http_xfer_t *x)
{
    struct req *r = (struct req *)x;
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(r->headers);
    free(r->what);
    free(r->body);
    free(r->resp);
    free(r);
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    struct req *r = ud;
    size_t len = size * n;
    if ((curl_off_t)(r->resp_len + len) > r->max_body) {
        r->too_big = 1;
        return CURL_WRITEFUNC_ERROR;
    }
    if (r->resp_len + len > r->resp_cap) {
        size_t cap = r->resp_cap ? r->resp_cap : 16384;
        while (cap < r->resp_len + len)
            cap *= 2;
        char *p = realloc(r->resp, cap);
        if (!p)
            return CURL_WRITEFUNC_ERROR;
        r->resp = p;
        r->resp_cap = cap;
    }
    memcpy(r->resp + r->resp_len, data, len);
    r->resp_len += len;
    return len;
}

static int on_prereq(void *ud, char *conn_ip, char *local_ip, int conn_port, int local_port)
{
    (void)conn_ip;
    (void)local_ip;
    (void)conn_port;
    (void)local_port;
    ((struct req *)ud)->started = 1;
    return CURL_PREREQFUNC_OK;
}

/* Pushes the response headers of the last request (after redirects): headers, a table of
 * lower-cased names (repeats joined with ", "), and headers_list, every {name, value}. */
static void push_headers(lua_State *L, CURL *easy)
{
    lua_newtable(L);
    int map = lua_gettop(L);
    lua_newtable(L);
    int list = map + 1;
    int n = 0;
    struct curl_header *h = NULL;
    char name[256];
    while ((h = curl_easy_nextheader(easy, CURLH_HEADER, -1, h))) {
        size_t len = strlen(h->name);
        if (len >= sizeof name)
            len = sizeof name - 1;
        for (size_t i = 0; i < len; i++)
            name[i] = (char)tolower((unsigned char)h->name[i]);
        name[len] = 0;
        lua_createtable(L, 2, 0);
        lua_pushstring(L, name);
        lua_rawseti(L, -2, 1);
        lua_pushstring(L, h->value);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, list, ++n);
        lua_getfield(L, map, name);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushstring(L, h->value);
        } else {
            lua_pushliteral(L, ", ");
            lua_pushstring(L, h->value);
            lua_concat(L, 3);
        }
        lua_setfield(L, map, name);
    }
}

static void req_finish(http_xfer_t *x, CURLcode rc)
{
    struct req *r = (struct req *)x;
    task_t *t = task_wake(&x->wait);
    if (t) {
        lua_State *L = task_state(t);
        luaL_checkstack(L, 16, "http.request");
        int nret;
        if (r->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
            lua_pushnil(L);
            lua_pushfstring(L, "%s: response body exceeds max_body (%.0f bytes)", r->what,
                            (double)r->max_body);
            lua_pushliteral(L, "max_body");
            nret = 3;
        } else if (rc != CURLE_OK) {
            nret = http_xfer_push_error(L, x, rc);
            /* libcurl's own words for a request that timed out while queued for a connection
             * slot ("Failed to resolve host ... after 0 ms") would send people chasing DNS. */
            if (rc == CURLE_OPERATION_TIMEDOUT && !r->started) {
                lua_pushvalue(L, -2);
                if (r->max_host > 0)
                    lua_pushfstring(L,
                                    " [no connection was ready in time: still connecting, or "
                                    "waiting for one of the %d max_host_connections]",
                                    (int)r->max_host);
                else
                    lua_pushliteral(L, " [no connection was ready in time]");
                lua_concat(L, 2);
                lua_replace(L, -3);
            }
        } else {
            long status = 0;
            char *url = NULL;
            curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
            curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &url);
            lua_createtable(L, 0, 5);
            lua_pushinteger(L, status);
            lua_setfield(L, -2, "status");
            push_headers(L, x->easy);
            lua_setfield(L, -3, "headers_list");
            lua_setfield(L, -2, "headers");
            lua_pushlstring(L, r->resp ? r->resp : "", r->resp_len);
            lua_setfield(L, -2, "body");
            lua_pushstring(L, url ? url : "");
            lua_setfield(L, -2, "url");
            nret = 1;
        }
        req_release(x);
        task_resume(t, nret);
        return;
    }
    req_release(x);
}

static const char *const known_opts[] = {"method",
                                         "url",
                                         "headers",
                                         "body",
                                         "timeout",
                                         "connect_timeout",
                                         "max_body",
                                         "follow_redirects",
                                         "cafile",
                                         "capath",
                                         "cert",
                                         "key",
                                         "insecure",
                                         "user_agent",
                                         "max_host_connections",
                                         "max_total_connections",
                                         NULL};

static void check_known(lua_State *L, const char *fname)
{
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: option names must be strings", fname);
        const char *k = lua_tostring(L, -1);
        int ok = 0;
        for (const char *const *o = known_opts; *o && !ok; o++)
            ok = strcmp(*o, k) == 0;
        if (!ok)
            luaL_error(L, "%s: unknown option '%s'", fname, k);
    }
}

static int valid_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return 0;
    return 1;
}

static int has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

/* Checks the `headers` field and pushes an array of "Name: value" lines for libcurl; a user
 * header of the same name replaces libcurl's own (Expect is turned off unless asked for).
 * Everything that may raise happens here, before the request owns any memory. */
static void collect_headers(lua_State *L, const char *fname)
{
    int has_expect = 0, n = 0;
    lua_newtable(L);
    int out = lua_gettop(L);
    lua_getfield(L, 1, "headers");
    if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1))
            luaL_error(L, "%s: headers: table expected, got %s", fname, luaL_typename(L, -1));
        int tbl = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, tbl)) {
            if (lua_type(L, -2) != LUA_TSTRING || !valid_token(lua_tostring(L, -2)))
                luaL_error(L, "%s: headers: names must be header-name strings", fname);
            const char *k = lua_tostring(L, -2);
            if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
                luaL_error(L, "%s: headers: value of '%s' must be a string or number", fname, k);
            const char *v = lua_tostring(L, -1);
            if (has_crlf(v))
                luaL_error(L, "%s: headers: value of '%s' contains CR or LF", fname, k);
            if (strcasecmp(k, "expect") == 0)
                has_expect = 1;
            /* "Name;" is libcurl's way to send a header with an empty value. */
            lua_pushfstring(L, *v ? "%s: %s" : "%s;", k, v);
            lua_rawseti(L, out, ++n);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    if (!has_expect) {
        lua_pushliteral(L, "Expect:");
        lua_rawseti(L, out, ++n);
    }
}

static int slist_from(lua_State *L, int idx, struct curl_slist **out)
{
    struct curl_slist *sl = NULL;
    int n = (int)lua_objlen(L, idx);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        struct curl_slist *p = curl_slist_append(sl, lua_tostring(L, -1));
        lua_pop(L, 1);
        if (!p) {
            curl_slist_free_all(sl);
            return -1;
        }
        sl = p;
    }
    *out = sl;
    return 0;
}

static double opt_number(lua_State *L, const char *field, double def, const char *fname)
{
    lua_getfield(L, 1, field);
    double v = def;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER || !isfinite(lua_tonumber(L, -1)) ||
            lua_tonumber(L, -1) < 0)
            luaL_error(L, "%s: %s: number >= 0 expected", fname, field);
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/* A connection limit: an integer >= 0 (0 = no limit), `def` when absent. */
static long opt_limit(lua_State *L, const char *field, long def, const char *fname)
{
    lua_getfield(L, 1, field);
    long v = def;
    if (!lua_isnil(L, -1)) {
        double d = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || !(d >= 0 && d <= 1e6) || d != floor(d))
            luaL_error(L, "%s: %s: integer >= 0 expected (0 = no limit)", fname, field);
        v = (long)d;
    }
    lua_pop(L, 1);
    return v;
}

static double opt_duration(lua_State *L, const char *field, double def, const char *fname)
{
    char what[64];
    snprintf(what, sizeof what, "%s: %s", fname, field);
    lua_getfield(L, 1, field);
    double v = duration_opt(L, -1, what, def);
    lua_pop(L, 1);
    return v;
}

static int opt_bool(lua_State *L, const char *field, const char *fname)
{
    lua_getfield(L, 1, field);
    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
        luaL_error(L, "%s: %s: boolean expected, got %s", fname, field, luaL_typename(L, -1));
    int b = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return b;
}

static long ms(double sec)
{
    double v = ceil(sec * 1000.0);
    return v > 2e9 ? 2000000000L : (long)v;
}

static int l_http_request(lua_State *L)
{
    static const char fname[] = "http.request";
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    check_known(L, fname);
    const char *url = http_opt_string(L, 1, "url", fname);
    if (!url)
        return luaL_error(L, "%s: url: string expected, got nil", fname);
    const char *body = NULL;
    size_t body_len = 0;
    lua_getfield(L, 1, "body");
    if (lua_type(L, -1) == LUA_TSTRING)
        body = lua_tolstring(L, -1, &body_len);
    else if (!lua_isnil(L, -1))
        return luaL_error(L, "%s: body: string expected, got %s", fname, luaL_typename(L, -1));
    lua_pop(L, 1);
    const char *method = http_opt_string(L, 1, "method", fname);
    if (!method)
        method = body ? "POST" : "GET";
    if (!valid_token(method))
        return luaL_error(L, "%s: method: bad method name '%s'", fname, method);
    double timeout = opt_duration(L, "timeout", DEFAULT_TIMEOUT, fname);
    double ctimeout = opt_duration(L, "connect_timeout", DEFAULT_CONNECT_TIMEOUT, fname);
    double max_body = opt_number(L, "max_body", DEFAULT_MAX_BODY, fname);
    long max_redirs = DEFAULT_MAX_REDIRECTS;
    lua_getfield(L, 1, "follow_redirects");
    if (lua_isboolean(L, -1))
        max_redirs = lua_toboolean(L, -1) ? DEFAULT_MAX_REDIRECTS : 0;
    else if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) >= 0)
        max_redirs = (long)lua_tonumber(L, -1);
    else if (!lua_isnil(L, -1))
        return luaL_error(L, "%s: follow_redirects: boolean or number >= 0 expected", fname);
    lua_pop(L, 1);
    const char *cafile = http_opt_string(L, 1, "cafile", fname);
    const char *capath = http_opt_string(L, 1, "capath", fname);
    const char *cert = http_opt_string(L, 1, "cert", fname);
    const char *key = http_opt_string(L, 1, "key", fname);
    const char *ua = http_opt_string(L, 1, "user_agent", fname);
    int insecure = opt_bool(L, "insecure", fname);
    long max_host = opt_limit(L, "max_host_connections", HTTP_DEFAULT_MAX_HOST, fname);
    long max_total = opt_limit(L, "max_total_connections", HTTP_DEFAULT_MAX_TOTAL, fname);
    collect_headers(L, fname);
    int hdrs = lua_gettop(L);
    task_t *t = task_check(L, fname);
    http_pool_t *pool = http_pool_get(L, max_host, max_total, fname);

    struct req *r = calloc(1, sizeof *r);
    if (!r)
        return luaL_error(L, "%s: out of memory", fname);
    r->x.finish = req_finish;
    r->x.release = req_release;
    r->max_body = (curl_off_t)max_body;
    r->max_host = max_host;
    if (http_xfer_init(&r->x, pool) != 0) {
        free(r);
        return luaL_error(L, "%s: cannot create a libcurl handle", fname);
    }
    lua_pushfstring(L, "%s %s", method, url);
    r->what = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (body && body_len) {
        r->body = malloc(body_len);
        if (r->body)
            memcpy(r->body, body, body_len);
    }
    if (!r->what || (body_len && !r->body) || slist_from(L, hdrs, &r->headers) != 0) {
        req_release(&r->x);
        return luaL_error(L, "%s: out of memory", fname);
    }
    r->x.what = r->what;
    CURL *e = r->x.easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, ua ? ua : "steward/" STEWARD_VERSION);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, r);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms(timeout));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ms(ctimeout));
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, r->max_body);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, max_redirs > 0 ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, max_redirs);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") == 0 && !body) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        if (body || strcmp(method, "POST") == 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        }
    }
    if (cafile)
        curl_easy_setopt(e, CURLOPT_CAINFO, cafile);
    if (capath)
        curl_easy_setopt(e, CURLOPT_CAPATH, capath);
    if (cert)
        curl_easy_setopt(e, CURLOPT_SSLCERT, cert);
    if (key)
        curl_easy_setopt(e, CURLOPT_SSLKEY, key);
    if (insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    return http_xfer_suspend(L, t, &r->x, fname);
}

int luaopen_steward_http(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"request", l_http_request}, {"send_mail", l_http_send_mail}, {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    return 1;
}
