#!/usr/bin/python3
"""A stand-in daemon for the admin socket (docs/repl.md, core/repl/frame.h), for
tests/e2e/repl_client.t: canned answers, and a record of every frame it received.

usage: repl_stub.py SOCKET RECORD [normal|refuse|readonly]

Each received frame is appended to RECORD as one line: the type letter, a space, the payload
with backslash escapes (a newline is written as \\n). Canned evals ('E' and 'J'):
  1+1                  R "2" ('J': "[2]")
  function... w/o end  M (incomplete)
  contains "error"     X "stub: boom" with a traceback line
  print                O "hello from print\\n", then an empty R
  tail                 O "event N\\n" every 50 ms until an 'I', then X "interrupted"
  bye                  B "daemon stopping"
  bye later            R "bye soon", then 200 ms later (at the prompt) B "daemon stopping"
  anything else        R "ok: CHUNK"
'C' WORD answers L with the names in NAMES that start with WORD.
"""
import os
import select
import socket
import struct
import sys
import threading

NAMES = ["events.tail", "events.find", "help"]
lock = threading.Lock()


def record(path, t, payload):
    line = t + " " + payload.decode("utf-8", "replace").encode("unicode_escape").decode() + "\n"
    with lock, open(path, "a") as f:
        f.write(line)


def send(conn, t, payload=b""):
    if isinstance(payload, str):
        payload = payload.encode()
    conn.sendall(t.encode() + struct.pack(">I", len(payload)) + payload)


class Reader:
    def __init__(self, conn):
        self.conn, self.buf = conn, b""

    def frames(self):
        """Reads once; returns the complete frames (None on EOF)."""
        data = self.conn.recv(65536)
        if not data:
            return None
        self.buf += data
        out = []
        while len(self.buf) >= 5:
            n = struct.unpack(">I", self.buf[1:5])[0]
            if len(self.buf) < 5 + n:
                break
            out.append((chr(self.buf[0]), self.buf[5:5 + n]))
            self.buf = self.buf[5 + n:]
        return out


def stream_until_interrupt(conn, reader, rec):
    n = 0
    while True:
        r, _, _ = select.select([conn], [], [], 0.05)
        if r:
            frames = reader.frames()
            if frames is None:
                return False
            for t, p in frames:
                record(rec, t, p)
                if t == "I":
                    send(conn, "X", "interrupted")
                    return True
        n += 1
        send(conn, "O", "event %d\n" % n)


def answer(conn, reader, rec, t, chunk):
    if t == "C":
        word = chunk.decode()
        send(conn, "L", "\n".join(x for x in NAMES if x.startswith(word)))
    elif t in ("E", "J"):
        code = chunk.decode()
        if code == "1+1":
            send(conn, "R", "[2]" if t == "J" else "2")
        elif code.startswith("function") and "end" not in code:
            send(conn, "M")
        elif "error" in code:
            send(conn, "X", "stub: boom\nstack traceback:\n\t[C]: in ?")
        elif code == "print":
            send(conn, "O", "hello from print\n")
            send(conn, "R")
        elif code == "tail":
            return stream_until_interrupt(conn, reader, rec)
        elif code == "bye later":
            send(conn, "R", "bye soon")
            threading.Timer(0.2, send, (conn, "B", "daemon stopping")).start()
        elif code == "bye":
            send(conn, "B", "daemon stopping")
            return False
        else:
            send(conn, "R", "ok: " + code)
    return True


def serve(conn, rec, mode, session):
    with conn:
        if mode == "refuse":
            send(conn, "B", "too many sessions")
            return
        role = "readonly" if mode == "readonly" else "admin"
        send(conn, "G", "steward stub 0.0\nrole=%s\nsession=%d" % (role, session))
        reader = Reader(conn)
        try:
            while True:
                frames = reader.frames()
                if frames is None:
                    record(rec, "-", b"closed")
                    return
                for t, p in frames:
                    record(rec, t, p)
                    if not answer(conn, reader, rec, t, p):
                        return
        except OSError:
            return


def main():
    path, rec = sys.argv[1], sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "normal"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path + ".tmp")
    srv.listen(8)
    os.rename(path + ".tmp", path)  # the socket appears only once it accepts connections
    session = 0
    while True:
        conn, _ = srv.accept()
        session += 1
        threading.Thread(target=serve, args=(conn, rec, mode, session), daemon=True).start()


if __name__ == "__main__":
    main()
