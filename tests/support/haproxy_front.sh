# Sourced by the HAProxy driver's tests: a real haproxy with an empty backend `api` (the
# driver adds its servers), its admin socket, and small backends answering their name.
# Needs $T (a temporary directory); haproxy_stop kills what it started.
HAP_PID=
haproxy_free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# haproxy_start: sets HAP_PORT (the frontend) and HAP_SOCK (the admin socket).
haproxy_start() {
    HAP_PORT=$(haproxy_free_port)
    HAP_SOCK=$T/haproxy.sock
    cat > "$T/haproxy.cfg" <<CFG
global
    stats socket $HAP_SOCK mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s

frontend fe
    bind 127.0.0.1:$HAP_PORT
    default_backend api

backend api
    balance roundrobin
CFG
    haproxy -db -f "$T/haproxy.cfg" > "$T/haproxy.log" 2>&1 &
    HAP_PID=$!
    for _ in $(seq 100); do [ -S "$HAP_SOCK" ] && return 0; sleep 0.05; done
    return 1
}
# backend_start NAME [STATUS]: prints the port of a new backend answering NAME.
backend_start() {
    local port
    port=$(haproxy_free_port)
    /usr/bin/python3 "$here/tests/support/haproxy_backend.py" "$port" "$1" "${2:-200}" > /dev/null 2>&1 &
    echo $! >> "$T/backend.pids"
    for _ in $(seq 100); do
        /usr/bin/python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
        sleep 0.05
    done
    echo "$port"
}
haproxy_stop() {
    [ -n "$HAP_PID" ] && kill "$HAP_PID" 2>/dev/null
    [ -f "$T/backend.pids" ] && while read -r p; do kill "$p" 2>/dev/null; done < "$T/backend.pids"
    wait 2>/dev/null
}
