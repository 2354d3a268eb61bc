"""Drop bytes in the store: with the procrastinate backend a worker on any host processes a drop from the
store alone, so the doors write each drop's bytes there, in the transaction that records the run.

Kept as 1 MiB rows of `drop_blob_chunks` under one `drop_blobs` row per run, on both engines. Chosen over
PostgreSQL large objects: one code path for SQLite and PostgreSQL, rows that are deleted with a plain
DELETE in the caller's transaction (a large object needs lo_unlink, is invisible to a tenant-scoped query
and survives a deleted run as an orphan), at a comparable speed (bench/scaleout_bench.py --only blobs, 64 MiB:
put 121 MiB/s against 80 for lo_put, fetch 121 MiB/s against 198 for lo_get; since the chunks are fetched in
binary, 55 MiB on a later machine: fetch 353-381 MiB/s against 223-260 for lo_get). Neither direction ever holds
more than one chunk in memory, so a 100 MB drop costs a few MiB of memory.

A folder drop (a watched folder of CSVs) is kept as an uncompressed tar of its top-level entries and made
a folder again on the way out; fetch_drop_bytes() checks the sha256 the runs table records in both cases.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import stat
import tarfile
import time
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    delete,
    insert,
    select,
)

from processor.apply.store import metadata, runs
from processor.context import UserError
from processor.intake.spool import open_drop

CHUNK = 1 << 20

drop_blobs = Table(
    "drop_blobs", metadata,
    Column("run_id", String(40), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("kind", String(8), nullable=False),  # file | folder (a tar of the folder's entries)
    Column("size", BigInteger, nullable=False),  # bytes stored (the tar's size for a folder)
    Column("chunks", Integer, nullable=False),
    Column("stored_at", Float, nullable=False),
    Index("ix_drop_blobs_stored", "stored_at"),
)

drop_blob_chunks = Table(
    "drop_blob_chunks", metadata,
    Column("run_id", String(40), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("data", LargeBinary, nullable=False),
)

# Runs whose bytes retention never removes: they are still to be processed, or held for a release.
_KEPT = ("received", "processing", "held")
# Where a folder drop's symbolic link is re-created: the run refuses a link by name and never follows it.
_REFUSED_LINK = "/nonexistent/rosterdrop-refused-link"


class DropBytesError(UserError):
    """The bytes of a run are missing from the store or are not the bytes the run recorded."""


class _ChunkWriter:
    """A write-only file object that inserts every CHUNK bytes as one row, in the caller's transaction."""

    def __init__(self, conn: Connection, tenant: str, run_id: str) -> None:
        self.conn, self.tenant, self.run_id = conn, tenant, run_id
        self.buf = bytearray()
        self.seq = 0
        self.size = 0

    def write(self, data) -> int:
        self.buf += data
        while len(self.buf) >= CHUNK:
            self._insert(bytes(self.buf[:CHUNK]))
            del self.buf[:CHUNK]
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self.buf or self.seq == 0:  # an empty file is one empty chunk: present, not missing
            self._insert(bytes(self.buf))
            self.buf.clear()

    def _insert(self, data: bytes) -> None:
        self.conn.execute(insert(drop_blob_chunks).values(
            run_id=self.run_id, seq=self.seq, tenant=self.tenant, data=data))
        self.seq += 1
        self.size += len(data)


def put_drop_bytes(conn: Connection, tenant: str, run_id: str, path: Path) -> None:
    """Stream the drop at `path` (a file, or a folder of CSVs) into the store, in the caller's transaction.

    Replaces bytes already stored for the run (a resumed recording)."""
    path = Path(path)
    st = os.lstat(path)
    delete_drop_bytes(conn, run_id)
    out = _ChunkWriter(conn, tenant, run_id)
    if stat.S_ISDIR(st.st_mode):
        kind = "folder"
        _write_tar(path, out)
    elif stat.S_ISREG(st.st_mode):
        kind = "file"
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                out.write(chunk)
    else:
        raise UserError(f"{path} is neither a file nor a folder; its bytes cannot be stored")
    out.close()
    conn.execute(insert(drop_blobs).values(run_id=run_id, tenant=tenant, kind=kind, size=out.size,
                                           chunks=out.seq, stored_at=time.time()))


def _write_tar(folder: Path, out: _ChunkWriter) -> None:
    # Top-level entries only, as unpack reads them: regular files with their bytes; a link, pipe, socket
    # or device as an empty placeholder of its kind, so the worker refuses it exactly as the door's host
    # would have; sub-folders are ignored by unpack and left out.
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            st = os.lstat(entry)
            info = tarfile.TarInfo(entry.name)
            info.mode = 0o600
            info.mtime = int(st.st_mtime)
            if stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                with entry.open("rb") as f:
                    tar.addfile(info, f)
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.linkname = tarfile.SYMTYPE, _REFUSED_LINK
                tar.addfile(info)
            elif not stat.S_ISDIR(st.st_mode):
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)


class _ChunkReader:
    """A read-only file object over a run's chunks, one row at a time (never the whole drop)."""

    def __init__(self, rows) -> None:
        self.rows = rows
        self.buf = b""
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        parts = []
        while n != 0:
            if self.pos >= len(self.buf):
                row = next(self.rows, None)
                if row is None:
                    break
                self.buf, self.pos = row[1], 0
                continue
            end = len(self.buf) if n < 0 else min(len(self.buf), self.pos + n)
            parts.append(self.buf[self.pos:end])
            n = n if n < 0 else n - (end - self.pos)
            self.pos = end
        return b"".join(parts)


def fetch_drop_bytes(engine: Engine, run_id: str, dest: Path) -> Path:
    """Write the run's stored bytes to `dest` (a file, or a folder for a folder drop) and return it.

    Written under a temporary name next to `dest`, checked against the sha256 the runs table records for
    the run, then renamed into place: `dest` is either the drop the door received or absent.
    DropBytesError if the store has no bytes for the run or they differ from what the run recorded."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    with engine.connect() as conn:
        head = conn.execute(select(drop_blobs).where(drop_blobs.c.run_id == run_id)).first()
        recorded = conn.execute(select(runs.c.sha256, runs.c.tenant).where(runs.c.run_id == run_id)).first()
        if head is None:
            raise DropBytesError(f"run {run_id}: the store holds no bytes for this drop (never stored, or removed "
                                 "by retention)")
        if recorded is None:
            raise DropBytesError(f"run {run_id}: the runs table has no such run; its stored bytes cannot be checked")
        if recorded.tenant != head.tenant:
            raise DropBytesError(f"run {run_id}: the stored bytes belong to another tenant than the run; not fetched")
        rows = _chunk_rows(conn, run_id)
        try:
            if head.kind == "folder":
                _read_tar(_ChunkReader(rows), tmp)
                seen, digest = head.chunks, _door_digest(tmp)
            else:
                seen, digest = _read_file(rows, tmp)
            if seen != head.chunks:
                raise DropBytesError(f"run {run_id}: the store holds {seen} of the drop's {head.chunks} chunks")
            if digest != recorded.sha256:
                raise DropBytesError(f"run {run_id}: the stored bytes have sha256 {digest[:12]}, the run recorded "
                                     f"{recorded.sha256[:12]}; the drop was not fetched")
        except BaseException:
            _remove(tmp)
            raise
        finally:
            rows.close()  # its server-side cursor, on this connection, before the connection goes back to the pool
    _remove(dest)
    os.replace(tmp, dest)
    return dest


def _chunk_rows(conn: Connection, run_id: str):
    """The run's chunks in order, as (seq, data) tuples, a few rows at a time (never the whole drop).

    PostgreSQL: through a server-side cursor of the driver, in the binary result format. In the text format
    the server hex-encodes a bytea to twice its size and the driver decodes it back: a 55 MiB drop came
    back at 196-201 MiB/s that way, at 353-381 MiB/s in binary (medians; bench/README.md, 2026-12-07).
    SQLite reads blobs as they are."""
    stmt = (select(drop_blob_chunks.c.seq, drop_blob_chunks.c.data)
            .where(drop_blob_chunks.c.run_id == run_id).order_by(drop_blob_chunks.c.seq))
    if conn.dialect.name != "postgresql":
        with conn.execution_options(stream_results=True, yield_per=4).execute(stmt) as result:
            yield from result
        return
    compiled = stmt.compile(dialect=conn.dialect)
    # A named (server-side) cursor lives in the connection's transaction, which the queries above began.
    with conn.connection.driver_connection.cursor(name=f"drop_chunks_{secrets.token_hex(4)}", binary=True) as cur:
        cur.itersize = 2  # rows of 1 MiB: a FETCH of two at a time keeps the peak near 6 MiB
        cur.execute(str(compiled), compiled.params)
        yield from cur


def _door_digest(folder: Path) -> str:
    # the digest a door records for a folder: regular files only, links never followed (spool.open_drop)
    opened = open_drop(folder, nofollow=True)
    opened.close()
    return opened.sha256


def _read_file(rows, tmp: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    seen = 0
    with open(tmp, "wb") as out:
        for seq, data in rows:
            if seq != seen:
                break
            h.update(data)
            out.write(data)
            seen += 1
        out.flush()
        os.fsync(out.fileno())
    return seen, h.hexdigest()


def _read_tar(reader: _ChunkReader, tmp: Path) -> None:
    # Never extractall: every member must be a plain name at the top of the folder, and only regular
    # files, placeholder links and pipes are made.
    tmp.mkdir(mode=0o700)
    with tarfile.open(fileobj=reader, mode="r|") as tar:
        for member in tar:
            name = member.name
            if "/" in name or name in ("", ".", "..") or name.startswith(".") or "\0" in name:
                raise DropBytesError(f"the stored folder holds an unexpected entry {name!r}")
            target = tmp / name
            if member.isreg():
                src = tar.extractfile(member)
                with open(target, "xb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
            elif member.issym():
                os.symlink(_REFUSED_LINK, target)
            elif member.isfifo():
                os.mkfifo(target, 0o600)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def delete_drop_bytes(conn: Connection, run_id: str) -> None:
    """Remove the run's stored bytes (nothing if there are none), in the caller's transaction."""
    conn.execute(delete(drop_blob_chunks).where(drop_blob_chunks.c.run_id == run_id))
    conn.execute(delete(drop_blobs).where(drop_blobs.c.run_id == run_id))


def has_drop_bytes(conn: Connection, run_id: str) -> bool:
    return conn.execute(select(drop_blobs.c.run_id).where(drop_blobs.c.run_id == run_id)).first() is not None


def expire_drop_bytes(conn: Connection, older_than: float) -> int:
    """Retention: remove the stored bytes of drops stored before `older_than` (epoch seconds), except
    those of runs still to be processed or held for a release (and of drops whose run is not recorded,
    which a door may still be recording). Returns how many drops' bytes were removed."""
    kept = select(runs.c.run_id).where(runs.c.status.in_(_KEPT))
    recorded = select(runs.c.run_id)
    expired = [r.run_id for r in conn.execute(
        select(drop_blobs.c.run_id).where(drop_blobs.c.stored_at < older_than,
                                          drop_blobs.c.run_id.in_(recorded),
                                          drop_blobs.c.run_id.not_in(kept)))]
    for start in range(0, len(expired), 500):
        batch = expired[start:start + 500]
        conn.execute(delete(drop_blob_chunks).where(drop_blob_chunks.c.run_id.in_(batch)))
        conn.execute(delete(drop_blobs).where(drop_blobs.c.run_id.in_(batch)))
    return len(expired)
