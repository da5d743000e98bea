"""A real SMTP server (aiosmtpd, Debian's python3-aiosmtpd) on 127.0.0.1 for
the browser tests: prints "PORT <n>" once listening, then each message it
receives as one JSON line {"to": [...], "body": "..."}; stops on SIGTERM or
when its stdin closes (the test process ended)."""
import json
import socket
import sys

from aiosmtpd.controller import Controller


class Handler:
    async def handle_DATA(self, server, session, envelope):
        print(json.dumps({"to": envelope.rcpt_tos,
                          "body": envelope.content.decode("utf-8", "replace")}), flush=True)
        return "250 OK"


with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
controller = Controller(Handler(), hostname="127.0.0.1", port=port)
controller.start()
print("PORT %d" % port, flush=True)
try:
    sys.stdin.read()  # until the parent closes it or goes away
finally:
    controller.stop()
