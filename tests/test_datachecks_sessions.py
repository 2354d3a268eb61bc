"""session_dates against the store: a delta that sends a term but not its school year is checked against the
school year's stored dates (CONTRACT.md section 12)."""

from __future__ import annotations

from tests.bundles import CLEAN
from tests.test_apply import DELTA_MANIFEST
from tests.test_datachecks import checks, first

MANIFEST = DELTA_MANIFEST.replace("file.academicSessions,absent", "file.academicSessions,delta").replace(
    "file.users,delta", "file.users,absent").replace("file.enrollments,delta", "file.enrollments,absent")
HEADER = "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear\n"


def delta(env, rows: str):
    return env.process({"manifest.csv": MANIFEST, "academicSessions.csv": HEADER + rows})


def test_a_term_outside_its_stored_school_year_is_alerted(env):
    env.process(CLEAN)  # y1: 2026-08-01 to 2027-06-30
    result = delta(env, "t2,active,,Spring,semester,2027-01-05,2027-07-15,y1,2027\n"
                        "t3,active,,Summer school,term,2027-06-01,2027-06-30,y1,2027\n")
    assert result.status == "applied"
    assert checks(result) == [("session_dates", "academicSessions.csv", 2, "t2")]
    alert = first(result, "session_dates")
    assert (alert.field, alert.value) == ("parentSourcedId", "y1")
    assert "outside its parent session y1 (2026-08-01 to 2027-06-30)" in alert.message


def test_a_parent_the_delta_restates_is_checked_with_its_new_dates(env):
    env.process(CLEAN)
    result = delta(env, "y1,active,,2026-2027,schoolYear,2026-08-01,2027-07-31,,2027\n"
                        "t2,active,,Spring,semester,2027-01-05,2027-07-15,y1,2027\n")
    assert checks(result) == []


def test_a_child_of_a_stored_parent_that_is_no_longer_active_is_not_checked(env):
    env.process(CLEAN)
    delta(env, "y1,tobedeleted,,2026-2027,schoolYear,2026-08-01,2027-06-30,,2027\n")
    result = delta(env, "t1,active,,Fall,semester,2026-07-01,2026-12-20,y1,2027\n")
    assert "session_dates" not in {c for c, *_ in checks(result)}
