-- steward.runtime.testing.capture: the recorded side effects of `steward test`. Builds the
-- replacement steward.http (requests answered by the spec's stubs, recorded) and
-- steward.runtime.events (appends recorded, then done for real in the spec's store), and wraps a
-- store's connection so that every write statement is recorded.
local pretty = require "steward.pretty"

local type, error, pairs, ipairs, tostring, select = type, error, pairs, ipairs, tostring, select
local format, upper = string.format, string.upper

local M = {}

-- The capture of the spec file being run: set by the runner.
local cur

-- new() -> capture: `captured` is what the spec reads; stubs are what it sets.
function M.new()
  local c = {
    captured = { http = {}, mail = {}, events = {}, store_writes = {}, timers = {}, fired = {} },
    file_stubs = {},  -- set while the spec file loads: kept for every test of the file
    test_stubs = {},  -- set inside a test or before_each: dropped when the test ends
    mail_answer = nil,
    in_test = false,
    real_io = false,
    failures = nil,   -- the running test's list of failures found outside its own code
  }
  return c
end

function M.set_current(c) cur = c end
function M.current() return cur end

-- Clears what a test recorded, so each test asserts on its own side effects.
function M.reset(c)
  for k in pairs(c.captured) do
    local t = c.captured[k]
    for i = #t, 1, -1 do t[i] = nil end
  end
  c.test_stubs = {}
  c.mail_answer = c.file_mail_answer
end

local function fail_test(msg)
  if cur and cur.failures then cur.failures[#cur.failures + 1] = msg end
end

-- URL matching: an exact URL, or a prefix ending in "*".
local function url_matches(pat, url)
  if pat:sub(-1) == "*" then return url:sub(1, #pat - 1) == pat:sub(1, -2) end
  return pat == url
end

local function find_stub(list, method, url)
  for i = #list, 1, -1 do
    local s = list[i]
    if (s.method == "*" or s.method == method) and url_matches(s.url, url) then return s end
  end
end

-- The stub API a spec sees as `http_stub`.
function M.stub_api(c)
  local api = {}
  -- on(method, url, response): response is {status, headers, body}, or {error, kind}, or a
  -- function(request) returning either (or res, err, kind as http.request would).
  function api.on(method, url, response)
    if type(method) ~= "string" then error("http_stub.on: method: string expected", 2) end
    if type(url) ~= "string" then error("http_stub.on: url: string expected", 2) end
    if type(response) ~= "table" and type(response) ~= "function" then
      error("http_stub.on: response: table or function expected", 2)
    end
    local list = c.in_test and c.test_stubs or c.file_stubs
    list[#list + 1] = { method = upper(method), url = url, response = response }
  end
  -- mail(answer): how send_mail answers: true (the default), or {error = "...", kind = "..."}
  -- or a function(opts).
  function api.mail(answer)
    if c.in_test then c.mail_answer = answer else c.file_mail_answer, c.mail_answer = answer, answer end
  end
  api.requests = c.captured.http
  return api
end

local function copy(t)
  if type(t) ~= "table" then return t end
  local o = {}
  for k, v in pairs(t) do o[k] = copy(v) end
  return o
end

local function answer(resp, req)
  local res, err, kind = resp, nil, nil
  if type(resp) == "function" then
    res, err, kind = resp(req)
    if res == nil then return nil, err, kind end
  end
  if type(res) ~= "table" then return nil, "http stub returned " .. type(res), "curl" end
  if res.error then return nil, tostring(res.error), res.kind or "connect" end
  local out = copy(res)
  out.status = out.status or 200
  out.headers = out.headers or {}
  out.body = out.body or ""
  out.url = out.url or req.url
  if not out.headers_list then
    local list = {}
    for k, v in pairs(out.headers) do list[#list + 1] = { k:lower(), tostring(v) } end
    out.headers_list = list
  end
  return out
end

-- The replacement steward.http.
function M.fake_http(real)
  local H = {}
  for k, v in pairs(real) do H[k] = v end
  function H.request(opts)
    if type(opts) ~= "table" then error("http.request: opts: table expected, got " .. type(opts), 2) end
    if type(opts.url) ~= "string" then error("http.request: url: string expected, got " .. type(opts.url), 2) end
    if not cur then return real.request(opts) end
    local method = upper(opts.method or (opts.body and "POST" or "GET"))
    local req = { method = method, url = opts.url, headers = copy(opts.headers) or {}, body = opts.body,
                  opts = copy(opts) }
    cur.captured.http[#cur.captured.http + 1] = req
    local s = find_stub(cur.test_stubs, method, opts.url) or find_stub(cur.file_stubs, method, opts.url)
    if s then
      local res, err, kind = answer(s.response, req)
      req.response, req.error = res, err
      return res, err, kind
    end
    if cur.real_io or (cur.env and rawget(cur.env, "real_io")) then
      local res, err, kind = real.request(opts)
      req.response, req.error, req.real = res, err, true
      return res, err, kind
    end
    local msg = format("unstubbed HTTP request: %s %s (add http_stub.on(%q, %q, {status = 200, body = \"...\"}), " ..
      "or set real_io = true in the spec)", method, opts.url, method, opts.url)
    fail_test(msg)
    error(msg, 2)
  end
  function H.send_mail(opts)
    if type(opts) ~= "table" then error("http.send_mail: opts: table expected, got " .. type(opts), 2) end
    if not cur then return real.send_mail(opts) end
    local m = copy(opts)
    cur.captured.mail[#cur.captured.mail + 1] = m
    local a = cur.mail_answer
    if a == nil then
      if cur.real_io or (cur.env and rawget(cur.env, "real_io")) then return real.send_mail(opts) end
      return true
    end
    if type(a) == "function" then return a(m) end
    if type(a) == "table" and a.error then return nil, tostring(a.error), a.kind or "connect" end
    return true
  end
  return H
end

-- The replacement steward.runtime.events: append records what it added, then appends for real.
function M.fake_events(real)
  local E = {}
  for k, v in pairs(real) do E[k] = v end
  function E.append(st, list, opts)
    local res, err = real.append(st, list, opts)
    if res and cur and type(list) == "table" then
      for i, ev in ipairs(list) do
        if not res.duplicate[i] then
          local rec = copy(ev)
          rec.id, rec.seq = res.ids[i], res.seqs[i]
          cur.captured.events[#cur.captured.events + 1] = rec
        end
      end
    end
    return res, err
  end
  return E
end

local function record_write(sql, ...)
  if not cur or cur.paused then return end
  cur.captured.store_writes[#cur.captured.store_writes + 1] = {
    sql = sql, params = { n = select("#", ...), ... },
    table = (sql:match("^%s*[Ii][Nn][Ss][Ee][Rr][Tt]%s+[Ii][Nn][Tt][Oo]%s+([%w_]+)") or
             sql:match("^%s*[Uu][Pp][Dd][Aa][Tt][Ee]%s+([%w_]+)") or
             sql:match("^%s*[Dd][Ee][Ll][Ee][Tt][Ee]%s+[Ff][Rr][Oo][Mm]%s+([%w_]+)")),
  }
end

-- Replaces st.db with a proxy that records exec and batch statements (reads pass through).
function M.wrap_store(st)
  local db = st.db
  local proxy = setmetatable({}, {
    __index = function(_, k)
      local v = db[k]
      if type(v) ~= "function" then return v end
      if k == "exec" then
        return function(_, sql, ...)
          record_write(sql, ...)
          return db:exec(sql, ...)
        end
      elseif k == "batch" then
        return function(_, list)
          for _, s in ipairs(list) do
            if type(s) == "table" and type(s[1]) == "string" then record_write(unpack(s, 1, table.maxn(s))) end
          end
          return db:batch(list)
        end
      end
      return function(_, ...) return v(db, ...) end
    end,
    __tostring = function() return tostring(db) end,
  })
  st.db = proxy
  return st
end

-- Store writes to one table (e.g. "kv", "timers", "events").
function M.writes_to(c, name)
  local out = {}
  for _, w in ipairs(c.captured.store_writes) do
    if w.table == name then out[#out + 1] = w end
  end
  return out
end

M.show = pretty.format
return M
