"""CSV bytes → frames of strings. Read leniently (encodings, line endings, header spellings, ragged rows);
every leniency leaves an alert, and anything unreadable becomes an issue here, never an exception later.
"""

from __future__ import annotations

import csv
import io
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from processor.bundle.formats import (
    ALIASES,
    BOOL_VALUES,
    ENTITY_ORDER,
    LEGACY_STATUS,
    MANIFEST,
    REQUIRED_ENTITIES,
    SPECS,
    FileSpec,
)
from processor.bundle.provenance import Origin
from processor.bundle.unpack import Limits, Unpacked, shown, unpack
from processor.validate.issues import issue_frame, one_issue
from processor.vector import PARALLEL, arrow, chunks, edges_plain, isin, longest_bytes, text_bytes

LINE = "_line"  # the line the district sees in its file (header = 1)
_FIRST_LINE = re.compile(rb"[^\r\n]*")
MODES = ("bulk", "delta", "absent")


@dataclass
class BundleFile:
    entity: str
    name: str
    frame: pd.DataFrame  # canonical columns (all str), metadata.* columns, LINE
    metadata_columns: list[str]
    sent_columns: list[str]  # canonical names of the columns the file's header actually had
    origin: Origin | None = None  # set by the 1.2 and Clever readers: the district's own files and headers


@dataclass
class Bundle:
    format: str = "oneroster-1.1"
    manifest: dict[str, str] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)       # entity → bulk | delta | absent
    files: dict[str, BundleFile] = field(default_factory=dict)  # entity → file (present files only)
    issues: list[pd.DataFrame] = field(default_factory=list)
    fatal: bool = False
    limits: Limits = field(default_factory=Limits)  # what this run may collect (validate caps its issues)

    def frame(self, entity: str) -> pd.DataFrame | None:
        f = self.files.get(entity)
        return f.frame if f is not None else None


def read_bundle(path, limits: Limits | None = None) -> Bundle:
    raw = unpack(path, limits or Limits())
    bundle = Bundle(issues=list(raw.issues), fatal=raw.fatal, limits=raw.limits)
    if not raw.fatal or raw.no_roster_files:
        from processor.bundle.foreign import detect_foreign

        foreign = detect_foreign(raw, raw.ignored)
        if foreign:  # another format: one issue that says so, instead of errors about OneRoster's files
            bundle.issues, bundle.fatal = [one_issue("bad_bundle", foreign, file=shown(Path(path).name))], True
            return bundle
    if raw.fatal:
        return bundle
    # OneRoster 1.2 and Clever drops are translated into this same Bundle at the edge; the rest is shared.
    from processor.bundle import clever, oneroster12

    if clever.detect(raw):
        return clever.read(raw, bundle)
    if oneroster12.detect(raw):
        return oneroster12.read(raw, bundle)
    _read_manifest(raw, bundle)
    wanted = []
    for entity in ENTITY_ORDER:
        spec = SPECS[entity]
        if spec.filename not in raw.files:
            continue
        if bundle.modes.get(entity) == "absent":
            bundle.issues.append(one_issue(
                "unsupported_file", f"{spec.filename} was ignored: manifest.csv marks it absent.",
                file=spec.filename))
            continue
        wanted.append(entity)
    # Files are read two at a time, biggest first: while pyarrow parses one, the other is trimmed and
    # normalised (Arrow kernels, which release the GIL). Issues are kept in file order all the same.
    with ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="read") as pool:
        futures = {e: pool.submit(_read_one, SPECS[e], raw.files[SPECS[e].filename], raw.limits)
                   for e in sorted(wanted, key=lambda e: -len(raw.files[SPECS[e].filename]))}
        for entity in wanted:
            bf, file_issues = futures[entity].result()
            bundle.issues.extend(file_issues)
            if bf is None:
                bundle.fatal = True
                continue
            bundle.files[entity] = bf
    _check_files(raw, bundle)
    return bundle


def _read_one(spec: FileSpec, data: bytes, limits: Limits) -> tuple[BundleFile | None, list[pd.DataFrame]]:
    issues: list[pd.DataFrame] = []
    return read_file(spec, data, issues, limits), issues


def _read_manifest(raw: Unpacked, bundle: Bundle) -> None:
    data = raw.files.get(MANIFEST)
    present = {e for e in ENTITY_ORDER if SPECS[e].filename in raw.files}
    if data is None:
        # No manifest: bulk for the files present (DESIGN.md).
        bundle.modes = {e: ("bulk" if e in present else "absent") for e in ENTITY_ORDER}
        return
    text = _decode(data, MANIFEST, bundle.issues)
    if text is None:
        bundle.fatal = True
        return
    props: dict[str, str] = {}
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        _field_limit(raw.limits)
        for row in reader:
            if len(row) < 2 or row[0].strip().lower() in ("propertyname", ""):
                continue
            props[row[0].strip()] = row[1].strip()
    except csv.Error as exc:
        bundle.issues.append(_csv_problem(MANIFEST, reader.line_num, exc, raw.limits))
        bundle.fatal = True
        return
    bundle.manifest = props
    lower = {k.lower(): v for k, v in props.items()}
    version = lower.get("oneroster.version", "1.1")
    if version.startswith("1.2"):
        bundle.format = "oneroster-1.2"
    for entity in ENTITY_ORDER:
        key = f"file.{entity}".lower()
        value = lower.get(key, "").lower()
        if value in MODES:
            mode = value
        else:
            mode = "bulk" if entity in present else "absent"
            if key in lower:
                bundle.issues.append(one_issue(
                    "normalized_value",
                    f"manifest.csv gives {entity} the value {lower[key]!r}; read as {mode!r} since the file is "
                    f"{'present' if entity in present else 'not in the bundle'}. Use bulk, delta or absent.",
                    file=MANIFEST, field=f"file.{entity}", value=lower[key]))
        bundle.modes[entity] = mode


def _check_files(raw: Unpacked, bundle: Bundle) -> None:
    for entity in ENTITY_ORDER:
        spec = SPECS[entity]
        mode = bundle.modes.get(entity, "absent")
        named = mode in ("bulk", "delta")
        in_bundle = spec.filename in raw.files
        if in_bundle:
            continue
        if named and MANIFEST in raw.files:
            bundle.issues.append(one_issue(
                "missing_file", f"manifest.csv marks {spec.filename} as {mode}, but the bundle does not "
                f"contain it. Include the file, or mark it absent in manifest.csv.", file=spec.filename))
            bundle.fatal = True
        elif entity in REQUIRED_ENTITIES and mode != "absent":
            bundle.issues.append(one_issue(
                "missing_file", f"{spec.filename} is required and is not in the bundle. Include it in the "
                "export, or mark it absent in manifest.csv.", file=spec.filename))
            bundle.fatal = True
        elif entity in REQUIRED_ENTITIES and MANIFEST not in raw.files:
            bundle.issues.append(one_issue(
                "missing_file", f"{spec.filename} is required and is not in the bundle.", file=spec.filename))
            bundle.fatal = True
    read = {SPECS[e].filename for e in ENTITY_ORDER} | {MANIFEST}
    for name in raw.files:
        if name not in read:  # gradebook files, and 1.2 or Clever files in a 1.1 bundle
            bundle.issues.append(one_issue(
                "unsupported_file", f"{name} was ignored: Rosterdrop does not import this file.", file=name))


def _decode(data: bytes, name: str, issues: list[pd.DataFrame]) -> str | None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            issues.append(one_issue("bad_bundle", f"{name} starts like UTF-16 but cannot be decoded; "
                                    "export it as UTF-8.", file=name))
            return None
        if "\x00" in text:
            issues.append(_nul_problem(name, text.count("\n", 0, text.index("\x00")) + 1))
            return None
        issues.append(one_issue("encoding", f"{name} is UTF-16; it was read, but export UTF-8.", file=name))
        return text
    if b"\x00" in data[:65536]:
        issues.append(one_issue("bad_bundle", f"{name} is not a text file (it contains NUL bytes); export "
                                "it as a UTF-8 CSV.", file=name))
        return None
    nul = data.find(b"\x00")
    if nul >= 0:
        issues.append(_nul_problem(name, data.count(b"\n", 0, nul) + 1))
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        issues.append(one_issue(
            "encoding", f"{name} is not valid UTF-8 (first bad byte on line {line}); it was read as "
            "Windows-1252. Check accented names, and export the files as UTF-8.", file=name, line=line))
        return text


def read_file(spec: FileSpec, data: bytes, issues: list[pd.DataFrame], limits: Limits | None = None
              ) -> BundleFile | None:
    """Read one CSV; None when the file cannot be used at all (issues say why)."""
    name = spec.filename
    parsed = parse_csv(data, name, issues, limits)
    if parsed is None:
        return None
    header, frame, line_issues = parsed
    issues.extend(line_issues)
    if header is None:
        issues.append(one_issue("bad_bundle", f"{name} is empty: it has no header line.", file=name))
        return None
    columns, meta_cols, keep = _map_header(spec, header, issues)
    frame = frame.iloc[:, [*keep, frame.columns.get_loc(LINE)]]
    frame.columns = [*(columns[i] for i in keep), LINE]
    missing = [c for c in spec.required_columns if c not in frame.columns]
    if missing:
        for c in missing:
            issues.append(one_issue("missing_column", f"{name} has no {c!r} column in its header line. Add "
                                    "the column to the export.", file=name, line=1, field=c))
        return None
    sent = [c for c in frame.columns if c != LINE]
    for c in spec.columns:
        if c not in frame.columns:
            frame[c] = ""
    frame = _clean_values(spec, frame, issues)
    return BundleFile(spec.entity, name, frame, meta_cols, sent)


def parse_csv(data: bytes, name: str, issues: list[pd.DataFrame], limits: Limits | None = None
              ) -> tuple[list[str] | None, pd.DataFrame, list[pd.DataFrame]] | None:
    """One CSV file's bytes as (header, frame of c0..cN + LINE, line issues); None when the file is not
    text at all (issues say why). Plain UTF-8, the common case, goes to pyarrow as the bytes it came in:
    pyarrow checks the UTF-8 itself, so 100s of MB are never decoded into a Python str unless a slow path
    needs the text. Anything else (UTF-16, invalid UTF-8 read as Windows-1252) is decoded first by
    _decode, which leaves its `encoding` alert. A file over a limit (columns, rows, the length of one
    value) or with a NUL byte anywhere is unusable too: PostgreSQL cannot store a NUL, SQLite would."""
    limits = limits or Limits()
    try:
        if not data.startswith((b"\xff\xfe", b"\xfe\xff")) and b"\x00" not in data:
            raw = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
            parsed = _parse(raw, name, lambda: raw.decode("utf-8"), limits)
            if parsed is not None:
                return parsed
        text = _decode(data, name, issues)  # not UTF-8 after all: decoded with its alert
        if text is None:
            return None
        return _parse(text.encode("utf-8"), name, lambda: text, limits)
    except _Unusable as exc:
        issues.append(exc.issue)
        return None


class _Unusable(Exception):
    """A file read stops here: exc.issue (bad_bundle, naming the file and line) says why."""

    def __init__(self, issue: pd.DataFrame) -> None:
        super().__init__()
        self.issue = issue


def _nul_problem(name: str, line: int) -> pd.DataFrame:
    return one_issue("bad_bundle", f"{name} has a NUL byte on line {line}; the file is damaged or not a text "
                     "file. Export it again as a UTF-8 CSV.", file=name, line=line)


def _csv_problem(name: str, line: int, exc: csv.Error, limits: Limits) -> pd.DataFrame:
    if "field limit" in str(exc):
        return _long_value(name, line, limits)
    return one_issue("bad_bundle", f"{name} cannot be read as CSV at line {line} ({str(exc)[:100]}). Export it "
                     "again as a plain CSV file.", file=name, line=line)


def _long_value(name: str, line: int, limits: Limits) -> pd.DataFrame:
    return one_issue("bad_bundle", f"{name} line {line} has a value longer than {limits.max_field_chars:,} "
                     "characters, which is usually a quote that is never closed (the rest of the file then "
                     "reads as one value). Fix the quoting in the export and send it again.", file=name, line=line)


def _field_limit(limits: Limits) -> None:
    # The csv module's limit is process-wide; every read of this process uses the same configured value.
    if csv.field_size_limit() != limits.max_field_chars:
        csv.field_size_limit(limits.max_field_chars)


def _parse(raw: bytes, name: str, text, limits: Limits
           ) -> tuple[list[str] | None, pd.DataFrame, list[pd.DataFrame]] | None:
    """raw: UTF-8 bytes (maybe invalid); text(): the whole file as str, for the exact slow path only.
    None when raw is not valid UTF-8; _Unusable when the file is over a limit."""
    _field_limit(limits)
    try:
        first = _FIRST_LINE.match(raw).group(0).decode("utf-8")
        header = next(csv.reader([first]))
    except UnicodeDecodeError:
        return None
    except StopIteration:
        return None, pd.DataFrame(), []
    except csv.Error as exc:
        raise _Unusable(_csv_problem(name, 1, exc, limits)) from None
    header = [h.strip() for h in header]
    if not any(header):
        return None, pd.DataFrame(), []
    if len(header) > limits.max_columns_per_file:
        # Refused before parsing: each column costs memory and a pass of every check, whatever it holds.
        raise _Unusable(one_issue(
            "bad_bundle", f"{name} has {len(header):,} columns; at most {limits.max_columns_per_file:,} are "
            "accepted. Leave unused columns out of the export.", file=name, line=1))
    names = [f"c{i}" for i in range(len(header))]

    def slow() -> tuple[list[str], pd.DataFrame, list[pd.DataFrame]] | None:
        try:
            whole = text()
        except UnicodeDecodeError:
            return None
        frame, issues = _parse_python(whole, header, name, limits)
        _check_rows(frame, name, limits)
        return header, frame, issues

    try:
        # large_string: pandas' str dtype wraps it as it is (a plain string column is copied into one).
        table = pacsv.read_csv(
            io.BytesIO(raw),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 24),
            # No invalid_row_handler: a ragged row raises here and the exact path reads the file (a handler
            # would also be handed the row as str, which fails inside pyarrow on invalid UTF-8).
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.large_string() for n in names},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowException):  # ragged rows, or invalid UTF-8: slow() then says None
        return slow()
    n = table.num_rows
    # Line numbers: data row i sits on line i + 2 unless values span lines; then count exactly.
    newlines = raw.count(b"\n") or raw.count(b"\r")
    if newlines > n + 1:
        # Either blank lines or quoted newlines: let the csv module count physical lines.
        del table
        return slow()
    _check_lengths(table, name, limits)
    frame = table.to_pandas()
    del table
    _check_rows(frame, name, limits)
    frame[LINE] = pd.RangeIndex(2, n + 2)
    return header, frame, []


def _check_lengths(table: pa.Table, name: str, limits: Limits) -> None:
    """The exact path's csv module refuses a value over the field limit; the fast path does the same.
    A value has at most as many characters as bytes: a column whose longest value in bytes (read off its
    offsets, no pass over the text) is within the limit needs no count of its characters."""
    for column in table.columns:
        if longest_bytes(column) <= limits.max_field_chars:
            continue
        lengths = pc.utf8_length(column)
        longest = pc.max(lengths).as_py()
        if longest is not None and longest > limits.max_field_chars:
            row = pc.index(pc.greater(lengths, limits.max_field_chars), True).as_py()
            raise _Unusable(_long_value(name, row + 2, limits))


def _check_rows(frame: pd.DataFrame, name: str, limits: Limits) -> None:
    if len(frame) > limits.max_rows_per_file:
        raise _Unusable(one_issue(
            "bad_bundle", f"{name} has more than {limits.max_rows_per_file:,} rows, more than one file may hold. "
            "Check the export; ask us to raise the limit if your district is that large.", file=name))


def _parse_python(text: str, header: list[str], name: str, limits: Limits
                  ) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """The slow, exact path: ragged rows, blank lines, values spanning lines."""
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader, None)
    width = len(header)
    rows, lines, bad_lines, bad_text, trimmed = [], [], [], [], 0
    first_trimmed: tuple[int, list[str]] | None = None
    for line, row in _rows(reader, name, limits):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) > width:
            if any(v.strip() for v in row[width:]):
                bad_lines.append(line)
                bad_text.append(",".join(row)[:200])
                continue
            row = row[:width]
            trimmed += 1
            if first_trimmed is None:
                first_trimmed = (line, row)
        elif len(row) < width:
            bad_lines.append(line)
            bad_text.append(",".join(row)[:200])
            continue
        rows.append(row)
        lines.append(line)
        if len(rows) > limits.max_rows_per_file:
            break  # _check_rows refuses the file; no point reading the rest into Python lists
    frame = pd.DataFrame(rows, columns=[f"c{i}" for i in range(width)], dtype="str")
    frame[LINE] = pd.array(lines, dtype="int64") if lines else pd.array([], dtype="int64")
    issues = []
    if trimmed:
        line, row = first_trimmed
        ids = [i for i, h in enumerate(header) if h.strip().lstrip("\ufeff").lower() == "sourcedid"]
        sid = row[ids[0]] if ids and row[ids[0]].strip() else None
        more = f" and {trimmed - 1:,} more" if trimmed > 1 else ""
        issues.append(one_issue("normalized_value", f"{trimmed:,} row(s) of {name} end with extra empty "
                                f"fields, first on line {line}" + (f" (sourcedId {sid})" if sid else "") + more
                                + "; the empty fields were ignored.", file=name, line=line, sourced_id=sid))
    if bad_lines:
        issues.append(issue_frame(
            "malformed_row", name, bad_lines, None, None, bad_text,
            [f"This line of {name} does not have the header's {width} fields; it was not imported. "
             "Quote values that contain commas." for _ in bad_lines]))
    return frame, issues


def _rows(reader, name: str, limits: Limits):
    """(line where the row begins, row) of reader's rows; a csv error (a value over the field limit) stops
    the file, naming that line."""
    start = reader.line_num + 1
    try:
        for row in reader:
            yield start, row
            start = reader.line_num + 1
    except csv.Error as exc:
        raise _Unusable(_csv_problem(name, start, exc, limits)) from None


def _map_header(spec: FileSpec, header: list[str], issues: list[pd.DataFrame]
                ) -> tuple[list[str], list[str], list[int]]:
    by_lower = {c.lower(): c for c in spec.columns}
    columns: list[str] = []
    meta: list[str] = []
    keep: list[int] = []
    seen: set[str] = set()
    for i, h in enumerate(header):
        canon, note = _canonical_column(h, by_lower, spec)
        if canon is None or canon in seen:
            columns.append("")
            if h:
                why = "it is a second column of that name" if canon in seen else \
                    "it is neither a OneRoster column nor a metadata.* extension"
                issues.append(one_issue(
                    "unknown_column", f"Column {h!r} of {spec.filename} was ignored: {why}. Rename it to its "
                    "OneRoster name, or prefix it with 'metadata.' to keep it.",
                    file=spec.filename, line=1, field=h))
            continue
        if note:
            issues.append(one_issue("renamed_column", f"Column {h!r} of {spec.filename} was read as {canon!r}. "
                                    f"Use the exact OneRoster header {canon!r}.", file=spec.filename, line=1,
                                    field=h))
        seen.add(canon)
        columns.append(canon)
        keep.append(i)
        if canon.startswith("metadata."):
            meta.append(canon)
    return columns, meta, keep


def _canonical_column(h: str, by_lower: dict[str, str], spec: FileSpec) -> tuple[str | None, bool]:
    if h in spec.columns:
        return h, False
    low = h.lower()
    if low.startswith("metadata."):
        return "metadata." + h[len("metadata."):], not h.startswith("metadata.")
    if low in by_lower:
        return by_lower[low], True
    alias = ALIASES.get(low) or ALIASES.get(low.replace(" ", ""))
    if alias and alias in spec.columns:
        return alias, True
    if low.startswith(("ext_", "ext.", "ext:")):
        return "metadata." + h, True
    return None, False


def _clean_values(spec: FileSpec, frame: pd.DataFrame, issues: list[pd.DataFrame]) -> pd.DataFrame:
    for c in frame.columns:
        if c == LINE:
            continue
        # Trim in Arrow, chunk by chunk as parsed, and replace the column only where something was trimmed
        # (most exports are clean): trimming only shortens, so equal byte totals mean nothing changed.
        values = chunks(frame[c])
        if edges_plain(values):  # no value begins or ends with a space or a non-ASCII character
            continue
        trimmed = pc.utf8_trim_whitespace(values)
        if text_bytes(trimmed) != text_bytes(values):
            frame[c] = pd.Series(trimmed, index=frame.index, dtype="str")
    for f in spec.fields:
        if f.kind == "enum":
            frame[f.name] = _normalize_enum(spec, f.name, f.enum, frame[f.name], issues, frame)
        elif f.kind == "bool":
            frame[f.name] = _normalize_bool(spec, f.name, frame[f.name], issues, frame)
        elif f.many:
            col = frame[f.name]
            spaced = col.str.contains(", ", regex=False)
            if spaced.any():
                frame[f.name] = col.str.replace(r"\s*,\s*", ",", regex=True)
    return frame


def _normalize_enum(spec: FileSpec, name: str, allowed: tuple[str, ...], col: pd.Series,
                    issues: list[pd.DataFrame], frame: pd.DataFrame | None = None) -> pd.Series:
    lookup = {a.lower(): a for a in allowed}
    if name == "status":
        lookup |= LEGACY_STATUS
    uniques = [u for u in pc.unique(arrow(col)).to_pylist() if u is not None]  # Arrow's hash: ~5x pandas'
    mapping = {}
    for u in uniques:  # a handful of distinct values, not rows
        if u == "" or u in allowed:
            continue
        canon = lookup.get(u.lower())
        if canon is not None:
            mapping[u] = canon
    return _apply_mapping(spec, name, col, mapping, "in their OneRoster spelling", issues, frame)


def _normalize_bool(spec: FileSpec, name: str, col: pd.Series, issues: list[pd.DataFrame],
                    frame: pd.DataFrame | None = None) -> pd.Series:
    uniques = [u for u in pc.unique(arrow(col)).to_pylist() if u is not None]  # Arrow's hash: ~5x pandas'
    mapping = {u: BOOL_VALUES[u.lower()] for u in uniques
               if u not in ("", "true", "false") and u.lower() in BOOL_VALUES}
    return _apply_mapping(spec, name, col, mapping, "as booleans", issues, frame)


def _apply_mapping(spec: FileSpec, name: str, col: pd.Series, mapping: dict[str, str], how: str,
                   issues: list[pd.DataFrame], frame: pd.DataFrame | None = None) -> pd.Series:
    """Replace the mapped spellings, with one normalized_value alert per file and field, which names the
    first row it changed (line, sourcedId) and how many more: `inactive` → `tobedeleted` deactivates people,
    and an admin must be able to find them."""
    if not mapping:
        return col
    changed = isin(col, list(mapping))
    n = int(changed.sum())
    examples = ", ".join(f"{k!r} → {v!r}" for k, v in list(mapping.items())[:5])
    line = sid = None
    where = ""
    if frame is not None and n:
        first = int(changed.to_numpy().argmax())  # the first changed row
        line = int(frame[LINE].iloc[first]) if LINE in frame.columns else None
        if "sourcedId" in frame.columns and frame["sourcedId"].iloc[first]:
            sid = str(frame["sourcedId"].iloc[first])
        if line is not None:
            where = f", first on line {line}" + (f" (sourcedId {sid})" if sid else "")
            where += f" and {n - 1:,} more" if n > 1 else ""
    deactivates = " Rows read as 'tobedeleted' are deactivated." if name == "status" and "tobedeleted" in \
        mapping.values() else ""
    issues.append(one_issue(
        "normalized_value", f"{n:,} value(s) of {name} in {spec.filename} were read {how} "
        f"({examples}){where}.{deactivates}", file=spec.filename, line=line, sourced_id=sid, field=name))
    return col.replace(mapping)
