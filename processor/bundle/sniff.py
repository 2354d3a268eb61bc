"""A first look at a drop's files, to tell OneRoster 1.1, 1.2 and Clever apart before reading them."""

from __future__ import annotations

import csv
import io

from processor.bundle.formats import MANIFEST


def header(data: bytes | None) -> list[str] | None:
    """The header line's column names, as written (None when there is no file or no header)."""
    if data is None:
        return None
    head = data[:65536].decode("utf-8-sig", errors="replace").lstrip("\ufeff")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        head = data[:65536].decode("utf-16", errors="replace")
    line = head.replace("\r\n", "\n").replace("\r", "\n").split("\n", 1)[0]
    try:
        names = next(csv.reader([line]), [])
    except csv.Error:  # a header value over the field limit: reading the file reports it
        return None
    names = [n.strip() for n in names]
    return names if any(names) else None


def manifest_version(files: dict[str, bytes]) -> str | None:
    """oneroster.version from manifest.csv, if the drop has one that says."""
    data = files.get(MANIFEST)
    if data is None:
        return None
    text = data.decode("utf-8-sig", errors="replace")
    try:
        for row in csv.reader(io.StringIO(text, newline="")):
            if len(row) >= 2 and row[0].strip().lower() == "oneroster.version":
                return row[1].strip() or None
    except csv.Error:  # a value over the field limit: reading the manifest reports it
        return None
    return None
