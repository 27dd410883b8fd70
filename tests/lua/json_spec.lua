-- steward.json: lua-cjson with steward's contract (null, arrays that round-trip, errors).
local t = require "steward.tap"
local json = require "steward.json"

t.is(json.encode({ a = 1 }), '{"a":1}', "encode an object")
t.is(json.encode({ 1, 2, 3 }), "[1,2,3]", "encode a sequence as an array")
t.is(json.encode({}), "{}", "an unmarked empty table is an object")
t.is(json.encode(json.array()), "[]", "json.array() encodes as []")
t.is(json.encode(json.array({})), "[]", "json.array(t) marks t")
t.is(json.encode({ list = json.array() }), '{"list":[]}', "a nested empty array encodes as []")
local nested = { a = { b = json.array(), c = { json.array() } } }
t.is(json.decode(json.encode(nested)).a.c[1] ~= nil, true, "deeply nested empty arrays survive")
t.ok(json.is_array(nested.a.b), "encode leaves the caller's tables as they were")

for _, text in ipairs({ "[]", '{"a":[]}', '{"a":{}}', '[[],{},[[]]]', '{"x":[1,[]],"y":{"z":[]}}',
                        '{"k\\u0041":[]}', '[ ]', '{"a" : [  ] }' }) do
  local v = assert(json.decode(text))
  local again = json.encode(v)
  t.is_deeply(json.decode(again), v, "round trip keeps the value: " .. text)
  -- Key order in objects is the table's, so compare what order cannot change: the empties.
  local function empties(s) s = s:gsub("%s", ""); return select(2, s:gsub("%[%]", "")), select(2, s:gsub("{}", "")) end
  local ga, go = empties(again)
  local wa, wo = empties(text)
  t.ok(ga == wa and go == wo, "round trip keeps every [] and {}: " .. text)
end

t.ok(json.is_array(json.decode("[]")), "decode marks empty arrays")
t.ok(not json.is_array(json.decode("{}")), "decode does not mark empty objects")

t.is(json.decode("null"), json.null, "null decodes to json.null")
t.is(json.encode({ a = json.null }), '{"a":null}', "json.null encodes as null")
t.is(json.decode('{"a":null}').a, json.null, "a null field is json.null, not nil")

local v, err = json.decode("[1,")
t.is(v, nil, "a truncated document fails")
t.like(err, "at character %d+", "the error gives the byte offset")
v, err = json.decode('{"a":1} x')
t.ok(v == nil and err:find("invalid JSON"), "trailing garbage fails")
v, err = json.decode('"\255"')
t.ok(v == nil and err:find("invalid UTF%-8 at byte offset 1"), "invalid UTF-8 is refused with its offset")
v, err = json.decode('"\237\160\128"')
t.ok(v == nil and err:find("invalid UTF%-8"), "UTF-8-encoded surrogates are refused")
t.is(json.decode('"h\195\169"'), "h\195\169", "valid UTF-8 passes")
v, err = json.decode("0x10")
t.is(v, nil, "hex numbers are not JSON")
v, err = json.decode("NaN")
t.is(v, nil, "NaN is not JSON")
v, err = json.decode(string.rep("[", 200) .. string.rep("]", 200))
t.ok(v == nil and err:find("nested"), "nesting deeper than max_depth is refused")
t.ok(json.decode(string.rep("[", 100) .. string.rep("]", 100)) ~= nil, "nesting within max_depth is fine")
v, err = json.encode({ f = function() end })
t.ok(v == nil and err:find("function"), "encoding a function gives nil, err")
v, err = json.encode(0 / 0)
t.ok(v == nil and err ~= nil, "encoding NaN gives nil, err")
local cyc = {}; cyc.self = cyc
v, err = json.encode(cyc)
t.ok(v == nil and err:find("nesting"), "a cycle is caught by the depth limit")
t.is(json.decode('1e2'), 100, "numbers decode")
t.is(json.encode(123456789012), "123456789012", "integers up to 10^14 encode exactly")
t.is(json.decode('"\\u00e9"'), "\195\169", "unicode escapes decode to UTF-8")
-- Regression (found by tests/fuzz/json_fuzz.c): a duplicate key whose earlier value is a
-- nested array while the kept value is an object crashed the empty-array walk.
-- Duplicate keys are now refused before cjson runs, so that input never reaches the walk.
local dup, derr, dinfo = json.decode('{"a":[],"b":[1,[[]]],"b":{},"c":[1,[[]],{"d":[0]}]}')
t.ok(dup == nil and derr:find('duplicate key "b"') and dinfo.key == "b",
  "json_fuzz_duplicate_key_nested_array: refused, naming the key")

-- Duplicate keys (issue 13): which value counts is not defined, so decode refuses them,
-- also when an escape spells the same key, and names the key and where it is.
v, err, info = json.decode('{"id":"a","id":"b"}')
t.ok(v == nil and err == 'invalid JSON: duplicate key "id" at byte offset 10', "a repeated key is refused: " .. tostring(err))
t.ok(info and info.reason == "duplicate_key" and info.key == "id" and info.offset == 10, "info names the key and offset")
v, err, info = json.decode('{"k":1,"\\u006b":2}')
t.ok(v == nil and info.key == "k", "a key repeated through a \\u escape is refused")
v, err, info = json.decode('{"\\ud83d\\ude00":1,"\240\159\152\128":2}')
t.ok(v == nil and info and info.reason == "duplicate_key", "a surrogate pair and its UTF-8 are the same key")
t.ok(json.decode('{"a":{"k":1},"b":{"k":2},"k":3}') ~= nil, "the same key in different objects is fine")
t.ok(json.decode('[{"k":1},{"k":2}]') ~= nil, "the same key in objects of an array is fine")
t.ok(json.decode('{"a\\\\":1,"a":2}') ~= nil, "a key ending in an escaped backslash differs from one without")
-- Bounds checked before the decode: depth and the number of values.
v, err, info = json.decode("[1,2,3]", { max_values = 3 })
t.ok(v == nil and info.reason == "limit" and info.limit == "max_values" and info.max == 3,
  "more values than max_values (the array counts one) is refused: " .. tostring(err))
t.ok(json.decode("[1,2,3]", { max_values = 4 }) ~= nil, "as many values as max_values is fine")
v, err, info = json.decode("[[[1]]]", { max_depth = 2 })
t.ok(v == nil and info.limit == "max_depth" and info.max == 2 and err:find("nested deeper than 2"), "deeper than max_depth is refused")
t.ok(json.decode("[[1]]", { max_depth = 2 }) ~= nil, "max_depth levels are fine")
t.raises(function() json.decode("1", { max_depth = 500 }) end, "max_depth", "max_depth over the hard limit is misuse")
t.raises(function() json.decode("1", { max_values = 0 }) end, "max_values", "max_values 0 is misuse")
v, err = json.decode('{"a":1,}')
t.ok(v == nil and err:find("^invalid JSON"), "syntax errors still come from the decoder: " .. tostring(err))
t.raises(function() json.decode(nil) end, "string expected", "decode(nil) is misuse")
t.done()
