/* The pass before lua-cjson's decode (json_scan.h): duplicate keys, depth, value count.
 * One loop over the text with an explicit stack (no recursion a deep input could
 * exhaust). Keys are kept in one open-addressing table for the whole text, tagged with
 * their object's serial number, so checking a key costs the same in an object of three
 * keys as in one of a million. */
#include "json_scan.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct key_ent {
    uint64_t hash; /* 0: empty slot */
    size_t obj;    /* the object's serial number */
    size_t off, len;
    int in_arena; /* off is into the arena (an unescaped key), else into the text */
};

struct frame {
    int is_object;
    size_t obj;
};

/* Small documents (most of them) are scanned without touching the heap. */
#define STACK0 16
#define KEYS0  32
#define ARENA0 256

struct scanner {
    const char *s;
    size_t n, i;
    const struct json_scan_limits *lim;
    struct json_scan_result *res;
    struct frame *stack;
    size_t depth, stack_cap;
    size_t values, objects;
    struct key_ent *keys;
    size_t nkeys, keys_cap; /* keys_cap: a power of two */
    char *arena;
    size_t arena_len, arena_cap;
    struct frame stack0[STACK0];
    struct key_ent keys0[KEYS0];
    char arena0[ARENA0];
};

/* Grows *p (holding used items of size sz, cap of them) to at least need items; the first
 * growth leaves the scanner's inline buffer `inline0` rather than reallocating it. */
static int grow(void **p, size_t *cap, size_t used, size_t need, size_t sz, void *inline0)
{
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *q;
    if (*p == inline0) {
        q = malloc(n * sz);
        if (q && used)
            memcpy(q, *p, used * sz);
    } else {
        q = realloc(*p, n * sz);
    }
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

static int fail(struct scanner *sc, enum json_scan_status st)
{
    sc->res->status = st;
    sc->res->offset = sc->i;
    return -1;
}

static void skip_ws(struct scanner *sc)
{
    while (sc->i < sc->n) {
        char c = sc->s[sc->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return;
        sc->i++;
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int arena_put(struct scanner *sc, const char *p, size_t len)
{
    if (sc->arena_len + len > sc->arena_cap) {
        void *a = sc->arena;
        if (grow(&a, &sc->arena_cap, sc->arena_len, sc->arena_len + len, 1, sc->arena0) != 0)
            return -1;
        sc->arena = a;
    }
    memcpy(sc->arena + sc->arena_len, p, len);
    sc->arena_len += len;
    return 0;
}

static size_t put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int hex4(const char *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval(p[k]);
        if (h < 0)
            return -1;
        v = (v << 4) | (uint32_t)h;
    }
    *out = v;
    return 0;
}

/* Unescapes the string body s[a..b) (which holds a backslash) onto the arena. */
static int unescape(struct scanner *sc, size_t a, size_t b)
{
    const char *s = sc->s;
    size_t i = a;
    while (i < b) {
        size_t run = i;
        while (run < b && s[run] != '\\')
            run++;
        if (run > i && arena_put(sc, s + i, run - i) != 0)
            return fail(sc, JSON_SCAN_NOMEM);
        i = run;
        if (i >= b)
            break;
        if (i + 1 >= b)
            return fail(sc, JSON_SCAN_SYNTAX);
        char e = s[i + 1], out[8];
        size_t olen = 1;
        i += 2;
        switch (e) {
        case '"': out[0] = '"'; break;
        case '\\': out[0] = '\\'; break;
        case '/': out[0] = '/'; break;
        case 'b': out[0] = '\b'; break;
        case 'f': out[0] = '\f'; break;
        case 'n': out[0] = '\n'; break;
        case 'r': out[0] = '\r'; break;
        case 't': out[0] = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (i + 4 > b || hex4(s + i, &cp) != 0)
                return fail(sc, JSON_SCAN_SYNTAX);
            i += 4;
            /* A surrogate pair is one code point; any other surrogate is left as it is
             * (the decoder refuses it). */
            if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 <= b && s[i] == '\\' && s[i + 1] == 'u' &&
                hex4(s + i + 2, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            }
            olen = put_utf8(out, cp);
            break;
        }
        default: return fail(sc, JSON_SCAN_SYNTAX);
        }
        if (arena_put(sc, out, olen) != 0)
            return fail(sc, JSON_SCAN_NOMEM);
    }
    return 0;
}

/* Moves past the string starting at sc->i (a quote); *a, *b: its body; *escaped: it holds
 * a backslash. */
static int skip_string(struct scanner *sc, size_t *a, size_t *b, int *escaped)
{
    const char *s = sc->s;
    size_t i = sc->i + 1;
    *escaped = 0;
    *a = i;
    for (;;) {
        const char *q = memchr(s + i, '"', sc->n - i);
        if (!q)
            return fail(sc, JSON_SCAN_SYNTAX);
        size_t j = (size_t)(q - s);
        /* The quote ends the string unless an odd number of backslashes precedes it. */
        size_t bs = 0;
        while (j - bs > i && s[j - bs - 1] == '\\')
            bs++;
        if (!*escaped && memchr(s + i, '\\', j - i))
            *escaped = 1;
        if (bs % 2 == 0) {
            *b = j;
            sc->i = j + 1;
            return 0;
        }
        i = j + 1;
    }
}

static const char *key_bytes(const struct scanner *sc, const struct key_ent *k)
{
    return k->in_arena ? sc->arena + k->off : sc->s + k->off;
}

static uint64_t hash_key(size_t obj, const char *p, size_t len)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)obj * 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    /* FNV's low bits depend only on the inputs' low bits, and the table is indexed by
     * them: mix (MurmurHash3's finaliser) so that "k1".."k800000" do not cluster. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h ? h : 1;
}

static int keys_grow(struct scanner *sc)
{
    size_t cap = sc->keys_cap * 2;
    struct key_ent *t = calloc(cap, sizeof *t);
    if (!t)
        return -1;
    for (size_t i = 0; i < sc->keys_cap; i++) {
        struct key_ent *k = &sc->keys[i];
        if (!k->hash)
            continue;
        size_t j = (size_t)k->hash & (cap - 1);
        while (t[j].hash)
            j = (j + 1) & (cap - 1);
        t[j] = *k;
    }
    if (sc->keys != sc->keys0)
        free(sc->keys);
    sc->keys = t;
    sc->keys_cap = cap;
    return 0;
}

/* Records the key s[a..b) of object obj; fails on a repeat. */
static int add_key(struct scanner *sc, size_t obj, size_t a, size_t b, int escaped, size_t at)
{
    struct key_ent e = {0};
    e.obj = obj;
    if (escaped) {
        e.in_arena = 1;
        e.off = sc->arena_len;
        if (unescape(sc, a, b) != 0)
            return -1;
        e.len = sc->arena_len - e.off;
    } else {
        e.off = a;
        e.len = b - a;
    }
    const char *p = key_bytes(sc, &e);
    e.hash = hash_key(obj, p, e.len);
    if (sc->keys_cap == 0) { /* the first key: clear the inline table */
        memset(sc->keys0, 0, sizeof sc->keys0);
        sc->keys = sc->keys0;
        sc->keys_cap = KEYS0;
    }
    if ((sc->nkeys + 1) * 2 > sc->keys_cap && keys_grow(sc) != 0)
        return fail(sc, JSON_SCAN_NOMEM);
    p = key_bytes(sc, &e);
    size_t j = (size_t)e.hash & (sc->keys_cap - 1);
    while (sc->keys[j].hash) {
        const struct key_ent *k = &sc->keys[j];
        if (k->hash == e.hash && k->obj == obj && k->len == e.len &&
            memcmp(key_bytes(sc, k), p, e.len) == 0) {
            struct json_scan_result *r = sc->res;
            r->key_len = e.len;
            size_t m = e.len < sizeof r->key - 1 ? e.len : sizeof r->key - 1;
            memcpy(r->key, p, m);
            r->key[m] = '\0';
            sc->i = at;
            return fail(sc, JSON_SCAN_DUPLICATE);
        }
        j = (j + 1) & (sc->keys_cap - 1);
    }
    sc->keys[j] = e;
    sc->nkeys++;
    return 0;
}

static int count_value(struct scanner *sc)
{
    if (sc->lim->max_values && ++sc->values > sc->lim->max_values)
        return fail(sc, JSON_SCAN_VALUES);
    return 0;
}

static int push(struct scanner *sc, int is_object)
{
    if (sc->lim->max_depth && sc->depth >= sc->lim->max_depth)
        return fail(sc, JSON_SCAN_DEPTH);
    if (sc->depth == sc->stack_cap) {
        void *st = sc->stack;
        size_t sz = sizeof(struct frame);
        if (grow(&st, &sc->stack_cap, sc->depth, sc->depth + 1, sz, sc->stack0) != 0)
            return fail(sc, JSON_SCAN_NOMEM);
        sc->stack = st;
    }
    struct frame *f = &sc->stack[sc->depth++];
    f->is_object = is_object;
    f->obj = is_object ? ++sc->objects : 0;
    sc->i++;
    return 0;
}

/* A scalar: a string, or the bytes up to the next delimiter (the decoder checks them). */
static int scalar(struct scanner *sc)
{
    if (sc->s[sc->i] == '"') {
        size_t a, b;
        int esc;
        return skip_string(sc, &a, &b, &esc);
    }
    size_t start = sc->i;
    while (sc->i < sc->n && !strchr(",]}: \t\r\n\"{[", sc->s[sc->i]))
        sc->i++;
    return sc->i > start ? 0 : fail(sc, JSON_SCAN_SYNTAX);
}

/* After "{" or ",": a key, a colon; leaves sc->i at the value. */
static int member_key(struct scanner *sc)
{
    skip_ws(sc);
    if (sc->i >= sc->n || sc->s[sc->i] != '"')
        return fail(sc, JSON_SCAN_SYNTAX);
    size_t at = sc->i, a, b;
    int esc;
    if (skip_string(sc, &a, &b, &esc) != 0)
        return -1;
    if (add_key(sc, sc->stack[sc->depth - 1].obj, a, b, esc, at) != 0)
        return -1;
    skip_ws(sc);
    if (sc->i >= sc->n || sc->s[sc->i] != ':')
        return fail(sc, JSON_SCAN_SYNTAX);
    sc->i++;
    return 0;
}

static int run(struct scanner *sc)
{
    for (;;) {
        /* A value is expected here. */
        skip_ws(sc);
        if (sc->i >= sc->n)
            return fail(sc, JSON_SCAN_SYNTAX);
        if (count_value(sc) != 0)
            return -1;
        char c = sc->s[sc->i];
        if (c == '{' || c == '[') {
            if (push(sc, c == '{') != 0)
                return -1;
            skip_ws(sc);
            if (sc->i < sc->n && sc->s[sc->i] == (c == '{' ? '}' : ']')) {
                sc->i++;
                sc->depth--;
            } else {
                if (c == '{' && member_key(sc) != 0)
                    return -1;
                continue;
            }
        } else if (scalar(sc) != 0) {
            return -1;
        }
        /* After a value: a comma, a closing bracket, or the end of the text. */
        for (;;) {
            skip_ws(sc);
            if (sc->depth == 0)
                return sc->i == sc->n ? 0 : fail(sc, JSON_SCAN_SYNTAX);
            if (sc->i >= sc->n)
                return fail(sc, JSON_SCAN_SYNTAX);
            struct frame *f = &sc->stack[sc->depth - 1];
            char d = sc->s[sc->i];
            if (d == ',') {
                sc->i++;
                if (f->is_object && member_key(sc) != 0)
                    return -1;
                break;
            }
            if (d != (f->is_object ? '}' : ']'))
                return fail(sc, JSON_SCAN_SYNTAX);
            sc->i++;
            sc->depth--;
        }
    }
}

enum json_scan_status json_scan(const char *text, size_t n, const struct json_scan_limits *lim,
                                struct json_scan_result *res)
{
    /* Not "= {0}": that would clear the inline buffers on every call. */
    struct scanner sc;
    memset(&sc, 0, offsetof(struct scanner, stack0));
    sc.stack = sc.stack0;
    sc.stack_cap = STACK0;
    sc.arena = sc.arena0;
    sc.arena_cap = ARENA0;
    sc.s = text;
    sc.n = n;
    sc.lim = lim;
    sc.res = res;
    res->status = JSON_SCAN_OK;
    res->offset = 0;
    res->key[0] = '\0';
    res->key_len = 0;
    run(&sc);
    if (sc.stack != sc.stack0)
        free(sc.stack);
    if (sc.keys != sc.keys0)
        free(sc.keys);
    if (sc.arena != sc.arena0)
        free(sc.arena);
    return res->status;
}
