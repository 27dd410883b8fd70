-- steward.tenants.fairness: deficit round robin over per-tenant FIFOs (the dispatcher's
-- order for keys waiting for a runner): a flood cannot starve a quiet tenant, weights share
-- the runners in proportion, order within a tenant is kept.
local t = require "steward.tap"
local fairness = require "steward.tenants.fairness"

-- A flood queued first does not make a quiet tenant wait behind it.
local s = fairness.new()
for i = 1, 1000 do s:push("noisy", "n" .. i) end
s:push("quiet", "q1")
s:push("quiet", "q2")
local got = {}
for _ = 1, 4 do got[#got + 1] = (s:pop()) end
t.is_deeply(got, { "n1", "q1", "n2", "q2" }, "with equal weights the tenants alternate: the quiet one waits one item, not 1000")
t.is(s:len(), 998, "len counts what is left")
t.is(s:waiting("quiet"), 0, "the quiet tenant's queue is empty")
t.is(s:waiting("noisy"), 998, "the noisy one keeps the rest, in order")
local nxt = {}
for _ = 1, 3 do nxt[#nxt + 1] = (s:pop()) end
t.is_deeply(nxt, { "n3", "n4", "n5" }, "alone, the noisy tenant takes every turn in its own order")

-- Weights: a share of 3 against 1 gets three items per round.
s = fairness.new(function(tenant) return tenant == "gold" and 3 or 1 end)
for i = 1, 30 do s:push("gold", i); s:push("basic", i) end
local count = { gold = 0, basic = 0 }
for _ = 1, 40 do local _, ten = s:pop(); count[ten] = count[ten] + 1 end
t.ok(count.gold == 30 and count.basic == 10, "weights 3:1 share 40 pops 30:10 (" .. count.gold .. ":" .. count.basic .. ")")

-- A fractional weight saves up: 0.5 is one item every other round.
s = fairness.new(function(tenant) return tenant == "half" and 0.5 or 1 end)
for i = 1, 10 do s:push("half", "h" .. i); s:push("one", "o" .. i) end
got = {}
for _ = 1, 6 do got[#got + 1] = (s:pop()) end
t.is_deeply(got, { "o1", "h1", "o2", "o3", "h2", "o4" }, "weight 0.5 against 1: one item to two")

-- Order within a tenant is kept whatever else is queued.
s = fairness.new()
local want = {}
for i = 1, 50 do
  s:push("a", "a" .. i); want[#want + 1] = "a" .. i
  if i % 3 == 0 then s:push("b", "b" .. i) end
end
local seen = {}
while true do
  local item, ten = s:pop()
  if not item then break end
  if ten == "a" then seen[#seen + 1] = item end
end
t.is_deeply(seen, want, "a tenant's items leave in the order they came")
t.is(s:len(), 0, "everything came out once")

-- A tenant that empties and comes back starts a fresh turn (no credit kept).
s = fairness.new(function() return 2 end)
s:push("x", 1)
t.is(select(2, s:pop()), "x", "pop gives the tenant")
t.is(s:pop(), nil, "empty: nil")
s:push("y", 1); s:push("x", 2); s:push("x", 3); s:push("x", 4)
got = {}
for _ = 1, 4 do got[#got + 1] = select(2, s:pop()) end
t.is_deeply(got, { "y", "x", "x", "x" }, "round order is arrival order; x's turn of 2 then x again when alone")

-- nil tenant is the tenant "" (events of no tenant); a broken weight counts as 1.
s = fairness.new(function(tenant) if tenant == "bad" then return -5 end return 1 end)
s:push(nil, "none"); s:push("bad", "b")
got = {}
for _ = 1, 2 do got[#got + 1] = (s:pop()) end
t.is_deeply(got, { "none", "b" }, "no tenant and a broken weight are served")

t.raises(function() fairness.new(3) end, "weight must be a function", "a weight that is no function raises")
t.raises(function() fairness.new():push("a", nil) end, "item must not be nil", "a nil item raises")

-- Many tenants, many items: each pop is O(1) amortised; 100 tenants x 1000 items drain.
s = fairness.new()
for i = 1, 1000 do for k = 1, 100 do s:push("t" .. k, i) end end
local n = 0
while s:pop() do n = n + 1 end
t.is(n, 100000, "100000 items over 100 tenants all come out")

t.done()
