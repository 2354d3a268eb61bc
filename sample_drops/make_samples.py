#!/usr/bin/env python3
"""Write the sample OneRoster 1.1 drops of this folder (see README.md for what each must produce).

Deterministic and standard library only:  python sample_drops/make_samples.py
It rewrites clean/, row_errors/, messy_valid/, mass_withdrawal/, delta/ and unusable.zip next to itself
and nothing else. The README's line numbers refer to the files this writes; change the data here and
they must be checked again.
"""

from __future__ import annotations

import csv
import io
import shutil
import unicodedata
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------------------------------
# OneRoster 1.1 headers, exactly as the spec spells them.

MANIFEST = ["propertyName", "value"]
ORGS = ["sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parentSourcedId"]
SESSIONS = ["sourcedId", "status", "dateLastModified", "title", "type", "startDate", "endDate",
            "parentSourcedId", "schoolYear"]
COURSES = ["sourcedId", "status", "dateLastModified", "schoolYearSourcedId", "title", "courseCode",
           "grades", "orgSourcedId", "subjects", "subjectCodes"]
CLASSES = ["sourcedId", "status", "dateLastModified", "title", "grades", "courseSourcedId", "classCode",
           "classType", "location", "schoolSourcedId", "termSourcedIds", "subjects", "subjectCodes",
           "periods"]
USERS = ["sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role", "username",
         "userIds", "givenName", "familyName", "middleName", "identifier", "email", "sms", "phone",
         "agentSourcedIds", "grades", "password", "metadata.MembeanSchoolAdmin", "metadata.homeLanguage"]
ENROLLMENTS = ["sourcedId", "status", "dateLastModified", "classSourcedId", "schoolSourcedId",
               "userSourcedId", "role", "primary", "beginDate", "endDate"]
DEMOGRAPHICS = ["sourcedId", "status", "dateLastModified", "birthDate", "sex",
                "americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican",
                "nativeHawaiianOrOtherPacificIslander", "white", "demographicRaceTwoOrMoreRaces",
                "hispanicOrLatinoEthnicity", "countryOfBirthCode", "stateOfBirthAbbreviation", "cityOfBirth",
                "publicSchoolResidenceStatus"]

MANIFEST_FILES = ["academicSessions", "categories", "classes", "classResources", "courses",
                  "courseResources", "demographics", "enrollments", "lineItems", "orgs", "resources",
                  "results", "users"]

# ---------------------------------------------------------------------------------------------------
# Lincoln Unified: the district every drop describes.

EXPORTED = "2024-09-03T06:00:00Z"      # the nightly export's dateLastModified
DELTA_AT = "2024-10-02T06:00:00Z"      # the delta's changes

DISTRICT, ES, HS = "org-lusd", "org-lincoln-es", "org-lincoln-hs"
YEAR, FALL, SPRING = "as-2025", "as-2025-s1", "as-2025-s2"
TERM_DATES = {YEAR: ("2024-08-14", "2025-06-06"), FALL: ("2024-08-14", "2024-12-20"),
              SPRING: ("2025-01-06", "2025-06-06")}

ORG_ROWS = [
    # sourcedId, name, type, identifier (NCES: district 7 digits, school 12), parent
    (DISTRICT, "Lincoln Unified School District", "district", "0602190", ""),
    (ES, "Washington Elementary School", "school", "060219000871", DISTRICT),
    (HS, "Lincoln High School", "school", "060219000894", DISTRICT),
]

SESSION_ROWS = [
    (YEAR, "2024-2025", "schoolYear", "", "2025"),
    (FALL, "Fall 2024", "semester", YEAR, "2025"),
    (SPRING, "Spring 2025", "semester", YEAR, "2025"),
]

COURSE_ROWS = [
    # sourcedId, title, courseCode, grades, org, subjects, subjectCodes (SCED)
    ("crs-es-homeroom", "Elementary Homeroom", "HR-ES", "KG,01,02,03,04,05", ES, "Homeroom", ""),
    ("crs-eng9", "English 9", "ENG9", "09", HS, "English Language Arts", "01001"),
    ("crs-amlit", "American Literature", "ENG11", "11,12", HS, "English Language Arts", "01005"),
    ("crs-alg1", "Algebra I", "MATH1", "09,10", HS, "Mathematics", "02052"),
    ("crs-bio", "Biology", "SCI-BIO", "09,10", HS, "Life and Physical Sciences", "03051"),
    ("crs-ush", "U.S. History", "SS-USH", "11,12", HS, "Social Sciences and History", "04101"),
    ("crs-span1", "Spanish I", "WL-SPA1", "09,10,11,12", HS, "World Languages", "24052"),
]

# sourcedId, title, grades, course, classCode, classType, location, school, terms, period, teacher
CLASS_ROWS = [
    ("cls-es-hr-kg", "Kindergarten Homeroom - Whitfield", "KG", "crs-es-homeroom", "HR-KG-04", "homeroom",
     "Room 4", ES, [YEAR], "", "tch-0001"),
    ("cls-es-hr-02", "Grade 2 Homeroom - Mendoza", "02", "crs-es-homeroom", "HR-02-12", "homeroom",
     "Room 12", ES, [YEAR], "", "tch-0002"),
    ("cls-es-hr-04", "Grade 4 Homeroom - Rahman", "04", "crs-es-homeroom", "HR-04-18", "homeroom",
     "Room 18", ES, [YEAR], "", "tch-0003"),
    ("cls-hs-eng9-p1", "English 9 - Period 1", "09", "crs-eng9", "ENG9-01", "scheduled",
     "Room 104", HS, [FALL, SPRING], "1", "tch-0004"),
    ("cls-hs-alg1-p2", "Algebra I - Period 2", "09,10", "crs-alg1", "MATH1-02", "scheduled",
     "Room 210", HS, [FALL, SPRING], "2", "tch-0005"),
    ("cls-hs-bio-p3", "Biology - Period 3", "09,10", "crs-bio", "SCI-BIO-03", "scheduled",
     "Lab 2", HS, [FALL], "3", "tch-0005"),
    ("cls-hs-amlit-p4", "American Literature - Period 4", "11,12", "crs-amlit", "ENG11-04", "scheduled",
     "Room 104", HS, [FALL, SPRING], "4", "tch-0004"),
    ("cls-hs-ush-p2", "U.S. History - Period 2", "11,12", "crs-ush", "SS-USH-02", "scheduled",
     "Room 118", HS, [SPRING], "2", "tch-0006"),
    ("cls-hs-span1-p5", "Spanish I - Period 5", "09,10,11,12", "crs-span1", "WL-SPA1-05", "scheduled",
     "Room 122", HS, [FALL, SPRING], "5", "tch-0007"),
]
COURSE_SUBJECTS = {c[0]: (c[5], c[6]) for c in COURSE_ROWS}

# sourcedId, given, middle, family, role, org, MembeanSchoolAdmin
STAFF = [
    ("adm-0001", "Robert", "", "Chang", "administrator", DISTRICT, "false"),   # district office
    ("adm-0002", "Patricia", "Adaeze", "Nwosu", "administrator", ES, "false"),  # principal
    ("tch-0001", "Margaret", "Anne", "Whitfield", "teacher", ES, "false"),
    ("tch-0002", "Carlos", "", "Mendoza", "teacher", ES, "false"),
    ("tch-0003", "Aisha", "", "Rahman", "teacher", ES, "false"),
    ("tch-0004", "Brian", "Thomas", "O'Neill", "teacher", HS, "false"),
    ("tch-0005", "Linh", "", "Tran", "teacher", HS, "false"),
    ("tch-0006", "Héctor", "Manuel", "Villanueva", "teacher", HS, "true"),      # school admin by metadata
    ("tch-0007", "Elena", "", "Castillo", "teacher", HS, "false"),
]

# given, middle, family, grade, sex, birthDate, race, hispanic, country, state, city, residence, language
STUDENTS = [
    ("José", "Luis", "García", "KG", "male", "2019-03-14", "white", "true", "US", "CA", "Stockton", "01652", "es"),
    ("Amelia", "Rose", "O'Brien", "KG", "female", "2019-07-02", "white", "false", "US", "CA", "Sacramento", "01652", "en"),
    ("Mai", "", "Nguyen", "KG", "female", "2019-01-22", "asian", "false", "US", "CA", "San Jose", "01652", "vi"),
    ("Liam", "James", "Johnson", "KG", "male", "2018-11-30", "black", "false", "US", "CA", "Stockton", "01652", "en"),
    ("Zoë", "", "Kowalski", "KG", "female", "2019-05-09", "white", "false", "US", "CA", "Modesto", "01653", "en"),
    ("Aaliyah", "Simone", "Washington", "02", "female", "2016-12-05", "black", "false", "US", "CA", "Oakland", "01652", "en"),
    ("Mateo", "", "Hernández", "02", "male", "2017-02-17", "white", "true", "US", "CA", "Stockton", "01652", "es"),
    ("Chloé", "Anne", "Dubois", "02", "female", "2017-04-28", "white", "false", "FR", "", "Lyon", "01652", "fr"),
    ("Ethan", "Minjun", "Kim", "02", "male", "2016-10-11", "asian", "false", "US", "CA", "Fresno", "01652", "ko"),
    ("Fatima", "", "Al-Sayed", "02", "female", "2017-06-19", "white", "false", "EG", "", "Cairo", "01652", "ar"),
    ("Noah", "Michael", "Williams", "04", "male", "2015-01-08", "multi", "false", "US", "CA", "Stockton", "01652", "en"),
    ("Sofía", "Isabel", "Rodríguez", "04", "female", "2014-10-23", "white", "true", "MX", "", "Guadalajara", "01652", "es"),
    ("Declan", "Patrick", "McCarthy", "04", "male", "2015-03-03", "white", "false", "US", "CA", "Lodi", "01652", "en"),
    ("Priya", "", "Patel", "04", "female", "2014-12-15", "asian", "false", "US", "CA", "Tracy", "01653", "gu"),
    ("Hana", "", "Sato", "04", "female", "2015-07-27", "asian", "false", "JP", "", "Osaka", "01652", "ja"),
    ("Valeria", "Guadalupe", "Hernández", "09", "female", "2009-11-12", "white", "true", "US", "CA", "Stockton", "01652", "es"),
    ("Jamal", "Andre", "Jackson", "09", "male", "2010-02-25", "black", "false", "US", "CA", "Stockton", "01652", "en"),
    ("Emily", "", "Chen", "09", "female", "2010-05-06", "asian", "false", "US", "CA", "San Francisco", "01652", "zh"),
    ("Lucas", "Gabriel", "Silva", "09", "male", "2009-09-18", "white", "false", "BR", "", "São Paulo", "01652", "pt"),
    ("Ava", "Grace", "Thompson", "09", "female", "2010-01-30", "white", "false", "US", "CA", "Manteca", "01652", "en"),
    ("Diego", "Alejandro", "López", "09", "male", "2010-07-14", "white", "true", "US", "CA", "Stockton", "01652", "es"),
    ("Grace", "Eun-ji", "Park", "09", "female", "2009-12-01", "asian", "false", "US", "CA", "Los Angeles", "01652", "ko"),
    ("Malik", "", "Robinson", "09", "male", "2010-03-22", "black", "false", "US", "CA", "Stockton", "01653", "en"),
    ("Olivia", "Kai", "Brown", "09", "female", "2010-06-09", "nhpi", "false", "US", "HI", "Honolulu", "01652", "en"),
    ("Ángel", "", "Ramírez", "09", "male", "2009-10-04", "aian", "true", "MX", "", "Oaxaca", "01652", "es"),
    ("Sean", "Michael", "O'Connor", "10", "male", "2009-04-16", "white", "false", "US", "CA", "Stockton", "01652", "en"),
    ("Camila", "", "Torres", "10", "female", "2008-12-28", "white", "true", "US", "CA", "Stockton", "01652", "es"),
    ("Benjamin", "Ho", "Lee", "10", "male", "2009-02-11", "asian", "false", "US", "CA", "Sacramento", "01652", "en"),
    ("Maya", "", "Singh", "10", "female", "2008-10-05", "asian", "false", "IN", "", "Amritsar", "01652", "pa"),
    ("Elijah", "Marcus", "Davis", "11", "male", "2008-01-19", "black", "false", "US", "CA", "Stockton", "01652", "en"),
    ("Valentina", "", "Cruz", "11", "female", "2007-11-07", "white", "true", "US", "CA", "Modesto", "01652", "es"),
    ("D'Andre", "Lamar", "Harris", "11", "male", "2008-06-02", "multi", "false", "US", "CA", "Oakland", "01652", "en"),
    ("Niamh", "Claire", "Murphy", "12", "female", "2007-03-12", "white", "false", "IE", "", "Cork", "01652", "en"),
    ("Kwame", "Kofi", "Mensah", "12", "male", "2006-12-20", "black", "false", "GH", "", "Kumasi", "01652", "ak"),
    ("Renée", "", "Lefèvre", "12", "female", "2007-05-25", "white", "false", "CA", "", "Montréal", "01652", "fr"),
]

# given, family, role, enabledUser, children (student numbers, 1-based), phone
GUARDIANS = [
    ("María", "García", "parent", "true", [1], "(209) 555-0101"),
    ("Luis", "García", "parent", "true", [1], "(209) 555-0102"),
    ("Kathleen", "O'Brien", "parent", "true", [2], "(916) 555-0103"),
    ("Rosa", "Hernández", "parent", "true", [7, 16], "(209) 555-0104"),   # one parent, two schools
    ("Denise", "Washington", "parent", "true", [6], "(510) 555-0105"),
    ("Gloria", "Washington", "guardian", "false", [6], "(510) 555-0106"),  # grandmother, no portal login
    ("Omar", "Al-Sayed", "parent", "true", [10], "(209) 555-0107"),
    ("Patrick", "McCarthy", "parent", "true", [13], "(209) 555-0108"),
    ("Eileen", "McCarthy", "parent", "true", [13], "(209) 555-0109"),
    ("Anjali", "Patel", "parent", "true", [14], "(209) 555-0110"),
    ("Tasha", "Jackson", "parent", "true", [17], "(209) 555-0111"),
    ("Wei", "Chen", "parent", "true", [18], "(415) 555-0112"),
    ("Li Na", "Zhang", "parent", "true", [18], "(415) 555-0113"),
    ("Guadalupe", "López", "guardian", "true", [21], "(209) 555-0114"),
    ("Mary", "O'Connor", "parent", "true", [26], "(209) 555-0115"),
]

RACES = ["aian", "asian", "black", "nhpi", "white", "multi"]
GRADE_OF_HOMEROOM = {"KG": "cls-es-hr-kg", "02": "cls-es-hr-02", "04": "cls-es-hr-04"}


def stu_id(n: int) -> str:
    return f"stu-{n:04d}"


def grd_id(n: int) -> str:
    return f"grd-{n:04d}"


def ascii_name(s: str) -> str:
    """José -> jose, O'Brien -> obrien, Li Na -> lina: for usernames and emails."""
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s.lower() if c.isascii() and c.isalnum())


def schedule(grade: str, n: int) -> list[str]:
    """The classes a student is in: one homeroom in elementary, 3-4 periods in high school."""
    if grade in GRADE_OF_HOMEROOM:
        return [GRADE_OF_HOMEROOM[grade]]
    if grade == "09":
        extra = ["cls-hs-span1-p5"] if n % 2 == 0 else []
        return ["cls-hs-eng9-p1", "cls-hs-alg1-p2", "cls-hs-bio-p3", *extra]
    if grade == "10":
        return ["cls-hs-alg1-p2", "cls-hs-bio-p3", "cls-hs-span1-p5"]
    return ["cls-hs-amlit-p4", "cls-hs-ush-p2", "cls-hs-span1-p5"]


def district() -> dict[str, list[dict[str, str]]]:
    """The clean district as tables: file stem -> rows (dicts keyed by the OneRoster header)."""
    orgs = [dict(zip(ORGS, (sid, "active", EXPORTED, name, typ, ident, parent), strict=True))
            for sid, name, typ, ident, parent in ORG_ROWS]
    sessions = [dict(zip(SESSIONS, (sid, "active", EXPORTED, title, typ, *TERM_DATES[sid], parent, year), strict=True))
                for sid, title, typ, parent, year in SESSION_ROWS]
    courses = [dict(zip(COURSES, (sid, "active", EXPORTED, YEAR, title, code, grades, org, subj, codes), strict=True))
               for sid, title, code, grades, org, subj, codes in COURSE_ROWS]
    classes = []
    for sid, title, grades, course, code, ctype, loc, school, terms, period, _ in CLASS_ROWS:
        subj, codes = COURSE_SUBJECTS[course]
        classes.append(dict(zip(CLASSES, (sid, "active", EXPORTED, title, grades, course, code, ctype, loc,
                                          school, ",".join(terms), subj, codes, period), strict=True)))

    guardians_of: dict[int, list[str]] = {}
    for g, (*_, children, _phone) in enumerate(GUARDIANS, 1):
        for c in children:
            guardians_of.setdefault(c, []).append(grd_id(g))

    users = []
    for sid, given, middle, family, role, org, msa in STAFF:
        login = ascii_name(given[0] + family)
        users.append(dict(zip(USERS, (
            sid, "active", EXPORTED, "true", org, role, login, f"{{LDAP:{login}}}", given, family, middle,
            f"{4500 + len(users) + 1:06d}", f"{ascii_name(given)}.{ascii_name(family)}@lincolnusd.example",
            "", "", "", "", "", msa, ""), strict=True)))
    for n, (given, middle, family, grade, *_rest, lang) in enumerate(STUDENTS, 1):
        login = f"{ascii_name(given)}.{ascii_name(family)}"
        ident = f"{310050 + n:08d}"
        email = f"{login}@students.lincolnusd.example"
        if n == 5:  # misspelt in the SIS; the delta drop fixes it
            email = "zoe.kowalsky@students.lincolnusd.example"
        school = ES if grade in GRADE_OF_HOMEROOM else HS
        users.append(dict(zip(USERS, (
            stu_id(n), "active", EXPORTED, "true", school, "student", login,
            f"{{LDAP:{login}}},{{SIS:{ident}}}", given, family, middle, ident, email, "", "",
            ",".join(guardians_of.get(n, [])), grade, "", "", lang), strict=True)))
    for g, (given, family, role, enabled, children, phone) in enumerate(GUARDIANS, 1):
        email = f"{ascii_name(given)}.{ascii_name(family)}@mail.example"
        schools = sorted({ES if STUDENTS[c - 1][3] in GRADE_OF_HOMEROOM else HS for c in children})
        users.append(dict(zip(USERS, (
            grd_id(g), "active", EXPORTED, enabled, ",".join(schools), role, email, "", given, family, "",
            "", email, phone if g % 3 else "", phone, ",".join(stu_id(c) for c in children), "", "", "", ""), strict=True)))

    enrollments = []
    for sid, *_mid, school, terms, _period, teacher in CLASS_ROWS:
        begin, end = TERM_DATES[terms[0]][0], TERM_DATES[terms[-1]][1]
        members = [(teacher, "teacher", "true")]
        members += [(stu_id(n), "student", "false") for n, s in enumerate(STUDENTS, 1)
                    if sid in schedule(s[3], n)]
        for user, role, primary in members:
            enrollments.append(dict(zip(ENROLLMENTS, (
                f"enr-{len(enrollments) + 1:04d}", "active", EXPORTED, sid, school, user, role, primary,
                begin, end), strict=True)))

    demographics = []
    for n, (_g, _m, _f, _gr, sex, birth, race, hisp, country, state, city, residence, _l) in \
            enumerate(STUDENTS, 1):
        flags = ["true" if race == r else "false" for r in RACES]
        demographics.append(dict(zip(DEMOGRAPHICS, (
            stu_id(n), "active", EXPORTED, birth, sex, *flags, hisp, country, state, city, residence), strict=True)))

    return {"orgs": orgs, "academicSessions": sessions, "courses": courses, "classes": classes,
            "users": users, "enrollments": enrollments, "demographics": demographics}


HEADERS = {"orgs": ORGS, "academicSessions": SESSIONS, "courses": COURSES, "classes": CLASSES,
           "users": USERS, "enrollments": ENROLLMENTS, "demographics": DEMOGRAPHICS}


def manifest(modes: dict[str, str], system_code: str = "lincoln-usd") -> list[dict[str, str]]:
    rows = [("manifest.version", "1.0"), ("oneroster.version", "1.1")]
    rows += [(f"file.{f}", modes.get(f, "absent")) for f in MANIFEST_FILES]
    rows += [("source.systemName", "Lincoln Unified SIS nightly export"), ("source.systemCode", system_code)]
    return [dict(zip(MANIFEST, r, strict=True)) for r in rows]


# ---------------------------------------------------------------------------------------------------
# Writing. Every file goes through encode_csv so the bytes (BOM, line ends, last newline) are explicit.

def encode_csv(header: list[str], rows: list[dict[str, str]], *, eol: str = "\n", bom: bool = False,
               final_newline: bool = True, ragged: frozenset[int] = frozenset()) -> bytes:
    """CSV bytes with minimal quoting. ragged: 0-based data-row indexes that get one extra empty field."""
    lines = [_csv_line(header)]
    for i, row in enumerate(rows):
        line = _csv_line([row.get(col, "") for col in header])
        lines.append(line + "," if i in ragged else line)
    text = eol.join(lines) + (eol if final_newline else "")
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


def _csv_line(values: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(values)
    return buf.getvalue()


def write_drop(name: str, files: dict[str, bytes]) -> Path:
    folder = HERE / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    for fname, data in sorted(files.items()):
        (folder / fname).write_bytes(data)
    return folder


def plain_files(tables: dict[str, list[dict[str, str]]], headers: dict[str, list[str]] | None = None,
                modes: dict[str, str] | None = None) -> dict[str, bytes]:
    headers = {**HEADERS, **(headers or {})}
    modes = modes or {stem: "bulk" for stem in tables}
    files = {f"{stem}.csv": encode_csv(headers[stem], rows) for stem, rows in tables.items()}
    files["manifest.csv"] = encode_csv(MANIFEST, manifest(modes))
    return files


# ---------------------------------------------------------------------------------------------------
# The drops.

def make_clean() -> None:
    write_drop("clean", plain_files(district()))


def _insert_after(rows: list[dict[str, str]], sourced_id: str, new: dict[str, str]) -> None:
    at = next(i for i, r in enumerate(rows) if r["sourcedId"] == sourced_id)
    rows.insert(at + 1, new)


def _by_id(rows: list[dict[str, str]], sourced_id: str) -> dict[str, str]:
    return next(r for r in rows if r["sourcedId"] == sourced_id)


def _student_row(n: int, given: str, family: str, grade: str, school: str, **over: str) -> dict[str, str]:
    login = f"{ascii_name(given)}.{ascii_name(family)}"
    ident = f"{310050 + n:08d}"
    row = dict(zip(USERS, (stu_id(n), "active", EXPORTED, "true", school, "student", login,
                           f"{{LDAP:{login}}},{{SIS:{ident}}}", given, family, "", ident,
                           f"{login}@students.lincolnusd.example", "", "", "", grade, "", "", "en"), strict=True))
    row.update(over)
    return row


def make_row_errors() -> None:
    t = district()
    users, classes, courses, enrollments = t["users"], t["classes"], t["courses"], t["enrollments"]

    # users.csv
    for r in users:
        r["favoriteColor"] = ""
    _by_id(users, "stu-0005")["favoriteColor"] = "purple"
    _by_id(users, "stu-0017")["favoriteColor"] = "green"
    _by_id(users, "tch-0002")["email"] = "carlos.mendoza.lincolnusd.example"          # no @: alert
    _insert_after(users, "stu-0005", _student_row(                                    # blank givenName
        37, "", "Okafor", "KG", ES, username="okafor0037", userIds="", email=""))
    _insert_after(users, "stu-0029", _student_row(                                    # role typo
        38, "Tyler", "Brooks", "10", HS, role="studnet"))
    _insert_after(users, "stu-0035", _student_row(                                    # second stu-0020
        20, "Ava", "Thompson", "09", HS, username="ava.thompson2", userIds="{LDAP:ava.thompson2}",
        email="ava.thompson2@students.lincolnusd.example", middleName="Grace"))

    # courses.csv / classes.csv: a PE section whose classType the SIS exports as "lecture"
    courses.append(dict(zip(COURSES, ("crs-pe", "active", EXPORTED, YEAR, "Physical Education", "PE-1",
                                      "09,10,11,12", HS, "Physical, Health, and Safety Education",
                                      "08001"), strict=True)))
    classes.append(dict(zip(CLASSES, ("cls-hs-pe-p6", "active", EXPORTED, "Physical Education - Period 6",
                                      "09,10,11,12", "crs-pe", "PE-06", "lecture", "Gym", HS,
                                      f"{FALL},{SPRING}", "Physical, Health, and Safety Education",
                                      "08001", "6"), strict=True)))

    # enrollments.csv
    kg_last = [r for r in enrollments if r["classSourcedId"] == "cls-es-hr-kg"][-1]["sourcedId"]
    _insert_after(enrollments, kg_last, dict(zip(ENROLLMENTS, (                       # of the nameless student
        "enr-0101", "active", EXPORTED, "cls-es-hr-kg", ES, stu_id(37), "student", "false",
        *TERM_DATES[YEAR]), strict=True)))
    bio_last = [r for r in enrollments if r["classSourcedId"] == "cls-hs-bio-p3"][-1]["sourcedId"]
    _insert_after(enrollments, bio_last, dict(zip(ENROLLMENTS, (                      # class not in the drop
        "enr-0102", "active", EXPORTED, "cls-hs-chem-p3", HS, stu_id(27), "student", "false",
        TERM_DATES[FALL][0], TERM_DATES[SPRING][1]), strict=True)))
    lucas_eng9 = next(r for r in enrollments
                      if r["userSourcedId"] == stu_id(19) and r["classSourcedId"] == "cls-hs-eng9-p1")
    lucas_eng9["beginDate"] = "1/05/2023"

    write_drop("row_errors", plain_files(t, headers={"users": USERS + ["favoriteColor"]}))


def make_messy_valid() -> None:
    t = district()
    f: dict[str, bytes] = {}

    # manifest.csv: CRLF, file.resources left blank
    m = manifest({stem: "bulk" for stem in t})
    next(r for r in m if r["propertyName"] == "file.resources")["value"] = ""
    f["manifest.csv"] = encode_csv(MANIFEST, m, eol="\r\n")

    # orgs.csv: header `sourcedid`
    orgs = [{("sourcedid" if k == "sourcedId" else k): v for k, v in r.items()} for r in t["orgs"]]
    f["orgs.csv"] = encode_csv(["sourcedid", *ORGS[1:]], orgs, eol="\r\n")

    # academicSessions.csv: CR-only line ends (old Mac-style exports)
    f["academicSessions.csv"] = encode_csv(SESSIONS, t["academicSessions"], eol="\r")

    # courses.csv: CRLF, status left blank (allowed in bulk files)
    for r in t["courses"]:
        r["status"] = ""
    f["courses.csv"] = encode_csv(COURSES, t["courses"], eol="\r\n")

    # classes.csv: `dataLastModified` typo, Scheduled/Homeroom, grades "09, 10", one ragged row
    classes = []
    for r in t["classes"]:
        r = dict(r)
        r["dataLastModified"] = r.pop("dateLastModified")
        r["classType"] = r["classType"].capitalize()
        r["grades"] = r["grades"].replace(",", ", ")
        classes.append(r)
    header = ["dataLastModified" if h == "dateLastModified" else h for h in CLASSES]
    f["classes.csv"] = encode_csv(header, classes, eol="\r\n", ragged=frozenset({4}))

    # users.csv: BOM, metadata column first, `OrgSourcedIDs`, TRUE/False, a 1.0 `inactive` status
    users = []
    for r in t["users"]:
        r = dict(r)
        r["OrgSourcedIDs"] = r.pop("orgSourcedIds")
        r["enabledUser"] = "TRUE" if r["enabledUser"] == "true" else "False"
        if r["metadata.MembeanSchoolAdmin"] == "true":
            r["metadata.MembeanSchoolAdmin"] = "TRUE"
        if r["sourcedId"] == grd_id(2):
            r["status"] = "inactive"
        users.append(r)
    header = ["metadata.MembeanSchoolAdmin"] + [
        "OrgSourcedIDs" if h == "orgSourcedIds" else h for h in USERS if h != "metadata.MembeanSchoolAdmin"]
    f["users.csv"] = encode_csv(header, users, eol="\r\n", bom=True)

    # enrollments.csv: TRUE/False, ragged rows, no final newline
    for r in t["enrollments"]:
        r["primary"] = "TRUE" if r["primary"] == "true" else "False"
    f["enrollments.csv"] = encode_csv(ENROLLMENTS, t["enrollments"], eol="\r\n", final_newline=False,
                                      ragged=frozenset({0, 1, 2, 40}))

    # demographics.csv: the header alone
    f["demographics.csv"] = encode_csv(DEMOGRAPHICS, [], eol="\r\n")

    write_drop("messy_valid", f)


ES_GRADES = set(GRADE_OF_HOMEROOM)


def make_mass_withdrawal() -> None:
    """The elementary school's student export failed: its school, staff and classes are there, its
    students (and the guardians only they had) are not."""
    t = district()
    gone = {stu_id(n) for n, s in enumerate(STUDENTS, 1) if s[3] in ES_GRADES}
    users = []
    for r in t["users"]:
        if r["sourcedId"] in gone:
            continue
        if r["role"] in ("parent", "guardian"):
            kids = [k for k in r["agentSourcedIds"].split(",") if k not in gone]
            if not kids:
                continue
            if kids != r["agentSourcedIds"].split(","):   # Rosa: one child left, at the high school
                r["agentSourcedIds"] = ",".join(kids)
                r["orgSourcedIds"] = HS
        users.append(r)
    t["users"] = users
    t["enrollments"] = [r for r in t["enrollments"] if r["userSourcedId"] not in gone]
    del t["demographics"]  # not sent with this export: manifest says absent
    write_drop("mass_withdrawal", plain_files(t))


def make_delta() -> None:
    """A month later: one new second-grader, one email fixed, one second-grader withdrawn."""
    t = district()
    new = _student_row(36, "Nayeli", "Flores", "02", ES, dateLastModified=DELTA_AT, middleName="Itzel",
                       **{"metadata.homeLanguage": "es"})
    fixed = dict(_by_id(t["users"], stu_id(5)), dateLastModified=DELTA_AT,
                 email="zoe.kowalski@students.lincolnusd.example")
    gone = dict(_by_id(t["users"], stu_id(9)), dateLastModified=DELTA_AT, status="tobedeleted")
    old_enr = next(r for r in t["enrollments"] if r["userSourcedId"] == stu_id(9))
    enrollments = [
        dict(zip(ENROLLMENTS, ("enr-0090", "active", DELTA_AT, "cls-es-hr-02", ES, stu_id(36), "student",
                               "false", "2024-10-01", TERM_DATES[YEAR][1]), strict=True)),
        dict(old_enr, status="tobedeleted", dateLastModified=DELTA_AT, endDate="2024-09-27"),
    ]
    files = {"users.csv": encode_csv(USERS, [new, fixed, gone]),
             "enrollments.csv": encode_csv(ENROLLMENTS, enrollments),
             "manifest.csv": encode_csv(MANIFEST, manifest({"users": "delta", "enrollments": "delta"}))}
    write_drop("delta", files)


def make_unusable() -> None:
    """A real zip of clean/, cut in half (an upload that stopped part-way): no central directory."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in sorted((HERE / "clean").iterdir()):
            info = zipfile.ZipInfo(p.name, date_time=(2024, 9, 3, 6, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, p.read_bytes(), compresslevel=9)
    data = buf.getvalue()
    (HERE / "unusable.zip").write_bytes(data[: len(data) // 2])


def main() -> None:
    make_clean()
    make_row_errors()
    make_messy_valid()
    make_mass_withdrawal()
    make_delta()
    make_unusable()
    for p in sorted(HERE.iterdir()):
        if p.is_dir() and not p.name.startswith((".", "_")):
            print(p.name + "/", ", ".join(f"{c.name} ({c.stat().st_size} B)" for c in sorted(p.iterdir())))
    print("unusable.zip", (HERE / "unusable.zip").stat().st_size, "B")


if __name__ == "__main__":
    main()
