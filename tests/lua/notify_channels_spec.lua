-- steward.notify against real local receivers: tests/support/notify_receiver.py checks each
-- request against the vendor's API shape (Slack, Teams, PagerDuty v2, Twilio, Alertmanager v4)
-- and runs an SMTP server. Happy paths and payloads, 400 not retried, 429 Retry-After honoured,
-- 5xx retried with backoff, rate-limit spacing, idempotency keys, crash leftovers, history.
-- The spec starts the receiver itself (or uses NOTIFY_HTTP_PORT/NOTIFY_SMTP_PORT if set).
local t = require "steward.tap"
local notify = require "steward.notify"
local util = require "steward.notify.util"
local http = require "steward.http"
local json = require "steward.json"
local proc = require "steward.proc"
local task = require "steward.task"
local time = require "steward.time"
local crypto = require "steward.crypto"

local here = debug.getinfo(1, "S").source:match("^@(.*)/tests/lua/[^/]+$") or "."

-- The receiver prints "HTTP_PORT SMTP_PORT" into a fifo; head reads that one line (in a child
-- process, so the loop never blocks) and the receiver task is cancelled (SIGKILL) at the end.
local receiver
local function start_receiver()
  local hp, sp = os.getenv("NOTIFY_HTTP_PORT"), os.getenv("NOTIFY_SMTP_PORT")
  if hp and sp then return tonumber(hp), tonumber(sp) end
  local dir = assert(proc.run{ cmd = { "mktemp", "-d" } }).stdout:gsub("%s+$", "")
  local fifo = dir .. "/port"
  assert(assert(proc.run{ cmd = { "mkfifo", fifo } }).code == 0, "mkfifo failed")
  receiver = task.spawn(function()
    return proc.run{ cmd = { "sh", "-c", 'exec /usr/bin/python3 "$0" >"$1"',
                             here .. "/tests/support/notify_receiver.py", fifo } }
  end)
  local r = assert(proc.run{ cmd = { "head", "-n1", fifo }, timeout = 20 })
  proc.run{ cmd = { "rm", "-rf", dir } }
  hp, sp = r.stdout:match("^(%d+) (%d+)")
  assert(hp, "receiver did not start: " .. r.stdout .. r.stderr)
  return tonumber(hp), tonumber(sp)
end

local function main()
  local hp, sp = start_receiver()
  local base = "http://127.0.0.1:" .. hp
  local smtp = "smtp://127.0.0.1:" .. sp
  local st, tmp = require("tests.support.test_store").open()
  local run = crypto.hex(crypto.random(4))   -- keys unique per run: an external store keeps rows
  local t0 = time.now()

  local function ctl(path, body)
    local res = assert(http.request{ url = base .. "/_control/" .. path, body = body and json.encode(body),
                                     headers = { ["Content-Type"] = "application/json" } })
    return res.body ~= "" and json.decode(res.body) or nil, res.status
  end
  local function plan(route, responses) ctl("plan", { route = route, responses = responses }) end
  local function got(route) return (ctl("requests?route=" .. route)) end
  local function reset() ctl("reset", {}) end

  local msg = { title = "Disk full on db1", text = "/var is 93% full", severity = "critical",
                labels = { host = "db1", team = "storage" }, url = "https://grafana.example/d/1",
                source = "monitor-1" }
  local SID, TOKEN = "AC" .. string.rep("0123456789abcdef", 2), string.rep("a1B2", 8)
  local RK = string.rep("R0ut1ngK", 4)

  ------------------------------------------------------------------ happy paths, payloads
  reset()
  local slack = notify.channel("slack", { webhook_url = base .. "/slack/T00/B00/xyz", store = st })
  local res, err = slack:send(msg, { key = run .. "/slack-1" })
  t.ok(res and res.status == "sent" and res.attempts == 1 and res.response_status == 200,
       "slack: sent on the first attempt (" .. tostring(err) .. ")")
  local rq = got("slack")
  t.ok(#rq == 1 and rq[1].valid, "slack: the receiver accepted the payload as Slack's")
  t.ok(rq[1] and rq[1].json.text:find("Disk full on db1", 1, true) and rq[1].json.blocks[1].type == "header",
       "slack: fallback text and Block Kit blocks")
  t.is(rq[1] and res and res.response, "ok", "slack: the response body is returned")

  local teams = notify.channel("teams", { webhook_url = base .. "/teams/webhookb2/abc", store = st })
  res, err = teams:send(msg, { key = run .. "/teams-1" })
  rq = got("teams")
  t.ok(res and res.status == "sent" and #rq == 1 and rq[1].valid, "teams: Adaptive Card accepted (" .. tostring(err) .. ")")
  local card = rq[1] and rq[1].json.attachments[1].content
  t.ok(card and card.type == "AdaptiveCard" and card.body[1].text:find("Disk full", 1, true)
       and card.actions[1].url == msg.url, "teams: card with title and link")
  local teams_mc = notify.channel("teams", { name = "teams-legacy", webhook_url = base .. "/teams/legacy",
                                            format = "messagecard", store = st })
  res = teams_mc:send(msg)
  rq = got("teams")
  t.ok(res and res.status == "sent" and rq[2] and rq[2].valid and rq[2].json["@type"] == "MessageCard"
       and rq[2].json.summary, "teams: legacy MessageCard accepted")

  local pd = notify.channel("pagerduty", { routing_key = RK, base_url = base, store = st })
  res, err = pd:send(msg, { key = run .. "/incident-42" })
  rq = got("pagerduty")
  t.ok(res and res.status == "sent" and res.response_status == 202 and rq[1] and rq[1].valid,
       "pagerduty: trigger accepted with 202 (" .. tostring(err) .. ")")
  local ev = rq[1] and rq[1].json
  t.ok(ev and ev.routing_key == RK and ev.event_action == "trigger" and ev.dedup_key == run .. "/incident-42"
       and ev.payload.severity == "critical" and ev.payload.source == "monitor-1",
       "pagerduty: routing_key, event_action, dedup_key = the key, payload fields")
  t.is(res and json.decode(res.response).dedup_key, run .. "/incident-42", "pagerduty: PagerDuty's answer names the dedup_key")
  res = pd:send({ action = "resolve", dedup_key = run .. "/incident-42" }, { key = run .. "/incident-42/resolve" })
  rq = got("pagerduty")
  t.ok(res and res.status == "sent" and rq[2] and rq[2].valid and rq[2].json.event_action == "resolve"
       and rq[2].json.payload == nil, "pagerduty: resolve by dedup_key")

  local sms = notify.channel("sms", { account_sid = SID, auth_token = TOKEN, from = "+15005550006",
                                      to = "+14155552671", base_url = base, store = st })
  res, err = sms:send(msg, { key = run .. "/sms-1" })
  rq = got("twilio")
  t.ok(res and res.status == "sent" and res.response_status == 201 and rq[1] and rq[1].valid,
       "sms: Twilio message created (201) (" .. tostring(err) .. ")")
  t.ok(rq[1] and rq[1].path == "/2010-04-01/Accounts/" .. SID .. "/Messages.json" and rq[1].auth[1] == SID
       and rq[1].auth[2] == TOKEN, "sms: AccountSid in the path, basic auth")
  t.ok(rq[1] and rq[1].form.To == "+14155552671" and rq[1].form.From == "+15005550006"
       and rq[1].form.Body:find("Disk full on db1", 1, true), "sms: form-encoded To, From, Body")

  local hook = notify.channel("webhook", { url = base .. "/webhook/am", receiver = "ops", store = st,
                                           external_url = "https://steward.example" })
  res, err = hook:send(msg, { key = run .. "/hook-1" })
  rq = got("webhook")
  t.ok(res and res.status == "sent" and rq[1] and rq[1].valid,
       "webhook: Alertmanager v4 payload accepted (" .. tostring(err) .. ")")
  local am = rq[1] and rq[1].json
  t.ok(am and am.version == "4" and am.receiver == "ops" and am.status == "firing" and #am.alerts == 1
       and am.alerts[1].labels.alertname == "Disk full on db1" and am.alerts[1].endsAt == "0001-01-01T00:00:00Z",
       "webhook: version, receiver, status, one firing alert from the message")
  res = hook:send({ status = "resolved", alerts = {
    { labels = { alertname = "Down", job = "api", instance = "a" }, annotations = { summary = "a down" },
      startsAt = t0 - 60, endsAt = t0 },
    { labels = { alertname = "Down", job = "api", instance = "b" }, annotations = { summary = "b down" },
      startsAt = t0 - 60, endsAt = t0 } }, group_labels = { alertname = "Down" } })
  rq = got("webhook")
  am = rq[2] and rq[2].json
  t.ok(am and rq[2].valid and am.status == "resolved" and #am.alerts == 2 and am.commonLabels.job == "api"
       and am.commonLabels.instance == nil and am.groupKey == '{}:{alertname="Down"}',
       "webhook: several alerts, common labels, group key")

  local mail = notify.channel("email", { url = smtp, from = "Steward <steward@example.org>",
                                         to = { "ops@example.org" }, starttls = "no", store = st })
  res, err = mail:send(msg, { key = run .. "/mail-1" })
  rq = got("smtp")
  t.ok(res and res.status == "sent" and #rq == 1, "email: accepted by the SMTP server (" .. tostring(err) .. ")")
  t.ok(rq[1] and rq[1].to[1] == "ops@example.org" and rq[1].data:find("Subject: [CRITICAL] Disk full on db1", 1, true)
       and rq[1].data:find("/var is 93%% full") and rq[1].data:find("X-Steward-Notification: email/" .. run .. "/mail-1", 1, true),
       "email: recipient, subject, body, notification header")

  -- a per-channel template replaces the default one; the channel still adds its own fields
  reset()
  local custom = notify.channel("pagerduty", { name = "pd-custom", routing_key = RK, base_url = base, store = st,
    template = function(m, ctx)
      local ev2 = notify.templates.pagerduty(m, ctx)
      ev2.payload.summary = "custom: " .. m.title
      return ev2
    end })
  res = custom:send(msg, { key = run .. "/custom" })
  rq = got("pagerduty")
  t.ok(res and rq[1] and rq[1].valid and rq[1].json.payload.summary == "custom: Disk full on db1"
       and rq[1].json.routing_key == RK, "custom template: its payload is sent, routing_key added")

  ------------------------------------------------------------------------ failures, retries
  reset()
  local bad = notify.channel("slack", { name = "slack-bad", webhook_url = base .. "/slack/T/B/bad", store = st,
                                        backoff = { base = "10ms" }, template = function() return { username = "x" } end })
  local info
  res, err, info = bad:send(msg, { key = run .. "/bad" })
  rq = got("slack")
  t.ok(res == nil and err:find("HTTP 400", 1, true) and info.attempts == 1 and info.response_status == 400,
       "400: fails at once (" .. tostring(err) .. ")")
  t.is(#rq, 1, "400: the request is not retried")
  local h = notify.history{ store = st, key = run .. "/bad" }
  t.ok(#h == 1 and h[1].status == "failed" and h[1].attempts == 1 and h[1].last_error:find("no_text", 1, true),
       "400: history says failed, with the error")

  reset()
  plan("slack", { { status = 403, body = "action_prohibited" } })
  res, err, info = slack:send(msg, { key = run .. "/403" })
  t.ok(res == nil and #got("slack") == 1 and info.attempts == 1, "403: other 4xx are not retried either")

  reset()
  local fast = notify.channel("slack", { name = "slack-fast", webhook_url = base .. "/slack/T/B/fast", store = st,
                                         backoff = { base = "100ms", jitter = false } })
  plan("slack", { { status = 503, body = "down" }, { status = 500 } })
  res, err = fast:send(msg, { key = run .. "/5xx" })
  rq = got("slack")
  t.ok(res and res.status == "sent" and res.attempts == 3 and #rq == 3, "5xx: retried until it succeeds (3 attempts)")
  t.ok(rq[3] and rq[2].time - rq[1].time >= 0.1 and rq[3].time - rq[2].time >= 0.2,
       string.format("5xx: exponential backoff between attempts (%.3fs, %.3fs)", rq[2] and rq[2].time - rq[1].time or -1,
                     rq[3] and rq[3].time - rq[2].time or -1))
  h = notify.history{ store = st, key = run .. "/5xx" }
  t.ok(h[1] and h[1].status == "sent" and h[1].attempts == 3 and h[1].response_status == 200 and h[1].sent_at,
       "5xx: history records 3 attempts, then sent")

  reset()
  local jit = notify.channel("slack", { name = "slack-jitter", webhook_url = base .. "/slack/T/B/j", store = st,
                                        retries = 2, backoff = { base = "80ms" } })
  plan("slack", { { status = 502 }, { status = 502 }, { status = 502 } })
  res, err, info = jit:send(msg, { key = run .. "/5xx-out" })
  rq = got("slack")
  t.ok(res == nil and info.attempts == 3 and #rq == 3 and err:find("HTTP 502", 1, true) and err:find("3 attempts", 1, true),
       "5xx: gives up after retries + 1 attempts")
  t.ok(rq[3] and rq[2].time - rq[1].time >= 0.04 and rq[3].time - rq[2].time >= 0.08,
       "jitter keeps at least half of each backoff step")

  local refused = notify.channel("webhook", { name = "hook-refused", url = "http://127.0.0.1:1/x", store = st,
                                              retries = 2, backoff = { base = "10ms" } })
  res, err, info = refused:send(msg, { key = run .. "/refused" })
  t.ok(res == nil and info.attempts == 3 and err:find("connect", 1, true), "connection errors are retried")

  reset()
  plan("slack", { { status = 429, headers = { ["Retry-After"] = "1" }, body = "rate_limited" } })
  res = fast:send(msg, { key = run .. "/429" })
  rq = got("slack")
  t.ok(res and res.status == "sent" and res.attempts == 2 and #rq == 2, "429: retried")
  t.ok(rq[2] and rq[2].time - rq[1].time >= 1.0,
       string.format("429: the retry waits the Retry-After seconds (%.3fs >= 1s)", rq[2] and rq[2].time - rq[1].time or -1))

  reset()
  plan("slack", { { status = 429, retry_after_date = 2 } })
  res = fast:send(msg, { key = run .. "/429-date" })
  rq = got("slack")
  local when = rq[1] and util.parse_http_date(rq[1].response.headers["Retry-After"])
  t.ok(res and res.status == "sent" and rq[2] and when and rq[2].time >= when,
       "429: a Retry-After HTTP-date is honoured (next attempt not before it)")

  -- A Retry-After longer than max_retry_after fails this send, but the pause still holds the
  -- channel: the next send on it waits until the date too.
  reset()
  local paused = notify.channel("slack", { name = "slack-paused", webhook_url = base .. "/slack/T/B/p", store = st,
                                           max_retry_after = "500ms" })
  plan("slack", { { status = 429, headers = { ["Retry-After"] = "2" } } })
  res, err = paused:send(msg, { key = run .. "/pause-1" })
  t.ok(res == nil and err:find("max_retry_after", 1, true), "429: a Retry-After beyond max_retry_after fails the send")
  res = paused:send(msg, { key = run .. "/pause-2" })
  rq = got("slack")
  t.ok(res and rq[2] and rq[2].time - rq[1].time >= 2.0, "429: the channel stays paused for other sends")

  ------------------------------------------------------------------------------ rate limit
  reset()
  local limited = notify.channel("webhook", { name = "hook-limited", url = base .. "/webhook/rl", store = st,
                                              rate = { n = 1, per = "200ms" } })
  local hs = {}
  for i = 1, 4 do
    hs[i] = task.spawn(function() return limited:send({ title = "m" .. i }, { key = run .. "/rl-" .. i }) end)
  end
  local all = true
  for i = 1, 4 do
    local ok, r = hs[i]:join()
    all = all and ok and r and r.status == "sent"
  end
  rq = got("webhook")
  t.ok(all and #rq == 4, "rate: four concurrent sends all delivered")
  local min_gap = math.huge
  for i = 2, #rq do min_gap = math.min(min_gap, rq[i].time - rq[i - 1].time) end
  t.ok(#rq == 4 and min_gap >= 0.18, string.format("rate: 1 per 200ms spaces the requests (min gap %.3fs)", min_gap))

  ------------------------------------------------------------------------------ idempotency
  reset()
  res = hook:send(msg, { key = run .. "/once" })
  local res2 = hook:send(msg, { key = run .. "/once" })
  t.ok(res and res.status == "sent" and res2 and res2.status == "duplicate" and res2.id == res.id
       and res2.attempts == 1 and res2.response_status == 200, "same key twice: the second is a duplicate")
  t.is(#got("webhook"), 1, "same key twice: one request")
  res = slack:send(msg, { key = run .. "/once" })
  t.ok(res and res.status == "sent", "the same key on another channel is another notification")

  reset()
  local slow = notify.channel("webhook", { name = "hook-race", url = base .. "/webhook/race", store = st })
  local a = task.spawn(function() return slow:send(msg, { key = run .. "/race" }) end)
  local b = task.spawn(function() return slow:send(msg, { key = run .. "/race" }) end)
  local _, ra, ea = a:join()
  local _, rb, eb = b:join()
  local sent = (ra and ra.status == "sent" and 1 or 0) + (rb and rb.status == "sent" and 1 or 0)
  t.ok(sent == 1 and #got("webhook") == 1, "two concurrent sends of one key: one request (" ..
       tostring(ea or (ra and ra.status)) .. ", " .. tostring(eb or (rb and rb.status)) .. ")")

  reset()
  plan("webhook", { { status = 400 } })
  res = hook:send(msg, { key = run .. "/again" })
  res2 = hook:send(msg, { key = run .. "/again" })
  h = notify.history{ store = st, key = run .. "/again" }
  t.ok(res == nil and res2 and res2.status == "sent" and #got("webhook") == 2 and #h == 1 and h[1].attempts == 2,
       "a failed key is sent again by the next send (one history row, attempts add up)")

  -- What a crash between "sending" and "sent" leaves: a row in state sending. While its lease
  -- runs the key is busy (no request); once it has expired, the next send delivers again
  -- (at least once: the crashed attempt may have arrived). tests/e2e/notify_channels.t does it
  -- with a real kill -9.
  reset()
  local now = time.now()
  assert(st:sql("INSERT INTO notify_history (channel, kind, key, status, attempts, lease_until, created, updated) " ..
                "VALUES ($1, 'webhook', $2, 'sending', 1, $3, $4, $4)", "webhook", run .. "/live", now + 600, now))
  assert(st:sql("INSERT INTO notify_history (channel, kind, key, status, attempts, lease_until, created, updated) " ..
                "VALUES ($1, 'webhook', $2, 'sending', 1, $3, $4, $4)", "webhook", run .. "/crashed", now - 1, now - 700))
  res, err, info = hook:send(msg, { key = run .. "/live" })
  t.ok(res == nil and err:find("being sent", 1, true) and info.status == "sending" and #got("webhook") == 0,
       "a key in flight elsewhere (live lease) is not sent")
  res = hook:send(msg, { key = run .. "/crashed" })
  t.ok(res and res.status == "sent" and res.attempts == 2 and #got("webhook") == 1,
       "a key left sending by a crash (lease expired) is sent again, attempts continue")

  ---------------------------------------------------------------------------------- history
  local hist = notify.history{ store = st, channel = "webhook", since = t0 }
  local keys, ordered = {}, true
  for i, row in ipairs(hist) do
    keys[row.key or "?"] = row
    if i > 1 and row.id > hist[i - 1].id then ordered = false end
  end
  t.ok(keys[run .. "/hook-1"] and keys[run .. "/once"] and keys[run .. "/live"] and not keys[run .. "/crashed"] and ordered,
       "history by channel and since, newest first")
  t.ok(keys[run .. "/hook-1"] and keys[run .. "/hook-1"].summary == "Disk full on db1"
       and keys[run .. "/hook-1"].kind == "webhook" and keys[run .. "/hook-1"].created >= t0,
       "history rows carry kind, summary, times")
  local failed = notify.history{ store = st, status = "failed", since = t0 }
  local only_failed = #failed > 0
  for _, row in ipairs(failed) do only_failed = only_failed and row.status == "failed" end
  t.ok(only_failed, "history by status")
  t.is(#notify.history{ store = st, since = t0, limit = 2 }, 2, "history limit")
  t.is(#notify.history{ store = st, since = time.now() + 60 }, 0, "history since the future is empty")

  --------------------------------------------------------------------------------- SMTP
  reset()
  plan("smtp", { { smtp = "451 4.3.0 Try again later" } })
  local mail2 = notify.channel("email", { name = "mail-retry", url = smtp, from = "steward@example.org",
                                          to = "ops@example.org", starttls = "no", store = st,
                                          backoff = { base = "10ms" } })
  res, err = mail2:send(msg, { key = run .. "/mail-451" })
  t.ok(res and res.attempts == 2 and #got("smtp") == 2, "email: a 4xx SMTP reply is retried (" .. tostring(err) .. ")")
  -- libcurl reports any non-2xx reply to DATA alike (no code), so a rejection there is
  -- retried like a transient one, within the channel's retries (docs/notify.md)
  local mail3 = notify.channel("email", { name = "mail-reject", url = smtp, from = "steward@example.org",
                                          to = "ops@example.org", starttls = "no", store = st, retries = 1,
                                          backoff = { base = "10ms" } })
  plan("smtp", { { smtp = "554 5.7.1 Rejected" }, { smtp = "554 5.7.1 Rejected" } })
  res, err, info = mail3:send(msg, { key = run .. "/mail-554" })
  t.ok(res == nil and info.attempts == 2 and #got("smtp") == 4 and err:find("smtp://", 1, true),
       "email: a rejected message fails after the channel's retries (" .. tostring(err) .. ")")

  ------------------------------------------------------------------- without a store
  reset()
  local mem = notify.channel("webhook", { name = "hook-mem", url = base .. "/webhook/mem" })
  res = mem:send(msg, { key = "k" })
  res2 = mem:send(msg, { key = "k" })
  h = notify.history{ channel = "hook-mem" }
  t.ok(res and res.status == "sent" and res2 and res2.status == "duplicate" and #got("webhook") == 1
       and #h == 1 and h[1].status == "sent", "without a store: in-process history, same idempotency")

  st:close()
  if tmp then os.remove(tmp) end
end


local ok, err = xpcall(main, debug.traceback)
if receiver then receiver:cancel() end
if not ok then t.ok(false, "spec raised: " .. tostring(err)) end
t.done()
