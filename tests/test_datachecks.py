"""Data checks (CONTRACT.md section 12): alerts an admin fixes in the SIS; they never reject a row or hold."""

from __future__ import annotations

from tests.bundles import CLEAN, ENROLLMENTS, SESSIONS, USERS, with_changes
from tests.test_apply import DELTA_MANIFEST, ENR_HEADER, USERS_HEADER, drop_lines, people

DATA_CHECKS = ("duplicate_email", "duplicate_username", "class_without_teacher", "class_without_students",
               "student_without_class", "session_dates")


def checks(result) -> list[tuple]:
    return sorted((i.code, i.file, i.line, i.sourced_id) for i in result.issues if i.code in DATA_CHECKS)


def first(result, code: str):
    return next(i for i in result.issues if i.code == code)


def test_a_clean_bundle_raises_no_data_check(env):
    result = env.process(CLEAN)
    assert result.status == "applied"
    assert checks(result) == []


def test_two_people_sharing_an_email_are_each_alerted_ignoring_case(env):
    users = USERS.replace("jdoe@lincoln.example", " TMartin@Lincoln.example")
    result = env.process(with_changes(CLEAN, users_csv=users))
    assert result.status == "applied"
    assert checks(result) == [("duplicate_email", "users.csv", 2, "u1"), ("duplicate_email", "users.csv", 3, "u2")]
    alert = first(result, "duplicate_email")
    assert alert.severity == "alert" and alert.field == "email" and alert.value == "tmartin@lincoln.example"
    assert "sourcedId u2" in alert.message and "own email in your SIS" in alert.message
    # Both records were imported as sent.
    assert people(env)["u2"]["email"] == "TMartin@Lincoln.example"


def test_a_shared_username_names_how_many_share_it(env):
    users = USERS.replace(",jdoe,", ",TMARTIN,").replace(",mdoe,", ",tmartin,")
    result = env.process(with_changes(CLEAN, users_csv=users))
    assert [c[2] for c in checks(result)] == [2, 3, 6]
    assert all(c[0] == "duplicate_username" for c in checks(result))
    assert "3 active people share this username (this record and sourcedId u2 and 1 more)" in \
        first(result, "duplicate_username").message


def test_deleted_and_rejected_people_share_nothing(env):
    users = (USERS.replace("u2,active,,true,s1,student,jdoe,,Jane,Doe,,000123,jdoe@",
                           "u2,tobedeleted,,true,s1,student,jdoe,,Jane,Doe,,000123,tmartin@")
             .replace("u3,active,,true,s2,student,josé,,José,Núñez,,000124,jnunez@",
                      "u3,active,,true,s2,student,josé,,,Núñez,,000124,tmartin@"))  # no givenName: rejected
    result = env.process(with_changes(CLEAN, users_csv=users))
    assert [i.code for i in result.issues if i.code.startswith("duplicate_")] == []


def test_a_delta_person_is_checked_against_the_stored_roster(env):
    env.process(CLEAN)
    users = USERS_HEADER + "u9,active,,true,s1,teacher,newbie,,New,Teacher,,T009,JDOE@lincoln.example,,,,,,\n"
    enr = ENR_HEADER + "e9,active,,k1,s1,u9,teacher,false,,\n"
    result = env.process({"manifest.csv": DELTA_MANIFEST, "users.csv": users, "enrollments.csv": enr})
    assert result.status == "applied"
    assert checks(result) == [("duplicate_email", "users.csv", 2, "u9")]
    assert "sourcedId u2" in first(result, "duplicate_email").message
    # A delta that changes the stored person's email resolves it: the drop's value wins over the stored one.
    users2 = USERS_HEADER + USERS.splitlines()[2].replace("jdoe@lincoln.example", "jane@lincoln.example") + "\n"
    result = env.process({"manifest.csv": DELTA_MANIFEST, "users.csv": users2, "enrollments.csv": ENR_HEADER})
    assert result.status == "applied" and people(env)["u2"]["email"] == "jane@lincoln.example"
    assert checks(result) == []


def test_a_class_without_a_teacher_and_a_class_without_students(env):
    enr = drop_lines(ENROLLMENTS, "e4,", "e2,")
    result = env.process(with_changes(CLEAN, enrollments_csv=enr))
    assert result.status == "applied"
    assert checks(result) == [("class_without_students", "classes.csv", 2, "k1"),
                              ("class_without_teacher", "classes.csv", 3, "k2"),
                              ("student_without_class", "users.csv", 3, "u2")]
    assert "Assign the class a teacher in your SIS" in first(result, "class_without_teacher").message
    assert {c["sourced_id"] for c in env.export()["classes"]} == {"k1", "k2"}  # both imported


def test_a_delta_of_enrollments_counts_the_stored_ones(env):
    env.process(CLEAN)
    # k2's teacher enrollment goes; k1 keeps its stored teacher and student. The delta restates classes.
    manifest = DELTA_MANIFEST.replace("file.classes,absent", "file.classes,delta")
    classes = CLEAN["classes.csv"]
    enr = ENR_HEADER + "e4,tobedeleted,,k2,s2,u4,teacher,true,,\n"
    result = env.process({"manifest.csv": manifest, "classes.csv": classes, "users.csv": USERS_HEADER,
                          "enrollments.csv": enr})
    assert result.status == "applied"
    assert checks(result) == [("class_without_teacher", "classes.csv", 3, "k2")]


def test_student_without_class_is_left_to_the_policy_when_it_rejects_them(env):
    env.configure(lincoln={"students_need_enrollment": True})
    result = env.process(with_changes(CLEAN, enrollments_csv=drop_lines(ENROLLMENTS, "e2,")))
    assert ("student_without_enrollment", "users.csv", 3) in [(i.code, i.file, i.line) for i in result.issues]
    assert [c for c in checks(result) if c[0] == "student_without_class"] == []


def test_session_dates_backwards_or_outside_the_parent(env):
    sessions = SESSIONS + ("t2,active,,Spring,semester,2027-01-05,2027-07-15,y1,2027\n"
                           "g1,active,,Q1,gradingPeriod,2026-10-30,2026-09-01,t1,2027\n")
    result = env.process(with_changes(CLEAN, academicSessions_csv=sessions))
    assert result.status == "applied"
    assert checks(result) == [("session_dates", "academicSessions.csv", 4, "t2"),
                              ("session_dates", "academicSessions.csv", 5, "g1")]
    by_id = {i.sourced_id: i for i in result.issues if i.code == "session_dates"}
    assert by_id["g1"].field == "endDate" and "ends (2026-09-01) before it starts (2026-10-30)" in by_id["g1"].message
    assert by_id["t2"].field == "parentSourcedId"
    assert "outside its parent session y1 (2026-08-01 to 2027-06-30)" in by_id["t2"].message


def test_data_checks_never_hold_or_reject(env):
    users = USERS.replace("jdoe@lincoln.example", "tmartin@lincoln.example")
    enr = drop_lines(ENROLLMENTS, "e4,", "e2,")
    result = env.process(with_changes(CLEAN, users_csv=users, enrollments_csv=enr))
    assert result.status == "applied"
    assert {i.severity for i in result.issues} == {"alert"}
    assert result.counts["users"].rejected == 0 and result.counts["users"].created == 6


def test_the_report_has_a_data_checks_section_with_counts_and_first_rows(env):
    from pathlib import Path

    users = USERS.replace("jdoe@lincoln.example", "tmartin@lincoln.example")
    enr = drop_lines(ENROLLMENTS, "e4,")
    result = env.process(with_changes(CLEAN, users_csv=users, enrollments_csv=enr))
    text = (Path(result.report).parent / "report.txt").read_text()
    section = text.split("DATA CHECKS", 1)[1].split("TOTALS", 1)[0]
    assert "Two people share an email" in section and "A class has no teacher" in section
    assert "users.csv line 3, record u2, email = \"tmartin@lincoln.example\"" in section
    assert "classes.csv line 3, record k2" in section
    assert "ALERTS" not in text  # data checks are listed once, in their own section
    html = Path(result.report).read_text()
    assert "Data checks" in html and "Two people share an email" in html


def test_a_delta_deleting_one_of_a_students_two_classes_leaves_them_with_one(env):
    env.configure(lincoln={"min_deactivated_count": 0, "max_deactivated_percent": 100})
    env.process(with_changes(CLEAN, enrollments_csv=ENROLLMENTS + "e5,active,,k2,s2,u2,student,false,,\n"))
    u2 = USERS_HEADER + USERS.splitlines()[2] + "\n"
    result = env.process({"manifest.csv": DELTA_MANIFEST, "users.csv": u2,
                          "enrollments.csv": ENR_HEADER + "e2,tobedeleted,,k1,s1,u2,student,false,,\n"})
    assert result.status == "applied"
    assert [c for c in checks(result) if c[0] == "student_without_class"] == []
    result = env.process({"manifest.csv": DELTA_MANIFEST, "users.csv": u2.replace("jdoe@", "jane@"),
                          "enrollments.csv": ENR_HEADER + "e5,tobedeleted,,k2,s2,u2,student,false,,\n"})
    assert result.status == "applied"
    assert [c for c in checks(result) if c[0] == "student_without_class"] == [
        ("student_without_class", "users.csv", 2, "u2")]
