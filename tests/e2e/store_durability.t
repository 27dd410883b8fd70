#!/bin/bash
# Durability of acknowledged writes: a child `steward script` writes with db:exec and
# db:batch, printing each id once acknowledged; it is kill -9'ed at a random moment; every
# acknowledged id must then be in the database. Several cycles on the same file; the seed is
# printed so a failure can be replayed with STORE_SEED=<seed>.
set -u
cd "$(dirname "$0")/../.."
BIN=${STEWARD_BIN:-build/steward}
CYCLES=${STORE_CYCLES:-6}
SEED=${STORE_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$SEED
dir=$(mktemp -d)
child=""
cleanup() {
    [ -n "$child" ] && kill -9 "$child" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

echo "1..$((CYCLES * 2 + 1))"
echo "# seed=$SEED (replay with STORE_SEED=$SEED)"
url="sqlite:$dir/durable.db"
n=0
for cycle in $(seq 1 "$CYCLES"); do
    acks="$dir/acks.$cycle"
    : > "$acks"
    "$BIN" script tests/support/store_writer.lua "$url" $((cycle * 10000000)) > "$acks" 2> "$dir/err.$cycle" &
    child=$!
    # Wait for the first acknowledgement, then let it run a random 20..700 ms more.
    for _ in $(seq 1 500); do
        [ -s "$acks" ] && break
        kill -0 "$child" 2>/dev/null || break
        sleep 0.01
    done
    delay=$(( 20 + RANDOM % 680 ))
    sleep "$(printf '0.%03d' "$delay")"
    kill -9 "$child" 2>/dev/null
    wait "$child" 2>/dev/null
    child=""
    lines=$(grep -c '' "$acks")
    n=$((n + 1))
    if [ "$lines" -gt 0 ]; then
        echo "ok $n - cycle $cycle: the writer acknowledged $lines ids before kill -9 at +${delay}ms"
    else
        echo "not ok $n - cycle $cycle: the writer acknowledged nothing"
        sed 's/^/# /' "$dir/err.$cycle"
    fi
    report=$("$BIN" script tests/support/store_check.lua "$url" "$acks" 2>&1)
    n=$((n + 1))
    case "$report" in
        *" missing=0 "*) echo "ok $n - cycle $cycle: every acknowledged id is in the database ($report)" ;;
        *) echo "not ok $n - cycle $cycle: acknowledged ids lost: $report" ;;
    esac
done
n=$((n + 1))
report=$("$BIN" script tests/support/store_check.lua "$url" /dev/null 2>&1)
case "$report" in
    *" rows="[1-9]*) echo "ok $n - the database reopens cleanly after $CYCLES crashes ($report)" ;;
    *) echo "not ok $n - reopening after the crashes: $report" ;;
esac
