"""Build small bundles from CSV strings, for specification-style tests."""

from __future__ import annotations

import textwrap
import zipfile
from pathlib import Path

ORGS = """\
sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId
d1,active,,Lincoln Unified,district,0600001,
s1,active,,Lincoln Elementary,school,060000100001,d1
s2,active,,Lincoln High,school,060000100002,d1
"""
SESSIONS = """\
sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear
y1,active,,2026-2027,schoolYear,2026-08-01,2027-06-30,,2027
t1,active,,Fall,semester,2026-08-01,2026-12-20,y1,2027
"""
COURSES = """\
sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,subjects,subjectCodes
c1,active,,y1,Grade 3,G3,03,s1,,
c2,active,,y1,Algebra I,ALG1,"09,10",s2,,
"""
CLASSES = """\
sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods
k1,active,,Room 12,03,c1,R12,homeroom,,s1,t1,,,
k2,active,,Algebra I - P1,"09,10",c2,ALG1-1,scheduled,,s2,t1,,,1
"""
USERS = """\
sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,metadata.MembeanSchoolAdmin
u1,active,,true,s1,teacher,tmartin,,Tara,Martin,,T001,tmartin@lincoln.example,,,,,,
u2,active,,true,s1,student,jdoe,,Jane,Doe,,000123,jdoe@lincoln.example,,,g1,03,,
u3,active,,true,s2,student,josé,,José,Núñez,,000124,jnunez@lincoln.example,,,g1,09,,
u4,active,,true,s2,teacher,pobrien,,Pat,O'Brien,,T002,pobrien@lincoln.example,,,,,,TRUE
g1,active,,true,s1,parent,mdoe,,Mary,Doe,,,mdoe@mail.example,,,"u2,u3",,,
a1,active,,true,d1,districtAdministrator,boss,,Bo,Ss,,,boss@lincoln.example,,,,,,
"""
ENROLLMENTS = """\
sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate
e1,active,,k1,s1,u1,teacher,true,,
e2,active,,k1,s1,u2,student,false,,
e3,active,,k2,s2,u3,student,false,2026-08-15,
e4,active,,k2,s2,u4,teacher,true,,
"""

CLEAN = {
    "orgs.csv": ORGS, "academicSessions.csv": SESSIONS, "courses.csv": COURSES, "classes.csv": CLASSES,
    "users.csv": USERS, "enrollments.csv": ENROLLMENTS,
}


def make_bundle(dest: Path, files: dict[str, str | bytes], as_zip: bool = True, name: str = "drop") -> Path:
    """Write files (CSV text, dedented; or raw bytes) as a zip or a folder under dest; return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    blobs = {n: (v if isinstance(v, bytes) else textwrap.dedent(v).encode("utf-8")) for n, v in files.items()}
    if as_zip:
        path = dest / f"{name}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for n, b in blobs.items():
                zf.writestr(n, b)
        return path
    path = dest / name
    path.mkdir()
    for n, b in blobs.items():
        (path / n).write_bytes(b)
    return path


def with_changes(base: dict[str, str], **changes: str) -> dict[str, str]:
    """base with some files replaced: with_changes(CLEAN, users_csv=...) (dots spelled as underscores)."""
    out = dict(base)
    for key, value in changes.items():
        name = key.replace("_csv", ".csv")
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out
