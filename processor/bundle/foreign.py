"""Roster formats Rosterdrop does not read, recognised so that the district hears what it sent and what to send
instead (one `bad_bundle` issue), not a dozen missing_file / missing_column errors about OneRoster files.

Recognised: Microsoft School Data Sync CSV v1 (School.csv, Section.csv, Student.csv, ...) and v2.1 (OneRoster-like
file names without OneRoster's status, enabledUser and roleType columns), Canvas SIS import CSV (users.csv with
user_id and login_id, ...), and Clever files mixed with OneRoster files. Only file names and header lines are
looked at, so this costs nothing on a real OneRoster drop.
"""

from __future__ import annotations

import csv

from processor.bundle.sniff import header, manifest_version
from processor.bundle.unpack import Unpacked

INSTEAD = ("Export a OneRoster 1.1 or 1.2 CSV bundle (a zip of orgs.csv, users.csv, classes.csv, enrollments.csv, "
           "...) from your SIS, or Clever's SFTP CSV files (schools.csv, students.csv, teachers.csv, sections.csv, "
           "enrollments.csv), and send that instead.")

SDS_V1_FILES = ("school.csv", "section.csv", "student.csv", "teacher.csv", "studentenrollment.csv",
                "teacherroster.csv")
CLEVER_IDS = {"schools.csv": "school_id", "students.csv": "student_id", "teachers.csv": "teacher_id",
              "staff.csv": "staff_id", "sections.csv": "section_id"}
ONEROSTER_CORE = ("orgs.csv", "users.csv", "classes.csv", "enrollments.csv")


def detect_foreign(raw: Unpacked, ignored: list[str]) -> str | None:
    """The message of the one bad_bundle issue for a drop in another known format, or None.

    ignored: names of the CSV files unpack skipped (not OneRoster or Clever names), as sent."""
    found = _sds_v1(ignored) or _sds_v21(raw) or _canvas(raw) or _clever_mixed(raw)
    if found is None:
        return None
    what, evidence = found
    return f"This bundle is {what} ({evidence}), not OneRoster, so it cannot be read. {INSTEAD}"


def _columns(raw: Unpacked, name: str) -> set[str]:
    try:
        names = header(raw.files.get(name))
    except (csv.Error, UnicodeError, ValueError):  # an unreadable header is the readers' to report, not ours
        return set()
    return {n.lower() for n in names} if names else set()


def _sds_v1(ignored: list[str]) -> tuple[str, str] | None:
    names = {n.replace("\\", "/").rsplit("/", 1)[-1].lower() for n in ignored}
    present = [n for n in SDS_V1_FILES if n in names]
    if len(present) < 2:
        return None
    shown = ", ".join(_sds_name(n) for n in present[:4])
    return "Microsoft School Data Sync (SDS) v1 CSV", f"{shown}"


def _sds_name(lower: str) -> str:
    return {"school.csv": "School.csv", "section.csv": "Section.csv", "student.csv": "Student.csv",
            "teacher.csv": "Teacher.csv", "studentenrollment.csv": "StudentEnrollment.csv",
            "teacherroster.csv": "TeacherRoster.csv"}[lower]


def _sds_v21(raw: Unpacked) -> tuple[str, str] | None:
    if manifest_version(raw.files) is not None:  # a manifest that names a OneRoster version is OneRoster
        return None
    roles, users, enr = _columns(raw, "roles.csv"), _columns(raw, "users.csv"), _columns(raw, "enrollments.csv")
    signs = []
    # OneRoster 1.2's roles.csv has a sourcedId and a roleType; SDS v2.1's has neither.
    if roles and "usersourcedid" in roles and not roles & {"roletype", "sourcedid"}:
        signs.append("roles.csv without sourcedId and roleType")
    # Every OneRoster users.csv has status or enabledUser; SDS v2.1's has neither, nor a role.
    if users and {"sourcedid", "username"} <= users and not users & {"status", "enableduser", "role",
                                                                      "datelastmodified"}:
        signs.append("users.csv without status, enabledUser and role")
    if not signs:  # an enrollments.csv without sourcedId alone is more likely a careless OneRoster export
        return None
    if enr and {"classsourcedid", "usersourcedid", "role"} <= enr and "sourcedid" not in enr:
        signs.append("enrollments.csv without sourcedId")
    return "Microsoft School Data Sync (SDS) v2.1 CSV", "; ".join(signs[:2])


def _canvas(raw: Unpacked) -> tuple[str, str] | None:
    signs = []
    users, courses, enr = _columns(raw, "users.csv"), _columns(raw, "courses.csv"), _columns(raw, "enrollments.csv")
    if {"user_id", "login_id"} <= users:
        signs.append("users.csv with user_id and login_id")
    if {"course_id", "short_name", "long_name"} <= courses:
        signs.append("courses.csv with course_id, short_name and long_name")
    if not signs:  # enrollments.csv alone does not say Canvas
        return None
    if "user_id" in enr and "role" in enr and enr & {"course_id", "section_id"}:
        signs.append("enrollments.csv with course_id/section_id, user_id and role")
    return "a Canvas SIS import CSV", "; ".join(signs[:2])


def _clever_mixed(raw: Unpacked) -> tuple[str, str] | None:
    clever = [n for n, col in CLEVER_IDS.items() if col in _columns(raw, n)]
    oneroster = [n for n in ONEROSTER_CORE if n in raw.files and "sourcedid" in _columns(raw, n)]
    if not clever or not oneroster:
        return None
    return ("a mix of Clever files and OneRoster files",
            f"Clever's {', '.join(clever[:3])} beside OneRoster's {', '.join(oneroster[:3])}; send one format only")
