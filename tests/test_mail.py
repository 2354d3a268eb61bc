"""The outbox and SMTP delivery, against a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import csv
import email
import io
import json
import socket
import zipfile
from email import policy
from pathlib import Path

import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from processor.apply.store import open_store, outbox, runs
from processor.config import Config
from processor.context import Context
from processor.report import mail, samples
from processor.report.render import ReportData, write_report
from processor.runs import IssueOut, RunStatus
from processor.validate.issues import ISSUE_COLUMNS, sort_issues

LINCOLN = ["it@lincoln.example", "Ann Admin <ann@lincoln.example>"]
SCRIPT = "<script>alert(1)</script>"


def free_port() -> int:
    # aiosmtpd's Controller cannot be given port 0, so ask the OS for a free port first.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Collect:
    """An SMTP handler that keeps every envelope it is given."""

    def __init__(self, refuse: tuple[str, ...] = ()):
        self.envelopes = []
        self.refuse = refuse

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


class Server:
    def __init__(self, port: int, handler: Collect):
        self.port, self.handler = port, handler
        self.controller = Controller(handler, hostname="127.0.0.1", port=port)

    def __enter__(self) -> Collect:
        self.controller.start()
        return self.handler

    def __exit__(self, *exc) -> None:
        self.controller.stop()


@pytest.fixture
def port() -> int:
    return free_port()


def make_ctx(tmp_path: Path, port: int | None = None, report_to=LINCOLN, **smtp) -> Context:
    raw = {"tenants": {"lincoln": {"name": "Lincoln Unified", "report_to": report_to},
                       "adams": {"name": "Adams County", "report_to": ["ops@adams.example"]}}}
    if port is not None:
        raw["smtp"] = {"host": "127.0.0.1", "port": port, "starttls": False, "timeout_seconds": 5,
                       "sender": "Roster Sync <sync@rosterdrop.example>", **smtp}
    cfg = Config.model_validate(raw)
    cfg.home = tmp_path
    engine = open_store("sqlite:///" + str(tmp_path / "s.db"))
    return Context(tmp_path, cfg, _engine=engine)


def queue(ctx: Context, data: ReportData | None = None, now: float | None = None) -> int:
    data = data or samples.applied_with_errors()
    report_dir = ctx.home / "reports" / data.result.run_id
    write_report(report_dir, data)
    with ctx.engine.begin() as conn:
        return mail.queue_run_email(conn, ctx, data, report_dir, now=now)


def row(ctx: Context, outbox_id: int):
    with ctx.engine.connect() as conn:
        return conn.execute(select(outbox).where(outbox.c.id == outbox_id)).one()


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)


def attachments(msg) -> dict[str, bytes]:
    return {part.get_filename(): part.get_payload(decode=True) for part in msg.iter_attachments()}


# ---------------------------------------------------------------- one message per run, to the right people


def test_one_message_per_run_goes_to_the_tenants_recipients_only(tmp_path, port):
    ctx = make_ctx(tmp_path, port)
    queue(ctx)
    with Server(port, Collect()) as smtp:
        assert mail.deliver_due(ctx) == {"sent": 1, "failed": 0, "waiting": 0}
    [envelope] = smtp.envelopes
    assert envelope.mail_from == "sync@rosterdrop.example"
    assert envelope.rcpt_tos == ["it@lincoln.example", "ann@lincoln.example"]
    msg = parse(envelope.content)
    assert msg["To"] == "it@lincoln.example, Ann Admin <ann@lincoln.example>"
    assert "adams" not in envelope.content.decode(errors="replace").lower()


def test_the_message_has_text_and_html_parts_and_a_parseable_issues_csv(tmp_path, port):
    ctx = make_ctx(tmp_path, port, reply_to="Roster help <help@rosterdrop.example>",
                   list_id="Roster reports <reports.rosterdrop.example>")
    data = samples.applied_with_errors(40)
    queue(ctx, data)
    with Server(port, Collect()) as smtp:
        mail.deliver_due(ctx)
    msg = parse(smtp.envelopes[0].content)
    assert msg.get_content_type() == "multipart/mixed"
    alternative = next(p for p in msg.iter_parts() if p.get_content_type() == "multipart/alternative")
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
    assert msg.get_body(("plain",)).get_content().startswith("ROSTER APPLIED")
    assert "Errors:" in msg.get_body(("html",)).get_content()
    files = attachments(msg)
    assert list(files) == ["issues.csv"]
    rows = list(csv.DictReader(io.StringIO(files["issues.csv"].decode("utf-8-sig"))))
    assert len(rows) == 40 and list(rows[0]) == [*ISSUE_COLUMNS, "count"]
    assert msg["Subject"].startswith("Lincoln Unified roster: applied with ")
    assert msg["Reply-To"] == "Roster help <help@rosterdrop.example>"
    assert msg["List-Id"] == "Roster reports <reports.rosterdrop.example>"
    assert msg["Message-ID"].endswith("@rosterdrop.example>") and msg["Date"]
    assert msg["Auto-Submitted"] == "auto-generated"


def test_a_held_run_also_attaches_changes_csv(tmp_path, port):
    ctx = make_ctx(tmp_path, port)
    queue(ctx, samples.held())
    with Server(port, Collect()) as smtp:
        mail.deliver_due(ctx)
    msg = parse(smtp.envelopes[0].content)
    assert msg["Subject"] == "Lincoln Unified roster is ON HOLD: 41% of students would be removed"
    files = attachments(msg)
    assert sorted(files) == ["changes.csv", "issues.csv"]
    assert len(list(csv.DictReader(io.StringIO(files["changes.csv"].decode("utf-8-sig"))))) == 512


def test_a_users_name_with_markup_is_escaped_in_the_html_part(tmp_path, port):
    ctx = make_ctx(tmp_path, port)
    found = sort_issues(pd.DataFrame([("error", "invalid_value", "users.csv", 7, "u-7", "givenName", SCRIPT,
                                       f"givenName {SCRIPT} has markup")], columns=ISSUE_COLUMNS))
    data = samples.clean_applied()
    data.issues = found
    queue(ctx, data)
    with Server(port, Collect()) as smtp:
        mail.deliver_due(ctx)
    html = parse(smtp.envelopes[0].content).get_body(("html",)).get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_issues_csv_in_the_email_defuses_formulas(tmp_path):
    ctx = make_ctx(tmp_path)  # no [smtp]: the .eml file is the message as it would be sent
    data = samples.clean_applied()
    data.issues = sort_issues(pd.DataFrame([("error", "invalid_value", "users.csv", 7, "=1+1", "email",
                                             "=HYPERLINK(\"http://x\")", "bad")], columns=ISSUE_COLUMNS))
    queue(ctx, data)
    mail.deliver_due(ctx)
    [eml] = (tmp_path / "outbox").glob("*.eml")
    files = attachments(parse(eml.read_bytes()))
    row = next(csv.DictReader(io.StringIO(files["issues.csv"].decode("utf-8-sig"))))
    assert row["value"] == "'=HYPERLINK(\"http://x\")" and row["sourced_id"] == "'=1+1"


def test_no_report_to_queues_nothing(tmp_path, port, caplog):
    ctx = make_ctx(tmp_path, port, report_to=[])
    caplog.set_level("INFO", logger="rosterdrop.mail")
    assert queue(ctx) is None
    assert mail.list_outbox(ctx) == []
    assert "no report_to configured" in caplog.text


# ---------------------------------------------------------------- SMTP down, retries, never twice


def test_smtp_down_the_email_waits_and_outbox_send_delivers_it_once_the_server_is_back(tmp_path, port):
    ctx = make_ctx(tmp_path, port)  # nothing listens on the port yet
    outbox_id = queue(ctx)
    assert mail.deliver_due(ctx, force=True) == {"sent": 0, "failed": 1, "waiting": 1}
    r = row(ctx, outbox_id)
    assert (r.status, r.attempts) == ("queued", 1)
    assert "refused" in r.last_error.lower()
    [listed] = mail.list_outbox(ctx)
    assert (listed["status"], listed["attempts"], listed["recipients"]) == ("queued", 1, 2)
    assert listed["last_error"] == r.last_error

    with Server(port, Collect()) as smtp:
        assert mail.deliver_due(ctx, force=True) == {"sent": 1, "failed": 0, "waiting": 0}
        assert mail.deliver_due(ctx, force=True) == {"sent": 0, "failed": 0, "waiting": 0}
    assert len(smtp.envelopes) == 1
    r = row(ctx, outbox_id)
    assert (r.status, r.attempts) == ("sent", 2) and r.sent_at is not None
    assert mail.list_outbox(ctx) == []


def test_a_message_not_yet_due_waits_unless_forced(tmp_path, port):
    ctx = make_ctx(tmp_path, port)
    outbox_id = queue(ctx, now=1000.0)
    mail.deliver_due(ctx, now=1000.0)  # fails: no server
    with Server(port, Collect()) as smtp:
        assert mail.deliver_due(ctx, now=1030.0)["sent"] == 0  # retry is due at 1060
        assert mail.deliver_due(ctx, now=1060.0)["sent"] == 1
    assert len(smtp.envelopes) == 1 and row(ctx, outbox_id).status == "sent"


def test_retries_back_off_from_60_seconds_doubling_to_an_hour(tmp_path, port):
    ctx = make_ctx(tmp_path, port)
    t0 = 1_700_000_000.0
    outbox_id = queue(ctx, now=t0)
    waits, now = [], t0
    for _ in range(9):
        assert mail.deliver_due(ctx, now=now)["failed"] == 1
        r = row(ctx, outbox_id)
        waits.append(r.next_attempt_at - now)
        now = r.next_attempt_at
    assert waits == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert [mail.backoff_seconds(n) for n in (1, 2, 3, 7, 50)] == [60, 120, 240, 3600, 3600]


def test_after_48_hours_the_message_is_marked_failed_and_left_alone(tmp_path, port, caplog):
    ctx = make_ctx(tmp_path, port)
    t0 = 1_700_000_000.0
    outbox_id = queue(ctx, now=t0)
    mail.deliver_due(ctx, now=t0 + 47 * 3600)
    assert row(ctx, outbox_id).status == "queued"
    caplog.set_level("WARNING", logger="rosterdrop.mail")
    assert mail.deliver_due(ctx, now=t0 + 48 * 3600 + 1) == {"sent": 0, "failed": 1, "waiting": 0}
    r = row(ctx, outbox_id)
    assert r.status == "failed" and r.attempts == 2 and r.last_error
    assert "given up" in caplog.text and "lincoln.example" not in caplog.text
    [listed] = mail.list_outbox(ctx)
    assert listed["status"] == "failed"
    with Server(port, Collect()) as smtp:
        assert mail.deliver_due(ctx, force=True, now=t0 + 49 * 3600)["sent"] == 0
    assert smtp.envelopes == []


def test_two_deliverers_never_send_the_same_message(tmp_path, port):
    ctx = make_ctx(tmp_path, port)
    outbox_id = queue(ctx, now=1000.0)
    # Another deliverer has claimed it and is sending right now.
    with ctx.engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id == outbox_id)
                     .values(status="sending", attempts=1, next_attempt_at=1000.0 + 600))
    with Server(port, Collect()) as smtp:
        assert mail.deliver_due(ctx, force=True, now=1010.0)["sent"] == 0
        assert smtp.envelopes == []
        # That deliverer died before marking it sent: once its lease runs out the message goes again
        # (at-least-once for a crash between the SMTP reply and the commit, documented in mail.py).
        assert mail.deliver_due(ctx, now=1000.0 + 601)["sent"] == 1
    assert len(smtp.envelopes) == 1


def test_starttls_when_configured_is_required(tmp_path, port):
    ctx = make_ctx(tmp_path, port, starttls=True)  # the test server offers no STARTTLS
    outbox_id = queue(ctx)
    with Server(port, Collect()) as smtp:
        assert mail.deliver_due(ctx)["failed"] == 1
    assert smtp.envelopes == []
    assert "STARTTLS" in row(ctx, outbox_id).last_error


def test_a_refused_recipient_does_not_resend_to_the_others(tmp_path, port):
    ctx = make_ctx(tmp_path, port)
    outbox_id = queue(ctx)
    with Server(port, Collect(refuse=("ann@lincoln.example",))) as smtp:
        assert mail.deliver_due(ctx)["sent"] == 1
        assert mail.deliver_due(ctx, force=True)["sent"] == 0
    assert [e.rcpt_tos for e in smtp.envelopes] == [["it@lincoln.example"]]
    r = row(ctx, outbox_id)
    assert r.status == "sent" and "ann@lincoln.example" in r.last_error


def test_the_password_comes_from_the_environment_variable(tmp_path, port, monkeypatch):
    ctx = make_ctx(tmp_path, port, username="rosterdrop", password_env="ROSTERDROP_TEST_SMTP_PASSWORD")
    monkeypatch.delenv("ROSTERDROP_TEST_SMTP_PASSWORD", raising=False)
    outbox_id = queue(ctx)
    with Server(port, Collect()):
        assert mail.deliver_due(ctx)["failed"] == 1
    assert "ROSTERDROP_TEST_SMTP_PASSWORD" in row(ctx, outbox_id).last_error


# ---------------------------------------------------------------- without [smtp]


def test_without_smtp_each_email_is_written_to_the_outbox_folder(tmp_path):
    ctx = make_ctx(tmp_path)
    data = samples.held()
    outbox_id = queue(ctx, data)
    # a hold's email is one per recipient (each with its own signed review link)
    assert mail.deliver_due(ctx) == {"sent": len(LINCOLN), "failed": 0, "waiting": 0}
    eml = tmp_path / "outbox" / f"{outbox_id}-{data.result.run_id}.eml"
    msg = parse(eml.read_bytes())
    assert msg["Subject"] == "Lincoln Unified roster is ON HOLD: 41% of students would be removed"
    assert msg["From"] == "Rosterdrop <rosterdrop@localhost>"
    assert row(ctx, outbox_id).status == "sent"
    assert mail.deliver_due(ctx, force=True)["sent"] == 0
    assert len(list((tmp_path / "outbox").iterdir())) == len(LINCOLN)


@pytest.mark.parametrize("make, subject", [
    (samples.applied_with_errors, "Lincoln Unified roster: applied with "),
    (samples.held, "Lincoln Unified roster is ON HOLD: 41% of students would be removed"),
    (samples.rejected, "Lincoln Unified roster was rejected: users.csv is missing"),
])
def test_subject_lines(tmp_path, make, subject):
    ctx = make_ctx(tmp_path)
    outbox_id = queue(ctx, make())
    assert row(ctx, outbox_id).subject.startswith(subject)


# ---------------------------------------------------------------- big reports


def test_a_big_report_keeps_the_body_small_and_zips_the_full_csv(tmp_path):
    ctx = make_ctx(tmp_path)
    data = samples.applied_with_errors()
    data.issues = samples.issues(100_000)
    queue(ctx, data)
    mail.deliver_due(ctx)
    [eml] = (tmp_path / "outbox").glob("*.eml")
    msg = parse(eml.read_bytes())
    body = msg.get_body(("html",)).as_bytes() + msg.get_body(("plain",)).as_bytes()
    assert len(body) < 1_048_576
    text = msg.get_body(("plain",)).get_content()
    assert text.count("\n  - ") <= 50 * 8  # 8 codes in the sample, at most 50 rows each
    files = attachments(msg)
    assert list(files) == ["issues.csv.zip"]  # over 5 MB: zipped
    with zipfile.ZipFile(io.BytesIO(files["issues.csv.zip"])) as zf:
        with zf.open("issues.csv") as fh:
            assert sum(1 for _ in io.TextIOWrapper(fh, encoding="utf-8-sig")) == 100_001


# ---------------------------------------------------------------- notices


def test_missing_drop_notice(tmp_path):
    ctx = make_ctx(tmp_path)
    with ctx.engine.begin() as conn:
        outbox_id = mail.queue_notice(conn, ctx, "lincoln", "missing_drop",
                                      {"hours": 26, "last_received_at": "2024-05-01T02:10:00+00:00"})
    mail.deliver_due(ctx)
    msg = parse((tmp_path / "outbox" / f"{outbox_id}-missing_drop.eml").read_bytes())
    assert msg["Subject"] == "Lincoln Unified roster: no roster received in 26 hours"
    assert "not received a roster from Lincoln Unified in 26 hours" in msg.get_body(("plain",)).get_content()
    assert list(msg.iter_attachments()) == []


@pytest.mark.parametrize("kind, context, subject", [
    ("hold_released", {"run_id": "r1"}, "Lincoln Unified roster: held drop released and applied"),
    ("hold_discarded", {"run_id": "r1"}, "Lincoln Unified roster: held drop discarded, nothing applied"),
])
def test_hold_notices(tmp_path, kind, context, subject):
    ctx = make_ctx(tmp_path)
    with ctx.engine.begin() as conn:
        outbox_id = mail.queue_notice(conn, ctx, "lincoln", kind, context)
    assert row(ctx, outbox_id).subject == subject and row(ctx, outbox_id).run_id == "r1"


def test_weekly_digest_reads_the_runs_of_the_last_seven_days(tmp_path):
    ctx = make_ctx(tmp_path)
    now = 1_715_000_000.0  # 2024-05-06T12:53:20Z

    def run(run_id, status, received_at, codes):
        result = samples.result(RunStatus(status), run_id=run_id)
        result.received_at = received_at
        result.issues = [IssueOut(severity="error", code=c, message="x") for c in codes]
        return {"run_id": run_id, "tenant": "lincoln", "status": status, "source": "sftp",
                "received_at": received_at, "sha256": run_id, "result": json.dumps(result.to_json())}

    with ctx.engine.begin() as conn:
        conn.execute(runs.insert(), [
            run("r1", "applied", "2024-05-06T02:00:00.123456+00:00", ["missing_value"] * 3),
            run("r2", "held", "2024-05-05T02:00:00+00:00", ["missing_value", "unknown_reference"]),
            run("r3", "applied", "2024-05-04T02:00:00+00:00", ["unknown_reference"]),
            run("old", "applied", "2024-04-20T02:00:00+00:00", ["duplicate_id"] * 9),
        ])
        outbox_id = mail.queue_notice(conn, ctx, "lincoln", "weekly_digest", {}, now=now)
    assert row(ctx, outbox_id).subject == "Lincoln Unified roster: weekly summary, 3 drops, 1 hold"
    mail.deliver_due(ctx)
    text = parse((tmp_path / "outbox" / f"{outbox_id}-weekly_digest.eml").read_bytes()
                 ).get_body(("plain",)).get_content()
    assert "A required value is blank (missing_value): in 2 drops, 4 rows" in text
    assert "(unknown_reference): in 2 drops, 2 rows" in text
    assert "duplicate_id" not in text
    assert "2024-05-05 02:00 UTC  run r2" in text  # still on hold


def test_a_report_that_cannot_be_built_still_queues_a_short_email(tmp_path, monkeypatch):
    ctx = make_ctx(tmp_path)
    data = samples.held()

    def broken(_data):
        raise RuntimeError("template bug")

    monkeypatch.setattr(mail, "render_report", broken)
    with ctx.engine.begin() as conn:  # no report files written: the email must render, and cannot
        outbox_id = mail.queue_run_email(conn, ctx, data, tmp_path / "missing")
    r = row(ctx, outbox_id)
    assert r.subject == "Lincoln Unified roster: held" and r.status == "queued"
