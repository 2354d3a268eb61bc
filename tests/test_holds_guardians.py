"""The too-many-guardians hold counts links by number (codes + bincount) and finds stored links' students in
Arrow: it must say exactly what the plain pandas formulation (a group-by over every link) says."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from processor.apply.diff import ChangeSet, TableChanges, link_ends, link_students
from processor.apply.holds import _too_many_guardians
from processor.config import Policy


def _links(pairs: list[tuple[str, str]], status: list[str] | None = None, index=None) -> pd.DataFrame:
    ids = [f"{s}|{g}" for s, g in pairs]
    return pd.DataFrame({"sourced_id": pd.array(ids, dtype="str"),
                         "status": pd.array(status or ["active"] * len(ids), dtype="str"),
                         "student": pd.array([s for s, _ in pairs], dtype="str")},
                        index=index if index is not None else range(len(ids)))


def _reference(cs: ChangeSet, limit: int) -> list[tuple[str, str]]:
    """The formulation before: every active stored link's student as a Python string, then a group-by."""
    tc = cs.tables["guardian_links"]
    added = pd.concat([tc.created[["sourced_id", "student"]], tc.updated[["sourced_id", "student"]]])
    if added.empty:
        return []
    students = added["student"].unique()
    current = cs.current["guardian_links"]
    current = current[current["status"].eq("active")]
    current = pd.DataFrame({"sourced_id": current["sourced_id"].to_numpy(),
                            "student": link_ends(current["sourced_id"])[0]})
    current = current[current["student"].isin(students)]
    kept = current[~current["sourced_id"].isin(tc.deactivated["sourced_id"])]
    counts = pd.concat([kept, added]).drop_duplicates("sourced_id").groupby("student").size()
    over = counts[counts > limit]
    return [(str(s), str(n)) for s, n in over.items()]


def _case(rng: random.Random) -> ChangeSet:
    students = [f"s{i}" for i in range(rng.randint(1, 12))]
    guardians = [f"g{i}" for i in range(rng.randint(1, 8))]
    every = [(s, g) for s in students for g in guardians]
    stored = rng.sample(every, rng.randint(0, len(every)))
    status = [rng.choice(["active", "active", "inactive"]) for _ in stored]
    known = set(stored)
    fresh = [p for p in every if p not in known]
    created = rng.sample(fresh, rng.randint(0, len(fresh)))
    updated = rng.sample(stored, rng.randint(0, len(stored)))  # stored links the drop restates, changed
    gone = rng.sample([p for p in stored if p not in set(updated)], rng.randint(0, len(stored) - len(updated)))
    offset = rng.randint(0, 1000)  # frames keep the index they had in the diff: never assume 0..n-1
    cs = ChangeSet()
    cs.current["guardian_links"] = _links(stored, status)
    cs.tables["guardian_links"] = TableChanges(
        "guardian_links", "bulk", created=_links(created, index=range(offset, offset + len(created))),
        updated=_links(updated, index=range(offset + 5000, offset + 5000 + len(updated))),
        deactivated=_links(gone))
    return cs


@pytest.mark.parametrize("seed", range(60))
def test_too_many_guardians_matches_the_group_by(seed: int) -> None:
    rng = random.Random(seed)
    cs = _case(rng)
    limit = rng.randint(0, 6)
    holds = _too_many_guardians(cs, Policy(max_guardians_per_student=limit))
    got = [] if not holds else list(zip(holds[0]["sourced_id"].astype("str"), holds[0]["value"].astype("str"),
                                        strict=True))
    assert got == _reference(cs, limit)


def test_a_first_load_over_the_limit_names_each_student_once_in_order() -> None:
    cs = ChangeSet()
    cs.current["guardian_links"] = _links([])
    pairs = [("s2", "g1"), ("s1", "g1"), ("s2", "g2"), ("s2", "g3"), ("s1", "g2"), ("s3", "g1")]
    cs.tables["guardian_links"] = TableChanges("guardian_links", "bulk", created=_links(pairs),
                                               updated=_links([]), deactivated=_links([]))
    holds = _too_many_guardians(cs, Policy(max_guardians_per_student=1))
    assert list(holds[0]["sourced_id"]) == ["s1", "s2"]
    assert list(holds[0]["value"]) == ["2", "3"]
    assert _too_many_guardians(cs, Policy(max_guardians_per_student=3)) == []


def test_link_students_is_link_ends_student_side() -> None:
    ids = pd.Series(pd.array(["a|b", "c", "a|b|c", None, "", "|x"], dtype="str"), index=[9, 3, 7, 1, 0, 2])
    got = link_students(ids)
    assert list(got.index) == [9, 3, 7, 1, 0, 2]
    want = link_ends(ids)[0]
    assert [None if pd.isna(v) else v for v in got] == [None if v is None else v for v in want]
    assert np.array_equal(got.isna().to_numpy(), pd.isna(want))
