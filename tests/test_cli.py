"""The command line as operators and scripts use it: help, init, config errors, JSON, exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from processor.cli import build_parser, main
from tests.bundles import CLEAN, ENROLLMENTS, make_bundle, with_changes

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT.parent / "shared" / "CONTRACT.md"


def _commands(parser=None, prefix=()):
    parser = parser or build_parser()
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                has_sub = any(a.__class__.__name__ == "_SubParsersAction" for a in sub._actions)
                if has_sub:
                    yield from _commands(sub, (*prefix, name))
                else:
                    yield (*prefix, name), sub


def run_cli(*args: str, home: Path, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "processor", "--home", str(home), *args], capture_output=True,
                          text=True, input=stdin, env={**os.environ, **(env or {})}, cwd=ROOT, timeout=120)


def test_every_command_has_help_and_is_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = list(_commands())
    assert len(commands) >= 14
    for path, sub in commands:
        assert sub.description, f"`rosterdrop {' '.join(path)}` has no help text"
        assert f"rosterdrop {' '.join(path)}" in readme, f"`rosterdrop {' '.join(path)}` is not in README.md"


def test_contract_commands_all_exist():
    if not CONTRACT.exists():
        pytest.skip("../shared/CONTRACT.md is not beside this clone")
    cells = re.findall(r"^\| `rosterdrop ([^`]+)`", CONTRACT.read_text(), re.M)
    table = set()
    for cell in cells:
        words = []
        for token in cell.split():
            if token.startswith(("-", "[")) or not token.islower():
                break
            words.append(token)
        table.add(" ".join(words))
    ours = {" ".join(p) for p, _ in _commands()}
    assert len(table) >= 14 and table <= ours, table - ours


def test_usage_errors_exit_1_not_2(tmp_path):
    # Exit 2 means "rejected" for process; a usage error must never look like a rejected drop.
    for args in (["process"], ["process", "x.zip"], ["nope"], ["holds", "release"], ["runs", "list", "--bogus"]):
        out = run_cli(*args, home=tmp_path / "h")
        assert out.returncode == 1, (args, out.returncode, out.stderr)
        assert "usage:" in out.stderr


def test_python_m_processor_and_help_exit_zero(tmp_path):
    out = subprocess.run([sys.executable, "-m", "processor", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "process" in out.stdout


def test_init_creates_the_home_and_is_harmless_twice(tmp_path):
    home = tmp_path / "h"
    first = run_cli("init", "--tenant", "lincoln", "--json", home=home)
    assert first.returncode == 0, first.stderr
    created = json.loads(first.stdout)["created"]
    for name in ("rosterdrop.toml", "inbox", "spool", "archive", "outbox", "reports", "inbox/lincoln",
                 "ssh_host_ed25519_key"):
        assert str(home / name) in created
    assert (home / "rosterdrop.db").exists()
    assert oct((home / "ssh_host_ed25519_key").stat().st_mode & 0o777) == "0o600"
    toml = (home / "rosterdrop.toml").read_text()
    assert "# [tenants.demo]" in toml and "[tenants.lincoln]" in toml
    again = run_cli("init", "--tenant", "lincoln", home=home)
    assert again.returncode == 0 and "nothing created" in again.stdout
    assert (home / "rosterdrop.toml").read_text() == toml
    more = run_cli("init", "--tenant", "roosevelt", "--json", home=home)
    assert json.loads(more.stdout)["created"] == [f"{home / 'rosterdrop.toml'} [tenants.roosevelt]",
                                                  str(home / "inbox" / "roosevelt")]


@pytest.mark.parametrize("snippet, key", [
    ('[tenants.lincoln]\nname = "L"\n[tenants.lincoln.policy]\nmax_deactivated_percent = "lots"\n',
     "tenants.lincoln.policy.max_deactivated_percent"),
    ('[tenants.lincoln]\nname = "L"\n[tenants.lincoln.policy]\nsingle_scool = true\n',
     "tenants.lincoln.policy.single_scool"),
    ('[tenants.lincoln]\nreport_to = []\n', "tenants.lincoln.name"),
    ('[tenants.lincoln]\nname = "L"\n[tenants.lincoln.policy]\nexclude_roles = ["pupil"]\n',
     "tenants.lincoln.policy.exclude_roles.0"),
    ('[tenants.Lincoln]\nname = "L"\n', "tenant id 'Lincoln'"),
    ('[sftp]\nport = 99999\n', "sftp.port"),
])
def test_config_errors_name_the_key_and_exit_1(tmp_path, snippet, key):
    home = tmp_path / "h"
    home.mkdir()
    (home / "rosterdrop.toml").write_text(snippet)
    out = run_cli("runs", "list", home=home)
    assert out.returncode == 1
    assert key in out.stderr and "Traceback" not in out.stderr


def test_env_override_wins_and_its_errors_name_the_key(tmp_path):
    home = tmp_path / "h"
    run_cli("init", home=home)
    bad = run_cli("runs", "list", home=home, env={"ROSTERDROP_SFTP__PORT": "not-a-port"})
    assert bad.returncode == 1 and "sftp.port" in bad.stderr
    from processor.config import load_config

    cfg = load_config(home, {"ROSTERDROP_SFTP__PORT": "2299", "ROSTERDROP_STORE__URL": "sqlite:///other.db"})
    assert cfg.sftp.port == 2299 and cfg.store_url().endswith("/h/other.db")


def test_process_json_and_exit_codes(tmp_path):
    home = tmp_path / "h"
    run_cli("init", "--tenant", "lincoln", home=home)
    with (home / "rosterdrop.toml").open("a") as f:  # init's tenant block ends with its [policy] table
        f.write("min_deactivated_count = 0\n")  # tiny tables: no floor under the percentage
    clean = make_bundle(tmp_path, CLEAN, name="clean")
    applied = run_cli("process", str(clean), "--tenant", "lincoln", "--json", home=home)
    assert applied.returncode == 0, applied.stderr
    result = json.loads(applied.stdout)
    assert set(result) >= {"run_id", "tenant", "status", "format", "source", "received_at", "counts", "issues",
                           "report"}
    assert result["status"] == "applied" and result["format"] == "oneroster-1.1" and result["source"] == "cli"
    assert Path(result["report"]).exists()
    assert run_cli("process", str(clean), "--tenant", "lincoln", home=home).returncode == 4
    held = make_bundle(tmp_path, with_changes(CLEAN, enrollments_csv=ENROLLMENTS.splitlines()[0] + "\n"), name="held")
    held_out = run_cli("process", str(held), "--tenant", "lincoln", "--json", home=home)
    assert held_out.returncode == 3
    run_id = json.loads(held_out.stdout)["run_id"]
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"nope")
    assert run_cli("process", str(bad), "--tenant", "lincoln", home=home).returncode == 2
    unknown = run_cli("process", str(clean), "--tenant", "nobody", home=home)
    assert unknown.returncode == 1 and "unknown tenant 'nobody'" in unknown.stderr
    missing = run_cli("process", str(tmp_path / "nope.zip"), "--tenant", "lincoln", home=home)
    assert missing.returncode == 1 and "does not exist" in missing.stderr

    for args in (["runs", "list"], ["runs", "show", run_id], ["holds", "list"], ["roster", "export", "--tenant",
                 "lincoln"], ["outbox", "list"]):
        out = run_cli(*args, "--json", home=home)
        assert out.returncode == 0, (args, out.stderr)
        json.loads(out.stdout)  # exactly one JSON object
    holds = json.loads(run_cli("holds", "list", "--json", home=home).stdout)["holds"]
    assert [h["run_id"] for h in holds] == [run_id]
    shown = json.loads(run_cli("runs", "show", run_id, "--json", home=home).stdout)
    assert shown["status"] == "held" and shown["issues"][0]["severity"] == "hold"
    released = run_cli("holds", "release", run_id, "--json", "--by", "ops@vendor.example", "--note", "checked",
                       home=home)
    assert released.returncode == 0 and json.loads(released.stdout)["status"] == "applied"
    assert json.loads(released.stdout)["released"]["by"] == "ops@vendor.example"
    again = run_cli("holds", "release", run_id, home=home)  # harmless: nothing changes, and it says why
    assert again.returncode == 0 and "already released by ops@vendor.example" in again.stdout
    discard = run_cli("holds", "discard", run_id, home=home)
    assert discard.returncode == 1 and "cannot be discarded" in discard.stdout
    assert run_cli("runs", "show", "nope", home=home).returncode == 1


def test_dry_run_exit_code_and_outcome(sqlite_env, capsys):
    path = sqlite_env.bundle(CLEAN)
    code = main(["--home", str(sqlite_env.home), "process", str(path), "--tenant", "lincoln", "--dry-run", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["status"] == "dry_run" and result["outcome"] == "applied"
    assert sqlite_env.export()["people"] == []


def test_tenant_passwd_from_stdin_stores_only_a_hash(tmp_path):
    home = tmp_path / "h"
    run_cli("init", "--tenant", "lincoln", home=home)
    out = run_cli("tenant", "passwd", "lincoln", home=home, stdin="correct horse battery\n")
    assert out.returncode == 0, out.stderr
    db = (home / "rosterdrop.db").read_bytes()
    assert b"correct horse battery" not in db
    short = run_cli("tenant", "passwd", "lincoln", home=home, stdin="short\n")
    assert short.returncode == 1 and "at least 8" in short.stderr


def test_catalogue_matches_contract_section_5():
    from processor.validate.issues import CATALOGUE

    if not CONTRACT.exists():
        pytest.skip("../shared/CONTRACT.md is not beside this clone")
    section = CONTRACT.read_text().split("## 5.")[1].split("## 6.")[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([a-z ,]+?) \|", section, re.M)
    assert len(rows) >= 12
    for code, severity in rows:
        assert code in CATALOGUE, code
        spec = CATALOGUE[code]
        assert spec.severity in severity, (code, spec.severity, severity)
        assert spec.fatal == ("fatal" in severity), code
    for spec in CATALOGUE.values():
        assert spec.title and spec.explanation and spec.fix
