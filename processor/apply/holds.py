"""Hold rules over the change set: codes mass_deactivation, too_many_guardians, school_vanished.

A hold stops the whole drop before anything is applied, because the data looks wrong.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Connection, func, select

from processor.apply.diff import ChangeSet, link_ends
from processor.apply.identity import probable_id_change
from processor.apply.store import ENTITY_TABLES
from processor.config import Policy
from processor.convert.roster import ENTITY_OF, Roster
from processor.runs import COUNTED
from processor.validate.issues import concat_issues, issue_frame, one_issue
from processor.vector import isin

NOUN = {"people": "people", "orgs": "orgs", "classes": "classes", "enrollments": "enrollments",
        "guardian_links": "guardian links", "courses": "courses", "academic_sessions": "academic sessions",
        "demographics": "demographics records"}


def check_holds(conn: Connection, tenant: str, changes: ChangeSet, roster: Roster, policy: Policy
                ) -> pd.DataFrame:
    files = roster.files  # the district's own file names (Clever: students.csv, teachers.csv...)
    issues = [*_mass_deactivation(changes, policy, files), *_school_vanished(conn, tenant, changes, files),
              *_too_many_guardians(changes, policy, files)]
    issues += probable_id_change(conn, tenant, changes, roster)
    return concat_issues(issues)


def _mass_deactivation(changes: ChangeSet, policy: Policy, files: dict[str, str] | None = None
                       ) -> list[pd.DataFrame]:
    out = []
    for table, tc in changes.tables.items():
        if tc.mode != "bulk" or tc.current_active == 0 or tc.deactivated.empty:
            continue
        pct = 100.0 * len(tc.deactivated) / tc.current_active
        if pct <= policy.max_deactivated_percent:
            continue
        entity = ENTITY_OF[table]
        file = (files or {}).get(entity, f"{entity}.csv")
        out.append(one_issue(
            "mass_deactivation",
            f"This full drop would deactivate {len(tc.deactivated):,} of {tc.current_active:,} active "
            f"{NOUN[table]} ({pct:.0f}%), more than your limit of {policy.max_deactivated_percent:g}%. "
            f"If that is intended, release the hold; otherwise check that {file} is complete and send it again.",
            file=file, field="status", value=f"{pct:.0f}%"))
    return out


def _school_vanished(conn: Connection, tenant: str, changes: ChangeSet, files: dict[str, str] | None = None
                     ) -> list[pd.DataFrame]:
    orgs = changes.tables.get("orgs")
    if orgs is None or orgs.deactivated.empty:
        return []
    before = changes.before.get("orgs")
    gone = before[before["sourced_id"].isin(orgs.deactivated["sourced_id"]) & before["type"].eq("school")]
    if gone.empty:
        return []
    people = ENTITY_TABLES["people"]
    rows = conn.execute(
        select(people.c.school, func.count()).where(
            people.c.tenant == tenant, people.c.status == "active",
            people.c.school.in_(list(gone["sourced_id"]))).group_by(people.c.school)).all()
    populated = {school: n for school, n in rows if n}
    gone = gone[gone["sourced_id"].isin(populated)]
    if gone.empty:
        return []
    counts = gone["sourced_id"].map(populated).astype("int64").astype("str")
    return [issue_frame(
        "school_vanished", (files or {}).get("orgs", "orgs.csv"), None, gone["sourced_id"], "sourcedId", gone["name"],
        "School '" + gone["name"].astype("str") + "' (" + counts + " active people) is missing from this full "
        "drop. If it closed, release the hold; otherwise include it in orgs.csv and send the drop again.")]


def _too_many_guardians(changes: ChangeSet, policy: Policy,
                        files: dict[str, str] | None = None) -> list[pd.DataFrame]:
    tc = changes.tables.get("guardian_links")
    if tc is None:
        return []
    # The links each student who gains links would have once the change set is applied (a student whose
    # links this drop does not add to was checked, or released, before).
    added = pd.concat([tc.created[["sourced_id", "student"]], tc.updated[["sourced_id", "student"]]])
    if added.empty:
        return []
    students = added["student"].unique()
    current = changes.current["guardian_links"]  # the diff's view of the stored links (set with tables)
    current = current[current["status"].eq("active")]
    current = pd.DataFrame({"sourced_id": current["sourced_id"].to_numpy(),
                            "student": link_ends(current["sourced_id"])[0]})
    current = current[isin(current["student"], students)]
    kept = current[~isin(current["sourced_id"], tc.deactivated["sourced_id"])]
    after = pd.concat([kept, added]).drop_duplicates("sourced_id")
    counts = after.groupby("student").size()
    over = counts[counts > policy.max_guardians_per_student]
    if over.empty:
        return []
    return [issue_frame(
        "too_many_guardians", (files or {}).get("users", "users.csv"), None, pd.Series(over.index, dtype="str"),
        "agentSourcedIds",
        over.astype("str").to_numpy(),
        "This student would have " + over.astype("str").to_numpy() + " guardian links, more than your limit of "
        f"{policy.max_guardians_per_student}. Correct the student's contacts in your SIS, or release the hold "
        "if they are right.")]


def counts_by_entity(changes: ChangeSet, rejected: dict[str, int], skipped: int) -> dict[str, dict[str, int]]:
    out = {e: {"created": 0, "updated": 0, "deactivated": 0, "unchanged": 0, "rejected": rejected.get(e, 0),
               "skipped": 0} for e in COUNTED}
    out["users"]["skipped"] = skipped
    table_of = {"users": "people", "orgs": "orgs", "classes": "classes", "enrollments": "enrollments"}
    for entity, table in table_of.items():
        tc = changes.tables.get(table)
        if tc is None:
            continue
        out[entity].update(created=len(tc.created), updated=len(tc.updated), deactivated=len(tc.deactivated),
                           unchanged=tc.unchanged)
    return out
