"""Screenshots of every console page at 1280, 600 and 375 px, and of the hold and pause emails at 600 px.

    .venv/bin/python bench/screenshots.py [OUT_DIR]      (default /tmp/rosterdrop-screenshots)

Builds a throw-away home with three districts (one with an applied drop with row errors, one with a held
mass withdrawal, one whose roster has data-check alerts), starts the console on a free port and drives Debian's Chromium through the pages as a
district admin and as an operator. Prints each file it wrote; look at them, not only take them.
"""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from processor.context import Context
from processor.home import init_home
from processor.pipeline import process_path
from processor.report.mail import deliver_due
from processor.web.server import WebServer
from processor.web.sessions import create_session

ROOT = Path(__file__).resolve().parent.parent
WIDTHS = (1280, 600, 375)


def build_home(home: Path) -> Context:
    init_home(home, ["lincoln", "adams"])
    (home / "rosterdrop.toml").write_text(
        '[sftp]\nenabled = false\n\n[web]\nport = 0\nsupport_contact = "roster-help@vendor.example"\n\n'
        '[tenants.lincoln]\nname = "Lincoln Unified School District"\nreport_to = ["it@lincoln.example"]\n'
        "expect_drop_every_hours = 24\n\n"
        '[tenants.adams]\nname = "Adams County Schools"\nreport_to = ["ops@adams.example"]\n\n'
        '[tenants.jefferson]\nname = "Jefferson Parish Schools"\nreport_to = ["it@jefferson.example"]\n'
        'timezone = "America/Chicago"\n\n[[tenants.jefferson.pauses]]\nfrom = 2027-06-12\nuntil = 2027-08-14\n'
        'mode = "additions_only"\n', encoding="utf-8")
    return Context.load(home)


def data_check_drop(folder: Path) -> Path:
    """sample_drops/clean with what the data checks find: a student sharing a teacher's email, a class whose
    teacher left, and students enrolled nowhere."""
    shutil.copytree(ROOT / "sample_drops" / "clean", folder)
    users = (folder / "users.csv").read_text(encoding="utf-8")
    users = users.replace("jose.garcia@students.lincolnusd.example", "margaret.whitfield@lincolnusd.example")
    for i in range(1, 8):
        users += (f"stu-09{i:02},active,2024-09-03T06:00:00Z,true,org-lincoln-es,student,new.student{i},,"
                  f"Summer,Student {i},,0031099{i},new.student{i}@students.lincolnusd.example,,,,03,,,en\n")
    (folder / "users.csv").write_text(users, encoding="utf-8")
    enr = (folder / "enrollments.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "enrollments.csv").write_text("".join(e for e in enr if "cls-es-hr-kg,org-lincoln-es,tch-" not in e),
                                            encoding="utf-8")
    return folder


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/rosterdrop-screenshots")
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="rd-shots-"))
    try:
        ctx = build_home(tmp / "home")
        server = WebServer(ctx)
        server.start()
        base = ctx.config.web.base_url = f"http://127.0.0.1:{server.port}"
        drops = ROOT / "sample_drops"
        process_path(ctx, drops / "clean", "lincoln")
        held = process_path(ctx, drops / "mass_withdrawal", "lincoln")
        errors = process_path(ctx, drops / "row_errors", "adams")
        process_path(ctx, data_check_drop(tmp / "checks"), "jefferson")
        from datetime import datetime
        from zoneinfo import ZoneInfo

        from processor.calendar import send_pause_notices

        send_pause_notices(ctx, datetime(2027, 6, 11, 9, tzinfo=ZoneInfo("America/Chicago")).timestamp())
        deliver_due(ctx, force=True)  # force: the pause notice was queued "in June 2027"
        emls = sorted((ctx.home / "outbox").glob("*.eml"), key=lambda p: int(p.name.split("-")[0]))
        hold_msg = next(m for m in (email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                                    for p in emls) if "HOLD" in str(m["Subject"]))
        hold_html = hold_msg.get_body(("html",)).get_content()
        hold_link = re.search(re.escape(base) + r"/hold/[^\"<\s]+", hold_html).group(0)
        pause_msg = next(m for m in (email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                                     for p in emls) if "syncs pause" in str(m["Subject"]))
        admin = create_session(ctx.engine, "admin", "it@lincoln.example", "lincoln")
        jefferson = create_session(ctx.engine, "admin", "it@jefferson.example", "jefferson")
        operator = create_session(ctx.engine, "operator", "ops", None)
        with ctx.engine.connect() as conn:
            school, klass = conn.exec_driver_sql(
                "SELECT school, sourced_id FROM classes WHERE tenant='lincoln' ORDER BY sourced_id LIMIT 1").one()
        pages = {
            "hold-link": (None, hold_link),
            "signin": (None, base + "/signin"),
            "login": (None, base + "/login"),
            "forbidden": (None, base + "/hold/not-a-valid-token"),
            "tenants": (operator, base + "/"),
            "tenant": (admin, base + "/t/lincoln"),
            "run-held": (admin, f"{base}/t/lincoln/runs/{held.run_id}"),
            "roster": (admin, base + "/t/lincoln/roster"),
            "school": (admin, f"{base}/t/lincoln/roster/school?id={school}"),
            "class": (admin, f"{base}/t/lincoln/roster/class?id={klass}"),
            "tenant-operator": (operator, base + "/t/adams"),
            "tenant-data-checks": (jefferson, base + "/t/jefferson"),
            "run-applied-with-errors": (operator, f"{base}/t/adams/runs/{errors.run_id}"),
        }
        with sync_playwright() as p:
            chromium = shutil.which("chromium") or "/usr/bin/chromium"
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            for width in WIDTHS:
                for name, (session, url) in pages.items():
                    context = browser.new_context(viewport={"width": width, "height": 800})
                    if session is not None:
                        context.add_cookies([{"name": "rd_session", "value": session.sid, "url": base}])
                    page = context.new_page()
                    page.goto(url)
                    path = out / f"{name}-{width}.png"
                    page.screenshot(path=str(path), full_page=True)
                    print(path)
                    if name == "hold-link":  # the new-school-year release, opened
                        page.click("details.newyear summary")
                        page.locator("details.newyear").screenshot(path=str(out / f"hold-new-year-{width}.png"))
                        print(out / f"hold-new-year-{width}.png")
                    if width < 600:  # a long phone page, also in screen-sized parts that can be read
                        height = page.evaluate("document.documentElement.scrollHeight")
                        for i, top in enumerate(range(0, min(height, 4 * 900), 900)):
                            part = out / "parts" / f"{name}-{width}-{i + 1}.png"
                            part.parent.mkdir(exist_ok=True)
                            page.screenshot(path=str(part), full_page=True,
                                            clip={"x": 0, "y": top, "width": width, "height": min(900, height - top)})
                    context.close()
            context = browser.new_context(viewport={"width": 600, "height": 800})
            page = context.new_page()
            page.set_content(hold_html)
            path = out / "hold-email-600.png"
            page.screenshot(path=str(path), full_page=True)
            print(path)
            page.screenshot(path=str(out / "parts" / "hold-email-600-1.png"), clip={"x": 0, "y": 0, "width": 600,
                                                                                    "height": 1000})
            page.set_content(pause_msg.get_body(("html",)).get_content())
            path = out / "pause-email-600.png"
            page.screenshot(path=str(path), full_page=True)
            print(path)
            browser.close()
        server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
