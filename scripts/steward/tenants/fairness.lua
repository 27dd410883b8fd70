-- Deficit round robin over per-tenant FIFOs: the order in which the dispatcher gives its free
-- runners to waiting keys, so that a tenant with thousands of waiting keys cannot make
-- another tenant's key wait behind all of them. Each round a tenant may take as many items as
-- its weight (its plan's budgets.queue_share; a fractional weight saves up over rounds);
-- within a tenant items leave in the order they came. Pure: no clock, no I/O.
local type, tostring = type, tostring

local M = {}

local F = {}
F.__index = F

-- new(weight) -> scheduler; weight(tenant) -> a number > 0 (default: 1 for everyone).
function M.new(weight)
  if weight ~= nil and type(weight) ~= "function" then
    error("fairness.new: weight must be a function(tenant) -> number, got " .. type(weight), 2)
  end
  return setmetatable({
    weight = weight or function() return 1 end,
    queues = {},                          -- tenant -> { items, head, tail, deficit, topped, weight }
    active = { head = 1, tail = 0 },      -- tenants with items, in round order (explicit indices)
    n = 0,
  }, F)
end

local function weight_of(s, tenant)
  local w = s.weight(tenant)
  if type(w) ~= "number" or w ~= w or w <= 0 then return 1 end -- a broken weight never stalls a tenant
  return w
end

local function active_push(s, tenant)
  local a = s.active
  a.tail = a.tail + 1
  a[a.tail] = tenant
end

local function active_pop(s)
  local a = s.active
  local t = a[a.head]
  a[a.head] = nil
  a.head = a.head + 1
  if a.head > a.tail then a.head, a.tail = 1, 0 end
  return t
end

-- push(tenant, item): queues item behind the tenant's earlier ones.
-- The weight is asked here, before anything changes, and never in pop: a weight function
-- that waits (a cache's first load) cannot leave a round half-done for another task to see.
function F:push(tenant, item)
  if item == nil then error("fairness.push: item must not be nil", 2) end
  tenant = tenant == nil and "" or tostring(tenant)
  local w = weight_of(self, tenant)
  local q = self.queues[tenant]
  if not q then
    q = { items = {}, head = 1, tail = 0, deficit = 0, topped = false }
    self.queues[tenant] = q
    active_push(self, tenant)
  end
  q.weight = w
  q.tail = q.tail + 1
  q.items[q.tail] = item
  self.n = self.n + 1
end

-- pop() -> item, tenant; or nil when nothing waits.
function F:pop()
  local a = self.active
  while a.head <= a.tail do
    local tenant = a[a.head]
    local q = self.queues[tenant]
    if not q.topped then
      q.deficit = q.deficit + q.weight
      q.topped = true
    end
    if q.deficit >= 1 then
      local item = q.items[q.head]
      q.items[q.head] = nil
      q.head = q.head + 1
      q.deficit = q.deficit - 1
      self.n = self.n - 1
      if q.head > q.tail then
        -- Emptied: the tenant leaves the round, and keeps no credit for later.
        active_pop(self)
        self.queues[tenant] = nil
      elseif q.deficit < 1 then
        -- Its turn is over: to the back of the round, with what is left of its credit.
        active_pop(self)
        q.topped = false
        active_push(self, tenant)
      end
      return item, tenant
    end
    -- Not a whole item's credit yet (a weight below 1): it saves up; next tenant.
    active_pop(self)
    q.topped = false
    active_push(self, tenant)
  end
  return nil
end

-- len() -> items waiting, all tenants together.
function F:len() return self.n end

-- waiting(tenant) -> items waiting for one tenant.
function F:waiting(tenant)
  local q = self.queues[tenant == nil and "" or tostring(tenant)]
  return q and (q.tail - q.head + 1) or 0
end

return M
