/* steward.crypto AES-256-GCM: seal/open (a fresh random nonce, framed as
 * nonce || ciphertext || tag) and the explicit-nonce form the test vectors and other
 * framings need. Authentication failures are answers (nil, "authentication failed"), not
 * errors: tampered input comes from outside the program. */
#include <limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

#include "crypto_priv.h"

#define GCM_KEY       32
#define GCM_NONCE     12 /* the size GCM is designed for; seal always uses it */
#define GCM_NONCE_MAX 128
#define GCM_TAG       16
#define AUTH_FAILED   "authentication failed"

static const unsigned char *check_key(lua_State *L, int idx, const char *fname)
{
    size_t n;
    const char *k = crypto_check_bytes(L, idx, fname, "key", &n);
    if (n != GCM_KEY)
        luaL_error(L, "crypto.%s: key: %d bytes expected, got %d", fname, GCM_KEY,
                   (int)(n > INT_MAX ? INT_MAX : n));
    return (const unsigned char *)k;
}

static int auth_failed(lua_State *L)
{
    ERR_clear_error();
    lua_pushnil(L);
    lua_pushliteral(L, AUTH_FAILED);
    return 2;
}

/* EVP_CipherUpdate counts in int; larger inputs go through in pieces. out NULL = AAD. */
static int update_all(EVP_CIPHER_CTX *ctx, unsigned char *out, const unsigned char *in, size_t n)
{
    while (n > 0) {
        int chunk = n > (1u << 30) ? 1 << 30 : (int)n, len = 0;
        if (EVP_CipherUpdate(ctx, out, &len, in, chunk) != 1)
            return 0;
        in += chunk;
        n -= (size_t)chunk;
        if (out)
            out += len;
    }
    return 1;
}

struct gcm_args {
    const unsigned char *key, *nonce, *aad, *in;
    size_t nonce_len, aad_len, n;
    unsigned char *out;         /* n bytes */
    unsigned char tag[GCM_TAG]; /* written when encrypting, checked when decrypting */
};

/* Returns 1 on success, 0 when decryption fails authentication, -1 when OpenSSL fails. No
 * Lua call happens between creating and freeing the context, so nothing can skip the free. */
static int gcm_run(struct gcm_args *a, int enc)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int rc = -1, len = 0;
    if (!ctx)
        return -1;
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, (int)a->nonce_len, NULL) != 1 ||
        EVP_CipherInit_ex(ctx, NULL, NULL, a->key, a->nonce, enc) != 1 ||
        !update_all(ctx, NULL, a->aad, a->aad_len) || !update_all(ctx, a->out, a->in, a->n))
        goto done;
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, GCM_TAG, a->tag) != 1)
        goto done;
    /* GCM's final step writes no bytes; it computes (or checks) the tag. */
    if (EVP_CipherFinal_ex(ctx, a->out + a->n, &len) != 1) {
        rc = enc ? -1 : 0;
        goto done;
    }
    if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, GCM_TAG, a->tag) != 1)
        goto done;
    rc = 1;
done:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

static int l_crypto_seal(lua_State *L)
{
    struct gcm_args a = {.key = check_key(L, 1, "seal")};
    a.in = (const unsigned char *)crypto_check_bytes(L, 2, "seal", "plaintext", &a.n);
    a.aad = (const unsigned char *)crypto_opt_bytes(L, 3, "seal", "aad", &a.aad_len);
    size_t total = GCM_NONCE + a.n + GCM_TAG;
    unsigned char *out = crypto_scratch(L, total);
    if (RAND_bytes(out, GCM_NONCE) != 1)
        return crypto_fail(L, "seal");
    a.nonce = out;
    a.nonce_len = GCM_NONCE;
    a.out = out + GCM_NONCE;
    if (gcm_run(&a, 1) != 1)
        return crypto_fail(L, "seal");
    memcpy(out + GCM_NONCE + a.n, a.tag, GCM_TAG);
    lua_pushlstring(L, (const char *)out, total);
    return 1;
}

static int l_crypto_open(lua_State *L)
{
    struct gcm_args a = {.key = check_key(L, 1, "open")};
    size_t n;
    const unsigned char *sealed =
        (const unsigned char *)crypto_check_bytes(L, 2, "open", "sealed", &n);
    a.aad = (const unsigned char *)crypto_opt_bytes(L, 3, "open", "aad", &a.aad_len);
    if (n < GCM_NONCE + GCM_TAG) /* too short to be anything seal made */
        return auth_failed(L);
    a.nonce = sealed;
    a.nonce_len = GCM_NONCE;
    a.in = sealed + GCM_NONCE;
    a.n = n - GCM_NONCE - GCM_TAG;
    memcpy(a.tag, sealed + n - GCM_TAG, GCM_TAG);
    a.out = crypto_scratch(L, a.n);
    int rc = gcm_run(&a, 0);
    if (rc == 0)
        return auth_failed(L);
    if (rc < 0)
        return crypto_fail(L, "open");
    lua_pushlstring(L, (const char *)a.out, a.n);
    return 1;
}

static void check_nonce(lua_State *L, int idx, const char *fname, struct gcm_args *a)
{
    a->nonce = (const unsigned char *)crypto_check_bytes(L, idx, fname, "nonce", &a->nonce_len);
    if (a->nonce_len < 1 || a->nonce_len > GCM_NONCE_MAX)
        luaL_error(L, "crypto.%s: nonce: 1 to %d bytes expected (12 recommended), got %d", fname,
                   GCM_NONCE_MAX, (int)(a->nonce_len > INT_MAX ? INT_MAX : a->nonce_len));
}

static int l_crypto_aes_gcm_encrypt(lua_State *L)
{
    struct gcm_args a = {.key = check_key(L, 1, "aes_gcm_encrypt")};
    check_nonce(L, 2, "aes_gcm_encrypt", &a);
    a.in = (const unsigned char *)crypto_check_bytes(L, 3, "aes_gcm_encrypt", "plaintext", &a.n);
    a.aad = (const unsigned char *)crypto_opt_bytes(L, 4, "aes_gcm_encrypt", "aad", &a.aad_len);
    a.out = crypto_scratch(L, a.n);
    if (gcm_run(&a, 1) != 1)
        return crypto_fail(L, "aes_gcm_encrypt");
    lua_pushlstring(L, (const char *)a.out, a.n);
    lua_pushlstring(L, (const char *)a.tag, GCM_TAG);
    return 2;
}

static int l_crypto_aes_gcm_decrypt(lua_State *L)
{
    struct gcm_args a = {.key = check_key(L, 1, "aes_gcm_decrypt")};
    check_nonce(L, 2, "aes_gcm_decrypt", &a);
    a.in = (const unsigned char *)crypto_check_bytes(L, 3, "aes_gcm_decrypt", "ciphertext", &a.n);
    size_t taglen;
    const char *tag = crypto_check_bytes(L, 4, "aes_gcm_decrypt", "tag", &taglen);
    a.aad = (const unsigned char *)crypto_opt_bytes(L, 5, "aes_gcm_decrypt", "aad", &a.aad_len);
    /* A short tag is refused rather than checked as a truncated one: truncation weakens it. */
    if (taglen != GCM_TAG)
        return auth_failed(L);
    memcpy(a.tag, tag, GCM_TAG);
    a.out = crypto_scratch(L, a.n);
    int rc = gcm_run(&a, 0);
    if (rc == 0)
        return auth_failed(L);
    if (rc < 0)
        return crypto_fail(L, "aes_gcm_decrypt");
    lua_pushlstring(L, (const char *)a.out, a.n);
    return 1;
}

const luaL_Reg crypto_aead_funcs[] = {{"seal", l_crypto_seal},
                                      {"open", l_crypto_open},
                                      {"aes_gcm_encrypt", l_crypto_aes_gcm_encrypt},
                                      {"aes_gcm_decrypt", l_crypto_aes_gcm_decrypt},
                                      {NULL, NULL}};
