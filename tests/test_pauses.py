"""[[tenants.X.pauses]] (CONTRACT.md section 12): a drop received during a pause is held, applied for
additions only, or skipped; releasing an additions_only hold applies what it held back."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from processor.config import ConfigError, load_config
from processor.pipeline import release_hold
from tests.bundles import CLEAN, ENROLLMENTS, USERS, with_changes
from tests.test_apply import people

TODAY = datetime.now(UTC).date()
NEW_STUDENT = "u9,active,,true,s1,student,newkid,,New,Kid,,000999,newkid@lincoln.example,,,,03,,\n"
# Summer school: one student added; and a teacher's email changed, which a pause for additions holds back.
SUMMER = with_changes(CLEAN, users_csv=USERS.replace("tmartin@lincoln.example", "tara@lincoln.example") + NEW_STUDENT,
                      enrollments_csv=ENROLLMENTS + "e9,active,,k1,s1,u9,student,false,,\n")


def pause(env, mode: str, start: date = TODAY - timedelta(days=1), until: date = TODAY + timedelta(days=1)) -> None:
    path = env.home / "rosterdrop.toml"
    path.write_text(path.read_text() + f'\n[[tenants.lincoln.pauses]]\nfrom = {start}\nuntil = {until}\n'
                    f'mode = "{mode}"\n')
    env.__dict__.pop("ctx", None)


def paused_issue(result):
    return next(i for i in result.issues if i.code == "paused")


def test_a_pause_must_end_after_it_starts(sqlite_env):
    pause(sqlite_env, "hold", start=TODAY, until=TODAY - timedelta(days=3))
    with pytest.raises(ConfigError) as err:
        load_config(sqlite_env.home)
    assert "tenants.lincoln.pauses" in str(err.value) and "before from" in str(err.value)


def test_mode_hold_holds_the_drop_until_released(env):
    env.process(CLEAN)
    pause(env, "hold")
    held = env.process(SUMMER)
    assert held.status == "held" and held.exit_code() == 3
    assert (paused_issue(held).severity, paused_issue(held).value) == ("hold", "hold")
    assert "u9" not in people(env)
    released = release_hold(env.ctx, held.run_id)
    assert released.status == "applied" and "u9" in people(env)
    assert people(env)["u1"]["email"] == "tara@lincoln.example"


def test_mode_skip_archives_the_drop_and_applies_nothing(env):
    env.process(CLEAN)
    pause(env, "skip")
    result = env.process(SUMMER)
    assert result.status == "discarded" and result.exit_code() == 0
    assert (paused_issue(result).severity, paused_issue(result).value) == ("alert", "skip")
    assert "u9" not in people(env) and people(env)["u1"]["email"] == "tmartin@lincoln.example"
    assert list((env.home / "archive" / "lincoln").glob(f"{result.run_id}*"))
    text = (Path(result.report).parent / "report.txt").read_text()
    assert "was skipped: syncs are paused; nothing applied" in text.splitlines()[0].lower()
    assert "Syncs are paused from" in text


def test_additions_only_applies_the_new_records_and_holds_the_rest_until_released(env):
    env.process(CLEAN)
    pause(env, "additions_only")
    held = env.process(SUMMER)
    assert held.status == "held"
    issue = paused_issue(held)
    assert issue.severity == "hold" and "the 2 new records of this drop were applied; its 1 updates" in issue.message
    # The summer-school student and their enrollment are there; the teacher's email is not changed yet.
    assert "u9" in people(env) and people(env)["u1"]["email"] == "tmartin@lincoln.example"
    assert "e9" in {e["sourced_id"] for e in env.export()["enrollments"]}
    text = (Path(held.report).parent / "report.txt").read_text()
    assert "ROSTER PARTLY APPLIED: NEW RECORDS ONLY, THE REST ON HOLD" in text
    released = release_hold(env.ctx, held.run_id)
    assert released.status == "applied"
    c = released.counts["users"]
    assert (c.created, c.updated) == (0, 1)
    assert people(env)["u1"]["email"] == "tara@lincoln.example"


def test_additions_only_applies_a_drop_that_only_adds(env):
    env.process(CLEAN)
    pause(env, "additions_only")
    result = env.process(with_changes(CLEAN, users_csv=USERS + NEW_STUDENT,
                                      enrollments_csv=ENROLLMENTS + "e9,active,,k1,s1,u9,student,false,,\n"))
    assert result.status == "applied" and paused_issue(result).severity == "alert"
    assert "u9" in people(env)


def test_a_drop_outside_the_pause_applies_as_usual(env):
    env.process(CLEAN)
    pause(env, "skip", start=TODAY + timedelta(days=2), until=TODAY + timedelta(days=60))
    result = env.process(SUMMER)
    assert result.status == "applied" and not [i for i in result.issues if i.code == "paused"]
