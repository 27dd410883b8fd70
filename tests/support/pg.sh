# A throwaway PostgreSQL cluster for tests (source this file): pg_start, pg_stop, pg_restart,
# pg_createdb. Debian's server binaries; run as root (PostgreSQL itself runs as postgres).
# pg_start prints "1..0 # SKIP ..." and exits the test when PostgreSQL is not installed.

PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}

pg_as() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A free loopback port: bind port 0 and report what the kernel chose.
pg_free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pg_start() {
    if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ] || ! id postgres >/dev/null 2>&1; then
        echo "1..0 # SKIP PostgreSQL server binaries not installed (Debian package postgresql)"
        exit 0
    fi
    PG_DIR=$(mktemp -d /tmp/steward-pg.XXXXXX)
    chmod 755 "$PG_DIR"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$PG_DIR"; fi
    pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres -E UTF8 --locale=C \
        >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; return 1; }
    PG_PORT=$(pg_free_port)
    pg_ctl_start || return 1
    pg_as "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres steward || return 1
    export PG_DIR PG_PORT
    export PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/steward"
}

pg_ctl_start() {
    pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 60 start \
        -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
        >/dev/null || { cat "$PG_DIR/log" >&2; return 1; }
}

# An immediate stop: connections are cut as in a crash.
pg_ctl_stop() {
    pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1
}

pg_restart() {
    pg_ctl_stop
    pg_ctl_start
}

# pg_createdb NAME: a fresh database; prints its URL.
pg_createdb() {
    pg_as "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$1" || return 1
    echo "postgres://postgres@127.0.0.1:$PG_PORT/$1"
}

pg_stop() {
    [ -n "$PG_DIR" ] || return 0
    pg_ctl_stop
    rm -rf "$PG_DIR"
    PG_DIR=
}

# instance_start NAME [EXTRA_LUA_FIELDS]: a daemon on $PG_URL with its own var dir under
# $T/NAME, the admin token $TOKEN and the policies in $T/policies; waits for its "listening"
# line and sets PID[NAME] and PORTS[NAME] (associative arrays the test declares). Its log is
# $T/NAME/log, shown when it does not start.
instance_start() {
    local i=$1
    mkdir -p "$T/$i"
    cat > "$T/$i/steward.lua" <<CFG
return { listen = "127.0.0.1:0", store = "$PG_URL", policies = "$T/policies",
  var_dir = "$T/$i/var", admin_socket = "$T/$i/var/steward.sock", admin_token = "$TOKEN",
  ${2:-} }
CFG
    "${BIN:?}" run -c "$T/$i/steward.lua" 2>>"$T/$i/log" &
    PID[$i]=$!
    for _ in $(seq 400); do
        PORTS[$i]=$(sed -n 's/.*msg=listening address=127.0.0.1:\([0-9]*\).*/\1/p' "$T/$i/log" | tail -1)
        [ -n "${PORTS[$i]}" ] && return 0
        kill -0 "${PID[$i]}" 2>/dev/null || break
        sleep 0.025
    done
    echo "# instance $i did not start:"; sed 's/^/# /' "$T/$i/log"
    return 1
}

# pg_relay FILE RC NAME: a Lua part's TAP (plan lines dropped) relayed into the caller's one
# stream, numbered on from $n (which it advances; the part ran with STEWARD_TAP_OFFSET=$n); a
# failure sets fail=1, and an exit without a "not ok" line is reported as one, with the last
# lines of $T/err.
pg_relay() {
    grep -v '^1\.\.' "$1"
    n=$((n + $(grep -cE '^(not )?ok ' "$1")))
    if [ "$2" -ne 0 ]; then
        fail=1
        if ! grep -q '^not ok' "$1"; then
            n=$((n + 1))
            echo "not ok $n - $3 exited with status $2"
            tail -5 "$T/err" | sed 's/^/# /'
        fi
    fi
}

# pg_specs SPEC...: each tests/lua/SPEC_spec.lua against a fresh database of the server
# (STEWARD_TEST_STORE), relayed with pg_relay. From the repository root, T a scratch directory.
pg_specs() {
    local spec url
    for spec; do
        url=$(pg_createdb "spec_$spec") || { n=$((n + 1)); echo "not ok $n - createdb for $spec"; fail=1; continue; }
        echo "# $spec against $url"
        STEWARD_TEST_STORE=$url STEWARD_TAP_OFFSET=$n timeout 300 "$BIN" script "tests/lua/${spec}_spec.lua" \
            >"$T/out" 2>"$T/err"
        pg_relay "$T/out" $? "$spec"
    done
}
