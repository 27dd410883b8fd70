-- The supervisor's files, one pair per instance under <var_dir>/services/<service>/:
-- <revision>-<index>.pid (the pid, for people and scripts) and <revision>-<index>.json (what
-- a restarted daemon needs to re-adopt the instance or replace it: revision, index, port, pid,
-- the process's start time from /proc, restarts, state). Written atomically (rename), so a
-- kill -9 leaves either the old file or the new one.
local fs = require "steward.fs"
local json = require "steward.json"
local proc = require "steward.proc"

local type, ipairs, tostring, tonumber, pcall = type, ipairs, tostring, tonumber, pcall

local M = {}

function M.dir(root, service) return root .. "/" .. service end

local function base(root, inst) return M.dir(root, inst.service) .. "/" .. inst.revision .. "-" .. tostring(inst.index) end

-- save(root, inst) -> true | nil, err
function M.save(root, inst)
  local ok, err = fs.mkdir(M.dir(root, inst.service), { parents = true })
  if not ok then return nil, err end
  local rec = { service = inst.service, revision = inst.revision, index = inst.index, port = inst.port,
    host = inst.host, pid = inst.pid, start_time = inst.start_time, started_at = inst.started_at,
    restarts = inst.restarts, state = inst.state }
  ok, err = fs.write_atomic(base(root, inst) .. ".json", json.encode(rec) .. "\n")
  if not ok then return nil, err end
  if inst.pid then
    ok, err = fs.write_atomic(base(root, inst) .. ".pid", tostring(inst.pid) .. "\n")
  elseif fs.exists(base(root, inst) .. ".pid") then
    ok, err = fs.remove(base(root, inst) .. ".pid")
  end
  return ok, err
end

-- forget(root, inst): the instance is stopped for good.
function M.forget(root, inst)
  for _, ext in ipairs({ ".json", ".pid" }) do
    local p = base(root, inst) .. ext
    if fs.exists(p) then fs.remove(p) end
  end
  return true
end

-- load(root, service) -> { records } (unreadable files are skipped, with their errors)
function M.load(root, service)
  local list = fs.list(M.dir(root, service))
  local out, bad = {}, {}
  for _, e in ipairs(list or {}) do
    if e.name:match("%.json$") then
      local text = fs.read(M.dir(root, service) .. "/" .. e.name)
      local ok, rec = pcall(json.decode, text or "")
      if ok and type(rec) == "table" and rec.revision and tonumber(rec.index) then
        rec.index = tonumber(rec.index)
        out[#out + 1] = rec
      else
        bad[#bad + 1] = e.name
      end
    end
  end
  return out, bad
end

-- alive(rec) -> whether rec.pid is still the process the record names (same start time, not
-- a zombie): a pid re-used by another program since is not ours.
function M.alive(rec)
  if not rec.pid or not rec.start_time then return false end
  local info = proc.info(rec.pid)
  return info ~= nil and info.state ~= "Z" and info.start_time == rec.start_time
end

return M
