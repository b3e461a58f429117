"""A real SMTP server for the mail tests: aiosmtpd on 127.0.0.1:PORT, writing
every message it accepts to FOLDER as one file (envelope sender and
recipients first, then the message as received). No STARTTLS, no AUTH: the
tests of tls=required rely on a server that cannot upgrade.

    python3 tests/support/smtp_sink.py PORT FOLDER

Prints "ready" once it listens; stops on SIGTERM or SIGKILL.
"""

import os
import signal
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
    controller = Controller(FolderHandler(folder), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
