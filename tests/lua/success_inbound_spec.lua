-- steward.success.inbound: the documented subset of RFC 5322 a support mail may use (From,
-- Subject, Message-ID, the tenant from the recipient's plus tag, one text/plain body in 7bit or
-- 8bit), folded headers, and the refusals, each naming its header.
local t = require "steward.tap"
local inbound = require "steward.success.inbound"

local function mail(headers, body) return table.concat(headers, "\r\n") .. "\r\n\r\n" .. (body or "hello\r\n") end

local BASE = { "From: Ann Example <ann@acme.example>", "To: Support <support+acme@example.org>",
  "Subject: cannot log in", "Message-ID: <m1@acme.example>" }

local function with(extra, without)
  local out = {}
  for _, h in ipairs(BASE) do
    if not (without and h:lower():sub(1, #without) == without:lower()) then out[#out + 1] = h end
  end
  for _, h in ipairs(extra or {}) do out[#out + 1] = h end
  return out
end

local f = assert(inbound.parse(mail(BASE, "line 1\r\nline 2\r\n")))
t.is_deeply(f, { tenant = "acme", subject = "cannot log in", body = "line 1\nline 2\n", requester = "ann@acme.example",
  message_id = "<m1@acme.example>", source = "email" }, "a plain mail: its fields, CRLF made LF")

f = assert(inbound.parse(mail({ "From: bob@acme.example", "To: support+beta@example.org", "Subject: a long",
  "  subject folded", "Message-ID: <m2@x>" })))
t.is(f.subject, "a long subject folded", "a folded header is joined")
t.is(f.requester, "bob@acme.example", "a bare From address")
t.is(f.tenant, "beta", "the tenant from the plus tag of To")

f = assert(inbound.parse(mail(with({ "Delivered-To: support+gamma@example.org" }))))
t.is(f.tenant, "gamma", "Delivered-To (the envelope recipient) wins over To")
t.is(assert(inbound.parse(mail(BASE), "delta")).tenant, "delta", "a tenant passed by the caller wins over both")

t.ok(inbound.parse(mail(with({ 'Content-Type: text/plain; charset="utf-8"', "Content-Transfer-Encoding: 8bit" }))),
  "text/plain in UTF-8, 8bit: accepted")
t.ok(inbound.parse("From: a@b.c\nTo: support+x@y.z\nSubject: s\nMessage-ID: <a@b>\n\nbody\n"), "LF line ends are accepted")

local function refused(text, pattern, name, tenant)
  local ok, err = inbound.parse(text, tenant)
  t.ok(ok == nil and tostring(err):find(pattern, 1, true) ~= nil, name .. " (" .. tostring(err) .. ")")
end
refused(mail(with({ "Content-Type: multipart/alternative; boundary=x" })), "Content-Type: multipart/alternative is not accepted",
  "multipart is refused, naming Content-Type")
refused(mail(with({ "Content-Type: text/html" })), "Content-Type: text/html is not accepted", "HTML is refused")
refused(mail(with({ "Content-Type: text/plain; charset=iso-8859-1" })), "charset iso-8859-1 is not accepted",
  "another charset is refused")
refused(mail(with({ "Content-Transfer-Encoding: base64" })), "Content-Transfer-Encoding: base64 is not accepted",
  "base64 is refused")
refused(mail(with({}, "From")), "From: missing", "no From")
refused(mail(with({ "From: nobody" }, "From")), "From: no address in it", "a From without an address")
refused(mail(with({}, "Subject")), "Subject: missing", "no Subject")
refused(mail(with({}, "Message-ID")), "Message-ID: missing", "no Message-ID")
refused(mail(with({ "Message-ID: plain" }, "Message-ID")), "Message-ID: not of the form <id@host>", "a malformed Message-ID")
refused(mail(with({ "To: support@example.org" }, "To")), "To: no tenant", "a recipient without a plus tag")
refused("", "message: an RFC 5322 message expected", "an empty body")
refused("just some text\nand more\n\nbody", "message: not a header line", "text that is no mail")
refused(" folded\r\nFrom: a@b.c\r\n\r\nx", "message: a continuation line before any header", "a continuation first")

t.done()
