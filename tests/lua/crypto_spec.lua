-- steward.crypto: known-answer vectors from the standards (FIPS 180-4, RFC 4231, RFC 2202,
-- RFC 4648, RFC 5869, RFC 8032, the GCM spec), plus the behaviour around them: seal/open,
-- tampering, misuse errors, constant-time equals, random, and decoder errors.
local t = require "steward.tap"
local crypto = require "steward.crypto"

local hex, unhex = crypto.hex, crypto.unhex
local rep = string.rep

-- Vectors are written in hex as the documents print them; spaces are for reading.
local function H(s) return assert(unhex((s:gsub("%s", "")))) end

-- Flips one bit of byte i (1-based) of s.
local function flip(s, i)
  return s:sub(1, i - 1) .. string.char(bit.bxor(s:byte(i), 1)) .. s:sub(i + 1)
end

---------------------------------------------------------------------------------------------
-- SHA-2 (FIPS 180-4 examples, NIST CSRC "Examples with intermediate values")
local msg448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
local msg896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno" ..
               "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"

t.is(hex(crypto.sha256("abc")),
  "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sha256('abc')")
t.is(hex(crypto.sha256("")),
  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sha256('')")
t.is(hex(crypto.sha256(msg448)),
  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1", "sha256 of the 448-bit message")
t.is(hex(crypto.sha512("abc")),
  "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a" ..
  "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f", "sha512('abc')")
t.is(hex(crypto.sha512("")),
  "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce" ..
  "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e", "sha512('')")
t.is(hex(crypto.sha512(msg448)),
  "204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c335" ..
  "96fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445", "sha512 of the 448-bit message")
t.is(hex(crypto.sha512(msg896)),
  "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018" ..
  "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909", "sha512 of the 896-bit message")
t.is(#crypto.sha256("x"), 32, "sha256 returns 32 raw bytes")
t.is(#crypto.sha512("x"), 64, "sha512 returns 64 raw bytes")

-- digest(alg, data)
t.is(hex(crypto.digest("sha384", "abc")),
  "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed" ..
  "8086072ba1e7cc2358baeca134c825a7", "digest sha384('abc')")
t.is(hex(crypto.digest("sha1", "abc")), "a9993e364706816aba3e25717850c26c9cd0d89d",
  "digest sha1('abc')")
t.is(crypto.digest("sha256", msg448), crypto.sha256(msg448), "digest sha256 = sha256")
t.is(crypto.digest("sha512", msg896), crypto.sha512(msg896), "digest sha512 = sha512")
t.raises(function() crypto.digest("md5", "abc") end, "alg: unknown digest 'md5'",
  "digest: an unknown algorithm raises, naming it")
t.raises(function() crypto.sha256(42) end, "sha256: data: string expected, got number",
  "sha256: a non-string raises, naming the argument")

-- hasher
do
  local h = crypto.hasher("sha512")
  for i = 1, #msg896, 7 do h:update(msg896:sub(i, i + 6)) end
  t.is(hex(h:final()), hex(crypto.sha512(msg896)), "hasher: pieces hash like the whole")
  t.raises(function() h:update("x") end, "finalized", "hasher: update after final raises")
  t.raises(function() h:final() end, "finalized", "hasher: a second final raises")
  t.like(tostring(h), "sha512, finalized", "hasher: tostring names the state")

  -- FIPS 180-4 long message: one million 'a'.
  local h2 = crypto.hasher("sha256")
  local chunk = rep("a", 1000)
  for _ = 1, 1000 do h2:update(chunk) end
  t.is(hex(h2:final()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
    "hasher: sha256 of a million 'a'")
  t.is(hex(crypto.hasher("sha1"):update("a"):update("bc"):final()),
    "a9993e364706816aba3e25717850c26c9cd0d89d", "hasher: update returns the hasher (chains)")
  t.is(crypto.hasher("sha384"):final(), crypto.digest("sha384", ""), "hasher: nothing fed = empty input")
  -- Dropped, unfinalized hashers are freed by the GC (ASan's leak check sees the rest).
  local weak = setmetatable({}, { __mode = "k" })
  for _ = 1, 50 do weak[crypto.hasher("sha256"):update("x")] = true end
  collectgarbage()
  collectgarbage()
  t.is(next(weak), nil, "hasher: unfinalized hashers are collected")
  t.raises(function() crypto.hasher("sha3") end, "unknown digest", "hasher: unknown algorithm raises")
end

---------------------------------------------------------------------------------------------
-- HMAC: RFC 4231 test cases 1-7 for SHA-256 and SHA-512, RFC 2202 case 1 for SHA-1
do
  local cases = {
    { key = rep("\11", 20), data = "Hi There",
      sha256 = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
      sha512 = "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde" ..
               "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854" },
    { key = "Jefe", data = "what do ya want for nothing?",
      sha256 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
      sha512 = "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554" ..
               "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737" },
    { key = rep("\170", 20), data = rep("\221", 50),
      sha256 = "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
      sha512 = "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39" ..
               "bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb" },
    { key = H"0102030405060708090a0b0c0d0e0f10111213141516171819", data = rep("\205", 50),
      sha256 = "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
      sha512 = "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db" ..
               "a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd" },
    { key = rep("\12", 20), data = "Test With Truncation", truncate = 16,
      sha256 = "a3b6167473100ee06e0c796c2955552b",
      sha512 = "415fad6271580a531d4179bc891d87a6" },
    { key = rep("\170", 131), data = "Test Using Larger Than Block-Size Key - Hash Key First",
      sha256 = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
      sha512 = "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352" ..
               "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598" },
    { key = rep("\170", 131),
      data = "This is a test using a larger than block-size key and a larger than " ..
             "block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
      sha256 = "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
      sha512 = "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944" ..
               "b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58" },
  }
  for i, c in ipairs(cases) do
    for _, alg in ipairs { "sha256", "sha512" } do
      local mac = crypto.hmac(alg, c.key, c.data)
      if c.truncate then mac = mac:sub(1, c.truncate) end
      t.is(hex(mac), c[alg], ("hmac %s: RFC 4231 test case %d"):format(alg, i))
    end
  end
  t.is(hex(crypto.hmac("sha1", rep("\11", 20), "Hi There")),
    "b617318655057264e28bc0b6fb378c8ef146be00", "hmac sha1: RFC 2202 test case 1")
  -- Not an RFC vector: cross-checked against Python's hmac module.
  t.is(hex(crypto.hmac("sha256", "", "")),
    "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad", "hmac sha256: empty key and data")
  t.is(#crypto.hmac("sha384", "", ""), 48, "hmac sha384 with an empty key gives 48 bytes")
  t.raises(function() crypto.hmac("sha256", nil, "x") end, "hmac: key: string expected",
    "hmac: a missing key raises, naming it")
end

---------------------------------------------------------------------------------------------
-- HKDF: RFC 5869 test cases 1-3 (SHA-256)
t.is(hex(crypto.hkdf("sha256", rep("\11", 22), H"000102030405060708090a0b0c",
    H"f0f1f2f3f4f5f6f7f8f9", 42)),
  "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
  "hkdf: RFC 5869 test case 1")
do
  local function range(a, b)
    local t_ = {}
    for i = a, b do t_[#t_ + 1] = string.char(i) end
    return table.concat(t_)
  end
  t.is(hex(crypto.hkdf("sha256", range(0x00, 0x4f), range(0x60, 0xaf), range(0xb0, 0xff), 82)),
    "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c" ..
    "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71" ..
    "cc30c58179ec3e87c14c01d5c1f3434f1d87", "hkdf: RFC 5869 test case 2")
end
t.is(hex(crypto.hkdf("sha256", rep("\11", 22), "", "", 42)),
  "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
  "hkdf: RFC 5869 test case 3 (empty salt and info)")
t.is(crypto.hkdf("sha256", rep("\11", 22), nil, nil, 42), crypto.hkdf("sha256", rep("\11", 22), "", "", 42),
  "hkdf: nil salt and info = empty")
-- Not an RFC vector: cross-checked against Python cryptography's HKDF.
t.is(hex(crypto.hkdf("sha256", "", nil, nil, 32)),
  "eb70f01dede9afafa449eee1b1286504e1f62388b3f7dd4f956697b0e828fe18", "hkdf: an empty ikm is allowed")
t.is(#crypto.hkdf("sha512", "k", "s", "i", 100), 100, "hkdf sha512: the length asked for")
t.is(#crypto.hkdf("sha256", "k", nil, nil, 255 * 32), 255 * 32, "hkdf: 255 blocks is the maximum")
t.raises(function() crypto.hkdf("sha256", "k", nil, nil, 255 * 32 + 1) end,
  "hkdf: length: integer from 1 to 8160", "hkdf: more than 255 blocks raises")
t.raises(function() crypto.hkdf("sha256", "k", nil, nil, 0) end, "length", "hkdf: length 0 raises")

---------------------------------------------------------------------------------------------
-- Ed25519: RFC 8032 §7.1 TEST 1-3
do
  local vectors = {
    { name = "TEST 1",
      secret = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
      public = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
      msg = "",
      sig = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155" ..
            "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b" },
    { name = "TEST 2",
      secret = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
      public = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
      msg = "72",
      sig = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da" ..
            "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00" },
    { name = "TEST 3",
      secret = "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
      public = "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
      msg = "af82",
      sig = "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac" ..
            "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a" },
  }
  for _, v in ipairs(vectors) do
    local secret, public, msg, sig = H(v.secret), H(v.public), H(v.msg), H(v.sig)
    local s, p = crypto.ed25519_keypair(secret)
    t.is(s, secret, v.name .. ": keypair(seed) returns the seed as the secret")
    t.is(hex(p), v.public, v.name .. ": keypair(seed) derives the public key")
    t.is(hex(crypto.ed25519_sign(secret, msg)), v.sig, v.name .. ": signature")
    t.is(crypto.ed25519_verify(public, msg, sig), true, v.name .. ": verify accepts it")
    t.is(crypto.ed25519_verify(public, msg, flip(sig, 1)), false, v.name .. ": a flipped bit in the signature fails")
    t.is(crypto.ed25519_verify(public, msg .. "x", sig), false, v.name .. ": another message fails")
  end
  local s1, p1 = crypto.ed25519_keypair()
  local s2, p2 = crypto.ed25519_keypair()
  t.ok(#s1 == 32 and #p1 == 32, "keypair(): 32-byte secret and public")
  t.isnt(s1, s2, "keypair(): fresh keys each call")
  local sig = crypto.ed25519_sign(s1, "payload")
  t.is(#sig, 64, "sign: 64-byte signature")
  t.is(crypto.ed25519_verify(p1, "payload", sig), true, "a fresh key signs and verifies")
  t.is(crypto.ed25519_verify(p2, "payload", sig), false, "another public key does not verify it")
  t.is(crypto.ed25519_verify(p1, "payload", sig:sub(1, 63)), false, "a short signature is false")
  t.is(crypto.ed25519_verify(rep("\255", 32), "m", rep("\0", 64)), false,
    "verify: a public key that is not a curve point is false, not an error")
  t.raises(function() crypto.ed25519_sign(rep("k", 31), "m") end,
    "ed25519_sign: secret: 32 bytes expected, got 31", "sign: a wrong secret length raises")
  t.raises(function() crypto.ed25519_verify(rep("k", 33), "m", sig) end,
    "ed25519_verify: public: 32 bytes expected, got 33", "verify: a wrong public key length raises")
  t.raises(function() crypto.ed25519_keypair("short") end, "seed: 32 bytes expected",
    "keypair: a wrong seed length raises")
end

-- Ed25519 keys as PEM (PKCS#8 / SubjectPublicKeyInfo), RFC 8032 test 1's key: the DER is
-- RFC 8410's fixed prefix and the raw key, the form openssl reads.
do
  local sk = H"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
  local pk = H"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
  local priv, pub = crypto.ed25519_pem(sk)
  local function der(pem) return crypto.unbase64((pem:match("KEY%-%-%-%-%-\n(.-)%-%-%-%-%-END"):gsub("%s", ""))) end
  t.ok(priv:match("^%-%-%-%-%-BEGIN PRIVATE KEY%-%-%-%-%-\n") and der(priv) == H"302e020100300506032b657004220420" .. sk,
    "ed25519_pem: PKCS#8 with the seed")
  t.ok(pub:match("^%-%-%-%-%-BEGIN PUBLIC KEY%-%-%-%-%-\n") and der(pub) == H"302a300506032b6570032100" .. pk,
    "ed25519_pem: SubjectPublicKeyInfo with the public key")
  t.is_deeply({ crypto.ed25519_from_pem(priv) }, { sk, pk }, "from_pem: a private key gives both halves")
  t.is_deeply({ crypto.ed25519_from_pem(pub) }, { false, pk }, "from_pem: a public key gives false and the public half")
  local none, err = crypto.ed25519_from_pem("not a key")
  t.ok(none == nil and err:match("^crypto%.ed25519_from_pem: "), "from_pem: text that is not PEM is nil, err")
  t.raises(function() crypto.ed25519_pem("short") end, "ed25519_pem: secret: 32 bytes expected, got 5",
    "ed25519_pem: a wrong secret length raises")
  t.raises(function() crypto.ed25519_from_pem(42) end, "ed25519_from_pem: pem: string expected",
    "from_pem: a non-string raises")
end

---------------------------------------------------------------------------------------------
-- AES-256-GCM, explicit nonce: McGrew & Viega, "The Galois/Counter Mode of Operation",
-- test cases 13-16 (256-bit key) and 18 (a 60-byte IV)
do
  local K0 = rep("\0", 32)
  local K = H"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
  local P64 = H[[d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
                 1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255]]
  local P60 = P64:sub(1, 60)
  local A = H"feedfacedeadbeeffeedfacedeadbeefabaddad2"
  local cases = {
    { n = 13, key = K0, iv = rep("\0", 12), pt = "", aad = "",
      ct = "", tag = "530f8afbc74536b9a963b4f1c4cb738b" },
    { n = 14, key = K0, iv = rep("\0", 12), pt = rep("\0", 16), aad = "",
      ct = "cea7403d4d606b6e074ec5d3baf39d18", tag = "d0d1c8a799996bf0265b98b5d48ab919" },
    { n = 15, key = K, iv = H"cafebabefacedbaddecaf888", pt = P64, aad = "",
      ct = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa" ..
           "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
      tag = "b094dac5d93471bdec1a502270e3cc6c" },
    { n = 16, key = K, iv = H"cafebabefacedbaddecaf888", pt = P60, aad = A,
      ct = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa" ..
           "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
      tag = "76fc6ece0f4e1768cddf8853bb2d551b" },
    { n = 18, key = K, pt = P60, aad = A,
      iv = H[[9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728
              c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b]],
      ct = "5a8def2f0c9e53f1f75d7853659e2a20eeb2b22aafde6419a058ab4f6f746bf4" ..
           "0fc0c3b780f244452da3ebf1c5d82cdea2418997200ef82e44ae7e3f",
      tag = "a44a8266ee1c8eb0c8b5d4cf5ae9f19a" },
  }
  for _, c in ipairs(cases) do
    local ct, tag = crypto.aes_gcm_encrypt(c.key, c.iv, c.pt, c.aad)
    t.is(hex(ct) .. "/" .. hex(tag), c.ct .. "/" .. c.tag,
      ("aes_gcm_encrypt: GCM test case %d ciphertext/tag"):format(c.n))
    t.is(crypto.aes_gcm_decrypt(c.key, c.iv, H(c.ct), H(c.tag), c.aad), c.pt,
      ("aes_gcm_decrypt: GCM test case %d"):format(c.n))
  end
  local c = cases[4]
  local ct, tag = H(c.ct), H(c.tag)
  local function fails(r, e) return r == nil and e == "authentication failed" end
  t.ok(fails(crypto.aes_gcm_decrypt(K, c.iv, ct, flip(tag, 16), A)), "aes_gcm_decrypt: a flipped tag bit fails")
  t.ok(fails(crypto.aes_gcm_decrypt(K, c.iv, flip(ct, 1), tag, A)), "aes_gcm_decrypt: a flipped ciphertext bit fails")
  t.ok(fails(crypto.aes_gcm_decrypt(K, c.iv, ct, tag)), "aes_gcm_decrypt: missing aad fails")
  t.ok(fails(crypto.aes_gcm_decrypt(K, c.iv, ct, tag:sub(1, 12), A)), "aes_gcm_decrypt: a truncated tag fails")
  t.is(select(2, crypto.aes_gcm_encrypt(K, c.iv, P60)), select(2, crypto.aes_gcm_encrypt(K, c.iv, P60, nil)),
    "aes_gcm_encrypt: aad nil = absent")
  t.raises(function() crypto.aes_gcm_encrypt(K, "", "x") end, "nonce: 1 to 128 bytes expected",
    "aes_gcm_encrypt: an empty nonce raises")
  t.raises(function() crypto.aes_gcm_decrypt(K:sub(1, 16), c.iv, ct, tag) end,
    "aes_gcm_decrypt: key: 32 bytes expected, got 16", "aes_gcm_decrypt: a 16-byte key raises")
end

---------------------------------------------------------------------------------------------
-- seal / open
do
  local key = crypto.random(32)
  local msg = "the quick brown fox jumps over the lazy dog"
  local sealed = crypto.seal(key, msg, "ctx")
  t.is(#sealed, 12 + #msg + 16, "seal: nonce(12) || ciphertext || tag(16)")
  t.is(crypto.open(key, sealed, "ctx"), msg, "open: round trip with aad")
  t.is(crypto.open(key, crypto.seal(key, msg)), msg, "open: round trip without aad")
  t.is(crypto.open(key, crypto.seal(key, "")), "", "open: the empty plaintext round-trips")
  local big = rep("0123456789abcdef", 65536)
  t.is(crypto.open(key, crypto.seal(key, big)), big, "open: a 1 MiB plaintext round-trips")
  t.isnt(crypto.seal(key, msg, "ctx"), sealed, "seal: a fresh nonce each call")
  t.isnt(sealed:sub(13, 12 + #msg), msg, "seal: the plaintext does not appear in the output")

  -- The explicit-nonce form reads the same framing.
  local ct, tag = sealed:sub(13, -17), sealed:sub(-16)
  t.is(crypto.aes_gcm_decrypt(key, sealed:sub(1, 12), ct, tag, "ctx"), msg,
    "seal's framing is nonce, ciphertext, tag")

  local function fails(what, r, e)
    t.ok(r == nil and e == "authentication failed", "open: " .. what .. " fails authentication")
  end
  fails("a flipped nonce bit", crypto.open(key, flip(sealed, 1), "ctx"))
  fails("a flipped ciphertext bit", crypto.open(key, flip(sealed, 13), "ctx"))
  fails("a flipped tag bit", crypto.open(key, flip(sealed, #sealed), "ctx"))
  fails("another aad", crypto.open(key, sealed, "ctX"))
  fails("a missing aad", crypto.open(key, sealed))
  fails("another key", crypto.open(crypto.random(32), sealed, "ctx"))
  fails("a truncated input", crypto.open(key, sealed:sub(1, -2), "ctx"))
  fails("an input shorter than nonce + tag", crypto.open(key, sealed:sub(1, 27), "ctx"))
  fails("an appended byte", crypto.open(key, sealed .. "x", "ctx"))

  t.raises(function() crypto.seal(rep("k", 16), msg) end, "seal: key: 32 bytes expected, got 16",
    "seal: a 16-byte key raises, naming the key")
  t.raises(function() crypto.open(rep("k", 31), sealed) end, "open: key: 32 bytes expected, got 31",
    "open: a 31-byte key raises, naming the key")
  t.raises(function() crypto.seal(nil, msg) end, "seal: key: string expected, got nil",
    "seal: a missing key raises")
  t.raises(function() crypto.seal(key, { }) end, "seal: plaintext: string expected, got table",
    "seal: a non-string plaintext raises")
  t.raises(function() crypto.seal(key, msg, 1) end, "seal: aad: string expected, got number",
    "seal: a non-string aad raises")
end

---------------------------------------------------------------------------------------------
-- equals
t.is(crypto.equals("secret", "secret"), true, "equals: same bytes")
t.is(crypto.equals("secret", "secreT"), false, "equals: last byte differs")
t.is(crypto.equals("Secret", "secret"), false, "equals: first byte differs")
t.is(crypto.equals("secret", "secret!"), false, "equals: a longer string is not equal")
t.is(crypto.equals("secret", "secre"), false, "equals: a prefix is not equal")
t.is(crypto.equals("", ""), true, "equals: two empty strings")
t.is(crypto.equals("a\0b", "a\0c"), false, "equals: compares past a NUL byte")
t.raises(function() crypto.equals("x", nil) end, "equals: b: string expected, got nil",
  "equals: a non-string raises")

---------------------------------------------------------------------------------------------
-- random
t.is(crypto.random(0), "", "random(0) is empty")
t.is(#crypto.random(1), 1, "random(1): one byte")
t.is(#crypto.random(1024 * 1024), 1024 * 1024, "random(1 MiB): the maximum")
do
  local seen, distinct = {}, 0
  for _ = 1, 100 do
    local r = crypto.random(16)
    if not seen[r] then distinct = distinct + 1 end
    seen[r] = true
  end
  t.is(distinct, 100, "random(16): 100 draws are distinct")
  -- Every byte value shows up in 64 KiB of random output (missing one has odds ~ e^-256).
  local r, vals, n = crypto.random(65536), {}, 0
  for i = 1, #r do
    local b = r:byte(i)
    if not vals[b] then vals[b], n = true, n + 1 end
  end
  t.is(n, 256, "random: all 256 byte values occur")
end
t.raises(function() crypto.random(1024 * 1024 + 1) end, "random: n: integer from 0 to 1048576",
  "random: more than 1 MiB raises")
t.raises(function() crypto.random(-1) end, "random: n", "random: a negative count raises")
t.raises(function() crypto.random(1.5) end, "random: n", "random: a fraction raises")
t.raises(function() crypto.random("8") end, "random: n", "random: a string count raises")

---------------------------------------------------------------------------------------------
-- Encodings: RFC 4648 §10 vectors, hex, and decoder errors
do
  local v = { { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
              { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" } }
  for _, p in ipairs(v) do
    t.is(crypto.base64(p[1]), p[2], ("base64(%q)"):format(p[1]))
    t.is(crypto.unbase64(p[2]), p[1], ("unbase64(%q)"):format(p[2]))
    local url = p[2]:gsub("=", "")
    t.is(crypto.base64url(p[1]), url, ("base64url(%q) has no padding"):format(p[1]))
    t.is(crypto.unbase64url(url), p[1], ("unbase64url(%q)"):format(url))
  end
  t.is(crypto.unbase64url("Zm9vYg=="), "foob", "unbase64url accepts correct padding")
  t.is(crypto.base64("\251\255\191"), "+/+/", "base64 uses + and /")
  t.is(crypto.base64url("\251\255\191"), "-_-_", "base64url uses - and _")
  t.is(crypto.unbase64url("-_-_"), "\251\255\191", "unbase64url reads - and _")

  local all = {}
  for i = 0, 255 do all[#all + 1] = string.char(i) end
  all = table.concat(all)
  t.is(crypto.unbase64(crypto.base64(all)), all, "base64 round-trips every byte value")
  t.is(crypto.unbase64url(crypto.base64url(all .. "x")), all .. "x", "base64url round-trips")
  t.is(unhex(hex(all)), all, "hex round-trips every byte value")
  t.is(hex("\0\1\171\205\239\255"), "0001abcdefff", "hex is lower case")
  t.is(unhex("ABCDEF"), "\171\205\239", "unhex reads upper case")
  t.is(unhex(""), "", "unhex('') is empty")

  local function err(what, pattern, r, e)
    t.ok(r == nil and type(e) == "string" and e:find(pattern) ~= nil,
      what .. " -> nil, " .. pattern)
    if r ~= nil or not (e and e:find(pattern)) then t.diag("got ", tostring(r), ", ", tostring(e)) end
  end
  err("unhex('abc')", "odd number of hex digits", unhex("abc"))
  err("unhex('0g')", "invalid hex digit at position 2", unhex("0g"))
  err("unhex('00 11')", "invalid hex digit at position 3", unhex("00 11"))
  err("unbase64('Zm9v!')", "invalid character at position 5", crypto.unbase64("Zm9v!"))
  err("unbase64('Zm9v\\n')", "invalid character at position 5", crypto.unbase64("Zm9v\n"))
  err("unbase64('Zg=')", "wrong padding at position 3", crypto.unbase64("Zg="))
  err("unbase64('Zg')", "missing padding at position 3", crypto.unbase64("Zg"))
  err("unbase64('Zm9v=')", "wrong padding at position 5", crypto.unbase64("Zm9v="))
  err("unbase64('Zg===')", "wrong padding", crypto.unbase64("Zg==="))
  err("unbase64('Zg==Zg==')", "data after padding at position 5", crypto.unbase64("Zg==Zg=="))
  err("unbase64('Zh==')", "non%-zero padding bits at position 2", crypto.unbase64("Zh=="))
  err("unbase64('Zm9=')", "non%-zero padding bits at position 3", crypto.unbase64("Zm9="))
  err("unbase64('Z')", "truncated input", crypto.unbase64("Z"))
  err("unbase64 of base64url text", "invalid character at position 1", crypto.unbase64("-_-_"))
  err("unbase64url of base64 text", "invalid character at position 1", crypto.unbase64url("+/+/"))
  err("unbase64url('Zg=')", "wrong padding at position 3", crypto.unbase64url("Zg="))
  err("unbase64url('Zm9vY')", "truncated input", crypto.unbase64url("Zm9vY"))
  t.raises(function() crypto.unbase64(nil) end, "unbase64: text: string expected",
    "unbase64: a non-string raises")
end

t.done()
