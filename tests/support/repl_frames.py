#!/usr/bin/python3
"""A raw admin-socket client for tests/e2e/repl_daemon.t: speaks the frame format of
core/repl/frame.h (type byte, 4-byte big-endian length, payload) and can also send bytes that are
not frames, to show the daemon closes only that session.

usage: repl_frames.py SOCKET SCRIPT
SCRIPT lines:  send T PAYLOAD   (PAYLOAD with backslash escapes)
               raw HEXBYTES     (bytes as they are)
               recv             (prints the next frame as "T payload-escaped")
               recv_until T     (prints frames up to and including one of type T)
               eof              (prints "eof" if the daemon closed the connection)
"""
import socket
import struct
import sys


def read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def recv(s):
    head = read_exact(s, 5)
    if head is None:
        return None
    t, n = head[:1].decode(), struct.unpack(">I", head[1:])[0]
    payload = read_exact(s, n) if n else b""
    return t, payload


def show(f):
    t, p = f
    print(t, p.decode("utf-8", "replace").encode("unicode_escape").decode(), flush=True)


def main():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(sys.argv[1])
    for line in open(sys.argv[2]):
        line = line.rstrip("\n")
        if not line:
            continue
        cmd, _, arg = line.partition(" ")
        if cmd == "send":
            t, _, payload = arg.partition(" ")
            data = payload.encode().decode("unicode_escape").encode("latin-1")
            s.sendall(t.encode() + struct.pack(">I", len(data)) + data)
        elif cmd == "raw":
            s.sendall(bytes.fromhex(arg))
        elif cmd == "recv":
            f = recv(s)
            print("eof" if f is None else "", end="", flush=True) if f is None else show(f)
        elif cmd == "recv_until":
            while True:
                f = recv(s)
                if f is None:
                    print("eof", flush=True)
                    break
                show(f)
                if f[0] == arg:
                    break
        elif cmd == "eof":
            try:
                data = s.recv(1)
            except (ConnectionResetError, socket.timeout):
                data = b""
            print("eof" if data == b"" else "open", flush=True)


main()
