# steward.decimal's parser, printer and rounding under libFuzzer, briefly: builds
# tests/fuzz/decimal_fuzz.c (as `make fuzz` does) into a temporary directory and runs it over
# the committed corpus, then for a bounded number of new inputs. `make fuzz` runs it longer.
here=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d /tmp/steward-decfuzz.XXXXXX)
trap 'rm -rf "$T"' EXIT
cd "$here" || exit 1
echo "1..2"
if ! command -v clang >/dev/null || ! pkg-config --exists gmp; then
    echo "ok 1 # skip clang or libgmp-dev not installed"
    echo "ok 2 # skip clang or libgmp-dev not installed"
    exit 0
fi
if clang -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined \
    -fno-omit-frame-pointer -Ibindings -o "$T/decimal_fuzz" tests/fuzz/decimal_fuzz.c bindings/decimal_text.c \
    bindings/decimal_round.c $(pkg-config --libs gmp) 2>"$T/cc"; then
    echo "ok 1 - the fuzz target builds"
else
    echo "not ok 1 - the fuzz target builds"; sed 's/^/# /' "$T/cc"; echo "not ok 2 # not built"; exit 1
fi
mkdir -p "$T/corpus"
# A fixed seed and a run count, not a time: the same inputs on every machine.
if "$T/decimal_fuzz" -seed=18 -runs=200000 -max_len=8300 -artifact_prefix="$T/" "$T/corpus" \
    tests/fuzz/corpus/decimal >"$T/log" 2>&1; then
    echo "ok 2 - 200000 inputs: no crash, no leak, every contract check held"
else
    echo "not ok 2 - the fuzzer found a failing input"; grep -E "ERROR|SUMMARY|Test unit written" "$T/log" | sed 's/^/# /'
    exit 1
fi
