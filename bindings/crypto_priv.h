/* steward.crypto, private: what crypto.c, crypto_codec.c, crypto_aead.c and crypto_pem.c share.
 * Only luaopen_steward_crypto (bindings.h) is registered; the other files hand it their function
 * tables. */
#ifndef STEWARD_CRYPTO_PRIV_H
#define STEWARD_CRYPTO_PRIV_H

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>

/* Byte-string argument idx of crypto.<fname>; raises "crypto.<fname>: <arg>: string
 * expected, got <type>" for anything but a string (numbers are not silently converted). */
const char *crypto_check_bytes(lua_State *L, int idx, const char *fname, const char *arg,
                               size_t *len);

/* The same for an optional argument: nil or none gives "" with *len = 0. */
const char *crypto_opt_bytes(lua_State *L, int idx, const char *fname, const char *arg,
                             size_t *len);

/* A GC-owned scratch buffer of n bytes pushed on the stack: output is written here before
 * it becomes a Lua string, so a Lua error (out of memory) can never leak a malloc'd buffer. */
unsigned char *crypto_scratch(lua_State *L, size_t n);

/* Pushes nil, "crypto.<fname>: <OpenSSL's reason>" and empties OpenSSL's error queue (which
 * libcurl shares on this thread); returns 2. */
int crypto_fail(lua_State *L, const char *fname);

extern const luaL_Reg crypto_codec_funcs[];
extern const luaL_Reg crypto_aead_funcs[];
extern const luaL_Reg crypto_pem_funcs[];

#endif
