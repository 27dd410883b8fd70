/* steward.decimal: exact money as GMP rationals (mpq_t), so that + - * / never round; rounding
 * happens only where a formula calls d:round/d:money. The parser, printer and rounding live in
 * decimal_text.c / decimal_round.c (no Lua), the ISO 4217 table in decimal_currency.c.
 *
 * Every mpq belongs to a userdata (its __gc clears it), and an operand given as a string or
 * an integral number is first made into such a userdata on the stack: a Lua error raised
 * anywhere after that leaks nothing. GMP temporaries live only between Lua calls that cannot
 * raise. Values are immutable: every operation returns a new decimal. */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bindings.h"
#include "decimal.h"

#define DECIMAL_MT "steward.decimal"
#define MAX_EXACT  9007199254740992.0 /* 2^53: integral Lua numbers up to this are exact */

struct dec {
    mpq_t q;
};

static struct dec *dec_push(lua_State *L)
{
    struct dec *d = lua_newuserdata(L, sizeof *d);
    if (!d) { /* never: LuaJIT raises on OOM; this tells the static analyzer so */
        luaL_error(L, "decimal: out of memory");
        abort();
    }
    mpq_init(d->q);
    luaL_getmetatable(L, DECIMAL_MT);
    lua_setmetatable(L, -2);
    return d;
}

/* Values this small hold no more GMP memory than their userdata's own size: no ballast. */
#define FREE_LIMBS 4

/* Refuses a result (the userdata d) past DECIMAL_MAX_BITS, releasing its memory at once. */
static void check_size(lua_State *L, struct dec *d, const char *fname)
{
    if (mpz_sizeinbase(mpq_numref(d->q), 2) <= DECIMAL_MAX_BITS &&
        mpz_sizeinbase(mpq_denref(d->q), 2) <= DECIMAL_MAX_BITS)
        return;
    mpq_clear(d->q);
    mpq_init(d->q);
    luaL_error(L, "%s: the result would have more than 39000 digits: out of range", fname);
}

/* Bounds and accounts the new value d, at the top of the stack. GMP allocates with malloc, out
 * of Lua's sight: a value holding more than a few limbs gets a ballast userdata of their size
 * (in its environment table), so Lua's allocator - and with it a policy's memory budget and the
 * collector's pace - counts the memory the value holds. */
static void settle(lua_State *L, struct dec *d, const char *fname)
{
    check_size(L, d, fname);
    size_t limbs = mpz_size(mpq_numref(d->q)) + mpz_size(mpq_denref(d->q));
    if (limbs <= FREE_LIMBS)
        return;
    lua_createtable(L, 1, 0);
    lua_newuserdata(L, limbs * sizeof(mp_limb_t));
    lua_rawseti(L, -2, 1);
    lua_setfenv(L, -2);
}

static struct dec *dec_test(lua_State *L, int idx)
{
    return luaL_testudata(L, idx, DECIMAL_MT);
}

/* A printable excerpt of a refused string for error messages. */
static void excerpt(char *out, size_t cap, const char *s, size_t len)
{
    size_t n = len < cap - 4 ? len : cap - 4;
    for (size_t i = 0; i < n; i++)
        out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    memcpy(out + n, len > n ? "..." : "", len > n ? 4 : 1);
}

/* The decimal at idx, converting a string or an integral number in place (the slot then
 * holds the new userdata). Anything else raises "<fname>: <arg>: <reason>". */
static struct dec *dec_check(lua_State *L, int idx, const char *fname, const char *arg)
{
    struct dec *d = dec_test(L, idx);
    if (d)
        return d;
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER: {
        double n = lua_tonumber(L, idx);
        if (isnan(n))
            luaL_error(L, "%s: %s: nan is not a number: pass a string", fname, arg);
        if (isinf(n))
            luaL_error(L, "%s: %s: %s is not a finite number: pass a string", fname, arg,
                       n > 0 ? "inf" : "-inf");
        /* lua_pushfstring knows no %g: the number is printed as Lua would print it. */
        char shown[32];
        snprintf(shown, sizeof shown, "%.14g", n);
        if (n != floor(n))
            luaL_error(L, "%s: %s: %s is a Lua number with a fraction: pass a string", fname, arg,
                       shown);
        if (fabs(n) > MAX_EXACT)
            luaL_error(L, "%s: %s: %s is a Lua number beyond 2^53: pass a string", fname, arg,
                       shown);
        d = dec_push(L);
        mpq_set_d(d->q, n);
        break;
    }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        const char *why = NULL;
        d = dec_push(L);
        if (decimal_parse(d->q, s, len, &why) != 0) {
            char shown[48];
            excerpt(shown, sizeof shown, s, len);
            luaL_error(L,
                       "%s: %s: \"%s\" %s (a decimal is digits with an optional sign, point "
                       "and exponent: \"-12.5\", \"1e-3\")",
                       fname, arg, shown, why);
        }
        settle(L, d, fname);
        break;
    }
    default: luaL_error(L, "%s: %s: decimal expected, got %s", fname, arg, luaL_typename(L, idx));
    }
    lua_replace(L, idx);
    return d;
}

/* ---- printing ---- */

/* Pushes q with exactly scale fraction digits (q * 10^scale must be an integer). The buffer
 * is a userdata, so a failing push frees it with the rest. */
static void push_fixed(lua_State *L, const mpq_t q, unsigned long scale)
{
    char *buf = lua_newuserdata(L, decimal_print_size(q, scale));
    size_t n = decimal_print(buf, q, scale);
    lua_pushlstring(L, buf, n);
    lua_remove(L, -2);
}

/* The shortest exact form; "n/d" for a value with no finite decimal form. */
static void push_repr(lua_State *L, const mpq_t q)
{
    long scale = decimal_exact_scale(q);
    if (scale >= 0) {
        push_fixed(L, q, (unsigned long)scale);
        return;
    }
    size_t n = mpz_sizeinbase(mpq_numref(q), 10) + mpz_sizeinbase(mpq_denref(q), 10) + 3;
    char *buf = lua_newuserdata(L, n);
    mpq_get_str(buf, 10, q);
    lua_pushstring(L, buf);
    lua_remove(L, -2);
}

static void check_finite(lua_State *L, const mpq_t q, const char *fname)
{
    if (decimal_exact_scale(q) >= 0)
        return;
    push_repr(L, q);
    luaL_error(L, "%s: %s has no finite decimal form: round it (d:round(scale, mode))", fname,
               lua_tostring(L, -1));
}

static unsigned long check_scale(lua_State *L, int idx, const char *fname, const char *arg)
{
    if (lua_type(L, idx) != LUA_TNUMBER)
        luaL_error(L, "%s: %s: integer 0..%d expected, got %s", fname, arg, DECIMAL_MAX_SCALE,
                   luaL_typename(L, idx));
    double n = lua_tonumber(L, idx);
    if (!(n >= 0 && n <= DECIMAL_MAX_SCALE && n == floor(n))) {
        char shown[32];
        snprintf(shown, sizeof shown, "%.14g", n);
        luaL_error(L, "%s: %s: integer 0..%d expected, got %s", fname, arg, DECIMAL_MAX_SCALE,
                   shown);
    }
    return (unsigned long)n;
}

static enum decimal_mode check_mode(lua_State *L, int idx, const char *fname, const char *arg)
{
    const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
    for (int m = 0; s && m < DECIMAL_MODES; m++)
        if (strcmp(s, decimal_mode_names[m]) == 0)
            return (enum decimal_mode)m;
    luaL_error(L,
               "%s: %s: one of half_even, half_up, half_down, up, down, ceiling, floor "
               "expected, got %s",
               fname, arg, s ? s : luaL_typename(L, idx));
    return DECIMAL_HALF_EVEN;
}

/* ---- module functions ---- */

static int l_decimal_new(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    if (dec_test(L, 1))
        return 1; /* immutable: the same value will do */
    dec_check(L, 1, "decimal.new", "argument #1");
    return 1;
}

/* decimal(v): the module table is argument 1 of __call. */
static int l_decimal_call(lua_State *L)
{
    lua_remove(L, 1);
    return l_decimal_new(L);
}

static int l_decimal_is(lua_State *L)
{
    lua_pushboolean(L, dec_test(L, 1) != NULL);
    return 1;
}

static int l_decimal_string(lua_State *L)
{
    luaL_checkany(L, 1);
    struct dec *d = dec_check(L, 1, "decimal.string", "argument #1");
    check_finite(L, d->q, "decimal.string");
    push_repr(L, d->q);
    return 1;
}

static int extreme(lua_State *L, const char *fname, int want)
{
    int n = lua_gettop(L);
    char arg[32];
    if (n == 0)
        luaL_error(L, "%s: argument #1: decimal expected, got no value", fname);
    int best = 1;
    for (int i = 1; i <= n; i++) {
        snprintf(arg, sizeof arg, "argument #%d", i);
        struct dec *d = dec_check(L, i, fname, arg);
        if (i > 1 && mpq_cmp(d->q, ((struct dec *)lua_touserdata(L, best))->q) * want > 0)
            best = i;
    }
    lua_pushvalue(L, best);
    return 1;
}

static int l_decimal_min(lua_State *L)
{
    return extreme(L, "decimal.min", -1);
}
static int l_decimal_max(lua_State *L)
{
    return extreme(L, "decimal.max", 1);
}

static int l_decimal_sum(lua_State *L)
{
    if (!lua_istable(L, 1))
        luaL_error(L, "decimal.sum: argument #1: list of decimals expected, got %s",
                   luaL_typename(L, 1));
    lua_settop(L, 1);
    struct dec *total = dec_push(L); /* 2 */
    int n = (int)lua_objlen(L, 1);
    char arg[48];
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        snprintf(arg, sizeof arg, "argument #1: element [%d]", i);
        struct dec *d = dec_check(L, 3, "decimal.sum", arg);
        mpq_add(total->q, total->q, d->q);
        lua_pop(L, 1);
        check_size(L, total, "decimal.sum");
    }
    settle(L, total, "decimal.sum");
    return 1;
}

static int l_decimal_scale(lua_State *L)
{
    size_t len;
    if (lua_type(L, 1) != LUA_TSTRING)
        luaL_error(L, "decimal.scale: argument #1 (currency): string expected, got %s",
                   luaL_typename(L, 1));
    const char *code = lua_tolstring(L, 1, &len);
    int scale = decimal_currency_scale(code, len);
    if (scale >= 0) {
        lua_pushinteger(L, scale);
        return 1;
    }
    lua_pushnil(L);
    if (scale == -2)
        lua_pushfstring(L, "currency %s has no minor unit", code);
    else
        lua_pushliteral(L, "unknown currency");
    return 2;
}

/* {code = minor unit} of every active ISO 4217 code that has a minor unit. */
static int l_decimal_currencies(lua_State *L)
{
    const char *code;
    int scale;
    lua_createtable(L, 0, 180);
    for (size_t i = 0; (scale = decimal_currency_at(i, &code)) != -3; i++) {
        if (scale < 0)
            continue;
        lua_pushinteger(L, scale);
        lua_setfield(L, -2, code);
    }
    return 1;
}

/* ---- methods ---- */

static struct dec *self(lua_State *L, const char *fname)
{
    struct dec *d = dec_test(L, 1);
    if (d)
        return d;
    luaL_error(L, "%s: call it as a method (d:%s(...)) on a decimal, got %s", fname,
               strchr(fname, '.') + 1, luaL_typename(L, 1));
    abort(); /* not reached: luaL_error does not return (LuaJIT does not declare it so) */
}

static int l_decimal_round(lua_State *L)
{
    struct dec *d = self(L, "decimal.round");
    unsigned long scale = check_scale(L, 2, "decimal.round", "argument #1 (scale)");
    enum decimal_mode mode = check_mode(L, 3, "decimal.round", "argument #2 (mode)");
    struct dec *r = dec_push(L);
    decimal_round(r->q, d->q, scale, mode);
    settle(L, r, "decimal.round");
    return 1;
}

static int l_decimal_money(lua_State *L)
{
    struct dec *d = self(L, "decimal.money");
    size_t len;
    if (lua_type(L, 2) != LUA_TSTRING)
        luaL_error(L, "decimal.money: argument #1 (currency): string expected, got %s",
                   luaL_typename(L, 2));
    const char *code = lua_tolstring(L, 2, &len);
    int scale = decimal_currency_scale(code, len);
    if (scale == -1)
        luaL_error(L, "decimal.money: argument #1 (currency): unknown currency %s", code);
    if (scale == -2)
        luaL_error(L, "decimal.money: argument #1 (currency): %s has no minor unit", code);
    enum decimal_mode mode = lua_isnoneornil(L, 3)
                                 ? DECIMAL_HALF_UP
                                 : check_mode(L, 3, "decimal.money", "argument #2 (mode)");
    struct dec *r = dec_push(L);
    decimal_round(r->q, d->q, (unsigned long)scale, mode);
    settle(L, r, "decimal.money");
    return 1;
}

static int to_integer(lua_State *L, const char *fname, enum decimal_mode mode)
{
    struct dec *d = self(L, fname);
    struct dec *r = dec_push(L);
    decimal_round(r->q, d->q, 0, mode);
    settle(L, r, fname);
    return 1;
}

static int l_decimal_floor(lua_State *L)
{
    return to_integer(L, "decimal.floor", DECIMAL_FLOOR);
}
static int l_decimal_ceil(lua_State *L)
{
    return to_integer(L, "decimal.ceil", DECIMAL_CEILING);
}

static int l_decimal_abs(lua_State *L)
{
    struct dec *d = self(L, "decimal.abs");
    struct dec *r = dec_push(L);
    mpq_abs(r->q, d->q);
    settle(L, r, "decimal.abs");
    return 1;
}

static int l_decimal_sign(lua_State *L)
{
    lua_pushinteger(L, mpq_sgn(self(L, "decimal.sign")->q));
    return 1;
}

static int l_decimal_is_zero(lua_State *L)
{
    lua_pushboolean(L, mpq_sgn(self(L, "decimal.is_zero")->q) == 0);
    return 1;
}

static int l_decimal_is_integer(lua_State *L)
{
    lua_pushboolean(L, mpz_cmp_ui(mpq_denref(self(L, "decimal.is_integer")->q), 1) == 0);
    return 1;
}

static int l_decimal_tostring(lua_State *L)
{
    push_repr(L, self(L, "decimal.tostring")->q);
    return 1;
}

static int l_decimal_format(lua_State *L)
{
    struct dec *d = self(L, "decimal.format");
    unsigned long scale = check_scale(L, 2, "decimal.format", "argument #1 (scale)");
    check_finite(L, d->q, "decimal.format");
    long need = decimal_exact_scale(d->q);
    if ((unsigned long)need > scale) {
        push_repr(L, d->q);
        luaL_error(L,
                   "decimal.format: %s has %d fraction digits, more than %d: round it "
                   "(d:round(scale, mode))",
                   lua_tostring(L, -1), (int)need, (int)scale);
    }
    push_fixed(L, d->q, scale);
    return 1;
}

/* Lossy: for display and metrics, never for money. */
static int l_decimal_tonumber(lua_State *L)
{
    lua_pushnumber(L, mpq_get_d(self(L, "decimal.tonumber")->q));
    return 1;
}

/* ---- metamethods ---- */

enum op { OP_ADD, OP_SUB, OP_MUL, OP_DIV };

static int arith(lua_State *L, enum op op, const char *fname)
{
    struct dec *a = dec_check(L, 1, fname, "argument #1");
    struct dec *b = dec_check(L, 2, fname, "argument #2");
    if (op == OP_DIV && mpq_sgn(b->q) == 0)
        luaL_error(L, "%s: division by zero", fname);
    struct dec *r = dec_push(L);
    switch (op) {
    case OP_ADD: mpq_add(r->q, a->q, b->q); break;
    case OP_SUB: mpq_sub(r->q, a->q, b->q); break;
    case OP_MUL: mpq_mul(r->q, a->q, b->q); break;
    case OP_DIV: mpq_div(r->q, a->q, b->q); break;
    }
    settle(L, r, fname);
    return 1;
}

static int l_decimal_add(lua_State *L)
{
    return arith(L, OP_ADD, "decimal.add");
}
static int l_decimal_sub(lua_State *L)
{
    return arith(L, OP_SUB, "decimal.sub");
}
static int l_decimal_mul(lua_State *L)
{
    return arith(L, OP_MUL, "decimal.mul");
}
static int l_decimal_div(lua_State *L)
{
    return arith(L, OP_DIV, "decimal.div");
}

static int l_decimal_unm(lua_State *L)
{
    struct dec *d = dec_check(L, 1, "decimal.unm", "argument #1");
    struct dec *r = dec_push(L);
    mpq_neg(r->q, d->q);
    settle(L, r, "decimal.unm");
    return 1;
}

static int compare(lua_State *L, const char *fname)
{
    struct dec *a = dec_check(L, 1, fname, "argument #1");
    struct dec *b = dec_check(L, 2, fname, "argument #2");
    return mpq_cmp(a->q, b->q);
}

static int l_decimal_eq(lua_State *L)
{
    lua_pushboolean(L, compare(L, "decimal.eq") == 0);
    return 1;
}

static int l_decimal_lt(lua_State *L)
{
    lua_pushboolean(L, compare(L, "decimal.lt") < 0);
    return 1;
}

static int l_decimal_le(lua_State *L)
{
    lua_pushboolean(L, compare(L, "decimal.le") <= 0);
    return 1;
}

static int l_decimal_concat(lua_State *L)
{
    for (int i = 1; i <= 2; i++) {
        struct dec *d = dec_test(L, i);
        if (d) {
            push_repr(L, d->q);
            lua_replace(L, i);
        } else if (lua_type(L, i) != LUA_TSTRING && lua_type(L, i) != LUA_TNUMBER) {
            luaL_error(L, "decimal.concat: argument #%d: string expected, got %s", i,
                       luaL_typename(L, i));
        }
    }
    lua_concat(L, 2);
    return 1;
}

static int l_decimal_gc(lua_State *L)
{
    struct dec *d = dec_test(L, 1);
    if (d)
        mpq_clear(d->q);
    return 0;
}

static const luaL_Reg methods[] = {
    {"round", l_decimal_round},       {"money", l_decimal_money},
    {"floor", l_decimal_floor},       {"ceil", l_decimal_ceil},
    {"abs", l_decimal_abs},           {"sign", l_decimal_sign},
    {"is_zero", l_decimal_is_zero},   {"is_integer", l_decimal_is_integer},
    {"tostring", l_decimal_tostring}, {"format", l_decimal_format},
    {"tonumber", l_decimal_tonumber}, {NULL, NULL}};

static const luaL_Reg metamethods[] = {
    {"__add", l_decimal_add}, {"__sub", l_decimal_sub},       {"__mul", l_decimal_mul},
    {"__div", l_decimal_div}, {"__unm", l_decimal_unm},       {"__eq", l_decimal_eq},
    {"__lt", l_decimal_lt},   {"__le", l_decimal_le},         {"__tostring", l_decimal_tostring},
    {"__gc", l_decimal_gc},   {"__concat", l_decimal_concat}, {NULL, NULL}};

static const luaL_Reg functions[] = {{"new", l_decimal_new},
                                     {"is", l_decimal_is},
                                     {"string", l_decimal_string},
                                     {"min", l_decimal_min},
                                     {"max", l_decimal_max},
                                     {"sum", l_decimal_sum},
                                     {"scale", l_decimal_scale},
                                     {"currencies", l_decimal_currencies},
                                     {NULL, NULL}};

int luaopen_steward_decimal(lua_State *L)
{
    luaL_newmetatable(L, DECIMAL_MT);
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    /* getmetatable(d) answers the type's name: policies cannot swap the methods. */
    lua_pushliteral(L, DECIMAL_MT);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);

    luaL_newlib(L, functions);
    dec_push(L);
    lua_setfield(L, -2, "zero");
    lua_createtable(L, DECIMAL_MODES, 0);
    for (int m = 0; m < DECIMAL_MODES; m++) {
        lua_pushstring(L, decimal_mode_names[m]);
        lua_rawseti(L, -2, m + 1);
    }
    lua_setfield(L, -2, "modes");
    lua_createtable(L, 0, 1); /* decimal(v) is decimal.new(v) */
    lua_pushcfunction(L, l_decimal_call);
    lua_setfield(L, -2, "__call");
    lua_setmetatable(L, -2);
    return 1;
}
