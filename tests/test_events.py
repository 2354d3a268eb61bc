"""Change events (CONTRACT.md section 10): one event per change an apply makes, in the apply's transaction,
per-tenant ids strictly increasing; run outcomes and hold actions; revert; retention; `rosterdrop events`."""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from processor.cli import main
from processor.events import EventsExpired, prune_events, read_events
from processor.pipeline import discard_hold, release_hold
from tests.bundles import CLEAN, ENROLLMENTS, USERS, with_changes


def drop_lines(text: str, *prefixes: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith(prefixes)) + "\n"


def all_events(env, tenant: str = "lincoln", after: int = 0) -> list[dict]:
    return read_events(env.ctx.engine, tenant, after=after, limit=10_000).events


def changes_of(events: list[dict]) -> list[tuple]:
    return [(e["type"], e["sourced_id"], e["changed"]) for e in events if not e["type"].startswith(("run.", "hold."))]


def test_a_first_load_writes_one_created_event_per_row_then_run_applied(env):
    result = env.process(CLEAN)
    events = all_events(env)
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert {e["run_id"] for e in events} == {result.run_id}
    assert events[-1]["type"] == "run.applied" and events[-1]["sourced_id"] is None
    created = Counter(e["type"] for e in events[:-1])
    roster = env.export()
    assert created == {"school.created": len(roster["schools"]), "person.created": len(roster["people"]),
                       "class.created": len(roster["classes"]), "enrollment.created": len(roster["enrollments"]),
                       "guardian_link.created": len(roster["guardians"])}
    assert {e["sourced_id"] for e in events if e["type"] == "person.created"} == {
        p["sourced_id"] for p in roster["people"]}
    assert {e["sourced_id"] for e in events if e["type"] == "guardian_link.created"} == {"u2|g1", "u3|g1"}
    first = events[0]
    assert set(first) == {"id", "tenant", "run_id", "type", "sourced_id", "changed", "at"}
    assert first["tenant"] == "lincoln" and first["changed"] == []
    datetime.fromisoformat(first["at"])


def test_updates_deactivations_and_reactivations_are_events_with_the_changed_fields(env):
    env.configure(lincoln={"max_deactivated_percent": 100})
    env.process(CLEAN)
    start = all_events(env)[-1]["id"]
    users = drop_lines(USERS, "u3").replace("tmartin@lincoln.example", "tara.martin@lincoln.example")
    second = env.process(with_changes(CLEAN, users_csv=users, enrollments_csv=drop_lines(ENROLLMENTS, "e3")))
    assert second.status == "applied"
    events = all_events(env, after=start)
    assert [e["id"] for e in events] == list(range(start + 1, start + 1 + len(events)))
    assert sorted(changes_of(events)) == [
        ("enrollment.deactivated", "e3", ["status"]),
        ("guardian_link.deactivated", "u3|g1", ["status"]),
        ("person.deactivated", "u3", ["status"]),
        ("person.updated", "u1", ["email"]),
    ]
    assert events[-1]["type"] == "run.applied"
    # The same drop again but u3 is back: reactivated; nothing else changed, so nothing else is an event.
    mark = events[-1]["id"]
    third = env.process(with_changes(CLEAN, users_csv=USERS.replace("tmartin@", "tara.martin@"),
                                     enrollments_csv=drop_lines(ENROLLMENTS, "e3")))
    assert third.status == "applied"
    assert sorted(changes_of(all_events(env, after=mark))) == [
        ("guardian_link.reactivated", "u3|g1", ["status"]), ("person.reactivated", "u3", ["status"])]


def test_an_unchanged_drop_and_a_dry_run_write_no_change_events(env):
    env.process(CLEAN)
    mark = all_events(env)[-1]["id"]
    env.process(with_changes(CLEAN, users_csv=USERS + "\n"))  # same rows, other bytes
    env.process(with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tamara")), dry_run=True)
    assert [e["type"] for e in all_events(env, after=mark)] == ["run.applied"]


def test_held_rejected_released_and_discarded_runs_are_events(env):
    env.configure(lincoln={"min_deactivated_count": 0})  # a tiny district: 2 of 6 people withdrawn holds
    env.process(CLEAN)
    mark = all_events(env)[-1]["id"]
    held = env.process(with_changes(CLEAN, users_csv=drop_lines(USERS, "u2", "u3"),
                                    enrollments_csv=drop_lines(ENROLLMENTS, "e2", "e3")))
    assert held.status == "held"
    assert [(e["type"], e["run_id"]) for e in all_events(env, after=mark)] == [("run.held", held.run_id)]
    released = release_hold(env.ctx, held.run_id)
    assert released.status == "applied"
    events = all_events(env, after=mark + 1)
    assert events[0]["type"] == "hold.released" and events[-1]["type"] == "run.applied"
    assert {e["run_id"] for e in events} == {held.run_id}
    assert Counter(e["type"] for e in events[1:-1]) == {"person.deactivated": 2, "enrollment.deactivated": 2,
                                                         "guardian_link.deactivated": 2}
    mark = events[-1]["id"]
    held = env.process(with_changes(CLEAN, enrollments_csv=drop_lines(ENROLLMENTS, "e1", "e4")))
    assert held.status == "held"
    discard_hold(env.ctx, held.run_id)
    rejected = env.process(with_changes(CLEAN, users_csv=None))
    assert rejected.status == "rejected"
    assert [(e["type"], e["run_id"]) for e in all_events(env, after=mark)] == [
        ("run.held", held.run_id), ("hold.discarded", held.run_id), ("run.rejected", rejected.run_id)]


def test_a_failed_apply_rolls_its_events_back_with_its_rows(env, monkeypatch):
    from processor.apply import runs as run_store

    env.process(CLEAN)
    before = all_events(env)

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(run_store, "supersede_older_holds", crash)
    failed = env.process(with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tamara")))
    assert failed.status == "failed"  # the internal error ends the run failed, rolled back whole
    monkeypatch.undo()
    assert all_events(env) == before
    assert {p["given_name"] for p in env.export()["people"]} >= {"Tara"}
    # The next apply continues right after the last committed id: no gap, no reuse.
    env.process(with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tamara") + "\n"))
    after = all_events(env, after=before[-1]["id"])
    assert [e["id"] for e in after] == [before[-1]["id"] + 1, before[-1]["id"] + 2]
    assert changes_of(after) == [("person.updated", "u1", ["given_name"])]


def test_a_revert_writes_compensating_events(env):
    from processor.apply.writer import revert_run

    env.configure(lincoln={"max_deactivated_percent": 100})
    env.process(CLEAN)
    second = env.process(with_changes(CLEAN, users_csv=drop_lines(USERS, "u3").replace("Tara", "Tamara")
                                      + "u9,active,,true,s1,teacher,new,,Nia,New,,T009,nn@lincoln.example,,,,,,\n",
                                      enrollments_csv=drop_lines(ENROLLMENTS, "e3")))
    mark = all_events(env)[-1]["id"]
    with env.ctx.engine.begin() as conn:
        revert_run(conn, "lincoln", second.run_id)
    assert sorted(changes_of(all_events(env, after=mark))) == [
        ("enrollment.reactivated", "e3", ["status"]),
        ("guardian_link.reactivated", "u3|g1", ["status"]),
        ("person.deactivated", "u9", ["status"]),  # created by the run: removed again
        ("person.reactivated", "u3", ["status"]),
        ("person.updated", "u1", ["given_name"]),
    ]


def test_tenants_have_their_own_ids(env):
    env.process(CLEAN)
    env.process(CLEAN, tenant="roosevelt")
    lincoln, roosevelt = all_events(env), all_events(env, "roosevelt")
    assert roosevelt[0]["id"] == 1 and len(roosevelt) == len(lincoln)
    assert {e["tenant"] for e in roosevelt} == {"roosevelt"}


def test_retention_deletes_old_events_and_an_older_cursor_is_told_to_resync(env, capsys):
    env.process(CLEAN)
    last = all_events(env)[-1]["id"]
    assert prune_events(env.ctx.engine, 90) == 0  # nothing is 90 days old yet
    assert prune_events(env.ctx.engine, 90, now=datetime.now(UTC) + timedelta(days=91)) == last
    with pytest.raises(EventsExpired, match="Resync from the roster API"):
        read_events(env.ctx.engine, "lincoln", after=0)
    assert read_events(env.ctx.engine, "lincoln", after=last).events == []  # an up-to-date cursor is fine
    code = main(["--home", str(env.home), "events", "--tenant", "lincoln", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and "resync" in out["error"].lower()
    env.process(with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tamara")))
    assert [e["id"] for e in all_events(env, after=last)] == [last + 1, last + 2]


def test_events_command_pages_with_after_and_limit(env, capsys):
    env.process(CLEAN)
    total = len(all_events(env))
    code = main(["--home", str(env.home), "events", "--tenant", "lincoln", "--after", "2", "--limit", "3", "--json"])
    page = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [e["id"] for e in page["events"]] == [3, 4, 5] and page["next"] == 5
    main(["--home", str(env.home), "events", "--tenant", "lincoln", "--after", str(total), "--json"])
    assert json.loads(capsys.readouterr().out) == {"events": [], "next": total}
    assert main(["--home", str(env.home), "events", "--tenant", "nowhere", "--json"]) == 1
    assert "unknown tenant" in json.loads(capsys.readouterr().out)["error"]
    # past the stores' BIGINT ids: an error naming the option, not a traceback from the store
    assert main(["--home", str(env.home), "events", "--tenant", "lincoln", "--after", str(2**63), "--json"]) == 1
    assert "--after must be between 0 and 9223372036854775807" in json.loads(capsys.readouterr().out)["error"]


def test_pages_cross_storage_blocks_and_any_sourced_id_survives(env, monkeypatch):
    from processor import events

    monkeypatch.setattr(events, "BLOCK", 3)  # events are stored in blocks; readers never see them
    odd = 'q"u\\1'
    env.process(with_changes(CLEAN, users_csv=USERS + f'"{odd.replace(chr(34), chr(34) * 2)}",active,,true,s1,'
                             'student,odd,,Od,D,,9,od@lincoln.example,,,,03,,\n'))
    everything = all_events(env)
    assert [e["id"] for e in everything] == list(range(1, len(everything) + 1))
    assert odd in {e["sourced_id"] for e in everything if e["type"] == "person.created"}
    for after in range(len(everything)):
        pages, cursor = [], after
        while True:
            page = read_events(env.ctx.engine, "lincoln", after=cursor, limit=2)
            if not page.events:
                break
            pages += page.events
            cursor = page.next
        assert pages == everything[after:]


@pytest.mark.skipif(not os.environ.get("ROSTERDROP_TEST_PG_URL"), reason="PostgreSQL row locks")
def test_on_postgresql_a_second_writer_waits_for_the_first_commit_so_ids_are_commit_ordered(env):
    import threading
    import time

    from sqlalchemy import text

    from processor.events import record_hold

    if env.store_url is None:
        pytest.skip("the PostgreSQL half of the env fixture")
    engine = env.ctx.engine
    first = engine.connect()
    first.begin()
    record_hold(first, "lincoln", "run-a", "discarded")  # ids reserved, not committed
    seen: dict = {}

    def second_writer():
        with engine.begin() as conn:
            seen["pid"] = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            record_hold(conn, "lincoln", "run-b", "discarded")

    thread = threading.Thread(target=second_writer)
    thread.start()
    deadline = time.monotonic() + 30
    with engine.connect() as watcher:  # wait until the second writer is blocked on the counter row's lock
        while True:
            waiting = watcher.execute(text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p"),
                                      {"p": seen.get("pid", -1)}).scalar()
            # pg_stat_activity is read once per transaction and then kept: each look needs a new one, or a
            # first look taken before the second writer was blocked is all this loop would ever see
            watcher.rollback()
            if waiting == "Lock":
                break
            assert time.monotonic() < deadline, "the second writer never waited for the first"
            time.sleep(0.05)
    assert read_events(engine, "lincoln").events == []  # a reader sees neither yet
    first.commit()
    first.close()
    thread.join(30)
    assert [(e["id"], e["run_id"]) for e in read_events(engine, "lincoln").events] == [(1, "run-a"), (2, "run-b")]
