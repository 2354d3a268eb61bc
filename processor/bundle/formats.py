"""OneRoster 1.1 CSV: the files, their columns, value kinds and references. Data, not code."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Field:
    name: str
    required: bool = False           # the value must be non-blank (spec)
    kind: str = "text"               # text | enum | date | datetime | bool | email | year | grades | userids
    enum: tuple[str, ...] = ()
    ref: str | None = None           # entity this field points at
    many: bool = False               # a comma-separated list of values
    strong: bool = True              # an unknown reference rejects the row (else: the link is dropped)


@dataclass(frozen=True)
class FileSpec:
    entity: str
    filename: str
    fields: tuple[Field, ...]
    # Columns that must be in the header even when values may be blank.
    header_required: tuple[str, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def required_columns(self) -> list[str]:
        return ["sourcedId", *[f.name for f in self.fields if f.required and f.name != "sourcedId"],
                *self.header_required]


STATUS = ("active", "tobedeleted")
ORG_TYPES = ("department", "school", "district", "local", "state", "national")
SESSION_TYPES = ("gradingPeriod", "semester", "schoolYear", "term")
CLASS_TYPES = ("homeroom", "scheduled")
# 1.1 roles, plus the 1.2 values a 1.1 file may carry (CONTRACT.md section 2 maps them all).
USER_ROLES = ("administrator", "aide", "guardian", "parent", "proctor", "relative", "student", "teacher",
              "districtAdministrator", "siteAdministrator", "systemAdministrator", "principal", "counselor")
ENROLLMENT_ROLES = ("administrator", "proctor", "student", "teacher", "aide")
SEX = ("male", "female", "other", "unspecified")
GRADES = ("IT", "PR", "PK", "TK", "KG", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12",
          "13", "PS", "UG", "Other")


def _common() -> tuple[Field, ...]:
    return (Field("sourcedId", required=True),
            Field("status", kind="enum", enum=STATUS),
            Field("dateLastModified", kind="datetime"))


SPECS: dict[str, FileSpec] = {s.entity: s for s in [
    FileSpec("orgs", "orgs.csv", (
        *_common(),
        Field("name", required=True),
        Field("type", required=True, kind="enum", enum=ORG_TYPES),
        Field("identifier"),
        Field("parentSourcedId", ref="orgs", strong=False),
    )),
    FileSpec("academicSessions", "academicSessions.csv", (
        *_common(),
        Field("title", required=True),
        Field("type", required=True, kind="enum", enum=SESSION_TYPES),
        Field("startDate", required=True, kind="date"),
        Field("endDate", required=True, kind="date"),
        Field("parentSourcedId", ref="academicSessions", strong=False),
        Field("schoolYear", required=True, kind="year"),
    )),
    FileSpec("courses", "courses.csv", (
        *_common(),
        Field("schoolYearSourcedId", ref="academicSessions", strong=False),
        Field("title", required=True),
        Field("courseCode"),
        Field("grades", kind="grades", many=True),
        Field("orgSourcedId", required=True, ref="orgs"),
        Field("subjects", many=True),
        Field("subjectCodes", many=True),
    )),
    FileSpec("classes", "classes.csv", (
        *_common(),
        Field("title", required=True),
        Field("grades", kind="grades", many=True),
        Field("courseSourcedId", required=True, ref="courses"),
        Field("classCode"),
        Field("classType", required=True, kind="enum", enum=CLASS_TYPES),
        Field("location"),
        Field("schoolSourcedId", required=True, ref="orgs"),
        Field("termSourcedIds", required=True, ref="academicSessions", many=True),
        Field("subjects", many=True),
        Field("subjectCodes", many=True),
        Field("periods", many=True),
    )),
    FileSpec("users", "users.csv", (
        *_common(),
        Field("enabledUser", required=True, kind="bool"),
        Field("orgSourcedIds", required=True, ref="orgs", many=True),
        Field("role", required=True, kind="enum", enum=USER_ROLES),
        Field("username", required=True),
        Field("userIds", kind="userids", many=True),
        Field("givenName", required=True),
        Field("familyName", required=True),
        Field("middleName"),
        Field("identifier"),
        Field("email", kind="email"),
        Field("sms"),
        Field("phone"),
        Field("agentSourcedIds", ref="users", many=True, strong=False),
        Field("grades", kind="grades", many=True),
        Field("password"),
    )),
    FileSpec("enrollments", "enrollments.csv", (
        *_common(),
        Field("classSourcedId", required=True, ref="classes"),
        Field("schoolSourcedId", required=True, ref="orgs"),
        Field("userSourcedId", required=True, ref="users"),
        Field("role", required=True, kind="enum", enum=ENROLLMENT_ROLES),
        Field("primary", kind="bool"),
        Field("beginDate", kind="date"),
        Field("endDate", kind="date"),
    )),
    FileSpec("demographics", "demographics.csv", (
        *_common(),
        Field("birthDate", kind="date"),
        Field("sex", kind="enum", enum=SEX),
        *(Field(n, kind="bool") for n in (
            "americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican",
            "nativeHawaiianOrOtherPacificIslander", "white", "demographicRaceTwoOrMoreRaces",
            "hispanicOrLatinoEthnicity")),
        Field("countryOfBirthCode"),
        Field("stateOfBirthAbbreviation"),
        Field("cityOfBirth"),
        Field("publicSchoolResidenceStatus"),
    )),
]}

# Order in which entities are validated: every reference points at an entity earlier in the list
# (or at its own entity, through optional links only), so rejections cascade in one pass.
ENTITY_ORDER = ("orgs", "academicSessions", "courses", "classes", "users", "enrollments", "demographics")
REQUIRED_ENTITIES = ("orgs", "users", "classes", "enrollments")
# Gradebook and resource files: part of OneRoster, not imported by Rosterdrop.
UNSUPPORTED_FILES = ("categories.csv", "lineItems.csv", "results.csv", "resources.csv",
                     "classResources.csv", "courseResources.csv", "userProfiles.csv", "roles.csv",
                     "scoreScales.csv", "lineItemScoreScales.csv", "resultScoreScales.csv")
MANIFEST = "manifest.csv"

# Header spellings seen in real exports, by lower-cased header → canonical name. Case-only
# differences are matched without being listed here.
ALIASES: dict[str, str] = {
    "sourceid": "sourcedId", "sourced_id": "sourcedId", "sourcedid": "sourcedId", "id": "sourcedId",
    "datalastmodified": "dateLastModified", "datelastmodifed": "dateLastModified",
    "orgsourcedid": "orgSourcedIds", "orgsourceids": "orgSourcedIds", "orgsourcedids": "orgSourcedIds",
    "agentsourcedid": "agentSourcedIds", "agentsourceids": "agentSourcedIds",
    "termsourcedid": "termSourcedIds", "termsourceids": "termSourcedIds",
    "parentsourceid": "parentSourcedId", "schoolsourceid": "schoolSourcedId",
    "classsourceid": "classSourcedId", "usersourceid": "userSourcedId", "coursesourceid": "courseSourcedId",
    "enableduser": "enabledUser", "enabled": "enabledUser",
    "firstname": "givenName", "first_name": "givenName", "lastname": "familyName", "last_name": "familyName",
    "middle_name": "middleName", "userid": "userIds",
}

BOOL_VALUES = {"true": "true", "false": "false", "yes": "true", "no": "false", "1": "true", "0": "false",
               "t": "true", "f": "false", "y": "true", "n": "false"}
LEGACY_STATUS = {"inactive": "tobedeleted", "deleted": "tobedeleted"}
