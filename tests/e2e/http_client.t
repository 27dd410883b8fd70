#!/bin/bash
# steward.http against real loopback servers: starts tests/support/http_server.py plain and
# with TLS (a throwaway self-signed certificate), then runs tests/lua/http_client.lua.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null

# The server prints its port, then closes stdout; reading the fifo waits for exactly that.
start() {
    local fifo="$dir/port.$1"
    shift
    mkfifo "$fifo"
    /usr/bin/python3 "$here/tests/support/http_server.py" "$@" >"$fifo" &
    pids+=($!)
    read -r port <"$fifo"
}
start plain
export HTTP_PORT=$port
start tls --cert "$dir/cert.pem" --key "$dir/key.pem"
export HTTPS_PORT=$port
export HTTP_CAFILE="$dir/cert.pem"

cd "$here"
"${STEWARD_BIN:-build/steward}" script tests/lua/http_client.lua
