#!/bin/bash
# `steward check`: a good tree exits 0 with a summary; broken policies and bad configs exit 1
# with one line per problem naming the file and the field.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
n=0
check() { n=$((n + 1)); if eval "$1"; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
has() { grep -qF -- "$1" "$2"; }

# A good tree: config, two policies, a shared lib and a spec (neither is a policy).
good="$d/good"
mkdir -p "$good/policies/ops" "$good/policies/lib"
printf 'return { listen = "127.0.0.1:9999", policies = "policies" }\n' > "$good/steward.lua"
printf 'return { on = "alert.*", handle = function(ev) end }\n' > "$good/policies/ops/a.lua"
printf 'return { name = "b", decide = function(input) return true end }\n' > "$good/policies/b.lua"
printf 'return {}\n' > "$good/policies/lib/util.lua"
printf 'error("a spec is not a policy")\n' > "$good/policies/ops/a_spec.lua"
(cd "$good" && "$BIN" check) > "$d/out" 2>&1; rc=$?
check '[ $rc -eq 0 ] && has "ok: config steward.lua, 2 policies in policies" "$d/out"' \
      "a good tree: exit 0 and a one-line summary"
check '[ "$(wc -l < "$d/out")" -eq 3 ]' "a good tree: a line per policy, then the summary"
check 'has "b: capabilities declared: nothing beyond the defaults; granted: nothing beyond the defaults" "$d/out"' \
      "each policy's declared and granted capabilities"
printf 'return { listen = "127.0.0.1:9999", policies = "policies", grants = { ["ops.*"] = { http = { "hooks.example.com" } } } }\n' > "$good/steward.lua"
printf 'return { capabilities = { "http" }, on = "alert.*", handle = function(ev) end }\n' > "$good/policies/ops/a.lua"
(cd "$good" && "$BIN" check) > "$d/out" 2>&1; rc=$?
check '[ $rc -eq 0 ] && has "ops.a: capabilities declared: http; granted: http (hooks.example.com)" "$d/out"' \
      "a declared capability shows the scope granted"
printf 'return { capabilities = { "proc" }, on = "alert.*", handle = function(ev) end }\n' > "$good/policies/ops/a.lua"
(cd "$good" && "$BIN" check) > "$d/out" 2>&1; rc=$?
check '[ $rc -eq 1 ] && has "capabilities not granted to ops.a: '"'"'proc'"'"'" "$d/out"' \
      "a capability not granted is a problem naming it"
printf 'return { on = "alert.*", handle = function(ev) end }\n' > "$good/policies/ops/a.lua"
printf 'return { listen = "127.0.0.1:9999", policies = "policies" }\n' > "$good/steward.lua"
(cd "$d" && "$BIN" check -c good/steward.lua --policies good/policies) > "$d/out" 2>&1; rc=$?
check '[ $rc -eq 0 ] && has "ok: config good/steward.lua, 2 policies in good/policies" "$d/out"' "-c and --policies"

# Broken policies: every problem listed, file and field named.
bad="$d/bad"
cp -r "$good" "$bad"
printf 'return { on = "alert.firing" }\n' > "$bad/policies/nohandle.lua"
printf 'return {\n  on = = 1,\n}\n' > "$bad/policies/syntax.lua"
printf 'return { on = "Bad Type!", handle = function() end }\n' > "$bad/policies/badon.lua"
printf 'return { frobnicate = 1 }\n' > "$bad/policies/unknown.lua"
printf 'local x = nil\nreturn x.y\n' > "$bad/policies/throws.lua"
printf 'return { name = "b", decide = function() end }\n' > "$bad/policies/dup.lua"
(cd "$bad" && "$BIN" check) > "$d/out" 2>&1; rc=$?
check '[ $rc -eq 1 ]' "broken policies: exit 1"
check 'has "policies/nohandle.lua: handle: a policy with \`on\` needs a handle function" "$d/out"' \
      "a policy with on but no handle: file and field"
check 'grep -q "^policies/syntax.lua:2: " "$d/out"' "a syntax error: file and line"
check 'grep -q "^policies/badon.lua:[0-9]*: on\[1\]: must be a dotted event type" "$d/out"' "a bad event pattern: file and field"
check 'grep -q "^policies/unknown.lua:[0-9]*: frobnicate: unknown field" "$d/out"' "an unknown field is named"
check 'grep -q "^policies/throws.lua:2: attempt to index" "$d/out"' "an error while loading: file and line"
check 'has "policies/dup.lua: name: '"'"'b'"'"' is also used by policies/b.lua" "$d/out"' "a duplicate name names both files"
check 'has "6 problems found" "$d/out" && [ "$(wc -l < "$d/out")" -eq 7 ]' "every problem on its own line, then a count"

# Bad configs.
cfg="$d/cfg"
cp -r "$good" "$cfg"
printf 'return { listn = "127.0.0.1:1" }\n' > "$cfg/steward.lua"
(cd "$cfg" && "$BIN" check) > "$d/out" 2>&1; rc=$?
check '[ $rc -eq 1 ] && has "steward.lua: unknown key '"'"'listn'"'"' (did you mean '"'"'listen'"'"'?)" "$d/out"' \
      "an unknown config key: exit 1, file and key named"
printf 'return { store = "mysql://x" }\n' > "$cfg/steward.lua"
(cd "$cfg" && "$BIN" check) > "$d/out" 2>&1; rc=$?
check '[ $rc -eq 1 ] && has "steward.lua: store = \"mysql://x\": expected" "$d/out"' "a bad config value: exit 1, field named"
printf 'return { limits = { max_batch = 0 } }\n' > "$cfg/steward.lua"
(cd "$cfg" && "$BIN" check) > "$d/out" 2>&1; rc=$?
check '[ $rc -eq 1 ] && has "limits.max_batch = 0" "$d/out"' "a bad limit: the nested field is named"
printf 'return { listen = }\n' > "$cfg/steward.lua"
(cd "$cfg" && "$BIN" check) > "$d/out" 2>&1; rc=$?
check '[ $rc -eq 1 ] && grep -q "steward.lua:1:" "$d/out"' "a config syntax error: file and line"
printf 'return {}\n' > "$cfg/steward.lua"
mkdir -p "$cfg/config"
printf 'return { log_level = "loud" }\n' > "$cfg/config/development.lua"
(cd "$cfg" && "$BIN" check) > "$d/out" 2>&1; rc=$?
check '[ $rc -eq 1 ] && has "config/development.lua: log_level = \"loud\"" "$d/out"' "an environment overlay is checked too"
rm -r "$cfg/config"
(cd "$cfg" && STEWARD_LISTEN=nowhere "$BIN" check -c steward.lua) > "$d/out" 2>&1; rc=$?
check '[ $rc -eq 1 ] && has "STEWARD_LISTEN: listen" "$d/out"' "STEWARD_* variables are checked too"
mkdir "$d/dflt"
(cd "$d/dflt" && "$BIN" check) > "$d/out" 2>&1; rc=$?
check '[ $rc -eq 0 ] && has "ok: config defaults (no steward.lua), 0 policies in policies" "$d/out"' \
      "no steward.lua and no policies/: the defaults, exit 0"
(cd "$d" && "$BIN" check -c nonexistent.lua) > "$d/out" 2>&1; rc=$?
check '[ $rc -eq 1 ] && has "nonexistent.lua: cannot open the config file" "$d/out"' "-c with a missing file: exit 1"

# A bad config and a bad policy: both reported.
printf 'return { bogus = 1 }\n' > "$bad/steward.lua"
(cd "$bad" && "$BIN" check) > "$d/out" 2>&1; rc=$?
check '[ $rc -eq 1 ] && has "unknown key '"'"'bogus'"'"'" "$d/out" && has "policies/nohandle.lua" "$d/out" && has "7 problems found" "$d/out"' \
      "config and policy problems are listed together"

# Usage, and the shipped policies.
"$BIN" check --nope 2> "$d/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "unknown argument" "$d/err"' "an unknown argument: exit 2"
(cd "$here" && "$BIN" check --policies policies -c /dev/null) > "$d/out" 2>&1; rc=$?
check '[ $rc -eq 1 ]' "a config that returns nothing is a problem"
(cd "$here" && "$BIN" check --policies policies) > "$d/out" 2>&1; rc=$?
check '[ $rc -eq 0 ] && grep -q "^ok: " "$d/out"' "the shipped policies check clean"
echo "1..$n"
