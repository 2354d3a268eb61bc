"""Bundles in another roster format are refused with one bad_bundle issue that names the format and says
what to export instead (CONTRACT.md section 12), not with errors about OneRoster's files and columns."""

from __future__ import annotations

import pytest

from tests.bundles import CLEAN

SDS_V1 = {
    "School.csv": "SIS ID,Name,School Number\n1,Lincoln Elementary,100\n",
    "Section.csv": "SIS ID,School SIS ID,Section Name\n10,1,Room 12\n",
    "Student.csv": "SIS ID,School SIS ID,Username,First Name,Last Name\n20,1,jdoe,Jane,Doe\n",
    "Teacher.csv": "SIS ID,School SIS ID,Username,First Name,Last Name\n30,1,tmartin,Tara,Martin\n",
    "StudentEnrollment.csv": "Section SIS ID,SIS ID\n10,20\n",
    "TeacherRoster.csv": "Section SIS ID,SIS ID\n10,30\n",
}
SDS_V21 = {
    "orgs.csv": "sourcedId,name,type,parentSourcedId\nd1,Lincoln Unified,district,\ns1,Lincoln Elementary,school,d1\n",
    "users.csv": "sourcedId,username,familyName,givenName,password,activeDirectoryMatchId,email,phone,sms\n"
                 "u1,tmartin@lincoln.example,Martin,Tara,,,tmartin@lincoln.example,,\n",
    "roles.csv": "userSourcedId,orgSourcedId,role,sessionSourcedIds,grade,isPrimary,roleStartDate,roleEndDate\n"
                 "u1,s1,teacher,,,true,,\n",
    "classes.csv": "sourcedId,orgSourcedId,title,sessionSourcedIds,courseSourcedId\nk1,s1,Room 12,,\n",
    "enrollments.csv": "classSourcedId,userSourcedId,role\nk1,u1,teacher\n",
}
CANVAS = {
    "users.csv": "user_id,login_id,first_name,last_name,email,status\nu1,tmartin,Tara,Martin,t@l.example,active\n",
    "courses.csv": "course_id,short_name,long_name,account_id,term_id,status\nc1,ALG1,Algebra I,,,active\n",
    "sections.csv": "section_id,course_id,name,status\nsec1,c1,Algebra I P1,active\n",
    "enrollments.csv": "course_id,user_id,role,section_id,status\nc1,u1,teacher,sec1,active\n",
}
CLEVER_STUDENTS = "School_id,Student_id,First_name,Last_name\ns1,st1,Jane,Doe\n"


@pytest.mark.parametrize("files, named", [
    (SDS_V1, "Microsoft School Data Sync (SDS) v1 CSV"),
    (SDS_V21, "Microsoft School Data Sync (SDS) v2.1 CSV"),
    (CANVAS, "a Canvas SIS import CSV"),
    ({**CLEAN, "students.csv": CLEVER_STUDENTS}, "a mix of Clever files and OneRoster files"),
], ids=["sds-v1", "sds-v2.1", "canvas", "clever-mixed"])
def test_another_format_is_refused_with_one_issue_naming_it(sqlite_env, files, named):
    result = sqlite_env.process(files)
    assert result.status == "rejected" and result.exit_code() == 2
    assert [(i.severity, i.code, i.file) for i in result.issues] == [("error", "bad_bundle", "drop1.zip")]
    message = result.issues[0].message
    assert message.startswith(f"This bundle is {named} (")
    assert "Export a OneRoster 1.1 or 1.2 CSV bundle" in message and "Clever's SFTP CSV files" in message
    assert sqlite_env.export()["people"] == []


def test_sds_v1_in_a_folder_is_named_too(sqlite_env):
    path = sqlite_env.bundle(SDS_V1, as_zip=False)
    result = sqlite_env.process(path)
    assert [i.code for i in result.issues] == ["bad_bundle"]
    assert "School.csv, Section.csv, Student.csv, Teacher.csv" in result.issues[0].message


def test_clever_files_in_a_subfolder_of_the_zip_are_read_as_clever(sqlite_env):
    from pathlib import Path

    samples = Path(__file__).resolve().parent.parent / "sample_drops" / "clever"
    files = {f"export/clever/{p.name}": p.read_bytes() for p in samples.glob("*.csv")}
    result = sqlite_env.process(files)
    assert result.format == "clever" and result.status == "applied"


def test_oneroster_with_a_stray_canvas_looking_column_is_still_oneroster(sqlite_env):
    # A OneRoster users.csv that carries a metadata column named like Canvas's is OneRoster all the same.
    users = CLEAN["users.csv"].replace("metadata.MembeanSchoolAdmin", "metadata.login_id")
    result = sqlite_env.process({**CLEAN, "users.csv": users})
    assert result.status == "applied"


def test_a_oneroster_enrollments_file_without_sourcedid_is_a_missing_column_not_another_format(sqlite_env):
    enr = "\n".join(",".join(line.split(",")[1:]) for line in CLEAN["enrollments.csv"].splitlines()) + "\n"
    result = sqlite_env.process({**CLEAN, "enrollments.csv": enr})
    assert result.status == "rejected"
    assert ("missing_column", "enrollments.csv") in [(i.code, i.file) for i in result.issues]
    assert not any(i.message.startswith("This bundle is") for i in result.issues)
