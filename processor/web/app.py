"""The console: one Starlette app served by the daemon (CONTRACT.md section 8).

* /healthz and /metrics for the operator's monitoring.
* /hold/<token>: the page a hold email links to. The token (links.Signer) names one tenant, one run and
  the one address it was sent to; Release / Discard are POST forms whose CSRF value is bound to the token.
  Acting records `by` = that address. A bad, expired or foreign token is 403 and changes nothing.
* District admins sign in with a one-time link mailed to a report_to address; operators with a password
  (`rosterdrop web passwd NAME`). Sessions are server-side (sessions.py); every tenant page checks that the
  session may see that tenant, and every query filters by it (queries.py).
* Pages are server-rendered jinja2 (templates/web/), autoescaped, and work without JavaScript. Responses
  carry a strict CSP, Referrer-Policy same-origin (a hold token in the URL never leaves in a Referer;
  no-referrer would make browsers send `Origin: null` on our own forms) and no-store.

Endpoints are plain functions: Starlette runs them in its thread pool, so a release (which runs the
pipeline) never blocks the event loop.
"""

from __future__ import annotations

import logging
import secrets
import threading
from email.utils import parseaddr
from urllib.parse import quote, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from processor.context import Context, UserError
from processor.report import view
from processor.report.render import environment
from processor.web import queries
from processor.web.links import BadLink, Signer
from processor.web.sessions import (
    COOKIE,
    SESSION_SECONDS,
    RateLimit,
    Session,
    check_operator,
    create_session,
    end_session,
    get_session,
    spend_nonce,
)

log = logging.getLogger("rosterdrop.web")

LOGIN_CSRF_COOKIE = "rd_csrf"
NOTE_CHARS = 500
HOLD_PAGE = 25  # records per page of a hold's review list (the whole list is in changes.csv)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class Console:
    """The state the endpoints share: the context, the signer, the rate limits, a lock per acted-on run."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.signer = Signer.of(ctx)
        self.secure = ctx.config.web.base_url.startswith("https://")
        self.signin_by_address = RateLimit(3, 900)
        self.signin_by_ip = RateLimit(20, 900)
        self.login_by_ip = RateLimit(10, 900)
        self._acting: dict[str, threading.Lock] = {}
        self._acting_lock = threading.Lock()

    def run_lock(self, run_id: str) -> threading.Lock:
        # Two clicks (or two recipients) at once: the second waits, then finds the run no longer held.
        with self._acting_lock:
            return self._acting.setdefault(run_id, threading.Lock())


# ---------------------------------------------------------------- helpers


def page(template: str, code: int = 200, **context) -> HTMLResponse:
    html = environment().get_template(f"web/{template}").render(**context)
    return HTMLResponse(html, status_code=code, headers=SECURITY_HEADERS)


def message(title: str, text: str, status: int, session: Session | None = None, link: tuple | None = None,
            kind: str = "grey") -> HTMLResponse:
    return page("message.html", status, title=title, text=text, session=session, link=link, kind=kind)


def forbidden(session: Session | None = None, text: str | None = None) -> HTMLResponse:
    return message("This link or page is not available to you",
                   text or "The link is not valid: it may have been changed, it may have expired, or it is "
                   "for another district. Nothing was changed. Ask for a new link from the console's sign-in "
                   "page or from your Rosterdrop operator.", 403, session, kind="rejected",
                   link=None if session else ("Go to the sign-in page", "/signin"))


def report_to(tcfg) -> set[str]:
    """The tenant's report_to as bare lower-case addresses ("Ann <ann@x>" is ann@x)."""
    return {(parseaddr(a)[1] or a).lower() for a in tcfg.report_to}


def _same_origin(request: Request, console: Console) -> bool:
    """A POST must come from our own pages: the Origin header (when the browser sends it) must be ours."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    base = urlsplit(console.ctx.config.web.base_url)
    own = {f"{base.scheme}://{base.netloc}", f"{request.url.scheme}://{request.headers.get('host', '')}"}
    return origin in own


def _session(request: Request, console: Console) -> Session | None:
    return get_session(console.ctx.engine, request.cookies.get(COOKIE))


def _note(form) -> str | None:
    note = (form.get("note") or "").strip()
    return note[:NOTE_CHARS] or None


def _set_session_cookie(response: Response, console: Console, sid: str) -> None:
    response.set_cookie(COOKIE, sid, max_age=SESSION_SECONDS, httponly=True, secure=console.secure,
                        samesite="lax", path="/")


def _deliver_soon(ctx: Context) -> None:
    """Emails queued by a page (sign-in link, hold notices) go out now, not at the next minute's round."""
    from processor.report.mail import deliver_due

    def run() -> None:
        try:
            deliver_due(ctx)
        except Exception:  # noqa: BLE001 - they stay queued; the daemon's mailer retries
            log.warning("outbox delivery after a console action failed; the emails stay queued")

    threading.Thread(target=run, name="web-outbox", daemon=True).start()


def _int(value: str | None, default: int = 1) -> int:
    try:
        return max(1, min(int(value or default), 100_000))
    except ValueError:
        return default


# ---------------------------------------------------------------- health and metrics


def healthz(request: Request, form: dict) -> Response:
    console: Console = request.app.state.console
    ok = queries.store_ok(console.ctx)
    body = {"status": "ok" if ok else "unavailable", "store": "reachable" if ok else "unreachable",
            "tenants": len(console.ctx.config.tenants)}
    return JSONResponse(body, status_code=200 if ok else 503, headers={"Cache-Control": "no-store"})


def metrics(request: Request, form: dict) -> Response:
    from processor.web.metrics import render_metrics

    console: Console = request.app.state.console
    try:
        body, content_type = render_metrics(console.ctx)
    except Exception:  # noqa: BLE001 - a scrape of a daemon whose store is down says so, not a traceback
        return PlainTextResponse("# the store is not reachable\n", status_code=503)
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------- hold links


def _hold_view(console: Console, tenant: str, run_id: str, page_no: int, action: str) -> dict | None:
    detail = queries.run_detail(console.ctx, tenant, run_id)
    if detail is None:
        return None
    actions = {"deactivated": ("deactivated",), "updated": ("updated",),
               "all": ("deactivated", "updated", "reactivated")}.get(action, ("deactivated",))
    rows, total = queries.changes_page(console.ctx, run_id, page_no, size=HOLD_PAGE, actions=actions)
    result = detail["result"]
    return {
        "detail": detail, "result": result, "row": detail["row"], "status": detail["row"]["status"],
        "reasons": queries.hold_reasons(result), "counts": result.get("counts", {}),
        "changes": rows, "changes_total": total, "page": page_no, "action": action if action in
        ("deactivated", "updated", "all") else "deactivated",
        "pages": max(1, -(-total // HOLD_PAGE)), "superseded": queries.superseded_by(result),
        "tenant": tenant, "tenant_name": console.ctx.config.tenants[tenant].name,
        "received": view.when(detail["row"]["received_at"]),
        "errors": sum(1 for i in result.get("issues") or [] if i.get("severity") == "error"),
        "released": result.get("released"), "discarded": result.get("discarded"),
        "support": console.ctx.config.web.support_contact,
        "reply_to": console.ctx.config.smtp.reply_to if console.ctx.config.smtp else None,
    }


def _check_hold_link(console: Console, token: str):
    """The HoldLink of a valid token whose recipient is still one of the tenant's report_to; BadLink otherwise."""
    link = console.signer.check_hold(token)
    tcfg = console.ctx.config.tenants.get(link.tenant)
    if tcfg is None or link.address.lower() not in report_to(tcfg):
        raise BadLink("recipient no longer configured")
    return link


def hold_page(request: Request, form: dict) -> Response:
    console: Console = request.app.state.console
    token = request.path_params["token"]
    try:
        link = _check_hold_link(console, token)
    except BadLink:
        return forbidden()
    v = _hold_view(console, link.tenant, link.run_id, _int(request.query_params.get("page")),
                   request.query_params.get("show", "deactivated"))
    if v is None:
        return forbidden()
    base = f"/hold/{token}"
    v.update(by=link.address, base=base, form_action=base, csrf=console.signer.csrf_for(token),
             csv_href=f"{base}/changes.csv")
    return page("hold.html", v=v, session=None)


def hold_changes_csv(request: Request, form: dict) -> Response:
    console: Console = request.app.state.console
    try:
        link = _check_hold_link(console, request.path_params["token"])
    except BadLink:
        return forbidden()
    if queries.run_detail(console.ctx, link.tenant, link.run_id) is None:
        return forbidden()
    return _file(console, link.run_id, "changes.csv")


def hold_act(request: Request, form: dict) -> Response:
    console: Console = request.app.state.console
    token = request.path_params["token"]
    try:
        link = _check_hold_link(console, token)
    except BadLink:
        return forbidden()
    if not _same_origin(request, console) or not console.signer.csrf_ok(token, form.get("csrf")):
        return forbidden(text="This form is out of date or did not come from the review page (CSRF check). "
                              "Nothing was changed; open the link from your email again.")
    return _act(console, link.tenant, link.run_id, request.path_params["action"], link.address, _note(form),
                back=f"/hold/{token}", session=None)


def endpoint(fn):
    """An async endpoint around a plain function(request, form): the form is read on the event loop, the
    work (store queries, a release that runs the pipeline) in the thread pool."""

    async def handle(request: Request) -> Response:
        form: dict = {}
        if request.method == "POST":
            try:
                data = await request.form(max_files=0, max_fields=20)
            except Exception:  # noqa: BLE001 - a malformed body is a bad request, not a traceback
                return PlainTextResponse("bad form", status_code=400)
            form = {k: v for k, v in data.items() if isinstance(v, str)}
        try:
            return await run_in_threadpool(fn, request, form)
        except Exception as exc:  # noqa: BLE001 - logged without its message: it may quote roster rows
            log.error("web: %s %s failed: %s", request.method, fn.__name__, type(exc).__name__)
            log.debug("web: the failure in full", exc_info=True)
            return message("Something went wrong", "The page could not be shown. Nothing was changed unless "
                           "the page said so; the operator can find the error in the daemon's log.", 500)

    handle.__name__ = fn.__name__
    return handle


def _act(console: Console, tenant: str, run_id: str, action: str, by: str, note: str | None, back: str,
         session: Session | None) -> Response:
    from processor.pipeline import discard_hold, release_hold

    if action not in ("release", "release_new_year", "discard"):
        return message("Not found", "There is no such action.", 404, session)
    ctx = console.ctx
    with console.run_lock(run_id):
        detail = queries.run_detail(ctx, tenant, run_id)
        if detail is None:
            return forbidden(session)
        status = detail["row"]["status"]
        if status != "held":
            return message("Nothing to do: this drop is no longer on hold",
                           _not_held_text(status, detail["result"]), 409, session, link=("Back to the drop", back))
        try:
            if action in ("release", "release_new_year"):  # new year: the August reset (processor/calendar.py)
                result = release_hold(ctx, run_id, by=by, note=note, new_year=action == "release_new_year")
            else:
                result = discard_hold(ctx, run_id, by=by, note=note)
        except UserError as exc:
            return message("The hold could not be changed", str(exc), 409, session, link=("Back", back))
    log.info("run %s tenant %s: hold %s from the web console (%s)", run_id, tenant,
             "discarded" if action == "discard" else "released" + (" as new year" if action != "release" else ""),
             session.kind if session else "email link")
    _deliver_soon(ctx)
    status = result.status.value
    if action == "release_new_year" and status == "applied":
        return message("Released as the new school year", "Last year's classes and enrollments that this drop "
                       "does not list were deactivated; people were kept. A report of what changed is on its way "
                       "by email.", 200, session, link=("See the drop", back), kind="applied")
    if action == "release" and status == "applied":
        return message("Released: the drop was applied", "The roster now matches this drop. A report of what "
                       "changed is on its way by email.", 200, session, link=("See the drop", back), kind="applied")
    if action != "discard":
        return message(f"Released, but not applied: the drop is {status}", _not_held_text(status, result.to_json()),
                       200, session, link=("See the drop", back))
    return message("Discarded: nothing was applied", "The roster is unchanged. Fix the export in your SIS and "
                   "send it again.", 200, session, link=("See the drop", back))


def _not_held_text(status: str, result: dict) -> str:
    for key, verb in (("released", "released"), ("discarded", "discarded")):
        act = result.get(key)
        if act:
            return f"It was {verb} by {act.get('by')} at {act.get('at')}; nothing was changed now."
    if status == "superseded":
        return ("A newer drop was applied after this one was held, so this one can never be applied. "
                "Nothing was changed.")
    return f"Its status is {status}; nothing was changed now."


# ---------------------------------------------------------------- sign-in (district admins)


def _login_csrf(request: Request) -> tuple[str, bool]:
    value = request.cookies.get(LOGIN_CSRF_COOKIE)
    return (value, False) if value and len(value) == 32 else (secrets.token_hex(16), True)


def _with_login_csrf(response: Response, console: Console, value: str, fresh: bool) -> Response:
    if fresh:
        response.set_cookie(LOGIN_CSRF_COOKIE, value, max_age=3600, httponly=True, secure=console.secure,
                            samesite="strict", path="/")
    return response


def signin_form(request: Request, form: dict) -> Response:
    console: Console = request.app.state.console
    value, fresh = _login_csrf(request)
    return _with_login_csrf(page("signin.html", session=None, csrf=value, sent=False), console, value, fresh)


def signin_request(request: Request, form: dict) -> Response:
    console: Console = request.app.state.console
    value, fresh = _login_csrf(request)
    if fresh or not secrets.compare_digest(value, form.get("csrf", "")) or not _same_origin(request, console):
        return forbidden(text="The sign-in form was out of date (CSRF check). Open the sign-in page again.")
    address = (form.get("email") or "").strip().lower()[:320]
    ip = request.client.host if request.client else "-"
    if not console.signin_by_ip.allow(ip) or not console.signin_by_address.allow(address):
        log.warning("sign-in link requests over the limit; refused for 15 minutes")  # no address, no IP
        return page("signin.html", 429, session=None, csrf=value, sent=False,
                    error="Too many sign-in requests. Wait 15 minutes and try again.")
    tenants = [t for t, cfg in sorted(console.ctx.config.tenants.items())
               if address and address in report_to(cfg)]
    if tenants:
        from processor.web.emails import queue_signin_email

        with console.ctx.engine.begin() as conn:
            for tenant in tenants:
                queue_signin_email(conn, console.ctx, console.signer, tenant, address)
        for tenant in tenants:
            log.info("tenant %s: console sign-in link queued", tenant)
        _deliver_soon(console.ctx)
    # The same answer whether or not the address is known: the form does not tell who is a district admin.
    return page("signin.html", session=None, csrf=value, sent=True)


def signin_confirm(request: Request, form: dict) -> Response:
    console: Console = request.app.state.console
    token = request.path_params["token"]
    try:
        tenant, address, _ = console.signer.check_signin(token)
    except BadLink:
        return forbidden()
    if tenant not in console.ctx.config.tenants:
        return forbidden()
    # A button, not an automatic sign-in: mail scanners that open links must not spend the one-time token.
    return page("signin_confirm.html", session=None, tenant_name=console.ctx.config.tenants[tenant].name,
                address=address, csrf=console.signer.csrf_for(token), action=f"/signin/{token}")


def signin_complete(request: Request, form: dict) -> Response:
    console: Console = request.app.state.console
    token = request.path_params["token"]
    try:
        tenant, address, nonce = console.signer.check_signin(token)
    except BadLink:
        return forbidden()
    cfg = console.ctx.config.tenants.get(tenant)
    if cfg is None or address not in report_to(cfg):
        return forbidden()
    if not _same_origin(request, console) or not console.signer.csrf_ok(token, form.get("csrf")):
        return forbidden(text="The sign-in form was out of date (CSRF check). Open the link from your email again.")
    if not spend_nonce(console.ctx.engine, nonce, "signin"):
        return forbidden(text="This sign-in link was already used. Ask for a new one on the sign-in page.")
    return _signed_in(request, console, "admin", address, tenant, f"/t/{tenant}")


def _signed_in(request: Request, console: Console, kind: str, principal: str, tenant: str | None,
               to: str) -> Response:
    # Whatever session id the browser brought is ended and never reused: a fresh id at every sign-in.
    end_session(console.ctx.engine, request.cookies.get(COOKIE))
    session = create_session(console.ctx.engine, kind, principal, tenant)
    if tenant:
        log.info("tenant %s: console sign-in (%s)", tenant, kind)
    else:
        log.info("console: %s sign-in", kind)
    response = RedirectResponse(to, status_code=303)
    _set_session_cookie(response, console, session.sid)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


# ---------------------------------------------------------------- operators


def login_form(request: Request, form: dict) -> Response:
    console: Console = request.app.state.console
    value, fresh = _login_csrf(request)
    return _with_login_csrf(page("login.html", session=None, csrf=value), console, value, fresh)


def login(request: Request, form: dict) -> Response:
    console: Console = request.app.state.console
    value, fresh = _login_csrf(request)
    if fresh or not secrets.compare_digest(value, form.get("csrf", "")) or not _same_origin(request, console):
        return forbidden(text="The sign-in form was out of date (CSRF check). Open the sign-in page again.")
    ip = request.client.host if request.client else "-"
    if not console.login_by_ip.allow(ip):
        return page("login.html", 429, session=None, csrf=value, error="Too many attempts. Wait 15 minutes.")
    name = (form.get("name") or "").strip()[:64]
    if not name or not check_operator(console.ctx.engine, name, form.get("password") or ""):
        log.warning("console operator sign-in failed")
        return page("login.html", 403, session=None, csrf=value, error="Wrong name or password.")
    return _signed_in(request, console, "operator", name, None, "/")


def logout(request: Request, form: dict) -> Response:
    console: Console = request.app.state.console
    session = _session(request, console)
    if session is not None and form.get("csrf") == session.csrf:
        end_session(console.ctx.engine, session.sid)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# ---------------------------------------------------------------- signed-in pages


def _need_session(request: Request) -> tuple[Console, Session | None, Response | None]:
    console: Console = request.app.state.console
    session = _session(request, console)
    if session is None:
        return console, None, RedirectResponse(f"/signin?next={quote(request.url.path)}", status_code=303)
    tenant = request.path_params.get("tenant")
    if tenant is not None and (tenant not in console.ctx.config.tenants or not session.may_see(tenant)):
        return console, session, forbidden(session, "This page belongs to another district. Nothing was shown.")
    return console, session, None


def home(request: Request, form: dict) -> Response:
    console, session, denied = _need_session(request)
    if denied:
        return denied
    if session.kind == "admin":
        return RedirectResponse(f"/t/{session.tenant}", status_code=303)
    q = (request.query_params.get("q") or "").strip().lower()[:100]
    rows = [queries.tenant_status(console.ctx, t) for t in sorted(console.ctx.config.tenants)]
    if q:
        rows = [r for r in rows if q in r["tenant"].lower() or q in r["name"].lower() or q == r["tag"]]
    return page("tenants.html", session=session, tenants=rows, q=q)


def tenant_page(request: Request, form: dict) -> Response:
    console, session, denied = _need_session(request)
    if denied:
        return denied
    tenant = request.path_params["tenant"]
    page_no = _int(request.query_params.get("page"))
    runs = queries.run_rows(console.ctx, tenant, limit=queries.PAGE_SIZE + 1, offset=(page_no - 1) * queries.PAGE_SIZE)
    holds = queries.run_rows(console.ctx, tenant, limit=100, status="held")
    return page("tenant.html", session=session, tenant=tenant, status=queries.tenant_status(console.ctx, tenant),
                runs=runs[:queries.PAGE_SIZE], more=len(runs) > queries.PAGE_SIZE, page=page_no, holds=holds,
                checks=queries.data_checks(console.ctx, tenant))


def run_page(request: Request, form: dict) -> Response:
    console, session, denied = _need_session(request)
    if denied:
        return denied
    tenant, run_id = request.path_params["tenant"], request.path_params["run_id"]
    v = _hold_view(console, tenant, run_id, _int(request.query_params.get("page")),
                   request.query_params.get("show", "deactivated"))
    if v is None:
        return message("No such drop", "There is no drop with that id for this district.", 404, session)
    base = f"/t/{tenant}/runs/{run_id}"
    files = [n for n in ("report.html", "report.txt", "issues.csv", "changes.csv")
             if queries.report_file(console.ctx, run_id, n)]
    v.update(by=session.by, base=base, form_action=base, csrf=session.csrf, csv_href=f"{base}/files/changes.csv")
    return page("run.html", v=v, session=session, tenant=tenant, files=files,
                issues=queries.issues_preview(v["result"]))


def run_file(request: Request, form: dict) -> Response:
    console, session, denied = _need_session(request)
    if denied:
        return denied
    tenant, run_id = request.path_params["tenant"], request.path_params["run_id"]
    if queries.run_detail(console.ctx, tenant, run_id) is None:
        return message("No such drop", "There is no drop with that id for this district.", 404, session)
    return _file(console, run_id, request.path_params["name"])


def _file(console: Console, run_id: str, name: str) -> Response:
    path = queries.report_file(console.ctx, run_id, name)
    if path is None:
        return message("No such file", "This drop has no such file.", 404)
    types = {".html": "text/html; charset=utf-8", ".txt": "text/plain; charset=utf-8", ".csv": "text/csv; charset=utf-8"}
    headers = dict(SECURITY_HEADERS)
    if name.endswith(".csv"):
        headers["Content-Disposition"] = f'attachment; filename="{run_id}-{name}"'
    return Response(path.read_bytes(), headers=headers, media_type=types[path.suffix])


def run_act(request: Request, form: dict) -> Response:
    console, session, denied = _need_session(request)
    if denied:
        return denied
    tenant, run_id = request.path_params["tenant"], request.path_params["run_id"]
    if not _same_origin(request, console) or not secrets.compare_digest(session.csrf, form.get("csrf", "")):
        return forbidden(session, "This form is out of date or did not come from the console (CSRF check). "
                                  "Nothing was changed.")
    return _act(console, tenant, run_id, request.path_params["action"], session.by, _note(form),
                back=f"/t/{tenant}/runs/{run_id}", session=session)


def roster_page(request: Request, form: dict) -> Response:
    return _roster_view(request, "roster.html", "schools", lambda ctx, tenant, _id: queries.schools(ctx, tenant))


def school_page(request: Request, form: dict) -> Response:
    return _roster_view(request, "school.html", "school", queries.school, "school")


def class_page(request: Request, form: dict) -> Response:
    return _roster_view(request, "class.html", "cls", queries.class_people, "class")


def _roster_view(request: Request, template: str, key: str, find, noun: str = "") -> Response:
    """A roster page of the signed-in tenant: find(ctx, tenant, ?id=) → the template's `key`; None → 404."""
    console, session, denied = _need_session(request)
    if denied:
        return denied
    tenant = request.path_params["tenant"]
    found = find(console.ctx, tenant, request.query_params.get("id", ""))
    if found is None:
        return message(f"No such {noun}", f"There is no {noun} with that id for this district.", 404, session)
    return page(template, session=session, tenant=tenant, tenant_name=console.ctx.config.tenants[tenant].name,
                **{key: found})


# ---------------------------------------------------------------- the app


def create_app(ctx: Context) -> Starlette:
    """The console's ASGI app; E's API (processor.web.api) is mounted under /api/v1 when present."""
    routes = [
        Route("/healthz", endpoint(healthz)),
        Route("/metrics", endpoint(metrics)),
        Route("/hold/{token}", endpoint(hold_page)),
        Route("/hold/{token}/changes.csv", endpoint(hold_changes_csv)),
        Route("/hold/{token}/{action}", endpoint(hold_act), methods=["POST"]),
        Route("/signin", endpoint(signin_form)),
        Route("/signin", endpoint(signin_request), methods=["POST"]),
        Route("/signin/{token}", endpoint(signin_confirm)),
        Route("/signin/{token}", endpoint(signin_complete), methods=["POST"]),
        Route("/login", endpoint(login_form)),
        Route("/login", endpoint(login), methods=["POST"]),
        Route("/logout", endpoint(logout), methods=["POST"]),
        Route("/", endpoint(home)),
        Route("/t/{tenant}", endpoint(tenant_page)),
        Route("/t/{tenant}/roster", endpoint(roster_page)),
        Route("/t/{tenant}/roster/school", endpoint(school_page)),
        Route("/t/{tenant}/roster/class", endpoint(class_page)),
        Route("/t/{tenant}/runs/{run_id}", endpoint(run_page)),
        Route("/t/{tenant}/runs/{run_id}/{action}", endpoint(run_act), methods=["POST"]),
        Route("/t/{tenant}/runs/{run_id}/files/{name}", endpoint(run_file)),
    ]
    try:
        from processor.web.api import create_api  # engineer E's API; absent on branches without it
    except ImportError:
        create_api = None
    if create_api is not None:
        routes.append(Mount("/api/v1", app=create_api(ctx)))
    app = Starlette(routes=routes)
    app.state.console = Console(ctx)
    return app
