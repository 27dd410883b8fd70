-- Spec for policies/success/tickets.lua on the fake clock: routing by tenant, plan and
-- severity (first rule wins), the SLA timer and its TicketSLABreached alert (none for a ticket
-- solved in time; resolved on close), and the CSAT survey with its signed link on close.
-- Run with `steward test policies/success`.
local tickets = require "steward.success.tickets"

local fired = emitted -- steward test: the data of the events of a type

local function open(p, fields)
  fields.subject = fields.subject or "cannot log in"
  fields.requester = fields.requester or "ann@acme.example"
  local t = assert(tickets.open(store, fields))
  p:handle({ type = "ticket.opened", tenant = t.tenant, data = { ticket = t.id } })
  return assert(tickets.get(store, t.id))
end

describe("success.tickets", function()
  local p
  before_each(function() p = policy.load("policies/success/tickets.lua") end)

  describe("routing", function()
    it("sends urgent tickets to the urgent queue with a 4h SLA, whatever the plan", function()
      local t = open(p, { tenant = "acme", severity = "urgent", plan = "enterprise" })
      assert.equal(t.queue, "urgent")
      assert.equal(t.sla_due, clock.now() + 4 * 3600)
    end)

    it("sends an enterprise plan's other tickets to the enterprise queue", function()
      local t = open(p, { tenant = "acme", severity = "high", plan = "enterprise" })
      assert.equal(t.queue, "enterprise")
      assert.equal(t.sla_due, clock.now() + 8 * 3600)
    end)

    it("sends the rest to the default queue with the default SLA", function()
      local t = open(p, { tenant = "beta", severity = "low", plan = "basic" })
      assert.equal(t.queue, "general")
      assert.equal(t.sla_due, clock.now() + 24 * 3600)
    end)

    it("matches a tenant and lists of values, in the configured order", function()
      p = policy.load("policies/success/tickets.lua", { config = { rules = {
        { match = { tenant = "vip" }, queue = "vip", sla = "1h" },
        { match = { severity = { "high", "urgent" } }, queue = "hot" } } } })
      assert.same(p:decide({ tenant = "vip", severity = "low" }), { queue = "vip", sla = 3600 })
      assert.same(p:decide({ tenant = "x", severity = "high" }), { queue = "hot", sla = 86400 })
      assert.same(p:decide({ tenant = "x", severity = "low" }), { queue = "general", sla = 86400 })
    end)

    it("refuses a rule with an unknown match field, naming it (policy_config is checked at load)", function()
      local schema = require "steward.runtime.policy.schema"
      local ok, err = schema.apply({ file = "tickets.lua", name = "success.tickets", config_decl = p.def.config_decl },
        { env = { ["success.tickets"] = { rules = { { match = { colour = "red" }, queue = "q" } } } } })
      assert.falsy(ok)
      assert.match(err, "rules%[1%]%.match%.colour: unknown field")
    end)

    it("routes a ticket once when its event is handled again", function()
      local t = open(p, { tenant = "acme" })
      p:handle({ type = "ticket.opened", tenant = "acme", data = { ticket = t.id } })
      assert.count(fired("ticket.routed"), 1)
      assert.count(clock.pending(), 1)
    end)
  end)

  describe("SLA", function()
    it("raises TicketSLABreached when the SLA passes with the ticket open", function()
      local t = open(p, { tenant = "acme", severity = "urgent" })
      clock.advance("3h59m")
      assert.count(fired("alert.firing"), 0)
      clock.advance("1m")
      local a = fired("alert.firing")
      assert.count(a, 1)
      assert.same(a[1].labels, { alertname = "TicketSLABreached", ticket = t.id, tenant = "acme", queue = "urgent",
        severity = "warning" })
      assert.truthy(tickets.get(store, t.id).breached)
      assert.count(fired("ticket.sla_breached"), 1)
    end)

    it("raises nothing for a ticket solved in time", function()
      local t = open(p, { tenant = "acme", severity = "urgent" })
      clock.advance("1h")
      assert(tickets.set_state(store, t.id, "solved", "agent"))
      clock.advance("4h")
      assert.count(fired("alert.firing"), 0)
      assert.falsy(tickets.get(store, t.id).breached)
    end)

    it("resolves the alert when the breached ticket is solved", function()
      local t = open(p, { tenant = "acme", severity = "urgent" })
      clock.advance("5h")
      assert(tickets.set_state(store, t.id, "solved", "agent"))
      p:handle({ type = "ticket.solved", tenant = "acme", data = { ticket = t.id } })
      assert.count(fired("alert.resolved"), 1)
    end)
  end)

  describe("CSAT", function()
    it("mails the survey with a signed link when the ticket is closed", function()
      p = policy.load("policies/success/tickets.lua", { config = { csat = { channel = "email",
        url = "smtp://127.0.0.1:2525", from = "support@example.org" } } })
      local t = open(p, { tenant = "acme", requester = "bob@acme.example" })
      assert(tickets.set_state(store, t.id, "closed", "agent"))
      p:handle({ type = "ticket.closed", tenant = "acme", data = { ticket = t.id } })
      assert.count(captured.mail, 1)
      local m = captured.mail[1]
      local to = type(m.to) == "table" and m.to[1] or m.to
      assert.equal(to, "bob@acme.example")
      local exp, sig = tostring(m.body):match("/v1/csat/" .. t.id:gsub("%-", "%%-") .. "/rate%?exp=(%d+)&sig=(%x+)")
      assert.truthy(sig, "a signed link in the mail")
      assert.truthy(tickets.csat_verify(t.id, "rate", exp, sig))
      assert.falsy(tickets.csat_verify(t.id, "rate", exp, sig:sub(2) .. "0"))
    end)

    it("records one answer per ticket, 1 to 5, only once closed", function()
      local t = open(p, { tenant = "acme" })
      local ok, err = tickets.rate(store, t.id, 5, "")
      assert.falsy(ok)
      assert.match(err, "not closed")
      assert(tickets.set_state(store, t.id, "closed", "agent"))
      ok, err = tickets.rate(store, t.id, 6, "")
      assert.match(err, "score: an integer from 1 to 5")
      assert(tickets.rate(store, t.id, 4, "quick"))
      ok, err = tickets.rate(store, t.id, 1, "changed my mind")
      assert.falsy(ok)
      assert.match(err, "already answered")
      assert.same(tickets.csat(store, { tenant = "acme" }),
        { { tenant = "acme", queue = "general", answers = 1, average = 4, satisfied = 1 } })
    end)
  end)

  it("refuses a move the states do not allow", function()
    local t = open(p, { tenant = "acme" })
    assert(tickets.set_state(store, t.id, "closed", "agent"))
    local ok, err = tickets.set_state(store, t.id, "open", "agent")
    assert.falsy(ok)
    assert.match(err, "a closed ticket cannot become open")
  end)
end)
