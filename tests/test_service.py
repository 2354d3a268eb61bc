"""The daemon as a service (CONTRACT.md section 9): one `serve` per home, no home made up without a terminal,
live reload of tenants, credentials and policies (OpenSSH `sftp` logs in within 5 s), systemd notify, JSON
logs, and the CLI's own manners (--version, --json usage errors, a closed pipe)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from processor import __version__
from processor.apply.runs import list_runs
from processor.apply.schema import open_checked
from tests.conftest import write_config
from tests.helpers import wait_for
from tests.test_daemon import SAMPLES, DaemonProcess, free_port, zip_folder

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "processor", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, **kw)


def served_home(env, tenants: dict[str, dict], port: int) -> Path:
    write_config(env.home, tenants, env.store_url)
    text = (env.home / "rosterdrop.toml").read_text().replace(
        "[sftp]\nenabled = false", f'[sftp]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n'
        "quiet_period_seconds = 30\n\n[daemon]\nworkers = 1")
    (env.home / "rosterdrop.toml").write_text(text)
    return env.home


def openssh_put(port: int, user: str, key: Path, local: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sftp", "-b", "-", "-P", str(port), "-i", str(key), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", "ConnectTimeout=5", f"{user}@127.0.0.1"],
        input=f"put {local} nightly.zip\n", capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    key = tmp_path_factory.mktemp("keys") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def test_a_running_daemon_picks_up_a_new_tenant_its_key_and_policy_and_a_disable(env, tmp_path, key):
    port = free_port()
    home = served_home(env, {"lincoln": {}}, port)
    daemon = DaemonProcess(home)
    try:
        daemon.wait_log("serving 1 tenants")
        bundle = zip_folder(SAMPLES / "clean", tmp_path / "clean.zip")

        # a new tenant with a policy, and its key, while the daemon runs: no restart
        assert run("--home", str(home), "init", "--tenant", "newco").returncode == 0
        with (home / "rosterdrop.toml").open("a") as f:
            f.write('[tenants.newco.policy.require]\nstudents = ["sms"]\n')
        added = run("--home", str(home), "tenant", "add-key", "newco", str(key.with_suffix(".pub")))
        assert added.returncode == 0, added.stderr
        start = time.monotonic()
        while True:  # the contract: within 5 seconds
            put = openssh_put(port, "newco", key, bundle)
            if put.returncode == 0 or time.monotonic() - start > 5:
                break
            time.sleep(0.2)
        assert put.returncode == 0 and time.monotonic() - start <= 5, put.stderr
        daemon.wait_log("configuration reloaded: 2 tenants; added newco")

        engine = open_checked(env.ctx.config.store_url())
        [done] = wait_for(lambda: [r for r in list_runs(engine, "newco") if r["status"] != "received"
                                   and r["status"] != "processing"], timeout=30)
        # every student lacks the newly required `sms`: rejected, so the drop is held (rejected_rows)
        assert done["status"] == "held", done
        result = run("--home", str(home), "--json", "runs", "show", done["run_id"])
        issues = json.loads(result.stdout)["issues"]
        assert any(i["code"] == "rejected_rows" for i in issues), issues
        # the new tenant's policy reached the worker process, which started before the tenant existed
        assert any(i["code"] == "missing_value" and i["field"] == "sms" for i in issues), issues

        # a disabled tenant is refused at the next login, and accepted again once enabled
        assert run("--home", str(home), "tenant", "disable", "newco").returncode == 0
        refused = openssh_put(port, "newco", key, bundle)
        assert refused.returncode != 0 and "Permission denied" in refused.stderr
        assert run("--home", str(home), "tenant", "enable", "newco").returncode == 0
        assert openssh_put(port, "newco", key, zip_folder(SAMPLES / "delta", tmp_path / "d.zip")).returncode == 0

        # SIGHUP reloads at once, even an unchanged file (polling only reloads a changed one)
        n = daemon.log().count("configuration reloaded")
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: daemon.log().count("configuration reloaded") > n, timeout=5)

        # a broken file is refused and the daemon keeps serving with what it has
        good = (home / "rosterdrop.toml").read_text()
        (home / "rosterdrop.toml").write_text(good + '\n[tenants.bad]\nname = "Bad\\u2028Name"\n')
        daemon.wait_log("configuration not reloaded, the daemon keeps the previous one")
        assert daemon.proc.poll() is None
        engine.dispose()
    finally:
        daemon.signal(signal.SIGTERM)
        daemon.wait(20)
        daemon.kill_all()


def test_serve_without_a_terminal_does_not_make_up_a_missing_home(tmp_path):
    home = tmp_path / "mistyped-home"
    done = run("serve", "--home", str(home))
    assert done.returncode == 1 and f"{home} does not exist" in done.stderr and "rosterdrop init" in done.stderr
    assert not home.exists()


def test_one_serve_per_home_and_systemd_notify_ready_watchdog_stopping(tmp_path, sqlite_env):
    home = served_home(sqlite_env, {"lincoln": {}}, free_port())
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(20)
    daemon = DaemonProcess(home, {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"})
    try:
        messages: list[str] = []
        while not any(m.startswith("WATCHDOG=1") for m in messages):
            messages.append(sock.recv(4096).decode())
        assert messages[0].startswith("READY=1\n") and f"MAINPID={daemon.proc.pid}" in messages[0]

        second = run("serve", "--home", str(home))
        assert second.returncode == 1
        assert f"another `rosterdrop serve` (PID {daemon.proc.pid}) is already running" in second.stderr
        status = json.loads(run("--home", str(home), "--json", "status").stdout)
        assert status["daemon"] == {"running": True, "pid": daemon.proc.pid}

        daemon.signal(signal.SIGTERM)
        while not messages[-1].startswith("STOPPING=1"):
            messages.append(sock.recv(4096).decode())
        assert daemon.wait(20)[0] == 0
    finally:
        sock.close()
        daemon.kill_all()
    # the lock went with the process: the next one starts
    assert run("serve", "--burst", "--home", str(home)).returncode == 0


def test_log_format_json_lines_with_an_iso_timestamp_and_offset(sqlite_env):
    done = run("--home", str(sqlite_env.home), "--log-format", "json", "-v", "serve", "--burst")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert lines and {"ts", "level", "logger", "message"} <= set(lines[-1])
    assert datetime.fromisoformat(lines[-1]["ts"]).utcoffset() is not None


def test_version():
    done = run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"rosterdrop {__version__}"


@pytest.mark.parametrize("args", [["--json", "runs", "bogus"], ["--json", "process"], ["process", "--json", "--nope"]])
def test_json_usage_errors_are_one_json_object(args):
    done = run(*args)
    assert done.returncode == 1
    assert set(json.loads(done.stdout)) == {"error"}
    assert "error" in done.stderr


def test_a_closed_pipe_ends_quietly_with_the_command_s_exit_code(sqlite_env):
    env = sqlite_env
    env.process(SAMPLES / "clean")
    for args, code in ((["runs", "list"], 0), (["--json", "process", str(SAMPLES / "clean"), "--tenant", "lincoln"], 4)):
        proc = subprocess.Popen([sys.executable, "-m", "processor", "--home", str(env.home), *args], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        proc.stdout.close()  # like `| head` that has already exited
        err = proc.stderr.read().decode()
        assert proc.wait(60) == code and "Traceback" not in err and "BrokenPipe" not in err, err
