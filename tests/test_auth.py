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


def test_throttle_forgets_failures_outside_the_window_and_after_a_success():
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window_seconds=60, clock=clock)
    throttle.failure("a")
    throttle.failure("a")
    clock.now += 61
    assert throttle.failure("a") == 0  # the first two are older than the window
    throttle.failure("a")
    throttle.success("a")
    assert throttle.failure("a") == 0


def test_throttle_tracks_a_bounded_number_of_addresses():
    throttle = LoginThrottle(max_tracked=3)
    for i in range(10):
        throttle.failure(f"10.0.0.{i}")
    assert len(throttle._records) == 3
