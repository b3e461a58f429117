"""A real SMTP server for the mail tests: aiosmtpd on 127.0.0.1:PORT, writing
every message it accepts to FOLDER as one file (envelope sender and
recipients first, then the message as received). No AUTH.

    python3 tests/support/smtp_sink.py PORT FOLDER [MODE CERT KEY]

MODE: "plain" (the default: no STARTTLS, what the tests of tls=required need
to be refused), "starttls" (offers and requires STARTTLS) or "implicit" (TLS
from the first byte), with the PEM certificate chain CERT and its key KEY.

Prints "ready" once it listens; stops on SIGTERM or SIGKILL.
"""

import os
import signal
import ssl
import sys
import threading
import uuid

from aiosmtpd.controller import Controller


class FolderHandler:
    def __init__(self, folder):
        self.folder = folder

    async def handle_DATA(self, server, session, envelope):
        name = uuid.uuid4().hex
        text = "X-Envelope-From: %s\nX-Envelope-To: %s\n" % (
            envelope.mail_from,
            ",".join(envelope.rcpt_tos),
        )
        data = envelope.original_content or envelope.content
        partial = os.path.join(self.folder, name + ".partial")
        with open(partial, "wb") as f:
            f.write(text.encode() + data)
        # Renamed when complete: the tests never read half a message.
        os.rename(partial, os.path.join(self.folder, name + ".eml"))
        return "250 Message accepted for delivery"


def main():
    port, folder = int(sys.argv[1]), sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "plain"
    options = {}
    if mode != "plain":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[4], sys.argv[5])
        if mode == "starttls":
            options = {"tls_context": context, "require_starttls": True}
        else:
            options = {"ssl_context": context}
    controller = Controller(
        FolderHandler(folder), hostname="127.0.0.1", port=port, **options
    )
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
