"""OneRoster 1.2 drops: roles.csv gives roles and schools, and the rest lands exactly as 1.1 does."""

from __future__ import annotations

import json

from sqlalchemy import select

from processor.apply.store import ENTITY_TABLES
from tests.bundles import CLASSES, COURSES, ENROLLMENTS, ORGS, SESSIONS, with_changes
from tests.conftest import issue_rows

# users.csv of 1.2: no role, no orgSourcedIds; the new columns at the end. u1's password must never be stored.
USERS = """\
sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,userMasterIdentifier,resourceSourcedIds,preferredGivenName,preferredMiddleName,preferredFamilyName,primaryOrgSourcedId,pronouns
u1,active,,true,tmartin,,Tara,Martin,,T001,tmartin@lincoln.example,,,,,users-csv-secret,M-001,,Tee,,,,she/her
u2,active,,true,jdoe,,Jane,Doe,,000123,jdoe@lincoln.example,,,g1,03,,M-002,,,,,s1,
u3,active,,true,jnunez,,José,Núñez,,000124,jnunez@lincoln.example,,,g1,09,,M-003,,Pepe,,,s2,he/him
u4,active,,true,pobrien,,Pat,O'Brien,,T002,pobrien@lincoln.example,,,,,,M-004,,,,,s2,they/them
g1,active,,true,mdoe,,Mary,Doe,,,mdoe@mail.example,,,"u2,u3",,,,,,,,,
a1,active,,true,boss,,Bo,Ss,,,boss@lincoln.example,,,,,,,,,,,d1,
"""
# u1 teaches at s1 (primary) and also at s2 (secondary, listed first on purpose).
ROLES = """\
sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId,userProfileSourcedId
r1,active,,u1,secondary,teacher,2026-08-01,,s2,
r2,active,,u1,primary,teacher,2026-08-01,,s1,p1
r3,active,,u2,primary,student,,,s1,
r4,active,,u3,primary,student,,,s2,
r5,active,,u4,primary,teacher,,,s2,
r6,active,,g1,primary,parent,,,s1,
r7,active,,a1,primary,districtAdministrator,,,d1,
"""
PROFILES = """\
sourcedId,status,dateLastModified,userSourcedId,profileType,vendorId,applicationId,description,credentialType,username,password
p1,active,,u1,lms,acme,,,password,tmartin,profile-csv-secret
"""
MANIFEST = """\
propertyName,value
manifest.version,1.0
oneroster.version,1.2
file.academicSessions,bulk
file.classes,bulk
file.courses,bulk
file.demographics,absent
file.enrollments,bulk
file.orgs,bulk
file.roles,bulk
file.userProfiles,bulk
file.users,bulk
"""
BUNDLE = {"manifest.csv": MANIFEST, "orgs.csv": ORGS, "academicSessions.csv": SESSIONS, "courses.csv": COURSES,
          "classes.csv": CLASSES, "users.csv": USERS, "roles.csv": ROLES, "userProfiles.csv": PROFILES,
          "enrollments.csv": ENROLLMENTS}
ROLES_HEADER = ROLES.splitlines()[0] + "\n"
USERS_HEADER = USERS.splitlines()[0] + "\n"


def people(env, include_inactive=False) -> dict[str, dict]:
    return {p["sourced_id"]: p for p in env.export(include_inactive=include_inactive)["people"]}


def with_files(**files: str | bytes | None) -> dict:
    return with_changes(BUNDLE, **files)


def stored_data(env, sourced_id: str) -> dict:
    t = ENTITY_TABLES["people"]
    with env.ctx.engine.connect() as conn:
        return json.loads(conn.execute(select(t.c.data).where(t.c.sourced_id == sourced_id)).scalar_one())


def test_roles_give_app_roles_every_school_and_the_primary_roles_school(env):
    result = env.process(BUNDLE)
    assert result.status == "applied" and result.format == "oneroster-1.2"
    assert issue_rows(result) == [("unsupported_file", "userProfiles.csv", None, None)]
    p = people(env)
    assert {k: v["role"] for k, v in p.items()} == {
        "u1": "teacher", "u2": "student", "u3": "student", "u4": "teacher", "g1": "guardian",
        "a1": "district_admin"}
    # A secondary role at a second school: both schools; the primary role's school is the person's school.
    assert p["u1"]["schools"] == ["s1", "s2"] and p["u1"]["school"] == "s1"
    assert p["u3"]["schools"] == ["s2"] and p["a1"]["schools"] == [] and p["a1"]["school"] is None
    roster = env.export()
    assert {(g["student"], g["guardian"]) for g in roster["guardians"]} == {("u2", "g1"), ("u3", "g1")}
    assert len(roster["enrollments"]) == 4 and len(roster["classes"]) == 2
    assert result.counts["users"].created == 6 and result.counts["users"].rejected == 0


def test_new_user_columns_and_the_role_list_are_kept_in_the_persons_data(env):
    env.process(BUNDLE)
    data = stored_data(env, "u1")
    assert data["userMasterIdentifier"] == "M-001" and data["preferredGivenName"] == "Tee"
    assert data["pronouns"] == "she/her"
    assert data["roles"] == "primary:teacher@s1,secondary:teacher@s2"
    assert stored_data(env, "u3")["primaryOrgSourcedId"] == "s2"


def test_passwords_of_users_csv_and_user_profiles_are_never_stored(env):
    env.process(BUNDLE)
    if env.store_url is None:
        db = (env.home / "rosterdrop.db").read_bytes() + b"".join(
            p.read_bytes() for p in env.home.glob("rosterdrop.db-*"))
        assert b"users-csv-secret" not in db and b"profile-csv-secret" not in db
    with env.ctx.engine.connect() as conn:
        for table in ENTITY_TABLES.values():
            for row in conn.execute(select(table)).all():
                assert "secret" not in repr(row)


def test_without_a_manifest_roles_csv_says_1_2_and_a_misnamed_unreadable_userprofiles_never_fails(env):
    files = with_files(manifest_csv=None, userProfiles_csv=None)
    files["userprofiles.csv"] = b"\x00\x01 not even text"
    result = env.process(files)
    assert result.status == "applied" and result.format == "oneroster-1.2"
    assert issue_rows(result) == [("renamed_file", "userprofiles.csv", None, None),
                                  ("unsupported_file", "userprofiles.csv", None, None)]


def test_without_a_manifest_users_with_1_2_columns_and_no_role_need_roles_csv(env):
    result = env.process(with_files(manifest_csv=None, roles_csv=None, userProfiles_csv=None))
    assert result.status == "rejected" and result.format == "oneroster-1.2"
    assert issue_rows(result) == [("missing_file", "roles.csv", None, None)]


def test_role_rows_are_checked_where_the_district_keeps_them(env):
    roles = ROLES + (
        "r8,active,,u4,primry,teacher,,,s1,\n"          # line 9: bad roleType: only this role is dropped
        "r9,active,,u2,secondary,student,,,s9,\n"      # line 10: unknown org
        "r10,active,,u99,primary,student,,,s1,\n"      # line 11: unknown person
        "r11,active,,u5,primary,ext:librarian,,,s1,\n"  # line 12: an extension role
        "r12,active,,u6,primary,teecher,,,s1,\n")      # line 13: u6's only role is bad
    users = USERS + ("u5,active,,true,lib,,Lia,Bry,,,lbry@lincoln.example,,,,,,,,,,,s1,\n"   # line 8
                     "u6,active,,true,odd,,Odd,One,,,odd@lincoln.example,,,,,,,,,,,s1,\n")   # line 9
    result = env.process(with_files(roles_csv=roles, users_csv=users))
    assert result.status == "applied"
    assert issue_rows(result) == [
        ("extension_value", "roles.csv", 12, "role"),
        ("invalid_value", "roles.csv", 9, "roleType"),
        ("invalid_value", "roles.csv", 13, "role"),
        ("missing_value", "users.csv", 9, "orgSourcedId (roles.csv)"),
        ("missing_value", "users.csv", 9, "role (roles.csv)"),
        ("unknown_reference", "roles.csv", 10, "orgSourcedId"),
        ("unknown_reference", "roles.csv", 11, "userSourcedId"),
        ("unsupported_file", "userProfiles.csv", None, None),
    ]
    p = people(env)
    assert p["u5"]["role"] == "staff" and p["u5"]["schools"] == ["s1"]  # an unmapped 'ext:' role
    assert "u6" not in p and p["u4"]["schools"] == ["s2"] and p["u2"]["schools"] == ["s1"]
    assert result.counts["users"].rejected == 1


def test_role_map_names_an_extension_role_and_the_most_privileged_primary_role_wins(env):
    env.configure(lincoln={"role_map": {"ext:librarian": "teacher"}})
    roles = ROLES + "r8,active,,u4,primary,principal,,,s1,\nr9,active,,u3,primary,ext:librarian,,,s2,\n"
    result = env.process(with_files(roles_csv=roles))
    assert result.status == "applied"
    p = people(env)
    assert p["u4"]["role"] == "school_admin" and p["u4"]["school"] == "s1"  # the principal role's school
    assert p["u3"]["role"] == "teacher"
    assert ("extension_value", "roles.csv", 10, "role") in issue_rows(result)


def test_a_person_with_only_secondary_roles_takes_the_highest_with_an_alert(env):
    roles = ROLES.replace("r5,active,,u4,primary,teacher", "r5,active,,u4,secondary,teacher")
    result = env.process(with_files(roles_csv=roles))
    assert ("no_primary_role", "roles.csv", 6, "roleType") in issue_rows(result)
    assert people(env)["u4"]["role"] == "teacher"


def test_ended_and_deleted_roles_do_not_count(env):
    roles = ROLES.replace("r1,active,,u1,secondary,teacher,2026-08-01,,s2",
                          "r1,active,,u1,secondary,teacher,2020-08-01,2021-06-30,s2")
    roles += "r8,tobedeleted,,u4,primary,teacher,,,s1,\n"
    env.process(with_files(roles_csv=roles))
    p = people(env)
    assert p["u1"]["schools"] == ["s1"] and p["u4"]["schools"] == ["s2"]


def test_extension_values_of_other_vocabularies_are_accepted_with_one_alert_per_file_and_column(env):
    classes = CLASSES.replace("scheduled", "ext:online")
    result = env.process(with_files(classes_csv=classes))
    assert result.status == "applied"
    assert ("extension_value", "classes.csv", 3, "classType") in issue_rows(result)
    assert {c["sourced_id"] for c in env.export()["classes"]} == {"k1", "k2"}
    # The same value in a 1.1 bundle is still an error.
    from tests.bundles import CLEAN, with_changes

    old = env.process(with_changes(CLEAN, classes_csv=classes), tenant="roosevelt")
    assert ("invalid_value", "classes.csv", 3, "classType") in issue_rows(old, "error")


def test_single_school_sees_every_school_of_a_1_2_person(env):
    env.configure(lincoln={"single_school": True})
    result = env.process(BUNDLE)
    assert issue_rows(result, "error") == [("multiple_schools", "users.csv", 2, "orgSourcedId (roles.csv)"),
                                           ("rejected_reference", "enrollments.csv", 2, "userSourcedId")]
    assert "u1" not in people(env) and result.counts["users"].rejected == 1


def test_students_need_enrollment_and_required_fields_on_1_2(env):
    env.configure(lincoln={"students_need_enrollment": True, "require": {"users": ["email"], "classes": ["grades"]}})
    users = USERS.replace("jnunez@lincoln.example", "")                   # u3, line 4
    classes = CLASSES.replace('Algebra I - P1,"09,10"', "Algebra I - P1,")  # k2, line 3
    enrollments = "\n".join(line for line in ENROLLMENTS.splitlines() if not line.startswith("e2,")) + "\n"
    result = env.process(with_files(users_csv=users, classes_csv=classes, enrollments_csv=enrollments))
    assert result.status == "applied"
    assert issue_rows(result, "error") == [
        ("missing_value", "classes.csv", 3, "grades"),
        ("missing_value", "users.csv", 4, "email"),
        ("rejected_reference", "enrollments.csv", 3, "classSourcedId"),  # e3: k2 and u3
        ("rejected_reference", "enrollments.csv", 3, "userSourcedId"),
        ("rejected_reference", "enrollments.csv", 4, "classSourcedId"),  # e4: k2
        ("student_without_enrollment", "users.csv", 3, None),           # u2 lost e2
    ]
    assert set(people(env)) == {"u1", "u4", "g1", "a1"}


def test_a_second_bulk_drop_that_loses_most_people_is_held(env):
    env.configure(lincoln={"min_deactivated_count": 0})  # a tiny district
    assert env.process(BUNDLE).status == "applied"
    users = USERS_HEADER + "\n".join(line for line in USERS.splitlines()[1:] if line.startswith(("u1,", "a1,")))
    roles = ROLES_HEADER + "\n".join(line for line in ROLES.splitlines()[1:] if ",u1," in line or ",a1," in line)
    enrollments = "\n".join(line for line in ENROLLMENTS.splitlines() if not line.startswith(("e2,", "e3,", "e4,")))
    held = env.process(with_files(users_csv=users + "\n", roles_csv=roles + "\n", enrollments_csv=enrollments + "\n"))
    assert held.status == "held"
    assert ("mass_deactivation", "users.csv", None, "status") in issue_rows(held, "hold")
    assert len(people(env)) == 6


def test_a_delta_applies_roles_with_their_persons_row_only(env):
    env.process(BUNDLE)
    manifest = ("propertyName,value\noneroster.version,1.2\nfile.users,delta\nfile.roles,delta\nfile.orgs,absent\n"
                "file.classes,absent\nfile.courses,absent\nfile.academicSessions,absent\nfile.enrollments,absent\n")
    users = USERS_HEADER + "u4,active,,true,pobrien,,Pat,O'Brien,,T002,pobrien@lincoln.example,,,,,,M-004,,,,,s2,\n"
    roles = ROLES_HEADER + ("r5,active,,u4,primary,teacher,,,s2,\nr8,active,,u4,secondary,aide,,,s1,\n"
                            "r9,active,,u2,secondary,aide,,,s2,\n")
    result = env.process({"manifest.csv": manifest, "users.csv": users, "roles.csv": roles})
    assert result.status == "applied"
    assert ("role_not_applied", "roles.csv", 4, "userSourcedId") in issue_rows(result)
    p = people(env)
    assert p["u4"]["schools"] == ["s2", "s1"] and p["u2"]["schools"] == ["s1"]
    assert result.counts["users"].updated == 1


def test_the_oneroster12_sample_does_what_its_readme_says(sqlite_env):
    from pathlib import Path

    result = sqlite_env.process(Path(__file__).resolve().parent.parent / "sample_drops" / "oneroster12")
    assert result.status == "applied" and result.format == "oneroster-1.2"
    assert issue_rows(result) == [("extension_value", "roles.csv", 10, "role"),
                                  ("unsupported_file", "userProfiles.csv", None, None)]
    assert (result.counts["users"].created, result.counts["enrollments"].created) == (24, 27)
    p = people(sqlite_env)
    assert sorted(v["role"] for v in p.values()).count("staff") == 2
    assert p["tch-1004"]["school"] == "org-mv-ms" and p["tch-1004"]["schools"] == ["org-mv-ms", "org-mv-es"]
    assert p["adm-1001"]["role"] == "district_admin" and p["adm-1002"]["role"] == "school_admin"
    assert len(sqlite_env.export()["guardians"]) == 8
    db = (sqlite_env.home / "rosterdrop.db").read_bytes()
    assert b"Welcome-2001" not in db and b"Lms!" not in db
    sqlite_env.configure(lincoln={}, roosevelt={"single_school": True})
    strict = sqlite_env.process(Path(__file__).resolve().parent.parent / "sample_drops" / "oneroster12",
                                tenant="roosevelt")
    assert ("multiple_schools", "users.csv", 7, "orgSourcedId (roles.csv)") in issue_rows(strict, "error")
