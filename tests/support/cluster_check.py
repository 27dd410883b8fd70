# Checks the record of tests/e2e/cluster_pg.t and prints TAP lines (numbers from argv[5]).
# Record lines (appended by the test policies): "S inst key n seq t" when a handling starts,
# "E inst key n seq t" when it ends, "F inst timer_i t" when a durable timer's event is handled.
# Kills file: "inst t" for each SIGKILL. Acks: "key n". Timers: how many were armed.
import sys
from collections import defaultdict

record, acks_file, kills_file, ntimers, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
starts, ends, fired = [], {}, defaultdict(int)
for line in open(record):
    f = line.split()
    if f[0] == "S":
        starts.append((float(f[5]), f[1], f[2], int(f[3])))
    elif f[0] == "E":
        ends[(f[1], f[2], int(f[3]), int(f[4]))] = float(f[5])
    elif f[0] == "F":
        fired[int(f[2])] += 1
kills = {}
for line in open(kills_file):
    inst, t = line.split()
    kills[inst] = float(t)
# each start paired with its end (or the instance's kill time: nothing runs after SIGKILL)
runs = defaultdict(list)
seen_s = {}
for line in open(record):
    f = line.split()
    if f[0] == "S":
        k = (f[1], f[2], int(f[3]), int(f[4]))
        t0 = float(f[5])
        t1 = ends.get(k)
        if t1 is None or t1 < t0:
            t1 = kills.get(f[1], float("inf"))
        runs[f[2]].append((t0, t1, int(f[3]), f[1], t1 != float("inf") and k in ends))
acked = set()
for line in open(acks_file):
    key, m = line.split()
    acked.add((key, int(m)))
done = set()
for (inst, key, m, seq) in ends:
    done.add((key, m))


def tap(ok, name, detail=None):
    global n
    n += 1
    print("%s %d - %s" % ("ok" if ok else "not ok", n, name))
    if not ok and detail:
        for d in detail[:10]:
            print("# " + str(d))


missing = sorted(acked - done)
tap(len(acked) > 0 and not missing, "every acknowledged event (%d) was handled at least once" % len(acked), missing)

overlaps = []
for key, rs in runs.items():
    rs.sort()
    end = None
    for t0, t1, m, inst, _ in rs:
        if end is not None and t0 < end[0]:
            overlaps.append("%s: n=%d on %s started at %.6f before n=%d on %s ended at %.6f" % (key, m, inst, t0, end[2], end[1], end[0]))
        if end is None or t1 > end[0]:
            end = (t1, inst, m)
tap(not overlaps, "no key was ever handled by two runs at once", overlaps)

disorder = []
reruns = 0
for key, rs in runs.items():
    done_at = {}
    for t0, t1, m, inst, complete in rs:
        if complete and (m not in done_at or t1 < done_at[m]):
            done_at[m] = t1
    first = {}
    for t0, t1, m, inst, complete in sorted(rs):
        if m in first:
            reruns += 1
        else:
            first[m] = t0
    # at the first start of n, every smaller n of the key had started, and finished (a
    # complete run, not one cut by a kill) before it
    prev_done = 0.0
    for m in sorted(first):
        if m > 1 and (m - 1 not in first or (m - 1) not in done_at):
            disorder.append("%s: n=%d ran but n=%d never completed" % (key, m, m - 1))
            break
        if prev_done > first[m]:
            disorder.append("%s: n=%d started at %.6f before n=%d was done at %.6f" % (key, m, first[m], m - 1, prev_done))
            for r in sorted(rs):
                if r[2] in (m - 1, m):
                    disorder.append("  run n=%d on %s %.6f-%.6f %s" % (r[2], r[3], r[0], r[1], "complete" if r[4] else "cut"))
            break
        prev_done = max(prev_done, done_at.get(m, float("inf")))
tap(not disorder, "each key's events were handled in order (%d re-runs after takeovers)" % reruns, disorder)

bad = ["timer %d fired %d times" % (i, fired[i]) for i in range(1, ntimers + 1) if fired[i] != 1]
tap(not bad, "every durable timer (%d) fired exactly once" % ntimers, bad)
print("1..%d" % n)
sys.exit(0 if not (missing or overlaps or disorder or bad) else 1)
