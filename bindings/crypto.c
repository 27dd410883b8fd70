/* steward.crypto: digests, HMAC, HKDF, random bytes, constant-time comparison and Ed25519 on
 * OpenSSL 3. Encodings live in crypto_codec.c, AES-256-GCM in crypto_aead.c, Ed25519 keys as
 * PEM in crypto_pem.c. Everything is synchronous: each call is bounded and quick enough to run
 * on the loop thread. */
#include <limits.h>
#include <math.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "bindings.h"
#include "crypto_priv.h"

#define HASHER_MT   "steward.crypto.hasher"
#define RANDOM_MAX  (1024 * 1024)
#define ED25519_KEY 32
#define ED25519_SIG 64

/* ---- shared helpers (crypto_priv.h) ---- */

const char *crypto_check_bytes(lua_State *L, int idx, const char *fname, const char *arg,
                               size_t *len)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "crypto.%s: %s: string expected, got %s", fname, arg, luaL_typename(L, idx));
    return lua_tolstring(L, idx, len);
}

const char *crypto_opt_bytes(lua_State *L, int idx, const char *fname, const char *arg, size_t *len)
{
    if (lua_isnoneornil(L, idx)) {
        *len = 0;
        return "";
    }
    return crypto_check_bytes(L, idx, fname, arg, len);
}

unsigned char *crypto_scratch(lua_State *L, size_t n)
{
    return lua_newuserdata(L, n ? n : 1);
}

int crypto_fail(lua_State *L, const char *fname)
{
    char buf[256];
    const char *reason = "OpenSSL failed without giving a reason";
    unsigned long e = ERR_peek_error(); /* the oldest entry is the root cause */
    if (e) {
        ERR_error_string_n(e, buf, sizeof buf);
        reason = buf;
    }
    ERR_clear_error();
    lua_pushnil(L);
    lua_pushfstring(L, "crypto.%s: %s", fname, reason);
    return 2;
}

/* An integer argument in [lo, hi]; Lua numbers are doubles, so a fraction or NaN is misuse. */
static size_t check_count(lua_State *L, int idx, const char *fname, const char *arg, double lo,
                          double hi)
{
    double v = lua_type(L, idx) == LUA_TNUMBER ? lua_tonumber(L, idx) : NAN;
    if (!(v >= lo && v <= hi) || v != floor(v))
        luaL_error(L, "crypto.%s: %s: integer from %d to %d expected", fname, arg, (int)lo,
                   (int)hi);
    return (size_t)v;
}

/* ---- digests ---- */

struct digest {
    const char *name; /* as Lua code names it */
    const char *ossl; /* as OpenSSL's providers name it (for EVP_KDF parameters) */
    const EVP_MD *(*md)(void);
};

/* sha1 is only here for the webhook signatures that still use it (GitHub's X-Hub-Signature). */
static const struct digest digests[] = {{"sha256", "SHA256", EVP_sha256},
                                        {"sha384", "SHA384", EVP_sha384},
                                        {"sha512", "SHA512", EVP_sha512},
                                        {"sha1", "SHA1", EVP_sha1},
                                        {NULL, NULL, NULL}};

static const struct digest *check_digest(lua_State *L, int idx, const char *fname)
{
    const char *name = crypto_check_bytes(L, idx, fname, "alg", NULL);
    for (const struct digest *d = digests; d->name; d++)
        if (strcmp(d->name, name) == 0)
            return d;
    luaL_error(L, "crypto.%s: alg: unknown digest '%s' (sha256, sha384, sha512 or sha1)", fname,
               name);
    return NULL;
}

static int push_digest(lua_State *L, const EVP_MD *md, int idx, const char *fname)
{
    size_t n;
    const char *data = crypto_check_bytes(L, idx, fname, "data", &n);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int outlen = 0;
    if (EVP_Digest(data, n, out, &outlen, md, NULL) != 1)
        return crypto_fail(L, fname);
    lua_pushlstring(L, (const char *)out, outlen);
    return 1;
}

static int l_crypto_sha256(lua_State *L)
{
    return push_digest(L, EVP_sha256(), 1, "sha256");
}
static int l_crypto_sha512(lua_State *L)
{
    return push_digest(L, EVP_sha512(), 1, "sha512");
}

static int l_crypto_digest(lua_State *L)
{
    const struct digest *d = check_digest(L, 1, "digest");
    return push_digest(L, d->md(), 2, "digest");
}

/* ---- incremental hasher ---- */

struct hasher {
    EVP_MD_CTX *ctx; /* NULL once final() ran (or when creating it failed) */
    const char *alg;
};

static struct hasher *check_hasher(lua_State *L, const char *fname)
{
    struct hasher *h = luaL_checkudata(L, 1, HASHER_MT);
    if (!h->ctx)
        luaL_error(L, "crypto.%s: the hasher is finalized", fname);
    return h;
}

static int l_crypto_hasher(lua_State *L)
{
    const struct digest *d = check_digest(L, 1, "hasher");
    struct hasher *h = lua_newuserdata(L, sizeof *h);
    h->ctx = NULL;
    h->alg = d->name;
    luaL_getmetatable(L, HASHER_MT);
    lua_setmetatable(L, -2);
    /* The metatable is set first so __gc owns the context from here on. */
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, d->md(), NULL) != 1)
        return crypto_fail(L, "hasher");
    return 1;
}

static int l_crypto_hasher_update(lua_State *L)
{
    struct hasher *h = check_hasher(L, "hasher:update");
    size_t n;
    const char *data = crypto_check_bytes(L, 2, "hasher:update", "data", &n);
    if (EVP_DigestUpdate(h->ctx, data, n) != 1)
        return crypto_fail(L, "hasher:update");
    lua_settop(L, 1); /* return the hasher, so calls chain */
    return 1;
}

static int l_crypto_hasher_final(lua_State *L)
{
    struct hasher *h = check_hasher(L, "hasher:final");
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int outlen = 0;
    int ok = EVP_DigestFinal_ex(h->ctx, out, &outlen) == 1;
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
    if (!ok)
        return crypto_fail(L, "hasher:final");
    lua_pushlstring(L, (const char *)out, outlen);
    return 1;
}

static int l_crypto_hasher_gc(lua_State *L)
{
    struct hasher *h = luaL_checkudata(L, 1, HASHER_MT);
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
    return 0;
}

static int l_crypto_hasher_tostring(lua_State *L)
{
    struct hasher *h = luaL_checkudata(L, 1, HASHER_MT);
    lua_pushfstring(L, "crypto.hasher(%s%s)", h->alg, h->ctx ? "" : ", finalized");
    return 1;
}

/* ---- HMAC, HKDF ---- */

static int l_crypto_hmac(lua_State *L)
{
    const struct digest *d = check_digest(L, 1, "hmac");
    size_t klen, n;
    const char *key = crypto_check_bytes(L, 2, "hmac", "key", &klen);
    const char *data = crypto_check_bytes(L, 3, "hmac", "data", &n);
    if (klen > INT_MAX)
        return luaL_error(L, "crypto.hmac: key: too long");
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int outlen = 0;
    if (!HMAC(d->md(), key, (int)klen, (const unsigned char *)data, n, out, &outlen))
        return crypto_fail(L, "hmac");
    lua_pushlstring(L, (const char *)out, outlen);
    return 1;
}

static int l_crypto_hkdf(lua_State *L)
{
    const struct digest *d = check_digest(L, 1, "hkdf");
    size_t ikmlen, saltlen, infolen;
    const char *ikm = crypto_check_bytes(L, 2, "hkdf", "ikm", &ikmlen);
    const char *salt = crypto_opt_bytes(L, 3, "hkdf", "salt", &saltlen);
    const char *info = crypto_opt_bytes(L, 4, "hkdf", "info", &infolen);
    /* RFC 5869 §2.3: at most 255 blocks of output. */
    size_t n = check_count(L, 5, "hkdf", "length", 1, 255.0 * EVP_MD_get_size(d->md()));
    unsigned char *out = crypto_scratch(L, n);

    OSSL_PARAM params[5], *p = params;
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)d->ossl, 0);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikmlen);
    if (saltlen) /* no salt = HashLen zero bytes (RFC 5869 §2.2), which OpenSSL applies */
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltlen);
    if (infolen)
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, infolen);
    *p = OSSL_PARAM_construct_end();

    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    int ok = kctx && EVP_KDF_derive(kctx, out, n, params) == 1;
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    if (!ok)
        return crypto_fail(L, "hkdf");
    lua_pushlstring(L, (const char *)out, n);
    return 1;
}

/* ---- random, equals ---- */

static int l_crypto_random(lua_State *L)
{
    size_t n = check_count(L, 1, "random", "n", 0, RANDOM_MAX);
    unsigned char *buf = crypto_scratch(L, n);
    if (n && RAND_bytes(buf, (int)n) != 1)
        return crypto_fail(L, "random");
    lua_pushlstring(L, (const char *)buf, n);
    return 1;
}

/* uuidv7([ms]): RFC 9562 version 7 — 48-bit Unix milliseconds, then 74 random bits — as
 * the canonical 36-character string. Ids sort by creation time. */
static int l_crypto_uuidv7(lua_State *L)
{
    uint64_t ms;
    if (lua_isnoneornil(L, 1)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    } else {
        double ms_d = luaL_checknumber(L, 1);
        if (!(ms_d >= 0 && ms_d < 281474976710656.0))
            return luaL_argerror(L, 1, "milliseconds since the epoch expected (0 to 2^48)");
        ms = (uint64_t)ms_d;
    }
    unsigned char b[16];
    /* Ids are minted per ingested event: draw the DRBG's output in blocks, not 10 bytes at
     * a time (one RAND_bytes call costs more than the rest of the id). */
    static unsigned char pool[4000];
    static size_t pool_left;
    if (pool_left < 10) {
        if (RAND_bytes(pool, (int)sizeof pool) != 1)
            return crypto_fail(L, "uuidv7");
        pool_left = sizeof pool;
    }
    memcpy(b + 6, pool + sizeof pool - pool_left, 10);
    OPENSSL_cleanse(pool + sizeof pool - pool_left, 10);
    pool_left -= 10;
    for (int i = 5; i >= 0; i--) {
        b[i] = (unsigned char)(ms & 0xff);
        ms >>= 8;
    }
    b[6] = (unsigned char)(0x70 | (b[6] & 0x0f));
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    static const char hex[] = "0123456789abcdef";
    char out[36];
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    lua_pushlstring(L, out, sizeof out);
    return 1;
}

static int l_crypto_equals(lua_State *L)
{
    size_t alen, blen;
    const char *a = crypto_check_bytes(L, 1, "equals", "a", &alen);
    const char *b = crypto_check_bytes(L, 2, "equals", "b", &blen);
    /* Lengths are not secret (a MAC's length is public); the contents are compared in
     * time independent of where they differ. */
    lua_pushboolean(L, alen == blen && CRYPTO_memcmp(a, b, alen) == 0);
    return 1;
}

/* ---- Ed25519 ---- */

static const unsigned char *check_key32(lua_State *L, int idx, const char *fname, const char *arg)
{
    size_t n;
    const char *k = crypto_check_bytes(L, idx, fname, arg, &n);
    if (n != ED25519_KEY)
        luaL_error(L, "crypto.%s: %s: %d bytes expected, got %d", fname, arg, ED25519_KEY,
                   (int)(n > INT_MAX ? INT_MAX : n));
    return (const unsigned char *)k;
}

static int l_crypto_ed25519_keypair(lua_State *L)
{
    unsigned char seed[ED25519_KEY], pub[ED25519_KEY];
    size_t publen = sizeof pub;
    if (lua_isnoneornil(L, 1)) {
        if (RAND_bytes(seed, sizeof seed) != 1)
            return crypto_fail(L, "ed25519_keypair");
    } else {
        memcpy(seed, check_key32(L, 1, "ed25519_keypair", "seed"), sizeof seed);
    }
    EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof seed);
    int ok = pk && EVP_PKEY_get_raw_public_key(pk, pub, &publen) == 1;
    EVP_PKEY_free(pk);
    if (!ok) {
        OPENSSL_cleanse(seed, sizeof seed);
        return crypto_fail(L, "ed25519_keypair");
    }
    lua_pushlstring(L, (const char *)seed, sizeof seed);
    OPENSSL_cleanse(seed, sizeof seed);
    lua_pushlstring(L, (const char *)pub, publen);
    return 2;
}

static int l_crypto_ed25519_sign(lua_State *L)
{
    const unsigned char *secret = check_key32(L, 1, "ed25519_sign", "secret");
    size_t n;
    const char *msg = crypto_check_bytes(L, 2, "ed25519_sign", "msg", &n);
    unsigned char sig[ED25519_SIG];
    size_t siglen = sizeof sig;
    EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, secret, ED25519_KEY);
    EVP_MD_CTX *mctx = pk ? EVP_MD_CTX_new() : NULL;
    /* Ed25519 is "pure": no digest is named, and the message goes through in one call. */
    int ok = mctx && EVP_DigestSignInit(mctx, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestSign(mctx, sig, &siglen, (const unsigned char *)msg, n) == 1;
    EVP_MD_CTX_free(mctx);
    EVP_PKEY_free(pk);
    if (!ok)
        return crypto_fail(L, "ed25519_sign");
    lua_pushlstring(L, (const char *)sig, siglen);
    return 1;
}

static int l_crypto_ed25519_verify(lua_State *L)
{
    const unsigned char *public = check_key32(L, 1, "ed25519_verify", "public");
    size_t n, siglen;
    const char *msg = crypto_check_bytes(L, 2, "ed25519_verify", "msg", &n);
    const char *sig = crypto_check_bytes(L, 3, "ed25519_verify", "sig", &siglen);
    if (siglen != ED25519_SIG) { /* a signature from outside may be any length: not valid */
        lua_pushboolean(L, 0);
        return 1;
    }
    EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, public, ED25519_KEY);
    EVP_MD_CTX *mctx = pk ? EVP_MD_CTX_new() : NULL;
    int ok = mctx && EVP_DigestVerifyInit(mctx, NULL, NULL, NULL, pk) == 1;
    int valid = ok && EVP_DigestVerify(mctx, (const unsigned char *)sig, siglen,
                                       (const unsigned char *)msg, n) == 1;
    EVP_MD_CTX_free(mctx);
    EVP_PKEY_free(pk);
    if (!ok)
        return crypto_fail(L, "ed25519_verify");
    ERR_clear_error(); /* a bad signature leaves a reason on the queue; it is an answer here */
    lua_pushboolean(L, valid);
    return 1;
}

int luaopen_steward_crypto(lua_State *L)
{
    static const luaL_Reg hasher_methods[] = {
        {"update", l_crypto_hasher_update}, {"final", l_crypto_hasher_final}, {NULL, NULL}};
    static const luaL_Reg funcs[] = {{"sha256", l_crypto_sha256},
                                     {"sha512", l_crypto_sha512},
                                     {"digest", l_crypto_digest},
                                     {"hasher", l_crypto_hasher},
                                     {"hmac", l_crypto_hmac},
                                     {"hkdf", l_crypto_hkdf},
                                     {"random", l_crypto_random},
                                     {"uuidv7", l_crypto_uuidv7},
                                     {"equals", l_crypto_equals},
                                     {"ed25519_keypair", l_crypto_ed25519_keypair},
                                     {"ed25519_sign", l_crypto_ed25519_sign},
                                     {"ed25519_verify", l_crypto_ed25519_verify},
                                     {NULL, NULL}};
    if (luaL_newmetatable(L, HASHER_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, hasher_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_crypto_hasher_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_crypto_hasher_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    luaL_register(L, NULL, crypto_codec_funcs);
    luaL_register(L, NULL, crypto_aead_funcs);
    luaL_register(L, NULL, crypto_pem_funcs);
    return 1;
}
