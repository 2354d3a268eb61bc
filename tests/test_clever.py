"""Clever SFTP CSV drops land in the same roster, through the same validation, holds and report."""

from __future__ import annotations

import json

from sqlalchemy import select

from processor.apply.store import ENTITY_TABLES
from tests.bundles import with_changes
from tests.conftest import issue_rows

# Column order is free in Clever files; these use a different order in each file on purpose.
SCHOOLS = """\
School_id,School_name,School_number,Nces_id,Low_grade,High_grade
sch1,Lincoln Elementary,101,060000100001,Kindergarten,5
sch2,Lincoln High,102,060000100002,9,12
"""
STUDENTS = """\
Student_id,School_id,First_name,Last_name,Grade,Student_number,State_id,Student_email,DOB,Contact_name,Contact_type,Contact_relationship,Contact_email,Contact_phone,Password
st1,sch1,Jane,Doe,Kindergarten,000123,CA-1,jdoe@lincoln.example,3/7/20,Mary Doe,guardian,Mother,mdoe@mail.example,555-0100,clever-student-secret
st2,sch1,Sam,"Smith, Jr.",1,000124,CA-2,ssmith@lincoln.example,11/30/2019,,,,,,
st3,sch2,José,Núñez,9,000125,CA-3,jnunez@lincoln.example,1/2/2011,"Núñez, Ana",guardian,Mother,anunez@mail.example,,
"""
TEACHERS = """\
School_id,Teacher_id,Last_name,First_name,Teacher_email,Teacher_number,Title,Password
sch1,t1,Martin,Tara,tmartin@lincoln.example,T001,Teacher,clever-teacher-secret
sch2,t2,O'Brien,Pat,pobrien@lincoln.example,T002,Teacher,
"""
STAFF = """\
Staff_id,School_id,First_name,Last_name,Staff_email,Title
sf1,sch1,Sam,Lee,slee@lincoln.example,Principal
"""
# t1 (a sch1 teacher) co-teaches sec2 at sch2.
SECTIONS = """\
Section_id,School_id,Teacher_id,Teacher_2_id,Name,Grade,Course_name,Course_number,Term_name,Term_start,Term_end,Period,Subject
sec1,sch1,t1,,Room 12,Kindergarten,Homeroom K,HR-K,Fall 2026,8/15/26,12/20/2026,1,homeroom/advisory
sec2,sch2,t2,t1,Algebra I - P1,9,Algebra I,ALG1,Fall 2026,8/15/26,12/20/2026,1,math
"""
ENROLLMENTS = """\
School_id,Section_id,Student_id
sch1,sec1,st1
sch1,sec1,st2
sch2,sec2,st3
"""
CLEVER = {"schools.csv": SCHOOLS, "students.csv": STUDENTS, "teachers.csv": TEACHERS, "staff.csv": STAFF,
          "sections.csv": SECTIONS, "enrollments.csv": ENROLLMENTS}


def drop(**files: str | bytes | None) -> dict:
    return with_changes(CLEVER, **files)


def people(env, include_inactive=False) -> dict[str, dict]:
    return {p["sourced_id"]: p for p in env.export(include_inactive=include_inactive)["people"]}


def rows_of(env, table: str, *cols: str) -> dict[str, tuple]:
    t = ENTITY_TABLES[table]
    with env.ctx.engine.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(select(t.c.sourced_id, *[t.c[c] for c in cols])).all()}


def guardians_of(env) -> dict[str, str]:
    return {g["student"]: g["guardian"] for g in env.export()["guardians"]}


def test_a_clever_drop_lands_in_the_roster(env):
    result = env.process(CLEVER)
    assert result.status == "applied" and result.format == "clever"
    assert result.issues == []
    p = people(env)
    contacts = guardians_of(env)
    assert {k: v["role"] for k, v in p.items()} == {
        "st1": "student", "st2": "student", "st3": "student", "t1": "teacher", "t2": "teacher", "sf1": "staff",
        contacts["st1"]: "guardian", contacts["st3"]: "guardian"}
    # A teacher co-teaching a section in another school appears once, linked to both schools.
    assert p["t1"]["schools"] == ["sch1", "sch2"] and p["t1"]["school"] == "sch1"
    assert p["st2"]["family_name"] == "Smith, Jr." and p["t1"]["email"] == "tmartin@lincoln.example"
    roster = env.export()
    assert {s["sourced_id"]: s["identifier"] for s in roster["schools"]} == {
        "sch1": "060000100001", "sch2": "060000100002", "clever-district": ""}
    assert {(e["class"], e["person"], e["role"]) for e in roster["enrollments"]} == {
        ("sec1", "st1", "student"), ("sec1", "st2", "student"), ("sec2", "st3", "student"),
        ("sec1", "t1", "teacher"), ("sec2", "t2", "teacher"), ("sec2", "t1", "teacher")}
    assert {c["sourced_id"]: (c["title"], c["grades"], c["school"]) for c in roster["classes"]} == {
        "sec1": ("Room 12", ["KG"], "sch1"), "sec2": ("Algebra I - P1", ["09"], "sch2")}
    assert result.counts["users"].created == 8 and result.counts["enrollments"].created == 6


def test_grades_and_dates_are_normalised_and_courses_and_terms_come_from_sections(env):
    grades = STUDENTS.replace(",Kindergarten,000123", ",PreKindergarten,000123").replace(",1,000124", ",0,000124")
    sections = SECTIONS.replace("Room 12,Kindergarten", "Room 12,TransitionalKindergarten")
    env.process(drop(students_csv=grades, sections_csv=sections))
    p = rows_of(env, "people", "grades", "data")
    assert p["st1"][0] == "PK" and p["st2"][0] == "KG" and p["st3"][0] == "09"
    assert json.loads(p["st1"][1])["metadata.DOB"] == "2020-03-07"
    assert json.loads(p["st3"][1])["metadata.State_id"] == "CA-3"
    assert rows_of(env, "classes", "grades")["sec1"] == ("TK",)
    terms = rows_of(env, "academic_sessions", "title", "start_date", "end_date", "school_year")
    assert list(terms.values()) == [("Fall 2026", "2026-08-15", "2026-12-20", "2027")]
    courses = rows_of(env, "courses", "title", "course_code")
    assert sorted(courses.values()) == [("Algebra I", "ALG1"), ("Homeroom K", "HR-K")]
    classes = rows_of(env, "classes", "course", "terms", "class_type")
    assert classes["sec1"][1] == classes["sec2"][1] == next(iter(terms))
    assert classes["sec1"][2] == "homeroom" and classes["sec2"][2] == "scheduled"


def test_cr_only_line_ends_and_quoted_names_with_commas_read_the_same(env):
    files = {name: text.replace("\n", "\r").encode("utf-8") for name, text in CLEVER.items()}
    result = env.process(files)
    assert result.status == "applied" and result.issues == []
    assert people(env)["st2"]["family_name"] == "Smith, Jr."
    assert len(env.export()["enrollments"]) == 6


def test_issues_name_the_clever_file_line_and_header(env):
    students = STUDENTS.replace("st2,sch1,Sam,", "st2,sch1,,")                       # line 3: no First_name
    teachers = TEACHERS.replace("pobrien@lincoln.example", "pobrien.lincoln.example")  # line 3: bad email
    sections = SECTIONS.replace("sec2,sch2,t2,t1,", "sec2,sch2,t2,t9,")                # line 3: unknown co-teacher
    enrollments = ENROLLMENTS + "sch2,sec2,st9\nsch1,sec1,st1\n"                     # lines 5-6
    result = env.process(drop(students_csv=students, teachers_csv=teachers, sections_csv=sections,
                              enrollments_csv=enrollments))
    assert result.status == "applied"
    assert issue_rows(result) == [
        ("duplicate_id", "enrollments.csv", 6, "Section_id + Student_id"),
        ("invalid_value", "teachers.csv", 3, "Teacher_email"),
        ("missing_value", "students.csv", 3, "First_name"),
        ("rejected_reference", "enrollments.csv", 3, "Student_id"),
        ("unknown_reference", "enrollments.csv", 5, "Student_id"),
        ("unknown_reference", "sections.csv", 3, "Teacher_2_id"),
    ]
    messages = {(i.file, i.line): i.message for i in result.issues}
    assert messages[("students.csv", 3)].startswith("First_name is blank")
    assert "which was rejected (missing_value on line 3 of students.csv)" in messages[("enrollments.csv", 3)]
    assert "neither in students.csv nor" in messages[("enrollments.csv", 5)]
    assert "names 't9', which is neither in teachers.csv nor" in messages[("sections.csv", 3)]


def test_missing_file_and_missing_column_are_fatal_with_clever_names(env):
    gone = env.process(drop(enrollments_csv=None))
    assert gone.status == "rejected" and issue_rows(gone) == [("missing_file", "enrollments.csv", None, None)]
    headless = env.process(drop(students_csv=STUDENTS.replace("Student_id,", "Pupil,", 1)))
    assert headless.status == "rejected"
    assert ("missing_column", "students.csv", 1, "Student_id") in issue_rows(headless)


def test_single_school_rejects_the_co_teacher_at_their_teachers_csv_line(env):
    env.configure(lincoln={"single_school": True})
    result = env.process(CLEVER)
    assert issue_rows(result, "error") == [
        ("multiple_schools", "teachers.csv", 2, "School_id"),
        ("rejected_reference", "sections.csv", 2, "Teacher_id"),
        ("rejected_reference", "sections.csv", 3, "Teacher_2_id"),
    ]
    assert "t1" not in people(env) and result.counts["users"].rejected == 1


def test_students_need_enrollment_and_required_fields_on_clever(env):
    env.configure(lincoln={"students_need_enrollment": True,
                           "require": {"users": ["email"], "classes": ["grades"], "schools": ["identifier"]}})
    students = STUDENTS.replace("ssmith@lincoln.example", "")   # line 3
    sections = SECTIONS.replace("Algebra I - P1,9,", "Algebra I - P1,,")  # line 3
    enrollments = ENROLLMENTS.replace("sch1,sec1,st1\n", "")
    result = env.process(drop(students_csv=students, sections_csv=sections, enrollments_csv=enrollments))
    assert result.status == "applied"
    assert issue_rows(result, "error") == [
        ("missing_value", "sections.csv", 3, "Grade"),
        ("missing_value", "students.csv", 3, "Student_email"),
        ("rejected_reference", "enrollments.csv", 2, "Student_id"),   # st2
        ("rejected_reference", "enrollments.csv", 3, "Section_id"),   # sec2
        ("rejected_reference", "sections.csv", 3, "Section_id"),      # sec2's two teachers
        ("rejected_reference", "sections.csv", 3, "Section_id"),
        ("student_without_enrollment", "students.csv", 2, None),      # st1: not in enrollments.csv
        ("student_without_enrollment", "students.csv", 4, None),      # st3: their only section was rejected
    ]
    assert set(people(env)) & {"st1", "st2", "st3"} == set()


def test_a_second_full_drop_that_loses_a_school_of_students_is_held(env):
    env.configure(lincoln={"min_deactivated_count": 0})  # a tiny district
    assert env.process(CLEVER).status == "applied"
    students = "\n".join(line for line in STUDENTS.splitlines() if ",sch1," not in line) + "\n"
    enrollments = "\n".join(line for line in ENROLLMENTS.splitlines() if not line.startswith("sch1,")) + "\n"
    held = env.process(drop(students_csv=students, enrollments_csv=enrollments))
    assert held.status == "held"
    assert ("mass_deactivation", "students.csv, teachers.csv, staff.csv", None, "status") in issue_rows(held, "hold")
    assert len(people(env)) == 8


def test_contacts_have_stable_ids_and_a_student_row_per_contact_adds_guardians(env):
    env.process(CLEVER)
    first = guardians_of(env)
    second_contact = "st1,sch1,Jane,Doe,Kindergarten,000123,CA-1,jdoe@lincoln.example,3/7/20,John Doe,guardian,Father,jdoe.sr@mail.example,555-0101,\n"
    again = env.process(drop(students_csv=STUDENTS.replace("555-0100", "555-0199") + second_contact))
    assert again.status == "applied" and again.issues == []
    links = env.export()["guardians"]
    assert {g["guardian"] for g in links if g["student"] == "st1"} >= {first["st1"]}
    assert len([g for g in links if g["student"] == "st1"]) == 2
    # John is new; Mary has a new phone; Jane has a second guardian.
    assert again.counts["users"].created == 1 and again.counts["users"].updated == 2


def test_passwords_are_never_stored(env):
    env.process(CLEVER)
    if env.store_url is None:
        db = (env.home / "rosterdrop.db").read_bytes() + b"".join(
            p.read_bytes() for p in env.home.glob("rosterdrop.db-*"))
        assert b"clever-student-secret" not in db and b"clever-teacher-secret" not in db
    data = rows_of(env, "people", "data")
    assert all("Password" not in row[0] and "secret" not in row[0] for row in data.values())


def test_a_teacher_listed_once_per_school_and_also_in_staff_is_one_person(env):
    teachers = TEACHERS + "sch2,t1,Martin,Tara,tmartin@lincoln.example,T001,Teacher,clever-teacher-secret\n"
    staff = STAFF + "t2,sch1,Pat,O'Brien,pobrien@lincoln.example,Coach\n"
    result = env.process(drop(teachers_csv=teachers, staff_csv=staff))
    assert result.status == "applied" and result.issues == []
    p = people(env)
    assert p["t1"]["schools"] == ["sch1", "sch2"] and p["t2"]["role"] == "teacher"
    assert p["t2"]["schools"] == ["sch2", "sch1"]


def test_staff_titles_can_grant_an_app_role_through_role_overrides(env):
    env.configure(lincoln={"role_overrides": [{"column": "metadata.Title", "value": "principal",
                                               "role": "school_admin"}]})
    env.process(CLEVER)
    p = people(env)
    assert p["sf1"]["role"] == "school_admin" and p["t1"]["role"] == "teacher"


def test_the_clever_sample_does_what_its_readme_says(sqlite_env):
    from pathlib import Path

    result = sqlite_env.process(Path(__file__).resolve().parent.parent / "sample_drops" / "clever")
    assert result.status == "applied" and result.format == "clever" and result.issues == []
    c = result.counts
    assert (c["users"].created, c["orgs"].created, c["classes"].created, c["enrollments"].created) == (27, 3, 6, 21)
    p = people(sqlite_env)
    assert p["T-3005"]["school"] == "1201" and p["T-3005"]["schools"] == ["1201", "1305"]
    assert p["500104"]["family_name"] == "Delacroix, Jr." and p["S-4001"]["role"] == "staff"
    assert len(sqlite_env.export()["guardians"]) == 10
    grades = rows_of(sqlite_env, "people", "grades")
    assert (grades["500101"], grades["500103"], grades["500106"], grades["500104"]) == (("KG",), ("PK",), ("TK",),
                                                                                        ("01",))
    terms = sorted(rows_of(sqlite_env, "academic_sessions", "title", "start_date", "end_date").values())
    assert terms == [("2025-2026", "2025-08-13", "2026-06-04"), ("Fall 2025", "2025-08-13", "2025-12-19")]
    db = (sqlite_env.home / "rosterdrop.db").read_bytes()
    assert b"Pw101005!" not in db and b"Tch-3001-pw" not in db
