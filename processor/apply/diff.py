"""The change set: the converted roster against the tenant's current rows, joined on sourced_id by hash.

OneRoster semantics per table: bulk = the full set (rows not in it are deactivated), delta = upsert with
`tobedeleted` rows deactivated and unnamed rows untouched, absent = left alone.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, delete, insert, select, update

from processor.apply.store import ADDED_COLUMNS, ENTITY_COLUMNS, ENTITY_TABLES, snapshots
from processor.convert.roster import Roster, data_json
from processor.vector import PARALLEL, arrow, eq, isin, positions, select_rows

log = logging.getLogger(__name__)

LABEL = {"orgs": ["name"], "people": ["given_name", "family_name"], "classes": ["title"],
         "courses": ["title"], "academic_sessions": ["title"], "enrollments": ["person", "class_id"],
         "guardian_links": ["student", "guardian"], "demographics": []}
SCHOOL = {"people": "school", "classes": "school", "enrollments": "school", "orgs": "sourced_id"}


@dataclass
class TableChanges:
    table: str
    mode: str
    created: pd.DataFrame            # new rows, as converted
    updated: pd.DataFrame            # new rows that differ (or come back), with `action` and `fields`
    deactivated: pd.DataFrame        # current rows that go inactive
    unchanged: int = 0
    current_active: int = 0
    # Rows whose stored hash differs but whose stored values are the same (the hash was written by an
    # older version, or the district reordered columns): rewritten with the new hash, never reported.
    rehashed: pd.DataFrame | None = None
    # Incremental conversion (convert.incremental): the key the drop's line hashes hold under, the line
    # hashes of the drop's converted rows that are stored (by position in current), whether they differ from the snapshot's (so the
    # snapshot is rewritten even when no row changed), and the stored ids left as they are (kept).
    line_key: str = ""
    line_positions: tuple[np.ndarray, np.ndarray] | None = None  # (positions in current, line hashes)
    lines_dirty: bool = False
    kept_ids: pd.Index | None = None

    @property
    def changed(self) -> int:
        return len(self.created) + len(self.updated) + len(self.deactivated)


@dataclass
class ChangeSet:
    tables: dict[str, TableChanges] = field(default_factory=dict)
    before: dict[str, pd.DataFrame] = field(default_factory=dict)  # full current rows of changed ids
    current: dict[str, pd.DataFrame] = field(default_factory=dict)  # what the diff compared against
    data_source: dict[str, pd.DataFrame] = field(default_factory=dict)  # Roster.data_source, for created rows
    # stored sourcedIds the drop may not touch: rejected rows and the rows that depend on them (kept_ids)
    kept: dict[str, pd.Index] = field(default_factory=dict)
    kept_people: pd.Index = field(default_factory=lambda: pd.Index([], dtype="str"))  # ...of kept rows
    kept_classes: pd.Index = field(default_factory=lambda: pd.Index([], dtype="str"))

    def total_changed(self) -> int:
        return sum(t.changed for t in self.tables.values())


def _raw_rows(conn: Connection, stmt, binary: bool = False) -> list[tuple]:
    """A SELECT's rows as tuples, through the raw DB-API cursor of conn (its transaction): building Row
    objects and inferring types row by row costs more than the query on 1M+ rows. binary (PostgreSQL):
    results in PostgreSQL's binary format, which sends a bytea as it is; as text it is hex-encoded by the
    server (twice its size) and decoded by the driver."""
    compiled = stmt.compile(dialect=conn.dialect)
    if conn.dialect.paramstyle == "qmark":
        params = tuple(compiled.params[k] for k in compiled.positiontup)
    else:
        params = compiled.params
    if binary and conn.dialect.name == "postgresql":
        with conn.connection.driver_connection.cursor(binary=True) as pg:
            return pg.execute(str(compiled), params).fetchall()
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(str(compiled), params)
        return cur.fetchall()
    finally:
        cur.close()


def fetch_frame(conn: Connection, stmt, columns: list[str], int_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A SELECT as a frame of str columns (int64 for int_columns)."""
    rows = _raw_rows(conn, stmt)
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    data = {}
    for name, values in zip(columns, cols, strict=True):
        if name in int_columns:
            data[name] = np.fromiter(values, dtype=np.int64, count=len(values))
        else:
            data[name] = pd.Series(pd.array(values, dtype="str")).fillna("")
    return pd.DataFrame(data)


def load_current(conn: Connection, tenant: str, table: str) -> pd.DataFrame:
    """The tenant's rows of one table as the diff needs them: from the snapshot when there is one (then
    with the line hashes of convert.incremental; queried rows have none: 0)."""
    snap = read_snapshot(conn, tenant, table)
    if snap is not None:
        return snap
    t = ENTITY_TABLES[table]
    cols = snapshot_columns(table)
    frame = fetch_frame(conn, select(*[t.c[c] for c in cols]).where(t.c.tenant == tenant), cols, ("row_hash",))
    frame["line_hash"] = np.zeros(len(frame), dtype=np.int64)
    return frame


def snapshot_columns(table: str) -> list[str]:
    """The stored columns a snapshot holds (it adds LINE_HASH, convert.incremental's, which no table has)."""
    extra = SCHOOL.get(table)
    return ["sourced_id", "status", "row_hash", *([extra] if extra and extra != "sourced_id" else [])]


LINE_HASH = "line_hash"


def _snapshot_frame_columns(table: str) -> list[str]:
    return [*snapshot_columns(table), LINE_HASH]


# A snapshot is a whole blob (`data`) plus, between rewrites, a small one (`delta`) of the rows that changed
# since: a nightly that changes 1% of 2M enrollments writes ~20,000 rows, not 2M. The delta is folded into a
# new whole blob once it passes DELTA_SHARE of the rows (and DELTA_MIN_ROWS).
DELTA_SHARE = 0.05
DELTA_MIN_ROWS = 5_000


def read_snapshot(conn: Connection, tenant: str, table: str) -> pd.DataFrame | None:
    # Binary results: a 300k district's snapshots are 43 MB of zstd blobs, which PostgreSQL's text format
    # doubled into hex (a nightly's reads: 0.67 -> 0.19 s median, bench/README.md 2026-12-07).
    found = _raw_rows(conn, select(snapshots.c.rows, snapshots.c.data, snapshots.c.delta).where(
        snapshots.c.tenant == tenant, snapshots.c.entity == table), binary=True)
    if not found:
        return None
    rows, data, delta_blob = found[0]
    try:
        stored = _decode(data)
        delta = None if delta_blob is None else _decode(delta_blob).replace_schema_metadata(None)
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        # A blob that does not decode (damaged, truncated, not Arrow at all) must not fail the run: the
        # snapshot is only a cache of the stored rows, which the diff then queries.
        log.warning("the %s snapshot of tenant %s does not decode (%s): querying the stored rows instead",
                    table, tenant, type(exc).__name__)
        return None
    line_key = (stored.schema.metadata or {}).get(b"line_key", b"").decode(errors="replace")
    base = stored.replace_schema_metadata(None)
    if base.column_names != _snapshot_frame_columns(table):
        return None  # written by another version, or damaged: query the rows instead
    delta_start = base.num_rows
    if delta is not None:
        if not delta.schema.equals(base.schema):
            return None  # written by another version, or damaged: query the rows instead
        # The delta's rows replace the whole blob's rows of the same ids (ids are unique in both).
        base = base.filter(pc.invert(pc.is_in(base["sourced_id"], value_set=delta["sourced_id"].combine_chunks())))
        delta_start = base.num_rows
        base = pa.concat_tables([base, delta])
    # One chunk per column: every lookup against these ids needs them contiguous (arrow()), once here
    # rather than a copy of millions of ids per lookup.
    frame = base.combine_chunks().to_pandas()
    if list(frame.columns) != _snapshot_frame_columns(table) or len(frame) != rows:
        return None  # written by another version, or damaged: query the rows instead
    frame.attrs["snapshot"] = True
    frame.attrs["line_key"] = line_key
    frame.attrs["delta_start"] = delta_start  # rows from here on are the delta's
    return frame


def _decode(blob: bytes | None) -> pa.Table:
    if blob is None:
        raise ValueError("no snapshot data")
    return pa.ipc.open_stream(pa.BufferReader(blob)).read_all()


def _blob(frame: pd.DataFrame, line_key: str) -> bytes:
    sink = pa.BufferOutputStream()
    batch = pa.Table.from_pandas(frame, preserve_index=False)
    batch = batch.replace_schema_metadata({"line_key": line_key})
    with pa.ipc.new_stream(sink, batch.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as w:
        w.write_table(batch)
    return sink.getvalue().to_pybytes()


def write_snapshot(conn: Connection, tenant: str, table: str, run_id: str, frame: pd.DataFrame,
                   line_key: str = "") -> None:
    """The whole snapshot (no delta). line_key: the key the frame's line hashes hold under ("": none do)."""
    frame = frame[_snapshot_frame_columns(table)].reset_index(drop=True)
    _put_snapshot(conn, tenant, table, run_id, len(frame), _blob(frame, line_key))


def _put_snapshot(conn: Connection, tenant: str, table: str, run_id: str, rows: int, data: bytes) -> None:
    conn.execute(delete(snapshots).where(snapshots.c.tenant == tenant, snapshots.c.entity == table))
    conn.execute(insert(snapshots).values(tenant=tenant, entity=table, run_id=run_id, rows=rows, data=data,
                                          delta=None))


@dataclass
class NextSnapshot:
    """A table's snapshot after a change set, made without the connection (next_snapshot), so the apply
    can build it on a helper thread while it writes the rows, and store it after (store_next_snapshot)."""
    table: str
    line_key: str
    total: int
    untouched: np.ndarray = field(repr=False)  # the current rows that stay as they are
    rows: pd.DataFrame = field(repr=False)     # every other row
    cur: pd.DataFrame = field(repr=False)
    delta: bytes | None = None  # the new delta, when the stored snapshot takes one
    whole: bytes | None = None  # otherwise the whole snapshot's blob

    def whole_blob(self) -> bytes:
        if self.whole is None:
            cols = _snapshot_frame_columns(self.table)
            self.whole = _blob(pd.concat([self.cur.loc[self.untouched, cols], self.rows], ignore_index=True),
                               self.line_key)
        return self.whole


def takes_delta(cur: pd.DataFrame, line_key: str) -> bool:
    """Whether the table's next snapshot can be a delta (if it stays small): cur was read from a snapshot
    whose line hashes hold under the same key."""
    return bool(cur.attrs.get("snapshot")) and cur.attrs.get("delta_start") is not None and \
        cur.attrs.get("line_key") == line_key


def next_snapshot(tc: TableChanges, cur: pd.DataFrame, lines: bool, line_key: str) -> NextSnapshot:
    """The table's snapshot after the change set: only a new delta when cur was read from a snapshot whose
    line hashes hold under the same key and the delta stays small; otherwise the whole snapshot again."""
    cols = _snapshot_frame_columns(tc.table)
    untouched, rows = snapshot_changes(tc, cur, lines)
    out = NextSnapshot(tc.table, line_key, int(untouched.sum()) + len(rows), untouched, rows, cur)
    if takes_delta(cur, line_key):
        carried = untouched.copy()
        carried[:cur.attrs["delta_start"]] = False  # the old delta's rows this change set leaves as they are
        delta = pd.concat([cur.loc[carried, cols], rows], ignore_index=True)
        if len(delta) <= max(DELTA_MIN_ROWS, DELTA_SHARE * out.total):
            out.delta = _blob(delta, line_key)
            return out
    out.whole_blob()
    return out


def store_next_snapshot(conn: Connection, tenant: str, run_id: str, nxt: NextSnapshot) -> None:
    if nxt.delta is not None:
        done = conn.execute(update(snapshots).where(snapshots.c.tenant == tenant, snapshots.c.entity == nxt.table)
                            .values(run_id=run_id, rows=nxt.total, delta=nxt.delta))
        if done.rowcount == 1:
            return
    _put_snapshot(conn, tenant, nxt.table, run_id, nxt.total, nxt.whole_blob())


def write_next_snapshot(conn: Connection, tenant: str, table: str, run_id: str, tc: TableChanges,
                        cur: pd.DataFrame, lines: bool, line_key: str) -> None:
    """next_snapshot, stored at once."""
    store_next_snapshot(conn, tenant, run_id, next_snapshot(tc, cur, lines, line_key))


def snapshot_changes(tc: TableChanges, cur: pd.DataFrame, lines: bool = False) -> tuple[np.ndarray, pd.DataFrame]:
    """The table's rows after the change set, as (untouched, rows): a mask of the current rows that stay
    exactly as they are, and every other row (current ones whose status or line hash changes, then the
    created, updated and rehashed ones).
    lines: the whole change set is applied, so every row the drop named is its conversion (line hashes
    hold under tc.line_key); otherwise (an additions-only pause) no line hash is kept."""
    cols = _snapshot_frame_columns(tc.table)
    written = [tc.created, tc.updated, *([tc.rehashed] if tc.rehashed is not None else [])]
    replaced = pd.concat([w["sourced_id"] for w in written])
    stored = cur["line_hash"].to_numpy(dtype=np.int64)
    if lines and cur.attrs.get("line_key") == tc.line_key:
        hashes = stored.copy()
    else:
        hashes = np.zeros(len(cur), dtype=np.int64)
    if lines and tc.line_positions is not None:
        # Rows the drop named and left unchanged: their line hashes are this drop's.
        hashes[tc.line_positions[0]] = tc.line_positions[1]
    ids = cur["sourced_id"]
    stays = ~isin(ids, replaced).to_numpy() if len(replaced) else np.ones(len(cur), dtype=bool)
    gone = stays & isin(ids, tc.deactivated["sourced_id"]).to_numpy() if len(tc.deactivated) else \
        np.zeros(len(cur), dtype=bool)
    hashes[gone] = 0
    kept_ids = tc.kept_ids if lines and tc.kept_ids is not None and len(tc.kept_ids) else None
    if kept_ids is not None:
        # Stored as they were although the drop named some of them (an enrollment of a rejected class).
        hashes[isin(ids, kept_ids).to_numpy()] = 0
    modified = stays & ((gone & cur["status"].ne("inactive").to_numpy()) | (hashes != stored))
    moved = cur.loc[modified, cols].copy()
    moved["line_hash"] = hashes[modified]
    moved.loc[gone[modified], "status"] = "inactive"
    # A frame made outside convert (the new year's empty classes) has no line hashes: 0, unknown.
    fresh = pd.concat([w.reindex(columns=cols) for w in written], ignore_index=True)
    for c in cols:
        if c not in ("row_hash", "line_hash"):
            fresh[c] = fresh[c].fillna("").astype("str")
    fresh["row_hash"] = fresh["row_hash"].astype("int64")
    fresh["line_hash"] = fresh["line_hash"].fillna(0).astype("int64") if lines else 0
    if kept_ids is not None and len(fresh):
        fresh.loc[isin(fresh["sourced_id"], kept_ids).to_numpy(), "line_hash"] = 0
    return stays & ~modified, pd.concat([moved, fresh], ignore_index=True)


def compute_changes(conn: Connection, tenant: str, roster: Roster) -> ChangeSet:
    cs = ChangeSet(data_source=roster.data_source)
    tables = [t for t in ENTITY_COLUMNS if roster.modes.get(t, "absent") != "absent" and t in roster.tables]
    read = roster.state.snapshots if roster.state is not None else {}
    order = sorted(tables, key=lambda t: -len(roster.tables[t]))  # biggest first

    def load(table: str) -> None:  # the store is read on this thread's connection only (or was, under the
        # tenant's lock, just before conversion: convert.incremental.load_state)
        cs.current[table] = read[table] if table in read else load_current(conn, tenant, table)

    def submit(table: str):
        # kept_ids of one table reads only that table's current rows (and the drop's own kept ids)
        cs.kept.update(kept_ids(roster, {table: cs.current[table]}))
        return pool.submit(diff_table, table, roster.modes[table], roster.tables[table], cs.current[table],
                           roster.link_scope if table == "guardian_links" else None, cs.kept.get(table),
                           roster.same.get(table))

    # The joins run two at a time (Arrow's hash lookups release the GIL), except the biggest table's: it is
    # read and joined first and alone, and its rows are let go (Roster.let_go) before the other snapshots are
    # read. Read before it, they and two joins beside every row of the roster raised a 900k district's
    # nightly peak by 0.3-0.5 GB, to the 5 GB limit; the diff takes ~0.3 s more at 300k (bench/README.md,
    # 2026-12-07).
    with ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="diff") as pool:
        first = None
        if order:
            load(order[0])
            first = submit(order[0]).result()
            _let_go(roster, order[0], first)
        diffs = {}
        for table in order[1:]:  # each joined as soon as it is read, while the next one is read
            load(table)
            diffs[table] = submit(table)
        cs.kept_people, cs.kept_classes = cs.kept.get("people", cs.kept_people), cs.kept.get("classes", cs.kept_classes)
        for table in tables:
            if table == order[0]:
                tc = first
            else:
                tc = diffs[table].result()
                _let_go(roster, table, tc)
            _finish_table(conn, tenant, roster, cs, table, tc)
    # in the tables' own order, as the apply writes them and the report lists them
    cs.tables, cs.before, cs.current = ({t: d[t] for t in tables} for d in (cs.tables, cs.before, cs.current))
    return cs


LET_GO = ("people", "classes", "enrollments", "guardian_links")  # demographics and orgs: the holds read them


def _let_go(roster: Roster, table: str, tc: TableChanges) -> None:
    """What the table's diff needs of the roster's rows, taken as soon as it is joined: the updated rows'
    `data` JSON (created rows get theirs slice by slice as they are written); then the rows go."""
    tc.updated["data"] = data_json(roster.data_source.get(table), tc.updated.index)
    if table in LET_GO:
        roster.let_go(table, tc.created)


def _finish_table(conn: Connection, tenant: str, roster: Roster, cs: ChangeSet, table: str, tc: TableChanges) -> None:
    # ids are unique per table: validation rejects repeats (convert.roster)
    cs.tables[table] = tc
    ids = _changed_ids(tc)
    cs.before[table] = _full_rows(conn, tenant, table, ids) if len(ids) else pd.DataFrame()
    if table == "enrollments":
        _keep_dependent_enrollments(tc, cs)
    _describe_updates(tc, cs.before[table])
    _split_rehashed(tc)
    tc.line_key = roster.line_keys.get(table, "")
    tc.lines_dirty |= cs.current[table].attrs.get("line_key") != tc.line_key
    tc.kept_ids = cs.kept.get(table)


def _split_rehashed(tc: TableChanges) -> None:
    stale = tc.updated["action"].eq("updated") & tc.updated["fields"].eq("")
    if stale.any():
        tc.rehashed = tc.updated[stale]
        tc.updated = tc.updated[~stale]
        tc.unchanged += len(tc.rehashed)


def kept_ids(roster: Roster, current: dict[str, pd.DataFrame]) -> dict[str, pd.Index]:
    """Per table, the stored ids a drop leaves exactly as they are (last-known-good, CONTRACT.md section 7):
    the ids of its rejected rows, and the stored rows that depend on a kept person or class (their
    enrollments, guardian links and demographics), which the drop cannot restate without them."""
    kept = {t: ids for t, ids in roster.kept.items() if len(ids)}
    people = kept.get("people", pd.Index([], dtype="str"))
    if len(people) and "demographics" in current:
        kept["demographics"] = kept.get("demographics", pd.Index([], dtype="str")).union(people)
    if len(people) and "guardian_links" in current:
        cur = current["guardian_links"]
        student, guardian = link_ends(cur["sourced_id"])
        linked = cur.loc[isin(student, people) | isin(guardian, people), "sourced_id"]
        kept["guardian_links"] = pd.Index(linked.unique(), dtype="str")
    # Enrollments of kept people and classes: _keep_dependent_enrollments, after the diff (the snapshot it
    # reads has no person or class column and the store no index on them: only the few rows the drop would
    # deactivate are looked at). Only ids that are stored matter to the diff (and to the message that the record was kept).
    out = {}
    for table, ids in kept.items():
        if table in current:
            stored = current[table]["sourced_id"]
            out[table] = pd.Index(stored[isin(stored, ids)].unique(), dtype="str")
    return out


KEPT_NOTE = " The record already in the roster was kept as it was."


def note_kept(issues: pd.DataFrame, changes: ChangeSet, roster: Roster) -> pd.DataFrame:
    """Errors of rows whose record is already stored say that it was kept as it was (CONTRACT.md section 7)."""
    if issues.empty or not any(len(ids) for ids in changes.kept.values()):
        return issues
    keys = [name + "\x00" + pd.Series(changes.kept[t], dtype="str")
            for name, tables in roster.file_tables.items() for t in tables if len(changes.kept.get(t, ()))]
    if not keys:
        return issues
    errors = issues["severity"].eq("error") & issues["sourced_id"].notna() & issues["file"].notna()
    key = issues["file"].astype("str") + "\x00" + issues["sourced_id"].astype("str")
    hit = errors & isin(key, pd.concat(keys, ignore_index=True)) & ~issues["message"].astype("str").str.endswith(
        KEPT_NOTE)
    if hit.any():
        issues = issues.copy()
        issues.loc[hit, "message"] = issues.loc[hit, "message"].astype("str") + KEPT_NOTE
    return issues


def _keep_dependent_enrollments(tc: TableChanges, cs: ChangeSet) -> None:
    """Enrollments the drop would deactivate whose person or class was kept (its row rejected) stay as
    stored: the drop could not say anything about them. They count as unchanged."""
    people, classes = cs.kept_people, cs.kept_classes
    if tc.deactivated.empty or not (len(people) or len(classes)):
        return
    before = cs.before["enrollments"]
    gone = before[isin(before["sourced_id"], tc.deactivated["sourced_id"])]
    dependent = gone.loc[isin(gone["person"].astype("str"), people) | isin(gone["class_id"].astype("str"), classes),
                         "sourced_id"]
    if dependent.empty:
        return
    stay = isin(tc.deactivated["sourced_id"], dependent)
    tc.deactivated = tc.deactivated[~stay]
    tc.unchanged += int(stay.sum())
    old = cs.kept.get("enrollments", pd.Index([], dtype="str"))
    cs.kept["enrollments"] = old.union(pd.Index(dependent.astype("str").unique(), dtype="str"))


def diff_table(table: str, mode: str, new: pd.DataFrame, cur: pd.DataFrame, scope: pd.Index | None = None,
               keep: pd.Index | None = None, unconverted=None) -> TableChanges:
    """keep: stored ids the drop leaves as they are (its rejected rows and what depends on them); same: rows
        unconverted: rows the drop names that were not converted again (convert.incremental.Same): unchanged, at
    unconverted.positions in cur."""
    cur_active = eq(cur["status"], "active")
    # Positional join on sourced_id: hashes stay int64 (a merge would turn them to float64 and lose bits).
    pos = positions(new["sourced_id"], cur["sourced_id"])
    known = pos >= 0
    at = np.where(known, pos, 0)
    wants_active = eq(new["status"], "active").to_numpy()
    was_active = known & cur_active.to_numpy()[at] if len(cur) else np.zeros(len(new), dtype=bool)
    cur_hash = cur["row_hash"].to_numpy(dtype=np.int64)[at] if len(cur) else np.zeros(len(new), dtype=np.int64)
    same = known & (new["row_hash"].to_numpy(dtype=np.int64) == cur_hash)
    created = ~known & wants_active
    reactivated = known & wants_active & ~was_active
    updated = known & wants_active & was_active & ~same
    deactivate_named = known & ~wants_active & was_active
    unchanged = known & ((wants_active & was_active & same) | (~wants_active & ~was_active))
    upd = select_rows(new, updated | reactivated)
    upd["action"] = np.where(reactivated[updated | reactivated], "reactivated", "updated")
    # cur holds each sourced_id once (the store's key), so the positions say which current rows new names.
    named = np.zeros(len(cur), dtype=bool)
    named[pos[known]] = True
    n_same = 0
    if unconverted is not None and len(unconverted):
        named[unconverted.positions] = True
        n_same = len(unconverted)
    gone = np.zeros(len(cur), dtype=bool)
    gone[pos[deactivate_named]] = True
    active_now = cur_active.to_numpy()
    missing = np.zeros(len(cur), dtype=bool)
    if mode == "bulk":
        # Rows of the roster that the full set no longer names go inactive (soft, never deleted).
        missing = active_now & ~named
        if scope is not None:
            missing &= _in_scope(cur, scope).to_numpy()
    elif scope is not None:
        # A delta restates the guardian links of the people it names.
        missing = active_now & ~named & _in_scope(cur, scope).to_numpy()
    if keep is not None and len(keep) and missing.any():
        # A rejected row is not an absent one: its stored record, and what depends on it, stay as they are.
        missing &= ~isin(cur["sourced_id"], keep).to_numpy()
    gone |= missing
    deactivated = select_rows(cur, gone & active_now)
    lines, dirty = None, False
    if "line_hash" in new.columns and len(new):
        hashes = new["line_hash"].to_numpy(dtype=np.int64)
        stored_lines = cur["line_hash"].to_numpy(dtype=np.int64)[at] if len(cur) else np.zeros(len(new), np.int64)
        dirty = bool((~known | (stored_lines != hashes)).any())
        # No line hashes on either side (ROSTERDROP_INCREMENTAL off): nothing to carry into the snapshot,
        # and no 2 x 6M positions and hashes to keep until the apply (a 900k district).
        lines = (pos[known], hashes[known]) if hashes.any() or stored_lines[known].any() else None
    # A first load creates every row: the frame itself, not a copy of it (~0.5 GB at 300k students).
    return TableChanges(table, mode, created=new if created.all() else select_rows(new, created), updated=upd,
                        deactivated=deactivated, unchanged=int(unchanged.sum()) + n_same, current_active=int(cur_active.sum()),
                        line_positions=lines, lines_dirty=dirty)


def _in_scope(cur: pd.DataFrame, scope: pd.Index) -> pd.Series:
    student, guardian = link_ends(cur["sourced_id"])
    return pd.Series(isin(student, scope) | isin(guardian, scope), index=cur.index)


_LINK_STUDENT = r"\|.*$"  # what follows a guardian-link id's student: removed, the student is left


def link_ends(sourced_ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The student and guardian ids of guardian-link ids ("student|guardian"), in Arrow."""
    arr = arrow(sourced_ids)
    student = pc.replace_substring_regex(arr, _LINK_STUDENT, "")
    guardian = pc.replace_substring_regex(arr, r"^[^|]*\|?", "")
    return student.to_numpy(zero_copy_only=False), guardian.to_numpy(zero_copy_only=False)


def link_students(sourced_ids: pd.Series) -> pd.Series:
    """The student ids of guardian-link ids, as a str column with the same index: Arrow all the way, without
    the Python string per link that link_ends' arrays cost (holds look at every stored link each night)."""
    return pd.Series(pc.replace_substring_regex(arrow(sourced_ids), _LINK_STUDENT, ""), index=sourced_ids.index,
                     dtype="str")


def _changed_ids(tc: TableChanges) -> list[str]:
    return list(tc.updated["sourced_id"]) + list(tc.deactivated["sourced_id"])


def _full_rows(conn: Connection, tenant: str, table: str, ids: list[str]) -> pd.DataFrame:
    """The whole stored rows of some ids, in one query with one parameter for the ids (an array on
    PostgreSQL, a JSON list on SQLite): no statement with thousands of bound values to build."""
    t = ENTITY_TABLES[table]
    cols = [c.name for c in t.columns if c.name != "tenant"]
    select_list = ", ".join(cols)
    if conn.dialect.name == "postgresql":
        sql = f"SELECT {select_list} FROM {table} WHERE tenant = %s AND sourced_id = ANY(%s)"
        params: tuple = (tenant, list(ids))
    else:
        sql = f"SELECT {select_list} FROM {table} WHERE tenant = ? AND sourced_id IN (SELECT value FROM json_each(?))"
        params = (tenant, json.dumps(list(ids), ensure_ascii=False))
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(sql, params)
        rows = cur.fetchall()
    finally:
        cur.close()
    return pd.DataFrame.from_records(rows, columns=cols)


def _describe_updates(tc: TableChanges, before: pd.DataFrame) -> None:
    """Which fields changed, for the report and changes.csv (only the few updated rows)."""
    if tc.updated.empty:
        tc.updated["fields"] = pd.Series([], dtype="str")
        return
    old = before.set_index("sourced_id")
    new = tc.updated.set_index("sourced_id")
    cols = [c for c in ENTITY_COLUMNS[tc.table] if c in new.columns and c in old.columns]
    old = old.reindex(new.index)
    diffs = pd.DataFrame({c: new[c].fillna("").astype("str").ne(old[c].fillna("").astype("str")) for c in cols},
                         index=new.index)
    for c in ADDED_COLUMNS.get(tc.table, ()):
        if c in diffs:
            diffs[c] &= old[c].fillna("").astype("str").ne("")
    data_changed = pd.Series(_data_differs(new["data"], old["data"]), index=new.index)
    names = np.array(cols, dtype=object)
    fields = [",".join(names[row]) for row in diffs.to_numpy()] if cols else [""] * len(new)
    fields = pd.Series(fields, index=new.index)
    fields = fields.mask(fields.eq("") & data_changed, "data")
    tc.updated["fields"] = fields.to_numpy()


def _data_differs(new: pd.Series, old: pd.Series) -> np.ndarray:
    """Whether the `data` JSON of each row says something else: key order and dateLastModified aside (a
    re-export that only bumps dates changes nothing). Parsed only where the texts differ (few rows)."""
    a = new.fillna("").astype("str").to_numpy(dtype=object)
    b = old.fillna("").astype("str").to_numpy(dtype=object)
    differs = a != b
    for i in np.flatnonzero(differs):
        differs[i] = _fields(a[i]) != _fields(b[i])
    return differs


def _fields(text: str) -> dict:
    try:
        values = json.loads(text) if text else {}
    except ValueError:
        return {"": text}
    if isinstance(values, dict):
        values.pop("dateLastModified", None)
    return values


def labels(table: str, frame: pd.DataFrame) -> pd.Series:
    cols = [c for c in LABEL.get(table, []) if c in frame.columns]
    if not cols or frame.empty:
        return pd.Series([""] * len(frame), index=frame.index, dtype="str")
    out = frame[cols[0]].fillna("").astype("str")
    sep = " → " if table in ("enrollments", "guardian_links") else " "
    for c in cols[1:]:
        out = out + sep + frame[c].fillna("").astype("str")
    return out
