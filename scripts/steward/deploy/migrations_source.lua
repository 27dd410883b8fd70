-- A migration's text as the rules of steward.deploy.migrations see it: PostgreSQL's parse tree
-- (steward.sqlparse), each statement with the offset of its first token, line and column of any
-- offset, the offsets of an ALTER TABLE's actions (the parser keeps none), and the
-- "-- squawk-ignore" comments (the parser drops comments; its scanner keeps them).
local sqlparse = require "steward.sqlparse"

local M = {}

local COMMENT = { SQL_COMMENT = true, C_COMMENT = true }

-- The single key of a node table ({CreateStmt = {...}}) and its body.
function M.node(n)
  if type(n) ~= "table" then return nil end
  local k, v = next(n)
  if k ~= nil and next(n, k) == nil and type(v) == "table" then return k, v end
  return nil
end

-- The strings of a list of {String = {sval = }} nodes.
function M.strings(list)
  local out = {}
  for _, item in ipairs(list or {}) do
    local k, v = M.node(item)
    if k == "String" then out[#out + 1] = v.sval or "" end
  end
  return out
end

-- Where an expression starts in the text: its own location is an operator's for a binary
-- expression, the "::" for a cast; the leftmost of those and its operands' starts.
function M.expr_start(e)
  local _, n = M.node(e)
  if type(n) ~= "table" then return nil end
  local best = (n.location and n.location >= 0) and n.location or nil
  for _, sub in ipairs({ n.lexpr, n.arg }) do
    local s = M.expr_start(sub)
    if s and (not best or s < best) then best = s end
  end
  return best
end

-- The names of a TypeName: { "pg_catalog", "int4" }; the last one, and whether it is an array.
function M.type_of(tn)
  if type(tn) ~= "table" then return nil end
  local names = M.strings(tn.names)
  return names[#names], names, tn.arrayBounds ~= nil
end

local function line_index(text)
  local starts = { 0 }
  for pos in text:gmatch("()\n") do starts[#starts + 1] = pos end -- byte after '\n', 0-based
  return starts
end

-- 1-based line and column (in characters) of a 0-based byte offset.
local function line_col(src, offset)
  local starts = src.line_starts
  local lo, hi = 1, #starts
  while lo < hi do
    local mid = math.floor((lo + hi + 1) / 2)
    if starts[mid] <= offset then lo = mid else hi = mid - 1 end
  end
  local chunk = src.text:sub(starts[lo] + 1, offset)
  local _, cont = chunk:gsub("[\128-\191]", "")
  return lo, #chunk - cont + 1
end

-- A character position (libpg_query's cursorpos, 1-based) as a 0-based byte offset.
local function char_to_byte(text, pos)
  local chars, i = 0, 1
  while i <= #text do
    local b = text:byte(i)
    if b < 128 or b >= 192 then
      chars = chars + 1
      if chars == pos then return i - 1 end
    end
    i = i + 1
  end
  return #text
end

-- The tokens of statement s at depth 0 split at ',' after the relation's name: the offsets
-- of an ALTER TABLE's actions, or nil when they do not line up with the parsed commands.
local function action_offsets(src, st, ncmds, rel_location)
  local toks = src.tokens
  local i = 1
  while toks[i] and toks[i].start < rel_location do i = i + 1 end
  local stop = st.location + st.len
  -- The (possibly qualified) name: a word, then ('.' word)*, then an optional '*'.
  if not toks[i] then return nil end
  i = i + 1
  while toks[i] and toks[i].token == "ASCII_46" and toks[i + 1] do i = i + 2 end
  if toks[i] and toks[i].token == "ASCII_42" then i = i + 1 end
  local offsets, depth, want = {}, 0, true
  while toks[i] and toks[i].start < stop do
    local t = toks[i]
    if not COMMENT[t.token] then
      if want then offsets[#offsets + 1] = t.start; want = false end
      if t.token == "ASCII_40" or t.token == "ASCII_91" then depth = depth + 1
      elseif t.token == "ASCII_41" or t.token == "ASCII_93" then depth = depth - 1
      elseif t.token == "ASCII_44" and depth == 0 then want = true
      elseif t.token == "ASCII_59" then break end
    end
    i = i + 1
  end
  if #offsets ~= ncmds then return nil end
  return offsets
end

-- parse(sql) -> src | nil, err, {position, line, column}
function M.parse(sql)
  local tree, err, info = sqlparse.parse(sql)
  local src = { text = sql, line_starts = line_index(sql) }
  if not tree then
    local off = char_to_byte(sql, (info and info.position or 1))
    local line, col = line_col(src, off)
    return nil, err, { position = info and info.position, line = line, column = col }
  end
  local toks = sqlparse.scan(sql) or {}
  src.tokens = toks
  src.stmts = {}
  local ti = 1
  for i, s in ipairs(tree.stmts) do
    local kind, body = M.node(s.stmt)
    -- The first token of the statement that is not a comment: where squawk points.
    while toks[ti] and (toks[ti].start < s.location or COMMENT[toks[ti].token]) do ti = ti + 1 end
    local first = toks[ti] and toks[ti].start < s.location + s.len and toks[ti].start or s.location
    local st = { index = i, kind = kind, n = body, location = s.location, len = s.len, start = first }
    if kind == "AlterTableStmt" and body.relation and body.relation.location then
      st.actions = action_offsets(src, st, #(body.cmds or {}), body.relation.location)
    end
    src.stmts[i] = st
  end
  src.line_col = function(offset) return line_col(src, offset) end
  return src
end

-- The offset of action k of an ALTER TABLE statement (its statement's start when unknown).
function M.action_at(st, k)
  return st.actions and st.actions[k] or st.start
end

-- The ignore directives, as squawk reads them: "-- squawk-ignore rule-a, rule-b" on the
-- line of a violation or the line before it, "-- squawk-ignore-file [rules]" for the file,
-- "squawk-disable-assume-in-transaction". Unknown names are reported through unknown(name,
-- offset). resolve(name) -> list of rule ids, or nil when unknown.
function M.ignores(src, resolve, unknown)
  local out = { lines = {}, file = {}, file_all = false, disable_assume = false }
  for _, t in ipairs(src.tokens) do
    if COMMENT[t.token] then
      local text = src.text:sub(t.start + 1, t.stop)
      local body, body_at
      if t.token == "SQL_COMMENT" then
        body, body_at = text:sub(3), t.start + 2
      else
        body, body_at = text:sub(3, -3), t.start + 2
      end
      local lead = #body:match("^%s*")
      local trimmed = body:sub(lead + 1)
      local cut = trimmed:find("--", 1, true)
      if cut then trimmed = trimmed:sub(1, cut - 1) end
      trimmed = trimmed:gsub("%s+$", "")
      if trimmed == "squawk-disable-assume-in-transaction" then out.disable_assume = true end
      local kind, rest
      if trimmed:sub(1, 18) == "squawk-ignore-file" then
        kind, rest = "file", trimmed:sub(19)
      elseif trimmed:sub(1, 13) == "squawk-ignore" then
        kind, rest = "line", trimmed:sub(14)
      end
      if kind then
        local set = {}
        local names_at = body_at + lead + (kind == "file" and 18 or 13)
        local pos = 1
        for item in (rest .. ","):gmatch("([^,]*),") do
          local name = item:match("^%s*(.-)%s*$")
          if name ~= "" then
            local ids = resolve(name)
            if ids then
              for _, id in ipairs(ids) do set[id] = true end
            else
              unknown(name, names_at + pos - 1 + #item:match("^%s*"))
            end
          end
          pos = pos + #item + 1
        end
        if kind == "file" then
          if rest:match("^%s*$") then out.file_all = true end
          for id in pairs(set) do out.file[id] = true end
        else
          out.lines[(line_col(src, t.start))] = set
        end
      end
    end
  end
  return out
end

return M
