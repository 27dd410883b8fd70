-- steward.success.inbound: a support mail handed over by the MTA (Postfix's pipe, a SaaS
-- inbound-parse webhook) as a message/rfc822 body, read into a ticket's fields. steward reads
-- a documented minimum of RFC 5322 and refuses the rest with a reason that names the header,
-- rather than guessing at MIME: the headers From, Subject, Message-ID (folded lines joined),
-- To or Delivered-To for the tenant, and one text/plain body in 7bit or 8bit (UTF-8 or
-- US-ASCII). Encoded words (=?utf-8?...?=) are kept as written.
local type, tostring = type, tostring

local M = {}

M.MAX_HEADER_BYTES = 64 * 1024

-- headers(text) -> {lower-case name = value (the first of repeated ones)}, body | nil, err
local function split(text)
  local head, body = text:match("^(.-)\r?\n\r?\n(.*)$")
  if not head then
    if text:find("^[%w-]+:") and not text:find("\n%s*\n") then head, body = text, "" end
    if not head then return nil, "message: no header section (headers, an empty line, then the body)" end
  end
  if #head > M.MAX_HEADER_BYTES then return nil, "message: the header section exceeds 64 KiB" end
  local h, last = {}, nil
  for line in (head .. "\n"):gmatch("([^\n]*)\n") do
    line = line:gsub("\r$", "")
    if line:match("^[ \t]") then
      if not last then return nil, "message: a continuation line before any header" end
      h[last] = h[last] .. " " .. line:match("^%s*(.-)%s*$")
    elseif line ~= "" then
      local name, value = line:match("^([!-9;-~]+):%s*(.-)%s*$")
      if not name then return nil, "message: not a header line: " .. line:sub(1, 60) end
      name = name:lower()
      if h[name] == nil then h[name] = value; last = name else last = nil end
    end
  end
  return h, body
end

-- The address of "Name <a@b>" or "a@b".
local function address(v)
  if not v then return nil end
  local a = v:match("<([^<>%s]+@[^<>%s]+)>") or v:match("^%s*([^%s<>\"]+@[^%s<>\"]+)%s*$")
  return a
end

-- The tenant from a recipient's plus tag: support+acme@example.org -> acme.
local function plus_tenant(v)
  if not v then return nil end
  for addr in v:gmatch("[^,]+") do
    local a = address(addr)
    local tag = a and a:match("^[^@+]+%+([a-z0-9][a-z0-9_-]*)@")
    if tag then return tag end
  end
end

-- parse(text [, tenant]) -> {tenant, subject, body, requester, message_id, source = "email"}
-- | nil, "<header>: reason". tenant (a query parameter) wins over the recipient's plus tag.
function M.parse(text, tenant)
  if type(text) ~= "string" or text == "" then return nil, "message: an RFC 5322 message expected, got an empty body" end
  local h, body = split(text)
  if not h then return nil, body end
  local ctype = h["content-type"]
  if ctype then
    local mt = ctype:lower():match("^%s*([^;%s]+)")
    if mt ~= "text/plain" then
      return nil, "Content-Type: " .. tostring(mt) .. " is not accepted: send one text/plain part (no attachments, no HTML)"
    end
    local cs = ctype:lower():match(";%s*charset%s*=%s*\"?([^\";%s]+)")
    if cs and cs ~= "utf-8" and cs ~= "us-ascii" then
      return nil, "Content-Type: charset " .. cs .. " is not accepted: utf-8 or us-ascii"
    end
  end
  local cte = h["content-transfer-encoding"]
  if cte then
    local e = cte:lower():match("^%s*(%S+)")
    if e ~= "7bit" and e ~= "8bit" then
      return nil, "Content-Transfer-Encoding: " .. tostring(e) .. " is not accepted: 7bit or 8bit"
    end
  end
  local from = address(h.from)
  if not from then return nil, "From: " .. (h.from and "no address in it" or "missing") end
  local subject = h.subject
  if not subject or subject == "" then return nil, "Subject: missing" end
  local mid = h["message-id"]
  if not mid or not mid:match("^<[^<>%s]+>$") then
    return nil, "Message-ID: " .. (mid and "not of the form <id@host>" or "missing")
  end
  tenant = tenant or plus_tenant(h["delivered-to"]) or plus_tenant(h.to)
  if not tenant then
    return nil, "To: no tenant: address the mail to support+<tenant>@..., or pass ?tenant= on the request"
  end
  body = body:gsub("\r\n", "\n")
  return { tenant = tenant, subject = subject, body = body, requester = from, message_id = mid, source = "email" }
end

return M
