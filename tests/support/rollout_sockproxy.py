#!/usr/bin/python3
"""A unix-socket proxy in front of HAProxy's runtime API for the rollout tests: every command
a client sends is appended, one line each, to LOG, then passed on; the answer comes back as it
is. Counting the lines is counting the commands steward sent (so a test can prove a restart
repeated none). Usage: rollout_sockproxy.py LISTEN_PATH HAPROXY_SOCKET LOG"""
import os
import socket
import sys
import threading

listen_path, target, log_path = sys.argv[1:4]
lock = threading.Lock()


def pump(src, dst, log):
    buf = b""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if log:
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    with lock, open(log_path, "ab") as f:
                        f.write(line.strip() + b"\n")
            dst.sendall(data)
    except OSError:
        pass
    finally:
        if log and buf.strip():
            with lock, open(log_path, "ab") as f:
                f.write(buf.strip() + b"\n")
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(client):
    up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        up.connect(target)
    except OSError:
        client.close()
        return
    t = threading.Thread(target=pump, args=(up, client, False), daemon=True)
    t.start()
    pump(client, up, True)
    t.join(30)
    client.close()
    up.close()


if os.path.exists(listen_path):
    os.unlink(listen_path)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(listen_path)
srv.listen(64)
print("ready", flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
