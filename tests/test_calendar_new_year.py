"""The new school year (`process --new-year`, `holds release --new-year`): last year's classes and enrollments
that the drop does not list are deactivated, people are kept, and limits are reported but do not hold."""

from __future__ import annotations

import json
from pathlib import Path

from processor.cli import main
from processor.pipeline import process_path
from tests.bundles import CLEAN, ORGS, USERS, with_changes
from tests.test_apply import DELTA_MANIFEST, ENR_HEADER, SMALL, drop_lines, people
from tests.test_pauses import pause

# August: the SIS rolled over. New year and term, new classes (new ids), u3 graduated (not in users.csv), a new
# kindergartener u5; every enrollment is the new year's.
SESSIONS_2028 = """\
sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear
y2,active,,2027-2028,schoolYear,2027-08-01,2028-06-30,,2028
t2,active,,Fall,semester,2027-08-01,2027-12-20,y2,2028
"""
CLASSES_2028 = """\
sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods
k3,active,,Room 14,04,c1,R14,homeroom,,s1,t2,,,
k4,active,,Geometry - P2,"10,11",c2,GEO-2,scheduled,,s2,t2,,,2
"""
USERS_2028 = drop_lines(USERS, "u3,") + "u5,active,,true,s1,student,kid5,,Kim,Five,,000125,kid5@lincoln.example,,,,KG,,\n"
ENROLLMENTS_2028 = ENR_HEADER + """\
e5,active,,k3,s1,u1,teacher,true,,
e6,active,,k3,s1,u2,student,false,,
e7,active,,k3,s1,u5,student,false,,
e8,active,,k4,s2,u4,teacher,true,,
"""
COURSES_2028 = """\
sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,subjects,subjectCodes
c1,active,,y2,Grade 4,G4,04,s1,,
c2,active,,y2,Geometry,GEO,"10,11",s2,,
"""
AUGUST = with_changes(CLEAN, academicSessions_csv=SESSIONS_2028, classes_csv=CLASSES_2028, users_csv=USERS_2028,
                      enrollments_csv=ENROLLMENTS_2028, courses_csv=COURSES_2028)


def statuses(env, entity: str) -> dict[str, str]:
    return {r["sourced_id"]: r["status"] for r in env.export(include_inactive=True)[entity]}


def by_code(result, code: str):
    return [i for i in result.issues if i.code == code]


def test_a_new_year_run_deactivates_last_years_classes_and_enrollments_and_keeps_people(env):
    env.configure(lincoln=SMALL, roosevelt={})
    env.process(CLEAN)
    # As a regular drop the August export would be held: it removes every class and enrollment.
    assert env.process(AUGUST, dry_run=True).outcome == "held"
    result = process_path(env.ctx, env.bundle(AUGUST), "lincoln", new_year=True)
    assert result.status == "applied" and result.exit_code() == 0
    assert result.new_year is True and result.to_json()["new_year"] is True
    assert statuses(env, "classes") == {"k1": "inactive", "k2": "inactive", "k3": "active", "k4": "active"}
    assert statuses(env, "enrollments") == {"e1": "inactive", "e2": "inactive", "e3": "inactive", "e4": "inactive",
                                            "e5": "active", "e6": "active", "e7": "active", "e8": "active"}
    # People kept: u3 is not in the drop and stays active; u5 is new; nobody was deactivated.
    assert people(env)["u3"]["status"] == "active" and "u5" in people(env)
    assert result.counts["users"].deactivated == 0 and result.counts["users"].created == 1
    # ...and so do their guardian links (g1 is u3's parent; users.csv still names u3 among g1's agents).
    assert [r["status"] for r in env.export(include_inactive=True)["guardians"] if r["student"] == "u3"] == ["active"]
    [note] = by_code(result, "new_year")
    assert note.severity == "alert"
    assert ("last year's 2 classes and 4 enrollments that this drop does not list were deactivated; 1 person who "
            "is not in this drop was kept active") in note.message
    # The limits that would have held it are there, as alerts that say so.
    reported = by_code(result, "mass_deactivation")
    assert reported and {i.severity for i in reported} == {"alert"}
    assert all(i.message.startswith("Not held, as this is a new-school-year run") for i in reported)
    assert not [i for i in result.issues if i.severity == "hold"]
    report = (Path(result.report).parent / "report.txt").read_text()
    assert report.startswith("ROSTER APPLIED AS THE NEW SCHOOL YEAR\nLast year's 2 classes and 4 enrollments")


def test_a_new_year_takes_classes_and_enrollments_as_the_full_set_even_from_a_delta(env):
    env.process(CLEAN)
    manifest = DELTA_MANIFEST.replace("file.classes,absent", "file.classes,delta")
    # (no sessions file: the classes stay in the stored term t1)
    delta = {"manifest.csv": manifest, "classes.csv": CLASSES_2028.replace(",t2,", ",t1,"), "users.csv": USERS_2028,
             "enrollments.csv": ENROLLMENTS_2028}
    result = process_path(env.ctx, env.bundle(delta), "lincoln", new_year=True)
    assert result.status == "applied"
    assert statuses(env, "classes") == {"k1": "inactive", "k2": "inactive", "k3": "active", "k4": "active"}
    assert {k for k, v in statuses(env, "enrollments").items() if v == "active"} == {"e5", "e6", "e7", "e8"}
    assert people(env)["u3"]["status"] == "active"


def test_without_classes_in_the_drop_a_new_year_ends_all_of_last_years(env):
    env.process(CLEAN)
    manifest = DELTA_MANIFEST.replace("file.enrollments,delta", "file.enrollments,absent")
    result = process_path(env.ctx, env.bundle({"manifest.csv": manifest, "users.csv": USERS_2028}), "lincoln",
                          new_year=True)
    assert result.status == "applied", result.issues
    assert set(statuses(env, "classes").values()) == {"inactive"}
    assert set(statuses(env, "enrollments").values()) == {"inactive"}
    assert people(env)["u3"]["status"] == "active" and people(env)["u5"]["status"] == "active"


def test_a_regular_drop_after_the_new_year_deactivates_who_is_still_missing(env):
    env.process(CLEAN)
    process_path(env.ctx, env.bundle(AUGUST), "lincoln", new_year=True)
    september = with_changes(AUGUST, orgs_csv=ORGS + "s3,active,,Lincoln Middle,school,060000100003,d1\n")
    result = env.process(september)
    assert result.status == "applied" and result.new_year is None and "new_year" not in result.to_json()
    assert people(env, include_inactive=True)["u3"]["status"] == "inactive"


def test_a_new_year_run_is_not_paused(env):
    env.process(CLEAN)
    pause(env, "skip")
    result = process_path(env.ctx, env.bundle(AUGUST), "lincoln", new_year=True)
    assert result.status == "applied" and not by_code(result, "paused")


def test_holds_release_new_year_applies_a_held_august_drop_as_the_new_year(env, capsys):
    env.configure(lincoln=SMALL, roosevelt={})
    env.process(CLEAN)
    held = env.process(AUGUST)
    assert held.status == "held"
    code = main(["--home", str(env.home), "--json", "holds", "release", held.run_id, "--new-year", "--by", "ops"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["status"] == "applied" and out["new_year"] is True
    assert out["released"]["by"] == "ops"
    assert {i["code"] for i in out["issues"] if i["severity"] == "hold"} >= {"mass_deactivation"}  # its history
    assert statuses(env, "classes")["k1"] == "inactive" and people(env)["u3"]["status"] == "active"


def test_process_new_year_from_the_command_line_and_its_help(env, capsys):
    env.process(CLEAN)
    path = env.bundle(with_changes(AUGUST, enrollments_csv=ENROLLMENTS_2028))
    assert main(["--home", str(env.home), "--json", "process", str(path), "--tenant", "lincoln", "--new-year"]) == 0
    assert json.loads(capsys.readouterr().out)["new_year"] is True
    try:
        main(["process", "--help"])
    except SystemExit:
        pass
    assert "--new-year" in capsys.readouterr().out
