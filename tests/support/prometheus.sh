# Shell helpers for tests that need a real Prometheus (Debian's `prometheus`, 2.42): start one
# on a free loopback port with a given prometheus.yml, wait until it is ready, stop it.
# Source it after daemon.sh (it uses $D), then: prom_start FILE; ...; prom_stop (trapped by
# the caller's cleanup). Sets PROM_PORT and PROM_URL.
PROM_BIN=${PROM_BIN:-/usr/bin/prometheus}
PROM_PID=

# prom_free_port: a port nothing listens on now (the kernel picks it).
prom_free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# prom_start CONFIG: runs Prometheus with CONFIG, data in $D/prometheus; returns 1 when it
# does not become ready (its log is printed as TAP comments).
prom_start() {
    PROM_PORT=$(prom_free_port)
    PROM_URL="http://127.0.0.1:$PROM_PORT"
    mkdir -p "$D/prometheus"
    "$PROM_BIN" --config.file="$1" --storage.tsdb.path="$D/prometheus" \
        --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn 2>"$D/prometheus.log" &
    PROM_PID=$!
    for _ in $(seq 400); do
        curl -sf "$PROM_URL/-/ready" >/dev/null 2>&1 && return 0
        kill -0 "$PROM_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "# prometheus did not become ready:"; sed 's/^/# /' "$D/prometheus.log"
    return 1
}

prom_stop() {
    [ -n "$PROM_PID" ] || return 0
    kill "$PROM_PID" 2>/dev/null
    wait "$PROM_PID" 2>/dev/null
    PROM_PID=
}
