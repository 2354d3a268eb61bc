"""Unusable bundles: each is rejected with bad_bundle naming what was wrong, exit 2, never a traceback,
and nothing is written outside the run's own folders."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from processor.bundle.unpack import Limits, unpack
from tests.bundles import CLEAN, make_bundle


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def _clean_entries() -> list[tuple[str, bytes]]:
    return [(n, v.encode()) for n, v in CLEAN.items()]


def _symlink_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("users.csv")
    info.external_attr = (0o120777 << 16)
    return info


def _encrypted(data: bytes) -> bytes:
    # Set the "encrypted" flag bit on every entry (local and central headers).
    out = bytearray(data)
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (i := out.find(sig, start)) != -1:
            out[i + off] |= 0x01
            start = i + 4
    return bytes(out)


CASES = {
    "not a zip": (b"this is not a zip file at all", "not a zip file"),
    "truncated": (_zip(_clean_entries())[:300], "not a zip file"),
    "empty zip": (_zip([]), "no OneRoster CSV files"),
    "dot-dot path": (_zip([*_clean_entries(), ("../../etc/users.csv", b"x")]), "outside the bundle"),
    "absolute path": (_zip([*_clean_entries(), ("/etc/cron.d/users.csv", b"x")]), "absolute path"),
    "symlink": (_zip([(_symlink_entry(), b"/etc/passwd")]), "symbolic link"),
    "duplicate names": (_zip([*_clean_entries(), ("export/users.csv", CLEAN["users.csv"].encode())]), "twice"),
    "encrypted": (_encrypted(_zip(_clean_entries())), "encrypted"),
    "bomb": (_zip([*_clean_entries()[:-1], ("enrollments.csv", b"a" * 5_000_000)]), "compression bomb"),
    "binary csv": (_zip([*_clean_entries()[:-1], ("enrollments.csv", b"\x00\x01\x02" * 100)]), "NUL bytes"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unusable_bundle_is_rejected_with_bad_bundle(sqlite_env, case):
    data, words = CASES[case]
    path = sqlite_env.tmp / "bad.zip"
    path.write_bytes(data)
    before = _tree(sqlite_env.tmp, exclude=sqlite_env.home)
    result = sqlite_env.process(path)
    assert result.status == "rejected" and result.exit_code() == 2
    codes = [i.code for i in result.issues]
    assert codes == ["bad_bundle"], codes
    assert words in result.issues[0].message
    assert _tree(sqlite_env.tmp, exclude=sqlite_env.home) == before
    assert not (Path("/etc/cron.d/users.csv").exists())


def test_too_many_members_and_total_size_caps(tmp_path):
    many = tmp_path / "many.zip"
    many.write_bytes(_zip([(f"x{i}.txt", b"") for i in range(30)] + _clean_entries()))
    assert "at most 20" in _message(unpack(many, Limits(max_members=20)))
    big = make_bundle(tmp_path, CLEAN)
    assert "limit" in _message(unpack(big, Limits(max_total_bytes=500)))


def test_folder_with_a_symlink_is_rejected(tmp_path):
    folder = make_bundle(tmp_path, CLEAN, as_zip=False)
    (folder / "users.csv").unlink()
    os.symlink("/etc/passwd", folder / "users.csv")
    assert "symbolic link" in _message(unpack(folder))


def test_a_bundle_zipped_inside_a_folder_is_read(tmp_path):
    path = tmp_path / "nested.zip"
    path.write_bytes(_zip([(f"export-2026/{n}", v) for n, v in _clean_entries()]))
    out = unpack(path)
    assert not out.fatal and set(out.files) == set(CLEAN)


def _message(out) -> str:
    assert out.fatal
    return str(out.issues[-1]["message"].iloc[0])


def _tree(root: Path, exclude: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if exclude not in p.parents and p != exclude}


def test_the_size_cap_counts_all_members_together_while_they_decompress_in_parallel(tmp_path):
    # Two members of 600 kB each: either alone fits a 1 MB cap, together they do not. Members decompress
    # two at a time, so the cap must be shared between the threads, not checked per member.
    body = b"".join(b"u%d,active,2026-01-01,Student,%x\n" % (i, i * 7919) for i in range(20_000))[:600_000]
    path = tmp_path / "two.zip"
    others = [(n, v) for n, v in _clean_entries() if n not in ("users.csv", "enrollments.csv")]
    path.write_bytes(_zip([("users.csv", body), ("enrollments.csv", body), *others]))
    assert "1,000,000-byte limit" in _message(unpack(path, Limits(max_total_bytes=1_000_000)))
    out = unpack(path, Limits(max_total_bytes=2_000_000))
    assert not out.fatal and out.files["users.csv"] == body and out.files["enrollments.csv"] == body
