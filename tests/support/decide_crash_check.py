# Checks the decision log after tests/e2e/decision_log_crash.t's kills: every decision of the
# durable policy that was answered is in the log (and every decision of the cycles run with
# decision_log = "durable" configured), and so is every decision of the async policy answered
# more than the loss window before the kill that ended its cycle. Prints TAP lines
# from number OFFSET + 1; exits non-zero on a failure.
# args: DB ANSWERS KILLS WINDOW OFFSET DURABLE_POLICY
import sqlite3, sys

db, answers, kills, window, offset, durable = sys.argv[1:7]
window, offset = float(window), int(offset)
con = sqlite3.connect(db)
logged = {}
for ref, policy in con.execute("SELECT ref, policy FROM decisions"):
    logged[ref] = logged.get(ref, 0) + 1
kill_at = dict((l.split()[0], float(l.split()[1])) for l in open(kills) if l.strip())
n, failed = offset, False

def tap(ok, what):
    global n, failed
    n += 1
    failed = failed or not ok
    print(("ok %d - %s" if ok else "not ok %d - %s") % (n, what))

rows = [l.split() for l in open(answers) if l.strip()]
# cycles named cfg* ran with decision_log = "durable" in the configuration: all durable
is_durable = lambda r: r[1] == durable or r[0].startswith("cfg")
durable_rows = [r for r in rows if is_durable(r)]
async_rows = [r for r in rows if not is_durable(r)]
missing_durable = [r[2] for r in durable_rows if r[2] not in logged]
tap(len(durable_rows) > 0 and not missing_durable,
    "every answered durable decision is in the log (%d answered, %d missing)" % (len(durable_rows), len(missing_durable)))
cfg_rows = [r for r in rows if r[0].startswith("cfg")]
missing_cfg = [r[2] for r in cfg_rows if r[2] not in logged]
tap(len(cfg_rows) > 0 and not missing_cfg,
    "with decision_log = \"durable\" configured, every answered decision of an async policy is in the log (%d, %d missing)"
    % (len(cfg_rows), len(missing_cfg)))
old, missing_old, lost_recent, oldest_missing = 0, [], 0, 0.0
for cycle, policy, ref, t in async_rows:
    k = kill_at[cycle]  # answers read after the kill's time was taken count as young
    if float(t) < k - window:
        old += 1
        if ref not in logged:
            missing_old.append(ref)
            oldest_missing = max(oldest_missing, k - float(t))
    elif ref not in logged:
        lost_recent += 1
tap(old > 0 and not missing_old,
    "every async decision answered more than %.3f s before a kill is in the log (%d such, %d missing; %d younger lost)"
    % (window, old, len(missing_old), lost_recent))
if missing_old:
    print("# the oldest missing async decision was answered %.3f s before its kill" % oldest_missing)
for ref in missing_old[:5] + missing_durable[:5]:
    print("# missing: %s" % ref)
tap(all(c == 1 for c in logged.values()), "no decision is logged twice")
print("1..%d" % n)
sys.exit(1 if failed else 0)
