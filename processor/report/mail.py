"""The outbox: emails are queued in the store with the run that produced them, then delivered with retries.

Queueing happens inside the pipeline's transaction, so a run and its email commit together: an applied run
without its report email (or the reverse) cannot exist. Delivery happens afterwards, outside it:

* With [smtp]: smtplib over STARTTLS or implicit TLS, login with the password from `password_env`.
  A failed try is retried with exponential backoff (60 s, 120 s, ... capped at 1 h); 48 h after it was
  queued, the next failure marks it `failed` for good (WARNING in the log, visible in `outbox list`).
* Without [smtp]: the message is written to <home>/outbox/<id>-<run id or kind>.eml and counts as sent.

Never twice: before sending, a deliverer claims the row (status `sending`, with a lease) in a small
transaction that only succeeds if nobody else changed the row, so two deliverers (the daemon and an
`outbox send`) never send the same message. Right after the SMTP server accepts it, the row is marked
`sent` in its own transaction. If the process dies between the two, the row stays `sending`; once the
lease runs out it is sent again. We chose at-least-once for that window: losing a hold notice is worse
than a duplicate, and the resent message carries the same Message-ID (fixed when it is queued), which many
mail clients use to show it once. The window is not milliseconds wide: it runs from the end of DATA until
the server's reply, which a slow server may delay up to [smtp] timeout_seconds (docs/operations.md, "Email
delivery: at least once"); a timeout there is retried, and duplicates, the same way.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import smtplib
import ssl
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr
from html import escape
from pathlib import Path

from sqlalchemy import Connection, Engine, and_, func, or_, select, update

from processor.apply.store import outbox
from processor.config import SmtpConfig
from processor.context import Context
from processor.report import view
from processor.report.csvfiles import changes_csv, issues_csv
from processor.report.headers import header_addresses, header_domain, header_text
from processor.report.notices import digest_context, render_notice
from processor.report.render import RenderedReport, ReportData, render_report
from processor.validate.issues import empty_issues

log = logging.getLogger("rosterdrop.mail")

RUN_REPORT = "run_report"
ZIP_OVER_BYTES = 5 * 1024 * 1024
# Most mail servers refuse messages over 25 MB; an attachment that is still this big zipped is left on
# the server (report folder) and the email says so, rather than failing for 48 hours.
MAX_ATTACHMENT_BYTES = 15 * 1024 * 1024
FIRST_RETRY_SECONDS = 60
MAX_RETRY_SECONDS = 3600
GIVE_UP_SECONDS = 48 * 3600
DEFAULT_SENDER = "Rosterdrop <rosterdrop@localhost>"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


# ---------------------------------------------------------------- building messages


def backoff_seconds(attempts: int) -> float:
    """Wait after the n-th failed try: 60 s, 120 s, 240 s ... capped at 1 h."""
    return float(min(FIRST_RETRY_SECONDS * 2 ** (max(attempts, 1) - 1), MAX_RETRY_SECONDS))


def _sender(ctx: Context) -> str:
    return ctx.config.smtp.sender if ctx.config.smtp else DEFAULT_SENDER


def _domain(address: str) -> str:
    # make_msgid's default asks DNS for this host's name, which can stall for seconds.
    addr = parseaddr(address)[1]
    return addr.rpartition("@")[2] or "rosterdrop.invalid"


def _list_id(value: str) -> str:
    value = header_text(value, 200)
    return value if value.endswith(">") else f"<{value}>"


def _attachment(name: str, content: bytes, report_dir: Path | None) -> tuple[str, bytes, str, str]:
    """(file name, bytes, maintype, subtype); zipped over 5 MB, a pointer to the file if still too big."""
    if len(content) <= ZIP_OVER_BYTES:
        return name, content, "text", "csv"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        zf.writestr(name, content)
    zipped = buf.getvalue()
    if len(zipped) <= MAX_ATTACHMENT_BYTES:
        return name + ".zip", zipped, "application", "zip"
    where = f" It is kept on the Rosterdrop server as {report_dir / name}." if report_dir else ""
    note = (f"{name} is too large to send by email ({len(content):,} bytes, {len(zipped):,} zipped).{where}"
            " Ask your Rosterdrop operator for a copy.\r\n")
    return name.removesuffix(".csv") + "-too-large.txt", note.encode(), "text", "plain"


def build_message(ctx: Context, recipients: list[str], rendered: RenderedReport,
                  attachments: list[tuple[str, bytes, str, str]] = (), *, tenant: str,
                  run_id: str | None = None, kind: str = RUN_REPORT) -> EmailMessage:
    """multipart/mixed: multipart/alternative (text, HTML) + attachments; headers from [smtp]."""
    smtp = ctx.config.smtp
    msg = EmailMessage(policy=SMTP_POLICY)
    # Every value below may come from a bundle or the config: each goes through processor.report.headers.
    msg["Subject"] = header_text(rendered.subject)
    msg["From"] = header_addresses(_sender(ctx), "From") or header_addresses(DEFAULT_SENDER)
    if to := header_addresses(recipients, "To"):
        msg["To"] = to
    if smtp and smtp.reply_to and (reply_to := header_addresses(smtp.reply_to, "Reply-To")):
        msg["Reply-To"] = reply_to
    if smtp and smtp.list_id:
        msg["List-Id"] = _list_id(smtp.list_id)
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(idstring=_UNSAFE_NAME.sub("_", kind),
                                   domain=header_domain(_domain(_sender(ctx))))
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to a robot
    msg["X-Rosterdrop-Tenant"] = header_text(tenant, 64)
    if run_id:
        msg["X-Rosterdrop-Run"] = header_text(run_id, 64)
    # quoted-printable: 7-bit safe for any server, and close to the raw size for mostly-ASCII HTML.
    msg.set_content(rendered.text, cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    for name, content, maintype, subtype in attachments:
        params = {"charset": "utf-8"} if maintype == "text" else None
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=name, params=params)
    return msg


def _recipients(ctx: Context, tenant: str) -> tuple[str, list[str]]:
    cfg = ctx.config.tenants.get(tenant)
    if cfg is None:
        return tenant, []
    # the envelope recipients too: only addresses that can be written into a header safely
    return cfg.name, [str(a) for a in header_addresses(list(cfg.report_to), "To")]


def _insert(conn: Connection, *, tenant: str, run_id: str | None, kind: str, recipients: list[str],
            msg: EmailMessage, now: float) -> int:
    result = conn.execute(outbox.insert().values(
        tenant=tenant, run_id=run_id, kind=kind, recipients=json.dumps(recipients), subject=str(msg["Subject"]),
        message=msg.as_bytes(), status="queued", attempts=0, next_attempt_at=now, last_error=None,
        created_at=now, sent_at=None,
    ))
    return int(result.inserted_primary_key[0])


def _report_files(report_dir: Path, data: ReportData) -> tuple[RenderedReport, bytes, bytes | None]:
    """The report as write_report left it in the run's folder; rendered afresh for whatever is missing."""
    issues = data.issues if data.issues is not None else empty_issues()
    html_path, text_path = report_dir / "report.html", report_dir / "report.txt"
    if html_path.exists() and text_path.exists():
        rendered = RenderedReport(view.subject(data.result, data.tenant_name, issues),
                                  html_path.read_text(encoding="utf-8"), text_path.read_text(encoding="utf-8"))
    else:
        rendered = render_report(data)
    csv_path = report_dir / "issues.csv"
    issues_bytes = csv_path.read_bytes() if csv_path.exists() else issues_csv(issues)
    changes_bytes = None
    if view.effective_status(data.result) == "held" or data.result.released:  # a release lists what it changed
        ch_path = report_dir / "changes.csv"
        changes_bytes = ch_path.read_bytes() if ch_path.exists() else changes_csv(data.changes)
    return rendered, issues_bytes, changes_bytes


def _short_report(data: ReportData) -> RenderedReport:
    """A plain email for when the full report cannot be built: the outcome still reaches the district."""
    result = data.result
    name = view.clean(data.tenant_name, 80) or result.tenant
    status = view.effective_status(result)
    text = (f"{name}: the roster drop received {view.when(result.received_at, data.timezone)} is {status}.\n"
            f"The detailed report could not be built; your Rosterdrop operator has the details (run {result.run_id}).\n")
    html = f"<!doctype html><html><body><pre>{escape(text)}</pre></body></html>"
    return RenderedReport(f"{name} roster: {status}", html, text)


def queue_run_email(conn: Connection, ctx: Context, data: ReportData, report_dir: Path,
                    now: float | None = None) -> int | None:
    """Queue a run's report email in the caller's transaction; the outbox id, or None without report_to.

    Call write_report first (outside the transaction): this reads report.html/.txt and the CSV files from
    `report_dir`, so only the MIME message is built while the transaction is open.
    """
    result = data.result
    _, recipients = _recipients(ctx, result.tenant)
    if not recipients:
        log.info("run %s tenant %s: no report_to configured; report email not queued", result.run_id,
                 result.tenant)
        return None
    try:
        rendered, issues_bytes, changes_bytes = _report_files(report_dir, data)
        attachments = [_attachment("issues.csv", issues_bytes, report_dir)]
        if changes_bytes is not None:
            attachments.append(_attachment("changes.csv", changes_bytes, report_dir))
    except Exception:  # noqa: BLE001 - raising here would roll back the run itself; send a short email instead
        log.exception("run %s tenant %s: the report email could not be built; queuing a short one instead",
                      result.run_id, result.tenant)
        rendered, attachments = _short_report(data), []
    from processor.web.emails import with_links

    # One message per recipient for a hold (each carries its own signed review link); else one message.
    outbox_id = None
    for to, body in with_links(ctx, result.tenant, result.run_id, view.effective_status(result) == "held",
                               recipients, rendered):
        msg = build_message(ctx, to, body, attachments, tenant=result.tenant, run_id=result.run_id)
        row_id = _insert(conn, tenant=result.tenant, run_id=result.run_id, kind=RUN_REPORT,
                         recipients=to, msg=msg, now=time.time() if now is None else now)
        outbox_id = row_id if outbox_id is None else outbox_id
    log.info("run %s tenant %s: report email %d queued for %d recipient(s)", result.run_id, result.tenant,
             outbox_id, len(recipients))
    return outbox_id


def queue_notice(conn: Connection, ctx: Context, tenant: str, kind: str, context: dict,
                 now: float | None = None) -> int | None:
    """Queue a notice (hold_released, hold_discarded, missing_drop, weekly_digest) in the caller's transaction.

    context: hold_* take run_id (and optionally received_at, status); missing_drop takes hours (and
    optionally last_received_at, expect_every_hours); weekly_digest is read from the runs table when the
    context has no "runs".
    """
    tenant_name, recipients = _recipients(ctx, tenant)
    run_id = context.get("run_id")
    if not recipients:
        log.info("run %s tenant %s: no report_to configured; %s notice not queued", run_id or "-", tenant, kind)
        return None
    now = time.time() if now is None else now
    if kind == "weekly_digest" and "runs" not in context:
        context = {**digest_context(conn, tenant, now), **context}
    context = {"timezone": ctx.config.tenant(tenant).timezone, **context}  # local times in the notice
    rendered = render_notice(kind, tenant, tenant_name, context)
    from processor.web.emails import with_links

    [(_, rendered)] = with_links(ctx, tenant, run_id, False, recipients, rendered)  # the run's page, support
    msg = build_message(ctx, recipients, rendered, tenant=tenant, run_id=run_id, kind=kind)
    outbox_id = _insert(conn, tenant=tenant, run_id=run_id, kind=kind, recipients=recipients, msg=msg, now=now)
    log.info("run %s tenant %s: %s notice %d queued", run_id or "-", tenant, kind, outbox_id)
    return outbox_id


def queue_message(conn: Connection, ctx: Context, tenant: str, kind: str, recipients: list[str],
                  rendered: RenderedReport, run_id: str | None = None, now: float | None = None) -> int:
    """Queue an already rendered email (e.g. the console's sign-in link) in the caller's transaction."""
    msg = build_message(ctx, recipients, rendered, tenant=tenant, run_id=run_id, kind=kind)
    return _insert(conn, tenant=tenant, run_id=run_id, kind=kind, recipients=recipients, msg=msg,
                   now=time.time() if now is None else now)


# ---------------------------------------------------------------- delivery


class _Refused(Exception):
    """The server refused some recipients but took the message for the others."""


class _SmtpTransport:
    """One SMTP connection reused for a round of deliveries; reconnects after the server drops it."""

    def __init__(self, cfg: SmtpConfig):
        self.cfg = cfg
        self.conn: smtplib.SMTP | None = None
        self.down: Exception | None = None

    def _connect(self) -> smtplib.SMTP:
        cfg = self.cfg
        tls = ssl.create_default_context()
        if cfg.ssl:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_seconds, context=tls)
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_seconds)
        try:
            smtp.ehlo()
            if cfg.starttls and not cfg.ssl:
                # Required when configured: the password and the roster must not cross the network in clear.
                smtp.starttls(context=tls)
                smtp.ehlo()
            if cfg.username:
                password = os.environ.get(cfg.password_env) if cfg.password_env else None
                if password is None:
                    raise smtplib.SMTPException(
                        f"SMTP password not available: set the environment variable "
                        f"{cfg.password_env or '(smtp.password_env is not configured)'}")
                smtp.login(cfg.username, password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, row, message: bytes) -> None:
        if self.down is not None:
            # The server could not be reached in this round: fail fast instead of waiting on every message.
            raise self.down
        if self.conn is None:
            try:
                self.conn = self._connect()
            except Exception as exc:
                self.down = exc
                raise
        sender = parseaddr(self.cfg.sender)[1]
        rcpts = [addr for _, addr in getaddresses(json.loads(row.recipients)) if addr]
        try:
            refused = self.conn.sendmail(sender, rcpts, message)
        except (smtplib.SMTPServerDisconnected, OSError):
            self.close()
            raise
        if refused:
            raise _Refused("refused by the server: " + "; ".join(
                f"{addr} ({code} {resp.decode(errors='replace') if isinstance(resp, bytes) else resp})"
                for addr, (code, resp) in refused.items()))

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.quit()
            except Exception:  # noqa: BLE001 - closing a broken connection must not hide the real error
                self.conn.close()
            self.conn = None


class _EmlTransport:
    """No [smtp]: each message becomes <home>/outbox/<id>-<run id or kind>.eml (the embedded default)."""

    def __init__(self, home: Path):
        self.folder = home / "outbox"

    def send(self, row, message: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{row.id}-{_UNSAFE_NAME.sub('_', row.run_id or row.kind)}.eml"
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(message)
            os.replace(tmp, self.folder / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def close(self) -> None:
        pass


def _lease_seconds(ctx: Context) -> float:
    # Longer than the slowest successful send (connect, EHLO, STARTTLS, login, MAIL, RCPTs, DATA and the
    # reply to its end: each step may take up to the timeout), so a live deliverer's claim never expires
    # under it and two deliverers never send at once. Only a dead deliverer's claim runs out; its resend is
    # the at-least-once case in the module docstring.
    timeout = ctx.config.smtp.timeout_seconds if ctx.config.smtp else 30
    return 10 * timeout + 60


def _due(engine: Engine, now: float, force: bool) -> list:
    waiting = outbox.c.status == "queued"
    if not force:
        waiting = and_(waiting, outbox.c.next_attempt_at <= now)
    # A `sending` row whose lease ran out belongs to a deliverer that died mid-send.
    abandoned = and_(outbox.c.status == "sending", outbox.c.next_attempt_at <= now)
    with engine.connect() as conn:
        return conn.execute(
            select(outbox.c.id, outbox.c.tenant, outbox.c.run_id, outbox.c.kind, outbox.c.status,
                   outbox.c.attempts, outbox.c.created_at, outbox.c.recipients)
            .where(or_(waiting, abandoned)).order_by(outbox.c.id)
        ).all()


def _claim(engine: Engine, row, now: float, lease: float) -> bytes | None:
    """Take the row for this deliverer; the message bytes, or None if another deliverer got there first."""
    with engine.begin() as conn:
        claimed = conn.execute(
            update(outbox)
            .where(outbox.c.id == row.id, outbox.c.status == row.status, outbox.c.attempts == row.attempts)
            .values(status="sending", attempts=row.attempts + 1, next_attempt_at=now + lease)
        ).rowcount
        if claimed != 1:
            return None
        return conn.execute(select(outbox.c.message).where(outbox.c.id == row.id)).scalar_one()


def _finish(engine: Engine, row, values: dict) -> None:
    # Only the claim this deliverer holds is finished (attempts identifies it).
    with engine.begin() as conn:
        conn.execute(update(outbox)
                     .where(outbox.c.id == row.id, outbox.c.status == "sending",
                            outbox.c.attempts == row.attempts + 1)
                     .values(**values))


def _error_text(exc: BaseException) -> str:
    return view.clean(f"{type(exc).__name__}: {exc}", 500)


def _log_label(exc: BaseException) -> str:
    # The log gets the kind of error and the SMTP code, never the server's text (it may name recipients).
    code = getattr(exc, "smtp_code", None)
    return f"{type(exc).__name__}" + (f" {code}" if code else "")


def deliver_due(ctx: Context, force: bool = False, now: float | None = None) -> dict:
    """Try every queued email that is due (all queued ones with force); {"sent", "failed", "waiting"}.

    "failed" counts the messages whose try failed in this call (they stay queued for a retry unless
    48 h have passed); "waiting" counts what is still queued afterwards.
    """
    now = time.time() if now is None else now
    engine = ctx.engine
    lease = _lease_seconds(ctx)
    transport = _SmtpTransport(ctx.config.smtp) if ctx.config.smtp else _EmlTransport(ctx.home)
    sent = failed = 0
    try:
        for row in _due(engine, now, force):
            message = _claim(engine, row, now, lease)
            if message is None:
                continue
            attempt = row.attempts + 1
            try:
                transport.send(row, message)
            except _Refused as exc:
                # Delivered to the others: resending would duplicate it for them.
                _finish(engine, row, {"status": "sent", "sent_at": now, "last_error": _error_text(exc)})
                sent += 1
                log.warning("run %s tenant %s: email %d sent, but the server refused some recipients "
                            "(see `rosterdrop outbox list`)", row.run_id or "-", row.tenant, row.id)
            except Exception as exc:  # noqa: BLE001 - any failure is recorded on the row and retried
                failed += 1
                give_up = now - row.created_at >= GIVE_UP_SECONDS
                wait = backoff_seconds(attempt)
                _finish(engine, row, {"status": "failed" if give_up else "queued",
                                      "next_attempt_at": now + wait, "last_error": _error_text(exc)})
                if give_up:
                    log.warning("run %s tenant %s: email %d (%s) given up after %d attempts over 48 h: %s",
                                row.run_id or "-", row.tenant, row.id, row.kind, attempt, _log_label(exc))
                else:
                    log.warning("run %s tenant %s: email %d (%s) not delivered (attempt %d, %s); "
                                "retry in %d s", row.run_id or "-", row.tenant, row.id, row.kind, attempt,
                                _log_label(exc), wait)
            else:
                _finish(engine, row, {"status": "sent", "sent_at": now, "last_error": None})
                sent += 1
                log.info("run %s tenant %s: email %d (%s) delivered", row.run_id or "-", row.tenant, row.id,
                         row.kind)
    finally:
        transport.close()
    with engine.connect() as conn:
        waiting = conn.execute(select(func.count()).select_from(outbox)
                               .where(outbox.c.status.in_(("queued", "sending")))).scalar_one()
    return {"sent": sent, "failed": failed, "waiting": int(waiting)}


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts is not None else None


def list_outbox(ctx: Context, include_sent: bool = False) -> list[dict]:
    """Emails not yet delivered (queued, being sent, failed for good), oldest first; sent ones on request."""
    query = select(outbox.c.id, outbox.c.tenant, outbox.c.run_id, outbox.c.kind, outbox.c.subject,
                   outbox.c.status, outbox.c.attempts, outbox.c.next_attempt_at, outbox.c.last_error,
                   outbox.c.recipients, outbox.c.created_at, outbox.c.sent_at).order_by(outbox.c.id)
    if not include_sent:
        query = query.where(outbox.c.status != "sent")
    with ctx.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [{
        "id": r.id, "tenant": r.tenant, "run_id": r.run_id, "kind": r.kind, "subject": r.subject,
        "status": r.status, "attempts": r.attempts,
        "next_attempt_at": _iso(r.next_attempt_at) if r.status in ("queued", "sending") else None,
        "last_error": r.last_error, "recipients": len(json.loads(r.recipients)),
        "created_at": _iso(r.created_at), "sent_at": _iso(r.sent_at),
    } for r in rows]
