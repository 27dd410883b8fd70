#!/usr/bin/python3
"""SMTP test peer for steward.http.send_mail: aiosmtpd on 127.0.0.1, port chosen by the OS
and printed as the first line of stdout. Each message received is appended to OUTFILE as one
JSON line: {"from": ..., "to": [...], "data": ...}."""
import asyncio
import json
import sys

from aiosmtpd.smtp import SMTP


class Recorder:
    def __init__(self, path):
        self.path = path

    async def handle_DATA(self, server, session, envelope):
        rec = {"from": envelope.mail_from, "to": envelope.rcpt_tos,
               "data": envelope.original_content.decode("utf-8", "replace")}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        return "250 OK"


async def main(path):
    loop = asyncio.get_running_loop()
    handler = Recorder(path)
    srv = await loop.create_server(lambda: SMTP(handler), "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    sys.stdout.close()
    await srv.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
