# Prints "yes" once every acknowledged event (ACKED: "key n" lines) has a handling in the
# record file (RECORD: "E ..." lines) and at least NTIMERS timers fired ("F" lines), else "no".
# tests/e2e/cluster_pg.t and workers.t poll it before their checks (tests/support/cluster_check.py).
import sys

record, acked_file, ntimers = sys.argv[1], sys.argv[2], int(sys.argv[3])
done = set()
fired = 0
for line in open(record):
    p = line.split()
    if p[0] == "E":
        done.add((p[2], int(p[3])))
    elif p[0] == "F":
        fired += 1
acked = set((x.split()[0], int(x.split()[1])) for x in open(acked_file))
print("yes" if acked <= done and fired >= ntimers else "no")
