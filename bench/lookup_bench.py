"""Id lookups as the stages make them: Arrow's string lookup (`pc.index_in`) beside `vector.keyed_positions`
(64-bit keys in 64 cache-sized tables, every match checked), for ids of several shapes and for references of
several sizes. Generated ids, nothing read from disk; min and median over --repeat, and the ratio keyed /
Arrow (below 1: keyed is faster). Every keyed result is compared with Arrow's (a mismatch is printed). Nothing
is asserted; the suite never runs this.

    .venv/bin/python bench/lookup_bench.py [--rows 2000000] [--repeat 5]

Shapes: each id looked up in all the ids but 1% (the diff's join of a table with its snapshot), ids unique.
Sizes: --rows probes looked up in N ids, of which a few are found (validation's references look up millions of
rows in a file's ids), and the same against a column of 120 distinct values (a school, left to Arrow).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))  # machine.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for processor
from machine import machine_line  # noqa: E402

from processor import vector  # noqa: E402


def timed(fn, repeat: int) -> tuple[float, float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), out


def arrow_positions(left: pa.Array, right: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.index_in(left, value_set=right, skip_nulls=True), -1).to_numpy(
        zero_copy_only=False).astype(np.int64)


def keyed(left: pa.Array, right: pa.Array) -> np.ndarray | None:
    return vector.keyed_positions(left, right)


def row(label: str, left: pa.Array, right: pa.Array, repeat: int) -> None:
    a_min, a_med, expected = timed(lambda: arrow_positions(left, right), repeat)
    k_min, k_med, got = timed(lambda: keyed(left, right), repeat)
    if got is None:
        print(f"| {label} | {a_min:.3f} / {a_med:.3f} | (left to Arrow) | |")
        return
    same = "" if np.array_equal(got, expected) else " **MISMATCH**"
    print(f"| {label} | {a_min:.3f} / {a_med:.3f} | {k_min:.3f} / {k_med:.3f} | {k_med / a_med:.2f}{same} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n, rng = args.rows, np.random.default_rng(0)
    print(machine_line(("numpy", "pyarrow")))
    print(f"command: bench/lookup_bench.py --rows {n} --repeat {args.repeat}\n")

    hexes = [uuid.UUID(bytes=rng.bytes(16)).hex for _ in range(n)]
    shapes = {
        "`enr-t%06d` (the generator's)": [f"enr-t{i:06d}" for i in range(n)],
        "`%07d`": [f"{i + 1_000_000}" for i in range(n)],
        "random hex, 16": [h[:16] for h in hexes],
        "random UUIDs (36)": [str(uuid.UUID(h)) for h in hexes],
    }
    print(f"| {n:,} ids looked up in {n:,} less 1% | Arrow s (min / median) | keyed s | keyed / Arrow |")
    print("|---|---|---|---|")
    for label, ids in shapes.items():
        right = pa.array(ids, type=pa.large_string())
        left = right.take(pa.array(np.sort(rng.choice(n, n - n // 100, replace=False))))
        row(label, left, right, args.repeat)

    pool = pa.array(shapes["`enr-t%06d` (the generator's)"], type=pa.large_string())
    print(f"\n| {n:,} probes looked up in N ids (a few found) | Arrow s (min / median) | keyed s | keyed / Arrow |")
    print("|---|---|---|---|")
    probes = pool.take(pa.array(rng.integers(0, n, n)))
    for size in (20_000, 150_000, vector.KEYED_MIN, 600_000, 900_000, min(n, 2_000_000)):
        right = pool.take(pa.array(rng.choice(n, min(size, n) // 100, replace=False)))
        right = pa.concat_arrays([right, pa.array([f"x{i}" for i in range(size - len(right))], type=pa.large_string())])
        row(f"N = {size:,}", probes, right, args.repeat)
    schools = pa.array([f"sch{i % 120:03d}" for i in range(n)], type=pa.large_string())
    row(f"N = {n:,} values of 120 distinct (a school)", probes.slice(0, n // 2), schools, args.repeat)


if __name__ == "__main__":
    main()
