"""Safe unpacking: a zip or a folder becomes {file name: bytes}. Never extractall; bad input → issues.

Python's zipfile does not stop compression bombs, path tricks or lying headers, so every member is
checked by name and read through a counting reader that stops at the caps.
"""

from __future__ import annotations

import stat
import threading
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
    max_total_bytes: int = 4 * 1024**3
    max_ratio: float = 100.0
    max_members: int = 200


@dataclass
class Unpacked:
    files: dict[str, bytes] = field(default_factory=dict)  # canonical file name → raw bytes
    names: dict[str, str] = field(default_factory=dict)  # canonical file name → the name as sent
    issues: list[pd.DataFrame] = field(default_factory=list)
    fatal: bool = False
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
    for frame in out.issues:
        frame["file"] = frame["file"].fillna(path.name)  # a bundle-level problem names the upload itself
    return out


def _canonical(name: str) -> str | None:
    return KNOWN_FILES.get(name.lower())


def _unpack_folder(path: Path, limits: Limits) -> Unpacked:
    out = Unpacked()
    total = 0
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        st = entry.lstat()
        if not stat.S_ISREG(st.st_mode):
            if stat.S_ISLNK(st.st_mode):
                return out.reject(f"{entry.name} is a symbolic link; send regular files only.", entry.name)
            continue
        canon = _canonical(entry.name)
        if canon is None:
            if entry.suffix.lower() == ".csv":
                out.note_ignored(entry.name, "it is not a OneRoster file name")
            continue
        if canon in out.files:
            return out.reject(f"{entry.name} appears twice (file names differ only in case).", entry.name)
        total += st.st_size
        if total > limits.max_total_bytes:
            return out.reject(f"the files add up to more than {limits.max_total_bytes:,} bytes.")
        out.files[canon] = entry.read_bytes()
        out.names[canon] = entry.name
    if len(out.files) == 0:
        out.no_roster_files = True
        return out.reject("the folder holds no OneRoster CSV files (orgs.csv, users.csv, ...).")
    return out


def _unpack_zip(path: Path, limits: Limits) -> Unpacked:
    out = Unpacked()
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        return out.reject(f"{path.name} is not a zip file, or it is truncated or corrupt.")
    except OSError as exc:
        return out.reject(f"{path.name} could not be read: {exc.strerror or exc}.")
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            return out.reject(f"the zip holds {len(infos)} entries; at most {limits.max_members} are accepted.")
        chosen: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            problem = _unsafe(info)
            if problem:
                return out.reject(f"zip entry {info.filename!r} {problem}; nothing was read.")
            if info.is_dir():
                continue
            pure = PurePosixPath(info.filename)
            if any(part.startswith(".") or part == "__MACOSX" for part in pure.parts):
                continue
            canon = _canonical(pure.name)
            if canon is None:
                if pure.suffix.lower() == ".csv":
                    out.note_ignored(info.filename, "it is not a OneRoster file name")
                continue
            if canon in chosen:
                return out.reject(f"the zip holds {canon} twice ({chosen[canon].filename!r} and "
                                  f"{info.filename!r}); send one of each file.")
            if info.flag_bits & 0x1:
                return out.reject(f"{info.filename} is encrypted; send an unencrypted zip.", canon)
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
                    return out.reject(f"{info.filename} could not be decompressed ({_short(exc)}); "
                                      "the zip is corrupt or uses an unsupported method.", canon)
                except Exception as exc:  # noqa: BLE001 - zlib.error and friends: any decoder failure is bad input
                    return out.reject(f"{info.filename} could not be decompressed ({_short(exc)}).", canon)
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
                raise _TooBig(f"{info.filename} expands more than {max_ratio:g} times its compressed size; "
                              "it looks like a compression bomb.")
            chunks.append(chunk)
    return b"".join(chunks)


def _unsafe(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "points outside the bundle ('..')"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    return None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:120]
