"""No header injection: every header the outbox writes, with hostile file names, tenant names and values.

The hostile bundles in tests/adversary/ are copies of ../shared/adversary/inject_*.zip: a zip member named
with an RFC 2047 encoded word holding CR/LF, with NEL (U+0085) and with U+2028.
"""

from __future__ import annotations

import email
import unicodedata
from email import policy
from pathlib import Path

import pytest

from processor.config import Config
from processor.context import Context
from processor.pipeline import process_path
from processor.report import mail, samples
from processor.report.headers import header_addresses, header_text
from processor.report.render import RenderedReport
from tests.test_mail import Collect, Server, free_port, make_ctx

ADVERSARY = Path(__file__).parent / "adversary"

# Each tries to end the header and start "Reply-To: attacker" (or Bcc) on a line of its own.
HOSTILE = {
    "encoded word": "x =?utf-8?q?x=0D=0AReply-To:_attacker@evil.example=0D=0AX-Injected:_yes?= y",
    "encoded word b": "x =?utf-8?b?eA0KUmVwbHktVG86IGF0dGFja2VyQGV2aWwuZXhhbXBsZQ==?= y",
    "crlf": "x\r\nReply-To: attacker@evil.example\r\nX-Injected: yes",
    "lf": "x\nBcc: attacker@evil.example",
    "cr": "x\rBcc: attacker@evil.example",
    "nel": "x\x85Reply-To: attacker@evil.example",
    "u2028": "x\u2028Reply-To: attacker@evil.example",
    "u2029": "x\u2029Reply-To: attacker@evil.example",
    "vt ff": "x\x0bReply-To: a@evil.example\x0cX-Injected: yes",
    "nul": "x\x00Reply-To: attacker@evil.example",
    "bidi": "x\u202eelpmaxe.live@rekcatta\u202c",
    "long": "x" * 5000 + "\r\nX-Injected: yes",
}
ALLOWED = {"Subject", "From", "To", "Reply-To", "List-Id", "Date", "Message-ID", "Auto-Submitted",
           "X-Rosterdrop-Tenant", "X-Rosterdrop-Run", "MIME-Version", "Content-Type"}


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def assert_no_header_added(raw: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    names = [k for k in msg.keys()]
    assert set(names) <= ALLOWED, names
    assert len(names) == len(set(names)), names  # nothing repeated either
    for name in names:
        value = str(msg[name])
        assert not [c for c in value if unicodedata.category(c) in ("Cc", "Zl", "Zp")], (name, value)
        assert len(value) <= 1000
    # Raw header lines: each one is either a header of ours or a folded continuation (starts with space).
    for line in header_block(raw).split(b"\r\n"):
        assert line[:1] in (b" ", b"\t") or line.split(b":", 1)[0].decode() in ALLOWED, line
    for part in msg.walk():  # the MIME parts' own headers are ours too
        assert set(part.keys()) <= ALLOWED | {"Content-Transfer-Encoding", "Content-Disposition"}
    return msg


def hostile_ctx(tmp_path: Path, value: str, port: int | None = None) -> Context:
    ctx = make_ctx(tmp_path, port)
    # The config refuses such names at load (issue 15); the outbox must not rely on that.
    ctx.config.tenants["lincoln"].name = value
    ctx.config.tenants["lincoln"].report_to = ["it@lincoln.example", f"{value} <ann@lincoln.example>",
                                               f"ann@lincoln.example{value}"]
    smtp = Config.model_validate({"smtp": {"host": "127.0.0.1", "port": port or 25, "starttls": False,
                                           "timeout_seconds": 5, "sender": f"{value} <sync@rosterdrop.example>",
                                           "reply_to": f"{value} <help@rosterdrop.example>",
                                           "list_id": f"{value} <roster.lincoln.example>"}}).smtp
    ctx.config.smtp = smtp
    return ctx


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_no_header_is_added_by_hostile_subject_tenant_name_addresses_or_ids(tmp_path, value):
    ctx = hostile_ctx(tmp_path, value)
    rendered = RenderedReport(f"Lincoln roster was rejected: {value}/users.csv is encrypted", "<p>x</p>", "x")
    msg = mail.build_message(ctx, ctx.config.tenants["lincoln"].report_to, rendered,
                             [("issues.csv", b"a,b\r\n", "text", "csv")],
                             tenant=f"lincoln{value}", run_id=f"r1{value}")
    parsed = assert_no_header_added(msg.as_bytes())
    assert parsed["Subject"].strip().startswith("Lincoln roster was rejected: x")
    assert len(parsed["Subject"]) <= 200
    # A hostile display name either stays a display name or costs the address its place; it never
    # becomes an address of its own.
    to = [a.addr_spec for a in parsed["To"].addresses]
    assert to[0] == "it@lincoln.example" and set(to) <= {"it@lincoln.example", "ann@lincoln.example"}
    assert [a.addr_spec for a in parsed["From"].addresses] in (["sync@rosterdrop.example"],
                                                               ["rosterdrop@localhost"])
    assert [a.addr_spec for a in parsed["Reply-To"].addresses] in (["help@rosterdrop.example"], []) \
        if "Reply-To" in parsed else True
    assert "evil.example" not in "".join(a.addr_spec for h in ("To", "From", "Reply-To") if h in parsed
                                         for a in parsed[h].addresses)


@pytest.mark.parametrize("kind, context", [("hold_released", {"run_id": "r1"}), ("hold_discarded", {"run_id": "r1"}),
                                           ("missing_drop", {"hours": 30})])
def test_notices_with_a_hostile_tenant_name_add_no_header(tmp_path, kind, context):
    ctx = make_ctx(tmp_path)  # no [smtp]: written to outbox/ as .eml, the bytes a mail server would get
    for value in HOSTILE.values():
        ctx.config.tenants["lincoln"].name = value
        with ctx.engine.begin() as conn:
            outbox_id = mail.queue_notice(conn, ctx, "lincoln", kind, context)
        mail.deliver_due(ctx)
        [eml] = (tmp_path / "outbox").glob(f"{outbox_id}-*.eml")
        assert_no_header_added(eml.read_bytes())


@pytest.mark.parametrize("bundle", ["inject_encoded_word.zip", "inject_nel.zip", "inject_u2028.zip"])
def test_hostile_member_names_reach_the_mail_server_without_adding_headers(tmp_path, bundle):
    port = free_port()
    ctx = make_ctx(tmp_path, port)
    with Server(port, Collect()) as smtp:
        result = process_path(ctx, ADVERSARY / bundle, "lincoln")
        assert mail.deliver_due(ctx)["sent"] == 1
    [envelope] = smtp.envelopes
    msg = assert_no_header_added(envelope.original_content)
    assert sorted(envelope.rcpt_tos) == ["ann@lincoln.example", "it@lincoln.example"]
    assert msg["Subject"].startswith("Lincoln Unified roster was rejected")
    assert result.run_id in msg["X-Rosterdrop-Run"]
    assert "Reply-To" not in msg and "X-Injected" not in msg


def test_header_text_keeps_ordinary_text_and_breaks_only_what_could_start_a_header():
    assert header_text("Lincoln Unified roster: applied with 3 errors") == \
        "Lincoln Unified roster: applied with 3 errors"
    assert header_text("Zoë's  district\t(#2)") == "Zoë's district (#2)"
    assert header_text("=?utf-8?q?x?=") == "= ?utf-8?q?x?="
    assert header_text("a\u2028b\x85c\r\nd") == "a b c d"
    assert len(header_text("x" * 1000)) == 200


def test_header_addresses_refuse_an_entry_that_hides_a_second_address_or_a_line_break():
    kept = header_addresses(["Ann Admin <ann@lincoln.example>", "a@lincoln.example, b@evil.example",
                             "c@lincoln.example\r\nBcc: d@evil.example", "e@lincoln.example\u2028",
                             "not an address", samples.TENANT_NAME + " <it@lincoln.example>"])
    assert [(a.display_name, a.addr_spec) for a in kept] == [("Ann Admin", "ann@lincoln.example"),
                                                             ("Lincoln Unified", "it@lincoln.example")]
