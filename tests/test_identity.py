"""Identity churn: a drop whose people came back under new sourcedIds is held as `probable_id_change`
naming examples; `rosterdrop roster alias` maps old → new so each person keeps one record."""

from __future__ import annotations

from collections import Counter

from processor.cli import main
from processor.events import read_events
from processor.pipeline import release_hold
from tests.bundles import CLEAN, ENROLLMENTS, USERS, with_changes

N = 8  # students of the test district, besides the people of CLEAN


def students(ids: list[str], emails: bool = True) -> str:
    return "".join(f"{sid},active,,true,s1,student,st{i},,Kid{i},Pupil{i},,S{i:03},"
                   f"{f'kid{i}@lincoln.example' if emails else ''},,,,03,,\n" for i, sid in enumerate(ids))


def enrolled(ids: list[str]) -> str:
    return "".join(f"x{i},active,,k1,s1,{sid},student,false,,\n" for i, sid in enumerate(ids))


def drop(ids: list[str], emails: bool = True, demographics: dict[str, str] | None = None) -> dict:
    files = with_changes(CLEAN, users_csv=USERS + students(ids, emails), enrollments_csv=ENROLLMENTS + enrolled(ids))
    if demographics is not None:
        files["demographics.csv"] = ("sourcedId,status,dateLastModified,birthDate,sex\n"
                                     + "".join(f"{sid},active,,{born},female\n" for sid, born in demographics.items()))
    return files


OLD = [f"old{i}" for i in range(N)]
NEW = [f"new{i}" for i in range(N)]


def people(env) -> dict[str, dict]:
    return {p["sourced_id"]: p for p in env.export(include_inactive=True)["people"]}


def test_new_ids_for_the_same_people_are_held_then_aliased_so_each_keeps_one_record(env, capsys):
    env.configure(lincoln={"max_deactivated_percent": 100})
    assert env.process(drop(OLD)).status == "applied"
    before = env.export(include_inactive=True)
    mark = read_events(env.ctx.engine, "lincoln").next
    migrated = drop(NEW[:6] + OLD[6:])  # the SIS renumbered six students
    held = env.process(migrated)
    assert held.status == "held"
    hold = next(i for i in held.issues if i.code == "probable_id_change")
    assert hold.severity == "hold" and hold.value == "6" and hold.file == "users.csv"
    assert "old0 → new0" in hold.message and "roster alias --tenant lincoln --entity people OLD NEW" in hold.message
    for old, new in zip(OLD[:6], NEW[:6], strict=True):
        assert main(["--home", str(env.home), "roster", "alias", "--tenant", "lincoln", "--entity", "people",
                     old, new, "--by", "ops"]) == 0
    released = release_hold(env.ctx, held.run_id)
    assert released.status == "applied"
    assert released.counts["users"].created == 0 and released.counts["users"].deactivated == 0
    assert env.export(include_inactive=True) == before  # same records, same ids, nothing deactivated
    changes = Counter(e["type"] for e in read_events(env.ctx.engine, "lincoln", after=mark).events)
    assert changes == {"run.held": 1, "hold.released": 1, "run.applied": 1}
    # The renamed ids keep matching their records night after night; a new value still comes through.
    again = env.process(with_changes(migrated, users_csv=migrated["users.csv"].replace("Kid0,", "Kiddo0,")))
    assert again.status == "applied" and again.counts["users"].updated == 1
    assert people(env)["old0"]["given_name"] == "Kiddo0" and "new0" not in people(env)
    capsys.readouterr()


def test_same_name_and_birth_date_count_as_near_identical_without_email(env):
    env.configure(lincoln={"max_deactivated_percent": 100})
    born = {sid: f"2017-0{i % 9 + 1}-1{i}" for i, sid in enumerate(OLD)}
    env.process(drop(OLD, emails=False, demographics=born))
    renamed = {**{NEW[i]: born[OLD[i]] for i in range(6)}, **{sid: born[sid] for sid in OLD[6:]}}
    held = env.process(drop(NEW[:6] + OLD[6:], emails=False, demographics=renamed))
    assert [i.value for i in held.issues if i.code == "probable_id_change"] == ["6"]
    # Different birth dates: different people, no such hold.
    other = {**{NEW[i]: "2016-01-01" for i in range(6)}, **{sid: born[sid] for sid in OLD[6:]}}
    result = env.process(drop(NEW[:6] + OLD[6:], emails=False, demographics=other))
    assert [i.code for i in result.issues if i.code == "probable_id_change"] == []


def test_a_few_new_ids_are_not_held_and_an_alias_needs_one_stored_record(env, capsys):
    env.configure(lincoln={"max_deactivated_percent": 100})
    env.process(drop(OLD))
    result = env.process(drop(NEW[:2] + OLD[2:]))  # two renumbered students: below the threshold
    assert result.status == "applied" and "new0" in people(env)
    home = ["--home", str(env.home), "roster", "alias", "--tenant", "lincoln", "--entity", "people"]
    assert main([*home, "old0", "new0"]) == 1
    assert "already has its own record" in capsys.readouterr().err
    assert main([*home, "nobody", "new9"]) == 1
    assert "no people record 'nobody'" in capsys.readouterr().err
