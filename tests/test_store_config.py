"""Store configuration (CONTRACT.md section 9): [store] password_env, and one line naming the URL (never its
password) and the cause for every store that cannot be reached or opened. Config checks at start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from processor.cli import main
from processor.config import load_config
from tests.conftest import PG_URL

ROOT = Path(__file__).resolve().parent.parent


def configure(home: Path, store: str, tenant: str = "") -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "rosterdrop.toml").write_text(
        "[store]\n" + store + "\n[sftp]\nenabled = false\n\n[tenants.lincoln]\nname = \"Lincoln\"\n" + tenant,
        encoding="utf-8")


def one_line_error(capsys, home: Path, *args: str, environ: dict | None = None) -> str:
    old = {k: os.environ.get(k) for k in (environ or {})}
    os.environ.update(environ or {})
    try:
        code = main(["--home", str(home), *args])
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rosterdrop: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.skipif(not PG_URL, reason="needs ROSTERDROP_TEST_PG_URL")
def test_password_env_puts_the_password_into_the_url_and_never_into_a_message(tmp_path, capsys):
    home = tmp_path / "home"
    secret = "s3cr:t@/?#x"
    url = make_url(PG_URL)
    configure(home, f'url = "{url.set(password=None).render_as_string()}"\npassword_env = "RD_TEST_STORE_PW"')
    cfg = load_config(home, environ={"RD_TEST_STORE_PW": secret})
    assert make_url(cfg.store_url()).password == secret

    # the server on this machine trusts 127.0.0.1: the URL with the password in it connects
    os.environ["RD_TEST_STORE_PW"] = secret
    try:
        code = main(["--home", str(home), "--json", "db", "current"])
    finally:
        del os.environ["RD_TEST_STORE_PW"]
    out, _ = capsys.readouterr()
    assert code == 0 and secret not in out and json.loads(out)["store"].endswith(url.database)

    missing_db = url.set(database="rd_w15_no_such_db", password=None).render_as_string()
    configure(home, f'url = "{missing_db}"\npassword_env = "RD_TEST_STORE_PW"')
    line = one_line_error(capsys, home, "runs", "list", environ={"RD_TEST_STORE_PW": secret})
    assert "the database does not exist" in line and "rd_w15_no_such_db" in line
    assert secret not in line and "s3cr" not in line and "***" in line


def test_password_env_naming_an_unset_variable_is_a_config_error(tmp_path, capsys):
    home = tmp_path / "home"
    configure(home, 'url = "postgresql+psycopg://rosterdrop@127.0.0.1/rosterdrop"\npassword_env = "RD_TEST_UNSET_PW"')
    line = one_line_error(capsys, home, "runs", "list")
    assert "store.password_env" in line and "RD_TEST_UNSET_PW is not set" in line


@pytest.mark.parametrize(("store", "cause"), [
    ('url = "postgresql+psycopg://rosterdrop:hunter22@127.0.0.1:1/rosterdrop"', "connection refused"),
    ('url = "postgresql+psycopg://rosterdrop:hunter22@no-such-host.invalid/rosterdrop"', "unknown host name"),
    ('url = "oracle9://rosterdrop:hunter22@db/rosterdrop"', "unsupported URL scheme 'oracle9'"),
    ('url = "mysql://rosterdrop:hunter22@db/rosterdrop"', "driver 'MySQLdb' is not installed"),
    ('url = "not a url"', "not a database URL"),
    ('url = "sqlite:////nonexistent-folder/rosterdrop.db"', "the folder /nonexistent-folder does not exist"),
])
def test_a_store_that_cannot_be_opened_is_one_line_naming_the_url_without_its_password(tmp_path, capsys, store,
                                                                                        cause):
    home = tmp_path / "home"
    configure(home, store)
    for command in (["runs", "list"], ["db", "upgrade"], ["init"]):
        line = one_line_error(capsys, home, *command)
        assert cause in line, line
        assert "hunter22" not in line
    if "://rosterdrop:" in store:
        assert "rosterdrop:***@" in line


@pytest.mark.skipif(not PG_URL, reason="needs ROSTERDROP_TEST_PG_URL")
def test_a_missing_database_user_is_named(tmp_path, capsys):
    home = tmp_path / "home"
    configure(home, f'url = "{make_url(PG_URL).set(username="rd_no_such_role").render_as_string()}"')
    assert "the database user does not exist" in one_line_error(capsys, home, "runs", "list")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_sqlite_store_in_a_read_only_folder_is_refused(tmp_path, capsys):
    home = tmp_path / "home"
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    configure(home, f'url = "sqlite:///{folder}/rosterdrop.db"')
    assert "is not writable by this user" in one_line_error(capsys, home, "runs", "list")


def test_an_environment_variable_error_names_the_variable_not_the_file(tmp_path, capsys):
    home = tmp_path / "home"
    configure(home, 'url = "sqlite:///rosterdrop.db"')
    line = one_line_error(capsys, home, "runs", "list", environ={"ROSTERDROP_SFTP__PORT": "twenty-two"})
    assert line.startswith("rosterdrop: error: ROSTERDROP_SFTP__PORT (sftp.port): ") and "rosterdrop.toml" not in line
    line = one_line_error(capsys, home, "runs", "list", environ={"ROSTERDROP_STORE__PASWORD_ENV": "X"})
    assert line.startswith("rosterdrop: error: ROSTERDROP_STORE__PASWORD_ENV (store.pasword_env): unknown key")


@pytest.mark.parametrize(("tenant", "key", "says"), [
    ('report_to = ["it@lincoln.example", "not an address"]', "tenants.lincoln.report_to.1", "not an email address"),
    ('report_to = ["it@lincoln.example, boss@lincoln.example"]', "tenants.lincoln.report_to.0",
     "not an email address"),
    ('report_to = ["it@lincoln.example\\r\\nBcc: all@evil.example"]', "tenants.lincoln.report_to.0", "U+000D"),
    ('report_to = ["it@lincoln.example\\u0085"]', "tenants.lincoln.report_to.0", "U+0085"),
    ('[tenants.lincoln.policy.require]\nusers = ["emial"]', "tenants.lincoln.policy.require.users.0",
     "'emial' is not a column of users.csv"),
    ('[tenants.lincoln.policy.require]\nschools = ["grades"]', "tenants.lincoln.policy.require.schools.0",
     "is not a column of orgs.csv"),
])
def test_config_checks_at_start_up(tmp_path, capsys, tenant, key, says):
    home = tmp_path / "home"
    configure(home, 'url = "sqlite:///rosterdrop.db"', tenant)
    line = one_line_error(capsys, home, "runs", "list")
    assert f"{key}: " in line and says in line


@pytest.mark.parametrize("name", ["Lincoln\u2028Unified", "Lincoln\u0085Unified", "Lincoln\r\nUnified",
                                  "Lincoln\u202eUnified", " "])
def test_a_tenant_name_that_would_break_every_run_is_refused_at_load(tmp_path, capsys, name):
    home = tmp_path / "home"
    configure(home, 'url = "sqlite:///rosterdrop.db"')
    text = (home / "rosterdrop.toml").read_text().replace('name = "Lincoln"', f"name = {json.dumps(name)}")
    (home / "rosterdrop.toml").write_text(text)
    assert "tenants.lincoln.name: " in one_line_error(capsys, home, "runs", "list")


def test_valid_addresses_and_columns_are_accepted(tmp_path):
    home = tmp_path / "home"
    configure(home, 'url = "sqlite:///rosterdrop.db"',
              'report_to = ["it@lincoln.example", "Lincoln IT <it-team@mail.lincoln.k12.example>"]\n'
              '[tenants.lincoln.policy.require]\nusers = ["email", "Identifier", "metadata.SSO"]\n'
              'classes = ["grades"]\nschools = ["identifier"]\nstudents = ["grades"]\n')
    cfg = load_config(home, environ={})
    assert cfg.tenants["lincoln"].policy.require.users == ["email", "Identifier", "metadata.SSO"]


def test_smtp_password_env_unset_is_a_warning_at_serve_start(tmp_path):
    home = tmp_path / "home"
    configure(home, 'url = "sqlite:///rosterdrop.db"')
    with (home / "rosterdrop.toml").open("a") as f:
        f.write('\n[smtp]\nhost = "127.0.0.1"\nport = 1\npassword_env = "RD_TEST_SMTP_UNSET"\n')
    subprocess.run([sys.executable, "-m", "processor", "--home", str(home), "init"], check=True,
                   capture_output=True, cwd=ROOT)
    env = {k: v for k, v in os.environ.items() if k != "RD_TEST_SMTP_UNSET"}
    done = subprocess.run([sys.executable, "-m", "processor", "--home", str(home), "serve", "--burst"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "WARNING" in done.stderr and "RD_TEST_SMTP_UNSET" in done.stderr and "is not set" in done.stderr


INITDB = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture
def scram_server():
    """A private PostgreSQL cluster that checks passwords (the shared one trusts 127.0.0.1)."""
    import pwd
    import shutil
    import socket

    if os.geteuid() != 0 or not (INITDB / "initdb").exists():
        pytest.skip("needs root and PostgreSQL 15's initdb to start a private cluster")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user")
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="rd-test-pg-"))  # not under pytest's tmp: postgres must reach it
    as_pg = ["runuser", "-u", "postgres", "--"]
    try:
        shutil.chown(root, "postgres")
        (root / "pw").write_text("right-password\n")
        shutil.chown(root / "pw", "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        subprocess.run([*as_pg, str(INITDB / "initdb"), "-D", str(root / "data"), "-U", "postgres",
                        "--auth=scram-sha-256", f"--pwfile={root / 'pw'}"], check=True, capture_output=True)
        subprocess.run([*as_pg, str(INITDB / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "log"), "-w",
                        "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"], check=True,
                       capture_output=True)
        yield port
    finally:
        subprocess.run([*as_pg, str(INITDB / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_authentication_failure_is_one_line_and_the_right_password_from_password_env_works(tmp_path, capsys,
                                                                                            scram_server):
    home = tmp_path / "home"
    configure(home, f'url = "postgresql+psycopg://postgres@127.0.0.1:{scram_server}/postgres"\n'
                    'password_env = "RD_TEST_STORE_PW"')
    line = one_line_error(capsys, home, "runs", "list", environ={"RD_TEST_STORE_PW": "wrong-password"})
    assert "authentication failed" in line and "wrong-password" not in line and "postgres:***@" in line
    os.environ["RD_TEST_STORE_PW"] = "right-password"
    try:
        assert main(["--home", str(home), "init"]) == 0
        assert main(["--home", str(home), "runs", "list"]) == 0
    finally:
        del os.environ["RD_TEST_STORE_PW"]
    assert "right-password" not in capsys.readouterr().out
