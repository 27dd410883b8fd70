#!/usr/bin/python3
"""A LOCAL TEST SERVER, not Kubernetes: the subset of the Kubernetes API server's REST
interface that steward.deploy.kubernetes uses, with its wire format as the Kubernetes API
reference documents it (docs/deploy/kubernetes.md lists what is reproduced):

- Deployments (apps/v1), Services (v1), HTTPRoutes (gateway.networking.k8s.io/v1) in
  namespaces: GET (object and list), POST (create), PUT (replace), PATCH
  (application/merge-patch+json, application/strategic-merge-patch+json for the fields used
  here), DELETE; the deployments' scale subresource (autoscaling/v1 Scale).
- metadata.resourceVersion (one counter for the whole store, as etcd's revision),
  metadata.generation (bumped on every spec change), uid, creationTimestamp.
- Optimistic concurrency: a PUT, or a PATCH whose body carries metadata.resourceVersion,
  that does not match the stored one -> 409 Conflict, reason "Conflict"; a POST of an existing
  name -> 409 AlreadyExists; a missing object -> 404 NotFound; errors are Status objects.
- Authorization: Bearer <token> (401 Unauthorized Status otherwise).
- Watches: ?watch=1 (or true) with resourceVersion and fieldSelector=metadata.name=NAME: a
  chunked stream of JSON lines {"type": ADDED|MODIFIED|DELETED|ERROR, "object": ...}; a
  resourceVersion older than the kept history -> one ERROR event carrying a 410 Expired
  Status, then the stream ends (the client re-lists).
- A deployment controller: status.observedGeneration follows generation, replicas and
  updatedReplicas follow spec.replicas at once, readyReplicas/availableReplicas rise by one
  every READY_STEP seconds.

Test hooks under /_test/ (not Kubernetes): POST /_test/conflict?kind=deployments&name=N
makes the next GET of that object be followed by a concurrent change (so the client's write
that follows is stale), POST /_test/compact forgets the event history (watches from an
older resourceVersion get 410), GET /_test/requests lists the requests received (each with
the bearer token it carried, so a test giving each client its own token sees who sent it).
Usage: kube_api.py PORT TOKEN[,TOKEN...] [CERT KEY] (with a certificate: HTTPS)"""
import copy
import http.server
import json
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

PORT, TOKENS = int(sys.argv[1]), sys.argv[2].split(",")
READY_STEP = 0.1

lock = threading.Condition()
rv = [100]
store = {}  # (kind, ns, name) -> object
history = []  # (rv, kind, ns, name, type, object)
history_floor = [0]  # watches from below this resourceVersion get 410
conflict_next = set()  # (kind, ns, name)
requests = []

KINDS = {
    ("apps/v1", "deployments"): ("Deployment", "apps/v1"),
    ("v1", "services"): ("Service", "v1"),
    ("gateway.networking.k8s.io/v1", "httproutes"): ("HTTPRoute", "gateway.networking.k8s.io/v1"),
}
GROUP_NAME = {"deployments": "deployments.apps", "services": "services",
              "httproutes": "httproutes.gateway.networking.k8s.io"}


def status(code, reason, message, name=None, kind=None):
    s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
         "message": message, "reason": reason, "code": code}
    if name is not None:
        s["details"] = {"name": name, "kind": kind}
    return code, s


def next_rv():
    rv[0] += 1
    return str(rv[0])


def record(kind, ns, name, typ, obj):
    history.append((int(obj["metadata"]["resourceVersion"]), kind, ns, name, typ, copy.deepcopy(obj)))
    lock.notify_all()


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch (strategic merge patch behaves the same on the fields the
    driver patches: maps and whole lists it replaces)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def store_put(kind, ns, name, obj, typ):
    """Stores obj (a new version): bumps resourceVersion, generation on spec change."""
    old = store.get((kind, ns, name))
    md = obj.setdefault("metadata", {})
    md["name"], md["namespace"] = name, ns
    if old is None:
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        md["generation"] = 1
    else:
        md["uid"] = old["metadata"]["uid"]
        md["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        gen = old["metadata"].get("generation", 1)
        md["generation"] = gen + 1 if obj.get("spec") != old.get("spec") else gen
        if "status" not in obj and "status" in old:
            obj["status"] = old["status"]
    md["resourceVersion"] = next_rv()
    if kind == "deployments":
        st = obj.setdefault("status", {})
        want = obj.get("spec", {}).get("replicas", 1)
        spec_changed = old is None or obj.get("spec") != old.get("spec")
        st["observedGeneration"] = md["generation"]
        st["replicas"] = want
        st["updatedReplicas"] = want
        if spec_changed and old is not None and obj["spec"].get("template") != old["spec"].get("template"):
            st["readyReplicas"] = 0  # a new template: the pods are replaced
            st["availableReplicas"] = 0
        st.setdefault("readyReplicas", 0)
        st.setdefault("availableReplicas", 0)
        if st["readyReplicas"] > want:
            st["readyReplicas"] = st["availableReplicas"] = want
    store[(kind, ns, name)] = obj
    record(kind, ns, name, typ, obj)
    return obj


def controller():
    """Pods become ready one at a time, as a deployment controller reports them."""
    while True:
        time.sleep(READY_STEP)
        with lock:
            for (kind, ns, name), obj in list(store.items()):
                if kind != "deployments":
                    continue
                st = obj["status"]
                want = obj.get("spec", {}).get("replicas", 1)
                if st.get("readyReplicas", 0) < want:
                    obj = copy.deepcopy(obj)
                    obj["status"]["readyReplicas"] = obj["status"].get("readyReplicas", 0) + 1
                    obj["status"]["availableReplicas"] = obj["status"]["readyReplicas"]
                    obj["metadata"]["resourceVersion"] = next_rv()
                    store[(kind, ns, name)] = obj
                    record(kind, ns, name, "MODIFIED", obj)


def concurrent_change(kind, ns, name):
    """Another client changes the object: an annotation, a new resourceVersion."""
    obj = copy.deepcopy(store[(kind, ns, name)])
    ann = obj["metadata"].setdefault("annotations", {})
    ann["kube-api.test/concurrent-writes"] = str(int(ann.get("kube-api.test/concurrent-writes", "0")) + 1)
    store_put(kind, ns, name, obj, "MODIFIED")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def route(self):
        u = urllib.parse.urlparse(self.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(u.query).items()}
        parts = [p for p in u.path.split("/") if p]
        # /api/v1/namespaces/NS/KIND[/NAME[/SUB]] or /apis/GROUP/VERSION/namespaces/NS/KIND[/NAME[/SUB]]
        if parts[:1] == ["api"] and len(parts) >= 5 and parts[2] == "namespaces":
            gv, rest = parts[1], parts[3:]
        elif parts[:1] == ["apis"] and len(parts) >= 6 and parts[3] == "namespaces":
            gv, rest = parts[1] + "/" + parts[2], parts[4:]
        else:
            return None
        ns, kind = rest[0], rest[1]
        if (gv, kind) not in KINDS:
            return None
        name = rest[2] if len(rest) > 2 else None
        sub = rest[3] if len(rest) > 3 else None
        return gv, ns, kind, name, sub, q

    def handle_any(self, method):
        data = self.body()
        auth = self.headers.get("Authorization") or ""
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        requests.append({"method": method, "path": self.path, "token": token,
                         "content_type": self.headers.get("Content-Type"), "body": data.decode(errors="replace")})
        if self.path.startswith("/_test/"):
            return self.test_hook(method)
        if token not in TOKENS:
            return self.send_json(*status(401, "Unauthorized", "Unauthorized"))
        r = self.route()
        if r is None:
            return self.send_json(*status(404, "NotFound", "the server could not find the requested resource"))
        gv, ns, kind, name, sub, q = r
        if sub not in (None, "scale", "status"):
            return self.send_json(*status(404, "NotFound", "the server could not find the requested resource"))
        if name is None and method == "GET" and q.get("watch") in ("1", "true"):
            return self.watch(kind, ns, q)
        with lock:
            code, obj = self.operate(method, gv, ns, kind, name, sub, q, data)
        self.send_json(code, obj)

    def operate(self, method, gv, ns, kind, name, sub, q, data):
        key = (kind, ns, name)
        akind, api_version = KINDS[(gv, kind)]
        gname = GROUP_NAME[kind]
        if method == "GET" and name is None:
            items = [copy.deepcopy(o) for (k, n, _), o in sorted(store.items()) if k == kind and n == ns]
            sel = q.get("fieldSelector", "")
            if sel.startswith("metadata.name="):
                items = [o for o in items if o["metadata"]["name"] == sel.split("=", 1)[1]]
            return 200, {"kind": akind + "List", "apiVersion": api_version,
                         "metadata": {"resourceVersion": str(rv[0])}, "items": items}
        if method == "POST" and name is None:
            try:
                obj = json.loads(data)
            except ValueError:
                return status(400, "BadRequest", "the body of the request was in an unknown format")
            name = (obj.get("metadata") or {}).get("name")
            if not name:
                return status(422, "Invalid", "%s \"\" is invalid: metadata.name: Required value: name or generateName is required" % akind)
            if (kind, ns, name) in store:
                return status(409, "AlreadyExists", '%s "%s" already exists' % (gname, name), name, kind)
            obj["kind"], obj["apiVersion"] = akind, api_version
            obj.pop("status", None)
            return 201, store_put(kind, ns, name, obj, "ADDED")
        if key not in store:
            return status(404, "NotFound", '%s "%s" not found' % (gname, name), name, kind)
        cur = store[key]
        if method == "GET":
            out = copy.deepcopy(cur)
            if key in conflict_next:
                conflict_next.discard(key)
                concurrent_change(kind, ns, name)
            if sub == "scale":
                return 200, self.scale_of(out)
            return 200, out
        if method == "DELETE":
            del store[key]
            gone = copy.deepcopy(cur)
            gone["metadata"]["resourceVersion"] = next_rv()
            record(kind, ns, name, "DELETED", gone)
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                         "details": {"name": name, "kind": kind, "uid": cur["metadata"]["uid"]}}
        try:
            body = json.loads(data)
        except ValueError:
            return status(400, "BadRequest", "the body of the request was in an unknown format")
        conflict = status(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the object has been modified; '
                          'please apply your changes to the latest version and try again' % (gname, name), name, kind)
        if sub == "scale":
            if method == "PATCH":
                want = ((body.get("spec") or {}).get("replicas"))
                brv = (body.get("metadata") or {}).get("resourceVersion")
            else:
                want, brv = body["spec"]["replicas"], body["metadata"].get("resourceVersion")
            if brv and brv != cur["metadata"]["resourceVersion"]:
                return conflict
            new = copy.deepcopy(cur)
            new["spec"]["replicas"] = want
            return 200, self.scale_of(store_put(kind, ns, name, new, "MODIFIED"))
        if method == "PUT":
            brv = (body.get("metadata") or {}).get("resourceVersion")
            if not brv:
                return status(422, "Invalid", '%s "%s" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update' % (akind, name), name, kind)
            if brv != cur["metadata"]["resourceVersion"]:
                return conflict
            body["kind"], body["apiVersion"] = akind, api_version
            body.pop("status", None)
            return 200, store_put(kind, ns, name, body, "MODIFIED")
        if method == "PATCH":
            ct = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ct not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                return status(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                              "accepted media types include: application/json-patch+json, application/merge-patch+json, "
                              "application/apply-patch+yaml, application/strategic-merge-patch+json")
            brv = (body.get("metadata") or {}).get("resourceVersion")
            if brv and brv != cur["metadata"]["resourceVersion"]:
                return conflict
            new = merge_patch(copy.deepcopy(cur), body)
            new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
            if sub != "status":
                new["status"] = cur.get("status")
                if new["status"] is None:
                    new.pop("status")
            return 200, store_put(kind, ns, name, new, "MODIFIED")
        return status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    @staticmethod
    def scale_of(obj):
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"],
                             "resourceVersion": obj["metadata"]["resourceVersion"]},
                "spec": {"replicas": obj["spec"].get("replicas", 1)},
                "status": {"replicas": obj["status"].get("replicas", 0)}}

    def watch(self, kind, ns, q):
        since = int(q.get("resourceVersion") or 0)
        name = None
        sel = q.get("fieldSelector", "")
        if sel.startswith("metadata.name="):
            name = sel.split("=", 1)[1]
        timeout = float(q.get("timeoutSeconds") or 30)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(obj):
            line = (json.dumps(obj) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()

        deadline = time.time() + timeout
        try:
            with lock:
                if since and since < history_floor[0]:
                    _, s = status(410, "Expired", "too old resource version: %d (%d)" % (since, history_floor[0]))
                    chunk({"type": "ERROR", "object": s})
                else:
                    if not since:  # no resourceVersion: the current state first, as ADDED
                        for (k, n, nm), o in sorted(store.items()):
                            if k == kind and n == ns and (name is None or nm == name):
                                chunk({"type": "ADDED", "object": o})
                        since = rv[0]
                    while time.time() < deadline:
                        for (r, k, n, nm, typ, o) in history:
                            if r > since and k == kind and n == ns and (name is None or nm == name):
                                chunk({"type": typ, "object": o})
                                since = r
                        if history and history[-1][0] > since:
                            since = history[-1][0]
                        lock.wait(min(0.5, max(0.0, deadline - time.time())))
            # the stream ends; the connection stays open for the client's next request, as the
            # API server's does (closing it here raced with a client reusing it)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def test_hook(self, method):
        u = urllib.parse.urlparse(self.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(u.query).items()}
        with lock:
            if u.path == "/_test/conflict":
                conflict_next.add((q["kind"], q.get("namespace", "default"), q["name"]))
                return self.send_json(200, {"ok": True})
            if u.path == "/_test/compact":
                history_floor[0] = rv[0] + 1
                del history[:]
                return self.send_json(200, {"ok": True, "floor": history_floor[0]})
            if u.path == "/_test/requests":
                return self.send_json(200, requests)
            if u.path == "/_test/object":
                o = store.get((q["kind"], q.get("namespace", "default"), q["name"]))
                return self.send_json(200 if o else 404, o or {})
        self.send_json(404, {})

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


threading.Thread(target=controller, daemon=True).start()
srv = Server(("127.0.0.1", PORT), Handler)
if len(sys.argv) > 4:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[3], sys.argv[4])
    srv.socket = tls.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
