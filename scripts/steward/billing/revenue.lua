-- steward.billing.revenue: revenue recognition after ASC 606. A subscription-fee line is earned
-- ratably over its service period, a usage or commitment line at its period's end; a voided
-- invoice and a credit note reverse what they take back. The monthly report reconciles:
-- deferred_closing = deferred_opening + invoiced - recognized, and over an invoice's life what is
-- recognized equals what was invoiced, exactly (docs/billing/revenue.md). Computed from the
-- invoices on demand: no table of its own.
local decimal = require "steward.decimal"
local json = require "steward.json"
local time = require "steward.time"
local task = require "steward.task"

local type, pairs, ipairs, tostring, tonumber, error, pcall, require = type, pairs, ipairs, tostring, tonumber, error, pcall, require
local format, floor, sort = string.format, math.floor, table.sort

local M = {}

M.BASES = { invoiced = true, paid = true }
M.DEFAULT_BASIS = "invoiced"
-- Cumulative amounts are rounded half-even at the currency's scale: no bias either way.
M.ROUNDING = "half_even"

-- ---- calendar: months in the billing timezone (UTC by default) ----

local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function localtime(t, zone)
  local lt, err = time.localtime(t, zone)
  if not lt then error(format("revenue: timezone: %s", tostring(err)), 0) end
  return lt
end

-- The instant a month starts: midnight on the 1st in the zone (its offset then, found from the
-- offset at UTC midnight and checked once more across a change of offset).
local function month_start(y, m, zone)
  local t = days_from_civil(y, m, 1) * 86400
  if zone == "UTC" then return t end
  local guess = t - localtime(t, zone).offset
  return t - localtime(guess, zone).offset
end

local function ym(t, zone)
  if zone == "UTC" then
    local s = os.date("!*t", t)
    return s.year, s.month
  end
  local lt = localtime(t, zone)
  return lt.year, lt.month
end

local function key(y, m) return format("%04d-%02d", y, m) end

-- month_of(t [, zone]) -> "YYYY-MM" of the instant t in zone (default "UTC").
function M.month_of(t, zone) return key(ym(t, zone or "UTC")) end

local function next_month(y, m)
  if m == 12 then return y + 1, 1 end
  return y, m + 1
end

-- parse_month("2026-03") -> 2026, 3 | nil
local function parse_month(s)
  if type(s) ~= "string" then return nil end
  local y, m = s:match("^(%d%d%d%d)%-(%d%d)$")
  y, m = tonumber(y), tonumber(m)
  if not y or m < 1 or m > 12 then return nil end
  return y, m
end
M.parse_month = parse_month

-- ---- exact allocation ----

local function D(v, what)
  if decimal.is(v) then return v end
  local ok, d = pcall(decimal.new, v)
  if ok and v ~= nil then return d end
  error(format("revenue: %s: a decimal expected, got %s", what, v == nil and "nil" or tostring(v)), 0)
end

-- cumulative(total, fractions, scale) -> parts: part k = round(total * F_k) - round(total * F_(k-1))
-- where F_k is the running sum of the fractions; the last running sum is total itself. The parts
-- add up to total exactly, each is at the currency's scale (when total is), and none has the
-- opposite sign of total: the rounding remainder lands on the last part.
local function cumulative(total, weights, scale)
  local n = #weights
  local sum = decimal.zero
  for _, w in ipairs(weights) do sum = sum + w end
  local parts = {}
  if n == 0 then return parts end
  if sum:is_zero() then
    for k = 1, n do parts[k] = decimal.zero end
    parts[n] = total
    return parts
  end
  local run, before = decimal.zero, decimal.zero
  for k = 1, n do
    run = run + weights[k]
    local cum = k == n and total or (total * run / sum):round(scale, M.ROUNDING)
    parts[k] = cum - before
    before = cum
  end
  return parts
end
M.split = cumulative

-- Slices of [from, to) by month of the zone: {{month, seconds}}.
local function by_month(from, to, zone)
  local out = {}
  local y, m = ym(from, zone)
  local t = from
  while t < to do
    local ny, nm = next_month(y, m)
    local edge = month_start(ny, nm, zone)
    local stop = edge < to and edge or to
    out[#out + 1] = { month = key(y, m), seconds = stop - t }
    t, y, m = stop, ny, nm
  end
  return out
end

-- The revenue of one line: a list {{month, amount}}, nothing before the month of not_before
-- (earlier months' parts are caught up in that month).
local function recognize(amount, shape, not_before, scale, zone)
  local out = {}
  if shape.ratable then
    local slices = by_month(shape.from, shape.to, zone)
    local w = {}
    for i, s in ipairs(slices) do w[i] = decimal.new(s.seconds) end
    local parts = cumulative(amount, w, scale)
    for i, s in ipairs(slices) do out[#out + 1] = { month = s.month, amount = parts[i] } end
  else
    out[1] = { month = M.month_of(shape.at, zone), amount = amount }
  end
  if not_before then
    local floor_month = M.month_of(not_before, zone)
    for _, e in ipairs(out) do
      if e.month < floor_month then e.month = floor_month end
    end
  end
  return out
end

-- The shape of a line: subscription fees are ratable over [from, to); usage, commitment and
-- anything else is earned at the end of its period (the last second before `to`).
local function shape_of(line, invoice)
  local p = type(invoice.period) == "table" and invoice.period or {}
  local from, to = line.from or p.from, line.to or p.to
  if line.kind == "subscription" and type(from) == "number" and type(to) == "number" and to > from then
    return { ratable = true, from = from, to = to }
  end
  local at = type(to) == "number" and to - 1 or invoice.finalized or invoice.issued
  return { at = at }
end

-- The invoice's revenue by line, net of its discounts (spread over the lines in proportion to
-- their amounts); taxes are collected for others and credits are a way of paying: neither is revenue.
local function net_lines(invoice, scale)
  local lines = {}
  local weights = {}
  for i, l in ipairs(invoice.lines or {}) do
    local a = D(l.amount, format("invoice %s: lines[%d].amount", tostring(invoice.id), i))
    lines[#lines + 1] = { id = l.id or i, kind = l.kind, shape = shape_of(l, invoice) }
    weights[#weights + 1] = a:abs()
  end
  local base = D(invoice.subtotal, format("invoice %s: subtotal", tostring(invoice.id)))
  if invoice.discount_total ~= nil then
    base = base - D(invoice.discount_total, format("invoice %s: discount_total", tostring(invoice.id)))
  end
  if #lines == 0 then
    local p = type(invoice.period) == "table" and invoice.period or {}
    lines[1] = { id = "invoice", kind = "other", shape = { at = (p.to and p.to - 1) or invoice.finalized or invoice.issued } }
    weights[1] = decimal.new(1)
  end
  local parts = cumulative(base, weights, scale)
  for i, l in ipairs(lines) do l.amount = parts[i] end
  return lines, base
end

local function when_in(invoice, basis)
  if basis == "paid" then return invoice.paid end
  return invoice.finalized or invoice.issued
end

-- The basis in force: billing.revenue.basis of the configuration (steward.billing.config), else
-- the default.
function M.basis()
  local ok, bc = pcall(require, "steward.billing.config")
  local cur = ok and type(bc) == "table" and type(bc.current) == "table" and bc.current or {}
  local r = type(cur.revenue) == "table" and cur.revenue or {}
  return M.BASES[r.basis] and r.basis or M.DEFAULT_BASIS
end

-- The timezone months are counted in: billing.timezone of the configuration, else UTC.
function M.timezone()
  local ok, bc = pcall(require, "steward.billing.config")
  local cur = ok and type(bc) == "table" and type(bc.current) == "table" and bc.current or {}
  return type(cur.timezone) == "string" and cur.timezone or "UTC"
end

local function check_zone(zone, where)
  zone = zone or M.timezone()
  if type(zone) ~= "string" or not time.localtime(0, zone) then
    error(format("%s: timezone: an IANA zone expected (\"Europe/Paris\"), got %s", where, tostring(zone)), 3)
  end
  return zone
end

local function check_basis(basis, where)
  basis = basis or M.basis()
  if not M.BASES[basis] then error(format("%s: basis: \"invoiced\" or \"paid\" expected, got %s", where, tostring(basis)), 3) end
  return basis
end

-- schedule(invoice [, opts]) -> {invoice, tenant, currency, basis, invoiced = {{month, amount, reason}},
--   recognized = {{month, amount, line, kind, reason}}}
-- opts.basis: "invoiced" (the invoice counts from its finalization) or "paid" (from its payment:
-- Lago's paid-only recognition); by default billing.revenue.basis. opts.timezone: the zone months
-- are counted in, by default billing.timezone (else UTC); opts.credit_notes: the invoice's credit notes
-- ({id, invoice, subtotal | amount [, tax_amount], created}). A draft (or, on the paid basis, an unpaid
-- invoice) has an empty schedule.
function M.schedule(invoice, opts)
  if type(invoice) ~= "table" then error("revenue.schedule: argument #1: an invoice table expected", 2) end
  opts = opts or {}
  local basis = check_basis(opts.basis, "revenue.schedule")
  local zone = check_zone(opts.timezone, "revenue.schedule")
  local cur = invoice.currency
  local scale = type(cur) == "string" and decimal.scale(cur)
  if not scale then error(format("revenue.schedule: invoice.currency: unknown currency %s", tostring(cur)), 2) end
  local out = { invoice = invoice.id, tenant = invoice.tenant, currency = cur, basis = basis, invoiced = {}, recognized = {} }
  local start = when_in(invoice, basis)
  if invoice.state == "draft" or type(start) ~= "number" then return out end
  local lines, base = net_lines(invoice, scale)

  -- One movement: `amount` invoiced at `at`, earned along the lines' shapes (in proportion to
  -- their net amounts), nothing earned before `at` on the paid basis or for a reversal.
  local function movement(amount, at, reason, catch_up)
    out.invoiced[#out.invoiced + 1] = { month = M.month_of(at, zone), amount = amount, reason = reason }
    local w = {}
    for i, l in ipairs(lines) do w[i] = l.amount:abs() end
    local parts = cumulative(amount, w, scale)
    for i, l in ipairs(lines) do
      for _, e in ipairs(recognize(parts[i], l.shape, catch_up and at or nil, scale, zone)) do
        out.recognized[#out.recognized + 1] = { month = e.month, amount = e.amount, line = l.id, kind = l.kind, reason = reason }
      end
    end
  end
  movement(base, start, "invoice", basis == "paid")
  local credited = decimal.zero
  local notes = {}
  for _, cn in ipairs(opts.credit_notes or {}) do notes[#notes + 1] = cn end
  sort(notes, function(a, b) return (a.issued or a.created or 0) < (b.issued or b.created or 0) end)
  -- the revenue a credit note takes back: its amount before tax (its subtotal, or its total
  -- less its taxes; a credit given taxes included is split at the invoice's own tax ratio)
  local taxed = base + (invoice.tax_total and D(invoice.tax_total, "tax_total") or decimal.zero)
  for i, cn in ipairs(notes) do
    local at = cn.issued or cn.created
    if type(at) ~= "number" then error(format("revenue.schedule: credit_notes[%d].created: a time expected", i), 2) end
    local amt
    if cn.subtotal ~= nil then
      amt = D(cn.subtotal, format("credit_notes[%d].subtotal", i))
    else
      amt = D(cn.amount or cn.total, format("credit_notes[%d].amount", i))
      if cn.tax_amount ~= nil then
        amt = amt - D(cn.tax_amount, format("credit_notes[%d].tax_amount", i))
      elseif not taxed:is_zero() and taxed ~= base then
        amt = (amt * base / taxed):round(scale, M.ROUNDING)
      end
    end
    if at < start then at = start end
    credited = credited + amt
    movement(-amt, at, "credit_note", true)
  end
  if invoice.state == "voided" then
    local at = invoice.voided
    if type(at) ~= "number" then error("revenue.schedule: invoice.voided: a time expected for a voided invoice", 2) end
    if at < start then at = start end
    movement(-(base - credited), at, "voided", true)
  end
  return out
end

-- Σ of a list's amounts by (currency, month).
local function add(acc, cur, month, field, amount)
  local c = acc[cur]
  if not c then c = {}; acc[cur] = c end
  local r = c[month]
  if not r then r = { invoiced = decimal.zero, recognized = decimal.zero }; c[month] = r end
  r[field] = r[field] + amount
end

-- ledger(invoices, credit_notes, opts) -> rows: the report over given records (no store).
-- credit_notes: a list of credit notes, each naming its `invoice`.
function M.ledger(invoices, credit_notes, opts)
  opts = opts or {}
  local basis = check_basis(opts.basis, "revenue.report")
  local zone = check_zone(opts.timezone, "revenue.report")
  local fy, fm, ty, tm
  if opts.from ~= nil then
    fy, fm = parse_month(opts.from)
    if not fy then error("revenue.report: from: a month \"YYYY-MM\" expected, got " .. tostring(opts.from), 2) end
  end
  if opts.to ~= nil then
    ty, tm = parse_month(opts.to)
    if not ty then error("revenue.report: to: a month \"YYYY-MM\" expected, got " .. tostring(opts.to), 2) end
  end
  if fy and ty and key(fy, fm) > key(ty, tm) then error("revenue.report: from: after to", 2) end
  local by_invoice = {}
  for _, cn in ipairs(credit_notes or {}) do
    local l = by_invoice[cn.invoice]
    if not l then l = {}; by_invoice[cn.invoice] = l end
    l[#l + 1] = cn
  end
  local acc = {}
  for i, inv in ipairs(invoices or {}) do
    if opts.pause and i % 100 == 0 then opts.pause() end
    if opts.tenant == nil or inv.tenant == opts.tenant then
      local s = M.schedule(inv, { basis = basis, timezone = zone, credit_notes = by_invoice[inv.id] })
      for _, e in ipairs(s.invoiced) do add(acc, s.currency, e.month, "invoiced", e.amount) end
      for _, e in ipairs(s.recognized) do add(acc, s.currency, e.month, "recognized", e.amount) end
    end
  end
  local rows = {}
  local currencies = {}
  for cur in pairs(acc) do currencies[#currencies + 1] = cur end
  sort(currencies)
  for _, cur in ipairs(currencies) do
    local months = {}
    for m in pairs(acc[cur]) do months[#months + 1] = m end
    sort(months)
    local first_key = fy and key(fy, fm) or months[1]
    local last_key = ty and key(ty, tm) or months[#months]
    local opening = decimal.zero
    for _, m in ipairs(months) do
      if m < first_key then opening = opening + acc[cur][m].invoiced - acc[cur][m].recognized end
    end
    local y, m = parse_month(first_key)
    while key(y, m) <= last_key do
      local r = acc[cur][key(y, m)] or { invoiced = decimal.zero, recognized = decimal.zero }
      local closing = opening + r.invoiced - r.recognized
      rows[#rows + 1] = { month = key(y, m), currency = cur, invoiced = r.invoiced, recognized = r.recognized,
        deferred_opening = opening, deferred_closing = closing }
      opening = closing
      y, m = next_month(y, m)
    end
  end
  return rows
end

-- The invoices (all but drafts) and credit notes of the store, read in pages by id: a tenant's
-- whole history, however long (steward.billing.invoices' list stops at 1,000). The rows are
-- decoded by steward.billing.invoice_record, as steward.billing.invoices does.
local PAGE = 500

local function records(st, tenant)
  local ok, invoices = pcall(require, "steward.billing.invoices")
  if not ok then return nil, "unavailable: steward.billing.invoices is not installed" end
  local okr, err = invoices.ready(st)
  if not okr then return nil, err end
  local record = require "steward.billing.invoice_record"
  local decimal_new = decimal.new
  local list, notes = {}, {}
  local function page(sql, decode, out)
    local after = ""
    while true do
      local rows, qerr
      if tenant then
        rows, qerr = st.db:query(sql .. " AND tenant = $2 ORDER BY id LIMIT " .. PAGE, after, tenant)
      else
        rows, qerr = st.db:query(sql .. " ORDER BY id LIMIT " .. PAGE, after)
      end
      if not rows then return nil, qerr end
      for _, r in ipairs(rows) do out[#out + 1] = decode(r) end
      if #rows < PAGE then return true end
      after = rows[#rows].id
    end
  end
  local okp, perr = page("SELECT id, body, state, series, seq, number, version FROM billing_invoices " ..
    "WHERE id > $1 AND state <> 'draft'", function(r)
      local inv = assert(record.load(r.body, { state = r.state, series = r.series, seq = r.seq, number = r.number,
        version = r.version }))
      inv.id = r.id
      return inv
    end, list)
  if not okp then return nil, perr end
  okp, perr = page("SELECT id, invoice, total, body, created FROM billing_credit_notes WHERE id > $1", function(r)
    local body = json.decode(r.body) or {}
    local tax = decimal.zero
    for _, t in ipairs(body.taxes or {}) do tax = tax + decimal_new(t.amount) end
    return { id = r.id, invoice = r.invoice, amount = decimal_new(tostring(r.total)),
      subtotal = body.subtotal and decimal_new(body.subtotal) or nil, tax_amount = #(body.taxes or {}) > 0 and tax or nil,
      created = tonumber(r.created) }
  end, notes)
  if not okp then return nil, perr end
  return list, notes
end

-- report{from, to, tenant, basis, store} -> rows | nil, err: by currency then month, {month,
-- currency, invoiced, recognized, deferred_opening, deferred_closing}, amounts exact decimals.
-- The invoices are the store's (opts.store, else the daemon's), or opts.invoices and
-- opts.credit_notes when given.
function M.report(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("revenue.report: argument #1: a table expected", 2) end
  local invoices, notes = opts.invoices, opts.credit_notes
  if invoices == nil then
    local st = opts.store or require("steward.runtime.store").default()
    if not st then return nil, "unavailable: no store (pass store=, or run in the daemon)" end
    local stored, second = records(st, opts.tenant)
    if not stored then return nil, second end
    invoices, notes = stored, notes or second
  end
  -- ~0.3 ms of CPU an invoice: a long history gives the loop back every 100 invoices
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.pause = o.pause or function()
    if task.current() then pcall(task.yield) end
  end
  return M.ledger(invoices, notes, o)
end

-- check_config(v, where) -> v | nil, "where.field: reason": the `billing.revenue` settings.
function M.check_config(v, where)
  where = where or "billing.revenue"
  if type(v) ~= "table" then return nil, where .. ": a table expected" end
  for k, x in pairs(v) do
    if k ~= "basis" then return nil, format("%s.%s: unknown field (basis)", where, tostring(k)) end
    if not M.BASES[x] then return nil, format("%s.basis: \"invoiced\" or \"paid\" expected, got %s", where, tostring(x)) end
  end
  return v
end

return M
