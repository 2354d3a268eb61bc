"""`rosterdrop generate`: a synthetic district is valid, linked, deterministic, and its nightly differs as told."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from processor.context import UserError
from processor.generate import generate_bundles

HEADERS = {
    "manifest.csv": "propertyName,value",
    "orgs.csv": "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId",
    "academicSessions.csv": "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,"
                            "schoolYear",
    "courses.csv": "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,"
                   "subjects,subjectCodes",
    "classes.csv": "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,"
                   "schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods",
    "users.csv": "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,"
                 "familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,"
                 "metadata.MembeanSchoolAdmin",
    "enrollments.csv": "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,"
                       "primary,beginDate,endDate",
    "demographics.csv": "sourcedId,status,dateLastModified,birthDate,sex,americanIndianOrAlaskaNative,asian,"
                        "blackOrAfricanAmerican,nativeHawaiianOrOtherPacificIslander,white,"
                        "demographicRaceTwoOrMoreRaces,hispanicOrLatinoEthnicity,countryOfBirthCode,"
                        "stateOfBirthAbbreviation,cityOfBirth,publicSchoolResidenceStatus",
}
CEDS_GRADES = {"PK", "KG", *(f"{g:02d}" for g in range(1, 13))}
SMALL = {"schools": 3, "students": 300}


def read_bundle(path: Path) -> dict[str, pd.DataFrame]:
    with zipfile.ZipFile(path) as zf:
        return {name[:-4]: pd.read_csv(zf.open(name), dtype=str, keep_default_na=False) for name in zf.namelist()}


def split(cell: pd.Series) -> pd.Series:
    """A multi-valued cell as one row per value (blank cells drop out)."""
    return cell.str.split(",").explode().loc[lambda s: s != ""]


def links(users: pd.DataFrame) -> pd.DataFrame:
    """One row per (sourcedId, agent) pair of users.csv's agentSourcedIds."""
    exploded = users.assign(agent=users["agentSourcedIds"].str.split(",")).explode("agent")
    return exploded[exploded["agent"] != ""]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, Path, dict]:
    folder = tmp_path_factory.mktemp("small")
    summary = generate_bundles(folder / "base.zip", **SMALL, seed=7, nightly=folder / "nightly.zip", changes=10)
    return folder / "base.zip", folder / "nightly.zip", summary


@pytest.fixture(scope="module")
def district(tmp_path_factory) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], dict]:
    """The CLI's default size, with a 1% nightly: big enough for ratios."""
    folder = tmp_path_factory.mktemp("district")
    summary = generate_bundles(folder / "base.zip", schools=5, students=2000, seed=3,
                               nightly=folder / "nightly.zip", changes=1)
    return read_bundle(folder / "base.zip"), read_bundle(folder / "nightly.zip"), summary


# ---------------------------------------------------------------- determinism


def test_the_same_seed_writes_byte_identical_bundles(small, tmp_path):
    base, nightly, _ = small
    again = generate_bundles(tmp_path / "again.zip", **SMALL, seed=7, nightly=tmp_path / "again-n.zip", changes=10)
    assert (tmp_path / "again.zip").read_bytes() == base.read_bytes()
    assert (tmp_path / "again-n.zip").read_bytes() == nightly.read_bytes()
    assert again["changes"] == small[2]["changes"]


def test_the_base_does_not_depend_on_the_nightly(small, tmp_path):
    generate_bundles(tmp_path / "alone.zip", **SMALL, seed=7, nightly=None, changes=None)
    assert (tmp_path / "alone.zip").read_bytes() == small[0].read_bytes()


def test_another_seed_writes_another_district(small, tmp_path):
    generate_bundles(tmp_path / "other.zip", **SMALL, seed=8, nightly=None, changes=None)
    mine, other = read_bundle(small[0]), read_bundle(tmp_path / "other.zip")
    assert not mine["users"].equals(other["users"])
    assert not mine["orgs"]["name"].equals(other["orgs"]["name"])


# ---------------------------------------------------------------- shape of the bundle


def test_every_file_is_there_with_its_exact_header(small):
    for path in small[:2]:
        with zipfile.ZipFile(path) as zf:
            assert sorted(zf.namelist()) == sorted(HEADERS)
            for name, header in HEADERS.items():
                assert zf.read(name).decode("utf-8").split("\n", 1)[0] == header


def test_the_manifest_marks_written_files_bulk_and_others_absent(small):
    manifest = dict(read_bundle(small[0])["manifest"].values)
    assert manifest["manifest.version"] == "1.0"
    assert manifest["oneroster.version"] == "1.1"
    bulk = {"academicSessions", "classes", "courses", "demographics", "enrollments", "orgs", "users"}
    absent = {"categories", "classResources", "courseResources", "lineItems", "resources", "results"}
    assert {k[5:] for k, v in manifest.items() if k.startswith("file.") and v == "bulk"} == bulk
    assert {k[5:] for k, v in manifest.items() if k.startswith("file.") and v == "absent"} == absent
    assert manifest["source.systemName"] and manifest["source.systemCode"]


def test_the_summary_counts_the_rows_written(small):
    base, nightly, summary = small
    for path, rows in ((base, summary["rows"]), (nightly, summary["nightly_rows"])):
        frames = read_bundle(path)
        assert rows == {name: len(frames[name]) for name in rows}
    assert summary["zip_bytes"] == base.stat().st_size


def test_sourced_ids_are_unique_within_each_file(small):
    for path in small[:2]:
        for name, frame in read_bundle(path).items():
            if name != "manifest":
                assert frame["sourcedId"].is_unique, name


def test_every_row_is_active_and_stamped(small):
    for name, frame in read_bundle(small[0]).items():
        if name != "manifest":
            assert (frame["status"] == "active").all(), name
            assert frame["dateLastModified"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all(), name


# ---------------------------------------------------------------- every reference resolves


@pytest.mark.parametrize("which", [0, 1], ids=["base", "nightly"])
def test_every_reference_resolves(small, which):
    b = read_bundle(small[which])
    orgs, sessions = set(b["orgs"]["sourcedId"]), set(b["academicSessions"]["sourcedId"])
    courses, classes, users = set(b["courses"]["sourcedId"]), set(b["classes"]["sourcedId"]), set(
        b["users"]["sourcedId"])
    schools = set(b["orgs"].loc[b["orgs"]["type"] == "school", "sourcedId"])
    district = b["orgs"].loc[b["orgs"]["type"] == "district", "sourcedId"]
    assert len(district) == 1
    assert (b["orgs"].loc[b["orgs"]["type"] == "school", "parentSourcedId"] == district.iloc[0]).all()
    assert set(split(b["academicSessions"]["parentSourcedId"])) <= sessions
    assert set(b["courses"]["schoolYearSourcedId"]) <= sessions
    assert set(b["courses"]["orgSourcedId"]) <= schools
    assert set(b["classes"]["courseSourcedId"]) <= courses
    assert set(b["classes"]["schoolSourcedId"]) <= schools
    assert set(split(b["classes"]["termSourcedIds"])) <= sessions
    assert set(split(b["users"]["orgSourcedIds"])) <= orgs
    assert set(split(b["users"]["agentSourcedIds"])) <= users
    e = b["enrollments"]
    assert set(e["classSourcedId"]) <= classes
    assert set(e["userSourcedId"]) <= users
    assert set(e["schoolSourcedId"]) <= schools
    # an enrollment's school is its class's school
    school_of_class = b["classes"].set_index("sourcedId")["schoolSourcedId"]
    assert (e["classSourcedId"].map(school_of_class) == e["schoolSourcedId"]).all()
    # a course's classes are in the course's school
    school_of_course = b["courses"].set_index("sourcedId")["orgSourcedId"]
    assert (b["classes"]["courseSourcedId"].map(school_of_course) == b["classes"]["schoolSourcedId"]).all()
    students = set(b["users"].loc[b["users"]["role"] == "student", "sourcedId"])
    assert set(b["demographics"]["sourcedId"]) == students


def test_every_student_is_in_class_at_their_school_and_every_class_has_a_lead_teacher(small):
    b = read_bundle(small[0])
    users, e = b["users"].set_index("sourcedId"), b["enrollments"]
    student_rows = e[e["role"] == "student"]
    assert set(student_rows["userSourcedId"]) == set(users.index[users["role"] == "student"])
    assert (student_rows["userSourcedId"].map(users["orgSourcedIds"]) == student_rows["schoolSourcedId"]).all()
    leads = e[(e["role"] == "teacher") & (e["primary"] == "true")]
    assert leads["classSourcedId"].is_unique
    assert set(leads["classSourcedId"]) == set(b["classes"]["sourcedId"])
    assert (leads["userSourcedId"].map(users["role"]) == "teacher").all()
    assert (student_rows["primary"] == "false").all()


# ---------------------------------------------------------------- values look like a real district's


def test_leading_zeros_are_kept(small):
    b = read_bundle(small[0])
    orgs = b["orgs"].set_index("type")
    assert orgs.loc["district", "identifier"].isdigit() and len(orgs.loc["district", "identifier"]) == 7
    school_ids = orgs.loc["school", "identifier"]
    assert school_ids.str.fullmatch(r"\d{12}").all()
    assert school_ids.str.startswith(orgs.loc["district", "identifier"]).all()
    students = b["users"][b["users"]["role"] == "student"]
    assert students["identifier"].str.fullmatch(r"0\d{9}").all()
    assert students["identifier"].is_unique
    assert b["demographics"]["publicSchoolResidenceStatus"].str.fullmatch(r"0165[234]").all()
    assert (students["grades"].isin(["01", "02", "09"])).any()


def test_grades_are_ceds_codes_and_multi_valued_cells_are_quoted(small):
    b = read_bundle(small[0])
    for frame in (b["courses"], b["classes"]):
        assert set(split(frame["grades"])) <= CEDS_GRADES
    students = b["users"][b["users"]["role"] == "student"]
    assert set(students["grades"]) <= CEDS_GRADES
    with zipfile.ZipFile(small[0]) as zf:
        classes = zf.read("classes.csv").decode()
        users = zf.read("users.csv").decode()
    assert '"06,07,08"' in classes and '"as-2027-s1,as-2027-s2"' in classes
    assert re.search(r',"gdn-\d+,gdn-\d+', users)


def test_the_school_year_has_two_semesters(small):
    s = read_bundle(small[0])["academicSessions"].set_index("sourcedId")
    year = s.index[s["type"] == "schoolYear"]
    assert len(year) == 1
    semesters = s[s["type"] == "semester"]
    assert len(semesters) == 2 and (semesters["parentSourcedId"] == year[0]).all()
    assert (s["schoolYear"] == "2027").all()
    for col in ("startDate", "endDate"):
        assert pd.to_datetime(s[col], format="%Y-%m-%d").notna().all()
    assert (s["startDate"] < s["endDate"]).all()


def test_schools_span_elementary_middle_and_high(district):
    b = district[0]
    schools = b["orgs"][b["orgs"]["type"] == "school"]
    assert schools["name"].str.endswith("Elementary School").sum() == 3
    assert schools["name"].str.endswith("Middle School").sum() == 1
    assert schools["name"].str.endswith("High School").sum() == 1
    assert schools["identifier"].is_unique
    grades_at = b["users"][b["users"]["role"] == "student"].groupby("orgSourcedIds")["grades"].agg(set)
    name_of = schools.set_index("sourcedId")["name"]
    for school, grades in grades_at.items():
        expected = ({"PK", "KG", "01", "02", "03", "04", "05"} if name_of[school].endswith("Elementary School")
                    else {"06", "07", "08"} if name_of[school].endswith("Middle School")
                    else {"09", "10", "11", "12"})
        assert grades == expected, name_of[school]


def test_roles_come_in_realistic_proportions(district):
    b, _, _ = district
    roles = b["users"]["role"].value_counts()
    students = roles["student"]
    assert students == 2000
    assert 1.5 <= (roles["parent"] + roles.get("guardian", 0)) / students <= 2.5
    assert 1 / 30 <= roles["teacher"] / students <= 1 / 10
    admins = b["users"][b["users"]["role"] == "administrator"]
    district_office = b["orgs"].loc[b["orgs"]["type"] == "district", "sourcedId"].iloc[0]
    assert (admins["orgSourcedIds"] == district_office).sum() >= 2
    per_school = admins[admins["orgSourcedIds"] != district_office]["orgSourcedIds"].value_counts()
    assert len(per_school) == 5 and per_school.between(2, 4).all()
    flagged = admins["metadata.MembeanSchoolAdmin"] == "true"
    assert 5 <= flagged.sum() < len(admins)
    assert (b["users"].loc[b["users"]["role"] != "administrator", "metadata.MembeanSchoolAdmin"] == "").all()
    assert (b["users"]["enabledUser"] == "true").all() and (b["users"]["password"] == "").all()


def test_elementary_students_have_a_homeroom_and_secondary_students_about_seven_classes(district):
    b = district[0]
    users = b["users"].set_index("sourcedId")
    e = b["enrollments"][b["enrollments"]["role"] == "student"]
    e = e.assign(grade=e["userSourcedId"].map(users["grades"]),
                 classType=e["classSourcedId"].map(b["classes"].set_index("sourcedId")["classType"]))
    elementary = e["grade"].isin(["PK", "KG", "01", "02", "03", "04", "05"])
    homerooms = e[elementary & (e["classType"] == "homeroom")].groupby("userSourcedId").size()
    assert (homerooms == 1).all() and len(homerooms) == elementary.groupby(e["userSourcedId"]).any().sum()
    per_secondary = e[~elementary].groupby("userSourcedId").size()
    assert 6.5 <= per_secondary.mean() <= 8.5
    assert (e.loc[~elementary, "classType"] == "scheduled").all()
    # one homeroom teacher per homeroom, and no teacher leads two homerooms
    leads = b["enrollments"][(b["enrollments"]["role"] == "teacher") & (b["enrollments"]["primary"] == "true")]
    homeroom_ids = b["classes"].loc[b["classes"]["classType"] == "homeroom", "sourcedId"]
    assert leads[leads["classSourcedId"].isin(homeroom_ids)]["userSourcedId"].is_unique


def test_guardians_are_linked_both_ways(district):
    for b in district[:2]:
        users = b["users"]
        students = users[users["role"] == "student"]
        guardians = users[users["role"].isin(["parent", "guardian"])]
        down, up = links(students), links(guardians)
        assert set(zip(down["sourcedId"], down["agent"], strict=True)) == set(
            zip(up["agent"], up["sourcedId"], strict=True))
        per_student = students["agentSourcedIds"].str.count(",") + 1
        assert per_student.between(1, 3).all()
        assert (guardians["agentSourcedIds"] != "").all()
        # a guardian belongs to their children's school
        school_of = students.set_index("sourcedId")["orgSourcedIds"]
        assert (up["agent"].map(school_of) == up["sourcedId"].map(guardians.set_index("sourcedId")
                                                                 ["orgSourcedIds"])).all()
    # some siblings share their guardians
    assert (guardians["agentSourcedIds"].str.contains(",")).any()


def test_names_and_emails_look_real_and_emails_are_unique(district):
    users = district[0]["users"]
    names = pd.concat([users["givenName"], users["familyName"]])
    assert names.str.contains(r"[À-ỹ]").any(), "accented names"
    assert names.str.contains("'").any(), "names like O'Brien"
    assert users["familyName"].str.contains("-").any(), "hyphenated family names"
    assert users["givenName"].nunique() > 200 and users["familyName"].nunique() > 200
    assert users["email"].is_unique and (users["email"] != "").all()
    assert users["email"].str.fullmatch(r"[a-z0-9.]+@[a-z0-9.-]+\.[a-z]+").all()
    staff = users[users["role"].isin(["teacher", "administrator", "aide"])]
    assert (staff["userIds"] == "{LDAP:" + staff["username"] + "}").all()
    assert (users["username"] != "").all()


def test_demographics_fit_the_students(district):
    b = district[0]
    d = b["demographics"].set_index("sourcedId")
    grade = b["users"].set_index("sourcedId")["grades"].reindex(d.index)
    age = (pd.Timestamp("2026-09-01") - pd.to_datetime(d["birthDate"], format="%Y-%m-%d")).dt.days / 365.25
    usual = grade.map({"PK": 4, "KG": 5} | {f"{g:02d}": g + 5 for g in range(1, 13)})
    assert (age - usual).between(0, 2.01).all()
    assert set(d["sex"]) == {"male", "female"}
    booleans = ["americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican",
                "nativeHawaiianOrOtherPacificIslander", "white", "demographicRaceTwoOrMoreRaces",
                "hispanicOrLatinoEthnicity"]
    assert set(d[booleans].stack()) == {"true", "false"}
    races = (d[booleans[:5]] == "true").sum(axis=1)
    two_or_more = d["demographicRaceTwoOrMoreRaces"] == "true"
    assert (races[~two_or_more] == 1).all() and (races[two_or_more] == 2).all()
    assert d["countryOfBirthCode"].str.fullmatch("[A-Z]{2}").all()


# ---------------------------------------------------------------- the nightly


def diff(base: dict[str, pd.DataFrame], nightly: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Count the nightly's changes the way a district's admin would: by comparing the two exports."""
    def students(b):
        return b["users"][b["users"]["role"] == "student"].set_index("sourcedId")

    before, after = students(base), students(nightly)
    kept = before.index.intersection(after.index)
    e_before = base["enrollments"].set_index("sourcedId")
    e_after = nightly["enrollments"].set_index("sourcedId")
    both = e_before.index.intersection(e_after.index)
    moved = both[e_before.loc[both, "classSourcedId"] != e_after.loc[both, "classSourcedId"]]
    return {
        "new_students": len(after.index.difference(before.index)),
        "withdrawn_students": len(before.index.difference(after.index)),
        "schedule_changes": e_before.loc[moved, "userSourcedId"].nunique(),
        "email_fixes": int((before.loc[kept, "email"] != after.loc[kept, "email"]).sum()),
        "name_fixes": int(((before.loc[kept, "givenName"] != after.loc[kept, "givenName"])
                           | (before.loc[kept, "familyName"] != after.loc[kept, "familyName"])).sum()),
        "enrollments_moved": len(moved),
        "enrollments_added": len(e_after.index.difference(e_before.index)),
        "enrollments_removed": len(e_before.index.difference(e_after.index)),
    }


def test_the_nightly_summary_matches_a_diff_of_the_two_bundles(small):
    base, nightly, summary = small
    counted = diff(read_bundle(base), read_bundle(nightly))
    assert {k: summary["changes"][k] for k in counted} == counted
    touched = sum(counted[k] for k in ("new_students", "withdrawn_students", "schedule_changes",
                                       "email_fixes", "name_fixes"))
    assert touched == round(SMALL["students"] * 0.10)
    assert all(counted[k] > 0 for k in ("new_students", "withdrawn_students", "schedule_changes",
                                        "email_fixes", "name_fixes"))
    assert counted["withdrawn_students"] <= touched / 3


def test_the_nightly_guardian_counts_match_a_diff(small):
    base, nightly, summary = (read_bundle(small[0]), read_bundle(small[1]), small[2])

    def guardians(b):
        return set(b["users"].loc[b["users"]["role"].isin(["parent", "guardian"]), "sourcedId"])

    assert len(guardians(nightly) - guardians(base)) == summary["changes"]["guardians_added"]
    assert len(guardians(base) - guardians(nightly)) == summary["changes"]["guardians_removed"]


def test_a_one_percent_nightly_touches_about_one_percent_and_deactivates_little(district):
    base, nightly, summary = district
    counted = diff(base, nightly)
    assert {k: summary["changes"][k] for k in counted} == counted
    assert sum(counted[k] for k in ("new_students", "withdrawn_students", "schedule_changes", "email_fixes",
                                    "name_fixes")) == 20
    for name in ("users", "enrollments", "classes", "courses", "orgs", "demographics"):
        gone = set(base[name]["sourcedId"]) - set(nightly[name]["sourcedId"])
        assert len(gone) <= 0.01 * len(base[name]), name


def test_untouched_rows_are_identical_and_changed_rows_carry_the_nightly_stamp(small):
    base, nightly = read_bundle(small[0]), read_bundle(small[1])
    for name in ("orgs", "academicSessions", "courses", "classes"):
        assert base[name].equals(nightly[name])
    b, n = base["users"].set_index("sourcedId"), nightly["users"].set_index("sourcedId")
    kept = b.index.intersection(n.index)
    same = (b.loc[kept] == n.loc[kept]).all(axis=1)
    assert same.mean() > 0.9
    assert (n.loc[kept[~same], "dateLastModified"] == "2026-11-02T02:00:00Z").all()
    assert (n.loc[kept[same], "dateLastModified"] == "2026-11-01T02:00:00Z").all()
    new = n.index.difference(b.index)
    assert (n.loc[new, "dateLastModified"] == "2026-11-02T02:00:00Z").all()
    # a name fix keeps the login: usernames never change
    assert (b.loc[kept, "username"] == n.loc[kept, "username"]).all()


def test_new_students_arrive_with_guardians_classes_and_demographics(small):
    base, nightly = read_bundle(small[0]), read_bundle(small[1])
    users = nightly["users"]
    new = set(users.loc[users["role"] == "student", "sourcedId"]) - set(base["users"]["sourcedId"])
    assert new
    assert new <= set(nightly["enrollments"]["userSourcedId"])
    assert new <= set(nightly["demographics"]["sourcedId"])
    agents = users.set_index("sourcedId").loc[sorted(new), "agentSourcedIds"]
    assert (agents != "").all()
    new_enrollments = nightly["enrollments"][nightly["enrollments"]["userSourcedId"].isin(new)]
    assert (new_enrollments["beginDate"] >= "2026-11-02").all()


@pytest.mark.parametrize("kwargs", [
    {"schools": 0}, {"students": 0}, {"seed": -1},
    {"nightly": "n.zip", "changes": None}, {"nightly": "n.zip", "changes": 150}, {"nightly": "x.zip", "changes": 1},
])
def test_bad_arguments_are_refused_with_a_message(tmp_path, kwargs):
    args = {"schools": 2, "students": 10, "seed": 1, "nightly": None, "changes": None} | kwargs
    if args["nightly"]:
        args["nightly"] = tmp_path / args["nightly"]
    with pytest.raises(UserError):
        generate_bundles(tmp_path / "x.zip", **args)
    assert list(tmp_path.iterdir()) == []


def test_ids_still_resolve_when_a_district_outgrows_their_usual_width(tmp_path, monkeypatch):
    import processor.generate as generate

    monkeypatch.setitem(generate.ID_WIDTH, "stu", 2)
    monkeypatch.setitem(generate.ID_WIDTH, "enr", 3)
    generate_bundles(tmp_path / "b.zip", **SMALL, seed=1, nightly=None, changes=None)
    b = read_bundle(tmp_path / "b.zip")
    students = b["users"].loc[b["users"]["role"] == "student", "sourcedId"]
    assert students.str.len().nunique() == 2 and students.is_unique
    assert set(b["enrollments"]["userSourcedId"]) <= set(b["users"]["sourcedId"])
    assert set(links(b["users"])["agent"]) <= set(b["users"]["sourcedId"])
    assert set(b["demographics"]["sourcedId"]) == set(students)


def test_a_tiny_district_is_still_whole(tmp_path):
    summary = generate_bundles(tmp_path / "one.zip", schools=1, students=5, seed=0, nightly=tmp_path / "n.zip",
                               changes=100)
    b = read_bundle(tmp_path / "one.zip")
    assert summary["rows"]["users"] == len(b["users"]) and (b["users"]["role"] == "student").sum() == 5
    n = read_bundle(tmp_path / "n.zip")
    assert set(n["enrollments"]["userSourcedId"]) <= set(n["users"]["sourcedId"])
