"""The sample drops do what sample_drops/README.md says they do."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import issue_rows

SAMPLES = Path(__file__).resolve().parent.parent / "sample_drops"


def test_clean_sample_applies_without_issues(sqlite_env):
    result = sqlite_env.process(SAMPLES / "clean", tenant="lincoln")
    assert result.status == "applied" and result.issues == []
    assert result.counts["users"].created == 59 and result.counts["enrollments"].created == 89


def test_row_errors_sample(sqlite_env):
    result = sqlite_env.process(SAMPLES / "row_errors")
    assert result.status == "applied"
    assert issue_rows(result) == sorted([
        ("invalid_value", "classes.csv", 11, "classType"),
        ("rejected_reference", "enrollments.csv", 8, "userSourcedId"),
        ("invalid_value", "enrollments.csv", 25, "beginDate"),
        ("unknown_reference", "enrollments.csv", 62, "classSourcedId"),
        ("unknown_column", "users.csv", 1, "favoriteColor"),
        ("invalid_value", "users.csv", 5, "email"),
        ("missing_value", "users.csv", 16, "givenName"),
        ("invalid_value", "users.csv", 41, "role"),
        ("duplicate_id", "users.csv", 48, "sourcedId"),
    ])


def test_messy_but_valid_sample_applies_with_alerts_only(sqlite_env):
    result = sqlite_env.process(SAMPLES / "messy_valid")
    assert result.status == "applied"
    assert issue_rows(result, "error") == []
    assert {i.code for i in result.issues} == {"normalized_value", "renamed_column"}
    assert len(sqlite_env.export()["people"]) == 58


def test_unusable_sample_is_rejected(sqlite_env):
    result = sqlite_env.process(SAMPLES / "unusable.zip")
    assert result.status == "rejected" and result.exit_code() == 2
    assert issue_rows(result) == [("bad_bundle", "unusable.zip", None, None)]


def test_mass_withdrawal_is_held_after_clean_and_delta_supersedes_it(sqlite_env):
    sqlite_env.process(SAMPLES / "clean")
    held = sqlite_env.process(SAMPLES / "mass_withdrawal")
    assert held.status == "held" and held.exit_code() == 3
    assert {(i.code, i.file) for i in held.issues if i.severity == "hold"} == {
        ("mass_deactivation", "users.csv"), ("mass_deactivation", "enrollments.csv")}
    delta = sqlite_env.process(SAMPLES / "delta")
    assert delta.status == "applied" and delta.issues == []
    c = delta.counts["users"]
    assert (c.created, c.updated, c.deactivated) == (1, 1, 1)
    from processor.pipeline import release_hold

    assert release_hold(sqlite_env.ctx, held.run_id).status == "superseded"
