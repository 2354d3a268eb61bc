"""Data checks: problems an admin wants fixed in the SIS that do not stop a row from importing.

Codes: duplicate_email, duplicate_username, class_without_teacher, class_without_students,
student_without_class, session_dates. All alerts, one per record of the drop (file, line, sourcedId), computed
on whole columns; they never reject a row and never hold a drop. Rows the validation rejected, rows a delta
deletes and people of an excluded role are left out: they are not part of the roster the drop makes.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field

import pandas as pd

from processor.bundle.provenance import field_of, file_of
from processor.bundle.read import LINE, Bundle, BundleFile
from processor.config import Policy
from processor.validate.current import CurrentRoster
from processor.validate.issues import issue_frame
from processor.validate.language import check_languages
from processor.vector import isin, ne

DATA_CHECKS = ("duplicate_email", "duplicate_username", "class_without_teacher", "class_without_students",
               "student_without_class", "session_dates")


@dataclass
class Early:
    """The parts of the data checks that do not depend on which rows validation rejects, started on the
    validation's pool while the references are checked (start_data_checks). Their values are the same
    as check_data would compute itself; only when they are computed changes."""
    shared: dict[str, Future] = field(default_factory=dict)  # email / username → (key, candidates), see _shared
    enrolled: dict[tuple[str, str | None], Future] = field(default_factory=dict)  # → _enrolled_in_file

    def shared_of(self, column: str) -> tuple[pd.Series, pd.Series] | None:
        return _result(self.shared.get(column))

    def enrolled_in(self, column: str, role: str | None) -> pd.Index | None:
        return _result(self.enrolled.get((column, role)))


def _result(future: Future | None):
    return future.result() if future is not None else None


def start_data_checks(bundle: Bundle, policy: Policy, submit) -> Early:
    """Submit (submit(fn, *args) -> Future) what check_data will need and can have before rejections are
    known: which people share an email or username with any other active row of users.csv (a bulk users
    file: a delta's people are also compared with stored ones), and the ids with an active enrollment in
    the file (the enrollments counted there never depend on rejections)."""
    early = Early()
    users, enrollments = bundle.files.get("users"), bundle.files.get("enrollments")
    if users is not None and bundle.modes.get("users") != "delta":
        for column in ("email", "username"):
            if column in users.frame.columns:
                early.shared[column] = submit(_shared, users.frame, column)
    if enrollments is not None:
        wanted = []
        if users is not None and not policy.students_need_enrollment:
            wanted.append(("userSourcedId", None))
        if "classes" in bundle.files:
            wanted += [("classSourcedId", "teacher"), ("classSourcedId", "student")]
        for column, role in wanted:
            early.enrolled[(column, role)] = submit(_enrolled_in_file, enrollments.frame, column, role)
    return early


def check_data(bundle: Bundle, policy: Policy, current: CurrentRoster, rejected: dict[str, pd.Series],
               roles: pd.Series | None, early: Early | None = None) -> list[pd.DataFrame]:
    early = early or Early()
    issues: list[pd.DataFrame] = []
    kept = {e: _kept(bf, rejected.get(e)) for e, bf in bundle.files.items()}
    if "enrollments" in kept:
        # A rejected enrollment is still in the SIS: its own error says what to fix, and its class and
        # student are not also reported as lacking one.
        kept["enrollments"] = _kept(bundle.files["enrollments"], None)
    users = bundle.files.get("users")
    if users is not None and roles is not None:
        people = kept["users"] & ~roles.isin(policy.exclude_roles)
        stored = current.people if bundle.modes.get("users") == "delta" else None
        for column, code in (("email", "duplicate_email"), ("username", "duplicate_username")):
            issues += _duplicates(users, people, stored, column, code, early.shared_of(column))
        issues += check_languages(users, people)
        if not policy.students_need_enrollment:  # that policy already rejects such students
            issues += _students_without_class(bundle, kept, people & roles.eq("student"), current, early)
    if "classes" in bundle.files:
        issues += _classes_without(bundle, kept, current, early)
    if "academicSessions" in bundle.files:
        issues += _session_dates(bundle.files["academicSessions"], kept["academicSessions"], current.sessions)
    return issues


def _kept(bf: BundleFile, rejected: pd.Series | None) -> pd.Series:
    """Rows that are part of the roster the drop makes: active, not rejected."""
    ok = _kept_rows(bf.frame)
    return ok & ~rejected if rejected is not None else ok


def _kept_rows(df: pd.DataFrame) -> pd.Series:
    return ne(df["status"], "tobedeleted")


def _alert(code: str, bf: BundleFile, mask: pd.Series, field: str | None, values, message) -> pd.DataFrame:
    df = bf.frame
    return issue_frame(code, file_of(bf, mask), df.loc[mask, LINE], df.loc[mask, "sourcedId"],
                       field_of(bf, field, mask) if field else None, values, message)


# ---------------------------------------------------------------- people sharing an email or username


def _shared(df: pd.DataFrame, column: str) -> tuple[pd.Series, pd.Series]:
    """The compared value of column (trimmed, lower case) and which rows share theirs with another active
    row: every row that shares it with another person of the drop is one of them (people are active rows),
    so the people's duplicates can be found among these few instead of among every row."""
    key = df[column].str.strip().str.lower()
    active = ne(df["status"], "tobedeleted") & key.ne("")
    candidates = pd.Series(False, index=df.index)
    candidates[active] = key[active].duplicated(keep=False)
    return key, candidates


def _duplicates(users: BundleFile, people: pd.Series, stored: pd.DataFrame | None, column: str, code: str,
                early: tuple[pd.Series, pd.Series] | None = None) -> list[pd.DataFrame]:
    """early: _shared(users.frame, column), computed before (only for a bulk users file: stored is None)."""
    df = users.frame
    if column not in df.columns:
        return []
    if early is not None and stored is None:
        key, candidates = early
        mine = people & candidates
    else:
        key = df[column].str.strip().str.lower()
        mine = people & key.ne("")
    if not mine.any():
        return []
    sent = pd.DataFrame({"key": key[mine], "sid": df.loc[mine, "sourcedId"], "row": df.index[mine]})
    if stored is not None and len(stored) and column in stored:
        # People the drop does not restate keep their stored email and username (a delta or no users file).
        others = stored[~isin(stored["sourced_id"], sent["sid"]).to_numpy()]
        others_key = others[column].str.strip().str.lower()
        keep = others_key.ne("").to_numpy()
        sent = pd.concat([sent, pd.DataFrame({"key": others_key[keep].to_numpy(),
                                              "sid": others.loc[keep, "sourced_id"].to_numpy(), "row": -1})],
                         ignore_index=True)
    shared = sent[sent["key"].duplicated(keep=False)]
    if shared.empty:
        return []
    shared = shared.sort_values(["key", "row"], kind="stable")
    # Each record names another one that shares its value: the group's first record, or its second for the
    # first itself; the count says how many share it.
    order = shared.groupby("key", sort=False).cumcount()
    first = shared.loc[order.eq(0)].set_index("key")["sid"]
    second = shared.loc[order.eq(1)].set_index("key")["sid"]
    size = shared.groupby("key", sort=False)["sid"].transform("size")
    other = shared["key"].map(first).where(order.ne(0), shared["key"].map(second))
    rows = shared[shared["row"].ge(0)]
    mask = pd.Series(df.index.isin(rows["row"]), index=df.index)
    rows = rows.set_index("row").reindex(df.index[mask])
    other = other.set_axis(shared["row"]).loc[rows.index]
    size = size.set_axis(shared["row"]).loc[rows.index]
    more = (size - 2).where(size > 2, 0)
    tail = pd.Series("", index=rows.index, dtype="str").where(more.eq(0), " and " + more.astype("str") + " more")
    what = "email" if column == "email" else "username"
    message = (size.astype("str") + f" active people share this {what} (this record and sourcedId " +
               other.astype("str") + tail + f"), so signing in with it cannot tell them apart. Give each "
               f"person their own {what} in your SIS.")
    return [_alert(code, users, mask, column, df.loc[mask, column], message.to_numpy())]


# ---------------------------------------------------------------- classes and students without each other


def _students_without_class(bundle: Bundle, kept: dict[str, pd.Series], students: pd.Series,
                            current: CurrentRoster, early: Early) -> list[pd.DataFrame]:
    users = bundle.files["users"]
    stored = current.person_enrollments
    if stored is None:  # no delta of enrollments: the stored people with one are exact
        stored = pd.Series(1, index=current.enrolled_people, dtype="int64")
    in_file = early.enrolled_in("userSourcedId", None)
    enrolled = _with_enrollment(bundle, kept, "userSourcedId", stored, None, in_file)
    lacking = students & ~isin(users.frame["sourcedId"], enrolled)
    if not lacking.any():
        return []
    return [_alert("student_without_class", users, lacking, None, None,
                   "This student has no active class enrollment, so they will not see any class in the app. "
                   "Enroll the student in a class in your SIS, or leave them out of the export.")]


def _classes_without(bundle: Bundle, kept: dict[str, pd.Series], current: CurrentRoster, early: Early
                     ) -> list[pd.DataFrame]:
    classes = bundle.files["classes"]
    ids = classes.frame["sourcedId"]
    out = []
    for role, code, message in (
            ("teacher", "class_without_teacher",
             "This class has no active teacher enrollment, so no teacher can see it in the app. Assign the "
             "class a teacher in your SIS."),
            ("student", "class_without_students",
             "This class has no active student enrollment. Enroll its students in your SIS, or leave the "
             "class out of the export if it does not meet.")):
        stored = current.classes_with.get(role, pd.Series([], dtype="int64"))
        in_file = early.enrolled_in("classSourcedId", role)
        lacking = kept["classes"] & ~isin(ids, _with_enrollment(bundle, kept, "classSourcedId", stored, role, in_file))
        if lacking.any():
            out.append(_alert(code, classes, lacking, None, None, message))
    return out


def _enrolled_in_file(enr: pd.DataFrame, column: str, role: str | None) -> pd.Index:
    """Ids in `column` (class or person) with an active enrollment (of `role`) in the enrollments file. Every
    active row counts, rejected or not (see check_data)."""
    of_role = enr["role"].eq(role) if role else pd.Series(True, index=enr.index)
    return pd.Index(enr.loc[_kept_rows(enr) & of_role, column].unique(), dtype="str")


def _with_enrollment(bundle: Bundle, kept: dict[str, pd.Series], column: str, stored: pd.Series,
                     role: str | None = None, in_file: pd.Index | None = None) -> pd.Index:
    """Ids in `column` (class or person) with an active enrollment (of `role`) once the drop is applied.
    stored: the stored roster's active enrollments per id (used unless the drop sends them all); in_file:
    _enrolled_in_file of the drop's enrollments, computed before."""
    bf = bundle.files.get("enrollments")
    if bf is None:
        return pd.Index(stored.index[stored > 0], dtype="str")
    enr = bf.frame
    of_role = enr["role"].eq(role) if role else pd.Series(True, index=enr.index)
    if in_file is None:
        in_file = pd.Index(enr.loc[kept["enrollments"] & of_role, column].unique(), dtype="str")
    if bundle.modes.get("enrollments") == "bulk":
        return in_file
    # A delta: an id keeps one while it has a stored enrollment the delta does not delete (counted per id,
    # so deleting one of a class's two teachers, or one of a student's two classes, still leaves one).
    deleted = enr.loc[enr["status"].eq("tobedeleted") & of_role, column].value_counts()
    left = stored.sub(deleted.reindex(stored.index, fill_value=0))
    return pd.Index(left.index[left > 0], dtype="str").union(in_file)


# ---------------------------------------------------------------- session dates


def _session_dates(sessions: BundleFile, kept: pd.Series, stored: pd.DataFrame | None = None
                   ) -> list[pd.DataFrame]:
    """stored: the stored sessions (a delta of sessions): a term whose parent the drop does not restate is
    checked against the parent's stored dates."""
    df = sessions.frame
    start = pd.to_datetime(df["startDate"], format="%Y-%m-%d", errors="coerce")
    end = pd.to_datetime(df["endDate"], format="%Y-%m-%d", errors="coerce")
    out = []
    backwards = kept & (end < start)
    if backwards.any():
        out.append(_alert("session_dates", sessions, backwards, "endDate", df.loc[backwards, "endDate"],
                          ("This session ends (" + df.loc[backwards, "endDate"] + ") before it starts (" +
                           df.loc[backwards, "startDate"] + "). Correct its dates in your SIS.").to_numpy()))
    # A term or grading period must lie within its parent session (a semester within its school year).
    parents = df.loc[kept & ~backwards & start.notna() & end.notna(), ["sourcedId", "startDate", "endDate"]
                     ].drop_duplicates("sourcedId")
    if stored is not None and len(stored):
        # Parents only in the store: those the drop does not restate (a row it sends wins, even a deleted one).
        others = stored[~isin(stored["sourced_id"], df["sourcedId"]).to_numpy()]
        parents = pd.concat([parents, pd.DataFrame({"sourcedId": others["sourced_id"].to_numpy(),
                                                    "startDate": others["start_date"].to_numpy(),
                                                    "endDate": others["end_date"].to_numpy()})], ignore_index=True)
    p_starts = pd.to_datetime(parents["startDate"], format="%Y-%m-%d", errors="coerce")
    p_ends = pd.to_datetime(parents["endDate"], format="%Y-%m-%d", errors="coerce")
    good = (p_starts.notna() & p_ends.notna() & ~(p_ends < p_starts)).to_numpy()
    parents, p_starts, p_ends = parents[good], p_starts[good], p_ends[good]
    parent_id = df["parentSourcedId"]
    at = pd.Index(parents["sourcedId"]).get_indexer(parent_id)
    has_parent = pd.Series(at >= 0, index=df.index) & kept & ~backwards & parent_id.ne(df["sourcedId"])
    if not has_parent.any():
        return out
    rows_at = at[has_parent.to_numpy()]
    p = parents.iloc[rows_at]
    p_start = p_starts.to_numpy()[rows_at]
    p_end = p_ends.to_numpy()[rows_at]
    outside = pd.Series(False, index=df.index)
    outside[has_parent] = (start[has_parent].to_numpy() < p_start) | (end[has_parent].to_numpy() > p_end)
    if outside.any():
        rows = outside[has_parent].to_numpy()
        message = ("This session (" + df.loc[outside, "startDate"] + " to " + df.loc[outside, "endDate"] +
                   ") lies outside its parent session " + df.loc[outside, "parentSourcedId"] + " (" +
                   pd.Series(p["startDate"].to_numpy()[rows], index=df.index[outside]) + " to " +
                   pd.Series(p["endDate"].to_numpy()[rows], index=df.index[outside]) +
                   "). Correct the dates of one of them in your SIS.")
        out.append(_alert("session_dates", sessions, outside, "parentSourcedId",
                          df.loc[outside, "parentSourcedId"], message.to_numpy()))
    return out


def load_stored(conn, tenant: str, modes: dict[str, str], current: CurrentRoster) -> None:
    """What the data checks need of the stored roster, for entities the drop does not carry in full: the
    emails and usernames of active people (a delta's people may collide with them), and how many active
    enrollments each class (by role) and, for a delta of enrollments, each person has. Narrow queries, or none."""
    from sqlalchemy import func, select

    from processor.apply.store import ENTITY_TABLES

    if modes.get("users") == "delta":
        t = ENTITY_TABLES["people"]
        rows = conn.execute(select(t.c.sourced_id, t.c.email, t.c.username).where(
            t.c.tenant == tenant, t.c.status == "active")).all()
        current.people = pd.DataFrame(rows, columns=["sourced_id", "email", "username"], dtype="str").fillna("")
    if modes.get("enrollments") != "bulk" and modes.get("classes") in ("bulk", "delta"):
        e = ENTITY_TABLES["enrollments"]
        rows = conn.execute(select(e.c.class_id, e.c.role, func.count()).where(
            e.c.tenant == tenant, e.c.status == "active", e.c.role.in_(("teacher", "student"))
        ).group_by(e.c.class_id, e.c.role)).all()
        frame = pd.DataFrame(rows, columns=["class_id", "role", "n"])
        current.classes_with = {r: frame.loc[frame["role"].eq(r)].set_index("class_id")["n"].astype("int64")
                                for r in ("teacher", "student")}
    if modes.get("academicSessions") == "delta":
        s = ENTITY_TABLES["academic_sessions"]
        rows = conn.execute(select(s.c.sourced_id, s.c.start_date, s.c.end_date).where(
            s.c.tenant == tenant, s.c.status == "active")).all()
        current.sessions = pd.DataFrame(rows, columns=["sourced_id", "start_date", "end_date"], dtype="str").fillna("")
    if modes.get("enrollments") == "delta" and modes.get("users") in ("bulk", "delta"):
        e = ENTITY_TABLES["enrollments"]
        rows = conn.execute(select(e.c.person, func.count()).where(
            e.c.tenant == tenant, e.c.status == "active").group_by(e.c.person)).all()
        frame = pd.DataFrame(rows, columns=["person", "n"])
        current.person_enrollments = frame.set_index("person")["n"].astype("int64")
