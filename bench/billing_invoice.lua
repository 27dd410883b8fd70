-- The billing benchmark's invoicing run (bench/billing.sh feeds it to `steward eval -`, so it
-- runs inside the daemon, on its store): builds every invoice that is due (the month that
-- ended) as the billing.invoicing policy does, finalizes each (its gap-free number), and
-- answers how long each stage took and what the finalized invoices come to, for the check.
local store = require "steward.runtime.store"
local time = require "steward.time"
local decimal = require "steward.decimal"
local invoices = require "steward.billing.invoices"

local st = store.default()
local t0 = time.monotonic()
local built = assert(invoices.invoice_due(st))
local t1 = time.monotonic()
local failed = #built.errors
for _, id in ipairs(built.built) do
  local inv, err = invoices.finalize(st, id)
  if not inv then failed = failed + 1; built.errors[#built.errors + 1] = id .. ": " .. tostring(err) end
end
local t2 = time.monotonic()
local rows = assert(st.db:query("SELECT number, total FROM billing_invoices WHERE state = 'finalized' ORDER BY number"))
local sum, numbers = decimal.zero, {}
for _, r in ipairs(rows) do
  sum = sum + decimal.new(r.total)
  numbers[#numbers + 1] = r.number
end
return string.format("built=%d finalized=%d errors=%d build_s=%.3f finalize_s=%.3f sum=%s first=%s last=%s%s",
  #built.built, #rows, failed, t1 - t0, t2 - t1, decimal.string(sum), tostring(numbers[1]),
  tostring(numbers[#numbers]), failed > 0 and (" first_error=" .. built.errors[1]:gsub("%s", "_")) or "")
