-- steward.alerting.matchers: Alertmanager 0.25's label matchers (=, !=, =~, !~), their text
-- syntax (`name="value"`, `{a="b", c=~"d|e"}` as amtool and alertmanager.yml accept it) and
-- their canonical string form (route keys and group keys are built from it).
-- Regexes are RE2 in Alertmanager; we run them on Debian's PCRE2 through LuaJIT's ffi, with
-- the options that make PCRE2 agree with Go on the RE2 subset, and reject the PCRE-only
-- constructs RE2 refuses, so a pattern accepted here means the same thing there.
local ffi = require "ffi"

local type, tostring, error, ipairs, pairs, setmetatable, getmetatable, select =
  type, tostring, error, ipairs, pairs, setmetatable, getmetatable, select
local byte, char, sub, format, find, gsub = string.byte, string.char, string.sub, string.format,
  string.find, string.gsub
local concat, sort = table.concat, table.sort

local M = {}

-- PCRE2 ------------------------------------------------------------------------------------

pcall(ffi.cdef, [[
typedef struct pcre2_real_code_8 pcre2_code_8;
typedef struct pcre2_real_match_data_8 pcre2_match_data_8;
pcre2_code_8 *pcre2_compile_8(const unsigned char *pattern, size_t length, uint32_t options,
                              int *errorcode, size_t *erroroffset, void *ccontext);
void pcre2_code_free_8(pcre2_code_8 *code);
int pcre2_jit_compile_8(pcre2_code_8 *code, uint32_t options);
pcre2_match_data_8 *pcre2_match_data_create_8(uint32_t ovecsize, void *gcontext);
void pcre2_match_data_free_8(pcre2_match_data_8 *match_data);
int pcre2_match_8(const pcre2_code_8 *code, const unsigned char *subject, size_t length,
                  size_t startoffset, uint32_t options, pcre2_match_data_8 *match_data,
                  void *mcontext);
int pcre2_get_error_message_8(int errorcode, unsigned char *buffer, size_t bufflen);
]])

-- Only the runtime .so is on every machine (the unversioned name comes with -dev).
local pcre
for _, name in ipairs({ "libpcre2-8.so.0", "pcre2-8" }) do
  local ok, lib = pcall(ffi.load, name)
  if ok then pcre = lib break end
end

-- UTF: Go matches runes, not bytes. DOLLAR_ENDONLY: Go's `$` never matches before a final
-- newline. MATCH_INVALID_UTF: a value that is not UTF-8 fails to match instead of erroring.
local COMPILE_OPTS = 0x00080000 + 0x00000010 + 0x04000000 + 0x00100000 -- UTF, DOLLAR_ENDONLY,
                                                                      -- MATCH_INVALID_UTF, NEVER_BACKSLASH_C
local JIT_COMPLETE = 1

local errcode, erroffset = ffi.new("int[1]"), ffi.new("size_t[1]")
local errbuf = ffi.new("unsigned char[256]")
local match_data -- one is enough: matching never yields, and we only need "matched or not"

-- Constructs PCRE2 accepts and Go's RE2 refuses: without this check a config that works here
-- would be rejected by Alertmanager, or worse, mean something else.
local function re2_refuses(re)
  local i, n, in_class = 1, #re, false
  while i <= n do
    local c = sub(re, i, i)
    if c == "\\" then
      local e = sub(re, i + 1, i + 1)
      if e:match("^[1-9]$") then return "backreference \\" .. e end
      if e == "g" or e == "k" or e == "K" or e == "R" or e == "G" or e == "Z" or e == "X" or
         e == "h" or e == "H" or e == "V" or e == "N" then
        return "escape \\" .. e
      end
      if e == "Q" then -- literal text up to \E
        local e2 = find(re, "\\E", i + 2, true)
        i = e2 and e2 + 2 or n + 1
      else
        i = i + 2
      end
    elseif in_class then
      if c == "[" and sub(re, i + 1, i + 1) == ":" then
        local close = find(re, ":]", i + 2, true)
        i = close and close + 2 or i + 1
      else
        if c == "]" then in_class = false end
        i = i + 1
      end
    elseif c == "[" then
      in_class = true
      i = i + 1
      if sub(re, i, i) == "^" then i = i + 1 end
      if sub(re, i, i) == "]" then i = i + 1 end -- a leading ] is literal
    elseif c == "(" and sub(re, i + 1, i + 1) == "?" then
      local rest = sub(re, i + 2, i + 4)
      if rest:match("^[=!>|#]") or rest:match("^<[=!]") or rest:match("^[%+%-]?%d") or
         rest:match("^&") or rest:match("^R") or rest:match("^C") or rest:match("^%(") then
        return "group (?" .. sub(rest, 1, 2) .. "..."
      end
      i = i + 2
    elseif c == "(" and sub(re, i + 1, i + 1) == "*" then
      return "verb (*...)"
    elseif (c == "*" or c == "+" or c == "?" or c == "}") and sub(re, i + 1, i + 1) == "+" then
      return "possessive quantifier " .. c .. "+"
    else
      i = i + 1
    end
  end
  if in_class then return "missing closing ]" end
end

local cache, cached = {}, 0
local CACHE_MAX = 4096

-- compile(re) -> code cdata, or nil, err. Anchored as Alertmanager anchors: ^(?:re)$.
local function compile(re)
  local code = cache[re]
  if code then return code end
  if not pcre then return nil, "regex support needs libpcre2-8 (Debian's libpcre2-8-0)" end
  local refused = re2_refuses(re)
  if refused then return nil, format("error parsing regexp: %s not supported (RE2): %q", refused, re) end
  local anchored = "^(?:" .. re .. ")$"
  local c = pcre.pcre2_compile_8(anchored, #anchored, COMPILE_OPTS, errcode, erroffset, nil)
  if c == nil then
    pcre.pcre2_get_error_message_8(errcode[0], errbuf, 256)
    return nil, format("error parsing regexp: %s at offset %d: %q", ffi.string(errbuf),
      tonumber(erroffset[0]) - 4, re)
  end
  code = ffi.gc(c, pcre.pcre2_code_free_8)
  pcre.pcre2_jit_compile_8(code, JIT_COMPLETE) -- JIT is an optimisation: failure is fine
  if cached >= CACHE_MAX then cache, cached = {}, 0 end
  cache[re], cached = code, cached + 1
  return code
end

local function re_test(code, s)
  if not match_data then
    match_data = ffi.gc(pcre.pcre2_match_data_create_8(1, nil), pcre.pcre2_match_data_free_8)
  end
  return pcre.pcre2_match_8(code, s, #s, 0, 0, match_data, nil) >= 0
end

-- regex(re) -> a tester function(s) -> boolean (anchored), or nil, err.
function M.regex(re)
  if type(re) ~= "string" then error("matchers.regex: re: string expected, got " .. type(re), 2) end
  local code, err = compile(re)
  if not code then return nil, err end
  return function(s) return re_test(code, s) end
end

-- Strings ----------------------------------------------------------------------------------

-- A UTF-8 decoder that says where a sequence is invalid (Go counts such a byte as one rune).
local function utf8_next(s, i)
  local c = byte(s, i)
  if c < 0x80 then return c, 1 end
  local n, min, cp
  if c >= 0xC2 and c <= 0xDF then n, cp, min = 2, c - 0xC0, 0x80
  elseif c >= 0xE0 and c <= 0xEF then n, cp, min = 3, c - 0xE0, 0x800
  elseif c >= 0xF0 and c <= 0xF4 then n, cp, min = 4, c - 0xF0, 0x10000
  else return nil, 1 end
  for k = 1, n - 1 do
    local cc = byte(s, i + k)
    if not cc or cc < 0x80 or cc > 0xBF then return nil, 1 end
    cp = cp * 64 + (cc - 0x80)
  end
  if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return nil, 1 end
  return cp, n
end

local function valid_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local cp, w = utf8_next(s, i)
    if not cp then return false end
    i = i + w
  end
  return true
end
M.valid_utf8 = valid_utf8

-- Code points Go's strconv.IsPrint rejects beyond ASCII controls: the C1 controls, the
-- non-breaking and format characters a label value could plausibly hold.
local function go_unprintable(cp)
  return (cp >= 0x80 and cp <= 0xA0) or cp == 0xAD or (cp >= 0x2000 and cp <= 0x200F) or
    (cp >= 0x2028 and cp <= 0x202F) or (cp >= 0x205F and cp <= 0x206F) or cp == 0x3000 or
    cp == 0xFEFF or (cp >= 0xFFF9 and cp <= 0xFFFB) or cp == 0x1680 or
    (cp >= 0xE000 and cp <= 0xF8FF) or cp >= 0xF0000
end

local SIMPLE = { [7] = "\\a", [8] = "\\b", [12] = "\\f", [10] = "\\n", [13] = "\\r",
  [9] = "\\t", [11] = "\\v", [34] = '\\"', [92] = "\\\\" }

-- go_quote(s): Go's strconv.Quote / fmt's %q, which Alertmanager uses in group keys.
function M.go_quote(s)
  local out, i, n = { '"' }, 1, #s
  while i <= n do
    local cp, w = utf8_next(s, i)
    if not cp then
      out[#out + 1] = format("\\x%02x", byte(s, i))
    elseif SIMPLE[cp] then
      out[#out + 1] = SIMPLE[cp]
    elseif cp < 0x20 or cp == 0x7F then
      out[#out + 1] = format("\\x%02x", cp)
    elseif cp >= 0x80 and go_unprintable(cp) then
      out[#out + 1] = cp < 0x10000 and format("\\u%04x", cp) or format("\\U%08x", cp)
    else
      out[#out + 1] = sub(s, i, i + w - 1)
    end
    i = i + w
  end
  out[#out + 1] = '"'
  return concat(out)
end

-- OpenMetrics escaping, as Matcher.String() writes values: only \, newline and ".
local function om_escape(s)
  return (gsub(s, '[\\\n"]', { ["\\"] = "\\\\", ["\n"] = "\\n", ['"'] = '\\"' }))
end
M.openmetrics_escape = om_escape

-- Matchers ---------------------------------------------------------------------------------

local TYPES = { ["="] = 0, ["!="] = 1, ["=~"] = 2, ["!~"] = 3 }
M.TYPES = { "=", "!=", "=~", "!~" }

local Matcher = {}
Matcher.__index = Matcher

local function is_matcher(v) return getmetatable(v) == Matcher end
M.is_matcher = is_matcher

-- new(type, name, value) -> matcher, or nil, err when the regex does not compile.
function M.new(op, name, value)
  if type(op) ~= "string" or not TYPES[op] then
    error("matchers.new: type: one of '=', '!=', '=~', '!~' expected, got " .. tostring(op), 2)
  end
  if type(name) ~= "string" then error("matchers.new: name: string expected, got " .. type(name), 2) end
  if type(value) ~= "string" then error("matchers.new: value: string expected, got " .. type(value), 2) end
  local m = setmetatable({ type = op, name = name, value = value, order = TYPES[op] }, Matcher)
  if op == "=~" or op == "!~" then
    local code, err = compile(value)
    if not code then return nil, err end
    m.re = code
  end
  return m
end

-- fn(f [, label]) -> a matcher that calls f(labels) -> boolean; label names it in keys.
function M.fn(f, label)
  if type(f) ~= "function" then error("matchers.fn: f: function expected, got " .. type(f), 2) end
  if label ~= nil and type(label) ~= "string" then
    error("matchers.fn: label: string expected, got " .. type(label), 2)
  end
  if not label then
    local info = debug.getinfo(f, "S")
    label = format("<lua %s:%d>", info.short_src, info.linedefined)
  end
  return setmetatable({ type = "fn", fn = f, name = label, value = "", order = 4 }, Matcher)
end

function Matcher:matches_value(s)
  local t = self.type
  if t == "=" then return s == self.value
  elseif t == "!=" then return s ~= self.value
  elseif t == "=~" then return re_test(self.re, s)
  elseif t == "!~" then return not re_test(self.re, s)
  end
  error("matcher:matches_value: a function matcher takes a label set (matches)", 2)
end

-- matches(labels): a missing label is the empty string, as in Alertmanager.
function Matcher:matches(labels)
  if type(labels) ~= "table" then error("matcher:matches: labels: table expected, got " .. type(labels), 2) end
  if self.type == "fn" then return not not self.fn(labels) end
  local v = labels[self.name]
  if v == nil then v = "" end
  return self:matches_value(v)
end

function Matcher.__tostring(m)
  if m.type == "fn" then return m.name end
  return m.name .. m.type .. '"' .. om_escape(m.value) .. '"'
end

-- Parsing ----------------------------------------------------------------------------------

local WS = "[ \t\n\f\r]*" -- Go's \s
local OPS = { "=~", "=", "!=", "!~" } -- the order Alertmanager's regex alternation tries

-- parse(s) -> matcher, or nil, err: one matcher, Alertmanager's ParseMatcher.
function M.parse(s)
  if type(s) ~= "string" then error("matchers.parse: s: string expected, got " .. type(s), 2) end
  local name, rest = s:match("^" .. WS .. "([A-Za-z_:][A-Za-z0-9_:]*)" .. WS .. "(.*)$")
  local op
  if name then
    for _, o in ipairs(OPS) do
      if sub(rest, 1, #o) == o then op = o break end
    end
  end
  if not op then return nil, "bad matcher format: " .. s end
  local raw = rest:sub(#op + 1):match("^" .. WS .. "(.-)" .. WS .. "$")
  local shown = raw
  local expect_quote = false
  if sub(raw, 1, 1) == '"' then raw, expect_quote = sub(raw, 2), true end
  if not valid_utf8(raw) then return nil, "matcher value not valid UTF-8: " .. shown end
  local out, i, n, escaped = {}, 1, #raw, false
  while i <= n do
    local c = sub(raw, i, i)
    local w = select(2, utf8_next(raw, i))
    local r = sub(raw, i, i + w - 1)
    if escaped then
      escaped = false
      if c == "n" then out[#out + 1] = "\n"
      elseif c == '"' or c == "\\" then out[#out + 1] = c
      else out[#out + 1] = "\\" .. r end -- a spurious escape is a literal backslash
    elseif c == "\\" then
      if i < n then escaped = true else out[#out + 1] = "\\" end
    elseif c == '"' then
      if not expect_quote or i < n then
        return nil, "matcher value contains unescaped double quote: " .. shown
      end
      expect_quote = false
    else
      out[#out + 1] = r
    end
    i = i + w
  end
  if expect_quote then return nil, "matcher value contains unescaped double quote: " .. shown end
  return M.new(op, name, concat(out))
end

local List = {}
List.__index = List
M.List = List

local function new_list(t) return setmetatable(t or {}, List) end

-- Alertmanager's Matchers order: by name, then value, then type; function matchers last, in
-- the order given (sort is not stable, so they carry their position).
local function less(a, b)
  if a.order == 4 or b.order == 4 then
    if a.order ~= b.order then return b.order == 4 end
    return a.pos < b.pos
  end
  if a.name ~= b.name then return a.name < b.name end
  if a.value ~= b.value then return a.value < b.value end
  return a.order < b.order
end

function List:sort()
  for i, m in ipairs(self) do if m.order == 4 then rawset(m, "pos", i) end end
  sort(self, less)
  return self
end

function List:matches(labels)
  if type(labels) ~= "table" then error("matchers:matches: labels: table expected, got " .. type(labels), 2) end
  for _, m in ipairs(self) do
    if not m:matches(labels) then return false end
  end
  return true
end

function List.__tostring(l)
  local parts = {}
  for i, m in ipairs(l) do parts[i] = tostring(m) end
  return "{" .. concat(parts, ",") .. "}"
end

-- parse_list(s) -> list, or nil, err: Alertmanager's ParseMatchers (braces optional, commas
-- outside quotes separate, a trailing comma is fine).
function M.parse_list(s)
  if type(s) ~= "string" then error("matchers.parse_list: s: string expected, got " .. type(s), 2) end
  if sub(s, 1, 1) == "{" then s = sub(s, 2) end
  if sub(s, -1) == "}" then s = sub(s, 1, -2) end
  local tokens, cur, inside, escaped = {}, {}, false, false
  for i = 1, #s do
    local c = sub(s, i, i)
    if c == "," and not inside then
      tokens[#tokens + 1] = concat(cur)
      cur = {}
    else
      if c == '"' then
        if not escaped then inside = not inside else escaped = false end
      elseif c == "\\" then
        escaped = not escaped
      elseif c ~= "," then
        escaped = false
      end
      cur[#cur + 1] = c
    end
  end
  local last = concat(cur):match("^%s*(.-)%s*$")
  if last ~= "" then tokens[#tokens + 1] = last end
  local list = new_list()
  for _, tok in ipairs(tokens) do
    local m, err = M.parse(tok)
    if not m then return nil, err end
    list[#list + 1] = m
  end
  return list
end

-- list(spec [, what]) -> list, or nil, err. spec: a matcher string ('a="b", c=~"d"'), a
-- matcher, a function(labels) -> boolean, or an array of those; nil is the empty list. The
-- result is sorted as Alertmanager sorts a route's matchers.
function M.list(spec, what)
  what = what or "matchers"
  local list = new_list()
  local function add(v, where)
    local tv = type(v)
    if tv == "string" then
      local l, err = M.parse_list(v)
      if not l then return nil, where .. ": " .. err end
      for _, m in ipairs(l) do list[#list + 1] = m end
    elseif tv == "function" then
      list[#list + 1] = M.fn(v)
    elseif is_matcher(v) then
      list[#list + 1] = v
    else
      error(where .. ": matcher string, matcher or function expected, got " .. tv, 3)
    end
    return true
  end
  if spec == nil then return list end
  if type(spec) == "table" and not is_matcher(spec) and getmetatable(spec) ~= List then
    for i, v in ipairs(spec) do
      local ok, err = add(v, what .. "[" .. i .. "]")
      if not ok then return nil, err end
    end
    for k in pairs(spec) do
      if type(k) ~= "number" then error(what .. ": array expected, got key " .. tostring(k), 2) end
    end
  elseif getmetatable(spec) == List then
    for _, m in ipairs(spec) do list[#list + 1] = m end
  else
    local ok, err = add(spec, what)
    if not ok then return nil, err end
  end
  return list:sort()
end

return M
