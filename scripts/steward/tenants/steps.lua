-- steward.tenants.steps: the steps of a tenant's provisioning saga, each with its compensation.
-- Every step is idempotent, so a step cut short by a crash can run again: what it creates is
-- named after the tenant (token id tenant-<id>-admin, schema and role tenant_<id>, policy
-- tenant_<id>, kv keys <id>/...) and looked for before it is created; every compensation
-- removes only what carries the tenant's name and is a no-op when it is already gone.
local json = require "steward.json"
local crypto = require "steward.crypto"
local log = require "steward.log"
local kv = require "steward.runtime.store.kv"
local tconfig = require "steward.tenants.config"
local record = require "steward.tenants.record"

local type, pairs, ipairs, tostring, error, format = type, pairs, ipairs, tostring, error, string.format

local M = {}

-- What the daemon hands the steps (steward.tenants.provision.start): cfg (pg_connections,
-- tenants), auth (the token table to refresh), registry (the running policies).
M.env = {}

local function tenant_of(ctx)
  local r, err = record.get(ctx.store, ctx.subject)
  if not r then error(err or ("no tenant " .. ctx.subject), 0) end
  return r
end

-- ---- tokens: the tenant's admin token ----

-- token_id(tenant) -> the id of the tenant's first admin token
function M.token_id(id) return "tenant-" .. id .. "-admin" end

local function tokens_changed(st, what)
  local stmts = {}
  if st:backend() == "postgres" then stmts[1] = { "SELECT pg_notify('steward_tokens', $1)", what } end
  if #stmts > 0 then st.db:batch(stmts) end
  if M.env.auth then M.env.auth:refresh() end
end

-- The secret was made when the tenant was requested and handed to the caller then; the saga
-- carries only its hash, so it is never in the store, the event log or a step's result.
local function run_tokens(ctx)
  local st, id = ctx.store, M.token_id(ctx.subject)
  local res, err = st.db:batch({ { "INSERT INTO api_tokens (id, hash, name, role, tenant, created) " ..
    "VALUES ($1, $2, $3, 'admin', $4, $5) ON CONFLICT (id) DO NOTHING", id, ctx.data.token_hash,
    "tenant admin (provisioning)", ctx.subject, require("steward.time").now() } })
  if not res then return nil, err end
  tokens_changed(st, "created " .. id)
  return { token = id }
end

local function undo_tokens(ctx)
  local st = ctx.store
  local res, err = st.db:batch({ { "DELETE FROM api_tokens WHERE id = $1 AND tenant = $2", M.token_id(ctx.subject), ctx.subject } })
  if not res then return nil, err end
  tokens_changed(st, "revoked " .. M.token_id(ctx.subject))
  return true
end

-- ---- postgres: schema and role tenant_<id>, row-level security on the shared data table ----

M.DATA_TABLE = "steward_tenant_data"

-- pg_name(id) -> the schema's and the role's name: tenant_<id>, or, past PostgreSQL's 63 bytes,
-- a prefix of it with a digest of the whole id (still one name per tenant).
function M.pg_name(id)
  local n = "tenant_" .. id
  if #n <= 63 then return n end
  return "tenant_" .. id:sub(1, 45) .. "_" .. crypto.hex(crypto.sha256(id)):sub(1, 10)
end

local function ident(s) return '"' .. s:gsub('"', '""') .. '"' end

local function pg_dsn()
  local cfg = M.env.cfg or {}
  local name = (cfg.tenants or tconfig.current).postgres
  if not name then return nil end
  local dsn = (cfg.pg_connections or {})[name]
  if not dsn then error(format("tenants.postgres: '%s' is not a pg_connections name", name), 0) end
  return dsn
end

local function with_pg(fn)
  local dsn = pg_dsn()
  if not dsn then return { skipped = "tenants.postgres is not configured" } end
  local pg = require "steward.pg"
  local db, err = pg.connect(dsn)
  if not db then return nil, "postgres: " .. tostring(err) end
  local res, terr = db:transaction(function(tx)
    local function q(sql, ...)
      local rows, e = tx:query(sql, ...)
      if not rows then error(e, 0) end
      return rows
    end
    -- DDL of concurrent provisionings one at a time: CREATE TABLE IF NOT EXISTS and the
    -- catalog checks below are not safe against each other otherwise.
    q("SELECT pg_advisory_xact_lock(hashtext('steward.tenants'))")
    return fn(q)
  end)
  db:close()
  if not res then return nil, "postgres: " .. tostring(terr) end
  return res
end

local function run_postgres(ctx)
  local id, name = ctx.subject, M.pg_name(ctx.subject)
  return with_pg(function(q)
    q("CREATE TABLE IF NOT EXISTS public." .. M.DATA_TABLE .. " (tenant text NOT NULL, key text NOT NULL, " ..
      "value jsonb, PRIMARY KEY (tenant, key))")
    q("ALTER TABLE public." .. M.DATA_TABLE .. " ENABLE ROW LEVEL SECURITY")
    if #q("SELECT 1 FROM pg_roles WHERE rolname = $1", name) == 0 then
      q("CREATE ROLE " .. ident(name) .. " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS")
    end
    q("CREATE SCHEMA IF NOT EXISTS " .. ident(name) .. " AUTHORIZATION " .. ident(name))
    q("GRANT SELECT, INSERT, UPDATE, DELETE ON public." .. M.DATA_TABLE .. " TO " .. ident(name))
    if #q("SELECT 1 FROM pg_policies WHERE schemaname = 'public' AND tablename = $1 AND policyname = $2",
      M.DATA_TABLE, name) == 0 then
      -- The id is checked against ^[a-z0-9][a-z0-9_-]*$, so it is safe as a literal here.
      q("CREATE POLICY " .. ident(name) .. " ON public." .. M.DATA_TABLE .. " TO " .. ident(name) ..
        " USING (tenant = '" .. id .. "') WITH CHECK (tenant = '" .. id .. "')")
    end
    return { schema = name, role = name, table = "public." .. M.DATA_TABLE }
  end)
end

local function undo_postgres(ctx)
  local id, name = ctx.subject, M.pg_name(ctx.subject)
  return with_pg(function(q)
    local has_table = #q("SELECT 1 FROM pg_tables WHERE schemaname = 'public' AND tablename = $1", M.DATA_TABLE) > 0
    if has_table then
      q("DROP POLICY IF EXISTS " .. ident(name) .. " ON public." .. M.DATA_TABLE)
      q("DELETE FROM public." .. M.DATA_TABLE .. " WHERE tenant = $1", id)
    end
    q("DROP SCHEMA IF EXISTS " .. ident(name) .. " CASCADE")
    if #q("SELECT 1 FROM pg_roles WHERE rolname = $1", name) > 0 then
      q("DROP OWNED BY " .. ident(name))
      q("DROP ROLE " .. ident(name))
    end
    return true
  end)
end

-- ---- limits: the plan's quotas, rate limits and budgets, recorded for the tenant ----

M.KV = "tenants" -- kv namespace: <id>/limits, <id>/config

local function run_limits(ctx)
  local r = tenant_of(ctx)
  local ok, err = tconfig.plan_known(r.plan)
  if not ok then return nil, "plan: " .. err end
  local lim = tconfig.limits(r.plan, r.limits)
  ok, err = kv.ns(ctx.store, M.KV):put(r.id .. "/limits", lim)
  if not ok then return nil, err end
  return { plan = r.plan, limits = lim }
end

local function undo_kv(key)
  return function(ctx)
    local ok, err = kv.ns(ctx.store, M.KV):delete(ctx.subject .. "/" .. key)
    if ok == nil then return nil, err end
    return true
  end
end

-- ---- config: the tenant's policy settings, checked against the policies' schemas ----

-- check_config(tenant, config) -> merged {[policy] = cfg} | nil, "config.<policy>: reason"
function M.check_config(tenant, config)
  local set = M.env.registry and M.env.registry.set or {}
  local schema = require "steward.runtime.policy.schema"
  local env_overlay = ((M.env.cfg or {}).policy_config) or {}
  local out = {}
  -- config.billing is the tenant's billing details that steward.billing reads (country, tax id,
  -- legal name: docs/billing/invoices.md), not a policy's settings
  for policy, values in pairs(config or {}) do
    local p = set[policy]
    if not p and policy == "billing" then
      -- not a policy: nothing to merge
    elseif not p then
      return nil, format("config.%s: no policy of that name is loaded", policy)
    else
      local s, errs = schema.compile(p.config_decl)
      if not s then return nil, format("config.%s: %s", policy, schema.describe(errs)) end
      local merged
      merged, errs = schema.merge(s, { { name = "environment", values = env_overlay[policy] },
        { name = "tenant " .. tenant, values = values } })
      if not merged then return nil, format("config.%s: %s", policy, schema.describe(errs)) end
      out[policy] = merged
    end
  end
  return out
end

-- apply_config(tenant, merged | nil): the running policies' settings for the tenant (nil:
-- back to steward.lua's tenant_config only, as after a failure or offboarding).
function M.apply_config(tenant, merged, names)
  local set = M.env.registry and M.env.registry.set or {}
  local static = ((M.env.cfg or {}).tenant_config or {})[tenant]
  for policy in pairs(names or merged or {}) do
    local p = set[policy]
    if p then
      p.tenant_configs = p.tenant_configs or {}
      if p.decide_ctx then p.decide_ctx[tenant] = nil end -- /v1/decide keeps a ctx per tenant with its config
      if merged and merged[policy] then
        p.tenant_configs[tenant] = merged[policy]
      elseif static and static[policy] then
        local schema = require "steward.runtime.policy.schema"
        local ov = { env = (M.env.cfg or {}).policy_config, tenants = { [tenant] = static } }
        local copy = setmetatable({}, { __index = p })
        if schema.apply(copy, ov) then p.tenant_configs[tenant] = copy.tenant_configs[tenant] end
      else
        p.tenant_configs[tenant] = nil
      end
    end
  end
end

local function run_config(ctx)
  local r = tenant_of(ctx)
  local merged, err = M.check_config(r.id, r.config)
  if not merged then return nil, err end
  local ok
  ok, err = kv.ns(ctx.store, M.KV):put(r.id .. "/config", r.config)
  if not ok then return nil, err end
  M.apply_config(r.id, merged)
  local names = {}
  for k in pairs(merged) do names[#names + 1] = k end
  table.sort(names)
  return { policies = json.array(names) }
end

local function undo_config(ctx, result)
  local names = {}
  for _, n in ipairs(result and result.policies or {}) do names[n] = true end
  M.apply_config(ctx.subject, nil, names)
  return undo_kv("config")(ctx)
end

-- ---- branding: the record's branding completed with defaults ----

local function run_branding(ctx)
  local r = tenant_of(ctx)
  local b = r.branding or {}
  local eff = { name = b.name or r.name, logo_url = b.logo_url, color = b.color, footer = b.footer,
    email_from = b.email_from, link_base = b.link_base or ((M.env.cfg or {}).alerting or {}).external_url }
  local ok, err = kv.ns(ctx.store, M.KV):put(r.id .. "/branding", eff)
  if not ok then return nil, err end
  return { branding = eff }
end

-- ---- welcome: one notification to the tenant's contact, with its branding ----

local function fill(s, vars)
  return (tostring(s):gsub("{{%s*([%w_.]+)%s*}}", function(k) return vars[k] ~= nil and tostring(vars[k]) or "" end))
end

M.WELCOME = { title = "Welcome to {{brand}}, {{name}}",
  text = "Your tenant {{id}} is ready (plan {{plan}}). Your administrator token was shown once when the tenant was requested." }

local function run_welcome(ctx)
  local r = tenant_of(ctx)
  local cfg = (M.env.cfg or {}).tenants or tconfig.current
  local w = cfg.welcome or {}
  local b = (ctx.results.branding or {}).branding or r.branding or {}
  local vars = { id = r.id, name = r.name, plan = r.plan, brand = b.name or r.name, email = (r.contact or {}).email,
    footer = b.footer or "", link = b.link_base or "" }
  local tpl = w.template or M.WELCOME
  local msg = { title = fill(tpl.title or M.WELCOME.title, vars), text = fill(tpl.text or M.WELCOME.text, vars),
    severity = "info", status = "resolved", to = r.contact and r.contact.email and { r.contact.email } or nil,
    labels = { tenant = r.id, plan = r.plan } }
  if b.footer then msg.text = msg.text .. "\n\n" .. b.footer end
  local ch = w.channel or "log"
  local notify = require "steward.notify"
  local opts = {}
  if type(ch) == "table" then for k, v in pairs(ch) do if k ~= "kind" then opts[k] = v end end; ch = ch.kind end
  -- No address to write to is not a reason to fail a tenant: the step says so instead.
  if ch == "email" and not msg.to and not opts.to then return { skipped = "the tenant has no contact.email" } end
  opts.name = opts.name or ("tenant-welcome")
  if ch == "email" and b.email_from then opts.from = b.email_from end
  if ch == "email" and opts.to == nil then opts.to = {} end
  local okc, channel = pcall(notify.channel, ch, opts)
  if not okc then return nil, "welcome.channel: " .. tostring(channel) end
  -- The key makes a re-run after a crash a duplicate, never a second message.
  local res, err = channel:send(msg, { key = "tenant-welcome:" .. r.id })
  if not res then return nil, err end
  log.info("tenant welcome sent", { tenant = r.id, status = res.status })
  return { status = res.status, key = "tenant-welcome:" .. r.id }
end

M.LIST = {
  { name = "tokens", run = run_tokens, undo = undo_tokens },
  { name = "postgres", run = run_postgres, undo = undo_postgres },
  { name = "limits", run = run_limits, undo = undo_kv("limits") },
  { name = "config", run = run_config, undo = undo_config },
  { name = "branding", run = run_branding, undo = undo_kv("branding") },
  -- A sent message cannot be unsent: nothing to compensate.
  { name = "welcome", run = run_welcome },
}

return M
