#!/usr/bin/python3
"""Sends one support mail for the tests through SMTP, built with Python's email package.
usage: success_mail.py PORT TO SUBJECT BODY [html]  (html: a multipart/alternative mail,
which steward refuses). Exit status 0 when the server took it, 1 when it refused it."""
import smtplib
import sys
from email.message import EmailMessage
from email.utils import make_msgid

port, to, subject, body = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
m = EmailMessage()
m["From"] = "Carol Customer <carol@acme.example>"
m["To"] = to
m["Subject"] = subject
m["Message-ID"] = make_msgid(domain="acme.example")
m.set_content(body)
if len(sys.argv) > 5 and sys.argv[5] == "html":
    m.add_alternative("<p>" + body + "</p>", subtype="html")
try:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.send_message(m)
except smtplib.SMTPResponseException as e:
    print("refused: %d %s" % (e.smtp_code, e.smtp_error.decode()))
    sys.exit(1)
except smtplib.SMTPRecipientsRefused as e:
    print("refused: %s" % e)
    sys.exit(1)
