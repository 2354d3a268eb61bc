"""Validation, as specifications: a tiny bundle in, the run's issues out as (code, file, line, field)."""

from __future__ import annotations

from tests.bundles import CLASSES, CLEAN, ENROLLMENTS, ORGS, USERS, with_changes
from tests.conftest import issue_rows

USERS_HEADER = USERS.splitlines()[0]
ENR_HEADER = ENROLLMENTS.splitlines()[0]


def test_clean_bundle_applies_with_no_issues(sqlite_env):
    result = sqlite_env.process(CLEAN)
    assert result.status == "applied"
    assert result.exit_code() == 0
    assert result.issues == []
    assert result.counts["users"].created == 6
    assert result.counts["enrollments"].created == 4


def test_blank_required_value_rejects_the_row_and_cascades_to_its_enrollments(sqlite_env):
    users = USERS.replace("u2,active,,true,s1,student,jdoe,,Jane,", "u2,active,,true,s1,student,jdoe,,,")
    result = sqlite_env.process(with_changes(CLEAN, users_csv=users))
    assert result.status == "applied"
    assert issue_rows(result) == [
        ("missing_value", "users.csv", 3, "givenName"),
        ("rejected_reference", "enrollments.csv", 3, "userSourcedId"),
    ]
    cascade = next(i for i in result.issues if i.code == "rejected_reference")
    assert "missing_value on line 3 of users.csv" in cascade.message
    assert result.counts["users"].rejected == 1
    assert result.counts["enrollments"].rejected == 1
    people = {p["sourced_id"] for p in sqlite_env.export()["people"]}
    assert "u2" not in people and "u3" in people


def test_invalid_enum_is_an_error_and_bad_optional_values_are_alerts(sqlite_env):
    users = USERS.replace("u3,active,,true,s2,student", "u3,active,,true,s2,studnet").replace(
        "tmartin@lincoln.example", "tmartin-at-lincoln")
    enr = ENROLLMENTS.replace("e3,active,,k2,s2,u3,student,false,2026-08-15,", "e3,active,,k2,s2,u2,student,false,1/05/2023,")
    classes = CLASSES.replace("ALG1-1,scheduled", "ALG1-1,lecture")
    result = sqlite_env.process(with_changes(CLEAN, users_csv=users, enrollments_csv=enr, classes_csv=classes))
    assert issue_rows(result, "error") == [
        ("invalid_value", "classes.csv", 3, "classType"),
        ("invalid_value", "users.csv", 4, "role"),
        ("rejected_reference", "enrollments.csv", 4, "classSourcedId"),
        ("rejected_reference", "enrollments.csv", 5, "classSourcedId"),
    ]
    assert issue_rows(result, "alert") == [
        ("invalid_value", "enrollments.csv", 4, "beginDate"),
        ("invalid_value", "users.csv", 2, "email"),
    ]
    date_issue = next(i for i in result.issues if i.field == "beginDate")
    assert "YYYY-MM-DD" in date_issue.message and date_issue.value == "1/05/2023"


def test_duplicate_sourced_id_keeps_the_first_row(sqlite_env):
    users = USERS + "u1,active,,true,s1,teacher,tm2,,Tom,Martin,,T009,tm2@lincoln.example,,,,,,\n"
    result = sqlite_env.process(with_changes(CLEAN, users_csv=users))
    assert issue_rows(result) == [("duplicate_id", "users.csv", 8, "sourcedId")]
    assert "line 2" in result.issues[0].message
    person = next(p for p in sqlite_env.export()["people"] if p["sourced_id"] == "u1")
    assert person["given_name"] == "Tara"


def test_unknown_references_reject_rows_and_optional_links_are_dropped_with_an_alert(sqlite_env):
    enr = ENROLLMENTS + "e5,active,,k9,s1,u1,teacher,true,,\n"
    users = USERS.replace('g1,active,,true,s1,parent,mdoe,,Mary,Doe,,,mdoe@mail.example,,,"u2,u3"',
                          'g1,active,,true,s1,parent,mdoe,,Mary,Doe,,,mdoe@mail.example,,,"u2,u3,u77"')
    result = sqlite_env.process(with_changes(CLEAN, enrollments_csv=enr, users_csv=users))
    assert issue_rows(result) == [
        ("dangling_link", "users.csv", 6, "agentSourcedIds"),
        ("unknown_reference", "enrollments.csv", 6, "classSourcedId"),
    ]
    assert result.counts["enrollments"].created == 4


def test_references_into_a_file_the_bundle_lacks_are_one_alert_per_field(sqlite_env):
    files = with_changes(CLEAN, courses_csv=None, academicSessions_csv=None)
    result = sqlite_env.process(files)
    assert result.status == "applied"
    assert issue_rows(result) == [
        ("references_not_checked", "classes.csv", None, "courseSourcedId"),
        ("references_not_checked", "classes.csv", None, "termSourcedIds"),
    ]


def test_missing_required_file_rejects_the_run(sqlite_env):
    result = sqlite_env.process(with_changes(CLEAN, enrollments_csv=None))
    assert result.status == "rejected" and result.exit_code() == 2
    assert issue_rows(result) == [("missing_file", "enrollments.csv", None, None)]
    assert sqlite_env.export()["people"] == []


def test_manifest_naming_a_missing_file_rejects_and_absent_skips(sqlite_env):
    manifest = ("propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\nfile.orgs,bulk\nfile.users,bulk\n"
                "file.classes,bulk\nfile.enrollments,bulk\nfile.courses,bulk\nfile.academicSessions,bulk\n"
                "file.demographics,bulk\n")
    result = sqlite_env.process(with_changes(CLEAN, manifest_csv=manifest))
    assert issue_rows(result) == [("missing_file", "demographics.csv", None, None)]
    assert result.status == "rejected"
    ok = sqlite_env.process(with_changes(CLEAN, manifest_csv=manifest.replace("file.demographics,bulk",
                                                                             "file.demographics,absent")))
    assert ok.status == "applied"


def test_missing_required_column_is_fatal_and_names_the_column(sqlite_env):
    users = "\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != 8) for line in USERS.splitlines())
    result = sqlite_env.process(with_changes(CLEAN, users_csv=users + "\n"))
    assert result.status == "rejected"
    assert ("missing_column", "users.csv", 1, "givenName") in issue_rows(result)


def test_unknown_column_is_an_alert_and_metadata_columns_are_kept(sqlite_env):
    users = USERS.replace("metadata.MembeanSchoolAdmin", "favoriteColor")
    result = sqlite_env.process(with_changes(CLEAN, users_csv=users))
    assert result.status == "applied"
    assert issue_rows(result) == [("unknown_column", "users.csv", 1, "favoriteColor")]


def test_policy_require_rejects_rows_missing_policy_fields(sqlite_env):
    sqlite_env.configure(lincoln={"require": {"users": ["email"], "students": ["identifier"], "classes": ["grades"],
                                              "schools": ["identifier"]}})
    users = USERS.replace("boss@lincoln.example", "").replace(",000124,", ",,")
    classes = CLASSES.replace('Algebra I - P1,"09,10"', "Algebra I - P1,")
    orgs = ORGS.replace("060000100002", "")
    result = sqlite_env.process(with_changes(CLEAN, users_csv=users, classes_csv=classes, orgs_csv=orgs))
    errors = issue_rows(result, "error")
    assert ("missing_value", "users.csv", 7, "email") in errors
    assert ("missing_value", "users.csv", 4, "identifier") in errors
    assert ("missing_value", "classes.csv", 3, "grades") in errors
    assert ("missing_value", "orgs.csv", 4, "identifier") in errors
    # The rejected school cascades to its class, people and enrollments.
    assert ("rejected_reference", "classes.csv", 3, "schoolSourcedId") in errors
    assert result.counts["orgs"].rejected == 1


def test_policy_require_on_a_column_the_file_lacks_is_fatal(sqlite_env):
    sqlite_env.configure(lincoln={"require": {"users": ["metadata.stateId"]}})
    result = sqlite_env.process(CLEAN)
    assert result.status == "rejected"
    assert issue_rows(result) == [("missing_column", "users.csv", 1, "metadata.stateId")]


def test_single_school_policy_rejects_people_at_two_schools(sqlite_env):
    sqlite_env.configure(lincoln={"single_school": True})
    users = USERS.replace("u4,active,,true,s2,teacher", 'u4,active,,true,"s1,s2",teacher')
    result = sqlite_env.process(with_changes(CLEAN, users_csv=users))
    assert issue_rows(result) == [
        ("multiple_schools", "users.csv", 5, "orgSourcedIds"),
        ("rejected_reference", "enrollments.csv", 5, "userSourcedId"),
    ]
    # The district org is not a school: the district admin at d1 is fine.
    assert result.counts["users"].rejected == 1


def test_students_need_enrollment_policy(sqlite_env):
    sqlite_env.configure(lincoln={"students_need_enrollment": True})
    enr = "\n".join(line for line in ENROLLMENTS.splitlines() if not line.startswith("e3")) + "\n"
    result = sqlite_env.process(with_changes(CLEAN, enrollments_csv=enr))
    # k2 lost its only student: a data check (alert) says so beside the policy's error.
    assert issue_rows(result) == [("class_without_students", "classes.csv", 3, None),
                                  ("student_without_enrollment", "users.csv", 4, None)]
    assert "u3" not in {p["sourced_id"] for p in sqlite_env.export()["people"]}


def test_students_need_enrollment_counts_an_enrollment_whose_class_was_rejected_as_none(sqlite_env):
    sqlite_env.configure(lincoln={"students_need_enrollment": True})
    classes = CLASSES.replace("k2,active,,Algebra I - P1", "k2,active,,")
    result = sqlite_env.process(with_changes(CLEAN, classes_csv=classes))
    rows = issue_rows(result)
    assert ("missing_value", "classes.csv", 3, "title") in rows
    assert ("student_without_enrollment", "users.csv", 4, None) in rows


def test_every_issue_names_its_file_and_the_line_the_district_sees(sqlite_env):
    # A quoted value spanning two lines shifts every later line by one.
    users = USERS.replace("Tara,Martin,,T001", 'Tara,Martin,,"T0\n01"') + \
        "u9,active,,true,s1,student,x9,,,Nine,,,x9@lincoln.example,,,,03,,\n"
    result = sqlite_env.process(with_changes(CLEAN, users_csv=users))
    assert issue_rows(result) == [("missing_value", "users.csv", 9, "givenName")]
