"""Webhooks (CONTRACT.md section 10): a real receiver on 127.0.0.1 that is down, then failing, then up gets
every event of its patterns once, in id order, signed; failures back off and never touch a run."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from processor import webhooks
from processor.cli import main
from processor.config import ConfigError
from processor.events import read_events
from processor.webhooks import deliver_webhooks, list_webhooks
from tests.bundles import CLEAN, USERS, with_changes
from tests.live_http import Receiver, free_port

SECRET = "s3cret-for-tests"


def add_webhook(env, url: str, events: list[str], tenant: str = "lincoln") -> None:
    with open(env.home / "rosterdrop.toml", "a", encoding="utf-8") as f:
        f.write(f"\n[[tenants.{tenant}.webhooks]]\nurl = {json.dumps(url)}\nsecret_env = \"HOOK_SECRET\"\n"
                f"events = {json.dumps(events)}\n")
    env.__dict__.pop("ctx", None)


def received(receiver: Receiver) -> list[dict]:
    """Every event the receiver got, after checking each request's signature and timestamp."""
    out = []
    for headers, body in receiver.requests:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-rosterdrop-signature"], expected)
        payload = json.loads(body)
        assert payload["tenant"] == "lincoln"
        assert headers["x-rosterdrop-timestamp"] == str(payload["sent_at"])
        out += payload["events"]
    return out


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", SECRET)


def test_a_receiver_down_then_up_gets_every_event_once_in_order_signed(env, secret, monkeypatch):
    monkeypatch.setattr(webhooks, "BATCH", 4)  # several batches, to see the order across them
    port = free_port()
    add_webhook(env, f"http://127.0.0.1:{port}/hooks", ["person.*", "run.*"])
    assert env.process(CLEAN).status == "applied"  # the receiver is down: the run is not affected
    t0 = time.time()
    assert deliver_webhooks(env.ctx, now=t0) == {"delivered": 0, "failed": 1}
    state = list_webhooks(env.ctx)["webhooks"][0]
    assert state["status"] == "retrying" and state["delivered_through"] == 0
    assert "ConnectError" in state["last_error"]
    assert deliver_webhooks(env.ctx, now=t0 + 1) == {"delivered": 0, "failed": 0}  # backing off: not due yet
    receiver = Receiver(port)
    try:
        receiver.status = 503
        assert deliver_webhooks(env.ctx, now=t0 + 3600) == {"delivered": 0, "failed": 1}
        env.process(with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tamara")))  # more while it is failing
        receiver.status = 200
        receiver.requests.clear()
        summary = deliver_webhooks(env.ctx, now=t0 + 5 * 3600)  # hours later
        expected = [e for e in read_events(env.ctx.engine, "lincoln", limit=10_000).events
                    if e["type"].startswith(("person.", "run."))]
        assert summary == {"delivered": -(-len(expected) // 4), "failed": 0}
        got = received(receiver)
        assert got == expected  # every matching event, once, in id order
        assert [e["type"] for e in got][-3:] == ["run.applied", "person.updated", "run.applied"]
        # Nothing new: nothing is sent again.
        assert deliver_webhooks(env.ctx, now=t0 + 6 * 3600) == {"delivered": 0, "failed": 0}
        assert len(receiver.requests) == len(got) // 4 + (len(got) % 4 > 0)
        state = list_webhooks(env.ctx)["webhooks"][0]
        assert state["status"] == "ok" and state["delivered_through"] == state["last_event_id"]
        log = list_webhooks(env.ctx)["deliveries"]
        assert [d["status_code"] for d in log][-2:] == [503, None]  # oldest last: refused, then unreachable
    finally:
        receiver.close()


def test_a_webhook_failing_for_a_day_stops_until_retried_and_then_loses_nothing(env, secret, capsys):
    receiver = Receiver()
    try:
        receiver.status = 500
        add_webhook(env, receiver.url, ["*"])
        env.process(CLEAN)
        t0 = time.time()
        deliver_webhooks(env.ctx, now=t0)
        deliver_webhooks(env.ctx, now=t0 + 86400)
        assert list_webhooks(env.ctx)["webhooks"][0]["status"] == "failed"
        tries = len(receiver.requests)
        assert deliver_webhooks(env.ctx, now=t0 + 90000) == {"delivered": 0, "failed": 0}
        assert len(receiver.requests) == tries
        receiver.status = 204
        assert main(["--home", str(env.home), "webhooks", "retry", "--tenant", "lincoln", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["resumed"] == 1
        receiver.requests.clear()
        assert main(["--home", str(env.home), "webhooks", "send", "--json"]) == 0
        capsys.readouterr()
        assert received(receiver) == read_events(env.ctx.engine, "lincoln", limit=10_000).events
        assert main(["--home", str(env.home), "webhooks", "list", "--json"]) == 0
        listing = json.loads(capsys.readouterr().out)
        assert listing["webhooks"][0]["status"] == "ok" and listing["deliveries"][0]["status_code"] == 204
    finally:
        receiver.close()


def test_a_missing_secret_is_a_failure_that_names_the_variable_and_sends_nothing(env, monkeypatch):
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    receiver = Receiver()
    try:
        add_webhook(env, receiver.url, ["*"])
        env.process(CLEAN)
        assert deliver_webhooks(env.ctx)["failed"] == 1
        assert receiver.requests == []
        assert "HOOK_SECRET" in list_webhooks(env.ctx)["webhooks"][0]["last_error"]
    finally:
        receiver.close()


def test_webhook_config_is_checked(env):
    add_webhook(env, "ftp://example.org/x", ["*"])
    with pytest.raises(ConfigError, match=r"tenants\.lincoln\.webhooks\.0\.url"):
        assert env.ctx is None  # never reached: loading the config raises
