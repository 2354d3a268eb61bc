"""The `rosterdrop` command: parse arguments, call the library, print, exit. No logic lives here."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from processor.config import ConfigError, resolve_home
from processor.context import Context, UserError

log = logging.getLogger("rosterdrop")


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- commands


def cmd_init(args, home: Path) -> int:
    from processor.home import init_home
    from processor.tenants import credential_hint

    created = init_home(home, args.tenant or [])
    hints = [credential_hint(t) for t in dict.fromkeys(args.tenant or [])]
    if args.json:
        _print_json({"home": str(home), "created": created, "next": hints})
        return 0
    if created:
        print("created:\n  " + "\n  ".join(created))
    else:
        print(f"{home} is already set up; nothing created")
    for hint in hints:
        print("next: " + hint)
    return 0


def cmd_serve(args, home: Path) -> int:
    from processor.daemon import serve

    return serve(home, burst=args.burst, create=args.init)


def cmd_worker(args, home: Path) -> int:
    from processor.daemon import work

    return work(home, processes=args.processes)


def cmd_process(args, home: Path) -> int:
    from processor.pipeline import process_path

    ctx = Context.load(home)
    _stage_bars(args)
    result = process_path(ctx, Path(args.path), args.tenant, dry_run=args.dry_run, source="cli",
                          new_year=args.new_year)
    _deliver_quietly(ctx)
    if args.json:
        _print_json(result.to_json())
    else:
        from processor.report.render import run_summary_text

        print(run_summary_text(result))
    return result.exit_code()


def _stage_bars(args) -> None:
    """A bar per stage of the run on a terminal's stderr; never with --json (a script reads the output)."""
    from processor.progress import show_stage_bars

    show_stage_bars(not args.json)


def _deliver_quietly(ctx: Context) -> None:
    # The exit code reflects the run, never the email: an undeliverable email stays queued.
    try:
        from processor.report.mail import deliver_due

        deliver_due(ctx, force=True)
    except Exception as exc:  # noqa: BLE001 - any mail failure must not change the run's outcome
        # The type only: SMTP errors can quote recipient addresses. `rosterdrop outbox list` shows the detail.
        log.warning("email delivery failed (%s); it stays queued, see `rosterdrop outbox list`", type(exc).__name__)


def cmd_runs_list(args, home: Path) -> int:
    from processor.apply.runs import list_runs

    ctx = Context.load(home)
    rows = list_runs(ctx.engine, tenant=args.tenant, limit=args.limit)
    if args.json:
        _print_json({"runs": rows})
    else:
        _print_table(rows, ["run_id", "tenant", "status", "source", "received_at", "errors", "alerts", "holds"])
    return 0


def cmd_runs_show(args, home: Path) -> int:
    from processor.apply.runs import get_result

    ctx = Context.load(home)
    result = get_result(ctx.engine, args.run_id)
    if args.json:
        _print_json(result.to_json())
    else:
        from processor.report.render import run_summary_text

        print(run_summary_text(result))
    return 0


def cmd_runs_retry(args, home: Path) -> int:
    from processor.failures import retry_run

    ctx = Context.load(home)
    result = retry_run(ctx, args.run_id)
    _deliver_quietly(ctx)
    if args.json:
        _print_json(result.to_json())
    else:
        from processor.report.render import run_summary_text

        print(run_summary_text(result))
    return result.exit_code()


def cmd_holds_list(args, home: Path) -> int:
    from processor.apply.runs import list_runs

    ctx = Context.load(home)
    rows = list_runs(ctx.engine, tenant=args.tenant, status="held", limit=None)
    if args.json:
        _print_json({"holds": rows})
    else:
        _print_table(rows, ["run_id", "tenant", "received_at", "holds"])
    return 0


def cmd_holds_release(args, home: Path) -> int:
    from processor.apply.hold_actions import AlreadyActed
    from processor.pipeline import release_hold

    ctx = Context.load(home)
    _stage_bars(args)
    try:
        result = release_hold(ctx, args.run_id, by=args.by, note=args.note, new_year=args.new_year)
    except AlreadyActed as done:
        return _already_acted(args, done)
    _deliver_quietly(ctx)
    if args.json:
        _print_json(result.to_json())
    else:
        from processor.report.render import run_summary_text

        print(run_summary_text(result))
    return result.exit_code()


def cmd_holds_discard(args, home: Path) -> int:
    from processor.apply.hold_actions import AlreadyActed
    from processor.pipeline import discard_hold

    ctx = Context.load(home)
    try:
        result = discard_hold(ctx, args.run_id, by=args.by, note=args.note)
    except AlreadyActed as done:
        return _already_acted(args, done)
    _deliver_quietly(ctx)
    if args.json:
        _print_json(result.to_json())
    else:
        print(f"run {result.run_id} discarded; nothing was applied")
    return 0


def _hold_action_args(sp, done: str) -> None:
    sp.add_argument("--by", metavar="WHO", help=f"who {done} it, kept in the run (default: the OS user)")
    sp.add_argument("--note", metavar="TEXT", help="why, kept in the run and sent in the notice")


def _already_acted(args, done) -> int:
    """A second release or discard: nothing changes; the same action again is harmless (exit 0)."""
    if args.json:
        _print_json({**done.result.to_json(), "message": str(done)})
    else:
        print(str(done))
    return 0 if done.same else 1


def cmd_roster_export(args, home: Path) -> int:
    from processor.apply.export import count_roster

    ctx = Context.load(home)
    ctx.config.tenant(args.tenant)
    if args.json or args.format:
        return _roster_stream(args, ctx)
    counts = count_roster(ctx.engine, args.tenant, include_inactive=args.all)
    for key in ("schools", "people", "classes", "enrollments"):
        print(f"{key}: {counts[key]}")
    print("(use --json for the rows, --format jsonl or csv to stream them)")
    return 0


def _roster_stream(args, ctx: Context) -> int:
    """`roster export --json` / `--format json|jsonl|csv`: rows streamed to stdout, a progress bar on a
    terminal's stderr."""
    from processor.apply.export import CSV_COLUMNS, count_roster, write_csv, write_json, write_jsonl
    from processor.progress import enabled, progress

    if args.format == "csv" and not args.entity:
        raise UserError(f"--format csv writes one entity: add --entity {'|'.join(CSV_COLUMNS)}")
    if args.format in ("json", None) and args.entity:
        raise UserError("--entity goes with --format jsonl or --format csv (the JSON document has every entity)")
    sections = [args.entity] if args.entity else None
    total = None
    if enabled():
        counts = count_roster(ctx.engine, args.tenant, include_inactive=args.all)
        total = sum(counts[s] for s in sections or counts)
    with progress(total, f"export {args.tenant}", unit="rows") as bar:
        if args.format in ("json", None):  # --json: the whole document (CONTRACT section 6)
            write_json(ctx.engine, args.tenant, sys.stdout, include_inactive=args.all, on_rows=bar.update)
        elif args.format == "csv":
            write_csv(ctx.engine, args.tenant, args.entity, sys.stdout, include_inactive=args.all, on_rows=bar.update)
        else:
            write_jsonl(ctx.engine, args.tenant, sys.stdout, include_inactive=args.all, sections=sections,
                        on_rows=bar.update)
    sys.stdout.flush()
    return 0


def cmd_generate(args, home: Path) -> int:
    from processor.generate import generate_bundles

    if (args.nightly is None) != (args.changes is None):
        raise UserError("--nightly and --changes go together: --nightly PATH --changes PCT")
    from processor.generate import generate_steps
    from processor.progress import progress

    with progress(generate_steps(args.nightly is not None), "generate") as bar:
        def step(name: str) -> None:
            bar.set_description(f"generate: {name}")
            bar.update()

        summary = generate_bundles(Path(args.out), schools=args.schools, students=args.students, seed=args.seed,
                                   nightly=Path(args.nightly) if args.nightly else None, changes=args.changes,
                                   step=step)
    if args.json:
        _print_json(summary)
    else:
        for k, v in summary.items():
            print(f"{k}: {v}")
    return 0


def cmd_outbox_list(args, home: Path) -> int:
    from processor.report.mail import list_outbox

    ctx = Context.load(home)
    rows = list_outbox(ctx)
    if args.json:
        _print_json({"emails": rows})
    else:
        _print_table(rows, ["id", "tenant", "kind", "status", "attempts", "next_attempt_at", "last_error"])
    return 0


def cmd_outbox_send(args, home: Path) -> int:
    from processor.report.mail import deliver_due

    ctx = Context.load(home)
    summary = deliver_due(ctx, force=True)
    if args.json:
        _print_json(summary)
    else:
        print(", ".join(f"{k}: {v}" for k, v in summary.items()))
    return 0 if not summary.get("failed") else 1


def cmd_tenant_passwd(args, home: Path) -> int:
    import getpass

    from processor.intake.auth import set_password

    ctx = Context.load(home)
    ctx.config.tenant(args.tenant_id)
    if sys.stdin.isatty():
        pw = getpass.getpass(f"SFTP password for {args.tenant_id}: ")
        if getpass.getpass("again: ") != pw:
            raise UserError("the two passwords differ; nothing changed")
    else:
        pw = sys.stdin.readline().rstrip("\r\n")
    if len(pw) < 8:
        raise UserError("the password must have at least 8 characters; nothing changed")
    set_password(ctx.engine, args.tenant_id, pw)
    if args.json:
        _print_json({"tenant": args.tenant_id, "password": "set"})
    else:
        print(f"SFTP password set for tenant {args.tenant_id}")
    return 0


def cmd_tenant_add_key(args, home: Path) -> int:
    from processor.intake.auth import add_key

    ctx = Context.load(home)
    ctx.config.tenant(args.tenant_id)
    fingerprint = add_key(ctx.engine, args.tenant_id, Path(args.pubkey_file))
    if args.json:
        _print_json({"tenant": args.tenant_id, "fingerprint": fingerprint})
    else:
        print(f"authorized key {fingerprint} for tenant {args.tenant_id}")
    return 0


def cmd_db_upgrade(args, home: Path) -> int:
    from processor.apply import schema
    from processor.config import load_config

    config = load_config(home)
    url = config.store_url()
    engine = schema.open_engine(url)
    try:
        before, after, adopted = schema.upgrade(engine)
    finally:
        engine.dispose()
    origin = f"the first release's schema (no revision; taken as {schema.BASELINE})" if adopted else \
        before or "(empty)"
    queue = _upgrade_queue_schema(config, url)
    if args.json:
        _print_json({"store": schema.display_url(url), "from": before, "to": after, "adopted": adopted,
                     **({"procrastinate": {"from": queue[0], "to": queue[1]}} if queue else {})})
        return 0
    if before == after:
        print(f"store {schema.display_url(url)} is at {after}, the current schema; nothing to do")
    else:
        print(f"store {schema.display_url(url)} upgraded from {origin} to {after}")
    if queue and queue[0] != queue[1]:
        print(f"Procrastinate schema {'upgraded from ' + queue[0] if queue[0] else 'created'} at version {queue[1]}")
    elif queue:
        print(f"Procrastinate schema is at version {queue[1]}; nothing to do")
    return 0


def _upgrade_queue_schema(config, url: str) -> tuple[str | None, str] | None:
    """[queue] backend = "procrastinate": Procrastinate's own schema, beside ours (processor/queue.py)."""
    if config.queue.backend != "procrastinate":
        return None
    from processor.apply import schema
    from processor.queue import apply_schema

    engine = schema.open_engine(url)
    try:
        return apply_schema(engine)
    finally:
        engine.dispose()


def cmd_db_current(args, home: Path) -> int:
    from processor.apply import schema
    from processor.config import load_config

    url = load_config(home).store_url()
    engine = schema.open_engine(url)
    try:
        with engine.connect() as conn:
            rev = schema.current(conn)
    finally:
        engine.dispose()
    head = schema.head()
    if args.json:
        _print_json({"store": schema.display_url(url), "revision": rev, "head": head, "current": rev == head})
    else:
        note = "current" if rev == head else f"this version needs {head}: run `rosterdrop db upgrade`"
        print(f"{rev or '(none)'} ({note})")
    return 0


def cmd_status(args, home: Path) -> int:
    from processor.status import status

    ctx = Context.load(home)
    state = status(ctx)
    if args.json:
        _print_json(state)
        return 0
    daemon = state["daemon"]
    print(f"home {state['home']}: daemon " + (f"running (PID {daemon['pid']})" if daemon["running"] else "not running"))
    rows = [{**t, "last_applied": (t["last_applied"] or {}).get("at"),
             "disabled": "yes" if t["disabled"] else ""} for t in state["tenants"]]
    _print_table(rows, ["tenant", "last_received_at", "last_applied", "open_holds", "unfinished_runs",
                        "failed_runs", "emails_waiting", "disabled"])
    return 0


def cmd_runs_changes(args, home: Path) -> int:
    from processor.status import run_changes

    ctx = Context.load(home)
    changes = run_changes(ctx, args.run_id)
    if args.json:
        _print_json(changes)
    else:
        rows = [{**c, "fields": ", ".join(c["fields"])} for c in changes["changes"]]
        _print_table(rows, ["entity", "sourced_id", "action", "fields"])
    return 0


def cmd_runs_revert(args, home: Path) -> int:
    from processor.status import RevertRefused, revert

    ctx = Context.load(home)
    try:
        done = revert(ctx, args.run_id)
    except RevertRefused as exc:
        _fail(args, str(exc))
        return 2
    if args.json:
        _print_json(done)
    else:
        print(f"run {done['run_id']} of tenant {done['tenant']} reverted: {done['records_undone']} audit records "
              "undone; the roster is as it was before the run")
    return 0


def cmd_tenant_list(args, home: Path) -> int:
    from processor.tenants import list_tenants

    ctx = Context.load(home)
    rows = list_tenants(ctx)
    if args.json:
        _print_json({"tenants": rows})
    else:
        _print_table([{**r, "password": "set" if r["password"] else "", "disabled": "yes" if r["disabled"] else "",
                       "report_to": ", ".join(r["report_to"])} for r in rows],
                     ["tenant", "name", "password", "keys", "disabled", "report_to"])
    return 0


def cmd_tenant_keys(args, home: Path) -> int:
    from processor.tenants import keys

    ctx = Context.load(home)
    ctx.config.tenant(args.tenant_id)
    rows = keys(ctx.engine, args.tenant_id)
    if args.json:
        _print_json({"tenant": args.tenant_id, "keys": rows})
    elif not rows:
        print(f"tenant {args.tenant_id} has no authorized keys")
    else:
        for r in rows:
            print(f"{r['fingerprint']} {r['type']} added {r['added_at']}")
    return 0


def cmd_tenant_remove_key(args, home: Path) -> int:
    from processor.tenants import remove_key

    ctx = Context.load(home)
    ctx.config.tenant(args.tenant_id)
    removed = remove_key(ctx.engine, args.tenant_id, args.fingerprint)
    if args.json:
        _print_json({"tenant": args.tenant_id, "removed": removed})
    else:
        print(f"key {removed} of tenant {args.tenant_id} removed; it can no longer log in with it")
    return 0


def cmd_tenant_disable(args, home: Path) -> int:
    from processor.tenants import disable

    ctx = Context.load(home)
    ctx.config.tenant(args.tenant_id)
    changed = disable(ctx.engine, args.tenant_id)
    if args.json:
        _print_json({"tenant": args.tenant_id, "disabled": True, "changed": changed})
    else:
        print(f"tenant {args.tenant_id} disabled: its SFTP logins are refused" + ("" if changed else " (already)"))
    return 0


def cmd_tenant_enable(args, home: Path) -> int:
    from processor.tenants import enable

    ctx = Context.load(home)
    ctx.config.tenant(args.tenant_id)
    changed = enable(ctx.engine, args.tenant_id)
    if args.json:
        _print_json({"tenant": args.tenant_id, "disabled": False, "changed": changed})
    else:
        print(f"tenant {args.tenant_id} enabled: its SFTP logins are accepted" + ("" if changed else " (already)"))
    return 0


def cmd_server_fingerprint(args, home: Path) -> int:
    from processor.tenants import host_key_fingerprint

    key_type, _, fp = host_key_fingerprint(home).partition(" ")
    if args.json:
        _print_json({"type": key_type, "fingerprint": fp})
    else:
        print(f"{fp} {key_type}")
    return 0


def cmd_web_passwd(args, home: Path) -> int:
    import getpass

    from processor.web.sessions import set_operator_password

    ctx = Context.load(home)
    name = args.name
    if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", name):
        raise UserError(f"operator name {name!r} must be 1-64 of letters, digits, '_', '.', '@' or '-'")
    if sys.stdin.isatty():
        pw = getpass.getpass(f"console password for operator {name}: ")
        if getpass.getpass("again: ") != pw:
            raise UserError("the two passwords differ; nothing changed")
    else:
        pw = sys.stdin.readline().rstrip("\r\n")
    if len(pw) < 12:
        raise UserError("the password must have at least 12 characters; nothing changed")
    set_operator_password(ctx.engine, name, pw)
    if args.json:
        _print_json({"operator": name, "password": "set"})
    else:
        print(f"console password set for operator {name}")
    return 0


def cmd_events(args, home: Path) -> int:
    from processor.events import MAX_ID, MAX_LIMIT, EventsExpired, read_events

    ctx = Context.load(home)
    ctx.config.tenant(args.tenant)
    if not 0 <= args.after <= MAX_ID or not 1 <= args.limit <= MAX_LIMIT:
        raise UserError(f"--after must be between 0 and {MAX_ID} and --limit between 1 and {MAX_LIMIT}")
    try:
        page = read_events(ctx.engine, args.tenant, after=args.after, limit=args.limit)
    except EventsExpired as exc:
        raise UserError(str(exc)) from None
    if args.json:
        _print_json({"events": page.events, "next": page.next})
    else:
        for e in page.events:
            print(f"{e['id']}  {e['at']}  {e['type']}  {e['sourced_id'] or ''}  {','.join(e['changed'])}".rstrip())
        print(f"next: {page.next}")
    return 0


def cmd_api_token_create(args, home: Path) -> int:
    from processor.web.tokens import create_token

    ctx = Context.load(home)
    if args.tenant:
        ctx.config.tenant(args.tenant)
    token = create_token(ctx.engine, args.name, args.tenant)
    if args.json:
        _print_json({"name": args.name, "token": token})
    else:
        scope = f"tenant {args.tenant}" if args.tenant else "every tenant"
        print(f"API token {args.name} ({scope}); it is shown only this once:\n{token}")
    return 0


def cmd_api_token_list(args, home: Path) -> int:
    from processor.web.tokens import list_tokens

    ctx = Context.load(home)
    rows = list_tokens(ctx.engine)
    if args.json:
        _print_json({"tokens": rows})
    else:
        _print_table([{**r, "tenant": r["tenant"] or "(all)"} for r in rows],
                     ["name", "tenant", "created_at", "revoked_at"])
    return 0


def cmd_api_token_revoke(args, home: Path) -> int:
    from processor.web.tokens import revoke_token

    ctx = Context.load(home)
    revoke_token(ctx.engine, args.name)
    if args.json:
        _print_json({"name": args.name, "revoked": True})
    else:
        print(f"API token {args.name} revoked")
    return 0


def cmd_webhooks_list(args, home: Path) -> int:
    from processor.webhooks import list_webhooks

    ctx = Context.load(home)
    if args.tenant:
        ctx.config.tenant(args.tenant)
    listing = list_webhooks(ctx, args.tenant, limit=args.limit)
    if args.json:
        _print_json(listing)
    else:
        _print_table(listing["webhooks"], ["tenant", "url", "status", "delivered_through", "last_event_id",
                                           "attempts", "next_attempt_at", "last_error"])
        print()
        _print_table(listing["deliveries"], ["at", "tenant", "url", "first_id", "last_id", "count", "attempt",
                                             "status_code", "error"])
    return 0


def cmd_webhooks_send(args, home: Path) -> int:
    from processor.webhooks import deliver_webhooks

    ctx = Context.load(home)
    summary = deliver_webhooks(ctx, force=True, budget_seconds=300)
    if args.json:
        _print_json(summary)
    else:
        print(", ".join(f"{k}: {v}" for k, v in summary.items()))
    return 0 if not summary["failed"] else 1


def cmd_webhooks_retry(args, home: Path) -> int:
    from processor.webhooks import retry_failed

    ctx = Context.load(home)
    ctx.config.tenant(args.tenant)
    resumed = retry_failed(ctx, args.tenant)
    if args.json:
        _print_json({"tenant": args.tenant, "resumed": resumed})
    else:
        print(f"{resumed} failed webhooks of tenant {args.tenant} resumed where they stopped")
    return 0


def cmd_roster_lock(args, home: Path) -> int:
    from processor.apply.locks import lock_field

    ctx = Context.load(home)
    ctx.config.tenant(args.tenant)
    lock = lock_field(ctx.engine, args.tenant, args.entity, args.id, args.field, args.value, by=args.by)
    if args.json:
        _print_json(lock)
    else:
        print(f"{args.entity} {args.id} {args.field} locked at {args.value!r}; later drops keep it")
    return 0


def cmd_roster_unlock(args, home: Path) -> int:
    from processor.apply.locks import unlock_field

    ctx = Context.load(home)
    ctx.config.tenant(args.tenant)
    done = unlock_field(ctx.engine, args.tenant, args.entity, args.id, args.field, by=args.by)
    if args.json:
        _print_json(done)
    else:
        print(f"{args.entity} {args.id} {args.field} unlocked; the next drop that carries it sets the SIS's value")
    return 0


def cmd_roster_alias(args, home: Path) -> int:
    from processor.apply.identity import add_alias

    ctx = Context.load(home)
    ctx.config.tenant(args.tenant)
    alias = add_alias(ctx.engine, args.tenant, args.entity, args.old, args.new, by=args.by)
    if args.json:
        _print_json(alias)
    else:
        print(f"{args.entity} {args.new} is now read as the record {alias['old']}")
    return 0


def _print_table(rows: list[dict], cols: list[str]) -> None:
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, "") or "")) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c, "") if r.get(c) is not None else "").ljust(widths[c]) for c in cols))


# ---------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1 (CONTRACT.md section 3), not argparse's 2, which means "rejected" here."""

    def error(self, message: str):
        if "--json" in _ARGV:  # still exactly one JSON object on stdout (CONTRACT.md section 9)
            _print_json({"error": f"{self.prog}: {message}"})
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    def shared(suppress: bool) -> argparse.ArgumentParser:
        # Declared once; on subcommands the defaults are suppressed so `rosterdrop --home X cmd` keeps X.
        d = {"default": argparse.SUPPRESS} if suppress else {}
        sp = _Parser(add_help=False)
        sp.add_argument("--home", metavar="DIR", **d,
                        help="home folder (default: $ROSTERDROP_HOME, else ./rosterdrop-home)")
        sp.add_argument("--json", action="store_true", **d, help="print exactly one JSON object on stdout")
        sp.add_argument("-v", "--verbose", action="count", **({"default": 0} | d),
                        help="more log output (-vv: debug)")
        sp.add_argument("--log-format", choices=["text", "json"], **({"default": "text"} | d),
                        help="log lines on stderr as text (default) or JSON objects with ISO timestamps")
        return sp

    common = shared(suppress=True)
    p = _Parser(
        prog="rosterdrop", parents=[shared(suppress=False)],
        description="Receive district OneRoster CSV drops, validate, apply them to the roster store, "
                    "and email a sync report.")
    from processor import __version__

    p.add_argument("--version", action="version", version=f"rosterdrop {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name, func, help_, parent=sub):
        sp = parent.add_parser(name, parents=[common], help=help_, description=help_)
        sp.set_defaults(func=func)
        return sp

    sp = add("init", cmd_init, "create the home folder, config, store and SSH host key (never overwrites)")
    sp.add_argument("--tenant", action="append", metavar="ID", help="also configure this tenant (repeatable)")

    sp = add("serve", cmd_serve, "run the daemon: SFTP server, inbox watcher, scheduler and workers")
    sp.add_argument("--burst", action="store_true", help="process what is waiting in the inboxes, then exit")
    sp.add_argument("--init", action="store_true",
                    help="if the home does not exist, create it with a demo tenant (a terminal implies this)")

    sp = add("worker", cmd_worker, 'run workers only (needs [queue] backend = "procrastinate"): process drops '
             "that any host's `serve` received, until SIGTERM (current runs finish)")
    sp.add_argument("--processes", type=int, metavar="N",
                    help="worker processes, each one run at a time (default: [daemon] workers; 0 there = one per core)")

    sp = add("process", cmd_process, "process one bundle (a .zip or a folder of CSVs) now, as the daemon would")
    sp.add_argument("path", metavar="PATH", help="the bundle: a .zip file or a folder of CSV files")
    sp.add_argument("--tenant", required=True, metavar="ID", help="the tenant (district) the drop belongs to")
    sp.add_argument("--dry-run", action="store_true", help="compute everything, apply nothing, send nothing")
    sp.add_argument("--new-year", action="store_true",
                    help="the new-school-year reset: last year's classes and enrollments that the drop does not "
                         "list are deactivated, people are kept, and limits are reported but do not hold")

    runs = sub.add_parser("runs", help="list and show runs", description="list and show runs")
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    sp = add("list", cmd_runs_list, "recent runs, newest first", runs_sub)
    sp.add_argument("--tenant", metavar="ID", help="only this tenant's runs")
    sp.add_argument("--limit", type=int, default=50, help="at most this many runs (default 50)")
    sp = add("show", cmd_runs_show, "one run's result", runs_sub)
    sp.add_argument("run_id", metavar="RUN_ID")
    sp = add("retry", cmd_runs_retry, "process a failed run's drop again, now", runs_sub)
    sp.add_argument("run_id", metavar="RUN_ID")

    holds = sub.add_parser("holds", help="list, release or discard held runs",
                           description="list, release or discard held runs")
    holds_sub = holds.add_subparsers(dest="holds_command", metavar="ACTION", required=True)
    sp = add("list", cmd_holds_list, "held runs", holds_sub)
    sp.add_argument("--tenant", metavar="ID", help="only this tenant's holds")
    sp = add("release", cmd_holds_release, "apply a held run now (its changes are recomputed)", holds_sub)
    sp.add_argument("run_id", metavar="RUN_ID")
    _hold_action_args(sp, "released")
    sp.add_argument("--new-year", action="store_true",
                    help="the new-school-year reset: last year's classes and enrollments that the drop does not "
                         "list are deactivated, people are kept, and limits are reported but do not hold")
    sp = add("discard", cmd_holds_discard, "drop a held run; nothing is applied", holds_sub)
    sp.add_argument("run_id", metavar="RUN_ID")
    _hold_action_args(sp, "discarded")

    roster = sub.add_parser("roster", help="export a tenant's roster", description="export a tenant's roster")
    roster_sub = roster.add_subparsers(dest="roster_command", metavar="ACTION", required=True)
    sp = add("export", cmd_roster_export, "the tenant's current roster (active rows)", roster_sub)
    sp.add_argument("--tenant", required=True, metavar="ID")
    sp.add_argument("--all", action="store_true", help="include inactive (deactivated) rows")
    sp.add_argument("--format", choices=["json", "jsonl", "csv"],
                    help="json: the whole document (as --json); jsonl: streamed, one record a line with its kind; "
                         "csv: one entity (--entity), streamed")
    sp.add_argument("--entity", choices=["schools", "people", "classes", "enrollments", "guardians"],
                    help="with --format csv (required) or jsonl: only this section")
    for name, func, help_ in (
            ("lock", cmd_roster_lock, "set one field of a stored row by hand and keep it whatever later drops say"),
            ("unlock", cmd_roster_unlock, "give a locked field back to the district's drops")):
        sp = add(name, func, help_, roster_sub)
        sp.add_argument("--tenant", required=True, metavar="ID")
        sp.add_argument("--entity", required=True, choices=["people", "classes", "schools", "enrollments"])
        sp.add_argument("--id", required=True, metavar="SOURCED_ID")
        sp.add_argument("--field", required=True, metavar="FIELD", help="e.g. role, email, given_name, title, name")
        if name == "lock":
            sp.add_argument("--value", required=True, metavar="VALUE")
        sp.add_argument("--by", metavar="WHO", help="who made the change (default: the operating-system user)")
    sp = add("alias", cmd_roster_alias, "read the district's new sourcedId as an existing record (an SIS migration)",
             roster_sub)
    sp.add_argument("--tenant", required=True, metavar="ID")
    sp.add_argument("--entity", required=True, choices=["people"])
    sp.add_argument("old", metavar="OLD", help="the stored record's sourcedId")
    sp.add_argument("new", metavar="NEW", help="the sourcedId the district sends now")
    sp.add_argument("--by", metavar="WHO", help="who made the mapping (default: the operating-system user)")

    sp = add("generate", cmd_generate, "write a realistic synthetic OneRoster 1.1 bundle (zip)")
    sp.add_argument("--out", required=True, metavar="PATH", help="the zip to write")
    sp.add_argument("--schools", type=int, default=5, metavar="N")
    sp.add_argument("--students", type=int, default=2000, metavar="N")
    sp.add_argument("--seed", type=int, default=1, metavar="N")
    sp.add_argument("--nightly", metavar="PATH", help="also write a second full bundle with changes")
    sp.add_argument("--changes", type=float, metavar="PCT", help="percent of records changed in --nightly")

    outbox = sub.add_parser("outbox", help="emails waiting to be sent", description="emails waiting to be sent")
    outbox_sub = outbox.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    add("list", cmd_outbox_list, "emails waiting to be sent, with attempts and last error", outbox_sub)
    add("send", cmd_outbox_send, "try to deliver every waiting email now", outbox_sub)

    tenant = sub.add_parser("tenant", help="tenant SFTP credentials", description="tenant SFTP credentials")
    tenant_sub = tenant.add_subparsers(dest="tenant_command", metavar="ACTION", required=True)
    sp = add("passwd", cmd_tenant_passwd, "set the tenant's SFTP password (stdin when not a terminal)",
             tenant_sub)
    sp.add_argument("tenant_id", metavar="ID")
    sp = add("add-key", cmd_tenant_add_key, "authorize an OpenSSH public key for the tenant's SFTP login",
             tenant_sub)
    sp.add_argument("tenant_id", metavar="ID")
    sp.add_argument("pubkey_file", metavar="PUBKEY_FILE")

    db = sub.add_parser("db", help="the store's schema: current revision, upgrade",
                        description="the store's schema: current revision, upgrade")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    add("upgrade", cmd_db_upgrade, "migrate the store to the schema of this version (Alembic)", db_sub)
    add("current", cmd_db_current, "print the store's schema revision", db_sub)

    add("status", cmd_status, "per tenant: last drop received and applied, open holds, unfinished runs, "
                              "emails waiting")
    sp = add("changes", cmd_runs_changes, "what an applied run changed: entity, sourcedId, action, fields",
             runs_sub)
    sp.add_argument("run_id", metavar="RUN_ID")
    sp = add("revert", cmd_runs_revert, "undo the tenant's latest applied run (from the audit log)", runs_sub)
    sp.add_argument("run_id", metavar="RUN_ID")

    add("list", cmd_tenant_list, "configured tenants, their credentials and whether they are disabled",
        tenant_sub)
    sp = add("keys", cmd_tenant_keys, "the tenant's authorized public keys, with SHA256 fingerprints", tenant_sub)
    sp.add_argument("tenant_id", metavar="ID")
    sp = add("remove-key", cmd_tenant_remove_key, "revoke one of the tenant's public keys by fingerprint",
             tenant_sub)
    sp.add_argument("tenant_id", metavar="ID")
    sp.add_argument("fingerprint", metavar="FINGERPRINT", help="SHA256:... as `tenant keys` prints it")
    sp = add("disable", cmd_tenant_disable, "refuse the tenant's SFTP logins (drops already received go on)",
             tenant_sub)
    sp.add_argument("tenant_id", metavar="ID")
    sp = add("enable", cmd_tenant_enable, "accept the tenant's SFTP logins again", tenant_sub)
    sp.add_argument("tenant_id", metavar="ID")

    server = sub.add_parser("server", help="the SFTP server's identity", description="the SFTP server's identity")
    server_sub = server.add_subparsers(dest="server_command", metavar="ACTION", required=True)
    add("fingerprint", cmd_server_fingerprint, "the SSH host key's SHA256 fingerprint (tell districts)",
        server_sub)
    web = sub.add_parser("web", help="the web console's operators", description="the web console's operators")
    web_sub = web.add_subparsers(dest="web_command", metavar="ACTION", required=True)
    sp = add("passwd", cmd_web_passwd, "set an operator's console password (stdin when not a terminal)", web_sub)
    sp.add_argument("name", metavar="NAME")
    sp = add("events", cmd_events, "the tenant's change events after a cursor, oldest first")
    sp.add_argument("--tenant", required=True, metavar="ID")
    sp.add_argument("--after", type=int, default=0, metavar="N", help="only events with an id above N (default 0)")
    sp.add_argument("--limit", type=int, default=1000, metavar="M", help="at most M events (default 1000)")

    tokens = sub.add_parser("api-token", help="tokens for the HTTP API", description="tokens for the HTTP API")
    tokens_sub = tokens.add_subparsers(dest="api_token_command", metavar="ACTION", required=True)
    sp = add("create", cmd_api_token_create, "create an API token (printed once; stored hashed)", tokens_sub)
    sp.add_argument("name", metavar="NAME")
    sp.add_argument("--tenant", metavar="ID", help="the one tenant it may read (default: every tenant)")
    add("list", cmd_api_token_list, "API tokens, with their tenant and when they were created or revoked",
        tokens_sub)
    sp = add("revoke", cmd_api_token_revoke, "revoke an API token", tokens_sub)
    sp.add_argument("name", metavar="NAME")

    hooks = sub.add_parser("webhooks", help="webhook deliveries", description="webhook deliveries")
    hooks_sub = hooks.add_subparsers(dest="webhooks_command", metavar="ACTION", required=True)
    sp = add("list", cmd_webhooks_list, "each webhook's state and the delivery log, newest first", hooks_sub)
    sp.add_argument("--tenant", metavar="ID", help="only this tenant's webhooks")
    sp.add_argument("--limit", type=int, default=50, help="at most this many log entries (default 50)")
    add("send", cmd_webhooks_send, "deliver every webhook's waiting events now (the daemon also does, with backoff)",
        hooks_sub)
    sp = add("retry", cmd_webhooks_retry, "resume the tenant's webhooks that failed for a day, where they stopped",
             hooks_sub)
    sp.add_argument("--tenant", required=True, metavar="ID")
    return p


def setup_logging(verbose: int, log_format: str = "text") -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    from processor.service import apply_log_format

    apply_log_format(log_format)


_ARGV: list[str] = []  # the arguments being parsed, for _Parser.error


def main(argv: list[str] | None = None) -> int:
    global _ARGV
    _ARGV = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose if args.command not in ("serve", "worker") else max(args.verbose, 1), args.log_format)
    home = resolve_home(args.home)
    stdout, sys.stdout = sys.stdout, _QuietPipe(sys.stdout)
    try:
        return args.func(args, home)
    except (ConfigError, UserError) as exc:
        return _fail(args, str(exc))
    except KeyboardInterrupt:
        return _fail(args, "interrupted")
    finally:
        sys.stdout = stdout


class _QuietPipe:
    """stdout that a closed pipe (`rosterdrop runs list | head`) silences instead of raising: the command
    finishes and exits with its own code, and nothing more is written."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._silence()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._silence()

    def _silence(self) -> None:
        self.broken = True
        try:  # the interpreter flushes stdout again at exit: point fd 1 at /dev/null so that is quiet too
            import os

            if self._stream.fileno() == 1:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _fail(args, message: str) -> int:
    if getattr(args, "json", False):
        _print_json({"error": message})
    print(f"rosterdrop: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
