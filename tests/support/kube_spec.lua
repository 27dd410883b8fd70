-- The checks of tests/e2e/deploy_kubernetes.t: steward.deploy.kubernetes against the local
-- test API server (tests/support/kube_api.py). Usage: kube_spec.lua API_URL TOKEN_FILE
-- TLS_API_URL CA_FILE (the same server over HTTPS, its certificate's CA)
local t = require "steward.tap"
local http = require "steward.http"
local json = require "steward.json"
local fs = require "steward.fs"
local kube = require "steward.deploy.kubernetes"

local api, token_file = arg[1], arg[2]
local token = fs.read(token_file):gsub("%s+$", "")
kube.configure {
  api = { kubernetes = { api = api, namespace = "prod", deployment = "api", service = "api", httproute = "api",
    image = "registry.local/api:{revision}", token_file = token_file } },
  nosvc = { kubernetes = { api = api, namespace = "prod", deployment = "nope", token_file = token_file } },
  badtoken = { kubernetes = { api = api, namespace = "prod", deployment = "api", token_file = token_file .. ".missing" } },
}

local function raw(method, path, body)
  local res = assert(http.request { url = api .. path, method = method, body = body and json.encode(body),
    headers = { Authorization = "Bearer " .. token, ["Content-Type"] = "application/json" } })
  return res.status, json.decode(res.body)
end
local function get(path) local _, b = raw("GET", path) return b end
local D = "/apis/apps/v1/namespaces/prod/deployments"
local S = "/api/v1/namespaces/prod/services"
local R = "/apis/gateway.networking.k8s.io/v1/namespaces/prod/httproutes"

-- the operator's base objects
assert(raw("POST", D, { metadata = { name = "api" }, spec = { replicas = 2,
  selector = { matchLabels = { app = "api" } },
  template = { metadata = { labels = { app = "api" } },
    spec = { containers = { { name = "app", image = "registry.local/api:v1", ports = { { containerPort = 8080 } } },
                            { name = "sidecar", image = "registry.local/proxy:1" } } } } } }) == 201)
assert(raw("POST", S, { metadata = { name = "api" }, spec = { selector = { app = "api" },
  ports = { { name = "http", port = 80, targetPort = 8080, protocol = "TCP" } } } }) == 201)
assert(raw("POST", R, { metadata = { name = "api" }, spec = { parentRefs = { { name = "gw" } },
  rules = { { backendRefs = { { name = "api-v1", port = 80, weight = 100 } } } } } }) == 201)

-- start: a Deployment and a Service per revision, from the base ones
t.is(kube.start("api", "v1", 2), true, "start v1 with 2 replicas")
local d = get(D .. "/api-v1")
t.is(d.spec.replicas, 2, "the revision's Deployment api-v1 has 2 replicas")
t.is(d.spec.template.spec.containers[1].image, "registry.local/api:v1", "its image is the configured one with {revision}")
t.is(d.spec.template.spec.containers[2].image, "registry.local/proxy:1", "other containers keep theirs")
t.is(d.spec.selector.matchLabels["steward.dev/revision"], "v1", "its selector includes the revision label")
t.is(get(S .. "/api-v1").spec.selector["steward.dev/revision"], "v1", "the revision's Service api-v1 selects its pods")
t.is(kube.start("api", "v1", 2), true, "start again is idempotent")

-- a watch that sees readiness (the test server's controller readies one pod per 100 ms)
local st, err = kube.wait_ready("api", "v1", 2, "10s")
t.ok(st and st.ready == 2 and st.complete, "wait_ready sees both replicas ready through the watch: " .. tostring(err))

-- scale, with a concurrent writer: the first patch meets 409 Conflict and is recomputed
raw("POST", "/_test/conflict?namespace=prod&kind=deployments&name=api-v1")
t.is(kube.scale("api", "v1", 4), true, "scale to 4 succeeds although another client changed the object meanwhile")
d = get(D .. "/api-v1")
t.is(d.spec.replicas, 4, "replicas are 4")
t.is(d.metadata.annotations["kube-api.test/concurrent-writes"], "1", "the concurrent change is kept (the patch was recomputed, not forced)")
local reqs = get("/_test/requests")
local patches = 0
for _, r in ipairs(reqs) do
  if r.method == "PATCH" and r.path == D .. "/api-v1" then
    patches = patches + 1
    t.ok(json.decode(r.body).metadata.resourceVersion, "a patch carries the resourceVersion it was computed from")
    t.is(r.content_type, "application/merge-patch+json", "a patch is sent as application/merge-patch+json")
  end
end
t.is(patches, 2, "two patches: the stale one (409) and the retry")
st = assert(kube.wait_ready("api", "v1", 4, "10s"))
t.is(st.ready, 4, "the scaled-up replicas become ready")

-- image change on the base Deployment: a rolling update by Kubernetes
t.is(kube.set_image("api", "v2"), true, "set_image v2 on the base Deployment")
d = get(D .. "/api")
t.is(d.spec.template.spec.containers[1].image, "registry.local/api:v2", "the base Deployment runs v2's image")
t.is(d.spec.template.spec.containers[2].image, "registry.local/proxy:1", "the sidecar is untouched")
st = assert(kube.status("api"))
t.ok(st.image == "registry.local/api:v2", "status shows the image")
st, err = kube.wait_ready("api", nil, nil, "10s")
t.ok(st and st.complete and st.observed, "the rollout completes (observedGeneration, updated, available): " .. tostring(err))

-- blue-green: switch the base Service's selector
t.is(kube.start("api", "v2", 1), true, "start v2")
t.is(kube.switch("api", "v2"), true, "switch to v2")
local svc = get(S .. "/api")
t.is(svc.spec.selector["steward.dev/revision"], "v2", "the Service selects v2")
t.is(svc.spec.selector.app, "api", "and keeps its own selector")
t.is(kube.switch("api", "v1"), true, "switch back to v1")
t.is(get(S .. "/api").spec.selector["steward.dev/revision"], "v1", "the Service selects v1")

-- canary: HTTPRoute weights
t.is(kube.set_weights("api", { v1 = 80, v2 = 20 }), true, "set_weights{v1=80, v2=20}")
local route = get(R .. "/api")
local refs = route.spec.rules[1].backendRefs
t.is(#refs, 2, "the route has two backends")
t.is(refs[1].name .. "=" .. refs[1].weight .. "," .. refs[2].name .. "=" .. refs[2].weight, "api-v1=80,api-v2=20",
  "backendRefs carry the weights (the new one added with the route's port)")
t.is(refs[2].port, 80, "the added backendRef has the route's port")
t.is(route.spec.parentRefs[1].name, "gw", "the rest of the route is untouched")
local w = kube.weights("api")
t.is(w.v1 .. "/" .. w.v2, "80/20", "weights() reads them back")
t.is(kube.set_weights("api", { v1 = 0, v2 = 100 }), true, "promote: 0/100")
w = kube.weights("api")
t.is(w.v1 .. "/" .. w.v2, "0/100", "v2 has all the traffic")

-- a watch from a compacted resourceVersion: 410 Expired, re-list, continue
t.is(kube.scale("api", "v2", 3), true, "scale v2 to 3")
raw("POST", "/_test/compact")
kube.WATCH_SECONDS = 1
st, err = kube.wait_ready("api", "v2", 3, "10s")
t.ok(st and st.ready == 3, "a watch that meets 410 Expired re-lists and still sees readiness: " .. tostring(err))
local expired = 0
for _, r in ipairs(get("/_test/requests")) do
  if r.method == "GET" and r.path:find("watch=1", 1, true) then expired = expired + 1 end
end
t.ok(expired >= 1, "readiness came through watch requests")

st, err = kube.wait_ready("api", "v2", 9, "1s")
t.like(err, "timeout: deployment api%-v2 has 3 of 9 replicas ready", "wait_ready times out with the last state")

-- stop
t.is(kube.stop("api", "v2"), true, "stop v2")
t.is((raw("GET", D .. "/api-v2")), 404, "its Deployment is gone")
t.is((raw("GET", S .. "/api-v2")), 404, "its Service is gone")

-- errors: Status objects, names in the message
local ok
ok, err = kube.scale("api", "v9", 1)
t.is(err, 'kubernetes: GET ' .. D .. '/api-v9: 404 NotFound: deployments.apps "api-v9" not found', "a missing object: the Status's reason and message")
ok, err = kube.start("nosvc", "v1", 1)
t.like(err, "deployments.apps \"nope\" not found", "a missing base Deployment is named")
ok, err = kube.status("badtoken")
t.like(err, "token_file", "an unreadable token file is named")
kube.configure { api = { kubernetes = { api = api, namespace = "prod", deployment = "api" } } }
ok, err = kube.status("api")
t.like(err, "401 Unauthorized", "without the token the server's 401 comes back")
t.raises(function() kube.scale("api", "Bad_Rev", 1) end, "revision: a revision id usable in Kubernetes names",
  "a revision that cannot be part of a name raises, naming the argument")
t.raises(function() kube.set_weights("api", { v1 = 50, v2 = 40 }) end, "percents add up to 90",
  "weights that do not add up to 100 raise")
ok, err = kube.status("ghost")
t.like(err, "unknown service 'ghost'", "an unknown service is named")

-- TLS: verified against the configured CA; without it the certificate is refused
local tls_api, ca = arg[3], arg[4]
kube.configure {
  api = { kubernetes = { api = tls_api, namespace = "prod", deployment = "api", token_file = token_file, ca_file = ca } },
  noca = { kubernetes = { api = tls_api, namespace = "prod", deployment = "api", token_file = token_file } },
}
-- (a second, empty server: its answer is a Status, which needs the TLS session and the token)
ok, err = kube.status("api", "v1")
t.like(err, '404 NotFound: deployments.apps "api%-v1" not found',
  "over HTTPS with ca_file the server's certificate is verified against it and the API answers")
ok, err = kube.status("noca")
t.ok(ok == nil and err:find("kubernetes: GET", 1, true) and (err:find("certificate", 1, true) or err:find("SSL", 1, true)),
  "without ca_file the self-signed certificate is refused (TLS stays verified): " .. tostring(err))
t.done()
