-- Windowed correlation (beyond Alertmanager): when `count` distinct alerts matching a rule
-- fire within `window`, one incident is opened (key "correlation:<rule>"); further matches
-- while the episode lasts (a match at most `window` after the previous one) attach to it.
local ipairs, format = ipairs, string.format

local M = {}

-- on_firing(eng, st, alert, now) -> list of incidents.trigger results | nil, err
function M.on_firing(eng, st, a, now)
  for _, rule in ipairs(eng.correlation) do
    if rule.matchers:matches(a.labels) then
      local res, err = st.db:batch({
        { "INSERT INTO alert_correlation_hits (rule, fingerprint, at) VALUES ($1,$2,$3) " ..
          "ON CONFLICT (rule, fingerprint) DO UPDATE SET at = excluded.at", rule.name, a.fingerprint, now },
        { "DELETE FROM alert_correlation_hits WHERE rule = $1 AND at <= $2", rule.name, now - rule.window },
      })
      if not res then return nil, err end
      local rows
      rows, err = st.db:query("SELECT COUNT(*) AS n FROM alert_correlation_hits WHERE rule = $1", rule.name)
      if not rows then return nil, err end
      local n = tonumber(rows[1].n)
      local state
      rows, err = st.db:query("SELECT triggered_at, last_at FROM alert_correlations WHERE rule = $1", rule.name)
      if not rows then return nil, err end
      state = rows[1]
      local ongoing = state and now - state.last_at <= rule.window
      if n >= rule.count or ongoing then
        local hits
        hits, err = st.db:query("SELECT fingerprint FROM alert_correlation_hits WHERE rule = $1 ORDER BY fingerprint", rule.name)
        if not hits then return nil, err end
        local fps = {}
        for i, h in ipairs(hits) do fps[i] = { fingerprint = h.fingerprint, status = "firing" } end
        local inc = rule.incident
        local incidents = eng:incidents_module()
        local ok, terr = incidents.trigger(st, {
          key = "correlation:" .. rule.name, service = inc.service, escalation = inc.escalation,
          severity = inc.severity or "critical",
          title = inc.title or format("%s: %d correlated alerts", rule.name, #fps),
          summary = format("%d alerts matching %s within %ds", #fps, tostring(rule.matchers), rule.window),
          labels = a.labels, alerts = fps, source = "alerting.correlation",
        })
        if not ok then return nil, "correlation " .. rule.name .. ": " .. tostring(terr) end
        local wres
        wres, err = st.db:exec("INSERT INTO alert_correlations (rule, triggered_at, last_at) VALUES ($1,$2,$2) " ..
          "ON CONFLICT (rule) DO UPDATE SET last_at = excluded.last_at, triggered_at = " ..
          "CASE WHEN alert_correlations.last_at < $3 THEN excluded.triggered_at ELSE alert_correlations.triggered_at END",
          rule.name, now, now - rule.window)
        if not wres then return nil, err end
      end
    end
  end
  return true
end

return M
