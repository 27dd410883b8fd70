-- Passing fixture spec for tests/e2e/steward_test.t: the fake clock fires a durable timer,
-- stubbed HTTP is recorded, mail and emitted events are captured, decide is driven.
local kv = require "steward.kv"
local time = require "steward.time"

local WEBHOOK = "https://hooks.slack.com/services/T0/B0/x"

describe("escalate", function()
  local p
  local order = {}
  before_each(function()
    -- relative to this spec's directory; ctx fields given here reach every handler run
    p = policy.load("escalate.lua", { ctx = { store = store } })
    http_stub.on("POST", WEBHOOK, { status = 200, body = "ok" })
    order[#order + 1] = "outer before"
  end)
  after_each(function() order[#order + 1] = "outer after" end)

  describe("a new incident", function()
    local id = "i1" -- every test has a fresh store: the same id each time
    before_each(function()
      order[#order + 1] = "inner before"
      p:handle({ type = "incident.opened", tenant = "t1", data = { incident = id } })
    end)
    after_each(function() order[#order + 1] = "inner after" end)

    it("posts to the webhook (recorded)", function()
      assert.count(captured.http, 1)
      assert.equal(captured.http[1].method, "POST")
      assert.equal(captured.http[1].url, WEBHOOK)
      assert.same(require("steward.json").decode(captured.http[1].body), { text = "incident " .. id .. " opened" })
      assert.equal(captured.http[1].response.status, 200)
    end)

    it("arms a durable timer due in 15 minutes", function()
      assert.count(captured.timers, 1)
      assert.equal(captured.timers[1].due_at, clock.now() + 900)
      assert.count(clock.pending(), 1)
    end)

    it("escalates when the clock passes the timer: mail, event, state", function()
      clock.advance("14m")
      assert.count(captured.fired, 0)
      clock.advance("1m")
      assert.count(captured.fired, 1)
      assert.equal(captured.fired[1].type, "incident.escalate")
      assert.same(captured.fired[1].data, { incident = id })
      assert.count(captured.mail, 1)
      assert.equal(captured.mail[1].to, "oncall@example.org")
      assert.count(captured.events, 1)
      assert.equal(captured.events[1].type, "incident.escalated")
      assert.count(clock.pending(), 0)
    end)

    it("does not escalate an acknowledged incident", function()
      p:handle({ type = "incident.acked", tenant = "t1", data = { incident = id } })
      clock.advance("1h")
      assert.count(captured.fired, 0)
      assert.count(captured.mail, 0)
      assert.count(captured.events, 0)
      assert.count(writes_to("timers"), 2) -- armed, then cancelled
    end)

    it("records the store writes", function()
      local w = writes_to("timers")
      assert.count(w, 1)
      assert.match(w[1].sql, "^INSERT INTO timers")
      assert.equal(w[1].params[1], "k:esc:" .. id)
      assert.count(writes_to("kv"), 0)
    end)
  end)

  it("runs before_each and after_each outer to inner and back", function()
    assert.same(order, { "outer before", "inner before", "inner after", "outer after",
                         "outer before", "inner before", "inner after", "outer after",
                         "outer before", "inner before", "inner after", "outer after",
                         "outer before", "inner before", "inner after", "outer after",
                         "outer before", "inner before", "inner after", "outer after",
                         "outer before" })
  end)

  it("fails the handler when the webhook answers an error", function()
    http_stub.on("POST", WEBHOOK, { status = 500, body = "down" })
    assert.error(function()
      p:handle({ type = "incident.opened", tenant = "t1", data = { incident = "x2" } })
    end, "webhook answered 500")
  end)

  it("passes a stub's transport error to the policy", function()
    http_stub.on("POST", "https://hooks.slack.com/*", { error = "Connection refused", kind = "connect" })
    assert.error(function()
      p:handle({ type = "incident.opened", tenant = "t1", data = { incident = "x3" } })
    end, "webhook: Connection refused")
  end)

  it("decides: page for critical, ticket otherwise", function()
    assert.same(p:decide({ severity = "critical" }), { route = "page", to = "oncall@example.org" })
    assert.same(p:decide({ severity = "low" }), { route = "ticket" })
  end)

  it("takes config overrides", function()
    local q = policy.load("escalate.lua", { config = { oncall = "night@example.org" } })
    assert.same(q:decide({ severity = "critical" }), { route = "page", to = "night@example.org" })
  end)
end)

describe("the fake clock", function()
  it("starts at 2026-01-01T00:00:00Z in every test, with an empty store", function()
    assert.equal(time.now(), 1767225600)
    assert.equal(clock.now(), 1767225600)
    assert.same(kv.ns("incidents", store):list(), {})
    kv.ns("incidents", store):put("x", 1) -- the next test must not see it
    assert.count(clock.pending(), 0)
  end)

  it("sleeps without waiting, and moves now and monotonic together", function()
    assert.same(kv.ns("incidents", store):list(), {}, "the previous test's store is gone")
    local t0, m0 = time.now(), time.monotonic()
    time.sleep("2h")
    assert.equal(time.now() - t0, 7200)
    assert.equal(time.monotonic() - m0, 7200)
  end)

  it("fires in-memory after and every timers in due order", function()
    local seen, base = {}, clock.now()
    local function mark(what) seen[#seen + 1] = what .. "@" .. (time.now() - base) end
    local tick = time.every("10s", mark, "tick")
    time.after("25s", mark, "after")
    clock.advance("30s")
    tick:cancel()
    clock.advance("30s")
    assert.same(seen, { "tick@10", "tick@20", "after@25", "tick@30" })
    assert.falsy(tick:pending())
  end)
end)

it("a pending test is reported as skipped")
