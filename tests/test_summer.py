"""The summer, end to end through real processes: `rosterdrop serve --burst` takes the drops from the inbox, the
pause notices are sent on their days (the job is driven with an explicit `now`), and in August an operator runs
`rosterdrop process --new-year`.

A district pauses for the summer with additions_only. The day before the pause its admins are told. In June it
sends a drop that adds summer-school students (applied at once) and withdraws a student (held back). On the
pause's last day they are told it ends, and that a drop is waiting on hold. In August the new year's export is
processed as the new school year: last year's classes and enrollments go, people stay.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from processor.apply.runs import list_runs
from processor.apply.store import outbox
from processor.calendar import send_pause_notices
from processor.context import Context
from tests.bundles import CLEAN, ENROLLMENTS, USERS, make_bundle, with_changes
from tests.test_apply import drop_lines
from tests.test_calendar_new_year import AUGUST

ROOT = Path(__file__).resolve().parent.parent
CHICAGO = ZoneInfo("America/Chicago")
TODAY = datetime.now(CHICAGO).date()  # the drops' received_at is the real clock, so the pause is around today
START, UNTIL = TODAY - timedelta(days=1), TODAY + timedelta(days=60)

SUMMER_SCHOOL = ("u7,active,,true,s1,student,sam7,,Sam,Seven,,000777,sam7@lincoln.example,,,,04,,\n"
                 "u8,active,,true,s2,student,sue8,,Sue,Eight,,000888,sue8@lincoln.example,,,,10,,\n")
# June: two summer-school students (enrolled in k1), and u3 withdrawn (gone from users and enrollments).
JUNE = with_changes(CLEAN, users_csv=drop_lines(USERS, "u3,") + SUMMER_SCHOOL,
                    enrollments_csv=drop_lines(ENROLLMENTS, "e3,") + "es7,active,,k1,s1,u7,student,false,,\n"
                                                                      "es8,active,,k2,s2,u8,student,false,,\n")


def rosterdrop(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "processor", "--home", str(home), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL, env=dict(os.environ))


def burst(home: Path, drop: dict, name: str) -> dict:
    """Place a drop in the tenant's inbox, let `serve --burst` take it; the newest run."""
    make_bundle(home / "inbox" / "lincoln", drop, name=name)
    done = rosterdrop(home, "serve", "--burst")
    assert done.returncode == 0, done.stderr
    assert not any((home / "inbox" / "lincoln").iterdir())
    ctx = Context.load(home)
    try:
        return list_runs(ctx.engine, tenant="lincoln", limit=1)[0]
    finally:
        ctx.engine.dispose()


def at(day, hour: int) -> float:
    return datetime(day.year, day.month, day.day, hour, tzinfo=CHICAGO).timestamp()


def notices(home: Path) -> list[tuple[str, str]]:
    ctx = Context.load(home)
    try:
        with ctx.engine.connect() as conn:
            rows = conn.execute(select(outbox.c.kind, outbox.c.message).where(outbox.c.kind.like("pause_%"))
                                .order_by(outbox.c.id)).all()
    finally:
        ctx.engine.dispose()
    return [(kind, message.decode("utf-8", "replace")) for kind, message in rows]


def roster(home: Path) -> dict:
    done = rosterdrop(home, "--json", "roster", "export", "--tenant", "lincoln", "--all")
    assert done.returncode == 0, done.stderr
    return {entity: {r["sourced_id"]: r["status"] for r in rows}
            for entity, rows in json.loads(done.stdout).items() if entity in ("people", "classes", "enrollments")}


def send(home: Path, now: float) -> int:
    ctx = Context.load(home)  # a fresh process's view each time, as after a daemon restart
    try:
        return send_pause_notices(ctx, now)
    finally:
        ctx.engine.dispose()


@pytest.mark.slow
def test_a_summer_with_additions_only_and_the_august_new_year(env):
    home = env.home
    assert burst(home, CLEAN, "spring")["status"] == "applied"

    # The district sets its summer pause.
    cfg = home / "rosterdrop.toml"
    cfg.write_text(cfg.read_text().replace("[tenants.lincoln]\n", '[tenants.lincoln]\ntimezone = "America/Chicago"\n')
                   + f'\n[[tenants.lincoln.pauses]]\nfrom = {START}\nuntil = {UNTIL}\nmode = "additions_only"\n')

    # Two days before, nothing; the day before, one notice, however often the hourly job runs.
    assert send(home, at(START - timedelta(days=2), 9)) == 0
    assert send(home, at(START - timedelta(days=1), 6)) == 1
    assert send(home, at(START - timedelta(days=1), 7)) == send(home, at(START, 9)) == 0
    [(kind, message)] = notices(home)
    assert kind == "pause_starting" and f"paused from {START} to {UNTIL}" in message

    # June: the summer-school students are applied at once, the withdrawal is held back.
    june = burst(home, JUNE, "june")
    assert june["status"] == "held"
    after_june = roster(home)
    assert after_june["people"]["u7"] == after_june["people"]["u8"] == "active"
    assert after_june["enrollments"]["es7"] == after_june["enrollments"]["es8"] == "active"
    assert after_june["people"]["u3"] == after_june["enrollments"]["e3"] == "active"  # held back
    result = json.loads(rosterdrop(home, "--json", "runs", "show", june["run_id"]).stdout)
    [paused] = [i for i in result["issues"] if i["code"] == "paused"]
    assert "the 4 new records of this drop were applied" in paused["message"]  # u7, u8 and their enrollments
    assert "deactivations are held until someone releases the hold" in paused["message"]

    # The middle of the summer: nothing; the last paused day: the end notice, saying a drop waits on hold.
    assert send(home, at(TODAY + timedelta(days=30), 9)) == 0
    assert send(home, at(UNTIL, 8)) == 1
    assert send(home, at(UNTIL, 20)) == send(home, at(UNTIL + timedelta(days=1), 9)) == 0
    kinds = [k for k, _ in notices(home)]
    assert kinds == ["pause_starting", "pause_ended"]
    ended = notices(home)[1][1]
    assert f"Drops received from {UNTIL + timedelta(days=1)} on are processed as usual" in ended
    assert "1 held drop is waiting for review" in ended

    # August: the operator processes the new year's export as the new school year. (Without the usual floor of
    # 10 rows, the tiny district's removed classes trip mass_deactivation: reported, not held.)
    cfg.write_text(cfg.read_text().replace("[tenants.lincoln.policy]\n", "[tenants.lincoln.policy]\n"
                                                                         "min_deactivated_count = 0\n"))
    august = make_bundle(env.tmp / "august", AUGUST, name="august-2028")
    done = rosterdrop(home, "--json", "process", str(august), "--tenant", "lincoln", "--new-year")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "applied" and run["new_year"] is True
    assert not [i for i in run["issues"] if i["severity"] == "hold"]
    assert any(i["code"] == "mass_deactivation" and i["severity"] == "alert" for i in run["issues"])
    after = roster(home)
    assert after["classes"] == {"k1": "inactive", "k2": "inactive", "k3": "active",
                                                           "k4": "active"}
    # Only the new year's enrollments are active: last year's and the summer school's are not.
    assert {k for k, v in after["enrollments"].items() if v == "active"} == {"e5", "e6", "e7", "e8"}
    assert after["enrollments"]["es7"] == after["enrollments"]["e3"] == "inactive"
    assert set(after["people"]) >= {"u1", "u2", "u3", "u4", "u5", "u7", "u8"}
    assert {after["people"][p] for p in ("u1", "u2", "u3", "u4", "u7", "u8")} == {"active"}  # people kept
    # The June hold can never be released over the new year: superseded.
    assert json.loads(rosterdrop(home, "--json", "runs", "show", june["run_id"]).stdout)["status"] == "superseded"
