#!/usr/bin/env python3
"""Write the OneRoster 1.2 and Clever sample drops of this folder (see README.md for what each must produce).

Deterministic and standard library only:  python sample_drops/make_samples_v2.py
It rewrites oneroster12/ and clever/ next to itself and nothing else (make_samples.py writes the 1.1
drops). The README's line numbers refer to the files this writes; change the data here and they must be
checked again.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------------------------------
# Maple Valley School District, as its OneRoster 1.2 SIS export describes it.

MV, MV_ES, MV_MS = "org-mvsd", "org-mv-es", "org-mv-ms"
YEAR, FALL, SPRING = "as-2026", "as-2026-s1", "as-2026-s2"
EXPORTED = "2025-09-02T06:00:00Z"

ORGS12 = ["sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parentSourcedId"]
SESSIONS12 = ["sourcedId", "status", "dateLastModified", "title", "type", "startDate", "endDate",
              "parentSourcedId", "schoolYear"]
COURSES12 = ["sourcedId", "status", "dateLastModified", "schoolYearSourcedId", "title", "courseCode", "grades",
             "orgSourcedId", "subjects", "subjectCodes"]
CLASSES12 = ["sourcedId", "status", "dateLastModified", "title", "grades", "courseSourcedId", "classCode",
             "classType", "location", "schoolSourcedId", "termSourcedIds", "subjects", "subjectCodes", "periods"]
USERS12 = ["sourcedId", "status", "dateLastModified", "enabledUser", "username", "userIds", "givenName",
           "familyName", "middleName", "identifier", "email", "sms", "phone", "agentSourcedIds", "grades",
           "password", "userMasterIdentifier", "resourceSourcedIds", "preferredGivenName", "preferredMiddleName",
           "preferredFamilyName", "primaryOrgSourcedId", "pronouns"]
ROLES12 = ["sourcedId", "status", "dateLastModified", "userSourcedId", "roleType", "role", "beginDate", "endDate",
           "orgSourcedId", "userProfileSourcedId"]
PROFILES12 = ["sourcedId", "status", "dateLastModified", "userSourcedId", "profileType", "vendorId",
              "applicationId", "description", "credentialType", "username", "password"]
ENROLLMENTS12 = ["sourcedId", "status", "dateLastModified", "classSourcedId", "schoolSourcedId", "userSourcedId",
                 "role", "primary", "beginDate", "endDate"]

ORG_ROWS = [(MV, "Maple Valley School District", "district", "5304620", ""),
            (MV_ES, "Cedar Creek Elementary School", "school", "530462001012", MV),
            (MV_MS, "Maple Valley Middle School", "school", "530462001030", MV)]
SESSION_ROWS = [(YEAR, "2025-2026", "schoolYear", "2025-08-27", "2026-06-12", "", "2026"),
                (FALL, "Fall 2025", "semester", "2025-08-27", "2026-01-23", YEAR, "2026"),
                (SPRING, "Spring 2026", "semester", "2026-01-26", "2026-06-12", YEAR, "2026")]
COURSE_ROWS = [("crs-es-hr", "Elementary Homeroom", "HR-ES", "03,04", MV_ES, "Homeroom", ""),
               ("crs-math7", "Math 7", "MATH7", "07", MV_MS, "Mathematics", "02052"),
               ("crs-sci7", "Life Science 7", "SCI7", "07", MV_MS, "Life and Physical Sciences", "03051"),
               ("crs-music", "General Music", "MUS", "03,04,07", MV_MS, "Fine and Performing Arts", "05101")]
# sourcedId, title, grades, course, classCode, classType, location, school, terms, period, teacher
CLASS_ROWS = [
    ("cls-es-hr-03", "Grade 3 Homeroom - Okafor", "03", "crs-es-hr", "HR-03-07", "homeroom", "Room 7", MV_ES,
     YEAR, "", "tch-1001"),
    ("cls-es-hr-04", "Grade 4 Homeroom - Lindqvist", "04", "crs-es-hr", "HR-04-09", "homeroom", "Room 9", MV_ES,
     YEAR, "", "tch-1002"),
    ("cls-ms-math7-p2", "Math 7 - Period 2", "07", "crs-math7", "MATH7-02", "scheduled", "Room 204", MV_MS,
     f"{FALL},{SPRING}", "2", "tch-1003"),
    ("cls-ms-sci7-p4", "Life Science 7 - Period 4", "07", "crs-sci7", "SCI7-04", "scheduled", "Lab 1", MV_MS,
     FALL, "4", "tch-1003"),
    # Music is taught by Rivera, a middle-school teacher with a secondary role at the elementary school.
    ("cls-es-music-03", "Grade 3 Music - Rivera", "03", "crs-music", "MUS-ES-03", "scheduled", "Music Room",
     MV_ES, YEAR, "", "tch-1004"),
    ("cls-ms-music-p6", "General Music - Period 6", "07", "crs-music", "MUS-06", "scheduled", "Band Room", MV_MS,
     SPRING, "6", "tch-1004"),
]
# sourcedId, given, middle, family, preferred given, pronouns, primary org, email local part
STAFF12 = [
    ("adm-1001", "Gloria", "", "Abernathy", "", "she/her", MV, "gabernathy"),
    ("adm-1002", "Tomasz", "", "Wiśniewski", "Tom", "he/him", MV_ES, "twisniewski"),
    ("tch-1001", "Chinonso", "Grace", "Okafor", "Nonso", "she/her", MV_ES, "cokafor"),
    ("tch-1002", "Erik", "", "Lindqvist", "", "he/him", MV_ES, "elindqvist"),
    ("tch-1003", "Mariana", "", "Díaz-Ortega", "", "she/her", MV_MS, "mdiazortega"),
    ("tch-1004", "Julián", "", "Rivera", "", "he/him", MV_MS, "jrivera"),
    ("cns-1001", "Keisha", "", "Bell", "", "she/her", MV_MS, "kbell"),
    ("lib-1001", "Oren", "", "Shapiro", "", "they/them", MV_ES, "oshapiro"),
]
# sourcedId, role, roleType, org (several rows per person where they have several roles)
STAFF_ROLES = [
    ("adm-1001", "districtAdministrator", "primary", MV),
    ("adm-1002", "principal", "primary", MV_ES),
    ("tch-1001", "teacher", "primary", MV_ES),
    ("tch-1002", "teacher", "primary", MV_ES),
    ("tch-1003", "teacher", "primary", MV_MS),
    ("tch-1004", "teacher", "secondary", MV_ES),  # listed first on purpose: roleType decides, not order
    ("tch-1004", "teacher", "primary", MV_MS),
    ("cns-1001", "counselor", "primary", MV_MS),
    ("lib-1001", "ext:librarian", "primary", MV_ES),
]
# sourcedId, given, family, preferred given, grade, school, guardian
STUDENTS12 = [
    ("stu-2001", "Amara", "Okonkwo", "", "03", MV_ES, "grd-2001"),
    ("stu-2002", "Benjamin", "Løvaas", "Ben", "03", MV_ES, "grd-2002"),
    ("stu-2003", "Camila", "Restrepo", "", "03", MV_ES, "grd-2003"),
    ("stu-2004", "Dmitri", "Volkov", "", "04", MV_ES, "grd-2004"),
    ("stu-2005", "Esme", "O'Callaghan", "", "04", MV_ES, "grd-2003"),
    ("stu-2006", "Farah", "Haddad", "", "04", MV_ES, ""),
    ("stu-2007", "Gabriel", "Nakamura-Reyes", "Gabe", "07", MV_MS, "grd-2005"),
    ("stu-2008", "Harper", "Quinn", "", "07", MV_MS, "grd-2006"),
    ("stu-2009", "Isabela", "Santos", "Bela", "07", MV_MS, ""),
    ("stu-2010", "Jonah", "Whitehorse", "", "07", MV_MS, "grd-2006"),
]
GUARDIANS12 = [("grd-2001", "Ngozi", "Okonkwo", "parent"), ("grd-2002", "Ingrid", "Løvaas", "parent"),
               ("grd-2003", "Lucía", "Restrepo", "guardian"), ("grd-2004", "Irina", "Volkova", "parent"),
               ("grd-2005", "Kenji", "Nakamura", "parent"), ("grd-2006", "Dana", "Quinn", "relative")]
HOMEROOM = {"03": "cls-es-hr-03", "04": "cls-es-hr-04"}


def oneroster12() -> dict[str, bytes]:
    stamp = {"status": "active", "dateLastModified": EXPORTED}
    orgs = [dict(stamp, sourcedId=s, name=n, type=t, identifier=i, parentSourcedId=p) for s, n, t, i, p in ORG_ROWS]
    sessions = [dict(stamp, sourcedId=s, title=t, type=k, startDate=a, endDate=b, parentSourcedId=p, schoolYear=y)
                for s, t, k, a, b, p, y in SESSION_ROWS]
    courses = [dict(stamp, sourcedId=s, schoolYearSourcedId=YEAR, title=t, courseCode=c, grades=g, orgSourcedId=o,
                    subjects=su, subjectCodes=sc) for s, t, c, g, o, su, sc in COURSE_ROWS]
    classes = [dict(stamp, sourcedId=s, title=t, grades=g, courseSourcedId=c, classCode=cc, classType=ct,
                    location=loc, schoolSourcedId=sch, termSourcedIds=terms, subjects="", subjectCodes="",
                    periods=per) for s, t, g, c, cc, ct, loc, sch, terms, per, _ in CLASS_ROWS]
    users, roles, profiles, enrollments = [], [], [], []

    def person(sid, given, family, middle="", preferred="", pronouns="", org="", email="", grades="", agents="",
               identifier="", password=""):
        users.append(dict(stamp, sourcedId=sid, enabledUser="true", username=email.split("@")[0], userIds="",
                          givenName=given, familyName=family, middleName=middle, identifier=identifier, email=email,
                          sms="", phone="", agentSourcedIds=agents, grades=grades, password=password,
                          userMasterIdentifier=f"MV-{sid.upper()}", resourceSourcedIds="",
                          preferredGivenName=preferred, preferredMiddleName="", preferredFamilyName="",
                          primaryOrgSourcedId=org, pronouns=pronouns))

    def role(user, kind, role_type, org, profile=""):
        roles.append(dict(stamp, sourcedId=f"rol-{len(roles) + 1:04d}", userSourcedId=user, roleType=role_type,
                          role=kind, beginDate="2025-08-27", endDate="", orgSourcedId=org,
                          userProfileSourcedId=profile))

    for sid, given, middle, family, preferred, pronouns, org, local in STAFF12:
        person(sid, given, family, middle, preferred, pronouns, org, f"{local}@maplevalley.example",
               identifier=sid.split("-")[1])
    for sid, kind, role_type, org in STAFF_ROLES:
        profile = ""
        if sid.startswith("tch-") and role_type == "primary":
            profile = f"prf-{sid}"
            profiles.append(dict(stamp, sourcedId=profile, userSourcedId=sid, profileType="lms",
                                 vendorId="example-lms", applicationId="", description="LMS login",
                                 credentialType="password", username=sid, password=f"Lms!{sid[::-1]}2025"))
        role(sid, kind, role_type, org, profile)
    kids: dict[str, list[str]] = {}
    for sid, given, family, preferred, grade, school, guardian in STUDENTS12:
        person(sid, given, family, preferred=preferred, org=school, grades=grade, agents=guardian,
               email=f"{given.lower()}.{sid[-4:]}@students.maplevalley.example", identifier=f"0072{sid[-4:]}",
               password=f"Welcome-{sid[-4:]}")
        role(sid, "student", "primary", school)
        if guardian:
            kids.setdefault(guardian, []).append(sid)
    for sid, given, family, kind in GUARDIANS12:
        school = next(s[5] for s in STUDENTS12 if s[0] == kids[sid][0])
        person(sid, given, family, agents=",".join(kids[sid]), email=f"{given.lower()}.{family.lower()}@mail.example")
        role(sid, kind, "primary", school)
    for cls in CLASS_ROWS:
        enrollments.append(dict(stamp, sourcedId=f"enr-{len(enrollments) + 1:04d}", classSourcedId=cls[0],
                                schoolSourcedId=cls[7], userSourcedId=cls[10], role="teacher", primary="true",
                                beginDate="", endDate=""))
    for sid, *_, grade, school, _guardian in STUDENTS12:
        for cls in [c for c in CLASS_ROWS if grade in c[2].split(",") and c[7] == school]:
            if cls[0] == "cls-es-music-03" or cls[0] in HOMEROOM.values() or school == MV_MS:
                enrollments.append(dict(stamp, sourcedId=f"enr-{len(enrollments) + 1:04d}", classSourcedId=cls[0],
                                        schoolSourcedId=school, userSourcedId=sid, role="student", primary="false",
                                        beginDate="", endDate=""))
    manifest = [{"propertyName": "manifest.version", "value": "1.0"},
                {"propertyName": "oneroster.version", "value": "1.2"},
                {"propertyName": "source.systemName", "value": "Example SIS"},
                {"propertyName": "source.systemCode", "value": "maple-valley-sd"}]
    for entity in ("academicSessions", "categories", "classes", "classResources", "courses", "courseResources",
                   "demographics", "enrollments", "lineItems", "orgs", "resources", "results", "roles",
                   "userProfiles", "users"):
        mode = "bulk" if entity in ("academicSessions", "classes", "courses", "enrollments", "orgs", "roles",
                                    "userProfiles", "users") else "absent"
        manifest.append({"propertyName": f"file.{entity}", "value": mode})
    return {"manifest.csv": encode(["propertyName", "value"], manifest), "orgs.csv": encode(ORGS12, orgs),
            "academicSessions.csv": encode(SESSIONS12, sessions), "courses.csv": encode(COURSES12, courses),
            "classes.csv": encode(CLASSES12, classes), "users.csv": encode(USERS12, users),
            "roles.csv": encode(ROLES12, roles), "userProfiles.csv": encode(PROFILES12, profiles),
            "enrollments.csv": encode(ENROLLMENTS12, enrollments)}


# ---------------------------------------------------------------------------------------------------
# Cedar Grove Unified, as its SIS writes Clever's SFTP files: column order its own, grades as words and
# numbers, US dates, names with commas, and students.csv with CR-only line ends.

SCHOOLS_CL = ["School_id", "School_name", "School_number", "Nces_id", "State_id", "Low_grade", "High_grade",
              "Principal", "Principal_email", "School_address", "School_city", "School_state", "School_zip",
              "School_phone"]
STUDENTS_CL = ["Student_id", "School_id", "Student_number", "State_id", "Last_name", "First_name", "Middle_name",
               "Grade", "Gender", "DOB", "Hispanic_Latino", "Home_language", "Student_email", "Username",
               "Password", "Contact_name", "Contact_type", "Contact_relationship", "Contact_phone",
               "Contact_email", "Contact_sis_id"]
TEACHERS_CL = ["Teacher_id", "School_id", "Teacher_number", "State_teacher_id", "Last_name", "First_name",
               "Middle_name", "Teacher_email", "Title", "Username", "Password"]
STAFF_CL = ["Staff_id", "School_id", "First_name", "Last_name", "Staff_email", "Department", "Title", "Username"]
SECTIONS_CL = ["School_id", "Section_id", "Teacher_id", "Teacher_2_id", "Name", "Section_number", "Grade",
               "Course_name", "Course_number", "Period", "Subject", "Term_name", "Term_start", "Term_end"]
ENROLLMENTS_CL = ["School_id", "Section_id", "Student_id"]

CG_ES, CG_HS = "1201", "1305"
SCHOOL_ROWS_CL = [
    (CG_ES, "Cedar Grove Elementary", "101", "062271003311", "CA-39-6871-6112", "PreKindergarten", "5",
     "Renata Alvarez", "ralvarez@cedargrove.example", "410 Orchard Ave", "Cedar Grove", "CA", "95330",
     "(209) 555-0141"),
    (CG_HS, "Cedar Grove High", "305", "062271003320", "CA-39-6871-3930", "9", "12",
     "Marcus Bell", "mbell@cedargrove.example", "1800 Valley Rd", "Cedar Grove", "CA", "95330", "(209) 555-0190"),
]
# Student_id, school, last, first, middle, grade, gender, DOB, contact name, relationship, phone, email, contact id
STUDENT_ROWS_CL = [
    ("500101", CG_ES, "Acosta", "Lucía", "", "Kindergarten", "F", "4/12/20", "Marisol Acosta", "Mother",
     "(209) 555-1101", "marisol.acosta@mail.example", "C-9001"),
    ("500102", CG_ES, "Brennan", "Finn", "Patrick", "Kindergarten", "M", "9/3/19", "Aoife Brennan", "Mother",
     "(209) 555-1102", "", "C-9002"),
    ("500103", CG_ES, "Cho", "Minseo", "", "PreKindergarten", "F", "1/27/21", "Jae Cho", "Father",
     "(209) 555-1103", "jae.cho@mail.example", "C-9003"),
    ("500104", CG_ES, "Delacroix, Jr.", "André", "", "1", "M", "6/30/18", "Simone Delacroix", "Grandmother",
     "(209) 555-1104", "", "C-9004"),
    ("500105", CG_ES, "Eze", "Chiamaka", "", "1", "F", "2/14/18", "Obinna Eze", "Father",
     "(209) 555-1105", "obinna.eze@mail.example", "C-9005"),
    ("500106", CG_ES, "Eze", "Tobenna", "", "TransitionalKindergarten", "M", "11/5/20", "Obinna Eze", "Father",
     "(209) 555-1105", "obinna.eze@mail.example", "C-9005"),
    ("500201", CG_HS, "Fontaine", "Élodie", "Marie", "9", "F", "3/21/2010", "Claire Fontaine", "Mother",
     "(209) 555-1201", "claire.fontaine@mail.example", "C-9101"),
    ("500202", CG_HS, "García López", "Diego", "", "9", "M", "7/8/2010", "Ana López", "Mother",
     "(209) 555-1202", "ana.lopez@mail.example", "C-9102"),
    ("500203", CG_HS, "Haugen", "Sigrid", "", "10", "F", "12/1/2009", "", "", "", "", ""),
    ("500204", CG_HS, "Ibrahim", "Yusuf", "", "11", "M", "5/16/2008", "Amina Ibrahim", "Mother",
     "(209) 555-1204", "amina.ibrahim@mail.example", "C-9104"),
    ("500205", CG_HS, "O'Donnell", "Keira", "Rose", "12", "F", "10/9/2007", "Sean O'Donnell", "Father",
     "(209) 555-1205", "sean.odonnell@mail.example", "C-9105"),
]
# Teacher_id, school, last, first, email local part, title
TEACHER_ROWS_CL = [
    ("T-3001", CG_ES, "Nakashima", "Emi", "enakashima", "Kindergarten Teacher"),
    ("T-3002", CG_ES, "Okoro", "Daniel", "dokoro", "First Grade Teacher"),
    ("T-3003", CG_HS, "Petrov", "Alexei", "apetrov", "Mathematics Teacher"),
    ("T-3004", CG_HS, "Quintero", "Rosa", "rquintero", "Science Teacher"),
    ("T-3005", CG_ES, "Rasmussen", "Karl", "krasmussen", "Music Teacher"),  # also teaches at the high school
]
STAFF_ROWS_CL = [("S-4001", CG_ES, "Renata", "Alvarez", "ralvarez", "Administration", "Principal"),
                 ("S-4002", CG_HS, "Tamar", "Weiss", "tweiss", "Counseling", "School Counselor")]
# School_id, Section_id, Teacher_id, Teacher_2_id, Name, number, Grade, course, course no, period, subject, term
TERMS_CL = {"year": ("2025-2026", "8/13/2025", "6/4/2026"), "fall": ("Fall 2025", "8/13/25", "12/19/25")}
SECTION_ROWS_CL = [
    (CG_ES, "SEC-7001", "T-3001", "", "Kindergarten - Nakashima", "K-1", "Kindergarten", "Kindergarten",
     "K-HR", "", "homeroom/advisory", "year"),
    (CG_ES, "SEC-7002", "T-3002", "", "Grade 1 - Okoro", "1-1", "1", "Grade 1", "G1-HR", "", "homeroom/advisory",
     "year"),
    (CG_ES, "SEC-7003", "T-3005", "T-3001", "Early Music", "MUS-EL", "PreKindergarten", "Early Music", "MUS-E",
     "", "arts and music", "year"),
    (CG_HS, "SEC-7101", "T-3003", "", "Algebra I - Period 1", "ALG1-01", "9", "Algebra I", "MATH-110", "1",
     "math", "year"),
    (CG_HS, "SEC-7102", "T-3004", "", "Biology - Period 3", "BIO-03", "10", "Biology", "SCI-210", "3",
     "science", "fall"),
    (CG_HS, "SEC-7103", "T-3005", "", "Concert Choir", "CHOIR-05", "11", "Concert Choir", "MUS-300", "5",
     "arts and music", "year"),
]
ENROLLMENT_ROWS_CL = [
    (CG_ES, "SEC-7001", "500101"), (CG_ES, "SEC-7001", "500102"), (CG_ES, "SEC-7001", "500106"),
    (CG_ES, "SEC-7002", "500104"), (CG_ES, "SEC-7002", "500105"),
    (CG_ES, "SEC-7003", "500103"), (CG_ES, "SEC-7003", "500106"),
    (CG_HS, "SEC-7101", "500201"), (CG_HS, "SEC-7101", "500202"),
    (CG_HS, "SEC-7102", "500203"), (CG_HS, "SEC-7102", "500201"),
    (CG_HS, "SEC-7103", "500204"), (CG_HS, "SEC-7103", "500205"), (CG_HS, "SEC-7103", "500202"),
]


def clever() -> dict[str, bytes]:
    schools = [dict(zip(SCHOOLS_CL, row, strict=True)) for row in SCHOOL_ROWS_CL]
    students = []
    for sid, school, last, first, middle, grade, gender, dob, cname, rel, phone, cmail, cid in STUDENT_ROWS_CL:
        ascii_first = first.lower().replace("é", "e").replace("í", "i").replace("ú", "u")
        students.append({"Student_id": sid, "School_id": school, "Student_number": f"S{sid}",
                         "State_id": f"CA{sid}0", "Last_name": last, "First_name": first, "Middle_name": middle,
                         "Grade": grade, "Gender": gender, "DOB": dob, "Hispanic_Latino": "N",
                         "Home_language": "English", "Student_email": f"{ascii_first}.{sid}@students.cedargrove.example",
                         "Username": f"{ascii_first}{sid}", "Password": f"Pw{sid[::-1]}!",
                         "Contact_name": cname, "Contact_type": "guardian" if cname else "",
                         "Contact_relationship": rel, "Contact_phone": phone, "Contact_email": cmail,
                         "Contact_sis_id": cid})
    teachers = [{"Teacher_id": tid, "School_id": school, "Teacher_number": tid[2:], "State_teacher_id": f"CA-T{tid[2:]}",
                 "Last_name": last, "First_name": first, "Middle_name": "", "Teacher_email": f"{local}@cedargrove.example",
                 "Title": title, "Username": local, "Password": f"Tch-{tid[2:]}-pw"}
                for tid, school, last, first, local, title in TEACHER_ROWS_CL]
    staff = [{"Staff_id": sid, "School_id": school, "First_name": first, "Last_name": last,
              "Staff_email": f"{local}@cedargrove.example", "Department": dept, "Title": title, "Username": local}
             for sid, school, first, last, local, dept, title in STAFF_ROWS_CL]
    sections = []
    for school, sec, t1, t2, name, number, grade, course, course_no, period, subject, term in SECTION_ROWS_CL:
        term_name, start, end = TERMS_CL[term]
        sections.append({"School_id": school, "Section_id": sec, "Teacher_id": t1, "Teacher_2_id": t2, "Name": name,
                         "Section_number": number, "Grade": grade, "Course_name": course, "Course_number": course_no,
                         "Period": period, "Subject": subject, "Term_name": term_name, "Term_start": start,
                         "Term_end": end})
    enrollments = [dict(zip(ENROLLMENTS_CL, row, strict=True)) for row in ENROLLMENT_ROWS_CL]
    return {"schools.csv": encode(SCHOOLS_CL, schools, eol="\r\n"),
            "students.csv": encode(STUDENTS_CL, students, eol="\r"),
            "teachers.csv": encode(TEACHERS_CL, teachers, eol="\r\n"),
            "staff.csv": encode(STAFF_CL, staff, eol="\r\n"),
            "sections.csv": encode(SECTIONS_CL, sections, eol="\r\n"),
            "enrollments.csv": encode(ENROLLMENTS_CL, enrollments, eol="\r\n")}


# ---------------------------------------------------------------------------------------------------


def encode(header: list[str], rows: list[dict[str, str]], eol: str = "\n") -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=eol)
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(c, "") for c in header])
    return buf.getvalue().encode("utf-8")


def write_drop(name: str, files: dict[str, bytes]) -> Path:
    folder = HERE / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    for fname, data in files.items():
        (folder / fname).write_bytes(data)
    return folder


def main() -> None:
    write_drop("oneroster12", oneroster12())
    write_drop("clever", clever())


if __name__ == "__main__":
    main()
