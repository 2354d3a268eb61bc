"""What the issue's "skip unchanged lines before parsing" design would cost at the least, beside the read floor.

    .venv/bin/python bench/line_diff_floor.py OLD.zip NEW.zip [--repeat K]

OLD is the drop applied last night, NEW tonight's (with pipeline_bench.py's cache: d300000.zip and
d300000-nightly.zip). The design never parses a line it has seen: it splits each member into raw lines,
compares them with the lines of the last applied drop, and parses only the lines that are new. This script
times only that unavoidable part of a night, in one process: no validation, conversion, diff, holds, store
write or report, which the design still needs for the new lines (and for the ids of the lines gone).

Shared by both variants, per member of NEW:
  unzip        inflate it (the read floor pays this too)
  split        its line boundaries (numpy, on the bytes) and a zero-copy Arrow array of the lines
  quotes       the check that no quoted value spans lines (an odd count of '"' on a line), without which
               raw lines are not rows and the design must fall back to parsing the whole file
  parse        `pyarrow.csv.read_csv` of the header and the new lines only
exact: last night's lines themselves
  load         read back as they would be stored: an Arrow IPC file per member, zstd (written beforehand)
  compare      `is_in` both ways: tonight's lines last night did not have (to parse), and last night's lines
               tonight does not have (rows gone or changed)
  store        tonight's lines written for tomorrow
hashed: a 64-bit hash per line (line_hashes: numpy over the bytes, no Python object per line)
  hash, hload, hcompare, hstore: the same with one int64 per line instead of the line (a collision would
               miss a change; the script counts the lines the two variants class differently)
hashed, two members at a time: the hashed variant's per-member work in two threads, biggest member first,
as read_bundle reads files (inflating, numpy and Arrow release the GIL): the figure to set beside the read
floor, which is multi-threaded too (pyarrow's CSV reader).

The read floor (unzip + `pyarrow.csv.read_csv` of every member of NEW, as bench/floors.py) is measured in the
same process, alternating with the others. Prints min and median over --repeat, and the ratios to the read
floor. Nothing is asserted; nothing here is product code.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc

sys.path.insert(0, str(Path(__file__).resolve().parent))  # machine.py
from floors import read_floor  # noqa: E402
from machine import machine_line  # noqa: E402


def lines_of(data: bytes) -> tuple[pa.Array, np.ndarray, np.ndarray, bytes, bytes]:
    """(the lines after the header as one Arrow binary array, zero-copy; the starts and ends of those lines
    in the bytes; the header; the bytes, with a final newline)"""
    if data and not data.endswith(b"\n"):
        data += b"\n"  # every line with its newline, so the last line compares like the others
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], ends[:-1] + 1))
    header = data[: ends[0]] if len(ends) else data
    # The lines after the header, each with its '\n' (an Arrow binary array's offsets are contiguous).
    body_starts = starts[1:]
    offsets = np.append(body_starts, len(buf)).astype(np.int64)
    arr = pa.Array.from_buffers(pa.large_binary(), len(body_starts),
                                [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return arr, body_starts, ends[1:], header, data


def odd_quote_lines(data: bytes, starts: np.ndarray) -> int:
    at = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 34)
    if not len(at):
        return 0
    per_line = np.bincount(np.searchsorted(starts, at, side="right") - 1, minlength=len(starts))
    return int((per_line % 2).sum())


_P = np.uint64(0x100000001B3)
_M1, _M2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)
_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)


def line_hashes(data: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """A 64-bit hash per line, in numpy over the bytes (no Python object per line; numpy releases the GIL):
    the line's length, then each 8-byte word of it (the last one masked) folded in FNV-1a fashion, then
    murmur3's finaliser. Lines are visited longest first so that the rows still having a word j are a prefix."""
    buf = np.frombuffer(data + bytes(8), dtype=np.uint8)
    words = np.ndarray(shape=(len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))  # a word at every byte
    lens = (ends - starts).astype(np.int64)
    nw = ((lens + 7) // 8).astype(np.int16)
    order = np.argsort(-nw, kind="stable")  # radix sort of small ints
    s, n_sorted = starts[order].astype(np.int64), lens[order]
    have = np.bincount(nw, minlength=int(nw.max()) + 2 if len(nw) else 2)[::-1].cumsum()[::-1]  # rows with >= k words
    h = n_sorted.astype(np.uint64) * _M1
    with np.errstate(over="ignore"):
        for j in range(int(nw.max()) if len(nw) else 0):
            k = int(have[j + 1])
            w = words[s[:k] + 8 * j]
            w &= _MASKS[np.minimum(n_sorted[:k] - 8 * j, 8)]
            h[:k] ^= w
            h[:k] *= _P
        h ^= h >> np.uint64(33)
        h *= _M1
        h ^= h >> np.uint64(33)
        h *= _M2
        h ^= h >> np.uint64(33)
    out = np.empty_like(h)
    out[order] = h
    return out.view(np.int64)


def store_lines(path: Path, arr: pa.Array) -> None:
    table = pa.table({"line": arr})
    with ipc.new_file(path, table.schema, options=ipc.IpcWriteOptions(compression="zstd")) as w:
        w.write_table(table)


def load_lines(path: Path) -> pa.Array:
    with ipc.open_file(path) as r:
        return r.read_all().column("line").combine_chunks()


def not_in(values: pa.Array, others: pa.Array) -> pa.Array:
    return pc.invert(pc.is_in(values, value_set=others))


def parse_lines(header: bytes, lines: pa.Array) -> pa.Table:
    cols = header.decode().strip().split(",")
    return pacsv.read_csv(io.BytesIO(header + b"\n" + b"".join(lines.to_pylist())),
                          convert_options=pacsv.ConvertOptions(column_types={h: pa.string() for h in cols}))


COMMON = ("unzip", "split", "quotes", "parse")
EXACT = ("load", "compare", "store")        # last night's lines themselves, compared by Arrow's is_in
HASHED = ("hash", "hload", "hcompare", "hstore")  # a 64-bit hash per line (line_hashes), compared as int64


def design_floor(new: Path, stored: Path, out: Path) -> tuple[dict[str, float], dict]:
    part = dict.fromkeys(COMMON + EXACT + HASHED, 0.0)
    counts = {"lines": 0, "new": 0, "gone": 0, "odd_quote_lines": 0, "hashed_differs": 0}

    def timed(name, fn, *a):
        t = time.perf_counter()
        r = fn(*a)
        part[name] += time.perf_counter() - t
        return r

    with zipfile.ZipFile(new) as zf:
        for name in zf.namelist():
            if not name.endswith(".csv"):
                continue
            data = timed("unzip", zf.read, name)
            arr, starts, ends, header, data = timed("split", lines_of, data)
            counts["odd_quote_lines"] += timed("quotes", odd_quote_lines, data, starts)
            # exact: the lines themselves
            old = timed("load", load_lines, stored / f"{name}.arrow")
            fresh = timed("compare", not_in, arr, old)
            gone = timed("compare", not_in, old, arr)
            timed("store", store_lines, out / f"{name}.arrow", arr)
            # hashed: one int64 per line
            hashes = timed("hash", line_hashes, data, starts, ends)
            old_h = timed("hload", np.load, stored / f"{name}.npy")
            h_fresh = timed("hcompare", not_in, pa.array(hashes), pa.array(old_h))
            timed("hcompare", not_in, pa.array(old_h), pa.array(hashes))
            timed("hstore", np.save, out / f"{name}.npy", hashes)
            counts["hashed_differs"] += int(pc.sum(pc.xor(fresh, h_fresh)).as_py() or 0)
            changed = arr.filter(fresh)
            if len(changed):
                timed("parse", parse_lines, header, changed)
            counts["lines"] += len(arr)
            counts["new"] += int(pc.sum(fresh).as_py() or 0)
            counts["gone"] += int(pc.sum(gone).as_py() or 0)
    return part, counts


def hashed_two_at_a_time(new: Path, stored: Path, out: Path) -> float:
    """The hashed variant's whole per-member work, two members at a time, biggest first (as read_bundle reads
    files): wall seconds. Inflating, numpy and Arrow release the GIL, so the two cores share the work."""
    from concurrent.futures import ThreadPoolExecutor

    def one(name: str) -> int:
        with zipfile.ZipFile(new) as zf:  # one per thread: zlib inflates without the GIL
            data = zf.read(name)
        _, starts, ends, header, data = lines_of(data)
        odd_quote_lines(data, starts)
        hashes = line_hashes(data, starts, ends)
        old_h = np.load(stored / f"{name}.npy")
        fresh = not_in(pa.array(hashes), pa.array(old_h))
        not_in(pa.array(old_h), pa.array(hashes))
        np.save(out / f"{name}.npy", hashes)
        return int(pc.sum(fresh).as_py() or 0)

    t = time.perf_counter()
    with zipfile.ZipFile(new) as zf:
        infos = sorted((i for i in zf.infolist() if i.filename.endswith(".csv")), key=lambda i: -i.file_size)
    with ThreadPoolExecutor(max_workers=2) as pool:
        sum(pool.map(one, [i.filename for i in infos]))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(machine_line(("numpy", "pyarrow")))
    with tempfile.TemporaryDirectory() as tmp:
        stored, out = Path(tmp, "stored"), Path(tmp, "out")
        stored.mkdir()
        out.mkdir()
        with zipfile.ZipFile(args.old) as zf:
            for name in zf.namelist():
                if name.endswith(".csv"):
                    arr, starts, ends, _, data = lines_of(zf.read(name))
                    store_lines(stored / f"{name}.arrow", arr)
                    np.save(stored / f"{name}.npy", line_hashes(data, starts, ends))
        floors, parts, two = [], [], []
        for _ in range(args.repeat):
            floors.append(read_floor(args.new)["wall"])
            part, counts = design_floor(args.new, stored, out)
            parts.append(part)
            two.append(hashed_two_at_a_time(args.new, stored, out))
    print(f"lines {counts['lines']:,}, new tonight {counts['new']:,}, gone since last night {counts['gone']:,}, "
          f"lines with an odd count of quotes {counts['odd_quote_lines']:,}; lines the hashed compare "
          f"classed otherwise than the exact one: {counts['hashed_differs']:,}")
    floor = statistics.median(floors)
    print(f"read floor                 min {min(floors):.2f} s, median {floor:.2f} s")
    for label, own in (("exact (lines compared)", EXACT), ("hashed (a hash per line)", HASHED)):
        totals = [sum(p[k] for k in COMMON + own) for p in parts]
        print(f"design's floor, {label}: min {min(totals):.2f} s, median {statistics.median(totals):.2f} s "
              f"= {statistics.median(totals) / floor:.2f}x the read floor (median)")
    print(f"design's floor, hashed, two members at a time: min {min(two):.2f} s, median {statistics.median(two):.2f} s "
          f"= {statistics.median(two) / floor:.2f}x the read floor (median; without the parse of the new lines)")
    for k in COMMON + EXACT + HASHED:
        vals = [p[k] for p in parts]
        print(f"  {k:9s} min {min(vals):.3f} s, median {statistics.median(vals):.3f} s")


if __name__ == "__main__":
    main()
