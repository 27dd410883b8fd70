-- steward.notify: notification channels (email, Slack, Teams, PagerDuty, SMS, Alertmanager
-- webhooks, the daemon's log) with templates, per-channel rate limits that honour 429 Retry-After, retries with
-- backoff and jitter, and idempotency keys checked against a durable history. The vendor
-- formats live in steward/notify/<kind>.lua; this file is the delivery machinery.
local http = require "steward.http"
local time = require "steward.time"
local log = require "steward.log"
local store = require "steward.runtime.store"
local util = require "steward.notify.util"
local history = require "steward.notify.history"
local sutil = require "steward.runtime.store.util"
local shutdown = require "steward.runtime.shutdown"
require "steward.notify.schema"

local type, pairs, ipairs, error, tostring, tonumber, floor, max =
  type, pairs, ipairs, error, tostring, tonumber, math.floor, math.max

local M = {}

M.kinds = { "email", "log", "pagerduty", "slack", "sms", "teams", "webhook" }
local KIND_SET = {}
for _, k in ipairs(M.kinds) do KIND_SET[k] = true end

local function kind_module(kind) return require("steward.notify." .. kind) end

-- The default template of each kind, so a custom template can start from it.
M.templates = setmetatable({}, {
  __index = function(_, kind)
    if KIND_SET[kind] then return kind_module(kind).template end
  end,
})

-- Options every channel takes; each kind adds its own (kind.options).
local COMMON = {
  name = "string", rate = "table", retries = "number", backoff = "table", timeout = "duration",
  connect_timeout = "duration", template = "function", store = "table", lease = "duration",
  max_retry_after = "duration", cafile = "string", capath = "string", insecure = "boolean",
}

local function argerr(where, field, msg) error(where .. ": " .. field .. ": " .. msg, 4) end

local function duration(where, field, v)
  local d, err = time.parse_duration(v)
  if not d then argerr(where, field, tostring(err)) end
  return d
end

local function check_opts(where, opts, own)
  for k, v in pairs(opts) do
    local want = COMMON[k] or own[k]
    if not want then argerr(where, tostring(k), "unknown option") end
    if want == "duration" then
      if type(v) ~= "number" and type(v) ~= "string" then argerr(where, k, "duration expected, got " .. type(v)) end
    elseif want == "string|table" then
      if type(v) ~= "string" and type(v) ~= "table" then argerr(where, k, "string or table expected, got " .. type(v)) end
    elseif type(v) ~= want then
      argerr(where, k, want .. " expected, got " .. type(v))
    end
  end
end

-------------------------------------------------------------------------------- history
local default_store        -- set by notify.set_store
local memory = history.memory()

function M.set_store(st)
  if st ~= nil and not store.is_store(st) then error("notify.set_store: store expected", 2) end
  default_store = st
end

-- The history a channel or query uses: an explicit store, notify.set_store's, the daemon's
-- default store, or (a plain script without a store) the in-process list.
local function history_for(st)
  st = st or default_store or store.default()
  if st then return history.for_store(st) end
  return memory
end

-- A notification delivered about a tenant is an event of that tenant, `notification.sent`
-- (its onboarding's "first notification", docs/customer-success.md); the id is the history
-- row's, so it is recorded once. Without a store (a script) there is no event log.
local function sent_event(ch, tenant, row_id, key)
  if type(tenant) ~= "string" or tenant == "" or #tenant > 200 then return end
  local st = ch.store or default_store or store.default()
  if not st then return end
  local ok, res, err = pcall(require("steward.runtime.events").append, st, { {
    id = "notification.sent:" .. tostring(row_id), type = "notification.sent", tenant = tenant,
    source = "steward.notify", data = { channel = ch.name, kind = ch.kind, key = key } } })
  if not ok or not res then
    log.warn("notify: notification.sent not recorded", { channel = ch.name, error = tostring(ok and err or res) })
  end
end

---------------------------------------------------------------------------------- channel
local Channel = {}
Channel.__index = Channel

function M.channel(kind, opts)
  if type(kind) ~= "string" or not KIND_SET[kind] then
    error("notify.channel: kind: one of " .. table.concat(M.kinds, ", ") .. " expected, got " ..
          (type(kind) == "string" and ("'" .. kind .. "'") or type(kind)), 2)
  end
  if type(opts) ~= "table" then error("notify.channel: opts: table expected, got " .. type(opts), 2) end
  local km = kind_module(kind)
  local where = "notify.channel(" .. kind .. ")"
  check_opts(where, opts, km.options)
  if opts.store ~= nil and not store.is_store(opts.store) then argerr(where, "store", "store expected") end

  local ch = setmetatable({ kind = kind, km = km, name = opts.name or kind, where = where }, Channel)
  if ch.name == "" then argerr(where, "name", "non-empty string expected") end
  ch.retries = opts.retries or 5
  if ch.retries < 0 or ch.retries ~= floor(ch.retries) then argerr(where, "retries", "integer >= 0 expected") end
  local b = opts.backoff or {}
  ch.backoff_base = duration(where, "backoff.base", b.base or 1)
  ch.backoff_max = duration(where, "backoff.max", b.max or 60)
  ch.jitter = b.jitter ~= false
  ch.timeout = duration(where, "timeout", opts.timeout or 10)
  ch.connect_timeout = duration(where, "connect_timeout", opts.connect_timeout or 5)
  ch.lease = duration(where, "lease", opts.lease or "10m")
  ch.max_retry_after = duration(where, "max_retry_after", opts.max_retry_after or "5m")
  if opts.rate then
    local n, per = opts.rate.n, opts.rate.per
    if type(n) ~= "number" or n < 1 then argerr(where, "rate.n", "number >= 1 expected") end
    per = duration(where, "rate.per", per or 1)
    if per <= 0 then argerr(where, "rate.per", "positive duration expected") end
    ch.bucket = util.bucket(n, per, time.monotonic())
  end
  ch.paused_until = 0      -- monotonic time before which nothing is sent (429 Retry-After)
  ch.template = opts.template or km.template
  ch.store = opts.store
  ch.tls = { cafile = opts.cafile, capath = opts.capath, insecure = opts.insecure }
  ch.cfg = km.configure(opts, function(field, msg) argerr(where, field, msg) end)
  return ch
end

function Channel:__tostring() return "notify channel " .. self.name .. " (" .. self.kind .. ")" end

-- The channel is paused after a 429 until the time its Retry-After names.
function Channel:pause(seconds)
  self.paused_until = max(self.paused_until, time.monotonic() + seconds)
end

-- Waits until the channel may send one request: past any 429 pause, then for a token.
function Channel:wait_turn()
  local now = time.monotonic()
  if self.paused_until > now then time.sleep(self.paused_until - now) end
  if self.bucket then
    local wait = self.bucket:take(time.monotonic())
    if wait > 0 then time.sleep(wait) end
  end
  -- a 429 on another send may have paused the channel while this one waited for its token
  now = time.monotonic()
  while self.paused_until > now do
    time.sleep(self.paused_until - now)
    now = time.monotonic()
  end
end

local RETRY_KINDS = { timeout = true, connect = true, resolve = true, io = true, curl = true }

-- One attempt -> "ok", info | "retry", info | "fatal", info; info = {status, body, err, retry_after}
function Channel:attempt(op)
  if op.log then
    log[op.log.level]("notification", op.log.fields)
    return "ok", {}
  end
  if op.mail then
    local ok, err, kind = http.send_mail(op.mail)
    if ok then return "ok", {} end
    -- SMTP 4xx replies are transient and 5xx permanent (RFC 5321 §4.2.1). libcurl names the
    -- code for MAIL/RCPT ("RCPT failed: 550"), but a reply to DATA only as "Weird server
    -- reply" (kind io): that one counts as transient, bounded by the channel's retries.
    local code = tonumber(tostring(err):match("failed: ([45]%d%d)") or "")
    if code then return code < 500 and "retry" or "fatal", { err = err } end
    return RETRY_KINDS[kind] and "retry" or "fatal", { err = err }
  end
  local res, err, kind = http.request(op.http)
  if not res then
    return RETRY_KINDS[kind] and "retry" or "fatal", { err = err }
  end
  local status = res.status
  local info = { status = status, body = res.body, headers = res.headers }
  if status >= 200 and status < 300 then return "ok", info end
  local excerpt = res.body:gsub("%s+", " "):sub(1, 200)
  info.err = "HTTP " .. status .. (excerpt ~= "" and (": " .. excerpt) or "")
  if status == 429 then
    info.retry_after = util.retry_after(res.headers["retry-after"], time.now())
    return "retry", info
  end
  if status >= 500 then return "retry", info end
  return "fatal", info
end

local function summary_of(msg)
  local s = msg.title or msg.text
  if type(s) ~= "string" and type(msg.alerts) == "table" and msg.alerts[1] then
    local a = msg.alerts[1]
    s = a.labels and a.labels.alertname
  end
  return type(s) == "string" and util.truncate(s, 200) or nil
end

-- Tells the sender's on_attempt about one attempt. It runs between attempts, so a callback
-- that fails (a timeline write, say) is logged and must not stop the delivery.
local function report_attempt(ch, f, n, outcome, info, delay, key)
  local ok, err = pcall(f, { attempt = n, outcome = outcome == "ok" and "sent" or outcome == "retry" and delay
                             and "retry" or "failed", status = info.status, error = info.err,
                             retry_in = delay and (info.retry_after or delay) })
  if not ok then
    log.warn("notify: on_attempt failed", { channel = ch.name, key = key, attempt = n, error = tostring(err) })
  end
end

-- ch:send(msg [, {key = ..., on_attempt = fn}]) -> result | nil, err, info
function Channel:send(msg, opts)
  if type(msg) ~= "table" then error("notify: send: msg: table expected, got " .. type(msg), 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("notify: send: opts: table expected, got " .. type(opts), 2) end
  local key, on_attempt = opts.key, opts.on_attempt
  if key ~= nil and (type(key) ~= "string" or key == "" or #key > 255) then
    error("notify: send: key: string of 1 to 255 bytes expected", 2)
  end
  if on_attempt ~= nil and type(on_attempt) ~= "function" then
    error("notify: send: on_attempt: function expected, got " .. type(on_attempt), 2)
  end
  for k in pairs(opts) do
    if k ~= "key" and k ~= "on_attempt" then error("notify: send: " .. tostring(k) .. ": unknown option", 2) end
  end
  local ctx = { key = key, channel = self.name, kind = self.kind, cfg = self.cfg, now = time.now() }

  -- Templates and request building run before the history row exists: a template that
  -- raises is a bug of the caller's and must not leave a "sending" row behind.
  -- A message about a tenant wears its white label (steward.tenants.branding).
  local brand
  local tenant = msg.tenant or (type(msg.labels) == "table" and msg.labels.tenant) or nil
  if msg.tenant ~= nil or (type(msg.labels) == "table" and msg.labels.tenant ~= nil) then
    msg, brand = require("steward.tenants.branding").apply(msg)
  end
  local payload = self.template(msg, ctx)
  if type(payload) ~= "table" then
    error(self.where .. ": template must return a table, got " .. type(payload), 2)
  end
  if brand and self.kind == "email" then
    local branding = require "steward.tenants.branding"
    payload.from = payload.from or branding.from(brand, self.cfg.from)
    payload.html = payload.html or branding.html(msg, brand)
  end
  local op = self.km.request(self.cfg, payload, ctx, msg)
  if op.http then
    local h = op.http
    h.timeout, h.connect_timeout, h.follow_redirects = self.timeout, self.connect_timeout, false
    h.cafile, h.capath, h.insecure = self.tls.cafile, self.tls.capath, self.tls.insecure
  elseif op.mail then
    local m = op.mail
    m.timeout, m.connect_timeout = self.timeout, self.connect_timeout
    m.cafile, m.capath, m.insecure = self.tls.cafile, self.tls.capath, self.tls.insecure
  end

  local hist = history_for(self.store)
  local state, row = hist:claim{ channel = self.name, kind = self.kind, key = key,
                                 summary = summary_of(msg), lease = self.lease, now = ctx.now }
  if not state then return nil, row end
  if state == "duplicate" then
    return { status = "duplicate", attempts = row.attempts, response_status = row.response_status,
             id = row.id, key = key, sent_at = row.sent_at }
  end
  if state == "busy" then
    return nil, "notify " .. self.name .. ": key " .. key .. " is being sent by another sender",
           { status = "sending", id = row.id, lease_until = row.lease_until }
  end

  local attempts, outcome, info = row.attempts or 0, nil, nil
  local tries = 0
  while true do
    self:wait_turn()
    attempts, tries = attempts + 1, tries + 1
    local ok, herr = true, nil
    if not (tries == 1 and row.first_recorded) then
      ok, herr = hist:attempt(row.id, attempts, time.now() + self.lease, time.now())
    end
    if not ok then
      -- without the row we cannot promise "at most once per key": do not send blind
      hist:finish(row.id, { status = "failed", attempts = attempts - 1, last_error = herr, now = time.now() })
      return nil, herr, { status = "failed", attempts = attempts - 1, id = row.id }
    end
    local pok, o, i = pcall(self.attempt, self, op)
    if not pok then
      -- a raising transport (misuse the request builder missed) must not leave "sending"
      hist:finish(row.id, { status = "failed", attempts = attempts, last_error = tostring(o), now = time.now() })
      error(o, 0)
    end
    outcome, info = o, i
    local delay
    if outcome == "retry" and tries <= self.retries then
      if info.retry_after then
        self:pause(info.retry_after)
        if info.retry_after > self.max_retry_after then
          info.err = info.err .. " (Retry-After " .. info.retry_after .. "s exceeds max_retry_after)"
        else
          delay = 0
        end
      else
        delay = util.backoff(tries, self.backoff_base, self.backoff_max, self.jitter and nil or false)
      end
    end
    if on_attempt then report_attempt(self, on_attempt, attempts, outcome, info, delay, key) end
    if not delay then break end
    log.debug("notify: retrying", { channel = self.name, key = key, attempt = attempts,
                                    error = info.err, delay = delay })
    -- The daemon stopping ends the back-off: the send fails now (the caller's handler runs
    -- again after the restart) instead of holding up the shutdown.
    if delay > 0 and not shutdown.sleep(delay) then
      info.err = info.err .. " (retries cut short: the daemon is stopping)"
      break
    end
  end

  local now = time.now()
  if outcome == "ok" then
    local ok, herr = hist:finish(row.id, { status = "sent", attempts = attempts,
                                           response_status = info.status, now = now })
    local res = { status = "sent", attempts = attempts, response_status = info.status,
                  response = info.body, id = row.id, key = key }
    if not ok then
      -- delivered, but the history does not say so: a resend with this key may repeat it
      log.warn("notify: sent but not recorded", { channel = self.name, key = key, error = herr })
      res.history_error = herr
    end
    sent_event(self, tenant, row.id, key)
    return res
  end
  local err = "notify " .. self.name .. ": " .. tostring(info.err) ..
              (attempts > 1 and (" (after " .. attempts .. " attempts)") or "")
  hist:finish(row.id, { status = "failed", attempts = attempts, response_status = info.status,
                        last_error = info.err, now = now })
  log.warn("notify: failed", { channel = self.name, key = key, attempts = attempts, error = info.err })
  return nil, err, { status = "failed", attempts = attempts, response_status = info.status,
                     response = info.body, id = row.id }
end

-------------------------------------------------------------------------------- queries
local STATUSES = { sending = true, sent = true, failed = true }

-- notify.history{channel, kind, key, status, since, before, limit, store} -> rows, newest first
function M.history(q)
  q = q or {}
  if type(q) ~= "table" then error("notify.history: table expected, got " .. type(q), 2) end
  local f = {}
  for k, v in pairs(q) do
    if k == "channel" or k == "kind" or k == "key" then
      if type(v) ~= "string" then error("notify.history: " .. k .. ": string expected", 2) end
      f[k] = v
    elseif k == "status" then
      if not STATUSES[v] then error("notify.history: status: sending, sent or failed expected", 2) end
      f.status = v
    elseif k == "since" then
      f.since = sutil.time_arg(v, "notify.history: since")
    elseif k == "before" then
      if type(v) ~= "number" then error("notify.history: before: id (number) expected", 2) end
      f.before = v
    elseif k == "limit" then
      if type(v) ~= "number" or v < 1 or v > 1000 or v ~= floor(v) then
        error("notify.history: limit: integer from 1 to 1000 expected", 2)
      end
      f.limit = v
    elseif k == "store" then
      if not store.is_store(v) then error("notify.history: store: store expected", 2) end
    else
      error("notify.history: " .. tostring(k) .. ": unknown option", 2)
    end
  end
  f.limit = f.limit or 100
  return history_for(q.store):query(f)
end

-- notify.purge{before = t [, store]} -> number of finished rows last updated before t
function M.purge(q)
  if type(q) ~= "table" or q.before == nil then error("notify.purge: {before = time} expected", 2) end
  if q.store ~= nil and not store.is_store(q.store) then error("notify.purge: store: store expected", 2) end
  return history_for(q.store):purge(sutil.time_arg(q.before, "notify.purge: before"))
end

return M
