-- Spec for policies/scaling/archive.lua: on its schedule it moves what is older than its
-- configured age into archive files, and events.replay still yields every event in order.
local events = require "steward.events"
local log_events = require "steward.runtime.events"
local store = require "steward.runtime.store"
local archive = require "steward.archive"
local fs = require "steward.fs"

local dir

describe("scaling.archive", function()
  before_each(function()
    dir = "/tmp/steward-archive-spec-" .. tostring(math.random(1, 1e9))
    archive.configure({ dir = dir })
  end)
  after_each(function()
    log_events.set_archive(nil) -- the next spec file in this process has no archive
    fs.remove(dir, { recursive = true })
  end)

  local function ingest(n, t)
    local list = {}
    for i = 1, n do list[i] = { type = "usage.recorded", data = { i = i } } end
    assert(log_events.append(store.default(), list, { now = t }))
  end

  it("archives events older than its age and keeps the newer ones", function()
    local p = policy.load("archive.lua", { config = { older_than = "30d" } })
    ingest(30, clock.now())
    clock.advance("31d")
    ingest(5, clock.now())
    local r = p:handle({ type = "policy.schedule", data = { policy = p.name } })
    assert.equal(r.events, 30)
    assert.equal(log_events.count(store.default()), 6) -- the 5 new ones and the schedule event
    local seqs = {}
    for e in events.replay({ type = "usage.recorded" }) do seqs[#seqs + 1] = e.seq end
    assert.count(seqs, 35)
    for i = 1, 35 do assert.equal(seqs[i], i) end
    assert.equal(archive.verify().ok, true)
  end)

  it("archives nothing younger than its age", function()
    local p = policy.load("archive.lua", { config = { older_than = "90d" } })
    ingest(10, clock.now())
    clock.advance("31d")
    local r = p:handle({ type = "policy.schedule", data = { policy = p.name } })
    assert.equal(r.events, 0)
    assert.count(archive.list(), 0)
  end)

  it("says what it would do on a dry run", function()
    local p = policy.load("archive.lua")
    assert.same(p:handle({ type = "policy.schedule" }, { dry_run = true }), { would = "archive", older_than = "30d" })
  end)
end)
