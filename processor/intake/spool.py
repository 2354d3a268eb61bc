"""The spool: every drop, whatever its door, lands in spool/<tenant>/<run-id>/ and is recorded before
anything else happens, so a crash at any later point can resume it."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from processor.context import Context, UserError

log = logging.getLogger("rosterdrop.intake")


@dataclass(frozen=True)
class Drop:
    run_id: str
    tenant: str
    path: Path          # the spooled bundle (a .zip file or a folder of CSVs)
    sha256: str
    received_at: str
    source: str
    original_name: str


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():
        # A folder's identity is its files' names and bytes, in a stable order.
        for f in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
            h.update(f.name.encode() + b"\0")
            _hash_file(h, f)
    else:
        _hash_file(h, path)
    return h.hexdigest()


def _hash_file(h, path: Path) -> None:
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)


class OpenedDrop:
    """A drop opened once, by descriptor, and hashed from that descriptor.

    From a daemon door (an inbox someone else can write to, e.g. OpenSSH's chroot SFTP feeding the
    watched folder) the path is opened with O_NOFOLLOW: a symlink is refused, never followed, and
    take() checks that what it moves into the spool is the very file or folder hashed here, so a
    name swapped for a symlink after the last check leads nowhere.
    """

    def __init__(self, path: Path, nofollow: bool, tenant: str = "-") -> None:
        self.path = Path(path)
        self.fd = -1
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0)
        try:
            self.fd = os.open(self.path, flags)
        except FileNotFoundError:
            raise UserError(f"{path} does not exist") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP and nofollow:
                _refuse_symlink(self.path, tenant)
            raise UserError(f"cannot open {path}: {exc.strerror}") from None
        self.stat = os.fstat(self.fd)
        self.is_dir = stat.S_ISDIR(self.stat.st_mode)
        if not (self.is_dir or stat.S_ISREG(self.stat.st_mode)):
            self.close()
            raise UserError(f"{path} is neither a file nor a folder")
        h = hashlib.sha256()
        if self.is_dir:
            _hash_dir_fd(h, self.fd)
        else:
            _hash_fd(h, self.fd)
        self.sha256 = h.hexdigest()

    def same_as(self, path: Path) -> bool:
        try:
            st = os.lstat(path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == (self.stat.st_dev, self.stat.st_ino)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        self.close()


def open_drop(path: Path, nofollow: bool, tenant: str = "-") -> OpenedDrop:
    """Open and hash a drop once (see OpenedDrop); UserError for a symlink (with nofollow) or a non-file."""
    return OpenedDrop(path, nofollow, tenant)


def _refuse_symlink(path: Path, tenant: str) -> None:
    # Moved aside so that the door does not retry it every minute; inbox retention removes it later.
    aside = path.with_name(path.name + ".symlink-refused")
    try:
        os.rename(path, aside)
    except OSError:
        pass
    log.warning("tenant %s: %s in the inbox is a symbolic link: refused, never followed (kept as %s)",
                tenant, path.name, aside.name)
    raise UserError(f"{path.name} is a symbolic link; only regular files and folders are taken")


def _hash_fd(h, fd: int) -> None:
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        h.update(chunk)
        offset += len(chunk)


def _hash_dir_fd(h, dir_fd: int) -> None:
    # the same digest as sha256_of(folder): regular files by name, dot files left out
    for name in sorted(n for n in os.listdir(dir_fd) if not n.startswith(".")):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            continue  # a symlink (ELOOP) or gone: not part of the bundle (unpack refuses symlinks)
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                h.update(name.encode() + b"\0")
                _hash_fd(h, fd)
        finally:
            os.close(fd)


def _copy_fd(fd: int, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp")
    with open(tmp, "wb") as out:
        offset = 0
        while chunk := os.pread(fd, 1 << 20, offset):
            out.write(chunk)
            offset += len(chunk)
    os.replace(tmp, dest)


def _moved_the_wrong_thing(opened: OpenedDrop, dest: Path, tenant: str) -> None:
    """take() moved something else than the drop it hashed: the name was swapped in between."""
    st = os.lstat(dest)
    if stat.S_ISLNK(st.st_mode):
        dest.unlink()
        log.warning("tenant %s: %s was replaced by a symbolic link after it was checked; the link was "
                    "removed, never followed", tenant, opened.path.name)
    else:
        back = opened.path.with_name(f"{opened.path.name}.swapped-{secrets.token_hex(3)}")
        os.rename(dest, back)  # someone else's new upload under that name: back to the inbox
        log.warning("tenant %s: %s was replaced after it was checked; the new one was put back as %s",
                    tenant, opened.path.name, back.name)
    if opened.is_dir:
        raise UserError(f"{opened.path.name} changed while it was being taken; not taken")
    _copy_fd(opened.fd, dest)  # the bytes that were hashed, from the descriptor


def spool_dir(ctx: Context, tenant: str, run_id: str) -> Path:
    return ctx.path("spool", tenant, run_id)


def take(ctx: Context, source_path: Path | OpenedDrop, tenant: str, run_id: str, move: bool) -> Path:
    """Move (daemon doors) or copy (CLI) the bundle into the run's spool folder, atomically.

    Given an OpenedDrop, a move is checked: what lands in the spool is what was opened and hashed.
    """
    opened = source_path if isinstance(source_path, OpenedDrop) else None
    if opened is not None:
        source_path = opened.path
        if move:
            dest_dir = spool_dir(ctx, tenant, run_id)
            dest_dir.mkdir(parents=True, exist_ok=True)
            dest = dest_dir / (source_path.name or "bundle")
            try:
                os.replace(source_path, dest)
                if not opened.same_as(dest):
                    _moved_the_wrong_thing(opened, dest, tenant)
            finally:
                opened.close()
            return dest
    if not source_path.exists():
        raise UserError(f"{source_path} does not exist")
    if not (source_path.is_dir() or source_path.is_file()):
        raise UserError(f"{source_path} is neither a file nor a folder")
    dest_dir = spool_dir(ctx, tenant, run_id)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / (source_path.name or "bundle")
    if move:
        os.replace(source_path, dest)  # same filesystem: inbox and spool both live in the home
        return dest
    tmp = dest_dir / f".{dest.name}.tmp"
    if source_path.is_dir():
        shutil.copytree(source_path, tmp, symlinks=True, copy_function=_copy_entry)
    else:
        shutil.copyfile(source_path, tmp)
    os.replace(tmp, dest)
    return dest


def _copy_entry(src: str, dst: str) -> None:
    # A named pipe, socket or device in a folder bundle is copied as an empty named pipe (never opened: a
    # FIFO would wait for a writer), so the run refuses it by name exactly as it would the moved original.
    if not stat.S_ISREG(os.lstat(src).st_mode):
        os.mkfifo(dst, 0o600)
        return
    shutil.copy2(src, dst)


def archive(ctx: Context, drop_dir: Path, tenant: str, run_id: str) -> Path:
    """Keep the raw drop (retention is the daemon's job); a held run stays in the spool instead."""
    dest = ctx.path("archive", tenant, run_id)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if drop_dir.exists():
        os.replace(drop_dir, dest)
    return dest


def spooled_runs(ctx: Context) -> list[tuple[str, str, Path]]:
    """(tenant, run id, folder) of every run folder in the spool, oldest run id first.

    Run ids start with their UTC time, so this is arrival order. The daemon compares them with the runs
    table at start-up: a folder without a run is a drop whose recording a crash interrupted.
    """
    root = ctx.path("spool")
    out = []
    if not root.is_dir():
        return out
    for tenant_dir in root.iterdir():
        if not tenant_dir.is_dir() or tenant_dir.is_symlink():
            continue
        for run_dir in tenant_dir.iterdir():
            if run_dir.is_dir() and not run_dir.is_symlink() and not run_dir.name.startswith("."):
                out.append((tenant_dir.name, run_dir.name, run_dir))
    return sorted(out, key=lambda t: (t[1], t[0]))


def spooled_bundle(run_dir: Path) -> Path | None:
    """The bundle in a run's spool folder (None if there is none); an interrupted copy's temp file is removed.

    take() puts exactly one entry there; a `.<name>.tmp` is a CLI copy that never completed.
    """
    entries = []
    for entry in run_dir.iterdir():
        if entry.name.startswith(".") and entry.name.endswith(".tmp"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        elif not entry.is_symlink():
            entries.append(entry)
    return sorted(entries)[0] if entries else None
