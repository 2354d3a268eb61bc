"""A validated OneRoster bundle → the app's roster: one frame per store table, whole columns at a time.

Every frame has sourced_id, status (active | inactive), the table's typed columns and row_hash (what the
diff compares); `data` (every other field the district sent, metadata.* included, as JSON; never passwords)
is made by `data_json` for the rows the diff writes, from the columns kept in Roster.data_source.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from processor.apply.store import ENTITY_COLUMNS
from processor.bundle.provenance import FILE, files_of
from processor.bundle.read import LINE, Bundle
from processor.config import Policy
from processor.convert.incremental import LineState, Same, Split, run_key, split, table_key
from processor.validate.current import CurrentRoster
from processor.validate.issues import one_issue
from processor.validate.language import preferred_languages
from processor.validate.run import Validation
from processor.vector import PARALLEL, arrow, codes, eq, explode, id_set, isin, json_rows, positions, row_hash

# OneRoster entity → store table, and back.
TABLE_OF = {"orgs": "orgs", "academicSessions": "academic_sessions", "courses": "courses", "classes": "classes",
            "users": "people", "enrollments": "enrollments", "demographics": "demographics"}
ENTITY_OF = {v: k for k, v in TABLE_OF.items()} | {"guardian_links": "users"}

RENAMES: dict[str, dict[str, str]] = {
    "orgs": {"name": "name", "type": "type", "identifier": "identifier", "parentSourcedId": "parent"},
    "academic_sessions": {"title": "title", "type": "type", "startDate": "start_date", "endDate": "end_date",
                          "parentSourcedId": "parent", "schoolYear": "school_year"},
    "courses": {"title": "title", "courseCode": "course_code", "grades": "grades", "orgSourcedId": "org",
                "schoolYearSourcedId": "school_year"},
    "classes": {"title": "title", "classCode": "class_code", "classType": "class_type", "grades": "grades",
                "schoolSourcedId": "school", "courseSourcedId": "course", "termSourcedIds": "terms"},
    "people": {"role": "or_role", "username": "username", "email": "email", "givenName": "given_name",
               "familyName": "family_name", "middleName": "middle_name", "identifier": "identifier",
               "grades": "grades", "enabledUser": "enabled"},
    "enrollments": {"classSourcedId": "class_id", "userSourcedId": "person", "role": "role",
                    "primary": "is_primary", "schoolSourcedId": "school", "beginDate": "begin_date",
                    "endDate": "end_date"},
    "demographics": {"birthDate": "birth_date", "sex": "sex"},
}
NOT_KEPT = {"password"}  # never stored
NOT_COMPARED = {"dateLastModified", "status", LINE}  # a re-export that only bumps dates changes nothing


@dataclass
class Roster:
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # store table → frame
    modes: dict[str, str] = field(default_factory=dict)            # store table → bulk | delta | absent
    # For guardian links in a delta: the students whose links the drop restates.
    link_scope: pd.Index | None = None
    skipped: int = 0
    issues: list[pd.DataFrame] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # entity → the district's file name(s), for issues
    # store table → the sent columns that go into `data`, row for row with the table's frame (see data_json)
    data_source: dict[str, pd.DataFrame] = field(default_factory=dict)
    # store table → sourcedIds of rejected rows (no accepted row of the same id): the stored records keep
    # their values and status (last-known-good; CONTRACT.md section 7), see diff.kept_ids
    kept: dict[str, pd.Index] = field(default_factory=dict)
    # the district's file → (rejected data rows, data rows), for the rejected_rows hold
    rejected_by_file: dict[str, tuple[int, int]] = field(default_factory=dict)
    file_tables: dict[str, list[str]] = field(default_factory=dict)  # the district's file → store tables
    # Incremental conversion (convert.incremental): store table → the accepted rows that were not converted
    # again because the snapshot holds their conversion (their positions in it), the key the table's line
    # hashes hold under, and the state read before conversion.
    same: dict[str, Same] = field(default_factory=dict)
    line_keys: dict[str, str] = field(default_factory=dict)
    state: LineState | None = None
    # store table → its active rows per school, kept when the diff let the table's rows go (let_go)
    active_schools: dict[str, pd.Series] = field(default_factory=dict)

    def active_per_school(self, table: str) -> pd.Series | None:
        """How many of the table's converted rows are active per school (the report's unchanged counts)."""
        if table in self.active_schools:
            return self.active_schools[table]
        frame = self.tables.get(table)
        if frame is None or "school" not in frame:
            return None
        return frame.loc[eq(frame["status"], "active"), "school"].value_counts()

    def let_go(self, table: str, created: pd.DataFrame) -> None:
        """After the table's diff: keep only what the rest of the run reads of it, the `data` sources of the
        rows the apply creates (`created`, labelled as the table's rows) and the active rows per school.
        A nightly names every row and writes ~1% of them; holding the others through the diffs of the next
        tables and the apply put a 900k district at the 5 GB limit (bench/README.md, 2026-12-07)."""
        frame = self.tables[table]
        if created is frame:  # every row is created (a first load): the apply writes the frame itself
            return
        counts = self.active_per_school(table)
        if counts is not None:
            self.active_schools[table] = counts
        source = self.data_source.get(table)
        if source is not None:
            self.data_source[table] = source.loc[created.index]
        self.tables[table] = frame.iloc[0:0]


def convert(bundle: Bundle, validation: Validation, policy: Policy, current: CurrentRoster,
            state: LineState | None = None) -> Roster:
    """state: what the last applied drop left (convert.incremental.load_state); without it, every row is
    converted."""
    roster = Roster(files={e: bf.name for e, bf in bundle.files.items()}, state=state)
    kept: dict[str, pd.DataFrame] = {}
    for entity, bf in bundle.files.items():
        mask = validation.rejected.get(entity)
        # Validation rejects blank and repeated sourcedIds, so every table of the roster has unique ids
        # (the diff relies on it; guardian links see to theirs below).
        keep = ~mask.to_numpy() if mask is not None else ~bf.frame["sourcedId"].duplicated().to_numpy()
        # Every row kept (a clean file): the frame itself, not a copy of it (~0.3 GB of a 300k first load).
        df = bf.frame if keep.all() else bf.frame[keep]
        kept[entity] = df
        for name in files_of(bf):
            roster.file_tables.setdefault(name, []).append(TABLE_OF[entity])
        if mask is not None:
            roster.kept[TABLE_OF[entity]] = _rejected_ids(bf.frame, mask, df)
            roster.rejected_by_file.update(_rejected_by_file(bf.frame, mask, bf.name))
    roles = None
    if "users" in kept:
        roles = validation.roles[~validation.rejected["users"]] if validation.roles is not None else None
        users = kept["users"]
        excluded = roles.isin(policy.exclude_roles)
        if excluded.any():
            roster.skipped = int(excluded.sum())
            first = users.loc[excluded[excluded].index[0]]  # the alert names one of them, for tracing
            more = f" and {roster.skipped - 1:,} more" if roster.skipped > 1 else ""
            roster.issues.append(one_issue(
                "excluded_role", f"{roster.skipped} people with an excluded role "
                f"({', '.join(sorted(set(roles[excluded])))}) were not stored, as your district's settings ask "
                f"(first on line {first[LINE]}, sourcedId {first['sourcedId']}{more}).",
                file=roster.files["users"], line=int(first[LINE]), sourced_id=str(first["sourcedId"])))
            users, roles = users[~excluded], roles[~excluded]
            gone = kept["users"].loc[excluded[excluded].index, "sourcedId"]
            if "enrollments" in kept:
                kept["enrollments"] = kept["enrollments"][~isin(kept["enrollments"]["userSourcedId"], gone)]
            if "demographics" in kept:
                kept["demographics"] = kept["demographics"][~isin(kept["demographics"]["sourcedId"], gone)]
        kept["users"] = users
    if "demographics" in kept:
        # Demographics of people this drop does not store (rejected, excluded, unknown) are not kept.
        d = kept["demographics"]
        known = kept["users"]["sourcedId"] if "users" in kept else pd.Series([], dtype="str")
        kept["demographics"] = d[isin(d["sourcedId"], id_set(known, current.active("users")))]
    org_types = _org_types(kept.get("orgs"), current)
    key = state.key if state is not None else run_key(policy, bundle.format, [])
    schools = org_types.index[org_types.eq("school")]
    # The tables convert two at a time, guardian links beside them: most of the work (row hashes, lookups,
    # column copies) is in Arrow's kernels, which release the GIL, so the second core is not idle.
    with ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="convert") as pool:
        links = None
        biggest_first = sorted(kept.items(), key=lambda kv: -len(kv[1]))
        # Which rows the last applied drop already converted (incremental.py): hashed first, then only the
        # others are converted.
        splits = {e: pool.submit(_split, state, TABLE_OF[e], df, key, schools if e == "users" else None)
                  for e, df in biggest_first}
        splits = {e: f.result() for e, f in splits.items()}
        if "demographics" in splits and "users" in splits and not splits["demographics"].fresh.all():
            # A person converted afresh brings their demographics (the holds compare new people's birth dates).
            fresh_people = kept["users"]["sourcedId"][splits["users"].fresh]
            d = splits["demographics"]
            d.fresh |= isin(kept["demographics"]["sourcedId"], fresh_people).to_numpy()
            if d.same is not None:
                d.same = d.same.subset(isin(d.same.column("sourced_id"),
                                            kept["demographics"]["sourcedId"][~d.fresh]).to_numpy())
        if "users" in kept:
            users = kept["users"]
            people = pd.DataFrame({"sourced_id": users["sourcedId"], "role": roles.astype("str"),
                                   "status": _status_column(users)}).reset_index(drop=True)
            links = pool.submit(_guardian_links, users["agentSourcedIds"].array, people, current,
                                bundle.modes.get("users", "bulk"), _same_links_base(state, splits["users"], key))
        frames = {}
        for entity, df in biggest_first:
            table = TABLE_OF[entity]
            sp = splits[entity]
            every = sp.fresh.all()  # the full path (and a first load): the frame itself, never a copy of it
            part = df if every else df[sp.fresh]
            extra = _people_columns(part, roles if every else roles[sp.fresh], org_types) if table == "people" else {}
            frames[entity] = pool.submit(_frame, table, part, bundle.files[entity].metadata_columns, extra,
                                         sp.hashes[sp.fresh])
        for entity in kept:
            table = TABLE_OF[entity]
            roster.tables[table], roster.data_source[table] = frames[entity].result()
            roster.modes[table] = bundle.modes.get(entity, "bulk")
            roster.line_keys[table] = splits[entity].key
            if splits[entity].same is not None and len(splits[entity].same):
                roster.same[table] = splits[entity].same
        if links is not None:
            roster.tables["guardian_links"], roster.link_scope, same_links = links.result()
            roster.line_keys["guardian_links"] = key
            if same_links is not None and len(same_links):
                roster.same["guardian_links"] = same_links
    for entity in TABLE_OF:
        roster.modes.setdefault(TABLE_OF[entity], "absent" if bundle.modes.get(entity) != "delta" else "delta")
    roster.modes["guardian_links"] = roster.modes["people"] if links is not None else "absent"
    return roster


def _split(state: LineState | None, table: str, df: pd.DataFrame, key: str, schools: pd.Index | None) -> Split:
    return split(state, table, df, _gone(df), table_key(key, table, df, schools))


def _rejected_ids(frame: pd.DataFrame, mask: pd.Series, accepted: pd.DataFrame) -> pd.Index:
    """Ids of rejected rows that no accepted row carries (a duplicate's first row is the record's row)."""
    ids = frame.loc[mask.to_numpy(), "sourcedId"]
    ids = ids[ids.ne("")]
    if ids.empty:
        return pd.Index([], dtype="str")
    ids = ids[~isin(ids, accepted["sourcedId"])]
    return pd.Index(ids.unique(), dtype="str")


def _rejected_by_file(frame: pd.DataFrame, mask: pd.Series, name: str) -> dict[str, tuple[int, int]]:
    """Per district file, rejected and total data lines (one Clever file may feed rows of two kinds: a
    line counts once, rejected when any of its rows is)."""
    if FILE not in frame.columns:  # one file, one row per line
        return {name: (int(mask.sum()), len(frame))}
    files = frame[FILE].astype("str")
    lines = pd.DataFrame({"file": files.to_numpy(), "line": frame[LINE].to_numpy(), "bad": mask.to_numpy()})
    per_line = lines.groupby(["file", "line"], sort=False)["bad"].any()
    totals = per_line.groupby(level=0).agg(["sum", "size"])
    return {str(f): (int(r["sum"]), int(r["size"])) for f, r in totals.iterrows()}


def _org_types(orgs: pd.DataFrame | None, current: CurrentRoster) -> pd.Series:
    types = current.org_types
    if orgs is not None:
        types = pd.concat([types, orgs.set_index("sourcedId")["type"]])
        types = types[~types.index.duplicated(keep="last")]
    return types


def _people_columns(users: pd.DataFrame, roles: pd.Series, org_types: pd.Series) -> dict[str, pd.Series]:
    orgs = explode(users["orgSourcedIds"])
    schools = orgs[isin(orgs, org_types.index[org_types.eq("school")]).to_numpy()]
    # Most people have one school: join strings only for the few with several (groupby-join is slow).
    several = schools.index.duplicated(keep=False)
    joined = schools[~several]
    if several.any():
        joined = pd.concat([joined, schools[several].groupby(level=0).agg(",".join)])
    joined = joined.reindex(users.index, fill_value="")
    primary = schools[~schools.index.duplicated(keep="first")].reindex(users.index, fill_value="")
    return {"role": roles.astype("str"), "schools": joined.astype("str"), "school": primary.astype("str"),
            "preferred_language": preferred_languages(users)}


def _gone(df: pd.DataFrame) -> np.ndarray:
    """Which rows convert to an inactive record: a `tobedeleted` status."""
    return eq(df["status"], "tobedeleted").to_numpy()


def _status_column(df: pd.DataFrame) -> pd.Series:
    """Each row's converted status (active | inactive) as a str column, made in Arrow (a numpy array of str
    becomes one through a Python string per row)."""
    return pd.Series(pa.chunked_array([pc.if_else(pa.array(_gone(df)), pa.scalar("inactive", pa.large_string()),
                                                  pa.scalar("active", pa.large_string()))]),
                     index=df.index, dtype="str")


def _frame(table: str, df: pd.DataFrame, meta: list[str], extra: dict[str, pd.Series],
           line_hashes: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    # Built from a dict in one go: column by column, each insert costs ~0.1 ms even on a 6-row file.
    columns: dict = {"sourced_id": df["sourcedId"], "status": _status_column(df)}
    for src, dst in RENAMES.get(table, {}).items():
        columns[dst] = df[src]
    columns.update(extra)
    for c in ENTITY_COLUMNS[table]:
        columns.setdefault(c, "")
    out = pd.DataFrame(columns, index=df.index)
    # Sorted: a district that reorders its CSV columns has changed nothing (hash and `data` stay the same).
    sent = sorted(c for c in df.columns if c not in NOT_KEPT and not c.startswith("_"))  # LINE, FILE: provenance
    # `data` keeps what the typed columns do not: nothing the district sent is lost, nothing stored twice.
    # Its JSON is built by the diff for the rows it writes only (a nightly writes ~1% of them).
    typed_src = set(RENAMES.get(table, {})) | {"sourcedId", "status"}
    data_source = df[[c for c in sent if c not in typed_src]].reset_index(drop=True)
    compared = [c for c in sent if c not in NOT_COMPARED]
    typed = [c for c in ENTITY_COLUMNS[table] if c in extra]
    out["row_hash"] = row_hash([*(df[c] for c in compared), *(out[c] for c in typed)])
    out["line_hash"] = line_hashes if line_hashes is not None else np.zeros(len(out), dtype=np.int64)
    return out.reset_index(drop=True), data_source


def data_json(source: pd.DataFrame | None, rows: pd.Index) -> pd.Series:
    """The `data` JSON of some rows (labels of the index of a table frame) from Roster.data_source[table]."""
    if source is None or source.shape[1] == 0:
        return pd.Series("" if source is None else "{}", index=rows, dtype="str")
    return json_rows(source.loc[rows]).set_axis(rows)


def _same_links_base(state: LineState | None, users: Split, key: str) -> tuple[np.ndarray, pd.DataFrame] | None:
    """What incremental guardian links start from: which people are the same as stored (a mask over the
    people frame), and the stored links, when their snapshot holds under this run's key."""
    if state is None or users.same is None or not len(users.same) or state.aliases:
        return None
    snap = state.snapshots.get("guardian_links")
    if snap is None or snap.attrs.get("line_key") != key:
        return None
    return ~users.fresh, snap


def _guardian_links(agent_ids, people: pd.DataFrame, current: CurrentRoster, mode: str,
                    base: tuple[np.ndarray, pd.DataFrame] | None = None
                    ) -> tuple[pd.DataFrame, pd.Index | None, Same | None]:
    """(student, guardian) pairs from agentSourcedIds on either side, between people that exist.

    base (incremental, see _same_links_base): a link between two people whose rows are both the same as
    stored depends on nothing else (both ends' roles, statuses and agent lists are as they were when it
    was last compared), so it is what is stored: those are returned as Same (the stored active links
    between two such people), and only the pairs with an end converted afresh are worked out here."""
    agents = explode(pd.Series(agent_ids, index=people.index, dtype="str"))
    agents = agents[agents.ne("")]
    at = people.index.get_indexer(agents.index)  # people's index is positional (0..n-1): a cheap lookup
    same_links = None
    if base is not None:
        same_people, snap = base
        unchanged = pd.Index(people["sourced_id"][same_people], dtype="str")
        both = same_people[at] & isin(agents, unchanged).to_numpy()
        bar = pc.any(pc.match_substring(arrow(people["sourced_id"]), "|")).as_py() or \
            pc.any(pc.match_substring(arrow(agents), "|")).as_py()
        if not bar:  # ids with "|" can collide as link ids: the full path de-duplicates those
            agents, at = agents[~both], at[~both]
            student, guardian = _link_ends(snap["sourced_id"])
            stored = snap["status"].eq("active").to_numpy() & isin(student, unchanged) & isin(guardian, unchanged)
            same_links = Same(np.flatnonzero(stored), snap)
    links, ends_at = _pairs(people, at, agents)
    # Each end is a person of the drop (its position in people) or an id the drop does not carry (-1): the
    # checks below are takes by position, with one lookup in the stored roster for the ids it does not carry.
    n = len(links)
    ends = pd.concat([links["student"], links["guardian"]], ignore_index=True)
    carried = ends_at >= 0
    at_or_0 = np.where(carried, ends_at, 0)
    known = carried.copy()
    if not carried.all():
        known[~carried] = isin(ends[~carried], current.active("users")).to_numpy()
    # A link between two people the drop carries must join a student and a guardian (people's ids are unique).
    role_ok = ~carried | np.concatenate([eq(people["role"], "student").to_numpy()[at_or_0[:n]],
                                         eq(people["role"], "guardian").to_numpy()[at_or_0[n:]]])
    inactive = carried & eq(people["status"], "inactive").to_numpy()[at_or_0]
    good = known & role_ok & ~inactive
    links = links[good[:n] & good[n:]]
    out = pd.DataFrame({
        "sourced_id": links["student"] + "|" + links["guardian"],
        "status": "active",
        "student": links["student"],
        "guardian": links["guardian"],
    })
    if pc.any(pc.match_substring(arrow(ends), "|")).as_py():  # "a|b"+"c" and "a"+"b|c" would share an id
        out = out[~out["sourced_id"].duplicated()]
    out["row_hash"] = row_hash([out["student"], out["guardian"]])
    out["line_hash"] = np.zeros(len(out), dtype=np.int64)  # derived from two rows: always compared afresh
    # In a delta, the links of every student or guardian the drop names are restated by it.
    scope = pd.Index(people["sourced_id"]) if mode == "delta" else None
    return out.reset_index(drop=True), scope, same_links


def _pairs(people: pd.DataFrame, at: np.ndarray, agents: pd.Series) -> tuple[pd.DataFrame, np.ndarray]:
    """The distinct (student, guardian) pairs, first occurrence first, of people[at] and the agents they name:
    a student names guardians, a guardian names students; and where each end is in people (students' ends
    first, then guardians', -1 for an id not in people).

    Pairs are told apart by the two ends' numbers, not their strings: a person's number is their position
    in people, an id that is not a person's is numbered after them. A 300k district names ~630k pairs,
    seen from both sides: an int64 duplicated() instead of a group-by over two string columns, and the link
    checks take by position (guardian links of that district: 1.9 s -> 0.73 s, single-threaded)."""
    ids = arrow(people["sourced_id"])
    b = arrow(agents)
    b_at = positions(b, ids)
    n = len(ids)
    b_code = b_at.copy()
    outside = b_at < 0
    if outside.any():  # ids the drop does not carry: numbered after the people, alike for alike
        b_code[outside] = n + codes(pc.filter(b, pa.array(outside)))
    student = eq(people["role"], "student").to_numpy()[at]
    guardian = eq(people["role"], "guardian").to_numpy()[at]
    s_code = np.concatenate([at[student], b_code[guardian]])
    g_code = np.concatenate([b_code[student], at[guardian]])
    s_str = pa.concat_arrays([pc.take(ids, pa.array(at[student])), pc.filter(b, pa.array(guardian))])
    g_str = pa.concat_arrays([pc.filter(b, pa.array(student)), pc.take(ids, pa.array(at[guardian]))])
    width = np.int64(n + len(b) + 1)
    first = ~pd.Series(s_code * width + g_code).duplicated(keep="first").to_numpy()
    keep = pa.array(first)
    out = pd.DataFrame({"student": pd.Series(pa.chunked_array([pc.filter(s_str, keep)]), dtype="str"),
                        "guardian": pd.Series(pa.chunked_array([pc.filter(g_str, keep)]), dtype="str")})
    ends_at = np.concatenate([s_code[first], g_code[first]])
    ends_at[ends_at >= n] = -1
    return out, ends_at


def _link_ends(ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    from processor.apply.diff import link_ends  # diff imports this module

    return link_ends(ids)
