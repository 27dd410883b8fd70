#!/usr/bin/python3
"""The REPL bench's client (bench/repl.sh): times the admin socket in the frame format of
core/repl/frame.h (type byte, 4-byte big-endian length, payload) and prints key=value lines.

usage: repl_rtt.py exec N BIN ARGS...     N runs of BIN ARGS (printing "1"), each timed from
                                          spawn to exit: exec_p50_ms, exec_p99_ms
       repl_rtt.py attach N SOCKET        N connections from this process, each timed from
                                          connect to the greeting: attach_p50_ms, attach_p99_ms
       repl_rtt.py complete N SOCKET      one session: N completions of "sta", each timed from
                                          the C frame to its L frame: rtt_p50_us, rtt_p99_us
       repl_rtt.py rtt N SOCKET [SECONDS] one session: N evals of "return 1", each timed from
                                          the E frame to its R frame (stops early after SECONDS):
                                          rtt_p50_us, rtt_p99_us, rtt_n
"""
import socket
import struct
import subprocess
import sys
import time


def read_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise SystemExit("repl_rtt: the daemon closed the connection")
        buf += chunk
    return bytes(buf)


def recv(s):
    head = read_exact(s, 5)
    n = struct.unpack(">I", head[1:])[0]
    return chr(head[0]), read_exact(s, n) if n else b""


def send(s, t, payload=b""):
    s.sendall(t.encode() + struct.pack(">I", len(payload)) + payload)


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    t, p = recv(s)
    if t != "G":
        raise SystemExit("repl_rtt: expected a greeting, got %s %r" % (t, p))
    return s


def pct(xs, q):
    """Nearest-rank percentile of a non-empty list."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q / 100.0 * len(xs) + 0.5)) - 1))]


def main():
    mode, n = sys.argv[1], int(sys.argv[2])
    clock = time.perf_counter
    if mode == "exec":
        argv = sys.argv[3:]
        ts = []
        for _ in range(n):
            t0 = clock()
            r = subprocess.run(argv,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            ts.append(clock() - t0)
            if r.returncode != 0 or r.stdout != b"1\n":
                raise SystemExit("repl_rtt: %s: exit %d: %r %r" % (" ".join(argv), r.returncode, r.stdout, r.stderr))
        print("exec_p50_ms=%.2f exec_p99_ms=%.2f" % (pct(ts, 50) * 1e3, pct(ts, 99) * 1e3))
    elif mode == "attach":
        path = sys.argv[3]
        ts = []
        for _ in range(n):
            t0 = clock()
            s = connect(path)
            ts.append(clock() - t0)
            s.close()
        print("attach_p50_ms=%.3f attach_p99_ms=%.3f" % (pct(ts, 50) * 1e3, pct(ts, 99) * 1e3))
    elif mode == "complete":
        s = connect(sys.argv[3])
        ts = []
        for _ in range(n):
            t0 = clock()
            send(s, "C", b"sta")
            t, p = recv(s)
            ts.append(clock() - t0)
            if t != "L" or b"status" not in p:
                raise SystemExit("repl_rtt: completion answered %s %r" % (t, p))
        s.close()
        print("rtt_p50_us=%.0f rtt_p99_us=%.0f rtt_n=%d" % (pct(ts, 50) * 1e6, pct(ts, 99) * 1e6, len(ts)))
    elif mode == "rtt":
        path = sys.argv[3]
        deadline = clock() + (float(sys.argv[4]) if len(sys.argv) > 4 else 1e9)
        s = connect(path)
        send(s, "H", b"color=0\nwidth=100\nclient=bench")
        ts = []
        while len(ts) < n and clock() < deadline:
            t0 = clock()
            send(s, "E", b"return 1")
            while True:
                t, p = recv(s)
                if t == "R":
                    break
                if t != "O":
                    raise SystemExit("repl_rtt: eval answered %s %r" % (t, p))
            ts.append(clock() - t0)
            if p != b"1":
                raise SystemExit("repl_rtt: eval returned %r" % p)
        s.close()
        print("rtt_p50_us=%.0f rtt_p99_us=%.0f rtt_n=%d" % (pct(ts, 50) * 1e6, pct(ts, 99) * 1e6, len(ts)))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
