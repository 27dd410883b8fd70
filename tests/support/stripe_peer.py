#!/usr/bin/python3
"""A LOCAL TEST SERVER, not Stripe: the part of Stripe's REST API that steward.billing.stripe
uses, with Stripe's wire format as its API reference documents it (docs.stripe.com/api):

- Requests: form-encoded bodies (application/x-www-form-urlencoded) with nested keys written
  `metadata[invoice]=INV-1` (bracket notation, one level or more); `Authorization: Bearer
  sk_...` (or HTTP Basic with the key as user name). A missing or unknown key -> 401 with an
  error object of type invalid_request_error.
- Objects: JSON with "id" (prefix per kind: cus_, pi_, evt_), "object" ("customer",
  "payment_intent", "event"), "created" (Unix seconds), "livemode": false, "metadata".
- Customers: POST /v1/customers (email, name, description, metadata[...],
  invoice_settings[default_payment_method]), POST /v1/customers/{id} (update: the same
  parameters), GET /v1/customers/{id}.
- PaymentIntents: POST /v1/payment_intents (amount: a positive integer in the currency's
  minor unit; currency: three lower-case letters; customer; payment_method; confirm;
  off_session; description; metadata[...]), GET /v1/payment_intents/{id}, POST
  /v1/payment_intents/{id}/confirm. With confirm=true the intent is confirmed at once:
  status "succeeded" with latest_charge, or -- declined -- HTTP 402 with an error object of
  type "card_error", code "card_declined" (or "expired_card"), decline_code and the intent
  itself under "payment_intent" (status "requires_payment_method", last_payment_error set).
- Test payment methods as Stripe's test mode names them: pm_card_visa (succeeds),
  pm_card_chargeDeclined (generic_decline), pm_card_chargeDeclinedInsufficientFunds
  (insufficient_funds), pm_card_chargeDeclinedExpiredCard (expired_card). Any other pm_ id
  -> 400 resource_missing on param payment_method.
- Errors: {"error": {"type", "code", "message", "param", "decline_code", "doc_url"}}; a
  missing or bad parameter -> 400 invalid_request_error naming the param.
- Idempotency-Key (any POST): the first answer (status and body, errors included) is kept
  and a later request with the same key and the same parameters gets it again, with the
  header Idempotent-Replayed: true; the same key with other parameters -> 400 of type
  idempotency_error. Keys are per API key and endpoint, at most 255 characters.
- Webhooks: after each confirmation the peer POSTs an event (payment_intent.succeeded or
  payment_intent.payment_failed; "data": {"object": <the intent>}, "request": {"id",
  "idempotency_key"}, "api_version", "pending_webhooks") as JSON to the endpoint URL, signed
  as Stripe signs: header Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
  "<t>.<raw body>" keyed with the endpoint secret (whsec_...)>.

Control endpoints under /_peer/ (not Stripe's; no API key), JSON bodies:
- POST /_peer/webhook {"url", "secret"}: where events go and the secret that signs them.
- POST /_peer/outcomes {"outcomes": ["generic_decline", "insufficient_funds", "succeeded"]}:
  the next confirmations take these outcomes in order, whatever their payment method.
- POST /_peer/hold {"path": "/v1/payment_intents"}: the next POST to that path is executed
  and its answer kept (as Stripe keeps an idempotent result), but the answer is not sent
  until POST /_peer/release (or the client goes away); GET /_peer/held -> {"held": n}.
- POST /_peer/replay {"event": "evt_..."}: delivers that event again, signed anew;
  POST /_peer/send {"event": "evt_...", "signature": "..."} delivers it with a given
  Stripe-Signature header (a bad one, for tests).
- GET /_peer/requests: every API request received {method, path, params, idempotency_key,
  replayed, status}; GET /_peer/events: every event with its deliveries' statuses;
  GET /_peer/intents: every PaymentIntent.

Usage: stripe_peer.py API_KEY -- prints its port on stdout once listening."""
import hashlib
import hmac
import http.server
import json
import secrets
import socketserver
import sys
import threading
import time
import urllib.parse
import urllib.request

API_KEY = sys.argv[1] if len(sys.argv) > 1 else "sk_test_peer"
API_VERSION = "2024-06-20"

lock = threading.Condition()
customers, intents, events = {}, {}, {}
event_order = []
idem = {}  # (api key, path, key) -> {"params", "status", "body"}
requests_log = []
outcomes = []
webhook = {"url": None, "secret": None}
hold = {"path": None, "held": 0, "release": False}

DECLINES = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": ("card_declined", "insufficient_funds",
                                                "Your card has insufficient funds."),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", "expired_card", "Your card has expired."),
}
OUTCOMES = {"succeeded": None, "generic_decline": DECLINES["pm_card_chargeDeclined"],
            "insufficient_funds": DECLINES["pm_card_chargeDeclinedInsufficientFunds"],
            "expired_card": DECLINES["pm_card_chargeDeclinedExpiredCard"]}


def new_id(prefix):
    return prefix + "_" + secrets.token_hex(12)


def parse_form(body):
    """Stripe's bracket notation: a[b][c]=v -> {"a": {"b": {"c": "v"}}}."""
    out = {}
    for k, v in urllib.parse.parse_qsl(body, keep_blank_values=True):
        parts = [k.split("[", 1)[0]] + [p.rstrip("]") for p in k.split("[")[1:]]
        cur = out
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
            if not isinstance(cur, dict):
                raise ValueError(k)
        cur[parts[-1]] = v
    return out


def error(status, etype, message, code=None, param=None, **extra):
    e = {"type": etype, "message": message}
    if code:
        e["code"] = code
        e["doc_url"] = "https://stripe.com/docs/error-codes/" + code.replace("_", "-")
    if param:
        e["param"] = param
    e.update(extra)
    return status, {"error": e}


def sign(payload, secret, t=None):
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), ("%d." % t).encode() + payload, hashlib.sha256).hexdigest()
    return "t=%d,v1=%s" % (t, mac)


def deliver(ev_id, signature=None):
    with lock:
        ev = events[ev_id]
        url, secret = webhook["url"], webhook["secret"]
    if not url:
        return None
    payload = json.dumps(ev["event"], separators=(",", ":")).encode()
    sig = signature if signature is not None else sign(payload, secret or "")
    req = urllib.request.Request(url, data=payload, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8", "Stripe-Signature": sig,
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except Exception as e:  # the endpoint is down: Stripe would retry later; the test replays
        status = "error: %s" % e
    with lock:
        ev["deliveries"].append(status)
        lock.notify_all()
    return status


def emit(etype, obj, request_id, key):
    ev = {"id": new_id("evt"), "object": "event", "api_version": API_VERSION, "created": int(time.time()),
          "data": {"object": obj}, "livemode": False, "pending_webhooks": 1,
          "request": {"id": request_id, "idempotency_key": key}, "type": etype}
    with lock:
        events[ev["id"]] = {"event": ev, "deliveries": []}
        event_order.append(ev["id"])
    # after the answer, as Stripe does: the endpoint may hear of it before the client reads it
    threading.Thread(target=deliver, args=(ev["id"],), daemon=True).start()


def confirm(pi, pm, request_id, key):
    with lock:
        forced = outcomes.pop(0) if outcomes else None
    decline = OUTCOMES[forced] if forced else DECLINES.get(pm)
    pi["payment_method"] = pm
    if decline:
        code, decline_code, message = decline
        pi["status"] = "requires_payment_method"
        pi["last_payment_error"] = {"type": "card_error", "code": code, "decline_code": decline_code,
                                    "message": message, "payment_method": {"id": pm, "object": "payment_method"}}
        emit("payment_intent.payment_failed", dict(pi), request_id, key)
        return error(402, "card_error", message, code=code, decline_code=decline_code,
                     payment_intent=dict(pi), request_log_url="https://dashboard.stripe.com/test/logs/" + request_id)
    pi["status"] = "succeeded"
    pi["amount_received"] = pi["amount"]
    pi["latest_charge"] = new_id("ch")
    pi["last_payment_error"] = None
    emit("payment_intent.succeeded", dict(pi), request_id, key)
    return 200, dict(pi)


def known_pm(pm):
    return pm == "pm_card_visa" or pm in DECLINES


def update_customer(c, p):
    for k in ("email", "name", "description"):
        if k in p:
            c[k] = p[k]
    c["metadata"].update(p.get("metadata", {}))
    pm = p.get("invoice_settings", {}).get("default_payment_method")
    if pm is not None:
        if not known_pm(pm):
            return error(400, "invalid_request_error", "No such PaymentMethod: '%s'" % pm, "resource_missing",
                         "invoice_settings[default_payment_method]")
        c["invoice_settings"]["default_payment_method"] = pm
    return 200, dict(c)


def create_customer(p):
    c = {"id": new_id("cus"), "object": "customer", "created": int(time.time()), "livemode": False,
         "email": None, "name": None, "description": None, "metadata": {},
         "invoice_settings": {"default_payment_method": None}}
    s, b = update_customer(c, p)
    if s == 200:
        customers[c["id"]] = c
    return s, b


def create_intent(p, request_id, key):
    amount = p.get("amount")
    if amount is None:
        return error(400, "invalid_request_error", "Missing required param: amount.", "parameter_missing", "amount")
    if not amount.isdigit() or int(amount) < 1:
        return error(400, "invalid_request_error", "Invalid positive integer", "parameter_invalid_integer", "amount")
    cur = p.get("currency")
    if cur is None:
        return error(400, "invalid_request_error", "Missing required param: currency.", "parameter_missing", "currency")
    if len(cur) != 3 or not cur.isalpha() or cur != cur.lower():
        return error(400, "invalid_request_error", "Invalid currency: %s." % cur, "parameter_invalid_string", "currency")
    cus = p.get("customer")
    if cus is not None and cus not in customers:
        return error(400, "invalid_request_error", "No such customer: '%s'" % cus, "resource_missing", "customer")
    pm = p.get("payment_method")
    if pm is not None and not known_pm(pm):
        return error(400, "invalid_request_error", "No such PaymentMethod: '%s'" % pm, "resource_missing",
                     "payment_method")
    pi = {"id": new_id("pi"), "object": "payment_intent", "created": int(time.time()), "livemode": False,
          "amount": int(amount), "amount_received": 0, "currency": cur, "customer": cus,
          "description": p.get("description"), "metadata": p.get("metadata", {}), "payment_method": pm,
          "status": "requires_payment_method" if pm is None else "requires_confirmation",
          "last_payment_error": None, "latest_charge": None}
    pi["client_secret"] = pi["id"] + "_secret_" + secrets.token_hex(8)
    intents[pi["id"]] = pi
    if p.get("confirm") == "true":
        if pm is None:
            return error(400, "invalid_request_error",
                         "You cannot confirm this PaymentIntent because it's missing a payment method.",
                         "payment_intent_unexpected_state", "payment_method")
        return confirm(pi, pm, request_id, key)
    return 200, dict(pi)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, status, body, headers=None):
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", getattr(self, "request_id", "req_peer"))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def api_key(self):
        a = self.headers.get("Authorization") or ""
        if a.startswith("Bearer "):
            return a[7:]
        if a.startswith("Basic "):
            import base64
            try:
                return base64.b64decode(a[6:]).decode().split(":", 1)[0]
            except Exception:
                return None
        return None

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/_peer/"):
            return self.control_get(path)
        if self.api_key() != API_KEY:
            return self.unauthorized()
        with lock:
            parts = path.strip("/").split("/")
            if len(parts) == 3 and parts[1] == "customers" and parts[2] in customers:
                return self.send(200, customers[parts[2]])
            if len(parts) == 3 and parts[1] == "payment_intents" and parts[2] in intents:
                return self.send(200, intents[parts[2]])
        s, b = error(404, "invalid_request_error", "Unrecognized request URL (GET: %s)." % path)
        if len(parts) == 3:
            s, b = error(404, "invalid_request_error", "No such object: '%s'" % parts[2], "resource_missing", "id")
        self.send(s, b)

    def unauthorized(self):
        key = self.api_key()
        msg = ("You did not provide an API key. You need to provide your API key in the Authorization header, "
               "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').") if not key else \
            "Invalid API Key provided: %s" % (key[:8] + "*" * max(0, len(key) - 12) + key[-4:])
        s, b = error(401, "invalid_request_error", msg)
        self.send(s, b)

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        raw = self.body()
        if path.startswith("/_peer/"):
            return self.control_post(path, raw)
        self.request_id = new_id("req")
        if self.api_key() != API_KEY:
            return self.unauthorized()
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            if raw and ctype != "application/x-www-form-urlencoded":
                raise ValueError("content type")
            params = parse_form(raw.decode())
        except (ValueError, UnicodeDecodeError):
            s, b = error(400, "invalid_request_error",
                         "Invalid request: the body must be application/x-www-form-urlencoded")
            return self.send(s, b)
        key = self.headers.get("Idempotency-Key")
        entry = {"method": "POST", "path": path, "params": params, "idempotency_key": key, "replayed": False}
        with lock:
            requests_log.append(entry)
            if key is not None and len(key) > 255:
                s, b = error(400, "invalid_request_error", "Idempotency-Key must be at most 255 characters",
                             param="Idempotency-Key")
                entry["status"] = s
                return self.send(s, b)
            k = (API_KEY, path, key)
            if key is not None and k in idem:
                saved = idem[k]
                if saved["params"] != params:
                    s, b = error(400, "idempotency_error",
                                 "Keys for idempotent requests can only be used with the same parameters they "
                                 "were first used with. Try using a key other than '%s' if you meant to execute "
                                 "a different request." % key)
                    entry["status"] = s
                    return self.send(s, b)
                entry["replayed"], entry["status"] = True, saved["status"]
                return self.send(saved["status"], saved["body"],
                                 {"Idempotent-Replayed": "true", "Original-Request": saved["request_id"]})
            parts = path.strip("/").split("/")
            if path == "/v1/customers":
                s, b = create_customer(params)
            elif path == "/v1/payment_intents":
                s, b = create_intent(params, self.request_id, key)
            elif len(parts) == 3 and parts[1] == "customers":
                if parts[2] not in customers:
                    s, b = error(404, "invalid_request_error", "No such customer: '%s'" % parts[2],
                                 "resource_missing", "id")
                else:
                    s, b = update_customer(customers[parts[2]], params)
            elif len(parts) == 4 and parts[1] == "payment_intents" and parts[3] == "confirm":
                pi = intents.get(parts[2])
                if not pi:
                    s, b = error(404, "invalid_request_error", "No such payment_intent: '%s'" % parts[2],
                                 "resource_missing", "intent")
                elif pi["status"] == "succeeded":
                    s, b = error(400, "invalid_request_error",
                                 "This PaymentIntent's status is succeeded; it cannot be confirmed.",
                                 "payment_intent_unexpected_state", payment_intent=dict(pi))
                else:
                    s, b = confirm(pi, params.get("payment_method") or pi["payment_method"], self.request_id, key)
            else:
                s, b = error(404, "invalid_request_error", "Unrecognized request URL (POST: %s)." % path)
            entry["status"] = s
            if key is not None:
                idem[k] = {"params": params, "status": s, "body": b, "request_id": self.request_id}
            held = hold["path"] == path
            if held:
                hold["path"], hold["held"], hold["release"] = None, hold["held"] + 1, False
                lock.notify_all()
                while not hold["release"]:
                    lock.wait(0.1)
                    if self.gone():
                        break
                hold["held"] -= 1
        self.send(s, b)

    def gone(self):
        """Whether the client closed the connection while its answer was held."""
        import select
        r, _, _ = select.select([self.connection], [], [], 0)
        if not r:
            return False
        try:
            import socket
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def control_get(self, path):
        with lock:
            if path == "/_peer/requests":
                return self.send(200, {"requests": requests_log})
            if path == "/_peer/events":
                return self.send(200, {"events": [dict(events[i]["event"], deliveries=events[i]["deliveries"])
                                                  for i in event_order]})
            if path == "/_peer/intents":
                return self.send(200, {"intents": list(intents.values())})
            if path == "/_peer/held":
                return self.send(200, {"held": hold["held"]})
        self.send(404, {"error": "no such control endpoint"})

    def control_post(self, path, raw):
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self.send(400, {"error": "JSON expected"})
        with lock:
            if path == "/_peer/webhook":
                webhook["url"], webhook["secret"] = body.get("url"), body.get("secret")
                return self.send(200, webhook)
            if path == "/_peer/outcomes":
                bad = [o for o in body.get("outcomes", []) if o not in OUTCOMES]
                if bad:
                    return self.send(400, {"error": "unknown outcomes %s (one of %s)" % (bad, sorted(OUTCOMES))})
                outcomes.extend(body.get("outcomes", []))
                return self.send(200, {"outcomes": outcomes})
            if path == "/_peer/hold":
                hold["path"], hold["release"] = body.get("path"), False
                return self.send(200, {"path": hold["path"]})
            if path == "/_peer/release":
                hold["release"] = True
                lock.notify_all()
                return self.send(200, {"released": True})
        if path in ("/_peer/replay", "/_peer/send"):
            if body.get("event") not in events:
                return self.send(404, {"error": "no such event"})
            status = deliver(body["event"], body.get("signature") if path == "/_peer/send" else None)
            return self.send(200, {"status": status})
        self.send(404, {"error": "no such control endpoint"})


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


main()
