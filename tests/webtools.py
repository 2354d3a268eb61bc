"""Helpers for the console tests: a real console server on a free port, links read from the outbox .eml files."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from pathlib import Path

import httpx

from processor.report.mail import deliver_due
from processor.web.server import WebServer
from tests.bundles import CLEAN, ENROLLMENTS, USERS, with_changes
from tests.conftest import Env
from tests.helpers import wait_for

LINCOLN_ADMINS = ["it@lincoln.example", "boss@lincoln.example"]


def drop_lines(text: str, *ids: str) -> str:
    return "".join(line + "\n" for line in text.splitlines() if line.split(",")[0] not in ids)


MASS_WITHDRAWAL = with_changes(CLEAN, users_csv=drop_lines(USERS, "u2", "u3"),
                               enrollments_csv=drop_lines(ENROLLMENTS, "e2", "e3"))


@dataclass
class Console:
    env: Env
    server: WebServer
    base: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, follow_redirects=False, timeout=30)

    def emails(self) -> list[email.message.EmailMessage]:
        """Every email delivered so far, as the .eml files the outbox wrote (oldest first)."""
        # A page may have started delivering in its own thread: wait until nothing is queued or being sent.
        wait_for(lambda: deliver_due(self.env.ctx, force=True)["waiting"] == 0, timeout=30)
        files = sorted(self.env.home.joinpath("outbox").glob("*.eml"), key=lambda p: int(p.name.split("-")[0]))
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]

    def links(self, pattern: str, to: str | None = None) -> list[str]:
        """Links in the text parts of the delivered emails (to one recipient) matching base_url + pattern."""
        found = []
        for msg in self.emails():
            if to is not None and msg["To"] != to:
                continue
            text = msg.get_body(("plain",)).get_content()
            found += re.findall(re.escape(self.base) + pattern + r"[^\s)]*", text)
        return found


def start_console(env: Env, extra_toml: str = "", report_to: list[str] | None = None) -> Console:
    cfg = env.home / "rosterdrop.toml"
    text = cfg.read_text()
    if report_to is not None:
        text = text.replace('report_to = ["it@lincoln.example"]', "report_to = " + str(report_to).replace("'", '"'))
    cfg.write_text(text + "\n[web]\nport = 0\n" + extra_toml)
    env.__dict__.pop("ctx", None)
    server = WebServer(env.ctx)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    env.ctx.config.web.base_url = base  # the port is known only once bound
    return Console(env, server, base)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "the page has no CSRF field"
    return m.group(1)


def sign_in(console: Console, address: str, client: httpx.Client | None = None) -> httpx.Client:
    """Sign a district admin in through the emailed one-time link; the signed-in client."""
    c = client or console.client()
    form = c.get("/signin")
    before = len(console.links("/signin/", to=address))
    assert c.post("/signin", data={"csrf": csrf_of(form.text), "email": address}).status_code == 200
    link = console.links("/signin/", to=address)[before]
    confirm = c.get(link)
    assert confirm.status_code == 200
    done = c.post(link, data={"csrf": csrf_of(confirm.text)})
    assert done.status_code == 303, done.text
    return c


def outbox_files(home: Path) -> int:
    return len(list(home.joinpath("outbox").glob("*.eml")))


def expired_hold_token(ctx, tenant: str, run_id: str, address: str) -> str:
    """A hold token signed with the right key eight days ago (link_days is 7)."""
    import time

    from itsdangerous import TimestampSigner, URLSafeTimedSerializer

    from processor.web.links import HOLD_SALT, web_secret

    class EightDaysAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 8 * 86400

    serializer = URLSafeTimedSerializer(web_secret(ctx), salt=HOLD_SALT, signer=EightDaysAgo)
    return serializer.dumps({"t": tenant, "r": run_id, "a": address})


TINY_DISTRICT = {"min_deactivated_count": 0}  # these bundles withdraw 2 people: no 10-row floor, so they hold


def tiny_district(request) -> None:
    """Configure the test's home (env or sqlite_env) so MASS_WITHDRAWAL holds (see TINY_DISTRICT)."""
    for name in ("env", "sqlite_env"):
        if name in request.fixturenames:
            request.getfixturevalue(name).configure(lincoln=TINY_DISTRICT, roosevelt=TINY_DISTRICT)
