"""What an attacker gets out of the SFTP door: tenant probing by key-auth timing, parallel password
guesses, and idle-connection floods. Real paramiko clients against the real server (in this process).

    .venv/bin/python bench/sftp_attack_bench.py [--probes 200] [--idle 64]

1. Public-key probe: a key that is authorized nowhere, offered for a configured tenant and for an unknown
   user name, --probes times each (alternating, one connection per user name, throttle off). Prints the
   median and the 10th-90th percentiles of the server's answer time as the client sees it.
2. 30 parallel password guesses at one tenant (one connection each, released together) against a limit of
   5: how many reached the password hash, how many were refused unchecked.
3. --idle idle TCP connections from 127.0.0.1 (they never say anything), then a real password login from
   the same address and from 127.0.0.2: seconds until each is logged in, and the log lines the flood made
   (lines with a traceback, lines in total).

Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import paramiko

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from processor.apply.store import credentials, open_store  # noqa: E402
from processor.home import init_home  # noqa: E402
from processor.intake.auth import LoginThrottle, add_key, hash_password  # noqa: E402
from processor.intake.sftp_server import SftpServer  # noqa: E402

PASSWORD = "bench-password-1"


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def versions() -> str:
    from importlib.metadata import version

    return (f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
            f"python {platform.python_version()}; paramiko {version('paramiko')}, sqlalchemy {version('sqlalchemy')}")


def server(home: Path, engine, **kwargs) -> SftpServer:
    srv = SftpServer(home, engine, "127.0.0.1", 0, ["lincoln", "roosevelt"], lambda t, p: p.unlink(), **kwargs)
    srv.start()
    return srv


def transport(srv: SftpServer, source: str = "127.0.0.1") -> paramiko.Transport:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=60, source_address=(source, 0))
    t = paramiko.Transport(sock)
    t.banner_timeout = 60
    return t


def key_probe(home: Path, engine, probes: int) -> None:
    srv = server(home, engine, throttle=LoginThrottle(max_failures=10**9, max_key_failures=10**9))
    stranger = paramiko.Ed25519Key.generate() if hasattr(paramiko.Ed25519Key, "generate") else None
    if stranger is None:
        import subprocess

        path = home / "stranger"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        stranger = paramiko.Ed25519Key.from_private_key_file(str(path))
    times: dict[str, list[float]] = {"lincoln": [], "nobody": []}
    conns: dict[str, paramiko.Transport | None] = {"lincoln": None, "nobody": None}
    try:
        for i in range(probes * 2):
            # paramiko's server drops a client that changes user name mid-way: one connection per user name
            user = "lincoln" if i % 2 == 0 else "nobody"
            t = conns[user]
            if t is None or not t.is_active():
                if t is not None:
                    t.close()
                t = conns[user] = transport(srv)
                t.start_client(timeout=60)
            start = time.perf_counter()
            try:
                t.auth_publickey(user, stranger)
            except paramiko.AuthenticationException:
                pass
            times[user].append((time.perf_counter() - start) * 1000)
    finally:
        for t in conns.values():
            if t is not None:
                t.close()
        srv.stop()
    print("1. public-key probe (ms per answer, client side): median [p10-p90]")
    for user, label in (("lincoln", "configured tenant"), ("nobody", "unknown user")):
        q = statistics.quantiles(times[user], n=10)
        print(f"   {label:18s} {statistics.median(times[user]):6.3f} [{q[0]:.3f}-{q[-1]:.3f}]  n={len(times[user])}")


def parallel_guesses(home: Path, engine, lines: Lines) -> None:
    srv = server(home, engine, throttle=LoginThrottle(max_failures=5, base_delay=60),
                 max_unauthenticated=40, max_unauthenticated_per_address=40)
    lines.records.clear()
    barrier = threading.Barrier(30)

    def guess(i: int) -> None:
        t = transport(srv)
        try:
            t.start_client(timeout=60)
            barrier.wait(timeout=60)
            t.auth_password("roosevelt", f"guess-{i}")
        except (paramiko.SSHException, EOFError, OSError):
            pass
        finally:
            t.close()

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(30)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    srv.stop()
    msgs = [r.getMessage() for r in lines.records]
    hashed = sum("wrong password" in m for m in msgs)
    unchecked = sum("login refused (password, throttled" in m for m in msgs)
    print(f"2. 30 parallel guesses, limit 5: {hashed} reached the hash, {unchecked} refused unchecked")


def idle_flood(home: Path, engine, idle: int, lines: Lines) -> None:
    srv = server(home, engine)
    lines.records.clear()
    socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=60) for _ in range(idle)]
    time.sleep(0.5)
    try:
        for source in ("127.0.0.1", "127.0.0.2"):
            start = time.perf_counter()
            t = transport(srv, source)
            t.connect(username="lincoln", password=PASSWORD)
            took = time.perf_counter() - start
            t.close()
            print(f"3. {idle} idle connections from 127.0.0.1, then a login from {source}: logged in after {took:.2f} s")
    finally:
        for s in socks:
            s.close()
    time.sleep(1)
    srv.stop()
    shown = [r for r in lines.records if r.levelno >= logging.INFO]
    tb = sum("Traceback" in r.getMessage() or r.getMessage().startswith("  File") for r in shown)
    print(f"   log lines at INFO or above: {len(shown)} (with a traceback: {tb})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--idle", type=int, default=64)
    args = ap.parse_args()
    print(versions())
    lines = Lines()
    logging.getLogger().addHandler(lines)
    logging.getLogger().setLevel(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        init_home(home, ["lincoln", "roosevelt"])
        engine = open_store("sqlite:///" + str(home / "store.db"))
        with engine.begin() as conn:
            for tenant in ("lincoln", "roosevelt"):
                conn.execute(credentials.insert().values(tenant=tenant, kind="password",
                                                         value=hash_password(PASSWORD), created_at=time.time()))
        import subprocess

        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / "lincoln_key")], check=True)
        add_key(engine, "lincoln", home / "lincoln_key.pub")
        key_probe(home, engine, args.probes)
        parallel_guesses(home, engine, lines)
        idle_flood(home, engine, args.idle, lines)


if __name__ == "__main__":
    main()
