/* steward.crypto encodings: hex, base64 and base64url (RFC 4648). Decoders are strict and
 * say where the input went wrong: EVP_DecodeBlock on its own takes '=' anywhere as a zero,
 * skips surrounding whitespace and returns the padding as extra zero bytes, so the input is
 * checked here first and the padding subtracted afterwards. */
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "crypto_priv.h"

/* EVP_EncodeBlock/EVP_DecodeBlock count in int. */
#define B64_MAX_IN ((size_t)INT_MAX / 4 * 3)

static int decode_error(lua_State *L, const char *fname, const char *what, size_t pos)
{
    lua_pushnil(L);
    lua_pushfstring(L, "crypto.%s: %s at position %d", fname, what, (int)pos);
    return 2;
}

static int decode_error_msg(lua_State *L, const char *fname, const char *what)
{
    lua_pushnil(L);
    lua_pushfstring(L, "crypto.%s: %s", fname, what);
    return 2;
}

/* ---- hex ---- */

/* Hand-written because OpenSSL's OPENSSL_buf2hexstr writes upper case, and the lower case
 * form is the one digests and webhook signatures are compared against. */
static int l_crypto_hex(lua_State *L)
{
    static const char digits[] = "0123456789abcdef";
    size_t n;
    const unsigned char *s = (const unsigned char *)crypto_check_bytes(L, 1, "hex", "data", &n);
    unsigned char *out = crypto_scratch(L, 2 * n);
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = (unsigned char)digits[s[i] >> 4];
        out[2 * i + 1] = (unsigned char)digits[s[i] & 15];
    }
    lua_pushlstring(L, (const char *)out, 2 * n);
    return 1;
}

static int l_crypto_unhex(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)crypto_check_bytes(L, 1, "unhex", "text", &n);
    for (size_t i = 0; i < n; i++)
        if (OPENSSL_hexchar2int(s[i]) < 0)
            return decode_error(L, "unhex", "invalid hex digit", i + 1);
    if (n % 2)
        return decode_error_msg(L, "unhex", "odd number of hex digits");
    unsigned char *out = crypto_scratch(L, n / 2);
    for (size_t i = 0; i < n / 2; i++)
        out[i] =
            (unsigned char)(OPENSSL_hexchar2int(s[2 * i]) << 4 | OPENSSL_hexchar2int(s[2 * i + 1]));
    lua_pushlstring(L, (const char *)out, n / 2);
    return 1;
}

/* ---- base64 ---- */

/* The 6-bit value of an alphabet character, or -1. Used to validate, not to decode. */
static int b64_value(unsigned char c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

/* Checks s[0..n): alphabet characters, then padding. Standard base64 must be padded to a
 * multiple of 4; base64url may omit the padding but, if it has some, it must be right. The
 * unused bits of the last character must be zero (RFC 4648 §3.5), so every byte string has
 * exactly one encoding. On success sets *ndata (alphabet characters) and returns 0; on error
 * pushes nil, err and returns 2. */
static int b64_check(lua_State *L, const char *fname, const unsigned char *s, size_t n, int url,
                     size_t *ndata)
{
    *ndata = 0;
    if (n > (size_t)INT_MAX - 4)
        return luaL_error(L, "crypto.%s: text: too long", fname);
    size_t i = 0;
    while (i < n && b64_value(s[i], url) >= 0)
        i++;
    size_t nd = i;
    while (i < n && s[i] == '=')
        i++;
    size_t npad = i - nd;
    if (i < n)
        return decode_error(
            L, fname,
            npad && b64_value(s[i], url) >= 0 ? "data after padding" : "invalid character", i + 1);
    size_t rem = nd % 4;
    if (rem == 1)
        return decode_error_msg(L, fname, "truncated input (a lone character in the last group)");
    if (npad ? (npad > 2 || (nd + npad) % 4 != 0) : (!url && rem != 0))
        return decode_error(L, fname, npad ? "wrong padding" : "missing padding", nd + 1);
    if (rem) {
        int mask = rem == 2 ? 0x0f : 0x03; /* bits past the last whole byte */
        if (b64_value(s[nd - 1], url) & mask)
            return decode_error(L, fname, "non-zero padding bits", nd);
    }
    *ndata = nd;
    return 0;
}

/* The decoded length of nd alphabet characters. */
static size_t b64_decoded_len(size_t nd)
{
    size_t rem = nd % 4;
    return nd / 4 * 3 + (rem ? rem - 1 : 0);
}

static int l_crypto_base64(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)crypto_check_bytes(L, 1, "base64", "data", &n);
    if (n > B64_MAX_IN)
        return luaL_error(L, "crypto.base64: data: too long");
    unsigned char *out = crypto_scratch(L, (n + 2) / 3 * 4 + 1); /* + the NUL it writes */
    int len = EVP_EncodeBlock(out, s, (int)n);
    lua_pushlstring(L, (const char *)out, (size_t)len);
    return 1;
}

static int l_crypto_base64url(lua_State *L)
{
    size_t n;
    const unsigned char *s =
        (const unsigned char *)crypto_check_bytes(L, 1, "base64url", "data", &n);
    if (n > B64_MAX_IN)
        return luaL_error(L, "crypto.base64url: data: too long");
    unsigned char *out = crypto_scratch(L, (n + 2) / 3 * 4 + 1);
    size_t len = (size_t)EVP_EncodeBlock(out, s, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    for (size_t i = 0; i < len; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    lua_pushlstring(L, (const char *)out, len);
    return 1;
}

static int l_crypto_unbase64(lua_State *L)
{
    size_t n, nd;
    const unsigned char *s =
        (const unsigned char *)crypto_check_bytes(L, 1, "unbase64", "text", &n);
    if (b64_check(L, "unbase64", s, n, 0, &nd))
        return 2;
    unsigned char *out = crypto_scratch(L, n / 4 * 3);
    if (n && EVP_DecodeBlock(out, s, (int)n) < 0)
        return decode_error_msg(L, "unbase64", "invalid input");
    lua_pushlstring(L, (const char *)out, b64_decoded_len(nd));
    return 1;
}

static int l_crypto_unbase64url(lua_State *L)
{
    size_t n, nd;
    const unsigned char *s =
        (const unsigned char *)crypto_check_bytes(L, 1, "unbase64url", "text", &n);
    if (b64_check(L, "unbase64url", s, n, 1, &nd))
        return 2;
    /* Map to the standard alphabet, padded, which is what EVP_DecodeBlock reads. */
    size_t padded = (nd + 3) / 4 * 4;
    unsigned char *std = crypto_scratch(L, padded);
    for (size_t i = 0; i < padded; i++) {
        unsigned char c = i < nd ? s[i] : '=';
        std[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    unsigned char *out = crypto_scratch(L, padded / 4 * 3);
    if (padded && EVP_DecodeBlock(out, std, (int)padded) < 0)
        return decode_error_msg(L, "unbase64url", "invalid input");
    lua_pushlstring(L, (const char *)out, b64_decoded_len(nd));
    return 1;
}

const luaL_Reg crypto_codec_funcs[] = {{"hex", l_crypto_hex},
                                       {"unhex", l_crypto_unhex},
                                       {"base64", l_crypto_base64},
                                       {"unbase64", l_crypto_unbase64},
                                       {"base64url", l_crypto_base64url},
                                       {"unbase64url", l_crypto_unbase64url},
                                       {NULL, NULL}};
