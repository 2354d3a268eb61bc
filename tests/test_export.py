"""`roster export`: the --json document (CONTRACT section 6) as before, and the streamed forms (JSON lines
with a `kind` per record, CSV per entity) carrying the same records; progress bars only on a terminal."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import select
import struct
import termios

import pytest

from processor.apply import export
from processor.cli import main
from tests.bundles import CLEAN, USERS, with_changes

KINDS = {"school": "schools", "person": "people", "class": "classes", "enrollment": "enrollments",
         "guardian": "guardians"}


def cli(env, capsys, *args: str) -> tuple[int, str, str]:
    code = main(["--home", str(env.home), "roster", "export", "--tenant", "lincoln", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def without_pat(env):
    """The clean roster, then a drop without teacher u4: u4 and the enrollment e4 are deactivated."""
    assert env.process(CLEAN).status.value == "applied"
    users = "".join(line for line in USERS.splitlines(keepends=True) if not line.startswith("u4,"))
    enrollments = "".join(line for line in CLEAN["enrollments.csv"].splitlines(keepends=True)
                          if not line.startswith("e4,"))
    env.configure(lincoln={"max_deactivated_percent": 100, "min_deactivated_count": 100}, roosevelt={})
    assert env.process(with_changes(CLEAN, users_csv=users, enrollments_csv=enrollments)).status.value == "applied"


def test_json_is_the_contract_document(env, capsys):
    assert env.process(CLEAN).status.value == "applied"
    code, out, err = cli(env, capsys, "--json")
    doc = json.loads(out)
    assert code == 0 and err == ""
    assert list(doc) == ["tenant", "schools", "people", "classes", "enrollments", "guardians", "locks"]
    assert doc["locks"] == []
    assert doc["tenant"] == "lincoln"
    assert doc["schools"] == [
        {"sourced_id": "d1", "name": "Lincoln Unified", "identifier": "0600001", "type": "district",
         "status": "active"},
        {"sourced_id": "s1", "name": "Lincoln Elementary", "identifier": "060000100001", "type": "school",
         "status": "active"},
        {"sourced_id": "s2", "name": "Lincoln High", "identifier": "060000100002", "type": "school",
         "status": "active"}]
    assert [p["sourced_id"] for p in doc["people"]] == ["a1", "g1", "u1", "u2", "u3", "u4"]
    assert doc["people"][4] == {"sourced_id": "u3", "role": "student", "email": "jnunez@lincoln.example",
                                "given_name": "José", "family_name": "Núñez", "username": "josé", "school": "s2",
                                "schools": ["s2"], "status": "active",
                                "preferred_language": "en"}
    assert doc["classes"][1] == {"sourced_id": "k2", "title": "Algebra I - P1", "grades": ["09", "10"],
                                 "school": "s2", "status": "active"}
    assert doc["enrollments"][0] == {"sourced_id": "e1", "class": "k1", "person": "u1", "role": "teacher",
                                     "status": "active"}
    assert doc["guardians"] == [{"student": "u2", "guardian": "g1", "status": "active"},
                                {"student": "u3", "guardian": "g1", "status": "active"}]
    # --format json is the same document, and the API's export_roster is what both print
    assert json.loads(cli(env, capsys, "--format", "json")[1]) == doc == env.export()


@pytest.mark.parametrize("include_inactive", [False, True])
def test_json_is_streamed_byte_for_byte_as_the_whole_document_was(env, capsys, monkeypatch, include_inactive):
    without_pat(env)
    monkeypatch.setattr(export, "BATCH", 2)
    args = ["--all"] if include_inactive else []
    assert main(["--home", str(env.home), "roster", "lock", "--tenant", "lincoln", "--entity", "people", "--id", "u3",
                 "--field", "email", "--value", "josé@lincoln.example", "--by", "ops"]) == 0
    capsys.readouterr()
    for tenant in ("lincoln", "roosevelt"):  # roosevelt has no rows: every list is []
        whole = json.dumps(env.export(tenant, include_inactive), indent=2, ensure_ascii=False) + "\n"
        code = main(["--home", str(env.home), "roster", "export", "--tenant", tenant, "--json", *args])
        assert code == 0 and capsys.readouterr().out == whole
        assert ('"value": "josé@lincoln.example"' if tenant == "lincoln" else '"people": [],') in whole


@pytest.mark.parametrize("include_inactive", [False, True])
def test_jsonl_streams_every_record_with_its_kind(env, capsys, monkeypatch, include_inactive):
    without_pat(env)
    monkeypatch.setattr(export, "BATCH", 2)  # batch boundaries inside every section
    args = ["--format", "jsonl", *(["--all"] if include_inactive else [])]
    code, out, err = cli(env, capsys, *args)
    assert code == 0 and err == "" and out.endswith("\n")
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0] == {"kind": "roster", "tenant": "lincoln", "include_inactive": include_inactive}
    streamed: dict[str, list] = {s: [] for s in [*KINDS.values(), "locks"]}
    for line in lines[1:]:
        streamed[KINDS.get(line.pop("kind"), "locks")].append(line)
    doc = env.export(include_inactive=include_inactive)
    assert streamed == {s: doc[s] for s in streamed}
    u4 = [p for p in streamed["people"] if p["sourced_id"] == "u4"]
    assert u4 == ([{"sourced_id": "u4", "role": "teacher", "email": "pobrien@lincoln.example", "given_name": "Pat",
                    "family_name": "O'Brien", "username": "pobrien", "school": "s2", "schools": ["s2"],
                    "status": "inactive", "preferred_language": "en"}] if include_inactive else [])
    one = [json.loads(line) for line in cli(env, capsys, *args, "--entity", "enrollments")[1].splitlines()]
    assert [r["kind"] for r in one[1:]] == ["enrollment"] * len(doc["enrollments"])


def test_csv_writes_one_entity_with_a_header(env, capsys, monkeypatch):
    without_pat(env)
    monkeypatch.setattr(export, "BATCH", 2)
    code, out, err = cli(env, capsys, "--format", "csv", "--entity", "people")
    assert code == 0 and err == ""
    rows = list(csv.reader(io.StringIO(out)))
    assert tuple(rows[0]) == export.CSV_COLUMNS["people"]
    assert rows[1:] == [
        ["a1", "district_admin", "boss@lincoln.example", "Bo", "Ss", "boss", "", "", "active", "en"],  # no school
        ["g1", "guardian", "mdoe@mail.example", "Mary", "Doe", "mdoe", "s1", "s1", "active", "en"],
        ["u1", "teacher", "tmartin@lincoln.example", "Tara", "Martin", "tmartin", "s1", "s1", "active", "en"],
        ["u2", "student", "jdoe@lincoln.example", "Jane", "Doe", "jdoe", "s1", "s1", "active", "en"],
        ["u3", "student", "jnunez@lincoln.example", "José", "Núñez", "josé", "s2", "s2", "active", "en"]]
    code, out, _ = cli(env, capsys, "--format", "csv", "--entity", "classes", "--all")
    assert list(csv.DictReader(io.StringIO(out)))[1]["grades"] == "09,10"  # a list is one cell, as in OneRoster
    assert '"09,10"' in out
    code, out, _ = cli(env, capsys, "--format", "csv", "--entity", "enrollments", "--all")
    assert [(r["sourced_id"], r["status"]) for r in csv.DictReader(io.StringIO(out))] == [
        ("e1", "active"), ("e2", "active"), ("e3", "active"), ("e4", "inactive")]


def test_csv_without_an_entity_is_a_usage_error(sqlite_env, capsys):
    code, out, err = cli(sqlite_env, capsys, "--format", "csv", "--json")
    assert code == 1
    assert json.loads(out) == {"error": "--format csv writes one entity: add --entity "
                                        "schools|people|classes|enrollments|guardians"}
    assert err.count("\n") == 1 and "--entity" in err
    code, out, err = cli(sqlite_env, capsys, "--json", "--entity", "people")
    assert code == 1 and "--entity goes with --format jsonl or --format csv" in json.loads(out)["error"]


def test_text_summary_counts_the_rows(env, capsys):
    without_pat(env)
    code, out, _ = cli(env, capsys)
    assert code == 0 and out.splitlines()[:4] == ["schools: 3", "people: 5", "classes: 2", "enrollments: 3"]
    assert cli(env, capsys, "--all")[1].splitlines()[1] == "people: 6"


def _on_a_terminal(monkeypatch):
    """stderr becomes a real pseudo-terminal; returns a function reading what was drawn on it."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a size
    tty = os.fdopen(slave, "w", buffering=1)
    monkeypatch.setattr("sys.stderr", tty)
    os.set_blocking(master, False)

    def drawn() -> str:
        tty.flush()
        chunks = []
        # the terminal hands written bytes to its master side asynchronously: read until it goes quiet
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunks.append(os.read(master, 65536))
            except (BlockingIOError, OSError):
                break
        return b"".join(chunks).decode(errors="replace")

    return drawn


def test_progress_on_a_terminal_only_and_never_on_stdout(sqlite_env, capsys, monkeypatch, tmp_path):
    pytest.importorskip("tqdm")
    assert sqlite_env.process(CLEAN).status.value == "applied"
    out = tmp_path / "d.zip"
    gen = ["--home", str(sqlite_env.home), "generate", "--out", str(out), "--schools", "1", "--students", "20",
           "--json"]
    assert main(gen) == 0
    piped = capsys.readouterr()
    assert json.loads(piped.out)["students"] == 20 and piped.err == ""  # not a terminal: no bar

    drawn = _on_a_terminal(monkeypatch)
    assert main(gen) == 0
    assert json.loads(capsys.readouterr().out)["students"] == 20  # stdout is the JSON alone
    assert "generate" in drawn()
    code, lines, _ = cli(sqlite_env, capsys, "--format", "jsonl")
    assert code == 0 and all(json.loads(line)["kind"] for line in lines.splitlines())
    assert "export lincoln" in drawn()
