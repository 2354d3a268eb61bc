"""Guardian links' (student, guardian) pairs are worked out in Arrow (convert.roster._pairs): the same
distinct pairs, in the same first-occurrence order, as the pandas formulation they replaced, and where
each end is among the people (what the link checks then take by position)."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from processor.convert.roster import _pairs


def _reference(people: pd.DataFrame, at: np.ndarray, agents: pd.Series) -> list[tuple[str, str]]:
    pairs = pd.DataFrame({"a": people["sourced_id"].to_numpy()[at], "role": people["role"].to_numpy()[at],
                          "b": agents.to_numpy()})
    students = pairs[pairs["role"].eq("student")].rename(columns={"a": "student", "b": "guardian"})
    guardians = pairs[pairs["role"].eq("guardian")].rename(columns={"a": "guardian", "b": "student"})
    both = pd.concat([students[["student", "guardian"]], guardians[["student", "guardian"]]],
                     ignore_index=True).drop_duplicates()
    return list(zip(both["student"].astype(str), both["guardian"].astype(str), strict=True))


@pytest.mark.parametrize("seed", range(40))
def test_pairs_match_the_pandas_formulation(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(0, 200)
    people = pd.DataFrame({
        "sourced_id": pd.array([f"p{i}" for i in range(n)], dtype="str"),
        "role": pd.array([rng.choice(["student", "guardian", "teacher"]) for _ in range(n)], dtype="str")})
    at = np.array([rng.randrange(n) for _ in range(rng.randint(0, 400))] if n else [], dtype=np.int64)
    # Agents name people of the drop, unknown ids, and repeats (a pair named from both of its ends).
    agents = pd.Series([f"p{rng.randrange(n + 10)}" for _ in range(len(at))], dtype="str")
    got, ends_at = _pairs(people, at, agents)
    assert list(zip(got["student"], got["guardian"], strict=True)) == _reference(people, at, agents)
    assert not got.duplicated().any()
    where = {p: i for i, p in enumerate(people["sourced_id"])}
    ends = [*got["student"], *got["guardian"]]
    assert ends_at.tolist() == [where.get(e, -1) for e in ends]


def test_pairs_of_nobody() -> None:
    people = pd.DataFrame({"sourced_id": pd.array([], dtype="str"), "role": pd.array([], dtype="str")})
    got, ends_at = _pairs(people, np.zeros(0, dtype=np.int64), pd.Series([], dtype="str"))
    assert list(got.columns) == ["student", "guardian"] and len(got) == 0 and len(ends_at) == 0
