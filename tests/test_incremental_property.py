"""Property: an incremental nightly (convert.incremental) gives exactly what the full recomputation gives.

Two tenants of one store get the same random drops A → B → C ...: tenant `lincoln` with the incremental
path, tenant `roosevelt` with ROSTERDROP_INCREMENTAL=0. After every step both must agree on the run's status,
counts and issues, the stored roster, the change events and the audit log (run ids and tenant names aside).
Steps edit, add and delete rows, reject rows (and what depends on them), change org types, manifests'
modes, line endings, BOMs, quoted newlines, columns, the policy; holds are released, runs reverted and
fields locked in between. Seeded: a failure names its seed, and the same seed replays it.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import os
import random
import textwrap
import zipfile

import pytest
from sqlalchemy import select

from processor import events
from processor.apply.locks import lock_field
from processor.apply.store import ENTITY_TABLES, audit
from processor.pipeline import release_hold
from processor.runs import RunStatus
from processor.status import revert
from tests.conftest import write_config

INC, FULL = "lincoln", "roosevelt"
HEAD = {
    "orgs.csv": "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId",
    "academicSessions.csv": "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,"
                            "schoolYear",
    "courses.csv": "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId",
    "classes.csv": "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,"
                   "schoolSourcedId,termSourcedIds",
    "users.csv": "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,givenName,familyName,"
                 "identifier,email,agentSourcedIds,grades,password",
    "enrollments.csv": "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,"
                       "primary,beginDate,endDate",
    "demographics.csv": "sourcedId,status,dateLastModified,birthDate,sex",
}
NAMES = ["Ana", "Bo", "José", "Núñez", "O'Brien", "Lee, Jr.", 'Al "Sonny"', "Zoë", "Line\nBreak"]


def _roster(rng: random.Random) -> dict[str, list[list[str]]]:
    schools = [f"s{i}" for i in range(rng.randint(2, 3))]
    rows: dict[str, list[list[str]]] = {n: [] for n in HEAD}
    rows["orgs.csv"] = [["d", "active", "", "District", "district", "D", ""]] + [
        [s, "active", "", f"School {s}", "school", f"I{s}", "d"] for s in schools]
    rows["academicSessions.csv"] = [["y", "active", "", "Year", "schoolYear", "2026-08-01", "2027-06-30", "", "2027"]]
    rows["courses.csv"] = [[f"c{s}", "active", "", "y", "Course", f"C{s}", "05", s] for s in schools]
    rows["classes.csv"] = [[f"k{i}", "active", "", f"Class {i}", "05", f"c{s}", f"K{i}", "scheduled", s, "y"]
                           for i, s in enumerate(rng.choice(schools) for _ in range(rng.randint(3, 5)))]
    n = rng.randint(6, 12)
    for i in range(n):
        _add_person(rng, rows, f"p{i}", rng.choice(["student"] * 3 + ["teacher", "parent"]), schools)
    return rows


def _add_person(rng: random.Random, rows, pid: str, role: str, schools: list[str]) -> None:
    school = rng.choice(schools)
    parents = [r[0] for r in rows["users.csv"] if r[5] == "parent"]
    agents = ",".join(rng.sample(parents, rng.randint(0, min(2, len(parents))))) if role == "student" else ""
    rows["users.csv"].append([pid, "active", "", "true", school, role, f"u{pid}", rng.choice(NAMES),
                              rng.choice(NAMES), f"ID{pid}", f"{pid}@example.org", agents,
                              "05" if role == "student" else "", ""])
    if role in ("student", "teacher"):
        for k in rng.sample(rows["classes.csv"], rng.randint(0, len(rows["classes.csv"]))):
            rows["enrollments.csv"].append([f"e{pid}{k[0]}", "active", "", k[0], k[8], pid, role,
                                            rng.choice(["true", "false"]), "", ""])
    if role == "student" and rng.random() < 0.7:
        rows["demographics.csv"].append([pid, "active", "", f"2016-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
                                         rng.choice(["male", "female", "other"])])


def _mutate(rng: random.Random, rows) -> dict:
    """Edit rows in place; returns the step's extras: manifest modes, encodings, policy."""
    rows = rows  # edited in place
    schools = [r[0] for r in rows["orgs.csv"] if r[4] == "school"] or ["s0"]
    extras: dict = {}
    for _ in range(rng.randint(1, 6)):
        what = rng.randrange(14)
        users, enr = rows["users.csv"], rows["enrollments.csv"]
        if what == 0 and users:  # an edit
            r = rng.choice(users)
            r[rng.choice([7, 8, 10])] = rng.choice(NAMES + ["shared@example.org"])
        elif what == 1 and users:  # a person leaves (their enrollments may stay behind: rejected)
            r = users.pop(rng.randrange(len(users)))
            if rng.random() < 0.5:
                rows["enrollments.csv"] = [e for e in enr if e[5] != r[0]]
        elif what == 2:
            _add_person(rng, rows, f"n{rng.randrange(10**6)}", rng.choice(["student", "teacher", "parent"]), schools)
        elif what == 3 and enr:  # an enrollment deleted, or marked for deletion
            if rng.random() < 0.5:
                enr.pop(rng.randrange(len(enr)))
            else:
                rng.choice(enr)[1] = "tobedeleted"
        elif what == 4 and rows["classes.csv"]:  # a class rejected: its enrollments with it
            rng.choice(rows["classes.csv"])[5] = "no-such-course"
        elif what == 5:  # an org's type changes: people's schools change with it
            r = rng.choice(rows["orgs.csv"][1:])
            r[4] = "department" if r[4] == "school" else "school"
        elif what == 6 and enr:
            r = rng.choice(enr)
            r[6] = rng.choice(["student", "teacher", "aide"])
            r[7] = rng.choice(["true", "false"])
        elif what == 7 and users:  # a row rejected: its stored record is kept
            rng.choice(users)[5] = rng.choice(["wizard", "student", "guardian"])
        elif what == 8 and users:  # guardian links
            r = rng.choice(users)
            r[11] = ",".join(rng.sample([u[0] for u in users], min(2, len(users))))
        elif what == 9 and users:  # only the date changes (nothing to report)
            rng.choice(users)[2] = "2026-12-0" + str(rng.randint(1, 9))
        elif what == 10:
            extras.setdefault("modes", {})[rng.choice(["users", "enrollments", "demographics", "classes"])] = \
                rng.choice(["bulk", "delta", "absent"])
        elif what == 11:
            extras.setdefault("crlf", set()).add(rng.choice(list(HEAD)))
            if rng.random() < 0.5:
                extras.setdefault("bom", set()).add(rng.choice(list(HEAD)))
        elif what == 12 and users:  # a person marked for deletion
            rng.choice(users)[1] = "tobedeleted"
        elif what == 13:
            extras["policy"] = rng.choice([
                {}, {"exclude_roles": ["guardian"]}, {"role_map": {"aide": "teacher"}},
                {"students_need_enrollment": True}, {"single_school": True}, {"max_guardians_per_student": 1}])
    return extras


def _files(rows, extras) -> dict[str, bytes]:
    files = {}
    modes = extras.get("modes", {})
    for name, head in HEAD.items():
        entity = name.removesuffix(".csv")
        if modes.get(entity) == "absent":
            continue
        body = rows[name]
        if modes.get(entity) == "delta":
            body = body[: max(1, len(body) // 2)]
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\r\n" if name in extras.get("crlf", ()) else "\n")
        w.writerow(head.split(","))
        w.writerows(body)
        data = out.getvalue().encode("utf-8")
        files[name] = (b"\xef\xbb\xbf" + data) if name in extras.get("bom", ()) else data
    if modes:
        lines = ["propertyName,value", "oneroster.version,1.1"]
        lines += [f"file.{e},{modes.get(e, 'bulk')}" for e in
                  ("academicSessions", "orgs", "courses", "classes", "users", "enrollments", "demographics")]
        files["manifest.csv"] = ("\n".join(lines) + "\n").encode()
    return files


_DROPS = itertools.count()


def as_zip(env, files: dict[str, str | bytes]):
    """The files as a zip whose bytes differ from every other drop's (a zip comment): the same roster sent
    twice is a nightly like any other, not the duplicate upload of one file."""
    n = next(_DROPS)
    path = env.tmp / "drops" / f"inc{n}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.comment = f"drop {n}".encode()
        for name, data in files.items():
            zf.writestr(name, data if isinstance(data, bytes) else textwrap.dedent(data).encode("utf-8"))
    return path


def _configure(env, policy: dict) -> None:
    base = {"min_deactivated_count": 2, "max_deactivated_percent": 40, "min_rejected_count": 3}
    write_config(env.home, {INC: {**base, **policy}, FULL: {**base, **policy}}, env.store_url)
    env.__dict__.pop("ctx", None)


def _process(env, monkeypatch, files, tenant):
    monkeypatch.setenv("ROSTERDROP_INCREMENTAL", "1" if tenant == INC else "0")
    result = env.process(as_zip(env, files), tenant=tenant)
    if result.status == RunStatus.HELD:  # released, as an operator would
        result = release_hold(env.ctx, result.run_id, by="test")
    return result


def _issues(result) -> list[tuple]:
    return sorted(((i.severity, i.code, i.file, i.line, i.sourced_id, i.field, i.value, i.count,
                    i.message.replace(INC, "T").replace(FULL, "T")) for i in result.issues),
                  key=lambda t: tuple("" if v is None else str(v) for v in t))


def _run_ids(env, tenant) -> dict[str, str]:
    from processor.apply.store import runs

    with env.ctx.engine.connect() as conn:
        ids = conn.execute(select(runs.c.run_id).where(runs.c.tenant == tenant).order_by(runs.c.received_at)
                           ).scalars().all()
    return {r: f"RUN{i}" for i, r in enumerate(ids)}


def _norm(text, ids: dict[str, str]) -> str:
    text = "" if text is None else str(text)
    for r, n in ids.items():
        text = text.replace(r, n)
    return text


def _state(env, tenant) -> dict:
    """The tenant's stored roster, events and audit, with its run ids replaced by their order."""
    ids = _run_ids(env, tenant)
    out = {}
    with env.ctx.engine.connect() as conn:
        for table, t in ENTITY_TABLES.items():
            cols = [c for c in t.columns if c.name != "tenant"]
            rows = conn.execute(select(*cols).where(t.c.tenant == tenant)).all()
            out[table] = sorted(tuple(_norm(v, ids) for v in r) for r in rows)
        a = audit.c
        out["audit"] = sorted((_norm(r.run_id, ids), r.entity, r.sourced_id, r.action,
                               json.loads(_norm(r.before, ids)) if r.before else None,
                               json.loads(_norm(r.after, ids)) if r.after else None)
                              for r in conn.execute(select(a.run_id, a.entity, a.sourced_id, a.action, a.before,
                                                           a.after).where(a.tenant == tenant)).all())
    page = events.read_events(env.ctx.engine, tenant, 0, 100_000)
    out["events"] = [(e["id"], _norm(e.get("run_id"), ids), e["type"], e.get("sourced_id"), e.get("changed"))
                     for e in (ev if isinstance(ev, dict) else ev.model_dump() for ev in page.events)]
    return out


def _same_results(a, b) -> None:
    assert a.status == b.status
    assert {k: v.model_dump() for k, v in a.counts.items()} == {k: v.model_dump() for k, v in b.counts.items()}
    assert _issues(a) == _issues(b)


# 5 seeds × 2 engines keep CI inside its budget (~5 s each); the sabotage checks of the dependency rules
# failed on seeds 1, 3 and 4 of the first twelve. ROSTERDROP_PROPERTY_SEEDS=50 for a deeper search.
SEEDS = range(int(os.environ.get("ROSTERDROP_PROPERTY_SEEDS", "5")))


@pytest.mark.parametrize("seed", SEEDS)
def test_incremental_nightlies_equal_full_recomputation(env, monkeypatch, caplog, seed):
    rng = random.Random(seed)
    rows = _roster(rng)
    _configure(env, {})
    skipped = 0
    caplog.set_level(logging.INFO, logger="rosterdrop.pipeline")
    for step in range(5):
        extras = _mutate(rng, rows) if step else {}
        if "policy" in extras:
            _configure(env, extras["policy"])
        files = _files(rows, extras)
        caplog.clear()
        inc = _process(env, monkeypatch, files, INC)
        skipped += sum(int(r.getMessage().split(" rows ")[0].rsplit(" ", 1)[1]) for r in caplog.records
                       if "not converted again" in r.getMessage())
        full = _process(env, monkeypatch, files, FULL)
        context = f"seed {seed} step {step}"
        try:
            _same_results(inc, full)
            assert _state(env, INC) == _state(env, FULL)
        except AssertionError as exc:
            raise AssertionError(f"{context}: {exc}") from exc
        between = rng.random()
        if between < 0.15 and inc.status == RunStatus.APPLIED:
            revert(env.ctx, inc.run_id)
            revert(env.ctx, full.run_id)
        elif between < 0.3:
            people = [r[0] for r in rows["users.csv"]]
            with env.ctx.engine.connect() as conn:
                t = ENTITY_TABLES["people"]
                stored = set(conn.execute(select(t.c.sourced_id).where(t.c.tenant == INC)).scalars())
            target = next((p for p in people if p in stored), None)
            if target:
                for tenant in (INC, FULL):
                    lock_field(env.ctx.engine, tenant, "people", target, "given_name", "Locked", by="test")
    # The property says nothing if the incremental tenant never skipped a row.
    assert skipped > 0
