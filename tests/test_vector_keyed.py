"""vector.keyed_positions: big id lookups by 64-bit keys must give exactly what Arrow's string lookup gives
(positions of first occurrences, -1 for none, nulls never found), whatever the ids: repeats on both sides,
nulls, empty and non-ASCII values, values that differ only by trailing NUL bytes (equal once padded), chunked
and sliced probes, and keys shared by distinct values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from processor import vector

ALPHABET = ["a", "b", "Z", "0", "-", "é", "日", "\x00", " "]


def _ids(rng: np.random.Generator, n: int, longest: int, nulls: float) -> list[str | None]:
    out = []
    for _ in range(n):
        if rng.random() < nulls:
            out.append(None)
            continue
        size = int(rng.integers(0, longest + 1))
        text = "".join(rng.choice(ALPHABET, size=size))
        while len(text.encode()) > longest:  # multi-byte characters: keep within the byte budget
            text = text[:-1]
        out.append(text)
    return out


def _arrow_positions(left, right: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.index_in(left, value_set=right, skip_nulls=True), -1).to_numpy(
        zero_copy_only=False).astype(np.int64)


@pytest.fixture
def always_keyed(monkeypatch):
    monkeypatch.setattr(vector, "KEYED_MIN", 0)
    monkeypatch.setattr(vector, "KEYED_DISTINCT", 0)


@pytest.mark.parametrize("seed", range(6))
def test_keyed_lookups_equal_arrows_on_random_ids(always_keyed, seed):
    rng = np.random.default_rng(seed)
    longest = [3, 8, 17, 48][seed % 4]  # short ids repeat a lot; long ones hardly
    ref_list = _ids(rng, 3000, longest, nulls=0.02)
    ref_list += [ref_list[int(i)] for i in rng.integers(0, len(ref_list), 300)]  # repeats: first occurrence wins
    ref_list += ["a", "a\x00", "a\x00\x00", "", "é"]  # equal once zero-padded: never equal values
    right = pa.array(ref_list, type=pa.large_string())
    probe_list = _ids(rng, 2000, longest, nulls=0.05) + [ref_list[int(i)] for i in rng.integers(0, len(ref_list), 2000)]
    probe_list += ["a", "a\x00", "a\x00\x00\x00", "", None]
    whole = pa.array(probe_list, type=pa.large_string())
    # chunked, one chunk a slice with an offset into its buffers, one chunk empty
    left = pa.chunked_array([whole.slice(0, 1500), whole.slice(1500, 2000), whole.slice(3500, 0), whole.slice(3500)])
    expected = _arrow_positions(left, right)
    got = vector.keyed_positions(left, right)
    assert got is not None, "ids within KEYED_WIDTH are keyed"
    np.testing.assert_array_equal(got, expected)
    assert (expected >= 0).sum() > 1000 and (expected < 0).sum() > 10  # both found and missing ids were looked up
    # the public functions, on Series as the stages call them
    series = pd.Series(probe_list, dtype="str")
    np.testing.assert_array_equal(vector.positions(series, pd.Index(ref_list, dtype="str")), expected)
    np.testing.assert_array_equal(vector.isin(series, ref_list).to_numpy(), expected >= 0)


def test_values_sharing_a_key_are_told_apart(always_keyed, monkeypatch):
    """Keys of 3 bits: nearly every match by key is between distinct values, which must be looked up again."""
    real = vector._keys

    def weak(arr, width):
        keys = real(arr, width)
        return None if keys is None else keys % np.uint64(8)

    monkeypatch.setattr(vector, "_keys", weak)
    rng = np.random.default_rng(42)
    right = pa.array(_ids(rng, 2000, 12, nulls=0.01), type=pa.large_string())
    left = pa.array(_ids(rng, 3000, 12, nulls=0.01) + right.to_pylist()[::3], type=pa.large_string())
    got = vector.keyed_positions(left, right)
    assert got is not None
    np.testing.assert_array_equal(got, _arrow_positions(left, right))


def test_ids_longer_than_the_key_width_take_arrows_lookup(always_keyed):
    long_id = "x" * (vector.KEYED_WIDTH + 1)
    right = pa.array(["a", long_id, "b"], type=pa.large_string())
    left = pa.array([long_id, "b", "c"], type=pa.large_string())
    assert vector.keyed_positions(left, right) is None
    assert list(vector.positions(pd.Series([long_id, "b", "c"], dtype="str"), pd.Index(["a", long_id, "b"]))) == \
        [1, 2, -1]


def test_small_references_take_arrows_lookup():
    """Against fewer than KEYED_MIN ids Arrow's own table is faster (it fits the caches)."""
    right = pa.array([f"id{i}" for i in range(1000)], type=pa.large_string())
    left = pa.array([f"id{i}" for i in range(0, 400_000, 7)], type=pa.large_string())
    assert vector.keyed_positions(left, right) is None


def test_a_big_lookup_is_keyed_and_exact():
    """At the size the diff joins (over KEYED_MIN ids), with the default settings."""
    n = vector.KEYED_MIN + 10_000
    right = pa.array([f"enr-{i:07d}" for i in range(n)], type=pa.large_string())
    rng = np.random.default_rng(7)
    picks = rng.integers(0, n + 5000, 50_000)
    left = pa.array([f"enr-{i:07d}" for i in picks], type=pa.large_string())
    got = vector.keyed_positions(left, right)
    assert got is not None
    np.testing.assert_array_equal(got, np.where(picks < n, picks, -1))


def test_missing_values_are_settled_without_a_second_lookup(always_keyed, monkeypatch):
    """A missing id is never found, and a missing one among the ids looked up in is never a match: both are
    settled by key, not sent again to Arrow's (slow, whole-table) lookup."""
    again = []
    real = vector._index_in
    monkeypatch.setattr(vector, "_index_in", lambda left, right: again.append(len(left)) or real(left, right))
    right = pa.array([None, "x", "", None, "y"], type=pa.large_string())
    left = pa.chunked_array([pa.array([None] * 50 + ["", "y", "z"], type=pa.large_string())])
    got = vector.keyed_positions(left, right)
    assert list(got) == [-1] * 50 + [2, 4, -1]
    assert again == []


def test_a_column_of_few_distinct_values_takes_arrows_lookup(monkeypatch):
    """Keying pays for a table of many ids, not for a status or a school repeated on every row."""
    monkeypatch.setattr(vector, "KEYED_MIN", 0)
    right = pa.array([f"school{i % 40}" for i in range(5000)], type=pa.large_string())
    assert vector.keyed_positions(right, right) is None
    many = pa.array([f"id{i}" for i in range(5000)], type=pa.large_string())
    assert vector.keyed_positions(many, many) is not None


def test_matches_are_checked_slice_by_slice(always_keyed, monkeypatch):
    """The check of key matches runs over slices of the matches; a collision in any slice is caught."""
    real = vector._keys
    monkeypatch.setattr(vector, "_CHECK_SLICE", 7)
    monkeypatch.setattr(vector, "_keys", lambda arr, width: None if (k := real(arr, width)) is None else k % np.uint64(5))
    rng = np.random.default_rng(9)
    right = pa.array(_ids(rng, 300, 6, nulls=0.02), type=pa.large_string())
    left = pa.array(_ids(rng, 200, 6, nulls=0.02) + right.to_pylist(), type=pa.large_string())
    np.testing.assert_array_equal(vector.keyed_positions(left, right), _arrow_positions(left, right))
