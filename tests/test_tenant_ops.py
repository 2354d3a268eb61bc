"""Tenant administration, status and the audit at the CLI (CONTRACT.md section 9), on both engines."""

from __future__ import annotations

import json
import subprocess

import paramiko
import pytest

from processor.apply.store import audit
from processor.cli import main
from processor.intake.auth import check_key, check_password, set_password
from tests.bundles import CLEAN, ENROLLMENTS, USERS, with_changes


def cli(capsys, env, *args: str) -> tuple[int, str, str]:
    code = main(["--home", str(env.home), *args])
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys, env, *args: str) -> dict:
    code, out, err = cli(capsys, env, "--json", *args)
    assert code == 0, err
    return json.loads(out)


def drop_lines(csv: str, *ids: str) -> str:
    return "".join(line for line in csv.splitlines(keepends=True) if line.split(",")[0] not in ids)


@pytest.fixture(scope="module")
def keypair(tmp_path_factory):
    key = tmp_path_factory.mktemp("keys") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    fp = subprocess.run(["ssh-keygen", "-l", "-f", str(key.with_suffix(".pub"))], check=True, capture_output=True,
                        text=True).stdout.split()[1]
    return key, fp


def test_tenant_list_keys_remove_key(env, capsys, keypair):
    key, fp = keypair
    assert cli(capsys, env, "tenant", "add-key", "lincoln", str(key.with_suffix(".pub")))[0] == 0
    set_password(env.ctx.engine, "roosevelt", "roosevelt-secret")

    listed = cli_json(capsys, env, "tenant", "list")["tenants"]
    assert [(t["tenant"], t["name"], t["password"], t["keys"], t["disabled"]) for t in listed] == [
        ("lincoln", "Lincoln Unified", False, 1, False), ("roosevelt", "Roosevelt Unified", True, 0, False)]
    code, out, _ = cli(capsys, env, "tenant", "list")
    assert code == 0 and "roosevelt" in out and "secret" not in out

    code, out, _ = cli(capsys, env, "tenant", "keys", "lincoln")
    assert code == 0 and out.splitlines()[0].startswith(f"{fp} ssh-ed25519 added ")  # as ssh-keygen -l shows it
    pkey = paramiko.Ed25519Key.from_private_key_file(str(key))
    assert check_key(env.ctx.engine, "lincoln", pkey)

    code, _, err = cli(capsys, env, "tenant", "remove-key", "lincoln", "SHA256:notakey")
    assert code == 1 and "has no key SHA256:notakey" in err
    assert cli_json(capsys, env, "tenant", "remove-key", "lincoln", fp) == {"tenant": "lincoln", "removed": fp}
    assert not check_key(env.ctx.engine, "lincoln", pkey)
    assert cli_json(capsys, env, "tenant", "keys", "lincoln") == {"tenant": "lincoln", "keys": []}
    code, _, err = cli(capsys, env, "tenant", "keys", "nosuch")
    assert code == 1 and "unknown tenant 'nosuch'" in err


def test_a_disabled_tenant_cannot_log_in_until_enabled(env, capsys, keypair):
    key, _ = keypair
    pkey = paramiko.Ed25519Key.from_private_key_file(str(key))
    cli(capsys, env, "tenant", "add-key", "lincoln", str(key.with_suffix(".pub")))
    set_password(env.ctx.engine, "lincoln", "lincoln-secret")
    assert check_password(env.ctx.engine, "lincoln", "lincoln-secret") and check_key(env.ctx.engine, "lincoln", pkey)

    assert cli_json(capsys, env, "tenant", "disable", "lincoln")["changed"] is True
    assert not check_password(env.ctx.engine, "lincoln", "lincoln-secret")
    assert not check_key(env.ctx.engine, "lincoln", pkey)
    assert check_password(env.ctx.engine, "roosevelt", "x") is False  # no password: unchanged behaviour
    assert [t["disabled"] for t in cli_json(capsys, env, "tenant", "list")["tenants"]] == [True, False]
    assert cli_json(capsys, env, "tenant", "disable", "lincoln")["changed"] is False

    assert cli_json(capsys, env, "tenant", "enable", "lincoln")["changed"] is True
    assert check_password(env.ctx.engine, "lincoln", "lincoln-secret") and check_key(env.ctx.engine, "lincoln", pkey)


def test_server_fingerprint_is_what_ssh_keygen_says(env, capsys):
    keyfile = env.home / "ssh_host_ed25519_key"
    pub = subprocess.run(["ssh-keygen", "-y", "-f", str(keyfile)], check=True, capture_output=True, text=True).stdout
    expected = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=pub, check=True, capture_output=True,
                              text=True).stdout.split()[1]
    code, out, _ = cli(capsys, env, "server", "fingerprint")
    assert code == 0 and out.split() == [expected, "ssh-ed25519"]


def test_init_tenant_says_how_to_set_credentials(env, capsys):
    code, out, _ = cli(capsys, env, "init", "--tenant", "adams")
    assert code == 0
    assert "rosterdrop tenant passwd adams" in out and "rosterdrop tenant add-key adams" in out


def test_status_per_tenant(env, capsys):
    env.configure(lincoln={"max_deactivated_percent": 10, "min_deactivated_count": 0}, roosevelt={})
    first = env.process(CLEAN)
    held = env.process(with_changes(CLEAN, users_csv=drop_lines(USERS, "u2", "u3", "u4", "g1")))
    assert (first.status.value, held.status.value) == ("applied", "held")

    state = cli_json(capsys, env, "status")
    assert state["daemon"] == {"running": False, "pid": None}
    by_tenant = {t["tenant"]: t for t in state["tenants"]}
    lincoln = by_tenant["lincoln"]
    assert lincoln["last_received_at"] == held.received_at
    assert lincoln["last_applied"]["run_id"] == first.run_id
    assert (lincoln["open_holds"], lincoln["unfinished_runs"]) == (1, 0)
    assert lincoln["emails_waiting"] == 2  # the two reports, queued (the library call does not deliver)
    assert cli(capsys, env, "outbox", "send")[0] == 0  # no [smtp]: written to outbox/ as .eml files
    assert [t["emails_waiting"] for t in cli_json(capsys, env, "status")["tenants"]] == [0, 0]
    assert by_tenant["roosevelt"] == {**by_tenant["roosevelt"], "last_received_at": None, "last_applied": None,
                                      "open_holds": 0, "unfinished_runs": 0, "emails_waiting": 0}
    code, out, _ = cli(capsys, env, "status")
    assert code == 0 and "daemon not running" in out and "lincoln" in out


def test_runs_changes_lists_what_a_run_changed_without_values(env, capsys):
    env.configure(lincoln={"max_deactivated_percent": 100})
    first = env.process(CLEAN)
    second = env.process(with_changes(CLEAN, users_csv=drop_lines(USERS, "u3").replace("Tara", "Tamara"),
                                      enrollments_csv=drop_lines(ENROLLMENTS, "e3")))
    assert second.status.value == "applied"

    changes = cli_json(capsys, env, "runs", "changes", second.run_id)
    assert changes["run_id"] == second.run_id and changes["tenant"] == "lincoln"
    rows = sorted((c["entity"], c["sourced_id"], c["action"], tuple(c["fields"])) for c in changes["changes"])
    assert ("people", "u1", "updated", ("given_name",)) in rows
    assert ("people", "u3", "deactivated", ("status",)) in rows
    assert ("enrollments", "e3", "deactivated", ("status",)) in rows
    assert all(action != "created" for _, _, action, _ in rows)

    created = cli_json(capsys, env, "runs", "changes", first.run_id)["changes"]
    assert {("people", "u1", "created"), ("orgs", "s1", "created")} <= {
        (c["entity"], c["sourced_id"], c["action"]) for c in created}

    code, out, _ = cli(capsys, env, "runs", "changes", second.run_id)
    assert code == 0 and "given_name" in out and "Tamara" not in out and "Tara" not in out
    code, _, err = cli(capsys, env, "runs", "changes", "nope")
    assert code == 1 and "no run 'nope'" in err


def test_runs_revert_undoes_the_latest_applied_run_only(env, capsys):
    env.configure(lincoln={"max_deactivated_percent": 100})
    first = env.process(CLEAN)
    after_first = env.export(include_inactive=True)
    second = env.process(with_changes(CLEAN, users_csv=drop_lines(USERS, "u3").replace("Tara", "Tamara")))
    assert second.status.value == "applied" and env.export(include_inactive=True) != after_first

    code, _, err = cli(capsys, env, "runs", "revert", first.run_id)
    assert code == 2 and f"revert {second.run_id} first" in err
    code, out, _ = cli(capsys, env, "--json", "runs", "revert", second.run_id)
    assert code == 0 and json.loads(out)["status"] == "reverted"
    assert env.export(include_inactive=True) == after_first
    assert cli_json(capsys, env, "runs", "show", second.run_id)["status"] == "reverted"

    code, _, err = cli(capsys, env, "runs", "revert", second.run_id)
    assert code == 2 and "is reverted, not applied" in err
    # the first run is now the latest applied one: it can be undone too, back to an empty roster
    assert cli(capsys, env, "runs", "revert", first.run_id)[0] == 0
    assert env.export(include_inactive=True)["people"] == []
    # the audit log itself is kept
    with env.ctx.engine.connect() as conn:
        assert conn.execute(audit.select().where(audit.c.run_id == second.run_id)).first() is not None
    # a re-send of the reverted bytes is a new run, applied again
    again = env.process(with_changes(CLEAN, users_csv=drop_lines(USERS, "u3").replace("Tara", "Tamara")))
    assert again.status.value == "applied"
