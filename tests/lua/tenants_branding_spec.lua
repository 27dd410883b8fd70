-- steward.tenants.branding: links move onto a link base (path and query kept), a message
-- without a tenant (or one without a record) is left as it is, the HTML part escapes what it
-- shows, the sender carries the brand's name, templates are checked and filled in.
local t = require "steward.tap"
local store = require "steward.runtime.store"
local branding = require "steward.tenants.branding"

local spec = assert(loadfile("tests/support/domain_spec.lua"))()
store.set_default(spec.st)

local function main()
  t.is(branding.rebase("http://127.0.0.1:8080/v1/incidents/a/ack?sig=x", "https://status.acme.test"),
    "https://status.acme.test/v1/incidents/a/ack?sig=x", "rebase keeps the path and query")
  t.is(branding.rebase("http://h/x", "https://b.test/base/"), "https://b.test/base/x", "rebase under a base path")
  t.is(branding.rebase("mailto:x@y", "https://b.test"), "mailto:x@y", "rebase leaves what is not http(s)")
  local msg = { title = "t", text = "x" }
  t.is(branding.apply(msg), msg, "a message without a tenant is left as it is")
  local m2 = { title = "t", labels = { tenant = "nobody" } }
  t.is(branding.apply(m2), m2, "a tenant without a record: as it is")
  local html = branding.html({ title = "<b>disk</b>", text = "a & b\n\nsecond", url = "https://s.test/x?a=1&b=2" },
    { name = "Acme \"Corp\"", color = "#ff6600", footer = "f<o>" })
  t.ok(html:find("&lt;b&gt;disk&lt;/b&gt;", 1, true) and html:find("a &amp; b", 1, true), "html escapes the title and text")
  t.ok(html:find("#ff6600", 1, true) and html:find("f&lt;o&gt;", 1, true), "html: the colour and the footer")
  t.ok(html:find("x?a=1&amp;b=2", 1, true), "html: the link, escaped")
  for line in html:gmatch("[^\n]+") do if #line > 998 then t.fail("an HTML line over 998 bytes") end end
  -- apply with a record: steward.tenants' get answers it (the spec stands in for the record)
  package.loaded["steward.tenants"] = { get = function(id)
    if id == "acme" then return { id = "acme", name = "Acme", branding = { footer = "-- Acme", link_base = "https://s.acme.test" } } end
  end }
  local b = branding.apply({ title = "t", text = "see http://127.0.0.1:8080/v1/approvals/9?sig=z", labels = { tenant = "acme" } })
  t.is(b.text, "see https://s.acme.test/v1/approvals/9?sig=z\n\n-- Acme", "apply: links on the link base, the footer after")
  t.is(branding.apply({ text = "hi\n\n-- Acme", tenant = "acme" }).text, "hi\n\n-- Acme", "a footer already there is not added twice")
  package.loaded["steward.tenants"] = nil
  t.is(branding.from({ name = "Acme Corp", email_from = "a@acme.test" }, "s@x"), '"Acme Corp" <a@acme.test>', "from: name and address")
  t.is(branding.from({ name = "Acme" }, "s@x"), "s@x", "from: without email_from, the channel's")
  t.raises(function() branding.set_template("acme", "x", { subject = "s" }) end, "template.subject", "an unknown template field raises naming it")
  t.raises(function() branding.set_template("acme", "", {}) end, "name", "an empty name raises naming it")
  t.is(branding.set_template("acme", "default", { title = "[{{brand}}] {{title}}" }), true, "set_template stores it")
  t.is(branding.template("acme", "default").title, "[{{brand}}] {{title}}", "template reads it back")
  t.is(branding.set_template("acme", "default", nil), true, "set_template(nil) removes it")
  t.is(branding.template("acme", "default"), nil, "... gone")
end

spec.run(main)
