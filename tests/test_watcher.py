"""The watched-folder door: files written into the inboxes by someone else (OpenSSH chroot SFTP, rsync)."""

from __future__ import annotations

import io
import os
import threading
import time
import zipfile
from pathlib import Path

import pytest

from processor.home import init_home
from processor.intake.watcher import InboxWatcher, zip_ok
from tests.helpers import wait_for

TENANTS = ["lincoln", "roosevelt"]
STABLE = 0.2




class Spool:
    """Records each hand-over and moves the drop out of the inbox, as the real spool will."""

    def __init__(self, root: Path, move: bool = True) -> None:
        self.root = root
        self.move = move
        self.calls: list[tuple[str, str, bytes | list[str]]] = []
        self.times: list[float] = []
        self.lock = threading.Lock()
        root.mkdir()

    def __call__(self, tenant: str, path: Path) -> None:
        content = sorted(p.name for p in path.iterdir()) if path.is_dir() else path.read_bytes()
        with self.lock:
            self.calls.append((tenant, path.name, content))
            self.times.append(time.monotonic())
            n = len(self.calls)
        if self.move:
            path.rename(self.root / f"{n}-{path.name}")


def zip_bytes(n: int = 3) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for i in range(n):
            z.writestr(f"file{i}.csv", "sourcedId,status\n" + f"x{i},active\n" * 50)
    return buf.getvalue()


def corrupt(data: bytes) -> bytes:
    """The same zip with one byte of member data flipped: it opens, but its CRC check fails."""
    i = data.index(b"x1,active")
    return data[:i] + b"y" + data[i + 1:]


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    init_home(home, TENANTS)
    return home


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool")


@pytest.fixture(params=[False, True], ids=["inotify", "polling"])
def watcher(request, home, spool):
    w = InboxWatcher(home, TENANTS, spool, polling=request.param, stable_seconds=STABLE, rescan_seconds=60,
                     quiet_period=0.5)
    w.start()
    yield w
    w.stop()


def test_close_after_write_is_taken_once_stable(watcher, home, spool):
    data = zip_bytes()
    (home / "inbox" / "lincoln" / "nightly.zip").write_bytes(data)
    wait_for(lambda: spool.calls)
    time.sleep(STABLE * 2)
    assert spool.calls == [("lincoln", "nightly.zip", data)]


def test_rename_into_place_is_taken_under_the_new_name_only(watcher, home, spool):
    inbox = home / "inbox" / "roosevelt"
    data = zip_bytes()
    (inbox / "nightly.zip.part").write_bytes(data)
    time.sleep(STABLE * 2)
    assert spool.calls == []
    os.rename(inbox / "nightly.zip.part", inbox / "nightly.zip")
    wait_for(lambda: spool.calls)
    time.sleep(STABLE)
    assert spool.calls == [("roosevelt", "nightly.zip", data)]


def test_ignored_names_and_symlinks_are_never_taken(watcher, home, spool, tmp_path):
    inbox = home / "inbox" / "lincoln"
    for name in ("a.part", "b.tmp", "c.filepart", ".hidden.zip", "E.PART"):
        (inbox / name).write_bytes(zip_bytes())
    (inbox / ".rsync-tmp").mkdir()
    (inbox / ".rsync-tmp" / "d.zip").write_bytes(zip_bytes())
    (tmp_path / "secret.zip").write_bytes(zip_bytes())
    os.symlink(tmp_path / "secret.zip", inbox / "link.zip")
    watcher.rescan()
    time.sleep(STABLE * 4)
    assert spool.calls == []


def test_a_file_held_open_by_its_writer_is_not_taken_before_close(home, spool):
    w = InboxWatcher(home, TENANTS, spool, stable_seconds=STABLE)  # inotify: it sees the close
    w.start()
    try:
        data = zip_bytes()
        with (home / "inbox" / "lincoln" / "open.zip").open("wb") as f:
            f.write(data)
            f.flush()
            time.sleep(STABLE * 4)
            assert spool.calls == []
        wait_for(lambda: spool.calls)
        assert spool.calls == [("lincoln", "open.zip", data)]
    finally:
        w.stop()


def test_a_file_still_changing_is_not_taken_until_it_is_stable(watcher, home, spool):
    """Debounce: a writer that closes after each chunk (or a polled file that keeps growing)."""
    path = home / "inbox" / "lincoln" / "growing.zip"
    data = zip_bytes(30)
    step = len(data) // 6 + 1
    for i in range(0, len(data), step):
        time.sleep(STABLE / 3)
        with path.open("ab") as f:
            f.write(data[i:i + step])
    last_write = time.monotonic()
    assert spool.calls == []
    wait_for(lambda: spool.calls)
    assert spool.times[0] - last_write >= STABLE * 0.9
    time.sleep(STABLE)
    assert spool.calls == [("lincoln", "growing.zip", data)]


def test_a_corrupt_zip_is_not_taken_until_fixed(watcher, home, spool):
    path = home / "inbox" / "lincoln" / "nightly.zip"
    good = zip_bytes()
    path.write_bytes(corrupt(good))
    time.sleep(STABLE * 4)
    assert spool.calls == []
    path.write_bytes(good)  # the sender uploads it again
    wait_for(lambda: spool.calls)
    assert spool.calls == [("lincoln", "nightly.zip", good)]


def test_a_truncated_zip_is_not_taken_until_complete(watcher, home, spool):
    path = home / "inbox" / "roosevelt" / "nightly.zip"
    good = zip_bytes()
    path.write_bytes(good[: len(good) // 2])
    time.sleep(STABLE * 4)
    assert spool.calls == []
    with path.open("ab") as f:
        f.write(good[len(good) // 2:])
    wait_for(lambda: spool.calls)
    assert spool.calls == [("roosevelt", "nightly.zip", good)]


def test_loose_csvs_and_manifest_become_one_bundle_folder(watcher, home, spool):
    inbox = home / "inbox" / "lincoln"
    (inbox / "manifest.csv").write_text("propertyName,value\nfile.orgs,bulk\nfile.users,bulk\n")
    (inbox / "orgs.csv").write_text("sourcedId\n")
    (inbox / "users.csv").write_text("sourcedId\n")
    wait_for(lambda: spool.calls)
    time.sleep(0.6)
    ((tenant, name, content),) = spool.calls
    assert tenant == "lincoln" and name.startswith(".bundle-")
    assert content == ["manifest.csv", "orgs.csv", "users.csv"]
    assert list(inbox.iterdir()) == []


def test_file_moved_in_from_outside_is_taken(watcher, home, spool, tmp_path):
    outside = tmp_path / "x.zip"
    outside.write_bytes(zip_bytes())
    os.rename(outside, home / "inbox" / "lincoln" / "x.zip")
    wait_for(lambda: spool.calls)
    assert [(t, n) for t, n, _ in spool.calls] == [("lincoln", "x.zip")]


def test_folder_moved_into_place_is_taken(watcher, home, spool, tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "a.zip").write_bytes(zip_bytes())
    os.rename(staging, home / "inbox" / "lincoln" / "batch")
    wait_for(lambda: spool.calls)
    assert [(t, n) for t, n, _ in spool.calls] == [("lincoln", "a.zip")]


def test_files_already_there_at_start_are_taken_by_the_first_rescan(home, spool):
    (home / "inbox" / "lincoln" / "before.zip").write_bytes(zip_bytes())
    w = InboxWatcher(home, TENANTS, spool, stable_seconds=STABLE)
    w.start()
    try:
        wait_for(lambda: spool.calls)
        assert [(t, n) for t, n, _ in spool.calls] == [("lincoln", "before.zip")]
    finally:
        w.stop()


def test_a_file_the_consumer_leaves_in_place_is_not_handed_over_twice(home, tmp_path):
    spool = Spool(tmp_path / "tolerant", move=False)
    w = InboxWatcher(home, TENANTS, spool, stable_seconds=STABLE)
    w.start()
    try:
        path = home / "inbox" / "lincoln" / "kept.zip"
        path.write_bytes(zip_bytes())
        wait_for(lambda: spool.calls)
        for _ in range(3):
            w.rescan()
            time.sleep(STABLE)
        assert len(spool.calls) == 1
        path.write_bytes(zip_bytes(4))  # a new version under the same name is a new drop
        wait_for(lambda: len(spool.calls) == 2)
    finally:
        w.stop()


def test_zip_ok():
    assert zip_ok_bytes(zip_bytes())
    assert not zip_ok_bytes(corrupt(zip_bytes()))
    assert not zip_ok_bytes(zip_bytes()[:100])
    assert not zip_ok_bytes(b"not a zip")


def zip_ok_bytes(data: bytes) -> bool:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.zip"
        p.write_bytes(data)
        return zip_ok(p)
