/* The list of bindings and the libraries behind them. Adding a binding = one line here. */
#include "registry.h"

#include <curl/curl.h>
#include <gmp.h>
#include <lauxlib.h>
#include <libpq-fe.h>
#include <luajit.h>
#include <openssl/crypto.h>
#include <pg_query.h>
#include <sqlite3.h>
#include <stdio.h>
#include <uv.h>
#include <zstd.h>

#include "bindings.h"

static const luaL_Reg bindings[] = {
    {"steward.time.native", luaopen_steward_time}, {"steward.json", luaopen_steward_json},
    {"steward.log", luaopen_steward_log},          {"steward.http", luaopen_steward_http},
    {"steward.crypto", luaopen_steward_crypto},    {"steward.fs", luaopen_steward_fs},
    {"steward.proc", luaopen_steward_proc},        {"steward.signal", luaopen_steward_signal},
    {"steward.fswatch", luaopen_steward_fswatch},  {"steward.unix", luaopen_steward_unix},
    {"steward.pg.native", luaopen_steward_pg},    {"steward.identity", luaopen_steward_identity},
    {"steward.runtime.ingest.native", luaopen_steward_ingest},
    {"steward.sqlparse", luaopen_steward_sqlparse},
    {"steward.compress", luaopen_steward_compress},
    {"steward.decimal", luaopen_steward_decimal},
    {NULL, NULL}};

void bindings_preload(lua_State *L)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    for (const luaL_Reg *b = bindings; b->name; b++) {
        lua_pushcfunction(L, b->func);
        lua_setfield(L, -2, b->name);
    }
    lua_pop(L, 2);
}

void bindings_versions(void (*emit)(const char *lib, const char *version, void *ud), void *ud)
{
    char pq[32];
    int v = PQlibVersion();
    snprintf(pq, sizeof pq, "%d.%d", v / 10000, v % 10000);
    emit("LuaJIT", LUAJIT_VERSION, ud);
    emit("libuv", uv_version_string(), ud);
    emit("libcurl", curl_version_info(CURLVERSION_NOW)->version, ud);
    emit("OpenSSL", OpenSSL_version(OPENSSL_VERSION), ud);
    emit("SQLite", sqlite3_libversion(), ud);
    emit("libpq", pq, ud);
    emit("libpg_query", PG_VERSION, ud);
    emit("GMP", gmp_version, ud); /* steward.decimal: exact money */
    emit("zstd", ZSTD_versionString(), ud); /* steward.compress: the archive files */ /* the PostgreSQL parser steward.sqlparse embeds */
}
