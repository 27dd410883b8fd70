-- steward.tenants.branding: a tenant's white label on the notifications about it. A message
-- names its tenant (msg.tenant or msg.labels.tenant); steward.notify asks apply() for the
-- branded message before its template runs: the tenant's own template for that message (if it
-- set one), the footer, links moved onto the tenant's link base (incident and approval links
-- carry the daemon's external URL), and for email the sender (brand name <email_from>) and an
-- HTML part in the tenant's colour. The branding is the tenant record's (steward.tenants);
-- templates live in the tenant's kv namespace, so offboarding exports and erases them.
local store = require "steward.runtime.store"
local kv = require "steward.runtime.store.kv"

local type, pairs, ipairs, tostring, pcall, error = type, pairs, ipairs, tostring, pcall, error
local format, concat = string.format, table.concat

local M = {}

local TEMPLATE_FIELDS = { title = 2000, text = 20000 }
M.DEFAULT = "default" -- the template used for a message that names none

-- The tenant's namespace in the daemon's store (nil without one: then there are no templates).
local function ns(tenant)
  local st = store.default()
  return st and kv.ns(st, "tenant:" .. tenant .. ":branding") or nil
end

local function tenant_of(msg)
  if type(msg.tenant) == "string" then return msg.tenant end
  if type(msg.labels) == "table" and type(msg.labels.tenant) == "string" then return msg.labels.tenant end
end
M.tenant_of = tenant_of

-- get(tenant) -> the tenant's branding { name, logo_url, color, email_from, footer, link_base }
-- (an empty table when it set none) | nil when there is no such tenant.
function M.get(tenant)
  local ok, tenants = pcall(require, "steward.tenants")
  if not ok or type(tenants) ~= "table" or not tenants.get then return nil end
  local rok, r = pcall(tenants.get, tenant)
  if not rok or type(r) ~= "table" then return nil end
  local b = {}
  for k, v in pairs(r.branding or {}) do b[k] = v end
  b.name = b.name or r.name
  return b
end

local function check_template(tpl, where)
  if type(tpl) ~= "table" then error(where .. ": template: table expected, got " .. type(tpl), 3) end
  for k, v in pairs(tpl) do
    local max = TEMPLATE_FIELDS[k]
    if not max then error(where .. ": template." .. tostring(k) .. ": unknown field (title, text)", 3) end
    if type(v) ~= "string" or #v > max then
      error(format("%s: template.%s: a string of at most %d bytes expected", where, k, max), 3)
    end
  end
end

-- set_template(tenant, name, {title, text}) -> true | nil, err: the tenant's template for
-- messages whose `template` field is name ("default": every other message). {{title}},
-- {{text}}, {{brand}}, {{url}}, {{tenant}} and {{labels.X}} are filled in. nil removes it.
function M.set_template(tenant, name, tpl)
  if type(tenant) ~= "string" or tenant == "" then error("branding.set_template: tenant: string expected", 2) end
  if type(name) ~= "string" or name == "" or #name > 100 then error("branding.set_template: name: string of 1 to 100 bytes expected", 2) end
  local n = ns(tenant)
  if not n then return nil, "no store: the daemon's store is not open" end
  if tpl == nil then
    local ok, err = n:delete("template:" .. name)
    if ok == nil and err then return nil, err end
    return true
  end
  check_template(tpl, "branding.set_template")
  local ok, err = n:put("template:" .. name, tpl)
  if not ok then return nil, err end
  return true
end

-- template(tenant, name) -> {title, text} | nil
function M.template(tenant, name)
  local n = ns(tenant)
  local v = n and n:get("template:" .. name)
  return type(v) == "table" and v or nil
end

local function fill(s, vars)
  return (tostring(s):gsub("{{%s*([%w_.%-]+)%s*}}", function(k)
    local v = vars[k]
    return v ~= nil and tostring(v) or ""
  end))
end

-- rebase(url, base) -> url with its scheme, host and port replaced by base's (base's path,
-- if any, goes before url's path).
function M.rebase(url, base)
  if type(url) ~= "string" or type(base) ~= "string" then return url end
  local rest = url:match("^https?://[^/]+(.*)$")
  if not rest then return url end
  return (base:gsub("/+$", "")) .. rest
end

local function html_escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }))
end

-- html(msg, b) -> the HTML part of a branded mail: the brand's colour as a header bar, its
-- logo and name, the text as paragraphs, the link as a button, the footer.
function M.html(msg, b)
  local color = b.color or "#333333"
  local out = { "<!DOCTYPE html><html><body style=\"font-family:sans-serif;margin:0\">",
    format("<div style=\"background:%s;color:#ffffff;padding:12px 16px\">", html_escape(color)) }
  if b.logo_url then out[#out + 1] = format("<img src=\"%s\" alt=\"\" height=\"24\" style=\"vertical-align:middle\"> ", html_escape(b.logo_url)) end
  out[#out + 1] = format("<strong>%s</strong></div><div style=\"padding:16px\">", html_escape(b.name or ""))
  out[#out + 1] = format("<h2 style=\"color:%s\">%s</h2>", html_escape(color), html_escape(msg.title or ""))
  for para in (tostring(msg.text or "") .. "\n\n"):gmatch("(.-)\n\n+") do
    if para ~= "" then out[#out + 1] = "<p>" .. html_escape(para):gsub("\n", "<br>") .. "</p>" end
  end
  if msg.url then
    out[#out + 1] = format("<p><a href=\"%s\" style=\"background:%s;color:#ffffff;padding:8px 12px;text-decoration:none\">Open</a></p>",
      html_escape(msg.url), html_escape(color))
  end
  out[#out + 1] = "</div>"
  if b.footer then out[#out + 1] = format("<div style=\"color:#777777;font-size:12px;padding:16px\">%s</div>", html_escape(b.footer)) end
  out[#out + 1] = "</body></html>"
  return concat(out, "\n") -- a line per element: mail lines stay under SMTP's 998 bytes
end

-- apply(msg) -> branded copy of msg, the branding | msg, nil (no tenant, or one without a
-- record). The copy keeps every field; text gets the footer, url and links in the text move
-- to link_base, title and text come from the tenant's template when it has one.
function M.apply(msg)
  local tenant = tenant_of(msg)
  if not tenant then return msg, nil end
  local b = M.get(tenant)
  if not b then return msg, nil end
  local out = {}
  for k, v in pairs(msg) do out[k] = v end
  if b.link_base then
    out.url = M.rebase(out.url, b.link_base)
    if type(out.text) == "string" then
      out.text = out.text:gsub("https?://[%w%.%-]+:?%d*(/[%w%-%._~:/%?#%[%]@!%$&'%(%)%*%+,;=%%]*)", function(path)
        return (b.link_base:gsub("/+$", "")) .. path
      end)
    end
  end
  local tpl = M.template(tenant, type(msg.template) == "string" and msg.template or M.DEFAULT)
    or (msg.template and M.template(tenant, M.DEFAULT))
  if tpl then
    local vars = { title = out.title, text = out.text, brand = b.name, url = out.url, tenant = tenant }
    for k, v in pairs(type(out.labels) == "table" and out.labels or {}) do vars["labels." .. k] = v end
    if tpl.title then out.title = fill(tpl.title, vars) end
    if tpl.text then out.text = fill(tpl.text, vars) end
  end
  -- (a sender that wrote the footer itself, as the welcome does, does not get it twice)
  if b.footer and not (type(out.text) == "string" and out.text:sub(-#b.footer) == b.footer) then
    out.text = (out.text and (out.text .. "\n\n") or "") .. b.footer
  end
  return out, b
end

-- from(b, fallback) -> the sender of a branded mail: "Brand <email_from>", or fallback.
function M.from(b, fallback)
  if not b or not b.email_from then return fallback end
  local name = b.name and b.name:gsub("[\"\\\r\n]", "") or nil
  return name and format("\"%s\" <%s>", name, b.email_from) or b.email_from
end


return M
