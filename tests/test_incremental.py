"""Incremental nightlies (convert.incremental), case by case: what is skipped, and that nothing else is.

Each case runs the same drops for two tenants of one store: `lincoln` on the incremental path, `roosevelt`
with ROSTERDROP_INCREMENTAL=0; both must agree on everything (tests/test_incremental_property.py's
comparison), and the case says how many rows the incremental run did not convert again.
"""

from __future__ import annotations

import logging

import pytest

from processor.apply.locks import lock_field, unlock_field
from processor.pipeline import release_hold
from processor.runs import RunStatus
from processor.status import revert
from tests.bundles import CLEAN, ENROLLMENTS, USERS, with_changes
from tests.test_incremental_property import FULL, INC, _configure, _same_results, _state
from tests.test_incremental_property import as_zip as _zip

ROWS = sum(len(text.strip().splitlines()) - 1 for text in CLEAN.values())  # data rows of CLEAN


@pytest.fixture
def both(env, monkeypatch, caplog):
    """both(files) → (incremental result, full result, rows not converted again); asserts they agree."""
    caplog.set_level(logging.INFO, logger="rosterdrop.pipeline")
    _configure(env, {})

    def run(files, release: bool = False):
        out, skipped = [], 0
        for tenant in (INC, FULL):
            monkeypatch.setenv("ROSTERDROP_INCREMENTAL", "1" if tenant == INC else "0")
            caplog.clear()
            result = env.process(_zip(env, files), tenant=tenant)
            if release and result.status == RunStatus.HELD:
                result = release_hold(env.ctx, result.run_id, by="test")
            if tenant == INC:
                skipped = sum(int(r.getMessage().split(" rows ")[0].rsplit(" ", 1)[1]) for r in caplog.records
                              if "not converted again" in r.getMessage())
            else:
                assert not any("not converted again" in r.getMessage() for r in caplog.records)
            out.append(result)
        _same_results(*out)
        assert _state(env, INC) == _state(env, FULL)
        return out[0], out[1], skipped

    run.env = env
    return run


def test_a_repeated_drop_converts_nothing_again(both):
    both(CLEAN)
    inc, _, skipped = both(CLEAN)
    assert inc.status == RunStatus.APPLIED and skipped == ROWS
    assert all(c.created == c.updated == c.deactivated == 0 for c in inc.counts.values())


def test_only_the_changed_row_is_converted(both):
    both(CLEAN)
    inc, _, skipped = both(with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tamara")))
    assert inc.counts["users"].updated == 1 and skipped == ROWS - 1


def test_line_endings_bom_and_quoting_change_nothing(both):
    both(CLEAN)
    crlf = {n: ("\ufeff" if n == "users.csv" else "") + t.replace("\n", "\r\n") for n, t in CLEAN.items()}
    _, _, skipped = both(crlf)
    assert skipped == ROWS
    quoted = with_changes(CLEAN, users_csv=USERS.replace("Tara,Martin", '"Tara","Martin"'))
    _, _, skipped = both(quoted)
    assert skipped == ROWS


def test_a_value_with_a_newline_is_one_row_either_way(both):
    both(CLEAN)
    multi = with_changes(CLEAN, classes_csv=CLEAN["classes.csv"].replace("Room 12", '"Room\n12"'))
    inc, _, skipped = both(multi)
    assert inc.counts["classes"].updated == 1 and skipped == ROWS - 1
    _, _, skipped = both(multi)
    assert skipped == ROWS


def test_an_unchanged_enrollment_of_a_rejected_class_keeps_its_stored_record(both):
    both(CLEAN)
    broken = with_changes(CLEAN, classes_csv=CLEAN["classes.csv"].replace("k2,active,,Algebra I - P1,\"09,10\",c2",
                                                                           "k2,active,,Algebra I - P1,\"09,10\",zz"))
    inc, _, skipped = both(broken)
    assert inc.counts["classes"].rejected == 1 and inc.counts["enrollments"].rejected == 2
    assert inc.counts["enrollments"].deactivated == 0
    assert skipped == ROWS - 3  # the class and its two enrollments went through (and were rejected)
    # Fixed: the stored records of the rejected rows were kept as the first drop made them, from the very
    # lines this drop sends again.
    inc, _, skipped = both(CLEAN)
    assert skipped == ROWS and inc.counts["classes"].rejected == 0


def test_an_unchanged_enrollment_of_a_person_who_left(both):
    both(CLEAN)
    gone = with_changes(CLEAN, users_csv="\n".join(line for line in USERS.splitlines() if not line.startswith("u3,")))
    inc, _, skipped = both(gone, release=True)
    # e3 (u3's enrollment) is unchanged, but now names nobody: rejected, like in the full path.
    assert inc.counts["enrollments"].rejected == 1
    assert skipped > 0


def test_an_org_that_stops_being_a_school_reconverts_its_people(both):
    both(CLEAN)
    orgs = CLEAN["orgs.csv"].replace("s2,active,,Lincoln High,school", "s2,active,,Lincoln High,department")
    inc, _, skipped = both(with_changes(CLEAN, orgs_csv=orgs), release=True)
    people = len(USERS.strip().splitlines()) - 1
    assert skipped <= ROWS - 1 - people  # every person's schools are computed again
    assert inc.counts["users"].updated >= 2


def test_a_policy_change_takes_the_full_path_once(both):
    both(CLEAN)
    _configure(both.env, {"role_map": {"districtAdministrator": "teacher"}})
    inc, _, skipped = both(CLEAN)
    assert skipped == 0 and inc.counts["users"].updated == 1
    _, _, skipped = both(CLEAN)
    assert skipped == ROWS


def test_manifest_modes_change(both):
    both(CLEAN)
    manifest = ("propertyName,value\noneroster.version,1.1\nfile.academicSessions,bulk\nfile.orgs,bulk\n"
                "file.courses,bulk\nfile.classes,bulk\nfile.users,delta\nfile.enrollments,absent\n")
    delta = with_changes(CLEAN, manifest_csv=manifest, enrollments_csv=None,
                         users_csv="\n".join(USERS.splitlines()[:3]) + "\n")
    inc, _, skipped = both(delta)
    assert inc.status == RunStatus.APPLIED and skipped > 0
    _, _, skipped = both(CLEAN)
    assert skipped > 0


def test_a_revert_makes_the_next_drop_take_the_full_path(both):
    both(CLEAN)
    inc, full, _ = both(with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tamara")))
    revert(both.env.ctx, inc.run_id)
    revert(both.env.ctx, full.run_id)
    _, _, skipped = both(CLEAN)
    assert skipped == 0


def test_a_released_hold_leaves_the_state_of_what_it_applied(both):
    _configure(both.env, {"min_deactivated_count": 0, "max_deactivated_percent": 10})
    both(CLEAN)
    fewer = with_changes(CLEAN, enrollments_csv="\n".join(ENROLLMENTS.splitlines()[:-2]) + "\n")
    inc, _, _ = both(fewer)
    assert inc.status == RunStatus.HELD
    inc, _, _ = both(fewer, release=True)  # a newer drop of the same bytes would be a duplicate: held again
    _, _, skipped = both(fewer)
    assert skipped == ROWS - 2


def test_locked_fields_are_counted_every_night(both):
    both(CLEAN)
    for tenant in (INC, FULL):
        lock_field(both.env.ctx.engine, tenant, "people", "u2", "given_name", "Janie", by="test")
    inc, _, skipped = both(CLEAN)
    assert [i.code for i in inc.issues].count("manual_change_kept") == 1
    assert skipped == ROWS - 1  # the locked row is converted (its alert counts the value kept)
    for tenant in (INC, FULL):
        unlock_field(both.env.ctx.engine, tenant, "people", "u2", "given_name", by="test")
    inc, _, _ = both(CLEAN)
    assert inc.counts["users"].updated == 1  # the SIS's value is written back


def test_the_switch_is_off_by_default_and_turning_it_on_converts_everything_once(env, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="rosterdrop.pipeline")
    monkeypatch.delenv("ROSTERDROP_INCREMENTAL", raising=False)
    env.process(_zip(env, CLEAN))
    env.process(_zip(env, with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tamara"))))
    assert not any("not converted again" in r.getMessage() for r in caplog.records)
    monkeypatch.setenv("ROSTERDROP_INCREMENTAL", "1")
    env.process(_zip(env, CLEAN))  # no line hashes were kept while it was off
    assert not any("not converted again" in r.getMessage() for r in caplog.records)
    env.process(_zip(env, CLEAN))
    assert any("not converted again" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("sample", ["clever", "oneroster12", "messy_valid", "delta"])
def test_other_formats_and_messy_files_skip_what_is_unchanged(both, sample):
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "sample_drops" / sample
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    both(files, release=True)
    _, _, skipped = both(files, release=True)
    assert skipped > 0


def test_aliased_people_stay_matched_without_being_converted_again(both):
    from processor.apply.identity import add_alias
    from tests.test_identity import NEW, OLD, drop

    both(drop(OLD))
    for tenant in (INC, FULL):
        for old, new in zip(OLD[:3], NEW[:3], strict=True):
            add_alias(both.env.ctx.engine, tenant, "people", old, new, by="test")
    migrated = drop(NEW[:3] + OLD[3:])  # the SIS renumbered three students, mapped to their records
    inc, _, skipped = both(migrated)
    assert inc.status == RunStatus.APPLIED and inc.counts["users"].created == 0
    assert skipped == 0  # the aliases are new: everything is converted once under them
    inc, _, skipped = both(migrated)
    assert skipped > 0 and all(c.created == c.updated == c.deactivated == 0 for c in inc.counts.values())
