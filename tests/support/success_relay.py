#!/usr/bin/python3
"""The MTA side of steward's support mail intake, for tests: an aiosmtpd server on 127.0.0.1
(port chosen by the OS, printed as the first line of stdout) that hands each message it
receives to steward as Postfix's pipe or a SaaS inbound-parse webhook would: POST
URL with the message as a message/rfc822 body. Each delivery is appended to OUTFILE as one
JSON line: {"rcpt": [...], "status": <HTTP status>, "body": <steward's answer>}.
usage: success_relay.py URL TOKEN OUTFILE"""
import asyncio
import json
import sys
import urllib.error
import urllib.request

from aiosmtpd.smtp import SMTP


class Relay:
    def __init__(self, url, token, path):
        self.url, self.token, self.path = url, token, path

    def post(self, data):
        req = urllib.request.Request(self.url, data=data, method="POST", headers={
            "Content-Type": "message/rfc822", "Authorization": "Bearer " + self.token})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    async def handle_DATA(self, server, session, envelope):
        status, body = await asyncio.get_running_loop().run_in_executor(None, self.post, envelope.original_content)
        with open(self.path, "a") as f:
            f.write(json.dumps({"rcpt": envelope.rcpt_tos, "status": status, "body": body}) + "\n")
        # a mail steward refuses is bounced, as an MTA would: the sender learns why
        return "250 OK" if status < 300 else "550 refused by steward: HTTP %d" % status


async def main(url, token, path):
    loop = asyncio.get_running_loop()
    relay = Relay(url, token, path)
    srv = await loop.create_server(lambda: SMTP(relay), "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    sys.stdout.close()
    await srv.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
