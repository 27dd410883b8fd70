-- steward.alerting.matchers: parsing (Alertmanager's parse_test.go cases), evaluation,
-- RE2-compatible regexes on PCRE2, and the string forms route keys are built from.
local t = require "steward.tap"
local matchers = require "steward.alerting.matchers"

local function shape(list)
  local out = {}
  for i, m in ipairs(list) do out[i] = { m.name, m.type, m.value } end
  return out
end

-- Alertmanager's pkg/labels/parse_test.go, input -> matchers in the order given.
local ok_cases = {
  { '{foo="bar"}', { { "foo", "=", "bar" } } },
  { '{foo=~"bar.*"}', { { "foo", "=~", "bar.*" } } },
  { '{foo!="bar"}', { { "foo", "!=", "bar" } } },
  { '{foo!~"bar.*"}', { { "foo", "!~", "bar.*" } } },
  { '{foo="bar", baz!="quux"}', { { "foo", "=", "bar" }, { "baz", "!=", "quux" } } },
  { '{foo="bar",baz!~".*quux", derp="wat"}',
    { { "foo", "=", "bar" }, { "baz", "!~", ".*quux" }, { "derp", "=", "wat" } } },
  { '{foo="bar", instance=~"some-api.*"}', { { "foo", "=", "bar" }, { "instance", "=~", "some-api.*" } } },
  { '{foo=""}', { { "foo", "=", "" } } },
  { '{foo="bar,quux", job="job1"}', { { "foo", "=", "bar,quux" }, { "job", "=", "job1" } } },
  { '{foo = "bar", dings != "bums", }', { { "foo", "=", "bar" }, { "dings", "!=", "bums" } } },
  { 'foo=bar,dings!=bums', { { "foo", "=", "bar" }, { "dings", "!=", "bums" } } },
  { [[{quote="She said: \"Hi, ladies! That's gender-neutral…\""}]],
    { { "quote", "=", [[She said: "Hi, ladies! That's gender-neutral…"]] } } },
  { 'statuscode=~"5.."', { { "statuscode", "=~", "5.." } } },
  { 'tricky=~~~', { { "tricky", "=~", "~~" } } },
  { [[trickier==\\=\=\"]], { { "trickier", "=", [[=\=\="]] } } },
  { [[contains_quote != "\"" , contains_comma !~ "foo,bar" , ]],
    { { "contains_quote", "!=", '"' }, { "contains_comma", "!~", "foo,bar" } } },
  { 'job=', { { "job", "=", "" } } }, -- 0.25 accepts it (amtool does), as the empty value
  { 'a="line\\nbreak"', { { "a", "=", "line\nbreak" } } },
  { 'ns:sub_1="x"', { { "ns:sub_1", "=", "x" } } },
}
for _, c in ipairs(ok_cases) do
  local list, err = matchers.parse_list(c[1])
  t.is_deeply(list and shape(list), c[2], "parses " .. c[1] .. (err and (" (" .. err .. ")") or ""))
end

local bad_cases = {
  { 'job="value', 'matcher value contains unescaped double quote: "value' },
  { 'job=value"', 'matcher value contains unescaped double quote: value"' },
  { [[trickier==\\=\=\""]], [[matcher value contains unescaped double quote: =\\=\=\""]] },
  { 'contains_unescaped_quote = foo"bar', 'matcher value contains unescaped double quote: foo"bar' },
  { '{invalid-name = "valid label"}', 'bad matcher format: invalid-name = "valid label"' },
  { [["{foo=\"bar"}]], [[bad matcher format: "{foo=\"bar"]] },
  { [["foo=\"bar\""]], [[bad matcher format: "foo=\"bar\""]] },
  { '"foo="bar""', 'bad matcher format: "foo="bar""' },
  { 'a="b",,c="d"', "bad matcher format: " },
  { 'a="\255"', "matcher value not valid UTF-8" },
}
for _, c in ipairs(bad_cases) do
  local list, err = matchers.parse_list(c[1])
  t.ok(list == nil and err and err:find(c[2], 1, true), "rejects " .. c[1] .. ": " .. tostring(err))
end

local list, err = matchers.parse_list('{foo=~"invalid[regexp"}')
t.ok(not list and err:find("error parsing regexp", 1, true), "a bad regex is an error: " .. tostring(err))

-- Evaluation: a missing label is the empty string.
local function m(s) return assert(matchers.parse(s)) end
t.ok(m('a="b"'):matches{ a = "b" }, "= matches an equal value")
t.ok(not m('a="b"'):matches{ a = "bb" }, "= does not match another value")
t.ok(m('a=""'):matches{}, '="" matches an absent label')
t.ok(not m('a!=""'):matches{}, '!="" does not match an absent label')
t.ok(m('a!="b"'):matches{}, "!= matches an absent label")
t.ok(m('a!="b"'):matches{ a = "c" }, "!= matches another value")
t.ok(not m('a!="b"'):matches{ a = "b" }, "!= does not match the value")
t.ok(m('a=~"b|c"'):matches{ a = "c" }, "=~ alternation")
t.ok(not m('a=~"b"'):matches{ a = "abc" }, "=~ is anchored at both ends")
t.ok(not m('a=~"b|c"'):matches{ a = "bc" }, "=~ anchoring covers the whole alternation")
t.ok(m('a=~".*"'):matches{}, "=~.* matches an absent label")
t.ok(not m('a=~".+"'):matches{}, "=~.+ does not match an absent label")
t.ok(m('a!~"b.*"'):matches{ a = "ab" }, "!~ matches what the regex does not")
t.ok(not m('a!~"b.*"'):matches{ a = "bcd" }, "!~ does not match what the regex does")
t.ok(not m('a=~"b$"'):matches{ a = "b\n" }, "$ does not match before a final newline (Go semantics)")
t.ok(not m('a=~"b.c"'):matches{ a = "b\nc" }, ". does not match a newline")
t.ok(m('a=~"(?s)b.c"'):matches{ a = "b\nc" }, "(?s) makes . match a newline")
t.ok(m('a=~"(?i)db.*"'):matches{ a = "DBx" }, "(?i) is case-insensitive")
t.ok(m('a=~"é."'):matches{ a = "éü" }, ". matches one code point, not one byte")
t.ok(m('a=~"\\\\d{2,3}"'):matches{ a = "123" }, "\\d and counted repetition")
t.ok(not m('a=~"\\\\d+"'):matches{ a = "١٢" }, "\\d is ASCII only, as in RE2")
t.ok(m('a=~"[[:alpha:]]+-[^-]+"'):matches{ a = "web-1" }, "POSIX and negated classes")
t.ok(m('a=~"\\\\pL+"'):matches{ a = "Ωmega" }, "Unicode classes")
t.ok(m('a=~"(?P<x>ab)+"'):matches{ a = "abab" }, "named groups (?P<name>)")
t.ok(not m('a=~"x"'):matches{ a = "\255x" }, "a value that is not UTF-8 does not match (no error)")

for _, re in ipairs({ "(?=a)", "(?!a)", "(?<=a)b", "(?<!a)b", "(a)\\1", "a++", "(?>a)", "a\\Z" }) do
  local mm, e = matchers.new("=~", "x", re)
  t.ok(mm == nil and e:find("RE2", 1, true), "PCRE-only " .. re .. " is rejected as RE2 rejects it")
end
t.ok(matchers.new("=~", "x", "[(?=]"), "the same characters inside a class are fine")
t.ok(matchers.new("=~", "x", "\\Q(?=\\E"), "and inside \\Q...\\E")

-- String forms.
t.is(tostring(m('a = "b"')), 'a="b"', "matcher string form")
t.is(tostring(m([[a=~"x\"y\\z"]])), [[a=~"x\"y\\z"]], "OpenMetrics escaping of \" and \\")
t.is(tostring(m('a="x\\ny"')), 'a="x\\ny"', "newline escaped as \\n")
t.is(tostring(matchers.list({ 'z="1"', 'a!="2"', 'a="2"', 'a="1"' })),
  '{a="1",a="2",a!="2",z="1"}', "lists sort by name, value, then type")
t.is(tostring(assert(matchers.parse_list("{}"))), "{}", "the empty list")
t.is(matchers.go_quote('a"b\\c\n\1\127é\194\160\255'), '"a\\"b\\\\c\\n\\x01\\x7fé\\u00a0\\xff"',
  "go_quote: Go's %q escapes")

-- Function matchers.
local fm = matchers.fn(function(l) return l.x == "1" end, "<x is 1>")
t.ok(fm:matches{ x = "1" } and not fm:matches{ x = "2" }, "a function matcher is called with the labels")
local l2 = matchers.list({ function(l) return l.b ~= nil end, 'a="1"' })
t.ok(l2:matches{ a = "1", b = "" } and not l2:matches{ a = "1" }, "functions mix with text matchers in a list")
t.is(l2[2].type, "fn", "function matchers sort after text matchers")
t.like(tostring(l2), '^{a="1",<lua ', "function matchers show their definition site")

-- regex()
local re = assert(matchers.regex("ab+"))
t.ok(re("abbb") and not re("xabb"), "regex(): an anchored tester")
t.is(select(2, matchers.regex("(")) ~= nil, true, "regex(): nil, err for a bad pattern")

-- Misuse.
t.raises(function() matchers.parse(1) end, "matchers.parse: s: string expected", "parse: non-string raises")
t.raises(function() matchers.new("==", "a", "b") end, "matchers.new: type", "new: unknown type raises")
t.raises(function() matchers.new("=", nil, "b") end, "matchers.new: name", "new: missing name raises")
t.raises(function() m('a="b"'):matches("x") end, "labels: table expected", "matches: non-table raises")
t.raises(function() matchers.list({ 42 }) end, "matchers%[1%]: matcher string", "list: a number raises")

t.done()
