#!/bin/bash
# Isolation you can prove (issue 17 §2): two tenants seeded with distinctive data (their
# records, events, kv written by their own policies, decisions, dead letters, tokens,
# policies, an incident),
# then every route of GET /v1/routes (so a route added later is covered) is called with every
# role's token of the other tenant, with the first tenant's object ids in the path:
#  - a global route answers 403 to every tenant token;
#  - a tenant route answers the caller's own data only: a path naming the other tenant's
#    object is 403/404, and no body carries the other tenant's marker;
#  - a public route (signed links) without a valid signature answers 403, carrying nothing;
#  - /metrics is global: 403 to a tenant token;
#  - the daemon's log lines about a tenant's event carry its tenant (tenant=...).
set -u
. "$(dirname "$0")/../support/daemon.sh"
MA="acme-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
MG="globex-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
for t in acme globex; do
  mkdir -p "$D/policies/tenants/$t"
  cat > "$D/policies/tenants/$t/iso.lua" <<'POL'
return { on = { "iso.*" }, config = { motto = "none" },
  handle = function(ev, ctx)
    if ev.type == "iso.fail" then error("always fails: " .. tostring(ev.data.marker)) end
    if ev.type == "iso.kv" then assert(ctx.kv():put("marker", { marker = ev.data.marker })) end
  end,
  decide = function(input, ctx) return { seen = input.marker, motto = ctx.config.motto } end }
POL
done
mkdir -p "$D/policies/alerting"
cat > "$D/policies/alerting/iso.lua" <<'POL'
local incidents = require "steward.alerting.incidents"
return { name = "alerting.iso", capabilities = { "alerting" }, on = { "iso.incident" },
  handle = function(ev)
    assert(incidents.trigger({ key = "iso/" .. ev.data.marker, service = "iso", title = "incident " .. ev.data.marker }))
  end }
POL
daemon_config "tenant_config = { acme = { [\"tenants.acme.iso\"] = { motto = \"secret-$MA\" } },
                   globex = { [\"tenants.globex.iso\"] = { motto = \"secret-$MG\" } } },
  tenants = { plans = { basic = { rate = { ingest = 10000, burst = 10000 } } } },
  limits = { retry_attempts = 1 },
  alerting = { link_secret_file = \"$D/link.key\" },"
daemon_start || { echo "1..1"; echo "not ok 1 - the daemon starts"; sed 's/^/# /' "$D/log"; exit 1; }
cat > "$D/matrix.py" <<'PY'
import json, sys, time, urllib.request, urllib.error

port, admin, ma, mg = sys.argv[1:5]
base = f"http://127.0.0.1:{port}"
n = failed = 0


def ok(cond, name, detail=None):
    global n, failed
    n += 1
    print(("ok" if cond else "not ok") + f" {n} - {name}")
    if not cond:
        failed += 1
        for line in str(detail or "")[:1500].splitlines():
            print("#   " + line)


def call(method, path, token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def mktoken(role, tenant, name):
    spec = {"role": role, "name": name}
    if tenant:
        spec["tenant"] = tenant
    st, body = call("POST", "/v1/tokens", admin, spec)
    assert st == 201, (st, body)
    return json.loads(body)


# Seed both tenants, each with its marker in everything it owns (its record too).
markers = {"acme": ma, "globex": mg}
for t, m in markers.items():
    st, body = call("POST", "/v1/tenants", admin, {"id": t, "name": "Tenant " + m, "plan": "basic",
                                                   "contact": {"email": f"ops@{m}.test"}})
    assert st == 201, (st, body)
    own = mktoken("ingest", t, "seed-" + m)["token"]
    st, body = call("POST", "/v1/events", own, [
        {"type": "iso.note", "data": {"marker": m}}, {"type": "iso.kv", "data": {"marker": m}},
        {"type": "iso.fail", "data": {"marker": m}}])
    assert st == 202, (st, body)
    st, body = call("POST", f"/v1/decide/tenants.{t}.iso", own, {"marker": m})
    assert st == 200 and m in body, (st, body)
st, body = call("POST", "/v1/events", admin, {"type": "iso.incident", "data": {"marker": mg}})
assert st == 202, (st, body)


def poll(what, fn, secs=20):
    end = time.time() + secs
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    return None


def dead(t):
    st, body = call("GET", f"/v1/dead-letters?tenant={t}", admin)
    return st == 200 and json.loads(body)["dead_letters"]


def incident():
    st, body = call("GET", "/v1/incidents", admin)
    return st == 200 and [i for i in json.loads(body)["incidents"] if mg in i.get("title", "")]


g_dead, a_dead, g_inc = poll("dead", lambda: dead("globex")), poll("dead", lambda: dead("acme")), poll("inc", incident)
ok(g_dead and a_dead and g_inc, "seeded: each tenant's failing event is a dead letter, the incident is open",
   f"{g_dead} {a_dead} {g_inc}")
kv_ok = poll("kv", lambda: "globex" in (call("GET", "/v1/decisions?policy=tenants.globex.iso&outcome=ok", admin)[1]))
ok(kv_ok, "seeded: globex's own policy handled its events (a decision of tenants.globex.iso)")

st, body = call("GET", "/v1/events?tenant=globex", admin)
g_event = json.loads(body)["events"][0]
st, body = call("GET", "/v1/decisions?tenant=globex", admin)
g_decision = json.loads(body)["decisions"][0]["decision_id"]
st, body = call("GET", "/v1/tokens", admin)
g_token = [x for x in json.loads(body)["tokens"] if x.get("tenant") == "globex"][0]["id"]
ok(g_dead and a_dead and all(d["policy"] == "tenants.globex.iso" for d in g_dead)
   and all(d["policy"] == "tenants.acme.iso" for d in a_dead),
   "GET /v1/dead-letters?tenant= (no tenant on the token) lists that tenant's dead letters only",
   json.dumps(g_dead) + " / " + json.dumps(a_dead))
ids = {"dead_letter": str(g_dead[0]["id"]), "token": g_token, "event": g_event["id"], "decision": g_decision,
       "incident": str(g_inc[0]["id"]), "tenant": "globex"}

roles = ["admin", "operator", "viewer", "ingest"]
acme = {r: mktoken(r, "acme", f"{r}-iso")["token"] for r in roles}

st, body = call("GET", "/v1/routes", admin)
routes = json.loads(body)["routes"]
ok(st == 200 and len(routes) > 20, f"the route table: {len(routes)} routes")


def paths(pattern):
    """The pattern with its placeholders filled with globex's objects (every id kind for {id})."""
    if "{id}" in pattern:
        out = [pattern.replace("{id}", v) for v in ids.values()]
    else:
        out = [pattern, pattern + "?tenant=globex"]  # asking for globex's rows by query
    out = [p.replace("{name}", "tenants.globex.iso").replace("{policy}", "tenants.globex.iso")
            .replace("{action}", "ack") for p in out]
    return out


body_for = {"tenant": "globex", "marker": ma, "type": "iso.note", "role": "viewer", "data": {"marker": ma}}
leaks, wrong = [], []
calls = 0
for rt in routes:
    method = rt["method"]
    for path in paths(rt["pattern"]):
        for role, tok in acme.items():
            body = None
            if method in ("POST", "PUT", "PATCH"):
                body = [body_for] if rt["pattern"] == "/v1/events" else body_for
            st, text = call(method, path, tok if rt["scope"] != "public" else None, body)
            calls += 1
            where = f"{method} {path} as acme {role} ({rt['scope']}): {st}"
            if mg in text or ("secret-" + mg) in text:
                leaks.append(where + " " + text[:300])
            if "?tenant=globex" in path and rt["scope"] == "tenant" and 200 <= st < 300 and method == "GET" \
                    and rt["pattern"] in ("/v1/events", "/v1/decisions", "/v1/dead-letters"):
                wrong.append(where + " (asking for globex's rows must be a 403) " + text[:200])
            if rt["scope"] == "global" and st != 403:
                wrong.append(where + " (a global route must refuse a tenant token: 403)")
            elif rt["scope"] == "tenant" and "{" in rt["pattern"] and 200 <= st < 300:
                wrong.append(where + " (a path naming globex's object must be 403/404) " + text[:200])
            elif rt["scope"] == "public" and "{" in rt["pattern"] and st not in (400, 401, 403, 404, 410):
                wrong.append(where + " (a signed link without a signature must be refused) " + text[:200])
ok(not leaks, f"no answer to an acme token carries globex's marker ({calls} calls)", "\n".join(leaks))
ok(not wrong, "every route answers acme's tokens as its scope says (global 403, globex's objects 403/404, public unsigned refused)",
   "\n".join(wrong))

# The other way round, a sanity check that the markers are really there to be found.
st, text = call("GET", "/v1/events", acme["viewer"])
ok(st == 200 and ma in text and mg not in text, "an acme viewer reads acme's events (its marker) and not globex's")
st, text = call("GET", "/v1/decisions", acme["viewer"])
ok(st == 200 and ma in text and mg not in text, "an acme viewer reads acme's decisions only")
st, text = call("GET", "/v1/dead-letters", acme["viewer"])
ok(st == 200 and str(a_dead[0]["id"]) in text and ids["dead_letter"] not in [str(x["id"]) for x in json.loads(text)["dead_letters"]],
   "an acme viewer lists acme's dead letters only", text[:300])
st, text = call("GET", "/v1/dead-letters?tenant=globex", acme["viewer"])
ok(st == 403, "an acme viewer asking for globex's dead letters: 403", f"{st} {text[:300]}")
st, text = call("GET", "/v1/dead-letters?colour=red", admin)
ok(st == 400 and "colour" in text, "an unknown dead-letters parameter is a 400 naming it", f"{st} {text[:300]}")
st, text = call("GET", "/v1/policies/tenants.acme.iso", acme["viewer"])
ok(st == 200 and ("secret-" + ma) in text, "acme's own policy shows acme's tenant_config")
st, text = call("GET", "/v1/tenants/acme", acme["viewer"])
ok(st == 200 and ma in text, "an acme token reads acme's own record", f"{st} {text[:300]}")
st, text = call("GET", "/metrics", acme["viewer"])
ok(st == 403, "/metrics is global: a tenant token is refused (403)", f"{st} {text[:200]}")
st, text = call("GET", "/metrics", admin)
ok(st == 200 and 'steward_tenant_ingest_limited_total' in text, "/metrics for a token without a tenant")
sys.exit(1 if failed else 0)
PY
/usr/bin/python3 "$D/matrix.py" "$PORT" "$TOKEN" "$MA" "$MG" > "$D/tap"
rc=$?
cat "$D/tap"
n=$(grep -c '^\(not \)\?ok ' "$D/tap")
wait_for 10 grep -q 'msg="dead letter".*tenant=globex' "$D/log.new"
ok $? "the daemon's log line of globex's dead letter names its tenant (tenant=globex)"
echo "1..$n"
daemon_stop
[ $rc -eq 0 ] && exit $fail
exit 1
