#!/bin/bash
# STEWARD_LUA_ALLOC: the Lua state's base allocator. With "luajit" the guard's allocator sits in
# front of LuaJIT's own arena: the guard's whole spec (CPU and memory budgets, the heap's
# ceiling, runs over spikes) passes on it, the state closes cleanly, and a value that is
# neither "system" nor "luajit" stops the binary with the variable named. (Under
# AddressSanitizer the base stays realloc/free, so Lua-owned buffers stay checked.)
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
export STEWARD_LUA_PATH=${STEWARD_LUA_PATH:-$here/scripts}
n=0; rc=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; rc=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

want=luajit
grep -aq __asan_init "$BIN" && want=system
got=$(STEWARD_LUA_ALLOC=luajit "$BIN" eval --local 'return require("steward.runtime.guard").ALLOCATOR' 2>&1)
ok $([ "$got" = "\"$want\"" ] && echo 0 || echo 1) "STEWARD_LUA_ALLOC=luajit: the state runs on $want's allocator ($got)"
got=$("$BIN" eval --local 'return require("steward.runtime.guard").ALLOCATOR' 2>&1)
ok $([ "$got" = '"system"' ] && echo 0 || echo 1) "unset: glibc's, which gives pages back after a spike ($got)"

STEWARD_LUA_ALLOC=luajit "$BIN" script "$here/tests/lua/guard_spec.lua" > "$tmp/spec" 2> "$tmp/err"
st=$?
passed=$(grep -c '^ok ' "$tmp/spec"); failed=$(grep -c '^not ok ' "$tmp/spec")
ok $([ $st = 0 ] && [ "$failed" = 0 ] && [ "$passed" -gt 10 ] && echo 0 || echo 1) \
    "the guard's spec passes on it: budgets refused, ceiling held, state closed ($passed passed, $failed failed, exit $st)"
[ $st = 0 ] && [ "$failed" = 0 ] || { grep '^not ok' "$tmp/spec"; tail -5 "$tmp/err"; } | sed 's/^/# /'

STEWARD_LUA_ALLOC=bogus "$BIN" eval --local 'return 1' > "$tmp/out" 2>&1
st=$?
ok $([ $st != 0 ] && grep -q 'STEWARD_LUA_ALLOC = "bogus": expected "system" or "luajit"' "$tmp/out" && echo 0 || echo 1) \
    "an unknown value stops it, the variable and the choices named (exit $st: $(head -1 "$tmp/out"))"
echo "1..$n"
exit $rc
