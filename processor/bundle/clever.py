"""Clever SFTP CSV files → the same Bundle the OneRoster reader builds, so everything after bundle/ is shared.

Clever sends schools.csv, students.csv, teachers.csv, sections.csv, enrollments.csv and optionally
staff.csv, every one a full snapshot (bulk), with Clever's headers in any order. They become OneRoster
frames:

- schools → school orgs under one synthetic district org (Clever files do not describe the district);
- students, teachers, staff and each student's contact (Contact_* columns) → one users frame;
  a teacher listed at several schools, or also in staff.csv, is one person;
- sections → classes, plus the courses (Course_number / Course_name) and terms (Term_name, Term_start,
  Term_end) they name; Teacher_id, Teacher_2_id... → teacher enrollments;
- enrollments.csv → student enrollments.

Rows built from several files carry FILE/PART/LINE, and an Origin maps OneRoster columns back to Clever's
headers, so every issue names the district's file, line and column (bundle/provenance.py). Clever
columns with no OneRoster home are kept as `metadata.<header>` (so role_overrides can use e.g.
metadata.Title); passwords never are.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from processor.bundle.formats import ENTITY_ORDER, SPECS
from processor.bundle.provenance import FILE, PART, Origin
from processor.bundle.read import LINE, Bundle, BundleFile, parse_csv
from processor.bundle.sniff import header
from processor.bundle.unpack import Limits, Unpacked
from processor.validate.issues import one_issue

FORMAT = "clever"
DISTRICT_ID = "clever-district"
DISTRICT_NAME = "District"
STAFF_ROLE = "ext:staff"  # no OneRoster role fits; an unmapped 'ext:' role is the app role staff (convert/roles.py)
TEACHER_N = re.compile(r"^teacher_(\d+)_id$", re.I)


@dataclass(frozen=True)
class CleverFile:
    name: str
    required: tuple[str, ...]  # headers that must be present
    columns: tuple[str, ...]   # every header Clever defines for the file


FILES = {f.name: f for f in [
    CleverFile("schools.csv", ("School_id", "School_name"), (
        "School_id", "School_name", "School_number", "State_id", "Nces_id", "Low_grade", "High_grade",
        "Principal", "Principal_email", "School_address", "School_city", "School_state", "School_zip",
        "School_phone")),
    CleverFile("students.csv", ("School_id", "Student_id", "First_name", "Last_name"), (
        "School_id", "Student_id", "Student_number", "State_id", "Last_name", "Middle_name", "First_name",
        "Grade", "Gender", "DOB", "Race", "Hispanic_Latino", "Home_language", "Ell_status", "Frl_status",
        "IEP_status", "Student_street", "Student_city", "Student_state", "Student_zip", "Student_email",
        "Contact_relationship", "Contact_type", "Contact_name", "Contact_phone", "Contact_phone_type",
        "Contact_email", "Contact_sis_id", "Username", "Password", "Graduation_year", "Unweighted_gpa",
        "Weighted_gpa")),
    CleverFile("teachers.csv", ("School_id", "Teacher_id", "First_name", "Last_name"), (
        "School_id", "Teacher_id", "Teacher_number", "State_teacher_id", "Teacher_email", "First_name",
        "Middle_name", "Last_name", "Title", "Username", "Password")),
    CleverFile("staff.csv", ("School_id", "Staff_id", "First_name", "Last_name"), (
        "School_id", "Staff_id", "Staff_email", "First_name", "Last_name", "Department", "Title", "Username",
        "Password", "Role")),
    CleverFile("sections.csv", ("School_id", "Section_id"), (
        "School_id", "Section_id", "Teacher_id", "Name", "Section_number", "Grade", "Course_name",
        "Course_number", "Course_description", "Period", "Subject", "Term_name", "Term_start", "Term_end")),
    CleverFile("enrollments.csv", ("School_id", "Section_id", "Student_id"), (
        "School_id", "Section_id", "Student_id")),
]}
REQUIRED_FILES = ("schools.csv", "students.csv", "teachers.csv", "sections.csv", "enrollments.csv")
# The column that identifies a Clever file's rows: its presence in a header marks a Clever drop.
ID_COLUMNS = {"schools.csv": "School_id", "students.csv": "Student_id", "teachers.csv": "Teacher_id",
              "staff.csv": "Staff_id", "sections.csv": "Section_id", "enrollments.csv": "Section_id"}
NEVER_KEPT = {"Password"}
CONTACT = ("Contact_name", "Contact_email", "Contact_phone", "Contact_phone_type", "Contact_relationship",
           "Contact_type", "Contact_sis_id")

# OneRoster users column ← Clever header, per kind of person (and, for the Origin, their labels).
PEOPLE = {
    "students.csv": {"sourcedId": "Student_id", "orgSourcedIds": "School_id", "username": "Username",
                     "givenName": "First_name", "familyName": "Last_name", "middleName": "Middle_name",
                     "identifier": "Student_number", "email": "Student_email", "grades": "Grade",
                     "agentSourcedIds": "Contact_name"},
    "teachers.csv": {"sourcedId": "Teacher_id", "orgSourcedIds": "School_id", "username": "Username",
                     "givenName": "First_name", "familyName": "Last_name", "middleName": "Middle_name",
                     "identifier": "Teacher_number", "email": "Teacher_email"},
    "staff.csv": {"sourcedId": "Staff_id", "orgSourcedIds": "School_id", "username": "Username",
                  "givenName": "First_name", "familyName": "Last_name", "email": "Staff_email"},
    "students.csv#contact": {"sourcedId": "Contact_sis_id", "orgSourcedIds": "School_id",
                             "givenName": "Contact_name", "familyName": "Contact_name", "email": "Contact_email",
                             "phone": "Contact_phone", "agentSourcedIds": "Student_id"},
}
ROLE_OF = {"students.csv": "student", "teachers.csv": "teacher", "staff.csv": STAFF_ROLE}
SCHOOL_LABELS = {"sourcedId": "School_id", "name": "School_name", "identifier": "Nces_id"}
CLASS_LABELS = {"sourcedId": "Section_id", "title": "Name", "grades": "Grade", "courseSourcedId": "Course_number",
                "classCode": "Section_number", "schoolSourcedId": "School_id", "termSourcedIds": "Term_name",
                "subjects": "Subject", "periods": "Period"}
TERM_LABELS = {"sourcedId": "Term_name", "title": "Term_name", "startDate": "Term_start", "endDate": "Term_end",
               "schoolYear": "Term_end"}
COURSE_LABELS = {"sourcedId": "Course_number", "title": "Course_name", "courseCode": "Course_number"}

GRADES = {"kindergarten": "KG", "k": "KG", "kg": "KG", "0": "KG", "00": "KG", "prekindergarten": "PK",
          "pk": "PK", "pre-k": "PK", "transitionalkindergarten": "TK", "tk": "TK", "infanttoddler": "IT",
          "it": "IT", "preschool": "PR", "pr": "PR", "postgraduate": "PS", "ps": "PS", "ungraded": "UG",
          "ug": "UG", "other": "Other", "13": "13",
          **{str(n): f"{n:02d}" for n in range(1, 13)}, **{f"{n:02d}": f"{n:02d}" for n in range(1, 13)}}
US_DATE = r"^(\d{1,2})/(\d{1,2})/(\d{2}|\d{4})$"


def detect(raw: Unpacked) -> bool:
    """Clever's file names with Clever's id columns, and no OneRoster orgs.csv or users.csv."""
    if "orgs.csv" in raw.files or "users.csv" in raw.files:
        return False
    for name, column in ID_COLUMNS.items():
        names = header(raw.files.get(name))
        if names and column.lower() in {n.lower() for n in names}:
            return True
    return False


def read(raw: Unpacked, bundle: Bundle) -> Bundle:
    bundle.format = FORMAT
    issues = bundle.issues
    for name in REQUIRED_FILES:
        if name not in raw.files:
            issues.append(one_issue("missing_file", f"{name} is required in a Clever drop and is not in it. "
                                    "Include it in the export.", file=name))
            bundle.fatal = True
    frames: dict[str, pd.DataFrame] = {}
    sent: dict[str, list[str]] = {}
    for name in FILES:
        if name in raw.files:
            got = _read_file(FILES[name], raw.files[name], issues, raw.limits)
            if got is None:
                bundle.fatal = True
            else:
                frames[name], sent[name] = got
    for name in sorted(set(raw.files) - set(FILES)):
        issues.append(one_issue("unsupported_file", f"{name} was ignored: it is not one of Clever's files.",
                                file=name))
    if bundle.fatal:
        return bundle
    sections = frames["sections.csv"]
    teacher_cols = sorted((c for c in sections.columns if TEACHER_N.match(c) or c == "Teacher_id"),
                          key=lambda c: int(TEACHER_N.match(c).group(1)) if TEACHER_N.match(c) else 1)
    bundle.modes = {e: "bulk" for e in ENTITY_ORDER} | {"demographics": "absent"}
    files = {"orgs": "schools.csv", "academicSessions": "sections.csv", "courses": "sections.csv",
             "classes": "sections.csv", "users": ", ".join(n for n in ("students.csv", "teachers.csv", "staff.csv")
                                                            if n in frames),
             "enrollments": "enrollments.csv, sections.csv"}
    built = {
        "orgs": _orgs(frames["schools.csv"], sent["schools.csv"]),
        **_sections(sections, sent["sections.csv"], teacher_cols),
        "users": _users(frames, sent, sections, teacher_cols),
        "enrollments": _enrollments(frames["enrollments.csv"], sections, teacher_cols),
    }
    for entity in ENTITY_ORDER:
        if entity not in built:
            continue
        frame, sent_columns, origin = built[entity]
        origin.entity_files = files
        origin.ext_columns = frozenset({"role"}) if entity == "users" else frozenset()
        frame = _complete(entity, frame)
        meta = [c for c in frame.columns if c.startswith("metadata.")]
        bundle.files[entity] = BundleFile(entity, files[entity], frame, meta, sent_columns, origin)
    return bundle


# ---------------------------------------------------------------------------------------------- reading


def _read_file(spec: CleverFile, data: bytes, issues: list[pd.DataFrame], limits: Limits | None = None
               ) -> tuple[pd.DataFrame, list[str]] | None:
    """One Clever CSV as a frame under Clever's exact headers (every defined one, blank if not sent) + LINE."""
    name = spec.name
    parsed = parse_csv(data, name, issues, limits)
    if parsed is None:
        return None
    head, frame, line_issues = parsed
    issues.extend(line_issues)
    if head is None:
        issues.append(one_issue("bad_bundle", f"{name} is empty: it has no header line.", file=name))
        return None
    known = {c.lower(): c for c in spec.columns}
    keep, columns = [], []
    for i, h in enumerate(head):
        canon = known.get(h.lower())
        if canon is None and name == "sections.csv" and TEACHER_N.match(h):
            canon = f"Teacher_{TEACHER_N.match(h).group(1)}_id"
        if canon is None and h.lower().startswith("ext.") and len(h) > 4:
            canon = h  # an extension column (e.g. ext.preferred_language): kept as metadata.ext.*
        if canon is None or canon in columns:
            if h:
                why = "it is a second column of that name" if canon else "it is not one of Clever's columns"
                issues.append(one_issue("unknown_column", f"Column {h!r} of {name} was ignored: {why}. Use "
                                        "Clever's header names.", file=name, line=1, field=h))
            continue
        if canon != h:
            issues.append(one_issue("renamed_column", f"Column {h!r} of {name} was read as {canon!r}. Use Clever's "
                                    f"exact header {canon!r}.", file=name, line=1, field=h))
        keep.append(i)
        columns.append(canon)
    missing = [c for c in spec.required if c not in columns]
    if missing:
        for c in missing:
            issues.append(one_issue("missing_column", f"{name} has no {c!r} column in its header line. Add the "
                                    "column to the export.", file=name, line=1, field=c))
        return None
    out = frame.iloc[:, keep].copy()
    out.columns = columns
    for c in out.columns:
        col = out[c].fillna("").astype("str")
        out[c] = col.str.strip() if col.str.len().ne(col.str.strip().str.len()).any() else col
    for c in spec.columns:
        if c not in out.columns:
            out[c] = ""
    out[LINE] = frame[LINE].to_numpy()
    return out.reset_index(drop=True), columns


# ---------------------------------------------------------------------------------------------- entities


def _orgs(schools: pd.DataFrame, sent: list[str]):
    s = schools
    orgs = pd.DataFrame({"sourcedId": s["School_id"], "name": s["School_name"], "type": "school",
                         "identifier": s["Nces_id"], "parentSourcedId": DISTRICT_ID})
    orgs = _with_metadata(orgs, s, sent, used=("School_id", "School_name", "Nces_id"))
    orgs[LINE] = s[LINE].to_numpy()
    # Clever files do not describe the district: one synthetic org (on the header line) parents the schools.
    district = pd.DataFrame({"sourcedId": [DISTRICT_ID], "name": [DISTRICT_NAME], "type": ["district"],
                             LINE: [1]})
    orgs = pd.concat([orgs, district], ignore_index=True)
    return orgs, _sent_as(sent, SCHOOL_LABELS, orgs), Origin(headers={"schools.csv": SCHOOL_LABELS})


def _sections(sections: pd.DataFrame, sent: list[str], teacher_cols: list[str]) -> dict:
    s = sections
    start, end = _dates(s["Term_start"]), _dates(s["Term_end"])
    has_term = s["Term_name"].ne("") | start.ne("") | end.ne("")
    term_id = _ids("term", s["Term_name"] + "\x1f" + start + "\x1f" + end).where(has_term, "")
    has_course = s["Course_number"].ne("") | s["Course_name"].ne("")
    course_key = s["Course_number"].where(s["Course_number"].ne(""), "name\x1f" + s["Course_name"])
    course_id = _ids("course", course_key).where(has_course, "")

    terms = pd.DataFrame({"sourcedId": term_id, "title": s["Term_name"].where(
        s["Term_name"].ne(""), (start + " to " + end).str.strip(" to")), "type": "term", "startDate": start,
        "endDate": end, "schoolYear": _school_year(end).where(end.ne(""), _school_year(start)), LINE: s[LINE]})
    terms = terms[has_term].drop_duplicates("sourcedId").reset_index(drop=True)
    courses = pd.DataFrame({"sourcedId": course_id, "title": s["Course_name"].where(
        s["Course_name"].ne(""), s["Course_number"]), "courseCode": s["Course_number"],
        "orgSourcedId": DISTRICT_ID, LINE: s[LINE]})
    courses = courses[has_course].drop_duplicates("sourcedId").reset_index(drop=True)

    title = s["Name"].where(s["Name"].ne(""), s["Course_name"])
    title = title.where(title.ne(""), "Section " + s["Section_number"].where(s["Section_number"].ne(""),
                                                                                s["Section_id"]))
    homeroom = (s["Subject"] + " " + s["Name"]).str.lower().str.contains("homeroom", regex=False)
    classes = pd.DataFrame({
        "sourcedId": s["Section_id"], "title": title, "grades": _grades(s["Grade"]), "courseSourcedId": course_id,
        "classCode": s["Section_number"], "classType": np.where(homeroom, "homeroom", "scheduled"),
        "schoolSourcedId": s["School_id"], "termSourcedIds": term_id, "subjects": s["Subject"],
        "periods": s["Period"]})
    used = ("Section_id", "Name", "Grade", "Section_number", "School_id", "Subject", "Period", "Course_name",
            "Course_number", "Term_name", "Term_start", "Term_end", *teacher_cols)
    classes = _with_metadata(classes, s, sent, used)
    classes[LINE] = s[LINE].to_numpy()
    here = "sections.csv"
    return {
        "academicSessions": (terms, _sent_as(sent, TERM_LABELS, terms),
                             Origin(headers={here: TERM_LABELS},
                                    optional={here: frozenset({"startDate", "endDate", "schoolYear"})})),
        "courses": (courses, _sent_as(sent, COURSE_LABELS, courses), Origin(headers={here: COURSE_LABELS})),
        "classes": (classes, _sent_as(sent, CLASS_LABELS, classes),
                    Origin(headers={here: CLASS_LABELS},
                           optional={here: frozenset({"courseSourcedId", "termSourcedIds"})})),
    }


def _users(frames: dict[str, pd.DataFrame], sent: dict[str, list[str]], sections: pd.DataFrame,
           teacher_cols: list[str]):
    students, contacts = _students_and_contacts(frames["students.csv"])
    teachers = frames["teachers.csv"]
    staff = frames.get("staff.csv")
    taught = _taught(sections, teacher_cols)
    teachers, t_schools = _merge_schools(teachers, "Teacher_id")
    extra = [t_schools, taught]
    staff_part = None
    if staff is not None:
        staff, s_schools = _merge_schools(staff, "Staff_id")
        # A teacher also in staff.csv is one person, the teacher: their staff schools join the rest.
        both = staff["Staff_id"].isin(teachers["Teacher_id"])
        also = s_schools["person"].isin(teachers["Teacher_id"])
        extra += [pd.DataFrame({"person": staff.loc[both, "Staff_id"], "school": staff.loc[both, "School_id"]}),
                  s_schools[also]]
        staff_part = _people("staff.csv", staff[~both].reset_index(drop=True), sent["staff.csv"], s_schools[~also])
    parts = [_people("students.csv", students, sent["students.csv"], None),
             _people("teachers.csv", teachers, sent["teachers.csv"], pd.concat(extra, ignore_index=True)),
             *([staff_part] if staff_part is not None else []), contacts]
    users = pd.concat(parts, ignore_index=True)
    sent_columns = sorted({canon for name in ("students.csv", "teachers.csv", "staff.csv") if name in sent
                           for canon in _sent_as(sent[name], PEOPLE[name], users)})
    optional = {k: frozenset({"username"}) for k in PEOPLE} | {"students.csv#contact": frozenset({"username",
                                                                                                   "givenName"})}
    # agentSourcedIds link students and their contacts, both from students.csv.
    refs = {"students.csv": {"users": "students.csv"}, "students.csv#contact": {"users": "students.csv"}}
    return users, sent_columns, Origin(headers=PEOPLE, optional=optional, ref_files=refs)


def _students_and_contacts(students: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Students (one row per student: rows that differ only in their contact are one student with several
    contacts) and their contacts as guardian rows, with stable ids derived from the student and the contact."""
    s = students
    same_student = s.duplicated([c for c in s.columns if c not in (*CONTACT, *NEVER_KEPT, LINE)], keep="first")
    name, email = s["Contact_name"], s["Contact_email"]
    has = name.ne("") | email.ne("")
    who = name.str.lower().str.split().str.join(" ").where(name.ne(""), email.str.lower())
    key = ("sis\x1f" + s["Contact_sis_id"]).where(s["Contact_sis_id"].ne(""), s["Student_id"] + "\x1f" + who)
    cid = _ids("contact", key).where(has, "")
    links = pd.DataFrame({"contact": cid, "student": s["Student_id"], "school": s["School_id"]})[has]
    links = links.drop_duplicates(["contact", "student"])
    kids = _joined(links, "contact", "student")
    schools = _joined(links.drop_duplicates(["contact", "school"]), "contact", "school")
    agents = _joined(links, "student", "contact")

    c = s[has].assign(_cid=cid[has]).drop_duplicates("_cid")
    given, family = _split_names(c["Contact_name"])
    contacts = pd.DataFrame({
        "sourcedId": c["_cid"], "enabledUser": "true", "role": "guardian", "givenName": given, "familyName": family,
        "email": c["Contact_email"], "phone": c["Contact_phone"],
        "orgSourcedIds": c["_cid"].map(schools), "agentSourcedIds": c["_cid"].map(kids)})
    for col in ("Contact_relationship", "Contact_type", "Contact_phone_type", "Contact_sis_id"):
        contacts[f"metadata.{col}"] = c[col]
    contacts[LINE] = c[LINE].to_numpy()
    contacts[FILE], contacts[PART] = "students.csv", "contact"

    one = s[~same_student].copy()
    one["_agents"] = one["Student_id"].map(agents).fillna("")
    return one, contacts.reset_index(drop=True)


def _people(name: str, rows: pd.DataFrame, sent: list[str], more_schools: pd.DataFrame | None) -> pd.DataFrame:
    cols = PEOPLE[name]
    out = pd.DataFrame({canon: rows[header] for canon, header in cols.items()
                        if canon not in ("agentSourcedIds", "grades")})
    out["enabledUser"], out["role"] = "true", ROLE_OF[name]
    if name == "students.csv":
        out["grades"] = _grades(rows["Grade"])
        out["agentSourcedIds"] = rows["_agents"]
    if more_schools is not None and len(more_schools):
        pairs = pd.concat([pd.DataFrame({"person": rows[cols["sourcedId"]], "school": rows["School_id"]}),
                           more_schools[["person", "school"]]], ignore_index=True)
        pairs = pairs[pairs["school"].ne("")].drop_duplicates()
        # Only for people this file has: a section may name a teacher teachers.csv does not (validation says so).
        joined = _joined(pairs[pairs["person"].isin(rows[cols["sourcedId"]])], "person", "school")
        out["orgSourcedIds"] = rows[cols["sourcedId"]].map(joined).fillna(rows["School_id"]).to_numpy()
    used = (*cols.values(), "Grade", *CONTACT, *NEVER_KEPT)
    out = _with_metadata(out, rows, sent, used)
    if "metadata.DOB" in out.columns:
        out["metadata.DOB"] = _dates(out["metadata.DOB"])
    out[LINE] = rows[LINE].to_numpy()
    out[FILE], out[PART] = name, ""
    return out


def _enrollments(enrollments: pd.DataFrame, sections: pd.DataFrame, teacher_cols: list[str]):
    e = enrollments
    students = pd.DataFrame({"sourcedId": e["Section_id"] + ":" + e["Student_id"], "classSourcedId": e["Section_id"],
                             "schoolSourcedId": e["School_id"], "userSourcedId": e["Student_id"], "role": "student",
                             LINE: e[LINE], FILE: "enrollments.csv", PART: ""})
    parts = [students]
    headers = {"enrollments.csv": {"sourcedId": "Section_id + Student_id", "classSourcedId": "Section_id",
                                   "schoolSourcedId": "School_id", "userSourcedId": "Student_id"}}
    for col in teacher_cols:
        t = sections[sections[col].ne("")]
        parts.append(pd.DataFrame({
            "sourcedId": t["Section_id"] + ":" + t[col], "classSourcedId": t["Section_id"],
            "schoolSourcedId": t["School_id"], "userSourcedId": t[col], "role": "teacher",
            "primary": "true" if col == "Teacher_id" else "false", LINE: t[LINE], FILE: "sections.csv", PART: col}))
        headers[f"sections.csv#{col}"] = {"sourcedId": col, "classSourcedId": "Section_id",
                                          "schoolSourcedId": "School_id", "userSourcedId": col}
    frame = pd.concat(parts, ignore_index=True)
    sent = ["sourcedId", "classSourcedId", "schoolSourcedId", "userSourcedId", "role"]
    refs = {k: {"users": "teachers.csv" if k.startswith("sections.csv") else "students.csv"} for k in headers}
    return frame, sent, Origin(headers=headers, ref_files=refs)


# ---------------------------------------------------------------------------------------------- helpers


def _taught(sections: pd.DataFrame, teacher_cols: list[str]) -> pd.DataFrame:
    """(teacher, school) for every section a teacher teaches: a teacher is linked to each such school."""
    pairs = [pd.DataFrame({"person": sections[c], "school": sections["School_id"]}) for c in teacher_cols]
    pairs = pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame({"person": [], "school": []})
    return pairs[pairs["person"].ne("")].drop_duplicates()


def _merge_schools(rows: pd.DataFrame, id_col: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of one person that differ only in School_id are one person at several schools."""
    same = rows.duplicated([c for c in rows.columns if c not in ("School_id", *NEVER_KEPT, LINE)], keep="first")
    schools = pd.DataFrame({"person": rows.loc[same, id_col], "school": rows.loc[same, "School_id"]})
    return rows[~same].reset_index(drop=True), schools


def _joined(pairs: pd.DataFrame, key: str, value: str) -> pd.Series:
    """key → its values joined by commas, in order of appearance (most keys have one: no groupby for them)."""
    several = pairs[key].duplicated(keep=False)
    one = pd.Series(pairs.loc[~several, value].to_numpy(), index=pairs.loc[~several, key].to_numpy(), dtype="str")
    if several.any():
        many = pairs[several].groupby(key, sort=False)[value].agg(",".join)
        one = pd.concat([one, many.astype("str")])
    return one


def _with_metadata(out: pd.DataFrame, rows: pd.DataFrame, sent: list[str], used) -> pd.DataFrame:
    """Sent Clever columns with no OneRoster home, as metadata.<header> (never a password)."""
    extra = {f"metadata.{c}": rows[c].to_numpy() for c in sent if c not in used and c not in NEVER_KEPT}
    return out.assign(**extra) if extra else out


def _sent_as(sent: list[str], labels: dict[str, str], frame: pd.DataFrame) -> list[str]:
    """The columns the district sent, by their names in frame (what policy `require` looks for)."""
    have = set(sent)
    return [canon for canon, head in labels.items() if head in have] + \
        [c for c in frame.columns if c.startswith("metadata.") and c[len("metadata."):] in have]


def _complete(entity: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Every OneRoster column of the entity (blank when Clever has no such thing), all strings."""
    spec = SPECS[entity]
    for c in spec.columns:
        if c not in frame.columns:
            frame[c] = ""
    for c in frame.columns:
        if c != LINE:
            frame[c] = frame[c].fillna("").astype("str")
    frame[LINE] = frame[LINE].astype("int64")
    order = [*spec.columns, *(c for c in frame.columns if c not in spec.columns)]
    return frame[order].reset_index(drop=True)


def _ids(kind: str, keys: pd.Series) -> pd.Series:
    """Stable ids for records Clever does not identify (terms, courses, contacts): a hash of what they are."""
    unique = pd.unique(keys)
    digest = {k: f"{kind}-{hashlib.sha256(k.encode('utf-8')).hexdigest()[:16]}" for k in unique}
    return keys.map(digest).astype("str")


def _grades(col: pd.Series) -> pd.Series:
    """Clever's grade words and numbers → CEDS codes (Kindergarten → KG, 1 → 01); unknown values stay as sent."""
    def one(value: str) -> str:
        items = [v.strip() for v in value.split(",")]
        return ",".join(GRADES.get(v.lower().replace(" ", ""), v) for v in items if v)
    mapping = {v: one(v) for v in pd.unique(col)}
    return col.map(mapping).astype("str")


def _dates(col: pd.Series) -> pd.Series:
    """M/D/YY and M/D/YYYY → YYYY-MM-DD (YY: 69-99 → 19YY, else 20YY); anything else stays as sent."""
    parts = col.str.extract(US_DATE)
    hit = parts[0].notna()
    if not hit.any():
        return col
    year = parts.loc[hit, 2]
    short = year.str.len().eq(2)
    century = pd.Series(np.where(year.astype("int64") >= 69, "19", "20"), index=year.index, dtype="str")
    yy = year.where(~short, century + year)
    iso = yy + "-" + parts.loc[hit, 0].str.zfill(2) + "-" + parts.loc[hit, 1].str.zfill(2)
    out = col.copy()
    out[hit] = iso
    return out


def _school_year(col: pd.Series) -> pd.Series:
    """OneRoster's schoolYear (the year it ends) of a YYYY-MM-DD date: Aug 2026 - Jul 2027 → 2027."""
    ok = col.str.match(r"^\d{4}-\d{2}-\d{2}$")
    year = col.str.slice(0, 4).where(ok, "0").astype("int64")
    later = col.str.slice(5, 7).where(ok, "0").astype("int64").ge(8)
    return (year + later.astype("int64")).astype("str").where(ok, "")


def _split_names(names: pd.Series) -> tuple[pd.Series, pd.Series]:
    """'Mary Ann Doe' → ('Mary Ann', 'Doe'); 'Doe, Mary' → ('Mary', 'Doe'); 'Doe' → ('', 'Doe')."""
    comma = names.str.contains(",", regex=False)
    before, after = names.str.partition(",")[0].str.strip(), names.str.partition(",")[2].str.strip()
    spaced = names.str.strip().str.rpartition(" ")
    given = pd.Series(np.where(comma, after, spaced[0].str.strip()), index=names.index, dtype="str")
    family = pd.Series(np.where(comma, before, spaced[2].str.strip()), index=names.index, dtype="str")
    return given, family
