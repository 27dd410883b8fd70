# A throwaway Alertmanager 0.25 (Debian's prometheus-alertmanager) for tests and benchmarks
# (source this file): am_start CONFIG [NAME], am_stop [NAME], am_url [NAME], am_pid [NAME].
# Each instance gets its own temp dir (config copy, storage, log) and a loopback port; no
# gossip (--cluster.listen-address= empty), so it is ready without the cluster settle wait.
# NAME (default "am") lets a test run several. am_start prints "1..0 # SKIP ..." and exits
# the test when Alertmanager is not installed. Stop is safe to call twice and from a trap:
#   trap 'am_stop_all' EXIT
# shellcheck shell=bash disable=SC2034  # AM_URL, AM_PID, AM_DIR are for the callers

AM_BIN=${AM_BIN:-/usr/bin/prometheus-alertmanager}
AM_NAMES=""

am_free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# am_var NAME FIELD -> the value of AM_<FIELD>_<NAME>
am_var() { eval "printf '%s' \"\${AM_${2}_$1:-}\""; }

# am_start CONFIG [NAME]: starts, waits for /-/ready; sets AM_URL_<NAME>, AM_PID_<NAME>,
# AM_DIR_<NAME> (and AM_URL/AM_PID/AM_DIR for the default name). Extra flags: AM_FLAGS.
am_start() {
    local cfg=$1 name=${2:-am} dir port pid
    if [ ! -x "$AM_BIN" ]; then
        echo "1..0 # SKIP Alertmanager not installed (Debian package prometheus-alertmanager)"
        exit 0
    fi
    dir=$(mktemp -d /tmp/steward-am.XXXXXX)
    cp "$cfg" "$dir/alertmanager.yml"
    AM_NAMES="$AM_NAMES $name"
    eval "AM_DIR_$name=\$dir"
    # The port is chosen before Alertmanager binds it (it cannot report a port 0 it was
    # given): on the rare collision with another process, try another port.
    for _ in 1 2 3; do
        port=$(am_free_port)
        # shellcheck disable=SC2086
        "$AM_BIN" --config.file="$dir/alertmanager.yml" --storage.path="$dir/data" \
            --web.listen-address="127.0.0.1:$port" --cluster.listen-address= \
            --log.level="${AM_LOG_LEVEL:-info}" ${AM_FLAGS:-} >>"$dir/log" 2>&1 &
        pid=$!
        eval "AM_PID_$name=\$pid"
        for _ in $(seq 200); do
            if curl -fs "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1; then
                eval "AM_URL_$name=http://127.0.0.1:\$port"
                if [ "$name" = am ]; then AM_URL=http://127.0.0.1:$port; AM_PID=$pid; AM_DIR=$dir; fi
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
        eval "AM_PID_$name="
        grep -q "address already in use" "$dir/log" || break
    done
    echo "# Alertmanager ($name) did not start:" >&2
    sed 's/^/# /' "$dir/log" >&2
    return 1
}

am_url() { am_var "${1:-am}" URL; }
am_pid() { am_var "${1:-am}" PID; }
am_dir() { am_var "${1:-am}" DIR; }

# am_stop [NAME]: TERM, wait, remove its dir. AM_KEEP=1 keeps the dir (for its log).
am_stop() {
    local name=${1:-am} pid dir
    pid=$(am_var "$name" PID); dir=$(am_var "$name" DIR)
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    if [ -n "$dir" ] && [ -z "${AM_KEEP:-}" ]; then rm -rf "$dir"; fi
    eval "AM_PID_$name= AM_DIR_$name="
}

am_stop_all() {
    local n
    for n in $AM_NAMES; do am_stop "$n"; done
    AM_NAMES=""
}
