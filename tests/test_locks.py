"""Field locks (CONTRACT.md section 10): a manual edit survives bulk and delta drops and the release of holds;
the export shows it, the report counts the values kept, unlocking gives the field back to the SIS."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from processor.cli import main
from processor.events import read_events
from processor.pipeline import release_hold
from tests.bundles import CLEAN, ENROLLMENTS, USERS, with_changes
from tests.live_http import serve_api

DELTA_MANIFEST = ("propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\nfile.orgs,absent\n"
                  "file.classes,absent\nfile.users,delta\nfile.enrollments,absent\nfile.courses,absent\n"
                  "file.academicSessions,absent\n")
USERS_HEADER = USERS.splitlines()[0] + "\n"


def drop_lines(text: str, *prefixes: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith(prefixes)) + "\n"


def cli(env, *args: str) -> int:
    return main(["--home", str(env.home), *args])


def person(env, sid: str, tenant: str = "lincoln") -> dict:
    return next(p for p in env.export(tenant, include_inactive=True)["people"] if p["sourced_id"] == sid)


def lock_role(env, sid: str = "u1", value: str = "school_admin", *extra: str) -> int:
    return cli(env, "roster", "lock", "--tenant", "lincoln", "--entity", "people", "--id", sid, "--field", "role",
               "--value", value, *extra)


def kept(result) -> list[str]:
    return [i.message for i in result.issues if i.code == "manual_change_kept"]


def changes_after(env, mark: int) -> list[tuple]:
    return [(e["type"], e["sourced_id"], e["changed"], e["run_id"] is None)
            for e in read_events(env.ctx.engine, "lincoln", after=mark).events if not e["type"].startswith("run.")]


def test_a_locked_role_is_set_now_audited_and_shown_in_the_export(env, capsys):
    env.process(CLEAN)
    env.process(CLEAN, tenant="roosevelt")
    mark = read_events(env.ctx.engine, "lincoln").next
    assert lock_role(env, "u1", "school_admin", "--by", "ops@vendor.example", "--json") == 0
    lock = json.loads(capsys.readouterr().out)
    assert (lock["by"], lock["value"]) == ("ops@vendor.example", "school_admin")
    assert person(env, "u1")["role"] == "school_admin"
    assert person(env, "u1", "roosevelt")["role"] == "teacher"  # locks are per tenant
    assert [(k["sourced_id"], k["field"], k["value"], k["by"]) for k in env.export()["locks"]] == [
        ("u1", "role", "school_admin", "ops@vendor.example")]
    assert env.export("roosevelt")["locks"] == []
    assert changes_after(env, mark) == [("person.updated", "u1", ["role"], True)]  # a change by hand: no run
    from processor.apply.locks import field_lock_log

    with env.ctx.engine.connect() as conn:
        log = conn.execute(field_lock_log.select()).mappings().all()
    assert [(r["action"], r["previous"], r["value"], r["by"]) for r in log] == [
        ("lock", "teacher", "school_admin", "ops@vendor.example")]


def test_a_lock_survives_bulk_and_delta_drops_without_making_the_row_look_changed(env):
    env.process(CLEAN)
    assert lock_role(env) == 0
    mark = read_events(env.ctx.engine, "lincoln").next
    again = env.process(with_changes(CLEAN, users_csv=USERS + "\n"))  # the same roster, other bytes
    assert again.counts["users"].updated == 0 and again.counts["users"].unchanged == 6
    assert person(env, "u1")["role"] == "school_admin"
    # Another field of the row changes: the row is rewritten, with the lock's value, and only email changed.
    moved = env.process(with_changes(CLEAN, users_csv=USERS.replace("tmartin@lincoln", "tara@lincoln")))
    assert moved.counts["users"].updated == 1
    assert (person(env, "u1")["role"], person(env, "u1")["email"]) == ("school_admin", "tara@lincoln.example")
    assert kept(moved) == ["Kept 1 manual change: fields locked in the app keep their values whatever the drop "
                           "says (e.g. u1 role)."]
    assert changes_after(env, mark) == [("person.updated", "u1", ["email"], False)]
    delta = USERS_HEADER + "u1,active,,true,s1,teacher,tmartin,,Tara,Martin,,T001,tm@lincoln.example,,,,,,\n"
    result = env.process({"manifest.csv": DELTA_MANIFEST, "users.csv": delta})
    assert result.status == "applied" and result.counts["users"].updated == 1
    assert (person(env, "u1")["role"], person(env, "u1")["email"]) == ("school_admin", "tm@lincoln.example")
    assert len(kept(result)) == 1


def test_a_lock_survives_the_release_of_a_hold_and_the_report_counts_it(env):
    env.configure(lincoln={"min_deactivated_count": 0})  # a tiny district: 2 of 6 people withdrawn holds
    env.process(CLEAN)
    assert lock_role(env) == 0
    held = env.process(with_changes(CLEAN, users_csv=drop_lines(USERS, "u2", "u3").replace("Tara", "Tamara"),
                                    enrollments_csv=drop_lines(ENROLLMENTS, "e2", "e3")))
    assert held.status == "held"
    released = release_hold(env.ctx, held.run_id)
    assert released.status == "applied"
    assert (person(env, "u1")["role"], person(env, "u1")["given_name"]) == ("school_admin", "Tamara")
    assert len(kept(released)) == 1
    for name in ("report.txt", "report.html"):
        assert "Kept 1 manual change" in (Path(released.report).parent / name).read_text(encoding="utf-8")


def test_unlocking_gives_the_field_back_to_the_next_drop(env):
    env.process(CLEAN)
    assert lock_role(env) == 0
    assert cli(env, "roster", "unlock", "--tenant", "lincoln", "--entity", "people", "--id", "u1", "--field", "role",
               "--by", "ops") == 0
    assert env.export()["locks"] == []
    mark = read_events(env.ctx.engine, "lincoln").next
    result = env.process(with_changes(CLEAN, users_csv=USERS + "\n"))
    assert person(env, "u1")["role"] == "teacher" and kept(result) == []
    assert changes_after(env, mark) == [("person.updated", "u1", ["role"], False)]
    again = env.process(with_changes(CLEAN, users_csv=USERS + "\n\n"))
    assert again.counts["users"].updated == 0  # and settles: not rewritten every night


def test_bad_locks_are_refused_with_one_line(env, capsys):
    env.process(CLEAN)
    assert lock_role(env, "nobody") == 1
    assert "no people row with sourced_id 'nobody'" in capsys.readouterr().err
    assert lock_role(env, "u1", "wizard") == 1
    assert "not an app role" in capsys.readouterr().err
    assert cli(env, "roster", "lock", "--tenant", "lincoln", "--entity", "people", "--id", "u1", "--field",
               "row_hash", "--value", "1") == 1
    assert "cannot be locked" in capsys.readouterr().err
    assert cli(env, "roster", "unlock", "--tenant", "lincoln", "--entity", "people", "--id", "u1", "--field",
               "role") == 1
    assert "no lock" in capsys.readouterr().err


def test_locks_over_the_api(env, capsys):
    env.process(CLEAN)
    env.process(CLEAN, tenant="roosevelt")
    assert cli(env, "api-token", "create", "app", "--tenant", "lincoln", "--json") == 0
    token = json.loads(capsys.readouterr().out)["token"]
    auth = {"Authorization": f"Bearer {token}"}
    with serve_api(env.ctx) as base, httpx.Client(base_url=base + "/api/v1", headers=auth) as client:
        body = {"entity": "classes", "sourced_id": "k1", "field": "title", "value": "Room 12 (Ms Martin)"}
        r = client.put("/tenants/lincoln/locks", json=body)
        assert r.status_code == 200 and r.json()["by"] == "api-token app"
        assert client.put("/tenants/roosevelt/locks", json=body).status_code == 404  # not this token's tenant
        assert client.put("/tenants/lincoln/locks", json={**body, "sourced_id": "k404"}).status_code == 404
        assert client.put("/tenants/lincoln/locks", json={**body, "field": "school"}).status_code == 422
        assert [k["value"] for k in client.get("/tenants/lincoln/locks").json()["locks"]] == ["Room 12 (Ms Martin)"]
        env.process(with_changes(CLEAN, users_csv=USERS + "\n"))
        classes = {c["sourced_id"]: c["title"] for c in client.get("/tenants/lincoln/classes").json()["classes"]}
        assert classes["k1"] == "Room 12 (Ms Martin)"
        params = {"entity": "classes", "sourced_id": "k1", "field": "title"}
        assert client.delete("/tenants/lincoln/locks", params=params).status_code == 200
        assert client.delete("/tenants/lincoln/locks", params=params).status_code == 404
    env.process(with_changes(CLEAN, users_csv=USERS + "\n\n"))  # unlocked: the drop's title is back
    assert {c["sourced_id"]: c["title"] for c in env.export()["classes"]}["k1"] == "Room 12"
