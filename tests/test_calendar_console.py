"""The console's new-school-year release: a held August drop released "as new school year" from the hold link
or a signed-in session (a CSRF-protected POST, the tenant's own runs only)."""

from __future__ import annotations

import pytest

from processor.apply.runs import get_result
from tests.bundles import CLEAN
from tests.test_calendar_new_year import AUGUST, statuses
from tests.test_web import status_of
from tests.webtools import LINCOLN_ADMINS, csrf_of, sign_in, start_console, tiny_district


@pytest.fixture(autouse=True)
def _tiny_district(request):
    tiny_district(request)


@pytest.fixture
def console(env):
    c = start_console(env, report_to=LINCOLN_ADMINS)
    yield c
    c.server.stop()


def held_august(console, tenant: str = "lincoln"):
    console.env.process(CLEAN, tenant=tenant)
    held = console.env.process(AUGUST, tenant=tenant)
    assert held.status == "held"  # every class and enrollment of last year goes: mass_deactivation
    return held


def test_the_hold_link_releases_the_august_drop_as_the_new_school_year(console):
    held = held_august(console)
    [link] = console.links("/hold/", to="it@lincoln.example")
    c = console.client()
    page = c.get(link)
    assert "Release as new school year" in page.text and "people are kept" in page.text
    # Without the page's CSRF value nothing happens.
    assert c.post(link + "/release_new_year", data={"csrf": "x"}).status_code == 403
    assert status_of(console.env, held.run_id) == "held"
    done = c.post(link + "/release_new_year", data={"csrf": csrf_of(page.text), "note": "2027-28 starts"})
    assert done.status_code == 200 and "Released as the new school year" in done.text
    result = get_result(console.env.ctx.engine, held.run_id)
    assert result.status == "applied" and result.new_year is True
    assert (result.released.by, result.released.note) == ("it@lincoln.example", "2027-28 starts")
    assert statuses(console.env, "classes")["k1"] == "inactive"
    assert statuses(console.env, "people")["u3"] == "active"  # not in the August drop, kept
    again = c.post(link + "/release_new_year", data={"csrf": csrf_of(page.text)})
    assert again.status_code == 409  # acting twice changes nothing


def test_a_signed_in_admin_releases_as_new_year_only_their_own_tenants_hold(console):
    mine = held_august(console)
    theirs = held_august(console, "roosevelt")
    c = sign_in(console, "it@lincoln.example")
    page = c.get(f"/t/lincoln/runs/{mine.run_id}")
    csrf = csrf_of(page.text)
    assert c.post(f"/t/roosevelt/runs/{theirs.run_id}/release_new_year", data={"csrf": csrf}).status_code == 403
    assert status_of(console.env, theirs.run_id) == "held"
    done = c.post(f"/t/lincoln/runs/{mine.run_id}/release_new_year", data={"csrf": csrf},
                  headers={"Origin": console.base})
    assert done.status_code == 200, done.text
    assert get_result(console.env.ctx.engine, mine.run_id).new_year is True
