"""The spool: every drop, whatever its door, lands in spool/<tenant>/<run-id>/ and is recorded before
anything else happens, so a crash at any later point can resume it."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from processor.context import Context, UserError


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


def spool_dir(ctx: Context, tenant: str, run_id: str) -> Path:
    return ctx.path("spool", tenant, run_id)


def take(ctx: Context, source_path: Path, tenant: str, run_id: str, move: bool) -> Path:
    """Move (daemon doors) or copy (CLI) the bundle into the run's spool folder, atomically."""
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
