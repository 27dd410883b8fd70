/* steward.crypto Ed25519 keys as PEM: the form `openssl pkey` and `openssl pkeyutl` read, so
 * a key steward writes (the audit log's signing key, docs/audit.md) can be checked by an
 * auditor with OpenSSL alone. PKCS#8 for the secret, SubjectPublicKeyInfo for the public
 * key; OpenSSL does all the encoding. Bad PEM from outside is an answer (nil, err). */
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <string.h>

#include "crypto_priv.h"

#define ED25519_KEY 32

/* An Ed25519 key in PEM is about 120 bytes; the text is copied out of the BIO into a stack
 * buffer so that no Lua call (which may raise when out of memory) runs while a BIO is held. */
#define PEM_MAX 512

static int drain(BIO *b, char *out, int *len)
{
    *len = b ? BIO_read(b, out, PEM_MAX) : -1;
    return *len > 0 && *len < PEM_MAX;
}

/* crypto.ed25519_pem(secret) -> private_pem, public_pem */
static int l_crypto_ed25519_pem(lua_State *L)
{
    size_t n;
    const char *secret = crypto_check_bytes(L, 1, "ed25519_pem", "secret", &n);
    if (n != ED25519_KEY)
        luaL_error(L, "crypto.ed25519_pem: secret: %d bytes expected, got %d", ED25519_KEY,
                   (int)(n > INT_MAX ? INT_MAX : n));
    char privbuf[PEM_MAX], pubbuf[PEM_MAX];
    int privlen = 0, publen = 0;
    EVP_PKEY *pk =
        EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, (const unsigned char *)secret, n);
    BIO *priv = BIO_new(BIO_s_secmem()); /* cleared when freed: it holds the secret */
    BIO *pub = BIO_new(BIO_s_mem());
    int ok = pk && priv && pub &&
             PEM_write_bio_PrivateKey(priv, pk, NULL, NULL, 0, NULL, NULL) == 1 &&
             PEM_write_bio_PUBKEY(pub, pk) == 1 && drain(priv, privbuf, &privlen) &&
             drain(pub, pubbuf, &publen);
    BIO_free(priv);
    BIO_free(pub);
    EVP_PKEY_free(pk);
    if (!ok) {
        OPENSSL_cleanse(privbuf, sizeof privbuf);
        return crypto_fail(L, "ed25519_pem");
    }
    ERR_clear_error();
    lua_pushlstring(L, privbuf, (size_t)privlen);
    OPENSSL_cleanse(privbuf, sizeof privbuf);
    lua_pushlstring(L, pubbuf, (size_t)publen);
    return 2;
}

/* crypto.ed25519_from_pem(pem) -> secret or false, public | nil, err. A private key gives
 * both halves; a public key gives false and the public half. */
static int l_crypto_ed25519_from_pem(lua_State *L)
{
    size_t n;
    const char *pem = crypto_check_bytes(L, 1, "ed25519_from_pem", "pem", &n);
    if (n > INT_MAX)
        luaL_error(L, "crypto.ed25519_from_pem: pem: too long");
    BIO *b = BIO_new_mem_buf(pem, (int)n);
    int is_private = 1;
    EVP_PKEY *pk = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    if (!pk && b) {
        ERR_clear_error(); /* not a private key: try a public one from the start */
        is_private = 0;
        BIO_free(b);
        b = BIO_new_mem_buf(pem, (int)n);
        pk = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
    }
    BIO_free(b);
    if (!pk)
        return crypto_fail(L, "ed25519_from_pem");
    if (EVP_PKEY_get_id(pk) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(pk);
        lua_pushnil(L);
        lua_pushliteral(L, "crypto.ed25519_from_pem: not an Ed25519 key");
        return 2;
    }
    unsigned char secret[ED25519_KEY], pub[ED25519_KEY];
    size_t slen = sizeof secret, plen = sizeof pub;
    int ok = EVP_PKEY_get_raw_public_key(pk, pub, &plen) == 1 &&
             (!is_private || EVP_PKEY_get_raw_private_key(pk, secret, &slen) == 1);
    EVP_PKEY_free(pk);
    if (!ok) {
        OPENSSL_cleanse(secret, sizeof secret);
        return crypto_fail(L, "ed25519_from_pem");
    }
    if (is_private)
        lua_pushlstring(L, (const char *)secret, slen);
    else
        lua_pushboolean(L, 0);
    OPENSSL_cleanse(secret, sizeof secret);
    lua_pushlstring(L, (const char *)pub, plen);
    return 2;
}

const luaL_Reg crypto_pem_funcs[] = {{"ed25519_pem", l_crypto_ed25519_pem},
                                     {"ed25519_from_pem", l_crypto_ed25519_from_pem},
                                     {NULL, NULL}};
