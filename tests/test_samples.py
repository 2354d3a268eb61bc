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
    # Exactly the table of sample_drops/README.md, in the order the program prints them.
    assert [(i.severity, i.code, i.file, i.line, i.sourced_id, i.field) for i in result.issues] == [
        ("alert", "renamed_column", "classes.csv", 1, None, "dataLastModified"),
        ("alert", "normalized_value", "classes.csv", 2, "cls-es-hr-kg", "classType"),
        ("alert", "normalized_value", "classes.csv", 6, "cls-hs-alg1-p2", None),
        ("alert", "normalized_value", "enrollments.csv", 2, "enr-0001", None),
        ("alert", "normalized_value", "enrollments.csv", 2, "enr-0001", "primary"),
        ("alert", "renamed_column", "orgs.csv", 1, None, "sourcedid"),
        ("alert", "renamed_column", "users.csv", 1, None, "OrgSourcedIDs"),
        ("alert", "normalized_value", "users.csv", 2, "adm-0001", "enabledUser"),
        ("alert", "normalized_value", "users.csv", 47, "grd-0002", "status"),
    ]
    status = result.issues[-1].message
    assert "('inactive' → 'tobedeleted'), first on line 47 (sourcedId grd-0002)" in status
    assert "first on line 2 (sourcedId enr-0001) and 3 more" in result.issues[3].message
    assert len(sqlite_env.export()["people"]) == 58


def test_unusable_sample_is_rejected(sqlite_env):
    result = sqlite_env.process(SAMPLES / "unusable.zip")
    assert result.status == "rejected" and result.exit_code() == 2
    assert issue_rows(result) == [("bad_bundle", "unusable.zip", None, None)]


def test_mass_withdrawal_is_held_after_clean_and_delta_supersedes_it(sqlite_env):
    sqlite_env.process(SAMPLES / "clean")
    held = sqlite_env.process(SAMPLES / "mass_withdrawal")
    assert held.status == "held" and held.exit_code() == 3
    # Exactly the table of sample_drops/README.md, in the order the program prints them.
    assert [(i.severity, i.code, i.file, i.line, i.sourced_id, i.field, i.value) for i in held.issues] == [
        ("hold", "mass_deactivation", "enrollments.csv", None, None, "status", "17%"),
        ("hold", "mass_deactivation", "users.csv", None, None, "status", "41%"),
        ("hold", "mass_deactivation", "users.csv", None, "org-lincoln-es", "school", "83%"),
        # Data checks: the elementary homerooms lost every student with the failed export.
        ("alert", "class_without_students", "classes.csv", 2, "cls-es-hr-kg", None, None),
        ("alert", "class_without_students", "classes.csv", 3, "cls-es-hr-02", None, None),
        ("alert", "class_without_students", "classes.csv", 4, "cls-es-hr-04", None, None),
    ]
    messages = [i.message for i in held.issues]
    assert messages[0].startswith("This full drop would deactivate 15 of 89 active enrollments (17%), more than "
                                  "your limit of 10% (and more than 10).")
    assert messages[1].startswith("This full drop would deactivate 24 of 59 active people (41%)")
    assert messages[2].startswith("This full drop would deactivate 24 of 29 active people at Washington Elementary "
                                  "School (83%), more than your limit of 25% for one school.")
    c = held.counts["users"]
    assert (c.created, c.updated, c.deactivated, c.unchanged) == (0, 1, 24, 34)
    delta = sqlite_env.process(SAMPLES / "delta")
    assert delta.status == "applied" and delta.issues == []
    c = delta.counts["users"]
    assert (c.created, c.updated, c.deactivated) == (1, 1, 1)
    from processor.pipeline import release_hold

    assert release_hold(sqlite_env.ctx, held.run_id).status == "superseded"
