-- steward.alerting.fingerprint: prometheus/common's LabelSet fingerprint (FNV-1a 64).
local t = require "steward.tap"
local fingerprint = require "steward.alerting.fingerprint"

-- prometheus/common model/signature_test.go and fingerprinting_test.go
t.is(fingerprint.of({}), "cbf29ce484222325", "the empty set is the FNV-64 offset basis (14695981039346656037)")
t.is(fingerprint.hash({ name = "garland, briggs", fear = "love is not enough" }),
  5799056148416392346ULL, "model's test vector as uint64")
t.is(fingerprint.of({ name = "garland, briggs", fear = "love is not enough" }),
  string.format("%016x", 5799056148416392346ULL):gsub("ULL$", ""), "the same as %016x")
t.is(fingerprint.of({ name = "garland, briggs", fear = "love is not enough" }), "507a62d79ee76c9a",
  "16 lower-case hex digits")
t.is(fingerprint({ a = "b" }), fingerprint.of({ a = "b" }), "the module is callable")
t.is(#fingerprint.of({ x = "" }), 16, "always 16 digits")

-- The separator makes the split between name and value matter.
t.isnt(fingerprint.of({ ab = "c" }), fingerprint.of({ a = "bc" }), "name/value boundary counts")
t.isnt(fingerprint.of({ a = "" }), fingerprint.of({}), "an empty value still counts")
t.is(fingerprint.of({ b = "2", a = "1", c = "3" }), fingerprint.of({ c = "3", a = "1", b = "2" }),
  "independent of table order")
t.isnt(fingerprint.of({ a = "1", b = "2" }), fingerprint.of({ a = "2", b = "1" }), "values are bound to names")
t.is(fingerprint.of({ ["é"] = "ü" }), fingerprint.of({ ["é"] = "ü" }), "bytes, not characters, are hashed")

-- FNV-1a on a single label, computed by hand here: (offset ^ byte) * prime per byte.
local h = 14695981039346656037ULL
local bit = require "bit"
for _, b in ipairs({ ("a"):byte(), 255, ("b"):byte(), 255 }) do h = bit.bxor(h, b) * 1099511628211ULL end
t.is(fingerprint.hash({ a = "b" }), h, "FNV-1a over name 0xff value 0xff")

t.raises(function() fingerprint.of("x") end, "labels: table expected", "non-table raises")
t.raises(function() fingerprint.of({ a = 1 }) end, "labels.a: string expected", "non-string value raises")
t.done()
