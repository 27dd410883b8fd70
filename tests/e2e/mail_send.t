#!/bin/bash
# steward.http.send_mail against a real SMTP server: tests/support/mail_server.py (aiosmtpd)
# records each message it receives; tests/lua/http_mail.lua sends and checks.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

# The server prints its port, then closes stdout; reading the fifo waits for exactly that.
mkfifo "$dir/port"
/usr/bin/python3 "$here/tests/support/mail_server.py" "$dir/mail.jsonl" >"$dir/port" &
pid=$!
read -r port <"$dir/port"
export SMTP_PORT=$port MAIL_OUT="$dir/mail.jsonl"

cd "$here"
"${STEWARD_BIN:-build/steward}" script tests/lua/http_mail.lua
