"""Hold rules over the change set: codes mass_deactivation (per entity and per school), mass_update,
rejected_rows, too_many_guardians, school_vanished.

A hold stops the whole drop before anything is applied, because the data looks wrong.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import Connection, func, select

from processor.apply.diff import ChangeSet, link_students
from processor.apply.identity import probable_id_change
from processor.apply.store import ENTITY_TABLES
from processor.config import Policy
from processor.convert.roster import ENTITY_OF, Roster
from processor.runs import COUNTED
from processor.validate.issues import concat_issues, issue_frame, one_issue
from processor.vector import codes, eq, isin

NOUN = {"people": "people", "orgs": "orgs", "classes": "classes", "enrollments": "enrollments",
        "guardian_links": "guardian links", "courses": "courses", "academic_sessions": "academic sessions",
        "demographics": "demographics records"}


def check_holds(conn: Connection, tenant: str, changes: ChangeSet, roster: Roster, policy: Policy
                ) -> pd.DataFrame:
    files = roster.files  # the district's own file names (Clever: students.csv, teachers.csv...)
    issues = [*_rejected_rows(roster, policy), *_mass_deactivation(changes, policy, files),
              *_school_mass_deactivation(conn, tenant, changes, roster, policy, files),
              *_mass_update(changes, policy, files),
              *_school_vanished(conn, tenant, changes, files), *_too_many_guardians(changes, policy, files)]
    issues += probable_id_change(conn, tenant, changes, roster)
    return concat_issues(issues)


def _rejected_rows(roster: Roster, policy: Policy) -> list[pd.DataFrame]:
    """A file most of whose rows are rejected is a broken export (cut short, a column blanked), not a
    few typos: applying the rest would leave the roster half-loaded."""
    out = []
    for file, (bad, total) in sorted(roster.rejected_by_file.items()):
        if total == 0 or bad <= policy.min_rejected_count:
            continue
        pct = 100.0 * bad / total
        if pct <= policy.max_rejected_percent:
            continue
        out.append(one_issue(
            "rejected_rows",
            f"{bad:,} of {total:,} data rows of {file} ({pct:.0f}%) would be rejected, more than your limit of "
            f"{policy.max_rejected_percent:g}% (and more than {policy.min_rejected_count:,} rows): the export looks "
            f"broken or incomplete. See the errors of {file} below, fix the export and send it again; release the "
            "hold only if the rest of the drop should be applied without those rows.",
            file=file, value=f"{pct:.0f}%"))
    return out


def _mass_update(changes: ChangeSet, policy: Policy, files: dict[str, str] | None = None) -> list[pd.DataFrame]:
    out = []
    for table, tc in changes.tables.items():
        if tc.current_active == 0 or tc.updated.empty:  # a first load creates, it never updates
            continue
        n = int(tc.updated["action"].eq("updated").sum())
        pct = 100.0 * n / tc.current_active
        if n <= policy.min_deactivated_count or pct <= policy.max_updated_percent:
            continue
        entity = ENTITY_OF[table]
        file = (files or {}).get(entity, f"{entity}.csv")
        out.append(one_issue(
            "mass_update",
            f"This drop would update {n:,} of {tc.current_active:,} active {NOUN[table]} ({pct:.0f}%), more than "
            f"your limit of {policy.max_updated_percent:g}%. A drop from another district, or an SIS that renumbered "
            f"its ids, looks like this: check that {file} is your district's current export; if the changes are "
            "intended, release the hold.",
            file=file, value=f"{pct:.0f}%"))
    return out


def _school_mass_deactivation(conn: Connection, tenant: str, changes: ChangeSet, roster: Roster, policy: Policy,
                              files: dict[str, str] | None = None) -> list[pd.DataFrame]:
    """One school losing most of its people, which a district-wide percentage hides in a big district."""
    tc = changes.tables.get("people")
    cur = changes.current.get("people")
    if tc is None or cur is None or tc.mode != "bulk" or tc.deactivated.empty or "school" not in cur:
        return []
    active = cur.loc[cur["status"].eq("active") & cur["school"].ne(""), "school"].value_counts()
    gone = tc.deactivated.loc[tc.deactivated["school"].ne(""), "school"].value_counts()
    table = pd.DataFrame({"gone": gone, "active": active.reindex(gone.index).fillna(0).astype("int64")})
    table = table[table["active"].gt(0) & table["gone"].gt(policy.min_deactivated_count)]
    table["pct"] = 100.0 * table["gone"] / table["active"]
    table = table[table["pct"].gt(policy.max_deactivated_percent_per_school)]
    if table.empty:
        return []
    names = _org_names(conn, tenant, roster, list(table.index))
    file = (files or {}).get("users", "users.csv")
    out = []
    for school, row in table.sort_index().iterrows():
        name = names.get(school) or school
        out.append(one_issue(
            "mass_deactivation",
            f"This full drop would deactivate {int(row['gone']):,} of {int(row['active']):,} active people at "
            f"{name} ({row['pct']:.0f}%), more than your limit of {policy.max_deactivated_percent_per_school:g}% "
            f"for one school. If that is intended, release the hold; otherwise check that {file} lists that "
            "school's people and send it again.",
            file=file, sourced_id=str(school), field="school", value=f"{row['pct']:.0f}%"))
    return out


def _org_names(conn: Connection, tenant: str, roster: Roster, ids: list[str]) -> dict[str, str]:
    t = ENTITY_TABLES["orgs"]
    names = dict(conn.execute(select(t.c.sourced_id, t.c.name).where(t.c.tenant == tenant,
                                                                     t.c.sourced_id.in_(ids))).all())
    orgs = roster.tables.get("orgs")
    if orgs is not None:
        sent = orgs[isin(orgs["sourced_id"], ids)]
        names.update(zip(sent["sourced_id"], sent["name"], strict=True))
    return {k: v for k, v in names.items() if v}


def _mass_deactivation(changes: ChangeSet, policy: Policy, files: dict[str, str] | None = None
                       ) -> list[pd.DataFrame]:
    out = []
    for table, tc in changes.tables.items():
        if tc.mode != "bulk" or tc.current_active == 0 or tc.deactivated.empty:
            continue
        pct = 100.0 * len(tc.deactivated) / tc.current_active
        # A percentage alone trips on small tables (1 of 8 courses is 12%): the count must be big as well.
        if pct <= policy.max_deactivated_percent or len(tc.deactivated) <= policy.min_deactivated_count:
            continue
        entity = ENTITY_OF[table]
        file = (files or {}).get(entity, f"{entity}.csv")
        out.append(one_issue(
            "mass_deactivation",
            f"This full drop would deactivate {len(tc.deactivated):,} of {tc.current_active:,} active "
            f"{NOUN[table]} ({pct:.0f}%), more than your limit of {policy.max_deactivated_percent:g}% "
            f"(and more than {policy.min_deactivated_count:,}). "
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
    after = added  # ids are unique in a table's change set, and created and updated never share one
    current = changes.current["guardian_links"]  # the diff's view of the stored links (set with tables)
    if len(current):
        active = current["sourced_id"][eq(current["status"], "active")]
        student = link_students(active)
        mine = isin(student, added["student"])  # only these students' links become Python objects
        kept = pd.DataFrame({"sourced_id": active[mine].to_numpy(), "student": student[mine].to_numpy()})
        kept = kept[~isin(kept["sourced_id"], tc.deactivated["sourced_id"])]
        if len(kept):  # a stored link the drop updates is in both, and counts once
            after = pd.concat([kept, added]).drop_duplicates("sourced_id")
    # Links per student by number, not by a group-by over the ids (a first load adds 630k links at 300k);
    # only the students over the limit are counted by name.
    per = codes(after["student"])
    over_codes = np.flatnonzero(np.bincount(per) > policy.max_guardians_per_student)
    over = after["student"][np.isin(per, over_codes)].value_counts().sort_index()
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
