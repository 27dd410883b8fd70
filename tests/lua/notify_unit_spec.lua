-- steward.notify without a network: Retry-After parsing, backoff, the token bucket, form
-- encoding, default templates' shapes, argument checking, and the history's claim protocol
-- (sending -> sent/failed, duplicates, busy and expired leases) on a real store.
local t = require "steward.tap"
local notify = require "steward.notify"
local util = require "steward.notify.util"
local history = require "steward.notify.history"
local json = require "steward.json"
local crypto = require "steward.crypto"

------------------------------------------------------------------------------ Retry-After
local now = 784111777 -- Sun, 06 Nov 1994 08:49:37 GMT
t.is(util.retry_after("120", now), 120, "Retry-After: delay-seconds")
t.is(util.retry_after(" 3 ", now), 3, "Retry-After: surrounding blanks ignored")
t.is(util.retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now), 10, "Retry-After: IMF-fixdate")
t.is(util.retry_after("Sunday, 06-Nov-94 08:49:47 GMT", now), 10, "Retry-After: RFC 850 date")
t.is(util.retry_after("Sun Nov  6 08:49:47 1994", now), 10, "Retry-After: asctime date")
t.is(util.retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now), 0, "Retry-After: a date in the past means now")
t.is(util.retry_after("soon", now), nil, "Retry-After: garbage is ignored")
t.is(util.retry_after("-5", now), nil, "Retry-After: negative is ignored")
t.is(util.retry_after(nil, now), nil, "Retry-After: absent")

--------------------------------------------------------------------------------- backoff
t.is(util.backoff(1, 1, 60, false), 1, "backoff: first retry waits base")
t.is(util.backoff(4, 1, 60, false), 8, "backoff: doubles per retry")
t.is(util.backoff(10, 1, 60, false), 60, "backoff: capped at max")
t.is(util.backoff(3, 1, 60, 0), 2, "backoff jitter: at least half")
t.ok(util.backoff(3, 1, 60, 0.999) < 4 and util.backoff(3, 1, 60, 0.999) > 3.99, "backoff jitter: at most all")
local r = util.random()
t.ok(r >= 0 and r < 1, "random in [0, 1)")

------------------------------------------------------------------------------ token bucket
local b = util.bucket(2, 1, 100)
t.is(b:take(100), 0, "bucket: a full bucket gives a token at once")
t.is(b:take(100), 0, "bucket: up to n at once")
t.is(b:take(100), 0.5, "bucket: then waits 1/rate")
t.is(b:take(100), 1, "bucket: reservations queue up behind each other")
t.is(b:take(102), 0, "bucket: refilled after idle time")
b = util.bucket(1, 10, 0)
t.is(b:take(0), 0, "bucket 1/10s: first free")
t.ok(math.abs(b:take(4) - 6) < 1e-9, "bucket 1/10s: the next token is due at 10s")

----------------------------------------------------------------------------------- misc
t.is(util.form_encode({ To = "+1 555", Body = "a&b=c ü" }), "Body=a%26b%3Dc+%C3%BC&To=%2B1+555", "form encoding")
t.is(util.rfc3339(1700000000.25), "2023-11-14T22:13:20.250Z", "RFC 3339 with milliseconds")
t.is(util.truncate("héllo", 5), "h…", "truncate never splits a UTF-8 sequence")
t.is(util.truncate("short", 10), "short", "truncate leaves short text")
t.is(util.severity("CRIT"), "critical", "severity synonyms")
t.is(util.severity("bogus"), "warning", "unknown severity is warning")

------------------------------------------------------------------------------ templates
local msg = { title = "API down", text = "5xx > 50%", severity = "error", labels = { svc = "api" },
              url = "https://x.example/a" }
local ctx = { key = "inc-9/1", now = 1700000000, cfg = { receiver = "r", external_url = "", max_alerts = 1 } }
local s = notify.templates.slack(msg, ctx)
t.ok(s.text:find("[ERROR] API down", 1, true) and json.is_array(s.blocks) and s.blocks[1].type == "header",
     "slack template: fallback text and blocks")
local c = notify.templates.teams(msg, ctx)
t.ok(c.type == "message" and c.attachments[1].contentType == "application/vnd.microsoft.card.adaptive"
     and c.attachments[1].content.type == "AdaptiveCard", "teams template: Adaptive Card envelope")
local p = notify.templates.pagerduty(msg, ctx)
t.ok(p.event_action == "trigger" and p.dedup_key == "inc-9/1" and p.payload.severity == "error"
     and p.payload.timestamp == "2023-11-14T22:13:20.000Z", "pagerduty template: trigger with dedup_key = key")
p = notify.templates.pagerduty({ title = "x", status = "resolved" }, ctx)
t.ok(p.event_action == "resolve" and p.payload == nil, "pagerduty template: a resolved message resolves")
t.raises(function() notify.templates.pagerduty({ action = "acknowledge" }, {}) end, "needs msg.dedup_key",
         "pagerduty: acknowledge without a dedup_key is refused")
t.raises(function() notify.templates.pagerduty({ action = "snooze" }, ctx) end, "trigger, acknowledge or resolve",
         "pagerduty: unknown action")
local w = notify.templates.webhook({ alerts = { { labels = { alertname = "A", i = "1" } },
                                                { labels = { alertname = "A", i = "2" } } } }, ctx)
t.ok(w.version == "4" and w.truncatedAlerts == 1 and #w.alerts == 1 and w.status == "firing"
     and w.alerts[1].fingerprint:match("^%x+$") and #w.alerts[1].fingerprint == 16,
     "webhook template: max_alerts truncates and counts, fingerprints")
t.is(json.encode(w.groupLabels), "{}", "webhook template: empty maps encode as JSON objects")
local e = notify.templates.email(msg, ctx)
t.ok(e.subject == "[ERROR] API down" and e.body:find("svc: api", 1, true), "email template: subject and body")
t.ok(notify.templates.sms(msg, ctx).Body:find("API down", 1, true), "sms template: Body")
local lf = notify.templates.log(msg, ctx)
t.ok(lf.title:find("API down", 1, true) and lf.text == "5xx > 50%" and lf.labels == "svc=api", "log template: title, text, labels")
t.raises(function() notify.channel("log", { level = "loud" }) end, "level: one of debug, info, warn, error expected",
  "log: an unknown level is named")

----------------------------------------------------------------------- argument checking
t.raises(function() notify.channel("fax", {}) end, "kind: one of email, log, pagerduty", "unknown kind")
t.raises(function() notify.channel("slack", {}) end, "webhook_url: string expected", "missing required option")
t.raises(function() notify.channel("slack", { webhook_url = "http://x", colour = 1 }) end, "colour: unknown option",
         "unknown option")
t.raises(function() notify.channel("pagerduty", { routing_key = "short" }) end, "routing_key: 32%-character",
         "routing_key length checked")
t.raises(function() notify.channel("slack", { webhook_url = "http://x", rate = { n = 0 } }) end, "rate.n",
         "bad rate")
t.raises(function() notify.channel("slack", { webhook_url = "http://x", timeout = "soon" }) end, "timeout",
         "bad duration")
t.raises(function() notify.channel("sms", { account_sid = "AC1", auth_token = "t" }) end, "from",
         "sms needs a sender")
t.raises(function() notify.channel("email", { url = "smtp://x", from = "a@b" }) end, "recipient",
         "email needs a recipient")
local ch = notify.channel("slack", { webhook_url = "http://127.0.0.1:1/x" })
t.raises(function() ch:send("text") end, "msg: table expected", "send: msg must be a table")
t.raises(function() ch:send({}, { key = "" }) end, "key: string of 1 to 255", "send: empty key")
t.raises(function() ch:send({}, { kee = "x" }) end, "kee: unknown option", "send: unknown option")
t.raises(function() notify.history{ status = "lost" } end, "status: sending, sent or failed", "history: bad status")
t.raises(function() notify.history{ limit = 0 } end, "limit", "history: bad limit")

------------------------------------------------------------------------ claim protocol
local function claims(h, label)
  local k = "k-" .. crypto.hex(crypto.random(4))
  local base = { channel = "c", kind = "webhook", key = k, summary = "s", lease = 60, now = 1000 }
  local state, row = h:claim(base)
  t.ok(state == "claimed" and row.id, label .. ": a new key is claimed")
  state = h:claim(base)
  t.is(state, "busy", label .. ": claimed again while its lease runs: busy")
  h:attempt(row.id, 1, 1100, 1001)
  local later = {}
  for kk, v in pairs(base) do later[kk] = v end
  later.now = 1090
  t.is((h:claim(later)), "busy", label .. ": an attempt renews the lease")
  later.now = 1101
  local st2, row2 = h:claim(later)
  t.ok(st2 == "claimed" and row2.id == row.id and row2.attempts == 1, label .. ": an expired lease is taken over")
  h:finish(row.id, { status = "failed", attempts = 1, last_error = "boom", now = 1102 })
  later.now = 1103
  st2 = h:claim(later)
  t.is(st2, "claimed", label .. ": a failed key may be sent again")
  h:finish(row.id, { status = "sent", attempts = 2, response_status = 200, now = 1104 })
  local st3, row3 = h:claim(later)
  t.ok(st3 == "duplicate" and row3.attempts == 2 and row3.response_status == 200 and row3.sent_at == 1104
       and row3.lease_until == nil, label .. ": a sent key is a duplicate")
  local nokey = {}
  for kk, v in pairs(base) do nokey[kk] = v end
  nokey.key = nil
  local a1, r1 = h:claim(nokey)
  local a2, r2 = h:claim(nokey)
  t.ok(a1 == "claimed" and a2 == "claimed" and r1.id ~= r2.id, label .. ": notifications without a key never collide")
  local rows = h:query{ key = k, limit = 10 }
  t.ok(#rows == 1 and rows[1].status == "sent" and rows[1].summary == "s", label .. ": query by key")
  t.is(h:purge(1105) >= 1, true, label .. ": purge removes finished rows")
  t.is(#h:query{ key = k, limit = 10 }, 0, label .. ": purged")
end

claims(history.memory(), "memory")
local st, tmp = require("tests.support.test_store").open()
claims(history.for_store(st), "store")
t.is(st:versions().notify, 1, "the store has the notify schema")
st:close()
if tmp then os.remove(tmp) end

t.done()
