"""Pause notices (CONTRACT.md section 12): the day before a pause starts and the day it ends, in the tenant's
time zone, each sent exactly once however often, and by however many processes, the job runs."""

from __future__ import annotations

import email
import threading
from datetime import date, datetime
from email import policy
from zoneinfo import ZoneInfo

from sqlalchemy import select

from processor.apply.store import outbox
from processor.calendar import send_pause_notices
from processor.context import Context

START, UNTIL = date(2027, 6, 12), date(2027, 8, 14)
CHICAGO = ZoneInfo("America/Chicago")


def summer(env, mode: str = "additions_only", timezone: str = "America/Chicago", tenant: str = "lincoln") -> None:
    path = env.home / "rosterdrop.toml"
    text = path.read_text().replace(f'[tenants.{tenant}]\n', f'[tenants.{tenant}]\ntimezone = "{timezone}"\n', 1)
    path.write_text(text + f'\n[[tenants.{tenant}.pauses]]\nfrom = {START}\nuntil = {UNTIL}\nmode = "{mode}"\n')
    env.__dict__.pop("ctx", None)


def at(day: str, hour: int, minute: int = 0, tz: ZoneInfo = CHICAGO) -> float:
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=tz).timestamp()


def notices(ctx: Context, tenant: str | None = None) -> list[tuple[str, str, email.message.EmailMessage]]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(outbox.c.tenant, outbox.c.kind, outbox.c.message).where(
            outbox.c.kind.like("pause_%")).order_by(outbox.c.id)).all()
    return [(t, k, email.message_from_bytes(m, policy=policy.default)) for t, k, m in rows
            if tenant is None or t == tenant]


def text_of(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def test_the_day_before_a_pause_and_the_day_it_ends_in_the_tenants_time_zone_once_each(env):
    summer(env)
    ctx = env.ctx
    assert send_pause_notices(ctx, at("2027-06-10", 23, 59)) == 0  # two days before: nothing yet
    # 03:00 UTC on June 11 is still June 10 in Chicago: not due yet.
    assert send_pause_notices(ctx, datetime(2027, 6, 11, 3, 0, tzinfo=ZoneInfo("UTC")).timestamp()) == 0
    assert send_pause_notices(ctx, at("2027-06-11", 0, 5)) == 1
    for hour in range(1, 24):  # the job runs every hour of that day, and the next
        assert send_pause_notices(ctx, at("2027-06-11", hour)) == 0
    assert send_pause_notices(ctx, at("2027-06-12", 9)) == 0
    assert send_pause_notices(ctx, at("2027-07-04", 9)) == 0  # the middle of the pause: nothing
    # The last paused day, late in the evening in Chicago (already August 15 in UTC).
    assert send_pause_notices(ctx, at("2027-08-14", 22, 30)) == 1
    assert send_pause_notices(ctx, at("2027-08-15", 9)) == 0
    sent = notices(ctx)
    assert [(t, k) for t, k, _ in sent] == [("lincoln", "pause_starting"), ("lincoln", "pause_ended")]
    (_, _, start), (_, _, end) = sent
    assert start["To"] == "it@lincoln.example"
    assert start["Subject"].strip() == "Lincoln Unified roster: syncs pause tomorrow, 2027-06-12 to 2027-08-14"
    body = text_of(start)
    assert "paused from 2027-06-12 to 2027-08-14" in body and "summer-school students" in body
    assert "From 2027-08-15, drops are processed as usual" in body
    assert end["Subject"].strip() == "Lincoln Unified roster: the sync pause ends today, 2027-08-14"
    assert "Drops received from 2027-08-15 on are processed as usual" in text_of(end)
    assert start.get_body(("html",)).get_content().count("2027-06-12") >= 1


def test_a_restarted_daemon_sends_nothing_twice_and_a_missed_day_is_caught_up_the_next(env):
    summer(env, mode="skip")
    # Down all of June 11: on June 12 the notice still goes, saying the pause starts today.
    assert send_pause_notices(env.ctx, at("2027-06-12", 8)) == 1
    restarted = Context.load(env.home)  # a new process on the same home
    assert send_pause_notices(restarted, at("2027-06-12", 9)) == 0
    assert send_pause_notices(restarted, at("2027-06-13", 9)) == 0  # past the grace day: never late twice
    [(_, _, msg)] = notices(restarted)
    assert msg["Subject"].endswith("syncs pause today, 2027-06-12 to 2027-08-14")
    assert "archived and nothing is applied" in text_of(msg)
    restarted.engine.dispose()


def test_several_processes_running_the_job_at_once_send_each_notice_once(env):
    summer(env)
    contexts = [Context.load(env.home) for _ in range(4)]  # as many daemons on as many hosts
    barrier = threading.Barrier(len(contexts))
    counts: list[int] = []

    def job(ctx: Context) -> None:
        barrier.wait()
        counts.append(send_pause_notices(ctx, at("2027-06-11", 7)))

    threads = [threading.Thread(target=job, args=(c,)) for c in contexts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(counts) == [0, 0, 0, 1]
    assert len(notices(env.ctx)) == 1
    for c in contexts:
        c.engine.dispose()


def test_only_the_paused_tenant_is_told_and_a_tenant_without_report_to_is_skipped(env):
    summer(env, tenant="roosevelt", timezone="UTC")
    assert send_pause_notices(env.ctx, at("2027-06-11", 12, tz=ZoneInfo("UTC"))) == 1
    [(tenant, kind, msg)] = notices(env.ctx)
    assert (tenant, kind, msg["To"]) == ("roosevelt", "pause_starting", "it@roosevelt.example")
    path = env.home / "rosterdrop.toml"
    path.write_text(path.read_text().replace('report_to = ["it@roosevelt.example"]', "report_to = []"))
    assert send_pause_notices(Context.load(env.home), at("2027-08-14", 12, tz=ZoneInfo("UTC"))) == 0


def test_the_end_notice_counts_the_holds_waiting_for_review(env):
    from tests.bundles import CLEAN

    summer(env, mode="hold")
    env.process(CLEAN)  # applied: received today, not in the 2027 pause
    path = env.home / "rosterdrop.toml"
    today = date.today()
    path.write_text(path.read_text() + f'\n[[tenants.lincoln.pauses]]\nfrom = {today}\nuntil = {today}\nmode = "hold"\n')
    env.__dict__.pop("ctx", None)
    from tests.test_pauses import SUMMER

    assert env.process(SUMMER).status == "held"
    assert send_pause_notices(env.ctx, datetime.now(CHICAGO).replace(hour=12).timestamp()) >= 1
    [msg] = [m for _, k, m in notices(env.ctx) if k == "pause_ended"]
    assert "1 held drop is waiting for review" in text_of(msg)


def test_the_daemon_schedules_the_pause_notices_every_hour(env):
    from apscheduler.triggers.interval import IntervalTrigger

    from processor.daemon.scheduled import scheduled_jobs

    jobs = {job.name: job.trigger for job in scheduled_jobs(env.ctx, 0.0, pull=print, sweeps=print)}
    assert isinstance(jobs["pause-notices"], IntervalTrigger)
    assert jobs["pause-notices"].interval.total_seconds() == 3600
