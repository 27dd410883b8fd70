"""Role x tenant matrix over every route of the daemon's HTTP API (tests/e2e/api_tenants.t).

The routes come from GET /v1/routes, so a route added later is covered without editing this
file. For each route and each token (every role, with tenant acme and without), the request
carries a body that names another tenant (globex) wherever a tenant can be named. Checked:
  - a token of tenant acme gets 403 on every route whose scope is not "tenant";
  - no answer to an acme token contains anything of globex (its events, decisions, dead
    letters, tenant_config secret, tokens);
  - a body's tenant never overrides the token's: nothing is written for globex by acme;
  - no token creates a token beyond itself (tenant or role).
Prints TAP lines; the caller prints the plan."""
import json, sys, urllib.request, urllib.error

port, admin = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"
n = 0
failed = 0


def ok(cond, name, detail=None):
    global n, failed
    n += 1
    print(("ok" if cond else "not ok") + f" {n} - {name}")
    if not cond:
        failed += 1
        if detail:
            for line in str(detail)[:2000].splitlines():
                print("#   " + line)


def call(method, path, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def token(role, tenant=None, by=admin):
    spec = {"role": role, "name": f"{role}-{tenant}"}
    if tenant:
        spec["tenant"] = tenant
    st, body = call("POST", "/v1/tokens", by, spec)
    assert st == 201, (st, body)
    return json.loads(body)


# Data of both tenants: events, decisions, dead letters.
for t in ("acme", "globex"):
    st, body = call("POST", "/v1/events", admin, [
        {"type": "m.note", "tenant": t, "data": {"who": t}},
        {"type": "m.fail", "tenant": t, "data": {"who": t}}])
    assert st == 202, (st, body)
    st, body = call("POST", "/v1/decide/matrix.policy", admin, {"tenant": t, "who": t})
    assert st == 200, (st, body)

roles = ["admin", "operator", "viewer", "ingest"]
tokens = {}
for r in roles:
    tokens[(r, "acme")] = token(r, "acme")["token"]
    tokens[(r, None)] = token(r)["token"]

st, body = call("GET", "/v1/routes", admin)
routes = json.loads(body)["routes"]
ok(st == 200 and len(routes) > 10, f"GET /v1/routes lists the route table ({len(routes)} routes)")

# A body that names globex wherever a tenant can be named.
foreign = {"tenant": "globex", "type": "m.note", "role": "viewer", "who": "acme",
           "labels": {"alertname": "X", "tenant": "globex"}, "matchers": [], "data": {"who": "acme"}}


def fill(pattern):
    return (pattern.replace("{policy}", "matrix.policy").replace("{name}", "matrix.policy")
            .replace("{id}", "1").replace("{action}", "ack"))


def lower_has_globex(text):
    return "globex" in text.lower()


for rt in routes:
    if rt["scope"] == "public":
        continue
    path = fill(rt["pattern"])
    for (role, tenant), tok in tokens.items():
        if tenant is None:
            continue
        method = rt["method"]
        body = foreign if method in ("POST", "PUT", "PATCH") else None
        if rt["pattern"] == "/v1/events" and method == "POST":
            body = [foreign]
        st, text = call(method, path, tok, body)
        where = f"{method} {rt['pattern']} as {role} of acme"
        if rt["scope"] != "tenant":
            ok(st in (401, 403), f"{where}: refused (scope {rt['scope']})", f"{st} {text}")
        ok(not lower_has_globex(text), f"{where}: nothing of globex in the answer ({st})", text)

# Nothing was written for globex by acme tokens.
st, body = call("GET", "/v1/events?tenant=globex&limit=1000", admin)
gl = json.loads(body)["events"]
ok(all(e["data"].get("who") == "globex" for e in gl), "no event was written for globex by an acme token",
   json.dumps(gl)[:500])
st, body = call("GET", "/v1/decisions?tenant=globex&limit=1000", admin)
gd = json.loads(body)["decisions"]
ok(len(gd) >= 1 and all((d.get("input") or {}).get("who", "globex") == "globex" for d in gd),
   "no decision was made for globex by an acme token", json.dumps(gd)[:500])

# The decide tenant comes from the token: acme's decision sees acme's tenant_config.
st, text = call("POST", "/v1/decide/matrix.policy", tokens[("ingest", "acme")], {"who": "x"})
ok(st == 200 and json.loads(text)["result"]["secret"] == "acme-secret",
   "decide with an acme token runs with acme's tenant_config", text)
st, text = call("POST", "/v1/decide/matrix.policy", tokens[("ingest", "acme")], {"tenant": "globex"})
ok(st == 403, "decide with an acme token and a body naming globex: 403", text)
st, text = call("GET", "/v1/decisions?tenant=globex", tokens[("viewer", "acme")])
ok(st == 403, "an acme viewer asking for globex's decisions: 403", text)
st, text = call("GET", "/v1/decisions", tokens[("viewer", "acme")])
ds = json.loads(text)["decisions"]
ok(st == 200 and len(ds) >= 1 and all(d["tenant"] == "acme" for d in ds), "an acme viewer reads only acme's decisions", text[:500])

# No token beyond its creator.
st, text = call("POST", "/v1/tokens", tokens[("admin", "acme")], {"role": "admin"})
ok(st == 201 and json.loads(text)["tenant"] == "acme", "an acme admin's new token without a tenant is acme's", text)
made = json.loads(text)["token"] if st == 201 else admin
st, text = call("GET", "/v1/cluster", made)
ok(st == 403, "and it is no tenant-less admin (GET /v1/cluster: 403)", text)
st, text = call("POST", "/v1/tokens", tokens[("admin", "acme")], {"role": "admin", "tenant": "globex"})
ok(st == 403, "an acme admin cannot create a globex token", text)
st, text = call("POST", "/v1/tokens", tokens[("admin", "acme")], {"role": "viewer", "tenant": None})
ok(st == 201 and json.loads(text)["tenant"] == "acme", "tenant null from an acme admin still means acme", text)
st, text = call("GET", "/v1/tokens", tokens[("admin", "acme")])
ok(st == 200 and all(t["tenant"] == "acme" for t in json.loads(text)["tokens"]), "an acme admin lists only acme's tokens", text[:500])
gtok = token("viewer", "globex")
st, text = call("DELETE", "/v1/tokens/" + gtok["id"], tokens[("admin", "acme")])
ok(st == 404, "an acme admin cannot revoke a globex token", text)
st, text = call("GET", "/v1/events", gtok["token"])
ok(st == 200, "the globex token still works", text[:200])
st, text = call("POST", "/v1/policies/reload", tokens[("operator", "acme")])
ok(st == 403, "an acme operator cannot reload every policy", text)
st, text = call("GET", "/v1/cluster", tokens[("operator", "acme")])
ok(st == 403, "an acme operator cannot read /v1/cluster", text)
st, text = call("POST", "/v1/tokens", tokens[("admin", None)], {"role": "admin", "tenant": "acme"})
tok = json.loads(text)
st2, text2 = call("POST", "/v1/policies/reload", tok["token"])
ok(st == 201 and tok["tenant"] == "acme" and st2 == 403,
   "a token created as {role: admin, tenant: acme} is acme's and cannot act globally", text + " / " + text2)
# Roles: an operator may not mint an admin.
st, text = call("POST", "/v1/tokens", tokens[("operator", None)], {"role": "admin"})
ok(st == 403, "an operator cannot create an admin token", text)
print(f"1..{n}")
sys.exit(1 if failed else 0)
