"""Progress of a long run: a bar per stage for `process` and `holds release` on a terminal (never on a pipe or
with --json), and for a big run, wherever it runs, one INFO line at each stage's start and end, with no roster
value in them."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pty
import re
import select
import sqlite3
import struct
import subprocess
import sys
import termios
import zipfile
from pathlib import Path

from processor import progress
from processor.apply.store import ENTITY_TABLES
from tests.bundles import CLEAN, ENROLLMENTS, make_bundle, with_changes

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
STAGES = ["read", "validate", "convert", "diff", "holds", "apply", "report"]


def _cli(home: Path, *args: str, tty: bool) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal (tty) or a pipe; stdout is always a pipe.
    Returns (exit code, stdout, what stderr showed)."""
    cmd = [sys.executable, "-m", "processor", "--home", str(home), *args]
    env = {**os.environ, "COLUMNS": "100"}
    if not tty:
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
        return p.returncode, p.stdout, p.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
    os.close(slave)
    shown = b""
    while True:  # drain the terminal while the command runs (a full pty buffer would block it)
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                chunk = b""
            if not chunk:
                break
            shown += chunk
        elif p.poll() is not None:
            break
    os.close(master)
    out = p.stdout.read().decode()
    p.stdout.close()
    return p.wait(timeout=60), out, shown.decode(errors="replace")


def _lines(shown: str) -> list[str]:
    """What a terminal ends up showing, line by line: each carriage-return redraw replaces the line."""
    return [ANSI.sub("", line.split("\r")[-1] if line.split("\r")[-1].strip() else line).strip()
            for line in re.split(r"\n", shown.replace("\r\n", "\n")) if line.strip()]


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    subprocess.run([sys.executable, "-m", "processor", "--home", str(home), "init", "--tenant", "lincoln"],
                   check=True, capture_output=True, cwd=ROOT)
    with (home / "rosterdrop.toml").open("a") as f:  # init's tenant block ends with its [policy] table
        f.write("min_deactivated_count = 0\n")
    return home


def test_process_on_a_terminal_shows_a_bar_per_stage_and_the_rows_the_apply_wrote(tmp_path):
    home = _home(tmp_path)
    code, out, shown = _cli(home, "process", str(make_bundle(tmp_path, CLEAN)), "--tenant", "lincoln", tty=True)
    assert code == 0, shown
    lines = _lines(shown)
    stage_lines = [line for line in lines if re.match(r"^(\w+): ", line) and line.split(":")[0] in STAGES]
    assert [line.split(":")[0] for line in stage_lines] == STAGES  # each stage once, in order, left on screen
    apply = next(line for line in stage_lines if line.startswith("apply:"))
    # The apply counts the roster rows it writes: every row this first load stored.
    done = re.search(r"100%\|.*\| ([\d.]+)/([\d.]+) \[", apply)
    assert done and done.group(1) == done.group(2), apply
    with sqlite3.connect(home / "rosterdrop.db") as db:
        stored = sum(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ENTITY_TABLES)
    assert float(done.group(1)) == stored > 0
    assert "read:" not in out and "|" not in out.splitlines()[0]  # the bars are on stderr, never on stdout


def test_json_on_a_terminal_and_a_pipe_show_no_bar(tmp_path):
    home = _home(tmp_path)
    code, out, shown = _cli(home, "process", str(make_bundle(tmp_path, CLEAN)), "--tenant", "lincoln", "--json",
                            tty=True)
    assert code == 0 and json.loads(out)["status"] == "applied"
    assert not any(line.split(":")[0] in STAGES for line in _lines(shown)), shown
    changed = make_bundle(tmp_path, with_changes(CLEAN, users_csv=CLEAN["users.csv"].replace("Tara", "Tera")),
                          name="changed")
    code, out, err = _cli(home, "process", str(changed), "--tenant", "lincoln", tty=False)
    assert code == 0
    assert not any(line.split(":")[0] in STAGES for line in err.splitlines()), err


def test_holds_release_on_a_terminal_shows_its_stages(tmp_path):
    home = _home(tmp_path)
    assert _cli(home, "process", str(make_bundle(tmp_path, CLEAN)), "--tenant", "lincoln", "--json", tty=False)[0] == 0
    held = make_bundle(tmp_path, with_changes(CLEAN, enrollments_csv=ENROLLMENTS.splitlines()[0] + "\n"), name="held")
    code, out, _ = _cli(home, "process", str(held), "--tenant", "lincoln", "--json", tty=False)
    assert code == 3
    run_id = json.loads(out)["run_id"]
    code, out, shown = _cli(home, "holds", "release", run_id, tty=True)
    assert code == 0, shown
    stages = [line.split(":")[0] for line in _lines(shown) if line.split(":")[0] in STAGES]
    assert stages == STAGES
    apply = next(line for line in _lines(shown) if line.startswith("apply:"))
    done = re.search(r"100%\|.*\| ([\d.]+)/([\d.]+) \[", apply)
    assert done and float(done.group(1)) == float(done.group(2)) == 4, apply  # the 4 enrollments it deactivates


def _stage_records(caplog, run_id: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "rosterdrop.pipeline" and r.getMessage().startswith(f"run {run_id} tenant ")
            and (" started" in r.getMessage() or " done in " in r.getMessage())]


def test_a_big_run_logs_each_stage_start_and_end_at_info_without_roster_values(env, caplog, monkeypatch):
    monkeypatch.setattr(progress, "BIG_RUN_BYTES", 1_000)  # CLEAN is ~1.9 kB: "big" for this test
    caplog.set_level(logging.INFO, logger="rosterdrop")
    result = env.process(CLEAN)
    assert result.status == "applied"
    lines = _stage_records(caplog, result.run_id)
    expected = []
    for stage in STAGES:
        expected += [f"run {result.run_id} tenant lincoln: {stage} started",
                     f"run {result.run_id} tenant lincoln: {stage} done in"]
    assert [line if line.endswith("started") else line.rsplit(" in ", 1)[0] + " in" for line in lines] == expected
    assert all(re.search(r" done in \d+\.\d s$", line) for line in lines if " done in " in line)
    assert all(r.levelno == logging.INFO for r in caplog.records if r.getMessage() in lines)
    everything = "\n".join(r.getMessage() for r in caplog.records)
    for value in ("Tara", "Martin", "tmartin", "lincoln.example", "Núñez", "José", "000123", "Lincoln High"):
        assert value not in everything


def test_a_small_run_logs_only_its_outcome(env, caplog):
    caplog.set_level(logging.INFO, logger="rosterdrop")
    result = env.process(CLEAN)
    assert result.status == "applied"
    assert _stage_records(caplog, result.run_id) == []
    assert any(f"run {result.run_id} tenant lincoln: applied" in r.getMessage() for r in caplog.records)


def test_big_is_the_uncompressed_size_of_the_drops_files(tmp_path):
    # 60,000 rows of users.csv (~6 MB) compress to a small zip; the size that counts is the CSV's.
    head, row = CLEAN["users.csv"].splitlines()[:2]
    users = head + "\n" + "".join(row.replace("u1,", f"u{i},", 1) + "\n" for i in range(60_000))
    path = make_bundle(tmp_path, {**CLEAN, "users.csv": users})
    assert path.stat().st_size < 1_000_000
    with zipfile.ZipFile(path) as zf:
        assert progress.bundle_bytes(path) == sum(i.file_size for i in zf.infolist())
    assert progress.bundle_bytes(path) >= progress.BIG_RUN_BYTES
    folder = make_bundle(tmp_path, CLEAN, as_zip=False, name="folder")
    assert progress.bundle_bytes(folder) == sum(len(v.encode()) for v in CLEAN.values())
    assert progress.bundle_bytes(tmp_path / "missing.zip") == 0
