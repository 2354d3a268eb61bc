"""SFTP pull, against the project's own SFTP server as the district's remote (127.0.0.1, a free port)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import paramiko
import pytest
from sqlalchemy import select

from processor.apply.runs import list_runs
from processor.apply.store import open_store, pulled
from processor.context import Context
from processor.daemon import Daemon
from processor.home import HOST_KEY, init_home
from processor.intake.auth import add_key, hash_password
from processor.intake.pull import PullError, pull_tenant
from processor.intake.sftp_server import SftpServer
from processor.pipeline import process_path
from tests.test_daemon import SAMPLES, write_home, zip_folder

REMOTE_USER = "district"
PASSWORD = "remote-secret-1"
PASSWORD_ENV = "RD_TEST_PULL_PASSWORD"


@pytest.fixture(scope="module")
def password_hash():
    return hash_password(PASSWORD)  # scrypt is slow on purpose: once per module


@pytest.fixture
def remote(tmp_path, password_hash):
    """The district's SFTP server: its inbox/district/ folder is what the pull sees as `/`."""
    home = tmp_path / "remote"
    init_home(home, [REMOTE_USER])
    engine = open_store("sqlite:///" + str(home / "remote.db"))
    from processor.apply.store import credentials

    with engine.begin() as conn:
        conn.execute(credentials.insert().values(tenant=REMOTE_USER, kind="password", value=password_hash,
                                                 created_at=time.time()))
    server = SftpServer(home, engine, "127.0.0.1", 0, [REMOTE_USER], lambda tenant, path: None)
    server.start()
    server.files = home / "inbox" / REMOTE_USER
    yield server
    server.stop()


def known_hosts_line(server: SftpServer) -> str:
    key = paramiko.Ed25519Key.from_private_key_file(str(server.home / HOST_KEY))
    return f"[127.0.0.1]:{server.port} {key.get_name()} {key.get_base64()}\n"


def local_home(tmp_path: Path, remote: SftpServer, monkeypatch, *, pattern: str = "*.zip",
               known_hosts: str | None = None, auth: str | None = None) -> Context:
    home = tmp_path / "local"
    auth = auth or f'password_env = "{PASSWORD_ENV}"'
    write_home(home, ["lincoln"], tenant_extra={"lincoln": "\n".join([
        "[tenants.lincoln.pull]", 'host = "127.0.0.1"', f"port = {remote.port}", f'username = "{REMOTE_USER}"',
        auth, 'remote_dir = "/"', f'pattern = "{pattern}"', 'schedule = "15 2 * * 1-5"',
        'known_hosts = "known_hosts"'])})
    (home / "known_hosts").write_text(known_hosts_line(remote) if known_hosts is None else known_hosts)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    return Context.load(home)


class Handed:
    """Stands in for the daemon's hand-over, through the real pipeline (receive, process)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.calls: list[tuple[str, str, str, list[str]]] = []

    def __call__(self, tenant: str, path: Path, source: str) -> str:
        names = sorted(p.name for p in path.iterdir()) if path.is_dir() else [path.name]
        self.calls.append((tenant, path.name, source, names))
        return process_path(self.ctx, path, tenant, source=source, move=True).run_id


def test_pull_fetches_each_new_file_once_and_the_pipeline_applies_it(tmp_path, remote, monkeypatch):
    zip_folder(SAMPLES / "clean", remote.files / "nightly.zip")
    (remote.files / "readme.txt").write_text("not a drop")
    zip_folder(SAMPLES / "clean", remote.files / ".hidden.zip")
    zip_folder(SAMPLES / "clean", remote.files / "uploading.zip.part")
    ctx = local_home(tmp_path, remote, monkeypatch)
    handed = Handed(ctx)

    [run_id] = pull_tenant(ctx, "lincoln", handed)
    assert [c[:3] for c in handed.calls] == [("lincoln", "nightly.zip", "pull")]
    [run] = list_runs(ctx.engine, "lincoln")
    assert (run["run_id"], run["status"], run["source"]) == (run_id, "applied", "pull")
    inbox = ctx.path("inbox", "lincoln")
    assert [p for p in inbox.rglob("*") if p.is_file()] == []  # no .part, nothing left staged
    with ctx.engine.connect() as conn:
        assert conn.execute(select(pulled.c.name, pulled.c.run_id)).all() == [("nightly.zip", run_id)]
    assert (remote.files / "nightly.zip").exists()  # a pull never removes the district's file

    assert pull_tenant(ctx, "lincoln", handed) == []  # same name, size and mtime: not again
    assert len(handed.calls) == 1

    zip_folder(SAMPLES / "delta", remote.files / "nightly.zip")  # a new export under the same name
    os.utime(remote.files / "nightly.zip", (time.time() + 60,) * 2)
    [second] = pull_tenant(ctx, "lincoln", handed)
    assert second != run_id and len(handed.calls) == 2


def test_an_unknown_host_key_is_refused(tmp_path, remote, monkeypatch):
    zip_folder(SAMPLES / "clean", remote.files / "nightly.zip")
    ctx = local_home(tmp_path, remote, monkeypatch, known_hosts="")
    handed = Handed(ctx)
    with pytest.raises(PullError, match="not in .*known_hosts"):
        pull_tenant(ctx, "lincoln", handed)
    assert handed.calls == [] and not any(ctx.path("inbox", "lincoln").iterdir())


def test_a_changed_host_key_is_refused(tmp_path, remote, monkeypatch):
    zip_folder(SAMPLES / "clean", remote.files / "nightly.zip")
    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)], check=True)
    key_type, blob = impostor.with_suffix(".pub").read_text().split()[:2]
    ctx = local_home(tmp_path, remote, monkeypatch, known_hosts=f"[127.0.0.1]:{remote.port} {key_type} {blob}\n")
    handed = Handed(ctx)
    with pytest.raises(PullError, match="does not match"):
        pull_tenant(ctx, "lincoln", handed)
    assert handed.calls == []


def test_key_file_authentication(tmp_path, remote, monkeypatch):
    key = tmp_path / "pull_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    add_key(remote.engine, REMOTE_USER, key.with_suffix(".pub"))
    zip_folder(SAMPLES / "clean", remote.files / "nightly.zip")
    ctx = local_home(tmp_path, remote, monkeypatch, auth=f'key_file = "{key}"')
    monkeypatch.delenv(PASSWORD_ENV)
    assert len(pull_tenant(ctx, "lincoln", Handed(ctx))) == 1


def test_a_missing_password_variable_is_reported(tmp_path, remote, monkeypatch):
    ctx = local_home(tmp_path, remote, monkeypatch)
    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(PullError, match=PASSWORD_ENV):
        pull_tenant(ctx, "lincoln", Handed(ctx))


def test_loose_csvs_are_pulled_together_as_one_bundle(tmp_path, remote, monkeypatch):
    for f in (SAMPLES / "clean").iterdir():
        shutil.copy(f, remote.files / f.name)
    ctx = local_home(tmp_path, remote, monkeypatch, pattern="*.csv")
    handed = Handed(ctx)
    [run_id] = pull_tenant(ctx, "lincoln", handed)
    [(tenant, _, source, names)] = handed.calls
    assert names == sorted(p.name for p in (SAMPLES / "clean").iterdir())
    assert list_runs(ctx.engine, "lincoln")[0]["status"] == "applied"
    assert pull_tenant(ctx, "lincoln", handed) == []

    users = remote.files / "users.csv"  # one file changes: the whole set is fetched again
    users.write_text(users.read_text().replace("\n", "\r\n"))
    assert len(pull_tenant(ctx, "lincoln", handed)) == 1
    assert len(handed.calls[1][3]) == len(names)


def test_the_daemon_schedules_a_pull_per_tenant_and_queues_what_it_fetches(tmp_path, remote, monkeypatch):
    zip_folder(SAMPLES / "clean", remote.files / "nightly.zip")
    ctx = local_home(tmp_path, remote, monkeypatch)
    daemon = Daemon(ctx)
    [job] = [j for j in daemon.schedule.jobs if j.name.startswith("pull-")]
    assert job.name == "pull-lincoln" and str(job.trigger.fields[4]) == "mon,tue,wed,thu,fri"
    job.run()  # what the scheduler runs
    kind, drop = daemon.queue._events.get_nowait()
    assert (kind, drop.tenant, drop.source, drop.original_name) == ("drop", "lincoln", "pull", "nightly.zip")
    assert drop.path.is_relative_to(ctx.path("spool", "lincoln"))
