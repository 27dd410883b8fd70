-- steward.runtime.repl.server: the admin socket. Listens on a unix socket created mode 0600 (0660
-- with admin_socket_group), checks each peer's uid (SO_PEERCRED) against the configured
-- lists, and runs one session task per accepted peer. A refused peer gets a 'B' frame with
-- the reason; the refusal is logged and audited.
local unix = require "steward.unix"
local task = require "steward.task"
local log = require "steward.log"
local fs = require "steward.fs"
local ffi = require "ffi"
local audit = require "steward.runtime.store.audit"

pcall(ffi.cdef, "unsigned int getuid(void);")

local M = {}

local S = {}
S.__index = S

local function member(list, uid)
  for _, u in ipairs(list or {}) do
    if u == uid then return true end
  end
  return false
end

-- The role of a peer uid: "admin", "readonly" or nil (refused).
function M.role_of(cfg, uid)
  local admins = cfg.admin_uids
  if admins == nil or #admins == 0 then admins = { tonumber(ffi.C.getuid()), 0 } end
  if member(admins, uid) then return "admin" end
  if member(cfg.admin_readonly_uids, uid) then return "readonly" end
  return nil
end

local function refuse(ctx, conn, peer, reason)
  log.warn("admin socket: peer refused", { uid = peer and peer.uid, pid = peer and peer.pid, reason = reason })
  conn:write("B", reason)
  conn:close()
  if ctx.store_ok() then
    local ok, err = audit.append(ctx.store, { source = "repl", uid = peer and peer.uid, command = "attach",
      outcome = "refused", detail = reason })
    if not ok then log.warn("audit: cannot record a refused peer", { error = err }) end
  end
end

-- start(ctx) -> server | nil, err. ctx is the daemon's (cfg, store, registry, dispatch...).
function M.start(ctx)
  local cfg = ctx.cfg
  local path = cfg.admin_socket
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then
    local ok, err = fs.mkdir(dir, { parents = true })
    if not ok then return nil, "admin socket: cannot create " .. dir .. ": " .. tostring(err) end
  end
  local group = cfg.admin_socket_group
  local srv, err = unix.listen(path, { mode = group and tonumber("660", 8) or tonumber("600", 8), group = group })
  if not srv then return nil, "admin socket: " .. tostring(err) end
  local self = setmetatable({ srv = srv, sessions = {}, next_id = 0, ctx = ctx }, S)
  self.acceptor = task.spawn({ name = "repl.accept" }, function()
    while true do
      local conn = srv:accept()
      if not conn then return end
      local peer, perr = conn:peer()
      local role = peer and M.role_of(cfg, peer.uid)
      if not peer then
        refuse(ctx, conn, nil, "cannot read the peer's credentials: " .. tostring(perr))
      elseif not role then
        refuse(ctx, conn, peer, "uid " .. peer.uid .. " may not use this socket (see admin_uids in docs/repl.md)")
      else
        self.next_id = self.next_id + 1
        local id = string.format("%d.%d", peer.pid or 0, self.next_id)
        -- The session module (with its helpers and pretty-printer, 70 KiB of Lua heap) is
        -- loaded by the first attach: most daemons are never attached to.
        local s = require("steward.runtime.repl.session").new(ctx, conn, { uid = peer.uid, pid = peer.pid, role = role, id = id })
        self.sessions[s] = true
        task.spawn({ name = "repl.session" }, function()
          s:run()
          self.sessions[s] = nil
        end)
      end
    end
  end)
  log.info("listening", { listener = "admin", address = path })
  return self
end

function S:path() return self.srv:path() end

function S:count()
  local n = 0
  for _ in pairs(self.sessions) do n = n + 1 end
  return n
end

-- close(): stop accepting, end every session (each is told the daemon is stopping).
function S:close()
  if self.closed then return end
  self.closed = true
  self.srv:close()
  for s in pairs(self.sessions) do s:close("daemon stopping") end
end

return M
