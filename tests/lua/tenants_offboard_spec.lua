-- steward.tenants.offboard and its archive on a real store: the archive signs every byte (a
-- flipped byte, a cut line or another key fails), run() exports exactly the tenant's rows of
-- every table (token hashes never), erases them, keeps the other tenant's, writes one proof to
-- the audit log, and carries on from a phase a crash left; misuse raises naming the argument.
local t = require "steward.tap"
local crypto = require "steward.crypto"
local store = require "steward.runtime.store"
local events = require "steward.runtime.events"
local audit_key = require "steward.runtime.store.audit_key"
local kv = require "steward.kv"
local archive = require "steward.tenants.offboard_archive"
local offboard = require "steward.tenants.offboard"
local suspension = require "steward.tenants.suspension"
require "steward.runtime.auth"

local spec = assert(loadfile("tests/support/domain_spec.lua"))()
local st = spec.st
store.set_default(st)

local function key()
  local k = assert(audit_key.from_pem((crypto.ed25519_pem(crypto.ed25519_keypair()))))
  return k
end

local function main()
  -- the archive alone
  local k1, k2 = key(), key()
  local text, digests, counts = archive.build("acme", { { name = "events", rows = { { id = "a1" }, { id = "a2" } } },
    { name = "kv", rows = {} } }, k1, "2026-01-01T00:00:00Z")
  t.is(counts.events, 2, "build counts the rows of each table")
  t.is(digests.kv, archive.sha256_hex(""), "an empty table's digest is the empty string's")
  local rep = assert(archive.verify(text, { k1 }))
  t.is(rep.tenant, "acme", "verify: the tenant from the header")
  t.is(rep.counts.events, 2, "verify: the rows per table")
  -- Every byte, each bit flipped in turn: no change goes unnoticed (the signature line's
  -- base64 has unused bits: those too).
  local passed = {}
  for i = 1, #text do
    for b = 0, 7 do
      local flipped = text:sub(1, i - 1) .. string.char(bit.bxor(text:byte(i), bit.lshift(1, b))) .. text:sub(i + 1)
      if archive.verify(flipped, { k1 }) then passed[#passed + 1] = i .. ":" .. b end
    end
  end
  t.is(table.concat(passed, " "), "", "no flipped bit of any byte verifies")
  local kept = {}
  for line in text:gmatch("[^\n]*\n") do if not line:find('"a2"', 1, true) then kept[#kept + 1] = line end end
  local cut = table.concat(kept)
  t.ok(#cut < #text, "(the line of a2 is cut)")
  t.like(select(2, archive.verify(cut, { k1 })), "does not match", "a removed line fails")
  t.like(select(2, archive.verify(text, { k2 })), "does not verify", "another key fails")
  t.raises(function() archive.build("acme", {}, { id = "x" }) end, "key", "build without a private key raises")

  -- run() on the store
  t.raises(function() offboard.run("Not An Id") end, "id", "run: a bad id raises naming it")
  local dir = spec.dir .. "/exports"
  offboard.configure({ key = k1, dir = dir })
  assert(events.append(st, { { id = "a1", type = "work.x", tenant = "acme" }, { id = "a2", type = "work.y", tenant = "acme" },
    { id = "g1", type = "work.x", tenant = "globex" } }))
  assert(kv.ns("tenant:acme:prefs"):put("color", "blue"))
  assert(kv.ns("tenant:acme_x:prefs"):put("color", "green")) -- '_' is no wildcard here
  assert(kv.ns("tenant:globex:prefs"):put("color", "red"))
  assert(st:sql("INSERT INTO api_tokens (id, hash, name, role, tenant, created) VALUES ('t1', 'secrethash', 'ci', 'viewer', 'acme', 1)"))

  -- a crash after the export: the state says exported; run() goes on from there
  offboard.fault = function(phase) if phase == "exported" then error("crash after " .. phase) end end
  local res, err = offboard.run("acme")
  t.ok(res == nil and tostring(err):match("crash after exported"), "a fault stops the run after the export")
  t.is(offboard.status("acme").phase, "exported", "... the phase is durable")
  t.is(#assert(st:sql("SELECT id FROM events WHERE tenant = 'acme'")), 2, "... nothing is erased yet")
  t.ok(suspension.get("acme"), "... and the tenant is suspended meanwhile")
  offboard.fault = nil
  local s = assert(offboard.run("acme"))
  t.is(s.phase, "done", "run again: done")
  local body = assert(archive.read(s.archive))
  rep = assert(archive.verify(body, { k1 }))
  t.is(rep.counts.events, 2, "the archive has acme's 2 events")
  t.is(rep.counts.kv, 1, "... its kv namespace only (not acme_x's)")
  t.is(rep.counts.api_tokens, 1, "... its token")
  t.ok(not body:find("secrethash", 1, true), "... without the token's hash")
  t.ok(not body:find("globex", 1, true), "... and nothing of globex")
  t.is(#assert(st:sql("SELECT id FROM events WHERE tenant = 'acme'")), 0, "acme's events are erased")
  t.is(#assert(st:sql("SELECT key FROM kv WHERE ns = 'tenant:acme:prefs'")), 0, "acme's kv is erased")
  t.is(#assert(st:sql("SELECT key FROM kv WHERE ns = 'tenant:acme_x:prefs'")), 1, "acme_x's kv is kept")
  t.is(#assert(st:sql("SELECT id FROM events WHERE tenant = 'globex'")), 1, "globex's event is kept")
  t.is(s.proof.tables.events.before, 2, "proof: events before")
  t.is(s.proof.tables.events.after, 0, "proof: events after")
  t.is(s.proof.sha256, rep.sha256, "proof: the archive's sha256")
  local entries = assert(st:sql("SELECT detail FROM audit WHERE command = 'tenant.offboard' AND target = 'acme'"))
  t.is(#entries, 1, "one proof entry in the audit log")
  t.ok(assert(offboard.run("acme")).phase == "done" and
    #assert(st:sql("SELECT id FROM audit WHERE command = 'tenant.offboard'")) == 1, "a finished offboarding run again adds nothing")

  -- incidents: the tenant's by their exact label ("x_y" as a LIKE pattern also matches "xzy")
  require "steward.alerting.incidents_schema"
  assert(st:migrate())
  local function incident(iid, tenant)
    assert(st:sql([[INSERT INTO incidents (id, key, service, title, summary, severity, state, labels, epoch,
        created_at, alert_at, updated_at, revision) VALUES ($1, $1, 'db', 't', 's', 'critical', 'resolved', $2, 1, 1, 1, 1, 1)]],
      iid, '{"tenant":"' .. tenant .. '"}'))
    assert(st:sql("INSERT INTO incident_timeline (id, incident_id, at, kind, data) VALUES ($1, $2, 1, 'opened', '{}')", iid .. "-t", iid))
  end
  incident("inc-xy", "x_y")
  incident("inc-xzy", "xzy")
  s = assert(offboard.run("x_y"))
  body = assert(archive.read(s.archive))
  -- an export written before exports were compressed (plain JSON lines) reads back as it is
  local plain = s.archive:gsub("%.zst$", "")
  local fh = assert(io.open(plain, "w")); fh:write(body); fh:close()
  t.is(archive.read(plain), body, "a plain (uncompressed) export reads back unchanged")
  t.ok(body:find("inc-xy", 1, true) and not body:find("inc-xzy", 1, true), "x_y's archive: its incident and timeline, not xzy's")
  t.is(s.proof.tables.incidents.before, 1, "proof: one incident before")
  t.is(s.proof.tables.incidents.after, 0, "proof: none after")
  t.is(#assert(st:sql("SELECT id FROM incidents WHERE id = 'inc-xzy'")), 1, "xzy's incident is kept")
  t.is(#assert(st:sql("SELECT id FROM incident_timeline WHERE incident_id = 'inc-xzy'")), 1, "... with its timeline")
  t.is(#assert(st:sql("SELECT id FROM incident_timeline WHERE incident_id = 'inc-xy'")), 0, "x_y's timeline is erased")

  -- a record steward.tenants moved to offboarding, then a crash before run() wrote anything
  require "steward.runtime.store.tenants"
  assert(st:migrate())
  assert(st:sql([[INSERT INTO tenants (id, name, plan, state, contact, branding, config, limits, created, updated, version)
    VALUES ('initech', 'Initech', 'basic', 'offboarding', '{}', '{}', '{}', '{}', 1, 1, 1)]]))
  assert(events.append(st, { { id = "i1", type = "work.x", tenant = "initech" } }))
  t.is(offboard.resume(), 1, "resume() finds the offboarding record without a run")
  t.is((offboard.status("initech") or {}).phase, "done", "... and offboards it")
  local left = assert(st:sql("SELECT type FROM events WHERE tenant = 'initech'"))
  t.ok(#left == 1 and left[1].type == "tenant.removed", "... its events erased; the record's tenant.removed announces the end")
end

spec.run(main)
