"""The read-only results/ folder in each tenant's SFTP root, read with OpenSSH's sftp client."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from processor.intake.auth import add_key
from processor.intake.sftp_server import SftpServer
from tests.bundles import CLEAN, USERS, with_changes

pytestmark = pytest.mark.skipif(shutil.which("sftp") is None, reason="OpenSSH's sftp client is not installed")


@pytest.fixture
def door(sqlite_env, tmp_path):
    env = sqlite_env
    key = tmp_path / "lincoln_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    add_key(env.ctx.engine, "lincoln", key.with_suffix(".pub"))
    server = SftpServer(env.home, env.ctx.engine, "127.0.0.1", 0, ["lincoln", "roosevelt"], lambda t, p: None)
    server.start()
    yield env, server, key
    server.stop()


def sftp(server: SftpServer, key, batch: str) -> subprocess.CompletedProcess:
    cmd = ["sftp", "-b", "-", "-P", str(server.port), "-i", str(key), "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
           "-o", "LogLevel=ERROR", "lincoln@127.0.0.1"]
    return subprocess.run(cmd, input=batch, capture_output=True, text=True, timeout=60)


def test_each_run_has_its_text_report_and_issues_csv_in_results(door, tmp_path):
    env, server, key = door
    first = env.process(CLEAN)
    second = env.process(with_changes(CLEAN, users_csv=USERS.replace("tmartin@lincoln.example", "not-an-email")))
    theirs = env.process(CLEAN, tenant="roosevelt")
    out = tmp_path / "got"
    out.mkdir()
    listing = sftp(server, key, "ls -1 /\nls -1 results\n")
    assert listing.returncode == 0, listing.stderr
    names = listing.stdout.split()
    assert "results" in names
    for run in (first, second):
        assert f"results/{run.run_id}.txt" in names and f"results/{run.run_id}-issues.csv" in names
    assert not any(theirs.run_id in n for n in names)  # another tenant's runs are not there
    got = sftp(server, key, f"get results/{second.run_id}.txt {out}/report.txt\n"
                            f"get results/{second.run_id}-issues.csv {out}/issues.csv\n")
    assert got.returncode == 0, got.stderr
    assert (out / "report.txt").read_bytes() == env.home.joinpath("reports", second.run_id, "report.txt").read_bytes()
    assert "invalid_value" in (out / "issues.csv").read_text(encoding="utf-8-sig")


def test_results_is_read_only_and_holds_nothing_of_other_tenants(door, tmp_path):
    env, server, key = door
    run = env.process(CLEAN)
    theirs = env.process(CLEAN, tenant="roosevelt")
    local = tmp_path / "x.txt"
    local.write_text("x")
    for batch in (f"put {local} results/x.txt\n", f"rm results/{run.run_id}.txt\n", "mkdir results/sub\n",
                  f"rename results/{run.run_id}.txt results/y.txt\n", "rmdir results\n",
                  f"get results/{theirs.run_id}.txt {tmp_path}/theirs.txt\n",
                  f"get results/../../reports/{theirs.run_id}/report.txt {tmp_path}/theirs2.txt\n",
                  f"chmod 777 results/{run.run_id}.txt\n"):
        assert sftp(server, key, batch).returncode != 0, batch
    assert env.home.joinpath("reports", run.run_id, "report.txt").exists()
    assert not (tmp_path / "theirs.txt").exists() and not (tmp_path / "theirs2.txt").exists()
    assert not env.home.joinpath("inbox", "lincoln", "results").exists()
    # uploads still work next to it
    up = sftp(server, key, f"put {local} drop.txt\n")
    assert up.returncode == 0, up.stderr
