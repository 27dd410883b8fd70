#!/bin/bash
# steward.httpd against raw sockets: starts tests/support/httpd_e2e_server.lua on port 0,
# runs the probes in tests/support/httpd_client.py (keep-alive, pipelining order, chunked
# uploads, 100-continue, 431/413/408/400/503/404/405/500, connections dropped mid-handler,
# graceful close), then checks the server exited cleanly (no sanitizer reports).
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

mkfifo "$dir/ports"
"${STEWARD_BIN:-$here/build/steward}" script "$here/tests/support/httpd_e2e_server.lua" \
    >"$dir/ports" 2>"$dir/server.err" &
pid=$!
read -r port small <"$dir/ports"
if [ -z "${port:-}" ]; then
    echo "1..1"
    echo "not ok 1 - server started"
    cat "$dir/server.err" | sed 's/^/# /'
    exit 1
fi

/usr/bin/python3 "$here/tests/support/httpd_client.py" "$port" "$small" 2>"$dir/count"
n=$(head -1 "$dir/count")
case "$n" in ''|*[!0-9]*) sed 's/^/# /' "$dir/count"; n=0 ;; esac

wait "$pid"
status=$?
pid=
n=$((n + 1))
if [ "$status" -eq 0 ]; then echo "ok $n - the server exits 0 after a graceful close"
else echo "not ok $n - the server exits 0 after a graceful close (got $status)"; fi
n=$((n + 1))
if grep -q "Sanitizer\|runtime error" "$dir/server.err"; then
    echo "not ok $n - no sanitizer reports"
    sed 's/^/# /' "$dir/server.err"
else
    echo "ok $n - no sanitizer reports"
fi
n=$((n + 1))
if grep -q 'task failed.*deliberate failure' "$dir/server.err" &&
   grep -q 'stack traceback' "$dir/server.err"; then
    echo "ok $n - the handler error is logged with its traceback"
else
    echo "not ok $n - the handler error is logged with its traceback"
fi
echo "1..$n"
