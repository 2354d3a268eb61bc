"""What an attacker can do to the SFTP door: guess passwords in parallel, probe for tenants, flood it with
idle connections, fill the disk. Real paramiko and OpenSSH clients against the real server.
"""

from __future__ import annotations

import logging
import socket
import threading

import paramiko
import pytest
from sqlalchemy import event

from processor.intake.auth import LoginThrottle
from processor.intake.limits import UploadLimits
from processor.intake.sftp_server import SftpServer
from tests.helpers import wait_for
from tests.test_sftp_server import (  # noqa: F401 - fixtures
    PASSWORDS,
    QUIET,
    TENANTS,
    engine,
    home,
    key_files,
    keys,
    openssh_sftp,
    password_hashes,
    spool,
    zip_bytes,
)


@pytest.fixture
def make_server(home, engine, spool):  # noqa: F811
    started = []

    def make(**kwargs) -> SftpServer:
        srv = SftpServer(home, engine, "127.0.0.1", 0, TENANTS, spool, quiet_period=QUIET, **kwargs)
        srv.start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def transport_from(srv: SftpServer, source: str = "127.0.0.1") -> paramiko.Transport:
    """A paramiko transport whose connection comes from `source` (any 127.x address is local)."""
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=20, source_address=(source, 0))
    t = paramiko.Transport(sock)
    t.banner_timeout = 20
    return t


def login(srv: SftpServer, user: str, password: str, source: str = "127.0.0.1") -> bool:
    t = transport_from(srv, source)
    try:
        t.connect(username=user, password=password)
        return True
    except paramiko.AuthenticationException:
        return False
    except (paramiko.SSHException, EOFError, OSError):
        return False  # refused before authentication (a blocked address)
    finally:
        t.close()


def refusals(caplog, why: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if "login refused" in r.getMessage() and why in r.getMessage()]


# ---------------------------------------------------------------- the password throttle


def test_parallel_guesses_are_checked_against_the_limit_not_past_it(make_server, caplog):
    caplog.set_level(logging.INFO, logger="rosterdrop")
    srv = make_server(throttle=LoginThrottle(max_failures=5, base_delay=60), max_unauthenticated=40,
                      max_unauthenticated_per_address=40)
    results = []
    barrier = threading.Barrier(30)

    def guess(i: int) -> None:
        t = transport_from(srv)
        try:
            t.start_client(timeout=20)
            barrier.wait(timeout=30)
            t.auth_password("roosevelt", f"guess-{i}")
            results.append(True)
        except paramiko.AuthenticationException:
            results.append(False)
        except (paramiko.SSHException, EOFError, OSError):
            results.append(False)
        finally:
            t.close()

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(30)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert results.count(True) == 0 and len(results) == 30
    # Only five guesses ever reached the hash; the other 25 were refused unchecked.
    assert len(refusals(caplog, "wrong password")) == 5
    assert len(refusals(caplog, "throttled")) == 25
    assert not login(srv, "roosevelt", PASSWORDS["roosevelt"])  # blocked: even the right one


def test_a_login_as_ones_own_tenant_does_not_clear_the_guesses_at_another(make_server):
    srv = make_server(throttle=LoginThrottle(max_failures=5, base_delay=60))
    for i in range(4):
        assert not login(srv, "roosevelt", f"guess-{i}")
    assert login(srv, "lincoln", PASSWORDS["lincoln"])  # used to wipe the address's count
    assert not login(srv, "roosevelt", "guess-4")
    assert not login(srv, "roosevelt", PASSWORDS["roosevelt"])  # the address is blocked now


def test_guesses_at_one_tenant_from_many_addresses_are_counted_for_that_tenant(make_server, keys):  # noqa: F811
    srv = make_server(throttle=LoginThrottle(max_failures=5, max_user_failures=4, base_delay=60))
    for i in range(4):
        assert not login(srv, "roosevelt", f"guess-{i}", source=f"127.0.0.{10 + i}")
    assert not login(srv, "roosevelt", PASSWORDS["roosevelt"], source="127.0.0.20")
    assert login(srv, "lincoln", PASSWORDS["lincoln"], source="127.0.0.20")
    # the district itself, with its key, is not locked out by the attack on its password
    r = openssh_sftp(srv, keys["roosevelt"], "roosevelt", "ls\n")
    assert r.returncode == 0, r.stderr


def test_public_key_failures_are_throttled_too(make_server, key_files, keys, tmp_path):  # noqa: F811
    srv = make_server(throttle=LoginThrottle(max_failures=2, max_key_failures=4, base_delay=60))
    wrong = paramiko.Ed25519Key.from_private_key_file(str(key_files["roosevelt"]))
    t = transport_from(srv)
    t.start_client(timeout=20)
    for _ in range(4):
        with pytest.raises(paramiko.AuthenticationException):
            t.auth_publickey("lincoln", wrong)
    t.close()
    assert srv.throttle.retry_after("127.0.0.1") > 0
    assert not login(srv, "lincoln", PASSWORDS["lincoln"])


def test_refused_logins_of_every_kind_are_logged_at_info_without_the_secret(make_server, key_files,  # noqa: F811
                                                                            keys, caplog):  # noqa: F811
    caplog.set_level(logging.INFO, logger="rosterdrop")
    srv = make_server(throttle=LoginThrottle(max_failures=3, base_delay=60))
    wrong = paramiko.Ed25519Key.from_private_key_file(str(key_files["roosevelt"]))
    t = transport_from(srv)
    t.start_client(timeout=20)
    with pytest.raises(paramiko.AuthenticationException):
        t.auth_publickey("lincoln", wrong)
    t.close()
    assert not login(srv, "nobody.person@lincoln.example", "secret-typed-as-user")
    assert not login(srv, "lincoln", "Secret-Guess-1")
    assert not login(srv, "lincoln", "Secret-Guess-2")
    assert not login(srv, "lincoln", "Secret-Guess-3")
    lines = [r for r in caplog.records if "login refused" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.INFO] * len(lines)
    text = "\n".join(r.getMessage() for r in lines)
    assert "tenant lincoln: login refused (publickey, key not authorized) from 127.0.0.1" in text
    assert "tenant -: login refused (password, unknown user) from 127.0.0.1" in text
    assert "tenant lincoln: login refused (password, wrong password) from 127.0.0.1" in text
    all_text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("Secret-Guess", "secret-typed-as-user", "nobody.person", wrong.get_base64()[:20]):
        assert secret not in all_text
    # the block that followed: refused before the key exchange, one line
    assert not login(srv, "lincoln", PASSWORDS["lincoln"])
    assert any("refused: blocked for" in r.getMessage() for r in caplog.records)


def test_a_key_login_for_an_unknown_user_costs_what_it_costs_for_a_tenant(make_server, engine, key_files,  # noqa: F811
                                                                         keys):  # noqa: F811
    srv = make_server(throttle=LoginThrottle(max_failures=50, max_key_failures=100))
    wrong = paramiko.Ed25519Key.from_private_key_file(str(key_files["roosevelt"]))
    queries = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cur, statement, *a: queries.append(statement) if "sftp_credentials" in statement
                 else None)
    counts = {}
    for user in ("lincoln", "nobody"):
        queries.clear()
        t = transport_from(srv)
        t.start_client(timeout=20)
        with pytest.raises(paramiko.AuthenticationException):
            t.auth_publickey(user, wrong)
        t.close()
        counts[user] = len(queries)
    assert counts["lincoln"] == counts["nobody"] == 1  # an unknown user used to be answered unqueried


# ---------------------------------------------------------------- idle connections


def test_idle_connections_from_one_address_do_not_lock_out_a_real_login(make_server, caplog):
    caplog.set_level(logging.INFO)
    srv = make_server(max_connections=16, max_unauthenticated=8, max_unauthenticated_per_address=4)
    idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(64)]
    try:
        wait_for(lambda: len(srv._preauth) <= 4 and sum(
            "no SSH greeting" in r.getMessage() for r in caplog.records) >= 60, timeout=20)
        assert login(srv, "lincoln", PASSWORDS["lincoln"])  # from the flooding address itself
        assert login(srv, "roosevelt", PASSWORDS["roosevelt"], source="127.0.0.5")
    finally:
        for s in idle:
            s.close()
    wait_for(lambda: not [t for t in srv._transports if t.is_alive()], timeout=20)
    evicted = [r for r in caplog.records if "SFTP connection from 127.0.0.1 closed: no SSH greeting" in r.getMessage()]
    assert len(evicted) >= 60  # one line each
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "Traceback" not in text and "File \"" not in text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_connection_that_does_not_log_in_is_closed_after_the_grace_period(make_server, caplog):
    caplog.set_level(logging.INFO)
    srv = make_server(login_grace_seconds=1)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as s:
        s.sendall(b"SSH-2.0-slowloris\r\n")
        f = s.makefile("rb")
        while f.read(4096):  # the server's banner and KEXINIT, then the end: closed by the server
            pass
    wait_for(lambda: any("not logged in within 1 s" in r.getMessage() for r in caplog.records), timeout=10)
    assert "Traceback" not in "\n".join(r.getMessage() for r in caplog.records)


def test_logins_in_progress_are_capped_per_address_when_none_is_idle(make_server, caplog):
    caplog.set_level(logging.INFO)
    srv = make_server(max_unauthenticated_per_address=2)
    talking = []
    for i in range(3):  # each has sent its greeting: none may be evicted for a newcomer
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(b"SSH-2.0-probe\r\n")
        talking.append(s)
        if i < 2:
            wait_for(lambda n=i + 1: len(srv._preauth) == n and all(t.remote_version for t in srv._preauth),
                     timeout=10)
    try:
        wait_for(lambda: any("not logged in yet (at most 2)" in r.getMessage() for r in caplog.records),
                 timeout=10)
        assert login(srv, "lincoln", PASSWORDS["lincoln"], source="127.0.0.7")  # another address gets in
    finally:
        for s in talking:
            s.close()


# ---------------------------------------------------------------- upload limits


def upload(t: paramiko.Transport, name: str, data: bytes) -> None:
    sftp = paramiko.SFTPClient.from_transport(t)
    with sftp.open(name, "wb") as f:
        f.set_pipelined(False)
        for i in range(0, len(data), 32768):
            f.write(data[i:i + 32768])


def password_transport(srv: SftpServer, user: str = "lincoln") -> paramiko.Transport:
    t = transport_from(srv)
    t.connect(username=user, password=PASSWORDS[user])
    return t


def test_a_file_over_max_upload_bytes_is_refused_with_a_message_and_removed(make_server, spool, caplog):  # noqa: F811
    caplog.set_level(logging.INFO)
    srv = make_server(limits=UploadLimits(max_upload_bytes=100_000, max_files_per_session=10,
                                          max_inbox_bytes=10_000_000))
    t = password_transport(srv)
    try:
        with pytest.raises(OSError, match="file too large: at most 100,000 bytes per file"):
            upload(t, "big.zip", b"x" * 300_000)
    finally:
        t.close()
    wait_for(lambda: not (srv.inbox("lincoln") / "big.zip").exists())
    assert spool.calls == []
    assert list(srv.inbox("lincoln").iterdir()) == []
    assert any("upload of big.zip refused: file too large" in r.getMessage() for r in caplog.records)


def test_openssh_sftp_upload_over_the_limit_fails(make_server, keys, spool, tmp_path):  # noqa: F811
    srv = make_server(limits=UploadLimits(max_upload_bytes=50_000))
    local = tmp_path / "drop.zip"
    local.write_bytes(b"y" * 200_000)
    r = openssh_sftp(srv, keys["lincoln"], "lincoln", f"put {local}\n")
    assert r.returncode != 0
    small = tmp_path / "small.zip"
    small.write_bytes(zip_bytes())
    r = openssh_sftp(srv, keys["lincoln"], "lincoln", f"put {small}\n")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: spool.names() == [("lincoln", "small.zip")])


def test_files_per_session_are_capped(make_server, spool):  # noqa: F811
    srv = make_server(limits=UploadLimits(max_files_per_session=3))
    t = password_transport(srv)
    try:
        for i in range(3):
            upload(t, f"d{i}.zip", zip_bytes())
        with pytest.raises(OSError, match="at most 3 files per session"):
            upload(t, "d3.zip", zip_bytes())
    finally:
        t.close()
    wait_for(lambda: len(spool.calls) == 3)
    assert sorted(n for _, n in spool.names()) == ["d0.zip", "d1.zip", "d2.zip"]
    t = password_transport(srv)  # a new session may send more
    try:
        upload(t, "d3.zip", zip_bytes())
    finally:
        t.close()
    wait_for(lambda: len(spool.calls) == 4)


def test_the_inbox_quota_counts_what_waits_there(make_server, spool):  # noqa: F811
    srv = make_server(limits=UploadLimits(max_inbox_bytes=150_000))
    (srv.inbox("lincoln") / "old.part").write_bytes(b"p" * 100_000)  # kept for a resume
    t = password_transport(srv)
    try:
        with pytest.raises(OSError, match="quota exceeded"):
            upload(t, "new.zip", b"z" * 80_000)
        upload(t, "ok.zip", zip_bytes())
    finally:
        t.close()
    wait_for(lambda: spool.names() == [("lincoln", "ok.zip")])
    assert not (srv.inbox("lincoln") / "new.zip").exists()


def test_parallel_uploads_share_the_inbox_quota(make_server, spool, monkeypatch):  # noqa: F811
    from processor.intake import sftp_server

    monkeypatch.setattr(sftp_server, "QUOTA_CHECK_BYTES", 32768)
    srv = make_server(limits=UploadLimits(max_inbox_bytes=300_000))
    t1, t2 = password_transport(srv), password_transport(srv)
    try:
        files = [paramiko.SFTPClient.from_transport(t).open(f"p{i}.zip", "wb") for i, t in enumerate((t1, t2))]
        for f in files:
            f.set_pipelined(False)
        chunk = b"q" * 32768
        refused = []
        for _ in range(7):  # 2 x 7 x 32 KiB = 448 KiB into an inbox that may hold 300,000 bytes
            for f in files:
                try:
                    f.write(chunk)
                except OSError as exc:
                    refused.append(str(exc))
        assert refused and all("quota exceeded" in r for r in refused)
        for f in files:
            try:
                f.close()
            except OSError:
                pass
    finally:
        t1.close()
        t2.close()
    wait_for(lambda: sum(p.stat().st_size for p in srv.inbox("lincoln").iterdir()) <= 300_000)


def test_a_disabled_tenant_is_refused_as_disabled_and_an_accepted_login_names_its_method(make_server, engine,  # noqa: F811
                                                                                         caplog):
    from processor.apply.access import disable, enable

    caplog.set_level(logging.INFO, logger="rosterdrop")
    srv = make_server()
    disable(engine, "lincoln")
    assert not login(srv, "lincoln", PASSWORDS["lincoln"])
    assert refusals(caplog, "tenant lincoln: login refused (password, tenant disabled) from 127.0.0.1")
    enable(engine, "lincoln")
    t = transport_from(srv)
    try:
        t.connect(username="lincoln", password=PASSWORDS["lincoln"])
        paramiko.SFTPClient.from_transport(t).listdir(".")
    finally:
        t.close()
    assert any(r.getMessage() == "tenant lincoln: login accepted (password) from 127.0.0.1" for r in caplog.records)
