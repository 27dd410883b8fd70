-- steward run started as root gives up root before it opens the store (docs/operations.md,
-- "Running as an unprivileged user"). The service user is `user` from the config, else
-- `steward` when that account exists (deps/install creates it); `allow_root = true` keeps
-- root when no user is named. Otherwise the daemon refuses to start as root: a policy runs
-- with the daemon's powers, and root's are far more than any policy should have.
-- Before the switch the state the daemon owns (the var dir and an SQLite store's files) is
-- handed to that user, so everything it creates afterwards is the user's own.
local identity = require "steward.identity"
local fs = require "steward.fs"
local log = require "steward.log"

local ipairs, format = ipairs, string.format

local M = {}

M.DEFAULT_USER = "steward"

-- Hands path (and, for a directory, what it holds, without following links) to uid:gid.
local function give(path, uid, gid)
  local st = fs.lstat(path)
  if not st then return true end
  local ok, err = identity.chown(path, uid, gid)
  if not ok then return nil, err end
  if st.type == "directory" then
    for _, e in ipairs(fs.list(path) or {}) do
      ok, err = give(path .. "/" .. e.name, uid, gid)
      if not ok then return nil, err end
    end
  end
  return true
end

-- drop(cfg) -> the user name now in effect (nil when not started as root), or nil, err
function M.drop(cfg)
  local uid = identity.uid()
  if uid ~= 0 then return nil end
  local name = cfg.user
  if not name then
    if cfg.allow_root then
      log.warn("running as root (allow_root = true): policies run with root's powers")
      return "root"
    end
    if identity.lookup(M.DEFAULT_USER) then name = M.DEFAULT_USER end
  end
  if not name then
    return nil, format("refusing to run as root: set user = \"NAME\" to an unprivileged account " ..
      "(deps/install creates '%s'), or allow_root = true", M.DEFAULT_USER)
  end
  local who, err = identity.lookup(name)
  if not who then return nil, "user: " .. err end
  if who.uid == 0 then return nil, "user: " .. name .. " is root; name an unprivileged account" end
  local owned = { cfg.var_dir }
  local db = cfg.store:match("^sqlite:(.+)$")
  if db and db ~= ":memory:" then
    for _, suffix in ipairs({ "", "-wal", "-shm", "-journal" }) do owned[#owned + 1] = db .. suffix end
    local dir = db:match("^(.*)/[^/]+$")
    -- The database's directory must be writable for its journal files: hand it over only
    -- when it is the var dir or inside it, never an arbitrary directory such as /tmp.
    if dir and (dir == cfg.var_dir or dir:sub(1, #cfg.var_dir + 1) == cfg.var_dir .. "/") then
      owned[#owned + 1] = dir
    end
  end
  for _, path in ipairs(owned) do
    local ok, gerr = give(path, who.uid, who.gid)
    if not ok then return nil, "cannot hand " .. path .. " to " .. name .. ": " .. gerr end
  end
  local ok, berr = identity.become(name)
  if not ok then return nil, "cannot become " .. name .. ": " .. berr end
  log.info("dropped root", { user = name, uid = who.uid, gid = who.gid })
  return name
end

return M
