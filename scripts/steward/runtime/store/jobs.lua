-- steward.runtime.store.jobs: a durable job queue. Jobs are claimed with a lease (a worker that dies
-- leaves a lease that expires, and the job is claimable again), retried with exponential
-- backoff and jitter, and dead-lettered with their last error after max_attempts.
local json = require "steward.json"
local util = require "steward.runtime.store.util"
require "steward.runtime.store.schema"

local type, error, ipairs, tostring, floor, min, random = type, error, ipairs, tostring, math.floor, math.min, math.random

local M = {}

local COLUMNS = "id, queue, payload, state, attempts, max_attempts, run_at, lease_until, dedupe_key, last_error, created, updated"

local function check_queue(q, what)
  if type(q) ~= "string" or q == "" or #q > 200 then error(what .. ": queue: 1 to 200 byte string expected", 3) end
end

local function check_id(id, what)
  if type(id) ~= "number" or id ~= floor(id) then error(what .. ": id: integer expected, got " .. type(id), 3) end
end

local function row_job(r)
  return {
    id = r.id, queue = r.queue, payload = json.decode(r.payload), state = r.state, attempts = r.attempts,
    max_attempts = r.max_attempts, run_at = r.run_at, lease_until = r.lease_until, key = r.dedupe_key,
    last_error = r.last_error, created = r.created, updated = r.updated,
  }
end

-- enqueue → id, or the id of the existing job with the same key (and true as a second value).
function M.enqueue(st, queue, payload, opts)
  util.store_arg(st, "jobs.enqueue")
  check_queue(queue, "jobs.enqueue")
  if payload == nil then payload = json.null end
  local text, jerr = json.encode(payload)
  if not text then error("jobs.enqueue: payload: " .. tostring(jerr), 2) end
  opts = util.opt_table(opts, "jobs.enqueue: opts")
  local now = util.now(opts.now)
  local run_at = opts.run_at ~= nil and util.time_arg(opts.run_at, "jobs.enqueue: opts.run_at") or now
  if opts.delay ~= nil then run_at = now + util.duration_arg(opts.delay, "jobs.enqueue: opts.delay") end
  local max = opts.max_attempts or 5
  if type(max) ~= "number" or max ~= floor(max) or max < 1 then
    error("jobs.enqueue: opts.max_attempts: positive integer expected", 2)
  end
  local key = opts.key
  if key ~= nil and (type(key) ~= "string" or key == "") then error("jobs.enqueue: opts.key: non-empty string expected", 2) end
  local res, err = st.db:exec([[INSERT INTO jobs (queue, payload, state, attempts, max_attempts, run_at, dedupe_key, created, updated)
    VALUES ($1, $2, 'pending', 0, $3, $4, $5, $6, $6)
    ON CONFLICT (queue, dedupe_key) DO NOTHING RETURNING id]], queue, text, max, run_at, key, now)
  if not res then return nil, err end
  local row = res.rows and res.rows[1]
  if row then return row.id end
  local rows, qerr = st.db:query("SELECT id FROM jobs WHERE queue = $1 AND dedupe_key = $2", queue, key)
  if not rows then return nil, qerr end
  if not rows[1] then return nil, "jobs.enqueue: conflicting job vanished; retry" end
  return rows[1].id, true
end

-- claim(st, queue, n, lease) → list of jobs, each now running with lease_until = now + lease.
-- The state test is repeated outside the subquery so that on PostgreSQL, where two claims may
-- pick the same row, the second one re-checks the row it waited for and skips it.
function M.claim(st, queue, n, lease, opts)
  util.store_arg(st, "jobs.claim")
  check_queue(queue, "jobs.claim")
  if type(n) ~= "number" or n ~= floor(n) or n < 1 or n > 1000 then error("jobs.claim: n: integer from 1 to 1000 expected", 2) end
  local secs = util.duration_arg(lease, "jobs.claim: lease")
  if secs <= 0 then error("jobs.claim: lease: positive duration expected", 2) end
  opts = util.opt_table(opts, "jobs.claim: opts")
  local now = util.now(opts.now)
  local due = "queue = $1 AND ((state = 'pending' AND run_at <= $2) OR (state = 'running' AND lease_until <= $2))"
  local res, err = st.db:exec("UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = $3, updated = $2" ..
    " WHERE id IN (SELECT id FROM jobs WHERE " .. due .. " ORDER BY run_at, id LIMIT $4) AND " .. due ..
    " RETURNING " .. COLUMNS, queue, now, now + secs, n)
  if not res then return nil, err end
  local out = {}
  for i, r in ipairs(res.rows or {}) do out[i] = row_job(r) end
  table.sort(out, function(a, b)
    if a.run_at ~= b.run_at then return a.run_at < b.run_at end
    return a.id < b.id
  end)
  return out
end

-- complete(st, id) → true, or nil, "not found" (the job is not running: completed already, or
-- its lease expired and another worker has it... which then completes it).
function M.complete(st, id)
  util.store_arg(st, "jobs.complete")
  check_id(id, "jobs.complete")
  local res, err = st.db:exec("DELETE FROM jobs WHERE id = $1 AND state = 'running'", id)
  if not res then return nil, err end
  if res.changes == 0 then return nil, "not found" end
  return true
end

-- The delay before attempt n+1: base * 2^(n-1), capped, then "equal jitter" (half fixed, half
-- random) so that retries of jobs that failed together spread out.
function M.backoff(attempts, base, max_backoff, jitter)
  local d = min(max_backoff, base * 2 ^ (attempts - 1))
  if jitter == false then return d end
  return d / 2 + random() * d / 2
end

function M.fail(st, id, errmsg, opts)
  util.store_arg(st, "jobs.fail")
  check_id(id, "jobs.fail")
  opts = util.opt_table(opts, "jobs.fail: opts")
  local base = util.duration_arg(opts.backoff or 1, "jobs.fail: opts.backoff")
  local cap = util.duration_arg(opts.max_backoff or 3600, "jobs.fail: opts.max_backoff")
  local now = util.now(opts.now)
  local text = errmsg == nil and nil or tostring(errmsg)
  local rows, err = st.db:query("SELECT attempts, max_attempts FROM jobs WHERE id = $1 AND state = 'running'", id)
  if not rows then return nil, err end
  local r = rows[1]
  if not r then return nil, "not found" end
  local res, verdict, run_at
  if r.attempts >= r.max_attempts then
    verdict = "dead"
    res, err = st.db:exec("UPDATE jobs SET state = 'dead', lease_until = NULL, last_error = $2, updated = $3" ..
      " WHERE id = $1 AND state = 'running' AND attempts = $4", id, text, now, r.attempts)
  else
    verdict = "retry"
    run_at = now + M.backoff(r.attempts, base, cap, opts.jitter)
    res, err = st.db:exec("UPDATE jobs SET state = 'pending', lease_until = NULL, last_error = $2, updated = $3, run_at = $5" ..
      " WHERE id = $1 AND state = 'running' AND attempts = $4", id, text, now, r.attempts, run_at)
  end
  if not res then return nil, err end
  if res.changes == 0 then return nil, "not found" end
  return verdict, run_at
end

function M.get(st, id)
  util.store_arg(st, "jobs.get")
  check_id(id, "jobs.get")
  local rows, err = st.db:query("SELECT " .. COLUMNS .. " FROM jobs WHERE id = $1", id)
  if not rows then return nil, err end
  return rows[1] and row_job(rows[1]) or nil
end

function M.dead_letters(st, opts)
  util.store_arg(st, "jobs.dead_letters")
  opts = util.opt_table(opts, "jobs.dead_letters: opts")
  local limit = util.limit_arg(opts.limit, "jobs.dead_letters: opts.limit", 100, 1000)
  local params, sql = {}, "SELECT " .. COLUMNS .. " FROM jobs WHERE state = 'dead'"
  if opts.queue ~= nil then
    check_queue(opts.queue, "jobs.dead_letters")
    params[#params + 1] = opts.queue
    sql = sql .. " AND queue = $" .. #params
  end
  if opts.cursor ~= nil then
    local after = util.cursor_decode("dl", opts.cursor)
    if not after then return nil, "jobs.dead_letters: cursor: not a cursor this function returned" end
    params[#params + 1] = after
    sql = sql .. " AND id > $" .. #params
  end
  params[#params + 1] = limit + 1
  sql = sql .. " ORDER BY id LIMIT $" .. #params
  local rows, err = st.db:query(sql, unpack(params, 1, #params))
  if not rows then return nil, err end
  local out = {}
  for i = 1, min(#rows, limit) do out[i] = row_job(rows[i]) end
  local cursor = #rows > limit and util.cursor_encode("dl", out[#out].id) or nil
  return { jobs = out, next_cursor = cursor }
end

function M.requeue(st, id, opts)
  util.store_arg(st, "jobs.requeue")
  check_id(id, "jobs.requeue")
  opts = util.opt_table(opts, "jobs.requeue: opts")
  local now = util.now(opts.now)
  local res, err = st.db:exec("UPDATE jobs SET state = 'pending', attempts = 0, run_at = $2, updated = $2" ..
    " WHERE id = $1 AND state = 'dead'", id, now)
  if not res then return nil, err end
  if res.changes == 0 then return nil, "not found" end
  return true
end

-- stats(st) → {queue = {pending = n, running = n, dead = n}}
function M.stats(st)
  util.store_arg(st, "jobs.stats")
  local rows, err = st.db:query("SELECT queue, state, COUNT(*) AS n FROM jobs GROUP BY queue, state")
  if not rows then return nil, err end
  local out = {}
  for _, r in ipairs(rows) do
    local q = out[r.queue]
    if not q then
      q = { pending = 0, running = 0, dead = 0 }
      out[r.queue] = q
    end
    q[r.state] = r.n
  end
  return out
end

return M
