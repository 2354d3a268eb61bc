"""The read's shortcuts read string columns off their Arrow offsets (processor.vector): they must never
let a value the exact check would catch through."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from processor.vector import codes, edges_plain, longest_bytes, per_unique_map

ALPHABET = ["a", "Z", "1", "-", " ", "\t", "\r", "\x1f", "\x7f", "\u00a0", "\u2003", "\u3000", "é", "€"]


def _column(rng: random.Random) -> pa.ChunkedArray:
    values = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 4))) for _ in range(rng.randint(1, 8))]
    half = len(values) // 2
    column = pa.chunked_array([pa.array(values[:half], type=pa.large_string()),
                               pa.array(values[half:], type=pa.large_string())])
    return column.slice(rng.randint(0, len(values) - 1)) if rng.random() < 0.3 else column


@pytest.mark.parametrize("seed", range(5))
def test_a_column_said_plain_has_nothing_to_trim(seed: int) -> None:
    rng = random.Random(seed)
    said_plain = 0
    for _ in range(600):
        column = _column(rng)
        if edges_plain(column):
            said_plain += 1
            assert pc.utf8_trim_whitespace(column).to_pylist() == column.to_pylist()
    assert said_plain > 0  # the shortcut does get taken


def test_edges_plain_sees_each_kind_of_edge() -> None:
    def col(*values: str) -> pa.ChunkedArray:
        return pa.chunked_array([pa.array(list(values), type=pa.large_string())])

    assert edges_plain(col("abc", "", "x-1"))
    for value in (" a", "a ", "a\t", "\u00a0a", "a\u3000", "éa", "aé"):
        assert not edges_plain(col("abc", value)), value


@pytest.mark.parametrize("seed", range(3))
def test_longest_bytes_is_the_longest_value_in_bytes(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        column = _column(rng)
        expected = max((len(v.encode()) for v in column.to_pylist()), default=0)
        assert longest_bytes(column) == expected
    assert longest_bytes(pa.chunked_array([pa.array(["éé", "a"], type=pa.string())])) == 4


@pytest.mark.parametrize("seed", range(3))
def test_eq_and_ne_are_pandas_eq_and_ne(seed: int) -> None:
    """vector.eq / ne (Arrow's kernel, the scalar made once) answer exactly what pandas' eq / ne do: on
    chunked, sliced and empty str columns, with missing values, any index, and on columns that are not str."""
    import pandas as pd

    from processor.vector import eq, ne

    rng = random.Random(seed)
    checked = 0
    for _ in range(300):
        column = _column(rng)
        values = [None if rng.random() < 0.15 else v for v in column.to_pylist()]
        arr = pa.chunked_array([pa.array(values[: len(values) // 2], type=pa.large_string()),
                                pa.array(values[len(values) // 2:], type=pa.large_string())])
        index = pd.Index([rng.randint(0, 99) for _ in values])
        series = [pd.Series(pd.array(arr, dtype="str"), index=index, name="c"),
                  pd.Series(pd.array(arr, dtype="str")).iloc[:0], pd.Series(values, dtype=object)]
        for s in series:
            for text in ("", "a", *(v for v in values[:2] if v)):
                for mine, theirs in ((eq(s, text), s.eq(text)), (ne(s, text), s.ne(text))):
                    assert mine.dtype == bool and mine.name == theirs.name and mine.index.equals(theirs.index)
                    assert mine.tolist() == theirs.astype(bool).tolist(), (s.tolist(), text)
                    checked += 1
    assert checked > 1000


@pytest.mark.parametrize("seed", range(3))
def test_codes_are_pandas_factorize(seed: int) -> None:
    """vector.codes numbers values as pandas' factorize does (first occurrence first, a missing value
    counted as a value), on str and object columns."""
    import pandas as pd

    rng = random.Random(seed)
    for _ in range(300):
        values = [rng.choice(["a", "b", "", "é", None, "a b"]) for _ in range(rng.randint(0, 12))]
        for series in (pd.Series(values, dtype="str"), pd.Series(values, dtype=object)):
            expected, _ = pd.factorize(series, use_na_sentinel=False)
            assert codes(series).tolist() == expected.tolist(), values


@pytest.mark.parametrize("seed", range(3))
def test_per_unique_map_is_a_map_of_every_value(seed: int) -> None:
    """vector.per_unique_map calls fn once per distinct value and gives what calling it on every row gives,
    missing values included, on any index."""
    import pandas as pd

    rng = random.Random(seed)
    for _ in range(300):
        values = [rng.choice(["student", "ext:x", "", "é", None]) for _ in range(rng.randint(0, 12))]
        index = pd.Index(rng.sample(range(100), len(values)))
        for series in (pd.Series(values, dtype="str", index=index), pd.Series(values, dtype=object, index=index)):
            calls = []

            def fn(v, calls=calls):
                calls.append(v)
                return "none" if v is None else v.upper() + "!"

            got = per_unique_map(series, fn)
            assert got.tolist() == ["none" if v is None else v.upper() + "!" for v in values], values
            assert got.index.equals(series.index) and str(got.dtype) == "str"
            assert len(calls) <= len(set(values)) + 1
