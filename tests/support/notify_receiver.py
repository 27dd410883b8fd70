#!/usr/bin/python3
"""Test peer for steward.notify: one process serving the vendor endpoints steward's channels
talk to, checking each request's shape against the vendor's API reference, plus an SMTP
server (aiosmtpd). Prints "HTTP_PORT SMTP_PORT" as its first line, then closes stdout.

Routes (by path):       /slack/...    Slack incoming webhook   {text, blocks}
                        /teams/...    Teams webhook            Adaptive Card envelope or MessageCard
                        /v2/enqueue   PagerDuty Events API v2
                        /2010-04-01/Accounts/{AccountSid}/Messages.json   Twilio Messages
                        /webhook/...  Alertmanager webhook, version 4
A malformed request gets 400 with the vendor's kind of error body; a well-formed one the
vendor's success answer (Slack 200 "ok", Teams 200 "1", PagerDuty 202, Twilio 201, webhook 200).

Control (JSON):
  POST /_control/plan     {"route": R, "responses": [A, ...]}: the next requests of route R
                          get these answers first, in order, whatever their shape. A is
                          {"status": N, "headers": {...}, "body": "..."}, optionally
                          "retry_after_date": S (a Retry-After HTTP-date S seconds from the
                          moment of answering), or {"hold": true} (never answer). For route
                          "smtp", A is {"smtp": "451 4.3.0 try later"} (the reply to DATA).
  GET  /_control/requests?route=R   what route R received (all routes without R), in order:
                          [{route, time, method, path, headers, body, json, form, auth,
                            valid, error, response: {status, headers}}]; smtp records are
                          {route, time, from, to, data, reply}.
  GET  /_control/wait?route=R&n=N&timeout=S   answers once route R has received N requests
                          (200), or after S seconds (408).
  POST /_control/reset    forgets records and plans.
"""
import base64
import email.utils
import json
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncio

from aiosmtpd.smtp import SMTP

lock = threading.Condition()
records = []
plans = {}
never = threading.Event()


def record(rec):
    with lock:
        records.append(rec)
        lock.notify_all()


def next_plan(route):
    with lock:
        q = plans.get(route)
        if q:
            return q.pop(0)
    return None


class Invalid(Exception):
    pass


def need(cond, msg):
    if not cond:
        raise Invalid(msg)


def is_str_map(v):
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())


RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
E164 = re.compile(r"^\+[1-9]\d{1,14}$")


# --- Slack: https://api.slack.com/messaging/webhooks, Block Kit reference
def check_slack(req):
    body = req["json"]
    need(req["headers"].get("content-type", "").startswith("application/json"), "invalid_payload: content-type")
    need(isinstance(body, dict), "invalid_payload")
    text, blocks = body.get("text"), body.get("blocks")
    need(isinstance(text, str) and text != "" or isinstance(blocks, list) and blocks, "no_text")
    if blocks is not None:
        need(isinstance(blocks, list) and len(blocks) <= 50, "invalid_blocks")
        for b in blocks:
            need(isinstance(b, dict) and b.get("type") in
                 ("header", "section", "context", "divider", "actions", "image", "rich_text"), "invalid_blocks")
            if b["type"] == "header":
                t = b.get("text")
                need(isinstance(t, dict) and t.get("type") == "plain_text" and isinstance(t.get("text"), str)
                     and 0 < len(t["text"]) <= 150, "invalid_blocks: header")
            if b["type"] == "section":
                need("text" in b or "fields" in b, "invalid_blocks: section needs text or fields")
                if "text" in b:
                    t = b["text"]
                    need(t.get("type") in ("mrkdwn", "plain_text") and 0 < len(t.get("text", "")) <= 3000,
                         "invalid_blocks: section text")
                if "fields" in b:
                    need(isinstance(b["fields"], list) and 0 < len(b["fields"]) <= 10, "invalid_blocks: fields")
                    for f in b["fields"]:
                        need(f.get("type") in ("mrkdwn", "plain_text") and 0 < len(f.get("text", "")) <= 2000,
                             "invalid_blocks: field")
            if b["type"] == "context":
                need(isinstance(b.get("elements"), list) and 0 < len(b["elements"]) <= 10, "invalid_blocks: context")
    return 200, {"Content-Type": "text/plain"}, "ok"


# --- Teams: Adaptive Card in a message envelope, or a legacy MessageCard
def check_teams(req):
    body = req["json"]
    need(isinstance(body, dict), "Bad payload: not a JSON object")
    if body.get("@type") == "MessageCard":
        need("schema.org/extensions" in str(body.get("@context", "")), "MessageCard: @context")
        need(body.get("summary") or body.get("text"), "Summary or Text is required.")
        for s in body.get("sections", []):
            for f in s.get("facts", []):
                need(isinstance(f.get("name"), str) and isinstance(f.get("value"), str), "MessageCard: fact")
        return 200, {"Content-Type": "text/plain"}, "1"
    need(body.get("type") == "message", "type must be 'message'")
    atts = body.get("attachments")
    need(isinstance(atts, list) and atts, "attachments required")
    for a in atts:
        need(a.get("contentType") == "application/vnd.microsoft.card.adaptive", "contentType")
        c = a.get("content")
        need(isinstance(c, dict) and c.get("type") == "AdaptiveCard", "content.type must be AdaptiveCard")
        need(re.match(r"^\d+\.\d+$", str(c.get("version", ""))), "content.version")
        need(isinstance(c.get("body"), list), "content.body")
        for el in c["body"]:
            need(isinstance(el, dict) and isinstance(el.get("type"), str), "body element type")
            if el["type"] == "TextBlock":
                need(isinstance(el.get("text"), str), "TextBlock.text")
            if el["type"] == "FactSet":
                for f in el.get("facts", []):
                    need(isinstance(f.get("title"), str) and isinstance(f.get("value"), str), "FactSet fact")
        for act in c.get("actions", []):
            need(act.get("type") != "Action.OpenUrl" or isinstance(act.get("url"), str), "Action.OpenUrl url")
    return 200, {"Content-Type": "text/plain"}, "1"


# --- PagerDuty Events API v2
def check_pagerduty(req):
    body = req["json"]
    need(isinstance(body, dict), "Event object is invalid")
    errs = []
    rk = body.get("routing_key")
    if not (isinstance(rk, str) and len(rk) == 32):
        errs.append("'routing_key' must be 32 characters")
    act = body.get("event_action")
    if act not in ("trigger", "acknowledge", "resolve"):
        errs.append("'event_action' is invalid")
    dk = body.get("dedup_key")
    if dk is not None and not (isinstance(dk, str) and 0 < len(dk) <= 255):
        errs.append("'dedup_key' must be a string of at most 255 characters")
    if act in ("acknowledge", "resolve") and dk is None:
        errs.append("'dedup_key' is required for " + act)
    if act == "trigger":
        p = body.get("payload")
        if not isinstance(p, dict):
            errs.append("'payload' is missing")
        else:
            if not (isinstance(p.get("summary"), str) and 0 < len(p["summary"]) <= 1024):
                errs.append("'payload.summary' is missing or too long")
            if not (isinstance(p.get("source"), str) and p["source"]):
                errs.append("'payload.source' is missing")
            if p.get("severity") not in ("critical", "error", "warning", "info"):
                errs.append("'payload.severity' is invalid")
            if "timestamp" in p and not RFC3339.match(str(p["timestamp"])):
                errs.append("'payload.timestamp' is not ISO 8601")
    for link in body.get("links", []):
        if not isinstance(link.get("href"), str):
            errs.append("'links' need href")
    if errs:
        raise Invalid(json.dumps({"status": "invalid event", "message": "Event object is invalid", "errors": errs}))
    key = dk or ("%032x" % (int(time.time() * 1e6)))
    return 202, {"Content-Type": "application/json"}, json.dumps(
        {"status": "success", "message": "Event processed", "dedup_key": key})


# --- Twilio Messages
def check_twilio(req, sid):
    auth = req["auth"]
    if not auth or not (auth[0] == sid or auth[0].startswith("SK")) or not re.match(r"^[0-9a-zA-Z]{32}$", auth[1]):
        return 401, {"Content-Type": "application/json"}, json.dumps(
            {"code": 20003, "message": "Authenticate", "status": 401})
    need(req["headers"].get("content-type", "").startswith("application/x-www-form-urlencoded"),
         json.dumps({"code": 20001, "message": "form encoding expected", "status": 400}))
    f = req["form"]
    need(f is not None and E164.match(f.get("To", "")),
         json.dumps({"code": 21604, "message": "A 'To' phone number is required.", "status": 400}))
    need(E164.match(f.get("From", "")) or f.get("MessagingServiceSid", "").startswith("MG"),
         json.dumps({"code": 21603, "message": "A 'From' phone number is required.", "status": 400}))
    body = f.get("Body", "")
    need(0 < len(body) <= 1600, json.dumps({"code": 21602, "message": "Message body is required.", "status": 400}))
    return 201, {"Content-Type": "application/json"}, json.dumps(
        {"sid": "SM" + "%032x" % int(time.time() * 1e6), "account_sid": sid, "to": f["To"],
         "from": f.get("From"), "body": body, "status": "queued"})


# --- Alertmanager webhook, version 4
def check_webhook(req):
    b = req["json"]
    need(isinstance(b, dict), "not a JSON object")
    need(b.get("version") == "4", "version must be \"4\"")
    need(isinstance(b.get("groupKey"), str), "groupKey")
    need(isinstance(b.get("truncatedAlerts"), int) and b["truncatedAlerts"] >= 0, "truncatedAlerts")
    need(b.get("status") in ("firing", "resolved"), "status")
    need(isinstance(b.get("receiver"), str), "receiver")
    for k in ("groupLabels", "commonLabels", "commonAnnotations"):
        need(is_str_map(b.get(k)), k + " must be an object of strings")
    need(isinstance(b.get("externalURL"), str), "externalURL")
    need(isinstance(b.get("alerts"), list) and b["alerts"], "alerts")
    for a in b["alerts"]:
        need(a.get("status") in ("firing", "resolved"), "alert status")
        need(is_str_map(a.get("labels")) and is_str_map(a.get("annotations")), "alert labels/annotations")
        need(RFC3339.match(str(a.get("startsAt"))) and RFC3339.match(str(a.get("endsAt"))), "alert times")
        need(isinstance(a.get("generatorURL"), str) and isinstance(a.get("fingerprint"), str), "alert fields")
    return 200, {"Content-Type": "text/plain"}, ""


TWILIO = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Messages\.json$")


def route_of(path):
    if path.startswith("/slack/"):
        return "slack", check_slack
    if path.startswith("/teams/"):
        return "teams", check_teams
    if path == "/v2/enqueue":
        return "pagerduty", check_pagerduty
    m = TWILIO.match(path)
    if m:
        return "twilio", lambda req: check_twilio(req, m.group(1))
    if path.startswith("/webhook/"):
        return "webhook", check_webhook
    return None, None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, headers, body):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def control(self, u, body):
        q = urllib.parse.parse_qs(u.query)
        route = q.get("route", [None])[0]
        if u.path == "/_control/plan":
            p = json.loads(body)
            with lock:
                plans.setdefault(p["route"], []).extend(p["responses"])
            return self.reply(200, {}, "planned")
        if u.path == "/_control/reset":
            with lock:
                records.clear()
                plans.clear()
            return self.reply(200, {}, "reset")
        if u.path == "/_control/requests":
            with lock:
                out = [r for r in records if route is None or r["route"] == route]
                data = json.dumps(out)
            return self.reply(200, {"Content-Type": "application/json"}, data)
        if u.path == "/_control/wait":
            n, limit = int(q.get("n", ["1"])[0]), float(q.get("timeout", ["10"])[0])
            deadline = time.time() + limit
            with lock:
                while sum(1 for r in records if r["route"] == route) < n:
                    left = deadline - time.time()
                    if left <= 0:
                        return self.reply(408, {}, "timeout")
                    lock.wait(left)
            return self.reply(200, {}, "ok")
        return self.reply(404, {}, "no such control")

    def handle_any(self):
        arrived = time.time()
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        u = urllib.parse.urlsplit(self.path)
        if u.path.startswith("/_control/"):
            return self.control(u, raw)
        route, check = route_of(u.path)
        text = raw.decode("utf-8", "replace")
        req = {"route": route, "time": arrived, "method": self.command, "path": u.path,
               "headers": {k.lower(): v for k, v in self.headers.items()}, "body": text,
               "json": None, "form": None, "auth": None, "valid": None, "error": None}
        try:
            req["json"] = json.loads(text)
        except ValueError:
            pass
        if req["headers"].get("content-type", "").startswith("application/x-www-form-urlencoded"):
            req["form"] = {k: v[-1] for k, v in urllib.parse.parse_qs(text, keep_blank_values=True).items()}
        a = self.headers.get("Authorization", "")
        if a.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(a[6:]).decode().partition(":")
                req["auth"] = [user, pw]
            except ValueError:
                pass
        if route is None:
            req["route"] = "unknown"
            record(req)
            return self.reply(404, {}, "no such route")
        try:
            need(self.command == "POST", "POST expected")
            status, headers, body = check(req)
            req["valid"] = status < 300
        except Invalid as e:
            req["valid"], req["error"] = False, str(e)
            status, body = 400, str(e)
            headers = {"Content-Type": "application/json" if body.startswith("{") else "text/plain"}
        plan = next_plan(route)
        if plan and plan.get("hold"):
            req["response"] = {"status": None, "headers": {}}
            record(req)
            never.wait()
            return
        if plan:
            status, headers, body = plan.get("status", 500), dict(plan.get("headers", {})), plan.get("body", "")
            if "retry_after_date" in plan:
                headers["Retry-After"] = email.utils.formatdate(time.time() + plan["retry_after_date"], usegmt=True)
        req["response"] = {"status": status, "headers": headers}
        record(req)
        self.reply(status, headers, body)

    do_POST = handle_any
    do_GET = handle_any
    do_PUT = handle_any


class SmtpRecorder:
    async def handle_DATA(self, server, session, envelope):
        plan = next_plan("smtp")
        reply = plan["smtp"] if plan else "250 OK"
        record({"route": "smtp", "time": time.time(), "from": envelope.mail_from, "to": envelope.rcpt_tos,
                "data": envelope.original_content.decode("utf-8", "replace"), "reply": reply})
        return reply


def start_smtp():
    """aiosmtpd on its own asyncio loop in a thread; port chosen by the OS."""
    ready = threading.Event()
    port = []

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        srv = loop.run_until_complete(loop.create_server(lambda: SMTP(SmtpRecorder()), "127.0.0.1", 0))
        port.append(srv.sockets[0].getsockname()[1])
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait()
    return port[0]


def main():
    smtp_port = start_smtp()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    print(srv.server_address[1], smtp_port, flush=True)
    sys.stdout.close()
    srv.serve_forever()


if __name__ == "__main__":
    main()
