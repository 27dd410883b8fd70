/* steward.json: Debian's lua-cjson 2.1.0 (linked in statically), plus the contract it
 * lacks: json.null, arrays that round-trip ([] stays [], through an array metatable that
 * json.array sets and decode applies), UTF-8 validation, depth limits, and nil, err with
 * the byte offset instead of raised errors. Before cjson runs, json_scan.c refuses duplicate
 * keys and bounds depth and size (the caller's opts).
 *
 * cjson 2.1.0 decodes [] and {} to the same empty table and encodes every empty table as
 * {}. Decode therefore re-walks the (already validated) text beside the decoded tree to
 * mark empty arrays, and encode swaps marked empty arrays for a per-process sentinel string
 * that is replaced by [] in the output. Both passes run only when an empty array is there. */
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bindings.h"
#include "json_scan.h"

int luaopen_cjson_safe(lua_State *L);

#define MAX_DEPTH 128

/* Upvalue indices of every function in the module. */
#define UV_CJSON    lua_upvalueindex(1)
#define UV_ARRAY_MT lua_upvalueindex(2)
#define UV_SENTINEL lua_upvalueindex(3)

/* ---- UTF-8 validation (RFC 3629: no overlongs, no surrogates, <= U+10FFFF) ---- */

static size_t utf8_invalid_at(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return i;
        }
        if (i + len > n)
            return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return i;
        i += len;
    }
    return SIZE_MAX;
}

/* ---- decode: mark empty arrays ---- */

struct scan {
    const char *p, *end;
};

static void skip_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* Skips a string token; returns 1 if it held an escape. */
static int skip_string(struct scan *s)
{
    int escaped = 0;
    s->p++; /* opening quote */
    while (s->p < s->end && *s->p != '"') {
        if (*s->p == '\\') {
            escaped = 1;
            s->p++;
        }
        s->p++;
    }
    s->p++;
    return escaped;
}

static void skip_scalar(struct scan *s)
{
    if (s->p < s->end && *s->p == '"') {
        skip_string(s);
        return;
    }
    while (s->p < s->end && !strchr(",]} \t\r\n", *s->p))
        s->p++;
}

/* Skips a whole container (its brackets balanced, strings skipped). */
static void skip_container(struct scan *s)
{
    int depth = 0;
    while (s->p < s->end) {
        char c = *s->p;
        if (c == '"') {
            skip_string(s);
            continue;
        }
        s->p++;
        if (c == '[' || c == '{')
            depth++;
        else if ((c == ']' || c == '}') && --depth == 0)
            return;
    }
}

/* Walks the value at s->p alongside the decoded value at the top of L (which it leaves
 * there), giving every empty array the array metatable. */
static void mark_value(lua_State *L, struct scan *s)
{
    skip_ws(s);
    if (s->p >= s->end)
        return;
    char c = *s->p;
    /* With a duplicate key the text holds a value the table no longer does: skip it. */
    if ((c == '[' || c == '{') && !lua_istable(L, -1)) {
        skip_container(s);
        return;
    }
    if (c == '[') {
        s->p++;
        skip_ws(s);
        if (s->p < s->end && *s->p == ']') {
            s->p++;
            if (lua_istable(L, -1)) {
                lua_pushvalue(L, UV_ARRAY_MT);
                lua_setmetatable(L, -2);
            }
            return;
        }
        for (int i = 1;; i++) {
            lua_rawgeti(L, -1, i);
            mark_value(L, s);
            lua_pop(L, 1);
            skip_ws(s);
            if (s->p >= s->end || *s->p != ',')
                break;
            s->p++;
        }
        s->p++; /* ] */
    } else if (c == '{') {
        s->p++;
        skip_ws(s);
        if (s->p < s->end && *s->p == '}') {
            s->p++;
            return;
        }
        for (;;) {
            skip_ws(s);
            const char *k = s->p;
            int escaped = skip_string(s);
            if (escaped) {
                /* Let cjson unescape the key exactly as it did while decoding. */
                lua_getfield(L, UV_CJSON, "decode");
                lua_pushlstring(L, k, (size_t)(s->p - k));
                lua_call(L, 1, 1);
            } else {
                lua_pushlstring(L, k + 1, (size_t)(s->p - k - 2));
            }
            lua_rawget(L, -2);
            skip_ws(s);
            s->p++; /* : */
            mark_value(L, s);
            lua_pop(L, 1);
            skip_ws(s);
            if (s->p >= s->end || *s->p != ',')
                break;
            s->p++;
        }
        s->p++; /* } */
    } else {
        skip_scalar(s);
    }
}

/* A cheap test: is there a '[' followed by blanks and ']' anywhere? */
static int may_hold_empty_array(const char *p, size_t n)
{
    const char *end = p + n;
    while ((p = memchr(p, '[', (size_t)(end - p))) != NULL) {
        p++;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
            p++;
        if (p < end && *p == ']')
            return 1;
    }
    return 0;
}

/* opts at idx (nil or a table): max_depth (1..MAX_DEPTH), max_values (>= 1). */
static void decode_opts(lua_State *L, int idx, struct json_scan_limits *lim)
{
    lim->max_depth = MAX_DEPTH;
    lim->max_values = 0;
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, "max_depth");
    if (!lua_isnil(L, -1)) {
        lua_Number d = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || d != (lua_Number)(int)d || d < 1 || d > MAX_DEPTH)
            luaL_error(L, "json.decode: opts.max_depth: integer from 1 to %d expected", MAX_DEPTH);
        lim->max_depth = (size_t)d;
    }
    lua_getfield(L, idx, "max_values");
    if (!lua_isnil(L, -1)) {
        lua_Number v = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || v != (lua_Number)(int64_t)v || v < 1)
            luaL_error(L, "json.decode: opts.max_values: integer >= 1 expected");
        lim->max_values = (size_t)v;
    }
    lua_pop(L, 2);
}

/* Pushes nil, message, {reason, offset, key | limit, max}: why the scan refused text. */
static int scan_refused(lua_State *L, const struct json_scan_result *r,
                        const struct json_scan_limits *lim)
{
    lua_pushnil(L);
    if (r->status == JSON_SCAN_DUPLICATE)
        lua_pushfstring(L, "invalid JSON: duplicate key \"%s\" at byte offset %d", r->key,
                        (int)r->offset);
    else if (r->status == JSON_SCAN_DEPTH)
        lua_pushfstring(L, "JSON nested deeper than %d levels at byte offset %d",
                        (int)lim->max_depth, (int)r->offset);
    else if (r->status == JSON_SCAN_VALUES)
        lua_pushfstring(L, "JSON holds more than %d values (byte offset %d)", (int)lim->max_values,
                        (int)r->offset);
    else if (r->status == JSON_SCAN_NOMEM)
        lua_pushliteral(L, "out of memory while checking the JSON");
    else
        lua_pushfstring(L, "invalid JSON at byte offset %d", (int)r->offset);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)r->offset);
    lua_setfield(L, -2, "offset");
    if (r->status == JSON_SCAN_DUPLICATE) {
        lua_pushliteral(L, "duplicate_key");
        lua_setfield(L, -2, "reason");
        lua_pushlstring(L, r->key, strlen(r->key));
        lua_setfield(L, -2, "key");
    } else if (r->status == JSON_SCAN_DEPTH || r->status == JSON_SCAN_VALUES) {
        int depth = r->status == JSON_SCAN_DEPTH;
        lua_pushliteral(L, "limit");
        lua_setfield(L, -2, "reason");
        lua_pushstring(L, depth ? "max_depth" : "max_values");
        lua_setfield(L, -2, "limit");
        lua_pushinteger(L, (lua_Integer)(depth ? lim->max_depth : lim->max_values));
        lua_setfield(L, -2, "max");
    } else {
        lua_pushstring(L, r->status == JSON_SCAN_NOMEM ? "nomem" : "syntax");
        lua_setfield(L, -2, "reason");
    }
    return 3;
}

/* json.decode(text [, opts]) -> value | nil, err, info */
static int l_json_decode(lua_State *L)
{
    size_t n;
    const char *text = luaL_checklstring(L, 1, &n);
    struct json_scan_limits lim;
    decode_opts(L, 2, &lim);
    lua_settop(L, 1);
    size_t bad = utf8_invalid_at((const unsigned char *)text, n);
    if (bad != SIZE_MAX) {
        lua_pushnil(L);
        lua_pushfstring(L, "invalid UTF-8 at byte offset %d", (int)bad);
        return 2;
    }
    /* Duplicate keys and the bounds before cjson does any work: it would keep the last of
     * two keys silently, and its decode cannot be interrupted. */
    struct json_scan_result r;
    enum json_scan_status st = json_scan(text, n, &lim, &r);
    if (st != JSON_SCAN_OK && st != JSON_SCAN_SYNTAX)
        return scan_refused(L, &r, &lim);
    lua_getfield(L, UV_CJSON, "decode");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 2);
    if (lua_isnil(L, -2)) {
        /* cjson says "... at character N" (1-based): that is the byte offset. */
        lua_pushnil(L);
        lua_pushfstring(L, "invalid JSON: %s", lua_tostring(L, -2));
        return 2;
    }
    if (st == JSON_SCAN_SYNTAX) /* cjson took what the scan did not: never unchecked */
        return scan_refused(L, &r, &lim);
    lua_pop(L, 1);
    if (may_hold_empty_array(text, n)) {
        struct scan s = {text, text + n};
        mark_value(L, &s);
    }
    return 1;
}

/* ---- encode ---- */

/* Stack slots of an encode: the value, the lists the walk fills, the decimal metatable. */
enum {
    E_VALUE = 1,
    E_ARRAYS,   /* {parent, key} of empty array-marked tables (nil while none) */
    E_DECIMALS, /* {parent, key, decimal} of steward.decimal values (nil while none) */
    E_DEC_MT,   /* the registry's "steward.decimal" metatable, or nil */
    E_ORIGINALS,
    E_TEXT,
    E_ERR
};

static int is_decimal(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TUSERDATA || lua_isnil(L, E_DEC_MT) || !lua_getmetatable(L, idx))
        return 0;
    int yes = lua_rawequal(L, -1, E_DEC_MT);
    lua_pop(L, 1);
    return yes;
}

static void add_pair(lua_State *L, int list_idx, int parent, int key, int extra)
{
    if (lua_isnil(L, list_idx)) { /* made on first use: most values have neither */
        lua_newtable(L);
        lua_replace(L, list_idx);
    }
    lua_createtable(L, 3, 0);
    lua_pushvalue(L, parent);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, key);
    lua_rawseti(L, -2, 2);
    if (extra) {
        lua_pushvalue(L, extra);
        lua_rawseti(L, -2, 3);
    }
    lua_rawseti(L, list_idx, (int)lua_objlen(L, list_idx) + 1);
}

/* Collects the empty array-marked tables below the value at idx into E_ARRAYS and the
 * decimals into E_DECIMALS; returns 1 if the value itself is an empty array, -1 if the
 * sentinel string occurs in the data. */
static int find_empty_arrays(lua_State *L, int idx, int depth)
{
    if (!lua_istable(L, idx) || depth > MAX_DEPTH)
        return 0;
    if (lua_getmetatable(L, idx)) {
        int is_array = lua_rawequal(L, -1, UV_ARRAY_MT);
        lua_pop(L, 1);
        lua_pushnil(L);
        int empty = !lua_next(L, idx);
        if (!empty)
            lua_pop(L, 2);
        if (is_array && empty)
            return 1;
    }
    luaL_checkstack(L, 6, "json.encode: nesting too deep");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int v = lua_gettop(L);
        /* Strings are interned, so this is a pointer comparison: data that happens to hold
         * the sentinel would be rewritten to [] (the fuzzer found the sentinel through the
         * comparison below), so it is refused instead. */
        if (lua_rawequal(L, v, UV_SENTINEL) || lua_rawequal(L, v - 1, UV_SENTINEL)) {
            lua_pop(L, 2);
            return -1;
        }
        if (is_decimal(L, v)) {
            add_pair(L, E_DECIMALS, idx, v - 1, v);
            lua_pop(L, 1);
            continue;
        }
        int found = find_empty_arrays(L, v, depth + 1);
        if (found < 0) {
            lua_pop(L, 2);
            return -1;
        }
        if (found)
            add_pair(L, E_ARRAYS, idx, v - 1, 0);
        lua_pop(L, 1);
    }
    return 0;
}

/* parent[key] = the pair's element `field` (or value_idx) for every pair of the list. */
static void set_all(lua_State *L, int list_idx, int value_idx, int field)
{
    int n = (int)lua_objlen(L, list_idx);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, list_idx, i);
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        if (field)
            lua_rawgeti(L, -3, field);
        else
            lua_pushvalue(L, value_idx);
        lua_rawset(L, -3);
        lua_pop(L, 2);
    }
}

/* A decimal's exact string for the output (amounts travel as strings), at the top of the
 * stack; 0 with the reason there instead for a value with no finite decimal form (1/3). */
static int decimal_text(lua_State *L, int idx)
{
    luaL_callmeta(L, idx, "__tostring");
    if (!strchr(lua_tostring(L, -1), '/'))
        return 1;
    lua_pushfstring(L,
                    "a decimal with no finite decimal form (%s) cannot be encoded: round it "
                    "(d:round(scale, mode))",
                    lua_tostring(L, -1));
    lua_remove(L, -2);
    return 0;
}

/* Puts each decimal's string in its place (field 4 of the pair keeps it); 0 with the
 * reason on the stack, nothing swapped, if one has no finite decimal form. */
static int swap_decimals(lua_State *L)
{
    int n = (int)lua_objlen(L, E_DECIMALS);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, E_DECIMALS, i);
        lua_rawgeti(L, -1, 3);
        if (!decimal_text(L, lua_gettop(L))) {
            lua_replace(L, -3);
            lua_pop(L, 1);
            return 0;
        }
        lua_rawseti(L, -3, 4);
        lua_pop(L, 2);
    }
    set_all(L, E_DECIMALS, 0, 4);
    return 1;
}

static int l_json_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    lua_pushnil(L);                          /* E_ARRAYS */
    lua_pushnil(L);                          /* E_DECIMALS */
    luaL_getmetatable(L, "steward.decimal"); /* E_DEC_MT: nil until steward.decimal loads */
    if (is_decimal(L, E_VALUE)) {
        if (!decimal_text(L, E_VALUE)) {
            lua_pushnil(L);
            lua_insert(L, -2);
            return 2;
        }
        lua_replace(L, E_VALUE);
    }
    int found = lua_rawequal(L, 1, UV_SENTINEL) ? -1 : find_empty_arrays(L, 1, 0);
    if (found < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "value holds steward.json's internal marker string");
        return 2;
    }
    if (found) {
        lua_pushliteral(L, "[]");
        return 1;
    }
    if (!swap_decimals(L)) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    /* Keep the original empty tables to put back, swap in the sentinel, encode. */
    int n = (int)lua_objlen(L, E_ARRAYS); /* 0 for nil */
    if (n)
        lua_createtable(L, n, 0); /* E_ORIGINALS */
    else
        lua_pushnil(L);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, E_ARRAYS, i);
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        lua_rawget(L, -2);
        lua_rawseti(L, E_ORIGINALS, i);
        lua_pop(L, 2);
    }
    set_all(L, E_ARRAYS, UV_SENTINEL, 0);
    lua_getfield(L, UV_CJSON, "encode");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 2); /* E_TEXT: text or nil, E_ERR: err (cjson.safe returns, never raises) */
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, E_ARRAYS, i);
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        lua_rawgeti(L, E_ORIGINALS, i);
        lua_rawset(L, -3);
        lua_pop(L, 2);
    }
    set_all(L, E_DECIMALS, 0, 3); /* the caller's tables hold their decimals again */
    if (lua_isnil(L, E_TEXT))
        return 2;
    if (n == 0) {
        lua_settop(L, E_TEXT);
        return 1;
    }
    /* The sentinel string appears in the output as a JSON string: replace it with []. */
    lua_getfield(L, UV_CJSON, "encode");
    lua_pushvalue(L, UV_SENTINEL);
    lua_call(L, 1, 1);
    size_t slen, tlen;
    const char *quoted = lua_tolstring(L, -1, &slen);
    const char *text = lua_tolstring(L, E_TEXT, &tlen);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    /* Walk the string tokens of the output: a token that is exactly the quoted sentinel
     * becomes [], and text inside other strings is never touched. */
    const char *p = text, *end = text + tlen, *copied = text;
    while (p < end) {
        if (*p != '"') {
            p++;
            continue;
        }
        if ((size_t)(end - p) >= slen && memcmp(p, quoted, slen) == 0) {
            luaL_addlstring(&b, copied, (size_t)(p - copied));
            luaL_addlstring(&b, "[]", 2);
            p += slen;
            copied = p;
            continue;
        }
        for (p++; p < end && *p != '"'; p++)
            if (*p == '\\')
                p++;
        p++;
    }
    luaL_addlstring(&b, copied, (size_t)(end - copied));
    luaL_pushresult(&b);
    return 1;
}

static int l_json_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_pushvalue(L, UV_ARRAY_MT);
    lua_setmetatable(L, 1);
    return 1;
}

static int l_json_is_array(lua_State *L)
{
    int yes = 0;
    if (lua_istable(L, 1) && lua_getmetatable(L, 1)) {
        yes = lua_rawequal(L, -1, UV_ARRAY_MT);
        lua_pop(L, 1);
    }
    lua_pushboolean(L, yes);
    return 1;
}

int luaopen_steward_json(lua_State *L)
{
    static const luaL_Reg funcs[] = {{"decode", l_json_decode},
                                     {"encode", l_json_encode},
                                     {"array", l_json_array},
                                     {"is_array", l_json_is_array},
                                     {NULL, NULL}};
    luaopen_cjson_safe(L); /* a private instance: its settings are ours alone */
    int cj = lua_gettop(L);
    static const struct {
        const char *fn;
        int arg;
    } settings[] = {{"decode_max_depth", MAX_DEPTH},
                    {"encode_max_depth", MAX_DEPTH},
                    {"decode_invalid_numbers", 0},
                    {"encode_invalid_numbers", 0}};
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        lua_getfield(L, cj, settings[i].fn);
        if (strstr(settings[i].fn, "invalid"))
            lua_pushboolean(L, settings[i].arg);
        else
            lua_pushinteger(L, settings[i].arg);
        lua_call(L, 1, 0);
    }
    lua_newtable(L); /* the array metatable */
    lua_pushliteral(L, "json.array");
    lua_setfield(L, -2, "__name");
    int mt = lua_gettop(L);
    /* A sentinel no real data will contain: random bytes around a name. */
    char sentinel[64];
    FILE *f = fopen("/dev/urandom", "rb");
    unsigned long long r = 0;
    if (f) {
        if (fread(&r, sizeof r, 1, f) != 1)
            r = (unsigned long long)(uintptr_t)&r;
        fclose(f);
    }
    snprintf(sentinel, sizeof sentinel, "\x01steward-empty-array-%016llx\x01", r);
    lua_pushstring(L, sentinel);
    int sent = lua_gettop(L);

    lua_newtable(L);
    for (const luaL_Reg *fn = funcs; fn->name; fn++) {
        lua_pushvalue(L, cj);
        lua_pushvalue(L, mt);
        lua_pushvalue(L, sent);
        lua_pushcclosure(L, fn->func, 3);
        lua_setfield(L, -2, fn->name);
    }
    lua_getfield(L, cj, "null");
    lua_setfield(L, -2, "null");
    lua_pushvalue(L, mt);
    lua_setfield(L, -2, "array_mt");
    lua_pushinteger(L, MAX_DEPTH);
    lua_setfield(L, -2, "max_depth");
    return 1;
}
