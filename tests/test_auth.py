"""SFTP credentials: password hashes, authorized keys, the failed-login throttle."""

from __future__ import annotations

import subprocess
from pathlib import Path

import paramiko
import pytest

from processor.apply.store import credentials, open_store
from processor.context import UserError
from processor.intake.auth import (
    LoginThrottle,
    add_key,
    check_key,
    check_password,
    fingerprint,
    parse_public_key,
    set_password,
)


@pytest.fixture
def engine(tmp_path):
    return open_store("sqlite:///" + str(tmp_path / "store.db"))


def keygen(path: Path, kind: str = "ed25519", bits: int | None = None) -> Path:
    cmd = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "jane.doe@lincoln.example", "-f", str(path)]
    if bits:
        cmd[4:4] = ["-b", str(bits)]
    subprocess.run(cmd, check=True)
    return path


def stored(engine, tenant: str, kind: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(credentials.select().where(credentials.c.tenant == tenant,
                                                            credentials.c.kind == kind)))


# ---------------------------------------------------------------- passwords


def test_password_is_stored_as_a_salted_scrypt_hash_and_checks(engine):
    set_password(engine, "lincoln", "correct horse")
    set_password(engine, "roosevelt", "correct horse")
    (row,) = stored(engine, "lincoln", "password")
    (other,) = stored(engine, "roosevelt", "password")
    assert row.value.startswith("scrypt$") and "correct horse" not in row.value
    assert row.value != other.value  # salted: the same password hashes differently
    assert check_password(engine, "lincoln", "correct horse")
    assert not check_password(engine, "lincoln", "correct horsE")
    assert not check_password(engine, "lincoln", "")


def test_a_new_password_replaces_the_old_one(engine):
    set_password(engine, "lincoln", "first password")
    set_password(engine, "lincoln", "second password")
    assert len(stored(engine, "lincoln", "password")) == 1
    assert check_password(engine, "lincoln", "second password")
    assert not check_password(engine, "lincoln", "first password")


def test_no_password_set_means_no_password_login(engine):
    assert not check_password(engine, "lincoln", "")
    assert not check_password(engine, "nobody", "anything")


def test_passwords_are_per_tenant(engine):
    set_password(engine, "lincoln", "lincoln password")
    assert not check_password(engine, "roosevelt", "lincoln password")


# ---------------------------------------------------------------- keys


def test_add_key_returns_the_ssh_keygen_fingerprint_and_drops_the_comment(engine, tmp_path):
    key = keygen(tmp_path / "id")
    fp = add_key(engine, "lincoln", key.with_suffix(".pub"))
    expected = subprocess.run(["ssh-keygen", "-l", "-f", str(key.with_suffix(".pub"))],
                              check=True, capture_output=True, text=True).stdout.split()[1]
    assert fp == expected
    (row,) = stored(engine, "lincoln", "key")
    assert row.value.startswith("ssh-ed25519 AAAA") and "jane.doe" not in row.value
    add_key(engine, "lincoln", key.with_suffix(".pub"))  # twice: harmless, stored once
    assert len(stored(engine, "lincoln", "key")) == 1


def test_check_key_accepts_only_the_tenants_own_keys(engine, tmp_path):
    lincoln = keygen(tmp_path / "lincoln")
    roosevelt = keygen(tmp_path / "roosevelt", "ecdsa")
    add_key(engine, "lincoln", lincoln.with_suffix(".pub"))
    add_key(engine, "roosevelt", roosevelt.with_suffix(".pub"))
    lincoln_key = paramiko.PKey.from_path(lincoln)
    roosevelt_key = paramiko.PKey.from_path(roosevelt)
    assert check_key(engine, "lincoln", lincoln_key)
    assert check_key(engine, "roosevelt", roosevelt_key)
    assert not check_key(engine, "roosevelt", lincoln_key)
    assert not check_key(engine, "lincoln", roosevelt_key)
    assert not check_key(engine, "demo", lincoln_key)


def test_rsa_keys_need_2048_bits(engine, tmp_path):
    ok = keygen(tmp_path / "rsa2048", "rsa", 2048)
    assert add_key(engine, "lincoln", ok.with_suffix(".pub")).startswith("SHA256:")
    weak = keygen(tmp_path / "rsa1024", "rsa", 1024)
    with pytest.raises(UserError, match="1024 bits; at least 2048"):
        add_key(engine, "lincoln", weak.with_suffix(".pub"))


@pytest.mark.parametrize("text, message", [
    ("", "no public key"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
     "private key"),
    ("ssh-dss AAAAB3NzaC1kc3MAAACBAP== someone\n", "DSA keys are not accepted"),
    ('from="10.0.0.1" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== x\n', "not accepted"),
    ("ssh-ed25519 not*base64 x\n", "not valid base64"),
    ("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAAgQ== x\n", "does not"),
    ("ssh-ed25519\n", "no key data"),
    ("---- BEGIN SSH2 PUBLIC KEY ----\nAAAAC3NzaC1lZDI1NTE5\n---- END SSH2 PUBLIC KEY ----\n", "more than one line"),
])
def test_anything_but_one_acceptable_public_key_line_is_refused_with_a_reason(text, message):
    with pytest.raises(UserError, match=message):
        parse_public_key(text)


def test_add_key_names_a_missing_file(engine, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        add_key(engine, "lincoln", tmp_path / "nope.pub")


def test_the_private_key_file_is_refused(engine, tmp_path):
    key = keygen(tmp_path / "id")
    with pytest.raises(UserError, match="private key"):
        add_key(engine, "lincoln", key)
    assert stored(engine, "lincoln", "key") == []


def test_fingerprint_format():
    assert fingerprint(b"x").startswith("SHA256:") and not fingerprint(b"x").endswith("=")


# ---------------------------------------------------------------- throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_blocks_after_five_failures_within_a_minute_for_a_growing_delay():
    clock = Clock()
    throttle = LoginThrottle(max_failures=5, window_seconds=60, base_delay=30, max_delay=100, clock=clock)
    for _ in range(4):
        assert throttle.failure("10.0.0.1") == 0
    assert throttle.retry_after("10.0.0.1") == 0
    assert throttle.failure("10.0.0.1") == 30
    assert throttle.retry_after("10.0.0.1") == 30
    assert throttle.retry_after("10.0.0.2") == 0  # per address
    clock.now += 30
    assert throttle.retry_after("10.0.0.1") == 0
    for _ in range(4):
        throttle.failure("10.0.0.1")
    assert throttle.failure("10.0.0.1") == 60  # doubled
    clock.now += 60
    for _ in range(5):
        delay = throttle.failure("10.0.0.1")
    assert delay == 100  # capped


def test_throttle_forgets_failures_outside_the_window():
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window_seconds=60, clock=clock)
    throttle.failure("a")
    throttle.failure("a")
    clock.now += 61
    assert throttle.failure("a") == 0  # the first two are older than the window
    assert throttle.failure("a") == 0
    assert throttle.failure("a") == 30


def test_a_success_forgives_only_the_users_own_failures_never_the_addresss():
    # The bypass: a valid login as one's own tenant used to clear the address's count.
    throttle = LoginThrottle(max_failures=5, max_user_failures=3, clock=Clock())
    for _ in range(4):
        throttle.failure("10.0.0.1", "roosevelt")
    throttle.success("10.0.0.1", "lincoln")
    assert throttle.failure("10.0.0.1", "roosevelt") == 30  # the fifth: blocked all the same
    assert throttle.reserve("10.0.0.1", "lincoln") is None
    throttle.failure("10.0.0.2", "lincoln")
    throttle.failure("10.0.0.2", "lincoln")
    throttle.success("10.0.0.2", "lincoln")  # lincoln's own typos are forgiven
    assert throttle.failure("10.0.0.3", "lincoln") == 0


def test_guesses_at_one_user_from_many_addresses_block_that_users_password_only():
    throttle = LoginThrottle(max_failures=5, max_user_failures=10, clock=Clock())
    for i in range(9):
        assert throttle.failure(f"10.0.1.{i}", "roosevelt") == 0
    assert throttle.failure("10.0.1.9", "roosevelt") == 30
    assert throttle.reserve("10.0.2.1", "roosevelt") is None
    assert throttle.reserve("10.0.2.1", "lincoln") is not None
    # keys cannot be guessed: a tenant under a password attack still logs in with its key
    assert throttle.reserve("10.0.2.1", "roosevelt", "publickey") is not None


def test_attempts_in_flight_count_against_the_limit():
    # 30 parallel guesses used to be checked against a limit of 5 before any of them had failed.
    throttle = LoginThrottle(max_failures=5, clock=Clock())
    attempts = [throttle.reserve("10.0.0.1", f"user{i}") for i in range(30)]
    admitted = [a for a in attempts if a is not None]
    assert len(admitted) == 5
    assert [a.failed() for a in admitted][-1] == 30
    assert throttle.reserve("10.0.0.1", "user0") is None
    assert throttle.retry_after("10.0.0.1") == 30


def test_public_key_failures_are_throttled_at_a_quarter_of_a_password_failure():
    throttle = LoginThrottle(max_failures=5, max_key_failures=20, clock=Clock())
    for _ in range(19):
        assert throttle.reserve("10.0.0.1", "lincoln", "publickey").failed() == 0
    assert throttle.reserve("10.0.0.1", "lincoln", "publickey").failed() == 30
    assert throttle.reserve("10.0.0.1", "lincoln", "password") is None


def test_a_key_check_does_the_same_work_for_unknown_and_known_users(engine, tmp_path, monkeypatch):
    from sqlalchemy import event

    from processor.intake import auth

    add_key(engine, "lincoln", keygen(tmp_path / "k1").with_suffix(".pub"))
    stranger = paramiko.Ed25519Key.from_private_key_file(str(keygen(tmp_path / "k2")))
    work = {"sql": 0, "compare": 0}
    event.listen(engine, "before_cursor_execute", lambda *a: work.__setitem__("sql", work["sql"] + 1))
    real_compare = auth.hmac.compare_digest

    def compare(a, b):
        work["compare"] += 1
        return real_compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", compare)
    seen = []
    for user in ("lincoln", "nobody", "roosevelt"):
        work.update(sql=0, compare=0)
        assert check_key(engine, user, stranger) is False
        seen.append(dict(work))
    assert seen[0] == seen[1] == seen[2] and seen[0]["sql"] == 1 and seen[0]["compare"] >= 1


def test_throttle_tracks_a_bounded_number_of_addresses():
    throttle = LoginThrottle(max_tracked=3)
    for i in range(10):
        throttle.failure(f"10.0.0.{i}")
    assert len(throttle._records) == 3
