#!/bin/bash
# gh issue 13 §7: steward.http under a burst. Starts two tests/support/slow_accept_server.py
# (python's http.server, listen backlog 5, accepting slowly) and runs tests/lua/http_burst.lua:
# 200 requests at once to one of them must all be answered.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

# The server prints its port, then closes stdout; reading the fifo waits for exactly that.
start() {
    local fifo="$dir/port.$1"
    mkfifo "$fifo"
    /usr/bin/python3 "$here/tests/support/slow_accept_server.py" >"$fifo" &
    pids+=($!)
    read -r port <"$fifo"
}
start a
export SLOW_PORT=$port
start b
export SLOW_PORT2=$port

cd "$here"
"${STEWARD_BIN:-build/steward}" script tests/lua/http_burst.lua
