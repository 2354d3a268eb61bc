"""Safeguards (issue 12, CONTRACT.md section 7): a bad drop never damages the stored roster.

Each test is one numbered problem of the issue: a tiny bundle in, the run result and the roster out.
"""

from __future__ import annotations

from tests.bundles import CLEAN, ENROLLMENTS, USERS, with_changes
from tests.test_apply import DELTA_MANIFEST, ENR_HEADER, USERS_HEADER, people

KEPT = "The record already in the roster was kept as it was."


def enrollments(env, include_inactive=True) -> dict[str, str]:
    return {e["sourced_id"]: e["status"] for e in env.export(include_inactive=include_inactive)["enrollments"]}


def links(env) -> set[tuple[str, str, str]]:
    return {(g["student"], g["guardian"], g.get("status", "active"))
            for g in env.export(include_inactive=True)["guardians"]}


# 1. A typo deactivates a student ---------------------------------------------------------------------------


def test_a_rejected_row_in_a_bulk_drop_keeps_the_stored_person_their_enrollments_and_links(env):
    assert env.process(CLEAN).status == "applied"
    before = env.export(include_inactive=True)
    # u2 (Jane) now has a blank givenName and a typo in her role: both reject her row.
    typo = USERS.replace("u2,active,,true,s1,student,jdoe,,Jane,", "u2,active,,true,s1,studnet,jdoe,,,")
    result = env.process(with_changes(CLEAN, users_csv=typo))
    assert result.status == "applied"
    assert result.counts["users"].rejected == 1 and result.counts["users"].deactivated == 0
    assert result.counts["enrollments"].deactivated == 0 and result.counts["enrollments"].rejected == 1
    after = env.export(include_inactive=True)
    assert after == before  # Jane, her enrollment e2 and her guardian link are exactly as they were
    errors = [i for i in result.issues if i.severity == "error" and i.sourced_id in ("u2", "e2")]
    assert errors and all(i.message.endswith(KEPT) for i in errors)


def test_a_rejected_row_of_a_new_person_is_not_said_to_be_kept(env):
    env.process(CLEAN)
    new = USERS + "u9,active,,true,s1,studnet,new,,New,Kid,,000999,new@lincoln.example,,,,03,,\n"
    result = env.process(with_changes(CLEAN, users_csv=new))
    (error,) = [i for i in result.issues if i.sourced_id == "u9"]
    assert error.severity == "error" and KEPT not in error.message
    assert "u9" not in people(env, include_inactive=True)


def test_a_rejected_class_keeps_its_stored_enrollments(env):
    env.process(CLEAN)
    before = env.export(include_inactive=True)
    classes = CLEAN["classes.csv"].replace("k2,active,,Algebra I - P1,", "k2,active,,,")  # blank title
    result = env.process(with_changes(CLEAN, classes_csv=classes))
    assert result.status == "applied"
    assert result.counts["classes"].rejected == 1 and result.counts["classes"].deactivated == 0
    assert result.counts["enrollments"].deactivated == 0
    assert env.export(include_inactive=True) == before


def test_stored_enrollments_of_a_rejected_person_stay_even_when_the_drop_leaves_them_out(env):
    env.process(CLEAN)
    typo = USERS.replace(",student,jdoe,", ",studnet,jdoe,")
    no_e2 = "\n".join(line for line in ENROLLMENTS.splitlines() if not line.startswith("e2,")) + "\n"
    result = env.process(with_changes(CLEAN, users_csv=typo, enrollments_csv=no_e2))
    assert result.counts["enrollments"].deactivated == 0
    assert enrollments(env)["e2"] == "active"


def test_a_rejected_row_keeps_an_inactive_record_inactive(env):
    env.process(CLEAN)
    gone = "\n".join(line for line in USERS.splitlines() if not line.startswith("u3,")) + "\n"
    enr = "\n".join(line for line in ENROLLMENTS.splitlines() if not line.startswith("e3,")) + "\n"
    assert env.process(with_changes(CLEAN, users_csv=gone, enrollments_csv=enr)).status == "applied"
    assert people(env, include_inactive=True)["u3"]["status"] == "inactive"
    back = gone + "u3,active,,true,s2,studnet,josé,,José,Núñez,,000124,jnunez@lincoln.example,,,g1,09,,\n"
    result = env.process(with_changes(CLEAN, users_csv=back, enrollments_csv=enr))
    assert result.counts["users"].rejected == 1
    assert people(env, include_inactive=True)["u3"]["status"] == "inactive"


def test_a_rejected_row_in_a_delta_changes_nothing_stored(env):
    env.process(CLEAN)
    before = env.export(include_inactive=True)
    users = USERS_HEADER + "u2,active,,true,s1,student,jdoe,,,Doe,,000123,new@lincoln.example,,,g1,03,,\n"
    result = env.process({"manifest.csv": DELTA_MANIFEST, "users.csv": users, "enrollments.csv": ENR_HEADER})
    assert result.status == "applied" and result.counts["users"].rejected == 1
    assert env.export(include_inactive=True) == before
    assert [i.message.endswith(KEPT) for i in result.issues if i.sourced_id == "u2"] == [True]


def test_release_of_a_held_drop_keeps_rejected_rows_as_stored(env):
    env.process(CLEAN)
    env.configure(lincoln={"max_guardians_per_student": 0})
    typo = USERS.replace(",student,jdoe,", ",studnet,jdoe,")
    held = env.process(with_changes(CLEAN, users_csv=typo + "g2,active,,true,s1,parent,g2,,G,Two,,,g2@x.example,,,u3,,,\n"))
    assert held.status == "held"
    from processor.pipeline import release_hold

    released = release_hold(env.ctx, held.run_id)
    assert released.status == "applied" and released.counts["users"].deactivated == 0
    assert people(env)["u2"]["given_name"] == "Jane" and enrollments(env)["e2"] == "active"
    assert ("u2", "g1", "active") in links(env)


# 2. A broken export is applied -----------------------------------------------------------------------------


def test_a_clever_export_whose_students_file_was_cut_short_is_held(env):
    from tests.test_clever import CLEVER, drop
    from tests.test_clever import ENROLLMENTS as CLEVER_ENROLLMENTS

    # The SIS export stopped after three students; enrollments.csv still names 40 more.
    extra = "".join(f"sch1,sec1,st{n}\n" for n in range(100, 140))
    result = env.process(drop(enrollments_csv=CLEVER_ENROLLMENTS + extra))
    assert result.status == "held" and result.exit_code() == 3
    (hold,) = [i for i in result.issues if i.severity == "hold"]
    assert (hold.code, hold.file) == ("rejected_rows", "enrollments.csv")
    assert "40 of 43 data rows of enrollments.csv (93%)" in hold.message and "limit of 10%" in hold.message
    assert env.export()["people"] == []  # nothing applied
    assert env.process(CLEVER).status == "applied"  # the complete export goes through


def test_a_required_column_blank_in_most_rows_is_held_but_a_few_errors_are_not(env):
    rows = "".join(f"n{n},active,,true,s1,student,n{n},,Kid{n},Doe,,{n:06},,,,,03,,\n" for n in range(20))
    env.configure(lincoln={"require": {"users": ["email"]}})
    result = env.process(with_changes(CLEAN, users_csv=USERS + rows))  # 20 of 26 rows lack an email
    assert [(i.code, i.file, i.value) for i in result.issues if i.severity == "hold"] == [
        ("rejected_rows", "users.csv", "77%")]
    few = "".join(f"n{n},active,,true,s1,student,n{n},,Kid{n},Doe,,{n:06},,,,,03,,\n" for n in range(5))
    result = env.process(with_changes(CLEAN, users_csv=USERS + few))
    assert result.status == "applied" and result.counts["users"].rejected == 5  # not more than 10 rows


# 3. Mass updates go through --------------------------------------------------------------------------------


def _district(n: int, surname: str = "Doe", domain: str = "lincoln.example") -> str:
    return USERS + "".join(f"n{i},active,,true,s1,student,n{i},,Kid{i},{surname},,{i:06},n{i}@{domain},,,,03,,\n"
                           for i in range(n))


def test_a_drop_that_updates_most_people_is_held(env):
    env.process(with_changes(CLEAN, users_csv=_district(20)))
    result = env.process(with_changes(CLEAN, users_csv=_district(20, "Other", "other.example")))
    assert result.status == "held"
    (hold,) = [i for i in result.issues if i.severity == "hold"]
    assert (hold.code, hold.file, hold.value) == ("mass_update", "users.csv", "77%")
    assert "would update 20 of 26 active people (77%), more than your limit of 50%" in hold.message
    assert people(env)["n1"]["family_name"] == "Doe"


def test_a_first_load_never_holds_for_updates_or_deactivations(env):
    assert env.process(with_changes(CLEAN, users_csv=_district(40))).status == "applied"


# 4. Tiny tables trip the threshold; one school of many is not caught ---------------------------------------


def test_removing_one_of_eight_courses_does_not_hold(env):
    courses = CLEAN["courses.csv"] + "".join(f"x{i},active,,y1,Extra {i},X{i},03,s1,,\n" for i in range(6))
    env.process(with_changes(CLEAN, courses_csv=courses))
    result = env.process(with_changes(CLEAN, courses_csv=courses.replace("x5,active,,y1,Extra 5,X5,03,s1,,\n", "")))
    assert result.status == "applied" and [i for i in result.issues if i.severity == "hold"] == []
    from tests.test_clever import rows_of

    assert rows_of(env, "courses", "status")["x5"] == ("inactive",)  # applied: the course is gone


def test_one_school_losing_most_of_its_people_is_held_though_the_district_is_under_its_limit(env):
    env.configure(lincoln={"max_deactivated_percent": 50})
    big = "".join(f"h{i},active,,true,s2,student,h{i},,Kid{i},High,,{i:06},h{i}@l.example,,,,09,,\n" for i in range(60))
    small = "".join(f"m{i},active,,true,s1,student,m{i},,Kid{i},Elem,,{i:06},m{i}@l.example,,,,03,,\n"
                    for i in range(20))
    env.process(with_changes(CLEAN, users_csv=USERS + big + small))
    result = env.process(with_changes(CLEAN, users_csv=USERS + big + small[: small.index("m8,")]))
    holds = [i for i in result.issues if i.severity == "hold"]
    assert [(i.code, i.sourced_id, i.field) for i in holds] == [("mass_deactivation", "s1", "school")]
    assert ("would deactivate 12 of 23 active people at Lincoln Elementary (52%), more than your limit of 25%"
            in holds[0].message)
    env.configure(lincoln={"max_deactivated_percent": 50, "max_deactivated_percent_per_school": 60})
    assert env.process(with_changes(CLEAN, users_csv=USERS + big + small[: small.index("m8,")] + "\n")
                       ).status == "applied"


def test_policy_keys_are_validated(env):
    import pytest

    from processor.config import ConfigError
    from processor.context import Context

    env.configure(lincoln={"max_rejected_percent": 150})
    with pytest.raises(ConfigError, match="tenants.lincoln.policy.max_rejected_percent"):
        Context.load(env.home).config.tenant("lincoln")


# 5. Releasing a hold erases it -----------------------------------------------------------------------------


def _held(env):
    env.configure(lincoln={"min_deactivated_count": 0})
    env.process(CLEAN)
    held = env.process(with_changes(CLEAN, enrollments_csv=ENR_HEADER + "e1,active,,k1,s1,u1,teacher,true,,\n"))
    assert held.status == "held"
    return held


def _outbox(env) -> list[tuple[str, str]]:
    from email import message_from_bytes, policy

    from sqlalchemy import select

    from processor.apply.store import outbox

    with env.ctx.engine.connect() as conn:
        rows = conn.execute(select(outbox.c.kind, outbox.c.message).order_by(outbox.c.id)).all()
    out = []
    for kind, raw in rows:
        msg = message_from_bytes(raw if isinstance(raw, bytes) else raw.encode(), policy=policy.default)
        out.append((kind, msg.get_body(("plain",)).get_content()))
    return out


def _attachments(env) -> list[list[str]]:
    from email import message_from_bytes, policy

    from sqlalchemy import select

    from processor.apply.store import outbox

    with env.ctx.engine.connect() as conn:
        raws = conn.execute(select(outbox.c.message).order_by(outbox.c.id)).scalars().all()
    return [[a.get_filename() for a in message_from_bytes(r if isinstance(r, bytes) else r.encode(),
                                                          policy=policy.default).iter_attachments()]
            for r in raws]


def test_release_keeps_the_hold_records_who_and_when_and_writes_its_report_beside_the_holds(env):
    from pathlib import Path

    from processor.pipeline import release_hold
    from processor.runs import RunStatus

    held = _held(env)
    first_report = Path(held.report).read_text()
    released = release_hold(env.ctx, held.run_id, by="alice@lincoln.example", note="end of term")
    assert released.status == RunStatus.APPLIED and released.exit_code() == 0
    assert [i.code for i in released.issues if i.severity == "hold"] == ["mass_deactivation"]
    assert (released.released.by, released.released.note) == ("alice@lincoln.example", "end of term")
    assert released.released.at and released.discarded is None
    assert released.counts["enrollments"].deactivated == 3
    # The hold's own report is untouched; the release's report is beside it and says what happened.
    assert Path(held.report).read_text() == first_report
    assert Path(released.report).parent.name == "release"
    report = Path(released.report).with_suffix(".txt").read_text()
    assert "Held for review (75% of enrollments would be removed), released by alice@lincoln.example at" in report
    assert "WHAT THE RELEASE CHANGED" in report and "were deactivated" in report
    assert (Path(released.report).parent / "changes.csv").exists()
    from processor.apply.runs import get_result

    stored = get_result(env.ctx.engine, held.run_id)
    assert stored.released == released.released and stored.status == "applied"
    kinds = [k for k, _ in _outbox(env)]
    assert kinds[-2:] == ["run_report", "hold_released"]
    notice = _outbox(env)[-1][1]
    assert "released by alice@lincoln.example at" in notice and "Note: end of term" in notice
    email = _outbox(env)[-2][1]
    assert email.startswith("HELD DROP RELEASED: ROSTER APPLIED") and "released by alice@lincoln.example" in email
    assert _attachments(env)[-2] == ["issues.csv", "changes.csv"]


def test_releasing_or_discarding_twice_changes_nothing_the_second_time(env):
    import pytest

    from processor.apply.hold_actions import AlreadyActed
    from processor.pipeline import discard_hold, release_hold

    held = _held(env)
    release_hold(env.ctx, held.run_id, by="alice")
    mails = len(_outbox(env))
    with pytest.raises(AlreadyActed, match="already released by alice") as again:
        release_hold(env.ctx, held.run_id, by="bob")
    assert again.value.same
    with pytest.raises(AlreadyActed, match="cannot be discarded") as other:
        discard_hold(env.ctx, held.run_id, by="bob")
    assert not other.value.same
    assert len(_outbox(env)) == mails
    from processor.apply.runs import get_result

    assert get_result(env.ctx.engine, held.run_id).released.by == "alice"


def test_discard_records_who_and_why_and_queues_the_notice(env):
    import getpass

    from processor.pipeline import discard_hold

    held = _held(env)
    discarded = discard_hold(env.ctx, held.run_id, note="wrong file")
    assert discarded.status == "discarded" and discarded.discarded.by == getpass.getuser()
    assert [i.code for i in discarded.issues if i.severity == "hold"] == ["mass_deactivation"]
    kind, text = _outbox(env)[-1]
    assert kind == "hold_discarded" and f"discarded by {getpass.getuser()} at" in text and "wrong file" in text
    assert len(env.export()["enrollments"]) == 4


# 6. Dry run always exits 0 ---------------------------------------------------------------------------------


def test_a_dry_run_exits_with_the_code_of_its_would_be_outcome(env):
    assert env.process(CLEAN, dry_run=True).exit_code() == 0
    env.process(CLEAN)
    held = _held_bundle(env)
    dry = env.process(held, dry_run=True)
    assert (dry.status, dry.outcome, dry.exit_code()) == ("dry_run", "held", 3)
    bad = env.tmp / "bad.zip"
    bad.write_bytes(b"not a zip")
    dry = env.process(bad, dry_run=True)
    assert (dry.status, dry.outcome, dry.exit_code()) == ("dry_run", "rejected", 2)
    assert [k for k, _ in _outbox(env)].count("run_report") == 1  # only the real run sent a report


def _held_bundle(env):
    env.configure(lincoln={"min_deactivated_count": 0})
    return with_changes(CLEAN, enrollments_csv=ENR_HEADER + "e1,active,,k1,s1,u1,teacher,true,,\n")


# 7. No re-send after discard; a duplicate upload sends nothing ---------------------------------------------


def test_the_same_file_sent_again_after_a_discard_is_a_new_run(env):
    from processor.pipeline import discard_hold

    env.process(CLEAN)
    path = env.bundle(_held_bundle(env))
    held = env.process(path)
    discard_hold(env.ctx, held.run_id)
    again = env.process(path)
    assert again.status == "held" and again.run_id != held.run_id
    assert env.process(path).status == "duplicate"  # held again: now it is a duplicate


def test_a_duplicate_upload_queues_a_notice_to_the_district(env):
    from processor.pipeline import process_path

    path = env.bundle(CLEAN)
    first = env.process(path)
    cli_dup = env.process(path)
    assert cli_dup.status == "duplicate" and [k for k, _ in _outbox(env)] == ["run_report"]  # the CLI user sees it
    dup = process_path(env.ctx, path, "lincoln", source="sftp")
    assert dup.status == "duplicate" and dup.exit_code() == 4
    kind, text = _outbox(env)[-1]
    assert kind == "duplicate_drop"
    assert f"already processed in run {first.run_id} on 20" in text and "nothing was done" in text


def test_the_catalogue_has_the_hold_codes_of_contract_section_7():
    import re
    from pathlib import Path

    import pytest

    from processor.validate.issues import CATALOGUE

    contract = Path(__file__).resolve().parents[2] / "shared" / "CONTRACT.md"
    if not contract.exists():
        pytest.skip("../shared/CONTRACT.md is not beside this clone")
    section = contract.read_text().split("## 7.")[1].split("## 8.")[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([a-z ,]+?) \|", section, re.M)
    assert {code for code, _ in rows} == {"mass_deactivation", "rejected_rows", "mass_update"}
    assert all(CATALOGUE[code].severity == severity.strip() for code, severity in rows)


def test_a_release_that_fails_before_it_applies_leaves_the_hold_open(env, monkeypatch):
    import pytest

    import processor.pipeline as pipeline
    from processor.context import UserError

    held = _held(env)

    def busy(*args, **kwargs):
        raise UserError("tenant lincoln is busy with another run; try again later")

    monkeypatch.setattr(pipeline, "process_drop", busy)
    with pytest.raises(UserError, match="busy"):
        pipeline.release_hold(env.ctx, held.run_id)
    monkeypatch.undo()
    assert pipeline.release_hold(env.ctx, held.run_id, by="alice").status == "applied"
