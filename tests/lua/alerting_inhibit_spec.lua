-- steward.alerting.inhibit: inhibition rules as Alertmanager 0.25 applies them (the
-- documented critical-inhibits-warning rule, equal labels, self-inhibition, resolved sources).
local t = require "steward.tap"
local inhibit = require "steward.alerting.inhibit"
local fingerprint = require "steward.alerting.fingerprint"

-- The example of Alertmanager's configuration docs.
local inh = assert(inhibit.new{
  { source_matchers = { 'severity="critical"' }, target_matchers = { 'severity="warning"' },
    equal = { "alertname", "cluster", "service" } },
})
local crit = { alertname = "HighLatency", cluster = "c1", service = "api", severity = "critical" }
local warn = { alertname = "HighLatency", cluster = "c1", service = "api", severity = "warning" }
local muted, fp = inh:mutes(warn, { crit })
t.ok(muted, "a critical alert mutes the warning with the same alertname/cluster/service")
t.is(fp, fingerprint.of(crit), "and names the source by fingerprint")
t.ok(not inh:mutes(crit, { crit, warn }), "the critical one is not a target")
local other = { alertname = "HighLatency", cluster = "c2", service = "api", severity = "warning" }
t.ok(not inh:mutes(other, { crit }), "a different cluster is not muted")
t.ok(not inh:mutes(warn, {}), "no source, no inhibition")
local w2 = { alertname = "X", severity = "warning" }
t.ok(inh:mutes(w2, { { alertname = "X", severity = "critical" } }),
  "equal labels absent from both alerts count as equal")
t.ok(not inh:mutes(w2, { { alertname = "X", severity = "critical", cluster = "c1" } }),
  "absent on one side and present on the other is not equal")
t.ok(not inh:mutes(warn, { { labels = crit, ends_at = 100 } }, 200), "a resolved source does not inhibit")
t.ok(inh:mutes(warn, { { labels = crit, ends_at = 300 } }, 200), "a source resolving later still does")

-- Self-inhibition: a rule whose source and target both match one alert.
local self_rule = assert(inhibit.new{
  { source_matchers = 's="1"', target_matchers = 't="1"', equal = { "e" } },
})
local both = { s = "1", t = "1", e = "1" }
t.ok(not self_rule:mutes(both, { both }), "an alert does not inhibit itself")
t.ok(not self_rule:mutes(both, { both, { s = "1", t = "1", e = "1", x = "2" } }),
  "nor is it inhibited by another alert that is also a target")
t.ok(self_rule:mutes(both, { { s = "1", e = "1" } }), "a source-only alert does inhibit it")
t.ok(self_rule:mutes({ t = "1", e = "1" }, { both }), "a two-sided alert inhibits a pure target")

-- Several rules; deprecated maps; regexes.
local multi = assert(inhibit.new{
  { source_match = { s1 = "1" }, target_match = { t1 = "1" }, equal = { "e" } },
  { source_match_re = { s2 = "1|2" }, target_matchers = 't2=~"a.*"' },
})
t.ok(multi:mutes({ t1 = "1", e = "x" }, { { s1 = "1", e = "x" } }), "first rule (match maps)")
t.ok(multi:mutes({ t2 = "abc" }, { { s2 = "2" } }), "second rule (regexes, no equal)")
local _, _, rule = multi:mutes({ t2 = "abc" }, { { s2 = "2" } })
t.is(rule, multi.rules[2], "mutes() returns the rule that matched")
t.ok(not multi:mutes({ t2 = "bc" }, { { s2 = "2" } }), "anchored target regex")
t.is(tostring(multi.rules[2].source), '{s2=~"^(?:1|2)$"}', "match_re is anchored as config.Regexp is")

-- Errors.
local r, err = inhibit.new{ { source_matchers = 'a=~"("' } }
t.ok(r == nil and err:find("inhibit_rules[1].source_matchers", 1, true), "bad matcher: " .. tostring(err))
r, err = inhibit.new{ { equal = { "not-a-label" } } }
t.ok(r == nil and err:find("invalid label name", 1, true), "bad equal label: " .. tostring(err))
t.raises(function() inhibit.new("x") end, "inhibit.new: rules: array expected", "non-table rules")
t.raises(function() inhibit.new{ { sorce_matchers = {} } } end, "unknown field sorce_matchers", "typo")
t.raises(function() inh:mutes(warn, "x") end, "alerts: array expected", "non-table alerts")
t.done()
