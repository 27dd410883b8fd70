#!/usr/bin/env bash
# Differential test of `steward migrations check` against squawk itself (squawk-cli, the pinned
# version deps/install puts in deps/npm): every migration of the corpus tests/migrations/*.sql
# goes through both, and the rule ids reported, with the line of each, must be the same
# (as multisets), as must the exit status (per group of files run together). A first line
# "-- flags: ..." gives both tools the same flags (--pg-version, --exclude,
# --assume-in-transaction). Then: the corpus is at least
# 30 files, some clean and some not, and together they make squawk report every rule steward
# knows (so no rule goes unchecked); and 200 random migrations built from the corpus's
# statements give the same answers too.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
SQUAWK=${STEWARD_SQUAWK:-$here/deps/npm/node_modules/.bin/squawk}
PY=/usr/bin/python3
if ! "$SQUAWK" --version >/dev/null 2>&1; then
    # In CI deps/install has run: a missing squawk there is a failure, not a quiet skip.
    if [ -n "${CI:-}" ]; then
        echo "1..1"
        echo "not ok 1 - squawk not found at $SQUAWK: deps/install could not install squawk-cli from npm (see its output)"
        exit 1
    fi
    echo "1..0 # SKIP squawk not found at $SQUAWK (deps/install installs squawk-cli from npm there; it could not, or was not run)"
    exit 0
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

files=("$here"/tests/migrations/*.sql)
known=("$here"/tests/migrations/differences/*.sql)
echo "1..$((${#files[@]} + ${#known[@]} + 6))"
echo "# $("$SQUAWK" --version), $("$BIN" version | head -1)"

# Files with the same flags go through each tool in one run (squawk starts in node: once per
# file would be most of this test's time); the reports are then split by file. Each prints
# "ok N - file: rule@line ..." and the rules squawk reported into $dir/all_squawk.
"$PY" - "$here" "$SQUAWK" "$BIN" "$dir" "${files[@]}" <<'PY'
import json, re, subprocess, sys
here, squawk, steward, tmp, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
groups = {}
for f in files:
    first = open(f, encoding="utf-8").readline()
    m = re.match(r"-- flags: ([^(]*)", first)
    key = tuple(m.group(1).split()) if m else ()
    groups.setdefault(key, []).append(f)
found, status = {}, {}
for flags, group in groups.items():
    rel = [f[len(here) + 1:] for f in group]
    sq = subprocess.run([squawk, "--reporter", "json", *flags, *rel], cwd=here, capture_output=True, text=True)
    st = subprocess.run([steward, "migrations", "check", "--json", *flags, *rel], cwd=here, capture_output=True, text=True)
    a, b = {f: [] for f in rel}, {f: [] for f in rel}
    for v in json.loads(sq.stdout or "[]"):
        a.setdefault(v["file"], []).append("%s@%d" % (v["rule_name"], v["line"] + 1))
    for r in json.loads(st.stdout or "[]"):
        b.setdefault(r["file"], []).extend("%s@%d" % (v["rule"], v["line"]) for v in r["violations"])
    any_a = any(a.values())
    status[tuple(rel)] = (sq.returncode != 0) == any_a and st.returncode == (1 if any_a else 0), st.stderr
    for f in rel:
        found[f] = (" ".join(sorted(a[f])), " ".join(sorted(b[f])), status[tuple(rel)])
n = 0
with open(tmp + "/all_squawk", "w") as out:
    for f in files:
        rel = f[len(here) + 1:]
        a, b, (exit_ok, err) = found[rel]
        n += 1
        out.write(a + "\n")
        if a == b and exit_ok:
            print("ok %d - %s: %s" % (n, rel, a or "no violations"))
        else:
            print("not ok %d - %s" % (n, rel))
            print("#   squawk:  %s" % a)
            print("#   steward: %s" % b)
            if not exit_ok:
                print("#   exit statuses differ (or steward's is not 0/1): %s" % err.strip().replace("\n", "\n#   "))
PY
n=${#files[@]}
clean=$(grep -c '^$' "$dir/all_squawk")
dirty=$(grep -c -v '^$' "$dir/all_squawk")

n=$((n + 1))
if [ "${#files[@]}" -ge 30 ] && [ "$clean" -ge 5 ] && [ "$dirty" -ge 20 ]; then
    echo "ok $n - corpus: ${#files[@]} migrations, $clean clean, $dirty with violations"
else
    echo "not ok $n - corpus: ${#files[@]} migrations ($clean clean, $dirty not): want >= 30, both kinds"
fi

n=$((n + 1))
echo 'for _, id in ipairs(require("steward.deploy.migrations").RULES) do print(id) end' > "$dir/rules.lua"
"$BIN" script "$dir/rules.lua" | sort > "$dir/rules"
tr ' ' '\n' < "$dir/all_squawk" | sed 's/@.*//; /^$/d' | sort -u > "$dir/seen"
missing=$(comm -23 "$dir/rules" "$dir/seen" | tr '\n' ' ')
if [ -s "$dir/rules" ] && [ -z "$missing" ]; then
    echo "ok $n - squawk reports each of steward's $(wc -l < "$dir/rules") rules somewhere in the corpus"
else
    echo "not ok $n - rules no corpus file makes squawk report: ${missing:-(no rule list)}"
fi

# Random migrations made of the corpus's statements (and BEGIN, COMMIT, ROLLBACK, SETs and an
# ignore comment), in random order and number: 200 files, through both tools under three sets
# of flags. MIGRATIONS_SEED=n replays a run.
seed=${MIGRATIONS_SEED:-$RANDOM}
echo "# random migrations: MIGRATIONS_SEED=$seed"
mkdir -p "$dir/random"
"$PY" - "$seed" "$dir/random" "${files[@]}" <<'PY'
import random, re, sys
seed, out, files = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
rng = random.Random(seed)
pool = set()
for f in files:
    for stmt in open(f, encoding="utf-8").read().split(";\n"):
        lines = [l for l in stmt.strip().split("\n") if not l.startswith("-- flags")]
        text = "\n".join(lines).strip().rstrip(";")
        if text and not text.startswith("--"):
            pool.add(text)
pool = sorted(pool)
extra = ["BEGIN", "COMMIT", "ROLLBACK", "SET lock_timeout = '1s'", "SET statement_timeout = '1s'",
         "-- squawk-ignore ban-drop-column\nALTER TABLE a DROP COLUMN b"] * 3
for i in range(200):
    stmts = [rng.choice(pool + extra) for _ in range(rng.randint(1, 7))]
    open("%s/r%03d.sql" % (out, i), "w", encoding="utf-8").write(";\n".join(stmts) + ";\n")
PY
for flags in "" "--assume-in-transaction" "--pg-version 11"; do
    n=$((n + 1))
    # shellcheck disable=SC2086
    (cd "$dir/random" && "$SQUAWK" --reporter json $flags r*.sql > "$dir/rsq.json" 2>/dev/null
     "$BIN" migrations check --json $flags r*.sql > "$dir/rst.json" 2>"$dir/rst.err")
    diffs=$("$PY" - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
a, b = {}, {}
for v in json.load(open(d + "/rsq.json")):
    a.setdefault(v["file"], []).append("%s@%d" % (v["rule_name"], v["line"] + 1))
for r in json.load(open(d + "/rst.json")):
    b.setdefault(r["file"], []).extend("%s@%d" % (v["rule"], v["line"]) for v in r["violations"])
bad = [f for f in sorted(set(a) | set(b)) if sorted(a.get(f, [])) != sorted(b.get(f, []))]
for f in bad[:5]:
    print("#   %s: squawk %s, steward %s" % (f, sorted(a.get(f, [])), sorted(b.get(f, []))))
print(len(bad))
PY
)
    count=$(echo "$diffs" | tail -1)
    if [ "$count" = 0 ]; then
        echo "ok $n - 200 random migrations${flags:+ ($flags)}: the same rule ids and lines"
    else
        echo "not ok $n - 200 random migrations${flags:+ ($flags)}: $count differ"
        echo "$diffs" | sed '$d'
    fi
done

# The known differences, each a file of tests/migrations/differences/ whose first line says
# what squawk reports beyond steward ("-- squawk-only: rule@line ...") or what steward refuses
# as PostgreSQL would ("-- steward-refuses: LINE:COL: message"): pinned, so a change on
# either side shows.
for f in "$here"/tests/migrations/differences/*.sql; do
    n=$((n + 1))
    name=${f#"$here"/}
    head=$(head -1 "$f")
    (cd "$here" && "$SQUAWK" --reporter json "$name") > "$dir/dsq.json" 2>/dev/null
    (cd "$here" && "$BIN" migrations check --json "$name") > "$dir/dst.json" 2>"$dir/dst.err"
    rc=$?
    verdict=$("$PY" - "$dir" "$head" "$rc" <<'PY'
import json, sys
d, head, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
a = sorted("%s@%d" % (v["rule_name"], v["line"] + 1) for v in json.load(open(d + "/dsq.json")))
if head.startswith("-- squawk-only: "):
    extra = head[len("-- squawk-only: "):].split()
    b = [ "%s@%d" % (v["rule"], v["line"]) for r in json.load(open(d + "/dst.json")) for v in r["violations"]]
    want = sorted(b + extra)
    print("ok" if a == want and rc == 1 else "squawk %s, steward %s + %s (exit %d)" % (a, sorted(b), extra, rc))
elif head.startswith("-- steward-refuses: "):
    msg = head[len("-- steward-refuses: "):]
    err = open(d + "/dst.err").read()
    print("ok" if rc == 2 and (":" + msg) in err else "exit %d, stderr %r" % (rc, err))
else:
    print("no expectation on the first line")
PY
)
    if [ "$verdict" = ok ]; then
        echo "ok $n - known difference: $name: ${head#-- }"
    else
        echo "not ok $n - known difference: $name: $verdict"
    fi
done

# Unreadable and unparsable input: exit 2, the file and position named.
n=$((n + 1))
printf 'ALTER TABLE t ADD COLUMN;\n' > "$dir/broken.sql"
"$BIN" migrations check "$dir/broken.sql" "$dir/absent.sql" > /dev/null 2> "$dir/err"
rc=$?
if [ "$rc" = 2 ] && grep -q "broken.sql:1:25: syntax error" "$dir/err" && grep -q "absent.sql: ENOENT" "$dir/err"; then
    echo "ok $n - broken and missing files: exit 2, file and position named"
else
    echo "not ok $n - broken and missing files: exit $rc"
    sed 's/^/#   /' "$dir/err"
fi
