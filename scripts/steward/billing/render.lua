-- steward.billing.render: an invoice as a printable HTML page, white-labelled with the tenant's
-- branding, and as a PDF made from that page by WeasyPrint in a child process (never on the loop
-- thread). Every field is HTML-escaped; amounts are printed from exact decimals at the
-- currency's scale, never through Lua numbers (docs/billing/rendering.md).
local decimal = require "steward.decimal"
local proc = require "steward.proc"
local time = require "steward.time"

local type, ipairs, tostring, error, select, pcall = type, ipairs, tostring, error, select, pcall
local format, concat, date = string.format, table.concat, os.date

local M = {}

-- The program that turns HTML into PDF; tests and operators may point it elsewhere.
M.WEASYPRINT = "weasyprint"
M.DEFAULT_TIMEOUT = 60
M.MAX_PDF = 64 * 1024 * 1024
-- WeasyPrint takes ~100 MB and a core while it runs: past this many at once, a render is
-- refused ("busy") rather than queued, so a burst of downloads cannot exhaust the machine.
M.MAX_RUNNING = 4

local running = 0

local ESC = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

-- esc(v) -> the text of v, safe between tags and inside a quoted attribute.
local function esc(v)
  if v == nil then return "" end
  return (tostring(v):gsub("[&<>\"']", ESC))
end
M.escape = esc

local function dec(v, what)
  if v == nil then return nil end
  if decimal.is(v) then return v end
  if type(v) == "string" then
    local ok, d = pcall(decimal.new, v)
    if ok then return d end
  end
  error(format("render: %s: a decimal (or a decimal string) expected, got %s", what, type(v) == "string" and v or type(v)), 0)
end

-- Digits of the integer part grouped by three: "1234567.50" -> "1,234,567.50".
local function group(s)
  local sign, int, frac = s:match("^(%-?)(%d+)(.*)$")
  if not int then return s end
  int = int:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
  return sign .. int .. frac
end

-- amount(v, scale, what) -> "1,234.50": the exact value, with at least `scale` fraction digits
-- (a unit price may carry more: "0.0125" stays so). Never rounds: a value without a finite decimal
-- form is the invoice builder's bug and raises, naming the field.
local function amount(v, scale, what)
  local d = dec(v, what)
  if d == nil then return "" end
  local ok, s = pcall(decimal.string, d)
  if not ok then error(format("render: %s: %s", what, tostring(s)), 0) end
  local frac = s:match("%.(%d+)$") or ""
  if #frac < scale then
    s = (frac == "" and scale > 0) and (s .. "." .. ("0"):rep(scale)) or (s .. ("0"):rep(scale - #frac))
  end
  return group(s)
end
M.amount = amount

local function money(v, currency, what)
  if v == nil then return "" end
  return esc(currency) .. "&nbsp;" .. esc(amount(v, decimal.scale(currency), what))
end

-- A figure of a line's details (a tier's bounds, units, rate): shown exactly when it has a
-- decimal form, else as the fraction it is (details explain a line; they never stop its invoice
-- from printing).
local function figure(v, what)
  if v == nil then return "" end
  local d = dec(v, what)
  local ok, s = pcall(decimal.string, d)
  if ok then return group(s) end
  return tostring(d)
end

local function detail_money(v, currency, what)
  local ok, s = pcall(money, v, currency, what)
  if ok then return s end
  return esc(currency) .. "&nbsp;" .. esc(figure(v, what))
end

-- The calendar day of t in the billing timezone (a calendar period starting at midnight in
-- Paris starts at 23:00 UTC the day before).
local function day(t, zone)
  if type(t) ~= "number" then return "" end
  if zone and zone ~= "UTC" then
    local s = time.format(t, "%Y-%m-%d", zone)
    if s then return s end
  end
  return date("!%Y-%m-%d", t)
end

-- A period [from, to): its last day is the one before `to`.
local function span(from, to, zone)
  if type(from) ~= "number" or type(to) ~= "number" then return "" end
  local last = to > from and to - 1 or to
  return day(from, zone) .. " – " .. day(last, zone)
end

-- Only #rrggbb reaches the stylesheet: an attribute escape does not make a value safe in CSS.
local function colour(c)
  if type(c) == "string" and c:match("^#%x%x%x%x%x%x$") then return c end
  return "#333333"
end

-- A logo is drawn only from an http(s) or data:image URL: WeasyPrint would read file:// paths of
-- the daemon's machine otherwise.
local function logo_url(u)
  if type(u) ~= "string" then return nil end
  if u:match("^https?://[%w%-%.]+") or u:match("^data:image/[%w%+%.%-]+;base64,[%w%+/=]+$") then return u end
  return nil
end

local function lines_of(t)
  local out = {}
  for _, v in ipairs(t or {}) do out[#out + 1] = v end
  return out
end

local function first(...)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if v ~= nil and v ~= false and v ~= "" then return v end
  end
  return nil
end

local STYLE = [[
@page { size: A4; margin: 18mm 16mm 22mm 16mm;
  @bottom-center { content: "Page " counter(page) " of " counter(pages); font-size: 8pt; color: #777; } }
body { font-family: "DejaVu Sans", sans-serif; font-size: 10pt; color: #222; margin: 0; }
header { border-bottom: 4px solid %s; padding-bottom: 8px; margin-bottom: 16px; display: flex; }
header img { max-height: 48px; max-width: 200px; margin-right: 12px; }
header .brand { font-size: 16pt; font-weight: bold; color: %s; }
h1 { font-size: 18pt; margin: 0 0 4px 0; }
.meta td { padding: 1px 12px 1px 0; }
.parties { width: 100%%; margin: 14px 0; }
.parties td { vertical-align: top; width: 50%%; }
table.lines { width: 100%%; border-collapse: collapse; margin-top: 12px; }
table.lines th { background: %s; color: #fff; text-align: left; padding: 4px 6px; font-weight: normal; }
table.lines td { border-bottom: 1px solid #ddd; padding: 4px 6px; vertical-align: top; }
.num { text-align: right; white-space: nowrap; }
table.totals { margin-left: auto; margin-top: 10px; border-collapse: collapse; }
table.totals td { padding: 2px 6px; }
table.totals tr.total td { border-top: 2px solid %s; font-weight: bold; font-size: 12pt; }
.small { font-size: 8pt; color: #555; }
footer { margin-top: 24px; border-top: 1px solid #ccc; padding-top: 6px; font-size: 8pt; color: #555; }
]]

local KIND = { subscription = "Subscription", charge = "Usage", commitment = "Minimum commitment" }

-- html(invoice, tenant [, opts]) -> string: the whole page. tenant is the tenant's record
-- ({id, name, branding, config}); opts.issuer = {name, address, legal} is the operator's identity,
-- shown where the tenant's branding says nothing; opts.net_payment_days names the terms;
-- opts.timezone (default UTC) is the zone dates are shown in.
function M.html(invoice, tenant, opts)
  if type(invoice) ~= "table" then error("render.html: argument #1: an invoice table expected", 2) end
  if tenant ~= nil and type(tenant) ~= "table" then error("render.html: argument #2: a tenant record (table) or nil expected", 2) end
  opts = opts or {}
  tenant = tenant or {}
  local cur = invoice.currency
  if type(cur) ~= "string" or not decimal.scale(cur) then
    error(format("render.html: invoice.currency: unknown currency %s", tostring(cur)), 2)
  end
  local zone = opts.timezone or "UTC"
  if type(zone) ~= "string" or not time.localtime(0, zone) then
    error(format("render.html: opts.timezone: an IANA zone expected, got %s", tostring(zone)), 2)
  end
  local b = type(tenant.branding) == "table" and tenant.branding or {}
  local issuer = type(opts.issuer) == "table" and opts.issuer or {}
  local cb = type(tenant.config) == "table" and type(tenant.config.billing) == "table" and tenant.config.billing or {}
  local cust = type(invoice.customer) == "table" and invoice.customer or {}
  local color = colour(b.color)
  local brand = first(b.name, issuer.name, tenant.name, tenant.id) or ""
  local out = {}
  local function put(...) for i = 1, select("#", ...) do out[#out + 1] = select(i, ...) end end

  local number = invoice.number or "DRAFT"
  put("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
    "<title>Invoice ", esc(number), "</title>\n<style>", format(STYLE, color, color, color, color), "</style></head>\n<body>\n")
  put("<header>")
  local logo = logo_url(b.logo_url)
  if logo then put("<img src=\"", esc(logo), "\" alt=\"", esc(brand), "\">") end
  put("<div class=\"brand\">", esc(brand), "</div></header>\n")

  put("<h1>Invoice ", esc(number), "</h1>\n")
  if invoice.state == "draft" then put("<p><strong>Draft: not yet finalized, no number assigned.</strong></p>\n") end
  if invoice.state == "voided" then put("<p><strong>VOIDED</strong></p>\n") end
  put("<table class=\"meta\">")
  put("<tr><td>Invoice number</td><td>", esc(number), "</td></tr>")
  put("<tr><td>Issue date</td><td>", esc(day(invoice.issued or invoice.finalized, zone)), "</td></tr>")
  put("<tr><td>Due date</td><td>", esc(day(invoice.due, zone)), "</td></tr>")
  if type(invoice.period) == "table" then
    put("<tr><td>Service period</td><td>", esc(span(invoice.period.from, invoice.period.to, zone)), "</td></tr>")
  end
  put("<tr><td>Currency</td><td>", esc(cur), "</td></tr>")
  if invoice.subscription then put("<tr><td>Subscription</td><td>", esc(invoice.subscription), "</td></tr>") end
  put("</table>\n")

  -- From: the operator (issuer) under the tenant's brand; To: the customer snapshot taken at
  -- finalization, else the tenant's billing settings as they are now (a draft).
  put("<table class=\"parties\"><tr><td><strong>From</strong><br>", esc(first(issuer.name, brand)))
  if issuer.address then put("<br>", (esc(issuer.address):gsub("\n", "<br>"))) end
  put("</td><td><strong>Bill to</strong><br>", esc(first(cust.name, cb.legal_name, tenant.name, tenant.id)))
  local addr = first(cust.address, cb.address)
  if addr then put("<br>", (esc(addr):gsub("\n", "<br>"))) end
  local country = first(cust.country, cb.country)
  local region = first(cust.region, cb.region)
  if country or region then put("<br>", esc(concat({ region or "", country or "" }, region and country and ", " or ""))) end
  local email = first(cust.email, cb.email)
  if email then put("<br>", esc(email)) end
  local tax_id = first(cust.tax_id, cb.tax_id)
  if tax_id then put("<br>Tax ID: ", esc(tax_id)) end
  put("</td></tr></table>\n")

  put("<table class=\"lines\"><thead><tr><th>Description</th><th>Period</th>",
    "<th class=\"num\">Units</th><th class=\"num\">Unit price</th><th class=\"num\">Amount</th></tr></thead><tbody>\n")
  for i, l in ipairs(lines_of(invoice.lines)) do
    local what = "lines[" .. i .. "]"
    local desc = first(l.description, l.charge and (KIND[l.kind] or "Charge") .. " " .. tostring(l.charge), KIND[l.kind], l.kind) or ""
    put("<tr><td>", esc(desc))
    if l.metric then put("<div class=\"small\">metric ", esc(l.metric)) end
    if type(l.usage) == "table" and l.usage.events then
      put(l.metric and ", " or "<div class=\"small\">", esc(l.usage.events), " events")
    end
    if l.metric or (type(l.usage) == "table" and l.usage.events) then put("</div>") end
    if type(l.details) == "table" and type(l.details.tiers) == "table" then
      for k, t in ipairs(l.details.tiers) do
        if type(t) == "table" then
          local at = format("%s.details.tiers[%d]", what, k)
          local price = t.rate ~= nil and (esc(figure(t.rate, at .. ".rate")) .. "%")
            or (t.per_unit_amount ~= nil and detail_money(t.per_unit_amount, cur, at .. ".per_unit_amount")) or ""
          local total = t.amount or t.total_with_flat_amount
          put("<div class=\"small\">", esc(figure(t.from_value, at .. ".from_value")), "–",
            t.to_value ~= nil and esc(figure(t.to_value, at .. ".to_value")) or "∞", ": ",
            esc(figure(t.units, at .. ".units")), " × ", price,
            t.flat_amount ~= nil and (" + " .. detail_money(t.flat_amount, cur, at .. ".flat_amount")) or "",
            total ~= nil and (" = " .. detail_money(total, cur, at .. ".amount")) or "", "</div>")
        end
      end
    end
    put("</td><td>", esc(span(l.from, l.to, zone)), "</td>",
      "<td class=\"num\">", l.units ~= nil and esc(amount(l.units, 0, what .. ".units")) or "", "</td>",
      "<td class=\"num\">", l.unit_amount ~= nil and money(l.unit_amount, cur, what .. ".unit_amount") or "", "</td>",
      "<td class=\"num\">", money(l.amount, cur, what .. ".amount"), "</td></tr>\n")
  end
  put("</tbody></table>\n")

  put("<table class=\"totals\">")
  put("<tr><td>Subtotal</td><td class=\"num\">", money(invoice.subtotal, cur, "subtotal"), "</td></tr>")
  for i, d in ipairs(lines_of(invoice.discounts)) do
    put("<tr><td>Discount", d.coupon and (" (" .. esc(d.coupon) .. ")") or "", "</td><td class=\"num\">−",
      money(d.amount, cur, "discounts[" .. i .. "].amount"), "</td></tr>")
  end
  for i, t in ipairs(lines_of(invoice.taxes)) do
    local label = first(t.name, "Tax")
    put("<tr><td>", esc(label), t.rate ~= nil and (" " .. esc(amount(t.rate, 0, "taxes[" .. i .. "].rate")) .. "%") or "",
      "</td><td class=\"num\">", money(t.amount, cur, "taxes[" .. i .. "].amount"), "</td></tr>")
  end
  for i, c in ipairs(lines_of(invoice.credits)) do
    local label = c.kind == "wallet" and "Prepaid credits" or c.kind == "credit_note" and "Credit note" or "Credit"
    put("<tr><td>", esc(label), c.ref and (" " .. esc(c.ref)) or "", "</td><td class=\"num\">−",
      money(c.amount, cur, "credits[" .. i .. "].amount"), "</td></tr>")
  end
  put("<tr class=\"total\"><td>Total due</td><td class=\"num\">", money(invoice.total, cur, "total"), "</td></tr>")
  put("</table>\n")

  local terms
  if invoice.state == "paid" then
    terms = "Paid" .. (invoice.paid and (" on " .. day(invoice.paid, zone)) or "") .. ". Thank you."
  elseif invoice.due then
    local days = opts.net_payment_days
    terms = "Payment due by " .. day(invoice.due, zone) .. (days and format(" (net %s days)", tostring(days)) or "") .. "."
  end
  if terms then put("<p><strong>Payment terms:</strong> ", esc(terms), "</p>\n") end

  put("<footer>")
  local legal = {}
  if b.footer then legal[#legal + 1] = b.footer end
  if issuer.legal then legal[#legal + 1] = issuer.legal end
  for i, t in ipairs(legal) do put(i > 1 and "<br>" or "", (esc(t):gsub("\n", "<br>"))) end
  put("</footer>\n</body></html>\n")
  return concat(out)
end

-- pdf(invoice, tenant [, opts]) -> bytes | nil, err: the HTML page printed by WeasyPrint, run with
-- steward.proc (the task waits, the loop does not). opts.timeout bounds the run (default 60 s);
-- opts.weasyprint overrides the program. Each failure names its cause.
function M.pdf(invoice, tenant, opts)
  opts = opts or {}
  local page = M.html(invoice, tenant, opts)
  local prog = opts.weasyprint or M.WEASYPRINT
  local timeout = opts.timeout or M.DEFAULT_TIMEOUT
  if running >= M.MAX_RUNNING then
    return nil, format("busy: %d PDFs are being rendered already: try again in a moment", running)
  end
  running = running + 1
  local okr, r, err = pcall(proc.run, { cmd = { prog, "--quiet", "--encoding", "utf-8", "-", "-" }, stdin = page,
    timeout = timeout, grace = 2, max_output = M.MAX_PDF })
  running = running - 1
  if not okr then error(r, 0) end
  if not r then
    if tostring(err):match("^ENOENT") then
      return nil, format("pdf: %s is not installed (Debian package weasyprint): %s", prog, tostring(err))
    end
    return nil, format("pdf: %s could not be started: %s", prog, tostring(err))
  end
  if r.timed_out then
    return nil, format("pdf: %s did not finish within %s and was stopped", prog,
      type(timeout) == "number" and (timeout .. " s") or tostring(timeout))
  end
  local why = (r.stderr or ""):match("([^\n]*%S[^\n]*)%s*$") or ""
  if r.code ~= 0 then
    return nil, format("pdf: %s exited with status %d%s", prog, r.code, why ~= "" and (": " .. why) or "")
  end
  if r.truncated then return nil, format("pdf: the document is larger than %d bytes", M.MAX_PDF) end
  if r.stdout:sub(1, 5) ~= "%PDF-" then return nil, format("pdf: %s wrote no PDF%s", prog, why ~= "" and (": " .. why) or "") end
  return r.stdout
end

return M
