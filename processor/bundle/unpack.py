"""Safe unpacking: a zip or a folder becomes {file name: bytes}. Never extractall; bad input → issues.

Python's zipfile does not stop compression bombs, path tricks or lying headers, so every member is
checked by name and read through a counting reader that stops at the caps.
"""

from __future__ import annotations

import os
import stat
import struct
import threading
import unicodedata
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from processor.bundle.formats import MANIFEST, SPECS, UNSUPPORTED_FILES
from processor.validate.issues import one_issue
from processor.vector import PARALLEL

# Clever's SFTP files (bundle/clever.py); enrollments.csv is shared with OneRoster. OneRoster 1.2's
# roles.csv and userProfiles.csv are among UNSUPPORTED_FILES: only bundle/oneroster12.py reads them.
CLEVER_FILES = ("schools.csv", "students.csv", "teachers.csv", "sections.csv", "staff.csv")
KNOWN_FILES = {s.filename.lower(): s.filename for s in SPECS.values()} | {
    n.lower(): n for n in (MANIFEST, *UNSUPPORTED_FILES, *CLEVER_FILES)}


@dataclass(frozen=True)
class Limits:
    """What one run may take in. The defaults are the `[limits]` section's (processor/config.py); a bundle
    over a size limit is rejected with bad_bundle, issues past their cap are kept as counts."""
    # A 300,000-student district's bundle expands to ~0.4 GB; peak memory is ~5x the expanded size.
    max_total_bytes: int = 1024**3
    max_ratio: float = 100.0
    max_members: int = 200
    max_rows_per_file: int = 10_000_000
    max_columns_per_file: int = 500
    max_field_chars: int = 128 * 1024  # the csv module's own default limit, applied on every read path
    max_issues_per_code_and_file: int = 1000


@dataclass
class Unpacked:
    files: dict[str, bytes] = field(default_factory=dict)  # canonical file name → raw bytes
    names: dict[str, str] = field(default_factory=dict)  # canonical file name → the name as sent
    issues: list[pd.DataFrame] = field(default_factory=list)
    fatal: bool = False
    limits: Limits = field(default_factory=Limits)  # the limits it was unpacked with; reading applies the rest
    ignored: list[str] = field(default_factory=list)  # CSV names skipped as not ours (bundle/foreign.py reads them)
    no_roster_files: bool = False  # rejected only for holding none of our file names

    def reject(self, message: str, file: str | None = None) -> Unpacked:
        self.issues.append(one_issue("bad_bundle", message, file=file))
        self.fatal = True
        return self

    def note_ignored(self, name: str, why: str) -> None:
        self.ignored.append(name)
        self.issues.append(one_issue("unsupported_file", f"{name} was ignored: {why}.", file=name))


def unpack(path: Path, limits: Limits | None = None) -> Unpacked:
    limits = limits or Limits()
    out = _unpack_folder(path, limits) if path.is_dir() else _unpack_zip(path, limits)
    out.limits = limits
    for frame in out.issues:
        frame["file"] = frame["file"].fillna(shown(path.name))  # a bundle-level problem names the upload itself
    return out


def _canonical(name: str) -> str | None:
    return KNOWN_FILES.get(name.lower())


def shown(name: str) -> str:
    """A member or file name as it may appear in an issue: every character that is not printable (control
    characters, U+0085, U+2028, bidi overrides...) written as an escape, so that no name from a bundle
    can break a line of a report, a log or a header."""
    if name.isprintable():
        return name
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in name)


def _bad_characters(name: str) -> str | None:
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return f"U+{ord(ch):04X}"
    return None


def _unpack_folder(path: Path, limits: Limits) -> Unpacked:
    out = Unpacked()
    total = 0
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        name = shown(entry.name)
        bad = _bad_characters(entry.name)
        if bad:
            return out.reject(f"the file name '{name}' contains the control character {bad}; rename the file.")
        st = entry.lstat()
        if not stat.S_ISREG(st.st_mode):
            if stat.S_ISLNK(st.st_mode):
                return out.reject(f"{name} is a symbolic link; send regular files only.", name)
            if stat.S_ISDIR(st.st_mode):
                continue
            # A named pipe, socket or device: opening a FIFO would wait for a writer forever.
            return out.reject(f"{name} is not a regular file (a named pipe, socket or device); send regular "
                              "files only.", name)
        canon = _canonical(entry.name)
        if canon is None:
            if entry.suffix.lower() == ".csv":
                out.note_ignored(name, "it is not a OneRoster file name")
            continue
        if canon in out.files:
            return out.reject(f"{name} appears twice (file names differ only in case).", name)
        total += st.st_size
        if total > limits.max_total_bytes:
            return out.reject(f"the files add up to more than {limits.max_total_bytes:,} bytes.")
        data = _read_regular(entry)
        if data is None:
            return out.reject(f"{name} changed into something other than a regular file while it was read; "
                              "send regular files only.", name)
        total += len(data) - st.st_size
        if total > limits.max_total_bytes:
            return out.reject(f"the files add up to more than {limits.max_total_bytes:,} bytes.")
        out.files[canon] = data
        out.names[canon] = entry.name
    if len(out.files) == 0:
        out.no_roster_files = True
        return out.reject("the folder holds no OneRoster CSV files (orgs.csv, users.csv, ...).")
    return out


def _read_regular(entry: Path) -> bytes | None:
    """The bytes of a regular file, opened once without following a link or waiting on a FIFO (the name
    may have been swapped since it was checked); None when it is not a regular file any more."""
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return f.read()


def _unpack_zip(path: Path, limits: Limits) -> Unpacked:
    out = Unpacked()
    upload = shown(path.name)
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        return out.reject(f"{upload} is not a zip file, or it is truncated or corrupt.")
    except UnicodeDecodeError:
        # zipfile decodes names flagged UTF-8 while it reads the central directory.
        return out.reject(f"{upload} has an entry whose name is marked as UTF-8 but is not valid UTF-8; "
                          "create the zip again (most zip tools do this right).")
    except OSError as exc:
        return out.reject(f"{upload} could not be read: {exc.strerror or exc}.")
    except (zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError, struct.error) as exc:
        return out.reject(f"{upload} is not a zip file that can be read ({_short(exc)}).")
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            return out.reject(f"the zip holds {len(infos)} entries; at most {limits.max_members} are accepted.")
        chosen: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            problem = _unsafe(info)
            if problem:
                return out.reject(f"zip entry '{shown(info.filename)}' {problem}; nothing was read.")
            if info.is_dir():
                continue
            pure = PurePosixPath(info.filename)
            if any(part.startswith(".") or part == "__MACOSX" for part in pure.parts):
                continue
            canon = _canonical(pure.name)
            if canon is None:
                if pure.suffix.lower() == ".csv":
                    out.note_ignored(shown(info.filename), "it is not a OneRoster file name")
                continue
            if canon in chosen:
                return out.reject(f"the zip holds {canon} twice ('{shown(chosen[canon].filename)}' and "
                                  f"'{shown(info.filename)}'); send one of each file.")
            if info.flag_bits & 0x1:
                return out.reject(f"{shown(info.filename)} is encrypted; send an unencrypted zip.", canon)
            chosen[canon] = info
        if not chosen:
            out.no_roster_files = True
            return out.reject("the zip holds no OneRoster CSV files (orgs.csv, users.csv, ...).")
        budget = _Budget(limits.max_total_bytes)
        # Members decompress two at a time, biggest first: zlib and crc32 release the GIL, so a 300k-student
        # bundle unpacks in about half the time on two cores. The budget is shared, so the caps hold as before.
        pool = ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="unzip")
        order = sorted(chosen, key=lambda c: -chosen[c].file_size)
        futures = {canon: pool.submit(_read_member, path, chosen[canon], budget, limits.max_ratio) for canon in order}
        try:
            for canon, info in chosen.items():
                try:
                    data = futures[canon].result()
                except _TooBig as exc:
                    return out.reject(str(exc), canon)
                except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError,
                        RuntimeError, ValueError) as exc:
                    # zlib.error is raised as zipfile.BadZipFile/ error subclasses; CRC failures as BadZipFile.
                    return out.reject(f"{shown(info.filename)} could not be decompressed ({_short(exc)}); "
                                      "the zip is corrupt or uses an unsupported method.", canon)
                except Exception as exc:  # noqa: BLE001 - zlib.error and friends: any decoder failure is bad input
                    return out.reject(f"{shown(info.filename)} could not be decompressed ({_short(exc)}).", canon)
                out.files[canon] = data
                out.names[canon] = PurePosixPath(info.filename).name
        finally:
            budget.stop = True  # a rejected bundle: the other members stop at their next chunk
            pool.shutdown(wait=True, cancel_futures=True)
    return out


class _Budget:
    """Bytes decompressed so far across all members, against the bundle's limit (shared by the threads)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used, self.stop = limit, 0, False
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self._lock:
            self.used += size
            return self.used <= self.limit and not self.stop


class _TooBig(Exception):
    pass


def _read_member(path: Path, info: zipfile.ZipInfo, budget: _Budget, max_ratio: float) -> bytes:
    # Headers can lie about sizes, so count what actually comes out of the decompressor. Each thread opens
    # the zip itself: a ZipFile's bookkeeping of open members is not thread-safe.
    cap = int(max(info.compress_size, 1024) * max_ratio)
    chunks, size = [], 0
    with zipfile.ZipFile(path) as zf, zf.open(info) as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            size += len(chunk)
            if not budget.take(len(chunk)):
                raise _TooBig(f"the bundle expands to more than the {budget.limit:,}-byte limit.")
            if size > cap:
                raise _TooBig(f"{shown(info.filename)} expands more than {max_ratio:g} times its compressed size; "
                              "it looks like a compression bomb.")
            chunks.append(chunk)
    return b"".join(chunks)


def _unsafe(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    bad = _bad_characters(name)
    if bad:
        # A line separator in a name would break a report line, a log line or an email header.
        return f"has the control character {bad} in its name"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "points outside the bundle ('..')"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    return None


def _short(exc: BaseException) -> str:
    text = shown(str(exc) or type(exc).__name__)
    return text[:120]
