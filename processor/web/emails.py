"""The console's parts of emails: a signed "Review this hold" button per recipient, a link to the run's
page in every report and notice, the support contact, and the sign-in email.

The run report is rendered once (report.html / report.txt in the run's folder) and the email body is that
file. The templates leave two markers (HTML comments, invisible in the saved report) where the links go;
mail.py asks `with_links` for the per-recipient bodies just before it builds the messages.
"""

from __future__ import annotations

import logging
from email.utils import parseaddr
from html import escape

from sqlalchemy import Connection

from processor.context import Context
from processor.report.render import RenderedReport, render_page, render_plain
from processor.web.links import Signer, hold_url, run_url

log = logging.getLogger("rosterdrop.web")
REVIEW_MARK = "<!--rosterdrop:review-->"
LINKS_MARK = "<!--rosterdrop:links-->"
_BUTTON = ("display:inline-block;background:#1d4ed8;color:#ffffff;font-weight:bold;font-size:16px;"
           "text-decoration:none;padding:12px 22px;border-radius:6px;margin:6px 0 10px 0")


def links_enabled(ctx: Context) -> bool:
    return ctx.config.web.enabled


def _support_html(ctx: Context) -> str:
    smtp, web = ctx.config.smtp, ctx.config.web
    parts = []
    if smtp and smtp.reply_to:
        parts.append("reply to this email")
    if web.support_contact:
        parts.append(f"write to {escape(web.support_contact)}")
    return f"Questions? {' or '.join(parts)}." if parts else ""


def _support_text(ctx: Context) -> str:
    smtp, web = ctx.config.smtp, ctx.config.web
    parts = []
    if smtp and smtp.reply_to:
        parts.append("reply to this email")
    if web.support_contact:
        parts.append(f"write to {web.support_contact}")
    return f"Questions? {' or '.join(parts)}." if parts else ""


def _links_block(ctx: Context, tenant: str, run_id: str | None) -> tuple[str, str]:
    html, text = [], []
    if run_id:
        raw, what = run_url(ctx, tenant, run_id), "See this drop"
    else:  # a missing-drop notice, the weekly digest: the district's page
        raw, what = f"{ctx.config.web.base_url}/t/{tenant}", "See your district's drops"
    url = escape(raw, quote=True)
    html.append(f'<div class="p" style="margin:0 0 8px 0">{what} in the Rosterdrop console: '
                f'<a href="{url}" style="color:#1d4ed8">{url}</a></div>')
    text.append(f"{what} in the Rosterdrop console: {raw}")
    if support := _support_html(ctx):
        html.append(f'<div class="p" style="margin:0 0 8px 0">{support}</div>')
        text.append(_support_text(ctx))
    if not html:
        return "", ""
    return (f'<tr><td class="sec" style="padding:16px 24px 4px 24px">{"".join(html)}</td></tr>',
            "\n".join(text) + "\n")


def _review_block(url: str) -> tuple[str, str]:
    u = escape(url, quote=True)
    html = (f'<div style="margin:0 0 14px 0"><a href="{u}" style="{_BUTTON}">Review this hold</a>'
            f'<div style="font-size:13px;color:#52606d">Opens a page where you can see what would change and '
            f'release or discard the drop. The link is for you only; do not forward it.</div></div>')
    text = (f"REVIEW THIS HOLD: {url}\n(see what would change, then release or discard the drop; "
            "the link is for you only, do not forward it)\n\n")
    return html, text


def _insert_html(html: str, mark: str, block: str, fallback_mark: str | None = None) -> str:
    if mark in html:
        return html.replace(mark, block, 1)
    if fallback_mark and fallback_mark in html:
        return html.replace(fallback_mark, block + fallback_mark, 1)
    return html.replace("</body>", block + "</body>", 1) if "</body>" in html else html + block


def with_links(ctx: Context, tenant: str, run_id: str | None, held: bool, recipients: list[str],
               rendered: RenderedReport) -> list[tuple[list[str], RenderedReport]]:
    """The messages to queue: (recipients, body). A held run's email is one per recipient, each with its
    own signed review link (acting through it records that address); any other email is one message."""
    if not links_enabled(ctx):
        return [(recipients, rendered)]
    try:
        return _with_links(ctx, tenant, run_id, held, recipients, rendered)
    except Exception:  # noqa: BLE001 - raising here would roll back the run; the email goes without links
        log.exception("run %s tenant %s: console links could not be added to the email", run_id or "-", tenant)
        return [(recipients, rendered)]


def _with_links(ctx: Context, tenant: str, run_id: str | None, held: bool, recipients: list[str],
                rendered: RenderedReport) -> list[tuple[list[str], RenderedReport]]:
    links_html, links_text = _links_block(ctx, tenant, run_id)
    html = _insert_html(rendered.html, LINKS_MARK, links_html)
    text = rendered.text + ("\n" + links_text if links_text else "")
    if not (held and run_id):
        return [(recipients, RenderedReport(rendered.subject, html, text))]
    signer = Signer.of(ctx)
    out = []
    for address in recipients:
        # the bare address in the token: it is what a release records as `by`
        url = hold_url(ctx, tenant, run_id, parseaddr(address)[1] or address, signer)
        button_html, button_text = _review_block(url)
        body_html = _insert_html(html, REVIEW_MARK, button_html)
        out.append(([address], RenderedReport(rendered.subject, body_html, button_text + text)))
    return out


def queue_signin_email(conn: Connection, ctx: Context, signer: Signer, tenant: str, address: str) -> int:
    """A one-time sign-in link for one report_to address of one tenant, queued in the caller's transaction."""
    from processor.report.mail import queue_message
    from processor.report.view import Banner, clean

    tenant_name = clean(ctx.config.tenants[tenant].name, 120) or tenant
    url = f"{ctx.config.web.base_url}/signin/{signer.signin_token(tenant, address)}"
    subject = clean(f"{tenant_name} roster: your sign-in link", 200)
    values = {"subject": subject, "preheader": "Sign in to the Rosterdrop console", "tenant_name": tenant_name,
              "tenant": tenant, "url": url, "minutes": 30, "support": _support_text(ctx),
              "banner": Banner("grey", "Sign in to the Rosterdrop console", tenant_name)}
    rendered = RenderedReport(subject, render_page("web/email_signin.html", **values),
                              render_plain("web/email_signin.txt", **values))
    return queue_message(conn, ctx, tenant, "signin", [address], rendered)
