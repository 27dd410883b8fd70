-- steward.alerting.inhibit: Alertmanager 0.25's inhibition rules (inhibit/inhibit.go). A
-- target alert is muted while a firing source alert exists whose `equal` labels have the same
-- values (an absent label equals an absent one); an alert that matches both sides of a rule
-- is not muted by source alerts that also match the target side, so it never inhibits itself.
-- I/O-free: the caller passes the alerts that are firing now.
local matchers = require "steward.alerting.matchers"
local fingerprint = require "steward.alerting.fingerprint"

local type, error, ipairs, pairs, setmetatable, getmetatable, tostring, os =
  type, error, ipairs, pairs, setmetatable, getmetatable, tostring, os
local format = string.format

local M = {}

local KNOWN = { source_matchers = true, target_matchers = true, equal = true,
  source_match = true, source_match_re = true, target_match = true, target_match_re = true, name = true }

local Rule = {}
Rule.__index = Rule

-- Builds one side from the new-style matchers plus the deprecated maps, as config.go does.
local function side(spec, which, where)
  local list, err = matchers.list(spec[which .. "_matchers"], where .. "." .. which .. "_matchers")
  if not list then return nil, err end
  for _, pair in ipairs({ { "_match", "=" }, { "_match_re", "=~" } }) do
    local key = which .. pair[1]
    local map = spec[key]
    if map ~= nil then
      if type(map) ~= "table" then error(where .. "." .. key .. ": table expected, got " .. type(map), 3) end
      for name, value in pairs(map) do
        if type(name) ~= "string" or type(value) ~= "string" then
          error(where .. "." .. key .. ": string keys and values expected", 3)
        end
        if pair[2] == "=~" then value = "^(?:" .. value .. ")$" end
        local m, merr = matchers.new(pair[2], name, value)
        if not m then return nil, where .. "." .. key .. "." .. name .. ": " .. merr end
        list[#list + 1] = m
      end
    end
  end
  return list:sort()
end

-- rule(spec) -> rule, or nil, err. spec: source_matchers, target_matchers, equal (label names).
function M.rule(spec, where)
  where = where or "inhibit.rule"
  if type(spec) ~= "table" then error(where .. ": spec: table expected, got " .. type(spec), 2) end
  for k in pairs(spec) do
    if not KNOWN[k] then error(format("%s: unknown field %s", where, tostring(k)), 2) end
  end
  local src, err = side(spec, "source", where)
  if not src then return nil, err end
  local dst
  dst, err = side(spec, "target", where)
  if not dst then return nil, err end
  local equal = {}
  if spec.equal ~= nil then
    if type(spec.equal) ~= "table" then error(where .. ".equal: array of label names expected", 2) end
    for i, n in ipairs(spec.equal) do
      if type(n) ~= "string" then error(format("%s.equal[%d]: string expected, got %s", where, i, type(n)), 2) end
      if not n:match("^[A-Za-z_][A-Za-z0-9_]*$") then
        return nil, format("%s.equal[%d]: invalid label name %q", where, i, n)
      end
      equal[#equal + 1] = n
    end
  end
  return setmetatable({ source = src, target = dst, equal = equal, name = spec.name }, Rule)
end

-- An entry of `alerts` is a label table, or {labels = {...}, ends_at = seconds} (resolved
-- once ends_at is past, as Alert.Resolved()).
local function unpack_alert(a, now, where)
  if type(a) ~= "table" then error(where .. ": table expected, got " .. type(a), 4) end
  if type(a.labels) == "table" then
    local resolved = a.ends_at ~= nil and a.ends_at <= now
    return a.labels, resolved
  end
  return a, false
end

-- source(labels, alerts, now) -> fingerprint of the first firing alert that inhibits labels
-- under this rule, or nil.
function Rule:inhibited_by(labels, alerts, now)
  if type(labels) ~= "table" then error("rule:inhibited_by: labels: table expected, got " .. type(labels), 2) end
  if type(alerts) ~= "table" then error("rule:inhibited_by: alerts: array expected, got " .. type(alerts), 2) end
  if not self.target:matches(labels) then return nil end
  now = now or os.time()
  -- An alert that is itself a possible source must not be inhibited by alerts that are
  -- targets too: otherwise two such alerts would mute each other (and each itself).
  local two_sided = self.source:matches(labels)
  for i, a in ipairs(alerts) do
    local ls, resolved = unpack_alert(a, now, "alerts[" .. i .. "]")
    if not resolved and self.source:matches(ls) then
      local same = true
      for _, n in ipairs(self.equal) do
        if (ls[n] or "") ~= (labels[n] or "") then same = false break end
      end
      if same and not (two_sided and self.target:matches(ls)) then
        return fingerprint.of(ls)
      end
    end
  end
  return nil
end

local Inhibitor = {}
Inhibitor.__index = Inhibitor

-- new(rules) -> inhibitor, or nil, err. rules: array of rule specs (or rules).
function M.new(rules)
  if type(rules) ~= "table" then error("inhibit.new: rules: array expected, got " .. type(rules), 2) end
  local out = {}
  for i, spec in ipairs(rules) do
    if getmetatable(spec) == Rule then
      out[i] = spec
    else
      local r, err = M.rule(spec, "inhibit_rules[" .. i .. "]")
      if not r then return nil, err end
      out[i] = r
    end
  end
  return setmetatable({ rules = out }, Inhibitor)
end

-- mutes(labels, alerts [, now]) -> true, source fingerprint, rule | false
function Inhibitor:mutes(labels, alerts, now)
  if type(labels) ~= "table" then error("inhibitor:mutes: labels: table expected, got " .. type(labels), 2) end
  if type(alerts) ~= "table" then error("inhibitor:mutes: alerts: array expected, got " .. type(alerts), 2) end
  for _, r in ipairs(self.rules) do
    local fp = r:inhibited_by(labels, alerts, now)
    if fp then return true, fp, r end
  end
  return false
end

return M
