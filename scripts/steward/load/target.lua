-- steward.load.target: where `steward load` may send. By default only loopback: the host is
-- resolved (IP literals as they are, names through the system's resolver, `getent ahosts`,
-- which reads /etc/hosts and DNS as every program does, in a child process so the loop never
-- waits) and every address it has must be in 127.0.0.0/8 or ::1. For http the requests to any
-- other name then go to the address that was checked, with the name kept in the Host header,
-- so a name that resolves elsewhere a second later cannot redirect the load.
local proc = require "steward.proc"

local type, tonumber, tostring, ipairs, format, concat = type, tonumber, tostring, ipairs, string.format, table.concat

local M = {}

-- parse("http://127.0.0.1:8080/x?y") -> {scheme, host, port, path, authority, base} | nil, err
function M.parse(url)
  if type(url) ~= "string" then return nil, "--target: URL expected" end
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, format("--target: '%s' is not a URL (http://HOST[:PORT]/PATH)", url) end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then
    return nil, format("--target: scheme '%s' is not supported (http or https)", scheme)
  end
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  if authority:find("@", 1, true) then return nil, "--target: user information in the URL is not supported" end
  local host, port
  if authority:sub(1, 1) == "[" then
    host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
  else
    host, port = authority:match("^([^:]+):?(%d*)$")
  end
  if not host or host == "" then return nil, format("--target: no host in '%s'", url) end
  port = port ~= "" and tonumber(port) or (scheme == "https" and 443 or 80)
  if port < 1 or port > 65535 then return nil, format("--target: port %s out of range", tostring(port)) end
  if path == "" then path = "/" end
  return { scheme = scheme, host = host:lower(), port = port, path = path, authority = authority, url = url }
end

local function ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if a > 255 or b > 255 or c > 255 or d > 255 then return nil end
  return a
end

-- Expands an IPv6 text to its 8 groups (numbers), or nil.
local function ipv6(s)
  if not s:find(":", 1, true) then return nil end
  local tail4 = s:match(":(%d+%.%d+%.%d+%.%d+)$")
  if tail4 then
    local a, b, c, d = tail4:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    s = s:sub(1, #s - #tail4) .. format("%x:%x", tonumber(a) * 256 + tonumber(b), tonumber(c) * 256 + tonumber(d))
  end
  local head, tail = s:match("^(.-)::(.*)$")
  local function groups(x)
    local g = {}
    if x == "" then return g end
    for part in (x .. ":"):gmatch("([^:]*):") do
      if not part:match("^%x%x?%x?%x?$") then return nil end
      g[#g + 1] = tonumber(part, 16)
    end
    return g
  end
  local out
  if head then
    local h, t = groups(head), groups(tail)
    if not h or not t or #h + #t > 7 then return nil end
    out = {}
    for _, v in ipairs(h) do out[#out + 1] = v end
    for _ = 1, 8 - #h - #t do out[#out + 1] = 0 end
    for _, v in ipairs(t) do out[#out + 1] = v end
  else
    out = groups(s)
    if not out or #out ~= 8 then return nil end
  end
  return out
end

-- is_loopback(address) -> true | false; nil when it is not an IP address.
function M.is_loopback(addr)
  local a = ipv4(addr)
  if a then return a == 127 end
  local g = ipv6(addr)
  if not g then return nil end
  for i = 1, 5 do if g[i] ~= 0 then return false end end
  if g[6] == 0 and g[7] == 0 then return g[8] == 1 end         -- ::1
  if g[6] == 0xffff then return math.floor(g[7] / 256) == 127 end -- ::ffff:127.x.y.z
  return false
end

-- resolve(host) -> { addresses } | nil, err (an IP literal is its own answer).
function M.resolve(host)
  if M.is_loopback(host) ~= nil then return { host } end
  local res, err = proc.run{ cmd = { "getent", "ahosts", host }, timeout = "10s" }
  if not res then return nil, format("cannot resolve '%s': %s", host, tostring(err)) end
  if res.code ~= 0 then return nil, format("cannot resolve '%s': no address found", host) end
  local seen, out = {}, {}
  for addr in res.stdout:gmatch("([^%s]+)[^\n]*\n") do
    if not seen[addr] then seen[addr] = true; out[#out + 1] = addr end
  end
  if #out == 0 then return nil, format("cannot resolve '%s': no address found", host) end
  return out
end

-- localhost and *.localhost are loopback by definition (RFC 6761: resolvers must answer so);
-- they are not pinned, so libcurl can fall back between ::1 and 127.0.0.1 as the server binds.
function M.always_loopback(host)
  return host == "localhost" or host:match("%.localhost$") ~= nil
end

-- check(url, allow_remote) -> target | nil, err: the parsed URL, with `connect` (the URL the
-- requests go to) and `host_header` (the Host the server sees) set.
function M.check(url, allow_remote)
  local t, err = M.parse(url)
  if not t then return nil, err end
  local addrs
  addrs, err = M.resolve(t.host)
  if not addrs then return nil, "--target: " .. err end
  t.addresses = addrs
  local remote = {}
  for _, a in ipairs(addrs) do
    if not M.is_loopback(a) then remote[#remote + 1] = a end
  end
  if #remote > 0 and not allow_remote then
    return nil, format("--target: %s resolves to %s, not a loopback address (127.0.0.0/8, ::1); " ..
      "steward load only sends to this machine unless --allow-remote is given", t.host, concat(remote, ", "))
  end
  t.remote = #remote > 0
  t.origin = t.scheme .. "://" .. t.authority
  if t.scheme == "http" and not t.remote and M.is_loopback(t.host) == nil and not M.always_loopback(t.host) then
    -- IPv4 first: a test server bound to 127.0.0.1 is more common than one bound to ::1.
    local a = addrs[1]
    for _, x in ipairs(addrs) do if not x:find(":", 1, true) then a = x; break end end
    t.connect = "http://" .. (a:find(":", 1, true) and "[" .. a .. "]" or a) .. ":" .. t.port
    t.host_header = t.authority
  else
    t.connect = t.origin
  end
  return t
end

return M
