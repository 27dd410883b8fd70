#!/usr/bin/python3
# Holds an SQLite database stuck for tests: usage sqlite_hold_locks.py DB; prints "locked"
# once it holds the locks, and keeps them until its stdin is closed.
import fcntl, os, sys, time
# SQLite's WAL locks (wal.c): bytes 120..127 of the -shm file are the write, checkpoint,
# recovery and five read-mark locks; holding all of them exclusively stops every reader and
# the writer, as a process inside a long exclusive operation would.
fd = os.open(sys.argv[1] + "-shm", os.O_RDWR)
for _ in range(400):
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 8, 120)
        break
    except OSError:
        time.sleep(0.01)
else:
    sys.exit("could not take the lock")
print("locked", flush=True)
sys.stdin.read()
