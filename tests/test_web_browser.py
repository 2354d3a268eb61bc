"""The console in a real browser: Debian's Chromium driven by Playwright (never `playwright install`).

A district admin opens the link of a real hold email (the .eml the outbox wrote), reviews the hold and
releases or discards it; bad links show the 403 page; sign-in by emailed link; an operator sees every tenant.
"""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import sync_playwright
from sqlalchemy import select

from processor.apply.runs import get_result
from processor.apply.store import runs
from processor.web.links import Signer
from processor.web.sessions import set_operator_password
from tests.bundles import CLEAN
from tests.webtools import LINCOLN_ADMINS, MASS_WITHDRAWAL, expired_hold_token, start_console, tiny_district

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"),
]


@pytest.fixture(autouse=True)
def _tiny_district(request):
    tiny_district(request)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def console(sqlite_env):
    c = start_console(sqlite_env, report_to=LINCOLN_ADMINS)
    yield c
    c.server.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
    yield context.new_page()
    context.close()


def held(console, tenant="lincoln"):
    console.env.process(CLEAN, tenant=tenant)
    result = console.env.process(MASS_WITHDRAWAL, tenant=tenant)
    assert result.status == "held"
    return result


def status_of(console, run_id):
    with console.env.ctx.engine.connect() as conn:
        return conn.execute(select(runs.c.status).where(runs.c.run_id == run_id)).scalar_one()


def test_admin_reviews_and_releases_a_hold_from_the_email_link(console, page):
    run = held(console)
    [link] = console.links("/hold/", to="it@lincoln.example")
    page.goto(link)
    assert "on hold" in page.inner_text("h1")
    assert "Jane Doe" in page.inner_text("main")  # a record that would be removed
    page.fill("#note-r", "Two students moved away")
    page.click("text=Release and apply")
    assert "Released: the drop was applied" in page.inner_text("h1")
    result = get_result(console.env.ctx.engine, run.run_id)
    assert result.status == "applied"
    assert result.released is not None
    assert result.released.by == "it@lincoln.example" and result.released.note == "Two students moved away"
    page.goto(link)  # the same link afterwards: says so, no buttons
    assert "Release and apply" not in page.content()


def test_admin_discards_a_hold_from_the_email_link(console, page):
    run = held(console)
    [link] = console.links("/hold/", to="boss@lincoln.example")
    page.goto(link)
    page.click("text=Discard the drop")
    assert "Discarded" in page.inner_text("h1")
    assert status_of(console, run.run_id) == "discarded"
    assert {"u2", "u3"} <= {p["sourced_id"] for p in console.env.export()["people"]}


def test_tampered_expired_and_foreign_links_show_403_in_the_browser(console, page):
    run = held(console)
    other = held(console, "roosevelt")
    [link] = console.links("/hold/", to="it@lincoln.example")
    signer = Signer.of(console.env.ctx)
    payload, stamp, sig = link.rsplit("/", 1)[1].rsplit(".", 2)  # a compressed payload starts with "."
    bad = [f"{console.base}/hold/{payload}.{stamp}.{'B' if sig[0] == 'A' else 'A'}{sig[1:]}",
           f"{console.base}/hold/{expired_hold_token(console.env.ctx, 'lincoln', run.run_id, 'it@lincoln.example')}",
           f"{console.base}/hold/{Signer(b'other install', 7).hold_token('lincoln', run.run_id, 'it@lincoln.example')}",
           f"{console.base}/hold/{signer.hold_token('lincoln', other.run_id, 'it@lincoln.example')}"]
    for url in bad:
        response = page.goto(url)
        assert response.status == 403, url
        assert "not available to you" in page.inner_text("h1")
    assert status_of(console, run.run_id) == "held" and status_of(console, other.run_id) == "held"


def test_admin_signs_in_by_emailed_link(console, page):
    run = held(console)
    page.goto(console.base + "/t/lincoln")
    assert "/signin" in page.url  # not signed in yet
    page.fill("#email", "it@lincoln.example")
    page.click("text=Email me a sign-in link")
    assert "on its way" in page.inner_text("main")
    [link] = console.links("/signin/", to="it@lincoln.example")
    page.goto(link)
    page.click("button:has-text('Sign in')")
    assert page.url.endswith("/t/lincoln")
    assert "Open holds" in page.inner_text("main") and "Lincoln Unified" in page.inner_text("h1")
    page.click(f"a[href='/t/lincoln/runs/{run.run_id}'] >> nth=0")
    assert "Release and apply" in page.content()
    page.click("text=Lincoln Unified >> nth=0")  # the breadcrumb back to the district
    page.click("text=Browse the roster")
    page.click("text=Lincoln Elementary")
    page.click("text=Room 12")
    assert "Tara Martin" in page.inner_text("main")
    page.goto(console.base + "/t/roosevelt")
    assert "another district" in page.inner_text("main")


def test_operator_sees_every_tenant(console, page):
    held(console, "roosevelt")
    console.env.process(CLEAN, tenant="lincoln")
    set_operator_password(console.env.ctx.engine, "ops", "correct horse battery")
    page.goto(console.base + "/login")
    page.fill("#name", "ops")
    page.fill("#password", "correct horse battery")
    page.click("button:has-text('Sign in')")
    text = page.inner_text("main")
    assert "Lincoln Unified" in text and "Roosevelt Unified" in text
    assert "held" in page.inner_text("tr:has-text('Roosevelt Unified')")
    assert "up to date" in page.inner_text("tr:has-text('Lincoln Unified')")
    page.fill("input[name=q]", "held")
    page.click("button:has-text('Search')")
    assert "Roosevelt Unified" in page.inner_text("main") and "Lincoln Unified" not in page.inner_text("main")
