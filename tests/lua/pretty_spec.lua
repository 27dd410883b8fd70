-- steward.pretty: the value printer used by eval and the REPL.
local t = require "steward.tap"
local pretty = require "steward.pretty"
local f = pretty.format

t.is(f(1), "1", "integers")
t.is(f(0.5), "0.5", "floats")
t.is(f("a\nb"), '"a\\nb"', "strings quoted and escaped")
t.is(f(nil), "nil", "nil")
t.is(f({ b = 1, a = 2, 10, 20 }), "{ 10, 20, a = 2, b = 1 }", "sorted keys, array part first")
t.is(f({ ["not ident"] = 1 }), '{ ["not ident"] = 1 }', "non-identifier keys are bracketed")
local c = { name = "c" }; c.self = c
t.like(f(c), "<cycle: table: 0x%x+>", "cycles are marked")
t.is(f({ { { { 1 } } } }, { depth = 2 }), "{ { {...} } }", "depth limit")
local big = {}; for i = 1, 10 do big[i] = i end
t.is(f(big, { items = 3 }), "{ 1, 2, 3, ... (7 more) }", "size limit")
local wide = {}; for i = 1, 30 do wide["key" .. i] = i end
t.like(f(wide), "^{\n  key1 = 1,\n", "long tables break over lines")
t.ok(not f({ 1 }):find("\27"), "no colour unless asked")
t.like(f("s", { color = true }), "\27%[32m", "colour when asked")
t.raises(function() f(1, 2) end, "opts must be a table", "bad opts is misuse")
t.done()
