"""Properties over generated rosters, and a fuzz run over mutated bundles."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import zipfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.apply.writer import revert_run
from processor.bundle.read import read_bundle
from processor.config import Policy
from processor.validate.run import validate
from tests.bundles import CLEAN, make_bundle

HEADERS = {name: text.splitlines()[0].split(",") for name, text in CLEAN.items()}

# Names as real SIS exports have them: accents, apostrophes, commas, quotes, hyphens.
name_text = st.text(alphabet=st.sampled_from(list("abcdefghijklmnopqrstuvwxyzÁÉéíñøüç' -,\"")),
                    min_size=1, max_size=12).map(str.strip).filter(bool)


@st.composite
def rosters(draw, pool: int = 12):
    """A valid OneRoster bundle: every reference resolves; ids drawn from a small pool so two rosters overlap."""
    n_schools = draw(st.integers(1, 3))
    schools = [f"s{i}" for i in range(n_schools)]
    people = draw(st.lists(st.tuples(st.integers(0, pool), st.sampled_from(["student", "teacher", "parent"]),
                                      st.sampled_from(schools), name_text, name_text),
                           unique_by=lambda t: t[0], min_size=1, max_size=pool))
    classes = draw(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(schools), name_text),
                            unique_by=lambda t: t[0], min_size=1, max_size=5))
    students = [p for p in people if p[1] == "student"]
    parents = [p for p in people if p[1] == "parent"]
    rows = {n: [] for n in HEADERS}
    rows["orgs.csv"].append(["d", "active", "", "District", "district", "", ""])
    rows["orgs.csv"] += [[s, "active", "", f"School {s}", "school", f"0{i}", "d"] for i, s in enumerate(schools)]
    rows["academicSessions.csv"].append(["y", "active", "", "Year", "schoolYear", "2026-08-01", "2027-06-30", "", "2027"])
    rows["courses.csv"] += [[f"c{s}", "active", "", "y", "Course", "", "", s, "", ""] for s in schools]
    for cid, school, title in classes:
        rows["classes.csv"].append([f"k{cid}", "active", "", title, "05", f"c{school}", "", "scheduled", "", school,
                                    "y", "", "", ""])
    for pid, role, school, first, family in people:
        agents = ""
        if role == "student" and parents:
            agents = ",".join(f"p{p[0]}" for p in parents[: draw(st.integers(0, min(2, len(parents))))])
        rows["users.csv"].append([f"p{pid}", "active", "", "true", school, role, f"user{pid}", "", first, family, "",
                                  f"00{pid}", f"user{pid}@example.org", "", "", agents, "", "", ""])
    for pid, role, _school, *_ in students + [p for p in people if p[1] == "teacher"]:
        for cid, cschool, _ in classes:
            if draw(st.booleans()):
                rows["enrollments.csv"].append([f"e{pid}-{cid}", "active", "", f"k{cid}", cschool, f"p{pid}",
                                                role, "false", "", ""])
    return {name: _csv(HEADERS[name], r) for name, r in rows.items()}


def _csv(header: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=rosters())
def test_any_valid_roster_has_no_errors(tmp_path_factory, files):
    path = make_bundle(tmp_path_factory.mktemp("prop"), files)
    validation = validate(read_bundle(path), Policy())
    errors = validation.issues[validation.issues["severity"].ne("alert")]
    assert errors.empty, errors.to_dict("records")


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=rosters(), b=rosters())
def test_bulk_a_then_b_leaves_exactly_b_and_the_audit_log_reverts_to_a(sqlite_env, a, b):
    env = sqlite_env
    env.configure(lincoln={"max_deactivated_percent": 100, "max_guardians_per_student": 100})
    with env.ctx.engine.begin() as conn:  # each example starts from an empty roster
        for t in ("orgs", "academic_sessions", "courses", "classes", "people", "enrollments", "guardian_links",
                  "audit", "runs", "roster_snapshots"):
            conn.exec_driver_sql(f"DELETE FROM {t}")
    first = env.process(a)
    assert first.status == "applied", [i.message for i in first.issues]
    after_a = env.export(include_inactive=True)
    second = env.process(b)
    if second.status == "held":  # e.g. a school vanished: releasing applies it as sent
        from processor.pipeline import release_hold

        second = release_hold(env.ctx, second.run_id)
    assert second.status in ("applied", "duplicate")
    if second.status == "duplicate":
        return
    roster = env.export()
    expected_people = {r[0] for r in csv.reader(io.StringIO(b["users.csv"]))} - {"sourcedId"}
    assert {p["sourced_id"] for p in roster["people"]} == expected_people
    expected_enr = {r[0] for r in csv.reader(io.StringIO(b["enrollments.csv"]))} - {"sourcedId"}
    assert {e["sourced_id"] for e in roster["enrollments"]} == expected_enr
    names = {r[0]: r[8] for r in csv.reader(io.StringIO(b["users.csv"]))}
    assert all(p["given_name"] == names[p["sourced_id"]] for p in roster["people"])
    with env.ctx.engine.begin() as conn:
        revert_run(conn, "lincoln", second.run_id)
    assert env.export(include_inactive=True) == after_a


def _mutations(rng: random.Random, files: dict[str, bytes]) -> dict[str, bytes] | bytes:
    kind = rng.choice(["truncate_zip", "flip_zip", "truncate_file", "flip_file", "drop_column", "shuffle_rows",
                       "drop_file", "duplicate_rows", "garbage_file", "blank_cells"])
    blob = _zip(files)
    if kind == "truncate_zip":
        return blob[: rng.randrange(len(blob))]
    if kind == "flip_zip":
        b = bytearray(blob)
        for _ in range(rng.randint(1, 20)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    out = dict(files)
    name = rng.choice(sorted(out))
    data = out[name]
    lines = data.split(b"\n")
    if kind == "truncate_file":
        out[name] = data[: rng.randrange(len(data) + 1)]
    elif kind == "flip_file":
        b = bytearray(data)
        for _ in range(rng.randint(1, 10)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        out[name] = bytes(b)
    elif kind == "drop_column":
        col = rng.randrange(len(lines[0].split(b",")))
        out[name] = b"\n".join(b",".join(p for i, p in enumerate(line.split(b",")) if i != col) for line in lines)
    elif kind == "shuffle_rows":
        body = lines[1:]
        rng.shuffle(body)
        out[name] = b"\n".join([lines[0], *body])
    elif kind == "drop_file":
        del out[name]
    elif kind == "duplicate_rows":
        out[name] = data + b"\n".join(rng.sample(lines[1:], min(2, len(lines) - 1)))
    elif kind == "garbage_file":
        out[name] = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
    else:
        out[name] = b"\n".join(line.replace(b",", b",,", 1) if rng.random() < 0.3 else line for line in lines)
    return out


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, v in files.items():
            zf.writestr(n, v)
    return buf.getvalue()


def test_fuzz_mutated_bundles_never_raise_and_end_in_a_run_result(sqlite_env, capsys):
    """Every mutated bundle goes through the stages that read input (unpack, read, validate, convert);
    every fifth also through `rosterdrop process --dry-run --json`, end to end. 120 cases by default (~40 s
    on a 2-core machine; the suite must stay within its time budget); ROSTERDROP_FUZZ_CASES=5000 for a
    deeper run."""
    from processor.cli import main
    from processor.convert.roster import convert
    from processor.validate.current import NO_ROSTER

    rng = random.Random(20261123)
    base = {n: v.encode() for n, v in CLEAN.items()}
    statuses: dict[str, int] = {}
    fatal = 0
    cases = int(os.environ.get("ROSTERDROP_FUZZ_CASES", "120"))
    for i in range(cases):
        mutated = _mutations(rng, base)
        path = sqlite_env.tmp / f"fuzz{i}.zip"
        path.write_bytes(mutated if isinstance(mutated, bytes) else _zip(mutated))
        bundle = read_bundle(path)
        validation = validate(bundle, Policy())
        if validation.fatal:
            fatal += 1
            assert validation.issues["code"].isin(["bad_bundle", "missing_file", "missing_column"]).any()
        else:
            convert(bundle, validation, Policy(), NO_ROSTER)
        if i % 5:
            continue
        code = main(["--home", str(sqlite_env.home), "process", str(path), "--tenant", "lincoln", "--dry-run",
                     "--json"])
        out = capsys.readouterr()
        assert "Traceback" not in out.err, out.err
        result = json.loads(out.out)  # exactly one JSON object on stdout
        assert code in (0, 2, 4), (i, code, result)
        assert result["status"] in ("dry_run", "duplicate")
        outcome = result.get("outcome", result["status"])
        statuses[outcome] = statuses.get(outcome, 0) + 1
    # The mutations exercise both the rejecting and the row-level paths.
    assert cases // 10 < fatal < cases * 9 // 10
    assert statuses.get("applied", 0) > cases // 25 and statuses.get("rejected", 0) > cases // 50


NO_HOLDS = {"max_deactivated_percent": 100, "max_guardians_per_student": 100, "max_rejected_percent": 100,
            "max_updated_percent": 100, "max_deactivated_percent_per_school": 100}


def _break_rows(data, csv_text: str, breaks: list) -> tuple[str, set[str]]:
    """Some rows of a file given a row error each (a blank required value, an invalid enum); their ids."""
    rows = list(csv.reader(io.StringIO(csv_text)))
    header, body = rows[0], rows[1:]
    broken = set()
    for i in data.draw(st.lists(st.integers(0, max(len(body) - 1, 0)), max_size=3, unique=True)) if body else []:
        column, value = data.draw(st.sampled_from(breaks))
        body[i][header.index(column)] = value
        broken.add(body[i][0])
    return _csv(header, body), broken


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=rosters(), b=rosters(), data=st.data())
def test_a_row_rejected_in_b_leaves_its_record_as_a_stored_it(sqlite_env, a, b, data):
    """Last-known-good (CONTRACT.md section 7): for any roster A and any drop B with random row errors, every
    record whose row in B was rejected is unchanged from A after B, and so are its enrollments and links."""
    env = sqlite_env
    env.configure(lincoln=NO_HOLDS)
    with env.ctx.engine.begin() as conn:
        for t in ("orgs", "academic_sessions", "courses", "classes", "people", "enrollments", "guardian_links",
                  "audit", "runs", "roster_snapshots", "outbox"):
            conn.exec_driver_sql(f"DELETE FROM {t}")
    assert env.process(a).status == "applied"
    before = env.export(include_inactive=True)
    b = dict(b)
    b["users.csv"], _ = _break_rows(data, b["users.csv"], [("givenName", ""), ("role", "studnet"),
                                                            ("orgSourcedIds", "nowhere")])
    b["enrollments.csv"], _ = _break_rows(data, b["enrollments.csv"], [("role", "pupil"), ("classSourcedId", "")])
    second = env.process(b)
    if second.status == "held":  # a school vanished: releasing applies it as sent (and keeps the same rows)
        from processor.pipeline import release_hold

        second = release_hold(env.ctx, second.run_id)
    assert second.status in ("applied", "duplicate")
    after = env.export(include_inactive=True)
    rejected = {(i.file, i.sourced_id) for i in second.issues if i.severity == "error" and i.sourced_id}
    people = {sid for f, sid in rejected if f == "users.csv"}
    enrolled = {sid for f, sid in rejected if f == "enrollments.csv"}
    by_id = {k: {r["sourced_id"]: r for r in after[k]} for k in ("people", "enrollments")}
    for p in before["people"]:
        if p["sourced_id"] in people:
            assert by_id["people"].get(p["sourced_id"]) == p
    for e in before["enrollments"]:
        if e["sourced_id"] in enrolled or e["person"] in people:
            assert by_id["enrollments"].get(e["sourced_id"]) == e
    links_after = {(g["student"], g["guardian"]): g for g in after["guardians"]}
    for g in before["guardians"]:
        if g["student"] in people or g["guardian"] in people:
            assert links_after.get((g["student"], g["guardian"])) == g
    assert second.counts["users"].rejected == len(people)
