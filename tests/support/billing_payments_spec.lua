-- The setting of the payment specs (stripe, webhooks, dunning): tests/support/domain_spec.lua's
-- store made the default one, and steward.billing.payments reading invoices from the fixture
-- (tests/support/billing_invoices_fixture.lua) rather than steward.billing.invoices. Returns
-- domain_spec's table (dir, st, dispatched, run) with .invoices, the fixture, added.
--   local spec = assert(loadfile("tests/support/billing_payments_spec.lua"))()
local spec = assert(loadfile("tests/support/domain_spec.lua"))()
require("steward.runtime.store").set_default(spec.st)
spec.invoices = assert(loadfile("tests/support/billing_invoices_fixture.lua"))()
require("steward.billing.payments").use_invoices(spec.invoices)
return spec
