#!/usr/bin/env bash
# Differential test of `steward migrations check` against squawk itself (squawk-cli, the pinned
# version deps/install puts in deps/npm): every migration of the corpus tests/migrations/*.sql
# goes through both, and the rule ids reported, with the line of each, must be the same
# (as multisets), as must the exit status. A first line "-- flags: ..." gives both tools the
# same flags (--pg-version, --exclude, --assume-in-transaction). Then: the corpus is at least
# 30 files, some clean and some not, and together they make squawk report every rule steward
# knows (so no rule goes unchecked).
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
SQUAWK=${STEWARD_SQUAWK:-$here/deps/npm/node_modules/.bin/squawk}
PY=/usr/bin/python3
if ! "$SQUAWK" --version >/dev/null 2>&1; then
    echo "1..0 # SKIP squawk not found at $SQUAWK (deps/install installs squawk-cli from npm there; it could not, or was not run)"
    exit 0
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

files=("$here"/tests/migrations/*.sql)
echo "1..$((${#files[@]} + 3))"
echo "# $("$SQUAWK" --version), $("$BIN" version | head -1)"

# The rule@line list of a JSON report: squawk's (lines from 0) or steward's (lines from 1).
summarise() {
    "$PY" -c '
import json, sys
kind, path = sys.argv[1], sys.argv[2]
data = json.load(open(path))
if kind == "squawk":
    items = ["%s@%d" % (v["rule_name"], v["line"] + 1) for v in data]
else:
    items = ["%s@%d" % (v["rule"], v["line"]) for r in data for v in r["violations"]]
print(" ".join(sorted(items)))
' "$@"
}

n=0 clean=0 dirty=0
: > "$dir/all_squawk"
for f in "${files[@]}"; do
    n=$((n + 1))
    name=${f#"$here"/}
    # shellcheck disable=SC2207
    flags=($(sed -n '1s/^-- flags: \([^(]*\).*/\1/p' "$f"))
    (cd "$here" && "$SQUAWK" --reporter json "${flags[@]}" "$name") > "$dir/sq.json" 2>"$dir/sq.err"
    sq_rc=$?
    (cd "$here" && "$BIN" migrations check --json "${flags[@]}" "$name") > "$dir/st.json" 2>"$dir/st.err"
    st_rc=$?
    sq=$(summarise squawk "$dir/sq.json" 2>&1)
    st=$(summarise steward "$dir/st.json" 2>&1)
    echo "$sq" >> "$dir/all_squawk"
    if [ "$sq" = "$st" ] && [ $((sq_rc != 0)) = "$st_rc" ]; then
        echo "ok $n - $name: ${sq:-no violations}"
    else
        echo "not ok $n - $name"
        echo "#   squawk  (exit $sq_rc): $sq"
        echo "#   steward (exit $st_rc): $st"
        sed 's/^/#   /' "$dir/st.err"
    fi
    if [ -z "$sq" ]; then clean=$((clean + 1)); else dirty=$((dirty + 1)); fi
done

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
