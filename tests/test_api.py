"""The HTTP API under /api/v1 (CONTRACT.md section 10), over a real HTTP server and client: tokens and tenant
isolation, events, roster pages with cursor pagination and filters, and the OpenAPI document."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from processor.cli import main
from processor.events import prune_events, read_events
from tests.bundles import CLEAN, ENROLLMENTS, USERS, with_changes
from tests.live_http import serve_api


def drop_lines(text: str, *prefixes: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith(prefixes)) + "\n"


def new_token(env, capsys, name: str, tenant: str | None = None) -> str:
    args = ["--home", str(env.home), "api-token", "create", name, "--json"] + (["--tenant", tenant] if tenant else [])
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["name"] == name
    return out["token"]


@pytest.fixture
def api(env):
    with serve_api(env.ctx) as base, httpx.Client(base_url=base + "/api/v1", timeout=20) as client:
        yield client


def get(client: httpx.Client, path: str, token: str | None, **params) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(path, params=params, headers=headers)


def all_pages(client, path: str, token: str, key: str, cursor: str | None = None, **params) -> list[dict]:
    rows, pages = [], 0
    while True:
        r = get(client, path, token, **params, **({"cursor": cursor} if cursor else {}))
        assert r.status_code == 200, r.text
        body = r.json()
        rows += body[key]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return rows
        assert pages < 100


def test_tokens_are_shown_once_stored_hashed_and_revocable(env, api, capsys):
    env.process(CLEAN)
    token = new_token(env, capsys, "vendor")
    assert get(api, "/tenants/lincoln/events", token).status_code == 200
    assert main(["--home", str(env.home), "api-token", "list", "--json"]) == 0
    listed = capsys.readouterr().out
    assert token not in listed and json.loads(listed)["tokens"][0]["name"] == "vendor"
    from processor.web.tokens import api_tokens

    with env.ctx.engine.connect() as conn:
        stored = conn.execute(api_tokens.select()).mappings().one()
    assert token not in json.dumps(dict(stored))
    for bad in (None, "rdt_wrong", token + "x"):
        r = get(api, "/tenants/lincoln/events", bad)
        assert r.status_code == 401 and "api-token create" in r.json()["error"]
    assert main(["--home", str(env.home), "api-token", "create", "vendor"]) == 1  # the name is taken
    assert main(["--home", str(env.home), "api-token", "revoke", "vendor"]) == 0
    assert get(api, "/tenants/lincoln/events", token).status_code == 401
    assert main(["--home", str(env.home), "api-token", "revoke", "vendor"]) == 1


def test_a_tenant_token_sees_only_its_tenant(env, api, capsys):
    env.process(CLEAN)
    env.process(CLEAN, tenant="roosevelt")
    scoped = new_token(env, capsys, "lincoln-app", tenant="lincoln")
    every = new_token(env, capsys, "ops")
    assert get(api, "/tenants/lincoln/people", scoped).status_code == 200
    for path in ("events", "people", "schools", "classes", "enrollments"):
        foreign = get(api, f"/tenants/roosevelt/{path}", scoped)
        missing = get(api, f"/tenants/nowhere/{path}", scoped)
        assert foreign.status_code == missing.status_code == 404
        # Told exactly what an unknown tenant is told: nothing of roosevelt's data, not even that it exists.
        assert foreign.json() == {"error": "no tenant 'roosevelt' for this token"}
        assert missing.json() == {"error": "no tenant 'nowhere' for this token"}
    assert get(api, "/tenants/roosevelt/people", every).status_code == 200
    assert get(api, "/tenants/nowhere/people", every).status_code == 404
    assert main(["--home", str(env.home), "api-token", "create", "x", "--tenant", "nowhere"]) == 1


def test_events_route_matches_the_cli_and_says_gone_for_a_pruned_cursor(env, api, capsys):
    env.process(CLEAN)
    token = new_token(env, capsys, "vendor")
    r = get(api, "/tenants/lincoln/events", token, after=1, limit=4)
    assert r.status_code == 200
    page = r.json()
    expected = read_events(env.ctx.engine, "lincoln", after=1, limit=4)
    assert page == {"events": expected.events, "next": expected.next}
    assert [e["id"] for e in page["events"]] == [2, 3, 4, 5] and page["next"] == 5
    last = read_events(env.ctx.engine, "lincoln", limit=10_000).next
    prune_events(env.ctx.engine, 1, now=datetime(2100, 1, 1, tzinfo=UTC))
    gone = get(api, "/tenants/lincoln/events", token, after=0)
    assert gone.status_code == 410 and "Resync" in gone.json()["error"]
    assert get(api, "/tenants/lincoln/events", token, after=last).json() == {"events": [], "next": last}
    assert get(api, "/tenants/lincoln/events", token, limit=0).status_code == 422
    # a cursor past the stores' BIGINT ids is refused, not sent to the store (it raised a 500 on SQLite)
    assert get(api, "/tenants/lincoln/events", token, after=2**63).status_code == 422
    assert get(api, "/tenants/lincoln/events", token, after=2**63 - 1).json() == {"events": [], "next": 2**63 - 1}


def test_roster_pages_are_the_exports_rows_in_a_stable_order(env, api, capsys):
    env.process(CLEAN)
    token = new_token(env, capsys, "vendor")
    export = env.export()
    for key in ("schools", "people", "classes", "enrollments"):
        rows = all_pages(api, f"/tenants/lincoln/{key}", token, key, limit=2)
        assert rows == export[key], key
    # A row created between two pages, after the cursor, shows up once; nothing repeats or goes missing.
    head = read_events(env.ctx.engine, "lincoln", limit=10_000).next
    first = get(api, "/tenants/lincoln/people", token, limit=3).json()
    assert first["events_cursor"] == head
    assert [p["sourced_id"] for p in first["people"]] == ["a1", "g1", "u1"]
    env.process(with_changes(CLEAN, users_csv=USERS + "u20,active,,true,s1,student,z,,Zed,Zee,,9,z@x.example,,,,03,,\n"))
    rest = all_pages(api, "/tenants/lincoln/people", token, "people", limit=2, cursor=first["next_cursor"])
    assert [p["sourced_id"] for p in rest] == ["u2", "u20", "u3", "u4"]
    assert get(api, "/tenants/lincoln/people", token, cursor="***").status_code == 422
    assert get(api, "/tenants/lincoln/people", token, cursor="a").status_code == 422


def test_roster_filters_school_role_status_and_updated_after(env, api, capsys):
    env.configure(lincoln={"max_deactivated_percent": 100})
    env.process(CLEAN)
    between = datetime.now(UTC).isoformat()
    env.process(with_changes(CLEAN, users_csv=drop_lines(USERS, "u3").replace("Tara", "Tamara"),
                             enrollments_csv=drop_lines(ENROLLMENTS, "e3")))
    token = new_token(env, capsys, "vendor")

    def ids(key, **params):
        return [r["sourced_id"] for r in all_pages(api, f"/tenants/lincoln/{key}", token, key, **params)]

    assert ids("people", school="s1") == ["g1", "u1", "u2"]
    assert ids("people", role="student") == ["u2"]
    assert ids("people", role="student", status="all") == ["u2", "u3"]
    assert ids("people", status="inactive") == ["u3"]
    assert ids("people", updated_after=between, status="all") == ["u1", "u3"]
    assert ids("enrollments", school="s2", status="all") == ["e3", "e4"]
    assert ids("enrollments", role="teacher") == ["e1", "e4"]
    assert ids("classes", school="s2") == ["k2"]
    assert ids("schools", updated_after=between) == []
    assert get(api, "/tenants/lincoln/people", token, role="wizard").status_code == 422


def test_the_openapi_document_is_served_under_the_mount(env, api):
    r = api.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert {"/tenants/{tenant}/events", "/tenants/{tenant}/people", "/tenants/{tenant}/schools",
            "/tenants/{tenant}/classes", "/tenants/{tenant}/enrollments"} <= set(doc["paths"])
    assert doc["servers"] == [{"url": "/api/v1"}]
