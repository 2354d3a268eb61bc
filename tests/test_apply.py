"""Convert, diff, holds and apply, on SQLite and (when configured) PostgreSQL: drops in, roster out."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from sqlalchemy import func, select, text

from processor.apply.store import audit, runs
from processor.pipeline import discard_hold, release_hold
from tests.bundles import CLEAN, ENROLLMENTS, USERS, with_changes
from tests.conftest import issue_rows

DELTA_MANIFEST = ("propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\nfile.orgs,absent\n"
                  "file.classes,absent\nfile.users,delta\nfile.enrollments,delta\nfile.courses,absent\n"
                  "file.academicSessions,absent\n")
USERS_HEADER = USERS.splitlines()[0] + "\n"
ENR_HEADER = ENROLLMENTS.splitlines()[0] + "\n"
# These bundles are tiny: without a floor, removing 2 of 4 enrollments is a mass deactivation.
SMALL = {"min_deactivated_count": 0}


def people(env, include_inactive=False) -> dict[str, dict]:
    return {p["sourced_id"]: p for p in env.export(include_inactive=include_inactive)["people"]}


def drop_lines(csv: str, *prefixes: str) -> str:
    return "\n".join(line for line in csv.splitlines() if not line.startswith(prefixes)) + "\n"


def test_first_load_converts_roles_schools_and_guardians(env):
    env.configure(lincoln={"role_overrides": [
        {"column": "metadata.MembeanSchoolAdmin", "value": "true", "role": "school_admin"}]})
    result = env.process(CLEAN)
    assert result.status == "applied"
    p = people(env)
    assert {k: v["role"] for k, v in p.items()} == {
        "u1": "teacher", "u2": "student", "u3": "student", "u4": "school_admin",  # metadata override: TRUE
        "g1": "guardian", "a1": "district_admin"}  # a 1.2 role value in a 1.1 file
    assert p["u2"]["school"] == "s1" and p["u2"]["schools"] == ["s1"]
    assert p["a1"]["school"] is None and p["a1"]["schools"] == []
    roster = env.export()
    assert {(g["student"], g["guardian"]) for g in roster["guardians"]} == {("u2", "g1"), ("u3", "g1")}
    assert {s["sourced_id"] for s in roster["schools"]} == {"d1", "s1", "s2"}
    assert {c["sourced_id"]: c["grades"] for c in roster["classes"]} == {"k1": ["03"], "k2": ["09", "10"]}


def test_role_map_overrides_defaults_and_highest_privilege_wins(env):
    env.configure(lincoln={"role_map": {"teacher": "staff"}, "role_overrides": [
        {"column": "metadata.MembeanSchoolAdmin", "value": "true", "role": "school_admin"},
        {"column": "metadata.MembeanSchoolAdmin", "value": "true", "role": "student"}]})
    env.process(CLEAN)
    p = people(env)
    assert p["u1"]["role"] == "staff" and p["u4"]["role"] == "school_admin"


def test_exclude_roles_stores_no_such_people_and_counts_them_skipped(env):
    env.configure(lincoln={"exclude_roles": ["student", "guardian"]})
    result = env.process(CLEAN)
    assert result.counts["users"].skipped == 3
    assert result.counts["users"].created == 3
    assert set(people(env)) == {"u1", "u4", "a1"}
    assert {e["person"] for e in env.export()["enrollments"]} == {"u1", "u4"}
    assert env.export()["guardians"] == []
    assert issue_rows(result) == [("excluded_role", "users.csv", 3, None)]  # the first one: u2 on line 3
    assert result.issues[0].sourced_id == "u2" and "sourcedId u2 and 2 more" in result.issues[0].message


def test_same_drop_again_is_a_duplicate_and_an_equal_export_changes_nothing(env):
    path = env.bundle(CLEAN)
    assert env.process(path).status == "applied"
    dup = env.process(path)
    assert dup.status == "duplicate" and dup.exit_code() == 4
    # Same rows, new export date: nothing to change.
    again = env.process(with_changes(CLEAN, users_csv=USERS.replace(",active,,", ",active,2026-11-23T02:00:00Z,")))
    assert again.status == "applied"
    assert again.counts["users"].unchanged == 6 and again.counts["users"].updated == 0


def test_unchanged_rows_stay_unchanged_when_the_drop_also_creates_rows(env):
    # Regression: a left merge turned 64-bit hashes into float64 when any row was new, so equal rows
    # compared as different and the whole roster showed as updated.
    env.process(CLEAN)
    users = USERS + "u8,active,,true,s1,student,new8,,Nia,Eight,,000128,n8@lincoln.example,,,,03,,\n"
    result = env.process(with_changes(CLEAN, users_csv=users))
    c = result.counts["users"]
    assert (c.created, c.updated, c.unchanged) == (1, 0, 6)


def test_bulk_deactivates_missing_rows_softly_and_reactivates_them(env):
    env.configure(lincoln={"max_deactivated_percent": 100})
    env.process(CLEAN)
    second = env.process(with_changes(CLEAN, users_csv=drop_lines(USERS, "u3"),
                                      enrollments_csv=drop_lines(ENROLLMENTS, "e3")))
    assert second.counts["users"].deactivated == 1 and second.counts["enrollments"].deactivated == 1
    assert "u3" not in people(env)
    assert people(env, include_inactive=True)["u3"]["status"] == "inactive"
    # The guardian link of the gone student goes inactive too.
    assert {(g["student"], g["guardian"]) for g in env.export()["guardians"]} == {("u2", "g1")}
    third = env.process(with_changes(CLEAN, users_csv=USERS + "\n"))
    assert third.counts["users"].updated == 1  # u3 reactivated
    assert people(env)["u3"]["status"] == "active"


def test_updates_name_the_changed_fields_in_the_audit_log(env):
    env.process(CLEAN)
    result = env.process(with_changes(CLEAN, users_csv=USERS.replace("jdoe@lincoln.example", "jane@lincoln.example")))
    assert result.counts["users"].updated == 1
    assert people(env)["u2"]["email"] == "jane@lincoln.example"
    with env.ctx.engine.connect() as conn:
        row = conn.execute(select(audit.c.action, audit.c.before, audit.c.after).where(
            audit.c.run_id == result.run_id, audit.c.entity == "people")).one()
    assert row.action == "updated"
    assert json.loads(row.before)["email"] == "jdoe@lincoln.example"
    assert json.loads(row.after)["email"] == "jane@lincoln.example"


def test_delta_upserts_deactivates_tobedeleted_and_leaves_the_rest(env):
    env.process(CLEAN)
    users = USERS_HEADER + (
        "u5,active,,true,s1,student,new5,,Nia,Five,,000125,n5@lincoln.example,,,,03,,\n"
        "u2,active,,true,s1,student,jdoe,,Jane,Doe,,000123,jane.doe@lincoln.example,,,g1,03,,\n"
        "u3,tobedeleted,,,,,,,,,,,,,,,,,\n")
    enr = ENR_HEADER + "e5,active,,k1,s1,u5,student,false,,\n"
    result = env.process({"manifest.csv": DELTA_MANIFEST, "users.csv": users, "enrollments.csv": enr})
    assert result.status == "applied", result.issues
    c = result.counts["users"]
    assert (c.created, c.updated, c.deactivated) == (1, 1, 1)
    assert result.counts["enrollments"].created == 1 and result.counts["enrollments"].deactivated == 0
    p = people(env)
    assert set(p) == {"u1", "u2", "u4", "u5", "g1", "a1"}
    assert result.counts["orgs"].unchanged == 0  # orgs absent: not even compared


def test_delta_references_resolve_against_the_current_roster(env):
    env.process(CLEAN)
    enr = ENR_HEADER + "e6,active,,k2,s2,u2,student,false,,\ne7,active,,k404,s2,u2,student,false,,\n"
    manifest = DELTA_MANIFEST.replace("file.users,delta", "file.users,absent")
    result = env.process({"manifest.csv": manifest, "enrollments.csv": enr})
    assert issue_rows(result) == [("unknown_reference", "enrollments.csv", 3, "classSourcedId")]
    assert result.counts["enrollments"].created == 1


def test_mass_deactivation_holds_then_release_applies_it(env):
    env.configure(lincoln=SMALL)  # tiny tables: no floor under the percentage
    env.process(CLEAN)
    held = env.process(with_changes(CLEAN, users_csv=drop_lines(USERS, "u2", "u3"),
                                    enrollments_csv=drop_lines(ENROLLMENTS, "e2", "e3")))
    assert held.status == "held" and held.exit_code() == 3
    assert {i.code for i in held.issues if i.severity == "hold"} == {"mass_deactivation"}
    assert "u2" in people(env)  # nothing applied
    hold = next(i for i in held.issues if i.file == "users.csv")
    assert "2 of 6" in hold.message and "33%" in hold.message
    released = release_hold(env.ctx, held.run_id)
    assert released.status == "applied" and released.exit_code() == 0
    assert "u2" not in people(env)
    assert released.counts["users"].deactivated == 2


def test_discard_applies_nothing(env):
    env.configure(lincoln=SMALL)  # tiny tables: no floor under the percentage
    env.process(CLEAN)
    held = env.process(with_changes(CLEAN, enrollments_csv=drop_lines(ENROLLMENTS, "e2", "e3")))
    assert held.status == "held"
    assert discard_hold(env.ctx, held.run_id).status == "discarded"
    assert len(env.export()["enrollments"]) == 4
    with env.ctx.engine.connect() as conn:
        assert conn.execute(select(runs.c.status).where(runs.c.run_id == held.run_id)).scalar() == "discarded"


def test_a_newer_applied_drop_supersedes_a_held_one(env):
    env.configure(lincoln=SMALL)  # tiny tables: no floor under the percentage
    env.process(CLEAN)
    held = env.process(with_changes(CLEAN, enrollments_csv=drop_lines(ENROLLMENTS, "e2", "e3")))
    newer = env.process(with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tamara")))
    assert newer.status == "applied"
    result = release_hold(env.ctx, held.run_id)
    assert result.status == "superseded" and result.exit_code() == 2
    assert len(env.export()["enrollments"]) == 4


def test_guardian_link_ids_that_would_collide_on_the_separator_are_stored_once(env):
    # Link ids are "student|guardian": student "x|y" with guardian "z" and student "x" with guardian "y|z"
    # both give "x|y|z". The drop must apply (not fail on the primary key), with one of the two links.
    users = USERS + (
        "x|y,active,,true,s1,student,xy,,Xa,Ya,,000901,xy@lincoln.example,,,z,03,,\n"
        "x,active,,true,s1,student,xx,,Xb,Yb,,000902,xx@lincoln.example,,,y|z,03,,\n"
        "z,active,,true,s1,guardian,zz,,Zed,Z,,,z@mail.example,,,,,,\n"
        "y|z,active,,true,s1,guardian,yz,,Yz,Z,,,yz@mail.example,,,,,,\n")
    enrollments = ENROLLMENTS + "e8,active,,k1,s1,x|y,student,false,,\ne9,active,,k1,s1,x,student,false,,\n"
    result = env.process(with_changes(CLEAN, users_csv=users, enrollments_csv=enrollments))
    assert result.status == "applied", result.issues
    links = {(g["student"], g["guardian"]) for g in env.export()["guardians"]}
    assert links & {("x|y", "z"), ("x", "y|z")} in ({("x|y", "z")}, {("x", "y|z")})
    assert len(links) == 3  # u2-g1, u3-g1 and one of the two


def test_too_many_guardians_holds(env):
    env.configure(lincoln={"max_guardians_per_student": 1})
    users = USERS + "g2,active,,true,s1,guardian,pdoe,,Pat,Doe,,,pdoe@mail.example,,,u2,,,\n"
    result = env.process(with_changes(CLEAN, users_csv=users))
    assert result.status == "held"
    holds = [i for i in result.issues if i.severity == "hold"]
    assert [(i.code, i.sourced_id, i.value) for i in holds] == [("too_many_guardians", "u2", "2")]
    assert env.export()["people"] == []


def test_a_guardian_added_to_stored_links_holds_once_and_a_release_sticks(env):
    env.configure(lincoln={"max_guardians_per_student": 1})
    env.process(CLEAN)  # u2 and u3 have one guardian each
    users = USERS + "g2,active,,true,s1,guardian,pdoe,,Pat,Doe,,,pdoe@mail.example,,,u2,,,\n"
    held = env.process(with_changes(CLEAN, users_csv=users))
    assert held.status == "held"
    assert [(i.code, i.sourced_id, i.value) for i in held.issues if i.severity == "hold"] == [
        ("too_many_guardians", "u2", "2")]  # the stored link counts with the new one
    assert release_hold(env.ctx, held.run_id).status == "applied"
    # The next export carries the same links: nothing new to hold for.
    again = env.process(with_changes(CLEAN, users_csv=users + "\n"))
    assert again.status == "applied"


def test_a_school_that_vanishes_with_people_in_it_holds(env):
    env.configure(lincoln={"max_deactivated_percent": 100})
    env.process(CLEAN)
    orgs = drop_lines(CLEAN["orgs.csv"], "s2")
    users = USERS.replace("u3,active,,true,s2", "u3,active,,true,s1").replace("u4,active,,true,s2", "u4,active,,true,s1")
    classes = CLEAN["classes.csv"].replace(",s2,", ",s1,")
    enr = ENROLLMENTS.replace(",s2,", ",s1,")
    courses = CLEAN["courses.csv"].replace(",s2,", ",s1,")
    result = env.process(with_changes(CLEAN, orgs_csv=orgs, users_csv=users, classes_csv=classes,
                                      enrollments_csv=enr, courses_csv=courses))
    # The people moved schools in this same drop, but the roster still has them at s2 until it applies.
    assert [i.code for i in result.issues if i.severity == "hold"] == ["school_vanished"]


def test_dry_run_computes_the_outcome_and_writes_nothing_to_the_roster(env):
    env.configure(lincoln=SMALL)
    first = env.process(CLEAN, dry_run=True)
    assert first.status == "dry_run" and first.outcome == "applied" and first.exit_code() == 0
    assert env.export()["people"] == []
    env.process(CLEAN)
    held = env.process(with_changes(CLEAN, enrollments_csv=drop_lines(ENROLLMENTS, "e2", "e3")), dry_run=True)
    assert held.status == "dry_run" and held.outcome == "held"
    assert len(env.export()["enrollments"]) == 4
    with env.ctx.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(runs).where(runs.c.status == "held")).scalar() == 0


def test_rejected_drop_changes_nothing(env):
    env.process(CLEAN)
    result = env.process(with_changes(CLEAN, users_csv=None))
    assert result.status == "rejected"
    assert len(people(env)) == 6


def test_tenants_are_isolated(env):
    env.process(CLEAN, tenant="lincoln")
    other = env.process(with_changes(CLEAN, users_csv=drop_lines(USERS, "u1", "u2", "u3", "u4")), tenant="roosevelt")
    assert other.status == "applied"  # a first load for roosevelt: nothing of lincoln's counts
    assert other.counts["users"].created == 2
    assert len(people(env)) == 6
    assert set(p["sourced_id"] for p in env.export("roosevelt")["people"]) == {"g1", "a1"}
    # Same bytes for another tenant are not a duplicate.
    path = env.bundle(CLEAN)
    assert env.process(path, tenant="roosevelt").status == "applied"


def test_crash_mid_apply_leaves_the_roster_unchanged_and_the_drop_can_be_processed_again(env):
    env.process(CLEAN)
    path = env.bundle(with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tamara")))
    script = textwrap.dedent(f"""
        import os, sys, time
        import processor.apply.writer as w
        real = w._audit
        def slow(*a, **k):
            real(*a, **k)
            print("in-apply", flush=True)
            time.sleep(60)
        w._audit = slow
        from processor.context import Context
        from processor.pipeline import process_path
        from pathlib import Path
        process_path(Context.load(Path({str(env.home)!r})), Path({str(path)!r}), "lincoln")
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout.readline().strip() == "in-apply"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    env.ctx.engine.dispose()
    assert people(env)["u1"]["given_name"] == "Tara"  # the transaction never committed
    with env.ctx.engine.connect() as conn:
        status = conn.execute(text("SELECT status FROM runs ORDER BY received_at DESC, run_id DESC")).scalars().first()
    assert status == "processing"
    again = env.process(path)  # the same bytes resume the unfinished run (and take over its stale lock)
    assert again.status == "applied"
    assert people(env)["u1"]["given_name"] == "Tamara"


def test_two_processes_for_one_tenant_never_interleave(env):
    from processor.apply.runs import tenant_lock
    from processor.context import UserError

    with tenant_lock(env.ctx.engine, "lincoln", "run-a"):
        started = time.monotonic()
        try:
            with tenant_lock(env.ctx.engine, "lincoln", "run-b", timeout=0.5):
                raise AssertionError("the second lock must not be granted")
        except UserError as exc:
            assert "busy" in str(exc)
        assert time.monotonic() - started >= 0.5
        with tenant_lock(env.ctx.engine, "roosevelt", "run-c", timeout=0.5):
            pass  # another tenant is not blocked


def test_audit_log_reverts_a_run(env):
    from processor.apply.writer import revert_run

    env.configure(lincoln={"max_deactivated_percent": 100})
    env.process(CLEAN)
    before = env.export(include_inactive=True)
    second = env.process(with_changes(CLEAN, users_csv=drop_lines(USERS, "u3").replace("Tara", "Tamara"),
                                      enrollments_csv=drop_lines(ENROLLMENTS, "e3")))
    assert second.status == "applied"
    with env.ctx.engine.begin() as conn:
        revert_run(conn, "lincoln", second.run_id)
    assert env.export(include_inactive=True) == before
    # After a revert the diff reads the rows again (the roster snapshot is dropped): the same drop
    # re-applies with the same changes.
    again = env.process(with_changes(CLEAN, users_csv=drop_lines(USERS, "u3").replace("Tara", "Tamara") + "\n",
                                     enrollments_csv=drop_lines(ENROLLMENTS, "e3")))
    assert again.counts == second.counts


def test_snapshot_and_rows_agree_after_a_series_of_drops(env):
    from processor.apply.diff import fetch_frame, read_snapshot, snapshot_columns
    from processor.apply.store import ENTITY_TABLES

    env.configure(lincoln={"max_deactivated_percent": 100})
    env.process(CLEAN)
    env.process(with_changes(CLEAN, users_csv=drop_lines(USERS, "u3"), enrollments_csv=drop_lines(ENROLLMENTS, "e3")))
    env.process(with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tamara")))
    with env.ctx.engine.connect() as conn:
        for table in ("people", "enrollments", "guardian_links", "orgs"):
            snap = read_snapshot(conn, "lincoln", table)
            t = ENTITY_TABLES[table]
            cols = snapshot_columns(table)
            rows = fetch_frame(conn, t.select().with_only_columns(*[t.c[c] for c in cols]).where(
                t.c.tenant == "lincoln"), cols, ("row_hash",))
            assert snap is not None and _rows_of(snap, cols) == _rows_of(rows, cols), table


def _rows_of(frame, cols):
    return sorted(map(tuple, frame[cols].astype(str).to_numpy()))


def test_a_nightly_writes_a_snapshot_delta_that_reads_back_as_the_rows(env, monkeypatch):
    """A change set writes only the rows it changed (the delta) beside the whole blob; read back, blob and
    delta are the stored rows exactly, drop after drop, and past DELTA_SHARE the delta is folded in."""
    from processor.apply import diff
    from processor.apply.diff import fetch_frame, read_snapshot, snapshot_columns
    from processor.apply.store import ENTITY_TABLES, snapshots

    def stored(conn, table):
        t = ENTITY_TABLES[table]
        cols = snapshot_columns(table)
        return _rows_of(fetch_frame(conn, t.select().with_only_columns(*[t.c[c] for c in cols]).where(
            t.c.tenant == "lincoln"), cols, ("row_hash",)), cols)

    def deltas(conn):
        return dict(conn.execute(select(snapshots.c.entity, snapshots.c.delta.is_not(None)).where(
            snapshots.c.tenant == "lincoln")).all())

    env.configure(lincoln={"max_deactivated_percent": 100})
    env.process(CLEAN)
    with env.ctx.engine.connect() as conn:
        assert not any(deltas(conn).values())  # a first load writes whole blobs
    drops = [
        with_changes(CLEAN, users_csv=drop_lines(USERS, "u3"), enrollments_csv=drop_lines(ENROLLMENTS, "e3")),
        with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tamara")),  # u3 back, and a name changed
        with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tamara").replace("jdoe@", "jd@"),  # a new enrollment
                     enrollments_csv=ENROLLMENTS + "e9,active,,k1,s1,u3,student,false,,\n"),
    ]
    results = []
    for drop in drops:
        results.append(env.process(drop))
        assert results[-1].status == "applied"
        with env.ctx.engine.connect() as conn:
            assert deltas(conn)["people"] and deltas(conn)["enrollments"]
            for table in ("people", "enrollments", "guardian_links", "orgs"):
                snap = read_snapshot(conn, "lincoln", table)
                assert snap is not None and _rows_of(snap, snapshot_columns(table)) == stored(conn, table), table
    assert [r.counts["enrollments"].created for r in results] == [0, 0, 1]
    assert [r.counts["users"].deactivated for r in results] == [1, 0, 0]
    monkeypatch.setattr(diff, "DELTA_MIN_ROWS", 0)
    monkeypatch.setattr(diff, "DELTA_SHARE", 0.0)
    assert env.process(with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tam"))).status == "applied"
    with env.ctx.engine.connect() as conn:
        assert not deltas(conn)["people"]  # folded into a new whole blob
        snap = read_snapshot(conn, "lincoln", "people")
        assert _rows_of(snap, snapshot_columns("people")) == stored(conn, "people")



@pytest.mark.parametrize("damage", ["data", "delta", "truncated", "columns"])
def test_a_snapshot_that_does_not_decode_is_queried_instead_and_rewritten(env, damage, caplog):
    """The snapshot is a cache of the stored rows: a damaged blob (garbage, cut short, another shape) must
    neither fail the run nor change its result; the diff queries the rows and writes a whole blob again."""
    import pandas as pd

    from processor.apply.diff import _blob, fetch_frame, read_snapshot, snapshot_columns
    from processor.apply.store import ENTITY_TABLES, snapshots

    env.configure(lincoln={"max_deactivated_percent": 100})
    env.process(CLEAN)
    # A nightly that writes a delta for people, so that there is one to damage.
    assert env.process(with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tamara"))).status == "applied"
    where = (snapshots.c.tenant == "lincoln") & (snapshots.c.entity == "people")
    with env.ctx.engine.begin() as conn:
        data, delta = conn.execute(select(snapshots.c.data, snapshots.c.delta).where(where)).one()
        assert delta is not None
        values = {"data": {"data": b"not arrow at all"}, "delta": {"delta": b"\xff" * 64},
                  "truncated": {"data": data[: len(data) // 2]},
                  "columns": {"data": _blob(pd.DataFrame({"other": ["x"]}), "")}}[damage]
        conn.execute(snapshots.update().where(where).values(**values))
    with env.ctx.engine.connect() as conn, caplog.at_level("WARNING", logger="processor.apply.diff"):
        assert read_snapshot(conn, "lincoln", "people") is None
    if damage != "columns":
        assert "does not decode" in caplog.text and "Tamara" not in caplog.text
    result = env.process(with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tamsin")))
    assert result.status == "applied"
    c = result.counts["users"]
    assert (c.created, c.updated, c.deactivated) == (0, 1, 0)
    people = ENTITY_TABLES["people"]
    cols = snapshot_columns("people")
    with env.ctx.engine.connect() as conn:
        assert conn.execute(select(people.c.given_name).where(
            people.c.tenant == "lincoln", people.c.sourced_id == "u1")).scalar() == "Tamsin"
        assert conn.execute(select(snapshots.c.delta).where(where)).scalar() is None  # a whole blob again
        snap = read_snapshot(conn, "lincoln", "people")
        assert snap is not None
        assert _rows_of(snap, cols) == _rows_of(fetch_frame(conn, people.select().with_only_columns(
            *[people.c[c] for c in cols]).where(people.c.tenant == "lincoln"), cols, ("row_hash",)), cols)


def test_stale_stored_hashes_are_rewritten_silently_not_reported_as_updates(env):
    # Hashes written by an older version (or a district that reorders its columns) must not turn a
    # nightly into "every row updated": values that are the same are rewritten with the new hash, unreported.
    from processor.apply.diff import read_snapshot
    from processor.apply.store import ENTITY_TABLES, snapshots

    env.process(CLEAN)
    t = ENTITY_TABLES["people"]
    with env.ctx.engine.begin() as conn:
        conn.execute(snapshots.delete())
        conn.execute(t.update().where(t.c.tenant == "lincoln").values(row_hash=t.c.row_hash + 1))
    out = io.StringIO()  # the same file with its columns in reverse order
    csv.writer(out, lineterminator="\n").writerows(row[::-1] for row in csv.reader(io.StringIO(USERS)))
    reordered = out.getvalue()
    again = env.process(with_changes(CLEAN, users_csv=reordered.replace("jdoe@lincoln.example", "jd@lincoln.example")))
    c = again.counts["users"]
    assert (c.created, c.updated, c.deactivated, c.unchanged) == (0, 1, 0, 5)
    with env.ctx.engine.connect() as conn:
        stored = dict(conn.execute(select(t.c.sourced_id, t.c.row_hash).where(t.c.tenant == "lincoln")).all())
        snap = read_snapshot(conn, "lincoln", "people")
        assert dict(zip(snap["sourced_id"], snap["row_hash"], strict=True)) == stored
        updates = conn.execute(select(func.count()).select_from(audit).where(
            audit.c.run_id == again.run_id, audit.c.entity == "people", audit.c.action == "updated")).scalar()
    assert updates == 1
    # Next time the stored hashes match: nothing to rewrite or report.
    third = env.process(with_changes(CLEAN, users_csv=reordered.replace("jdoe@lincoln.example", "jd@lincoln.example")
                                     + "\n"))
    assert third.counts["users"].unchanged == 6 and third.counts["users"].updated == 0


def test_a_run_that_reshapes_a_table_refreshes_postgresql_statistics(env, monkeypatch):
    # Without statistics right after a first load, PostgreSQL plans the next run's `sourced_id = ANY(...)`
    # lookups as a scan of the tenant's whole table; a reshaping run ANALYZEs what it reshaped.
    if env.ctx.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's primary-key lookups need no statistics")
    import processor.pipeline

    monkeypatch.setattr(processor.pipeline, "RESHAPED_ROWS", 3)
    stats = "SELECT count(*) FROM pg_stats WHERE schemaname = 'public' AND tablename = %s"
    with env.ctx.engine.connect() as conn:
        assert conn.exec_driver_sql(stats, ("people",)).scalar() == 0  # a fresh table has none
    assert env.process(CLEAN).status == "applied"  # 6 people, 2 classes: only people reaches 3 changed rows
    with env.ctx.engine.connect() as conn:
        assert conn.exec_driver_sql(stats, ("people",)).scalar() > 0
        assert conn.exec_driver_sql(stats, ("classes",)).scalar() == 0
