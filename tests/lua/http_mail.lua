-- steward.http.send_mail against a real SMTP server (aiosmtpd) on loopback, started by
-- tests/e2e/mail_send.t, which passes SMTP_PORT and MAIL_OUT (one JSON line per message).
local tap = require "steward.tap"
local http = require "steward.http"
local json = require "steward.json"

local url = "smtp://127.0.0.1:" .. assert(os.getenv("SMTP_PORT"), "SMTP_PORT not set")
local out = assert(os.getenv("MAIL_OUT"))

local function received()
  local msgs = {}
  local f = io.open(out)
  if not f then return msgs end
  for line in f:lines() do msgs[#msgs + 1] = json.decode(line) end
  f:close()
  return msgs
end

local function header(data, name)
  return data:match("\r\n" .. name .. ": ([^\r\n]*)") or data:match("^" .. name .. ": ([^\r\n]*)")
end

-- a message built from body
do
  local ok, err = http.send_mail{
    url = url, from = "Steward <steward@example.org>",
    to = {"ops@example.org", "Second <two@example.org>"}, cc = "cc@example.org",
    bcc = {"hidden@example.org"},
    subject = "Disk almost full", body = "line one\nline two\n.\nafter a dot line\n",
    headers = {["X-Steward-Alert"] = "disk"}, starttls = "no",
  }
  tap.is(ok, true, "send_mail returns true" .. (err and (": " .. err) or ""))
  local m = received()[1] or {data = ""}
  tap.is(m.from, "steward@example.org", "envelope sender is the address inside From")
  tap.is_deeply(m.to, {"ops@example.org", "two@example.org", "cc@example.org", "hidden@example.org"},
    "envelope recipients are to + cc + bcc")
  local d = m.data
  tap.is(header(d, "From"), "Steward <steward@example.org>", "From header")
  tap.is(header(d, "To"), "ops@example.org, Second <two@example.org>", "To header")
  tap.is(header(d, "Cc"), "cc@example.org", "Cc header")
  tap.is(d:find("hidden@example.org", 1, true), nil, "Bcc stays out of the message")
  tap.is(header(d, "Subject"), "Disk almost full", "Subject header")
  tap.like(header(d, "Date") or "", "^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d [+-]%d%d%d%d$", "Date header (RFC 5322)")
  tap.like(header(d, "Message%-ID") or "", "^<%x+@example%.org>$", "Message-ID header")
  tap.is(header(d, "X%-Steward%-Alert"), "disk", "extra header")
  tap.is(header(d, "Content%-Type"), "text/plain; charset=utf-8", "Content-Type header")
  tap.ok(d:find("\r\n\r\nline one\r\nline two\r\n.\r\nafter a dot line\r\n", 1, true),
    "body with CRLF line endings; a lone dot survives (libcurl dot-stuffs it)")
  tap.is(d:find("[^\r]\n"), nil, "no bare LF anywhere")
end

-- a full message sent as given; a non-ASCII subject
do
  local msg = "From: a@example.org\nTo: b@example.org\nSubject: raw\n\nraw body\n"
  local ok = http.send_mail{url = url, from = "a@example.org", to = "b@example.org", message = msg}
  tap.is(ok, true, "send_mail with a full message")
  local m = received()[2] or {data = ""}
  tap.is(m.data, "From: a@example.org\r\nTo: b@example.org\r\nSubject: raw\r\n\r\nraw body\r\n",
    "message sent as given, with CRLF")
  ok = http.send_mail{url = url, from = "a@example.org", to = "b@example.org",
    subject = "Überlauf – Speicher fast voll, bitte prüfen und handeln, danke schön", body = "x"}
  tap.is(ok, true, "non-ASCII subject sent")
  m = received()[3] or {data = ""}
  tap.like(m.data, "\r\nSubject: =%?UTF%-8%?B%?[%w+/=]+%?=\r\n =%?UTF%-8%?B%?", "non-ASCII subject as RFC 2047 encoded words")
end

-- failures return nil, err
do
  local ok, err = http.send_mail{url = url, from = "a@example.org", to = "b@example.org",
    subject = "s", body = "b", starttls = "required"}
  tap.is(ok, nil, "starttls = required fails against a server without STARTTLS")
  tap.like(err, "^send_mail smtp://127%.0%.0%.1:%d+: ", "error names the URL")
  ok, err = http.send_mail{url = "smtp://127.0.0.1:1", from = "a@example.org", to = "b@example.org",
    subject = "s", body = "b"}
  tap.like(err, "Couldn't connect to server", "refused connection is nil, err")
  tap.is(#received(), 3, "failed sends delivered nothing")
end

-- misuse raises, naming the field
do
  local function base(extra)
    local t = {url = url, from = "a@example.org", to = "b@example.org", subject = "s", body = "b"}
    for k, v in pairs(extra) do t[k] = v end
    return t
  end
  tap.raises(function() http.send_mail(base{url = false}) end, "url", "url missing")
  tap.raises(function() http.send_mail(base{url = "http://x/"}) end, "smtp:// or smtps://", "url not smtp")
  tap.raises(function() http.send_mail(base{from = false}) end, "from: string expected", "from missing")
  tap.raises(function() http.send_mail(base{to = {}}) end, "at least one recipient", "no recipient")
  tap.raises(function() http.send_mail(base{to = {1}}) end, "to%[1%]: string expected", "recipient wrong type")
  tap.raises(function() http.send_mail(base{subject = "a\r\nBcc: x"}) end, "subject: must not contain CR or LF", "subject injection")
  tap.raises(function() http.send_mail(base{message = "x"}) end, "exactly one of body or message", "body and message")
  tap.raises(function() http.send_mail(base{starttls = "maybe"}) end, "starttls", "bad starttls")
  tap.raises(function() http.send_mail(base{insecure = 1}) end, "insecure: boolean expected", "bad insecure")
  tap.raises(function() http.send_mail(base{subjet = "x"}) end, "unknown option 'subjet'", "unknown option")
end

tap.done()
