"""The API against its own OpenAPI file: schemathesis generates requests from
``openapi.json`` (valid and invalid ones) and checks every response against it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ui_support import client_for, recorded  # noqa: F401  (fixtures)

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402


OPERATIONS = ["/api/runs", "/api/runs/{run_id}", "/api/compare", "/api/importance", "/api/fleet", "/api/drift",
              "/api/manifests/{ref}", "/api/openapi.json"]


@pytest.mark.parametrize("path", OPERATIONS)
def test_api_conforms_to_its_openapi_file(recorded, path) -> None:
    from hypothesis import given

    from envcap.ui.app import create_app, store_opener

    # schemathesis' ASGI client names the host "testserver": the app is told to answer it.
    app = create_app(store_opener(str(recorded["home"])), allowed_hosts=("testserver",))
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    operation = schema[path]["GET"]

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case) -> None:
        case.call_and_validate()

    check()


def test_the_served_file_is_the_shipped_file_and_names_every_route(recorded, client_for) -> None:
    from envcap.ui import api

    served = client_for(recorded["home"]).get("/api/openapi.json").json()
    assert served == json.loads(Path(api.OPENAPI_FILE).read_text())
    assert set(served["paths"]) == {r.path for r in api.routes}


def test_real_runs_conform_too(recorded, client_for) -> None:
    """Generated ids name no run; these requests use the recorded ones."""
    import jsonschema

    doc = json.loads(Path(__import__("envcap.ui.api", fromlist=["x"]).OPENAPI_FILE).read_text())
    c = client_for(recorded["home"])
    a, b, _ = recorded["ids"]
    checks = [(f"/api/runs/{a}", "RunPage"), (f"/api/compare?run={a}&run={b}", "Comparison"),
              ("/api/runs?sort=-metrics.acc", "RunsPage"), ("/api/importance", "Experiment"), ("/api/fleet", "Fleet")]
    for url, name in checks:
        r = c.get(url)
        assert r.status_code == 200, r.text
        resolver_doc = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
        jsonschema.validate(r.json(), resolver_doc, cls=jsonschema.Draft202012Validator)
