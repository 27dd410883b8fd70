/* libFuzzer target for steward.compress's reader (bindings/compress.c over libzstd): any bytes
 * as an archive file, read to the end in small chunks on the synchronous path (no task runs).
 * Whatever the bytes, the reader ends either cleanly -- and then its sha256 is the file's --
 * or with an error that names the file; it never crashes, never reads past its buffers, and
 * never allocates without bound (the window limit). An assertion failure aborts, which the
 * fuzzer reports. */
#include <lauxlib.h>
#include <lualib.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int luaopen_steward_compress(lua_State *L);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char check[] = "local c, path, digest = ...\n"
                            "local r, err = c.reader(path, { chunk = 512 })\n"
                            "assert(r, err)\n"
                            "while true do\n"
                            "  local s, rerr = r:read()\n"
                            "  if rerr then\n"
                            "    assert(rerr:sub(1, #path + 2) == path .. ': ', rerr)\n"
                            "    r:close()\n"
                            "    return\n"
                            "  end\n"
                            "  if not s then break end\n"
                            "  assert(#s > 0 and #s <= 512, 'a chunk within its bound')\n"
                            "end\n"
                            "assert(r:sha256() == digest, 'the digest of the bytes read')\n"
                            "r:close()\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lua_State *L;
    static int fn_ref, mod_ref, fd = -1;
    static char path[64];
    if (!L) {
        L = luaL_newstate();
        luaL_openlibs(L);
        lua_pushcfunction(L, luaopen_steward_compress);
        lua_call(L, 0, 1);
        mod_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        if (luaL_loadstring(L, check) != 0)
            abort();
        fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        fd = memfd_create("archive", 0);
        if (fd < 0)
            abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    if (EVP_Digest(data, size, md, &n, EVP_sha256(), NULL) != 1)
        abort();
    for (unsigned int i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, mod_ref);
    lua_pushstring(L, path);
    lua_pushstring(L, hex);
    if (lua_pcall(L, 3, 0, 0) != 0) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        abort();
    }
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
