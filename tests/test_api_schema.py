"""Property-based test of the API against its own OpenAPI document (schemathesis, over real HTTP): for
generated requests to every route, no server error and every response conforms to the document."""

from __future__ import annotations

import json

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.cli import main
from tests.bundles import CLEAN
from tests.live_http import serve_api


def test_every_route_conforms_to_the_openapi_document(sqlite_env, capsys):
    sqlite_env.process(CLEAN)
    assert main(["--home", str(sqlite_env.home), "api-token", "create", "vendor", "--tenant", "lincoln",
                 "--json"]) == 0
    headers = {"Authorization": f"Bearer {json.loads(capsys.readouterr().out)['token']}"}
    with serve_api(sqlite_env.ctx) as base:
        schema = schemathesis.openapi.from_url(base + "/api/v1/openapi.json", headers=headers)
        assert len(list(schema.get_all_operations())) >= 5
        # Half the cases read the tenant that has data, the rest any tenant id the document allows.
        cases = st.one_of(schema.as_strategy(path_parameters={"tenant": "lincoln"}), schema.as_strategy())

        @given(case=cases)
        @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def conforms(case):
            case.call_and_validate(base_url=base + "/api/v1", headers=headers)

        conforms()
