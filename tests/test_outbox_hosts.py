"""Email delivery across hosts (CONTRACT.md section 11, issue #17): two deliverers on two hosts share one
PostgreSQL store and one SMTP server; each queued email is claimed by one of them and delivered once.

Real OS processes (`rosterdrop outbox send`, the command an operator or the scheduler runs), real
PostgreSQL, a real SMTP server (aiosmtpd on 127.0.0.1) that answers slowly enough for the two to overlap.
"""

from __future__ import annotations

import asyncio
import collections
import email
import os
import subprocess
import sys
import threading
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import func, select

from processor.apply.store import open_store, outbox
from processor.context import Context
from processor.home import init_home
from processor.report import mail
from processor.report.render import RenderedReport
from tests.conftest import PG_URL, reset_store, write_config
from tests.test_mail import Collect, Server, port  # noqa: F401 - port is a fixture

ROOT = Path(__file__).resolve().parent.parent
EMAILS = 120

pytestmark = pytest.mark.skipif(not PG_URL, reason="needs a shared PostgreSQL: set ROSTERDROP_TEST_PG_URL")


class SlowCollect(Collect):
    """Takes every message after a short pause, and records which connection (deliverer) sent it."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.by_peer: collections.Counter = collections.Counter()

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(0.01)
        with self.lock:
            self.envelopes.append(envelope)
            self.by_peer[session.peer[1]] += 1
        return "250 Message accepted for delivery"


def host(tmp_path: Path, name: str, smtp_port: int) -> Path:
    """A host's home: its own folder, the shared store and SMTP server in its configuration."""
    home = tmp_path / name
    init_home(home, ["lincoln", "adams"])
    write_config(home, {"lincoln": {}, "adams": {}}, PG_URL)
    with (home / "rosterdrop.toml").open("a", encoding="utf-8") as f:
        f.write(f'\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nstarttls = false\ntimeout_seconds = 5\n'
                'sender = "Roster Sync <sync@rosterdrop.example>"\n')
    return home


def test_two_hosts_sending_the_same_outbox_deliver_every_email_exactly_once(tmp_path, port):  # noqa: F811
    reset_store(PG_URL)
    homes = [host(tmp_path, "host-a", port), host(tmp_path, "host-b", port)]
    ctx = Context.load(homes[0])
    with ctx.engine.begin() as conn:
        ids = [mail.queue_message(conn, ctx, ("lincoln", "adams")[i % 2], "sign_in",
                                  [f"admin{i}@district.example"],
                                  RenderedReport(subject=f"message {i}", html=f"<p>{i}</p>", text=f"{i}"))
               for i in range(EMAILS)]
    ctx.engine.dispose()

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with Server(port, SlowCollect()) as smtp:
        deliverers = [subprocess.Popen([sys.executable, "-m", "processor", "--home", str(home), "outbox", "send"],
                                       cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                      for home in homes]
        outputs = [d.communicate(timeout=120) for d in deliverers]

    for d, (_, err) in zip(deliverers, outputs, strict=True):
        assert d.returncode == 0, err
    sent = [int(out.split("sent: ")[1].split(",")[0]) for out, _ in outputs]
    assert sum(sent) == EMAILS
    assert min(sent) > 0, f"both hosts must have delivered some (the race was real): {sent}"
    assert len(smtp.by_peer) >= 2, "the messages came over two connections"

    subjects = collections.Counter(email.message_from_bytes(e.content, policy=policy.default)["Subject"]
                                   for e in smtp.envelopes)
    assert subjects == collections.Counter(f"message {i}" for i in range(EMAILS)), "each one, exactly once"

    engine = open_store(PG_URL, create=False)
    with engine.connect() as conn:
        statuses = dict(conn.execute(select(outbox.c.status, func.count()).where(outbox.c.id.in_(ids))
                                     .group_by(outbox.c.status)).all())
        attempts = conn.execute(select(func.max(outbox.c.attempts)).where(outbox.c.id.in_(ids))).scalar_one()
    engine.dispose()
    assert statuses == {"sent": EMAILS}
    assert attempts == 1, "no email was claimed twice"
