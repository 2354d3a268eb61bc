"""The built-in SFTP server, driven by the real OpenSSH `sftp`/`scp` clients (key auth) and paramiko (password)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import paramiko
import pytest

from processor.apply.store import credentials, open_store
from processor.home import init_home
from processor.intake.auth import LoginThrottle, add_key, hash_password
from processor.intake.sftp_server import SftpServer
from tests.helpers import wait_for

TENANTS = ["lincoln", "roosevelt"]
PASSWORDS = {"lincoln": "lincoln-secret-1", "roosevelt": "roosevelt-secret-1"}
QUIET = 0.5




class Spool:
    """Stands in for the real spool: records each call and moves the drop out of the inbox, as it will."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[tuple[str, str, bytes | list[str] | None]] = []
        self.lock = threading.Lock()
        root.mkdir()

    def __call__(self, tenant: str, path: Path) -> None:
        if path.is_dir():
            content: bytes | list[str] | None = sorted(p.name for p in path.iterdir())
        elif path.exists():
            content = path.read_bytes()
        else:
            content = None
        with self.lock:
            self.calls.append((tenant, path.name, content))
            n = len(self.calls)
        if path.exists():
            path.rename(self.root / f"{n}-{path.name}")

    def names(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(t, name) for t, name, _ in self.calls]


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    init_home(home, TENANTS)
    return home


@pytest.fixture(scope="module")
def password_hashes():
    # hashed once per module: scrypt is slow on purpose
    return {tenant: hash_password(pw) for tenant, pw in PASSWORDS.items()}


@pytest.fixture
def engine(tmp_path, password_hashes):
    engine = open_store("sqlite:///" + str(tmp_path / "store.db"))
    with engine.begin() as conn:
        for tenant, value in password_hashes.items():
            conn.execute(credentials.insert().values(tenant=tenant, kind="password", value=value,
                                                     created_at=time.time()))
    return engine


@pytest.fixture(scope="module")
def key_files(tmp_path_factory):
    out = {}
    for tenant in TENANTS:
        key = tmp_path_factory.mktemp("keys") / f"{tenant}_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        out[tenant] = key
    return out


@pytest.fixture
def keys(key_files, engine):
    """An Ed25519 key per tenant, authorized for that tenant only."""
    for tenant, key in key_files.items():
        add_key(engine, tenant, key.with_suffix(".pub"))
    return key_files


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool")


@pytest.fixture
def server(home, engine, spool):
    srv = SftpServer(home, engine, "127.0.0.1", 0, TENANTS, spool, quiet_period=QUIET)
    srv.start()
    yield srv
    srv.stop()


def ssh_opts(port: int, key: Path) -> list[str]:
    return ["-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=10"]


def openssh_sftp(server: SftpServer, key: Path, user: str, batch: str, *extra: str):
    """Run OpenSSH's sftp in batch mode; a failing command makes it exit non-zero."""
    cmd = ["sftp", "-b", "-", "-P", str(server.port), *ssh_opts(server.port, key), *extra, f"{user}@127.0.0.1"]
    return subprocess.run(cmd, input=batch, capture_output=True, text=True, timeout=30)


def connect(server: SftpServer, user: str = "lincoln", password: str | None = None):
    t = paramiko.Transport(("127.0.0.1", server.port))
    t.connect(username=user, password=password if password is not None else PASSWORDS[user])
    return t, paramiko.SFTPClient.from_transport(t)


def zip_bytes(n: int = 3) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(n):
            z.writestr(f"file{i}.csv", "sourcedId,status\n" + f"x{i},active\n" * 100)
    return buf.getvalue()


# ---------------------------------------------------------------- upload completion


def test_openssh_sftp_upload_with_key_is_handed_over_once_complete(server, keys, spool, tmp_path):
    local = tmp_path / "nightly.zip"
    local.write_bytes(zip_bytes())
    r = openssh_sftp(server, keys["lincoln"], "lincoln", f"put {local} nightly.zip\nls -l\n")
    assert r.returncode == 0, r.stderr
    assert spool.calls == [("lincoln", "nightly.zip", local.read_bytes())]
    assert not (server.inbox("lincoln") / "nightly.zip").exists()


def test_openssh_scp_upload_works(server, keys, spool, tmp_path):
    local = tmp_path / "by-scp.zip"
    local.write_bytes(zip_bytes())
    r = subprocess.run(["scp", "-P", str(server.port), *ssh_opts(server.port, keys["roosevelt"]),
                        str(local), "roosevelt@127.0.0.1:by-scp.zip"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert spool.calls == [("roosevelt", "by-scp.zip", local.read_bytes())]


def test_paramiko_password_upload_is_handed_over_only_after_close(server, spool):
    t, sftp = connect(server)
    try:
        f = sftp.open("drop.zip", "wb")
        f.write(zip_bytes())
        f.flush()
        sftp.stat("drop.zip")  # a round trip: the data is on the server, the file still open
        assert spool.calls == []
        f.close()
        assert spool.calls == [("lincoln", "drop.zip", zip_bytes())]
    finally:
        t.close()


def test_paramiko_put_confirms_the_size_of_a_drop_already_moved_to_the_spool(server, spool, tmp_path):
    local = tmp_path / "put.zip"
    local.write_bytes(zip_bytes())
    t, sftp = connect(server)
    try:
        attrs = sftp.put(str(local), "put.zip")  # stats the file after closing it, to confirm its size
        assert attrs.st_size == local.stat().st_size
        sftp.utime("put.zip", (0, 0))  # clients that preserve times set them after the close
        with pytest.raises(FileNotFoundError):
            sftp.open("put.zip", "rb")  # the drop itself is gone from the inbox
    finally:
        t.close()
    assert spool.calls == [("lincoln", "put.zip", local.read_bytes())]


def test_slow_upload_is_handed_over_once_after_close(server, spool):
    data = zip_bytes(20)
    t, sftp = connect(server)
    try:
        with sftp.open("slow.zip", "wb") as f:
            for i in range(0, len(data), len(data) // 5 + 1):
                f.write(data[i:i + len(data) // 5 + 1])
                f.flush()
                time.sleep(0.15)
                assert spool.calls == []
        assert spool.calls == [("lincoln", "slow.zip", data)]
    finally:
        t.close()
    time.sleep(0.1)
    assert len(spool.calls) == 1


def test_part_file_renamed_into_place_is_handed_over_under_its_new_name_only(server, spool, keys, tmp_path):
    local = tmp_path / "x.zip"
    local.write_bytes(zip_bytes())
    r = openssh_sftp(server, keys["lincoln"], "lincoln", f"put {local} x.zip.part\nrename x.zip.part x.zip\n")
    assert r.returncode == 0, r.stderr
    assert spool.calls == [("lincoln", "x.zip", local.read_bytes())]


def test_ignored_names_never_trigger(server, spool):
    t, sftp = connect(server)
    try:
        for name in ("a.part", "b.tmp", "c.filepart", ".hidden.zip", "D.PART"):
            with sftp.open(name, "wb") as f:
                f.write(b"data")
        sftp.mkdir(".staging")
        with sftp.open(".staging/e.zip", "wb") as f:
            f.write(b"data")
        sftp.rename("b.tmp", ".still-hidden")
    finally:
        t.close()
    time.sleep(QUIET + 0.3)
    assert spool.calls == []


def test_killed_upload_is_not_handed_over(server, spool):
    t, sftp = connect(server)
    f = sftp.open("cut.zip", "wb")
    f.write(os.urandom(256 * 1024))
    f.flush()
    sftp.stat("cut.zip")
    t.close()  # the connection drops with the file still open
    inbox = server.inbox("lincoln")
    wait_for(lambda: (inbox / "cut.zip.aborted").exists())
    assert not (inbox / "cut.zip").exists()
    time.sleep(0.1)
    assert spool.calls == []


def test_killed_part_upload_is_left_for_a_resume(server, spool):
    t, sftp = connect(server)
    f = sftp.open("resume.zip.part", "wb")
    f.write(b"half")
    f.flush()
    sftp.stat("resume.zip.part")
    t.close()
    time.sleep(0.3)
    assert (server.inbox("lincoln") / "resume.zip.part").read_bytes() == b"half"
    assert spool.calls == []


def test_loose_csvs_and_manifest_become_one_bundle_folder(server, spool, keys, tmp_path):
    for name in ("orgs.csv", "users.csv", "manifest.csv"):
        (tmp_path / name).write_text("x\n")
    (tmp_path / "manifest.csv").write_text(
        "propertyName,value\nmanifest.version,1.0\nfile.orgs,bulk\nfile.users,bulk\nfile.classes,absent\n")
    r = openssh_sftp(server, keys["lincoln"], "lincoln",
                     f"put {tmp_path}/orgs.csv\nput {tmp_path}/manifest.csv\nput {tmp_path}/users.csv\n")
    assert r.returncode == 0, r.stderr
    # the manifest named users.csv, so the bundle waited for it instead of leaving without it
    wait_for(lambda: spool.calls)
    ((tenant, folder, names),) = spool.calls
    assert tenant == "lincoln" and folder.startswith(".bundle-")
    assert names == ["manifest.csv", "orgs.csv", "users.csv"]
    assert [p.name for p in server.inbox("lincoln").iterdir()] == []


def test_loose_csvs_without_manifest_become_a_bundle_after_the_quiet_period(server, spool):
    t, sftp = connect(server, "roosevelt")
    try:
        for name in ("orgs.csv", "users.csv"):
            with sftp.open(name, "wb") as f:
                f.write(b"sourcedId\n")
        assert spool.calls == []
    finally:
        t.close()
    wait_for(lambda: spool.calls, timeout=QUIET * 10)
    assert [(t, n.startswith(".bundle-"), c) for t, n, c in spool.calls] == \
        [("roosevelt", True, ["orgs.csv", "users.csv"])]


def test_rename_of_a_folder_into_place_hands_over_its_files(server, spool):
    t, sftp = connect(server)
    try:
        sftp.mkdir("upload.part")
        with sftp.open("upload.part/a.zip", "wb") as f:
            f.write(b"zip")
        assert spool.calls == []
        sftp.rename("upload.part", "upload")
        assert spool.names() == [("lincoln", "a.zip")]
    finally:
        t.close()


def test_sender_can_ls_stat_mkdir_rename_and_remove_inside_the_inbox(server, spool):
    t, sftp = connect(server)
    try:
        assert sftp.normalize(".") == "/"
        sftp.mkdir("sub")
        with sftp.open("sub/x.part", "wb") as f:
            f.write(b"12345")
        assert sftp.stat("sub/x.part").st_size == 5
        assert sorted(sftp.listdir("/")) == ["results", "sub"] and sftp.listdir("sub") == ["x.part"]
        sftp.rename("sub/x.part", "sub/y.part")
        with pytest.raises(IOError):
            sftp.rename("sub/y.part", "sub")  # no overwrite
        sftp.remove("sub/y.part")
        sftp.rmdir("sub")
        assert sftp.listdir("/") == ["results"]  # only the read-only results folder
    finally:
        t.close()
    assert spool.calls == []


# ---------------------------------------------------------------- the jail


def test_dotdot_and_absolute_paths_stay_inside_the_inbox(server, home, spool):
    config_before = (home / "rosterdrop.toml").read_bytes()
    t, sftp = connect(server)
    try:
        assert sftp.normalize("../../..") == "/"
        assert sftp.normalize("/etc/passwd") == "/etc/passwd"  # the inbox's /etc, which does not exist
        for path in ("/etc/passwd", "../../rosterdrop.toml", "../roosevelt/x", "/../../ssh_host_ed25519_key"):
            with pytest.raises(FileNotFoundError):
                sftp.open(path, "rb")
        with pytest.raises(FileNotFoundError):
            sftp.open("/etc/passwd", "wb")
        assert sftp.listdir("/..") == sftp.listdir("/") == ["results"]
        # `..` cannot climb above the inbox: this write lands in the inbox, not next to the config
        with sftp.open("../../rosterdrop.toml", "wb") as f:
            f.write(b"[oops]")
    finally:
        t.close()
    assert (home / "rosterdrop.toml").read_bytes() == config_before
    assert spool.calls == [("lincoln", "rosterdrop.toml", b"[oops]")]
    assert not (home / "inbox" / "lincoln" / "etc").exists()


def test_openssh_client_cannot_read_outside(server, keys, tmp_path):
    r = openssh_sftp(server, keys["lincoln"], "lincoln", f"get /etc/passwd {tmp_path}/stolen\n")
    assert r.returncode != 0
    r = openssh_sftp(server, keys["lincoln"], "lincoln", f"get ../../ssh_host_ed25519_key {tmp_path}/stolen\n")
    assert r.returncode != 0
    assert not (tmp_path / "stolen").exists()


def test_planted_symlinks_lead_nowhere(server, spool, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("secret")
    inbox = server.inbox("lincoln")
    os.symlink(outside, inbox / "evil_dir")
    os.symlink(secret, inbox / "evil.zip")
    t, sftp = connect(server)
    try:
        for path in ("evil.zip", "evil_dir/secret.txt"):
            with pytest.raises(IOError):
                sftp.open(path, "rb").read()
            with pytest.raises(IOError):
                with sftp.open(path, "wb") as f:
                    f.write(b"overwritten")
        with pytest.raises(IOError):
            sftp.open("evil_dir/new.zip", "wb")
        with pytest.raises(IOError):
            sftp.listdir("evil_dir")
        with pytest.raises(IOError):
            sftp.stat("evil.zip")
        with pytest.raises(IOError):
            sftp.readlink("evil.zip")
        with pytest.raises(IOError):
            sftp.symlink("/etc/passwd", "mine.zip")
        with pytest.raises(IOError):
            sftp.rename("evil.zip", "evil_dir/moved.zip")
    finally:
        t.close()
    assert secret.read_text() == "secret"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert not (inbox / "mine.zip").exists()
    assert spool.calls == []


# ---------------------------------------------------------------- authentication


def test_a_tenants_key_cannot_log_in_as_another_tenant(server, keys, spool, tmp_path):
    local = tmp_path / "x.zip"
    local.write_bytes(b"zip")
    r = openssh_sftp(server, keys["lincoln"], "roosevelt", f"put {local}\n")
    assert r.returncode != 0 and "Permission denied" in r.stderr
    r = openssh_sftp(server, keys["lincoln"], "demo", f"put {local}\n")  # not a configured tenant
    assert r.returncode != 0
    assert spool.calls == []
    assert list(server.inbox("roosevelt").iterdir()) == []


def test_wrong_password_and_unknown_user_are_refused(server):
    with pytest.raises(paramiko.AuthenticationException):
        connect(server, "lincoln", "roosevelt-secret-1")
    with pytest.raises(paramiko.AuthenticationException):
        connect(server, "roosevelt", PASSWORDS["lincoln"])
    with pytest.raises(paramiko.AuthenticationException):
        connect(server, "root", "lincoln-secret-1")


def test_repeated_failed_logins_block_the_address(home, engine, spool):
    srv = SftpServer(home, engine, "127.0.0.1", 0, TENANTS, spool,
                     throttle=LoginThrottle(max_failures=2, base_delay=30))
    srv.start()
    try:
        for _ in range(2):
            with pytest.raises(paramiko.AuthenticationException):
                connect(srv, "lincoln", "guess")
        # blocked now: even the right password is refused, before any key exchange
        with pytest.raises((paramiko.SSHException, EOFError, OSError)):
            connect(srv, "lincoln")
    finally:
        srv.stop()


def server_kexinit(port: int) -> list[list[str]]:
    """The name-lists of the server's first KEXINIT (sent in the clear): kex, host key, ciphers, ..."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"SSH-2.0-probe\r\n")
        f = sock.makefile("rb")
        while not f.readline().startswith(b"SSH-"):
            pass
        length = int.from_bytes(f.read(4), "big")
        packet = f.read(length)
    payload = packet[1:length - packet[0]]
    assert payload[0] == 20  # SSH_MSG_KEXINIT
    pos, lists = 17, []
    for _ in range(10):
        n = int.from_bytes(payload[pos:pos + 4], "big")
        lists.append(payload[pos + 4:pos + 4 + n].decode().split(","))
        pos += 4 + n
    return lists


def test_cbc_and_3des_ciphers_are_not_offered(server, keys):
    offered = server_kexinit(server.port)
    for ciphers in offered[2:4]:  # client-to-server, server-to-client
        assert "aes128-ctr" in ciphers
        assert not [c for c in ciphers if "cbc" in c or "3des" in c]
    r = openssh_sftp(server, keys["lincoln"], "lincoln", "ls\n", "-o", "Ciphers=aes128-cbc,aes256-cbc")
    assert r.returncode != 0
    r = openssh_sftp(server, keys["lincoln"], "lincoln", "ls\n", "-o", "Ciphers=aes256-ctr")
    assert r.returncode == 0, r.stderr


def test_the_host_key_is_the_homes_ed25519_key(server, home):
    t = paramiko.Transport(("127.0.0.1", server.port))
    t.start_client(timeout=10)
    try:
        expected = paramiko.Ed25519Key.from_private_key_file(str(home / "ssh_host_ed25519_key"))
        assert t.get_remote_server_key().asbytes() == expected.asbytes()
    finally:
        t.close()


def upload_in_flight(home, engine, spool):
    """A started server, the client transport and the client's open.zip, written to and not closed yet:
    keep the file, which closes itself (completing the upload) once it is let go."""
    srv = SftpServer(home, engine, "127.0.0.1", 0, TENANTS, spool)
    srv.start()
    t, sftp = connect(srv)
    f = sftp.open("open.zip", "wb")
    f.write(b"partial")
    f.flush()
    sftp.stat("open.zip")
    return srv, t, f


def test_stop_returns_once_every_upload_in_flight_is_set_aside_even_when_closing_files_is_slow(
        home, engine, spool, monkeypatch):
    """A session closes the files its lost connection left open in a thread of its own (paramiko's
    subsystem handler), after the connection's thread has ended: stop waits for it, so a daemon that exits
    right after stop leaves no half-written file where a drop is expected. A slow disk is a slow close."""
    from processor.intake import sftp_server

    close = sftp_server._Handle.close

    def slow_close(self):
        time.sleep(0.5)
        return close(self)

    monkeypatch.setattr(sftp_server._Handle, "close", slow_close)
    srv, t, _open = upload_in_flight(home, engine, spool)
    srv.stop()
    inbox = srv.inbox("lincoln")
    assert (inbox / "open.zip.aborted").exists() and not (inbox / "open.zip").exists()
    assert spool.calls == []
    t.close()


def test_stop_closes_open_connections(home, engine, spool):
    srv, t, _open = upload_in_flight(home, engine, spool)
    srv.stop()
    wait_for(lambda: not t.is_active())
    assert spool.calls == []
    assert (srv.inbox("lincoln") / "open.zip.aborted").exists()
