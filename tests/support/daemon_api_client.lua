-- The checks of tests/e2e/daemon_api.t, against a daemon on $PORT with admin token $TOKEN.
local t = require "steward.tap"
local http = require "steward.http"
local json = require "steward.json"
local time = require "steward.time"
local fs = require "steward.fs"

local base = "http://127.0.0.1:" .. os.getenv("PORT")
local admin = os.getenv("TOKEN")

local function call(method, path, body, token, headers)
  local h = { ["content-type"] = "application/json" }
  if token then h.authorization = "Bearer " .. token end
  for k, v in pairs(headers or {}) do h[k] = v end
  local res, err = http.request({ method = method, url = base .. path, headers = h,
    body = body and (type(body) == "string" and body or json.encode(body)) or nil, timeout = 10 })
  assert(res, err)
  local decoded = res.body ~= "" and json.decode(res.body) or nil
  return res.status, decoded, res
end

-- Waits until cond() holds (the daemon handles events asynchronously); false after 10 s.
local function eventually(cond)
  local deadline = time.monotonic() + 10
  while time.monotonic() < deadline do
    if cond() then return true end
    time.sleep(0.02)
  end
  return false
end

-- health, auth
local s, b = call("GET", "/healthz")
t.is(s, 200, "/healthz needs no token")
s, b = call("GET", "/readyz")
t.is(s, 200, "/readyz is 200 once the store is open and policies loaded")
s, b = call("GET", "/v1/events")
t.is(s, 401, "no token: 401")
t.is(b.error.code, "unauthorized", "JSON error body with a code")
s = call("GET", "/v1/events", nil, "stw_wrong")
t.is(s, 401, "an unknown token: 401")
s = call("GET", "/v1/events", nil, admin)
t.is(s, 200, "the admin token reads events")

-- tokens
local s1, tok = call("POST", "/v1/tokens", { role = "ingest", tenant = "acme", name = "acme-ci" }, admin)
t.is(s1, 201, "admin creates a tenant ingest token")
t.like(tok.token, "^stw_", "the secret is returned once")
local _, viewer = call("POST", "/v1/tokens", { role = "viewer" }, admin)
local _, op = call("POST", "/v1/tokens", { role = "operator", tenant = "acme" }, admin)
s, b = call("POST", "/v1/tokens", { role = "root" }, admin)
t.is(s, 400, "an unknown role is refused")
t.is(b.error.details.errors[1].field, "role", "the error names the field")
s = call("POST", "/v1/tokens", { role = "viewer" }, viewer.token)
t.is(s, 403, "a viewer may not create tokens")
s, b = call("GET", "/v1/tokens", nil, admin)
t.ok(s == 200 and #b.tokens == 3 and b.tokens[1].token == nil, "tokens are listed without secrets")

-- ingest: validation is all or nothing
s, b = call("POST", "/v1/events", { { type = "test.ok" }, { type = "Bad Type" }, { data = 5 } }, admin)
t.is(s, 400, "an invalid batch is refused")
t.is(b.error.code, "invalid_events", "code invalid_events")
t.is(#b.error.details.errors, 2, "every bad event is listed")
t.is_deeply({ b.error.details.errors[1].index, b.error.details.errors[1].field }, { 1, "type" }, "with its index and field")
s, b = call("GET", "/v1/events?type=test.ok", nil, admin)
t.is(#b.events, 0, "nothing of a refused batch was stored")
s, b = call("POST", "/v1/events", "{not json", admin)
t.ok(s == 400 and b.error.code == "invalid_json", "malformed JSON: 400 invalid_json")
s, b = call("POST", "/v1/events", "[]", admin)
t.ok(s == 400 and b.error.code == "invalid_body", "an empty array: 400")
local many = {}
for i = 1, 51 do many[i] = { type = "test.many" } end
s, b = call("POST", "/v1/events", many, admin)
t.ok(s == 413 and b.error.code == "batch_too_large", "more than limits.max_batch events: 413")
s = call("POST", "/v1/events", { type = "test.x" }, admin, { ["content-type"] = "text/plain" })
t.is(s, 415, "a non-JSON content type: 415")

-- ingest: accepted, duplicates, ids
s, b = call("POST", "/v1/events", { { id = "e1", type = "test.ok", tenant = "acme", data = { n = 1 } },
  { id = "e2", type = "test.ok", tenant = "other" }, { id = "e1", type = "test.ok" } }, admin)
t.is(s, 202, "a valid batch: 202")
t.is_deeply(b, { accepted = 2, duplicates = 1, ids = { "e1", "e2", "e1" } }, "accepted, duplicates and ids")
s, b = call("POST", "/v1/events", { id = "e1", type = "test.ok" }, admin)
t.is_deeply(b, { accepted = 0, duplicates = 1, ids = { "e1" } }, "a re-sent event is a duplicate")
s, b = call("POST", "/v1/events", { type = "test.ok" }, admin)
t.like(b.ids[1], "^%x+%-%x+%-7%x+%-%x+%-%x+$", "an id is assigned (UUIDv7) when absent")

-- tenant scoping
s, b = call("POST", "/v1/events", { type = "test.ok", id = "t1" }, tok.token)
t.is(s, 202, "a tenant token posts without a tenant")
s, b = call("GET", "/v1/events?tenant=acme&type=test.ok", nil, admin)
local found
for _, ev in ipairs(b.events) do if ev.id == "t1" then found = ev end end
t.is(found and found.tenant, "acme", "the event gets the token's tenant")
s, b = call("POST", "/v1/events", { { type = "test.ok" }, { type = "test.ok", tenant = "other" } }, tok.token)
t.is(s, 403, "a tenant token may not write another tenant's events")
t.is(b.error.details.errors[1].index, 1, "the refused event's index is named")
s = call("GET", "/v1/events", nil, tok.token)
t.is(s, 403, "an ingest token may not read")
s, b = call("GET", "/v1/events?type=test.ok", nil, op.token)
local tenants = {}
for _, ev in ipairs(b.events) do tenants[ev.tenant or "-"] = true end
t.ok(s == 200 and tenants.acme and not tenants.other, "a tenant operator reads only its tenant")
s = call("GET", "/v1/events?tenant=other", nil, op.token)
t.is(s, 403, "asking for another tenant: 403")

-- queries and cursors
local ids = {}
for i = 1, 7 do ids[i] = { id = "page" .. i, type = "test.page" } end
call("POST", "/v1/events", ids, admin)
local seen, cursor, pages = {}, nil, 0
repeat
  s, b = call("GET", "/v1/events?type=test.page&limit=3" .. (cursor and ("&cursor=" .. cursor) or ""), nil, admin)
  pages = pages + 1
  for _, ev in ipairs(b.events) do seen[#seen + 1] = ev.id end
  cursor = b.next_cursor ~= json.null and b.next_cursor or nil
until not cursor or pages > 5
t.is(table.concat(seen, ","), "page1,page2,page3,page4,page5,page6,page7", "cursor paging returns every event once, in order")
s, b = call("GET", "/v1/events?type=test.*&limit=1000", nil, admin)
t.ok(#b.events >= 10, "type patterns with .*")
s, b = call("GET", "/v1/events?limit=0", nil, admin)
t.ok(s == 400 and b.error.details.errors[1].field == "limit", "a bad limit: 400 naming the field")
s, b = call("GET", "/v1/events?bogus=1", nil, admin)
t.ok(s == 400 and b.error.details.errors[1].field == "bogus", "an unknown parameter: 400")

-- dispatch: handled at least once
local record = os.getenv("RECORD_FILE")
local function handled()
  local text = fs.read(record) or ""
  local set = {}
  for id in text:gmatch("[^\n]+") do set[id] = (set[id] or 0) + 1 end
  return set
end
t.ok(eventually(function() local h = handled(); return h.e1 and h.e2 and h.page7 end), "the policy handles committed events")
t.is(handled().e1, 1, "a duplicate is not handled twice")

-- a policy's own timeout bounds a run that waits
call("POST", "/v1/events", { id = "slow-1", type = "test.slow" }, admin)
t.ok(eventually(function()
  local _, body = call("GET", "/v1/decisions?policy=test.slow&outcome=timeout", nil, admin)
  return body.decisions[1] ~= nil and body.decisions[1].event_id == "slow-1"
end), "a run past the policy's timeout ends as a timeout")

-- when(): a policy's filter beyond the type pattern
call("POST", "/v1/events", { { id = "pick-yes", type = "test.pick", data = { pick = true } },
                             { id = "pick-no", type = "test.pick", data = { pick = false } } }, admin)
t.ok(eventually(function() return handled()["picked:pick-yes"] end), "an event when() accepts is handled")
t.ok(not handled()["picked:pick-no"], "an event when() refuses is not")

-- retries and dead letters
s, b = call("POST", "/v1/events", { id = "boom", type = "test.fail", data = { fail = true } }, admin)
t.is(s, 202, "an event whose handler fails is still accepted")
local dl
t.ok(eventually(function()
  local _, body = call("GET", "/v1/dead-letters", nil, admin)
  dl = body.dead_letters[1]
  return dl ~= nil
end), "after its retries the event is a dead letter")
if not t.ok(dl and dl.event_id == "boom" and dl.attempts == 2 and dl.error:find("asked to fail"), "with its attempts and error") then
  t.diag("dead letter: " .. json.encode(dl or {}))
end
s = call("POST", "/v1/dead-letters/" .. dl.id .. "/requeue", nil, viewer.token)
t.is(s, 403, "a viewer may not requeue")
s = call("POST", "/v1/dead-letters/999999/requeue", nil, admin)
t.is(s, 404, "requeue of an unknown id: 404")
s = call("POST", "/v1/dead-letters/" .. dl.id .. "/requeue", nil, admin)
t.is(s, 202, "requeue: 202")
t.ok(eventually(function()
  local _, body = call("GET", "/v1/dead-letters", nil, admin)
  return #body.dead_letters >= 1 and body.dead_letters[1].id ~= dl.id
end), "the requeued event runs again and fails again into a new dead letter")

-- decisions
s, b = call("POST", "/v1/decide/test.threshold", { value = 0.07, secret = "hunter2" }, tok.token)
t.is(s, 200, "decide answers 200 (an ingest token may decide)")
t.is_deeply(b.result, { severity = "critical", policy = "test.threshold" }, "with the policy's result")
t.ok(b.policy.name == "test.threshold" and #b.policy.version == 16, "the policy's name and version")
t.like(b.decision_id, "^%x+%-%x+%-7", "and a decision id")
local decision_id = b.decision_id
s, b = call("POST", "/v1/decide/test.threshold", { explode = true }, admin)
t.is(s, 500, "an error in decide is a 500")
t.ok(b.error.code == "policy_error" and b.error.message:find("asked to explode") and b.error.details.decision_id,
  "with the policy's error and a decision id")
s, b = call("POST", "/v1/decide/test.threshold", { label = true }, admin)
t.is(b.result.label, "env", "ctx.config: the policy's default under the configuration's policy_config")
s, b = call("POST", "/v1/decide/test.threshold", { label = true, tenant = "acme" }, admin)
t.is(b.result.label, "acme", "ctx.config: a tenant's overlay for that tenant")
s, b = call("POST", "/v1/decide/test.threshold", { spin = true }, admin)
t.ok(s == 500 and b.error.message:find("cpu budget exceeded"), "a runaway decide is stopped by its CPU budget: 500")
local spun_decision
t.ok(eventually(function()
  local _, body = call("GET", "/v1/decisions?policy=test.threshold&outcome=timeout", nil, admin)
  spun_decision = body.decisions[1]
  return spun_decision ~= nil
end), "and logged with outcome timeout")
s = call("POST", "/v1/decide/test.nothing", {}, admin)
t.is(s, 404, "decide on a missing policy: 404")
s = call("POST", "/v1/decide/test.record", {}, admin)
t.is(s, 404, "decide on a policy without decide: 404")
s = call("POST", "/v1/decide/test.threshold", "{bad", admin)
t.is(s, 400, "decide with malformed JSON: 400")
s = call("POST", "/v1/decide/test.threshold", {}, viewer.token)
t.is(s, 403, "a viewer may not decide")
local logged
t.ok(eventually(function()
  local _, body = call("GET", "/v1/decisions?id=" .. decision_id, nil, admin)
  logged = body.decisions[1]
  return logged ~= nil
end), "the decision is in the decision log")
t.ok(logged and logged.policy == "test.threshold" and logged.outcome == "ok" and logged.result.severity == "critical",
  "with policy, outcome and result")
t.is(logged and logged.input.secret, "***", "masked fields are not stored (decision_mask)")
t.is(logged and logged.input.value, 0.07, "other input fields are")
s, b = call("GET", "/v1/decisions?policy=test.record&outcome=ok&limit=1000", nil, admin)
t.ok(s == 200 and #b.decisions >= 3 and b.decisions[1].event_id ~= nil, "every handling is in the decision log with its event")
s, b = call("GET", "/v1/decisions?policy=test.record&outcome=error", nil, admin)
t.ok(#b.decisions >= 2 and b.decisions[1].error:find("asked to fail"), "failed handlings are logged with their error")
s, b = call("GET", "/v1/decisions?limit=0", nil, admin)
t.is(s, 400, "a bad decisions query: 400")

-- policies
s, b = call("GET", "/v1/policies", nil, viewer.token)
local names = {}
for _, p in ipairs(b.policies) do names[#names + 1] = p.name end
t.is(table.concat(names, ","), "test.effects,test.picky,test.record,test.runaway,test.slow,test.threshold", "GET /v1/policies lists the loaded policies")
s, b = call("GET", "/v1/policies/test.threshold", nil, viewer.token)
t.ok(s == 200 and b.decides == true and b.handles == false, "GET /v1/policies/{name}")
s = call("GET", "/v1/policies/none", nil, viewer.token)
t.is(s, 404, "an unknown policy: 404")
s = call("POST", "/v1/policies/reload", nil, viewer.token)
t.is(s, 403, "a viewer may not reload")
s, b = call("POST", "/v1/policies/reload", nil, admin)
t.is(s, 200, "POST /v1/policies/reload")

-- simulate: a dry run records what the handler would do, and does none of it
s, b = call("POST", "/v1/policies/test.effects/simulate", { id = "sim-1", type = "test.effects", data = {} }, viewer.token)
t.is(s, 200, "POST /v1/policies/{name}/simulate")
t.is_deeply(b.result, { dry_run = true, status = 200 }, "the handler ran with ctx.dry_run and simulated answers")
local kinds = {}
for _, e in ipairs(b.side_effects or {}) do kinds[#kinds + 1] = e.kind end
t.is(table.concat(kinds, ","), "http,kv,timer,fs", "every side effect is reported in order")
t.is(b.side_effects[1].url, "http://127.0.0.1:9/hook", "with its details")
t.ok(not (fs.read(record) or ""):find("sim%-1"), "nothing was written for real")
s, b = call("GET", "/v1/policies/test.effects", nil, admin)
s = call("POST", "/v1/policies/test.effects/simulate", { type = "Bad" }, admin)
t.is(s, 400, "simulate validates the event")
s = call("POST", "/v1/policies/nope/simulate", { type = "a.b" }, admin)
t.is(s, 404, "simulate of an unknown policy: 404")

-- a runaway handler is stopped by its CPU budget; the daemon answers meanwhile
s = call("POST", "/v1/events", { id = "spin-1", type = "test.spin" }, admin)
t.is(s, 202, "an event for a runaway handler is accepted")
s = call("GET", "/healthz")
t.is(s, 200, "the daemon answers while the runaway handler runs")
local spun
t.ok(eventually(function()
  local _, body = call("GET", "/v1/decisions?policy=test.runaway&outcome=timeout", nil, admin)
  spun = body.decisions[1]
  return spun ~= nil
end), "the runaway run is in the decision log as a timeout")
t.like(spun and spun.error or "", "cpu budget exceeded", "with the budget named")

-- metrics
s, b, res = call("GET", "/metrics", nil, viewer.token)
t.is(s, 200, "/metrics with a token")
t.like(res.body, "steward_events_accepted_total %d+", "events accepted counter")
t.like(res.body, 'steward_handler_runs_total{policy="test.record",outcome="ok"} %d+', "handler runs by policy and outcome")
t.like(res.body, 'steward_dead_letters_total{policy="test.record"} %d+', "dead letters counter")
t.like(res.body, "steward_store_commits_total %d+", "store commits")
t.like(res.body, "steward_store_commit_seconds_total [%d.e-]+", "store commit time")
t.like(res.body, "steward_event_loop_lag_seconds", "event-loop lag")
t.like(res.body, "steward_lua_memory_bytes %d+", "Lua memory")
t.like(res.body, "steward_dispatch_queue_depth %d+", "dispatch queue depth")
t.like(res.body, 'steward_http_requests_total{route="/v1/events",status="202"} %d+', "requests by route and status")
t.like(res.body, "steward_handler_duration_seconds_bucket", "handler latency histogram")
s = call("GET", "/metrics")
t.is(s, 401, "/metrics needs a token unless metrics_public")

-- SIGHUP reload: a new policy is picked up
local dir = os.getenv("POLICY_DIR")
assert(fs.write(dir .. "/second.lua", [[
local fs = require "steward.fs"
return { name = "test.second", on = { "test.second" }, capabilities = { "fs.write" },
  handle = function(ev) assert(fs.write(os.getenv("RECORD_FILE"), "second:" .. ev.id .. "\n", { append = true })) end }
]]))
os.execute("kill -HUP " .. os.getenv("DAEMON_PID"))
t.ok(eventually(function()
  call("POST", "/v1/events", { type = "test.second" }, admin)
  for id in pairs(handled()) do if id:find("^second:") then return true end end
  return false
end), "SIGHUP loads a new policy")
assert(fs.write(dir .. "/broken.lua", "return {"))
os.execute("kill -HUP " .. os.getenv("DAEMON_PID"))
s, b = call("GET", "/readyz")
t.is(s, 200, "a broken policy file does not take the daemon down")
assert(fs.write(dir .. "/badfield.lua", 'return {\n  name = "test.badfield",\n  on = { "x.y" },\n  key = 5,\n  handle = function() end,\n}\n'))
local reloaded
s, reloaded = call("POST", "/v1/policies/reload", nil, admin)
s, b = call("GET", "/v1/policies", nil, admin)
local bad
for _, e in ipairs(b.errors) do if e.file:find("badfield") then bad = e end end
t.ok(bad and bad.line == 4 and bad.message:find("key: must be a function"), "a field error names the file, line and field")

local n = t.counts()
t.done({ plan = false })
