#!/usr/bin/env bash
# Differential test of steward.alerting.route against Alertmanager 0.25 itself: random routing
# trees (nested, continue, regex and negative matchers, inherited receivers) are written out
# as alertmanager.yml, random label sets are routed by `amtool config routes test`, and every
# answer must equal tree:receivers(labels). ALERTING_SEED=n reproduces a run; ALERTING_N sets
# the number of label sets per tree (default 250).
set -u
if ! command -v amtool >/dev/null 2>&1; then
    echo "1..0 # SKIP amtool not installed (Debian package prometheus-alertmanager)"
    exit 0
fi
BIN=${STEWARD_BIN:-build/steward}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

cat > "$dir/driver.lua" <<'LUA'
local route = require "steward.alerting.route"
local proc = require "steward.proc"
local t = require "steward.tap"

local dir = arg[1]
local seed = tonumber(os.getenv("ALERTING_SEED") or "") or 20230325
local N = tonumber(os.getenv("ALERTING_N") or "") or 250

-- Our own generator (a 31-bit LCG, high bits only: the low ones have short periods), so a
-- seed means the same cases on every machine.
local state = seed
local function rand(n)
  state = (state * 1103515245 + 12345) % 2147483648
  return math.floor(state / 65536) % n + 1
end
local function pick(t) return t[rand(#t)] end
local function chance(p) return rand(1000) <= p * 1000 end

local VALUES = {
  alertname = { "HighLatency", "DiskFull", "InstanceDown", "Watchdog" },
  severity = { "page", "critical", "warning", "info", "Page" },
  service = { "foo1", "foo2", "baz", "db-main", "dbx", "DBe", "web-1", "api-22", "api-x", "é-svc" },
  team = { "frontend", "backend", "db", "ops", "a,b", 'q"uote', "back\\slash", "sp ace" },
  env = { "prod", "staging", "dev", "prod-eu", "x-prod" },
  cluster = { "c1", "c2", "c10", "" },
  instance = { "host:9100", "10.0.0.1:80", "db1", "1234" },
}
local NAMES = {}
for k in pairs(VALUES) do NAMES[#NAMES + 1] = k end
table.sort(NAMES)

local REGEXES = { "foo1|foo2|baz", "db.*", ".*-prod", "(api|web)-[0-9]+", "[a-c].+", "page|critical",
  "", ".*", "warn(ing)?", "x?y*z+", "\\d+", "é.*", "(?i)DB.*", "[^:]+:\\d{2,4}", "c[0-9]", ".+" }

local function random_value(name)
  local vs = VALUES[name]
  return vs[rand(#vs)]
end

local function random_matcher()
  local name = pick(NAMES)
  local op = pick({ "=", "=", "!=", "!=", "=~", "=~", "!~" })
  local value = (op == "=~" or op == "!~") and pick(REGEXES) or random_value(name)
  -- Lua-side, a matcher is the text form Alertmanager's parser reads.
  local esc = value:gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" })
  return name .. op .. '"' .. esc .. '"'
end

-- Every config declares all receivers the generator can name (amtool checks they exist).
local receivers_used = { default = true, root = true, ["team-X"] = true, ["team-X-pager"] = true,
  ["team-DB"] = true, ["team-DB-pager"] = true, prod = true }
for i = 1, 12 do receivers_used["r" .. i] = true end
local function random_route(depth)
  local r = {}
  local nm = pick({ 0, 1, 1, 1, 2 })
  if nm > 0 then
    r.matchers = {}
    for i = 1, nm do r.matchers[i] = random_matcher() end
  end
  if chance(0.7) then
    r.receiver = "r" .. rand(12)
  end
  if chance(0.45) then r.continue = true end
  if chance(0.2) then r.group_by = { pick(NAMES) } end
  if depth < 3 and chance(0.6) then
    r.routes = {}
    for i = 1, rand(4) + 1 do r.routes[i] = random_route(depth + 1) end
  end
  return r
end

-- The equivalent alertmanager.yml (YAML double-quoted scalars, \xNN for control bytes).
local function yq(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
    return string.format("\\x%02x", c:byte())
  end) .. '"'
end

local function emit_route(r, indent, out, first_prefix)
  local pad = string.rep(" ", indent)
  local lines = {}
  if r.receiver then lines[#lines + 1] = "receiver: " .. yq(r.receiver) end
  if r.continue then lines[#lines + 1] = "continue: true" end
  if r.group_by then
    local q = {}
    for i, g in ipairs(r.group_by) do q[i] = yq(g) end
    lines[#lines + 1] = "group_by: [" .. table.concat(q, ", ") .. "]"
  end
  if r.matchers then
    local q = {}
    for i, m in ipairs(r.matchers) do q[i] = yq(m) end
    lines[#lines + 1] = "matchers: [" .. table.concat(q, ", ") .. "]"
  end
  if #lines == 0 then lines[1] = "continue: false" end
  for i, l in ipairs(lines) do
    out[#out + 1] = (i == 1 and first_prefix or pad) .. l
  end
  if r.routes then
    out[#out + 1] = pad .. "routes:"
    for _, c in ipairs(r.routes) do
      emit_route(c, indent + 4, out, pad .. "  - ")
    end
  end
end

local function to_yaml(spec)
  local out = { "route:" }
  emit_route(spec, 2, out, "  ")
  out[#out + 1] = "receivers:"
  local names = {}
  for name in pairs(receivers_used) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do out[#out + 1] = "  - name: " .. yq(name) end
  return table.concat(out, "\n") .. "\n"
end

local function random_labels()
  local ls = {}
  for _, name in ipairs(NAMES) do
    if chance(0.55) then
      local v = random_value(name)
      if v ~= "" then ls[name] = v end -- an empty value is an absent label to Alertmanager
    end
  end
  return ls
end

local function label_args(ls)
  local args, names = {}, {}
  for k in pairs(ls) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local esc = ls[k]:gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" })
    args[#args + 1] = k .. '="' .. esc .. '"'
  end
  return args
end

-- The trees: Alertmanager's documented example shape, then random ones.
local specs = {
  { receiver = "default", group_by = { "alertname", "cluster", "service" },
    routes = {
      { matchers = { 'service=~"foo1|foo2|baz"' }, receiver = "team-X",
        routes = { { matchers = { 'severity="critical"' }, receiver = "team-X-pager" } } },
      { matchers = { 'service="db-main"' }, receiver = "team-DB", continue = true,
        routes = { { matchers = { 'severity!~"info|warning"' }, receiver = "team-DB-pager" } } },
      { matchers = { 'team!="ops"', 'env=~".*prod"' }, receiver = "prod" },
    } },
}
for i = 2, 5 do
  local r = random_route(0)
  r.matchers, r.continue = nil, nil
  r.receiver = "root"
  r.routes = r.routes or {}
  for j = #r.routes + 1, 5 do r.routes[j] = random_route(1) end
  specs[i] = r
end

t.plan(#specs * 2 + 1)
t.diag("seed ", seed, ", ", N, " label sets per tree")
local total, agree, multi, distinct = 0, 0, 0, {}
for i, spec in ipairs(specs) do
  local tree, err = route.new(spec)
  t.ok(tree, "tree " .. i .. " builds" .. (err and (": " .. err) or ""))
  local file = dir .. "/am" .. i .. ".yml"
  local f = assert(io.open(file, "w"))
  f:write(to_yaml(spec))
  f:close()
  local bad, shown = 0, 0
  for _ = 1, N do
    local ls = random_labels()
    local ours = tree and table.concat(tree:receivers(ls), ",") or "?"
    local cmd = { "amtool", "config", "routes", "test", "--config.file=" .. file,
      "--verify.receivers=" .. ours }
    for _, a in ipairs(label_args(ls)) do cmd[#cmd + 1] = a end
    local res = assert(proc.run{ cmd = cmd, timeout = 30 })
    local theirs = (res.stdout:match("^([^\n]*)") or "")
    total = total + 1
    if ours:find(",") then multi = multi + 1 end
    distinct[i .. ":" .. ours] = true
    if res.code == 0 and theirs == ours then
      agree = agree + 1
    else
      bad = bad + 1
      if shown < 5 then
        shown = shown + 1
        t.diag("tree ", i, " labels ", table.concat(label_args(ls), " "), ": amtool ", theirs,
          " (exit ", res.code, ") steward ", ours, " ", res.stderr)
      end
    end
  end
  t.is(bad, 0, string.format("tree %d: amtool and steward agree on %d/%d label sets", i, N - bad, N))
  if bad > 0 then t.diag("config: ", file, "\n", to_yaml(spec)) end
end
local nd = 0
for _ in pairs(distinct) do nd = nd + 1 end
t.diag(string.format("agreement: %d/%d; %d routed to several receivers (continue); %d distinct answers",
  agree, total, multi, nd))
t.ok(total >= 200 and agree == total and multi >= total / 10 and nd >= 20,
  string.format("%d of %d routings agree, %d through continue, %d distinct answers", agree, total, multi, nd))
t.done()
LUA

"$BIN" script "$dir/driver.lua" "$dir"
rc=$?
# ALERTING_KEEP=DIR keeps the generated configs for a look with amtool.
if [ -n "${ALERTING_KEEP:-}" ]; then cp "$dir"/*.yml "$ALERTING_KEEP"/; fi
exit $rc
