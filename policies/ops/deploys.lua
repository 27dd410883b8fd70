-- Keeps the last deploy of each service in the kv namespace "deploys" (who, which version,
-- when), so an on-call engineer can ask "what changed?" from the REPL:
--   kv("deploys"):get("checkout")
-- A deploy event must name its service; one that does not fails (and, after its retries,
-- becomes a dead letter) rather than being filed under a made-up name. docs/repl.md walks
-- through that incident.
--   curl -H "Authorization: Bearer $(cat var/admin.token)" \
--        -d '{"type":"deploy.finished","data":{"service":"checkout","version":"1.4.2","by":"ana"}}' \
--        localhost:8080/v1/events
local kv = require "steward.kv"

return {
  name = "ops.deploys",
  on = { "deploy.*" },
  key = function(ev) return ev.data and ev.data.service or ev.id end, -- in order per service
  handle = function(ev, ctx)
    local d = ev.data or {}
    if type(d.service) ~= "string" or d.service == "" then
      error("deploy event " .. tostring(ev.id) .. " has no data.service")
    end
    local ns = kv.ns("deploys")
    local ok, err = ns:put(d.service, { version = d.version, by = d.by, status = ev.type:match("^deploy%.(.+)$"),
      at = ev.time, event_id = ev.id })
    if not ok then error("cannot record the deploy: " .. tostring(err)) end
    ctx.log.info("deploy recorded", { service = d.service, version = d.version })
    return d.service
  end,
}
