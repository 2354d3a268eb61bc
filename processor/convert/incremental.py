"""A nightly costs what changed: rows the last applied drop already converted are not converted again.

Each row of the roster snapshots (processor.apply.diff) carries `line_hash`: the hash of the district's row
(every value it sent, cleaned as read, under its column names) that the stored row is the conversion of, or
0 when unknown. A snapshot also records, in its Arrow metadata, the key under which those hashes hold: a
hash of everything that affects conversion besides the row itself (policy, the bundle's format, the code's
conversion version, the tenant's id aliases) and, per table, the columns the file sent and what the table's
rows depend on in other files (people: the set of schools among the orgs).

convert() then sends through conversion and the diff only the rows whose hash the snapshot does not know
under the same key; the others are `same`: the full path would convert them to the row that is stored and
the diff would count them unchanged. Validation still sees every row (its issues, rejections and whole-roster
checks are those of the full path), and every row still names its id (bulk deactivation). Rows whose stored
record could differ from their conversion are never `same`: a field lock on the row (its alert counts
drop values), a stored status other than the converted one, a stored id other than the row's (an alias),
demographics of a person converted afresh. A snapshot is written with hashes only by a full apply; anything
else that changes stored rows (a revert, an unlock, an additions-only pause) leaves none, so the next drop
takes the full path for those tables.

`ROSTERDROP_INCREMENTAL=1` turns it on; it is off by default, because on this project's 2-core machines
it does not pay yet (bench/README.md, 2026-12-02): validation must still read and check every row (its
issues are those of the full path), so the one hash pass over every row that the skip needs costs about
what converting and comparing the unchanged rows did. Off, no hash is computed (the snapshots' line hashes
are 0), and the first drop after turning it on converts everything once. The property test compares both
paths.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from processor.vector import arrow, chunks, isin, lookup

ENV = "ROSTERDROP_INCREMENTAL"
# Bump when conversion (convert.roster, the row hash, the snapshot's meaning) changes what a row becomes:
# every stored line hash is then void and the next drop of each tenant takes the full path once.
CODE_VERSION = "1"
NOT_HASHED = {"password"}  # never stored: a changed password changes nothing (as in convert.roster)
_HASH_KEY = "rosterdrop-line!"  # pandas' SipHash key (16 bytes); not pandas' default one


def enabled() -> bool:
    return os.environ.get(ENV, "0").strip().lower() in ("1", "true", "yes", "on")


def _package_version() -> str:
    try:
        return version("rosterdrop")
    except PackageNotFoundError:
        return "?"


def run_key(policy, fmt: str, aliases: list[tuple[str, str]]) -> str:
    """What a row's conversion depends on besides the row and its table's dependencies."""
    h = hashlib.sha256()
    for part in (CODE_VERSION, _package_version(), fmt, policy.model_dump_json(),
                 repr(sorted(aliases))):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()[:32]


def hashed_columns(df: pd.DataFrame) -> list[str]:
    return sorted(c for c in df.columns if not c.startswith("_") and c not in NOT_HASHED)


def table_key(key: str, table: str, df: pd.DataFrame, schools: pd.Index | None = None) -> str:
    """run_key + the table's columns + (people) the schools the rows' orgSourcedIds may name."""
    h = hashlib.sha256(key.encode())
    h.update(table.encode())
    h.update("\x1f".join(hashed_columns(df)).encode())
    if schools is not None:
        h.update(b"\x00schools\x00")
        h.update("\x1f".join(sorted(map(str, schools))).encode())
    return h.hexdigest()[:32]


def line_hashes(df: pd.DataFrame) -> np.ndarray:
    """A signed 64-bit hash per row of every value the row sent (never 0: 0 means unknown)."""
    cols = hashed_columns(df)
    if len(df) == 0:
        return np.zeros(0, dtype=np.int64)
    parts = [pc.fill_null(chunks(df[c]) if df[c].dtype == "str" else
                          pa.chunked_array([pa.array(df[c].astype("str").to_numpy(dtype=object),
                                                     type=pa.large_string())]), "") for c in cols]
    if not parts:
        return np.ones(len(df), dtype=np.int64)
    joined = pc.binary_join_element_wise(*parts, pa.scalar("\x1f", type=pa.large_string()))
    values = joined.cast(pa.large_binary()).to_numpy(zero_copy_only=False)
    out = pd.util.hash_array(values, categorize=False, hash_key=_HASH_KEY).view(np.int64)
    out[out == 0] = 1
    return out


@dataclass
class LineState:
    """What the last applied drop left to compare with: the snapshots (store table → frame, with
    line_hash), the run key, the tenant's field locks and id aliases."""
    key: str
    snapshots: dict[str, pd.DataFrame] = field(default_factory=dict)
    locked: dict[str, pd.Index] = field(default_factory=dict)  # store table → locked (stored) ids
    aliases: list[tuple[str, str]] = field(default_factory=list)  # people: (new id, old id)
    skip: bool = True  # False: ROSTERDROP_INCREMENTAL off (no hashes, nothing skipped)


def load_state(engine, tenant: str, tables: list[str], policy, fmt: str) -> LineState:
    """Read under the tenant's lock, before the apply's transaction (which then reuses the snapshots; with
    ROSTERDROP_INCREMENTAL off none are read here, and the diff reads them in its own transaction)."""
    from sqlalchemy import select

    from processor.apply.diff import load_current
    from processor.apply.identity import id_aliases
    from processor.apply.locks import field_locks

    with engine.connect() as conn:
        a = id_aliases.c
        aliases = [(r.new_id, r.old_id) for r in conn.execute(select(a.new_id, a.old_id).where(
            a.tenant == tenant, a.entity == "people")).all()]
        state = LineState(key=run_key(policy, fmt, aliases), aliases=aliases, skip=enabled())
        c = field_locks.c
        rows = conn.execute(select(c.entity, c.sourced_id).where(c.tenant == tenant)).all()
        for entity in {r.entity for r in rows}:
            state.locked[entity] = pd.Index([r.sourced_id for r in rows if r.entity == entity], dtype="str")
        if not state.skip:
            # Nothing is skipped: the diff reads the snapshots itself, after the bundle's raw frames are
            # gone (measured: 280 MB less at a 300k district's peak, which is in conversion).
            return state
        for table in tables:
            state.snapshots[table] = load_current(conn, tenant, table)
    return state


@dataclass
class Same:
    """The rows of a table split() found the same: their positions in the snapshot."""
    positions: np.ndarray
    snapshot: pd.DataFrame = field(repr=False)

    def __len__(self) -> int:
        return len(self.positions)

    def column(self, name: str) -> pd.Series:
        """A snapshot column (sourced_id, status, school) of these rows."""
        return pd.Series(pc.take(arrow(self.snapshot[name]), pa.array(self.positions)), dtype="str")

    def subset(self, mask: np.ndarray) -> Same:
        return Same(self.positions[mask], self.snapshot)


@dataclass
class Split:
    fresh: np.ndarray          # bool mask over the table's rows: convert these
    hashes: np.ndarray         # line hash of every row
    same: Same | None  # the others
    key: str


def split(state: LineState | None, table: str, df: pd.DataFrame, gone: np.ndarray, key: str) -> Split:
    """Which rows of df (one table's accepted rows, as convert is about to convert them) need converting.
    gone: which rows convert to an inactive record (a `tobedeleted` status)."""
    fresh = np.ones(len(df), dtype=bool)
    if state is None or not state.skip:  # the full path, at its old cost: no line hashes (0: unknown)
        return Split(fresh, np.zeros(len(df), dtype=np.int64), None, key)
    hashes = line_hashes(df)
    snap = state.snapshots.get(table)
    if snap is None or snap.attrs.get("line_key") != key or len(df) == 0 or not len(snap):
        return Split(fresh, hashes, None, key)
    stored = snap["line_hash"].to_numpy(dtype=np.int64)
    pos = pc.fill_null(pc.index_in(pa.array(hashes), value_set=pa.array(stored)), -1).to_numpy()
    pos = pos.astype(np.int64, copy=False)
    known = pos >= 0
    at = np.where(known, pos, 0)
    ids = arrow(df["sourcedId"])
    if state.aliases and table in ("people", "demographics"):
        new, old = zip(*state.aliases, strict=True)
        ids = arrow(lookup(df["sourcedId"], pd.Series(new, dtype="str"), np.array(old, dtype=object), default="")
                    .where(isin(df["sourcedId"], list(new)), df["sourcedId"]))
    # The stored row must be the one that line made: same status, same id (a hash is 64 bits; the id check
    # makes a collision between two rows harmless).
    inactive = snap["status"].eq("inactive").to_numpy()
    same = known & (inactive[at] == gone)
    candidates = np.flatnonzero(same)
    stored_ids = pc.take(arrow(snap["sourced_id"]), pa.array(at[candidates]))
    same[candidates] = pc.equal(stored_ids, pc.take(ids, pa.array(candidates))).to_numpy(zero_copy_only=False)
    locked = state.locked.get(table)
    if locked is not None and len(locked):
        same &= ~isin(ids.to_numpy(zero_copy_only=False), locked)
    fresh = ~same
    kept = Same(pos[same], snap)
    return Split(fresh, hashes, kept, key)
