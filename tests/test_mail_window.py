"""The at-least-once window of email delivery (docs/operations.md, "Email delivery: at least once"): a
deliverer killed with kill -9 while a slow SMTP server has not yet answered the end of DATA. The server
may have taken the message; after the lease the message goes again, as the same message (same
Message-ID), never before the lease runs out. A real SMTP server (aiosmtpd) and a real killed process.
"""

from __future__ import annotations

import asyncio
import email
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from email import policy
from pathlib import Path

from processor.report import mail
from tests.test_mail import Collect, Server, make_ctx, port, queue, row  # noqa: F401 - port is a fixture

ROOT = Path(__file__).resolve().parent.parent

DELIVERER = """
import sys
from pathlib import Path
from processor.report import mail
from tests.test_mail import make_ctx
mail.deliver_due(make_ctx(Path(sys.argv[1]), int(sys.argv[2])))
"""


class SlowFirstAnswer(Collect):
    """Takes every message; answers the end of DATA of the first one only when told to."""

    def __init__(self) -> None:
        super().__init__()
        self.took_first = threading.Event()
        self.answer = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        if len(self.envelopes) == 1:
            self.took_first.set()
            while not self.answer.is_set():
                await asyncio.sleep(0.05)
        return "250 Message accepted for delivery"


def test_a_deliverer_killed_before_the_server_answered_data_resends_the_same_message_after_the_lease(
        tmp_path, port):  # noqa: F811 - the fixture
    ctx = make_ctx(tmp_path, port)
    outbox_id = queue(ctx)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with Server(port, SlowFirstAnswer()) as smtp:
        deliverer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(DELIVERER), str(tmp_path), str(port)],
                                     cwd=ROOT, env=env)
        try:
            assert smtp.took_first.wait(30)  # the whole message is with the server; its answer is pending
            deliverer.send_signal(signal.SIGKILL)
            deliverer.wait(10)
        finally:
            deliverer.kill()
            smtp.answer.set()
        claimed = row(ctx, outbox_id)
        assert claimed.status == "sending"
        now = time.time()
        assert mail.deliver_due(ctx, now=now)["sent"] == 0  # the dead deliverer's lease still holds it
        assert mail.deliver_due(ctx, now=claimed.next_attempt_at + 1)["sent"] == 1
    assert row(ctx, outbox_id).status == "sent"
    first, second = (email.message_from_bytes(e.content, policy=policy.default) for e in smtp.envelopes)
    assert first["Message-ID"] and first["Message-ID"] == second["Message-ID"]
    assert first.get_body(("plain",)).get_content() == second.get_body(("plain",)).get_content()
