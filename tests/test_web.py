"""The web console over real HTTP: signed hold links, sign-in, tenant isolation, CSRF, injection, health."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import httpx
import pytest
from sqlalchemy import func, select

from processor.apply.runs import get_result
from processor.apply.store import outbox, runs, web_sessions
from processor.context import Context
from processor.web.links import Signer, web_secret
from processor.web.server import WebServer
from tests.bundles import CLEAN, USERS, with_changes
from tests.webtools import (
    LINCOLN_ADMINS,
    MASS_WITHDRAWAL,
    csrf_of,
    expired_hold_token,
    outbox_files,
    sign_in,
    start_console,
    tiny_district,
)


@pytest.fixture(autouse=True)
def _tiny_district(request):
    tiny_district(request)


@pytest.fixture
def console(env):
    c = start_console(env, 'support_contact = "help@vendor.example"\n', report_to=LINCOLN_ADMINS)
    yield c
    c.server.stop()


def held_run(console, tenant: str = "lincoln"):
    console.env.process(CLEAN, tenant=tenant)
    held = console.env.process(MASS_WITHDRAWAL, tenant=tenant)
    assert held.status == "held"
    return held


def status_of(env, run_id: str) -> str:
    with env.ctx.engine.connect() as conn:
        return conn.execute(select(runs.c.status).where(runs.c.run_id == run_id)).scalar_one()


def people(env, tenant: str = "lincoln") -> set[str]:
    return {p["sourced_id"] for p in env.export(tenant)["people"]}


# ---------------------------------------------------------------- hold links


def test_hold_email_has_a_review_link_per_recipient_and_releasing_applies_with_by(console):
    held = held_run(console)
    for address in LINCOLN_ADMINS:
        [link] = console.links("/hold/", to=address)  # one email each, each with its own link
    [it_link] = console.links("/hold/", to="it@lincoln.example")
    [boss_link] = console.links("/hold/", to="boss@lincoln.example")
    assert it_link != boss_link
    c = console.client()
    page = c.get(it_link)
    assert page.status_code == 200
    assert "on hold" in page.text and "u2" in page.text and "Jane Doe" in page.text  # the records to be removed
    assert "it@lincoln.example" in page.text  # who is acting
    assert page.headers["referrer-policy"] == "same-origin"  # the token never leaves in a Referer
    csv = c.get(it_link + "/changes.csv")
    assert csv.status_code == 200 and "u2" in csv.text and "deactivated" in csv.text
    done = c.post(it_link + "/release", data={"csrf": csrf_of(page.text), "note": "the school closed"})
    assert done.status_code == 200 and "applied" in done.text
    result = get_result(console.env.ctx.engine, held.run_id)
    assert result.status == "applied"
    assert "u2" not in people(console.env)
    # `released` is recorded by engineer A's hold history; where it exists, it names the link's recipient.
    assert result.released is not None
    assert result.released.by == "it@lincoln.example" and result.released.note == "the school closed"
    again = c.get(boss_link)
    assert again.status_code == 200 and "no longer on hold" in again.text and "Release and apply" not in again.text


def test_discard_through_the_link_applies_nothing(console):
    held = held_run(console)
    [link] = console.links("/hold/", to="boss@lincoln.example")
    c = console.client()
    done = c.post(link + "/discard", data={"csrf": csrf_of(c.get(link).text)})
    assert done.status_code == 200 and "nothing was applied" in done.text.lower()
    assert status_of(console.env, held.run_id) == "discarded"
    assert {"u2", "u3"} <= people(console.env)
    result = get_result(console.env.ctx.engine, held.run_id)
    assert result.discarded is not None
    assert result.discarded.by == "boss@lincoln.example"


def test_acting_twice_changes_nothing_the_second_time(console):
    held = held_run(console)
    [link] = console.links("/hold/", to="it@lincoln.example")
    c = console.client()
    csrf = csrf_of(c.get(link).text)
    assert c.post(link + "/release", data={"csrf": csrf}).status_code == 200
    with console.env.ctx.engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(runs)).scalar_one(), \
            conn.execute(select(func.count()).select_from(outbox)).scalar_one()
    for action in ("release", "discard"):
        second = c.post(link + f"/{action}", data={"csrf": csrf})
        assert second.status_code == 409 and "no longer on hold" in second.text
    assert status_of(console.env, held.run_id) == "applied"
    with console.env.ctx.engine.connect() as conn:
        after = conn.execute(select(func.count()).select_from(runs)).scalar_one(), \
            conn.execute(select(func.count()).select_from(outbox)).scalar_one()
    assert after == before  # no second run, no second email


def test_tampered_expired_and_foreign_links_get_403_and_change_nothing(console):
    env = console.env
    held = held_run(console)
    other = held_run(console, tenant="roosevelt")
    [link] = console.links("/hold/", to="it@lincoln.example")
    token = link.rsplit("/", 1)[1]
    payload, stamp, sig = token.rsplit(".", 2)  # a compressed payload starts with "." itself
    signer = Signer.of(env.ctx)
    bad = {
        # the first character: the last one of base64 may carry unused bits, so changing it may change nothing
        "tampered signature": f"{payload}.{stamp}.{'B' if sig[0] == 'A' else 'A'}{sig[1:]}",
        "tampered run": signer.hold_token("lincoln", other.run_id, "it@lincoln.example").rsplit(".", 2)[0]
        + f".{stamp}.{sig}",
        "expired": expired_hold_token(env.ctx, "lincoln", held.run_id, "it@lincoln.example"),
        "another install's key": Signer(b"not our secret", 7).hold_token("lincoln", held.run_id, "it@lincoln.example"),
        "another tenant's run": signer.hold_token("lincoln", other.run_id, "it@lincoln.example"),
        "an address not in report_to": signer.hold_token("lincoln", held.run_id, "mallory@evil.example"),
        "a sign-in token": signer.signin_token("lincoln", "it@lincoln.example"),
        "garbage": "x" * 40,
    }
    c = console.client()
    good_csrf = csrf_of(c.get(link).text)
    for why, tok in bad.items():
        url = f"/hold/{tok}"
        assert c.get(url).status_code == 403, why
        assert c.get(url + "/changes.csv").status_code == 403, why
        for action in ("release", "discard"):
            r = c.post(url + f"/{action}", data={"csrf": signer.csrf_for(tok), "note": why})
            assert r.status_code == 403, why
            r = c.post(url + f"/{action}", data={"csrf": good_csrf})
            assert r.status_code == 403, why
    assert status_of(env, held.run_id) == "held" and status_of(env, other.run_id) == "held"
    assert {"u2", "u3"} <= people(env) and {"u2", "u3"} <= people(env, "roosevelt")


def test_csrf_is_required_to_act(console):
    held = held_run(console)
    [link] = console.links("/hold/", to="it@lincoln.example")
    c = console.client()
    csrf = csrf_of(c.get(link).text)
    assert c.post(link + "/release", data={}).status_code == 403
    assert c.post(link + "/release", data={"csrf": "0" * 64}).status_code == 403
    assert c.post(link + "/release", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}).status_code == 403
    assert status_of(console.env, held.run_id) == "held"


def test_a_link_to_a_superseded_hold_says_so(console):
    held = held_run(console)
    [link] = console.links("/hold/", to="it@lincoln.example")
    console.env.process(with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tarah")))  # a newer drop applies
    assert status_of(console.env, held.run_id) == "superseded"
    c = console.client()
    page = c.get(link)
    assert page.status_code == 200 and "replaced by a newer one" in page.text and "Release and apply" not in page.text
    assert c.post(link + "/release", data={"csrf": csrf_of_link(console, link)}).status_code == 409
    assert status_of(console.env, held.run_id) == "superseded"


def csrf_of_link(console, link: str) -> str:
    return Signer.of(console.env.ctx).csrf_for(link.rsplit("/", 1)[1])


def test_report_and_notices_link_to_the_run_page_and_show_the_support_contact(console):
    held = held_run(console)
    msgs = console.emails()
    first = msgs[0]  # the applied first load's report
    text = first.get_body(("plain",)).get_content()
    assert f"{console.base}/t/lincoln/runs/" in text and "help@vendor.example" in text
    html = first.get_body(("html",)).get_content()
    assert f'href="{console.base}/t/lincoln/runs/' in html
    [link] = console.links("/hold/", to="it@lincoln.example")
    c = console.client()
    c.post(link + "/discard", data={"csrf": csrf_of(c.get(link).text)})
    notice_text = console.emails()[-1].get_body(("plain",)).get_content()
    assert f"{console.base}/t/lincoln/runs/{held.run_id}" in notice_text


# ---------------------------------------------------------------- sign-in and sessions


def test_admin_signs_in_by_emailed_link_once_and_sees_their_tenant(console):
    held = held_run(console)
    c = sign_in(console, "it@lincoln.example")
    home = c.get("/t/lincoln")
    assert home.status_code == 200 and "Lincoln Unified" in home.text and "Open holds" in home.text
    assert held.run_id in home.text
    cookie = next(h for h in c.cookies.jar)
    assert cookie.name == "rd_session" and cookie.has_nonstandard_attr("HttpOnly")
    set_cookie = [v for k, v in home.request.headers.items() if k == "cookie"]
    assert set_cookie  # the browser sends it back
    run = c.get(f"/t/lincoln/runs/{held.run_id}")
    assert run.status_code == 200 and "Release and apply" in run.text
    for name in ("report.html", "report.txt", "issues.csv", "changes.csv"):
        assert c.get(f"/t/lincoln/runs/{held.run_id}/files/{name}").status_code == 200, name
    roster = c.get("/t/lincoln/roster")
    assert "Lincoln Elementary" in roster.text
    school = c.get("/t/lincoln/roster/school", params={"id": "s1"})
    assert "Room 12" in school.text
    klass = c.get("/t/lincoln/roster/class", params={"id": "k1"})
    assert "Tara Martin" in klass.text and "Jane Doe" in klass.text
    # the same emailed link a second time: refused
    link = console.links("/signin/", to="it@lincoln.example")[0]
    fresh = console.client()
    confirm = fresh.get(link)
    assert fresh.post(link, data={"csrf": csrf_of(confirm.text)}).status_code == 403
    assert "rd_session" not in fresh.cookies


def test_release_from_a_signed_in_session_records_the_admin(console):
    held = held_run(console)
    c = sign_in(console, "boss@lincoln.example")
    page = c.get(f"/t/lincoln/runs/{held.run_id}")
    assert c.post(f"/t/lincoln/runs/{held.run_id}/release", data={"note": "x"}).status_code == 403  # no CSRF
    assert status_of(console.env, held.run_id) == "held"
    r = c.post(f"/t/lincoln/runs/{held.run_id}/release", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 200 and status_of(console.env, held.run_id) == "applied"
    result = get_result(console.env.ctx.engine, held.run_id)
    assert result.released is not None
    assert result.released.by == "boss@lincoln.example"


def test_sign_in_never_reuses_a_session_id_the_browser_brought(console):
    c = console.client()
    c.cookies.set("rd_session", "attacker-chosen-session-id", domain="127.0.0.1")
    sign_in(console, "it@lincoln.example", client=c)
    sid = c.cookies.get("rd_session")
    assert sid and sid != "attacker-chosen-session-id"
    planted = console.client()
    planted.cookies.set("rd_session", "attacker-chosen-session-id")
    assert planted.get("/t/lincoln").status_code == 303  # not signed in: sent to the sign-in page
    # and a session of a signed-in browser is replaced at the next sign-in
    sign_in(console, "it@lincoln.example", client=c)
    assert c.cookies.get("rd_session") != sid
    stale = console.client()
    stale.cookies.set("rd_session", sid)
    assert stale.get("/t/lincoln").status_code == 303


def test_sign_in_requests_do_not_tell_who_is_an_admin_and_are_rate_limited(console):
    c = console.client()
    csrf = csrf_of(c.get("/signin").text)
    known = c.post("/signin", data={"csrf": csrf, "email": "it@lincoln.example"})
    unknown = c.post("/signin", data={"csrf": csrf, "email": "nobody@else.example"})
    assert known.status_code == unknown.status_code == 200
    assert re.sub(r"\s+", " ", known.text) == re.sub(r"\s+", " ", unknown.text)
    assert console.links("/signin/", to="nobody@else.example") == []
    for _ in range(2):
        c.post("/signin", data={"csrf": csrf, "email": "it@lincoln.example"})
    console.emails()  # the links of the three allowed requests, delivered
    sent = outbox_files(console.env.home)
    limited = c.post("/signin", data={"csrf": csrf, "email": "it@lincoln.example"})
    assert limited.status_code == 429
    console.emails()
    assert outbox_files(console.env.home) == sent  # no fourth link
    assert c.post("/signin", data={"email": "it@lincoln.example"}).status_code == 403  # no CSRF value


def test_sign_in_logs_neither_tokens_nor_addresses(console, caplog):
    caplog.set_level("DEBUG", logger="rosterdrop")
    sign_in(console, "it@lincoln.example")
    assert "it@lincoln.example" not in caplog.text and "/signin/" not in caplog.text


def test_every_url_of_another_tenant_is_refused(console):
    mine = held_run(console, "lincoln")
    theirs = held_run(console, "roosevelt")
    [their_link] = console.links("/hold/", to="it@roosevelt.example")
    c = sign_in(console, "it@lincoln.example")
    csrf = csrf_of(c.get(f"/t/lincoln/runs/{mine.run_id}").text)
    for url in ("/t/roosevelt", "/t/roosevelt/roster", "/t/roosevelt/roster/school?id=s1",
                "/t/roosevelt/roster/class?id=k1", f"/t/roosevelt/runs/{theirs.run_id}",
                f"/t/roosevelt/runs/{theirs.run_id}/files/report.html",
                f"/t/roosevelt/runs/{theirs.run_id}/files/issues.csv",
                f"/t/roosevelt/runs/{theirs.run_id}/files/changes.csv"):
        r = c.get(url)
        assert r.status_code == 403 and "Jane" not in r.text, url
    for action in ("release", "discard"):
        assert c.post(f"/t/roosevelt/runs/{theirs.run_id}/{action}", data={"csrf": csrf}).status_code == 403
    # their run id under my tenant's path finds nothing
    for url in (f"/t/lincoln/runs/{theirs.run_id}", f"/t/lincoln/runs/{theirs.run_id}/files/report.html"):
        assert c.get(url).status_code == 404, url
    assert c.post(f"/t/lincoln/runs/{theirs.run_id}/release", data={"csrf": csrf}).status_code == 403
    # my session does not make their hold link mine: acting through it records their address, and a
    # lincoln link is not accepted for their run (see test_tampered_...); my CSRF value does not work on it
    assert c.post(their_link + "/release", data={"csrf": csrf}).status_code == 403
    assert status_of(console.env, theirs.run_id) == "held"


def test_operator_signs_in_with_a_password_and_sees_every_tenant(console):
    env = console.env
    held_run(console, "roosevelt")
    env.process(CLEAN, tenant="lincoln")
    set_pw = subprocess.run([sys.executable, "-m", "processor", "web", "passwd", "ops", "--home", str(env.home)],
                            input="correct horse battery\n", capture_output=True, text=True, timeout=60,
                            env={**__import__("os").environ, "ROSTERDROP_STORE__URL": env.ctx.config.store_url()})
    assert set_pw.returncode == 0, set_pw.stderr
    short = subprocess.run([sys.executable, "-m", "processor", "web", "passwd", "ops2", "--home", str(env.home)],
                           input="short\n", capture_output=True, text=True, timeout=60,
                           env={**__import__("os").environ, "ROSTERDROP_STORE__URL": env.ctx.config.store_url()})
    assert short.returncode == 1 and short.stderr.strip() == (
        "rosterdrop: error: the password must have at least 12 characters; nothing changed")
    c = console.client()
    csrf = csrf_of(c.get("/login").text)
    assert c.post("/login", data={"csrf": csrf, "name": "ops", "password": "wrong password!"}).status_code == 403
    assert c.post("/login", data={"csrf": csrf, "name": "ops", "password": "correct horse battery"}).status_code == 303
    listing = c.get("/")
    assert "Lincoln Unified" in listing.text and "Roosevelt Unified" in listing.text
    assert re.search(r"Roosevelt Unified.*?tag-held", listing.text, re.S)
    assert re.search(r"Lincoln Unified.*?tag-up-to-date", listing.text, re.S)
    found = c.get("/", params={"q": "roose"})
    assert "Roosevelt Unified" in found.text and "Lincoln Unified" not in found.text
    assert c.get("/t/lincoln").status_code == 200 and c.get("/t/roosevelt").status_code == 200
    with env.ctx.engine.connect() as conn:
        assert conn.execute(select(web_sessions.c.kind)).scalars().all() == ["operator"]


NASTY = "<script>alert(1)</script>"


def test_roster_values_are_escaped_on_every_page(console):
    env = console.env
    env.process(with_changes(CLEAN, users_csv=USERS.replace("Jane,Doe", f'"{NASTY}",Doe<b>')
                             .replace("Tara,Martin", '"<img src=x onerror=alert(2)>",Martin'),
                             orgs_csv=CLEAN["orgs.csv"].replace("Lincoln Elementary", "<i>Elementary</i>"),
                             classes_csv=CLEAN["classes.csv"].replace("Room 12", "<svg onload=alert(3)>")))
    withdrawal = MASS_WITHDRAWAL["users.csv"].replace("Tara,Martin", '"<img src=x onerror=alert(2)>",Martin')
    held = env.process(with_changes(MASS_WITHDRAWAL, users_csv=withdrawal,
                                    orgs_csv=CLEAN["orgs.csv"].replace("Lincoln Elementary", "<i>Elementary</i>"),
                                    classes_csv=CLEAN["classes.csv"].replace("Room 12", "<svg onload=alert(3)>")))
    held = held if held.status == "held" else None
    c = sign_in(console, "it@lincoln.example")
    urls = ["/t/lincoln", "/t/lincoln/roster", "/t/lincoln/roster/school?id=s1", "/t/lincoln/roster/class?id=k1"]
    runs_page = c.get("/t/lincoln").text
    urls += sorted(set(re.findall(r'href="(/t/lincoln/runs/[^"/]+)"', runs_page)))
    urls += console.links("/hold/")
    assert held is not None and len(urls) >= 8
    shown = {}
    for url in urls:
        r = c.get(url) if url.startswith("/") else console.client().get(url)
        assert r.status_code == 200, url
        for raw in (NASTY, "<img src=x", "<i>Elementary", "<svg onload", "Doe<b>"):
            assert raw not in r.text, (url, raw)
        shown[url] = [e for e in ("&lt;script&gt;", "&lt;img", "&lt;i&gt;", "&lt;svg") if e in r.text]
    # the values are there, escaped
    assert "&lt;i&gt;" in " ".join(shown["/t/lincoln/roster"])
    assert "&lt;svg" in shown["/t/lincoln/roster/school?id=s1"]
    assert {"&lt;script&gt;", "&lt;img"} <= set(shown["/t/lincoln/roster/class?id=k1"])
    assert "&lt;script&gt;" in shown[console.links("/hold/")[0]]  # Jane's record would be removed


def test_secure_cookie_when_base_url_is_https(env):
    c = start_console(env, 'base_url = "https://roster.example.org"\n')
    try:
        env.ctx.config.web.base_url = "https://roster.example.org"
        from processor.web.app import Console as AppConsole

        assert AppConsole(env.ctx).secure
        client = httpx.Client(base_url=c.base)
        r = client.get("/signin")
        assert "secure" in r.headers["set-cookie"].lower() and "httponly" in r.headers["set-cookie"].lower()
    finally:
        c.server.stop()


# ---------------------------------------------------------------- health and metrics


def test_healthz_is_503_when_the_store_is_unreachable(tmp_path, env):
    env.configure(lincoln={})
    ctx = env.ctx
    ctx.config.store.url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    ctx.config.web.port = 0
    server = WebServer(Context(home=ctx.home, config=ctx.config))
    server.start()
    try:
        r = httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=30)
        assert r.status_code == 503 and r.json()["status"] != "ok"
    finally:
        server.stop()


def test_a_second_console_on_a_taken_port_is_a_one_line_error(console):
    from processor.context import UserError

    console.env.ctx.config.web.port = console.server.port
    with pytest.raises(UserError, match="cannot listen on 127.0.0.1:.* for the web console"):
        WebServer(console.env.ctx).start()


def _secret_mode(home) -> int:
    return (home / "web-secret").stat().st_mode & 0o777


def test_the_generated_secret_is_kept_in_the_home_mode_0600(console):
    assert _secret_mode(console.env.home) == 0o600
    assert web_secret(console.env.ctx) == web_secret(console.env.ctx)


def test_rosterdrop_serve_serves_healthz_and_metrics_and_stops_on_sigterm(sqlite_env, tmp_path):
    import os
    import signal

    from tests.helpers import wait_for

    env = sqlite_env
    env.process(CLEAN)
    held = env.process(MASS_WITHDRAWAL)
    assert held.status == "held"
    log = tmp_path / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "processor", "serve", "--home", str(env.home)],
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "ROSTERDROP_WEB__PORT": "0", "ROSTERDROP_DAEMON__WORKERS": "1"})
    try:
        port = int(wait_for(lambda: re.search(r"web console on http://127\.0\.0\.1:(\d+)", log.read_text()),
                            timeout=60).group(1))
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert metrics.headers["content-type"].startswith("text/plain")
        text = metrics.text
        assert 'rosterdrop_runs{status="applied",tenant="lincoln"} 1.0' in text
        assert 'rosterdrop_runs{status="held",tenant="lincoln"} 1.0' in text
        assert re.search(r"^rosterdrop_queue_depth 0\.0$", text, re.M)
        assert re.search(r"^rosterdrop_outbox_waiting \d+\.0$", text, re.M)
        since = float(re.search(r'^rosterdrop_seconds_since_last_applied\{tenant="lincoln"\} (\S+)$', text, re.M)[1])
        assert 0 <= since < 600
        assert "roosevelt" not in re.search(r"rosterdrop_seconds_since_last_applied\{.*", text, re.S)[0]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "/hold/" not in log.read_text()  # request lines (with tokens) are never logged


def test_web_config_errors_name_the_key_and_env_overrides_apply(env):
    from processor.config import ConfigError, load_config

    cfg = env.home / "rosterdrop.toml"
    cfg.write_text(cfg.read_text() + '\n[web]\nbase_url = "ftp://roster.example.org"\n')
    with pytest.raises(ConfigError, match=r"web\.base_url: .*http:// or https://"):
        load_config(env.home)
    loaded = load_config(env.home, environ={"ROSTERDROP_WEB__BASE_URL": "https://roster.example.org/",
                                            "ROSTERDROP_WEB__LINK_DAYS": "2", "ROSTERDROP_WEB__ENABLED": "false"})
    assert loaded.web.base_url == "https://roster.example.org" and loaded.web.link_days == 2
    assert loaded.web.enabled is False


def test_with_the_console_off_a_hold_email_is_one_message_without_links(env):
    cfg = env.home / "rosterdrop.toml"
    cfg.write_text(cfg.read_text().replace('report_to = ["it@lincoln.example"]', f"report_to = {LINCOLN_ADMINS}"
                                           .replace("'", '"')) + "\n[web]\nenabled = false\n")
    env.__dict__.pop("ctx", None)
    env.process(CLEAN)
    held = env.process(MASS_WITHDRAWAL)
    with env.ctx.engine.connect() as conn:
        rows = conn.execute(select(outbox.c.recipients, outbox.c.message).where(outbox.c.run_id == held.run_id)).all()
    assert len(rows) == 1 and b"/hold/" not in rows[0].message and b"rosterdrop holds release" in rows[0].message


def test_the_operators_status_tag_of_each_tenant(env):
    from processor.web.queries import tenant_status

    cfg = env.home / "rosterdrop.toml"
    cfg.write_text(cfg.read_text().replace('[tenants.roosevelt]\n', '[tenants.roosevelt]\nexpect_drop_every_hours = 24\n'))
    env.__dict__.pop("ctx", None)
    assert tenant_status(env.ctx, "lincoln")["tag"] == "no drops yet"
    assert tenant_status(env.ctx, "roosevelt")["tag"] == "missing drop"  # expected, never came
    env.process(CLEAN)
    assert tenant_status(env.ctx, "lincoln")["tag"] == "up to date"
    duplicate = "u1,active,,true,s1,teacher,tm2,,Tara,Martin,,T001,tm2@lincoln.example,,,,,,\n"
    errors = env.process(with_changes(CLEAN, users_csv=USERS + duplicate))
    assert [i.code for i in errors.issues if i.severity == "error"] == ["duplicate_id"]
    assert tenant_status(env.ctx, "lincoln")["tag"] == "errors"
    env.process(with_changes(CLEAN, users_csv=None))  # no users.csv: rejected
    assert tenant_status(env.ctx, "lincoln")["tag"] == "failing"
    held = env.process(MASS_WITHDRAWAL)
    status = tenant_status(env.ctx, "lincoln")
    assert held.status == "held" and status["tag"] == "held" and status["open_holds"] == 1
    env.process(CLEAN, tenant="roosevelt")
    fresh = tenant_status(env.ctx, "roosevelt")
    assert fresh["tag"] == "up to date" and fresh["next_expected"].endswith("UTC")
    later = tenant_status(env.ctx, "roosevelt", now=time.time() + 25 * 3600)
    assert later["tag"] == "missing drop" and later["overdue"]


def test_notices_without_a_run_link_to_the_districts_page(console):
    from processor.daemon import check_missing_drops

    cfg = console.env.home / "rosterdrop.toml"
    cfg.write_text(cfg.read_text().replace("[tenants.lincoln]\n", "[tenants.lincoln]\nexpect_drop_every_hours = 1\n"))
    console.env.__dict__.pop("ctx", None)
    console.env.ctx.config.web.base_url = console.base
    assert check_missing_drops(console.env.ctx, now=time.time() + 7200, started_at=time.time()) == ["lincoln"]
    text = console.emails()[-1].get_body(("plain",)).get_content()
    assert f"{console.base}/t/lincoln" in text and "help@vendor.example" in text
