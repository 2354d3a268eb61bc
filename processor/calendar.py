"""The district's calendar around the pipeline (CONTRACT.md section 12): the notices before and after a pause,
and the August reset (a new-school-year run).

Pause notices. `send_pause_notices` is one unit of work the scheduler runs every hour: for each tenant with
`report_to`, a `pause_starting` notice on the day before a pause starts and a `pause_ended` notice on the day it
ends (its `until`, the last paused day), both in the tenant's time zone. A day of grace on each (the start day,
the day after the end) covers a daemon that was down all of the due day. Each notice is claimed by inserting its
row into `pause_notices` (primary key tenant, notice, from, until) in the transaction that queues the email, so
a restarted daemon, the hourly job and several hosts send each notice exactly once. A pause whose dates change
is a new pause and gets its own notices.

New school year. A run marked `new_year` (`process --new-year`, `holds release --new-year`, or the console's
"Release as new school year") is the August reset:
- classes and enrollments are taken as the full set whatever the manifest says (a `delta` or `absent` file
  counts as bulk): every stored class and enrollment the drop does not list is deactivated: last year's;
- people are kept: no person is deactivated by a new-year run (not for being absent from users.csv, not for
  `tobedeleted`), nor a guardian link of a kept person; the run's `new_year` alert counts them, and the next regular drop deactivates those still
  missing, with its usual limits. A partial August export cannot take accounts away unchecked;
- holds (mass_deactivation, mass_update, ...) are still worked out and reported as alerts saying what they would
  have held, but they do not hold: a new year replaces most classes and enrollments by design;
- everything else (schools, courses, terms, guardian links, updates of people) follows the drop as usual.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Column, Date, Float, Integer, String, Table, func, insert, select
from sqlalchemy.exc import IntegrityError

from processor.apply.store import metadata, runs

log = logging.getLogger("rosterdrop.calendar")

# One row per notice sent (the claim): what makes a notice go out exactly once.
pause_notices = Table(
    "pause_notices", metadata,
    Column("tenant", String(64), primary_key=True),
    Column("notice", String(32), primary_key=True),  # pause_starting | pause_ended
    Column("pause_from", Date, primary_key=True),
    Column("pause_until", Date, primary_key=True),
    Column("sent_at", Float, nullable=False),
    Column("outbox_id", Integer),
)

NOTICES = ("pause_starting", "pause_ended")
MODE_LABEL = {"hold": "drops held for review", "additions_only": "additions only", "skip": "nothing applied"}
MODE_TEXT = {
    "hold": "drops are held until someone releases or discards them",
    "additions_only": "new records (summer-school students, new staff) are added; updates and withdrawals are "
                      "held until someone releases them",
    "skip": "drops are archived and nothing is applied",
}


def due_notices(pauses, today: date) -> list[tuple[str, object]]:
    """(notice, pause) due on `today` (the tenant's local date), a day of grace included."""
    due = []
    for p in pauses:
        if p.start - timedelta(days=1) <= today <= p.start:
            due.append(("pause_starting", p))
        if p.until <= today <= p.until + timedelta(days=1):
            due.append(("pause_ended", p))
    return due


def send_pause_notices(ctx, now: float | None = None) -> int:
    """Queue the pause notices due at `now` (epoch seconds; default the clock) that no one sent yet; how many."""
    from processor.report.mail import queue_notice

    now = time.time() if now is None else now
    due = []
    for tenant, tcfg in sorted(ctx.config.tenants.items()):
        if tcfg.pauses and tcfg.report_to:
            today = datetime.fromtimestamp(now, UTC).astimezone(ZoneInfo(tcfg.timezone)).date()
            due += [(tenant, notice, pause, today) for notice, pause in due_notices(tcfg.pauses, today)]
    if not due:
        return 0
    with ctx.engine.connect() as conn:  # what was sent before: skipped without a try (the insert still decides)
        done = {(t, n, _date(f), _date(u)) for t, n, f, u in conn.execute(select(
            pause_notices.c.tenant, pause_notices.c.notice, pause_notices.c.pause_from, pause_notices.c.pause_until))}
    sent = 0
    for tenant, notice, pause, today in due:
        if (tenant, notice, pause.start, pause.until) in done:
            continue
        try:
            with ctx.engine.begin() as conn:
                # The claim first: a second sender waits on this key and then finds it taken.
                conn.execute(insert(pause_notices).values(tenant=tenant, notice=notice, pause_from=pause.start,
                                                          pause_until=pause.until, sent_at=now))
                outbox_id = queue_notice(conn, ctx, tenant, notice, _notice_context(conn, tenant, pause, today),
                                         now=now)
                conn.execute(pause_notices.update().where(
                    pause_notices.c.tenant == tenant, pause_notices.c.notice == notice,
                    pause_notices.c.pause_from == pause.start, pause_notices.c.pause_until == pause.until
                ).values(outbox_id=outbox_id))
        except IntegrityError:
            continue  # sent already (by this host earlier, or by another one just now)
        log.info("tenant %s: %s notice queued for the pause %s to %s", tenant, notice, pause.start, pause.until)
        sent += 1
    return sent


def _date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _notice_context(conn, tenant: str, pause, today: date) -> dict:
    held = conn.execute(select(func.count()).select_from(runs).where(
        runs.c.tenant == tenant, runs.c.status == "held")).scalar() or 0
    return {"pause_from": pause.start.isoformat(), "pause_from_eve": (pause.start - timedelta(days=1)).isoformat(), "pause_until": pause.until.isoformat(), "mode": pause.mode,
            "resumes": (pause.until + timedelta(days=1)).isoformat(), "today": today.isoformat(), "held": held}


# ---------------------------------------------------------------- the new school year


def new_year_roster(roster) -> None:
    """Classes and enrollments as the full set: what the drop does not list is last year's."""
    from processor.apply.store import ENTITY_COLUMNS

    for table in ("classes", "enrollments"):
        if table not in roster.tables:  # no file: the new year has none of last year's
            roster.tables[table] = pd.DataFrame({
                "sourced_id": pd.Series([], dtype="str"), "status": pd.Series([], dtype="str"),
                "row_hash": pd.Series([], dtype="int64"),
                **{c: pd.Series([], dtype="str") for c in ENTITY_COLUMNS[table]}})
        roster.modes[table] = "bulk"


def keep_people(changes) -> int:
    """Take the people's deactivations out of the change set (people are kept); how many were taken out."""
    tc = changes.tables.get("people")
    if tc is None or tc.deactivated.empty:
        return 0
    from processor.apply.diff import link_ends
    from processor.vector import isin

    kept = len(tc.deactivated)
    ids = tc.deactivated["sourced_id"]
    changes.tables["people"] = dataclasses.replace(tc, deactivated=tc.deactivated.iloc[0:0],
                                                   unchanged=tc.unchanged + kept)
    links = changes.tables.get("guardian_links")
    if links is not None and not links.deactivated.empty:  # a kept person keeps their guardian links too
        student, guardian = link_ends(links.deactivated["sourced_id"])
        stay = isin(student, ids) | isin(guardian, ids)
        if stay.any():
            changes.tables["guardian_links"] = dataclasses.replace(
                links, deactivated=links.deactivated[~stay], unchanged=links.unchanged + int(stay.sum()))
    return kept


def unheld(holds: pd.DataFrame) -> pd.DataFrame:
    """The holds a new-year run reports instead of holding: alerts that say what they would have held."""
    if holds.empty:
        return holds
    holds = holds.copy()
    holds["severity"] = "alert"
    holds["message"] = "Not held, as this is a new-school-year run; it would have held the drop: " + \
        holds["message"].astype("str")
    return holds


def new_year_issue(changes, people_kept: int) -> pd.DataFrame:
    from processor.validate.issues import one_issue

    gone = {t: len(changes.tables[t].deactivated) if t in changes.tables else 0 for t in ("classes", "enrollments")}
    one = people_kept == 1
    kept = (f"{people_kept:,} {'person who is' if one else 'people who are'} not in this drop "
            f"{'was' if one else 'were'} kept active; the next regular drop deactivates "
            "them if still missing" if people_kept
            else "no person was deactivated")
    return one_issue("new_year", f"New school year: last year's {gone['classes']:,} classes and "
                     f"{gone['enrollments']:,} enrollments that this drop does not list were deactivated; {kept}.",
                     value="new_year")
