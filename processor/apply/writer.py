"""Write a change set inside the caller's transaction: rows and the audit log, with each engine's fast path.

SQLite: executemany of tuples. PostgreSQL: COPY for inserts, `= ANY(array)` for deletes and status changes.
Updates are delete + insert of the whole row (the new row is complete; the old one is in the audit log).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import Connection, delete

from processor import events, progress
from processor.apply.diff import (
    ChangeSet,
    next_snapshot,
    store_next_snapshot,
    takes_delta,
    write_next_snapshot,
)
from processor.apply.store import ENTITY_COLUMNS, ENTITY_TABLES, audit, snapshots
from processor.convert.roster import data_json
from processor.vector import _escape, arrow, isin, json_rows

# Rows per executemany: each slice's values are Python objects (two slices in flight: the one written and the
# one being prepared); 50,000 keeps that near 0.1 GB with no measurable cost in speed.
INSERT_SLICE = 50_000
# Rows per COPY: 500,000 made the apply the peak of a 300k PostgreSQL first load (2061 MiB: each slice's CSV
# and its Arrow table, two slices in flight); 200,000: 1616 MiB, the convert's peak, no slower.
COPY_SLICE = 200_000
AUDIT_COLUMNS = ["tenant", "run_id", "entity", "sourced_id", "action", "before", "after"]


def apply_changes(conn: Connection, tenant: str, run_id: str, changes: ChangeSet, lines: bool = False) -> None:
    """lines: the whole change set of a drop is applied, so the snapshots keep its line hashes
    (convert.incremental); a partial one (an additions-only pause) keeps none for the tables it writes."""
    progress.stage_total(sum(tc.changed + (len(tc.rehashed) if tc.rehashed is not None else 0)
                             for tc in changes.tables.values()))
    # A snapshot that takes a delta (a nightly's) is built (Arrow and zstd, which release the GIL) on a helper
    # thread while this one writes the rows, and stored at the end on this thread's connection. A whole one
    # (a first load's) is built after its table's rows, as they are written: beside the inserts it raised a
    # 300k first load's peak by ~130 MB and saved nothing (the writes hold that thread anyway).
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot")
    try:
        keys = _snapshot_keys(changes, lines)
        ahead = {table: pool.submit(next_snapshot, changes.tables[table], changes.current[table], lines, key)
                 for table, key in keys.items() if takes_delta(changes.current[table], key)}
        for table, tc in changes.tables.items():
            _write_rows(conn, tenant, run_id, table, tc, changes)
            if table in keys and table not in ahead:
                write_next_snapshot(conn, tenant, table, run_id, tc, changes.current[table], lines, keys[table])
        for future in ahead.values():
            store_next_snapshot(conn, tenant, run_id, future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    events.record_changes(conn, tenant, run_id, changes)


def _snapshot_keys(changes: ChangeSet, lines: bool) -> dict[str, str]:
    """Each table whose snapshot the change set rewrites → the key its line hashes will hold under."""
    keys = {}
    for table, tc in changes.tables.items():
        current = changes.current.get(table)
        if current is not None and (tc.changed or tc.rehashed is not None or not current.attrs.get("snapshot")
                                    or (lines and tc.lines_dirty)):
            keys[table] = tc.line_key if lines else ""
    return keys


def _write_rows(conn: Connection, tenant: str, run_id: str, table: str, tc, changes: ChangeSet) -> None:
    cols = ["tenant", "sourced_id", "status", "row_hash", "run_id", *ENTITY_COLUMNS[table], "data"]
    rewritten = [r.drop(columns=["action", "fields"], errors="ignore")
                 for r in (tc.updated, tc.rehashed) if r is not None and not r.empty]
    stamp = {"tenant": tenant, "run_id": run_id}
    if rewritten:
        rows = pd.concat(rewritten, ignore_index=True)
        _delete(conn, table, tenant, list(rows["sourced_id"]))
        _insert(conn, table, cols, rows, stamp, key_order=True)
    if not tc.created.empty:
        _insert(conn, table, cols, tc.created, stamp, data_from=changes.data_source.get(table), with_data=True)
    if not tc.deactivated.empty:
        _deactivate(conn, table, tenant, run_id, list(tc.deactivated["sourced_id"]))
        progress.stage_advance(len(tc.deactivated))
    _audit(conn, tenant, run_id, table, tc, changes.before.get(table))


def _audit(conn: Connection, tenant: str, run_id: str, table: str, tc, before: pd.DataFrame | None) -> None:
    """Audit records of a run's changes. Updated, reactivated and deactivated rows get one record each with
    `before` = the whole stored row (what a revert puts back) and `after` = the whole new row. Created rows
    get one record per table and run whose `after` is the JSON list of their ids (sourced_id "*<count>"):
    the created row itself, stamped with this run's id, is its after-state, and the next change to it audits
    it as `before`. One record instead of millions keeps a first load's audit cost near zero."""
    parts = []
    if not tc.created.empty:
        # One record lists every id the run created (a first load creates millions): revert deletes them.
        ids = json_list(tc.created["sourced_id"])
        parts.append(pd.DataFrame({"sourced_id": [f"*{len(tc.created)}"], "action": "created",
                                   "before": [None], "after": [ids]}))
    old = pd.Series([], dtype="str")
    if before is not None and not before.empty and (len(tc.updated) or len(tc.deactivated)):
        audited = pd.concat([tc.updated["sourced_id"], tc.deactivated["sourced_id"]])
        old = _row_json(before[isin(before["sourced_id"], audited)])  # not the silently rehashed rows
    if not tc.updated.empty:
        ids = tc.updated["sourced_id"]
        cols = ["sourced_id", "status", *ENTITY_COLUMNS[table], "data"]
        parts.append(pd.DataFrame({"sourced_id": ids.to_numpy(), "action": tc.updated["action"].to_numpy(),
                                   "before": ids.map(old).to_numpy(),
                                   "after": json_rows(tc.updated[cols]).to_numpy()}))
    if not tc.deactivated.empty:
        ids = tc.deactivated["sourced_id"]
        parts.append(pd.DataFrame({"sourced_id": ids.to_numpy(), "action": "deactivated",
                                   "before": ids.map(old).to_numpy(), "after": '{"status":"inactive"}'}))
    if not parts:
        return
    rows = pd.concat(parts, ignore_index=True).assign(tenant=tenant, run_id=run_id, entity=table)
    _insert(conn, audit.name, AUDIT_COLUMNS, rows[AUDIT_COLUMNS])


def json_list(values: pd.Series) -> str:
    """A JSON array of strings built in Arrow: a first load's 2M created ids without 2M Python strings
    (json.dumps of their list cost ~1 s and ~0.2 GB of the apply's peak at 300k students)."""
    if values.empty:
        return "[]"
    text = pa.large_string()
    items = _escape(pc.fill_null(arrow(values), ""))
    lists = pa.LargeListArray.from_arrays(pa.array([0, len(items)], type=pa.int64()), items)
    return '["' + pc.binary_join(lists, pa.scalar('","', type=text))[0].as_py() + '"]'


def _row_json(frame: pd.DataFrame) -> pd.Series:
    """The whole stored row as JSON, keyed by sourced_id: what a revert puts back."""
    text = frame.to_json(orient="records", lines=True, force_ascii=False).split("\n")
    return pd.Series(text[:len(frame)], index=frame["sourced_id"].to_numpy())


def _insert(conn: Connection, table: str, cols: list[str], rows: pd.DataFrame, constants: dict | None = None,
            key_order: bool = False, with_data: bool = False, data_from: pd.DataFrame | None = None) -> None:
    """Insert rows in slices, never copying the whole frame: constants (tenant, run_id) are added per slice,
    and with_data the `data` JSON too, built from data_from (see convert.roster.data_json)."""
    constants = constants or {}
    sqlite = conn.dialect.name == "sqlite"
    # Key order fills the primary-key B-tree page by page: ~1.5x faster on SQLite, and ~2x on PostgreSQL
    # (COPY of 2M enrollments: 20 s in arrival order, 11 s sorted, 4.8 s with no index at all).
    key_order = (key_order or with_data) and len(rows) > 1
    order = pc.sort_indices(arrow(rows["sourced_id"])).to_numpy() if key_order else None
    step = INSERT_SLICE if sqlite else COPY_SLICE

    def prepare(start: int):
        part = rows.iloc[order[start:start + step]] if order is not None else rows.iloc[start:start + step]
        if with_data:
            part = part.assign(data=data_json(data_from, part.index).to_numpy())
        return _sqlite_columns(cols, part, constants) if sqlite else _postgresql_csv(cols, part, constants)

    cur = conn.connection.dbapi_connection.cursor() if sqlite else None
    # The next slice is cut, its `data` JSON built and its DB-API values (SQLite) or CSV (PostgreSQL) made on
    # a helper thread while this one is written: the database drivers (SQLite's step, psycopg's copy) and
    # Arrow's kernels release the GIL. Only this thread touches the connection.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="insert")
    try:
        upcoming = pool.submit(prepare, 0)
        for start in range(0, len(rows), step):
            ready = upcoming.result()
            if start + step < len(rows):
                upcoming = pool.submit(prepare, start + step)
            if sqlite:
                values = ", ".join("?" for _ in cols)
                cur.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({values})", zip(*ready, strict=True))
            else:
                raw = conn.connection.driver_connection
                with raw.cursor() as pg, pg.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN (FORMAT csv)") as copy:
                    copy.write(ready)
            if table in ENTITY_TABLES:  # roster rows: not the audit or event records
                progress.stage_advance(min(step, len(rows) - start))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if cur is not None:
            cur.close()


def _sqlite_columns(cols: list[str], part: pd.DataFrame, constants: dict) -> list:
    # Row tuples are zipped lazily from these columns by the writer: the DB-API wants Python objects, and
    # 2M rows of tuples at once cost ~1.5 GB of peak memory.
    return [[constants[c]] * len(part) if c in constants else _db_values(part[c]) for c in cols]


def _postgresql_csv(cols: list[str], part: pd.DataFrame, constants: dict) -> memoryview:
    # Arrow's CSV writer (C++) quotes empty strings ("") and leaves NULL empty, which is exactly how
    # PostgreSQL's CSV COPY tells them apart; pandas' to_csv was 10x slower here.
    data = pa.Table.from_pandas(part[[c for c in cols if c not in constants]], preserve_index=False)
    arrays = [pa.array([constants[c]] * len(part), type=pa.string()) if c in constants else data[c] for c in cols]
    sink = pa.BufferOutputStream()
    # combine_chunks: pyarrow 26 writes garbage for a column whose first chunk is empty (pd.concat makes those).
    pacsv.write_csv(pa.table(arrays, names=cols).combine_chunks(), sink,
                    pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return memoryview(sink.getvalue())


def _db_values(col: pd.Series):
    """A column as Python values for the DB-API: int64 as int, text as str, missing as None."""
    if col.dtype.kind in "iu":
        return col.tolist()
    values = col.to_numpy(dtype=object, copy=True)
    if col.hasnans:
        values[pd.isna(values)] = None
    return values  # an object array yields its Python str objects as they are


def _delete(conn: Connection, table: str, tenant: str, ids: list[str]) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"DELETE FROM {table} WHERE tenant = %s AND sourced_id = ANY(%s)", (tenant, ids))
        return
    conn.exec_driver_sql(f"DELETE FROM {table} WHERE tenant = ? AND sourced_id = ?", [(tenant, i) for i in ids])


def _deactivate(conn: Connection, table: str, tenant: str, run_id: str, ids: list[str]) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"UPDATE {table} SET status = 'inactive', run_id = %s "
                             "WHERE tenant = %s AND sourced_id = ANY(%s)", (run_id, tenant, ids))
        return
    conn.exec_driver_sql(f"UPDATE {table} SET status = 'inactive', run_id = ? WHERE tenant = ? AND sourced_id = ?",
                         [(run_id, tenant, i) for i in ids])


def revert_run(conn: Connection, tenant: str, run_id: str) -> int:
    """Undo one applied run from its audit log (newest change first). Returns the number of records undone."""
    # Rows change outside apply_changes: the diff must read them again, not a stale snapshot.
    conn.execute(delete(snapshots).where(snapshots.c.tenant == tenant))
    rows = conn.exec_driver_sql(
        "SELECT entity, sourced_id, action, before, after FROM audit WHERE tenant = {p} AND run_id = {p} ORDER BY id DESC"
        .format(p="%s" if conn.dialect.name == "postgresql" else "?"), (tenant, run_id)).all()
    for entity, sid, action, before, after in rows:
        t = ENTITY_TABLES[entity]
        if action == "created":
            created = json.loads(after)
            for i in range(0, len(created), 5000):
                conn.execute(t.delete().where(t.c.tenant == tenant, t.c.sourced_id.in_(created[i:i + 5000])))
            continue
        conn.execute(t.delete().where(t.c.tenant == tenant, t.c.sourced_id == sid))
        if action != "created":
            values = json.loads(before)
            values["tenant"] = tenant
            conn.execute(t.insert().values(**values))
    events.record_revert(conn, tenant, run_id, rows)
    return len(rows)
