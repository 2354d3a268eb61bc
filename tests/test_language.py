"""preferred_language of people: from metadata.preferred_language, validated, default en, in the export."""

from __future__ import annotations

from sqlalchemy import text

from tests.bundles import CLEAN, ORGS, USERS, with_changes
from tests.test_apply import people

LANG_USERS = (USERS.replace(",metadata.MembeanSchoolAdmin", ",metadata.MembeanSchoolAdmin,metadata.preferred_language")
              .replace("tmartin@lincoln.example,,,,,,", "tmartin@lincoln.example,,,,,,,pt-BR")
              .replace("jdoe@lincoln.example,,,g1,03,,", "jdoe@lincoln.example,,,g1,03,,,es")
              .replace("jnunez@lincoln.example,,,g1,09,,", "jnunez@lincoln.example,,,g1,09,,, zh-Hant ")
              .replace("pobrien@lincoln.example,,,,,,TRUE", "pobrien@lincoln.example,,,,,,TRUE,English!")
              .replace("mdoe@mail.example,,,\"u2,u3\",,,", "mdoe@mail.example,,,\"u2,u3\",,,,spa")
              .replace("boss@lincoln.example,,,,,,", "boss@lincoln.example,,,,,,,"))


def test_preferred_language_is_kept_validated_and_defaults_to_en(env):
    result = env.process(with_changes(CLEAN, users_csv=LANG_USERS))
    assert result.status == "applied"
    bad = [(i.severity, i.code, i.file, i.line, i.sourced_id, i.field, i.value) for i in result.issues]
    assert bad == [("alert", "invalid_value", "users.csv", 5, "u4", "metadata.preferred_language", "English!")]
    assert "English (en) was used" in result.issues[0].message
    langs = {sid: p["preferred_language"] for sid, p in people(env).items()}
    assert langs == {"u1": "pt-BR", "u2": "es", "u3": "zh-Hant", "u4": "en", "g1": "spa", "a1": "en"}


def test_without_the_column_everyone_is_en(env):
    env.process(CLEAN)
    assert {p["preferred_language"] for p in people(env).values()} == {"en"}


def test_a_changed_language_is_an_update_of_that_field(env):
    env.process(with_changes(CLEAN, users_csv=LANG_USERS))
    result = env.process(with_changes(CLEAN, users_csv=LANG_USERS.replace(",,,g1,03,,,es", ",,,g1,03,,,fr")))
    assert result.counts["users"].updated == 1
    assert people(env)["u2"]["preferred_language"] == "fr"


def test_after_the_upgrade_stored_people_are_filled_in_silently_not_reported_as_updates(env):
    env.process(with_changes(CLEAN, users_csv=LANG_USERS))
    # The store as an older version left it: no preferred_language, hashes computed without it, no snapshot.
    with env.ctx.engine.begin() as conn:
        conn.execute(text("UPDATE people SET preferred_language = NULL, row_hash = row_hash + 1"))
        conn.execute(text("DELETE FROM roster_snapshots"))
    bumped = ORGS.replace("d1,active,,", "d1,active,2026-12-01T02:00:00Z,")  # same roster, other bytes
    result = env.process(with_changes(CLEAN, users_csv=LANG_USERS, orgs_csv=bumped))
    assert result.status == "applied"
    c = result.counts["users"]
    assert (c.created, c.updated, c.deactivated, c.unchanged) == (0, 0, 0, 6)
    with env.ctx.engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT sourced_id, preferred_language FROM people")).all())
    assert stored["u2"] == "es" and stored["a1"] == "en"
    # And the next drop finds the new hashes: nothing to rewrite.
    again = env.process(with_changes(CLEAN, users_csv=LANG_USERS, orgs_csv=bumped.replace("T02", "T03")))
    assert again.counts["users"].unchanged == 6 and again.counts["users"].updated == 0


def test_a_clever_drop_carries_it_in_an_extension_column(sqlite_env):
    from pathlib import Path

    samples = Path(__file__).resolve().parent.parent / "sample_drops" / "clever"
    files = {p.name: p.read_bytes() for p in samples.glob("*.csv")}
    head, *rows = files["students.csv"].decode().replace("\r\n", "\r").split("\r")
    rows = [r for r in rows if r]
    langs = ["es", "not a language"] + ["vi"] * (len(rows) - 2)
    files["students.csv"] = "\r".join([head + ",ext.preferred_language",
                                       *(f"{r},{lang}" for r, lang in zip(rows, langs, strict=True))]).encode()
    result = sqlite_env.process(files)
    assert result.format == "clever" and result.status == "applied"
    assert [(i.code, i.file, i.line) for i in result.issues if i.field == "metadata.ext.preferred_language"] == [
        ("invalid_value", "students.csv", 3)]
    students = {sid: p["preferred_language"] for sid, p in people(sqlite_env).items() if p["role"] == "student"}
    first, second = rows[0].split(",")[0], rows[1].split(",")[0]
    assert students[first] == "es" and students[second] == "en" and set(students.values()) == {"es", "en", "vi"}
