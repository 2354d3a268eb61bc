"""Webhooks (`[[tenants.X.webhooks]]`): the tenant's events POSTed as signed JSON batches, in id order, at
least once, from the events table (the outbox: nothing to enqueue, a run never waits for a receiver).

Each webhook (tenant + url) has a state row with the id of the last event it has been sent (`delivered_through`).
Work is "deliver one batch to one webhook, say whether there is more" (`deliver_one`), claimed with a
conditional UPDATE of that row (a lease), so the daemon's job and `rosterdrop webhooks send` can run at once
without sending a batch twice. A failure backs off (10 s doubling to 1 h); after a day of failures the
webhook is marked `failed` and left alone until `rosterdrop webhooks retry`; nothing is skipped meanwhile.

Body: {"tenant", "sent_at" (unix seconds), "events": [...]}; headers `X-Rosterdrop-Signature: sha256=<hex
HMAC-SHA256 of the body>` and `X-Rosterdrop-Timestamp` (= sent_at, which the signature covers since it is in
the body): a receiver rejects a body whose timestamp is old, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import logging
import os
import time
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    select,
)

from processor import events as _ev  # the module, not its names: store.py imports this one while events loads
from processor.apply.store import metadata
from processor.config import Webhook
from processor.context import Context

log = logging.getLogger("rosterdrop.webhooks")

webhook_state = Table(
    "webhook_state", metadata,
    Column("tenant", String(64), primary_key=True),
    Column("url", String(2000), primary_key=True),
    Column("delivered_through", BigInteger, nullable=False, default=0),
    Column("status", String(16), nullable=False, default="ok"),  # ok | retrying | failed
    Column("attempts", Integer, nullable=False, default=0),  # consecutive failures
    Column("next_attempt_at", Float, nullable=False, default=0),
    Column("lease_until", Float, nullable=False, default=0),  # a deliverer holds the webhook until then
    Column("failing_since", Float),
    Column("last_status", Integer),
    Column("last_error", Text),
)

webhook_log = Table(
    "webhook_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("first_id", BigInteger),
    Column("last_id", BigInteger),
    Column("count", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("at", Float, nullable=False),
    Index("ix_webhook_log_tenant", "tenant", "id"),
)

WEBHOOK_EVERY_SECONDS = 10
BATCH = 500  # events per POST
SCAN = 5000  # events read per unit of work (most may not match the webhook's patterns)
TIMEOUT_SECONDS = 10
LEASE_SECONDS = 60
GIVE_UP_SECONDS = 86400
SIGNATURE_HEADER = "X-Rosterdrop-Signature"
TIMESTAMP_HEADER = "X-Rosterdrop-Timestamp"


def backoff_seconds(attempts: int) -> float:
    return float(min(10 * 2 ** max(attempts - 1, 0), 3600))


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def matches(event_type: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(event_type, p) for p in patterns)


def _state(conn: Connection, tenant: str, url: str):
    row = conn.execute(select(webhook_state).where(webhook_state.c.tenant == tenant, webhook_state.c.url == url)
                       ).first()
    if row is None:
        # A new webhook starts at the oldest kept event: it loses nothing that happened before it was added.
        p = "%s" if conn.dialect.name == "postgresql" else "?"
        conn.exec_driver_sql("INSERT INTO webhook_state (tenant, url, delivered_through, status, attempts, "
                             f"next_attempt_at, lease_until) VALUES ({p}, {p}, 0, 'ok', 0, 0, 0) "
                             "ON CONFLICT (tenant, url) DO NOTHING", (tenant, url))
        row = conn.execute(select(webhook_state).where(webhook_state.c.tenant == tenant,
                                                       webhook_state.c.url == url)).first()
    return row


def _claim(ctx: Context, tenant: str, url: str, now: float, force: bool):
    """This deliverer's claim on the webhook (its state row as claimed), or None: not due, or taken."""
    with ctx.engine.begin() as conn:
        row = _state(conn, tenant, url)
        if row.status == "failed" or row.lease_until > now or (row.next_attempt_at > now and not force):
            return None
        claimed = conn.execute(webhook_state.update().where(
            webhook_state.c.tenant == tenant, webhook_state.c.url == url,
            webhook_state.c.lease_until == row.lease_until,
            webhook_state.c.delivered_through == row.delivered_through)
            .values(lease_until=now + LEASE_SECONDS)).rowcount
    return row if claimed == 1 else None


def _release(ctx: Context, row, now: float, values: dict) -> None:
    # Only the claim this deliverer holds is finished (its lease identifies it).
    with ctx.engine.begin() as conn:
        conn.execute(webhook_state.update().where(
            webhook_state.c.tenant == row.tenant, webhook_state.c.url == row.url,
            webhook_state.c.lease_until == now + LEASE_SECONDS).values(lease_until=0, **values))


def _batch(ctx: Context, tenant: str, hook: Webhook, after: int) -> tuple[list[dict], int, bool, int]:
    """(events to send, the cursor once they are delivered, whether more may follow, pruned_through)."""
    with ctx.engine.connect() as conn:
        pruned = conn.execute(select(_ev.event_counters.c.pruned_through)
                              .where(_ev.event_counters.c.tenant == tenant)).scalar() or 0
        chosen: list[dict] = []
        cursor = max(after, pruned)
        for scanned, event in enumerate(_ev.iter_events(conn, tenant, cursor), start=1):
            if matches(event["type"], hook.events):
                if len(chosen) == BATCH:
                    return chosen, cursor, True, pruned
                chosen.append(event)
            cursor = event["id"]
            if scanned == SCAN:
                return chosen, cursor, True, pruned
    return chosen, cursor, False, pruned


def deliver_one(ctx: Context, tenant: str, hook: Webhook, now: float | None = None, force: bool = False) -> bool:
    """Deliver the next batch of one webhook if it is due; True if it has more to send right now."""
    return _deliver(ctx, tenant, hook, time.time() if now is None else now, force)[0]


def _deliver(ctx: Context, tenant: str, hook: Webhook, now: float, force: bool) -> tuple[bool, str | None]:
    """(more to send now, what happened: None (nothing due) | "sent" | "failed")."""
    import httpx

    row = _claim(ctx, tenant, hook.url, now, force)
    if row is None:
        return False, None
    try:
        batch, cursor, more, pruned = _batch(ctx, tenant, hook, row.delivered_through)
    except Exception:
        _release(ctx, row, now, {})
        raise
    if pruned > row.delivered_through:
        log.warning("tenant %s: webhook %s missed events up to %d (deleted by retention before delivery); "
                    "its receiver should resync from the roster API", tenant, _host(hook.url), pruned)
    if not batch:
        _release(ctx, row, now, {"delivered_through": cursor})
        return more, None
    secret = os.environ.get(hook.secret_env)
    status, error = None, None
    if not secret:
        error = f"environment variable {hook.secret_env} (the webhook's secret_env) is not set"
    else:
        body = json.dumps({"tenant": tenant, "sent_at": int(now), "events": batch}, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body),
                   TIMESTAMP_HEADER: str(int(now)), "User-Agent": "rosterdrop-webhooks"}
        try:
            response = httpx.post(hook.url, content=body, headers=headers, timeout=TIMEOUT_SECONDS,
                                  follow_redirects=False)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
    attempt = row.attempts + 1
    with ctx.engine.begin() as conn:
        conn.execute(webhook_log.insert().values(
            tenant=tenant, url=hook.url, first_id=batch[0]["id"], last_id=batch[-1]["id"], count=len(batch),
            attempt=attempt, status_code=status, error=error, at=now))
    if error is None:
        _release(ctx, row, now, {"delivered_through": cursor, "status": "ok", "attempts": 0, "next_attempt_at": 0,
                                 "failing_since": None, "last_status": status, "last_error": None})
        log.info("tenant %s: webhook %s took events %d-%d", tenant, _host(hook.url), batch[0]["id"], batch[-1]["id"])
        return more, "sent"
    since = row.failing_since or now
    give_up = now - since >= GIVE_UP_SECONDS
    wait = backoff_seconds(attempt)
    _release(ctx, row, now, {"status": "failed" if give_up else "retrying", "attempts": attempt,
                             "next_attempt_at": now + wait, "failing_since": since, "last_status": status,
                             "last_error": error})
    if give_up:
        log.warning("tenant %s: webhook %s failing for a day (%s); stopped: `rosterdrop webhooks retry --tenant %s` "
                    "resumes it where it stopped", tenant, _host(hook.url), error, tenant)
    else:
        log.warning("tenant %s: webhook %s failed (attempt %d, %s); retry in %d s", tenant, _host(hook.url),
                    attempt, error, wait)
    return False, "failed"


def _host(url: str) -> str:
    # Logs name the receiver's host, not its full URL (a path may carry a token).
    from urllib.parse import urlsplit

    return urlsplit(url).netloc


def deliver_webhooks(ctx: Context, now: float | None = None, force: bool = False,
                     budget_seconds: float = 30) -> dict:
    """Deliver what is due to every configured webhook, batch after batch, within the time budget;
    {"delivered": batches sent, "failed": tries that failed}. The daemon calls this every few seconds."""
    started = time.monotonic()
    delivered = failed = 0
    for tenant, cfg in ctx.config.tenants.items():
        for hook in cfg.webhooks:
            more = True
            while more and time.monotonic() - started < budget_seconds:
                try:
                    more, outcome = _deliver(ctx, tenant, hook, time.time() if now is None else now, force)
                except Exception:  # noqa: BLE001 - one webhook's failure never stops the others
                    log.exception("tenant %s: webhook %s: delivery failed", tenant, _host(hook.url))
                    break
                delivered += outcome == "sent"
                failed += outcome == "failed"
    return {"delivered": delivered, "failed": failed}


def retry_failed(ctx: Context, tenant: str) -> int:
    """Resume the tenant's failed webhooks from where they stopped; how many were resumed."""
    with ctx.engine.begin() as conn:
        return conn.execute(webhook_state.update().where(webhook_state.c.tenant == tenant,
                                                         webhook_state.c.status == "failed")
                            .values(status="retrying", attempts=0, next_attempt_at=0, failing_since=None)).rowcount


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


def list_webhooks(ctx: Context, tenant: str | None = None, limit: int = 50) -> dict:
    """Each configured webhook's state, and the delivery log (newest first)."""
    hooks = []
    with ctx.engine.connect() as conn:
        for tid, cfg in sorted(ctx.config.tenants.items()):
            if tenant and tid != tenant:
                continue
            last = _ev.last_event_id(conn, tid)
            for hook in cfg.webhooks:
                row = conn.execute(select(webhook_state).where(webhook_state.c.tenant == tid,
                                                               webhook_state.c.url == hook.url)).first()
                hooks.append({"tenant": tid, "url": hook.url, "events": hook.events,
                              "status": row.status if row else "ok",
                              "delivered_through": row.delivered_through if row else 0, "last_event_id": int(last),
                              "attempts": row.attempts if row else 0,
                              "next_attempt_at": _iso(row.next_attempt_at) if row else None,
                              "last_error": row.last_error if row else None})
        q = select(webhook_log).order_by(webhook_log.c.id.desc()).limit(limit)
        if tenant:
            q = q.where(and_(webhook_log.c.tenant == tenant))
        log_rows = conn.execute(q).mappings().all()
    deliveries = [{**dict(r), "at": _iso(r["at"])} for r in log_rows]
    return {"webhooks": hooks, "deliveries": deliveries}
