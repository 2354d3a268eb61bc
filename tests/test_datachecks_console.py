"""The console's "Data checks" part (CONTRACT.md section 12): per alert code of the tenant's latest applied run,
its count, the fix and the first rows (file, line, sourcedId), escaped, and only the signed-in tenant's."""

from __future__ import annotations

import pytest

from tests.bundles import CLEAN, ENROLLMENTS, USERS, with_changes
from tests.webtools import LINCOLN_ADMINS, sign_in, start_console

# Seven students with no class (one with markup in its sourcedId), and two people sharing an email.
LONERS = "".join(f"n{i},active,,true,s1,student,lone{i},,Lone,Student{i},,0009{i},lone{i}@lincoln.example,,,,03,,\n"
                 for i in range(6))
EVIL = '<svg onload=alert(1)>'
CHECKED = with_changes(CLEAN, users_csv=USERS.replace("jdoe@lincoln.example", "tmartin@lincoln.example") +
                       f'"{EVIL}",active,,true,s1,student,evil,,Eve,Il,,00099,evil@lincoln.example,,,,03,,\n' + LONERS)


@pytest.fixture
def console(env):
    env.configure(lincoln={"min_deactivated_count": 0}, roosevelt={})  # a tiny district's withdrawals hold
    c = start_console(env, report_to=LINCOLN_ADMINS)
    yield c
    c.server.stop()


def data_checks_part(html: str) -> str:
    start = html.index('id="data-checks"')
    return html[start:html.index("<h2>Drops</h2>", start)]


def test_the_tenant_page_shows_the_latest_applied_runs_data_checks_escaped(console):
    env = console.env
    env.process(CHECKED)
    env.process(CLEAN, tenant="roosevelt")  # roosevelt's own drop: clean
    c = sign_in(console, "it@lincoln.example")
    page = c.get("/t/lincoln")
    assert page.status_code == 200
    part = data_checks_part(page.text)
    assert "A student has no class" in part and "(7)" in part
    assert "Enroll the student in a class in your SIS" in part  # the fix
    assert "users.csv:8" in part and "users.csv:9" in part and ">n0<" in part  # file, line and sourcedId
    assert "and 2 more in" in part and "issues.csv" in part  # five rows shown of seven
    assert "Two people share an email" in part and "(2)" in part
    assert "&lt;svg onload=alert(1)&gt;" in page.text and EVIL not in page.text
    # A later drop that is held does not replace what the checks show: they are the roster's, as applied.
    held = env.process(with_changes(CLEAN, enrollments_csv=ENROLLMENTS.splitlines()[0] + "\n"))
    assert held.status == "held"
    assert data_checks_part(c.get("/t/lincoln").text) == part


def test_a_clean_roster_says_there_is_nothing_to_fix_and_another_tenant_sees_only_its_own(console):
    env = console.env
    env.process(CHECKED)
    env.process(CLEAN, tenant="roosevelt")
    cfg = env.home / "rosterdrop.toml"
    assert "it@roosevelt.example" in cfg.read_text()
    c = sign_in(console, "it@roosevelt.example")
    part = data_checks_part(c.get("/t/roosevelt").text)
    assert "No data-check alerts" in part and "n0" not in part and "svg" not in part
    assert c.get("/t/lincoln").status_code == 403


def test_before_any_applied_drop_there_is_no_data_checks_part(console):
    c = sign_in(console, "it@lincoln.example")
    assert 'id="data-checks"' not in c.get("/t/lincoln").text
