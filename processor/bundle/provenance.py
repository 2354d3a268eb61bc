"""Where a row and a column of a bundle frame came from, in the district's own terms.

The OneRoster 1.1 reader builds one frame per file, so a row's file is its BundleFile's name and its
columns are OneRoster's. The OneRoster 1.2 and Clever readers (bundle/oneroster12.py, bundle/clever.py)
translate at the edge: one frame may come from several files (Clever students.csv + teachers.csv +
staff.csv → users) or from other headers (Clever `Student_id` → sourcedId). They add a FILE column
(and PART, where one file feeds rows of two kinds, e.g. students and their contacts) and an Origin with
the district's headers. Validators ask here, so that every issue names a file, line and column the
district can find. All helpers are vectorised; with no Origin they cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from processor.bundle.formats import SPECS

FILE = "_file"  # the district's file a row came from (present only in frames built from several files)
PART = "_part"  # which kind of row of that file ("" for the file's own rows), e.g. "contact"


@dataclass
class Origin:
    # source (a file name, or "file#part") → OneRoster column → the header the district wrote
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    # source → columns OneRoster requires that this format does not (left blank, they are not an error)
    optional: dict[str, frozenset[str]] = field(default_factory=dict)
    # entity → the district's file(s) holding it, for messages that name the file a reference points at
    entity_files: dict[str, str] = field(default_factory=dict)
    # source → entity → that file, where it depends on the row (Clever: Student_id → students.csv)
    ref_files: dict[str, dict[str, str]] = field(default_factory=dict)
    # enum columns whose 'ext:' values are valid (OneRoster 1.2 extensions; the reader alerts on them)
    ext_columns: frozenset[str] = frozenset()


def _sources(bf, index=None) -> pd.Series | None:
    """Per row (of index, or all rows), its source key; None when the whole frame is one source."""
    df = bf.frame
    if FILE not in df.columns:
        return None
    files = df[FILE] if index is None else df.loc[index, FILE]
    if PART not in df.columns:
        return files
    parts = df[PART] if index is None else df.loc[index, PART]
    return files.where(parts.eq(""), files + "#" + parts)


def file_of(bf, index) -> str | np.ndarray:
    """The district's file of each row of index (a scalar when the frame is one file)."""
    if FILE not in bf.frame.columns:
        return bf.name
    return bf.frame.loc[index, FILE].to_numpy(dtype=object)


def files_of(bf) -> list[str]:
    if FILE not in bf.frame.columns:
        return [bf.name]
    return [str(f) for f in pd.unique(bf.frame[FILE])]


def field_of(bf, name: str, index) -> str | np.ndarray:
    """The header the district wrote for OneRoster column `name`, for each row of index."""
    origin = getattr(bf, "origin", None)
    if origin is None or not origin.headers:
        return name
    keys = _sources(bf, index)
    if keys is None:
        return origin.headers.get(bf.name, {}).get(name, name)
    labels = {k: origin.headers.get(k, {}).get(name, name) for k in pd.unique(keys)}
    return keys.map(labels).to_numpy(dtype=object)


def label_of(bf, name: str) -> str:
    """One header for `name` across the whole frame (its OneRoster name when the sources disagree)."""
    labels = field_of(bf, name, bf.frame.index)
    if isinstance(labels, str):
        return labels
    unique = set(labels)
    return unique.pop() if len(unique) == 1 else name


def relabel(bf, name: str, index, message: str):
    """A message that starts with (and says 'Fill in') OneRoster's `name`, in the district's header."""
    labels = field_of(bf, name, index)
    if isinstance(labels, str):
        return _swap(message, name, labels)
    by_label = {lab: _swap(message, name, lab) for lab in set(labels)}
    return np.array([by_label[lab] for lab in labels], dtype=object) if len(by_label) > 1 else \
        next(iter(by_label.values()), message)


def _swap(message: str, name: str, label: str) -> str:
    if label == name:
        return message
    if message.startswith(name):
        message = label + message[len(name):]
    return message.replace(f"Fill in {name} ", f"Fill in {label} ")


def named(bf, name: str, index) -> pd.Series:
    """field_of as a string Series aligned with index, for building vector messages."""
    return pd.Series(field_of(bf, name, index), index=index, dtype="str")


def spec_required(bf, f) -> pd.Series:
    """Rows where the OneRoster spec requires f (sourcedId: always), less what the format leaves optional."""
    df = bf.frame
    if f.name == "sourcedId":
        return pd.Series(True, index=df.index)
    must = pd.Series(f.required, index=df.index)
    origin = getattr(bf, "origin", None)
    if not f.required or origin is None or not any(f.name in cols for cols in origin.optional.values()):
        return must
    keys = _sources(bf)
    if keys is None:
        return must & (f.name not in origin.optional.get(bf.name, frozenset()))
    optional = {k: f.name in origin.optional.get(k, frozenset()) for k in pd.unique(keys)}
    return must & ~keys.map(optional).astype(bool)


def accepts_ext(bf, name: str) -> bool:
    origin = getattr(bf, "origin", None)
    return origin is not None and name in origin.ext_columns


def ref_file(bf, entity: str) -> str:
    """The district's file for a referenced entity (orgs.csv, or Clever's schools.csv)."""
    origin = getattr(bf, "origin", None)
    if origin is not None and entity in origin.entity_files:
        return origin.entity_files[entity]
    return SPECS[entity].filename


def ref_files(bf, entity: str, index) -> pd.Series:
    """ref_file for each row of index, as a string Series (one value unless the format says per row)."""
    default = ref_file(bf, entity)
    origin = getattr(bf, "origin", None)
    if origin is None or not origin.ref_files:
        return pd.Series(default, index=index, dtype="str")
    keys = _sources(bf, index)
    if keys is None:
        return pd.Series(origin.ref_files.get(bf.name, {}).get(entity, default), index=index, dtype="str")
    by_key = {k: origin.ref_files.get(k, {}).get(entity, default) for k in pd.unique(keys)}
    return pd.Series(keys.map(by_key).to_numpy(), index=index, dtype="str")
